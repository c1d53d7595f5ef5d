"""Class-per-folder mug datasets: discovery, strict checks, in-memory loading, group splits.

A data folder holds one sub-folder per class whose name starts with the class number
(`0white`, `1black`, `2blue`, `3transparent`). Images are decoded once, resized to the
model's input size with PIL and kept in memory as uint8 tensors: the data set is small
(2,000 images of 64x64) and decoding every epoch would dominate training on a CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from torch_trainer.model import IMAGENET_MEAN, IMAGENET_STD

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_ALIASES = {"train": ("train",), "eval": ("eval", "test"), "test": ("eval", "test")}
_CLASS_DIR = re.compile(r"^(\d+)")


class DatasetError(ValueError):
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
    """Image files of one class folder, hidden files ignored, in a stable order."""
    files = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: (len(p.stem), p.stem, p.suffix))


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


class MugDataset(Dataset):
    """All images of one or more class-per-folder roots, decoded into memory.

    Items are `(image, label)` with `image` a uint8 CHW tensor; `TransformedSubset` adds
    augmentation or conversion on top.
    """

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike], input_size: int = 64,
                 progress: bool = False):
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.roots = [Path(r) for r in roots]
        self.input_size = input_size
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
        paths = self.paths
        if progress:
            from tqdm import tqdm
            paths = tqdm(paths, desc="loading images", unit="img", leave=False)
        self.images = torch.stack([load_image(p, input_size) for p in paths])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


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
    parent = np.arange(len(images))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in torch.nonzero(torch.triu(dist < threshold, diagonal=1)).tolist():
        parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(images))])
    return np.unique(roots, return_inverse=True)[1]


def group_split(targets: torch.Tensor, groups: np.ndarray, val_fraction: float = 0.2,
                seed: int = 0) -> tuple[list[int], list[int]]:
    """Split indices into train/val per class so that no group straddles the split.

    Whole groups are drawn at random into validation until each class reaches
    `val_fraction`; a class that forms a single group stays entirely in train.
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets)
    val: list[int] = []
    for label in np.unique(targets):
        idx = np.flatnonzero(targets == label)
        class_groups = np.unique(groups[idx])
        rng.shuffle(class_groups)
        want, taken = val_fraction * len(idx), 0
        for g in class_groups[:-1]:  # always leave at least one group for training
            if taken >= want:
                break
            members = idx[groups[idx] == g]
            val += members.tolist()
            taken += len(members)
    val_set = set(val)
    train = [i for i in range(len(targets)) if i not in val_set]
    return train, sorted(val)


class TransformedSubset(Dataset):
    """A view of a `MugDataset` (optionally a subset of its indices) with its own transform.

    Lets one decoded data set serve as both training (augmented) and validation (plain) data.
    With `views` > 1 each item is that many independently augmented pictures of one photo,
    stacked as [views, C, H, W] (for a consistency loss between them).
    """

    def __init__(self, base: MugDataset, indices: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, background_swap: float = 0.0,
                 swap: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, views: int = 1):
        if views < 1:
            raise ValueError(f"views must be at least 1, not {views}")
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.transform = transform
        self.background_swap = background_swap
        self.swap = swap or swap_background
        self.views = views
        self.class_names = base.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[self.indices[index]]
        if self.views == 1:
            return self._augment(image), label
        return torch.stack([self._augment(image) for _ in range(self.views)]), label

    def _augment(self, image: torch.Tensor) -> torch.Tensor:
        if self.background_swap and torch.rand(()) < self.background_swap:
            other = self.base.images[self.indices[int(torch.randint(len(self.indices), ()))]]
            image = self.swap(image, other)
        return self.transform(image) if self.transform is not None else image

    @property
    def targets(self) -> torch.Tensor:
        return self.base.targets[self.indices]


def border_pixels(x: torch.Tensor, ring: int = 4) -> torch.Tensor:
    """The [C, N] pixels of a CHW picture's outer `ring` (its table or floor, in these photos)."""
    c = x.shape[0]
    return torch.cat([x[:, :ring].reshape(c, -1), x[:, -ring:].reshape(c, -1),
                      x[:, :, :ring].reshape(c, -1), x[:, :, -ring:].reshape(c, -1)], 1)


def object_mask(image: torch.Tensor, ring: int = 4, threshold: float = 0.12) -> torch.Tensor | None:
    """A soft [H, W] mask of what stands out from the photo's border colour (the mug on a plain
    table or floor), or None where that finds too little or too much (a clear glass, clutter)."""
    x = image.float() / 255
    border = border_pixels(x, ring)
    centre = border.median(1, keepdim=True).values
    texture = (border - centre).abs().mean()  # a grainy carpet needs a higher threshold than a table
    fg = ((x - centre[:, :, None]).abs().amax(0) > threshold + 2 * texture).float()[None, None]
    fg = -F.max_pool2d(-F.max_pool2d(fg, 5, 1, 2), 5, 1, 2)  # close holes (a logo, a highlight)
    fg = F.avg_pool2d(F.max_pool2d(fg, 3, 1, 1), 5, 1, 2, count_include_pad=False)[0, 0]
    return fg if 0.08 <= float(fg.mean()) <= 0.7 else None


def ellipse_mask(h: int, w: int) -> torch.Tensor:
    """A random soft ellipse near the centre, where the mug is in these photos."""
    cy, cx = h / 2 + (torch.rand(()) - 0.5) * 0.2 * h, w / 2 + (torch.rand(()) - 0.5) * 0.2 * w
    ry, rx = (0.32 + 0.14 * torch.rand(())) * h, (0.32 + 0.14 * torch.rand(())) * w
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dist = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    return (1.15 - dist).clamp(0, 0.3) / 0.3  # 1 inside, soft edge, 0 outside


