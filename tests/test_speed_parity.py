"""The graph optimisation, the parity sweep and the benchmark scripts (behaviour, not timings)."""

import json

from conftest import run_module
from convert.export_savedmodel import op_counts


def graph_def(model_dir):
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    return sm.meta_graphs[0].graph_def


def test_export_is_one_flat_graph(export):
    model_dir, report = export
    graph = graph_def(model_dir)
    assert len(graph.library.function) == 0  # no nested functions for the graph-mode loader to recurse into
    counts = op_counts(graph)
    assert counts["Conv2D"] == 20 and not counts["PartitionedCall"] and not counts["StatefulPartitionedCall"]
    assert report["graph_ops"] == dict(counts) and report["graph_functions"] == 0


def test_parity_sweep_over_a_folder(export, trained_run, data_root):
    model_dir, _ = export
    proc = run_module("convert.parity_sweep", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                      str(model_dir), "--data-dir", str(data_root / "train"))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    ort, graph, tf2 = report["onnxruntime/files"], report["graph/files"], report["tf2/files"]  # both loaders
    assert ort["images"] == 96 and graph["images"] == 96 and tf2 == graph
    assert ort["max_abs_dprob"] <= 1e-5 and ort["class_agreement"] == 1.0
    # 4 of the 96 are 96x80 PNGs that TF resizes itself: near, not bit-equal
    assert graph["max_abs_dprob"] < 0.05 and graph["class_agreement"] >= 0.95
    # a changed class fails the sweep even without --tol
    assert proc.returncode == (0 if graph["class_agreement"] == 1.0 else 1), proc.stderr[-3000:]
    # --tol fails the sweep when a model is beyond it: those 4 resized PNGs are beyond 1e-9
    strict = run_module("convert.parity_sweep", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                        str(model_dir), "--data-dir", str(data_root / "train"), "--tol", "1e-9")
    assert strict.returncode == 1 and "disagrees with PyTorch" in strict.stderr


def test_serving_benchmark_runs(export, trained_run, data_root):
    model_dir, _ = export
    proc = run_module("bench.latency", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                      f"export={model_dir}", "--images", str(data_root / "eval"), "--reps", "2",
                      "--batches", "1", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("pytorch", "onnxruntime", "savedmodel"))]
    assert {(r[0], r[1]) for r in rows} == {(b, n) for b in ("pytorch", "onnxruntime", "savedmodel:export")
                                            for n in ("1", "4")}
    # median, min and max ms, interleaved and alone, each positive
    assert all(len(r) == 8 and float(r[2]) > 0 and float(r[6]) > 0 for r in rows)
    assert "spin-waiting off" in proc.stdout
    unnamed = run_module("bench.latency", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                         str(model_dir), "--images", str(data_root / "eval"))
    assert unnamed.returncode == 2 and "--model-dir takes NAME=EXPORT" in unnamed.stderr
    from bench.machine import cpu_description
    assert cpu_description() in proc.stdout  # the CPU kind decides TF's kernels: it is recorded
    # the kinds it names are exactly this CPU's flags, read here on their own
    flags = next(line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags"))
    named = cpu_description().rsplit("(", 1)[1].rstrip(")").split(", ")
    expected = [kind for kind, flag in (("AMX", "amx_tile"), ("AVX-512 BF16", "avx512_bf16"),
                                        ("AVX-512 VNNI", "avx512_vnni"), ("AVX-512", "avx512f"), ("AVX2", "avx2"))
                if flag in flags]
    assert named == (expected or ["no AVX2"])



def test_op_profile_puts_each_stage_beside_onnxruntime(export, trained_run, data_root):
    model_dir, _ = export
    proc = run_module("bench.op_profile", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                      str(model_dir), "--images", str(data_root / "eval"), "--reps", "2", "--batches", "1", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from bench.machine import cpu_description
    assert cpu_description() in proc.stdout and ("on Eigen" in proc.stdout or "on oneDNN" in proc.stdout)
    for batch in ("1", "3"):
        section = proc.stdout.split(f"batch {batch}:", 1)[1].split("\nbatch ", 1)[0]
        rows = {line[:24].strip(): line[24:].split() for line in section.splitlines()[2:] if line.strip()}
        # one row per ResNet18 stage (output shape at 64 px), timed on both sides
        assert {k for k in rows if k.startswith("conv ")} == {"conv 32x32x64", "conv 16x16x64", "conv 8x8x128",
                                                             "conv 4x4x256", "conv 2x2x512"}, rows
        assert all(float(v[0]) > 0 and float(v[1]) > 0 for k, v in rows.items() if k.startswith("conv")), rows

def test_train_throughput_benchmark_runs(data_root):
    proc = run_module("bench.train_throughput", "--data-dir", str(data_root / "eval"), "--epochs", "2",
                      "--batch-size", "8", "--configs", "cpu:1", "cpu:2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("cpu:")]
    assert [r[0] for r in rows] == ["cpu:1", "cpu:2"] and all(float(r[1]) > 0 for r in rows)


def test_server_benchmark_runs(export, data_root):
    model_dir, _ = export
    proc = run_module("bench.http_load", "--model-dir", str(model_dir), "--images", str(data_root / "eval"),
                      "--clients", "2", "--seconds", "1", "--instances", "1", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit() and "CPUs" not in line]
    assert [r[0] for r in rows] == ["1", "4"] and all(float(r[1]) > 0 for r in rows)


def test_runtime_graph_runs_every_convolution_fused(export, data_root):
    """What TensorFlow actually runs once grappler has rewritten the loaded graph: each of the 20
    convolutions is one fused kernel with its bias (and its ReLU where the block has one), nothing
    is left in NCHW, and no zero Pad runs on its own. On TensorFlow's Eigen path (CPUs where oneDNN
    is off by default) that is `_FusedConv2D`; with oneDNN on, its `_Mkl` counterparts."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port
    v1 = tf.compat.v1
    model_dir, _ = export
    blobs = np.array([p.read_bytes() for p in sorted((data_root / "eval").rglob("*.jpg"))[:2]], dtype=object)
    with tf.Graph().as_default(), v1.Session() as session:
        meta = v1.saved_model.loader.load(session, ["serve"], str(model_dir))
        sig = meta.signature_def["serving_default"]
        run_metadata = v1.RunMetadata()
        session.run(sig.outputs["PROBABILITIES"].name, {sig.inputs["bytes"].name: blobs},
                    options=v1.RunOptions(output_partition_graphs=True), run_metadata=run_metadata)
    nodes = [n for graph in run_metadata.partition_graphs for n in graph.node]
    convs = [n for n in nodes if n.op.endswith("Conv2D")]
    fused = [[op.decode() for op in n.attr["fused_ops"].list.s] for n in convs]
    assert len(convs) == 20 and all("FusedConv2D" in n.op for n in convs), sorted({n.op for n in convs})
    assert all(ops[:1] == ["BiasAdd"] for ops in fused), fused
    # a ResNet18 has 17 ReLUs: 9 right after a conv, 8 after a block's residual add
    assert sum("Relu" in ops for ops in fused) + sum(n.op.endswith("Relu") for n in nodes) == 17
    if not _pywrap_util_port.IsMklEnabled():
        assert {n.op for n in convs} == {"_FusedConv2D"}
        assert sorted(map(tuple, fused)) == [("BiasAdd",)] * 11 + [("BiasAdd", "Relu")] * 9
    assert not any(n.op.endswith("BiasAdd") or n.op in ("Pad", "_MklPad") for n in nodes)
    assert sum(n.op.endswith("Transpose") for n in nodes) <= 1  # the one before the head's flattening Reshape
