"""Run an exported SavedModel on image files in a fresh process, with onnx-tf made unimportable.

    python -m convert.verify --model-dir EXPORT --out result.npz IMAGE...

`convert.to_savedmodel` runs this after saving: it proves the model loads through both
TensorFlow loaders without anything from the conversion step, and returns their outputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True, help=".npz file for the outputs of each loader")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    for blocked in ("onnx_tf", "onnx", "tensorflow_addons", "tensorflow_probability", "torch"):
        sys.modules[blocked] = None  # serving must not need them: importing them now fails
    from serving.saved_model import LOADERS, SavedModelPredictor
    from serving.contract import check_contract

    check_contract(args.model_dir)
    blobs = [Path(p).read_bytes() for p in args.images]
    results = {}
    for loader in LOADERS:
        t0 = time.time()
        predictor = SavedModelPredictor(args.model_dir, loader)
        load_s = time.time() - t0
        out = predictor.predict(blobs)
        results[f"{loader}_probabilities"] = out["PROBABILITIES"]
        results[f"{loader}_classes"] = out["CLASSES"]
        results[f"{loader}_load_seconds"] = np.float64(load_s)
        predictor.close()
    np.savez(args.out, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
