"""Training pictures: the recipe's augmentation, and views of a decoded data set with or without it.

What changes from one scene to the next (framing, light, exposure, sharpness, the floor around the
mug) is varied; what names the class (the mug's colour) is kept. The background swap pastes a
photo's mug onto another photo's floor, so that floors stop telling classes apart.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from torch_trainer.config import TrainConfig
from torch_trainer.data import MugDataset
from torch_trainer.model import IMAGENET_MEAN, IMAGENET_STD


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


def train_transform(cfg: TrainConfig) -> v2.Transform:
    """Augmentation for uint8 CHW tensors: vary framing, lighting, sharpness and background
    patches (what changes from scene to scene), keep the mug's colour (what names the class)."""
    return v2.Compose([
        v2.RandomApply([v2.AugMix()], p=cfg.augmix) if cfg.augmix else v2.Identity(),
        v2.RandomResizedCrop(cfg.input_size, scale=(cfg.crop_scale, 1.0), ratio=(0.75, 1.33), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.RandomRotation(cfg.rotate)], p=0.5 if cfg.rotate else 0.0),
        v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation, hue=cfg.hue),
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=cfg.blur_p),
        v2.ToDtype(torch.float32, scale=True),
        RandomExposure(cfg.exposure) if cfg.exposure > 1 else v2.Identity(),
        RandomConvolution(cfg.rand_conv) if cfg.rand_conv else v2.Identity(),
        RandomLumaInvert(cfg.invert_luma) if cfg.invert_luma else v2.Identity(),
        v2.GaussianNoise(sigma=cfg.noise) if cfg.noise else v2.Identity(),
        v2.RandomErasing(p=cfg.erase_p, scale=(0.02, 0.15), value=0.5),
    ])


def train_view(data: MugDataset, indices: Sequence[int] | None, cfg: TrainConfig) -> TransformedSubset:
    """`data` (or the `indices` of it) as augmented training samples."""
    swap = functools.partial(swap_background, gain=cfg.background_gain, mask=cfg.background_mask,
                             object_gain=cfg.object_gain, synthetic=cfg.synthetic_background)
    return TransformedSubset(data, indices, train_transform(cfg), cfg.background_swap, swap,
                             views=2 if cfg.consistency else 1)


def eval_transform() -> v2.Transform:
    """Plain pictures for validation and evaluation: uint8 to float [0, 1], nothing else."""
    return v2.ToDtype(torch.float32, scale=True)


def batch_mixer(cfg: TrainConfig, num_classes: int) -> v2.Transform | None:
    """CutMix or MixUp (one of them, at random) on a `cfg.mix` share of the batches, called as
    `mixer(images, labels)`; mixed targets become class probabilities. None when `cfg.mix` is 0."""
    if not cfg.mix:
        return None
    choice = v2.RandomChoice([v2.CutMix(num_classes=num_classes), v2.MixUp(num_classes=num_classes)])
    return v2.RandomApply([choice], p=cfg.mix)
