"""The gcloud entry points' jobs (`train_and_evaluate` for trainer.task, `train_and_export` for
trainer.final_task) and their command line: ML6's folder layout (DATA/train, DATA/eval) and job
folder (JOB_DIR/...) on top of `torch_trainer.training.jobs.train` and `convert.export_savedmodel`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from torch_trainer.training import jobs
from torch_trainer.training.data import HOLD_OUTS
from torch_trainer.settings.plan import RunPlan
from torch_trainer.settings.flags import parse_args
from torch_trainer.classifier.photos import DatasetError, split_dir
from torch_trainer.classifier.report import classification_report

# Without an eval split, trainer.task validates on this share of train (in groups of near-identical frames).
VAL_FRACTION = 0.2


def parse_job_args(argv: Sequence[str] | None, description: str, held_out: bool = False
                   ) -> tuple[argparse.Namespace, RunPlan]:
    """--data-dir, --job-dir, --recipe and every training flag (defaults from the recipe, which
    defaults to torch_trainer.settings.plan.DEFAULT_RECIPE); with `held_out`, --held-out too
    (how trainer.task draws its validation photos without an eval split).

    An argument it does not know stops it (exit 2, naming the argument): a misspelt flag would
    otherwise train the default. What gcloud adds (`--job-dir`, from its own `--job-dir`) is ours.
    """
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--data-dir", default="data", help="folder holding train/ and optionally eval/ (or test/)")
    parser.add_argument("--job-dir", default="output", help="where checkpoints and the export go: a folder, or a "
                                                            "gs:// URL (gcloud passes its --job-dir here)")
    if held_out:
        parser.add_argument("--held-out", choices=HOLD_OUTS, default="bursts",
                            help=f"without an eval split, {VAL_FRACTION * 100:.0f}%% of train validates, in whole groups of "
                                 "near-identical frames drawn from each class (bursts: it may take a whole shoot of "
                                 "a class) or from each shoot of each class, none losing over twice that share "
                                 "(shoots) (default %(default)s)")
    return parse_args(parser, argv)


def train_root(data_dir: str | Path) -> Path:
    """DATA/train, or a DatasetError that says how to get ML6's data."""
    root = split_dir(data_dir, "train")
    if root is None:
        raise DatasetError(f"{data_dir}: no train/ folder (get the data with: "
                           "gsutil -m cp -R gs://ml6_junior_ml_engineer_challenge_cv_mugs_data/data .)")
    return root


def is_url(path: str | Path) -> bool:
    """Whether a --job-dir is a URL (gs://bucket/job, which `gcloud ai-platform jobs submit training`
    passes) rather than a local folder."""
    return "://" in str(path)


def fresh_dir(path: str | Path, exists: Callable[[str], bool] = os.path.exists) -> str:
    """`path` if it does not exist yet, else `path_YYYYmmdd-HHMMSS` (as ML6's final_task does);
    `exists` asks the filesystem (tf.io.gfile.exists for a URL)."""
    path = str(path)
    if not exists(path):
        return path
    stamped = f"{path}_{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while exists(stamped):
        stamped = f"{path}_{time.strftime('%Y%m%d-%H%M%S')}_{n}"
        n += 1
    return stamped


def upload(local: Path, url: str) -> str:
    """Copy the folder `local` to `url` with tf.io.gfile (gs://, or any filesystem TensorFlow knows),
    into a fresh name if `url` exists; returns where it went."""
    import tensorflow as tf  # deferred: only a job dir that is a URL needs TensorFlow's filesystems
    url = fresh_dir(url.rstrip("/"), tf.io.gfile.exists)
    for root, _, files in os.walk(local):
        relative = Path(root).relative_to(local).as_posix()
        target = url if relative == "." else f"{url}/{relative}"
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), f"{target}/{name}", overwrite=False)
    return url


@contextmanager
def job_folder(job_dir: str | Path) -> Iterator[tuple[Path, Callable[[Path], str]]]:
    """(a local job folder, publish): JOB_DIR itself and a no-op, or for a URL a temporary local
    folder and `upload` to JOB_DIR/NAME (removed once the job ends): training and the export's
    checks need local files, and a URL must never become a local `gs:` folder."""
    if not is_url(job_dir):
        yield Path(job_dir), str
        return
    local = Path(tempfile.mkdtemp(prefix="job-"))
    try:
        yield local, lambda folder: upload(folder, f"{str(job_dir).rstrip('/')}/{folder.relative_to(local).as_posix()}")
    finally:
        shutil.rmtree(local, ignore_errors=True)


def train_and_evaluate(run: RunPlan, data_dir: str | Path, job_dir: str | Path, held_out_by: str = "bursts",
                       log: Callable[..., None] = print) -> tuple[str, dict[str, Any]]:
    """Train on DATA/train and validate on DATA/eval (or, without it, on VAL_FRACTION of train held
    out in groups of near-identical frames, drawn by `held_out_by`) in a new JOB_DIR/task_run;
    returns the run folder and the validation report (also RUN/eval_report.json). JOB_DIR may be a
    gs:// URL."""
    eval_root = split_dir(data_dir, "eval")
    with job_folder(job_dir) as (local, publish):
        run_dir = Path(fresh_dir(local / "task_run"))
        metrics = jobs.train(run, run_dir, train_root(data_dir), eval_root,
                             hold_out=VAL_FRACTION if eval_root is None else 0.0, held_out_by=held_out_by, log=log)
        report = classification_report(metrics["val_predictions"], metrics["val_targets"], metrics["class_names"])
        (run_dir / "eval_report.json").write_text(json.dumps(report, indent=2))
        return publish(run_dir), report


def train_and_export(run: RunPlan, data_dir: str | Path, job_dir: str | Path,
                     log: Callable[..., None] = print) -> tuple[str, dict[str, Any]]:
    """Train on DATA/train and DATA/eval together (train alone without eval) in a new
    JOB_DIR/checkpoint, then export the SavedModel to JOB_DIR/exported_model (a timestamped name
    beside it if that exists); returns the export folder and the export report. JOB_DIR may be a
    gs:// URL: both are built and checked locally, then copied there."""
    roots = [train_root(data_dir), split_dir(data_dir, "eval")]
    if roots[1] is None:
        log(f"no eval split in {data_dir}: training on train/ alone")
        roots = roots[:1]
    # deferred: trainer.task imports this module and only trains; ONNX Runtime loads for the export alone
    from convert.export_savedmodel import convert_checkpoint

    with job_folder(job_dir) as (local, publish):
        run_dir = Path(fresh_dir(local / "checkpoint"))
        jobs.train(run, run_dir, roots, log=log)
        export_dir = Path(fresh_dir(local / "exported_model"))
        report = convert_checkpoint(run_dir / "model.pt", export_dir, images=roots[0])
        checkpoint = publish(run_dir)
        if checkpoint != str(run_dir):
            log(f"copied {run_dir} to {checkpoint}")
        return publish(export_dir), report
