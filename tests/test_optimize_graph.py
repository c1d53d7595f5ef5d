"""The NHWC rewrite of onnx-tf graphs: same numbers, fewer Transposes, fusable convolutions."""

from collections import Counter

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from convert.optimize_graph import optimize  # noqa: E402


def onnx_tf_style_graph(flatten: str):
    """A small residual block written the way onnx-tf writes ONNX: NCHW tensors, each NHWC-only
    op wrapped in Transposes, zero Pads in NCHW, the bias as a broadcast AddV2 after an Identity.

    `flatten` picks the head: "mean" (global average pool, then Reshape) or "reshape" (flatten
    the NCHW feature map directly, where the element order matters)."""
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        nchw = tf.transpose(x, [0, 3, 1, 2])
        nchw = (nchw / 255.0 - tf.constant(rng.random((1, 3, 1, 1)), tf.float32)) * 2.0

        def conv(t, cin, cout, name):
            t = tf.pad(t, [[0, 0], [0, 0], [1, 1], [1, 1]])
            t = tf.transpose(t, [0, 2, 3, 1])
            t = tf.nn.conv2d(t, tf.constant(rng.normal(size=(3, 3, cin, cout)), tf.float32), 1, "VALID")
            t = tf.identity(t, name=f"{name}/concat")
            t = t + tf.constant(rng.normal(size=cout), tf.float32)
            return tf.transpose(t, [0, 3, 1, 2])

        a = tf.nn.relu(conv(nchw, 3, 4, "c1"))
        b = tf.nn.relu(conv(a, 4, 4, "c2") + a)
        if flatten == "mean":
            head = tf.reshape(tf.reduce_mean(b, axis=[2, 3], keepdims=True), [-1, 4])
        else:
            head = tf.reshape(b, [-1, 4 * 8 * 8])
        out = tf.identity(tf.nn.softmax(head), name="out")
    return graph.as_graph_def(), x.name, out.name


def run(graph_def, inp, out, x):
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run(out, {inp: x})


@pytest.mark.parametrize("flatten", ["mean", "reshape"])
def test_rewrite_keeps_the_numbers_and_drops_the_transposes(flatten):
    graph_def, inp, out = onnx_tf_style_graph(flatten)
    x = np.random.default_rng(1).uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    before = run(graph_def, inp, out, x)
    optimized, stats = optimize(graph_def, [inp, out])
    after = run(optimized, inp, out, x)
    np.testing.assert_allclose(after, before, atol=1e-6)

    ops = Counter(n.op for n in optimized.node)
    assert Counter(n.op for n in graph_def.node)["Transpose"] == 5
    # the only Transpose left hands the NCHW feature map to the Reshape that needs it
    assert ops["Transpose"] == 1 and stats["transposes_removed"] == 5
    assert stats["transposes_before"] == 5 and stats["transposes_after"] == 1
    assert ops["Pad"] == 0 and stats["pads_folded"] == 2
    assert ops["BiasAdd"] == 2 and stats["bias_adds"] == 2
    convs = [n for n in optimized.node if n.op == "Conv2D"]
    assert all(n.attr["padding"].s == b"EXPLICIT" for n in convs)
    assert [list(n.attr["explicit_paddings"].list.i) for n in convs] == [[0, 0, 1, 1, 1, 1, 0, 0]] * 2


def test_a_transpose_that_is_an_output_stays():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 3, 4], name="x")
        out = tf.identity(tf.nn.relu(tf.transpose(x, [0, 3, 1, 2])), name="out")
    x_val = np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32)
    optimized, _ = optimize(graph.as_graph_def(), [x.name, out.name])
    np.testing.assert_array_equal(run(optimized, x.name, out.name, x_val),
                                  np.maximum(x_val.transpose(0, 3, 1, 2), 0))


def test_the_shape_of_a_rewritten_tensor_is_read_without_a_transpose():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 3, 4], name="x")
        feature = tf.nn.relu(tf.transpose(x, [0, 3, 1, 2]))
        channels = tf.cast(tf.shape(feature)[1], tf.float32)  # NCHW axis 1: 4, not the NHWC 2
        out = tf.identity(tf.transpose(feature, [0, 2, 3, 1]) * channels, name="out")
    x_val = np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32)
    optimized, stats = optimize(graph.as_graph_def(), [x.name, out.name])
    np.testing.assert_allclose(run(optimized, x.name, out.name, x_val), np.maximum(x_val, 0) * 4, rtol=1e-6)
    assert stats["transposes_after"] == 0 and Counter(n.op for n in optimized.node)["Transpose"] == 0


# --- each rewrite on a small NHWC graph, against the graph before it, with oneDNN on and off ---

