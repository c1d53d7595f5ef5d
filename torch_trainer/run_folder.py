"""A run folder's records: what may be written into it, and what --resume reads back from it
(RUN/config.json, the settings; RUN/last.pt, the training state)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mug_errors import InputError, NotFound, OutputExists, SettingsError
from torch_trainer.config import RETIRED, TrainConfig


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """RUN, refused when it is not empty unless `overwrite` (created later, by `train_models`)."""
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


def resume_config(run: str | Path) -> TrainConfig:
    """The settings of the interrupted run in RUN (RUN/config.json)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise NotFound(f"--resume: {path} not found (not a run folder of torch_trainer.train?)")
    values = json.loads(path.read_text())
    for key, off in RETIRED.items():
        if values.pop(key, off) != off:
            raise SettingsError(f"--resume: {path} sets {key}, an option that has been retired "
                                f"(docs/recipe-experiments.md); train that run with an older version")
    return TrainConfig(**values)
