"""benchmarks.datafree_families: the same recipe on other teacher families, gap paired by seed, time ratio."""

from benchmarks.baselines import PAIRS
from benchmarks.datafree_families import report
from datafree.bench.suites import FMNIST_FAMILY_PAIRS, FMNIST_PAIRS


def _run(accuracy: float, train_s: float = 100.0, wall_s: float = 300.0, synth_s: float = 200.0) -> dict:
    return {"metrics": {"test_accuracy": accuracy, "train_time_total_s": train_s, "wall_time_s": wall_s},
            "synthesis_time_s": synth_s}


def _baselines(name: str, teacher: float, kd: list[float]) -> dict:
    return {"pair": name, "teacher": {"metrics": {"test_accuracy": teacher}}, "students": {"kd": [_run(a) for a in kd]}}


def test_report_pairs_the_gap_by_seed_and_divides_times_by_kd(monkeypatch):
    import benchmarks.datafree_families as families

    monkeypatch.setattr(families, "published", lambda stem: {})  # no reference pair: only the families' rows
    fams = {"wrn": {"baselines": _baselines("WRN", 92.0, [90.0, 91.0]),
                    "datafree": {"fast5-stored": [_run(86.0), _run(89.0)], "wide": [_run(88.0), _run(88.0)]}},
            "mobilenet": {"baselines": _baselines("MBV2", 91.0, [89.0]), "datafree": {"fast5-stored": []}}}
    text = report(fams)
    wrn = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| WRN |")]
    assert [cells[1] for cells in wrn] == ["fast5-stored", "wide"]  # one row per recipe, in the order they ran
    assert wrn[0][2:6] == ["92.00", "90.50 ± 0.71", "87.50 ± 2.12", "-3.00 ± 1.41"]  # gaps -4 and -2
    assert wrn[0][6] == "200 + 300 vs 100 (5.0x)" and wrn[0][7] == "2"
    assert wrn[1][4:6] == ["88.00 ± 0.00", "-2.50 ± 0.71"]  # gaps -2 and -3
    assert "| MBV2 | fast5-stored | 91.00 | 89.00 | not run |" in text
    assert "| MBV2 | wide | 91.00 | 89.00 | not run |" in text


def test_reference_row_names_the_resnet_pairs_own_run_of_the_recipe(monkeypatch):
    import benchmarks.datafree_families as families

    resnet = {"key": "resnet", "pair": "R14", "teacher": {"metrics": {"test_accuracy": 93.0}},
              "students": {"kd": [_run(90.0), _run(91.0)]}}
    runs = {"resnet/fast5-stored-ngf32-inherit": [_run(87.0)]}
    monkeypatch.setattr(families, "published",
                        lambda stem: {"baselines-full": {"pairs": [resnet]}, "datafree_kd": {"runs": runs}}.get(stem, {}))
    fams = {"wrn": {"baselines": _baselines("WRN", 92.0, [90.0]),
                    "datafree": {"fast5-stored": [_run(85.0)], "fast5-stored-ngf32": [_run(86.0)]}}}
    lines = report(fams).splitlines()
    ref = [line for line in lines if line.startswith("| R14")]
    # the ngf-32 recipe's reference is its --inherit run, paired with the first KD seed only; fast5-stored has none
    assert len(ref) == 1 and "| fast5-stored-ngf32-inherit | 93.00 | 90.00 | 87.00 | -3.00 |" in ref[0]
    assert lines.index(ref[0]) > next(i for i, line in enumerate(lines) if "| fast5-stored |" in line)


def test_family_pairs_keep_the_resnet_pairs_student_and_recipes():
    resnet = FMNIST_PAIRS["resnet"]
    for key, pair in FMNIST_FAMILY_PAIRS.items():
        assert key in PAIRS and key not in FMNIST_PAIRS
        assert pair["teacher"] != resnet["teacher"]
        for field in ("student", "student_kwargs", "teacher_args", "student_args"):
            assert pair[field] == resnet[field], field


def test_headline_lists_a_family_only_once_it_has_a_data_free_run(tmp_path, monkeypatch):
    import json

    import benchmarks.headline as headline

    monkeypatch.setattr(headline, "RESULTS", tmp_path)
    assert headline.family_rows() == []  # nothing published yet
    fams = {"wrn": {"baselines": _baselines("WRN", 92.0, [90.0]),
                    "datafree": {"fast5-stored": [_run(85.5)], "wide": [_run(86.4), _run(86.6)]}},
            "mobilenet": {"baselines": _baselines("MBV2", 91.0, [89.0]), "datafree": {"fast5-stored": []}}}
    (tmp_path / "datafree_families.json").write_text(json.dumps({"families": fams}))
    assert headline.family_rows() == ["| WRN | 90.00 (1 seed) | fast5-stored, unchanged | 85.50 (1 seed) | 0.95 |",
                                      "| WRN | 90.00 (1 seed) | wide, unchanged | 86.50 ± 0.14 | 0.96 |"]


def test_headline_best_source_needs_three_seeds_when_the_pair_has_any(tmp_path, monkeypatch):
    import json

    import benchmarks.headline as headline

    def runs(*accs):
        return [{"metrics": {"test_accuracy": a}} for a in accs]

    baselines = {"pairs": [{"key": "p", "pair": "P", "students": {"kd": runs(90.0, 90.0, 90.0)}}]}
    (tmp_path / "baselines-full.json").write_text(json.dumps(baselines))
    monkeypatch.setattr(headline, "RESULTS", tmp_path)

    def best(datafree):
        (tmp_path / "datafree_kd.json").write_text(json.dumps({"runs": datafree}))
        return headline.datafree_rows()[0].split("|")[3].strip()

    three, one = runs(85.0, 85.2, 85.1), runs(85.4)
    assert best({"p/three": three, "p/one": one}) == "three"  # a one-seed trial does not win the race
    assert best({"p/one": one, "p/other": runs(80.0)}) == "one"  # no source has 3 seeds: the best mean
    assert best({"p/three": three, "p/one": one, "p/real-images-6400": runs(89.0, 89.0, 89.0)}) == "three"
    assert best({"p/three": three, "p/real-images-51200": runs(90.0, 90.0, 90.0)}) == "three"  # real images
