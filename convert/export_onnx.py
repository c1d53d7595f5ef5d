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

from mug_errors import NotFound
from torch_trainer.classifier.photos import image_files

ONNX_INPUT, ONNX_OUTPUT = "images", "probabilities"
# onnx-tf 1.10 reads opsets 9..20 for these networks (not Flatten-21 or Conv-22); torch's dynamo
# exporter emits 18+ and needs onnxscript, whose requirements clash with TF 2.15: the TorchScript one, at 13
OPSET = 13


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
    simplify_onnx(tmp)
    os.replace(tmp, path)
    return path


def simplify_onnx(path: str | os.PathLike) -> None:
    """Fold what torch leaves computed in the graph into constants, and zero Pads into the Convs
    after them, in place: ONNX Runtime's basic (standard-op) optimisations, saved, then the Pads
    it leaves (one that feeds several Convs) folded by hand.

    onnx-tf wraps every Pad in a `tf.cond` (for negative widths), which the frozen graph keeps as
    Switch/Merge, and the NHWC rewrite cannot see through it: EfficientNet-Lite's TensorFlow-style
    padding (a ZeroPad2d before each stride-2 convolution) kept 42 Transposes in the graph.
    """
    import onnx  # deferred: only the export rewrites ONNX files
    path = Path(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path.with_suffix(".basic.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    os.remove(options.optimized_model_filepath)
    graph = model.graph
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        widths = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = constants.get(pad.input[2], np.zeros(())) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        users = consumers.get(pad.output[0], [])
        if widths is None or mode != b"constant" or np.any(value != 0) or len(widths) != 8 \
                or np.any(widths[[0, 1, 4, 5]] != 0) or np.any(widths < 0) \
                or not users or pad.output[0] in outputs \
                or any(u.op_type != "Conv" or u.input[0] != pad.output[0] or any(
                    a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in u.attribute) for u in users):
            continue
        for conv in users:
            conv.input[0] = pad.input[0]
            pads = next((a for a in conv.attribute if a.name == "pads"), None)
            if pads is None:
                pads = onnx.helper.make_attribute("pads", [0, 0, 0, 0])
                conv.attribute.append(pads)
            old = list(pads.ints)
            del pads.ints[:]
            pads.ints.extend(int(o + w) for o, w in zip(old, widths[[2, 3, 6, 7]]))
        graph.node.remove(pad)
    used_inputs = {name for node in graph.node for name in node.input}
    for unused in [t for t in graph.initializer if t.name not in used_inputs]:  # a folded Pad's widths
        graph.initializer.remove(unused)
    # ONNX Runtime declares its own op domains; onnx-tf reads standard ops only, and no node uses them
    used = {n.domain for n in graph.node}
    for opset in [o for o in model.opset_import if o.domain not in used and o.domain not in ("", "ai.onnx")]:
        model.opset_import.remove(opset)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


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
        raise NotFound(f"{folder}: no {size}x{size} images to check the conversion with")
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
    them), in batches: ONNX Runtime's counterpart of `torch_trainer.classifier.network.class_probabilities`."""
    pixels = images.permute(0, 2, 3, 1).float().contiguous().numpy()
    return np.concatenate([session.run([ONNX_OUTPUT], {ONNX_INPUT: pixels[i:i + batch_size]})[0]
                           for i in range(0, len(pixels), batch_size)])
