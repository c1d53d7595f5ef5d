"""Class-per-folder mug datasets: discovery, strict checks, in-memory loading.

A data folder holds one sub-folder per class whose name starts with the class number
(`0white`, `1black`, `2blue`, `3transparent`). Images are decoded once, resized to the
model's input size with PIL and kept in memory as uint8 tensors: the data set is small
(2,000 images of 64x64) and decoding every epoch would dominate training on a CPU.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from mug_errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_ALIASES = {"train": ("train",), "eval": ("eval", "test")}
_CLASS_DIR = re.compile(r"^(\d+)")


class DatasetError(InputError):
    """The data folder breaks a rule; the message names the offending path."""


@dataclass(frozen=True)
class ClassFolder:
    label: int
    name: str
    path: Path


def find_classes(root: str | os.PathLike) -> list[ClassFolder]:
    """Return the class folders of `root` sorted by label, after checking the layout rules."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder does not exist")
    by_label: dict[int, ClassFolder] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        match = _CLASS_DIR.match(entry.name)
        if not match:
            raise DatasetError(f"{entry}: class folder name must start with its class number (e.g. 0white)")
        label = int(match.group(1))
        if label in by_label:
            raise DatasetError(f"{entry}: class number {label} is also used by {by_label[label].path}")
        by_label[label] = ClassFolder(label, entry.name, entry)
    if not by_label:
        raise DatasetError(f"{root}: no class folders (expected 0white/, 1black/, ...)")
    missing = sorted(set(range(max(by_label) + 1)) - set(by_label))
    if missing:
        raise DatasetError(f"{root}: class numbers must be 0..{max(by_label)} without gaps; missing {missing}")
    return [by_label[k] for k in sorted(by_label)]


def list_images(folder: Path) -> list[Path]:
    """Image files of one folder, hidden files ignored, in a stable order."""
    files = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: (len(p.stem), p.stem, p.suffix))


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Every image file of a class-per-folder tree (class by class), or of a flat folder."""
    folder = Path(folder)
    try:
        return [p for c in find_classes(folder) for p in list_images(c.path)]
    except DatasetError:
        if not folder.is_dir():
            raise
        return list_images(folder)


def split_dir(data_dir: str | os.PathLike, split: str) -> Path | None:
    """The folder of `split` under `data_dir` (`eval` also answers to `test`), or None."""
    for name in SPLIT_ALIASES[split]:
        candidate = Path(data_dir) / name
        if candidate.is_dir():
            return candidate
    return None


def load_image(path: str | os.PathLike | BinaryIO, size: int) -> torch.Tensor:
    """Decode an image file to a uint8 CHW RGB tensor of `size`x`size`.

    The resize is PIL's bilinear filter, which is antialiased when shrinking; the
    SavedModel reproduces it with `tf.image.resize(antialias=True)` for other sizes.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read image: {err}") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_images(files: Iterable[str | os.PathLike | BinaryIO | bytes], size: int) -> torch.Tensor:
    """Files, file objects or encoded bytes decoded as `load_image` does, as one uint8 NCHW batch."""
    return torch.stack([load_image(io.BytesIO(f) if isinstance(f, bytes) else f, size) for f in files])


class MugDataset(Dataset):
    """All images of one or more class-per-folder roots, decoded into memory.

    Items are `(image, label)` with `image` a uint8 CHW tensor; `TransformedSubset` adds
    augmentation or conversion on top.
    """

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike], input_size: int = 64,
                 progress: bool = False):
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.roots = [Path(r) for r in roots]
        self.class_names: list[str] = []
        self.paths: list[Path] = []
        labels: list[int] = []
        for root in self.roots:
            classes = find_classes(root)
            if not self.class_names:
                self.class_names = [c.name for c in classes]
            elif len(classes) != len(self.class_names):
                raise DatasetError(f"{root}: has {len(classes)} classes, {self.roots[0]} has {len(self.class_names)}")
            for c in classes:
                files = list_images(c.path)
                if not files:
                    raise DatasetError(f"{c.path}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
                self.paths += files
                labels += [c.label] * len(files)
        self.targets = torch.tensor(labels, dtype=torch.long)
        bar = tqdm(self.paths, desc="loading images", unit="img", leave=False, disable=not progress)
        try:
            self.images = load_images(bar, input_size)
        finally:
            bar.close()  # before an error message, so that it gets a line of its own

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])
