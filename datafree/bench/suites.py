"""Benchmark suites as data: teacher/student pairs, sources, seeds, and the recipes that run them.

A source is a string:

* ``scratch``: the student trained on the real training set with cross-entropy alone;
* ``kd``: the student distilled from the teacher on the real training set (the reference);
* ``df:<preset>``: a registered data-free method (``datafree.synthesis.presets.METHODS``); presets with an
  adversarial term or an online generator run live (``datafree distill --method``), the others
  synthesize a transfer set first (``datafree synthesize``) and distill from it;
* ``df:<stored>+<live>``: ADI's two stages: a transfer set synthesized with the ``stored`` preset,
  then a student distilled from it while a pool or meta ``live`` preset grows it with batches made
  against that student (``datafree distill --transfer SET --method LIVE``);
* ``cond:<method>:<ipc>:<hard|soft>``: a condensation method (``datafree condense``) at ``ipc``
  images per class; the student is distilled from the condensed set with hard labels (alpha 1)
  or the teacher's soft labels (alpha 0, T 4).

The recipes below are the numbers the scripts in ``benchmarks/`` were run with (CPU-sized for
Fashion-MNIST) and GPU-scale ones for CIFAR; the runner turns them into CLI commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from datafree.condense.methods import METHODS as CONDENSATION
from datafree.errors import DatafreeError
from datafree.synthesis.presets import METHODS as SYNTHESIS


def merge_args(base: tuple[str, ...], override: tuple[str, ...]) -> list[str]:
    """``base`` flag/value pairs with those in ``override`` replaced or added (one value per flag)."""
    merged = dict(zip(base[::2], base[1::2]))
    merged.update(zip(override[::2], override[1::2]))
    return [a for flag, value in merged.items() for a in (flag, value)]


# ---------------------------------------------------------------- Fashion-MNIST recipes (2 CPU cores)
# the teacher/student pairs of benchmarks/baselines.py (teacher seed 0)
FMNIST_PAIRS: dict[str, dict[str, Any]] = {
    "lenet": dict(
        name="LeNet-5 -> LeNet-5-half", teacher="lenet5", student="lenet5_half",
        teacher_args=("--epochs", "20", "--lr", "0.05"),
        student_args=("--epochs", "20", "--lr", "0.05"),
        # T^2-scaled KD gradients at lr 0.05 kill LeNet-5-half's ReLUs (10% accuracy); 0.01 is stable
        kd_args=("--alpha", "0.1", "--temperature", "4", "--lr", "0.01"),
    ),
    "resnet": dict(
        name="ResNet-14 -> ResNet-8 (width 8)", teacher="resnet14", student="resnet8",
        teacher_args=("--epochs", "10", "--lr", "0.1", "--augment", "crop-flip"),
        student_args=("--epochs", "10", "--lr", "0.05", "--augment", "crop-flip"),
        student_kwargs={"width": 8},
    ),
}
# data-free recipes of benchmarks/datafree_kd.py: a narrow generator (ngf 16; not for pixel
# generators), coarse pixels for zskd, 2000 live student steps, 6400 stored images
FMNIST_DF_SCALE: dict[str, Any] = {"ngf": 16, "batch_size": 128}
# each method's own bench budget, from its registration (datafree/synthesis/presets.py; notes in docs/benchmarks.md)
FMNIST_DF_METHOD_SCALE: dict[str, dict[str, Any]] = {name: dict(m.bench) for name, m in SYNTHESIS.items() if m.bench}
FMNIST_DF_LIVE_STUDENT = ("--epochs", "10", "--steps-per-epoch", "200", "--batch-size", "128", "--alpha", "0")
FMNIST_DF_LIVE_LR = {"lenet": "0.01", "resnet": "0.05"}
FMNIST_DF_COUNT = 6400
# the stored-set student without its length (benchmarks/zskd_recipes sets that per set size); why lr 0.01:
# docs/benchmarks.md, "Recipe notes"
FMNIST_DF_STORED_TRAIN = ("--batch-size", "128", "--alpha", "0", "--lr", "0.01", "--augment", "crop-flip",
                          "--clip-grad-norm", "5", "--temperature", "4")
# df:<stored>+<live>: the live student's length and the stored-set student's augmentation and KD settings
FMNIST_DF_GROWN_STUDENT = ("--epochs", "20", "--steps-per-epoch", "200", "--eval-every", "5", *FMNIST_DF_STORED_TRAIN)
FMNIST_DF_STORED_STUDENT = ("--epochs", "640", "--eval-every", "64", *FMNIST_DF_STORED_TRAIN)  # test 10 times
# Named variants of a preset for benchmarks/datafree_kd: preset overrides, images, the stored-set
# student's flags (merged over FMNIST_DF_STORED_STUDENT) and, optionally, other variants whose sets of
# the same seed the student also trains on ("with_sets"). fast5-stored: Fast-DFKD's meta-generator without
# its adversarial term, so it needs no student and its images can be stored, and the student can train far
# longer than synthesis runs. On the ResNet pair, one-seed trials: 12800 such images and 4000 student steps
# gave 83.2, 25600 and 8000 steps 84.9; this recipe (51200, 16000) gives 85.15 ± 0.16, live fast5 79.5 ± 1.1
FMNIST_DF_VARIANTS: dict[str, dict[str, Any]] = {
    "fast5-stored": dict(method="fast5", overrides={"adv": 0.0}, count=51200,
                         student=("--epochs", "40", "--eval-every", "4", "--lr", "0.05")),
    # ZSKD with DeepInversion's differentiable crop/flip during synthesis: pixels must keep their soft
    # target under the shifts the student later trains with (the plain recipe's images look like noise)
    "zskd-augment": dict(method="zskd", overrides={"augment": True}, count=FMNIST_DF_COUNT, student=()),
    # the ZSKD student with DSA's stronger augmentation (scale, rotate, colour, cutout, ...), on the zskd sets
    "zskd-dsa": dict(method="zskd", overrides={}, count=FMNIST_DF_COUNT, student=("--augment", "dsa")),
    # between the kept 0.01 and the 0.05 that won on one set but collapsed one benchmark student (72.2)
    "zskd-lr0.02": dict(method="zskd", overrides={}, count=FMNIST_DF_COUNT, student=("--lr", "0.02")),
    # the temperature the ZSKD paper distils with (the benchmark's students use 4)
    "zskd-T20": dict(method="zskd", overrides={}, count=FMNIST_DF_COUNT, student=("--temperature", "20")),
    # both kinds of ZSKD image, as one set: the plain (noise-like) and the augmented (garment-like) sets of a seed
    # (12800 images; 320 epochs keep the 32000 student steps)
    "zskd+augment": dict(method="zskd", overrides={}, count=FMNIST_DF_COUNT, with_sets=("zskd-augment",),
                         student=("--epochs", "320", "--eval-every", "32")),
    # no flips: a horizontal flip changes the teacher's answer on 80% of the zskd images (28% of test images;
    # benchmarks/teacher_view)
    "zskd-crop": dict(method="zskd", overrides={}, count=FMNIST_DF_COUNT, student=("--augment", "crop")),
}
# the quick and full suites keep the earlier, cheaper ZSKD recipe and student (40 epochs)
FMNIST_DF_ZSKD_CHEAP: dict[str, Any] = {"pixel_scale": 4, "iterations": 50}
FMNIST_DF_STORED_STUDENT_CHEAP = ("--epochs", "40", *FMNIST_DF_STORED_TRAIN)
# condensation recipes of benchmarks/condense.py (each method's registered bench budget: --set overrides,
# iterations = the last point of its curve)
FMNIST_COND: dict[str, dict[str, Any]] = {name: dict(m.bench) for name, m in CONDENSATION.items()}
# MTT's expert trajectories, CPU-sized (the paper: 100 experts x 50 epochs)
FMNIST_BUFFER = ("--experts", "2", "--epochs", "10")
# the student on a condensed set: the condensation evaluation protocol's optimiser (SGD 0.01, batch
# 256, 300 epochs without augmentation, lr decayed in steps) applied to the pair's student
FMNIST_COND_STUDENT = ("--epochs", "300", "--batch-size", "256", "--lr", "0.01", "--schedule", "step")

# ---------------------------------------------------------------- CIFAR recipes (one GPU)
CIFAR_TRAIN = ("--epochs", "200", "--batch-size", "128", "--lr", "0.1", "--schedule", "step", "--augment", "crop-flip")
CIFAR_PAIRS: dict[str, dict[str, Any]] = {
    "resnet34-resnet18": dict(name="ResNet-34 -> ResNet-18", teacher="resnet34", student="resnet18",
                              teacher_args=CIFAR_TRAIN, student_args=CIFAR_TRAIN),
    "wrn40_2-wrn16_1": dict(name="WRN-40-2 -> WRN-16-1", teacher="wrn_40_2", student="wrn_16_1",
                            teacher_args=CIFAR_TRAIN, student_args=CIFAR_TRAIN),
}
CIFAR_DF_SCALE: dict[str, Any] = {}  # the presets' own generator width and batch sizes
CIFAR_DF_METHOD_SCALE: dict[str, dict[str, Any]] = {"deepinversion": {"iterations": 2000}, "zskd": {"iterations": 1500}}
CIFAR_DF_LIVE_STUDENT = ("--epochs", "200", "--steps-per-epoch", "400", "--batch-size", "256", "--alpha", "0")
CIFAR_DF_LIVE_LR = {"resnet34-resnet18": "0.1", "wrn40_2-wrn16_1": "0.1"}
CIFAR_DF_COUNT = 51200
CIFAR_DF_STORED_STUDENT = ("--epochs", "200", "--batch-size", "256", "--alpha", "0", "--lr", "0.1", "--schedule", "step",
                           "--augment", "crop-flip", "--clip-grad-norm", "5", "--temperature", "20")
CIFAR_COND: dict[str, dict[str, Any]] = {m: {} for m in FMNIST_COND}  # the published iteration counts (DEFAULTS)
CIFAR_BUFFER = ("--experts", "10", "--epochs", "50")
CIFAR_COND_STUDENT = ("--epochs", "1000", "--batch-size", "256", "--lr", "0.01", "--schedule", "step", "--augment", "dsa")

DF_PRESETS_ALL = tuple(SYNTHESIS)  # every registered method, in registration order
COND_METHODS_ALL = tuple(CONDENSATION)
COND_IPCS = (1, 10, 50)


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
        """The sources ``pair`` runs: its own list if it has one, else the suite's."""
        return list(pair.sources) or self.sources

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


