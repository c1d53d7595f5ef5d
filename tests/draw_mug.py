"""Draw mug-like pictures of the four classes with Pillow, for the tests (and the sample request).

ML6's photos may not be shipped with the project; these drawings are visibly different per
class (white mug, black mug with a white logo, blue mug, clear glass) on varied backgrounds.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("0white", "1black", "2blue", "3transparent")
BODY = {0: (235, 235, 230), 1: (25, 25, 28), 2: (30, 60, 170)}


def draw_mug(label: int, seed: int = 0, size: int = 64,
             background: tuple[int, int, int] | None = None) -> Image.Image:
    """One RGB picture of class `label`; `seed` varies background, position, scale and noise.

    A fixed `background` colour makes pictures that look like one photo shoot.
    """
    rng = random.Random(seed * 4 + label)
    bg = tuple(rng.randint(70, 180) for _ in range(3))
    bg = background or bg
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.45, 0.7) * size
    x0 = rng.uniform(0.1, 0.9 - scale / size) * size
    y0 = rng.uniform(0.15, 0.95 - scale / size) * size
    x1, y1 = x0 + scale * 0.75, y0 + scale
    handle = [x1 - scale * 0.1, y0 + scale * 0.25, x1 + scale * 0.3, y0 + scale * 0.7]
    if label == 3:  # clear glass: the background shows through, only rims and highlights
        edge = tuple(min(255, c + 60) for c in bg)
        draw.rectangle([x0, y0, x1, y1], outline=edge, width=2)
        draw.line([x0 + 3, y0 + 3, x0 + 3, y1 - 3], fill=(250, 250, 250), width=2)
        draw.ellipse([x0, y0 - 3, x1, y0 + 3], outline=edge, width=1)
    else:
        body = BODY[label]
        draw.ellipse(handle, outline=body, width=max(2, int(scale * 0.08)))
        draw.rectangle([x0, y0, x1, y1], fill=body)
        if label == 1:  # the ML6 logo
            draw.rectangle([x0 + scale * 0.2, y0 + scale * 0.4, x0 + scale * 0.55, y0 + scale * 0.55],
                           fill=(240, 240, 240))
    pixels = np.asarray(image, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
