"""The classifier (preprocessing + a ResNet or an EfficientNet-Lite), ensembles of them, and the checkpoint format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from mug_errors import InputError, JobFailed, NotFound, SettingsError
from torch_trainer.classifier.efficientnet_lite import VARIANTS, EfficientNetLite, load_packaged_weights

RESNETS = ("resnet18", "resnet34", "resnet50")
ARCHS = RESNETS + tuple(VARIANTS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM = "random"


class WeightsUnavailable(JobFailed):
    """ImageNet weights were asked for but could not be downloaded or read."""


class MugClassifier(nn.Module):
    """A network with its input handling built in: float RGB in [0, 1], NCHW, at the serving size.

    Resizing to `resolution` (a 64 px photo enlarged to 128 px for EfficientNet-Lite) and the
    normalisation its weights were trained with live here, so that training, ONNX export and
    serving all run the exact same preprocessing. `weights_source` records where the starting
    weights came from (`RANDOM`, packaged or downloaded ImageNet, a checkpoint).
    """

    def __init__(self, arch: str = "resnet18", num_classes: int = 4, resolution: int = 64,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 weights_source: str = RANDOM):
        super().__init__()
        if arch not in ARCHS:
            raise SettingsError(f"--arch: unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        self.arch, self.resolution, self.weights_source = arch, resolution, weights_source
        if arch in RESNETS:
            self.net = getattr(torchvision.models, arch)(weights=None)
            self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)
        else:
            self.net = EfficientNetLite(arch, num_classes, resolution)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to `resolution` and normalise: what the network itself gets."""
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(self.preprocess(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits): what the export serves."""
        return self(x).softmax(1)

    @property
    def classifiers(self) -> list[MugClassifier]:
        """Itself: an `Ensemble` lists its classifiers the same way."""
        return [self]

    def spec(self) -> dict[str, Any]:
        """What `load_checkpoint` rebuilds this classifier from (its weights aside)."""
        return {"arch": self.arch, "resolution": self.resolution, "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist(), "weights_source": self.weights_source}


class Ensemble(nn.Module):
    """Several models answering as one: the mean of their probabilities.

    A member is a classifier or itself an `Ensemble`, so an ensemble of families (say three
    ResNet18s and two EfficientNet-Lite0s) is the mean of the family means: each family weighs
    the same, however many members it has. Each classifier resizes the pictures to its own
    `resolution`.

    `forward` returns the log of that mean, so that everything that takes logits (softmax,
    argmax, cross-entropy) sees the ensemble's own distribution; the export serves
    `probabilities`, the mean itself, without the log/softmax round trip.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    @property
    def classifiers(self) -> list[MugClassifier]:
        """Every classifier inside, families unfolded, in order."""
        return [c for m in self.members for c in m.classifiers]

    @property
    def arch(self) -> str:
        return "+".join(dict.fromkeys(c.arch for c in self.classifiers))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' probabilities."""
        # a sum, not torch.stack(...).mean(0): stack exports as Unsqueeze-13, which onnx-tf lacks
        return sum(m.probabilities(x) for m in self.members) / len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean probabilities (logits of the ensemble's distribution)."""
        p = self.probabilities(x)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()

    def spec(self) -> dict[str, Any]:
        return {"members": [m.spec() for m in self.members]}


def load_imagenet_weights(model: MugClassifier) -> str:
    """Load ImageNet weights into the network (all but the new head); returns where they came from.

    EfficientNet-Lite's come with an installed package (nothing downloads); a ResNet's are
    torchvision's, from its cache or downloaded. A download that fails raises
    `WeightsUnavailable` saying what to do: never a quiet fall back to random weights, which
    would make one command train two different models.
    """
    if model.arch in VARIANTS:
        try:
            return load_packaged_weights(model.net, model.arch)
        except FileNotFoundError as err:
            raise WeightsUnavailable(str(err)) from err
    weights = torchvision.models.get_model_weights(model.arch).DEFAULT
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, HTTPError, OSError, RuntimeError: all mean "not reachable"
        raise WeightsUnavailable(
            f"could not download ImageNet weights for {model.arch} ({weights.url}): {err}. Put that file in "
            f"torch's hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'}), or train from random init with "
            f"--weights none, or use an architecture whose weights install with the project "
            f"({', '.join(VARIANTS)})") from err
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    result = model.net.load_state_dict(state, strict=False)
    if set(result.missing_keys) != {"fc.weight", "fc.bias"} or result.unexpected_keys:
        raise WeightsUnavailable(f"{weights.url}: does not fit {model.arch}: {result}")
    return f"downloaded ImageNet (torchvision {weights})"


def save_checkpoint(path: str | os.PathLike, model: MugClassifier | Ensemble, class_names: list[str],
                    input_size: int, **extra: Any) -> None:
    """Write the state dict plus everything needed to rebuild the model (atomically).

    "spec" is the model's tree (an `Ensemble`'s members, each classifier's arch, resolution,
    normalisation and starting weights); the flat fields beside it summarise its classifiers."""
    leaves = model.classifiers
    payload = {
        "state_dict": model.state_dict(),
        "spec": model.spec(),
        "members": len(leaves),
        "arch": model.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_size": input_size,
        "resolution": leaves[0].resolution,
        "member_resolutions": [c.resolution for c in leaves] if isinstance(model, Ensemble) else [],
        "weights_sources": [c.weights_source for c in leaves],
        **extra,
    }
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def build_from_spec(spec: dict[str, Any], num_classes: int) -> MugClassifier | Ensemble:
    """A model of the shape `spec` describes (see `save_checkpoint`), with fresh weights."""
    if "members" in spec:
        return Ensemble([build_from_spec(s, num_classes) for s in spec["members"]])
    return MugClassifier(spec["arch"], num_classes, spec["resolution"], tuple(spec["mean"]), tuple(spec["std"]),
                         spec.get("weights_source", RANDOM))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[MugClassifier | Ensemble, dict[str, Any]]:
    """Rebuild the model (a classifier or an `Ensemble`) from a checkpoint written by
    `save_checkpoint`; returns (model, meta)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise InputError(f"{path}: not a readable checkpoint: {err}") from err
    missing = [k for k in ("state_dict", "spec", "class_names", "input_size") if k not in ckpt]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)} (not written by torch_trainer?)")
    model = build_from_spec(ckpt["spec"], len(ckpt["class_names"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


@torch.no_grad()
def class_probabilities(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of `model` (in eval mode) on uint8 NCHW `images`, computed in batches."""
    probs = [model.probabilities(images[i:i + batch_size].float() / 255) for i in range(0, len(images), batch_size)]
    return torch.cat(probs).numpy()


@torch.no_grad()
def score_loader(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, predictions and targets of `model` over `loader`."""
    model.eval()
    losses, preds, targets = [], [], []
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        losses.append(F.cross_entropy(logits, labels, reduction="sum").item())
        preds.append(logits.argmax(1).cpu())
        targets.append(labels.cpu())
    preds, targets = torch.cat(preds), torch.cat(targets)
    return {"loss": sum(losses) / len(targets), "accuracy": (preds == targets).float().mean().item(),
            "preds": preds, "targets": targets}
