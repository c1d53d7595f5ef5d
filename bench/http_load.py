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

from bench.timing import timed
from check_deployed_model.server_process import start_server
from check_deployed_model.protocol import render
from serving.saved_model import SavedModelPredictor
from torch_trainer.data import image_files



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    server, base = start_server(args.model_dir, max(args.instances), timeout=120, quiet=True)
    url = f"{base}/v1/models/mug:predict"
    try:
        blobs = [p.read_bytes() for p in image_files(args.images)[:max(args.instances)]]
        local = SavedModelPredictor(args.model_dir, "graph")
        print(f"{os.cpu_count()} CPUs, server and {args.clients} clients on this machine, {args.seconds:.0f}s per size")
        print(f"{'instances':>9s} {'req/s':>8s} {'images/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'in-process ms':>14s}")
        for n in args.instances:
            body = render(blobs[:n], "request").encode()

            def send() -> float:
                t0 = time.perf_counter()
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    assert r.status == 200 and len(json.loads(r.read())["predictions"]) == n
                return (time.perf_counter() - t0) * 1e3

            for _ in range(5):
                send()
            latencies: list[float] = []
            stop = time.time() + args.seconds

            def client():
                while time.time() < stop:
                    latencies.append(send())

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            started = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            latencies.sort()
            inproc = statistics.median(timed(local.predict, blobs[:n], 20))
            print(f"{n:9d} {len(latencies) / elapsed:8.1f} {len(latencies) * n / elapsed:9.1f} "
                  f"{latencies[len(latencies) // 2]:8.1f} {latencies[int(len(latencies) * 0.99)]:8.1f} {inproc:14.1f}")
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
