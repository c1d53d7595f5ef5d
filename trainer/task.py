"""Train on DATA/train, evaluate on DATA/eval, print accuracy and a per-class report.

    python -m trainer.task --data-dir data [--job-dir output] [--recipe NAME] [--epochs N ...]

Without an eval split, a validation set is carved out of train in whole groups of
near-identical burst frames, so that no frame has its twin on the other side.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from torch_trainer.augment import eval_view, train_view
from torch_trainer.data import DatasetError, MugDataset, group_split, near_duplicate_groups, split_dir
from torch_trainer.model import WeightsUnavailable
from torch_trainer.report import classification_report, format_classification_report
from torch_trainer.fit import train_models
from trainer.job import fresh_dir, parse_job_args, train_root as find_train_root

# Without an eval split: the share of train held out, in groups of near-identical burst frames
# (thumbnail distance below the threshold), so that no frame's twin leaks into training.
VAL_FRACTION = 0.2
NEAR_DUPLICATE_THRESHOLD = 0.15


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_job_args(argv, __doc__.split("\n\n")[0])
    try:
        train_root = find_train_root(args.data_dir)
        eval_root = split_dir(args.data_dir, "eval")
        train = MugDataset(train_root, cfg.input_size, progress=True)
        if eval_root is not None:
            val = MugDataset(eval_root, cfg.input_size, progress=True)
            train_set = train_view(train)
            val_set = eval_view(val)
        else:
            groups = near_duplicate_groups(train.images, NEAR_DUPLICATE_THRESHOLD)
            train_idx, val_idx = group_split(train.targets, groups, VAL_FRACTION, cfg.seed)
            print(f"no eval split in {args.data_dir}: holding out {len(val_idx)} of {len(train)} training "
                  f"images in {len(set(groups[val_idx]))} groups of near-identical frames")
            train_set = train_view(train, train_idx)
            val_set = eval_view(train, val_idx)
        cfg.train_dirs = [str(train_root.resolve())]
        cfg.val_dir = str(eval_root.resolve()) if eval_root is not None else None
        run_dir = fresh_dir(f"{args.job_dir}/task_run")
        metrics = train_models(cfg, train_set, val_set, train.class_names, run_dir)
    except (DatasetError, FileNotFoundError, WeightsUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    report = classification_report(metrics["val_predictions"], metrics["val_targets"], train.class_names)
    (run_dir / "eval_report.json").write_text(json.dumps(report, indent=2))
    print(format_classification_report(report))
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
