import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving.saved_model import ImageDecodeError, SavedModelPredictor
from conftest import EXPORT_CHECKS, ROOT, SERVED_MODELS, run_main
from serving.contract import check_contract, read_signature
from convert.compare import ParityError, parity, require
from mug_errors import JobFailed
from convert.export_onnx import export_onnx, onnx_probabilities, onnx_session, sample_images
from torch_trainer.classifier.photos import load_images
from torch_trainer.classifier.network import MugClassifier, class_probabilities, load_checkpoint


def test_onnx_matches_pytorch_with_dynamic_batch(trained_run, data_root, tmp_path):
    model, meta = load_checkpoint(trained_run / "model.pt")
    path = export_onnx(model, tmp_path / "m.onnx", 64)
    files = sample_images(data_root / "eval", 16, size=64)
    report = parity(model, 64, {"files": [p.read_bytes() for p in files]}, onnx_path=path)
    assert set(report) == {"onnxruntime/files"} and report["onnxruntime/files"]["images"] == len(files)
    assert report["onnxruntime/files"]["max_abs_dprob"] <= 1e-5 and report["onnxruntime/files"]["class_agreement"] == 1.0
    require(report, str(path))
    images, session = load_images(files, 64), onnx_session(path)
    whole = onnx_probabilities(session, images)
    for n in (1, 5):  # batches of 1 and 5 through the dynamic batch axis give the same numbers
        np.testing.assert_allclose(onnx_probabilities(session, images, batch_size=n), whole, atol=1e-6)
    np.testing.assert_allclose(whole.sum(1), 1, atol=1e-5)


def test_onnx_parity_check_catches_a_different_model(trained_run, data_root, tmp_path):
    model, _ = load_checkpoint(trained_run / "model.pt")
    path = export_onnx(MugClassifier("resnet18", 4).eval(), tmp_path / "other.onnx", 64)
    blobs = [p.read_bytes() for p in sample_images(data_root / "eval", 8, size=64)]
    with pytest.raises(ParityError, match="disagrees"):
        require(parity(model, 64, {"files": blobs}, onnx_path=path), str(path))


