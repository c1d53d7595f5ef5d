"""Train on DATA/train + DATA/eval, then export the SavedModel to JOB_DIR/exported_model.

    python -m trainer.final_task --data-dir data [--job-dir output] [--recipe NAME] [--epochs N ...]

An existing JOB_DIR/exported_model is kept: the new export gets a timestamp suffix.
"""

from __future__ import annotations

import sys
from typing import Sequence

from convert.compare import ParityError
from convert.export_savedmodel import convert_checkpoint, format_export_report
from torch_trainer.augment import train_view
from torch_trainer.data import DatasetError, MugDataset, split_dir
from torch_trainer.model import WeightsUnavailable
from torch_trainer.fit import train_models
from trainer.job import fresh_dir, parse_job_args, train_root


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_job_args(argv, __doc__.split("\n\n")[0])
    try:
        roots = [train_root(args.data_dir), split_dir(args.data_dir, "eval")]
        if roots[1] is None:
            print(f"no eval split in {args.data_dir}: training on train/ alone")
            roots = roots[:1]
        data = MugDataset(roots, cfg.input_size, progress=True)
        cfg.train_dirs = [str(r.resolve()) for r in roots]
        run_dir = fresh_dir(f"{args.job_dir}/checkpoint")
        train_models(cfg, train_view(data), None, data.class_names, run_dir)
        export_dir = fresh_dir(f"{args.job_dir}/exported_model")
        report = convert_checkpoint(run_dir / "model.pt", export_dir, images=roots[0])
    except (DatasetError, FileNotFoundError, FileExistsError, WeightsUnavailable, ValueError, ParityError,
            RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_export_report(report))
    print(f"SavedModel written to {export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
