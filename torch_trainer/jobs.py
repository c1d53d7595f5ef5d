"""The training side's jobs, one call each: settings in, results out, and errors of the project's
family (`mug_errors`) that say what to do. The command lines (`torch_trainer.train`, the gcloud
tasks in `trainer`) parse flags, call one of these and print what it returns; cross-scene
validation is `torch_trainer.cross_scene.validate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from torch.utils.data import Dataset

from torch_trainer import distributed
from torch_trainer.augment import eval_view, train_view
from torch_trainer.config import RunConfig
from torch_trainer.data import DatasetError, MugDataset, group_split, near_duplicate_groups
from torch_trainer.runs import train_run
from torch_trainer.run_folder import check_output_dir, resume_config
from torch_trainer.model import class_probabilities, load_checkpoint
from torch_trainer.report import score_predictions

PathLike = str | os.PathLike
# Without validation data, `hold_out` of train is set aside in groups of near-identical burst frames
# (thumbnail distance below this), so that no frame's twin is on the other side of the split.
NEAR_DUPLICATE_THRESHOLD = 0.15


def load_data(run: RunConfig, train_dirs: PathLike | Sequence[PathLike], val_dir: PathLike | None = None,
              hold_out: float = 0.0, log: Callable[..., None] = print
              ) -> tuple[Dataset, Dataset | None, list[str]]:
    """(training samples, validation samples or None, class names) of class-per-folder data at the
    run's input size, and the folders recorded in `run` (what --resume reads them back from).

    Without `val_dir`, `hold_out` > 0 validates on that share of the training images, drawn in
    whole groups of near-identical frames (`run.seed` picks the groups), recorded as
    `run.val_files`; a `run` that already records them (a resumed run) holds out exactly those."""
    train_dirs = [train_dirs] if isinstance(train_dirs, (str, os.PathLike)) else list(train_dirs)
    train = MugDataset(train_dirs, run.input_size, progress=distributed.is_main())
    run.train_dirs = [str(Path(d).resolve()) for d in train_dirs]
    run.val_dir = str(Path(val_dir).resolve()) if val_dir else None
    if val_dir:
        val = MugDataset(val_dir, run.input_size, progress=distributed.is_main())
        if val.num_classes != train.num_classes:
            raise DatasetError(f"{val_dir}: has {val.num_classes} classes, training data has {train.num_classes}")
        return train_view(train), eval_view(val), train.class_names
    if run.val_files:  # a resumed run: the images it held out when it started, whatever hold_out says now
        position = {str(path.resolve()): i for i, path in enumerate(train.paths)}
        missing = [f for f in run.val_files if f not in position]
        if missing:
            raise DatasetError(f"{missing[0]}: held out for validation when the run started, but no longer "
                               f"among the training images ({len(missing)} missing)")
        val_idx = sorted(position[f] for f in run.val_files)
        held = set(val_idx)
        log(f"validating on the {len(val_idx)} training images the run held out")
        return train_view(train, [i for i in range(len(train)) if i not in held]), eval_view(train, val_idx), \
            train.class_names
    if hold_out > 0:
        groups = near_duplicate_groups(train.images, NEAR_DUPLICATE_THRESHOLD)
        train_idx, val_idx = group_split(train.targets, groups, hold_out, run.seed)
        run.val_files = [str(train.paths[i].resolve()) for i in val_idx]
        log(f"no validation folder: holding out {len(val_idx)} of {len(train)} training images in "
            f"{len(set(groups[val_idx]))} groups of near-identical frames")
        return train_view(train, train_idx), eval_view(train, val_idx), train.class_names
    return train_view(train), None, train.class_names


def train(run: RunConfig, output_dir: PathLike, train_dirs: PathLike | Sequence[PathLike],
          val_dir: PathLike | None = None, *, hold_out: float = 0.0, overwrite: bool = False,
          stop_after: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Train `run`'s models on `train_dirs` into the run folder `output_dir` (refused if it holds
    anything, unless `overwrite`); returns the run's metrics (also RUN/metrics.json).

    Under torchrun each process calls this and trains its share (DistributedDataParallel)."""
    with distributed.process_group():
        out = check_output_dir(output_dir, overwrite)
        distributed.barrier()  # every rank has checked RUN before rank 0 writes into it
        train_set, val_set, class_names = load_data(run, train_dirs, val_dir, hold_out, log)
        metrics = train_run(run, train_set, val_set, class_names, out, log=log, stop_after=stop_after)
        return resume_hint(metrics, out, log)


def resume(run_dir: PathLike, stop_after: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Continue the interrupted run in `run_dir` with the settings and data it started with."""
    with distributed.process_group():
        run = resume_config(run_dir)
        train_set, val_set, class_names = load_data(run, run.train_dirs, run.val_dir, log=log)
        metrics = train_run(run, train_set, val_set, class_names, Path(run_dir), log=log, resume=True,
                            stop_after=stop_after)
        return resume_hint(metrics, run_dir, log)


def resume_hint(metrics: dict[str, Any], run_dir: PathLike, log: Callable[..., None]) -> dict[str, Any]:
    """`metrics`, once the log says how to finish a run that stopped early."""
    if not metrics["complete"] and distributed.is_main():
        log(f"the run stopped before it was complete; continue with --resume {run_dir}")
    return metrics


def evaluate_checkpoint(checkpoint: PathLike, data_dir: PathLike, output_dir: PathLike | None = None,
                        batch_size: int = 256) -> dict[str, Any]:
    """Score a checkpoint on labelled class folders, the images loaded at its input size as it was
    trained; returns `score_predictions`' report (with `output_dir`, also its JSON and pictures)."""
    model, meta = load_checkpoint(checkpoint)
    data = MugDataset(data_dir, meta["input_size"], progress=True)
    preds = class_probabilities(model, data.images, batch_size).argmax(1)
    return score_predictions(data, preds, output_dir)
