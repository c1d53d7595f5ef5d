"""Score a checkpoint or an exported SavedModel on labelled photos under capture shifts: each photo
changed the way another camera, light or distance changes it, at a few strengths, re-encoded as JPEG.

    python -m check_deployed_model.robustness --checkpoint RUN/model.pt --data-dir DIR --output-dir OUT [--parts]
    python -m check_deployed_model.robustness --model-dir EXPORT --data-dir DIR --output-dir OUT [--shifts cooler noise=8,16]

An export is scored through `serving_default` on the JPEG bytes, as the hosted service gets them; a
checkpoint in PyTorch on the same bytes, decoded as training decodes; with `--parts`, an ensemble's
families and members are scored beside it, to see which of them fails where. Prints the summary and the
table; writes OUT/robustness.json, robustness.md, accuracy.png (accuracy against strength) and
mistakes.png (a contact sheet of the mistakes at each shift's strongest strength).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from check_deployed_model.scoring.accuracy import bytes_predictor, format_shift_table, parts_predictor, shift_report
from check_deployed_model.scoring.shifts import SHIFTS, parse_shifts
from mug_errors import SettingsError, command


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="shifts (default strengths, mildest first): " + "; ".join(
                                         f"{s.name} {', '.join(f'{v:g}' for v in s.strengths)} ({s.unit})"
                                         for s in SHIFTS.values() if s.name != "none"))
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="RUN/model.pt (scored in PyTorch)")
    model.add_argument("--model-dir", help="exported SavedModel (scored through serving_default on JPEG bytes)")
    parser.add_argument("--data-dir", required=True, help="class-per-folder photos with known labels")
    parser.add_argument("--output-dir", required=True, help="where the table, plot and contact sheet go")
    parser.add_argument("--shifts", nargs="+", metavar="NAME[=S1,S2]",
                        help="the shifts to apply, each at its default strengths or at those given (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--parts", action="store_true",
                        help="with --checkpoint of an ensemble: score each family and member beside it")
    args = parser.parse_args(argv)
    shifts = parse_shifts(args.shifts)  # before loading a model: a typo costs nothing
    if args.parts and not args.checkpoint:
        raise SettingsError("--parts needs --checkpoint: an export is one graph, its parts are not apart")
    predict = parts_predictor(args.checkpoint, args.batch_size) if args.parts else \
        bytes_predictor(args.checkpoint, args.model_dir, args.batch_size)
    result = shift_report(predict, args.data_dir, shifts, args.output_dir, args.overwrite)
    print(format_shift_table(result))
    print(f"wrote {args.output_dir}/robustness.json, robustness.md, accuracy.png, mistakes.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
