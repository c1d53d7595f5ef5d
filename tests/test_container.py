"""The custom serving container, as far as it can be checked without a container registry: the
Dockerfile's own command serves an export under Vertex AI's variables, the model behind a storage URI,
from a Python that has only the serving requirements (.ci/run builds it: $FIND_ML6_MUG_SERVE_PYTHON)."""

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from check_deployed_model.server.process import free_port
from conftest import ROOT
from draw_mug import draw_mug
from serving.saved_model import SavedModelPredictor

# Stages the export in TensorFlow's in-memory filesystem (standing in for gs://), in the server's own
# process, then runs the module the Dockerfile's CMD names with the CMD's arguments.
STAGE = """
import runpy, sys
import tensorflow as tf
source, uri, module, *args = sys.argv[1:]
for root, _, files in tf.io.gfile.walk(source):
    target = uri + root[len(source):]
    tf.io.gfile.makedirs(target)
    for name in files:
        tf.io.gfile.copy(f"{root}/{name}", f"{target}/{name}")
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def dockerfile_command() -> list[str]:
    """The Dockerfile's CMD (its JSON form)."""
    text = (ROOT / "Dockerfile").read_text()
    found = re.findall(r"^CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert len(found) == 1, "one CMD, in JSON form"
    return json.loads(found[0])


def serve_python() -> str:
    """The serving-only Python .ci/run makes from requirements-serve.txt; this one elsewhere."""
    python = os.environ.get("FIND_ML6_MUG_SERVE_PYTHON")
    if not python and os.environ.get("CI"):
        pytest.fail("FIND_ML6_MUG_SERVE_PYTHON is not set: .ci/run builds .venv-serve from requirements-serve.txt")
    return python or sys.executable


def call(url: str, payload: dict | None = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_image_holds_only_what_serving_needs():
    command = dockerfile_command()
    assert command[:3] == ["python", "-m", "check_deployed_model.local_server"] and "0.0.0.0" in command
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements-serve.txt" in text and not re.search(r"torch_trainer|convert/|requirements\.txt", text)
    wanted = [line.split("==")[0] for line in (ROOT / "requirements-serve.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert "tensorflow-cpu" in wanted and not {"torch", "torchvision", "onnx", "onnx-tf", "kornia"} & set(wanted)


def test_the_dockerfile_command_serves_under_vertex_variables(export, tmp_path):
    model_dir, _ = export
    command = dockerfile_command()
    port = free_port()
    health, predict = "/vertex/health", "/v1/endpoints/1/deployedModels/2:predict"
    env = {**os.environ, "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": health, "AIP_PREDICT_ROUTE": predict,
           "AIP_STORAGE_URI": "ram://bucket/mug-model", "MODEL_DIR": str(tmp_path / "not-this-one")}
    python = serve_python()
    proc = subprocess.Popen([python, "-c", STAGE, str(model_dir), "ram://bucket/mug-model", *command[2:]],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.time() < deadline, "the server did not answer its health route within 120 s"
            try:
                status, reply = call(base + health)
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200 and reply["status"] == "ok"
        photos = []
        for label in (0, 1, 2, 3):
            buffer = io.BytesIO()
            draw_mug(label, seed=5).save(buffer, "JPEG", quality=95)
            photos.append(buffer.getvalue())
        request = {"instances": [{"bytes": {"b64": base64.b64encode(p).decode()}} for p in photos]}
        status, reply = call(base + predict, request)
        assert status == 200, reply
        expected = SavedModelPredictor(model_dir, "graph").predict(photos)
        served = np.array([p["PROBABILITIES"] for p in reply["predictions"]])
        assert np.abs(served - expected["PROBABILITIES"]).max() < 1e-6
        assert [p["CLASSES"] for p in reply["predictions"]] == expected["CLASSES"].tolist()
        status, reply = call(base + predict, {"instances": [{"bytes": {"b64": "not base64!"}}]})
        assert status == 400 and "b64" in reply["error"]
        status, reply = call(base + predict, request)  # a bad request leaves it serving
        assert status == 200 and len(reply["predictions"]) == 4
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "serving ram://bucket/mug-model" in output and f"POST {predict}" in output
    if python != sys.executable:  # the serving-only Python has no torch to import: prove it
        probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


def test_without_a_model_the_server_says_where_it_looks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AIP_STORAGE_URI", "MODEL_DIR")}
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "AIP_STORAGE_URI" in proc.stderr
    env["AIP_STORAGE_URI"] = "ram://nowhere/model"
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ram://nowhere/model: no saved_model.pb" in proc.stderr
    env["AIP_STORAGE_URI"], env["AIP_HTTP_PORT"] = str(tmp_path), "eighty"
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "AIP_HTTP_PORT='eighty'" in proc.stderr
