"""Command line and output folders shared by the gcloud entry points."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from torch_trainer.config import TrainConfig, parse_args
from torch_trainer.data import DatasetError, split_dir


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
