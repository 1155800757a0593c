"""datafree bench: the smoke suite end to end through the CLI, resumption, the report, and the suites' plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from datafree.bench import SUITES, check_plan, get_suite, parse_source, plan, read_rows, run_suite, skipped_sources
from datafree.bench.runner import finished_run, same_inputs
from datafree.cli import main
from datafree.errors import DatafreeError

ROW_FIELDS = {"suite", "run_id", "pair", "source", "seed", "accuracy", "fraction_of_kd", "synthesis_time_s",
              "condensation_time_s", "distill_time_s", "total_time_s", "wall_time_s", "peak_memory_mb",
              "synthetic_images", "argv", "config", "environment", "kd_time_s", "time_ratio_to_kd"}
PNG = b"\x89PNG\r\n\x1a\n"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory) -> Path:
    """One smoke run shared by the tests below; those that change it leave one row per run behind."""
    from tests.conftest import write_mnist_family

    base = tmp_path_factory.mktemp("bench")
    root = write_mnist_family(base / "fmnist")
    out = base / "out"
    assert main(["bench", "run", "smoke", "--out", str(out), "--data-root", str(root), "--device", "cpu"]) == 0
    return out


def test_smoke_suite_end_to_end(smoke_out, capsys):
    rows = _rows(smoke_out)
    ids = [r["run_id"] for r in rows]
    expected = [r.run_id for r in plan(get_suite("smoke"))]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids)) == 8  # + the random controls at IPC 2
    for row in rows:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert 0 <= row["accuracy"] <= 100 and row["suite"] == "smoke"
        assert row["environment"]["torch"] == torch.__version__
        assert row["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert all(argv[0] == "datafree" for argv in row["argv"])
    by = {r["source"]: r for r in rows}
    assert by["kd"]["fraction_of_kd"] == pytest.approx(1.0) and by["kd"]["kd_time_s"] == by["kd"]["total_time_s"]
    assert by["df:zskd"]["synthetic_images"] == 32 and by["df:zskd"]["synthesis_time_s"] > 0
    assert by["df:zskd"]["fraction_of_kd"] == pytest.approx(by["df:zskd"]["accuracy"] / by["kd"]["accuracy"])
    assert by["df:zskd"]["kd_time_s"] == by["kd"]["total_time_s"]
    assert by["cond:dm:2:soft"]["synthetic_images"] == 20 and by["cond:dm:2:soft"]["condensation_time_s"] > 0
    # hard and soft students share one condensed set
    assert by["cond:dm:2:hard"]["set_dir"] == by["cond:dm:2:soft"]["set_dir"]
    assert by["cond:dm:2:soft"]["config"]["student"]["alpha"] == 0 and by["cond:dm:2:hard"]["config"]["student"]["alpha"] == 1
    assert len(by["df:zskd"]["argv"]) == 2 and by["df:zskd"]["argv"][0][1] == "synthesize"
    assert (smoke_out / "runs" / "tiny" / "df-zskd" / "seed0" / "student" / "result.json").is_file()
    assert (smoke_out / "teachers" / "tiny" / "model.safetensors").is_file()


def test_rerun_skips_everything_and_a_deleted_row_reruns_only_its_run(smoke_out, tmp_path, capsys):
    import shutil

    rows_before = (smoke_out / "results.jsonl").read_text()
    argv = _rows(smoke_out)[0]["argv"][0]
    data_root = argv[argv.index("--data-root") + 1]
    summary = run_suite(get_suite("smoke"), smoke_out, data_root=data_root, device="cpu", log=lambda s: None)
    assert summary.ran == [] and len(summary.reused) == 8
    assert (smoke_out / "results.jsonl").read_text() == rows_before

    backup = tmp_path / "results.jsonl"
    shutil.copy(smoke_out / "results.jsonl", backup)
    try:
        lines = rows_before.splitlines()
        dropped = json.loads(lines[3])["run_id"]
        (smoke_out / "results.jsonl").write_text("\n".join(lines[:3] + lines[4:]) + "\n")
        capsys.readouterr()
        assert main(["bench", "run", "smoke", "--out", str(smoke_out), "--data-root", data_root, "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert "1 runs finished, 7 reused" in out and f"run    {dropped}" in out
        rows = _rows(smoke_out)
        assert len(rows) == 8 and sorted(r["run_id"] for r in rows) == sorted(json.loads(x)["run_id"] for x in lines)
        assert "reuse" in rows[-1]["actions"]  # its finished run directory was reused, not trained again
    finally:
        shutil.copy(backup, smoke_out / "results.jsonl")


def test_half_finished_run_is_resumed(smoke_out):
    """A run interrupted after its last saved epoch (state.pt, no result.json, no row) is resumed, not redone."""
    rows = _rows(smoke_out)
    row = next(r for r in rows if r["source"] == "scratch")
    data_root = row["argv"][0][row["argv"][0].index("--data-root") + 1]
    (Path(row["student_dir"]) / "result.json").unlink()
    (smoke_out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r is not row))
    logs: list[str] = []
    summary = run_suite(get_suite("smoke"), smoke_out, data_root=data_root, device="cpu", log=logs.append)
    assert summary.ran == [row["run_id"]] and len(summary.reused) == 7
    assert any(line.startswith("  resume datafree train-teacher") for line in logs)
    new = _rows(smoke_out)
    assert len(new) == 8 and new[-1]["actions"] == ["resume"] and new[-1]["accuracy"] == row["accuracy"]
    assert json.loads((Path(row["student_dir"]) / "result.json").read_text())["argv"] == row["argv"][0]


def test_a_killed_marker_write_leaves_no_temporary_when_its_finished_run_is_reused(smoke_out):
    """A suite killed while it wrote a finished run's marker (no row yet) reuses the run and clears the temporary."""
    from datafree.bench.runner import MARKER

    rows = _rows(smoke_out)
    row = next(r for r in rows if r["source"] == "scratch")
    data_root = row["argv"][0][row["argv"][0].index("--data-root") + 1]
    stale = Path(row["student_dir"]) / f".{MARKER}.k1ll3d.tmp"  # what io.atomic_path leaves when SIGKILLed
    stale.write_text('{"argv": [')
    (smoke_out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r is not row))
    summary = run_suite(get_suite("smoke"), smoke_out, data_root=data_root, device="cpu", log=lambda s: None)
    assert summary.ran == [row["run_id"]] and _rows(smoke_out)[-1]["actions"] == ["reuse"]
    assert not stale.exists()