def nhwc_graph(pads, stride, depthwise=True, size=16, channels=8, kernel=3, explicit=False):
    """x -> Pad -> (depthwise) convolution VALID -> + bias (AddV2) -> Maximum(Minimum(., 6), 0), the
    shape onnx-tf's EfficientNet-Lite blocks take once they are NHWC. `explicit`: the pads already
    folded as EXPLICIT padding (what the export wrote before: oneDNN aborts on it)."""
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, size, size, channels], name="x")
        paddings = [[0, 0], list(pads), list(pads), [0, 0]]
        t = x if explicit else tf.pad(x, paddings)
        if depthwise:
            w = tf.constant(rng.normal(size=(kernel, kernel, channels, 1)), tf.float32)
            if explicit:
                t = tf.raw_ops.DepthwiseConv2dNative(input=t, filter=w, strides=[1, stride, stride, 1],
                                                     padding="EXPLICIT", explicit_paddings=sum(paddings, []))
            else:
                t = tf.raw_ops.DepthwiseConv2dNative(input=t, filter=w, strides=[1, stride, stride, 1], padding="VALID")
        else:
            w = tf.constant(rng.normal(size=(kernel, kernel, channels, channels)), tf.float32)
            t = tf.nn.conv2d(t, w, stride, "VALID")
        t = t + tf.constant(rng.normal(size=channels), tf.float32)
        out = tf.identity(tf.maximum(tf.minimum(t, 6.0), 0.0), name="out")
    x_val = rng.uniform(-3, 3, (3, size, size, channels)).astype(np.float32)
    return graph.as_graph_def(), x.name, out.name, x_val


def rewritten(graph_def, *rewrites, outputs=None):
    """A copy of `graph_def` after `rewrites` (pruned to `outputs` when given) and what each changed."""
    from tensorflow.core.framework import graph_pb2
    from convert.optimize_graph import prune
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)
    counts = [rewrite(copy) for rewrite in rewrites]
    return (prune(copy, outputs) if outputs else copy), counts


REWRITE_CASES = {
    # name: (graph arguments, rewrites applied, what the rewritten graph must hold)
    "depthwise_symmetric_pads": (dict(pads=(1, 1), stride=1), "pads", {"Pad": 0, "padding": b"SAME"}),
    "depthwise_tensorflow_pads": (dict(pads=(0, 1), stride=2), "pads", {"Pad": 0, "padding": b"SAME"}),
    "depthwise_5x5_tensorflow_pads": (dict(pads=(1, 2), stride=2, kernel=5), "pads", {"Pad": 0, "padding": b"SAME"}),
    # torch's symmetric pads at stride 2 are not SAME's: the Pad stays, the convolution VALID
    "depthwise_other_pads": (dict(pads=(1, 1), stride=2), "pads", {"Pad": 1, "padding": b"VALID", "rewrites": 0}),
    "conv_pads": (dict(pads=(1, 1), stride=1, depthwise=False), "pads", {"Pad": 0, "padding": b"EXPLICIT"}),
    "bias": (dict(pads=(1, 1), stride=1), "bias", {"BiasAdd": 1, "AddV2": 0}),
    "relu6": (dict(pads=(1, 1), stride=1), "relu6", {"Relu6": 1, "Minimum": 0, "Maximum": 0}),
    # everything at once, as the export serves it: fused depthwise + BiasAdd + Relu6, SAME padding
    "depthwise_all": (dict(pads=(0, 1), stride=2), "all", {"Pad": 0, "BiasAdd": 1, "Relu6": 1, "padding": b"SAME"}),
}


def apply_case(name):
    from convert.optimize_graph import biases_to_biasadd, clips_to_relu6, fold_pads_into_convs
    args, which, _ = REWRITE_CASES[name]
    graph_def, inp, out, x = nhwc_graph(**args)
    rewrites = {"pads": [fold_pads_into_convs], "bias": [biases_to_biasadd], "relu6": [clips_to_relu6],
                "all": [fold_pads_into_convs, biases_to_biasadd, clips_to_relu6]}[which]
    after, counts = rewritten(graph_def, *rewrites, outputs=[out])
    return graph_def, after, counts, inp, out, x


@pytest.fixture(scope="module")
def rewrite_runs():
    """Every case before and after its rewrite, run in one fresh process per oneDNN setting."""
    from graph_runner import run_graphs
    cases = {}
    for name in REWRITE_CASES:
        before, after, _, inp, out, x = apply_case(name)
        cases[f"{name}/before"] = (before, inp, out, x)
        cases[f"{name}/after"] = (after, inp, out, x)
    runs = {}
    for onednn in ("1", "0"):
        outputs, info = run_graphs(cases, onednn)
        assert outputs is not None, f"TF_ENABLE_ONEDNN_OPTS={onednn}: the process died:\n{info['stderr']}"
        assert info["onednn_enabled"] == (onednn == "1")
        runs[onednn] = outputs
    return runs


