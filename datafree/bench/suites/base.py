"""The data types of a suite (pairs, recipes, sources) and the source grammar.

A source is a string:

* ``scratch``: the student trained on the real training set with cross-entropy alone;
* ``kd``: the student distilled from the teacher on the real training set (the reference);
* ``df:<preset>``: a registered data-free method (``datafree.synthesis.presets.METHODS``); methods
  with an adversarial term or an online generator run live (``datafree distill --method``), the
  others synthesize a transfer set first (``datafree synthesize``) and distill from it;
* ``df:<stored>+<live>``: ADI's two stages: a transfer set synthesized with the ``stored`` preset,
  then a student distilled from it while a pool or meta ``live`` preset grows it with batches made
  against that student (``datafree distill --transfer SET --method LIVE``);
* ``cond:<method>:<ipc>:<hard|soft>``: a registered condensation method (``datafree condense``) at
  ``ipc`` images per class; the student is distilled from the condensed set with hard labels
  (alpha 1) or the teacher's soft labels (alpha 0, T 4).

Recipes give training settings in the command line's flag vocabulary (``("--epochs", "20")``), so
every planned run is also a command a reader can copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from datafree.condense.methods import METHODS as CONDENSATION
from datafree.errors import DatafreeError
from datafree.synthesis.presets import METHODS as SYNTHESIS

DF_PRESETS_ALL = tuple(SYNTHESIS)  # every registered method, in registration order
COND_METHODS_ALL = tuple(CONDENSATION)
COND_IPCS = (1, 10, 50)

# the Fashion-MNIST students on 2 CPU cores: what Recipes() runs unless a suite says otherwise
FMNIST_DF_LIVE_STUDENT = ("--epochs", "10", "--steps-per-epoch", "200", "--batch-size", "128", "--alpha", "0")
FMNIST_DF_COUNT = 6400
# the stored-set student without its length (benchmarks/zskd_recipes sets that per set size); why lr 0.01:
# docs/benchmarks.md, "Recipe notes"
FMNIST_DF_STORED_TRAIN = ("--batch-size", "128", "--alpha", "0", "--lr", "0.01", "--augment", "crop-flip",
                          "--clip-grad-norm", "5", "--temperature", "4")
# df:<stored>+<live>: the live student's length and the stored-set student's augmentation and KD settings
FMNIST_DF_GROWN_STUDENT = ("--epochs", "20", "--steps-per-epoch", "200", "--eval-every", "5", *FMNIST_DF_STORED_TRAIN)
FMNIST_DF_STORED_STUDENT = ("--epochs", "640", "--eval-every", "64", *FMNIST_DF_STORED_TRAIN)  # test 10 times
# MTT's expert trajectories, CPU-sized (the paper: 100 experts x 50 epochs)
FMNIST_BUFFER = ("--experts", "2", "--epochs", "10")
# the student on a condensed set: the condensation evaluation protocol's optimiser (SGD 0.01, batch
# 256, 300 epochs without augmentation, lr decayed in steps) applied to the pair's student
FMNIST_COND_STUDENT = ("--epochs", "300", "--batch-size", "256", "--lr", "0.01", "--schedule", "step")


def merge_args(base: tuple[str, ...], override: tuple[str, ...]) -> list[str]:
    """``base`` flags with those in ``override`` replaced or added: each flag takes one value, or none when the next
    word is another flag (a switch such as ``--balance-classes``)."""
    def flags(args: tuple[str, ...]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        i = 0
        while i < len(args):
            switch = i + 1 == len(args) or args[i + 1].startswith("--")
            out[args[i]] = None if switch else args[i + 1]
            i += 1 if switch else 2
        return out

    merged = {**flags(base), **flags(override)}
    return [a for flag, value in merged.items() for a in ((flag,) if value is None else (flag, value))]



# ---------------------------------------------------------------- the data types
@dataclass(frozen=True)
class PairSpec:
    """A teacher/student pair and the recipes that train them (CLI flag/value pairs)."""

    key: str  # directory name, e.g. "lenet"
    name: str  # for reports
    teacher: str
    student: str
    teacher_args: tuple[str, ...]
    student_args: tuple[str, ...]  # shared by the scratch and the KD student
    kd_args: tuple[str, ...] = ("--alpha", "0.1", "--temperature", "4")  # may override student_args
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    student_kwargs: dict[str, Any] = field(default_factory=dict)
    live_lr: str = "0.01"  # the student's lr when distilled from a live data-free stream
    sources: tuple[str, ...] = ()  # this pair's sources when they differ from the suite's (empty: the suite's)


@dataclass(frozen=True)
class Recipes:
    """How data-free and condensation sources are run (everything a suite's commands depend on)."""

    df_scale: dict[str, Any] = field(default_factory=dict)  # preset overrides for every method
    df_method_scale: dict[str, dict[str, Any]] = field(default_factory=dict)  # per preset
    df_live_student: tuple[str, ...] = FMNIST_DF_LIVE_STUDENT
    df_count: int = FMNIST_DF_COUNT  # images synthesized for a stored set
    df_stored_student: tuple[str, ...] = FMNIST_DF_STORED_STUDENT
    df_grown_student: tuple[str, ...] = FMNIST_DF_GROWN_STUDENT  # df:<stored>+<live>: the student as the set grows
    df_inherit: bool = False  # data-free students start from a selection of the teacher's weights (distill --inherit)
    # a stored set is made in this many parts ('synthesize --part K/N': the set torchrun with N processes makes),
    # which free bench workers (--jobs) make side by side; 1: one synthesize command
    df_parts: int = 1
    cond: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method: --set overrides
    cond_by_ipc: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # per method and IPC, on top
    cond_student: tuple[str, ...] = FMNIST_COND_STUDENT
    cond_hard: tuple[str, ...] = ("--alpha", "1")
    cond_soft: tuple[str, ...] = ("--alpha", "0", "--temperature", "4")
    buffer: tuple[str, ...] = FMNIST_BUFFER  # 'datafree buffer' arguments, for mtt
    checkpoint_every: int = 50  # condensation checkpoints (an interrupted set resumes from the last)

    def cond_recipe(self, method: str, ipc: int) -> dict[str, Any]:
        """The ``--set`` overrides of ``method`` at ``ipc``: the method's, then its per-IPC ones."""
        return {**self.cond.get(method, {}), **self.cond_by_ipc.get(method, {}).get(ipc, {})}


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: str
    pairs: list[PairSpec]
    sources: list[str]
    seeds: list[int]
    description: str = ""
    recipes: Recipes = field(default_factory=Recipes)

    def with_seeds(self, seeds: list[int] | None) -> Suite:
        return self if not seeds else replace(self, seeds=list(seeds))

    def sources_of(self, pair: PairSpec) -> list[str]:
        """The sources ``pair`` runs: its own list if it has one, else the suite's, with their controls."""
        return with_controls(list(pair.sources) or self.sources)

    def all_sources(self) -> list[str]:
        """Every source some pair runs, in first-seen order."""
        return list(dict.fromkeys(s for pair in self.pairs for s in self.sources_of(pair)))


@dataclass(frozen=True)
class Source:
    """A parsed source string."""

    text: str
    kind: str  # scratch | kd | df | cond
    method: str = ""
    ipc: int = 0
    labels: str = ""  # hard | soft (cond)
    grow: str = ""  # df:<stored>+<live>: the live preset that grows the stored set

    @property
    def dirname(self) -> str:
        return self.text.replace(":", "-")


def parse_source(text: str) -> Source:
    """``scratch``, ``kd``, ``df:<preset>``, ``df:<stored>+<live>`` or ``cond:<method>:<ipc>:<hard|soft>``;
    anything else is a user error."""
    from datafree.synthesis import preset

    parts = text.split(":")
    if text in ("scratch", "kd"):
        return Source(text, text)
    if parts[0] == "df" and len(parts) == 2:
        methods = parts[1].split("+")
        for method in methods:
            if method not in SYNTHESIS:
                raise DatafreeError(f"source {text!r}: unknown data-free preset {method!r}; choose one of "
                                    f"{', '.join(sorted(SYNTHESIS))}")
        if len(methods) > 2:
            raise DatafreeError(f"source {text!r}: at most two presets, df:<stored>+<live>")
        if len(methods) == 2:
            stored, live = (preset(m) for m in methods)
            if stored.needs_student or stored.schedule == "online":
                raise DatafreeError(f"source {text!r}: {methods[0]} runs live; the first preset must make a stored set")
            if live.schedule == "online":
                raise DatafreeError(f"source {text!r}: {methods[1]} trains on fresh samples only; growing a set needs "
                                    "a pool or meta preset")
            return Source(text, "df", methods[0], grow=methods[1])
        return Source(text, "df", parts[1])
    if parts[0] == "cond" and len(parts) == 4:
        method, ipc, labels = parts[1:]
        if method not in CONDENSATION:
            raise DatafreeError(f"source {text!r}: unknown condensation method; choose one of {', '.join(CONDENSATION)}")
        if not ipc.isdigit() or int(ipc) < 1:
            raise DatafreeError(f"source {text!r}: images per class must be a positive integer")
        if labels not in ("hard", "soft"):
            raise DatafreeError(f"source {text!r}: labels must be 'hard' or 'soft'")
        return Source(text, "cond", method, int(ipc), labels)
    raise DatafreeError(f"unknown source {text!r}; use scratch, kd, df:<preset>, df:<stored>+<live> or "
                        "cond:<method>:<ipc>:<hard|soft>")


def with_controls(sources: list[str]) -> list[str]:
    """``sources`` plus what DD-Ranking's metrics compare each condensed set with: the random real
    subset of the same IPC and labels (IOR) and, for soft labels, the same set under hard labels
    (HLR); ``scratch`` is the real-data hard-label reference. Controls follow their source."""
    out: list[str] = []
    for text in sources:
        out.append(text)
        parts = text.split(":")
        if parts[0] == "cond" and len(parts) == 4 and parts[1] != "random":
            out += [f"cond:random:{parts[2]}:{parts[3]}", f"cond:{parts[1]}:{parts[2]}:hard"]
    return list(dict.fromkeys(out))


def make_pairs(table: dict[str, dict[str, Any]], live_lr: dict[str, str]) -> list[PairSpec]:
    return [PairSpec(key=key, live_lr=live_lr.get(key, "0.01"), **spec) for key, spec in table.items()]


def cond_sources(methods: tuple[str, ...], ipcs: tuple[int, ...]) -> list[str]:
    return [f"cond:{m}:{ipc}:{labels}" for m in methods for ipc in ipcs for labels in ("hard", "soft")]
