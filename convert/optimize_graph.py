"""Rewrite onnx-tf's frozen NCHW-in-NHWC graph into a plain NHWC graph that TensorFlow's CPU kernels fuse.

onnx-tf keeps ONNX's NCHW layout and wraps every NHWC-only TensorFlow op (Conv2D, MaxPool)
in a Transpose pair, so a ResNet18 runs 64 Transposes per call, pads in NCHW, and adds the
conv bias as a broadcast AddV2 that grappler's remapper does not fuse. This module:

1. folds constants with grappler (the weight transposes and splits, the padding tensors),
2. moves the whole network to NHWC: a Transpose NHWC->NCHW is dropped and its consumers
   are rewritten for NHWC (elementwise ops, Pad paddings, reduction axes, broadcast
   constants) until a Transpose NCHW->NHWC cancels it; an op that needs the NCHW
   tensor gets a Transpose in front of it, so any graph stays correct,
3. makes a resize's size, which onnx-tf computes from tf.shape, a constant where the picture's
   size is static (so every shape after it is), and folds each zero Pad into the convolution after it: a Conv2D takes the pads as
   `padding="EXPLICIT"`; a DepthwiseConv2dNative only as `padding="SAME"`, where the pads are
   exactly what SAME computes at the graph's static size (EfficientNet-Lite was trained with
   TensorFlow's SAME), else it keeps its Pad. oneDNN's depthwise kernel aborts the whole
   process on EXPLICIT padding (`tensor_format.h:428 Check failed ... H`, TF 2.12 and 2.15),
   and TensorFlow turns oneDNN on by itself on CPUs with VNNI, BF16 or AMX,
4. turns `conv + bias` into BiasAdd and onnx-tf's ReLU6 (`Maximum(Minimum(x, 6), 0)`) into Relu6,
   which grappler's remapper fuses with Conv2D or DepthwiseConv2dNative when the model is loaded.

Each rewrite checks what it relies on (dtypes, constant shapes, static sizes) and leaves a node
alone otherwise; attributes are read without inserting them (indexing a protobuf map adds an
empty value). The result holds only stock TensorFlow ops, so TF 2.12 serving loads it like the
original, with oneDNN on or off.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from typing import Iterable

import numpy as np

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]
# logical NCHW axis -> where that axis lives in the NHWC tensor
NCHW_AXIS_IN_NHWC = [0, 3, 1, 2]
ELEMENTWISE_UNARY = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Identity", "Round", "Neg", "Abs",
                     "Sqrt", "Rsqrt", "Exp", "Log", "Square", "Floor", "Ceil", "LeakyRelu"}
ELEMENTWISE_BINARY = {"AddV2", "Add", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "Pow",
                      "SquaredDifference"}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod"}
PADS = {"Pad", "PadV2", "MirrorPad"}
CONVS = {"Conv2D", "DepthwiseConv2dNative"}
RESIZES = {"ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea"}
DEPTHWISE_PADDINGS = ("same", "pad")  # how a padded depthwise convolution is written (fold_pads_into_convs)
FLOAT_TYPES = {1, 2, 14, 19}  # DataType enums of float32, float64, bfloat16, float16


def _attr(node, key: str, default=None):
    """`node.attr[key]` when the node has it, else `default`, without adding an empty attribute."""
    return node.attr[key] if key in node.attr else default


def _string_attr(node, key: str, default: bytes) -> bytes:
    value = _attr(node, key)
    return default if value is None else value.s


def _type_attr(node, key: str = "T") -> int | None:
    value = _attr(node, key)
    return None if value is None else value.type


def static_shapes(graph_def) -> dict[str, list | None]:
    """{tensor name: its static shape (None for an unknown dimension), or None for an unknown rank},
    by TensorFlow's shape inference when the graph is imported."""
    import tensorflow as tf  # deferred, as fold_constants
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)  # the importer fills in default attributes of the GraphDef it is given
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(copy, name="")
    return {t.name: (t.shape.as_list() if t.shape.rank is not None else None)
            for op in graph.get_operations() for t in op.outputs}


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) that TensorFlow's SAME padding adds to one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def fold_constants(graph_def, outputs: Iterable[str]):
    """Grappler's constant folding alone (nothing else), keeping `outputs` (tensor names) fetchable."""
    import tensorflow as tf  # deferred: importing this module needs no TensorFlow
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        for name in outputs:
            graph.add_to_collection("train_op", graph.get_tensor_by_name(name))
        meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.CopyFrom(rewriter_config_pb2.RewriterConfig(
        optimizers=["constfold"], meta_optimizer_iterations=rewriter_config_pb2.RewriterConfig.ONE,
        min_graph_nodes=-1))
    return tf_optimizer.OptimizeGraph(config, meta)


