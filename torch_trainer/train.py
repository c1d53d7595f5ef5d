"""Train the recipe's networks on class-per-folder mug photos.

    python -m torch_trainer.train --train-dir data/train [--val-dir data/eval] --output-dir runs/r18
        [--recipe NAME] [flags that override the recipe]
    python -m torch_trainer.train --resume RUN [--stop-after N]

Writes RUN/model.pt (the model to export), RUN/last.pt (with optimiser state), RUN/config.json (the
plan, for --resume), RUN/data.json (the data it found), RUN/best.pt (best validation accuracy, when
there is validation data) and RUN/metrics.json; with several families or models, each trains in a
folder of its own (RUN/FAMILY/memberI/) and RUN/model.pt averages them. The job is
`torch_trainer.training.jobs.train`; the run `torch_trainer.training.run`, one model's loop
`torch_trainer.training.fit`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mug_errors import command
from torch_trainer.training import jobs
from torch_trainer.settings.plan import DEFAULT_RECIPE
from torch_trainer.settings.flags import parse_args


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", nargs="+", help="class-per-folder training data (one or more)")
    parser.add_argument("--val-dir", help="class-per-folder validation data")
    parser.add_argument("--output-dir", help="run folder for checkpoints and metrics")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --output-dir")
    parser.add_argument("--resume", metavar="RUN", help="continue the interrupted run in RUN with its own settings")
    parser.add_argument("--stop-after", type=int, metavar="N", help="end this invocation after N epochs")
    args, run = parse_args(parser, argv)
    if args.resume:  # a flag beside it would be ignored in silence: RUN's own settings are what resume
        given = [f"--{k.replace('_', '-')}" for k in run.overrides] + ["--family"] * bool(run.family_overrides) + [
            flag for flag, value in (("--recipe", args.recipe != DEFAULT_RECIPE), ("--train-dir", args.train_dir),
                                     ("--val-dir", args.val_dir), ("--output-dir", args.output_dir)) if value]
        if given:
            parser.error(f"--resume RUN continues RUN with the plan it started with (RUN/config.json), so "
                         f"{', '.join(given)} would be ignored: drop them, or start a new run")
        jobs.resume(args.resume, args.stop_after)
    elif not args.train_dir or not args.output_dir:
        parser.error("--train-dir and --output-dir are required (or --resume RUN)")
    else:
        jobs.train(run, args.output_dir, args.train_dir, args.val_dir, overwrite=args.overwrite,
                   stop_after=args.stop_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
