"""The export's onnx-tf step traced two ways, side by side: through onnx-tf's own `tf.function`, which
AutoGraph rewrites handler by handler (the export before issue 54), and as plain Python (the export now).

    python -m bench.export_trace --onnx RUN/model.onnx [--input-size 64] [--images DIR]

Traces, freezes and rewrites the serving graph both ways (`frozen_serving_graph`) in this one process,
the plain way first (so that it, not AutoGraph, pays for TensorFlow's first trace): once each, since
AutoGraph keeps its conversions for the rest of a process and an export traces once. Prints the
seconds of each, their ratio, the ops that differ between the two graphs and the largest difference
of their probabilities on real photos (each frozen graph in a Session, as the graph-mode loader runs it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from functools import partial
from typing import Sequence

import numpy as np

from bench.machine import cpu_description
from convert.export_savedmodel import frozen_serving_graph
from mug_errors import command
from serving.contract import PROBABILITIES
from torch_trainer.classifier.photos import image_files


def probabilities(graph_def, input_name: str, outputs: dict[str, str], blobs: list[bytes]) -> np.ndarray:
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(outputs[PROBABILITIES], {input_name: np.array(blobs, dtype=object)})


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", required=True, help="an ONNX file the export wrote (RUN/model.onnx)")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--images", default=None, help="photos to compare the two graphs on (default: none)")
    args = parser.parse_args(argv)
    ways = {"plain": partial(frozen_serving_graph, args.onnx, args.input_size),
            "autograph": partial(frozen_serving_graph, args.onnx, args.input_size, autograph=True)}
    print(f"CPU: {cpu_description()}; {args.onnx}")
    seconds, graphs = {}, {}
    for name, trace in ways.items():
        started = time.perf_counter()
        graphs[name] = trace()
        seconds[name] = time.perf_counter() - started
        print(f"{name:10s} {seconds[name]:6.1f} s", flush=True)
    print(f"plain / autograph: {seconds['plain'] / seconds['autograph']:.2f}x the time")
    ops = {name: Counter(node.op for node in graph[0].node) for name, graph in graphs.items()}
    print(f"ops only with autograph: {dict(ops['autograph'] - ops['plain'])}; only plain: "
          f"{dict(ops['plain'] - ops['autograph'])}; rewrite the same: {graphs['autograph'][3] == graphs['plain'][3]}")
    if args.images:
        blobs = [p.read_bytes() for p in image_files(args.images)[:64]]
        a, b = (probabilities(*graphs[name][:3], blobs) for name in ways)
        print(f"max |dprob| between the two graphs on {len(blobs)} photos: {float(np.abs(a - b).max()):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
