"""Score a checkpoint or an exported SavedModel on a class-per-folder data set.

    python -m check_deployed_model.evaluate --checkpoint RUN/model.pt --data-dir DIR [--output-dir OUT]
    python -m check_deployed_model.evaluate --model-dir EXPORT --data-dir DIR [--output-dir OUT]

Prints accuracy, per-class precision/recall and the confusion matrix; writes OUT/report.json,
OUT/confusion.png and OUT/misclassified.png (a contact sheet of the mistakes) so that a
person can look at what went wrong. A checkpoint sees the images at its own input size
(`torch_trainer.classifier.report.evaluate_checkpoint`), a SavedModel the files' bytes
(`check_deployed_model.scoring.accuracy.evaluate_savedmodel`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from check_deployed_model.scoring.accuracy import evaluate_savedmodel
from mug_errors import command

from torch_trainer.classifier.report import evaluate_checkpoint, format_classification_report


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="RUN/model.pt")
    model.add_argument("--model-dir", help="exported SavedModel (scored through serving_default on the files' bytes)")
    parser.add_argument("--data-dir", required=True, help="class-per-folder images with known labels")
    parser.add_argument("--output-dir", help="where report.json, confusion.png and misclassified.png go")
    args = parser.parse_args(argv)
    if args.checkpoint:
        report = evaluate_checkpoint(args.checkpoint, args.data_dir, args.output_dir)
    else:
        report = evaluate_savedmodel(args.model_dir, args.data_dir, args.output_dir)
    print(format_classification_report(report))
    if args.output_dir:
        print(f"wrote {args.output_dir}/report.json, confusion.png, misclassified.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