def make_pairs(table: dict[str, dict[str, Any]], live_lr: dict[str, str]) -> list[PairSpec]:
    return [PairSpec(key=key, live_lr=live_lr.get(key, "0.01"), **spec) for key, spec in table.items()]


def _cond_sources(methods: tuple[str, ...], ipcs: tuple[int, ...]) -> list[str]:
    return [f"cond:{m}:{ipc}:{labels}" for m in methods for ipc in ipcs for labels in ("hard", "soft")]


FMNIST_RECIPES = Recipes(df_scale=FMNIST_DF_SCALE, df_method_scale=FMNIST_DF_METHOD_SCALE, cond=FMNIST_COND)
CIFAR_RECIPES = Recipes(df_scale=CIFAR_DF_SCALE, df_method_scale=CIFAR_DF_METHOD_SCALE,
                        df_live_student=CIFAR_DF_LIVE_STUDENT, df_count=CIFAR_DF_COUNT,
                        df_stored_student=CIFAR_DF_STORED_STUDENT, cond=CIFAR_COND, cond_student=CIFAR_COND_STUDENT,
                        buffer=CIFAR_BUFFER, checkpoint_every=100)

FULL_CPU_NET = {"width": 32}  # the condensation networks (ConvNet-32: ~16x fewer FLOPs than ConvNet-128)
# The main job's pair: a BatchNorm teacher, so the quick suite shows the methods the package is built around
# (BN-statistics matching, adversarial growth) and teacher-only condensation; the BN-free LeNet pair is in 'full'
QUICK_PAIR = dict(name="LeNet-5-BN -> LeNet-5-half", teacher="lenet5_bn", student="lenet5_half",
                  teacher_args=("--epochs", "10", "--lr", "0.05"), student_args=("--epochs", "10", "--lr", "0.05"),
                  kd_args=FMNIST_PAIRS["lenet"]["kd_args"])
