"""Helpers the speed benchmarks share: a call timed back to back, an ONNX Runtime session set up alike."""

from __future__ import annotations

import time


def ort_session(onnx_path: str, threads: int, spin: bool = False, profile_dir: str | None = None):
    """An ONNX Runtime CPU session on `threads` intra-op threads (inter-op 1), spin-waiting off
    unless `spin`, profiling into `profile_dir` when given."""
    import onnxruntime as ort  # deferred: the serving benchmarks import torch first, after OMP settings
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if profile_dir:
        options.enable_profiling, options.profile_file_prefix = True, f"{profile_dir}/ort"
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def timed(fn, batch, reps: int, warmup: int = 5) -> list[float]:
    """ms per call of `fn(batch)`, `reps` calls back to back after `warmup` untimed ones."""
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    return times
