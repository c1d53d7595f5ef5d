"""Find the photo shoots inside each class, for validation on scenes the model has not seen.

ML6's training images come as bursts of frames per shoot, each shoot on its own background
and exposure. Ward clustering of 8x8 colour thumbnails separates them: on ML6's 2,000
images it splits every class into its two shoots of 250 frames exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage

from mug_errors import InputError, SettingsError


def find_shoots(images: torch.Tensor, targets: torch.Tensor, shoots_per_class: int = 2) -> np.ndarray:
    """Shoot index (0..shoots_per_class-1) of each image, clustered within its class.

    Shoot 0 of a class is the cluster holding the class's first image, so the numbering is
    stable for a given data set.
    """
    thumbs = F.interpolate(images.float() / 255, size=(8, 8), mode="area").flatten(1).numpy()
    targets = np.asarray(targets)
    shoots = np.zeros(len(targets), dtype=int)
    for label in np.unique(targets):
        idx = np.flatnonzero(targets == label)
        if len(idx) < shoots_per_class:
            raise InputError(f"class {label} has {len(idx)} images, fewer than {shoots_per_class} shoots")
        clusters = fcluster(linkage(thumbs[idx], "ward"), shoots_per_class, "maxclust")
        order = list(dict.fromkeys(clusters))  # first-seen order
        shoots[idx] = [order.index(c) for c in clusters]
    return shoots


def folds(shoots: np.ndarray, targets: np.ndarray, protocol: str) -> list[tuple[str, np.ndarray]]:
    """(name, held-out mask) of every fold of `protocol`: "shoot" holds out shoot k of every class
    (fold k), "class-shoot" shoot k of class c alone (fold (c, k))."""
    if protocol == "shoot":
        return [(f"fold{k}", shoots == k) for k in range(int(shoots.max()) + 1)]
    if protocol == "class-shoot":
        return [(f"class{c}_shoot{k}", (targets == c) & (shoots == k))
                for c in np.unique(targets) for k in np.unique(shoots[targets == c])]
    raise SettingsError(f"--protocol: unknown protocol {protocol!r} (shoot or class-shoot)")
