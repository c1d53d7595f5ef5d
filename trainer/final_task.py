"""Train on DATA/train + DATA/eval, then export the SavedModel to JOB_DIR/exported_model.

    python -m trainer.final_task --data-dir data [--job-dir output] [--recipe NAME] [--epochs N ...]

An existing JOB_DIR/exported_model is kept: the new export gets a timestamp suffix
(`trainer.gcloud.train_and_export` does the job).
"""

from __future__ import annotations

import sys
from typing import Sequence

from convert.export_savedmodel import format_export_report
from mug_errors import command
from trainer.gcloud import parse_job_args, train_and_export


@command
def main(argv: Sequence[str] | None = None) -> int:
    args, run = parse_job_args(argv, __doc__.split("\n\n")[0])
    export_dir, report = train_and_export(run, args.data_dir, args.job_dir)
    print(format_export_report(report))
    print(f"SavedModel written to {export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
