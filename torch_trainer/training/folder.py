"""A run folder's records: what may be written into it, and what --resume reads back from it
(RUN/config.json, the plan; RUN/data.json, what the run found; a model's last.pt, its training state)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mug_errors import InputError, NotFound, OutputExists
from torch_trainer.settings.plan import RunPlan
from torch_trainer.training.data import RunData


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """RUN, refused when it is not empty unless `overwrite` (created later, by `train_run`)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise OutputExists(f"{path}: output folder is not empty; pass --overwrite or choose another --output-dir")
    return path


def load_resume_state(run: str | Path) -> dict[str, Any]:
    """The training state saved in RUN/last.pt."""
    path = Path(run) / "last.pt"
    if not path.is_file():
        raise NotFound(f"--resume: {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "training_state" not in ckpt:
        raise InputError(f"--resume: {path} holds no training state")
    return ckpt["training_state"]


def read_run(run: str | Path) -> tuple[RunPlan, RunData]:
    """The plan of the run in RUN (RUN/config.json) and what it found (RUN/data.json)."""
    paths = [Path(run) / "config.json", Path(run) / "data.json"]
    for path in paths:
        if not path.is_file():
            raise NotFound(f"--resume: {path} not found (not a run folder of torch_trainer.train?)")
    plan, data = (json.loads(path.read_text()) for path in paths)
    try:
        return RunPlan.from_record(plan), RunData(**data)
    except (KeyError, TypeError) as err:
        raise InputError(f"--resume: {Path(run)}: not a run record of this version ({err}); train it again") from err


def write_run(out: Path, plan: RunPlan, data: RunData) -> None:
    """RUN/config.json (the plan) and RUN/data.json (what the run found), what `read_run` reads."""
    (out / "config.json").write_text(json.dumps(plan.record(), indent=2))
    (out / "data.json").write_text(json.dumps(data.record(), indent=2))
