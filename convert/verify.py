"""Run an exported SavedModel on image files in a fresh process, with onnx-tf and torch made unimportable.

    python -m convert.verify --model-dir EXPORT --out outputs.npz [--loaders graph tf2] IMAGE...

`convert.compare` runs this (with this project's Python or another, such as a plain TF 2.14
venv): it proves the model loads through TensorFlow's loaders without anything from the
conversion step, and hands back their outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from serving.contract import LOADERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True, help=".npz file for the outputs of each loader")
    parser.add_argument("--loaders", nargs="+", choices=LOADERS, default=list(LOADERS))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    for blocked in ("onnx_tf", "onnx", "tensorflow_addons", "tensorflow_probability", "torch"):
        sys.modules[blocked] = None  # serving must not need them: importing them now fails
    # deferred: the block above must come first
    from serving.contract import check_contract
    from serving.saved_model import run_loaders

    check_contract(args.model_dir)
    outputs = run_loaders(args.model_dir, [Path(p).read_bytes() for p in args.images], args.loaders, args.batch_size)
    np.savez(args.out, **{f"{loader}/{key}": value for loader, out in outputs.items() for key, value in out.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
