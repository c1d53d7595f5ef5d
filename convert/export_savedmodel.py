"""Checkpoint -> ONNX -> onnx-tf -> one frozen TensorFlow graph, saved with the serving contract
(`convert.to_savedmodel` is its command line).

The SavedModel's `serving_default` takes `bytes` (tf.string [None], JPEG or PNG) and
returns `CLASSES` (int64 [None]) and `PROBABILITIES` (float32 [None, 4]). The onnx-tf
model is frozen into a single flat graph (weights as constants, function calls inlined,
control flow lowered): TensorFlow's graph-mode loader, which gcloud and TF Serving use,
stalls on nested tf.functions, and serving then needs nothing but TensorFlow. The frozen
graph is then rewritten from onnx-tf's NCHW-with-Transposes to plain NHWC with fusable
Conv2D+BiasAdd (`convert.optimize_graph`). After saving, a fresh process reloads the export
through both loaders and it is checked against PyTorch on real image bytes
(`convert.compare`) before it is moved into place.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from convert import optimize_graph
from convert.compare import KERNELS, PARITY_TOL, comparisons, parity, require
from convert.export_onnx import ONNX_INPUT, ONNX_OUTPUT, export_onnx, sample_images
from mug_errors import JobFailed, NotFound, OutputExists
from serving.contract import CLASSES, INPUT, PROBABILITIES, SIGNATURE, TAG
from torch_trainer.classifier.photos import load_images
from torch_trainer.classifier.network import load_checkpoint


def decode_images(data, size: int):
    """tf.string [N] of JPEG/PNG bytes -> float32 [N, size, size, 3] pixels 0..255, as training loads them.

    JPEG uses the INTEGER_ACCURATE IDCT, which matches PIL bit for bit (TF's default
    does not and flips predictions). Other sizes are resized with an antialiased
    bilinear filter and rounded to whole levels, like PIL's bilinear resize in training.
    """
    import tensorflow as tf  # deferred: the ONNX side of the export and --help need no TensorFlow

    def decode_one(blob):
        image = tf.cond(tf.io.is_jpeg(blob),
                        lambda: tf.io.decode_jpeg(blob, channels=3, dct_method="INTEGER_ACCURATE"),
                        lambda: tf.io.decode_image(blob, channels=3, expand_animations=False))
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        return tf.cond(tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size)),
                       lambda: tf.reshape(image, [size, size, 3]),
                       lambda: tf.round(tf.clip_by_value(
                           tf.image.resize(image, [size, size], method="bilinear", antialias=True), 0.0, 255.0)))

    return tf.map_fn(decode_one, data, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def frozen_serving_graph(onnx_path: str | os.PathLike, input_size: int, optimize: bool = True,
                         depthwise_padding: str = "same", autograph: bool = False):
    """Convert ONNX with onnx-tf, wrap it in the bytes-in serving function, freeze it and
    (with `optimize`) rewrite it to NHWC (`convert.optimize_graph`, `depthwise_padding` as there).
    `autograph` traces it as before issue 54, through onnx-tf's tf.function (bench.export_trace).

    Returns (graph_def, input tensor name, {output key: tensor name}, rewrite stats).
    """
    import onnx  # deferred: only this step reads ONNX into onnx-tf, which loads TF and every op handler
    import tensorflow as tf  # deferred, as decode_images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tensorflow-addons' end-of-life notice, imported by onnx-tf
        from onnx_tf.backend import prepare
    from onnx.backend.test.runner import BackendIsNotSupposedToImplementIt
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # onnx-tf's NCHW ("CUDA") mode plus grappler's CPU layout pass removes every Transpose but
    # measured 2.6x slower at batch 32 than this CPU mode (bench.latency): keep the CPU mode
    rep = prepare(onnx.load(str(onnx_path)), device="CPU")
    module = rep.tf_module
    module.is_export = True  # onnx-tf's own export mode: static handling of the known input shape

    # onnx-tf's module call is a tf.function that AutoGraph would rewrite, handler by handler, into graph
    # code: most of this step's time (default export: 36 s -> 20 s here without it, issue 54). Its loop
    # runs over the ONNX nodes in Python and builds the same ops; traced as plain Python, the graph
    # loses only the 3 Identity nodes of a nested call, and answers bit for bit the same.
    call = module if autograph else partial(type(module).__call__.python_function, module)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT)], autograph=autograph)
    def serve(bytes):  # noqa: A002  (the contract's input name, INPUT)
        probabilities = call(**{ONNX_INPUT: decode_images(bytes, input_size)})[ONNX_OUTPUT]
        probabilities = tf.ensure_shape(probabilities, [None, None])
        return {CLASSES: tf.argmax(probabilities, axis=1, output_type=tf.int64), PROBABILITIES: probabilities}

    try:
        concrete = serve.get_concrete_function()
    except BackendIsNotSupposedToImplementIt as err:
        # onnx-tf's "op not implemented" is a unittest.SkipTest: as an error, no test runner skips over it
        raise JobFailed(f"{onnx_path}: onnx-tf cannot convert this graph: "
                        f"{str(err).strip().splitlines()[-1].strip()}") from None
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=True)
    # tf.nest flattens a dict in sorted key order, which is the order of frozen.outputs
    outputs = {k: t.name for k, t in zip(sorted(concrete.structured_outputs), frozen.outputs)}
    graph_def, stats = frozen.graph.as_graph_def(), {}
    if optimize:
        graph_def, stats = optimize_graph.optimize(graph_def, [frozen.inputs[0].name, *outputs.values()],
                                                   depthwise_padding)
    return graph_def, frozen.inputs[0].name, outputs, stats


def op_counts(graph_def) -> Counter:
    """How many nodes of each op type, function bodies included (a flat graph has none)."""
    counts = Counter(n.op for n in graph_def.node)
    for fn in graph_def.library.function:
        counts.update(n.op for n in fn.node_def)
    return counts


def save_graph_savedmodel(graph_def, input_name: str, output_names: dict[str, str], export_dir: Path,
                          num_classes: int) -> None:
    """Write a plain `serve` SavedModel with a `serving_default` predict signature."""
    import tensorflow as tf  # deferred, as decode_images
    tf.get_logger().setLevel("ERROR")  # v1 SavedModel builder deprecation notices: v1 is the point here
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        bytes_in = graph.get_tensor_by_name(input_name)
        classes = graph.get_tensor_by_name(output_names[CLASSES])
        probs = graph.get_tensor_by_name(output_names[PROBABILITIES])
        probs.set_shape([None, num_classes])
        classes.set_shape([None])
        signature = v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={INPUT: bytes_in}, outputs={CLASSES: classes, PROBABILITIES: probs})
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(session, [TAG],
                                                 signature_def_map={SIGNATURE: signature},
                                                 strip_default_attrs=True)
            builder.save()


def png(pixels: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """HWC uint8 pixels as a lossless PNG, resized (bicubic) to `size` first when given."""
    image = Image.fromarray(pixels)
    if size is not None:
        image = image.resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def verify_export(export_dir: Path, classifier, input_size: int, blobs: list[bytes],
                  tol: float = PARITY_TOL) -> dict[str, Any]:
    """Reload `export_dir` in fresh processes, one with TensorFlow's oneDNN kernels and one with
    Eigen's, through both loaders; compare with PyTorch.

    Original files (JPEG bytes) and lossless PNG copies must match PyTorch within `tol`
    with the same classes under every kernel and loader; enlarged non-square copies (like a
    phone photo) are reported. A graph that one kernel library cannot run is an error here,
    whichever library this CPU uses by itself.
    """
    images = load_images(blobs, input_size).permute(0, 2, 3, 1).numpy()
    cases = {"files": blobs, "png": [png(p) for p in images],
             "resized_png": [png(p, (input_size * 3, input_size * 2)) for p in images]}
    report = parity(classifier, input_size, cases, model_dir=export_dir, kernels=tuple(KERNELS))
    require(report, str(export_dir), tol, cases=("files", "png"))
    return report


def convert_checkpoint(checkpoint: str | os.PathLike, output_dir: str | os.PathLike,
                       onnx_path: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
                       overwrite: bool = False, optimize: bool = True, depthwise_padding: str = "same",
                       log=print) -> dict[str, Any]:
    """The whole export: ONNX (+ onnxruntime parity), onnx-tf, frozen SavedModel, verification.

    Never replaces an existing `output_dir` unless `overwrite`; the export is built beside
    it and only moved into place once verified. Returns the report (parity, graph, timings),
    which is also saved as EXPORT/assets.extra/export_report.json.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise OutputExists(f"{output_dir}: already exists; pass --overwrite to replace it or pick another --output-dir")
    classifier, meta = load_checkpoint(checkpoint)
    input_size, num_classes = meta["input_size"], len(meta["class_names"])
    image_dir = images or training_folder(meta)
    if image_dir is None or not Path(image_dir).is_dir():
        raise NotFound(f"--images: need a folder of real images to check the conversion with "
                       f"(checkpoint's training folder {image_dir!r} is not available)")
    blobs = [p.read_bytes() for p in sample_images(image_dir, size=input_size)]
    started = time.time()
    phases, mark = {}, [started]  # where the export's time goes (issue 54), in the report and its log

    def lap(name: str) -> None:
        now = time.time()
        phases[name], mark[0] = round(now - mark[0], 1), now

    onnx_path = Path(onnx_path) if onnx_path else checkpoint.with_suffix(".onnx")
    if onnx_path.exists():
        log(f"replacing {onnx_path} (derived from {checkpoint})")
    export_onnx(classifier, onnx_path, input_size)
    report = parity(classifier, input_size, {"files": blobs}, onnx_path=onnx_path)
    require(report, str(onnx_path))
    report["models"] = served_models(meta["spec"], meta.get("families"))
    log(f"wrote {onnx_path}; onnxruntime vs PyTorch: {report['onnxruntime/files']}")
    lap("onnx and onnxruntime")

    graph_def, input_name, output_names, report["graph_rewrite"] = frozen_serving_graph(
        onnx_path, input_size, optimize, depthwise_padding)
    report["graph_ops"] = dict(op_counts(graph_def))
    report["graph_functions"] = len(graph_def.library.function)
    lap("onnx-tf, freeze and rewrite")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        save_graph_savedmodel(graph_def, input_name, output_names, staging / "model", num_classes)
        lap("save")
        report.update(verify_export(staging / "model", classifier, input_size, blobs))
        lap("verification (oneDNN and Eigen processes)")
        report["seconds"], report["phase_seconds"] = round(time.time() - started, 1), phases
        extra = staging / "model" / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "class_names.json").write_text(json.dumps(meta["class_names"]))
        (extra / "export_report.json").write_text(json.dumps(report, indent=1))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging / "model", output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def training_folder(meta: dict[str, Any]) -> str | None:
    """The first training folder that a checkpoint's meta records (what its run found)."""
    return next(iter((meta.get("data") or {}).get("train_dirs", [])), None)


