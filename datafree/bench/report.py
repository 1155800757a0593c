"""Tables and figures of a suite's ``results.jsonl``: report.md, report.csv and three PNG plots.

Accuracy is the student's top-1 test accuracy after its last epoch, mean ± std over seeds, with a
95% Student-t confidence interval in report.csv; with two or more seeds, every source is also
compared with real-data KD of the same pair, paired by seed (:mod:`datafree.bench.stats`).
"of KD" divides each seed's accuracy by the real-data KD student's of the same pair and seed.
Times: *creation* is synthesis or condensation (plus MTT's expert buffer), *distillation* the
student's training epochs (test evaluation excluded), *total* their sum, and "x KD" the total
over the real-data KD student's training time of the same pair and seed.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datafree.bench.runner import FAILURES, RESULTS, SUITE_JSON, add_kd_reference, read_rows
from datafree.bench.stats import Comparison, confidence_interval, paired_comparison
from datafree.errors import DatafreeError
from datafree.io import atomic_path

KIND_ORDER = {"teacher": 0, "kd": 1, "scratch": 2, "df": 3, "cond": 4}
CSV_COLUMNS = ["pair", "pair_name", "source", "kind", "method", "ipc", "labels", "n", "seeds", "accuracy_mean",
               "accuracy_std", "fraction_of_kd", "creation_time_s", "distill_time_s", "total_time_s", "wall_time_s",
               "kd_time_s", "time_ratio_to_kd", "peak_memory_mb", "synthetic_images", "accuracy_ci95_low",
               "accuracy_ci95_high", "random_accuracy", "ior", "hlr", "ddrs"]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def summarize(rows: list[dict[str, Any]], source_order: list[str] | None = None) -> list[dict[str, Any]]:
    """One record per (pair, source), in the suite's source order, with KD references recomputed from the rows."""
    position = {s: i for i, s in enumerate(source_order or [])}
    kd = {(r["pair"], r["seed"]): r for r in rows if r.get("kind") == "kd"}
    for r in rows:
        add_kd_reference(r, kd.get((r["pair"], r["seed"])))
    pair_order = {p: i for i, p in enumerate(dict.fromkeys(r["pair"] for r in rows))}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["pair"], r["source"]), []).append(r)

    def order(key: tuple[str, str]) -> tuple:
        first = groups[key][0]
        labels = {"hard": 0, "soft": 1}.get(first.get("labels") or "", 0)
        return (pair_order[key[0]], KIND_ORDER.get(first["kind"], 9), position.get(key[1], len(position)),
                first.get("method") or "", first.get("ipc") or 0, labels)

    out = []
    for key in sorted(groups, key=order):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        accs = [r["accuracy"] for r in rs if r.get("accuracy") is not None]
        first = rs[0]
        interval = confidence_interval(accs)
        out.append({
            "pair": first["pair"], "pair_name": first.get("pair_name", first["pair"]), "source": first["source"],
            "kind": first["kind"], "method": first.get("method"), "ipc": first.get("ipc"), "labels": first.get("labels"),
            "n": len(accs), "seeds": " ".join(str(r["seed"]) for r in rs),
            "accuracy_mean": statistics.fmean(accs) if accs else None,
            "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "accuracy_ci95_low": interval[0] if interval else None,
            "accuracy_ci95_high": interval[1] if interval else None,
            "fraction_of_kd": _mean(r.get("fraction_of_kd") for r in rs),
            "creation_time_s": _mean(r.get("synthesis_time_s", 0.0) + r.get("condensation_time_s", 0.0)
                                     + r.get("buffer_time_s", 0.0) for r in rs),
            "distill_time_s": _mean(r.get("distill_time_s") for r in rs),
            "total_time_s": _mean(r.get("total_time_s") for r in rs),
            "wall_time_s": _mean(r.get("wall_time_s") for r in rs),
            "kd_time_s": _mean(r.get("kd_time_s") for r in rs),
            "time_ratio_to_kd": _mean(r.get("time_ratio_to_kd") for r in rs),
            "peak_memory_mb": max((r["peak_memory_mb"] for r in rs if r.get("peak_memory_mb") is not None), default=None),
            "synthetic_images": _mean(r.get("synthetic_images") for r in rs),
            "argv": first.get("argv") or [],
            "set_dir": first.get("set_dir"),
            "grown_dir": first.get("grown_dir"),
            **_fair(first, rs, rows),
        })
    return out


