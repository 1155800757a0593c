"""Privacy audit of a transfer set: what does a synthetic or condensed set reveal about the training data?

Two questions a data owner asks before releasing a transfer set or a student trained on one:

* **Memorisation**: is any synthetic image (nearly) a copy of a training image? Each synthetic
  image's distance to its nearest training image is compared with how close a *fresh* real image
  (from the test split, never trained on) usually gets to the training set. A synthetic image
  closer than the test baseline's 5th percentile is suspicious. Distances are L2 in pixel space
  ([0, 1] pixels) and, with a teacher, in its penultimate-feature space.
* **Membership inference**: can an attacker tell a student's training images from unseen ones?
  The loss-threshold attack (Yeom et al., 2018) and a difficulty-calibrated variant (Watson et al.,
  2022) are scored by their exact ROC AUC (0.5 = no leakage).

The training set is streamed once, in chunks; nearest neighbours are kept as running minima over
chunked ``torch.cdist`` blocks, so memory stays bounded whatever the set sizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import datafree
from datafree.data.loader import iterate_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import embed_batches, penultimate_module
from datafree.io import write_json
from datafree.viz import save_images

FORMAT = "datafree-audit/1"
REPORT = "audit.json"
PAIRS_PNG = "closest_pairs.png"
PIXEL, FEATURE = "pixel", "teacher_feature"
CALIBRATION = {
    "reference": "difficulty calibration (Watson et al. 2022): score = -(loss_target - loss_reference), "
                 "the reference model given by --reference-student",
    "class_standardised": "no reference model: per-class loss standardisation, score = -(loss - mean_c) / std_c "
                          "with the class mean and std of the target's loss over the non-member pool",
}


@dataclass
class AuditConfig:
    """The protocol; recorded in audit.json so a reader knows exactly what was measured."""

    baseline_count: int = 1000
    mia_count: int = 2000
    closest: int = 16
    seed: int = 0
    query_chunk: int = 1024
    train_chunk: int = 4096
    batch_size: int = 512
    device: str = "cpu"
    # bootstrap resamples of the members and non-members for each AUC's 95% interval and for the paired difference of
    # every student's AUC from the first student's (same resamples for all: the difference is paired); 0 = none
    resamples: int = 1000

    def __post_init__(self) -> None:  # one check for every face (CLI, library, benchmarks), before any work
        if min(self.baseline_count, self.mia_count, self.closest) < 1:
            raise DatafreeError("--baseline-count, --mia-count and --closest must be at least 1")
        if self.resamples < 0:
            raise DatafreeError("--resamples must be >= 0 (0: no intervals)")


# ---------------------------------------------------------------- nearest neighbours
class RunningNearest:
    """Nearest key of every query, with keys arriving in chunks (the training set is streamed once).

    ``torch.cdist`` on blocks of ``query_chunk x len(chunk)`` bounds memory. cdist's fast matmul
    form is inexact for near-identical vectors, so the chosen pair's distance is recomputed
    directly: an exact copy of a training image gets distance 0, not a rounding error.
    """

    def __init__(self, queries: torch.Tensor, query_chunk: int = 1024) -> None:
        self.queries = queries.flatten(1).float()
        self.query_chunk = query_chunk
        self.distance = torch.full((len(queries),), math.inf, device=queries.device)
        self.index = torch.full((len(queries),), -1, dtype=torch.long, device=queries.device)
        self.seen = 0

    def update(self, keys: torch.Tensor) -> None:
        """Fold in the next chunk of keys; their global indices continue from the previous chunks."""
        keys = keys.flatten(1).float().to(self.queries.device)
        for start in range(0, len(self.queries), self.query_chunk):
            q = self.queries[start:start + self.query_chunk]
            arg = torch.cdist(q, keys).argmin(1)
            exact = (q - keys[arg]).norm(dim=1)
            block = slice(start, start + len(q))
            better = exact < self.distance[block]
            self.distance[block] = torch.where(better, exact, self.distance[block])
            self.index[block] = torch.where(better, arg + self.seen, self.index[block])
        self.seen += len(keys)


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, query_chunk: int = 1024,
                       key_chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance to, and index of, the nearest row of ``keys`` for every row of ``queries``."""
    nearest = RunningNearest(queries, query_chunk)
    for start in range(0, len(keys), key_chunk):
        nearest.update(keys[start:start + key_chunk])
    return nearest.distance, nearest.index


