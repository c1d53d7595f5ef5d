"""Parity sweep over the images of a folder: ONNX Runtime and the SavedModel against PyTorch.

    python -m convert.parity_sweep --checkpoint RUN/model.pt --model-dir EXPORT --data-dir DIR [--onnx RUN/model.onnx]
        [--loaders graph tf2] [--kernels onednn eigen] [--serving-python .venv-tf214/bin/python] [--limit N] [--tol 1e-5]

PyTorch and ONNX Runtime get the pixels PIL decodes (as training does); the SavedModel gets
the files' bytes through `serving_default` (`convert.compare.sweep`) in fresh processes, one per
kernel library (oneDNN, Eigen), of this Python or --serving-python (a plain TF 2.14 venv, say). Prints,
per model, the max |dprob| against PyTorch and the share of images with the same class, then
the report as one line of JSON. Exits 1 when a model changes a class (or, with --tol, when it is
beyond that max |dprob|), 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from convert.compare import KERNELS, comparisons, require, sweep
from mug_errors import command
from serving.contract import LOADERS


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model-dir", required=True, help="exported SavedModel")
    parser.add_argument("--data-dir", required=True, help="images (class folders or flat)")
    parser.add_argument("--onnx", help="ONNX file (default: next to the checkpoint)")
    parser.add_argument("--loaders", nargs="+", choices=LOADERS, default=list(LOADERS),
                        help="TensorFlow loaders to run the SavedModel with (default: both, as the export checks)")
    parser.add_argument("--serving-python", help="run the SavedModel in fresh processes of this Python "
                                                 "(default: this one's)")
    parser.add_argument("--kernels", nargs="+", choices=tuple(KERNELS), default=list(KERNELS),
                        help="TensorFlow's CPU kernels to run it with, each in its own process "
                             "(TF_ENABLE_ONEDNN_OPTS=1 / 0; default: both, as the export checks)")
    parser.add_argument("--limit", type=int, help="the first N images (in file order) only")
    parser.add_argument("--tol", type=float, default=float("inf"),
                        help="exit 1 if a model is beyond this max |dprob| (it always does if a class changes)")
    args = parser.parse_args(argv)
    report = sweep(args.checkpoint, args.model_dir, args.data_dir, args.onnx, args.loaders, args.serving_python,
                   args.limit, args.kernels)
    print(f"parity against PyTorch over {report['images']} images of {args.data_dir}:")
    print(f"{'model':14s} {'max |dprob|':>12s} {'same class':>11s}")
    for key, r in comparisons(report):
        print(f"{key.split('/')[0]:14s} {r['max_abs_dprob']:12.2e} {r['class_agreement']:11.4f}")
    print(json.dumps(report))
    require(report, args.model_dir, args.tol)  # ParityError: exit 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
