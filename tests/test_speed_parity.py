"""The graph optimisation, the parity sweep and the benchmark scripts (behaviour, not timings)."""

import pytest

from bench.augment_throughput import measure_augmentation
from bench.http_load import measure_http_load
from bench.latency import measure_latency
from bench.op_profile import profile_ops, table
from bench.step_time import measure_step_time
from bench.train_throughput import run
from conftest import run_main, run_module
from convert.compare import ParityError, require, sweep
from convert.export_savedmodel import op_counts
from mug_errors import SettingsError
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.classifier.photos import MugDataset


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
    # both loaders in this process (the CLI below runs them under both kernels, in fresh processes)
    report = sweep(trained_run / "model.pt", model_dir, data_root / "train", kernels=None)
    ort, graph, tf2 = report["onnxruntime/files"], report["graph/files"], report["tf2/files"]
    assert report["images"] == ort["images"] == graph["images"] == 96
    assert tf2["class_agreement"] == graph["class_agreement"] and abs(tf2["max_abs_dprob"] - graph["max_abs_dprob"]) < 1e-5
    assert ort["max_abs_dprob"] <= 1e-5 and ort["class_agreement"] == 1.0
    # 4 of the 96 are 96x80 PNGs that TF resizes itself: near, not bit-equal
    assert graph["max_abs_dprob"] < 0.05 and graph["class_agreement"] >= 0.95
    # a changed class fails the sweep even without a tolerance
    if graph["class_agreement"] < 1.0:
        with pytest.raises(ParityError, match="disagrees with PyTorch"):
            require(report, model_dir, float("inf"))
    else:
        require(report, model_dir, float("inf"))
    # a tolerance fails the sweep when a model is beyond it (those 4 resized PNGs are beyond 1e-9): exit 1
    strict = run_module("convert.parity_sweep", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                        str(model_dir), "--data-dir", str(data_root / "train"), "--limit", "8", "--tol", "1e-9")
    assert strict.returncode == 1 and "disagrees with PyTorch" in strict.stderr
    # the CLI runs the SavedModel under both kernel libraries by default, each in its own process
    assert all(f"{loader}-{kernel}" in strict.stdout for loader in ("graph", "tf2") for kernel in ("onednn", "eigen"))


def test_latency_benchmark_measures_every_backend(export, trained_run, data_root):
    model_dir, _ = export
    rows = measure_latency(str(trained_run / "model.pt"), {"export": str(model_dir)}, str(data_root / "eval"),
                           reps=2, batches=(1, 4))
    assert [(r["backend"], r["batch"]) for r in rows] == [(b, n) for n in (1, 4) for b in
                                                           ("pytorch", "onnxruntime", "savedmodel:export")]
    for r in rows:  # interleaved and alone, each positive; ratios to ONNX Runtime's medians
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["alone_ms"] > 0
    ort = [r for r in rows if r["backend"] == "onnxruntime"]
    assert all(r["vs_onnxruntime"] == 1.0 and r["alone_vs_onnxruntime"] == 1.0 for r in ort)
    unnamed = run_main("bench.latency", "--checkpoint", str(trained_run / "model.pt"), "--model-dir",
                       str(model_dir), "--images", str(data_root / "eval"))
    assert unnamed.returncode == 2 and "--model-dir takes NAME=EXPORT" in unnamed.stderr


def test_cpu_description_names_this_cpus_kinds():
    """The CPU kind decides TF's kernels; every bench prints it: exactly this CPU's flags, read here
    on their own."""
    from bench.machine import cpu_description
    flags = next(line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags"))
    named = cpu_description().rsplit("(", 1)[1].rstrip(")").split(", ")
    expected = [kind for kind, flag in (("AMX", "amx_tile"), ("AVX-512 BF16", "avx512_bf16"),
                                        ("AVX-512 VNNI", "avx512_vnni"), ("AVX-512", "avx512f"), ("AVX2", "avx2"))
                if flag in flags]
    assert named == (expected or ["no AVX2"])


def test_op_profile_puts_each_stage_beside_onnxruntime(export, trained_run, data_root):
    model_dir, _ = export
    result = profile_ops(str(trained_run / "model.pt"), str(model_dir), str(data_root / "eval"), reps=2, batches=(1, 3))
    assert list(result) == [1, 3]
    for r in result.values():
        rows = {kind: (t, o) for kind, t, o in table(r["tf_ops"], r["ort_ops"])}
        # one row per ResNet18 stage (output shape at 64 px), timed on both sides
        assert [k for k in rows if k.startswith("conv ")] == ["conv 32x32x64", "conv 16x16x64", "conv 8x8x128",
                                                              "conv 4x4x256", "conv 2x2x512"], rows
        assert all(t > 0 and o > 0 for k, (t, o) in rows.items() if k.startswith("conv")), rows
        assert r["tf_ms"] > 0 and r["ort_ms"] > 0


def test_train_throughput_benchmark_runs(data_root):
    configs = ("cpu:1", "cpu:2", "cpu:2x1")  # one process; torchrun's two; two models side by side, a thread each
    results = [run(config, str(data_root / "eval"), epochs=2, batch_size=8, extra=[]) for config in configs]
    assert [r["config"] for r in results] == list(configs)
    assert all(r["images_per_second"] > 0 and r["epochs"] == 2 for r in results)
    with pytest.raises(ValueError, match="cuda:2x1: KxT"):
        run("cuda:2x1", str(data_root / "eval"), epochs=1, batch_size=8, extra=[])


def test_http_load_benchmark_runs(export, data_root):
    model_dir, _ = export
    rows = measure_http_load(str(model_dir), str(data_root / "eval"), clients=2, seconds=1, instances=(1, 4))
    assert [r["instances"] for r in rows] == [1, 4]
    for r in rows:
        assert r["requests_per_second"] > 0 and r["images_per_second"] == r["requests_per_second"] * r["instances"]
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["in_process_ms"] > 0


def test_step_time_and_augmentation_benchmarks_measure(data_root):
    times = measure_step_time(["fp32", "fp32:cl"], steps=1, batch_size=4)
    assert list(times) == ["fp32", "fp32:cl"] and times["fp32"]["speed"] == 1.0
    assert all(t["seconds_per_step"] > 0 and t["first_step_seconds"] > 0 for t in times.values())
    with pytest.raises(SettingsError, match="--configs fp16"):
        measure_step_time(["fp16"])
    cfg = TrainConfig(batch_size=16)
    rates = measure_augmentation(cfg, MugDataset(data_root / "eval", cfg.input_size), rounds=1)
    assert list(rates) == ["per picture", "batch"] and all(rate > 0 for rate in rates.values())


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
