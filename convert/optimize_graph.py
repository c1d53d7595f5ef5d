"""Rewrite onnx-tf's frozen NCHW-in-NHWC graph into a plain NHWC graph that TensorFlow's CPU kernels fuse.

onnx-tf keeps ONNX's NCHW layout and wraps every NHWC-only TensorFlow op (Conv2D, MaxPool)
in a Transpose pair, so a ResNet18 runs 64 Transposes per call, pads in NCHW, and adds the
conv bias as a broadcast AddV2 that grappler's remapper does not fuse. This module:

1. folds constants with grappler (the weight transposes and splits, the padding tensors),
2. moves the whole network to NHWC (`convert.nhwc_layout`): a Transpose NHWC->NCHW is dropped
   and its consumers are rewritten for NHWC until a Transpose NCHW->NHWC cancels it,
3. makes a resize's size, which onnx-tf computes from tf.shape, a constant where the picture's
   size is static (so every shape after it is), and folds each zero Pad into the convolution
   after it: a Conv2D takes the pads as `padding="EXPLICIT"`; a DepthwiseConv2dNative only as `padding="SAME"`, where the pads are
   exactly what SAME computes at the graph's static size (EfficientNet-Lite was trained with
   TensorFlow's SAME), else it keeps its Pad. oneDNN's depthwise kernel aborts the whole
   process on EXPLICIT padding (`tensor_format.h:428 Check failed ... H`, TF 2.12 and 2.15),
   and TensorFlow turns oneDNN on by itself on CPUs with VNNI, BF16 or AMX,
4. turns `conv + bias` into BiasAdd and onnx-tf's ReLU6 (`Maximum(Minimum(x, 6), 0)`) into Relu6,
   which grappler's remapper fuses with Conv2D or DepthwiseConv2dNative when the model is loaded.

Each rewrite checks what it relies on (dtypes, constant shapes, static sizes) and leaves a node
alone otherwise; attributes are read without inserting them (indexing a protobuf map adds an
empty value). The result holds only stock TensorFlow ops, so TF 2.14 serving loads it like the
original, with oneDNN on or off.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from convert.graph_edit import FLOAT_TYPES, Rewriter, attr, const_dtype, consumers, fold_constants, node_name, prune, \
    static_shapes, string_attr, tensor_name, type_attr
from convert.nhwc_layout import to_nhwc

__all__ = ["optimize", "to_nhwc", "constant_resize_sizes", "fold_pads_into_convs", "biases_to_biasadd",
           "clips_to_relu6", "prune", "static_shapes", "same_pads", "DEPTHWISE_PADDINGS"]

CONVS = {"Conv2D", "DepthwiseConv2dNative"}
RESIZES = {"ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea"}
DEPTHWISE_PADDINGS = ("same", "pad")  # how a padded depthwise convolution is written (fold_pads_into_convs)


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) that TensorFlow's SAME padding adds to one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def constant_resize_sizes(graph_def) -> int:
    """A resize whose output size is computed from its input's shape (onnx-tf's Resize reads
    tf.shape, which grappler cannot fold while the batch is unknown) gets that size as a constant,
    where the input's height, width and channels are static.

    The size is evaluated with the resize's input fed twice, one zero picture and three random
    ones: only the batch and the pixels can change, and a size that stays put under both is
    that constant. Then every shape after it is static, which the depthwise padding needs.
    """
    import tensorflow as tf  # deferred: importing this module needs no TensorFlow
    rw, shapes = Rewriter(graph_def), static_shapes(graph_def)
    todo = []
    for node in graph_def.node:
        shape = shapes.get(tensor_name(node.input[0])) if node.op in RESIZES else None
        if shape is not None and len(shape) == 4 and None not in shape[1:] and rw.const_value(node.input[1]) is None:
            todo.append((node, shape))
    if not todo:
        return 0
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    rng, replaced = np.random.default_rng(0), 0
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(copy, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            for node, shape in todo:
                feeds = [np.zeros([1, *shape[1:]]), rng.uniform(0, 255, [3, *shape[1:]])]
                try:
                    sizes = [session.run(tensor_name(node.input[1]), {tensor_name(node.input[0]): feed}) for feed in feeds]
                except tf.errors.OpError:  # the size needs more than the resize's input: leave it
                    continue
                if sizes[0].shape != (2,) or not np.array_equal(*sizes):
                    continue
                node.input[1] = rw.add_const(f"{node.name}/static_size", sizes[0].astype(np.int32))
                replaced += 1
    return replaced


def fold_pads_into_convs(graph_def, depthwise_padding: str = "same") -> int:
    """Pad(zeros, spatial only) -> Conv2D or DepthwiseConv2dNative (VALID, NHWC) becomes one
    convolution: Conv2D with `padding="EXPLICIT"`; DepthwiseConv2dNative, with `depthwise_padding`
    "same", with `padding="SAME"` where the pads equal SAME's at the input's static size, and
    otherwise (or with "pad") it keeps its Pad: oneDNN's depthwise kernel aborts on EXPLICIT."""
    if depthwise_padding not in DEPTHWISE_PADDINGS:
        raise ValueError(f"depthwise_padding must be one of {DEPTHWISE_PADDINGS}, not {depthwise_padding!r}")
    rw, users, folded = Rewriter(graph_def), consumers(graph_def), 0
    shapes = static_shapes(graph_def) if depthwise_padding == "same" and any(
        n.op == "DepthwiseConv2dNative" for n in graph_def.node) else {}
    for conv in graph_def.node:
        if conv.op not in CONVS or string_attr(conv, "padding", b"") != b"VALID" \
                or string_attr(conv, "data_format", b"NHWC") != b"NHWC":
            continue
        pad = rw.nodes.get(node_name(conv.input[0]))
        if pad is None or pad.op not in ("Pad", "PadV2") or len(users[pad.name]) != 1 \
                or not tensor_name(conv.input[0]).endswith(":0") or type_attr(pad) != type_attr(conv):
            continue
        paddings = rw.const_value(pad.input[1])
        fill = rw.const_value(pad.input[2]) if pad.op == "PadV2" else np.zeros(())
        if paddings is None or fill is None or np.any(fill != 0) or paddings.shape != (4, 2) \
                or np.any(paddings[[0, 3]] != 0) or np.any(paddings < 0):
            continue
        if conv.op == "DepthwiseConv2dNative":
            if depthwise_padding != "same" or not _pads_are_same(conv, rw, shapes.get(tensor_name(pad.input[0])), paddings):
                continue
            conv.attr["padding"].s = b"SAME"
        else:
            conv.attr["padding"].s = b"EXPLICIT"
            del conv.attr["explicit_paddings"].list.i[:]
            conv.attr["explicit_paddings"].list.i.extend(int(p) for p in paddings.ravel())
        conv.input[0] = pad.input[0]
        folded += 1
    return folded


