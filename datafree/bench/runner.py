"""Plan a suite into steps (a command and the library call that runs it) and run them, resumably, one row per finished run.

Layout of a suite's output directory::

    suite.json                          the suite, its planned run ids, the sources a pair cannot run
    results.jsonl                       one row per finished run (appended; the last row of a run id wins)
    failures.jsonl                      one line per failed run (the suite goes on with the others)
    teachers/<pair>/                    the teacher's run directory (unless --teachers gives one)
    runs/<pair>/<source>/seed<N>/       student/ (a run directory) and, for stored data-free sets, transfer/;
                                        df:<stored>+<live> also grown/ (the batches made against the student)
    sets/<pair>/cond-<method>-ipc<K>/seed<N>/   a condensed set, shared by the hard- and soft-label students
    buffers/<dataset>/                  MTT's expert trajectories

Every step is planned as a ``datafree ...`` command (what results record and a reader can rerun)
and as a :class:`~datafree.bench.jobs.Job`, the :mod:`datafree.api` call this process (or, with
``jobs`` > 1, a worker process after the teachers) makes. A step directory holds a ``.bench.json``
marker with the command that made it: a finished step with the same command is reused, an
interrupted one is resumed, anything else is redone (overwritten, or the set is deleted first).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datafree.bench.jobs import Job, check, execute, method_config
from datafree.bench.parts import PartBoard, part_groups
from datafree.bench.suites import PairSpec, Recipes, Source, Suite, merge_args, parse_source
from datafree.data.transfer import synthesis_seconds
from datafree.errors import DatafreeError
from datafree.io import append_jsonl, remove_stale_temps, write_json

RESULTS = "results.jsonl"
FAILURES = "failures.jsonl"
SUITE_JSON = "suite.json"
MARKER = ".bench.json"
GROWN = "grown"  # a df:<stored>+<live> run's batches made against its student (a transfer set)
TEACHER_SEED = 0


@dataclass
class Step:
    """One job, its command (without ``datafree``) and the directory it writes."""

    kind: str  # train | synthesize | condense | buffer
    argv: list[str]
    out: Path
    target: int = 0  # synthesize: images; condense: iterations; buffer: experts
    job: Job = field(default_factory=lambda: Job(""))

    @property
    def part(self) -> tuple[int, int] | None:
        """``(K, N)`` for part K of a set made in N parts (``out`` is then the set's ``rank-K``), else None."""
        part = self.job.params.get("part")
        return (int(part[0]), int(part[1])) if part else None


@dataclass
class Run:
    """A (pair, source, seed): the commands that produce its student, in order."""

    run_id: str
    pair: PairSpec
    source: str
    seed: int
    directory: Path
    steps: list[Step] = field(default_factory=list)
    teacher_dir: Path | None = None

    @property
    def argv(self) -> list[list[str]]:
        return [["datafree", *s.argv] for s in self.steps]


# ---------------------------------------------------------------- planning
def _spec(dataset: str):
    from datafree.data import KNOWN_SPECS

    if dataset not in KNOWN_SPECS:
        raise DatafreeError(f"suites run on {', '.join(KNOWN_SPECS)}, not {dataset!r}")
    return KNOWN_SPECS[dataset]


@functools.cache
def _has_batchnorm(arch: str, kwargs_json: str, dataset: str) -> bool:
    from datafree.models import build_model

    model = build_model(arch, _spec(dataset), **json.loads(kwargs_json))
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def teacher_has_batchnorm(pair: PairSpec, dataset: str) -> bool:
    """Whether ``pair``'s teacher has a BatchNorm layer: a property of its architecture, so an unweighted copy
    answers (built once per architecture) and no teacher file is needed."""
    return _has_batchnorm(pair.teacher, json.dumps(pair.teacher_kwargs, sort_keys=True), dataset)


def not_applicable(suite: Suite, pair: PairSpec, source: Source) -> str | None:
    """Why ``pair`` cannot run ``source`` (a BN-statistics method and a teacher without BatchNorm), else None."""
    from datafree.condense import METHODS, method_config
    from datafree.synthesis import preset

    if source.kind == "df":
        needs_bn = any(preset(m, **df_overrides(suite.recipes, m)).needs_batchnorm for m in (source.method, source.grow) if m)
    elif source.kind == "cond" and METHODS[source.method].needs_batchnorm:  # while the recipe keeps its bn weight
        needs_bn = method_config(source.method, **suite.recipes.cond.get(source.method, {})).bn > 0
    else:
        return None
    if needs_bn and not teacher_has_batchnorm(pair, suite.dataset):
        return "matches BN statistics, the teacher has no BatchNorm"
    return None


def skipped_sources(suite: Suite) -> list[dict[str, str]]:
    """The (pair, source) combinations a suite lists but cannot run, with the reason."""
    out = []
    for pair in suite.pairs:
        for text in suite.sources_of(pair):
            reason = not_applicable(suite, pair, parse_source(text))
            if reason:
                out.append({"pair": pair.key, "source": text, "reason": reason})
    return out


def kwargs_args(flag: str, kwargs: dict[str, Any]) -> list[str]:
    return [flag, json.dumps(kwargs, sort_keys=True)] if kwargs else []


def set_args(overrides: dict[str, Any]) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v, sort_keys=True)}")]