def test_report_writes_tables_and_plots(smoke_out, capsys):
    assert main(["bench", "report", str(smoke_out)]) == 0
    md = (smoke_out / "report.md").read_text()
    for source in get_suite("smoke").sources:
        assert f"| {source} |" in md
    assert "Fair metrics (DD-Ranking" in md and "| cond:dm:2:soft |" in md.split("Fair metrics")[1]
    assert "| teacher |" in md and "![accuracy against time](accuracy_vs_time.png)" in md
    csv_lines = (smoke_out / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("pair,pair_name,source") and len(csv_lines) == 1 + 8
    for name in ("accuracy_vs_time.png", "condensation_ipc.png", "synthetic_grid.png"):
        data = (smoke_out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    assert sorted(p.name for p in (smoke_out / "grids").iterdir()) == ["tiny_cond-dm-2.png", "tiny_cond-random-2.png",
                                                                         "tiny_df-zskd.png"]


def test_audit_adds_a_privacy_table_and_is_reused_until_its_runs_change(smoke_out, capsys):
    from datafree.bench.audit import AUDIT_JSON, audit_dir

    data_root = str(smoke_out.parent / "fmnist")
    assert main(["bench", "audit", str(smoke_out), "--data-root", data_root]) == 0
    row = next(r for r in _rows(smoke_out) if r["source"] == "df:zskd")
    audit = json.loads((audit_dir(smoke_out, row) / AUDIT_JSON).read_text())
    assert audit["protocol"]["synthetic_count"] == row["synthetic_images"]
    students = [s["student"] for s in audit["membership_inference"]["students"]]
    assert students == ["data-free student", "real-data KD student"]
    assert main(["bench", "report", str(smoke_out)]) == 0
    md = (smoke_out / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith(f"| {row['pair_name']} | df:zskd | 0 |"))
    assert f"| {row['synthetic_images']} |" in line and line.endswith(("| yes |", "| no |"))
    assert line.count("|") == md.splitlines()[md.splitlines().index(line) - 1].count("|")  # one cell per column
    kd = audit["membership_inference"]["students"][1]
    assert "({:+.3f} [{:+.3f}, {:+.3f}])".format(kd["auc_loss_minus_first"], *kd["auc_loss_minus_first_95"]) in line
    capsys.readouterr()
    assert main(["bench", "audit", str(smoke_out), "--data-root", data_root]) == 0
    assert "reuse" in capsys.readouterr().out
    stale = audit_dir(smoke_out, row) / AUDIT_JSON  # a run redone since: the audit is redone too
    audit["protocol"]["bench_inputs"]["finished_at"] = 0
    stale.write_text(json.dumps(audit))
    assert main(["bench", "audit", str(smoke_out), "--data-root", data_root]) == 0
    assert "audit  tiny/df:zskd/seed0" in capsys.readouterr().out


def test_report_finds_sets_recorded_relative_to_where_the_suite_ran(smoke_out, tmp_path, monkeypatch):
    """bash scripts/main.sh records set paths relative to the repository; a report made from another directory
    (benchmarks/bench_readme.py copying a fresh clone's report) must still show the sets, not "none"."""
    from datafree.bench.report import synthetic_grid

    row = next(r for r in _rows(smoke_out) if r["source"].startswith("cond:dm"))
    relative = Path(row["set_dir"]).resolve().relative_to(smoke_out.resolve().parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    groups = [{"pair": "tiny", "kind": "cond", "method": "dm", "ipc": 2, "set_dir": str(relative)}]
    assert synthetic_grid(groups, smoke_out, tmp_path / "grid.png") == ["tiny cond:dm:2"]


def test_a_grown_source_keeps_its_batches_and_the_grid_shows_them(smoke_out, tmp_path):
    """df:<stored>+<live>: the batches made against the student are images it learnt from, so the run keeps them
    (--save-transfer RUN/grown), the row records them and the report's grid shows them next to the stored set. A run
    made again replaces them (live runs never resume), rather than failing on a non-empty directory."""
    from dataclasses import replace

    from datafree.bench.report import synthetic_grid
    from datafree.data.transfer import read_manifest

    smoke = get_suite("smoke")
    tiny = ("--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--alpha", "0")
    suite = replace(smoke, pairs=[replace(smoke.pairs[0], sources=("df:zskd+fast5",))],
                    recipes=replace(smoke.recipes, df_grown_student=tiny,
                                    df_method_scale={**smoke.recipes.df_method_scale,
                                                     "fast5": {"student_steps": 1, "iterations": 1}}))
    out, root = tmp_path / "out", smoke_out.parent / "fmnist"
    teachers = smoke_out / "teachers"
    run_suite(suite, out, data_root=root, device="cpu", teachers=teachers, log=lambda *_: None)
    row = next(r for r in _rows(out) if r["source"] == "df:zskd+fast5")
    grown = Path(row["grown_dir"])
    assert grown.name == "grown" and read_manifest(grown)["count"] == 2 * 16  # 2 steps, one batch each
    assert row["synthetic_images"] == read_manifest(row["set_dir"])["count"] + 2 * 16  # every image it learnt from
    groups = [{"pair": "tiny", "kind": "df", "method": "zskd", "source": "df:zskd+fast5", "set_dir": row["set_dir"],
               "grown_dir": row["grown_dir"]}]
    assert synthetic_grid(groups, out, tmp_path / "grid.png") == ["tiny df:zskd", "tiny df:zskd+fast5: grown"]
    changed = replace(suite, recipes=replace(suite.recipes, df_grown_student=(*tiny, "--lr", "0.02")))
    lines: list[str] = []  # a changed student recipe: the run is made again, and its batches with it
    summary = run_suite(changed, out, data_root=root, device="cpu", teachers=teachers, log=lines.append)
    assert any(line.strip().startswith("run    datafree distill") and "--save-transfer" in line for line in lines)
    assert not summary.failed, lines
    assert read_manifest(grown)["count"] == 2 * 16
    row = [r for r in _rows(out) if r["source"] == "df:zskd+fast5"][-1]
    assert row["config"]["student"]["lr"] == 0.02
    # the privacy audit covers both: the stored set and the batches made against the student
    from datafree.bench.audit import AUDIT_JSON, audit_dir, audit_suite

    audit_suite(out, data_root=root, log=lambda *_: None)
    audit = json.loads((audit_dir(out, row) / AUDIT_JSON).read_text())
    assert audit["protocol"]["synthetic_count"] == 32 + 2 * 16 and audit["transfer"]["method"] == "zskd+fast5"


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datafree: error: no finished runs") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "run", "--help"], ["bench", "report", "--help"],
                                  ["bench", "list", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage: datafree bench" in capsys.readouterr().out


def test_list_prints_every_suite(capsys):
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    for name in SUITES:
        assert f"{name}: " in out
    assert "minutes" in out  # the quick suite states its time estimate


def test_user_errors(tmp_path, capsys):
    assert main(["bench", "run", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert main(["bench", "run", "quick", "--out", str(tmp_path / "o"), "--teachers", str(tmp_path)]) == 2
    assert "no teacher for LeNet-5" in capsys.readouterr().err
    for bad in ("df:nope", "cond:dm:x:soft", "cond:dm:10:warm", "real", "df:zskd+nope", "df:dfad+fast5",
                "df:deepinversion+dafl", "df:zskd+fast5+adi"):
        with pytest.raises(DatafreeError):
            parse_source(bad)


def test_two_stage_source_plans_a_stored_set_grown_live(tmp_path):
    """df:<stored>+<live>: synthesize with the first preset, then distill from that set while the second grows it."""
    from dataclasses import replace

    src = parse_source("df:deepinversion+fast5")
    assert (src.kind, src.method, src.grow, src.dirname) == ("df", "deepinversion", "fast5", "df-deepinversion+fast5")
    smoke = get_suite("smoke")
    suite = replace(smoke, pairs=[replace(smoke.pairs[0], sources=("kd", "df:deepinversion+fast5", "df:zskd+fast5"))])
    runs = {r.source: r for r in plan(suite, tmp_path)}
    check_plan(list(runs.values()))
    synth, distill = runs["df:deepinversion+fast5"].argv
    assert synth[1] == "synthesize" and synth[synth.index("--method") + 1] == "deepinversion"
    assert distill[1] == "distill" and distill[distill.index("--method") + 1] == "fast5"
    assert distill[distill.index("--transfer") + 1] == synth[synth.index("--out") + 1]
    # a BN-free stored preset grown by a BN preset needs a BN teacher all the same
    lenet = replace(smoke.pairs[0], teacher="lenet5", teacher_kwargs={}, sources=("df:zskd+fast5", "df:zskd"))
    assert [r.source for r in plan(replace(smoke, pairs=[lenet]), tmp_path) if r.source != "teacher"] == ["df:zskd"]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_suites_plan_valid_commands(name, cifar10_root, tmp_path):
    from datafree.data import CIFAR10, dataset_spec, load_dataset
    from datafree.models import build_model

    suite = get_suite(name)
    runs = plan(suite, tmp_path / "out", data_root=cifar10_root, device="cuda")
    check_plan(runs)  # every command parses and every synthesis/condensation config builds
    sources = {r.source for r in runs}
    assert {"kd", "scratch", "df:fast5", "df:deepinversion", "cond:mtt:50:hard", "cond:teacher:1:soft"} <= sources
    assert len(runs) == len(suite.pairs) * (1 + len(suite.all_sources()) * len(suite.seeds)) and not skipped_sources(suite)
    kinds = {r.pair.key: {s.kind for run in runs if run.pair is r.pair for s in run.steps} for r in runs}
    assert all(k == {"train", "synthesize", "condense", "buffer"} for k in kinds.values())
    teacher = next(r for r in runs if r.source == "teacher")
    assert teacher.argv[0][:2] == ["datafree", "train-teacher"] and "200" in teacher.argv[0]
    assert all(["--dataset", name] == a[a.index("--dataset"):a.index("--dataset") + 2]
               for r in runs for a in r.argv if "--dataset" in a)
    # the pairs' models build for CIFAR-10's DataSpec and run on the tiny written CIFAR files
    train = load_dataset("cifar10", "train", cifar10_root)
    spec = dataset_spec(train)
    assert spec.shape == CIFAR10.shape
    x = torch.stack([train[i][0] for i in range(2)])
    for pair in suite.pairs:
        for arch, kwargs in ((pair.teacher, pair.teacher_kwargs), (pair.student, pair.student_kwargs)):
            model = build_model(arch, spec, seed=0, **kwargs).eval()
            with torch.no_grad():
                assert model(x).shape == (2, 10)


def test_fmnist_suites_plan(tmp_path):
    quick = plan(get_suite("quick"), tmp_path)
    assert [r.source for r in quick] == ["teacher", "kd", "scratch", "df:deepinversion+adi", "cond:dm:10:hard",
                                         "cond:random:10:hard", "cond:teacher:10:soft", "cond:random:10:soft",
                                         "cond:teacher:10:hard"]  # + each condensed set's controls
    grown = " ".join(next(r for r in quick if r.source == "df:deepinversion+adi").argv[-1])
    # the main job's data-free recipe: BN statistics + adversarial competition, one ADI batch per 200 of 6000
    # student steps, on crop-flip views mixed by mixup
    assert "--method adi" in grown and "student_steps=200" in grown and "--augment crop-flip" in grown
    assert "--epochs 30 --steps-per-epoch 200" in grown and "--mix mixup" in grown
    assert "--inherit" in grown  # the student starts from a selection of the teacher's weights
    # the set is Fourier pixels (garment silhouettes for the report's grid), the batches grown against the student
    # raw pixels (Fourier growth cost the student 1.2 points; benchmarks/datafree_levers); those batches are kept
    synth = " ".join(next(r for r in quick if r.source == "df:deepinversion+adi").argv[0])
    assert 'pixel_param="fourier"' in synth and "pixel_param" not in grown
    assert f"--save-transfer {tmp_path / 'runs' / 'lenet-bn' / 'df-deepinversion+adi' / 'seed0' / 'grown'}" in grown
    kd = " ".join(next(r for r in quick if r.source == "kd").argv[-1])
    assert "--inherit" not in kd  # the real-data references start from random weights, as published
    assert [r.run_id for r in quick][1] == "lenet-bn/kd/seed0"
    assert not skipped_sources(get_suite("quick"))  # the main job's teacher has BatchNorm: every source runs
    full = get_suite("full")
    assert not skipped_sources(full)  # each pair lists only what its teacher supports
    by_pair = {p.key: set(full.sources_of(p)) for p in full.pairs}
    assert {"df:deepinversion", "df:fast5", "cond:teacher:10:soft"} <= by_pair["resnet"] - by_pair["lenet"]
    # every preset and every condensation method at every IPC with both label kinds, on some pair
    assert set(full.all_sources()) == set(full.sources) and len(full.seeds) >= 3
    runs = plan(full.with_seeds([0]), tmp_path)
    check_plan(runs)
    assert {r.seed for r in runs if r.source != "teacher"} == {0}
    # per-IPC recipes: DC updates its images 50 times per iteration at IPC 50, so it runs fewer iterations
    dc = {r.source: r.steps[0].argv for r in runs if r.source.startswith("cond:dc:")}
    assert "iterations=50" in dc["cond:dc:1:hard"] and "iterations=1" in dc["cond:dc:50:hard"]
    # the recipes are benchmarks/'s: the zskd student command matches its recorded one
    zskd = next(r for r in runs if r.run_id == "lenet/df:zskd/seed0")
    assert zskd.argv[1][zskd.argv[1].index("--student"):zskd.argv[1].index("--seed")] == [
        "--student", "lenet5_half", "--epochs", "40", "--batch-size", "128", "--alpha", "0", "--lr", "0.01",
        "--augment", "crop-flip", "--clip-grad-norm", "5", "--temperature", "4"]


def test_teachers_dir_is_reused(smoke_out, tmp_path):
    runs = plan(get_suite("smoke"), tmp_path / "o", teachers=smoke_out / "teachers")
    assert runs[0].steps == [] and runs[0].directory == smoke_out / "teachers" / "tiny"
    teachers = {a[a.index("--teacher") + 1] for run in runs for a in run.argv if "--teacher" in a}
    assert teachers == {str(smoke_out / "teachers" / "tiny")}
    assert not any(s.out.is_relative_to(tmp_path / "o" / "teachers") for run in runs for s in run.steps)


def test_read_rows_ignores_a_torn_line_and_keeps_the_last_row(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"run_id": "a", "x": 1}\n{"run_id": "a", "x": 2}\n{"run_id": "b"')
    assert read_rows(tmp_path) == [{"run_id": "a", "x": 2}]


def test_changed_recipes_and_teacher_redo_what_depends_on_them(fmnist_root, tmp_path, monkeypatch):
    from dataclasses import replace

    smoke, out = get_suite("smoke"), tmp_path / "out"
    quiet = {"data_root": fmnist_root, "device": "cpu", "log": lambda s: None}
    assert len(run_suite(smoke, out, **quiet).ran) == 8
    # a larger stored set: the set is made again (not extended), and its student distilled again
    bigger = replace(smoke, recipes=replace(smoke.recipes, df_count=48))
    summary = run_suite(bigger, out, **quiet)
    assert summary.ran == ["tiny/df:zskd/seed0"] and len(summary.reused) == 7
    row = read_rows(out)[-1]
    assert row["synthetic_images"] == 48 and row["actions"] == ["run", "run"]
    # another teacher: every run that uses it is redone, including the shared condensed set
    pair = replace(bigger.pairs[0], teacher_args=("--epochs", "2", *bigger.pairs[0].teacher_args[2:]))
    summary = run_suite(replace(bigger, pairs=[pair]), out, **quiet)
    assert len(summary.ran) == 7 and summary.reused == ["tiny/scratch/seed0"]  # scratch does not read the teacher
    rows = {r["source"]: r for r in read_rows(out)}
    assert rows["cond:dm:2:hard"]["actions"] == ["run", "run"] and rows["cond:dm:2:soft"]["actions"] == ["reuse", "run"]
    assert len({r["inputs"].get("teacher") for r in rows.values() if r["source"] != "teacher"} - {None}) == 1
    # a changed preset default (not visible in any command): only the runs of that preset are redone
    from dataclasses import replace as replace_method

    from datafree.synthesis.presets import METHODS

    zskd = METHODS["zskd"]
    monkeypatch.setitem(METHODS, "zskd", replace_method(zskd, preset={**zskd.preset, "oh_temperature": 10.0}))
    summary = run_suite(replace(bigger, pairs=[pair]), out, **quiet)
    assert summary.ran == ["tiny/df:zskd/seed0"] and len(summary.reused) == 7


def test_records_without_a_method_fingerprint_are_judged_without_it():
    now = {"teacher": "abc", "method_config": "0123"}
    assert same_inputs({"teacher": "abc"}, now)  # written before the fingerprint existed
    assert not same_inputs({"teacher": "abc", "method_config": "4567"}, now)
    assert not same_inputs({"teacher": "xyz"}, now)


def test_a_finished_run_of_a_teacher_since_retrained_in_place_is_not_reused(tmp_path):
    teacher, out = tmp_path / "teacher", tmp_path / "run"
    teacher.mkdir(), out.mkdir()
    (teacher / "model.json").write_text(json.dumps({"sha256": "aaa"}))
    argv = ["distill", "--teacher", str(teacher)]
    result = {"argv": ["datafree", *argv], "teacher": {"path": str(teacher), "sha256": "aaa"}}
    (out / "result.json").write_text(json.dumps(result))
    assert finished_run(out, argv) == result
    assert finished_run(out, [*argv, "--seed", "1"]) is None  # another command
    (teacher / "model.json").write_text(json.dumps({"sha256": "bbb"}))  # the teacher was retrained
    assert finished_run(out, argv) is None


def test_run_suite_rejects_an_unknown_pair(tmp_path):
    with pytest.raises(DatafreeError, match="no pair nope; its pairs: tiny"):
        run_suite(get_suite("smoke"), tmp_path, pairs=["nope"], log=lambda s: None)


def _append_rows(path, tag, n):
    from datafree.io import append_jsonl

    for i in range(n):
        append_jsonl(path, {"run_id": f"{tag}{i}", "pad": "x" * 20000})


def test_concurrent_appends_from_two_processes_keep_every_line_whole(tmp_path):
    import multiprocessing

    path = tmp_path / "results.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_rows, args=(path, tag, 100)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert len(lines) == 200 and len({json.loads(line)["run_id"] for line in lines}) == 200


def test_jobs_run_the_teacher_first_then_workers_share_the_rest(tmp_path):
    """--jobs 2: the teacher in this process, the other runs in two spawned workers with half the threads each."""
    from tests.conftest import write_mnist_family

    root = write_mnist_family(tmp_path / "fmnist")
    out = tmp_path / "out"
    summary = run_suite(get_suite("smoke"), out, data_root=root, device="cpu", jobs=2, log=lambda *_: None)
    rows = {r["run_id"]: r for r in read_rows(out)}
    expected = [r.run_id for r in plan(get_suite("smoke"))]
    assert sorted(rows) == sorted(expected) and not summary.failed
    assert sorted(summary.ran) == sorted(expected)
    threads = {r["source"]: r["environment"]["threads"] for r in rows.values()}
    assert threads.pop("teacher") == torch.get_num_threads()
    assert set(threads.values()) == {max(1, torch.get_num_threads() // 2)}
    # a second call reuses every run, in this process
    again = run_suite(get_suite("smoke"), out, data_root=root, device="cpu", jobs=2, log=lambda *_: None)
    assert sorted(again.reused) == sorted(expected) and not again.ran
    with pytest.raises(DatafreeError, match="--jobs"):
        run_suite(get_suite("smoke"), out, data_root=root, jobs=0)


@pytest.mark.parametrize("name", ["smoke", "quick", "full", "cifar10"])
def test_every_planned_job_is_the_command_it_records(name, tmp_path):
    """The bench runs each step as a library call (a Job) and records it as a command; parsed by the
    real CLI, every command builds the same training, synthesis, condensation and buffer settings."""
    import sys

    from datafree.bench import jobs
    from datafree.cli import _distill_config, _train_config, build_parser
    from datafree.condense import method_config
    from datafree.synthesis import preset

    parser = build_parser()
    suite = get_suite(name).with_seeds([0])
    steps = [s for run in plan(suite, tmp_path, device="cpu") for s in run.steps]
    assert {s.job.name for s in steps} >= {"train-teacher", "distill"}
    for step in steps:
        args, p = parser.parse_args(step.argv), step.job.params
        if step.part is not None:  # part K of a set made in parts: the command names the set, the step its rank-K
            assert args.part == step.part and args.out == p["set"] and step.out == Path(p["set"]) / f"rank-{step.part[0]}"
        else:
            assert str(step.out) == args.out and "part" not in p
        assert args.command == step.job.name
        if step.job.name == "train-teacher":
            assert jobs.train_config("train-teacher", p["flags"], seed=p["seed"], device="cpu") == _train_config(args)
            assert (args.arch, args.arch_kwargs) == (p["arch"], p["arch_kwargs"])
        elif step.job.name == "distill":
            expected = _distill_config(args)
            assert jobs.train_config("distill", p["flags"], seed=p["seed"], device="cpu", method=p["method"]) == expected
            assert (args.student, args.student_kwargs, args.method) == (p["student"], p["student_kwargs"], p["method"])
            assert (args.transfer or [None]) == [p["transfer"]]
            assert args.teacher == (p["teacher"] or {}).get("path")
            assert args.inherit == p.get("inherit", False)
            assert args.save_transfer == p.get("save_transfer")
        elif step.job.name == "buffer":
            fields = jobs.buffer_fields(p["flags"])
            assert fields == {k: getattr(args, k) for k in fields}
        if step.job.name in ("synthesize", "condense") or (step.job.name == "distill" and args.method):
            overrides = dict(args.set or [])
            cli = (method_config(args.method, ipc=args.ipc, **overrides) if args.command == "condense"
                   else preset(args.method, **overrides))
            assert jobs.method_config(step.job) == cli.to_dict()
    assert "datafree.cli" in sys.modules  # this test imports it; datafree.bench itself does not (below)


def test_the_bench_does_not_import_the_cli():
    import subprocess
    import sys

    code = "import datafree.bench, sys; assert 'datafree.cli' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_paired_comparison_and_intervals_across_seeds():
    """scipy.stats: a t interval of the mean, and a paired t-test of a source against KD by seed."""
    from datafree.bench.report import compare, comparison_table, kd_comparisons, summarize
    from datafree.bench.stats import confidence_interval

    assert confidence_interval([1.0]) is None and confidence_interval([2.0, 2.0]) == (2.0, 2.0)
    low, high = confidence_interval([88.1, 89.3, 88.7])
    assert low < 88.7 < high and high - 88.7 == pytest.approx(88.7 - low)
    rows = [{"pair": "p", "pair_name": "P", "source": s, "kind": s.split(":")[0], "seed": seed, "accuracy": acc,
             "run_id": f"p/{s}/seed{seed}"}
            for s, accs in (("kd", (88.1, 89.3, 88.7)), ("df:zskd", (80.0, 81.5, 79.0)), ("scratch", (88.6, 89.0, 89.1)))
            for seed, acc in enumerate(accs)]
    worse = compare(rows, "p", "df:zskd", "kd")
    assert worse.n == 3 and worse.mean_difference == pytest.approx(-8.5333, abs=1e-3)
    assert worse.p_value < 0.01 and worse.interval[1] < 0 and worse.verdict == "kd better"
    tie = compare(rows, "p", "scratch", "kd")
    assert tie.verdict == "no significant difference" and tie.p_value > 0.05
    groups = summarize(rows, ["kd", "scratch", "df:zskd"])
    assert all(g["accuracy_ci95_low"] < g["accuracy_mean"] < g["accuracy_ci95_high"] for g in groups)
    table = comparison_table(kd_comparisons(rows, groups))
    assert "| P | df:zskd | 3 | -8.53 |" in table and "kd better" in table
    assert compare(rows[:2], "p", "df:zskd", "kd").verdict == "too few seeds to tell"


def test_recipe_flags_named_unlike_their_field_build_the_cli_config():
    """--hint, --rkd-distance, --rkd-angle and --relation-layers: the recipe reads them as the CLI does."""
    from datafree.bench import jobs
    from datafree.cli import _distill_config, build_parser

    flags = ["--hint", "fc:fc", "--hint-weight", "0.5", "--rkd-distance", "25", "--rkd-angle", "50",
             "--relation-layers", "features:features", "--alpha", "0"]
    args = build_parser().parse_args(["distill", "--teacher", "t", "--out", "o", "--seed", "0", "--no-progress", *flags])
    assert jobs.train_config("distill", flags, seed=0, device="cpu", method=None) == _distill_config(args)
    with pytest.raises(DatafreeError, match="STUDENT_MODULE:TEACHER_MODULE"):
        jobs.train_fields(["--hint", "fc"])
