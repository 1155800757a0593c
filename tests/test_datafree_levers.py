"""benchmarks.datafree_levers: paired differences against the base row, and the fraction of KD."""

import json

import datafree.data.transfer as transfer
from benchmarks.datafree_levers import LEVERS, MAIN_JOB_ROW, RECIPE_ROWS, recipe_levers_table, set_dir, table
from datafree.data.transfer import FORMAT


def _run(accuracy: float) -> dict:
    return {"metrics": {"test_accuracy": accuracy, "wall_time_s": 10.0}, "synthesis_time_s": 5.0}


def test_table_pairs_rows_by_seed_and_divides_by_kd():
    runs = {"kd": {0: _run(90.0), 1: _run(90.0)},
            "base": {0: _run(70.0), 1: _run(74.0)},
            "dsa": {0: _run(73.0), 1: _run(76.0), 2: _run(99.0)}}  # seed 2 has no base: not paired
    text = table(runs)
    dsa = next(line for line in text.splitlines() if line.startswith("| dsa |"))
    cells = [c.strip() for c in dsa.strip("|").split("|")]
    assert cells[3] == "+2.50 ± 0.71"  # (3 + 2) / 2, std of (3, 2)
    assert cells[4] == f"{(73 + 76 + 99) / 3 / 90:.3f}"
    assert cells[-1] == "3"
    assert "| kd |" in text and "synthesis (s)" in text
    assert "synthesis (s)" not in table(runs, compact=True)


def test_student_only_levers_share_the_base_set(tmp_path):
    assert set_dir(tmp_path, "dsa", 1) == set_dir(tmp_path, "base", 1)
    assert set_dir(tmp_path, "real-dsa", 1) == set_dir(tmp_path, "real", 1)
    assert set_dir(tmp_path, "dirichlet", 1) != set_dir(tmp_path, "base", 1)
    assert all(not lv.real or not lv.synthesis for lv in LEVERS.values())


def test_a_clean_root_keeps_the_published_rows(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    monkeypatch.setattr(levers, "published", lambda stem: {"runs": {"base": {"0": _run(70.0)}}})
    assert levers.finished(tmp_path) == {"base": {0: _run(70.0)}}


def test_levers_are_compared_on_the_selection_split_too():
    def run(test: float, chosen: float | None) -> dict:
        return {**_run(test), "selection_accuracy": chosen}

    runs = {"base": {0: run(70.0, 75.0), 1: run(74.0, 77.0)},
            "dsa": {0: run(73.0, 74.0), 1: run(76.0, None)},  # seed 1's model is gone: only seed 0 pairs
            "real": {0: run(84.0, 90.0)}}
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table(runs, compact=True).splitlines()[2:]}
    assert rows["dsa"][5] == "-1.00"  # 74 - 75, on the selection split
    assert rows["real"][5] == ""  # a real-image control trains on training images: not comparable there


def test_the_selection_split_is_seeded_and_disjoint_from_test(monkeypatch):
    import torch
    from torch.utils.data import TensorDataset

    import benchmarks.selection as selection

    train = TensorDataset(torch.arange(50_000).float(), torch.zeros(50_000))
    monkeypatch.setattr(selection, "load_dataset", lambda name, split: train if split == "train" else None)
    selection.selection_split.cache_clear()
    first = selection.selection_split("toy").indices
    selection.selection_split.cache_clear()
    assert selection.selection_split("toy").indices == first  # the same images every time
    assert len(first) == selection.SELECTION_SIZE
    # pinned: the published levers' selection accuracies were measured on exactly these images (seed 17's draw)
    assert first[:5] == [26559, 45200, 43909, 24314, 41322]
    selection.selection_split.cache_clear()