def served_models(spec: dict[str, Any], families: list[str] | None = None) -> list[dict[str, Any]]:
    """Every classifier the export serves: its family (for an ensemble of families), architecture,
    resolution, starting weights and its weight in the served mean."""
    def walk(node: dict[str, Any], weight: float, family: str | None) -> list[dict[str, Any]]:
        if "members" not in node:
            return [{"family": family, "arch": node["arch"], "resolution": node["resolution"],
                     "weights_source": node.get("weights_source", "unrecorded"), "weight": round(weight, 6)}]
        return [m for member in node["members"] for m in walk(member, weight / len(node["members"]), family)]

    if families:
        return [m for member, family in zip(spec["members"], families)
                for m in walk(member, 1 / len(families), family)]
    return walk(spec, 1.0, None)


def format_export_report(report: dict[str, Any]) -> str:
    """The export report as text: parity per model and case, the graph's op counts, load times."""
    lines = ["served models (family, architecture, resolution, starting weights, weight in the mean):"]
    lines += [f"  {m['family'] or '-'}  {m['arch']} {m['resolution']} px  {m['weights_source']}  {m['weight']:.4f}"
              for m in report.get("models", [])]
    lines.append("parity with PyTorch (max |dprob|, class agreement, images):")
    for key, value in comparisons(report):
        lines.append(f"  {key:24s} {value['max_abs_dprob']:.2e}  {value['class_agreement']:.3f}  {value['images']}")
    ops = report.get("graph_ops", {})
    lines.append(f"  graph: {sum(ops.values())} nodes, {ops.get('Conv2D', 0)} Conv2D, {ops.get('Transpose', 0)} Transpose, "
                 f"{ops.get('BiasAdd', 0)} BiasAdd, {report.get('graph_functions', 0)} functions")
    if report.get("graph_rewrite"):
        lines.append("  NHWC rewrite: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["graph_rewrite"].items()))
    loads = [f"{key.removesuffix('_load_seconds')} {value}s" for key, value in report.items()
             if key.endswith("_load_seconds")]
    lines.append(f"  load: {', '.join(loads)}; total {report['seconds']}s")
    if report.get("phase_seconds"):
        lines.append("  time: " + ", ".join(f"{k} {v}s" for k, v in report["phase_seconds"].items()))
    return "\n".join(lines)

