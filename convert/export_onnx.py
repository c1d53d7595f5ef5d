"""PyTorch -> ONNX, with the serving preprocessing inside the graph, checked by onnxruntime."""

from __future__ import annotations

import io
import itertools
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from torch_trainer.data import image_files, load_image

ONNX_INPUT, ONNX_OUTPUT = "images", "probabilities"
OPSET = 13  # onnx-tf reads opsets 9..20 for a ResNet; torch's dynamo path emits 18+ (see PINS.md)
PARITY_TOL = 1e-5


class ServingModule(nn.Module):
    """What TensorFlow's image decoder yields in, probabilities out.

    Input: float32 pixels 0..255, NHWC, batch dynamic. The scaling, the NHWC->NCHW permute,
    resize and normalisation all live here (the classifier does the last two), so the TF
    wrapper only decodes bytes. An `Ensemble` exports as one graph: its members side by side,
    their probabilities averaged.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2) / 255.0
        return self.classifier.probabilities(x)


def export_onnx(classifier: nn.Module, path: str | os.PathLike, input_size: int) -> Path:
    """Write the serving graph of `classifier` as ONNX (opset 13, dynamic batch) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ServingModule(classifier).eval()
    example = torch.zeros(2, input_size, input_size, 3)
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        # the size check in MugClassifier.preprocess is meant to be fixed at trace time
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
    os.replace(tmp, path)
    return path


def sample_images(folder: str | os.PathLike, limit: int = 64, size: int = 64) -> list[Path]:
    """Up to `limit` image files of `size`x`size` from a class-per-folder tree or a flat folder,
    spread over classes: on those the SavedModel must match PyTorch exactly, while resized inputs
    are checked separately."""
    folder = Path(folder)
    per_class = [list(files) for _, files in itertools.groupby(image_files(folder), key=lambda p: p.parent)]

    def fits(path: Path) -> bool:
        try:
            with Image.open(path) as img:
                return img.size == (size, size)
        except OSError:
            return False

    per_class = [[p for p in files if fits(p)] for files in per_class]
    per_class_limit = -(-limit // max(1, len(per_class)))
    picked = [p for files in per_class for p in files[::max(1, len(files) // per_class_limit)][:per_class_limit]]
    if not picked:
        raise FileNotFoundError(f"{folder}: no {size}x{size} images to check the conversion with")
    return picked


@torch.no_grad()
def torch_probabilities(classifier: nn.Module, pixels: np.ndarray) -> np.ndarray:
    """Reference probabilities from PyTorch for float NHWC pixels 0..255."""
    return ServingModule(classifier).eval()(torch.from_numpy(pixels)).numpy()


def load_pixels(paths: Sequence[Path | io.BytesIO], input_size: int) -> np.ndarray:
    """Images decoded and resized exactly as training does, as float32 NHWC 0..255."""
    return np.stack([load_image(p, input_size).permute(1, 2, 0).numpy() for p in paths]).astype(np.float32)


def compare(reference: np.ndarray, probs: np.ndarray) -> dict:
    """Max abs difference of probabilities and class agreement between two models."""
    return {"images": int(len(reference)),
            "max_abs_dprob": float(np.abs(reference - probs).max()),
            "class_agreement": float((reference.argmax(1) == probs.argmax(1)).mean())}


def check_onnx(classifier: nn.Module, onnx_path: str | os.PathLike, pixels: np.ndarray,
               tol: float = PARITY_TOL) -> dict:
    """Run onnxruntime against PyTorch on `pixels`; raise if they disagree beyond `tol`."""
    import onnxruntime as ort  # deferred: only the parity check runs ONNX Runtime
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs = session.run([ONNX_OUTPUT], {ONNX_INPUT: pixels})[0]
    report = compare(torch_probabilities(classifier, pixels), probs)
    if report["max_abs_dprob"] > tol or report["class_agreement"] < 1.0:
        raise AssertionError(f"{onnx_path}: onnxruntime disagrees with PyTorch: {report} (tolerance {tol})")
    return report
