"""Publish a benchmark: its JSON and Markdown under benchmarks/results, and its marked section of docs/results.md.

The README keeps one headline table (``benchmarks/headline.py``); every detailed table lives in
docs/results.md between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datafree.io import write_json

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RESULTS_DOC = REPO / "docs" / "results.md"  # where the detailed tables' marked sections live


def update_section(name: str, text: str, readme: Path = RESULTS_DOC) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{readme} lacks the {start} / {end} markers")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def published(stem: str) -> dict[str, Any]:
    """The last published ``results/STEM.json`` ({} if none). Its rows stand in for runs whose files are gone
    (another machine, a cleaned ``--root``), so a regenerated report does not silently drop them."""
    path = README.parent / "benchmarks" / "results" / f"{stem}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def publish(stem: str, md: str, data: dict[str, Any], *, section: str | None = None) -> None:
    """Print ``md``, write ``results/STEM.json`` and ``results/STEM.md``, and with ``section`` that section of docs/results.md."""
    print("\n" + md)
    out = README.parent / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", data)
    (out / f"{stem}.md").write_text(md + "\n")
    if section is not None:
        update_section(section, md)
