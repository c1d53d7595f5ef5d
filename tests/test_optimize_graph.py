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
