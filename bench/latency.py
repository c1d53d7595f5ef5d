"""Serving speed: PyTorch, ONNX Runtime and SavedModels on the same JPEG bytes, interleaved.

    python -m bench.latency --checkpoint RUN/model.pt --model-dir NAME=EXPORT [NAME2=EXPORT2 ...]
        --images DIR [--threads 2] [--reps 50]

Every backend starts from the same JPEG bytes: PyTorch and ONNX Runtime decode with PIL (as
training does), the SavedModels decode inside `serving_default` (graph-mode loader, as gcloud
and TF Serving). After a warm-up, one call of each backend per round, round after round, so
that machine noise hits them alike. Prints the median and min/max ms per batch and each
median's ratio to ONNX Runtime, at batch 1 and 32, then each backend's median timed alone
(its own rounds back to back, warm caches) and that ratio.

Idle worker threads that spin-wait would steal the cores from the backend that runs next
(measured here: ONNX Runtime's spinning pool made the SavedModel after it 1.5x slower at
batch 1 and 32), so spin-waiting is off by default: ONNX Runtime's `allow_spinning` 0 and
OpenMP's `OMP_WAIT_POLICY=PASSIVE` for PyTorch; `--spin` leaves both at their defaults.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench.machine import cpu_description
from bench.timing import timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="RUN/model.pt (its ONNX file next to it)")
    parser.add_argument("--model-dir", nargs="+", required=True, metavar="NAME=EXPORT")
    parser.add_argument("--images", required=True, help="folder of 64x64 JPEGs (class folders or flat)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--spin", action="store_true", help="leave thread spin-waiting on (library defaults)")
    args = parser.parse_args()
    bad = [item for item in args.model_dir if "=" not in item or not all(item.split("=", 1))]
    if bad:
        parser.error(f"--model-dir takes NAME=EXPORT (a name for the table, then the SavedModel folder), not {bad[0]!r}")
    if not args.spin:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read when torch's OpenMP starts, so before importing it

    # deferred: OMP_WAIT_POLICY above must be set before torch (and ONNX Runtime) start
    import torch

    from convert.export_onnx import onnx_probabilities, onnx_session
    from serving.saved_model import SavedModelPredictor
    from torch_trainer.data import image_files, load_images
    from torch_trainer.model import class_probabilities, load_checkpoint

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    session = onnx_session(Path(args.checkpoint).with_suffix(".onnx"), args.threads, spin=args.spin)
    exports = dict(item.split("=", 1) for item in args.model_dir)
    predictors = {name: SavedModelPredictor(path, "graph", threads=args.threads) for name, path in exports.items()}
    files = image_files(args.images)
    blobs = [p.read_bytes() for p in files[:max(args.batches)]]

    def run_torch(batch):
        return class_probabilities(model, load_images(batch, meta["input_size"]))

    def run_ort(batch):
        return onnx_probabilities(session, load_images(batch, meta["input_size"]))

    backends = {"pytorch": run_torch, "onnxruntime": run_ort}
    backends.update({f"savedmodel:{name}": p.predict for name, p in predictors.items()})
    print(f"{cpu_description()}, {os.cpu_count()} CPUs; threads: torch {args.threads} "
          f"(interop 1), onnxruntime intra {args.threads} inter 1, TF Session intra {args.threads} inter 1; "
          f"spin-waiting {'library defaults' if args.spin else 'off'}; {args.reps} interleaved rounds after 5 "
          f"warm-up rounds, then {args.reps} rounds of each alone; JPEG bytes in, decode included")
    print(f"{'backend':24s} {'batch':>5s} {'median ms':>10s} {'min':>8s} {'max':>8s} {'vs ORT':>7s} "
          f"{'alone ms':>9s} {'vs ORT':>7s}")
    for b in args.batches:
        batch = blobs[:b]
        times = {name: [] for name in backends}
        for rep in range(args.reps + 5):
            for name, fn in backends.items():
                t0 = time.perf_counter()
                fn(batch)
                if rep >= 5:
                    times[name].append((time.perf_counter() - t0) * 1e3)
        alone = {name: statistics.median(timed(fn, batch, args.reps)) for name, fn in backends.items()}
        base = statistics.median(times["onnxruntime"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:24s} {b:5d} {med:10.2f} {min(ts):8.2f} {max(ts):8.2f} {med / base:7.2f} "
                  f"{alone[name]:9.2f} {alone[name] / alone['onnxruntime']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
