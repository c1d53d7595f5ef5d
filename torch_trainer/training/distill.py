"""Distillation: one network trained on a teacher's probabilities instead of the labels.

The teacher is a run's model.pt, usually the default ensemble; on every augmented batch the
student sees, the teacher's averaged probabilities are the targets (Hinton et al. 2015 at
temperature 1: the teacher's served probabilities). One student serves at a fraction of the
ensemble's cost.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mug_errors import NotFound
from torch_trainer.classifier.network import Ensemble, MugClassifier, load_checkpoint


def is_checkpoint(teacher: str) -> bool:
    """Whether `--teacher` names a checkpoint file (else a recipe to train first)."""
    return teacher.endswith(".pt")


def load_teacher(path: str, device: torch.device) -> MugClassifier | Ensemble:
    """The teacher in eval mode on `device`, its weights frozen."""
    if not Path(path).is_file():
        raise NotFound(f"--teacher: {path} is not a file (a run's model.pt, or a recipe name)")
    teacher, _ = load_checkpoint(path)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's `logits` against the teacher's probabilities `targets`
    (the KL divergence to the teacher plus the teacher's entropy, which has no gradient)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
