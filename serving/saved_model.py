"""Run the exported SavedModel in-process, the way the Google Cloud services load it."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from mug_errors import InputError, NotFound, SettingsError
from serving.contract import GRAPH, INPUT, LOADERS, SIGNATURE, TAG



class ImageDecodeError(InputError):
    """An instance's bytes are not an image that `serving_default` decodes (JPEG, PNG, GIF, BMP)."""


class SavedModelPredictor:
    """`serving_default` of a SavedModel, loaded once, called on batches of image bytes.

    loader="graph" uses `tf.compat.v1.saved_model.loader.load` into a Session (what
    `gcloud ai-platform local predict`, AI Platform and TensorFlow Serving do);
    loader="tf2" uses `tf.saved_model.load`. `threads` fixes the graph-mode Session's
    intra-op threads (inter-op 1), for benchmarks that must compare like with like.
    """

    def __init__(self, model_dir: str | os.PathLike, loader: str = GRAPH, threads: int | None = None):
        import tensorflow as tf  # deferred: importing this module (and --help) needs no TensorFlow
        if loader not in LOADERS:
            raise SettingsError(f"loader must be one of {LOADERS}, not {loader!r}")
        model_dir = os.fspath(model_dir)
        if not os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
            raise NotFound(f"{model_dir}: no saved_model.pb (not a SavedModel folder)")
        self.loader = loader
        tf.get_logger().setLevel("ERROR")  # the v1 loader's deprecation notice is expected here
        if loader == GRAPH:
            self._graph = tf.Graph()
            config = None
            if threads:
                config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                  inter_op_parallelism_threads=1)
            self._session = tf.compat.v1.Session(graph=self._graph, config=config)
            meta = tf.compat.v1.saved_model.loader.load(self._session, [TAG], model_dir)
            if SIGNATURE not in meta.signature_def:
                raise InputError(f"{model_dir}: no {SIGNATURE} signature")
            sig = meta.signature_def[SIGNATURE]
            self.input_names = {k: v.name for k, v in sig.inputs.items()}
            self.output_names = {k: v.name for k, v in sig.outputs.items()}
        else:
            self._loaded = tf.saved_model.load(model_dir)
            self._fn = self._loaded.signatures[SIGNATURE]
            self.input_names = {k: k for k in self._fn.structured_input_signature[1]}
            self.output_names = {k: k for k in self._fn.structured_outputs}

    @property
    def session(self):
        """The graph-mode loader's Session (for tracing, as bench.op_profile does)."""
        if self.loader != GRAPH:
            raise AttributeError("only the graph-mode loader has a Session")
        return self._session

    def predict(self, blobs: Sequence[bytes], batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs of `serving_default` for encoded images (JPEG or PNG bytes), `batch_size` at a
        time when given (one call otherwise)."""
        blobs = list(blobs)
        if batch_size and len(blobs) > batch_size:
            parts = [self.predict(blobs[i:i + batch_size]) for i in range(0, len(blobs), batch_size)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch = np.array(blobs, dtype=object)
        import tensorflow as tf  # deferred, as in __init__
        try:
            if self.loader == GRAPH:
                names = sorted(self.output_names)
                values = self._session.run([self.output_names[k] for k in names],
                                           {self.input_names[INPUT]: batch})
                return dict(zip(names, values))
            return {k: v.numpy() for k, v in self._fn(**{INPUT: tf.constant(batch, dtype=tf.string)}).items()}
        except tf.errors.InvalidArgumentError as err:
            # the batch is a string vector by construction, so only the bytes can be invalid; quote the
            # decoder ("Unknown image file format", "Invalid JPEG data"), not the node trace around it
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            said = next((line for line in lines if not line.startswith(("Graph execution", "Detected at", "Node:", "File ", "[["))
                         and any(word in line.lower() for word in ("image", "jpeg", "png"))),
                        lines[0] if lines else type(err).__name__)
            raise ImageDecodeError(f"an instance is not a decodable JPEG or PNG image: {said}") from err

    def close(self) -> None:
        if self.loader == GRAPH:
            self._session.close()


def run_loaders(model_dir: str | os.PathLike, blobs: Sequence[bytes], loaders: Sequence[str] = LOADERS,
                batch_size: int | None = None) -> dict[str, dict[str, Any]]:
    """{loader: {"PROBABILITIES", "CLASSES", "load_seconds"}}: `serving_default` on `blobs`, the
    SavedModel loaded afresh by each of `loaders`."""
    outputs = {}
    for loader in loaders:
        started = time.time()
        predictor = SavedModelPredictor(model_dir, loader)
        load_seconds = time.time() - started
        outputs[loader] = dict(predictor.predict(blobs, batch_size), load_seconds=load_seconds)
        predictor.close()
    return outputs