def _tensor(name: str) -> str:
    """'node' and 'node:0' name the same tensor."""
    return name if ":" in name else name + ":0"


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


class _Rewriter:
    """Holds the nodes by name, their constant values, and makes new nodes."""

    def __init__(self, graph_def):
        import tensorflow as tf  # deferred, as fold_constants
        self.tf = tf
        self.graph_def = graph_def
        self.nodes = {n.name: n for n in graph_def.node}

    def const_value(self, tensor: str) -> np.ndarray | None:
        node = self.nodes.get(_node_name(tensor))
        value = None if node is None or node.op != "Const" or not _tensor(tensor).endswith(":0") \
            else _attr(node, "value")
        return None if value is None else self.tf.make_ndarray(value.tensor)

    def unique(self, base: str) -> str:
        name, k = base, 0
        while name in self.nodes:
            k += 1
            name = f"{base}_{k}"
        return name

    def add_node(self, base: str, op: str, inputs: Iterable[str] = ()):
        """A new node named after `base` (made unique), registered; the caller sets its attrs."""
        node = self.graph_def.node.add()
        node.name = self.unique(base)
        node.op = op
        node.input.extend(inputs)
        self.nodes[node.name] = node
        return node

    def add_const(self, base: str, value: np.ndarray) -> str:
        node = self.add_node(base, "Const")
        tensor = self.tf.make_tensor_proto(value)
        node.attr["value"].tensor.CopyFrom(tensor)
        node.attr["dtype"].type = tensor.dtype
        return node.name

    def add_to_nchw(self, tensor: str, dtype_attr) -> str:
        """A Transpose that gives back the NCHW tensor of an NHWC `tensor`."""
        perm_name = self.add_const(f"{_node_name(tensor)}/to_nchw/perm", np.array(TO_NCHW, np.int32))
        node = self.add_node(f"{_node_name(tensor)}/to_nchw", "Transpose", [tensor, perm_name])
        node.attr["T"].CopyFrom(dtype_attr)
        node.attr["Tperm"].type = self.tf.int32.as_datatype_enum
        return node.name + ":0"

    def add_nchw_shape(self, shape: str, out_type_attr) -> str:
        """The NCHW shape vector of a tensor from its NHWC `shape` (a Gather, not a Transpose
        of the whole tensor only to read its shape)."""
        order = self.add_const(f"{_node_name(shape)}/nchw_order", np.array(TO_NCHW, np.int32))
        axis = self.add_const(f"{_node_name(shape)}/nchw_axis", np.array(0, np.int32))
        node = self.add_node(f"{_node_name(shape)}/nchw", "GatherV2", [shape, order, axis])
        node.attr["Tparams"].CopyFrom(out_type_attr)
        node.attr["Tindices"].type = self.tf.int32.as_datatype_enum
        node.attr["Taxis"].type = self.tf.int32.as_datatype_enum
        node.attr["batch_dims"].i = 0
        return node.name + ":0"


