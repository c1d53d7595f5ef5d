"""`check_deployed_model.local_server` started in a child process on loopback, for the load bench and the
tests: a free port, then polling /health until the model has loaded."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mug_errors import JobFailed

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str | Path, max_instances: int = 64, timeout: float = 60.0,
                 quiet: bool = False) -> tuple[subprocess.Popen, str]:
    """Start the server on a free loopback port; return it and its base URL once /health answers.

    Raises JobFailed with the server's own output when it exits or does not answer in `timeout`
    seconds (with `quiet` its output is discarded and only the fact is reported)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "check_deployed_model.local_server", "--model-dir", str(model_dir),
                             "--port", str(port), "--max-instances", str(max_instances)], cwd=ROOT,
                            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc, base
        except OSError:  # refused until uvicorn listens; URLError and timeouts are OSErrors
            time.sleep(0.3)
    proc.kill()
    output = "" if quiet else proc.communicate()[0][-2000:]
    raise JobFailed(f"the server for {model_dir} did not start within {timeout:.0f}s: {output}")