def test_a_lever_of_another_preset_makes_its_own_set_with_that_preset(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    calls: list[list[str]] = []
    monkeypatch.setattr(levers, "call", lambda argv: calls.append(argv))
    levers.make_set(tmp_path, "nayer", 2, tmp_path / "teacher", [])
    levers.make_set(tmp_path, "lr0.25", 2, tmp_path / "teacher", [])
    nayer, pixels = (" ".join(argv) for argv in calls)
    assert "--method nayer --count 2560" in nayer and "iterations=100" not in nayer and "--set adv=0.0" in nayer
    assert "--method deepinversion" in pixels and "--set lr=0.25" in pixels
    assert set_dir(tmp_path, "nayer", 2) != set_dir(tmp_path, "base", 2)
    assert set_dir(tmp_path, "nayer-adi-grown-100", 2) == set_dir(tmp_path, "nayer", 2)  # a student on its sets


def test_a_set_cut_short_is_resumed_and_a_lever_can_set_its_image_count(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    calls: list[list[str]] = []
    monkeypatch.setattr(levers, "call", lambda argv: calls.append(argv))
    tset = set_dir(tmp_path, "inherit-n640-i400", 0)
    tset.mkdir(parents=True)
    (tset / "manifest.json").write_text(json.dumps({"format": FORMAT, "count": 512}))
    levers.make_set(tmp_path, "inherit-n640-i400", 0, tmp_path / "teacher", [])
    argv = calls[0]
    assert "--resume" in argv and argv[len(argv) - 1 - argv[::-1].index("--count") + 1] == "640"  # the last wins
    (tset / "manifest.json").write_text(json.dumps({"format": FORMAT, "count": 640}))
    levers.make_set(tmp_path, "inherit-n640-i400", 0, tmp_path / "teacher", [])
    assert len(calls) == 1  # finished: reused


def test_a_set_from_a_teacher_retrained_in_place_is_made_again(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    calls: list[list[str]] = []
    monkeypatch.setattr(levers, "call", lambda argv: calls.append(argv))
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.json").write_text(json.dumps({"sha256": "new"}))
    tset = set_dir(tmp_path, "inherit", 0)
    tset.mkdir(parents=True)
    (tset / "manifest.json").write_text(json.dumps({"format": FORMAT, "count": 2560, "teacher": {"sha256": "new"}}))
    levers.make_set(tmp_path, "inherit", 0, teacher, [])
    assert calls == []  # same teacher, finished: reused
    (teacher / "model.json").write_text(json.dumps({"sha256": "retrained"}))
    levers.make_set(tmp_path, "inherit", 0, teacher, [])
    assert len(calls) == 1 and "--resume" not in calls[0] and not tset.exists()  # removed, made from scratch


def test_more_seeds_of_the_same_recipe_join_the_published_row(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    def run(seed: int, accuracy: float, lr: str = "0.01") -> dict:
        argv = ["datafree", "distill", "--transfer", f"sets/base-seed{seed}", "--lr", lr, "--seed", str(seed),
                "--out", f"levers/base-seed{seed}"]
        return {**_run(accuracy), "argv": argv}

    monkeypatch.setattr(levers, "published", lambda stem: {"runs": {"base": {"0": run(0, 70.0), "1": run(1, 71.0)}}})
    monkeypatch.setattr(levers, "selection_accuracy", lambda path: None)
    monkeypatch.setattr(transfer, "read_manifest", lambda path: {})
    (tmp_path / "levers" / "base-seed2").mkdir(parents=True)
    (tmp_path / "levers" / "base-seed2" / "result.json").write_text(json.dumps(run(2, 72.0)))
    assert sorted(levers.finished(tmp_path)["base"]) == [0, 1, 2]  # seed 2 added to the published seeds 0-1
    (tmp_path / "levers" / "base-seed2" / "result.json").write_text(json.dumps(run(2, 72.0, "0.03")))
    assert sorted(levers.finished(tmp_path)["base"]) == [2]  # another recipe: the local row replaces the published
    retrained = {**run(2, 72.0), "teacher": {"sha256": "bc1112af"}}
    (tmp_path / "levers" / "base-seed2" / "result.json").write_text(json.dumps(retrained))
    assert sorted(levers.finished(tmp_path)["base"]) == [2]  # the same command on another teacher file: not merged
    assert levers.teacher_files(levers.finished(tmp_path)) == "bc1112af"
    seen: list[str] = []
    monkeypatch.setattr(levers, "published", lambda stem: seen.append(stem) or {})
    levers.finished(tmp_path, "datafree_levers_teacherbc1112af")
    assert seen == ["datafree_levers_teacherbc1112af"]  # --results: that table's published rows, not the default's


def test_a_table_without_a_base_row_pairs_with_the_main_jobs_recipe():
    from benchmarks.datafree_levers import MAIN_JOB_ROW

    random_start = f"{MAIN_JOB_ROW}-random-start"
    runs = {"kd": {0: _run(90.0)}, MAIN_JOB_ROW: {0: _run(85.0), 1: _run(84.0)},
            random_start: {0: _run(81.0), 1: _run(82.0)}}
    text = table(runs)
    assert f"vs {MAIN_JOB_ROW} (paired)" in text.splitlines()[0]
    row = next(line for line in text.splitlines() if line.startswith(f"| {random_start} |"))
    assert [c.strip() for c in row.strip("|").split("|")][3] == "-3.00 ± 1.41"  # (-4, -2)
    assert "vs base (paired)" in table({**runs, "base": {0: _run(70.0)}}).splitlines()[0]


def test_a_fitted_start_lever_starts_its_student_from_the_fit_not_from_weight_selection(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    lever = f"{levers.MAIN_JOB_ROW}-fitted-start"
    monkeypatch.setattr(levers, "make_set", lambda root, name, seed, teacher, data: set_dir(root, name, seed))
    starts: list[tuple] = []
    monkeypatch.setattr(levers, "make_fitted_start",
                        lambda root, name, seed, teacher, tset: starts.append((name, seed, tset)) or tmp_path / "start")
    ran: list[list[str]] = []
    monkeypatch.setattr(levers, "run", lambda argv, out: ran.append(argv) or {})
    levers.run_lever(tmp_path, lever, 1, tmp_path / "teacher", [])
    argv = ran[0]
    assert "--inherit" not in argv and argv[argv.index("--student-init") + 1] == str(tmp_path / "start")
    assert starts == [(lever, 1, set_dir(tmp_path, levers.LEVERS[lever].set_of, 1))]  # fitted on its own set
    # the per-seed start path is masked like the set's, so seeds of one row are one recipe
    other = [*argv]
    other[argv.index("--student-init") + 1] = "elsewhere"
    assert levers.recipe({"argv": argv}) == levers.recipe({"argv": other})


def test_a_lever_with_more_sets_makes_and_reads_each_and_counts_their_synthesis(tmp_path, monkeypatch):
    import benchmarks.datafree_levers as levers

    lever = "fourier-parts2-detour+pairs-raw-adi-grown-200-long-mixup-rkd-distance"
    made: list[str] = []
    monkeypatch.setattr(levers, "make_set",
                        lambda root, name, seed, teacher, data: made.append(name) or set_dir(root, name, seed))
    ran: list[list[str]] = []
    monkeypatch.setattr(levers, "run", lambda argv, out: ran.append(argv) or {})
    levers.run_lever(tmp_path, lever, 3, tmp_path / "teacher", [])
    detour, pairs = (set_dir(tmp_path, name, 3) for name in ("inherit-fourier-parts2-detour", "inherit-fourier-parts2-pairs"))
    assert made == [lever, "inherit-fourier-parts2-pairs"]  # the first resolves to its set_of's set
    argv = ran[0]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--transfer"] == [str(detour), str(pairs)]
    # the table's synthesis time is both sets', read from the student's recorded transfers
    out = tmp_path / "levers" / f"{lever}-seed3"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({**_run(85.0), "argv": ["datafree", *argv],
                                                 "transfer": str(detour), "transfers": [str(detour), str(pairs)]}))
    monkeypatch.setattr(levers, "published", lambda stem: {})
    monkeypatch.setattr(levers, "selection_accuracy", lambda path: None)
    seconds = {str(detour): 100.0, str(pairs): 30.0}
    monkeypatch.setattr(transfer, "read_manifest", lambda path: {"path": str(path)})
    monkeypatch.setattr(transfer, "synthesis_seconds", lambda manifest: seconds[manifest["path"]])
    assert levers.finished(tmp_path)[lever][3]["synthesis_time_s"] == 130.0


def test_a_teacher_from_another_seed_trains_only_into_its_own_table(tmp_path, monkeypatch):
    import pytest

    import benchmarks.datafree_levers as levers

    assert levers.teacher_command() == levers.TEACHER
    other, report = levers.teacher_command(3), levers.report
    assert other[:-1] == levers.TEACHER[:-1] and other[other.index("--seed") + 1] == "3"
    with pytest.raises(SystemExit):  # the published table is seed 0's teacher: another needs its own stem
        levers.main(["--teacher-seed", "3", "--root", str(tmp_path)])
    trained = []
    monkeypatch.setattr(levers, "run", lambda argv, out: trained.append(argv) or {"metrics": {"test_accuracy": 80.0}})
    monkeypatch.setattr(levers, "run_lever", lambda *a: {"metrics": {"test_accuracy": 80.0}})
    monkeypatch.setattr(levers, "finished", lambda *a: {})
    monkeypatch.setattr(levers, "report", lambda *a: "")
    monkeypatch.setattr(levers, "publish", lambda *a, **k: None)
    levers.main(["--teacher-seed", "3", "--root", str(tmp_path), "--levers", "base", "--seeds", "0",
                 "--results", "tmp_teacher_seed3"])
    assert trained[0][:len(other)] == list(other)
    assert "--teacher-seed 3" in report({}, "tmp_teacher_seed3", 3)  # the table says which teacher it used
    assert " ".join(other) in report({}, "tmp_teacher_seed3", 3)
    assert "--teacher-seed" not in report({}, "tmp_teacher_seed3")


def test_the_readme_table_pairs_each_lever_with_the_recipe_per_teacher_file_and_bolds_only_a_clean_win():
    def run(test: float, chosen: float) -> dict:
        return {**_run(test), "selection_accuracy": chosen}

    assert all(name in LEVERS for name, _ in RECIPE_ROWS)
    (up, up_change), (mixed, mixed_change), (absent, absent_change) = RECIPE_ROWS[:3]
    recipe = {s: run(80.0, 81.0) for s in range(3)}
    files = {"A": {MAIN_JOB_ROW: recipe,
                   up: {s: run(81.0, 82.0) for s in range(3)},  # every seed up on both splits
                   mixed: {0: run(82.0, 80.0), 1: run(81.0, 82.0), 2: run(81.0, 82.0)}},  # seed 0 down on selection
             "B": {MAIN_JOB_ROW: recipe, up: {0: run(79.0, 80.0)}}}
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in recipe_levers_table(files).splitlines()[2:]}
    assert rows[up_change][1:3] == ["**+1.00 ± 0.00 / +1.00 ± 0.00 (3)**", "-1.00 / -1.00 (1)"]
    assert rows[mixed_change][1:3] == ["+1.33 ± 0.58 / +0.33 ± 1.15 (3)", ""]  # not bold: a seed is down
    assert absent_change not in rows  # a lever with no run on any file has no row
