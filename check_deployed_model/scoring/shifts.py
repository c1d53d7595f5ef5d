"""Capture shifts: a photo changed the way another camera, light or distance changes it, at a named
strength, and encoded as the JPEG a client would send.

Each shift is a function of a float RGB picture [3, H, W] in [0, 1] and one strength. White balance
and exposure act in linear light, as a light's colour and an exposure do; the light's colour is a
black body's (`torch_trainer.classifier.capture`, the same the training draws from). The result is
rounded to whole levels and encoded as JPEG at quality 95 (the `jpeg` shift: at its strength), so
that "none" is the re-encoded photo. A shift is given as `NAME` (its default strengths) or
`NAME=S1,S2,...`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from kornia.geometry.transform import rotate
from PIL import Image
from torchvision.io import encode_jpeg
from torchvision.transforms.v2 import functional as TF

from mug_errors import SettingsError
from torch_trainer.classifier.capture import adjust_white_balance, gaussian_blur, in_linear_light

QUALITY = 95  # how a shifted photo is re-encoded (what a phone or a browser upload would use)


@dataclass(frozen=True)
class Shift:
    """One kind of change: `apply(picture, strength)`, its default strengths (mildest first), the
    unit they are in, the range a strength may take (`low` excluded where `open_low`) and the JPEG
    quality the changed photo is sent at (QUALITY, or one given by the strength)."""
    name: str
    apply: Callable[[torch.Tensor, float, int], torch.Tensor]
    strengths: tuple[float, ...]
    unit: str
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    quality: Callable[[float], int] = lambda strength: QUALITY


def unchanged(picture: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
    """The photo as it is (the `none` shift; `jpeg` changes only how it is encoded)."""
    return picture


def exposure(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """The light's amount times `factor` (linear light, clipped)."""
    return in_linear_light(picture[None], lambda linear: linear * factor)[0]


def white_balance(picture: torch.Tensor, kelvin: float, seed: int = 0) -> torch.Tensor:
    """Lit by a black body at `kelvin` instead of 6,500 K (warmer below, cooler above)."""
    return adjust_white_balance(picture[None], torch.tensor([float(kelvin)]))[0]


