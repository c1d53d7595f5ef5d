"""Training pictures: the recipe's augmentation, applied to whole batches, and views of a decoded
data set.

What changes from one shot to the next (framing, exposure, contrast, colour saturation) is
varied; what names the class (the mug's hue) is kept nearly so. Recipes may add what another camera,
light or distance changes (issue 46): the light's colour as a black body's (`white_balance`), the mug
smaller with the picture's edge colour or another surround around it (`zoom_out`, `zoom_surround`), blur,
sensor noise and JPEG compression; `check_deployed_model.scoring.shifts` applies the same changes
(`torch_trainer.classifier.capture`) at fixed strengths to score a model.

The augmentation draws the same random parameters as torchvision's `RandomResizedCrop`,
`RandomHorizontalFlip` and `ColorJitter` would for each picture, and applies them to a whole
uint8 batch at once: one `grid_sample` for every crop and mirror, one pass per jitter step.
Picture by picture those transforms ran at 1,084 images/s here, as a batch at 3,669
(`bench.augment_throughput`): 0.55 s of an epoch of 2,000 photos instead of 1.85 s.
The pictures stay float from the crop on, where torchvision's uint8 kernels round to whole
levels after every step: the results agree with torchvision's float kernels to float precision
(tests/test_augment.py), and with its uint8 ones to within that rounding.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2
# torchvision's own colour-space kernels; they take batches (its public adjust_hue takes one
# factor for the whole batch). tests/test_augment.py checks them against adjust_hue.
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from torch_trainer.classifier.capture import (NEUTRAL_KELVIN, adjust_white_balance, gaussian_blur,
                                              jpeg_compress)
from torch_trainer.classifier.photos import MugDataset
from torch_trainer.settings.plan import TrainConfig

GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
RATIO = (3 / 4, 4 / 3)         # RandomResizedCrop's aspect ratio range
# the share of pictures given each of zoom out, blur, noise and JPEG: the rest stay as shot, so the
# model keeps seeing clean photos, which most requests are
SHIFTED = 0.5
# what surrounds a zoomed-out picture (resized_crop's `surround`): its edge colour, itself mirrored, a flat
# colour, itself blurred (the scene out of focus), another photo of the batch blurred (another scene's background)
EDGE, MIRROR, FLAT, BLURRED, OTHER = 0, 1, 2, 3, 4
# the blur of a blurred surround, sigma as a share of the photo's size: 2-6.4 px of a 64-px photo, where the
# mug of a photo blurred behind is a soft patch of its colour, not a mug
BACKDROP_BLUR = (1 / 32, 1 / 10)


class TransformedSubset(Dataset):
    """A view of a `MugDataset` (optionally a subset of its indices) with its own transform.

    Lets one decoded data set serve as both training data (uint8, augmented by batch in the
    training loop) and validation data (plain float pictures).
    """

    def __init__(self, base: MugDataset, indices: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[self.indices[index]]
        return (self.transform(image) if self.transform is not None else image), label


def train_view(data: MugDataset, indices: Sequence[int] | None = None) -> TransformedSubset:
    """`data` (or the `indices` of it) as training samples: uint8 pictures, which the training
    loop augments a batch at a time (`BatchAugment`)."""
    return TransformedSubset(data, indices)


def eval_transform() -> v2.Transform:
    """Plain pictures for validation and evaluation: uint8 to float [0, 1], nothing else."""
    return v2.ToDtype(torch.float32, scale=True)


def eval_view(data: MugDataset, indices: Sequence[int] | None = None) -> TransformedSubset:
    """`data` (or the `indices` of it) as plain samples, for validation and evaluation."""
    return TransformedSubset(data, indices, eval_transform())


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float] = RATIO) -> torch.Tensor:
    """`n` random crop boxes [top, left, h, w] (long), drawn as `v2.RandomResizedCrop` draws one:
    up to ten tries of an area share in `scale` and a log-uniform aspect ratio in `ratio`, the
    first that fits wins; where none fits, the central crop of the nearest allowed ratio."""
    area = height * width
    target = area * torch.empty(n, 10).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, 10).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(target * aspect).round().long()
    h = torch.sqrt(target / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # argmax of 0/1 rows: the first try that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    found = fits.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = torch.where(found, (torch.rand(n) * (height - h + 1)).long(), (height - fh) // 2)
    left = torch.where(found, (torch.rand(n) * (width - w + 1)).long(), (width - fw) // 2)
    return torch.stack([top, left, h, w], 1)


def _axis(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """Sampling positions [B, size_out] of a bilinear resize of the span start..start+length to
    size_out (half-pixel centres, edges clamped to the span, as torch's upsampling does), in
    grid_sample's align_corners=True coordinates."""
    dst = torch.arange(size_out, dtype=torch.float32, device=start.device) + 0.5
    src = start[:, None] + dst * (length[:, None] / size_out) - 0.5
    src = torch.minimum(torch.maximum(src, start[:, None].float()), (start + length - 1)[:, None].float())
    return src * (2 / max(size_in - 1, 1)) - 1


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None,
                 surround: torch.Tensor | None = None, fill: torch.Tensor | None = None,
                 backdrop: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each picture of a float batch [B, C, H, W] to its box [top, left, h, w] and resize
    it bilinearly to `size`x`size` (mirrored where `flip`), in one `grid_sample`.

    Equal to `v2.functional.resized_crop` (then `horizontal_flip`) picture by picture wherever
    the crop is enlarged, as a crop of a `size`-pixel photo always is; antialiasing only acts
    when shrinking. Where a box reaches past the picture (zoomed out), the edge pixels fill it, or
    per picture as `surround` [B] says: EDGE, MIRROR (the picture reflected at its edges), FLAT
    (its colour `fill` [B, C]), or BLURRED and OTHER (its picture `backdrop` [B, C, size, size]).
    """
    _, _, height, width = images.shape
    boxes = boxes.to(images.device)
    ys = _axis(boxes[:, 0], boxes[:, 2], height, size)
    xs = _axis(boxes[:, 1], boxes[:, 3], width, size)
    if flip is not None:
        xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)
    grid = torch.stack([xs[:, None, :].expand(-1, size, -1), ys[:, :, None].expand(-1, -1, size)], -1)
    if surround is None:
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    surround = surround.to(images.device)
    out = images.new_empty(len(images), images.shape[1], size, size)
    for kind, padding in ((EDGE, "border"), (MIRROR, "reflection"), (FLAT, "zeros")):
        if not (chosen := (surround == kind).nonzero()[:, 0]).numel():
            continue
        # FLAT: zero padding around the picture minus its fill colour, then the colour added back: the fill
        # outside, the picture inside, blended over the one pixel between, as a lens blends an edge
        colour = fill.to(images)[chosen, :, None, None] if kind == FLAT else 0
        out[chosen] = F.grid_sample(images[chosen] - colour, grid[chosen], mode="bilinear", padding_mode=padding,
                                    align_corners=True) + colour
    if (chosen := (surround >= BLURRED).nonzero()[:, 0]).numel():
        # as FLAT with a picture for the colour: the share of each output pixel that falls inside the photo
        # (1 inside, 0 outside, between on the edge) is the photo's, the rest the backdrop's
        inside = F.grid_sample(images[chosen], grid[chosen], mode="bilinear", padding_mode="zeros", align_corners=True)
        share = F.grid_sample(torch.ones_like(images[chosen, :1]), grid[chosen], mode="bilinear",
                              padding_mode="zeros", align_corners=True)
        out[chosen] = inside + (1 - share) * backdrop[chosen].to(images)
    return out


def backdrops(images: torch.Tensor, surround: torch.Tensor, other: torch.Tensor, sigma: torch.Tensor,
              size: int) -> torch.Tensor:
    """The pictures [B, C, size, size] behind the zoomed-out pictures of a float batch whose `surround`
    is BLURRED (the picture itself) or OTHER (the picture `other` [B] of the batch), blurred with
    `sigma` [B] (a share of the picture's height) and resized to `size`; zeros for the rest."""
    out = images.new_zeros(len(images), images.shape[1], size, size)
    surround = surround.to(images.device)
    if (chosen := (surround >= BLURRED).nonzero()[:, 0]).numel():
        source = torch.where(surround[chosen] == OTHER, other.to(images.device)[chosen], chosen)
        blurred = gaussian_blur(images[source], sigma.to(images)[chosen] * images.shape[2])
        out[chosen] = F.interpolate(blurred, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GRAY, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """`v2.functional.adjust_brightness` with one factor per picture of a float batch: scale and
    clip. The exposure jitter is this too, drawn log-uniformly after the other steps."""
    return (images * _per_image(factor)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """`v2.functional.adjust_contrast` with one factor per picture: blend with the mean grey."""
    mean = _gray(images).mean((1, 2, 3), keepdim=True)
    f = _per_image(factor)
    return (images * f + mean * (1 - f)).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """`v2.functional.adjust_saturation` with one factor per picture: blend with its greyscale."""
    f = _per_image(factor)
    return (images * f + _gray(images) * (1 - f)).clamp(0, 1)


def adjust_hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """`v2.functional.adjust_hue` with one shift (in turns, within [-0.5, 0.5]) per picture."""
    hsv = _rgb_to_hsv(images)
    hue = (hsv[:, 0] + factor.view(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))


def log_uniform(shape: tuple[int, ...], limit: float) -> torch.Tensor:
    """Factors log-uniform in [1/limit, limit]: as likely to darken as to brighten."""
    return limit ** (2 * torch.rand(shape) - 1)


def adjust_colour_cast(images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Scale each picture's R, G and B by its three `gains` [B, 3], rescaled so that a grey
    pixel keeps its brightness, and clip: the colour of a new light, with the exposure kept."""
    weights = torch.tensor(GRAY, dtype=gains.dtype, device=gains.device)
    gains = gains / (gains * weights).sum(1, keepdim=True)
    return (images * gains[:, :, None, None]).clamp(0, 1)


JITTERS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


class BatchAugment:
    """The training augmentation of a `TrainConfig`, for a whole uint8 batch [B, 3, H, W] at once.

    Per picture, as torchvision's v2 transforms would draw them: `RandomResizedCrop(input_size,
    scale=(crop_scale, 1))`, `RandomHorizontalFlip()`, `ColorJitter(brightness, contrast,
    saturation, hue)` (the four in a random order of the picture's own), then the colour cast
    (`colour_cast` > 1: channel gains log-uniform in [1/colour_cast, colour_cast], brightness
    kept) and the exposure (`exposure` > 1: a factor log-uniform in [1/exposure, exposure]),
    each clipped. The capture shifts, each off by default, follow a photo's path: `zoom_out`
    (a random half of the crops replaced by the whole picture shrunk by a factor log-uniform in
    [1, zoom_out] at a random place, the edge pixels around; with `zoom_surround` "varied" a third
    each get the edge pixels, the picture mirrored at its edges, or a flat colour uniform in RGB;
    with "scenes" a fifth each get those three, the photo itself or another photo of the batch,
    blurred with sigma BACKDROP_BLUR of its size),
    the light's colour before the exposure (`white_balance` W: a black body uniform in [-W, W] mired around 6,500 K), then
    `blur` (sigma uniform in [0.1, blur] px), `noise` (Gaussian, std uniform in [0, noise]) and
    `jpeg` (quality uniform in [jpeg, 95]), each on a random half. Returns float pictures in
    [0, 1]. Random numbers come from torch's global generator, which a resumed run restores;
    a shift that is off draws none, so a recipe without them trains as before.
    """

    def __init__(self, cfg: TrainConfig):
        # TrainConfig checked every value when the plan was made
        self.size, self.crop_scale = cfg.input_size, cfg.crop_scale
        self.exposure, self.colour_cast = cfg.exposure, cfg.colour_cast
        self.white_balance, self.zoom_out, self.blur, self.noise, self.jpeg = \
            cfg.white_balance, cfg.zoom_out, cfg.blur, cfg.noise, cfg.jpeg
        self.zoom_surround = cfg.zoom_surround
        # ColorJitter's ranges; a zero strength leaves its step out, as ColorJitter does
        self.ranges = [(max(0.0, 1 - s), 1 + s) if s else None for s in (cfg.brightness, cfg.contrast, cfg.saturation)]
        self.ranges.append((-cfg.hue, cfg.hue) if cfg.hue else None)

    def params(self, n: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """The random draws for `n` pictures: crop boxes, mirrors, jitter order and factors, colour
        cast, exposure."""
        identity = (1.0, 1.0, 1.0, 0.0)
        factors = torch.stack([torch.empty(n).uniform_(*r) if r else torch.full((n,), identity[k])
                               for k, r in enumerate(self.ranges)], 1)
        params = {"boxes": crop_boxes(n, height, width, (self.crop_scale, 1.0)),
                  "flip": torch.rand(n) < 0.5,
                  "order": torch.rand(n, 4).argsort(1),
                  "factors": factors,
                  "cast": log_uniform((n, 3), self.colour_cast) if self.colour_cast > 1 else torch.ones(n, 3),
                  "exposure": log_uniform((n,), self.exposure) if self.exposure > 1 else torch.ones(n)}
        if self.zoom_out > 1:  # the whole picture in a box up to zoom_out times its size
            shrink = self.zoom_out ** torch.rand(n)
            h, w = (height * shrink).round().long(), (width * shrink).round().long()
            top, left = -(torch.rand(n) * (h - height + 1)).long(), -(torch.rand(n) * (w - width + 1)).long()
            zoomed = torch.stack([top, left, h, w], 1)
            chosen = torch.rand(n) < SHIFTED
            params["boxes"] = torch.where(chosen[:, None], zoomed, params["boxes"])
            if self.zoom_surround != "edge":  # drawn after the boxes: "edge" draws as before the others existed
                kinds = 3 if self.zoom_surround == "varied" else 5
                params["surround"] = torch.where(chosen, torch.randint(0, kinds, (n,)), EDGE)
                params["fill"] = torch.rand(n, 3)
                if kinds == 5:  # another picture than its own (n > 1), and a blur for each
                    params["other"] = (torch.arange(n) + torch.randint(1, max(n, 2), (n,))) % n
                    params["backdrop"] = torch.empty(n).uniform_(*BACKDROP_BLUR)
        if self.white_balance:
            mired = 1e6 / NEUTRAL_KELVIN + self.white_balance * (2 * torch.rand(n) - 1)
            params["kelvin"] = 1e6 / mired
        if self.blur:
            params["blur"] = torch.where(torch.rand(n) < SHIFTED, torch.empty(n).uniform_(0.1, self.blur), 0.0)
        if self.noise:
            std = torch.where(torch.rand(n) < SHIFTED, torch.rand(n) * self.noise, 0.0)
            params["noise"] = std[:, None, None, None] * torch.randn(n, 3, self.size, self.size)
        if self.jpeg:
            params["jpeg"] = torch.where(torch.rand(n) < SHIFTED, torch.randint(self.jpeg, 96, (n,)), 0)
        return params

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment a uint8 batch with the given draws (`params`); float [0, 1] out."""
        pictures = images.float() / 255
        backdrop = (backdrops(pictures, params["surround"], params["other"], params["backdrop"], self.size)
                    if "backdrop" in params else None)
        x = resized_crop(pictures, params["boxes"], self.size, params["flip"], params.get("surround"),
                         params.get("fill"), backdrop)
        order, factors = params["order"].to(x.device), params["factors"].to(x.device)
        for position in range(4):
            for k, jitter in enumerate(JITTERS):
                if self.ranges[k] is None:
                    continue
                chosen = (order[:, position] == k).nonzero()[:, 0]  # the pictures whose step here is k
                if len(chosen):
                    x[chosen] = jitter(x[chosen], factors[chosen, k])
        if self.colour_cast > 1:
            x = adjust_colour_cast(x, params["cast"].to(x.device))
        if "kelvin" in params:
            x = adjust_white_balance(x, params["kelvin"])
        if self.exposure > 1:
            x = adjust_brightness(x, params["exposure"].to(x.device))
        # blur, noise and JPEG on the pictures drawn for each (a zero strength: left as shot)
        if "blur" in params and (chosen := (params["blur"] > 0).nonzero()[:, 0]).numel():
            x[chosen] = gaussian_blur(x[chosen], params["blur"][chosen])
        if "noise" in params:
            x = (x + params["noise"].to(x.device)).clamp(0, 1)
        if "jpeg" in params and (chosen := (params["jpeg"] > 0).nonzero()[:, 0]).numel():
            x[chosen] = jpeg_compress(x[chosen], params["jpeg"][chosen])
        return x

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise TypeError(f"BatchAugment takes uint8 batches [B, 3, H, W], not {images.dtype} {tuple(images.shape)}: "
                            "train on train_view(data), not eval_view(data)")
        return self.apply(images, self.params(len(images), images.shape[2], images.shape[3]))