def pixels(images: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Normalised model inputs back to flat [0, 1] pixels: distances a person can interpret."""
    return spec.denormalize(images).flatten(1)


def embed(images: torch.Tensor, spec: DataSpec, teacher: nn.Module | None, batch_size: int,
          device: torch.device) -> dict[str, torch.Tensor]:
    """One image batch in every audited space (pixels always, teacher features with a teacher)."""
    spaces = {PIXEL: pixels(images, spec).to(device)}
    if teacher is not None:
        spaces[FEATURE] = embed_batches(teacher, images, batch_size)
    return spaces


def train_nearest(train: Dataset, spec: DataSpec, queries: dict[str, dict[str, torch.Tensor]],
                  teacher: nn.Module | None, config: AuditConfig) -> dict[str, dict[str, RunningNearest]]:
    """Nearest training image of every query set in every space, streaming the training set once."""
    device = torch.device(config.device)
    nearest = {name: {space: RunningNearest(q.to(device), config.query_chunk) for space, q in sets.items()}
               for name, sets in queries.items()}
    for batch in iterate_batches(train, config.train_chunk):
        keys = embed(batch[0], spec, teacher, config.batch_size, device)
        for sets in nearest.values():
            for space, running in sets.items():
                running.update(keys[space])
    return nearest


# ---------------------------------------------------------------- memorisation summary
def quantiles(distance: torch.Tensor) -> dict[str, float]:
    """min, 5th percentile and median: the low tail is where copies show up."""
    q = torch.quantile(distance.double().cpu(), torch.tensor([0.0, 0.05, 0.5], dtype=torch.float64))
    return {"min": q[0].item(), "q05": q[1].item(), "median": q[2].item()}


def memorisation(synthetic: torch.Tensor, baseline: torch.Tensor) -> dict[str, Any]:
    """Synthetic NN distances against the real-test baseline; fractions closer than its q05 / median."""
    base = quantiles(baseline)
    synthetic = synthetic.cpu()
    return {
        "synthetic": quantiles(synthetic),
        "baseline": base,
        "fraction_below_baseline_q05": (synthetic < base["q05"]).double().mean().item(),
        "fraction_below_baseline_median": (synthetic < base["median"]).double().mean().item(),
    }


def closest_pairs(distance: torch.Tensor, index: torch.Tensor, k: int) -> list[dict[str, Any]]:
    """The ``k`` synthetic images nearest to a training image, nearest first."""
    distance, index = distance.cpu(), index.cpu()
    order = distance.argsort()[:k]
    return [{"synthetic_index": int(i), "train_index": int(index[i]), "distance": float(distance[i])} for i in order]


def pair_grid(synthetic: torch.Tensor, train: torch.Tensor, spec: DataSpec, cols: int = 8) -> torch.Tensor:
    """Rows alternate synthetic images and, right below each, its nearest training image."""
    k = len(synthetic)
    rows = -(-k // cols)
    white = spec.normalize(torch.ones(rows * cols - k, *spec.shape))
    syn = torch.cat([synthetic.cpu(), white]).view(rows, 1, cols, *spec.shape)
    real = torch.cat([train.cpu(), white]).view(rows, 1, cols, *spec.shape)
    return torch.cat([syn, real], 1).reshape(-1, *spec.shape)


def save_closest_pairs(path: str | Path, synthetic: torch.Tensor, train: torch.Tensor, spec: DataSpec,
                       cols: int = 8) -> None:
    """``closest_pairs.png``: lets a person judge whether the closest pairs are copies."""
    cols = max(1, min(cols, len(synthetic)))
    save_images(path, pair_grid(synthetic, train, spec, cols), spec, nrow=cols)


# ---------------------------------------------------------------- membership inference
def roc_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """Exact ROC AUC, P(member score > non-member score) + P(tie) / 2, via Mann-Whitney U on average ranks."""
    n1, n0 = len(member_scores), len(nonmember_scores)
    if n1 == 0 or n0 == 0:
        raise DatafreeError("AUC needs at least one member and one non-member")
    scores = torch.cat([member_scores.flatten(), nonmember_scores.flatten()]).double().cpu()
    values, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of each distinct value's last copy (1-based)
    average_rank = last - (counts.double() - 1) / 2
    u = average_rank[inverse[:n1]].sum() - n1 * (n1 + 1) / 2
    return (u / (n1 * n0)).item()


@torch.no_grad()
def per_sample_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Cross-entropy of the true label for every image: the attack's raw signal."""
    device = next(model.parameters()).device
    model.eval()
    losses = [F.cross_entropy(model(images[s:s + batch_size].to(device)).float(), labels[s:s + batch_size].to(device),
                              reduction="none") for s in range(0, len(images), batch_size)]
    return torch.cat(losses).cpu()


def class_standardise(loss: torch.Tensor, labels: torch.Tensor, pool_loss: torch.Tensor, pool_labels: torch.Tensor,
                      num_classes: int) -> torch.Tensor:
    """(loss - class mean) / class std, the statistics taken over ``pool``: removes per-class difficulty.

    A class with fewer than two pool samples, or no spread, falls back to the pool's overall std
    (and mean, when it has no sample at all).
    """
    count = torch.bincount(pool_labels, minlength=num_classes).double()
    total = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, pool_labels, pool_loss.double())
    squares = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, pool_labels, pool_loss.double() ** 2)
    mean = torch.where(count > 0, total / count.clamp(min=1), pool_loss.double().mean())
    var = (squares / count.clamp(min=1) - mean ** 2).clamp(min=0)
    overall = pool_loss.double().std(unbiased=False).clamp(min=1e-12)
    std = torch.where((count > 1) & (var > 1e-24), var.sqrt(), overall)
    return (loss.double() - mean[labels]) / std[labels]