@pytest.mark.parametrize("name", list(REWRITE_CASES))
def test_each_rewrite_keeps_the_numbers_with_onednn_on_and_off(name, rewrite_runs):
    _, after, counts, *_ = apply_case(name)
    _, _, expected = REWRITE_CASES[name]
    ops = Counter(n.op for n in after.node)
    for op, count in expected.items():
        if op not in ("padding", "rewrites"):
            assert ops[op] == count, (op, ops)
    assert sum(counts) == expected.get("rewrites", len(counts))
    if "padding" in expected:
        conv = next(n for n in after.node if n.op in ("Conv2D", "DepthwiseConv2dNative"))
        assert conv.attr["padding"].s == expected["padding"]
    reference = rewrite_runs["0"][f"{name}/before"]
    for onednn in ("1", "0"):
        np.testing.assert_allclose(rewrite_runs[onednn][f"{name}/after"], reference, atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(rewrite_runs[onednn][f"{name}/before"], reference, atol=1e-4, rtol=1e-5)


def test_explicit_depthwise_padding_aborts_tensorflow_under_onednn():
    """Why depthwise convolutions never get EXPLICIT padding: oneDNN's kernel kills the process
    (and so shows that the runner really uses oneDNN's kernels when asked to)."""
    from graph_runner import run_graphs
    graph_def, inp, out, x = nhwc_graph(pads=(0, 1), stride=2, explicit=True)
    outputs, info = run_graphs({"explicit": (graph_def, inp, out, x)}, "1")
    assert outputs is None and info["returncode"] != 0
    assert "Check failed" in info["stderr"] and "Invalid index from the dimension" in info["stderr"]
    outputs, info = run_graphs({"explicit": (graph_def, inp, out, x)}, "0")
    assert outputs is not None, info["stderr"]


def test_rewrites_leave_what_they_cannot_prove_untouched():
    from convert.optimize_graph import biases_to_biasadd, clips_to_relu6, fold_pads_into_convs, to_nhwc
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 6, 2], name="x")
        conv = tf.nn.conv2d(x, tf.constant(np.ones((1, 1, 2, 2)), tf.float32), 1, "VALID")
        one = conv + tf.constant([0.5], tf.float32)  # one value for every channel: not a bias of 2 channels
        five = tf.maximum(tf.minimum(one, tf.constant(np.full((1, 1, 1, 1, 1), 6.0), tf.float32)), 0.0)  # rank 4 -> 5
        ints = tf.maximum(tf.minimum(tf.cast(x, tf.int32), 6), 0)  # Relu6 of integers: not a float clip
        tf.identity(five, name="out")
        tf.identity(ints, name="out_int")
    original = graph.as_graph_def()
    for rewrite in (fold_pads_into_convs, biases_to_biasadd, clips_to_relu6):
        after, (count,) = rewritten(original, rewrite)
        assert count == 0
        assert after.SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True)
    # the layout pass writes every input as NAME:0, but changes no op and no attribute where nothing is NCHW
    after, (count,) = rewritten(original, lambda g: to_nhwc(g, ["out:0", "out_int:0"]))
    assert count == 0
    assert [(n.name, n.op, n.attr) for n in after.node] == [(n.name, n.op, n.attr) for n in original.node]


def test_missing_default_attributes_are_read_as_defaults_not_inserted():
    """A convolution without `data_format` (stripped as a default value) still gets its BiasAdd,
    and no node gains an attribute that it did not have."""
    from convert.optimize_graph import biases_to_biasadd, fold_pads_into_convs
    graph_def, inp, out, x = nhwc_graph(pads=(0, 1), stride=2)
    for node in graph_def.node:
        if node.op == "DepthwiseConv2dNative":
            del node.attr["data_format"]
    after, counts = rewritten(graph_def, fold_pads_into_convs, biases_to_biasadd)
    assert counts == [1, 1]
    keys = {n.name: set(n.attr) for n in graph_def.node}
    for node in after.node:
        extra = set(node.attr) - keys[node.name]
        assert extra == ({"data_format"} if node.op == "BiasAdd" else set()), (node.name, extra)
    np.testing.assert_allclose(run(after, inp, out, x), run(graph_def, inp, out, x), atol=1e-4)


def test_a_resize_size_read_from_the_shape_becomes_a_constant():
    """onnx-tf's Resize computes its size from tf.shape; with the picture's size static it is fixed,
    and the shapes after it become static (which the SAME padding check needs)."""
    from convert.optimize_graph import constant_resize_sizes, static_shapes
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        size = tf.cast(tf.cast(tf.shape(x)[1:3], tf.float32) * 2.0, tf.int32)
        out = tf.identity(tf.compat.v1.image.resize_bilinear(x, size, half_pixel_centers=True), name="out")
        y = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="y")  # no static size: left alone
        tf.identity(tf.compat.v1.image.resize_bilinear(y, tf.shape(y)[1:3] * 2), name="out_y")
    before = graph.as_graph_def()
    after, (count,) = rewritten(before, constant_resize_sizes, outputs=[out.name, "out_y:0"])
    assert count == 1
    assert static_shapes(after)[out.name] == [None, 16, 16, 3] and static_shapes(before)[out.name][1] is None
    x_val = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(after, x.name, out.name, x_val), run(before, x.name, out.name, x_val))
