"""Local prediction server throughput and latency, end to end over HTTP on loopback.

    python -m bench.http_load --model-dir EXPORT --images DIR [--clients 4] [--seconds 10] [--instances 1 32]

Starts `check_deployed_model.local_server` on a free loopback port, then for each request size runs
`--clients` concurrent clients for `--seconds` (after a warm-up) and prints requests/s,
images/s and p50/p99 latency. In-process SavedModel time for the same batch is printed beside
it, so the HTTP/JSON overhead shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from typing import Sequence

from bench.timing import timed
from check_deployed_model.protocol import render
from check_deployed_model.server.process import start_server
from mug_errors import JobFailed, command
from serving.saved_model import SavedModelPredictor
from torch_trainer.classifier.photos import image_files


def measure_http_load(model_dir: str, images: str, clients: int = 4, seconds: float = 10,
                      instances: Sequence[int] = (1, 32)) -> list[dict[str, float]]:
    """Start the local server on a free loopback port; per request size, `clients` concurrent clients
    for `seconds` after a warm-up. A row per size: "instances", "requests_per_second",
    "images_per_second", "p50_ms", "p99_ms" and "in_process_ms" (the same batch without HTTP)."""
    server, base = start_server(model_dir, max(instances), timeout=120, quiet=True)
    url = f"{base}/v1/models/mug:predict"
    rows = []
    try:
        blobs = [p.read_bytes() for p in image_files(images)[:max(instances)]]
        local = SavedModelPredictor(model_dir)
        for n in instances:
            body = render(blobs[:n], "request").encode()

            def send() -> float:
                t0 = time.perf_counter()
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status != 200 or len(json.loads(r.read())["predictions"]) != n:
                        raise JobFailed(f"{url}: HTTP {r.status} or a reply without {n} predictions")
                return (time.perf_counter() - t0) * 1e3

            for _ in range(5):
                send()
            latencies: list[float] = []
            failures: list[Exception] = []
            stop = time.time() + seconds

            def client():
                try:
                    while time.time() < stop:
                        latencies.append(send())
                except Exception as err:  # a thread's error would vanish with it: hand it to the caller
                    failures.append(err)

            threads = [threading.Thread(target=client) for _ in range(clients)]
            started = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            if failures:
                raise JobFailed(f"{url}: {len(failures)} of {clients} clients failed, first: {failures[0]}")
            latencies.sort()
            rows.append({"instances": n, "requests_per_second": len(latencies) / elapsed,
                         "images_per_second": len(latencies) * n / elapsed, "p50_ms": latencies[len(latencies) // 2],
                         "p99_ms": latencies[int(len(latencies) * 0.99)],
                         "in_process_ms": statistics.median(timed(local.predict, blobs[:n], 20))})
    finally:
        server.terminate()
        server.wait(timeout=20)
    return rows


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args(argv)
    rows = measure_http_load(args.model_dir, args.images, args.clients, args.seconds, args.instances)
    print(f"{os.cpu_count()} CPUs, server and {args.clients} clients on this machine, {args.seconds:.0f}s per size")
    print(f"{'instances':>9s} {'req/s':>8s} {'images/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'in-process ms':>14s}")
    for r in rows:
        print(f"{r['instances']:9d} {r['requests_per_second']:8.1f} {r['images_per_second']:9.1f} "
              f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['in_process_ms']:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