# DeepInversion's set (2560 images, 100 pixel steps per batch), grown by Fast-DFKD's meta-generator with its
# adversarial term against the student as it trains (4000 steps): artifacts/exp trials in docs/datafree_recipes.md
# 1600 steps: the main job at 1200 steps took 7m51s on 2 idle cores but its student lost 5 points (68.90 against
# 74.16); 4000 steps (79.9 in the trials of docs/datafree_recipes.md) would not fit 10 minutes
QUICK_DF_GROWN_STUDENT = ("--epochs", "8", "--steps-per-epoch", "200", "--eval-every", "4", *FMNIST_DF_STORED_TRAIN)
QUICK = Suite(
    name="quick", dataset="fashion-mnist",
    pairs=make_pairs({"lenet-bn": QUICK_PAIR}, FMNIST_DF_LIVE_LR),
    sources=["kd", "scratch", "df:deepinversion+fast5", "cond:dm:10:hard", "cond:teacher:10:soft"], seeds=[0],
    recipes=replace(FMNIST_RECIPES, df_count=2560, df_method_scale={"deepinversion": {"iterations": 100}},
                    df_grown_student=QUICK_DF_GROWN_STUDENT,
                    cond={**FMNIST_COND, "dm": {"batch_real": 64, "iterations": 100, "net_kwargs": FULL_CPU_NET},
                          "teacher": {"iterations": 200}},
                    cond_student=("--epochs", "150", *FMNIST_COND_STUDENT[2:])),
    description=(
        "Fashion-MNIST, LeNet-5 with BatchNorm -> LeNet-5-half, seed 0: teacher (trained once, reused if present), "
        "real-data KD, scratch, data-free deepinversion+fast5 (2560 DeepInversion images, 100 steps a batch, grown "
        "by fast5 batches made against the student: 1600 student steps), DM at 10 images per class (100 iterations "
        "on ConvNet-32, hard labels) and teacher-only condensation at 10 images per class (200 iterations, the "
        "teacher's soft labels); condensed-set students 150 epochs. Runs in about 10 minutes "
        "('bash scripts/main.sh' on 2 CPU cores, set-up included; measured times in the README)."),
)
# ---------------------------------------------------------------- the full suite, sized for this CPU
# Every method at every IPC with 3 seeds, at budgets that finish in a few hours on 2 cores (one
# process per pair): the students and iteration counts are cut, not the grid. BN-statistics methods
# run on the ResNet pair (the LeNet teacher has no BatchNorm), everything else on the LeNet pair.
BN_PRESETS = tuple(name for name, m in SYNTHESIS.items() if m.needs_batchnorm)
FULL_CPU_COND: dict[str, dict[str, Any]] = {
    "random": {},
    "herding": {},
    "dm": {"batch_real": 64, "iterations": 100, "net_kwargs": FULL_CPU_NET},
    "dc": {"batch_real": 64, "net_kwargs": FULL_CPU_NET},
    "dsa": {"batch_real": 64, "net_kwargs": FULL_CPU_NET},
    "mtt": {"net_kwargs": FULL_CPU_NET},
    "teacher": {"iterations": 100},
}
# DC/DSA update the images outer_loop times per iteration (1/10/50 at IPC 1/10/50) and MTT unrolls
# over the whole set, so their cost grows with IPC: fewer iterations at larger IPC
FULL_CPU_COND_BY_IPC: dict[str, dict[int, dict[str, Any]]] = {
    "dc": {1: {"iterations": 50}, 10: {"iterations": 5}, 50: {"iterations": 1}},
    "dsa": {1: {"iterations": 50}, 10: {"iterations": 5}, 50: {"iterations": 1}},
    "mtt": {1: {"iterations": 50}, 10: {"iterations": 20}, 50: {"iterations": 10}},
}
FULL_CPU_BUFFER = ("--experts", "2", "--epochs", "4", "--net-kwargs", '{"width": 32}')
FULL_CPU_PAIRS = {
    "lenet": {**FMNIST_PAIRS["lenet"],
              "sources": ("kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL if p not in BN_PRESETS),
                          *_cond_sources(tuple(m for m in COND_METHODS_ALL if m != "teacher"), COND_IPCS))},
    "resnet": {**FMNIST_PAIRS["resnet"],
               "student_args": ("--epochs", "3", "--lr", "0.05", "--augment", "crop-flip"),
               "sources": ("kd", "scratch", *(f"df:{p}" for p in BN_PRESETS), *_cond_sources(("teacher",), COND_IPCS))},
}
FULL = Suite(
    name="full", dataset="fashion-mnist",
    pairs=make_pairs(FULL_CPU_PAIRS, FMNIST_DF_LIVE_LR),
    sources=["kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL), *_cond_sources(COND_METHODS_ALL, COND_IPCS)],
    seeds=[0, 1, 2],
    recipes=replace(
        FMNIST_RECIPES,
        df_method_scale={"zskd": FMNIST_DF_ZSKD_CHEAP, "deepinversion": {"iterations": 50},
                         "adi": {"iterations": 50}, "cmi": {"iterations": 50}},
        df_stored_student=FMNIST_DF_STORED_STUDENT_CHEAP,
        df_live_student=("--epochs", "5", "--steps-per-epoch", "50", "--batch-size", "128", "--alpha", "0"),
        df_count=2560, cond=FULL_CPU_COND, cond_by_ipc=FULL_CPU_COND_BY_IPC, buffer=FULL_CPU_BUFFER,
        # batch 32, not the condensation protocol's 256: at 256 an IPC-10 set is one step an epoch, and
        # LeNet-5-half on teacher soft labels was still at 19% after 150 of them (69% with batch 32)
        cond_student=("--epochs", "150", "--batch-size", "32", "--lr", "0.01", "--schedule", "step",
                      "--eval-every", "50")),
    description=(
        "Fashion-MNIST, every data-free preset and every condensation method at IPC 1/10/50 (hard and soft "
        "labels), seeds 0 1 2, at CPU budgets. LeNet-5 -> LeNet-5-half: real-data KD, scratch, the presets "
        "without BN statistics, and the condensation methods (ConvNet-32 condensation networks; dm 100 "
        "iterations, dc/dsa 50/5/1 and mtt 50/20/10 at IPC 1/10/50; MTT buffer 2 experts x 4 epochs). "
        "ResNet-14 -> ResNet-8 (width 8), students 3 epochs: KD, scratch, the BN-statistics presets (live "
        "students 250 steps, 50 synthesis iterations per batch, 2560 stored images) and teacher-only "
        "condensation (100 iterations). Condensed-set students: 150 epochs, batch 32, tested every 50. Run one process "
        "per pair: 'datafree bench run full --pairs lenet' and '--pairs resnet' with the same --out."),
)
CIFAR_SOURCES = ["kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL), *_cond_sources(COND_METHODS_ALL, COND_IPCS)]
_CIFAR_DESCRIPTION = (
    "{dataset}, ResNet-34 -> ResNet-18 and WRN-40-2 -> WRN-16-1, seeds 0 1 2, GPU-scale: teachers and students "
    "200 epochs (SGD 0.1, batch 128, lr x0.1 at 50% and 75%, crop+flip), every data-free preset (live students "
    "200 x 400 steps; stored sets of 51200 images), every condensation method at IPC 1/10/50 with the published "
    "iteration counts, hard and soft labels (students 1000 epochs with DSA). Weeks of GPU time in all; take slices with "
    "--seeds or a custom suite.")
CIFAR10_SUITE = Suite(name="cifar10", dataset="cifar10", pairs=make_pairs(CIFAR_PAIRS, CIFAR_DF_LIVE_LR),
                      sources=CIFAR_SOURCES, seeds=[0, 1, 2], recipes=CIFAR_RECIPES,
                      description=_CIFAR_DESCRIPTION.format(dataset="CIFAR-10"))
CIFAR100_SUITE = Suite(name="cifar100", dataset="cifar100", pairs=make_pairs(CIFAR_PAIRS, CIFAR_DF_LIVE_LR),
                       sources=CIFAR_SOURCES, seeds=[0, 1, 2], recipes=CIFAR_RECIPES,
                       description=_CIFAR_DESCRIPTION.format(dataset="CIFAR-100"))

_SMOKE_TRAIN = ("--epochs", "1", "--batch-size", "64", "--lr", "0.05")
SMOKE = Suite(
    name="smoke", dataset="fashion-mnist",
    pairs=[PairSpec(key="tiny", name="ResNet-8 (width 4) -> ResNet-8 (width 2)", teacher="resnet8", student="resnet8",
                    teacher_args=_SMOKE_TRAIN, student_args=_SMOKE_TRAIN, teacher_kwargs={"width": 4},
                    student_kwargs={"width": 2}, live_lr="0.05")],
    sources=["kd", "scratch", "df:zskd", "cond:dm:2:hard", "cond:dm:2:soft"], seeds=[0],
    recipes=Recipes(df_scale={"batch_size": 16}, df_method_scale={"zskd": {"pixel_scale": 4, "iterations": 2}},
                    df_live_student=("--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--alpha", "0"),
                    df_count=32, df_stored_student=("--epochs", "1", "--batch-size", "16", "--alpha", "0"),
                    cond={"dm": {"iterations": 2, "batch_real": 8, "net_kwargs": {"width": 8}}},
                    cond_student=("--epochs", "1", "--batch-size", "16", "--lr", "0.01"),
                    buffer=("--experts", "1", "--epochs", "2"), checkpoint_every=1),
    description="A tiny end-to-end check (the tests): 1 epoch, tiny widths and counts; give the data with --data-root.",
)

SUITES: dict[str, Suite] = {s.name: s for s in (QUICK, FULL, CIFAR10_SUITE, CIFAR100_SUITE, SMOKE)}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise DatafreeError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)} (see 'datafree bench list')")
    return SUITES[name]
