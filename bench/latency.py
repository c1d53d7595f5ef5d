"""Serving speed: PyTorch, ONNX Runtime and SavedModels on the same JPEG bytes, interleaved.

    python -m bench.latency --checkpoint RUN/model.pt --model-dir NAME=EXPORT [NAME2=EXPORT2 ...]
        --images DIR [--threads 2] [--reps 50] [--kernels onednn eigen]

Every backend starts from the same JPEG bytes: PyTorch and ONNX Runtime decode with PIL (as
training does), the SavedModels decode inside `serving_default` (graph-mode loader, as gcloud
and TF Serving). After a warm-up, one call of each backend per round, round after round, so
that machine noise hits them alike. Prints the median and min/max ms per batch and each
median's ratio to ONNX Runtime, at batch 1 and 32, then each backend's median timed alone
(its own rounds back to back, warm caches) and that ratio.

`--kernels onednn eigen` runs the whole measurement once per TensorFlow kernel library, each in
its own process (TF_ENABLE_ONEDNN_OPTS=1 / 0, read when TensorFlow starts), one table after the other.

Idle worker threads that spin-wait would steal the cores from the backend that runs next
(measured here: ONNX Runtime's spinning pool made the SavedModel after it 1.5x slower at
batch 1 and 32), so spin-waiting is off by default: ONNX Runtime's `allow_spinning` 0 and
OpenMP's `OMP_WAIT_POLICY=PASSIVE` for PyTorch; `--spin` leaves both at their defaults.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from bench.machine import cpu_description, tf_kernels
from bench.timing import timed
from mug_errors import command


def measure_latency(checkpoint: str, exports: dict[str, str], images: str, threads: int = 2, reps: int = 50,
                    batches: Sequence[int] = (1, 32), spin: bool = False) -> list[dict[str, Any]]:
    """A row per backend and batch size: "backend", "batch", "median_ms", "min_ms", "max_ms" (interleaved
    rounds), "alone_ms" (its own rounds back to back) and both medians' ratios to ONNX Runtime's.

    Without `spin`, thread spin-waiting is off; OpenMP reads that when torch starts, so call this
    before anything has imported torch (as `main` does) for it to hold for PyTorch too."""
    if not spin:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read when torch's OpenMP starts, so before importing it

    # deferred: OMP_WAIT_POLICY above must be set before torch (and ONNX Runtime) start
    import torch

    from convert.export_onnx import onnx_probabilities, onnx_session
    from serving.saved_model import SavedModelPredictor
    from torch_trainer.classifier.photos import image_files, load_images
    from torch_trainer.classifier.network import class_probabilities, load_checkpoint

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # settable once, before torch's first parallel work: a caller that ran some keeps its own
        pass
    model, meta = load_checkpoint(checkpoint)
    session = onnx_session(Path(checkpoint).with_suffix(".onnx"), threads, spin=spin)
    predictors = {name: SavedModelPredictor(path, threads=threads) for name, path in exports.items()}
    blobs = [p.read_bytes() for p in image_files(images)[:max(batches)]]

    def run_torch(batch):
        return class_probabilities(model, load_images(batch, meta["input_size"]))

    def run_ort(batch):
        return onnx_probabilities(session, load_images(batch, meta["input_size"]))

    backends = {"pytorch": run_torch, "onnxruntime": run_ort}
    backends.update({f"savedmodel:{name}": p.predict for name, p in predictors.items()})
    rows = []
    for b in batches:
        batch = blobs[:b]
        times: dict[str, list[float]] = {name: [] for name in backends}
        for rep in range(reps + 5):
            for name, fn in backends.items():
                t0 = time.perf_counter()
                fn(batch)
                if rep >= 5:
                    times[name].append((time.perf_counter() - t0) * 1e3)
        alone = {name: statistics.median(timed(fn, batch, reps)) for name, fn in backends.items()}
        base = statistics.median(times["onnxruntime"])
        for name, ts in times.items():
            rows.append({"backend": name, "batch": b, "median_ms": statistics.median(ts), "min_ms": min(ts),
                         "max_ms": max(ts), "vs_onnxruntime": statistics.median(ts) / base, "alone_ms": alone[name],
                         "alone_vs_onnxruntime": alone[name] / alone["onnxruntime"]})
    return rows


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="RUN/model.pt (its ONNX file next to it)")
    parser.add_argument("--model-dir", nargs="+", required=True, metavar="NAME=EXPORT")
    parser.add_argument("--images", required=True, help="folder of 64x64 JPEGs (class folders or flat)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--spin", action="store_true", help="leave thread spin-waiting on (library defaults)")
    parser.add_argument("--kernels", nargs="+", choices=("onednn", "eigen"),
                        help="TensorFlow's CPU kernels, each in its own process (default: TensorFlow's choice)")
    args = parser.parse_args(argv)
    if args.kernels and len(args.kernels) > 1:
        rest = list(argv if argv is not None else sys.argv[1:])
        rest = rest[:rest.index("--kernels")] + [a for a in rest[rest.index("--kernels") + 1:] if a not in args.kernels]
        for kernel in args.kernels:
            proc = subprocess.run([sys.executable, "-m", "bench.latency", *rest, "--kernels", kernel])
            if proc.returncode:
                return proc.returncode
        return 0
    if args.kernels:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = {"onednn": "1", "eigen": "0"}[args.kernels[0]]
    bad = [item for item in args.model_dir if "=" not in item or not all(item.split("=", 1))]
    if bad:
        parser.error(f"--model-dir takes NAME=EXPORT (a name for the table, then the SavedModel folder), not {bad[0]!r}")
    rows = measure_latency(args.checkpoint, dict(item.split("=", 1) for item in args.model_dir), args.images,
                           args.threads, args.reps, args.batches, args.spin)
    print(f"{cpu_description()}, {os.cpu_count()} CPUs; TensorFlow kernels: {tf_kernels()}; threads: torch {args.threads} "
          f"(interop 1), onnxruntime intra {args.threads} inter 1, TF Session intra {args.threads} inter 1; "
          f"spin-waiting {'library defaults' if args.spin else 'off'}; {args.reps} interleaved rounds after 5 "
          f"warm-up rounds, then {args.reps} rounds of each alone; JPEG bytes in, decode included")
    print(f"{'backend':24s} {'batch':>5s} {'median ms':>10s} {'min':>8s} {'max':>8s} {'vs ORT':>7s} "
          f"{'alone ms':>9s} {'vs ORT':>7s}")
    for r in rows:
        print(f"{r['backend']:24s} {r['batch']:5d} {r['median_ms']:10.2f} {r['min_ms']:8.2f} {r['max_ms']:8.2f} "
              f"{r['vs_onnxruntime']:7.2f} {r['alone_ms']:9.2f} {r['alone_vs_onnxruntime']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
