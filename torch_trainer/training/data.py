"""A run's data: its class folders decoded once, the photos it validates on, and what it found
(`RunData`: the folders, the photos held out), recorded beside its plan in RUN/data.json.

Without a validation folder a share of the training photos can be held out, drawn in whole
groups of near-identical burst frames, so that no frame's twin is on the other side of the split:
from each class as a whole (`bursts`), or shoot by shoot so that every shoot keeps most of its
photos in training (`shoots`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch.utils.data import Dataset

from torch_trainer.classifier.photos import DatasetError, MugDataset
from torch_trainer.settings.plan import RunPlan
from torch_trainer.training import distributed
from torch_trainer.training.augment import eval_view, train_view

PathLike = str | os.PathLike
# held-out groups: frames whose thumbnails are closer than this are one burst
NEAR_DUPLICATE_THRESHOLD = 0.15
# a coarser link joins a shoot's bursts: on ML6's photos it finds each class's two shoots of 250
SHOOT_THRESHOLD = 0.5
# how held-out photos are drawn: whole bursts from each class, or from each shoot of each class
HOLD_OUTS = ("bursts", "shoots")


@dataclass(frozen=True)
class RunData:
    """What a run trained and validated on, as it found it: what --resume reads back."""
    train_dirs: list[str]              # the training folders
    val_dir: str | None = None         # the validation folder, if any
    val_files: list[str] = field(default_factory=list)  # the training photos held out to validate on
                                       # (--resume validates on the same ones and never trains on them)
    held_out_by: str | None = None     # how they were drawn (HOLD_OUTS), if held out

    def record(self) -> dict:
        """The record as JSON (RUN/data.json, the checkpoints' meta)."""
        return asdict(self)


def load_data(plan: RunPlan, train_dirs: PathLike | Sequence[PathLike], val_dir: PathLike | None = None,
              hold_out: float = 0.0, val_files: Sequence[str] = (), held_out_by: str = "bursts",
              log: Callable[..., None] = print) -> tuple[Dataset, Dataset | None, list[str], RunData]:
    """(training samples, validation samples or None, class names, what was found) of class-per-folder
    data at the plan's input size.

    Without `val_dir`, `hold_out` > 0 validates on that share of the training photos, drawn in
    whole groups of near-identical frames (the plan's seed picks the groups) from each class
    (`held_out_by` "bursts") or from each shoot of each class ("shoots"); `val_files` (what a
    resumed run recorded) holds out exactly those photos instead."""
    if held_out_by not in HOLD_OUTS:
        raise ValueError(f"held_out_by: {held_out_by!r} is not one of {', '.join(HOLD_OUTS)}")
    train_dirs = [train_dirs] if isinstance(train_dirs, (str, os.PathLike)) else list(train_dirs)
    train = MugDataset(train_dirs, plan.input_size, progress=distributed.is_main())
    found = RunData([str(Path(d).resolve()) for d in train_dirs], str(Path(val_dir).resolve()) if val_dir else None)
    if val_dir:
        val = MugDataset(val_dir, plan.input_size, progress=distributed.is_main())
        if val.num_classes != train.num_classes:
            raise DatasetError(f"{val_dir}: has {val.num_classes} classes, training data has {train.num_classes}")
        return train_view(train), eval_view(val), train.class_names, found
    if val_files:  # a resumed run: the photos it held out when it started, whatever hold_out says now
        position = {str(path.resolve()): i for i, path in enumerate(train.paths)}
        missing = [f for f in val_files if f not in position]
        if missing:
            raise DatasetError(f"{missing[0]}: held out for validation when the run started, but no longer "
                               f"among the training images ({len(missing)} missing)")
        val_idx = sorted(position[f] for f in val_files)
        log(f"validating on the {len(val_idx)} training images the run held out")
    elif hold_out > 0:
        groups = near_duplicate_groups(train.images, NEAR_DUPLICATE_THRESHOLD)
        shoots = near_duplicate_groups(train.images, SHOOT_THRESHOLD) if held_out_by == "shoots" else None
        _, val_idx = group_split(train.targets, groups, hold_out, plan.seed, shoots)
        within = "" if shoots is None else (f", from each of the {len(set(zip(train.targets.tolist(), shoots)))} "
                                            f"shoots of its classes")
        log(f"no validation folder: holding out {len(val_idx)} of {len(train)} training images in "
            f"{len(set(groups[val_idx]))} groups of near-identical frames{within}")
    else:
        return train_view(train), None, train.class_names, found
    held = set(val_idx)
    found = replace(found, val_files=[str(train.paths[i].resolve()) for i in val_idx], held_out_by=held_out_by)
    return (train_view(train, [i for i in range(len(train)) if i not in held]), eval_view(train, val_idx),
            train.class_names, found)


def near_duplicate_groups(images: torch.Tensor, threshold: float = 0.15) -> np.ndarray:
    """Group ids such that images closer than `threshold` share a group (single linkage).

    Burst frames differ by a few pixels; comparing 16x16 grey thumbnails (mean-removed,
    scaled to unit RMS) links such frames, and the transitive closure keeps a whole
    burst together, so a split on groups cannot put a frame's twin on the other side.
    """
    thumbs = torch.nn.functional.interpolate(images.float().mean(1, keepdim=True), size=(16, 16),
                                             mode="area").flatten(1)
    thumbs = thumbs - thumbs.mean(1, keepdim=True)
    thumbs = thumbs / thumbs.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-6)
    dist = torch.cdist(thumbs, thumbs) / np.sqrt(thumbs.shape[1])
    _, groups = connected_components(csr_matrix((dist < threshold).numpy()), directed=False)
    return groups


def group_split(targets: torch.Tensor, groups: np.ndarray, val_fraction: float = 0.2, seed: int = 0,
                shoots: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Split indices into train/val per class so that no group straddles the split.

    Whole groups are drawn at random into validation until each class reaches
    `val_fraction`; a class that forms a single group stays entirely in train. Not scikit-learn's
    StratifiedGroupKFold: it deals groups out largest first and shuffles only ties, so on ML6's
    images it gave one split for every seed, with 2blue's 245-frame burst in validation (82 white,
    83 black, 245 blue, 100 glass); this draw gave 100-154 per class, another split per seed.

    With `shoots` (a shoot id per image, groups nested in shoots) the draw runs shoot by shoot
    within each class and skips a group that would hold out more than twice `val_fraction` of its
    shoot. Drawn per class, seed 6 held out 245 of one blue shoot's 250 photos: its models saw one
    shoot of blue and called the other black, which the main job (both shoots) never did on the
    withheld scene.
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets)
    val: list[int] = []
    for label in np.unique(targets):
        idx = np.flatnonzero(targets == label)
        strata = [idx] if shoots is None else [idx[shoots[idx] == shoot] for shoot in np.unique(shoots[idx])]
        for stratum in strata:
            val += draw_groups(stratum, groups, val_fraction, rng, 1.0 if shoots is None else 2 * val_fraction)
    val_set = set(val)
    train = [i for i in range(len(targets)) if i not in val_set]
    return train, sorted(val)


def draw_groups(idx: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator,
                most: float) -> list[int]:
    """Whole groups of `idx` drawn at random until `fraction` of it is taken, skipping a group that
    would take more than `most` of it; at least one group always stays."""
    drawn = np.unique(groups[idx])
    rng.shuffle(drawn)
    taken: list[int] = []
    for g in drawn[:-1]:
        if len(taken) >= fraction * len(idx):
            break
        members = idx[groups[idx] == g]
        if len(taken) + len(members) <= most * len(idx):
            taken += members.tolist()
    return taken