def _pads_are_same(conv, rw: Rewriter, shape: list | None, paddings: np.ndarray) -> bool:
    """Whether `paddings` (NHWC, [4, 2]) before `conv` are what its SAME padding adds to an input of
    static `shape`."""
    kernel = rw.const_value(conv.input[1])
    strides, dilations = attr(conv, "strides"), attr(conv, "dilations")
    strides = list(strides.list.i) if strides is not None else []
    dilations = list(dilations.list.i) if dilations is not None else [1, 1, 1, 1]
    if shape is None or len(shape) != 4 or None in shape[1:3] or kernel is None or kernel.ndim != 4 \
            or len(strides) != 4 or len(dilations) != 4:
        return False
    return all(tuple(paddings[1 + axis]) == same_pads(shape[1 + axis], kernel.shape[axis], strides[1 + axis],
                                                      dilations[1 + axis]) for axis in (0, 1))


def biases_to_biasadd(graph_def) -> int:
    """AddV2(NHWC convolution output, const vector of its channels, same dtype) -> BiasAdd, the
    form the remapper fuses."""
    rw, converted = Rewriter(graph_def), 0
    for node in graph_def.node:
        if node.op not in ("AddV2", "Add") or type_attr(node) not in FLOAT_TYPES:
            continue
        for k in (0, 1):
            source, bias = node.input[k], node.input[1 - k]
            value = rw.const_value(bias)
            producer = rw.nodes.get(node_name(source))
            while producer is not None and producer.op == "Identity" and len(producer.input) == 1:
                source = producer.input[0]
                producer = rw.nodes.get(node_name(source))
            if value is None or value.ndim != 1 or producer is None or producer.op not in CONVS \
                    or not tensor_name(source).endswith(":0") or string_attr(producer, "data_format", b"NHWC") != b"NHWC" \
                    or type_attr(producer) != type_attr(node) \
                    or const_dtype(rw, value) != type_attr(node):
                continue
            kernel = rw.const_value(producer.input[1])
            # a depthwise kernel is [h, w, channels, multiplier]: channels x multiplier outputs
            outputs = None if kernel is None or kernel.ndim != 4 else \
                kernel.shape[-1] if producer.op == "Conv2D" else kernel.shape[-2] * kernel.shape[-1]
            if outputs != value.shape[0]:
                continue
            node.op = "BiasAdd"
            del node.input[:]
            node.input.extend([source, bias])
            node.attr["data_format"].s = b"NHWC"
            converted += 1
            break
    return converted