def df_overrides(recipes: Recipes, method: str) -> dict[str, Any]:
    """The preset overrides ``method`` runs with: the shared scale (a generator's setting such as ``ngf`` only
    for a method with that generator), then its own."""
    from dataclasses import fields

    from datafree.synthesis import GENERATORS, preset
    from datafree.synthesis.generators import generator_keys

    own = {f.name for f in fields(GENERATORS[preset(method).generator])}
    scale = {k: v for k, v in recipes.df_scale.items() if k not in generator_keys() or k in own}
    scale.update(recipes.df_method_scale.get(method, {}))
    return scale


FOREIGN_SUFFIXES = (".safetensors", ".pt", ".pth")


def find_teacher(teachers: Path, suite: Suite, pair: PairSpec) -> Path:
    """``teachers/<pair>`` (a suite's layout) or ``teachers/<dataset>-<arch>`` (benchmarks/ layout).

    Either a run directory, or a state_dict of the pair's teacher architecture that datafree did not
    write: ``model.safetensors`` there without its ``model.json``, or a file ``<pair>.safetensors``
    (``.pt``, ``.pth``) beside them. Whole-model files (TorchScript, torch.export) are refused: a
    suite runs each pair's own architecture.
    """
    from datafree.checkpoint import WHOLE_MODEL, archive_kind

    tried = [teachers / pair.key, teachers / f"{suite.dataset}-{pair.teacher}"]
    for path in tried:
        if (path / "model.safetensors").is_file():
            arch = json.loads((path / "model.json").read_text()).get("arch") if (path / "model.json").is_file() else None
            if arch not in (None, pair.teacher):
                raise DatafreeError(f"teacher {path} is a {arch}, the pair {pair.name} needs a {pair.teacher}")
            return path
        for file in (path.with_name(path.name + suffix) for suffix in FOREIGN_SUFFIXES):
            if file.is_file():
                kind = archive_kind(file)
                if kind in WHOLE_MODEL:
                    raise DatafreeError(f"teacher {file} is {WHOLE_MODEL[kind]}; a suite runs the pair's own architecture "
                                        f"({pair.teacher}): give its state_dict instead")
                return file
    raise DatafreeError(f"no teacher for {pair.name} in {teachers} (looked for {' and '.join(str(p) for p in tried)}, "
                        f"or a state_dict {tried[0]}.safetensors/.pt/.pth)")


def is_foreign(teacher: Path) -> bool:
    """A found teacher checkpoint without a datafree sidecar (its commands then name the architecture and dataset)."""
    return teacher.is_file() or not (teacher / "model.json").is_file()


def teacher_args(teacher: Path, suite: Suite, pair: PairSpec, foreign: bool) -> list[str]:
    """``--teacher PATH``, plus ``--teacher-arch``, its kwargs and ``--dataset`` for a foreign state_dict."""
    args = ["--teacher", str(teacher)]
    if foreign:
        args += ["--teacher-arch", pair.teacher, *kwargs_args("--teacher-kwargs", pair.teacher_kwargs),
                 "--dataset", suite.dataset]
    return args


def teacher_ref(teacher: Path, pair: PairSpec, foreign: bool) -> dict[str, Any]:
    """The teacher of a job: its path, and for a foreign state_dict its architecture."""
    if foreign:
        return {"path": str(teacher), "arch": pair.teacher, "kwargs": pair.teacher_kwargs or None}
    return {"path": str(teacher)}


def plan(suite: Suite, out_dir: str | Path = "bench", *, data_root: str | Path | None = None, device: str | None = None,
         teachers: str | Path | None = None) -> list[Run]:
    """Every run of ``suite`` with the exact commands it takes, in execution order (nothing is run)."""
    out = Path(out_dir)
    data = ["--dataset", suite.dataset, *(["--data-root", str(data_root)] if data_root else [])]
    dev = ["--device", device] if device else []
    context = {"dataset": suite.dataset, "data_root": str(data_root) if data_root else None, "device": device}
    runs: list[Run] = []
    for pair in suite.pairs:
        sources = [parse_source(s) for s in suite.sources_of(pair)]
        if teachers is not None:
            teacher_dir = find_teacher(Path(teachers), suite, pair)
            runs.append(Run(f"{pair.key}/teacher/seed{TEACHER_SEED}", pair, "teacher", TEACHER_SEED, teacher_dir,
                            teacher_dir=teacher_dir))
        else:
            teacher_dir = out / "teachers" / pair.key
            argv = ["train-teacher", "--arch", pair.teacher, *kwargs_args("--arch-kwargs", pair.teacher_kwargs),
                    *pair.teacher_args, "--seed", str(TEACHER_SEED), *data, *dev, "--out", str(teacher_dir),
                    "--no-progress"]
            job = Job("train-teacher", {**context, "arch": pair.teacher, "arch_kwargs": pair.teacher_kwargs,
                                        "flags": list(pair.teacher_args), "seed": TEACHER_SEED})
            runs.append(Run(f"{pair.key}/teacher/seed{TEACHER_SEED}", pair, "teacher", TEACHER_SEED, teacher_dir,
                            [Step("train", argv, teacher_dir, job=job)], teacher_dir))
        foreign = teachers is not None and is_foreign(teacher_dir)
        teacher = teacher_args(teacher_dir, suite, pair, foreign)
        ref = teacher_ref(teacher_dir, pair, foreign)
        student = ["--student", pair.student, *kwargs_args("--student-kwargs", pair.student_kwargs)]
        for seed in suite.seeds:
            for src in sources:
                if not_applicable(suite, pair, src):
                    continue
                run_dir = out / "runs" / pair.key / src.dirname / f"seed{seed}"
                tail = ["--seed", str(seed), *data, *dev, "--out", str(run_dir / "student"), "--no-progress"]
                steps = _source_steps(suite, pair, src, seed, out, run_dir, teacher, student, tail, data, dev,
                                      {**context, "seed": seed, "teacher": ref})
                runs.append(Run(f"{pair.key}/{src.text}/seed{seed}", pair, src.text, seed, run_dir, steps, teacher_dir))
    return runs


