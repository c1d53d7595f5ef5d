"""Train on DATA/train, evaluate on DATA/eval, print accuracy and a per-class report.

    python -m trainer.task --data-dir data [--job-dir output] [--held-out shoots] [--recipe NAME] [--epochs N ...]

Without an eval split, a validation set is carved out of train in whole groups of
near-identical burst frames, so that no frame has its twin on the other side, from
each class or from each shoot of each class (`trainer.gcloud.train_and_evaluate`
does the job).
"""

from __future__ import annotations

import sys
from typing import Sequence

from mug_errors import command
from torch_trainer.classifier.report import format_classification_report
from trainer.gcloud import parse_job_args, train_and_evaluate


@command
def main(argv: Sequence[str] | None = None) -> int:
    args, run = parse_job_args(argv, __doc__.split("\n\n")[0], held_out=True)
    run_dir, report = train_and_evaluate(run, args.data_dir, args.job_dir, args.held_out)
    print(format_classification_report(report))
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
