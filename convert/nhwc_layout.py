"""onnx-tf's graphs keep ONNX's NCHW layout and wrap every NHWC-only TensorFlow op (Conv2D, MaxPool) in
a Transpose pair; `to_nhwc` moves the whole network to NHWC instead (step 2 of `convert.optimize_graph`)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from convert.graph_edit import TO_NCHW, TO_NHWC, Rewriter, attr, node_name, tensor_name, topological

# logical NCHW axis -> where that axis lives in the NHWC tensor
NCHW_AXIS_IN_NHWC = [0, 3, 1, 2]
ELEMENTWISE_UNARY = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Identity", "Round", "Neg", "Abs",
                     "Sqrt", "Rsqrt", "Exp", "Log", "Square", "Floor", "Ceil", "LeakyRelu"}
ELEMENTWISE_BINARY = {"AddV2", "Add", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "Pow",
                      "SquaredDifference"}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod"}
PADS = {"Pad", "PadV2", "MirrorPad"}


def _perm_of(rw: Rewriter, node) -> list[int] | None:
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
    rw = Rewriter(graph_def)
    fetch_nodes = {node_name(t) for t in outputs}
    value: dict[str, tuple[str, bool]] = {}   # tensor -> (replacement, replacement is NHWC)
    dtype: dict[str, object] = {}              # NHWC replacement -> its dtype attr
    to_nchw: dict[str, str] = {}               # NHWC replacement -> its materialised NCHW Transpose
    removed = 0

    for node in topological(graph_def):
        data = [i for i in node.input if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        resolved = [value.get(tensor_name(i), (tensor_name(i), False)) for i in data]
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
            dtype[out] = attr(node, "T")

        if node.name in fetch_nodes:
            materialise()
        elif perm == TO_NHWC and first and not controls:
            value[out] = (ins[0], False)      # NHWC -> NCHW -> NHWC: the two cancel
            removed += 1
            continue
        elif perm == TO_NCHW and not first and not controls and attr(node, "T") is not None:
            value[out] = (ins[0], True)       # keep computing in NHWC
            dtype[ins[0]] = attr(node, "T")
            removed += 1
            continue
        elif any(flagged) and node.op in ELEMENTWISE_UNARY and len(ins) == 1 and attr(node, "T") is not None:
            nhwc_output()
        elif any(flagged) and node.op in ELEMENTWISE_BINARY and attr(node, "T") is not None:
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
        elif first and node.op in PADS and not any(flagged[2:]) and attr(node, "T") is not None \
                and second is not None and second.shape == (4, 2):
            ins[1] = rw.add_const(f"{node.name}/nhwc_paddings", second[TO_NHWC]) + ":0"
            nhwc_output()
        elif first and node.op == "Shape" and attr(node, "out_type") is not None:
            value[out] = (rw.add_nchw_shape(out, attr(node, "out_type")), False)  # shape of the NHWC tensor, reordered
        elif first and node.op in REDUCTIONS and getattr(attr(node, "keep_dims"), "b", False) \
                and second is not None and attr(node, "T") is not None:
            ins[1] = rw.add_const(f"{node.name}/nhwc_axes", np.array(
                [NCHW_AXIS_IN_NHWC[a % 4] for a in np.atleast_1d(second)], dtype=second.dtype)) + ":0"
            nhwc_output()
        else:
            materialise()
        del node.input[:]
        node.input.extend(ins + controls)
    return removed