def _topological(graph_def) -> list:
    """Nodes in an order where inputs come first; loop back edges (NextIteration) are ignored."""
    nodes = {n.name: n for n in graph_def.node}
    sorter = graphlib.TopologicalSorter({
        n.name: {_node_name(i) for i in n.input if nodes.get(_node_name(i)) is not None
                 and nodes[_node_name(i)].op != "NextIteration"} for n in graph_def.node})
    try:
        return [nodes[name] for name in sorter.static_order()]
    except graphlib.CycleError as err:
        raise ValueError("graph has a cycle outside while loops; cannot reorder it") from err


def _perm_of(rw: _Rewriter, node) -> list[int] | None:
    if node.op != "Transpose":
        return None
    perm = rw.const_value(node.input[1])
    return None if perm is None else perm.tolist()


def _broadcast_to_nhwc(value: np.ndarray) -> np.ndarray | None:
    """A constant that broadcasts against an NCHW tensor, rearranged to broadcast against NHWC."""
    if value.ndim == 0:
        return value
    if value.ndim > 4:
        return None
    return np.transpose(value.reshape((1,) * (4 - value.ndim) + value.shape), TO_NHWC)


def to_nhwc(graph_def, outputs: Iterable[str]) -> int:
    """Drop onnx-tf's layout Transposes in place (step 2 above); returns how many were removed.

    Every tensor maps to the tensor that now computes it and whether that one holds it as
    NHWC although it is logically NCHW; a consumer that cannot take such a tensor gets the
    NCHW tensor back through a new Transpose.
    """
    rw = _Rewriter(graph_def)
    fetch_nodes = {_node_name(t) for t in outputs}
    value: dict[str, tuple[str, bool]] = {}   # tensor -> (replacement, replacement is NHWC)
    dtype: dict[str, object] = {}              # NHWC replacement -> its dtype attr
    to_nchw: dict[str, str] = {}               # NHWC replacement -> its materialised NCHW Transpose
    removed = 0

    for node in _topological(graph_def):
        data = [i for i in node.input if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        resolved = [value.get(_tensor(i), (_tensor(i), False)) for i in data]
        ins = [t for t, _ in resolved]
        flagged = [f for _, f in resolved]
        out = node.name + ":0"
        perm = _perm_of(rw, node)
        first = bool(flagged) and flagged[0]
        # the paddings or axes of a Pad or reduction (not looked up for other ops: a conv's is its kernel)
        second = rw.const_value(ins[1]) if node.op in PADS | REDUCTIONS and not flagged[1] else None

        def materialise() -> None:
            for k, t in enumerate(ins):
                if flagged[k]:
                    if t not in to_nchw:
                        to_nchw[t] = rw.add_to_nchw(t, dtype[t])
                    ins[k] = to_nchw[t]

        def nhwc_output() -> None:
            value[out] = (out, True)
            dtype[out] = _attr(node, "T")

        if node.name in fetch_nodes:
            materialise()
        elif perm == TO_NHWC and first and not controls:
            value[out] = (ins[0], False)      # NHWC -> NCHW -> NHWC: the two cancel
            removed += 1
            continue
        elif perm == TO_NCHW and not first and not controls and _attr(node, "T") is not None:
            value[out] = (ins[0], True)       # keep computing in NHWC
            dtype[ins[0]] = _attr(node, "T")
            removed += 1
            continue
        elif any(flagged) and node.op in ELEMENTWISE_UNARY and len(ins) == 1 and _attr(node, "T") is not None:
            nhwc_output()
        elif any(flagged) and node.op in ELEMENTWISE_BINARY and _attr(node, "T") is not None:
            moved = {}
            for k, t in enumerate(ins):
                if not flagged[k]:
                    const = rw.const_value(t)
                    moved[k] = None if const is None else _broadcast_to_nhwc(const)
            if all(m is not None for m in moved.values()):
                for k, m in moved.items():
                    if m.ndim:
                        ins[k] = rw.add_const(f"{node.name}/nhwc_const", m) + ":0"
                nhwc_output()
            else:
                materialise()
        elif first and node.op in PADS and not any(flagged[2:]) and _attr(node, "T") is not None \
                and second is not None and second.shape == (4, 2):
            ins[1] = rw.add_const(f"{node.name}/nhwc_paddings", second[TO_NHWC]) + ":0"
            nhwc_output()
        elif first and node.op == "Shape" and _attr(node, "out_type") is not None:
            value[out] = (rw.add_nchw_shape(out, _attr(node, "out_type")), False)  # shape of the NHWC tensor, reordered
        elif first and node.op in REDUCTIONS and getattr(_attr(node, "keep_dims"), "b", False) \
                and second is not None and _attr(node, "T") is not None:
            ins[1] = rw.add_const(f"{node.name}/nhwc_axes", np.array(
                [NCHW_AXIS_IN_NHWC[a % 4] for a in np.atleast_1d(second)], dtype=second.dtype)) + ":0"
            nhwc_output()
        else:
            materialise()
        del node.input[:]
        node.input.extend(ins + controls)
    return removed


def _consumers(graph_def) -> dict[str, list]:
    users = defaultdict(list)
    for node in graph_def.node:
        for i in node.input:
            users[_node_name(i)].append(node)
    return users


def constant_resize_sizes(graph_def) -> int:
    """A resize whose output size is computed from its input's shape (onnx-tf's Resize reads
    tf.shape, which grappler cannot fold while the batch is unknown) gets that size as a constant,
    where the input's height, width and channels are static.

    The size is evaluated with the resize's input fed twice, one zero picture and three random
    ones: only the batch and the pixels can change, and a size that stays put under both is
    that constant. Then every shape after it is static, which the depthwise padding needs.
    """
    import tensorflow as tf  # deferred, as fold_constants
    rw, shapes = _Rewriter(graph_def), static_shapes(graph_def)
    todo = []
    for node in graph_def.node:
        shape = shapes.get(_tensor(node.input[0])) if node.op in RESIZES else None
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
                    sizes = [session.run(_tensor(node.input[1]), {_tensor(node.input[0]): feed}) for feed in feeds]
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
    rw, users, folded = _Rewriter(graph_def), _consumers(graph_def), 0
    shapes = static_shapes(graph_def) if depthwise_padding == "same" and any(
        n.op == "DepthwiseConv2dNative" for n in graph_def.node) else {}
    for conv in graph_def.node:
        if conv.op not in CONVS or _string_attr(conv, "padding", b"") != b"VALID" \
                or _string_attr(conv, "data_format", b"NHWC") != b"NHWC":
            continue
        pad = rw.nodes.get(_node_name(conv.input[0]))
        if pad is None or pad.op not in ("Pad", "PadV2") or len(users[pad.name]) != 1 \
                or not _tensor(conv.input[0]).endswith(":0") or _type_attr(pad) != _type_attr(conv):
            continue
        paddings = rw.const_value(pad.input[1])
        fill = rw.const_value(pad.input[2]) if pad.op == "PadV2" else np.zeros(())
        if paddings is None or fill is None or np.any(fill != 0) or paddings.shape != (4, 2) \
                or np.any(paddings[[0, 3]] != 0) or np.any(paddings < 0):
            continue
        if conv.op == "DepthwiseConv2dNative":
            if depthwise_padding != "same" or not _pads_are_same(conv, rw, shapes.get(_tensor(pad.input[0])), paddings):
                continue
            conv.attr["padding"].s = b"SAME"
        else:
            conv.attr["padding"].s = b"EXPLICIT"
            del conv.attr["explicit_paddings"].list.i[:]
            conv.attr["explicit_paddings"].list.i.extend(int(p) for p in paddings.ravel())
        conv.input[0] = pad.input[0]
        folded += 1
    return folded


def _pads_are_same(conv, rw: _Rewriter, shape: list | None, paddings: np.ndarray) -> bool:
    """Whether `paddings` (NHWC, [4, 2]) before `conv` are what its SAME padding adds to an input of
    static `shape`."""
    kernel = rw.const_value(conv.input[1])
    strides, dilations = _attr(conv, "strides"), _attr(conv, "dilations")
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
    rw, converted = _Rewriter(graph_def), 0
    for node in graph_def.node:
        if node.op not in ("AddV2", "Add") or _type_attr(node) not in FLOAT_TYPES:
            continue
        for k in (0, 1):
            source, bias = node.input[k], node.input[1 - k]
            value = rw.const_value(bias)
            producer = rw.nodes.get(_node_name(source))
            while producer is not None and producer.op == "Identity" and len(producer.input) == 1:
                source = producer.input[0]
                producer = rw.nodes.get(_node_name(source))
            if value is None or value.ndim != 1 or producer is None or producer.op not in CONVS \
                    or not _tensor(source).endswith(":0") or _string_attr(producer, "data_format", b"NHWC") != b"NHWC" \
                    or _type_attr(producer) != _type_attr(node) \
                    or const_dtype(rw, value) != _type_attr(node):
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


def const_dtype(rw: _Rewriter, value: np.ndarray) -> int | None:
    """The DataType enum of a constant's numpy value (None for a type TensorFlow lacks)."""
    try:
        return rw.tf.as_dtype(value.dtype).as_datatype_enum
    except TypeError:
        return None


def clips_to_relu6(graph_def) -> int:
    """Maximum(Minimum(x, 6), 0), onnx-tf's ReLU6 (ONNX Clip), -> Relu6(x), which the remapper fuses
    into the convolution and BiasAdd before it. Only where both are of one float type and their
    constants are single values that do not broadcast x to another shape."""
    rw, users, converted = _Rewriter(graph_def), _consumers(graph_def), 0
    shapes = None
    for node in graph_def.node:
        if node.op != "Maximum" or _type_attr(node) not in FLOAT_TYPES:
            continue
        zero = rw.const_value(node.input[1])
        inner = rw.nodes.get(_node_name(node.input[0]))
        if zero is None or zero.size != 1 or zero.item() != 0 or inner is None or inner.op != "Minimum" \
                or len(users[inner.name]) != 1 or not _tensor(node.input[0]).endswith(":0") \
                or _type_attr(inner) != _type_attr(node):
            continue
        six = rw.const_value(inner.input[1])
        if six is None or six.size != 1 or six.item() != 6:
            continue
        if max(zero.ndim, six.ndim) > 0:  # a [1, 1, ...] constant keeps x's shape only if x has at least its rank
            shapes = static_shapes(graph_def) if shapes is None else shapes
            x_shape = shapes.get(_tensor(inner.input[0]))
            if x_shape is None or len(x_shape) < max(zero.ndim, six.ndim):
                continue
        node.op = "Relu6"
        del node.input[:]
        node.input.append(inner.input[0])
        converted += 1
    return converted


def prune(graph_def, outputs: Iterable[str]):
    """Only the nodes that the outputs need."""
    import tensorflow as tf  # deferred, as fold_constants
    return tf.compat.v1.graph_util.extract_sub_graph(graph_def, sorted({_node_name(t) for t in outputs}))


def optimize(graph_def, outputs: Iterable[str], depthwise_padding: str = "same") -> tuple[object, dict[str, int]]:
    """The whole rewrite (steps 1-4); returns the new GraphDef and what each step changed.
    `depthwise_padding`: "same" (SAME where it equals the pads) or "pad" (each Pad kept before a
    VALID depthwise convolution); `fold_pads_into_convs` says why."""
    import tensorflow as tf  # deferred, as fold_constants
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
            key = f"depthwise_{_string_attr(node, 'padding', b'').decode().lower()}"
            stats[key] = stats.get(key, 0) + 1
    return folded, stats
