"""Reading and editing a frozen TensorFlow GraphDef: attributes read without inserting them, constant
values, static shapes, node names, new nodes, grappler's constant folding and pruning. The pieces that
`convert.nhwc_layout` and `convert.optimize_graph` rewrite onnx-tf's graph with."""

from __future__ import annotations

import graphlib
from collections import defaultdict
from typing import Iterable

import numpy as np

FLOAT_TYPES = {1, 2, 14, 19}  # DataType enums of float32, float64, bfloat16, float16
TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def attr(node, key: str, default=None):
    """`node.attr[key]` when the node has it, else `default`, without adding an empty attribute."""
    return node.attr[key] if key in node.attr else default


def string_attr(node, key: str, default: bytes) -> bytes:
    value = attr(node, key)
    return default if value is None else value.s


def type_attr(node, key: str = "T") -> int | None:
    value = attr(node, key)
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


def tensor_name(name: str) -> str:
    """'node' and 'node:0' name the same tensor."""
    return name if ":" in name else name + ":0"


def node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


class Rewriter:
    """Holds the nodes by name, their constant values, and makes new nodes."""

    def __init__(self, graph_def):
        import tensorflow as tf  # deferred, as fold_constants
        self.tf = tf
        self.graph_def = graph_def
        self.nodes = {n.name: n for n in graph_def.node}

    def const_value(self, tensor: str) -> np.ndarray | None:
        node = self.nodes.get(node_name(tensor))
        value = None if node is None or node.op != "Const" or not tensor_name(tensor).endswith(":0") \
            else attr(node, "value")
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
        perm_name = self.add_const(f"{node_name(tensor)}/to_nchw/perm", np.array(TO_NCHW, np.int32))
        node = self.add_node(f"{node_name(tensor)}/to_nchw", "Transpose", [tensor, perm_name])
        node.attr["T"].CopyFrom(dtype_attr)
        node.attr["Tperm"].type = self.tf.int32.as_datatype_enum
        return node.name + ":0"

    def add_nchw_shape(self, shape: str, out_type_attr) -> str:
        """The NCHW shape vector of a tensor from its NHWC `shape` (a Gather, not a Transpose
        of the whole tensor only to read its shape)."""
        order = self.add_const(f"{node_name(shape)}/nchw_order", np.array(TO_NCHW, np.int32))
        axis = self.add_const(f"{node_name(shape)}/nchw_axis", np.array(0, np.int32))
        node = self.add_node(f"{node_name(shape)}/nchw", "GatherV2", [shape, order, axis])
        node.attr["Tparams"].CopyFrom(out_type_attr)
        node.attr["Tindices"].type = self.tf.int32.as_datatype_enum
        node.attr["Taxis"].type = self.tf.int32.as_datatype_enum
        node.attr["batch_dims"].i = 0
        return node.name + ":0"


def topological(graph_def) -> list:
    """Nodes in an order where inputs come first; loop back edges (NextIteration) are ignored."""
    nodes = {n.name: n for n in graph_def.node}
    sorter = graphlib.TopologicalSorter({
        n.name: {node_name(i) for i in n.input if nodes.get(node_name(i)) is not None
                 and nodes[node_name(i)].op != "NextIteration"} for n in graph_def.node})
    try:
        return [nodes[name] for name in sorter.static_order()]
    except graphlib.CycleError as err:
        raise ValueError("graph has a cycle outside while loops; cannot reorder it") from err


def consumers(graph_def) -> dict[str, list]:
    users = defaultdict(list)
    for node in graph_def.node:
        for i in node.input:
            users[node_name(i)].append(node)
    return users


def const_dtype(rw: Rewriter, value: np.ndarray) -> int | None:
    """The DataType enum of a constant's numpy value (None for a type TensorFlow lacks)."""
    try:
        return rw.tf.as_dtype(value.dtype).as_datatype_enum
    except TypeError:
        return None


def prune(graph_def, outputs: Iterable[str]):
    """Only the nodes that the outputs need."""
    import tensorflow as tf  # deferred, as fold_constants
    return tf.compat.v1.graph_util.extract_sub_graph(graph_def, sorted({node_name(t) for t in outputs}))
