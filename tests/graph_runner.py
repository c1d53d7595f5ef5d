"""Run frozen GraphDefs in a fresh process with TensorFlow's oneDNN kernels forced on or off.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it starts, so each setting needs its own
process; a graph that oneDNN cannot run aborts that process (no Python exception), which
`run_graphs` reports as a non-zero exit code with TensorFlow's last words.

    python tests/graph_runner.py FOLDER     (FOLDER: graphs, names.json and inputs.npz, from `run_graphs`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run_graphs(cases: Mapping[str, tuple], onednn: str) -> tuple[dict[str, np.ndarray] | None, dict]:
    """{name: (graph_def, input tensor, output tensor, input value)} run with TF_ENABLE_ONEDNN_OPTS=`onednn`
    in one fresh process. Returns ({name: output} or None when the process died, {"returncode",
    "onednn_enabled", "stderr"})."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = {}
        for k, (name, (graph_def, inp, out, _)) in enumerate(cases.items()):
            (folder / f"{k}.pb").write_bytes(graph_def.SerializeToString())
            names[name] = [f"{k}.pb", inp, out]
        (folder / "names.json").write_text(json.dumps(names))
        np.savez(folder / "inputs.npz", **{name: case[3] for name, case in cases.items()})
        proc = subprocess.run([sys.executable, __file__, str(folder)], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "1"},
                              timeout=300)
        info = {"returncode": proc.returncode, "stderr": proc.stderr[-3000:]}
        if proc.returncode != 0:
            return None, info
        info["onednn_enabled"] = json.loads((folder / "info.json").read_text())["onednn_enabled"]
        with np.load(folder / "outputs.npz") as saved:
            return {name: saved[name] for name in cases}, info


def main(folder: str) -> int:
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    root = Path(folder)
    names = json.loads((root / "names.json").read_text())
    outputs = {}
    with np.load(root / "inputs.npz") as inputs:
        for name, (file, inp, out) in names.items():
            graph_def = tf.compat.v1.GraphDef.FromString((root / file).read_bytes())
            with tf.Graph().as_default() as graph:
                tf.graph_util.import_graph_def(graph_def, name="")
                with tf.compat.v1.Session(graph=graph) as session:  # grappler's remapper fuses as in serving
                    outputs[name] = session.run(out, {inp: inputs[name]})
    np.savez(root / "outputs.npz", **outputs)
    (root / "info.json").write_text(json.dumps({"onednn_enabled": bool(_pywrap_util_port.IsMklEnabled())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
