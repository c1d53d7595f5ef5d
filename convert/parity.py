"""Parity sweep over every image of a folder: PyTorch vs ONNX Runtime vs the SavedModel.

    python -m convert.parity --checkpoint RUN/model.pt --model-dir EXPORT --data-dir DIR [--onnx RUN/model.onnx]

PyTorch and ONNX Runtime get the pixels PIL decodes (as training does); the SavedModel gets
the files' bytes through `serving_default`. Prints, per model, the max |dprob| against
PyTorch and the share of images with the same class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from convert.export_onnx import ONNX_INPUT, ONNX_OUTPUT, compare, load_pixels, torch_probabilities
from serving.saved_model import SavedModelPredictor
from torch_trainer.data import DatasetError, image_files
from torch_trainer.model import load_checkpoint


def sweep(checkpoint: Path, onnx_path: Path, model_dir: Path, files: Sequence[Path], batch: int = 100) -> dict:
    """Max |dprob| and class agreement of ONNX Runtime and the SavedModel against PyTorch."""
    model, meta = load_checkpoint(checkpoint)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    predictor = SavedModelPredictor(model_dir, "graph")
    ref, ort_probs, tf_probs = [], [], []
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        pixels = load_pixels(chunk, meta["input_size"])
        ref.append(torch_probabilities(model, pixels))
        ort_probs.append(session.run([ONNX_OUTPUT], {ONNX_INPUT: pixels})[0])
        tf_probs.append(predictor.predict([p.read_bytes() for p in chunk])["PROBABILITIES"])
    ref = np.concatenate(ref)
    return {"onnxruntime": compare(ref, np.concatenate(ort_probs)),
            "savedmodel": compare(ref, np.concatenate(tf_probs))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model-dir", required=True, help="exported SavedModel")
    parser.add_argument("--data-dir", required=True, help="images (class folders or flat)")
    parser.add_argument("--onnx", help="ONNX file (default: next to the checkpoint)")
    args = parser.parse_args(argv)
    try:
        files = image_files(args.data_dir)
        if not files:
            raise DatasetError(f"{args.data_dir}: no images")
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    onnx_path = Path(args.onnx) if args.onnx else Path(args.checkpoint).with_suffix(".onnx")
    report = sweep(Path(args.checkpoint), onnx_path, Path(args.model_dir), files)
    print(f"parity against PyTorch over {len(files)} images of {args.data_dir}:")
    print(f"{'model':12s} {'max |dprob|':>12s} {'same class':>11s}")
    for name, r in report.items():
        print(f"{name:12s} {r['max_abs_dprob']:12.2e} {r['class_agreement']:11.4f}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
