"""Training pictures: the recipe's augmentation, and views of a decoded data set with or without it.

What changes from one shot to the next (framing, exposure, contrast, colour saturation) is
varied; what names the class (the mug's hue) is kept.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from torch_trainer.config import TrainConfig
from torch_trainer.data import MugDataset


class TransformedSubset(Dataset):
    """A view of a `MugDataset` (optionally a subset of its indices) with its own transform.

    Lets one decoded data set serve as both training (augmented) and validation (plain) data.
    """

    def __init__(self, base: MugDataset, indices: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.transform = transform
        self.class_names = base.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[self.indices[index]]
        return (self.transform(image) if self.transform is not None else image), label

    @property
    def targets(self) -> torch.Tensor:
        return self.base.targets[self.indices]


def train_transform(cfg: TrainConfig) -> v2.Transform:
    """Augmentation for uint8 CHW tensors: a random crop, a mirror image and lighting jitter."""
    return v2.Compose([
        v2.RandomResizedCrop(cfg.input_size, scale=(cfg.crop_scale, 1.0), ratio=(0.75, 1.33), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation, hue=cfg.hue),
        v2.ToDtype(torch.float32, scale=True),
    ])


def train_view(data: MugDataset, indices: Sequence[int] | None, cfg: TrainConfig) -> TransformedSubset:
    """`data` (or the `indices` of it) as augmented training samples."""
    return TransformedSubset(data, indices, train_transform(cfg))


def eval_transform() -> v2.Transform:
    """Plain pictures for validation and evaluation: uint8 to float [0, 1], nothing else."""
    return v2.ToDtype(torch.float32, scale=True)


def eval_view(data: MugDataset, indices: Sequence[int] | None = None) -> TransformedSubset:
    """`data` (or the `indices` of it) as plain samples, for validation and evaluation."""
    return TransformedSubset(data, indices, eval_transform())
