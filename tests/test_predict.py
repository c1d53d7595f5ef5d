import base64
import json

import numpy as np
import pytest

from check_deployed_model.protocol import RequestError, instance_bytes, read_instances, render
from serving.saved_model import SavedModelPredictor
from draw_mug import draw_mug
from conftest import ROOT, run_main, run_module


def rows(stdout):
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["CLASSES", "PROBABILITIES"]
    return [(int(line.split(None, 1)[0]), json.loads(line.split(None, 1)[1])) for line in lines[1:]]


def test_project_test_json_is_one_instance_per_line():
    lines = (ROOT / "check_deployed_model" / "test.json").read_text().splitlines()
    assert len(lines) == 1
    blob = base64.b64decode(json.loads(lines[0])["bytes"]["b64"])
    assert blob[:2] == b"\xff\xd8"  # a JPEG


def test_predict_table_matches_in_process_model(export, data_root, tmp_path):
    model_dir, _ = export
    images = [data_root / "eval" / c / "4.jpg" for c in ("0white", "1black", "2blue", "3transparent")]
    (tmp_path / "req.json").write_text(render([p.read_bytes() for p in images], "instances"))
    proc = run_module("check_deployed_model.predict", "--model-dir", str(model_dir),
                      "--json-instances", str(tmp_path / "req.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = rows(proc.stdout)
    expected = SavedModelPredictor(model_dir, "tf2").predict([p.read_bytes() for p in images])
    assert [c for c, _ in table] == expected["CLASSES"].tolist()
    np.testing.assert_allclose([p for _, p in table], expected["PROBABILITIES"], atol=1e-6)


def test_predict_request_format_json(export, tmp_path):
    model_dir, _ = export
    drawn = []
    for label in (0, 2):
        drawn.append(tmp_path / f"{label}.jpg")
        draw_mug(label).save(drawn[-1], quality=95)
    made = run_main("check_deployed_model.make_request", *map(str, drawn), "--format", "request",
                      "-o", str(tmp_path / "request.json"))
    assert made.returncode == 0, made.stderr
    proc = run_module("check_deployed_model.predict", "--model-dir", str(model_dir), "--json-request",
                      str(tmp_path / "request.json"), "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = json.loads(proc.stdout)["predictions"]
    assert len(preds) == 2
    for p in preds:
        assert set(p) == {"CLASSES", "PROBABILITIES"} and len(p["PROBABILITIES"]) == 4
        assert p["CLASSES"] == int(np.argmax(p["PROBABILITIES"]))
        assert abs(sum(p["PROBABILITIES"]) - 1) < 1e-5


@pytest.mark.parametrize("text, fmt, message", [
    ('{"bytes": {"b64": "AAAA"}}\n{oops\n', "instances", ":2: not valid JSON"),
    ('{"instances": {}}', "request", "must be a list"),
    ('{"inst": []}', "request", '"instances"'),
    ("\n\n", "instances", "no instances"),
])
def test_bad_request_files_name_the_place(tmp_path, text, fmt, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(RequestError, match=message) as err:
        read_instances(path, fmt)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("inst, message", [
    ({"image": "x"}, r"instances\[0\]"),
    ({"bytes": {"b64": "not base64!"}}, "invalid base64"),
])
def test_bad_instances_are_named(inst, message):
    with pytest.raises(RequestError, match=message):
        instance_bytes([inst])


def test_predict_cli_errors_are_clear(export, tmp_path):
    model_dir, _ = export
    bad = tmp_path / "notimage.json"
    bad.write_text(json.dumps({"bytes": {"b64": base64.b64encode(b"hello").decode()}}) + "\n")
    proc = run_main("check_deployed_model.predict", "--model-dir", str(model_dir), "--json-instances", str(bad))
    assert proc.returncode == 2 and "not a decodable" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_main("check_deployed_model.predict", "--model-dir", str(tmp_path), "--json-instances", str(bad))
    assert proc.returncode == 2 and "saved_model.pb" in proc.stderr