def attack_scores(target_loss: torch.Tensor, labels: torch.Tensor, reference_loss: torch.Tensor | None,
                  nonmember: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss-attack scores and calibrated scores (higher = more likely a member) for all candidates."""
    loss_score = -target_loss.double()
    if reference_loss is not None:
        return loss_score, -(target_loss.double() - reference_loss.double())
    calibrated = class_standardise(target_loss, labels, target_loss[nonmember], labels[nonmember], num_classes)
    return loss_score, -calibrated


def membership_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, member: torch.Tensor,
                      num_classes: int, reference_loss: torch.Tensor | None = None, batch_size: int = 512
                      ) -> dict[str, torch.Tensor]:
    """Both attacks' scores of one target model for every candidate, by attack name (``loss``, ``calibrated``)."""
    loss = per_sample_loss(model, images, labels, batch_size)
    loss_score, calibrated = attack_scores(loss, labels, reference_loss, ~member, num_classes)
    return {"loss": loss_score, "calibrated": calibrated}


def membership_auc(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, member: torch.Tensor,
                   num_classes: int, reference_loss: torch.Tensor | None = None, batch_size: int = 512) -> dict[str, float]:
    """``auc_loss`` and ``auc_calibrated`` of one target model on members (``member`` True) vs non-members."""
    return attack_aucs(membership_scores(model, images, labels, member, num_classes, reference_loss, batch_size),
                       member)


def attack_aucs(scores: dict[str, torch.Tensor], member: torch.Tensor) -> dict[str, float]:
    """``auc_<attack>`` for each attack's scores (``membership_scores``) of one target model."""
    return {f"auc_{k}": roc_auc(v[member], v[~member]) for k, v in scores.items()}


def bootstrap_auc(scores: torch.Tensor, member: torch.Tensor, resamples: int, generator: torch.Generator,
                  chunk: int = 1024) -> torch.Tensor:
    """AUCs of each row of ``scores`` (models x candidates) on ``resamples`` bootstrap draws: members and non-members
    each drawn with replacement, the same draws for every row, so rows' differences are paired. Returns
    (rows, resamples).

    Vectorised: a draw is a vector of counts, so its AUC is ``c_in @ H @ c_out / (n_in n_out)`` with ``H`` the
    pairwise member-above-non-member indicator (ties 0.5), built a chunk of members at a time.
    """
    n_in, n_out = int(member.sum()), int((~member).sum())
    if n_in == 0 or n_out == 0:
        raise DatafreeError("AUC needs at least one member and one non-member")

    def counts(n: int) -> torch.Tensor:  # float32 is exact here: small integers, and sums of halves below 2 ** 24
        draws = torch.randint(n, (resamples, n), generator=generator)
        return torch.zeros(resamples, n).scatter_add_(1, draws, torch.ones(resamples, n))

    c_in, c_out = counts(n_in), counts(n_out)
    result = torch.empty(len(scores), resamples, dtype=torch.float64)
    for row, s in enumerate(scores.double().cpu()):
        inside, outside = s[member.cpu()], s[~member.cpu()]
        acc = torch.zeros(resamples, n_out)
        for start in range(0, n_in, chunk):
            block = inside[start:start + chunk, None]
            above = (block > outside).float() + 0.5 * (block == outside).float()
            acc += c_in[:, start:start + chunk] @ above
        result[row] = (acc.double() * c_out.double()).sum(1) / (n_in * n_out)
    return result


def interval(values: torch.Tensor) -> list[float]:
    """The central 95% of a bootstrap distribution (percentile interval)."""
    low, high = torch.quantile(values.double(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [low, high]


# ---------------------------------------------------------------- data helpers
def draw(n: int, k: int, seed: int, stream: int) -> torch.Tensor:
    """``min(k, n)`` distinct indices of ``range(n)``; each use has its own stream of one seed."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + stream)
    return torch.randperm(n, generator=generator)[:min(k, n)].sort().values


def gather(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images and labels at ``index`` (one gather for in-memory datasets)."""
    if hasattr(dataset, "get_batch"):
        images, labels = dataset.get_batch(index)[:2]
        return images, labels
    items = [dataset[int(i)] for i in index]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def load_all(dataset: Dataset, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image and label of a (transfer) set, held in memory as the queries."""
    batches = [b[:2] for b in iterate_batches(dataset, batch_size)]
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """The audit directory; a non-empty one is refused unless ``overwrite``, so no audit is clobbered."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatafreeError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatafreeError(f"{out} is not empty; choose another --out (or pass --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------- the audit
def audit_memorisation(synthetic: torch.Tensor, train: Dataset, test: Dataset, spec: DataSpec,
                       teacher: nn.Module | None, config: AuditConfig) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Nearest-neighbour report per space, plus the pixel-space distances and indices (for the PNG)."""
    device = torch.device(config.device)
    baseline_index = draw(len(test), config.baseline_count, config.seed, stream=0)
    baseline = gather(test, baseline_index)[0]
    queries = {"synthetic": embed(synthetic, spec, teacher, config.batch_size, device),
               "baseline": embed(baseline, spec, teacher, config.batch_size, device)}
    nearest = train_nearest(train, spec, queries, teacher, config)
    report = {}
    for space in queries["synthetic"]:
        syn, base = nearest["synthetic"][space], nearest["baseline"][space]
        report[space] = {**memorisation(syn.distance, base.distance),
                         "closest": closest_pairs(syn.distance, syn.index, config.closest)}
    pixel = nearest["synthetic"][PIXEL]
    return report, pixel.distance.cpu(), pixel.index.cpu()


def membership_candidates(train: Dataset, test: Dataset, config: AuditConfig
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The membership attack's candidates: ``config.mia_count`` seeded training images (members), then as many seeded
    test images (non-members); returns images, labels and the member mask. One draw for the audit and any analysis
    of its students."""
    members = draw(len(train), config.mia_count, config.seed, stream=1)
    nonmembers = draw(len(test), len(members), config.seed, stream=2)
    members = members[:len(nonmembers)]
    x_in, y_in = gather(train, members)
    x_out, y_out = gather(test, nonmembers)
    images, labels = torch.cat([x_in, x_out]), torch.cat([y_in, y_out])
    return images, labels, torch.arange(len(labels)) < len(members)


def audit_membership(students: list[tuple[str, nn.Module]], reference: nn.Module | None, train: Dataset,
                     test: Dataset, spec: DataSpec, config: AuditConfig) -> dict[str, Any]:
    """Loss and calibrated attack AUCs plus test accuracy of each student, on one member/non-member draw."""
    from datafree.train import evaluate

    images, labels, member = membership_candidates(train, test, config)
    reference_loss = None if reference is None else per_sample_loss(reference, images, labels, config.batch_size)
    results, scores = [], []
    for label, model in students:
        scored = membership_scores(model, images, labels, member, spec.num_classes, reference_loss, config.batch_size)
        accuracy = evaluate(model, test, config.batch_size, config.device)["accuracy"]
        results.append({"student": label, "test_accuracy": accuracy, **attack_aucs(scored, member)})
        scores.append(scored)
    if config.resamples > 0 and scores:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + 3)
        for attack in ("loss", "calibrated"):
            aucs = bootstrap_auc(torch.stack([s[attack] for s in scores]), member, config.resamples, generator)
            for i, r in enumerate(results):
                r[f"auc_{attack}_95"] = interval(aucs[i])
                if i > 0:  # paired: the same resampled members and non-members for both students
                    r[f"auc_{attack}_minus_first"] = r[f"auc_{attack}"] - results[0][f"auc_{attack}"]
                    r[f"auc_{attack}_minus_first_95"] = interval(aucs[i] - aucs[0])
    return {"calibration": "reference" if reference is not None else "class_standardised",
            "calibration_method": CALIBRATION["reference" if reference is not None else "class_standardised"],
            "members": int(member.sum()), "nonmembers": int((~member).sum()), "resamples": config.resamples,
            "students": results}


def run_audit(transfer: Dataset, manifest: dict[str, Any], train: Dataset, test: Dataset, spec: DataSpec, out: Path,
              *, teacher: nn.Module | None = None, students: Sequence[tuple[str, nn.Module]] = (),
              reference: nn.Module | None = None, config: AuditConfig | None = None,
              protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every check, write ``audit.json`` and ``closest_pairs.png`` into ``out``; return the report."""
    config = config or AuditConfig()
    device = torch.device(config.device)
    start = time.perf_counter()
    teacher = teacher.to(device) if teacher is not None else None
    synthetic = load_all(transfer)[0]
    spaces, distance, index = audit_memorisation(synthetic, train, test, spec, teacher, config)
    top = distance.argsort()[:config.closest]
    save_closest_pairs(out / PAIRS_PNG, synthetic[top], gather(train, index[top])[0], spec)
    report = {
        "format": FORMAT, "datafree_version": datafree.__version__,
        "transfer": {key: manifest.get(key) for key in ("kind", "method", "count")},
        "protocol": {**(protocol or {}), **asdict(config), "spaces": list(spaces), "train_count": len(train),
                     "feature_layer": None if teacher is None else f"input of {penultimate_module(teacher)}",
                     "test_count": len(test), "synthetic_count": len(synthetic),
                     "baseline_used": min(config.baseline_count, len(test)),
                     "baseline_source": "random test images (never trained on)",
                     "distance": "L2; pixel space = denormalised [0, 1] pixels, teacher_feature = input of the "
                                 "teacher's last Linear layer",
                     "fractions": "share of synthetic images strictly closer to a training image than the "
                                  "baseline's 5th percentile / median"},
        "nearest_neighbour": spaces,
        "closest_pairs_png": PAIRS_PNG,
    }
    if students:
        students = [(label, model.to(device)) for label, model in students]
        reference = reference.to(device) if reference is not None else None
        report["membership_inference"] = audit_membership(students, reference, train, test, spec, config)
    report["time_s"] = time.perf_counter() - start
    write_json(out / REPORT, report)
    return report


def difference_text(value: float, interval: tuple[float, float] | None = None, digits: int = 3) -> str:
    """A signed difference with its 95% interval where there is one, e.g. ``+0.003 [-0.010, +0.015]``."""
    text = f"{value:+.{digits}f}"
    return text + (f" [{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]" if interval is not None else "")


def paired_difference(student: dict[str, Any], attack: str, digits: int = 3) -> str:
    """A later student's AUC minus the first's with its paired 95% interval, e.g. ``+0.003 [-0.010, +0.015]``;
    empty for the first student and for audits made before the intervals were."""
    if f"auc_{attack}_minus_first_95" not in student:
        return ""
    low, high = student[f"auc_{attack}_minus_first_95"]
    return difference_text(student[f"auc_{attack}_minus_first"], (low, high), digits)


def _auc_text(student: dict[str, Any], attack: str) -> str:
    """One attack's AUC, with its interval and its paired difference from the first student where measured."""
    name = "AUC loss" if attack == "loss" else "calibrated"
    text = f"{name} {student[f'auc_{attack}']:.3f}"
    if f"auc_{attack}_95" in student:
        text += " [{:.3f}, {:.3f}]".format(*student[f"auc_{attack}_95"])
    if difference := paired_difference(student, attack, digits=4):
        text += f" (vs first {difference})"
    return text


def summary(report: dict[str, Any], out: Path) -> str:
    """A few human-readable lines: the numbers a data owner reads first."""
    t = report["transfer"]
    p = report["protocol"]
    lines = [f"audit of a {t['kind']} transfer set ({t['method']}, {p['synthetic_count']} images) against "
             f"{p.get('dataset', 'the')} train ({p['train_count']} images), baseline {p['baseline_used']} "
             "test images:"]
    for space, r in report["nearest_neighbour"].items():
        s, b = r["synthetic"], r["baseline"]
        lines.append(f"  {space} NN distance: synthetic min {s['min']:.3g} / 5% {s['q05']:.3g} / median {s['median']:.3g}"
                     f", test baseline 5% {b['q05']:.3g} / median {b['median']:.3g}; closer than baseline 5%: "
                     f"{100 * r['fraction_below_baseline_q05']:.1f}%, than its median: "
                     f"{100 * r['fraction_below_baseline_median']:.1f}%")
    mia = report.get("membership_inference")
    if mia:
        lines.append(f"  membership inference ({mia['members']} members vs {mia['nonmembers']} non-members; calibrated "
                     f"= {mia['calibration'].replace('_', '-')}):")
        lines += [f"    {s['student']}: test accuracy {s['test_accuracy']:.2f}%, "
                  + ", ".join(_auc_text(s, attack) for attack in ("loss", "calibrated")) for s in mia["students"]]
        if len(mia["students"]) > 1 and "auc_loss_minus_first_95" in mia["students"][1]:
            lines.append(f"    (95% intervals from {mia['resamples']} paired bootstrap resamples; 'vs first' is the AUC "
                         f"minus {mia['students'][0]['student']}'s on the same resamples)")
    lines.append(f"  -> {out / REPORT}, {out / PAIRS_PNG}")
    return "\n".join(lines)
