"""The classifier (preprocessing + torchvision ResNet) and its checkpoint format."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ARCHS = ("resnet18", "resnet34", "resnet50")
INPUT_NORMS = ("imagenet", "per-image")
NORMS = ("bn", "ibn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded or read."""


class IBN(nn.Module):
    """IBN-a normalisation (Pan et al., ECCV 2018): instance norm on the first `ratio` of the
    channels, batch norm on the rest. Instance norm removes each picture's own contrast and
    brightness from those features (the scene's style); batch norm keeps the rest discriminative."""

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(half, affine=True)
        self.BN = nn.BatchNorm2d(planes - half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fixed split sizes: a size computed from x.shape would export as Unsqueeze-13, which onnx-tf lacks
        a, b = torch.split(x, [self.IN.num_features, self.BN.num_features], dim=1)
        return torch.cat([self.IN(a), self.BN(b)], dim=1)


def use_ibn(net: torchvision.models.ResNet) -> None:
    """Swap the first norm of every residual block in layer1-layer3 for `IBN`, as IBN-Net-a does
    (layer4 stays batch norm: its features must stay discriminative)."""
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)


class MugClassifier(nn.Module):
    """ResNet with its input handling built in: float RGB in [0, 1], NCHW, at `input_size`.

    Resizing to `image_size` and normalisation live here so that training, ONNX export
    and serving all run the exact same preprocessing. `input_norm="per-image"` first scales
    each photo to zero mean and unit variance over all its pixels and channels: a scene's
    exposure then stops mattering, while colour ratios (blue vs grey) stay. `norm="ibn"` builds
    the ResNet with IBN-a blocks (see `IBN`).
    """

    rsc_share = 0.0  # training only: the share of a batch that `self_challenged_logits` challenges

    def __init__(self, arch: str = "resnet18", num_classes: int = 4, image_size: int = 64,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 input_norm: str = "imagenet", norm: str = "bn"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"--arch: unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"--input-norm: unknown {input_norm!r}; choose from {', '.join(INPUT_NORMS)}")
        if norm not in NORMS:
            raise ValueError(f"--norm: unknown {norm!r}; choose from {', '.join(NORMS)}")
        self.arch, self.image_size, self.input_norm, self.norm = arch, image_size, input_norm, norm
        self.net = getattr(torchvision.models, arch)(weights=None)
        if norm == "ibn":
            use_ibn(self.net)
        self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to `image_size` and normalise: what the ResNet itself gets."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.input_norm == "per-image":
            centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
            scale = (centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + 1e-5).sqrt()
            return centred / scale
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits. In training, with `labels` and a `rsc_share`, under self-challenging (RSC);
        the labels pass through forward so that DistributedDataParallel sees the whole step."""
        if labels is not None and self.training and self.rsc_share > 0:
            return self_challenged_logits(self, x, labels, share=self.rsc_share)
        return self.net(self.preprocess(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits): what the export serves."""
        return self(x).softmax(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H, W), before pooling and the head."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(self.preprocess(x)))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from a `features` map."""
        return self.net.fc(torch.flatten(self.net.avgpool(features), 1))


class Ensemble(nn.Module):
    """Several classifiers of one architecture answering as one: the mean of their probabilities.

    `forward` returns the log of that mean, so that everything that takes logits (softmax,
    argmax, cross-entropy) sees the ensemble's own distribution; the export serves
    `probabilities`, the mean itself, without the log/softmax round trip.
    """

    def __init__(self, members: Sequence[MugClassifier]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        first = members[0]
        if any((m.arch, m.image_size, m.input_norm, m.norm) != (first.arch, first.image_size, first.input_norm,
                                                                   first.norm) for m in members):
            raise ValueError("the members of an ensemble must share arch, image size and normalisation")
        self.members = nn.ModuleList(members)
        self.arch, self.image_size, self.input_norm, self.norm = first.arch, first.image_size, first.input_norm, first.norm
        self.register_buffer("mean", first.mean.clone(), persistent=False)
        self.register_buffer("std", first.std.clone(), persistent=False)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' softmax probabilities."""
        # a sum, not torch.stack(...).mean(0): stack exports as Unsqueeze-13, which onnx-tf lacks
        return sum(m.probabilities(x) for m in self.members) / len(self.members)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Log of the mean probabilities (logits of the ensemble's distribution)."""
        p = self.probabilities(x)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()


def self_challenged_logits(model: MugClassifier, images: torch.Tensor, labels: torch.Tensor,
                           drop: float = 1 / 3, share: float = 1 / 3) -> torch.Tensor:
    """Training logits under Representation Self-Challenging (RSC; Huang et al., ECCV 2020).

    For a random `share` of the batch, the `drop` share of the last feature map that the true
    class's score leans on most (gradient x activation; whole channels or spatial positions, at
    random per batch) is zeroed before the head, so the loss pushes the network to find the class
    in what remains as well: a model that knows a mug by one cue (its brightness against the
    floor) must learn the others (the logo, the glaze) too. Eval is unchanged.
    """
    feats = model.features(images)
    probe = feats.detach().requires_grad_()
    score = model.head(probe).gather(1, labels[:, None]).sum()
    grad, = torch.autograd.grad(score, probe)
    # a feature's share of the score (gradient x activation, as Grad-CAM weighs it)
    share_of_score = grad.mean(dim=(2, 3), keepdim=True) * feats.detach()
    by_channel = bool(torch.rand(()) < 0.5)
    importance = share_of_score.mean(dim=(2, 3)) if by_channel else share_of_score.sum(dim=1).flatten(1)
    k = max(1, int(round(drop * importance.shape[1])))
    threshold = importance.topk(k, dim=1).values[:, -1:]
    keep = (importance < threshold).to(feats.dtype)
    keep[torch.rand(len(keep), device=keep.device) >= share] = 1.0
    keep = keep.view(len(keep), -1, 1, 1) if by_channel else keep.view(len(keep), 1, *feats.shape[2:])
    return model.head(feats * keep)


def add_mixstyle(model: MugClassifier, p: float, alpha: float = 0.1, layers: tuple[str, ...] = ("layer1", "layer2")) -> None:
    """MixStyle (Zhou et al., ICLR 2021) after the early ResNet stages, in training only: with
    probability `p` per batch, each sample's channel-wise feature mean and std are mixed with
    another sample's, so that the style of a scene (exposure, floor texture) stops being a cue.
    The model's weights and its eval-mode output are untouched, so export is unaffected.
    """
    beta = torch.distributions.Beta(alpha, alpha)

    def hook(module: nn.Module, inputs, out: torch.Tensor) -> torch.Tensor | None:
        if not module.training or out.shape[0] < 2 or torch.rand(()) >= p:
            return None
        mu = out.mean(dim=(2, 3), keepdim=True).detach()
        sigma = (out.var(dim=(2, 3), keepdim=True) + 1e-6).sqrt().detach()
        lam = beta.sample((out.shape[0], 1, 1, 1)).to(out.device, out.dtype)
        perm = torch.randperm(out.shape[0], device=out.device)
        return (out - mu) / sigma * (lam * sigma + (1 - lam) * sigma[perm]) + lam * mu + (1 - lam) * mu[perm]

    for name in layers:
        getattr(model.net, name).register_forward_hook(hook)


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
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
        "input_norm": model.input_norm,
        "norm": model.norm,
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
    def classifier() -> MugClassifier:
        return MugClassifier(ckpt["arch"], len(ckpt["class_names"]), ckpt["image_size"],
                             tuple(ckpt["mean"]), tuple(ckpt["std"]), ckpt.get("input_norm", "imagenet"),
                             ckpt.get("norm", "bn"))

    members = ckpt.get("members", 1)
    model = classifier() if members == 1 else Ensemble([classifier() for _ in range(members)])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
