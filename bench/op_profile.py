"""Where serving time goes: the SavedModel's ops (TensorFlow step stats) beside ONNX Runtime's (its profiler).

    python -m bench.op_profile --checkpoint RUN/model.pt --model-dir EXPORT --images DIR
        [--threads 2] [--reps 20] [--batches 1 32]

Both run the same model on the same images, the SavedModel through the graph-mode loader
from JPEG bytes (as gcloud and TF Serving), ONNX Runtime on pixels. For each batch size it
prints the ms per call that each spends in its convolutions, grouped by output shape (one
group per ResNet stage), and in every other op kind, with the ratio TF / ORT. Kernel times
come from tracing, which slows both a little; the untraced median per call is printed too.
Whether TensorFlow runs its convolutions on oneDNN or on Eigen is printed with the CPU: it is
what decides them (stock TensorFlow turns oneDNN on by default only on CPUs with AVX-512
VNNI, AVX-512 BF16 or AMX).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from bench.machine import cpu_description
from bench.timing import timed
from convert.export_onnx import onnx_probabilities, onnx_session
from mug_errors import command
from serving.contract import INPUT, PROBABILITIES
from serving.saved_model import SavedModelPredictor
from torch_trainer.classifier.photos import image_files, load_images
from torch_trainer.classifier.network import load_checkpoint


def tf_op_times(session, fetch: str, feed: dict, reps: int) -> Counter:
    """ms per call by kind ("conv HxWxC" for a convolution, else the op type), from step stats."""
    import tensorflow as tf  # deferred: --help answers without loading TensorFlow
    v1 = tf.compat.v1
    times: Counter = Counter()
    for _ in range(reps):
        meta = v1.RunMetadata()
        session.run(fetch, feed, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE), run_metadata=meta)
        for node in (n for dev in meta.step_stats.dev_stats for n in dev.node_stats):
            label = node.timeline_label
            op = label.split("=", 1)[1].split("(", 1)[0].strip() if "=" in label else node.node_name
            if "Conv2D" in op and node.output:
                dims = [d.size for d in node.output[0].tensor_description.shape.dim]  # NHWC
                op = "conv " + "x".join(map(str, dims[1:]))
            times[op] += (node.op_end_rel_micros - node.op_start_rel_micros) / 1e3 / reps
    return times


def ort_op_times(onnx_path: str, images, threads: int, reps: int) -> Counter:
    """ms per call by kind, as `tf_op_times` names them, from ONNX Runtime's profiler (a session
    of its own: a profile ends with the session's)."""
    with tempfile.TemporaryDirectory() as tmp:
        traced = onnx_session(onnx_path, threads, profile_dir=tmp)
        for _ in range(reps):
            onnx_probabilities(traced, images)
        events = json.loads(Path(traced.end_profiling()).read_text())
    times: Counter = Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        if op in ("Conv", "FusedConv"):
            dims = next(iter(event["args"]["output_type_shape"][0].values()))  # NCHW
            op = f"conv {dims[2]}x{dims[3]}x{dims[1]}"
        times[op] += event["dur"] / 1e3 / reps
    return times


def profile_ops(checkpoint: str, model_dir: str, images: str, threads: int = 2, reps: int = 20,
                batches: Sequence[int] = (1, 32)) -> dict[int, dict[str, Any]]:
    """{batch: {"tf_ms", "ort_ms" (untraced medians per call), "tf_ops", "ort_ops" (ms per call by kind)}}."""
    _, meta = load_checkpoint(checkpoint)
    onnx_path = str(Path(checkpoint).with_suffix(".onnx"))
    predictor = SavedModelPredictor(model_dir, threads=threads)
    session, fetch = predictor.session, predictor.output_names[PROBABILITIES]
    ort_plain = onnx_session(onnx_path, threads)
    blobs = [p.read_bytes() for p in image_files(images)[:max(batches)]]
    result = {}
    for batch in batches:
        feed = {predictor.input_names[INPUT]: blobs[:batch]}
        pixels = load_images(blobs[:batch], meta["input_size"])
        result[batch] = {"tf_ms": statistics.median(timed(lambda f: session.run(fetch, f), feed, reps)),
                         "tf_ops": tf_op_times(session, fetch, feed, reps),
                         "ort_ms": statistics.median(timed(lambda x: onnx_probabilities(ort_plain, x), pixels, reps)),
                         "ort_ops": ort_op_times(onnx_path, pixels, threads, reps)}
    predictor.close()
    return result


def table(tf_ops: Counter, ort_ops: Counter) -> list[tuple[str, float, float]]:
    """(kind, TF ms, ORT ms) rows: convolutions by output size (largest first), their sum, the eight
    costliest other kinds, then all ops."""
    convs = sorted({k for k in tf_ops | ort_ops if k.startswith("conv ")}, key=lambda k: -int(k.split()[1].split("x")[0]))
    others = sorted({k for k in tf_ops | ort_ops if not k.startswith("conv ")}, key=lambda k: -max(tf_ops[k], ort_ops[k]))
    return ([(k, tf_ops[k], ort_ops[k]) for k in convs]
            + [("all convolutions", sum(tf_ops[k] for k in convs), sum(ort_ops[k] for k in convs))]
            + [(k, tf_ops[k], ort_ops[k]) for k in others[:8]]
            + [("all ops", sum(tf_ops.values()), sum(ort_ops.values()))])


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="RUN/model.pt (its ONNX file next to it)")
    parser.add_argument("--model-dir", required=True, help="the SavedModel exported from it")
    parser.add_argument("--images", required=True, help="folder of JPEGs (class folders or flat)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args(argv)

    import tensorflow as tf  # deferred: --help answers without loading TensorFlow
    from tensorflow.python.util import _pywrap_util_port

    result = profile_ops(args.checkpoint, args.model_dir, args.images, args.threads, args.reps, args.batches)
    print(f"{cpu_description()}; TensorFlow {tf.__version__} convolutions on "
          f"{'oneDNN' if _pywrap_util_port.IsMklEnabled() else 'Eigen (oneDNN off)'}; "
          f"{args.threads} threads each, inter-op 1; {args.reps} traced calls per side")
    for batch, r in result.items():
        print(f"\nbatch {batch}: untraced median per call, TF {r['tf_ms']:.2f} ms (decode included), "
              f"ORT {r['ort_ms']:.2f} ms (decoded pixels in), ratio {r['tf_ms'] / r['ort_ms']:.2f}")
        print(f"  {'kind':22s} {'TF ms':>8s} {'ORT ms':>8s} {'TF/ORT':>7s}")
        for kind, t, o in table(r["tf_ops"], r["ort_ops"]):
            print(f"  {kind:22s} {t:8.3f} {o:8.3f} {t / o if o else float('nan'):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
