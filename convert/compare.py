"""An export against PyTorch on the same image bytes: the one parity check that the export
(`convert.to_savedmodel`), the sweep (`convert.parity_sweep`) and the TF 2.14 check (bench/check_tf214.sh) all run.

PyTorch, the reference, and ONNX Runtime get the pixels PIL decodes, as training loads them;
the SavedModel gets the bytes themselves through `serving_default`: in this process, or in a
fresh one (`convert.verify`, run by any Python, such as a plain TF 2.14 venv) in which onnx-tf,
onnx and torch cannot be imported, which proves that serving needs nothing but TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from torch import nn

from convert.export_onnx import onnx_probabilities, onnx_session
from mug_errors import CheckFailed, JobFailed
from serving.contract import CLASSES, LOADERS, PROBABILITIES
from serving.saved_model import run_loaders
from torch_trainer.classifier.photos import DatasetError, image_files, load_images
from torch_trainer.classifier.network import class_probabilities, load_checkpoint

PARITY_TOL = 1e-5
# TensorFlow's two CPU kernel libraries, picked per process by TF_ENABLE_ONEDNN_OPTS. TensorFlow
# turns oneDNN on by itself only on CPUs with VNNI, BF16 or AMX, and a graph that Eigen runs can
# abort the process under oneDNN: an export is checked under both, whatever CPU exports it.
KERNELS = {"onednn": "1", "eigen": "0"}


class ParityError(CheckFailed):
    """An export answers differently from PyTorch: beyond the tolerance, another class, or CLASSES
    that is not the argmax of PROBABILITIES. (Not an AssertionError: a bug elsewhere that asserts
    must not pass for a parity miss.)"""
ROOT = Path(__file__).resolve().parent.parent


def compare(reference: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Max abs difference of probabilities and class agreement of `probs` against `reference`."""
    return {"images": int(len(reference)),
            "max_abs_dprob": float(np.abs(reference - probs).max()),
            "class_agreement": float((reference.argmax(1) == probs.argmax(1)).mean())}


def savedmodel_outputs(model_dir: str | os.PathLike, blobs: Sequence[bytes], loaders: Sequence[str] = LOADERS,
                       serving_python: str | None = None, batch_size: int = 100,
                       kernels: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """{MODEL: {"PROBABILITIES", "CLASSES", "load_seconds"}} of `serving_default` on `blobs`.

    Without `serving_python` and `kernels`, in this process, MODEL a loader; otherwise in fresh
    processes of `serving_python` (default this one's, `convert.verify`), one per kernel library
    of `kernels` (keys of KERNELS), MODEL "LOADER-KERNEL" ("graph-onednn"), or a loader without them.
    The processes run side by side: most of each is TensorFlow starting and loading the graph, on
    one core (two after one another took 44 s of the main job's 81 s export here)."""
    if serving_python is None and not kernels:
        return run_loaders(model_dir, blobs, loaders, batch_size)
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"{i:05d}.img" for i in range(len(blobs))]
        for path, blob in zip(files, blobs):  # written once, read by every process
            path.write_bytes(blob)
        started = {}
        for kernel in kernels or [None]:
            out = Path(tmp) / f"outputs-{kernel}.npz"
            cmd = [serving_python or sys.executable, "-m", "convert.verify", "--model-dir",
                   str(Path(model_dir).resolve()), "--out", str(out), "--loaders", *loaders,
                   "--batch-size", str(batch_size), *map(str, files)]
            env = dict(os.environ, **({"TF_ENABLE_ONEDNN_OPTS": KERNELS[kernel]} if kernel else {}))
            # stderr to a file, not a pipe: a process waited on second must never block on a full pipe
            log = Path(tmp) / f"stderr-{kernel}.txt"
            with log.open("w") as stderr:
                started[kernel] = (cmd, out, log, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr,
                                                                   cwd=ROOT, env=env))
        for kernel, (cmd, out, log, proc) in started.items():
            if proc.wait() != 0:
                stderr = log.read_text()
                how = cmd[0] + (f", TF_ENABLE_ONEDNN_OPTS={KERNELS[kernel]} ({kernel})" if kernel else "")
                died = f" (killed by signal {-proc.returncode})" if proc.returncode < 0 else ""
                for *_, other in started.values():
                    other.kill()
                    other.wait()
                raise JobFailed(f"{model_dir}: the SavedModel failed to load or run in a fresh process "
                                f"({how}){died}:\n{stderr[-4000:]}")
            with np.load(out) as saved:  # run_loaders' outputs, saved as "LOADER/KEY"
                outputs.update({loader if kernel is None else f"{loader}-{kernel}":
                                {key: saved[f"{loader}/{key}"] for key in (PROBABILITIES, CLASSES, "load_seconds")}
                                for loader in loaders})
    return outputs


