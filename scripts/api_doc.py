"""Write docs/api.md from datafree.api's docstrings, and docs/methods.md's method table from the registries.

    python scripts/api_doc.py            # rewrite both
    python scripts/api_doc.py --check    # fail if either is stale (tests/test_examples.py runs this)
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "api.md"
METHODS_DOC = DOCS / "methods.md"
CALLS = ("load_teacher", "teacher_from_module", "train_teacher", "synthesize", "distill", "condense", "evaluate_set",
         "evaluate", "audit", "quantize", "compress")
RESULTS = ("RunResult", "SetResult", "SetEvaluation", "Evaluation", "AuditResult")
CONFIGS = (("TrainConfig", "datafree.train"), ("SynthesisConfig", "datafree.synthesis"),
           ("DCGANConfig", "datafree.synthesis"), ("PixelConfig", "datafree.synthesis"),
           ("NoisyLayerConfig", "datafree.synthesis"),
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


def methods_table() -> str:
    """Every registered method, as the registries hold them."""
    from datafree.condense.methods import METHODS as CONDENSATION
    from datafree.synthesis.presets import METHODS as SYNTHESIS

    lines = ["| data-free method | what | schedule | needs BatchNorm | runs live | KD temperature |",
             "|---|---|---|---|---|---|"]
    for name, m in SYNTHESIS.items():
        lines.append(f"| `{name}` | {m.summary} | {m.config.schedule} | {'yes' if m.needs_batchnorm else 'no'} | "
                     f"{'yes' if m.runs_live else 'no'} | {m.kd_temperature:g} |")
    lines += ["", "| condensation method | what | reads the training data | needs BatchNorm | published iterations |",
              "|---|---|---|---|---|"]
    for name, m in CONDENSATION.items():
        lines.append(f"| `{name}` | {m.summary} | {'yes' if m.reads_data else 'no'} | "
                     f"{'yes' if m.needs_batchnorm else 'no'} | {m.defaults.get('iterations', '-')} |")
    return "\n".join(lines)


def with_methods(text: str) -> str:
    start, end = "<!-- methods:start -->", "<!-- methods:end -->"
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{methods_table()}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str]) -> int:
    wanted = {DOC: render(), METHODS_DOC: with_methods(METHODS_DOC.read_text())}
    stale = [path for path, text in wanted.items() if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is stale: run python scripts/api_doc.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