def compare(rows: list[dict[str, Any]], pair: str, a: str, b: str) -> Comparison:
    """Source ``a`` against source ``b`` on ``pair``: paired by seed, a t-test and the interval of the difference."""
    def by_seed(source: str) -> dict[int, float]:
        return {r["seed"]: r["accuracy"] for r in rows
                if r["pair"] == pair and r["source"] == source and r.get("accuracy") is not None}

    return paired_comparison(a, by_seed(a), b, by_seed(b))


def kd_comparisons(rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[tuple[str, Comparison]]:
    """Every student source with two or more seeds against real-data KD of the same pair."""
    out = []
    for g in groups:
        if g["kind"] in ("df", "cond", "scratch") and g["n"] >= 2:
            out.append((g["pair_name"], compare(rows, g["pair"], g["source"], "kd")))
    return [(name, c) for name, c in out if c.n >= 2]


def comparison_table(comparisons: list[tuple[str, Comparison]]) -> str:
    lines = ["| pair | source | seeds | difference to KD (points) | 95% CI | p (paired t-test) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, c in comparisons:
        interval = f"[{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]" if c.interval else "-"
        p = f"{c.p_value:.3g}" if c.p_value is not None else "-"
        lines.append(f"| {name} | {c.a} | {c.n} | {c.mean_difference:+.2f} | {interval} | {p} | {c.verdict} |")
    return "\n".join(lines)


def _fair(first: dict[str, Any], rs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """DD-Ranking's metrics of a condensed-set group, each seed paired with the same pair's and seed's
    random subset (same IPC and labels: IOR), hard-label set and scratch student (HLR)."""
    from datafree.condense.metrics import fair_metrics

    none = {"random_accuracy": None, "ior": None, "hlr": None, "ddrs": None}
    if first["kind"] != "cond" or first.get("method") == "random":
        return none
    by = {(r["pair"], r.get("source"), r["seed"]): r.get("accuracy") for r in rows}
    ipc, labels = first.get("ipc"), first.get("labels")
    syn, rnd, hard, real = [], [], [], []
    for r in rs:
        key = (r["pair"], r["seed"])
        control = by.get((key[0], f"cond:random:{ipc}:{labels}", key[1]))
        if r.get("accuracy") is None or control is None:
            continue
        syn.append(r["accuracy"])
        rnd.append(control)
        hard.append(by.get((key[0], f"cond:{first['method']}:{ipc}:hard", key[1])))
        real.append(by.get((key[0], "scratch", key[1])))
    if not syn:
        return none
    out = {**none, "random_accuracy": statistics.fmean(rnd), "ior": fair_metrics(syn_any=syn, random_any=rnd)["ior"]["mean"]}
    if all(h is not None for h in hard) and all(a is not None for a in real):
        per_seed = [fair_metrics(syn_any=[s], random_any=[c], syn_hard=[h], real_hard=a)
                    for s, c, h, a in zip(syn, rnd, hard, real, strict=True)]
        out["hlr"] = statistics.fmean(m["hlr"]["mean"] for m in per_seed)
        out["ddrs"] = statistics.fmean(m["ddrs"]["mean"] for m in per_seed)
    return out


def fair_table(groups: list[dict[str, Any]]) -> str:
    """Condensed sets beside their random real subset under the same labels and student recipe."""
    lines = ["| pair | source | accuracy (%) | random subset (%) | IOR (points) | HLR (points) | DDRS |",
             "|---|---|---|---|---|---|---|"]
    for g in groups:
        if g["kind"] == "cond" and g["method"] != "random":
            lines.append(f"| {g['pair_name']} | {g['source']} | {_accuracy(g)} | {_f(g['random_accuracy'], '{:.2f}')} "
                         f"| {_f(g['ior'], '{:+.2f}')} | {_f(g['hlr'], '{:.2f}')} | {_f(g['ddrs'], '{:.3f}')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- text
def _f(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _accuracy(g: dict[str, Any]) -> str:
    if g["accuracy_mean"] is None:
        return "-"
    return f"{g['accuracy_mean']:.2f} ± {g['accuracy_std']:.2f}" if g["n"] > 1 else f"{g['accuracy_mean']:.2f}"


def markdown_table(groups: list[dict[str, Any]], not_applicable: list[dict[str, str]],
                   pair_names: dict[str, str] | None = None) -> str:
    lines = ["| pair | source | n | accuracy (%) | of KD | creation (s) | distillation (s) | total (s) | × KD time "
             "| peak memory (MB) | synthetic images |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        creation = "-" if g["kind"] in ("teacher", "kd", "scratch") else _f(g["creation_time_s"])
        images = "-" if g["kind"] in ("teacher", "kd", "scratch") else _f(g["synthetic_images"])
        lines.append(f"| {g['pair_name']} | {g['source']} | {g['n']} | {_accuracy(g)} | {_f(g['fraction_of_kd'], '{:.3f}')} "
                     f"| {creation} | {_f(g['distill_time_s'])} | {_f(g['total_time_s'])} "
                     f"| {_f(g['time_ratio_to_kd'], '{:.2f}')} | {_f(g['peak_memory_mb'])} | {images} |")
    for na in not_applicable:
        lines.append(f"| {(pair_names or {}).get(na['pair'], na['pair'])} | {na['source']} | 0 | n/a: {na['reason']} "
                     "| | | | | | | |")
    return "\n".join(lines)


def write_csv(path: Path, groups: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for g in groups:
            writer.writerow({k: ("" if g.get(k) is None else g[k]) for k in CSV_COLUMNS})


def _environments(rows: list[dict[str, Any]]) -> str:
    keys = ("datafree", "torch", "python", "git_revision", "threads", "cpu_capability", "cuda_device")
    seen = {k: sorted({str((r.get("environment") or {}).get(k)) for r in rows}) for k in keys}
    return ", ".join(f"{k} {' / '.join(v)}" for k, v in seen.items())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


# ---------------------------------------------------------------- figures
def _figure(**kwargs):
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg rendering via savefig

    return Figure(layout="constrained", **kwargs)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _palette(groups: list[dict[str, Any]]) -> dict[str, Any]:
    import matplotlib

    names = list(dict.fromkeys(f"{g['kind']}:{g['method']}" for g in groups if g["kind"] in ("df", "cond")))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _legend(fig, handles: list, width_in: float) -> None:
    """Below the axes, as many columns as fit the figure's width."""
    ncols = max(1, min(len(handles), int(width_in // 2.4)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize="small", frameon=False)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _references(ax, gs: list[dict[str, Any]], with_points: bool) -> None:
    styles = {"kd": ("black", "--", "*"), "scratch": ("0.45", ":", "X"), "teacher": ("0.6", "-.", None)}
    for g in gs:
        if g["kind"] in styles and g["accuracy_mean"] is not None:
            color, ls, marker = styles[g["kind"]]
            ax.axhline(g["accuracy_mean"], color=color, ls=ls, lw=1)
            if with_points and marker and g["total_time_s"]:
                ax.errorbar(max(g["total_time_s"], 1e-2), g["accuracy_mean"], yerr=g["accuracy_std"], fmt=marker,
                            color=color, ms=11 if marker == "*" else 8, capsize=2, zorder=3)


def _reference_handles(with_points: bool) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="black", ls="--", marker="*" if with_points else None, ms=10, label="real-data KD"),
            Line2D([], [], color="0.45", ls=":", marker="X" if with_points else None, ms=7, label="scratch (real data, CE)"),
            Line2D([], [], color="0.6", ls="-.", label="teacher")]


IPC_SIZE = {1: 5, 10: 8, 50: 11}


def plot_accuracy_vs_time(groups: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.lines import Line2D

    pairs = list(dict.fromkeys(g["pair"] for g in groups))
    colors = _palette(groups)
    width = 6.2 * max(1, len(pairs))
    fig = _figure(figsize=(width, 5.6))
    axes = fig.subplots(1, max(1, len(pairs)), squeeze=False)[0]
    for ax, pair in zip(axes, pairs):
        gs = [g for g in groups if g["pair"] == pair]
        for g in gs:
            if g["kind"] not in ("df", "cond") or g["accuracy_mean"] is None or g["total_time_s"] is None:
                continue
            color = colors[f"{g['kind']}:{g['method']}"]
            marker = "o" if g["kind"] == "df" else ("^" if g["labels"] == "soft" else "v")
            ax.errorbar(max(g["total_time_s"], 1e-2), g["accuracy_mean"], yerr=g["accuracy_std"], fmt=marker, color=color,
                        ms=IPC_SIZE.get(g["ipc"], 7) if g["kind"] == "cond" else 7, capsize=2,
                        mfc="none" if g["labels"] == "hard" else color, alpha=0.9)
        _references(ax, gs, with_points=True)
        ax.set_xscale("log")
        ax.set_xlabel("total time: synthesis or condensation + student training (s, log scale)")
        ax.set_ylabel("student top-1 test accuracy (%)")
        ax.set_title(gs[0]["pair_name"])
        ax.grid(True, which="both", alpha=0.3)
    if not pairs:
        _empty(axes[0], "no finished runs")
    handles = [Line2D([], [], color=c, marker="o" if name.startswith("df:") else "s", ls="", label=name)
               for name, c in colors.items()]
    handles += [Line2D([], [], color="0.3", marker="o", ls="", label="data-free (df)"),
                Line2D([], [], color="0.3", marker="^", ls="", label="condensed, soft labels"),
                Line2D([], [], color="0.3", marker="v", mfc="none", ls="", label="condensed, hard labels (size: IPC)")]
    handles += _reference_handles(with_points=True)
    _legend(fig, handles, width)
    _save(fig, path)


def plot_condensation_ipc(groups: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.lines import Line2D

    cond = [g for g in groups if g["kind"] == "cond" and g["accuracy_mean"] is not None]
    pairs = list(dict.fromkeys(g["pair"] for g in cond))
    colors = _palette(groups)
    width = 6.2 * max(1, len(pairs))
    fig = _figure(figsize=(width, 5.2))
    axes = fig.subplots(1, max(1, len(pairs)), squeeze=False)[0]
    for ax, pair in zip(axes, pairs):
        gs = [g for g in cond if g["pair"] == pair]
        for method in dict.fromkeys(g["method"] for g in gs):
            for labels, ls, marker in (("soft", "-", "^"), ("hard", "--", "v")):
                pts = sorted((g["ipc"], g["accuracy_mean"], g["accuracy_std"]) for g in gs
                             if g["method"] == method and g["labels"] == labels)
                if pts:
                    color = colors[f"cond:{method}"]
                    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], ls=ls, marker=marker,
                                color=color, mfc="none" if labels == "hard" else color, capsize=2)
        _references(ax, [g for g in groups if g["pair"] == pair], with_points=False)
        ipcs = sorted({g["ipc"] for g in gs})
        ax.set_xscale("log")
        ax.set_xticks(ipcs, [str(i) for i in ipcs])
        ax.set_xlabel("images per class (log scale)")
        ax.set_ylabel("student top-1 test accuracy (%)")
        ax.set_title(gs[0]["pair_name"])
        ax.grid(True, which="both", alpha=0.3)
    if not pairs:
        _empty(axes[0], "no condensation runs")
    handles = [Line2D([], [], color=c, marker="s", ls="", label=name) for name, c in colors.items()
               if name.startswith("cond:")]
    handles += [Line2D([], [], color="0.3", ls="-", marker="^", label="soft labels (teacher logits)"),
                Line2D([], [], color="0.3", ls="--", marker="v", mfc="none", label="hard labels")]
    handles += _reference_handles(with_points=False)
    _legend(fig, handles, width)
    _save(fig, path)


def _first_per_class(directory: Path, per_class: int, max_classes: int = 10, scan: int = 8192):
    """Up to ``per_class`` images of each of the first ``max_classes`` classes, from the set's first ``scan`` images."""
    import dataclasses

    import torch

    from datafree.data.transfer import TransferSet

    ts = TransferSet(directory, verify=False)
    k = min(ts.spec.num_classes, max_classes)
    xs, ys = [], []
    counts = torch.zeros(k, dtype=torch.long)
    for start in range(0, min(len(ts), scan), 1024):
        x, y, *_ = ts.get_batch(torch.arange(start, min(start + 1024, len(ts), scan)))
        for c in range(k):
            take = x[y == c][: per_class - int(counts[c])]
            counts[c] += len(take)
            xs.append(take)
            ys.append(torch.full((len(take),), c))
        if bool((counts >= per_class).all()):
            break
    spec = ts.spec if k == ts.spec.num_classes else dataclasses.replace(ts.spec, num_classes=k, class_names=())
    return torch.cat(xs), torch.cat(ys), spec


def set_path(recorded: str, out_dir: Path, marker: str = "manifest.json") -> Path:
    """A directory a row records (a stored set; with another ``marker`` file, a run), found wherever the report runs.

    The bench records paths as it was given them: relative to the directory the suite ran from (``bash
    scripts/main.sh`` runs from the repository), which is an ancestor of ``out_dir``. Those ancestors are tried
    first, nearest first, then the working directory, so a report made from elsewhere still finds the sets.
    """
    path = Path(recorded)
    if path.is_absolute():
        return path
    for base in Path(out_dir).resolve().parents:
        if (base / path / marker).exists():
            return base / path
    return path


def synthetic_grid(groups: list[dict[str, Any]], out_dir: Path, path: Path, per_class: int = 4) -> list[str]:
    """One class grid per stored set (datafree.viz) under ``grids/``, composed into one figure; returns its labels."""
    import matplotlib.image as mpimg

    from datafree.viz import save_class_grid

    sets: dict[str, Path] = {}
    for g in groups:
        if g.get("set_dir") and g["kind"] in ("df", "cond"):
            label = f"{g['pair']} {g['kind']}:{g['method']}" + (f":{g['ipc']}" if g["kind"] == "cond" else "")
            sets.setdefault(label, set_path(g["set_dir"], out_dir))
        if g.get("grown_dir"):  # the batches a grown source made against its student: images it learnt from too
            sets.setdefault(f"{g['pair']} {g['source']}: grown", set_path(g["grown_dir"], out_dir))
    tiles = []
    for label, directory in sets.items():
        if not (directory / "manifest.json").is_file():
            continue
        x, y, spec = _first_per_class(directory, per_class)
        if len(x) == 0:
            continue
        tile = out_dir / "grids" / (label.replace(" ", "_").replace(":", "-") + ".png")
        tile.parent.mkdir(parents=True, exist_ok=True)
        save_class_grid(tile, x, y, spec, per_class=per_class)
        tiles.append((label, tile))
    ncols = min(6, max(1, len(tiles)))
    nrows = max(1, math.ceil(len(tiles) / ncols))
    fig = _figure(figsize=(2.4 * ncols, 3.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (label, tile) in zip(axes, tiles):
        ax.imshow(mpimg.imread(tile), interpolation="nearest")
        ax.set_title(label, fontsize="small")
    if not tiles:
        _empty(axes[0], "no stored synthetic or condensed sets\n(live data-free methods keep none)")
    else:
        fig.suptitle(f"first {per_class} images per class (one row per class) of each stored set; 'grown': the "
                     "batches made against the student as it learnt", fontsize="medium")
    _save(fig, path)
    return [label for label, _ in tiles]


# ---------------------------------------------------------------- privacy
def privacy_table(rows: list[dict[str, Any]], out_dir: Path) -> str:
    """One line per audited data-free set (``datafree bench audit``); empty when none was audited."""
    from datafree.audit import paired_difference
    from datafree.bench.audit import audit_dir, audited_rows, read_audit

    lines = []
    for row, _ in audited_rows(rows):
        audit = read_audit(audit_dir(out_dir, row))
        if audit is None:
            continue
        near = audit["nearest_neighbour"]
        closer = " / ".join(f"{100 * near[space]['fraction_below_baseline_q05']:.1f}%" for space in near)
        students = {s["student"]: s for s in (audit.get("membership_inference") or {}).get("students", [])}
        auc = [students.get(k) for k in ("data-free student", "real-data KD student")]
        close = max(near[space]["fraction_below_baseline_q05"] for space in near) <= 0.01
        if auc[0] is None or auc[1] is None:  # nothing to compare the attack with: the distances alone
            private = f"{'yes' if close else 'no'} (images only)"
        else:
            private = "yes" if close and auc[0]["auc_loss"] <= auc[1]["auc_loss"] else "no"
        cells = [f"{a['auc_loss']:.3f} / {a['auc_calibrated']:.3f}" if a else "-" for a in auc]
        if auc[1] is not None and (difference := paired_difference(auc[1], "loss")):  # KD's AUC minus the data-free one's
            cells[1] += f" ({difference})"
        lines.append(f"| {row.get('pair_name', row['pair'])} | {row['source']} | {row['seed']} "
                     f"| {audit['protocol']['synthetic_count']} | {closer} ({' / '.join(near)}) | "
                     + " | ".join(cells) + f" | {private} |")
    if not lines:
        return ""
    return "\n".join([
        "| pair | source | seed | images | closer to a training image than the test split's 5% nearest | membership "
        "AUC, data-free student (loss / calibrated) | real-data KD student (its loss AUC minus the data-free "
        "student's, 95% paired bootstrap interval) | private |",
        "|---|---|---|---|---|---|---|---|", *lines])


# ---------------------------------------------------------------- the report
def _time_line(rows: list[dict[str, Any]], pair_names: dict[str, str]) -> str:
    """How long the suite took: the wall time of each pair's runs (steps reused from earlier runs cost ~0)."""
    per_pair: dict[str, float] = {}
    for r in rows:
        per_pair[r["pair"]] = per_pair.get(r["pair"], 0.0) + float(r.get("bench_wall_time_s") or 0.0)
    parts = [f"{pair_names.get(k, k)} {v / 60:.0f} min" for k, v in per_pair.items()]
    return (f"Suite time (wall time of each pair's runs, summed over its {len(rows)} rows): {'; '.join(parts)}; "
            f"{sum(per_pair.values()) / 60:.0f} min in all, or the longest pair's when pairs run in parallel "
            "('bench run --pairs').")


def report(out_dir: str | Path) -> str:
    """Write report.md, report.csv, accuracy_vs_time.png, condensation_ipc.png and synthetic_grid.png; return the markdown."""
    out = Path(out_dir)
    rows = read_rows(out)
    if not rows:
        raise DatafreeError(f"no finished runs in {out} (no {RESULTS}); run 'datafree bench run SUITE --out {out}' first")
    meta = json.loads((out / SUITE_JSON).read_text()) if (out / SUITE_JSON).is_file() else {}
    suite = meta.get("suite", {})
    groups = summarize(rows, suite.get("sources"))
    done = {r["run_id"] for r in rows}
    failures = {f["run_id"]: f for f in _read_jsonl(out / FAILURES) if f.get("run_id") not in done}
    write_csv(out / "report.csv", groups)
    plot_accuracy_vs_time(groups, out / "accuracy_vs_time.png")
    plot_condensation_ipc(groups, out / "condensation_ipc.png")
    shown = synthetic_grid(groups, out, out / "synthetic_grid.png")

    suites = sorted({r["suite"] for r in rows})
    pair_names = {p["key"]: p["name"] for p in suite.get("pairs", [])}
    lines = [f"# datafree bench: {', '.join(suites)} ({', '.join(sorted({r['dataset'] for r in rows}))})", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    lines += [
        "Top-1 test accuracy of the student after its last epoch (never best-on-test), mean ± std over seeds; n = "
        "seeds. *of KD*: accuracy / the real-data KD student's of the same pair and seed. *creation*: synthesis or "
        "condensation time (plus MTT's expert buffer; a condensed set is shared by its hard- and soft-label students, "
        "so both carry its time; a set made in parts by several workers at once carries the sum of their times); "
        "live data-free methods synthesize inside distillation. *distillation*: the student's "
        "training epochs, test evaluation excluded. *total* = creation + distillation; *× KD time* = total / the "
        "real-data KD student's training time. Peak memory: CUDA peak allocation, else peak RSS of the step "
        "(reset before each step).", "",
        markdown_table(groups, meta.get("not_applicable", []), pair_names), "",
    ]
    comparisons = kd_comparisons(rows, groups)
    if comparisons:
        lines += ["Against real-data KD, paired by seed (the same seed shares the student's initialisation and "
                  "batch order): the mean per-seed difference, its 95% Student-t interval and a two-sided paired "
                  "t-test (scipy.stats). Few seeds make wide intervals.", "", comparison_table(comparisons), ""]
    if any(g["kind"] == "cond" and g["method"] != "random" for g in groups):
        lines += ["Fair metrics (DD-Ranking, 2025), per seed then averaged: *random subset* is `cond:random` at the "
                  "same IPC with the same labels and student recipe; IOR = accuracy - random subset's; HLR = the "
                  "scratch student's (real data, hard labels) - the set's under hard labels; DDRS = (e^a - e^-1) / "
                  "(e - e^-1), a = (IOR - HLR) / 200. '-': a control run is missing.", "", fair_table(groups), ""]
    privacy = privacy_table(rows, out)
    if privacy:
        lines += ["Privacy (`datafree bench audit`): each stored data-free set's nearest training image against the "
                  "test split's (the fraction of its images closer to a training image than 95% of real test images "
                  "are; real held-out images give 5%), and a membership-inference attack (training images against as "
                  "many test images, 2,000 each; AUC 0.5 = no signal) on the data-free student and on the real-data KD "
                  "student of the same seed. *private*: at most 1% closer in every space, and the data-free "
                  "student's loss AUC no higher than the KD student's. Details in each run's `audit/audit.json`.",
                  "", privacy, ""]
    lines += [_time_line(rows, pair_names), ""]
    if failures:
        lines += ["Failed runs (no result; rerun the suite to retry):", ""]
        lines += [f"- `{rid}`: {f.get('error', '')}" for rid, f in failures.items()] + [""]
    lines += ["![accuracy against time](accuracy_vs_time.png)", "", "![accuracy against images per class]"
              "(condensation_ipc.png)", "", "![synthetic images](synthetic_grid.png)", "",
              f"Stored sets shown: {', '.join(shown) if shown else 'none'}.", "",
              f"Environment: {_environments(rows)}.", "", "Commands (first seed of each source):", "", "```"]
    for g in groups:
        for argv in g["argv"]:
            if argv:
                lines.append(shlex.join(argv))
    lines += ["```", ""]
    md = "\n".join(lines)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(md)
    return md
