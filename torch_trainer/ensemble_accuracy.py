"""Cross-scene accuracy of each run's model, ensembles of runs and flip test-time augmentation, side by side.

    python -m torch_trainer.ensemble_accuracy --report REPORT --data-dir DATA/train [--sizes 2 3 5]

REPORT is a `torch_trainer.validate` folder run with several `--seeds`. Every run's
`seedS_FOLD/model.pt` (`run`: one model, or the recipe's own ensemble of K when it has one) is
scored on its fold's held-out images (the shoots are found again from the images, as validate
does). `ensembleK` averages the softmax of K runs' models of the same fold; every K-subset of the
seeds is scored, and each line gives the mean and spread over the subsets. `flip` averages each
model's softmax over the picture and its mirror image. Writes REPORT/ensemble.json
(`torch_trainer.cross_scene.score_report` does the job).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mug_errors import command
from torch_trainer.cross_scene import score_report, summary_lines


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="a torch_trainer.validate output folder")
    parser.add_argument("--data-dir", required=True, help="the --data-dir that validate was run on")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 5], help="ensemble sizes to score")
    parser.add_argument("--shoots", type=int, default=2, help="photo shoots per class (as given to validate)")
    args = parser.parse_args(argv)
    result = score_report(args.report, args.data_dir, args.sizes, args.shoots)
    print("\n".join(summary_lines(result)))
    print(f"wrote {Path(args.report) / 'ensemble.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
