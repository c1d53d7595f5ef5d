"""Checkpoint -> ONNX -> onnx-tf -> one frozen TensorFlow graph, saved with the serving contract.

    python -m convert.to_savedmodel --checkpoint RUN/model.pt --output-dir EXPORT [--images DIR]

The SavedModel's `serving_default` takes `bytes` (tf.string [None], JPEG or PNG) and returns
`CLASSES` (int64 [None]) and `PROBABILITIES` (float32 [None, 4]); before it is moved into place,
fresh processes reload it through both TensorFlow loaders, with oneDNN's kernels and with Eigen's,
and it is checked against PyTorch on real image bytes (`convert.export_savedmodel` does the work).
"""

from __future__ import annotations

import argparse
import sys

from convert.export_savedmodel import convert_checkpoint, format_export_report
from convert.optimize_graph import DEPTHWISE_PADDINGS
from mug_errors import command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="RUN/model.pt from torch_trainer.train")
    parser.add_argument("--output-dir", required=True, help="SavedModel folder to create")
    parser.add_argument("--onnx", help="where to write the ONNX file (default: next to the checkpoint)")
    parser.add_argument("--images", help="folder of real images for the parity check "
                                         "(default: the checkpoint's training folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="keep onnx-tf's NCHW graph with its Transposes (slower; for comparison)")
    parser.add_argument("--depthwise-padding", choices=DEPTHWISE_PADDINGS, default="same",
                        help="a padded depthwise convolution as SAME padding where that equals its pads, else "
                             "Pad + VALID (same), or always Pad + VALID (pad); both run under oneDNN and Eigen "
                             "(default %(default)s)")
    args = parser.parse_args(argv)
    report = convert_checkpoint(args.checkpoint, args.output_dir, args.onnx, args.images, args.overwrite,
                                args.optimize, args.depthwise_padding)
    print(format_export_report(report))
    print(f"SavedModel written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
