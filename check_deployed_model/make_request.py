"""Make a prediction request file from image files.

    python -m check_deployed_model.make_request IMAGE... [--format instances|request] -o FILE

`instances` writes one `{"bytes": {"b64": ...}}` per line (`gcloud ai-platform predict
--json-instances`); `request` writes `{"instances": [...]}` (`gcloud ai endpoints predict
--json-request`, and the REST APIs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from check_deployed_model.protocol import read_files, render
from mug_errors import command


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="JPEG or PNG files, sent as they are")
    parser.add_argument("--format", choices=("instances", "request"), default="instances")
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    blobs = read_files(args.images)
    text = render(blobs, args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {len(blobs)} instance(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
