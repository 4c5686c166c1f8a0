"""python -m outputs.report RESULTS.jsonl [-o report.html]: the HTML report of one ``launch.py --out`` file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from outputs.report.page import read_messages, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outputs.report", description=__doc__.split(": ", 1)[1])
    parser.add_argument("results", type=Path, help="a DIR/<job>.jsonl file written by launch.py --out DIR")
    parser.add_argument("-o", "--output", type=Path, help="HTML file to write (default: RESULTS with .html)")
    args = parser.parse_args(argv)
    output = args.output or args.results.with_suffix(".html")
    try:
        write_report(read_messages(args.results), output)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or not exactly one job
        print(f"python -m outputs.report: error: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
