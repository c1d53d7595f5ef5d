"""The classifier (preprocessing + torchvision ResNet) and its checkpoint format."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ARCHS = ("resnet18", "resnet34", "resnet50")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded or read."""


class MugClassifier(nn.Module):
    """ResNet with its input handling built in: float RGB in [0, 1], NCHW, at the serving size.

    Resizing to `image_size` and normalisation live here so that training, ONNX export
    and serving all run the exact same preprocessing.
    """

    def __init__(self, arch: str = "resnet18", num_classes: int = 4, image_size: int = 64,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"--arch: unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        self.arch, self.image_size = arch, image_size
        self.net = getattr(torchvision.models, arch)(weights=None)
        self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to `image_size` and normalise: what the ResNet itself gets."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(self.preprocess(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits): what the export serves."""
        return self(x).softmax(1)


class Ensemble(nn.Module):
    """Several classifiers of one architecture answering as one: the mean of their probabilities.

    Each member resizes the pictures to its own `image_size`, so members may see different sizes.

    `forward` returns the log of that mean, so that everything that takes logits (softmax,
    argmax, cross-entropy) sees the ensemble's own distribution; the export serves
    `probabilities`, the mean itself, without the log/softmax round trip.
    """

    def __init__(self, members: Sequence[MugClassifier]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        first = members[0]
        if any(m.arch != first.arch for m in members):
            raise ValueError("the members of an ensemble must share their architecture")
        self.members = nn.ModuleList(members)
        self.arch, self.image_size = first.arch, first.image_size
        self.register_buffer("mean", first.mean.clone(), persistent=False)
        self.register_buffer("std", first.std.clone(), persistent=False)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' softmax probabilities."""
        # a sum, not torch.stack(...).mean(0): stack exports as Unsqueeze-13, which onnx-tf lacks
        return sum(m.probabilities(x) for m in self.members) / len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean probabilities (logits of the ensemble's distribution)."""
        p = self.probabilities(x)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()


def load_imagenet_weights(model: MugClassifier, strict: bool = False) -> bool:
    """Load torchvision's ImageNet weights into the backbone (all but the new head).

    Returns True on success. Offline, it warns loudly and keeps the random init, or
    raises `WeightsUnavailable` when `strict`.
    """
    weights = torchvision.models.get_model_weights(model.arch).DEFAULT
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, HTTPError, OSError, RuntimeError: all mean "not reachable"
        msg = (f"could not download ImageNet weights for {model.arch} ({weights.url}): {err}. "
               "Put the file in the torch hub cache ($TORCH_HOME/hub/checkpoints) or use --weights none.")
        if strict:
            raise WeightsUnavailable(msg) from err
        warnings.warn(f"\n{'!' * 72}\nWARNING: {msg}\nFALLING BACK TO RANDOM INITIALISATION.\n{'!' * 72}",
                      stacklevel=2)
        return False
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    model.net.load_state_dict(state, strict=False)
    return True


def save_checkpoint(path: str | os.PathLike, model: MugClassifier | Ensemble, class_names: list[str],
                    input_size: int, **extra: Any) -> None:
    """Write the state dict plus everything needed to rebuild the model (atomically).

    An `Ensemble` is saved as one checkpoint: "members" says how many classifiers its state
    dict holds."""
    payload = {
        "state_dict": model.state_dict(),
        "members": len(model.members) if isinstance(model, Ensemble) else 1,
        "arch": model.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_size": input_size,
        "image_size": model.image_size,
        "member_image_sizes": [m.image_size for m in model.members] if isinstance(model, Ensemble) else [],
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
        **extra,
    }
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[MugClassifier | Ensemble, dict[str, Any]]:
    """Rebuild the model (a classifier or an `Ensemble`) from a checkpoint written by
    `save_checkpoint`; returns (model, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint: {err}") from err
    missing = [k for k in ("state_dict", "arch", "class_names", "input_size", "image_size", "mean", "std")
               if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)} (not written by torch_trainer?)")

    def classifier(image_size: int) -> MugClassifier:
        return MugClassifier(ckpt["arch"], len(ckpt["class_names"]), image_size, tuple(ckpt["mean"]), tuple(ckpt["std"]))

    members = ckpt.get("members", 1)
    sizes = ckpt.get("member_image_sizes") or [ckpt["image_size"]] * members
    model = classifier(ckpt["image_size"]) if members == 1 else Ensemble([classifier(size) for size in sizes])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


@torch.no_grad()
def class_probabilities(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of `model` (in eval mode) on uint8 NCHW `images`, computed in batches."""
    probs = [model.probabilities(images[i:i + batch_size].float() / 255) for i in range(0, len(images), batch_size)]
    return torch.cat(probs).numpy()