def test_export_has_the_exact_contract(export):
    model_dir, _ = export
    assert read_signature(model_dir) == {
        "inputs": {"bytes": ("DT_STRING", [-1])},
        "outputs": {"CLASSES": ("DT_INT64", [-1]), "PROBABILITIES": ("DT_FLOAT", [-1, 4])}}
    check_contract(model_dir)
    cli = subprocess.run([str(ROOT / ".venv/bin/saved_model_cli") if (ROOT / ".venv/bin/saved_model_cli").exists()
                          else "saved_model_cli", "show", "--dir", str(model_dir), "--tag_set", "serve",
                          "--signature_def", "serving_default"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "inputs['bytes']" in cli.stdout and "DT_STRING" in cli.stdout
    assert "outputs['CLASSES']" in cli.stdout and "outputs['PROBABILITIES']" in cli.stdout


def test_conversion_report_is_within_bounds(export):
    _, report = export
    for key in EXPORT_CHECKS:
        assert report[key]["max_abs_dprob"] <= 1e-5 and report[key]["class_agreement"] == 1.0, (key, report[key])
    assert all(report[f"{m}/resized_png"]["max_abs_dprob"] < 0.05 for m in SERVED_MODELS)
    # the NHWC rewrite: onnx-tf's 64 Transposes are gone but for at most the one that feeds the
    # head's Reshape, and every conv bias is a fusable BiasAdd
    counts = report["graph_ops"]
    assert counts["Conv2D"] == 20 and counts["BiasAdd"] == 20 and counts.get("Transpose", 0) <= 1, counts


GRAPH_MODE_SCRIPT = """
import sys, time, base64, json
import numpy as np
import tensorflow as tf
t0 = time.time()
with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], sys.argv[1])
    sig = meta.signature_def["serving_default"]
    out = sess.run({k: v.name for k, v in sig.outputs.items()},
                   {sig.inputs["bytes"].name: np.array([open(p, "rb").read() for p in sys.argv[2:]], dtype=object)})
print(json.dumps({"seconds": time.time() - t0, "classes": out["CLASSES"].tolist(),
                  "probabilities": out["PROBABILITIES"].tolist()}))
"""


def test_graph_mode_loader_answers_within_30s(export, trained_run, data_root):
    import json
    model_dir, _ = export
    paths = sample_images(data_root / "eval", 8, size=64)
    proc = subprocess.run([sys.executable, "-c", GRAPH_MODE_SCRIPT, str(model_dir), *map(str, paths)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    model, _ = load_checkpoint(trained_run / "model.pt")
    reference = class_probabilities(model, load_images(paths, 64))
    assert np.abs(np.array(result["probabilities"]) - reference).max() <= 1e-5
    assert result["classes"] == reference.argmax(1).tolist()


def test_tf2_loader_png_and_other_sizes(export, trained_run, data_root):
    model_dir, _ = export
    model, _ = load_checkpoint(trained_run / "model.pt")
    predictor = SavedModelPredictor(model_dir, "tf2")
    path = sample_images(data_root / "eval", 4, size=64)[1]
    pixels = load_images([path], 64)
    image = Image.fromarray(pixels[0].permute(1, 2, 0).numpy())
    png, big = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG")
    image.resize((250, 180), Image.BICUBIC).save(big, format="JPEG", quality=90)
    out = predictor.predict([path.read_bytes(), png.getvalue(), big.getvalue()])
    assert out["PROBABILITIES"].shape == (3, 4) and out["CLASSES"].dtype == np.int64
    reference = class_probabilities(model, pixels)[0]
    np.testing.assert_allclose(out["PROBABILITIES"][0], reference, atol=1e-5)
    np.testing.assert_allclose(out["PROBABILITIES"][1], reference, atol=1e-5)
    big_ref = class_probabilities(model, load_images([big.getvalue()], 64))[0]
    assert np.abs(out["PROBABILITIES"][2] - big_ref).max() < 0.05


def test_predicting_in_batches_equals_one_call(export, data_root):
    model_dir, _ = export
    predictor = SavedModelPredictor(model_dir, "graph")
    blobs = [p.read_bytes() for p in sample_images(data_root / "eval", 10, size=64)]
    whole, parts = predictor.predict(blobs), predictor.predict(blobs, batch_size=3)  # 3 + 3 + 3 + 1
    assert len(parts["CLASSES"]) == len(blobs) and np.array_equal(parts["CLASSES"], whole["CLASSES"])
    np.testing.assert_allclose(parts["PROBABILITIES"], whole["PROBABILITIES"], atol=1e-6)


def test_not_an_image_is_an_error(export):
    """TF's InvalidArgumentError on bytes that do not decode becomes the user's error, through both loaders."""
    import tensorflow as tf
    model_dir, _ = export
    for loader in ("graph", "tf2"):
        with pytest.raises(ImageDecodeError, match="not a decodable JPEG or PNG image: Unknown image file format") as err:
            SavedModelPredictor(model_dir, loader).predict([b"definitely not an image"])
        assert isinstance(err.value.__cause__, tf.errors.InvalidArgumentError)


def test_existing_export_is_never_overwritten(export, trained_run, tmp_path):
    model_dir, _ = export
    before = (model_dir / "saved_model.pb").stat().st_mtime_ns
    proc = run_main("convert.to_savedmodel", "--checkpoint", str(trained_run / "model.pt"),
                    "--output-dir", str(model_dir))
    assert proc.returncode == 2 and "already exists" in proc.stderr and str(model_dir) in proc.stderr
    assert (model_dir / "saved_model.pb").stat().st_mtime_ns == before


def test_an_op_onnx_tf_lacks_is_an_error_not_a_skip(tmp_path):
    import torch

    from convert.export_savedmodel import frozen_serving_graph

    class DynamicSplit(torch.nn.Module):
        def forward(self, x):  # a split size taken from the shape exports as Unsqueeze-13
            a, b = torch.split(x, [1, x.shape[1] - 1], dim=1)
            return torch.cat([a.mean((2, 3)), b.mean((2, 3))], 1)

        def probabilities(self, x):
            return self(x).softmax(1)

    path = export_onnx(DynamicSplit(), tmp_path / "dynamic.onnx", 8)
    # onnx-tf raises a unittest.SkipTest subclass, which pytest would report as a skip
    with pytest.raises(JobFailed, match=r"dynamic\.onnx: onnx-tf cannot convert this graph: .*Unsqueeze"):
        frozen_serving_graph(path, 8)