def _source_steps(suite: Suite, pair: PairSpec, src: Source, seed: int, out: Path, run_dir: Path, teacher: list[str],
                  student: list[str], tail: list[str], data: list[str], dev: list[str],
                  ctx: dict[str, Any]) -> list[Step]:
    """The steps of one source, each as a command and as the job that runs it (from the same values)."""
    from datafree.synthesis import preset

    r, student_dir = suite.recipes, run_dir / "student"
    learner = {**ctx, "student": pair.student, "student_kwargs": pair.student_kwargs, "method": None, "overrides": {},
               "transfer": None}
    if src.kind == "scratch":
        argv = ["train-teacher", "--arch", pair.student, *kwargs_args("--arch-kwargs", pair.student_kwargs),
                *pair.student_args, *tail]
        job = Job("train-teacher", {**ctx, "arch": pair.student, "arch_kwargs": pair.student_kwargs,
                                    "flags": list(pair.student_args), "teacher": None})  # reads no teacher
        return [Step("train", argv, student_dir, job=job)]
    if src.kind == "kd":
        flags = merge_args(pair.student_args, pair.kd_args)
        return [Step("train", ["distill", *teacher, *student, *flags, *tail], student_dir,
                     job=Job("distill", {**learner, "flags": flags}))]
    if src.kind == "df":
        if r.df_inherit:  # the student starts from the teacher's weights
            student, learner = [*student, "--inherit"], {**learner, "inherit": True}
        scale = df_overrides(r, src.method)
        config = preset(src.method, **scale)
        overrides = set_args(scale)
        if not src.grow and (config.needs_student or config.schedule == "online"):
            flags = [*r.df_live_student, "--lr", pair.live_lr]
            argv = ["distill", *teacher, "--method", src.method, *overrides, *student, *flags, *tail]
            job = Job("distill", {**learner, "method": src.method, "overrides": scale, "flags": flags})
            return [Step("train", argv, student_dir, job=job)]
        tset = run_dir / "transfer"
        synth = ["synthesize", *teacher, "--method", src.method, *overrides, "--count", str(r.df_count),
                 "--seed", str(seed), *dev, "--out", str(tset), "--no-progress"]
        synth_job = Job("synthesize", {**ctx, "method": src.method, "overrides": scale, "count": r.df_count})
        synth_steps = [Step("synthesize", synth, tset, r.df_count, synth_job)]
        if r.df_parts > 1:  # parts that workers make side by side; the last to finish writes the set's manifest
            from datafree.data.transfer import rank_dir
            from datafree.synthesis.run import part_share

            n = r.df_parts
            synth_steps = [Step("synthesize", [*synth, "--part", f"{k}/{n}"], tset / rank_dir(k),
                                part_share(r.df_count, config.batch_size, k, n),
                                Job("synthesize", {**synth_job.params, "part": [k, n], "set": str(tset)}))
                           for k in range(n)]
        if src.grow:  # the live preset grows the stored set with batches made against the student
            grow = df_overrides(r, src.grow)
            grown = run_dir / GROWN  # those batches are kept, so the report shows every image the student saw
            distill = ["distill", *teacher, "--transfer", str(tset), "--method", src.grow,
                       *set_args(grow), *student, *r.df_grown_student, "--save-transfer", str(grown), *tail]
            job = Job("distill", {**learner, "transfer": str(tset), "method": src.grow, "overrides": grow,
                                  "flags": list(r.df_grown_student), "save_transfer": str(grown)})
        else:
            distill = ["distill", *teacher, "--transfer", str(tset), *student, *r.df_stored_student, *tail]
            job = Job("distill", {**learner, "transfer": str(tset), "flags": list(r.df_stored_student)})
        return [*synth_steps, Step("train", distill, student_dir, job=job)]
    # cond: one set per (pair, method, ipc, seed), with the teacher's logits, shared by hard and soft labels
    from datafree.condense import method_config

    steps: list[Step] = []
    recipe = r.cond_recipe(src.method, src.ipc)
    if src.method == "mtt":
        buffer_dir = out / "buffers" / suite.dataset
        buffer = ["buffer", *r.buffer, "--seed", "0", *data, *dev, "--out", str(buffer_dir), "--no-progress"]
        experts = int(r.buffer[r.buffer.index("--experts") + 1]) if "--experts" in r.buffer else 10
        buffer_job = Job("buffer", {**ctx, "flags": list(r.buffer), "seed": 0, "teacher": None})
        steps.append(Step("buffer", buffer, buffer_dir, experts, buffer_job))
        recipe["buffer"] = str(buffer_dir)
    iterations = method_config(src.method, ipc=src.ipc, **recipe).iterations
    set_dir = out / "sets" / pair.key / f"cond-{src.method}-ipc{src.ipc}" / f"seed{seed}"
    condense = ["condense", "--method", src.method, "--ipc", str(src.ipc), *set_args(recipe), *teacher, "--soft-labels",
                "--seed", str(seed), "--checkpoint-every", str(r.checkpoint_every), *data, *dev, "--out", str(set_dir),
                "--no-progress"]
    condense_job = Job("condense", {**ctx, "method": src.method, "ipc": src.ipc, "overrides": recipe,
                                    "soft_labels": True, "checkpoint_every": r.checkpoint_every})
    steps.append(Step("condense", condense, set_dir, iterations, condense_job))
    labels = r.cond_soft if src.labels == "soft" else r.cond_hard
    distill = ["distill", "--transfer", str(set_dir), *(teacher if src.labels == "soft" else []), *student,
               *r.cond_student, *labels, *tail]
    job = Job("distill", {**learner, "transfer": str(set_dir), "flags": [*r.cond_student, *labels],
                          "teacher": ctx["teacher"] if src.labels == "soft" else None})
    steps.append(Step("train", distill, student_dir, job=job))
    return steps