def contrast(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Blended with its mean grey (`factor` < 1: flatter, as through haze or a cheap lens)."""
    return TF.adjust_contrast(picture, factor)


def blur(picture: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Out of focus or shaken: a Gaussian blur of `sigma` px."""
    return gaussian_blur(picture[None], torch.tensor([float(sigma)]))[0]


def noise(picture: torch.Tensor, levels: float, seed: int = 0) -> torch.Tensor:
    """Sensor noise: Gaussian, std `levels` of 255, the same draw for the same `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return (picture + torch.randn(picture.shape, generator=generator) * levels / 255).clamp(0, 1)


def tilt(picture: torch.Tensor, degrees: float, seed: int = 0) -> torch.Tensor:
    """The camera rolled by `degrees`, the corners filled with the edge pixels."""
    return rotate(picture[None], torch.tensor([float(degrees)]), padding_mode="border")[0]


def zoom_in(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Closer: the central 1/`factor` of the picture, enlarged to its size."""
    _, h, w = picture.shape
    crop = TF.center_crop(picture, [max(1, round(h / factor)), max(1, round(w / factor))])
    return TF.resize(crop, [h, w], antialias=True).clamp(0, 1)


def shrunk(picture: torch.Tensor, factor: float) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The picture shrunk by `factor`, and the padding (left, right, top, bottom) that centres it at its size."""
    _, h, w = picture.shape
    small = TF.resize(picture, [max(1, round(h / factor)), max(1, round(w / factor))], antialias=True)
    top, left = (h - small.shape[1]) // 2, (w - small.shape[2]) // 2
    return small, (left, w - small.shape[2] - left, top, h - small.shape[1] - top)


def zoom_out(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Farther: the picture shrunk by `factor`, centred, the edge colour around it (what zoom_out trains on)."""
    small, pad = shrunk(picture, factor)
    return F.pad(small[None], pad, mode="replicate")[0].clamp(0, 1)


def zoom_out_mirror(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Farther, more of the scene around: the picture shrunk by `factor`, centred, mirrored at its edges."""
    small, pad = shrunk(picture, factor)
    return F.pad(small[None], pad, mode="reflect")[0].clamp(0, 1)


def zoom_out_flat(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Farther, against another background: the picture shrunk by `factor`, centred, on a flat colour
    (uniform in RGB, the same for the same `seed`)."""
    small, pad = shrunk(picture, factor)
    colour = torch.rand(3, 1, 1, generator=torch.Generator().manual_seed(seed))
    return (F.pad(small - colour, pad) + colour).clamp(0, 1)


def zoom_out_blurred(picture: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Farther, the scene behind out of focus: the picture shrunk by `factor`, centred, on itself enlarged
    and blurred (sigma 1/16 of its height: 4 px of a 64-px photo)."""
    small, (left, _, top, _) = shrunk(picture, factor)
    behind = gaussian_blur(picture[None], torch.tensor([picture.shape[1] / 16]))[0]
    behind[:, top:top + small.shape[1], left:left + small.shape[2]] = small
    return behind.clamp(0, 1)


def photo_size(picture: torch.Tensor, pixels: float, seed: int = 0) -> torch.Tensor:
    """A larger photo of the same view (`pixels` on its shorter side), which the service resizes itself."""
    return TF.resize(picture, int(pixels), antialias=True).clamp(0, 1)


SHIFTS = {s.name: s for s in (
    Shift("none", unchanged, (0,), "-"),
    Shift("darker", exposure, (0.7, 0.5, 0.35), "exposure factor", 0, open_low=True),
    Shift("brighter", exposure, (1.4, 2.0, 2.8), "exposure factor", 0, open_low=True),
    Shift("lower-contrast", contrast, (0.7, 0.5, 0.35), "contrast factor", 0),
    Shift("warmer", white_balance, (5000, 4000, 3000), "light in K (camera at 6,500 K)", 1667, 25000),
    Shift("cooler", white_balance, (8000, 11000, 16000), "light in K (camera at 6,500 K)", 1667, 25000),
    Shift("blur", blur, (0.6, 1.0, 1.6), "sigma px", 0, 5),
    Shift("noise", noise, (6, 12, 24), "std, levels of 255", 0, 255),
    Shift("jpeg", unchanged, (40, 20, 10), "JPEG quality", 1, 100, quality=int),
    Shift("tilt", tilt, (8, 15, 25), "degrees", -90, 90),
    Shift("zoom-in", zoom_in, (1.2, 1.5), "factor", 1, 8),
    Shift("zoom-out", zoom_out, (1.25, 1.6, 2.0), "factor", 1, 8),
    # the surrounds the edge colour is not (issue 52): round 5's zoom out had another
    Shift("zoom-out-mirror", zoom_out_mirror, (1.25, 1.6, 2.0), "factor", 1, 2.9),
    Shift("zoom-out-flat", zoom_out_flat, (1.25, 1.6, 2.0), "factor", 1, 8),
    Shift("zoom-out-blurred", zoom_out_blurred, (1.25, 1.6, 2.0), "factor", 1, 8),
    Shift("larger-photo", photo_size, (128, 256), "px", 16, 4096),
)}


def parse_shifts(specs: Sequence[str] | None) -> list[tuple[Shift, tuple[float, ...]]]:
    """(shift, strengths) for each `NAME` or `NAME=S1,S2` (all of SHIFTS when None); "none" comes
    first whether named or not: every other figure is read against it."""
    chosen: dict[str, tuple[float, ...]] = {}
    for spec in specs if specs is not None else list(SHIFTS):
        name, _, values = spec.partition("=")
        if name not in SHIFTS:
            raise SettingsError(f"--shifts: unknown shift {name!r}; the shifts are {', '.join(SHIFTS)}")
        try:
            strengths = tuple(float(v) for v in values.split(",")) if values else SHIFTS[name].strengths
        except ValueError:
            raise SettingsError(f"--shifts {spec}: strengths are numbers separated by commas") from None
        check_strengths(SHIFTS[name], strengths)
        chosen[name] = strengths
    chosen.setdefault("none", (0,))
    return [(SHIFTS["none"], chosen.pop("none"))] + [(SHIFTS[n], s) for n, s in chosen.items()]


def check_strengths(shift: Shift, strengths: Sequence[float]) -> None:
    """A SettingsError for a strength the shift cannot take."""
    bad = [v for v in strengths if not shift.low <= v <= shift.high or (shift.open_low and v == shift.low)]
    if bad:
        raise SettingsError(f"--shifts {shift.name}: {bad[0]:g} is out of range ({shift.unit} in "
                            f"{'(' if shift.open_low else '['}{shift.low:g}, {shift.high:g}])")


def shifted_jpeg(photo: bytes, shift: Shift, strength: float, seed: int = 0) -> bytes:
    """The photo (encoded bytes) under `shift` at `strength`, as JPEG bytes; `seed` fixes noise and a flat surround."""
    with Image.open(io.BytesIO(photo)) as image:
        picture = TF.to_dtype(TF.pil_to_tensor(image.convert("RGB")), torch.float32, scale=True)
    changed = shift.apply(picture, strength, seed)
    pixels = (changed * 255).round().clamp(0, 255).to(torch.uint8)
    return encode_jpeg(pixels, quality=shift.quality(strength)).numpy().tobytes()
