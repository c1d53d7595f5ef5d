"""The gcloud entry points' jobs (`train_and_evaluate` for trainer.task, `train_and_export` for
trainer.final_task) and their command line: ML6's folder layout (DATA/train, DATA/eval) and job
folder (JOB_DIR/...) on top of `torch_trainer.jobs.train` and `convert.export_savedmodel`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch_trainer import jobs
from torch_trainer.config import TrainConfig, parse_args
from torch_trainer.data import DatasetError, split_dir
from torch_trainer.report import classification_report

# Without an eval split, trainer.task validates on this share of train (in groups of near-identical frames).
VAL_FRACTION = 0.2


def parse_job_args(argv: Sequence[str] | None, description: str) -> tuple[argparse.Namespace, TrainConfig]:
    """--data-dir, --job-dir, --recipe and every training flag (defaults from the recipe, which
    defaults to torch_trainer.config.DEFAULT_RECIPE).

    An argument it does not know stops it (exit 2, naming the argument): a misspelt flag would
    otherwise train the default. What gcloud adds (`--job-dir`, from its own `--job-dir`) is ours.
    """
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--data-dir", default="data", help="folder holding train/ and optionally eval/ (or test/)")
    parser.add_argument("--job-dir", default="output", help="where checkpoints and the export go (gcloud passes "
                                                            "its --job-dir here)")
    args, cfg = parse_args(parser, argv)
    return args, cfg


def train_root(data_dir: str | Path) -> Path:
    """DATA/train, or a DatasetError that says how to get ML6's data."""
    root = split_dir(data_dir, "train")
    if root is None:
        raise DatasetError(f"{data_dir}: no train/ folder (get the data with: "
                           "gsutil -m cp -R gs://ml6_junior_ml_engineer_challenge_cv_mugs_data/data .)")
    return root


def fresh_dir(path: str | Path) -> Path:
    """`path` if it does not exist yet, else `path_YYYYmmdd-HHMMSS` (as ML6's final_task does)."""
    path = Path(path)
    if not path.exists():
        return path
    stamped = path.with_name(f"{path.name}_{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while stamped.exists():
        stamped = path.with_name(f"{path.name}_{time.strftime('%Y%m%d-%H%M%S')}_{n}")
        n += 1
    return stamped


def train_and_evaluate(cfg: TrainConfig, data_dir: str | Path, job_dir: str | Path,
                       log: Callable[..., None] = print) -> tuple[Path, dict[str, Any]]:
    """Train on DATA/train and validate on DATA/eval (or, without it, on VAL_FRACTION of train held
    out in groups of near-identical frames) in a new JOB_DIR/task_run; returns the run folder and
    the validation report (also RUN/eval_report.json)."""
    eval_root = split_dir(data_dir, "eval")
    run_dir = fresh_dir(Path(job_dir) / "task_run")
    metrics = jobs.train(cfg, run_dir, train_root(data_dir), eval_root,
                         hold_out=VAL_FRACTION if eval_root is None else 0.0, log=log)
    report = classification_report(metrics["val_predictions"], metrics["val_targets"], metrics["class_names"])
    (run_dir / "eval_report.json").write_text(json.dumps(report, indent=2))
    return run_dir, report


def train_and_export(cfg: TrainConfig, data_dir: str | Path, job_dir: str | Path,
                     log: Callable[..., None] = print) -> tuple[Path, dict[str, Any]]:
    """Train on DATA/train and DATA/eval together (train alone without eval) in a new
    JOB_DIR/checkpoint, then export the SavedModel to JOB_DIR/exported_model (a timestamped name
    beside it if that exists); returns the export folder and the export report."""
    roots = [train_root(data_dir), split_dir(data_dir, "eval")]
    if roots[1] is None:
        log(f"no eval split in {data_dir}: training on train/ alone")
        roots = roots[:1]
    # deferred: trainer.task imports this module and only trains; ONNX Runtime loads for the export alone
    from convert.export_savedmodel import convert_checkpoint

    run_dir = fresh_dir(Path(job_dir) / "checkpoint")
    jobs.train(cfg, run_dir, roots, log=log)
    export_dir = fresh_dir(Path(job_dir) / "exported_model")
    return export_dir, convert_checkpoint(run_dir / "model.pt", export_dir, images=roots[0])