def clips_to_relu6(graph_def) -> int:
    """Maximum(Minimum(x, 6), 0), onnx-tf's ReLU6 (ONNX Clip), -> Relu6(x), which the remapper fuses
    into the convolution and BiasAdd before it. Only where both are of one float type and their
    constants are single values that do not broadcast x to another shape."""
    rw, users, converted = Rewriter(graph_def), consumers(graph_def), 0
    shapes = None
    for node in graph_def.node:
        if node.op != "Maximum" or type_attr(node) not in FLOAT_TYPES:
            continue
        zero = rw.const_value(node.input[1])
        inner = rw.nodes.get(node_name(node.input[0]))
        if zero is None or zero.size != 1 or zero.item() != 0 or inner is None or inner.op != "Minimum" \
                or len(users[inner.name]) != 1 or not tensor_name(node.input[0]).endswith(":0") \
                or type_attr(inner) != type_attr(node):
            continue
        six = rw.const_value(inner.input[1])
        if six is None or six.size != 1 or six.item() != 6:
            continue
        if max(zero.ndim, six.ndim) > 0:  # a [1, 1, ...] constant keeps x's shape only if x has at least its rank
            shapes = static_shapes(graph_def) if shapes is None else shapes
            x_shape = shapes.get(tensor_name(inner.input[0]))
            if x_shape is None or len(x_shape) < max(zero.ndim, six.ndim):
                continue
        node.op = "Relu6"
        del node.input[:]
        node.input.append(inner.input[0])
        converted += 1
    return converted


def optimize(graph_def, outputs: Iterable[str], depthwise_padding: str = "same") -> tuple[object, dict[str, int]]:
    """The whole rewrite (steps 1-4); returns the new GraphDef and what each step changed.
    `depthwise_padding`: "same" (SAME where it equals the pads) or "pad" (each Pad kept before a
    VALID depthwise convolution); `fold_pads_into_convs` says why."""
    import tensorflow as tf  # deferred: importing this module needs no TensorFlow
    outputs = list(outputs)
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # v1 graph tools' deprecation notices: v1 graphs are the point here
    try:
        folded = fold_constants(graph_def, outputs)
        stats = {"transposes_before": sum(n.op == "Transpose" for n in graph_def.node),
                 "transposes_removed": to_nhwc(folded, outputs)}
        folded = prune(folded, outputs)
        stats["resize_sizes_fixed"] = constant_resize_sizes(folded)
        stats["pads_folded"] = fold_pads_into_convs(folded, depthwise_padding)
        stats["bias_adds"] = biases_to_biasadd(folded)
        stats["relu6"] = clips_to_relu6(folded)
        folded = prune(folded, outputs)
    finally:
        tf.get_logger().setLevel(level)
    stats["transposes_after"] = sum(n.op == "Transpose" for n in folded.node)
    for node in folded.node:  # what each depthwise convolution's padding ended up as (none may be EXPLICIT)
        if node.op == "DepthwiseConv2dNative":
            key = f"depthwise_{string_attr(node, 'padding', b'').decode().lower()}"
            stats[key] = stats.get(key, 0) + 1
    return folded, stats
