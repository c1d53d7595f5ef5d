"""PyTorch -> ONNX, with the serving preprocessing inside the graph, and running it in ONNX Runtime."""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from torch_trainer.data import image_files

ONNX_INPUT, ONNX_OUTPUT = "images", "probabilities"
OPSET = 13  # onnx-tf reads opsets 9..20 for a ResNet; torch's dynamo path emits 18+ (see PINS.md)


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


def onnx_session(onnx_path: str | os.PathLike, threads: int | None = None, spin: bool = True,
                 profile_dir: str | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session; `threads` fixes intra-op threads (inter-op 1), `spin=False` stops
    idle workers spin-waiting and `profile_dir` turns the profiler on, for benchmarks."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_dir:
        options.enable_profiling, options.profile_file_prefix = True, f"{profile_dir}/ort"
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(session: ort.InferenceSession, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of the exported graph on uint8 NCHW `images` (as `load_images` decodes
    them), in batches: ONNX Runtime's counterpart of `torch_trainer.model.class_probabilities`."""
    pixels = images.permute(0, 2, 3, 1).float().contiguous().numpy()
    return np.concatenate([session.run([ONNX_OUTPUT], {ONNX_INPUT: pixels[i:i + batch_size]})[0]
                           for i in range(0, len(pixels), batch_size)])