def check_plan(runs: list[Run]) -> None:
    """Build every planned step's configs (training, synthesis, condensation): a wrong recipe fails here."""
    for run in runs:
        for step in run.steps:
            try:
                check(step.job)
            except DatafreeError as e:
                raise DatafreeError(f"{run.run_id}: the suite builds an invalid step ({e}): "
                                    f"datafree {' '.join(step.argv)}") from None


# ---------------------------------------------------------------- running
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _marker(out: Path) -> dict[str, Any]:
    return _read_json(out / MARKER) or {}


def _write_marker(out: Path, argv: list[str], inputs: dict[str, Any], time_s: float = 0.0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER, {"argv": argv, "inputs": inputs, "time_s": time_s})


def inputs_of(job: Job) -> dict[str, Any]:
    """Fingerprints of what a step depends on beyond its command: the teacher's sha256, the transfer
    set's shards, and the resolved method config (so a changed preset default redoes its runs)."""
    inputs: dict[str, Any] = {}
    config = method_config(job)
    if config is not None:
        text = json.dumps(config, sort_keys=True, default=str)
        inputs["method_config"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    if job.params.get("teacher"):
        inputs["teacher"] = teacher_sha256(Path(job.params["teacher"]["path"]))
    if job.params.get("transfer"):
        manifest = _read_json(Path(job.params["transfer"]) / "manifest.json") or {}
        inputs["transfer"] = [s.get("sha256") for s in manifest.get("shards", [])]
    return inputs


def teacher_sha256(teacher: Path) -> str | None:
    """The sha256 of a teacher's weights as they are now: its sidecar's, else hashed (None when it is not there)."""
    return (_read_json(teacher / "model.json") or {}).get("sha256") or _weights_sha256(teacher)


def made_from_teacher(manifest: dict[str, Any], teacher: Path) -> bool:
    """Whether a stored set's manifest names ``teacher``'s weights as they are now: a set synthesized from a
    teacher since retrained in place must be made again, not reused."""
    return (manifest.get("teacher") or {}).get("sha256") == teacher_sha256(teacher)


def _weights_sha256(teacher: Path) -> str | None:
    """sha256 of a teacher without a sidecar (a foreign state_dict), or None when it is not there."""
    path = teacher / "model.safetensors" if teacher.is_dir() else teacher
    if not path.is_file():
        return None
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    from datafree.io import sha256_file

    return sha256_file(path)


def same_inputs(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a step or row recorded with ``recorded`` inputs still holds; records made before the
    method-config fingerprint existed are judged without it."""
    return recorded == {k: v for k, v in now.items() if k != "method_config" or k in recorded}


def run_inputs(run: Run) -> dict[str, Any]:
    """What a run's row was computed from: the teacher (and a set made by another run), as they are now."""
    inputs: dict[str, Any] = {}
    for step in run.steps:
        inputs.update(inputs_of(step.job))
    return inputs


def reset_peak_memory(device: str | None) -> bool:
    """Start a fresh peak-memory measurement for the next step (all steps share this process)."""
    if device and device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(torch.device(device))
        return True
    if device is None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    try:  # Linux: "5" resets the peak resident set size (VmHWM, which getrusage's ru_maxrss reports)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False




def run_step(step: Step, log=print) -> str:
    """Run, resume, redo or reuse one step; returns what was done (run | resume | reuse)."""
    out, marker, inputs = step.out, _marker(step.out), inputs_of(step.job)
    # a suite killed while writing this step's marker or a file of its run leaves a temporary behind, also when
    # the run itself had finished and is now only reused; no other process writes in a step's directory
    remove_stale_temps(out)
    # the same command on the same teacher and set (a directory without a marker: judged by its command alone)
    same = marker.get("argv") == step.argv and same_inputs(marker.get("inputs", inputs), inputs)
    if step.kind == "train":
        if finished_run(out, step.argv) is not None and same_inputs(marker.get("inputs", inputs), inputs):
            return "reuse"
        live = bool(step.job.params.get("method"))
        action = "resume" if same and resumable_run(out) and not live else "run"
        resume, overwrite = action == "resume", action != "resume"
    else:
        done = {"synthesize": lambda: (_read_json(out / "manifest.json") or {}).get("count", 0),
                "condense": lambda: (_read_json(out / "manifest.json") or {}).get("iterations_done", -1),
                "buffer": lambda: len((_read_json(out / "buffer.json") or {}).get("experts", []))}[step.kind]
        started = {"synthesize": "manifest.json", "condense": "condense-state.pt", "buffer": "buffer.json"}[step.kind]
        same = same and "argv" in marker
        if same and (out / started).is_file() and done() >= step.target:
            return "reuse"
        action = "resume" if same and (out / started).is_file() else "run"
        if action == "run" and out.exists():
            shutil.rmtree(out)  # made by another command or from another teacher: start it again
        resume, overwrite = action == "resume", False
    log(f"  {action:6s} datafree {' '.join(step.argv)}")
    _write_marker(out, step.argv, inputs, marker.get("time_s", 0.0) if same else 0.0)
    reset_peak_memory(step.job.params.get("device"))
    start = time.perf_counter()
    try:
        execute(step.job, step.argv, out=out, resume=resume, overwrite=overwrite)
    finally:  # the time of an interrupted step counts too (the buffer records none of its own)
        _write_marker(out, step.argv, inputs, _marker(out).get("time_s", 0.0) + time.perf_counter() - start)
    return action


def finished_run(out: Path, argv: list[str]) -> dict[str, Any] | None:
    """The result.json of a training run in ``out`` that finished with exactly the command ``argv`` (without
    ``datafree``), else None: the one "reuse a finished run" check (the bench's steps, benchmarks/ scripts)."""
    result = _read_json(out / "result.json")
    if result is None or result.get("argv") != ["datafree", *argv]:
        return None
    return result if _same_teacher(result.get("teacher")) else None


def _same_teacher(recorded: Any) -> bool:
    """Whether the teacher a run recorded still has the weights it had: a teacher retrained in place (same path,
    new weights) must not let the runs distilled from the old one count as finished."""
    if not isinstance(recorded, dict) or not recorded.get("sha256") or not recorded.get("path"):
        return True  # nothing recorded to compare (no teacher, or an older result)
    current = teacher_sha256(Path(recorded["path"]))
    return current is None or current == recorded["sha256"]  # a teacher that is gone fails its own command


def resumable_run(out: Path) -> bool:
    """A training run in ``out`` that saved its state but did not finish."""
    return (out / "state.pt").is_file() and not (out / "result.json").is_file()


def read_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``results.jsonl`` (a torn last line from a crash is ignored); the last row of a run id wins."""
    path = Path(out_dir) / RESULTS
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "run_id" in row:
                rows.pop(row["run_id"], None)
                rows[row["run_id"]] = row
    return list(rows.values())


def planned_argv(run: Run) -> list[list[str] | None]:
    """The commands of ``run``; for a teacher given with --teachers, the command recorded in its result.json."""
    if run.steps:
        return run.argv
    return [(_read_json(run.directory / "result.json") or {}).get("argv")]


def make_row(suite: Suite, run: Run, actions: list[str], rows: dict[str, dict[str, Any]], wall: float,
             peak_reset: bool) -> dict[str, Any]:
    """The results.jsonl record of a finished run."""
    from datafree.run import environment

    src = parse_source(run.source) if run.source != "teacher" else Source("teacher", "teacher")
    result = _read_json((run.steps[-1].out if run.steps else run.directory) / "result.json")
    if result is None:  # a teacher from --teachers without result.json: its sidecar's metrics
        sidecar = _read_json(run.directory / "model.json") or {}
        result = {"metrics": sidecar.get("metrics", {}), "config": {}, "argv": None}
    metrics = result.get("metrics", {})
    creation, buffer_time, images, peaks, config = 0.0, 0.0, 0, [metrics.get("peak_memory_mb")], {}
    set_dir = None
    for step in run.steps[:-1]:
        if step.kind == "buffer":
            buffer_time = float(_marker(step.out).get("time_s", 0.0))
            config["buffer"] = {k: v for k, v in (_read_json(step.out / "buffer.json") or {}).items() if k != "experts"}
            continue
        if step.part is not None and step.part[0] > 0:
            continue  # the set's other parts: part 0 read its merged manifest
        set_path = step.out.parent if step.part is not None else step.out  # a part: the set it belongs to
        manifest = _read_json(set_path / "manifest.json") or {}
        # a set made in parts at once carries their summed time (process-seconds, as one process would spend)
        creation = (synthesis_seconds(manifest) if step.kind == "synthesize"
                    else float(manifest.get("condensation_time_s", 0.0)))
        peaks.append(manifest.get("peak_memory_mb"))
        images = int(manifest.get("count", 0))
        config["synthesis" if step.kind == "synthesize" else "condensation"] = manifest.get("config")
        set_dir = str(set_path)
    if src.kind == "df" and not set_dir:  # live: the images the generator made during distillation
        images = int(result.get("synthetic_images", 0))
    grown = run.steps[-1].job.params.get("save_transfer") if run.steps else None  # a grown source's kept batches
    grown_manifest = _read_json(Path(grown) / "manifest.json") if grown else None
    grown_dir = grown if grown_manifest is not None else None
    if grown_manifest is not None:  # the student learnt from both: the stored set and the batches made against it
        images += int(grown_manifest.get("count", 0))
    config["student"] = result.get("config")
    distill = float(metrics.get("train_time_total_s", 0.0))
    distill_wall = float(metrics.get("wall_time_s", distill))
    total = creation + buffer_time + distill
    row: dict[str, Any] = {
        "suite": suite.name, "dataset": suite.dataset, "run_id": run.run_id, "pair": run.pair.key,
        "pair_name": run.pair.name, "teacher": run.pair.teacher, "student": run.pair.student, "source": run.source,
        "kind": src.kind, "method": src.method or None, "ipc": src.ipc or None, "labels": src.labels or None,
        "seed": run.seed, "accuracy": metrics.get("test_accuracy"), "epochs": metrics.get("epoch"),
        "synthesis_time_s": creation if src.kind == "df" else 0.0,
        "condensation_time_s": creation if src.kind == "cond" else 0.0,
        "buffer_time_s": buffer_time, "distill_time_s": distill, "distill_wall_time_s": distill_wall,
        "total_time_s": total, "wall_time_s": creation + buffer_time + distill_wall, "bench_wall_time_s": wall,
        "peak_memory_mb": max((p for p in peaks if p is not None), default=None),
        "peak_memory_per_step": peak_reset,
        "synthetic_images": images, "set_dir": set_dir, "grown_dir": grown_dir,
        "student_dir": str(run.steps[-1].out) if run.steps else None,
        "teacher_dir": str(run.teacher_dir), "argv": planned_argv(run),
        "config": config, "inputs": run_inputs(run), "actions": actions, "environment": environment(), "finished_at": time.time(),
    }
    add_kd_reference(row, row if src.kind == "kd" else rows.get(f"{run.pair.key}/kd/seed{run.seed}"))
    return row


def add_kd_reference(row: dict[str, Any], kd: dict[str, Any] | None) -> None:
    """``kd_accuracy``, ``fraction_of_kd``, ``kd_time_s`` and ``time_ratio_to_kd`` from the KD row of the same pair and seed."""
    ok = kd is not None and kd.get("accuracy") and row.get("accuracy") is not None and row["kind"] != "teacher"
    row["kd_accuracy"] = kd.get("accuracy") if ok else None  # type: ignore[union-attr]
    row["fraction_of_kd"] = row["accuracy"] / kd["accuracy"] if ok else None  # type: ignore[index]
    kd_time = kd.get("total_time_s") if kd is not None else None
    row["kd_time_s"] = kd_time
    row["time_ratio_to_kd"] = row["total_time_s"] / kd_time if kd_time else None


@dataclass
class SuiteSummary:
    ran: list[str] = field(default_factory=list)  # run ids that produced a new row
    reused: list[str] = field(default_factory=list)  # run ids whose row was already there
    failed: list[str] = field(default_factory=list)
    not_applicable: list[dict[str, str]] = field(default_factory=list)


def run_suite(suite: Suite, out_dir: str | Path, *, data_root: str | Path | None = None, device: str | None = None,
              seeds: list[int] | None = None, teachers: str | Path | None = None, pairs: list[str] | None = None,
              jobs: int = 1, only: list[str] | None = None, log=print,
              _shared: tuple[Any, Any] | None = None) -> SuiteSummary:
    """Run every run of ``suite`` into ``out_dir`` that has no row in results.jsonl yet (same id and commands).

    ``pairs`` runs only those pairs (their keys); one process per pair may share ``out_dir``, since
    each writes only its pair's directories and rows are appended under a file lock. ``jobs`` > 1
    trains the teachers first, then spreads the other runs over that many worker processes with
    ``torch.get_num_threads() // jobs`` threads each (see :func:`_run_in_workers`). ``only`` keeps
    just those run ids (what a worker is given; ``_shared``: the workers' claims on sets made in parts).
    """
    if jobs < 1:
        raise DatafreeError("--jobs must be at least 1")
    suite = suite.with_seeds(seeds)
    out = Path(out_dir)
    runs = plan(suite, out, data_root=data_root, device=device, teachers=teachers)
    check_plan(runs)
    planned = [r.run_id for r in runs]  # the whole suite's, so processes running one pair each write the same file
    if pairs:
        unknown = sorted(set(pairs) - {p.key for p in suite.pairs})
        if unknown:
            raise DatafreeError(f"suite {suite.name} has no pair {', '.join(unknown)}; its pairs: "
                                f"{', '.join(p.key for p in suite.pairs)}")
        runs = [r for r in runs if r.pair.key in pairs]
    summary = SuiteSummary(not_applicable=skipped_sources(suite))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SUITE_JSON, {"suite": asdict(suite), "runs": planned,
                                  "not_applicable": summary.not_applicable})
    if only is not None:
        runs = [r for r in runs if r.run_id in only]
    rows = {r["run_id"]: r for r in read_rows(out)}
    board = PartBoard(*_shared) if _shared else PartBoard()
    if jobs > 1:
        teacher_runs = [r for r in runs if r.source == "teacher"]
        _run_runs(suite, teacher_runs, out, rows, device, summary, log, board)
        failed = {r.pair.key for r in teacher_runs if r.run_id in summary.failed}
        rest = [r for r in runs if r.source != "teacher" and r.pair.key not in failed]
        for r in runs:
            if r.source != "teacher" and r.pair.key in failed:
                log(f"skip   {r.run_id}: the teacher failed")
                summary.failed.append(r.run_id)
        pending = [r for r in rest if not _reusable(r, rows.get(r.run_id))]
        for r in rest:
            if r not in pending:
                log(f"reuse  {r.run_id} ({rows[r.run_id].get('accuracy')}%)")
                summary.reused.append(r.run_id)
        _run_in_workers(suite, pending, out, jobs, summary, log, data_root=data_root, device=device,
                        seeds=seeds, teachers=teachers)
        return summary
    _run_runs(suite, runs, out, rows, device, summary, log, board)
    return summary


def _reusable(run: Run, row: dict[str, Any] | None) -> bool:
    """A row of the same run with the same commands and inputs is there."""
    return row is not None and row.get("argv") == planned_argv(run) and same_inputs(row.get("inputs", {}), run_inputs(run))


# the relative cost of a run, to balance workers: a data-free run synthesizes and distills, KD runs the teacher too
_COST = {"df": 4, "kd": 2, "cond": 2, "scratch": 1}


def _run_in_workers(suite: Suite, runs: list[Run], out: Path, jobs: int, summary: SuiteSummary, log,
                    **kwargs: Any) -> None:
    """Run ``runs`` on ``jobs`` spawned processes, one group of runs per task (runs that share a step, such as
    the hard- and soft-label students of one condensed set, form one group), longest first.

    A free worker takes the next group, so a long data-free run does not hold back cheap runs that a
    fixed split by estimated cost had queued behind it (the main job's second worker sat idle for
    minutes). Each worker uses ``torch.get_num_threads() // jobs`` threads: on a CPU, two
    single-threaded LeNet runs finish about twice as fast as one after the other with two threads each,
    whose small kernels barely use the second core. Rows are appended to results.jsonl under its file
    lock, so the workers share ``out`` as the per-pair processes do.
    """
    import concurrent.futures
    import multiprocessing

    groups: dict[str, list[Run]] = {}  # runs that share a step (a condensed set, MTT's buffer) go to one worker
    owner: dict[Path, str] = {}
    for run in runs:
        key = next((owner[s.out] for s in run.steps if s.out in owner), run.run_id)
        groups.setdefault(key, []).append(run)
        owner.update({s.out: key for s in run.steps})
    if not groups:
        return
    costs = {k: sum(_COST.get(parse_source(r.source).kind, 1) for r in g) for k, g in groups.items()}
    order = sorted(groups, key=lambda k: -costs[k])  # stable: plan order among equals
    # a set made in N parts: N - 1 helper tasks right behind its run, so a free worker makes a part meanwhile
    # (a group's runs, or the part steps of one set a helper may take)
    tasks: list[tuple[list[Run], list[Step]]] = []
    for k in order:
        tasks.append((groups[k], []))
        tasks += [([r], r.steps[first:first + n]) for r in groups[k] for first, n in part_groups(r.steps)
                  for _ in range(n - 1)]
    workers = min(jobs, len(tasks))
    threads = max(1, torch.get_num_threads() // workers)
    log(f"workers: {workers} processes x {threads} threads, taking in turn: "
        + "; ".join(f"a part of {g[0].run_id}'s set" if parts else ", ".join(r.run_id for r in g) for g, parts in tasks))
    context = multiprocessing.get_context("spawn")  # never fork a process whose OpenMP threads are running
    manager = context.Manager() if any(parts for _, parts in tasks) else None
    shared = (manager.dict(), manager.Lock()) if manager is not None else None

    def close_sets(group: list[Run]):  # a worker that stopped, however, lets the helpers waiting on its sets leave
        return lambda _future: [_close_parts(r, PartBoard(*shared)) for r in group]  # type: ignore[misc]

    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = []
            for group, parts in tasks:
                if parts:
                    futures.append(pool.submit(_part_worker, parts, threads, shared))
                    continue
                futures.append(pool.submit(_worker, suite, str(out), [r.run_id for r in group], threads, kwargs,
                                           shared))
                if shared is not None:
                    futures[-1].add_done_callback(close_sets(group))
            for future in futures:
                done = future.result()
                summary.ran += done.ran
                summary.reused += done.reused
                summary.failed += done.failed
    finally:
        if manager is not None:
            manager.shutdown()


def _worker(suite: Suite, out: str, only: list[str], threads: int, kwargs: dict[str, Any],
            shared: tuple[Any, Any] | None) -> SuiteSummary:
    torch.set_num_threads(threads)
    return run_suite(suite, out, only=only, _shared=shared, **kwargs)


def _part_worker(parts: list[Step], threads: int, shared: tuple[Any, Any] | None) -> SuiteSummary:
    """A helper task: make the parts of one set (its part steps) that its owner has not claimed (see
    :mod:`datafree.bench.parts`). A part that fails is reported by the owner, with the run."""
    torch.set_num_threads(threads)
    try:
        (PartBoard(*shared) if shared else PartBoard()).help(parts, lambda step: run_step(step, print))
    except Exception:  # noqa: BLE001 - on the board: the owner, waiting for this part, fails its run with it
        pass
    return SuiteSummary()


def _run_steps(run: Run, log, board: PartBoard) -> list[str]:
    """Run a run's steps in order, what it makes in parts through ``board``; one action per step."""
    actions: list[str] = []
    groups = dict(part_groups(run.steps))
    i = 0
    while i < len(run.steps):
        if i in groups:
            parts = run.steps[i:i + groups[i]]
            actions += board.make_set(parts, lambda step: run_step(step, log), MARKER)
            _merged(parts)
            i += groups[i]
        else:
            actions.append(run_step(run.steps[i], log))
            i += 1
    return actions


def _merged(parts: list[Step]) -> None:
    """The set's manifest once all its parts are made. The part that completes the set writes it; a suite
    stopped just before that, then reusing every part, writes it here."""
    from datafree.synthesis.run import merge_if_complete

    p = parts[0].job.params
    if (Path(p["set"]) / "manifest.json").is_file():
        return
    batch_size = int((method_config(parts[0].job) or {})["batch_size"])
    if merge_if_complete(p["set"], len(parts), p["count"], batch_size, p["seed"]) is None:
        raise DatafreeError(f"{p['set']}: a part is missing images after every part finished")


def _close_parts(run: Run, board: PartBoard) -> None:
    """Helpers waiting for this run's sets leave (it was reused, skipped, or has finished)."""
    for first, _ in part_groups(run.steps):
        board.close(str(run.steps[first].job.params["set"]))


def _run_runs(suite: Suite, runs: list[Run], out: Path, rows: dict[str, dict[str, Any]], device: str | None,
              summary: SuiteSummary, log, board: PartBoard) -> None:
    """Run ``runs`` one after the other in this process; a failed teacher skips its pair's other runs."""
    failed_pairs: set[str] = set()
    for run in runs:
        row = rows.get(run.run_id)
        if _reusable(run, row):
            log(f"reuse  {run.run_id} ({row.get('accuracy')}%)")  # type: ignore[union-attr]
            summary.reused.append(run.run_id)
            _close_parts(run, board)
            continue
        if run.pair.key in failed_pairs:
            log(f"skip   {run.run_id}: the teacher failed")
            summary.failed.append(run.run_id)
            _close_parts(run, board)
            continue
        log(f"run    {run.run_id}")
        start, peak_reset = time.perf_counter(), reset_peak_memory(device)
        try:
            actions = _run_steps(run, log, board)
        except (DatafreeError, torch.cuda.OutOfMemoryError) as e:  # recorded; the suite goes on with the other runs
            if isinstance(e, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            log(f"failed {run.run_id}: {e}")
            append_jsonl(out / FAILURES, {"run_id": run.run_id, "error": str(e), "argv": run.argv, "time": time.time()})
            summary.failed.append(run.run_id)
            if run.source == "teacher":
                failed_pairs.add(run.pair.key)
            continue
        row = make_row(suite, run, actions, rows, time.perf_counter() - start, peak_reset)
        append_jsonl(out / RESULTS, row)
        rows[run.run_id] = row
        summary.ran.append(run.run_id)
        log(f"done   {run.run_id}: {row['accuracy']}% in {row['total_time_s']:.0f}s")