def log_uniform(limit: float) -> torch.Tensor:
    """A random factor in [1/limit, limit], as likely to darken as to brighten."""
    return limit ** (2 * torch.rand(()) - 1)


class RandomExposure(torch.nn.Module):
    """Scale a float [0, 1] picture by a factor drawn log-uniformly from [1/limit, limit] and
    clip, as a camera exposed one or two stops differently would: the scene sets the exposure,
    so the same mug is grey under one and glowing under another."""

    def __init__(self, limit: float):
        super().__init__()
        if limit < 1:
            raise ValueError(f"exposure limit must be >= 1, not {limit}")
        self.limit = limit

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image * log_uniform(self.limit)).clamp(0, 1)


class RandomLumaInvert(torch.nn.Module):
    """With probability `p`, turn a float [0, 1] picture's brightness upside down and keep its
    colour: every pixel's luma Y (BT.601) becomes 1 - Y, its chroma (R - Y, B - Y) stays, then
    clip. A white mug becomes a dark one with the same red-and-blue logo, a black mug a light one
    with its lettering dark: the brightness of a mug and of its floor stops naming the class,
    and what stays (the logo, the glaze's hue, the glass's facets) has to."""

    LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"luma inversion probability must be in [0, 1], not {p}")
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        luma = (image * self.LUMA).sum(0, keepdim=True)
        return (image + 1 - 2 * luma).clamp(0, 1)


class RandomConvolution(torch.nn.Module):
    """With probability `p`, filter a float [0, 1] picture with a freshly drawn random 3->3
    convolution and blend it with the original (RandConv, Xu et al. 2021).

    The kernel (size drawn from `kernel_sizes`, He-normal weights) scrambles colour and local
    texture while keeping the outlines, so a model cannot lean on the exact tint of a scene; the
    blend weight, drawn uniformly, keeps the original picture's share anywhere from 0 to 1.
    It filters the ImageNet-standardised picture, as the model sees it, and clips the result.
    """

    MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __init__(self, p: float, kernel_sizes: Sequence[int] = (1, 3, 5, 7)):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"random convolution probability must be in [0, 1], not {p}")
        self.p, self.kernel_sizes = p, tuple(kernel_sizes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        k = self.kernel_sizes[int(torch.randint(len(self.kernel_sizes), ()))]
        weight = torch.randn(3, 3, k, k) * (2.0 / (3 * k * k)) ** 0.5
        x = (image - self.MEAN) / self.STD
        filtered = F.conv2d(x[None], weight, padding=k // 2)[0]
        alpha = torch.rand(())
        return ((alpha * x + (1 - alpha) * filtered) * self.STD + self.MEAN).clamp(0, 1)


def random_backdrop(h: int, w: int) -> torch.Tensor:
    """A made-up floor or table, as float [3, H, W] pixels 0..255: any brightness from near
    black to near white, a slight colour cast, a lighting gradient and some grain."""
    level = 20 + 215 * torch.rand(())
    tint = 1 + 0.3 * (torch.rand(3, 1, 1) - 0.5)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    slope = 40 * (torch.rand(2) - 0.5)
    grain = torch.randn(1, 1, h, w) * 25 * torch.rand(())
    if torch.rand(()) < 0.5:
        grain = F.avg_pool2d(grain, 3, 1, 1, count_include_pad=False) * 2
    return (level * tint + slope[0] * yy + slope[1] * xx + grain[0]).clamp(0, 255)


def swap_background(image: torch.Tensor, other: torch.Tensor, gain: float = 1.0, mask: str = "ellipse",
                    object_gain: float = 1.0, synthetic: float = 0.0) -> torch.Tensor:
    """Keep the mug of `image` and take the rest from `other`, a photo of any class: backgrounds
    then stop telling classes apart. `mask` "ellipse" keeps a random soft ellipse around the
    centre (with some of the mug's own surroundings); "object" keeps what stands out from the
    border colour (`object_mask`), falling back to the ellipse where that fails.

    With `gain` > 1 the new background is brightened or darkened by a factor drawn log-uniformly
    from [1/gain, gain], then the whole picture is rescaled to `image`'s mean brightness, as a
    camera's auto-exposure would: a white mug on a bright table comes out grey, a black mug on
    a dark floor comes out lighter, which is how exposure shifts from one scene to the next.
    With `object_gain` > 1 the kept mug alone is scaled by a factor in [1/object_gain,
    object_gain]. With probability `synthetic` the new background is `random_backdrop` instead
    of `other`.
    """
    if mask not in ("ellipse", "object"):
        raise ValueError(f"background mask must be 'ellipse' or 'object', not {mask!r}")
    _, h, w = image.shape
    keep = object_mask(image) if mask == "object" else None
    if keep is None:
        keep = ellipse_mask(h, w)
    if synthetic and torch.rand(()) < synthetic:
        background = random_backdrop(h, w)
    else:
        background = other.float()
        if mask == "object":
            # take the other photo's own mug out (filled with its border colour), so no second mug shows
            theirs = object_mask(other)
            theirs = ellipse_mask(h, w) if theirs is None else theirs
            fill = border_pixels(background).median(1).values
            background = background * (1 - theirs) + fill[:, None, None] * theirs
    if gain > 1.0:
        background = background * log_uniform(gain)
    original = image.float()
    mug = (original * log_uniform(object_gain)).clamp(0, 255) if object_gain > 1.0 else original
    out = mug * keep + background.clamp(0, 255) * (1 - keep)
    if gain > 1.0:
        out = out * (original.mean() / out.mean().clamp_min(1.0))
    return out.clamp(0, 255).round().to(torch.uint8)
