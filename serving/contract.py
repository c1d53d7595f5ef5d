"""The Google Cloud prediction contract of the SavedModel, and a reader that checks it."""

from __future__ import annotations

import os
from pathlib import Path

from mug_errors import InputError, NotFound

# The names ML6's evaluator calls: every other module takes them from here.
TAG, SIGNATURE = "serve", "serving_default"
INPUT = "bytes"                  # raw JPEG (or PNG) bytes; clients send {"bytes": {"b64": "..."}}
CLASSES = "CLASSES"              # int64 [None]: the most likely class
PROBABILITIES = "PROBABILITIES"  # float32 [None, 4]: the softmax
# name -> (dtype, shape); -1 is the batch dimension.
INPUTS = {INPUT: ("DT_STRING", [-1])}
OUTPUTS = {CLASSES: ("DT_INT64", [-1]), PROBABILITIES: ("DT_FLOAT", [-1, 4])}
# the two ways TensorFlow loads it: the graph-mode loader (gcloud's local predict, TF Serving) and TF2's
GRAPH, TF2 = "graph", "tf2"
LOADERS = (GRAPH, TF2)


def read_signature(model_dir: str | os.PathLike, tag: str = TAG, signature: str = SIGNATURE) -> dict:
    """{"inputs": {name: (dtype, shape)}, "outputs": {...}} of a signature, read from saved_model.pb."""
    from tensorflow.core.framework import types_pb2  # deferred: TensorFlow loads only when an export is read
    from tensorflow.core.protobuf import saved_model_pb2
    pb = Path(model_dir) / "saved_model.pb"
    if not pb.is_file():
        raise NotFound(f"{model_dir}: no saved_model.pb")
    sm = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    metas = [m for m in sm.meta_graphs if tag in m.meta_info_def.tags]
    if not metas:
        raise InputError(f"{model_dir}: no meta graph tagged {tag!r}")
    sigs = metas[0].signature_def
    if signature not in sigs:
        raise InputError(f"{model_dir}: no signature {signature!r} (has {sorted(sigs)})")

    def describe(infos):
        return {k: (types_pb2.DataType.Name(v.dtype), [d.size for d in v.tensor_shape.dim])
                for k, v in infos.items()}

    return {"inputs": describe(sigs[signature].inputs), "outputs": describe(sigs[signature].outputs)}


def check_contract(model_dir: str | os.PathLike, num_classes: int = 4) -> dict:
    """Raise InputError unless `serving_default` has exactly the contract's names, dtypes and shapes."""
    sig = read_signature(model_dir)
    outputs = dict(OUTPUTS, **{PROBABILITIES: ("DT_FLOAT", [-1, num_classes])})
    if sig["inputs"] != INPUTS or sig["outputs"] != outputs:
        raise InputError(f"{model_dir}: serving_default is {sig}, the contract is inputs {INPUTS} outputs {outputs}")
    return sig
