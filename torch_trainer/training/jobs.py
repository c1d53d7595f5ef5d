"""The training side's jobs, one call each: settings in, results out, and errors of the project's
family (`mug_errors`) that say what to do. The command lines (`torch_trainer.train`, the gcloud
tasks in `trainer`) parse flags, call one of these and print what it returns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from torch_trainer.settings.plan import RunPlan
from torch_trainer.training import distributed
from torch_trainer.training.data import load_data
from torch_trainer.training.folder import check_output_dir, read_run
from torch_trainer.training.run import train_run

PathLike = str | os.PathLike


def train(plan: RunPlan, output_dir: PathLike, train_dirs: PathLike | Sequence[PathLike],
          val_dir: PathLike | None = None, *, hold_out: float = 0.0, held_out_by: str = "bursts",
          overwrite: bool = False, stop_after: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Train `plan`'s models on `train_dirs` into the run folder `output_dir` (refused if it holds
    anything, unless `overwrite`); returns the run's metrics (also RUN/metrics.json).

    Without `val_dir`, `hold_out` of the training photos validate, drawn by `held_out_by`
    (`torch_trainer.training.data`).
    Under torchrun each process calls this and trains its share (DistributedDataParallel)."""
    with distributed.process_group():
        out = check_output_dir(output_dir, overwrite)
        distributed.barrier()  # every rank has checked RUN before rank 0 writes into it
        train_set, val_set, class_names, data = load_data(plan, train_dirs, val_dir, hold_out,
                                                          held_out_by=held_out_by, log=log)
        metrics = train_run(plan, data, train_set, val_set, class_names, out, log=log, stop_after=stop_after)
        return resume_hint(metrics, out, log)


def resume(run_dir: PathLike, stop_after: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Continue the interrupted run in `run_dir` with the plan and data it started with."""
    with distributed.process_group():
        plan, recorded = read_run(run_dir)
        train_set, val_set, class_names, data = load_data(plan, recorded.train_dirs, recorded.val_dir,
                                                          val_files=recorded.val_files, log=log,
                                                          held_out_by=recorded.held_out_by or "bursts")
        metrics = train_run(plan, data, train_set, val_set, class_names, Path(run_dir), log=log, resume=True,
                            stop_after=stop_after)
        return resume_hint(metrics, run_dir, log)


def resume_hint(metrics: dict[str, Any], run_dir: PathLike, log: Callable[..., None]) -> dict[str, Any]:
    """`metrics`, once the log says how to finish a run that stopped early."""
    if not metrics["complete"] and distributed.is_main():
        log(f"the run stopped before it was complete; continue with --resume {run_dir}")
    return metrics
