"""Cross-scene validation: leave one photo shoot out, so validation images show unseen scenes.

    python -m torch_trainer.validate --data-dir DATA/train --output-dir REPORT [--seeds 0 3]
        [--protocol shoot|class-shoot] [training flags]

`--protocol shoot` (default) holds out one shoot of every class per fold; `class-shoot` one shoot
of one class (`torch_trainer.cross_scene` says how and does the job). Every fold is trained with
the full recipe for every seed; the report gives each run's accuracy, the mean and the spread,
per-class recall and the summed confusion matrix (REPORT/report.json, report.md, confusion.png).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mug_errors import command
from torch_trainer.flags import parse_args
from torch_trainer.cross_scene import markdown, validate


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="class-per-folder training images (e.g. DATA/train)")
    parser.add_argument("--output-dir", required=True, help="report folder (must be new or empty)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full set of folds per seed")
    parser.add_argument("--shoots", type=int, default=2, help="photo shoots per class (default %(default)s)")
    parser.add_argument("--protocol", choices=("shoot", "class-shoot"), default="shoot",
                        help="hold out one shoot of every class per fold, or one shoot of one class")
    parser.add_argument("--overwrite", action="store_true")
    args, run = parse_args(parser, argv)
    summary = validate(run, args.data_dir, args.output_dir, args.seeds, args.shoots, args.protocol, args.overwrite)
    print(markdown(summary, run))
    print(f"wrote {args.output_dir}/report.json, report.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
