"""A run folder's records: what may be written into it, and what --resume reads back from it
(RUN/config.json, the run; a model's last.pt, its training state)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from mug_errors import InputError, NotFound, OutputExists, SettingsError
from torch_trainer.config import RETIRED, Family, RunConfig, family_models, family_name, setting_defaults


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


def resume_config(run: str | Path) -> RunConfig:
    """The run in RUN, as RUN/config.json recorded it (and, for a run recorded before families were
    lists of models, 2026-12-05, with the settings of each family in RUN/families.json)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise NotFound(f"--resume: {path} not found (not a run folder of torch_trainer.train?)")
    values = json.loads(path.read_text())
    if all(isinstance(f, dict) and "models" in f for f in values.get("families") or [None]):
        return RunConfig.from_record(values)
    # the older record: one flat set of settings, for the run's one family or beside its families' records
    records = {f.name: values.pop(f.name) for f in fields(RunConfig) if f.name != "families" and f.name in values}
    entries = values.pop("families", [])
    if entries and not (Path(run) / "families.json").is_file():
        raise NotFound(f"--resume: {Path(run) / 'families.json'} not found: the run recorded its families' "
                       f"settings there")
    flats = json.loads((Path(run) / "families.json").read_text()) if entries else [values]
    names = [family_name(e) for e in entries] or [Path(records.get("recipe", "run")).stem]
    families, settings = [], setting_defaults()
    for name, flat in zip(names, flats):
        for key, off in RETIRED.items():
            if flat.pop(key, off) != off:
                raise SettingsError(f"--resume: {path} sets {key}, an option that has been retired "
                                    f"(docs/recipe-experiments.md); train that run with an older version")
        families.append(Family(name, family_models({k: v for k, v in flat.items() if k in settings}, name)))
    return RunConfig(families, **records)
