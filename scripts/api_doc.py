"""Write docs/api.md from the docstrings and signatures of datafree.api (``--check``: fail if it is stale).

    python scripts/api_doc.py            # rewrite docs/api.md
    python scripts/api_doc.py --check    # what tests/test_examples.py runs
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
CALLS = ("load_teacher", "train_teacher", "synthesize", "distill", "condense", "evaluate_set", "evaluate", "audit",
         "quantize")
RESULTS = ("RunResult", "SetResult", "SetEvaluation", "AuditResult")
CONFIGS = (("TrainConfig", "datafree.train"), ("SynthesisConfig", "datafree.synthesis"),
           ("EvalProtocol", "datafree.condense"), ("AuditConfig", "datafree.audit"))


def render() -> str:
    import datafree.api as df

    out = ["# Python API: `datafree.api`", "",
           "Generated from the docstrings by `python scripts/api_doc.py` (a test fails when this page is stale).", "",
           inspect.getdoc(df) or "", "", "## Calls", ""]
    for name in CALLS:
        fn = getattr(df, name)
        out += [f"### `{name}{inspect.signature(fn)}`", "", inspect.getdoc(fn) or "", ""]
    out += ["## Results", ""]
    for name in RESULTS:
        cls = getattr(df, name)
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        props = ", ".join(f"`{k}`" for k, v in vars(cls).items() if isinstance(v, property))
        out += [f"### `{name}`", "", inspect.getdoc(cls) or "", "", f"Fields: {fields}." +
                (f" Properties: {props}." if props else ""), ""]
    out += ["## Configs", "", "Each is a dataclass; every field has a default. Presets and method defaults:",
            "`df.preset(name, **overrides)` (a `SynthesisConfig`), `df.method_config(name, ipc=..., **overrides)`",
            "(a condensation config).", ""]
    for name, module in CONFIGS:
        cls = getattr(df, name)
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        out += [f"### `{name}` ({module})", "", (inspect.getdoc(cls) or "").split("\n\n")[0], "", f"Fields: {fields}.", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python scripts/api_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
