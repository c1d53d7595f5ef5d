"""Fine-tune a torchvision ResNet on class-per-folder mug photos.

    python -m torch_trainer.train --train-dir data/train [--val-dir data/eval] --output-dir runs/r18
        [--recipe NAME] [flags that override the recipe]

Writes RUN/model.pt (the model to export), RUN/last.pt (with optimiser state), RUN/config.json
(the settings, for --resume), RUN/best.pt (best validation accuracy, when there is validation
data) and RUN/metrics.json. With `--ensemble K` > 1 each model trains in RUN/memberI/ and
RUN/model.pt holds all K. The loop itself is `torch_trainer.fit`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from torch_trainer import distributed
from torch_trainer.augment import eval_view, train_view
from torch_trainer.config import DEFAULT_RECIPE, parse_args
from torch_trainer.data import DatasetError, MugDataset
from torch_trainer.fit import check_output_dir, resume_config, train_models
from torch_trainer.model import WeightsUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", nargs="+", help="class-per-folder training data (one or more)")
    parser.add_argument("--val-dir", help="class-per-folder validation data")
    parser.add_argument("--output-dir", help="run folder for checkpoints and metrics")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --output-dir")
    parser.add_argument("--resume", metavar="RUN", help="continue the interrupted run in RUN with its own settings")
    parser.add_argument("--stop-after", type=int, metavar="N", help="end this invocation after N epochs")
    args, cfg = parse_args(parser, argv)
    if args.resume:  # a flag beside it would be ignored in silence: RUN's own settings are what resume
        given = [f"--{k.replace('_', '-')}" for k in cfg.overrides] + [
            flag for flag, value in (("--recipe", args.recipe != DEFAULT_RECIPE), ("--train-dir", args.train_dir),
                                     ("--val-dir", args.val_dir), ("--output-dir", args.output_dir)) if value]
        if given:
            parser.error(f"--resume RUN continues RUN with the settings it started with (RUN/config.json), so "
                         f"{', '.join(given)} would be ignored: drop them, or start a new run")
    distributed.setup()
    try:
        if args.resume:
            cfg = resume_config(args.resume)
            out = Path(args.resume)
            train_dirs, val_dir = cfg.train_dirs, cfg.val_dir
        else:
            if not args.train_dir or not args.output_dir:
                parser.error("--train-dir and --output-dir are required (or --resume RUN)")
            out = check_output_dir(args.output_dir, args.overwrite)
            distributed.barrier()  # every rank has checked RUN before rank 0 writes into it
            train_dirs, val_dir = args.train_dir, args.val_dir
            cfg.train_dirs = [str(Path(d).resolve()) for d in train_dirs]
            cfg.val_dir = str(Path(val_dir).resolve()) if val_dir else None
        train = MugDataset(train_dirs, cfg.input_size, progress=distributed.is_main())
        val = MugDataset(val_dir, cfg.input_size, progress=distributed.is_main()) if val_dir else None
        if val is not None and val.num_classes != train.num_classes:
            raise DatasetError(f"{val_dir}: has {val.num_classes} classes, training data has {train.num_classes}")
        train_models(cfg, train_view(train),
                     eval_view(val) if val is not None else None,
                     train.class_names, out, resume=bool(args.resume), stop_after=args.stop_after)
    except (DatasetError, FileExistsError, FileNotFoundError, WeightsUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
