"""What another camera or light does to a photo: the light's colour as a black body's (white
balance), blur and JPEG compression, on float sRGB batches. Training's augmentation
(`torch_trainer.training.augment`) draws them at random; the robustness report
(`check_deployed_model.scoring.shifts`) applies them at named strengths."""

from __future__ import annotations

import math
from typing import Callable

import torch
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb
from kornia.filters import gaussian_blur2d
from torchvision.io import decode_jpeg, encode_jpeg

NEUTRAL_KELVIN = 6500.0        # the light a photo is taken to be balanced for (about daylight, D65)
COOLEST_KELVIN = 25000.0       # the Planckian locus' formula holds from 1,667 K to 25,000 K
LUMA = (0.2126, 0.7152, 0.0722)  # linear sRGB's luminance weights
# CIE XYZ to linear sRGB (IEC 61966-2-1)
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def planckian_xy(kelvin: torch.Tensor) -> torch.Tensor:
    """CIE 1931 xy chromaticity [..., 2] of a black body at `kelvin` (1,667-25,000 K): the cubic
    splines of Kim et al. (2002), the Planckian locus to within 0.0005 in x and y."""
    t = kelvin.double()
    x = torch.where(t < 4000, -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910,
                    -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390)
    y = torch.where(t < 2222, -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683,
                    torch.where(t < 4000, -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867,
                                3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483))
    return torch.stack([x, y], -1)


def black_body_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """Linear sRGB [..., 3] of a black body's light at `kelvin`, at luminance Y = 1."""
    xy = planckian_xy(kelvin)
    x, y = xy[..., 0], xy[..., 1]
    xyz = torch.stack([x / y, torch.ones_like(x), (1 - x - y) / y], -1)
    return xyz @ torch.tensor(XYZ_TO_SRGB, dtype=xyz.dtype).T


def white_balance_gains(kelvin: torch.Tensor) -> torch.Tensor:
    """Linear-light gains [..., 3] that turn a photo balanced for NEUTRAL_KELVIN into one lit by a
    black body at `kelvin` (warmer below 6,500 K, cooler above), with white's luminance kept."""
    gains = black_body_rgb(kelvin.clamp(1667, COOLEST_KELVIN)) / black_body_rgb(torch.tensor(NEUTRAL_KELVIN))
    return (gains / (gains @ torch.tensor(LUMA, dtype=gains.dtype))[..., None]).float()


def in_linear_light(images: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`change` applied to a float sRGB batch [B, 3, H, W] in linear light, where a light's amount and
    colour multiply, then clipped as a sensor clips."""
    return linear_rgb_to_rgb(change(rgb_to_linear_rgb(images.clamp(0, 1))).clamp(0, 1))


def adjust_white_balance(images: torch.Tensor, kelvin: torch.Tensor) -> torch.Tensor:
    """Each picture of a float sRGB batch [B, 3, H, W] as if lit by a black body at its `kelvin`
    [B]: the gains applied in linear light, then clipped (a white mug under blue light clips blue)."""
    gains = white_balance_gains(kelvin.cpu()).to(images.device, images.dtype)
    return in_linear_light(images, lambda linear: linear * gains[:, :, None, None])


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each picture of a float batch blurred with its own Gaussian `sigma` [B] (px), edges reflected."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    return gaussian_blur2d(images, 2 * radius + 1, sigma.to(images)[:, None].expand(-1, 2).contiguous())


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Each picture of a float batch in [0, 1] encoded as JPEG at its `quality` [B] and decoded
    again (libjpeg, as the service decodes; rounded to whole levels first, as a photo file is)."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    decoded = [decode_jpeg(encode_jpeg(p, quality=int(q))) for p, q in zip(pixels, quality)]
    return torch.stack(decoded).to(images.device, images.dtype) / 255