def parity(classifier: nn.Module, input_size: int, cases: Mapping[str, Sequence[bytes]],
           onnx_path: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
           loaders: Sequence[str] = LOADERS, serving_python: str | None = None,
           batch_size: int = 100, kernels: Sequence[str] | None = None) -> dict[str, Any]:
    """ONNX Runtime (`onnx_path`) and the SavedModel (`model_dir`, each of `loaders`; with `kernels`,
    under each of them in a fresh process) against PyTorch on every case's image bytes.

    Returns {"onnxruntime/CASE": compare(...), "MODEL/CASE": compare(...), "MODEL_load_seconds": s},
    MODEL a loader, or LOADER-KERNEL with `kernels` ("graph-onednn"); raises ParityError if a
    SavedModel's CLASSES is not the argmax of its PROBABILITIES.
    """
    names = list(cases)
    blobs = [blob for name in names for blob in cases[name]]
    ends = np.cumsum([len(cases[name]) for name in names])
    images = load_images(blobs, input_size)
    reference = np.split(class_probabilities(classifier, images), ends[:-1])
    report: dict[str, Any] = {}

    def add(model: str, probs: np.ndarray) -> None:
        for name, ref, part in zip(names, reference, np.split(probs, ends[:-1])):
            report[f"{model}/{name}"] = compare(ref, part)

    if onnx_path is not None:
        add("onnxruntime", onnx_probabilities(onnx_session(onnx_path), images, batch_size))
    if model_dir is not None:
        for model, out in savedmodel_outputs(model_dir, blobs, loaders, serving_python, batch_size, kernels).items():
            if not np.array_equal(out[CLASSES], out[PROBABILITIES].argmax(1)):
                raise ParityError(f"{model_dir}: CLASSES is not the argmax of PROBABILITIES ({model})")
            report[f"{model}_load_seconds"] = round(float(out["load_seconds"]), 3)
            add(model, out[PROBABILITIES])
    return report


def comparisons(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ("MODEL/CASE", compare(...)) entries of a report that may hold other keys too."""
    return ((key, value) for key, value in report.items() if isinstance(value, dict) and "max_abs_dprob" in value)


def require(report: Mapping[str, Any], what: str, tol: float = PARITY_TOL, cases: Sequence[str] | None = None) -> None:
    """Raise ParityError, naming `what`, if a comparison in `report` (of `cases`, default all)
    is beyond `tol` or changes a class."""
    for key, value in comparisons(report):
        if cases is not None and key.split("/")[-1] not in cases:
            continue
        if value["max_abs_dprob"] > tol or value["class_agreement"] < 1.0:
            raise ParityError(f"{what}: {key.split('/')[0]} disagrees with PyTorch on {key}: {value} "
                                 f"(tolerance {tol})")


def sweep(checkpoint: str | os.PathLike, model_dir: str | os.PathLike, data_dir: str | os.PathLike,
          onnx_path: str | os.PathLike | None = None, loaders: Sequence[str] = LOADERS,
          serving_python: str | None = None, limit: int | None = None,
          kernels: Sequence[str] | None = tuple(KERNELS)) -> dict[str, Any]:
    """`parity` of an export (ONNX Runtime next to the checkpoint, unless `onnx_path`, and the
    SavedModel in `model_dir`, under each of `kernels` in a fresh process, or with None as this
    process runs it) over the images of `data_dir` (the first `limit`, in file order); the report's
    "images" holds how many. Judge it with `require`."""
    files = image_files(data_dir)[:limit]
    if not files:
        raise DatasetError(f"{data_dir}: no images")
    model, meta = load_checkpoint(checkpoint)
    onnx_path = Path(onnx_path) if onnx_path else Path(checkpoint).with_suffix(".onnx")
    report = parity(model, meta["input_size"], {"files": [p.read_bytes() for p in files]}, onnx_path,
                    model_dir, loaders, serving_python, kernels=kernels)
    return dict(report, images=len(files))
