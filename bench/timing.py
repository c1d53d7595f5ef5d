"""The speed benchmarks' timer: a call timed back to back after a warm-up."""

from __future__ import annotations

import time


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
