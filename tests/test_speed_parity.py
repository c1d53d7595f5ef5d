"""The graph optimisation, the parity sweep and the benchmark scripts (behaviour, not timings)."""

import json

from conftest import run_module
from convert.to_savedmodel import op_counts


def graph_def(model_dir):
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    return sm.meta_graphs[0].graph_def


def test_export_is_one_flat_graph(export):
    model_dir, stdout = export
    graph = graph_def(model_dir)
    assert len(graph.library.function) == 0  # no nested functions for the graph-mode loader to recurse into
    counts = op_counts(graph)
    assert counts["Conv2D"] == 20 and not counts["PartitionedCall"] and not counts["StatefulPartitionedCall"]
    assert "20 Conv2D" in stdout and "0 functions" in stdout


def test_parity_sweep_over_a_folder(export, trained_run, data_root):
    model_dir, _ = export
    proc = run_module("convert.parity", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                      str(model_dir), "--data-dir", str(data_root / "train"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["onnxruntime"]["images"] == 96 and report["savedmodel"]["images"] == 96
    assert report["onnxruntime"]["max_abs_dprob"] <= 1e-5 and report["onnxruntime"]["class_agreement"] == 1.0
    # 4 of the 96 are 96x80 PNGs that TF resizes itself: near, not bit-equal
    assert report["savedmodel"]["max_abs_dprob"] < 0.05 and report["savedmodel"]["class_agreement"] >= 0.95


def test_serving_benchmark_runs(export, trained_run, data_root):
    model_dir, _ = export
    proc = run_module("bench.serving", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                      f"export={model_dir}", "--images", str(data_root / "eval"), "--reps", "2",
                      "--batches", "1", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("pytorch", "onnxruntime", "savedmodel"))]
    assert {(r[0], r[1]) for r in rows} == {(b, n) for b in ("pytorch", "onnxruntime", "savedmodel:export")
                                            for n in ("1", "4")}
    # ratio to ONNX Runtime interleaved (column 6) and alone (column 8)
    assert all(len(r) == 8 and (r[0] != "onnxruntime" or r[5] == r[7] == "1.00") for r in rows)
    assert "spin-waiting off" in proc.stdout
    from bench.serving import cpu_description
    assert cpu_description() in proc.stdout  # the CPU kind decides TF's kernels: it is recorded
    assert any(kind in cpu_description() for kind in ("AMX", "AVX-512", "AVX2", "no AVX2"))


def test_train_throughput_benchmark_runs(data_root):
    proc = run_module("bench.train_throughput", "--data-dir", str(data_root / "eval"), "--epochs", "2",
                      "--batch-size", "8", "--configs", "cpu:1", "cpu:2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("cpu:")]
    assert [r[0] for r in rows] == ["cpu:1", "cpu:2"] and rows[0][2] == "1.00"


def test_server_benchmark_runs(export, data_root):
    model_dir, _ = export
    proc = run_module("bench.server", "--model-dir", str(model_dir), "--images", str(data_root / "eval"),
                      "--clients", "2", "--seconds", "1", "--instances", "1", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit() and "CPUs" not in line]
    assert [r[0] for r in rows] == ["1", "4"] and all(float(r[1]) > 0 for r in rows)
