"""Put a ``datafree bench`` report into docs/results.md (tables from report.md, plots copied alongside).

    python -m benchmarks.bench_readme artifacts/bench/quick --name bench-quick

The report itself is made by ``datafree bench report DIR``; this only copies it into
``benchmarks/results/NAME/`` (so the images live in the repository) and writes the docs/results.md
``<!-- NAME:start/end -->`` section.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmarks.baselines import REPO
from benchmarks.readme import update_section
from datafree.bench import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="a bench output directory (datafree bench run ... --out DIR)")
    parser.add_argument("--name", default="bench-quick", help="README section and results folder (default: %(default)s)")
    parser.add_argument("--commands-in-file", action="store_true",
                        help="link to the copied report.md for the commands instead of listing them (long suites)")
    args = parser.parse_args(argv)
    md = report(args.directory)
    dest = REPO / "benchmarks" / "results" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    for png in args.directory.glob("*.png"):
        shutil.copyfile(png, dest / png.name)
    shutil.copyfile(args.directory / "report.csv", dest / "report.csv")
    body = md.split("\n", 1)[1].strip()  # drop the report's own title
    (dest / "report.md").write_text(body.replace("](", f"](benchmarks/results/{args.name}/") + "\n")
    body = body.replace("](", f"](../benchmarks/results/{args.name}/")  # relative to docs/
    if args.commands_in_file:
        head = body.split("\nCommands (first seed of each source):", 1)[0]
        body = f"{head}\nCommands (first seed of each source): [benchmarks/results/{args.name}/report.md]" \
               f"(../benchmarks/results/{args.name}/report.md)."
    update_section(args.name, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
