"""The condensation benchmark's per-IPC recipes: which network a set is condensed through, and where
it is evaluated along the way (the README's condensation table depends on both)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from benchmarks.condense import BY_IPC, recipe
from datafree.data.transfer import FORMAT


def test_ipc1_keeps_the_accuracy_against_time_curve() -> None:
    overrides, curve = recipe("dm", 1)
    assert curve == sorted(curve) and len(curve) > 1 and curve[0] == 0
    assert "net_kwargs" not in overrides  # DM at IPC 1 condenses through ConvNet-128


def test_larger_ipc_evaluates_the_final_set_only() -> None:
    for method in ("dm", "teacher", "dc", "dsa", "mtt"):
        assert len(recipe(method, 10)[1]) == 1


def test_narrow_condenser_where_convnet128_does_not_fit() -> None:
    for method, ipc in (("dc", 10), ("dsa", 10), ("mtt", 1), ("mtt", 10)):
        overrides, curve = recipe(method, ipc)
        assert overrides["net_kwargs"] == {"width": 32}
        assert curve == [BY_IPC[method][ipc]["iterations"]]
        assert "iterations" not in overrides  # the iteration count is the curve's, not an override
    assert "net_kwargs" not in recipe("dc", 1)[0]


def test_zskd_recipes_report_groups_students_by_recipe_and_budget(tmp_path) -> None:
    from benchmarks.zskd_recipes import STUDENT, finished, student_args, student_dir

    assert "--epochs" not in STUDENT and "--eval-every" not in STUDENT  # set per set size by the script
    for name, steps, mix, seed, acc in (("coarse2-300", 8000, [], 0, 70.0), ("coarse2-300", 8000, [], 1, 72.0),
                                        ("coarse2-300", 8000, ["--mix", "cutmix", "--augment", "crop-flip"], 0, 74.0),
                                        ("coarse2-300", 32000, [], 0, 80.0), ("coarse4-50", 8000, [], 0, 60.0)):
        run = tmp_path / "zskd-recipes" / f"{name}-n6400"
        (run / "transfer").mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "synthesis_time_s": 5.0, "config": {}, "count": 6400}
        (run / "transfer" / "manifest.json").write_text(json.dumps(manifest))
        student = student_dir(run, steps, mix, seed)
        student.mkdir()
        (student / "result.json").write_text(json.dumps({"metrics": {"test_accuracy": acc, "wall_time_s": 1.0},
                                                         "argv": ["datafree", "distill"]}))
    assert student_dir(tmp_path, 8000, [], 0).name == "student-8000steps-seed0"  # the earlier runs' names
    rows = {(r["recipe"], r["student_steps"], r["student_overrides"]): r["accuracies"] for r in finished(tmp_path)}
    assert rows == {("coarse2-300", 8000, ""): [70.0, 72.0], ("coarse2-300", 8000, "mix=cutmix,augment=crop-flip"): [74.0],
                    ("coarse2-300", 32000, ""): [80.0], ("coarse4-50", 8000, ""): [60.0]}
    argv = student_args(["--lr", "0.05", "--mix", "mixup"])
    assert argv[argv.index("--lr") + 1] == "0.05" and argv.count("--lr") == 1 and argv[argv.index("--mix") + 1] == "mixup"


def test_condense_protocols_map_to_evaluate_set_and_back(tmp_path, monkeypatch) -> None:
    import benchmarks.condense as bench

    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = argv[argv.index("--out") + 1]
        with open(out, "w") as f:
            json.dump({"accuracies": [80.0, 82.0], "train_time_s_per_model": 1.0, "protocol": {}}, f)
        return 0

    monkeypatch.setattr(bench, "call", fake_main)
    set_dir = tmp_path / "condense" / "dm-ipc10" / "set"
    for protocol in ("dc", "dc-dsa"):
        out = set_dir.parent / f"eval-{protocol}-it500.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = bench.evaluate(set_dir, 10, protocol, out, tmp_path, [])
        result["condensation"] = {"condensation_time_s": 10.0, "peak_memory_mb": 1.0, "config": {}}
        out.write_text(json.dumps(result))
    plain, dsa = calls
    assert plain[plain.index("--augment") + 1] == "none" and plain[plain.index("--epochs") + 1] == "300"
    assert dsa[dsa.index("--augment") + 1] == "dsa" and dsa[dsa.index("--epochs") + 1] == "1000"
    assert dsa[dsa.index("--protocol") + 1] == "dc"
    assert (plain[plain.index("--models") + 1], dsa[dsa.index("--models") + 1]) == ("5", "3")  # 1000 epochs: 3 models
    bench.evaluate(set_dir, 10, "dc-dsa", set_dir.parent / "eval-dc-dsa-it500.json", tmp_path, [])
    assert len(calls) == 2  # a finished evaluation with the same command is reused
    more = set_dir.parent / "eval-dc-dsa-it500.json"  # ... and one made with more models than asked for now
    record = json.loads(more.read_text())
    more.write_text(json.dumps({**record, "argv": [a if a != "3" else "5" for a in record["argv"]],
                                "accuracies": [80.0, 82.0, 81.0, 80.0, 82.0]}))
    assert len(bench.evaluate(set_dir, 10, "dc-dsa", more, tmp_path, [])["accuracies"]) == 5 and len(calls) == 2
    more.write_text(json.dumps(record))
    rows = {r["protocol"]: r for r in bench.collect(tmp_path)}
    assert set(rows) == {"dc", "dc-dsa"} and rows["dc-dsa"]["iterations"] == 500
    # columns: hard labels, soft labels (not run), hard labels with DSA for 1000 epochs, published
    assert "| 81.00 ± 1.41 (n=2) |  | 81.00 ± 1.41 (n=2) | 83.6 |" in bench.report(list(rows.values()))


def test_condense_rerun_keeps_the_record_of_each_intermediate_set(tmp_path, monkeypatch) -> None:
    """Re-running a finished IPC-1 curve (say, for another protocol) must not stamp the final set's
    condensation time on the evaluations of the intermediate sets, nor evaluate the final set under
    an intermediate point's name."""
    import benchmarks.condense as bench

    final = {"iterations_done": 500, "condensation_time_s": 800.0, "peak_memory_mb": 2.0, "config": {}}
    monkeypatch.setattr(bench, "condense", lambda *a, **k: final)
    monkeypatch.setattr(bench, "evaluate", lambda set_dir, ipc, protocol, out, root, data: (
        json.loads(out.read_text()) if out.is_file() else {"accuracies": [70.0]}))
    base = tmp_path / "condense" / "dm-ipc1"
    base.mkdir(parents=True)
    kept = {"accuracies": [71.0], "condensation": {"iterations_done": 100, "condensation_time_s": 160.0}}
    (base / "eval-dc-it100.json").write_text(json.dumps(kept))
    curve = bench.recipe("dm", 1)[1]
    assert 100 in curve[:-1]
    bench.run_method("dm", 1, ["dc"], tmp_path, [])
    assert json.loads((base / "eval-dc-it100.json").read_text()) == kept
    for it in curve[:-1]:  # never evaluated before: skipped, not the final set under their names
        assert it == 100 or not (base / f"eval-dc-it{it}.json").is_file()
    assert json.loads((base / f"eval-dc-it{curve[-1]}.json").read_text())["condensation"]["condensation_time_s"] == 800.0


def test_datafree_variant_is_a_stored_preset_with_its_own_student() -> None:
    from benchmarks.datafree_kd import METHODS, RECIPES, method_recipe
    from datafree.bench.runner import df_overrides
    from datafree.synthesis import preset

    base, scale, count, student = method_recipe("fast5-stored")
    config = preset(base, **scale)
    assert base == "fast5" and "fast5-stored" in METHODS
    assert not config.needs_student and config.schedule != "online"  # synthesized into a stored set
    assert config.needs_batchnorm and config.iterations == preset("fast5").iterations
    assert count != RECIPES.df_count and student.count("--lr") == 1 and student[student.index("--lr") + 1] == "0.05"
    assert student[student.index("--augment") + 1] == "crop-flip"  # the shared stored-set flags are kept
    assert method_recipe("zskd") == ("zskd", df_overrides(RECIPES, "zskd"), RECIPES.df_count,
                                     list(RECIPES.df_stored_student))



def test_tucker_report_puts_no_data_data_free_and_real_rows_side_by_side(tmp_path) -> None:
    from benchmarks.tucker_kd import RANK_RATIO, report

    init = tmp_path / "tucker" / f"resnet14-r{RANK_RATIO}"
    init.mkdir(parents=True)
    (init / "compressed.json").write_text(json.dumps({
        "rank_ratio": RANK_RATIO, "argv": ["datafree", "compress"], "parameters": 100, "teacher_parameters": 160,
        "compression": 1.6, "test_accuracy": 90.5, "teacher_test_accuracy": 93.0}))
    tset = tmp_path / "set"
    tset.mkdir()
    (tset / "manifest.json").write_text(json.dumps({"format": FORMAT, "synthesis_time_s": 500.0, "count": 1}))
    for name, acc, transfer in (("fast5-stored-seed0", 92.0, str(tset)), ("fast5-stored-seed1", 93.0, str(tset)),
                                ("real-seed0", 93.5, None)):
        (init / name).mkdir()
        result = {"metrics": {"test_accuracy": acc, "wall_time_s": 10.0, "peak_memory_mb": 300.0}, "transfer": transfer,
                  "argv": ["datafree", "distill", "--seed", name[-1], "--out", name]}
        (init / name / "result.json").write_text(json.dumps(result))
    md, data = report(tmp_path)
    lines = md.splitlines()
    assert any(line.startswith("| nothing") and "90.50" in line for line in lines)
    data_free = next(line for line in lines if line.startswith("| data-free"))
    assert "92.50 ± 0.71" in data_free and "| 500 |" in data_free and data_free.endswith("| 10 | 300 | 2 |")
    assert next(line for line in lines if line.startswith("| real")).endswith("| - | 10 | 300 | 1 |")
    assert "1.60x" in md and len(data["runs"]["fast5-stored"]) == 2


def test_student_only_variant_shares_its_presets_sets(tmp_path) -> None:
    from benchmarks.datafree_kd import describe_variant, method_recipe, transfer_dir

    assert transfer_dir(tmp_path, "lenet", "zskd-dsa", 1) == tmp_path / "datafree" / "lenet" / "zskd-seed1" / "transfer"
    assert transfer_dir(tmp_path, "lenet", "zskd-augment", 1).parent.name == "zskd-augment-seed1"  # new images
    assert transfer_dir(tmp_path, "resnet", "fast5-stored", 0).parent.name == "fast5-stored-seed0"
    student = method_recipe("zskd-dsa")[3]
    assert student[student.index("--augment") + 1] == "dsa" and student.count("--augment") == 1
    assert "the preset's own sets" in describe_variant("zskd-dsa") and "--set adv=0" in describe_variant("fast5-stored")


@pytest.mark.parametrize(("control", "per_class", "student"), [
    ("real-images-6400", 640, "--epochs 640 --eval-every 64 --batch-size 128 --alpha 0 --lr 0.01"),
    ("real-images-51200", 5120, "--epochs 40 --eval-every 4 --batch-size 128 --alpha 0 --lr 0.05"),
])
def test_real_image_control_condenses_random_images_and_uses_its_stored_set_student(
        tmp_path, monkeypatch, control, per_class, student) -> None:
    import benchmarks.datafree_kd as bench

    calls: list[list[str]] = []

    def condense(argv: list[str]) -> int:  # writes the manifest a condensed set has (no synthesis time)
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"format": FORMAT, "count": 6400, "condensation_time_s": 1.0}))
        return 0

    monkeypatch.setattr(bench, "call", condense)
    monkeypatch.setattr(bench, "run", lambda argv, out: {"argv": argv, "out": str(out), "metrics": {}})
    teacher = tmp_path / "teachers" / "fashion-mnist-lenet5"
    teacher.mkdir(parents=True)
    (teacher / "model.safetensors").write_bytes(b"")
    result = bench.run_method("lenet", control, 2, tmp_path, ["--dataset", "fashion-mnist"])
    condense = calls[0]
    assert condense[:3] == ["condense", "--method", "random"]
    assert condense[condense.index("--ipc") + 1] == str(per_class)
    assert f"{control}-seed2" in condense[condense.index("--out") + 1]
    argv = result["argv"]
    assert argv[argv.index("--teacher") + 1] == str(teacher)  # the teacher labels the real images
    assert student in " ".join(argv) and argv.count("--epochs") == 1 and result["synthesis_time_s"] == 0.0
    assert not bench.needs_missing_batchnorm("lenet", control)


def test_report_marks_bn_methods_of_a_bn_free_teacher_without_its_file() -> None:
    """The report runs on a machine that holds no teacher file (results come from the published json):
    whether a teacher has BatchNorm comes from its architecture."""
    import benchmarks.datafree_kd as bench

    assert bench.needs_missing_batchnorm("lenet", "fast5-stored")  # LeNet-5 has no BatchNorm
    assert not bench.needs_missing_batchnorm("resnet", "fast5-stored")
    assert not bench.needs_missing_batchnorm("lenet", "zskd")  # zskd matches no BN statistics


def test_teacher_view_measures_confidence_and_flip_stability() -> None:
    from benchmarks.teacher_view import teacher_view
    from datafree.losses import class_mean_alignment

    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.randn(3, 16, generator=g))
    x = torch.randn(6, 1, 4, 4, generator=g)
    symmetric = x + x.flip(3)
    view = teacher_view(teacher, symmetric, batch_size=4)
    with torch.no_grad():
        logits = teacher(symmetric)
    assert view["images"] == 6 and view["same_after_flip"] == 100.0
    assert view["top_logit"] == pytest.approx(logits.max(1).values.mean().item(), rel=1e-5)
    assert view["top_prob"] == pytest.approx(logits.softmax(1).max(1).values.mean().item(), rel=1e-5)
    # the class means are of the classifier's inputs (here the flattened images), classes by the teacher's answers
    expected = class_mean_alignment(symmetric.flatten(1), logits.argmax(1), teacher[1].weight)
    assert view["class_means"] == pytest.approx(expected.item(), rel=1e-5)
    constant = torch.ones(2, 1, 4, 4)  # a shift (torch.roll) leaves a constant image as it is
    assert teacher_view(teacher, constant)["same_after_shift"] == 100.0
    # noise: an image far from the class boundaries keeps its answer, one on a boundary keeps it about half the time
    far = 100 * teacher[1].weight[0].view(1, 1, 4, 4).expand(64, 1, 4, 4)
    w, b = teacher[1].weight.detach(), teacher[1].bias.detach()  # logits 0 and 1 tied, both far above logit 2
    gaps = torch.stack([w[0] - w[1], w[0] - w[2]])
    target = torch.stack([b[1] - b[0], 50 + b[2] - b[0]]).unsqueeze(1)
    on_boundary = torch.linalg.lstsq(gaps, target).solution.view(1, 1, 4, 4).expand(512, 1, 4, 4)
    assert all(teacher_view(teacher, far)[f"same_after_noise_{std}"] == 100.0 for std in (0.05, 0.1, 0.25))
    assert 35 < teacher_view(teacher, on_boundary)["same_after_noise_0.25"] < 65


def test_pixel_view_reads_pixels_in_the_data_range() -> None:
    from benchmarks.teacher_view import pixel_view
    from datafree.data.spec import DataSpec

    spec = DataSpec(name="toy", channels=1, height=2, width=2, num_classes=2, mean=(0.5,), std=(0.25,))
    pixels = torch.tensor([[[[0.0, 0.05], [0.5, 1.5]]]])  # the last one is clamped to 1 before it counts
    view = pixel_view(spec.normalize(pixels), spec)
    assert view["pixel_mean"] == pytest.approx((0.0 + 0.05 + 0.5 + 1.0) / 4, abs=1e-6)
    assert view["dark_pixels"] == pytest.approx(50.0)


def test_batchnorm_statistics_are_re_estimated_on_the_given_images_only() -> None:
    from benchmarks.teacher_view import with_batchnorm_from

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                                torch.nn.Linear(48, 2))
    with torch.no_grad():
        model[1].running_mean.fill_(7.0)
        model[1].running_var.fill_(9.0)
    model.eval()
    x = 2 * torch.randn(30, 1, 4, 4, generator=g) + 1
    copied = with_batchnorm_from(model, x, batch_size=7)  # the plain average of every batch's statistics
    with torch.no_grad():
        means = torch.stack([model[0](b).mean((0, 2, 3)) for b in x.split(7)])
    assert not copied.training and torch.allclose(copied[1].running_mean, means.mean(0), atol=1e-5)
    assert torch.equal(model[1].running_mean, torch.full((3,), 7.0))  # the original is untouched
    assert torch.equal(copied[0].weight, model[0].weight) and torch.equal(copied[3].weight, model[3].weight)


def test_a_refitted_bias_undoes_a_shift_of_the_classes_and_nothing_else() -> None:
    from benchmarks.teacher_view import refit_bias

    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.randn(400, 1, 4, 4, generator=g)
    with torch.no_grad():
        for p in teacher.parameters():  # logits far enough apart that its answers show where its boundaries are
            p.copy_(torch.randn(p.shape, generator=g))
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student[3].bias.add_(torch.tensor([4.0, -2.0, 0.0]))  # the student answers class 0 far too often
        teacher_logits, labels = teacher(x), teacher(x).argmax(1)
    for targets in (teacher_logits, labels):
        refitted = refit_bias(student, x, targets)
        with torch.no_grad():
            agree = (refitted(x).argmax(1) == labels).float().mean().item()
            shift = refitted[3].bias - teacher[3].bias
        assert agree > 0.95 and (student(x).argmax(1) == labels).float().mean().item() < 0.8
        if targets.dim() == 2:  # against the teacher's logits the shift is undone exactly, up to a constant
            assert torch.allclose(shift, shift.mean().expand(3), atol=1e-3)
        assert torch.equal(refitted[3].weight, student[3].weight) and torch.equal(refitted[1].weight, student[1].weight)
    assert torch.equal(student[3].bias, teacher[3].bias + torch.tensor([4.0, -2.0, 0.0]))  # the original is untouched


def test_agreement_splits_by_the_teachers_confidence() -> None:
    from benchmarks.teacher_view import agreement, logits_of

    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.randn(3, 16, generator=g))
        student[1].weight.copy_(torch.randn(3, 16, generator=g))
    x = 3 * torch.randn(40, 1, 4, 4, generator=g)
    a = agreement(logits_of(teacher, x, batch_size=7), logits_of(student, x, batch_size=7).argmax(1), sure=0.9)
    with torch.no_grad():
        t, s = teacher(x), student(x)
    same = t.argmax(1) == s.argmax(1)
    sure = t.softmax(1).max(1).values > 0.9
    assert 0 < sure.sum() < len(x) and 0 < same.sum() < len(x)  # both splits and both answers occur
    assert a["all"] == pytest.approx(100 * same.float().mean().item())
    assert a["sure"] == pytest.approx(100 * same[sure].float().mean().item())
    assert a["unsure"] == pytest.approx(100 * same[~sure].float().mean().item())
    assert a["sure_share"] == pytest.approx(100 * sure.float().mean().item())
    assert agreement(t, t.argmax(1))["all"] == 100.0


def _stub_stored_runs(bench, tmp_path: Path, monkeypatch) -> None:
    """datafree_kd without synthesis or training: sets are named paths, runs return their command."""
    import datafree.data.transfer as transfer

    monkeypatch.setattr(bench, "stored_set", lambda pair, method, seed, root, teacher, need=None:
                        tmp_path / f"{method}-{seed}-{need}" if need else tmp_path / f"{method}-{seed}")
    monkeypatch.setattr(transfer, "read_manifest", lambda path: {"synthesis_time_s": 10.0, "count": 51200})
    monkeypatch.setattr(bench, "run", lambda argv, out: {"argv": argv, "metrics": {}})
    teacher = tmp_path / "teachers" / "fashion-mnist-lenet5"
    teacher.mkdir(parents=True)
    (teacher / "model.safetensors").write_bytes(b"")


def test_variant_with_sets_trains_on_its_own_and_the_other_variants_sets(tmp_path, monkeypatch) -> None:
    import benchmarks.datafree_kd as bench

    _stub_stored_runs(bench, tmp_path, monkeypatch)
    result = bench.run_method("lenet", "zskd+augment", 1, tmp_path, [])
    argv = result["argv"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--transfer"]
    assert sets == [str(tmp_path / "zskd+augment-1"), str(tmp_path / "zskd-augment-1")]
    assert result["synthesis_time_s"] == 20.0 and argv[argv.index("--epochs") + 1] == "320"
    assert bench.transfer_dir(tmp_path, "lenet", "zskd+augment", 1).parent.name == "zskd-seed1"  # the plain set
    assert "also trains on the zskd-augment set" in bench.describe_variant("zskd+augment")


def test_variant_with_a_transfer_count_reads_and_makes_only_each_sets_first_images(tmp_path, monkeypatch) -> None:
    import benchmarks.datafree_kd as bench
    from datafree.cli import build_parser

    resnet = tmp_path / "teachers" / "fashion-mnist-resnet14"
    resnet.mkdir(parents=True)
    (resnet / "model.safetensors").write_bytes(b"")
    _stub_stored_runs(bench, tmp_path, monkeypatch)
    name = "fast5-stored-ngf32+tv100-half-inherit"
    result = bench.run_method("resnet", name, 0, tmp_path, [])
    args = build_parser().parse_args([*result["argv"], "--out", "s"])
    assert args.transfer == [str(tmp_path / f"{m}-0-25600") for m in (name, "fast5-stored-ngf32-tv100-inherit")]
    assert args.transfer_count == 25600 and args.epochs == 40 and args.steps_per_epoch is None and args.inherit
    assert result["synthesis_time_s"] == 10.0  # half of each 10 s set of 51200 images
    whole = bench.run_method("resnet", "fast5-stored-ngf32+tv100-inherit", 0, tmp_path, [])
    assert "--transfer-count" not in whole["argv"] and whole["synthesis_time_s"] == 20.0
    assert "the first 25600 images of each set" in bench.describe_variant(name)


def test_stored_set_makes_what_its_student_reads_and_keeps_a_larger_set(tmp_path, monkeypatch) -> None:
    import benchmarks.datafree_kd as bench

    made: list[list[str]] = []
    monkeypatch.setattr(bench, "call", lambda argv: made.append(argv))
    monkeypatch.setattr(bench, "same_synthesis", lambda manifest, config, count, teacher: True)
    tset = bench.transfer_dir(tmp_path, "resnet", "fast5-stored-ngf32-tv100-inherit", 0)
    bench.stored_set("resnet", "fast5-stored-ngf32-tv100-inherit", 0, tmp_path, tmp_path, need=25600)
    assert made[-1][made[-1].index("--count") + 1] == "25600" and "--resume" not in made[-1]
    tset.mkdir(parents=True)
    (tset / "manifest.json").write_text("{}")
    monkeypatch.setattr(bench, "read_manifest", lambda path: {"count": 25600})
    bench.stored_set("resnet", "fast5-stored-ngf32-tv100-inherit", 0, tmp_path, tmp_path, need=25600)
    assert len(made) == 1  # holds what is needed: nothing made
    bench.stored_set("resnet", "fast5-stored-ngf32-tv100-inherit", 0, tmp_path, tmp_path)
    assert made[-1][made[-1].index("--count") + 1] == "51200" and "--resume" in made[-1]  # the whole set: extended


def test_variant_with_seed_sets_adds_other_variants_sets_of_later_synthesis_seeds(tmp_path, monkeypatch) -> None:
    import benchmarks.datafree_kd as bench

    _stub_stored_runs(bench, tmp_path, monkeypatch)
    name, plain, aug = "zskd-plain2+augment2-T4-is1-tv10-px1-inherit-grown", bench.PX1_PLAIN, bench.PX1_AUG
    result = bench.run_method("lenet", name, 1, tmp_path, [])
    argv = result["argv"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--transfer"]
    assert sets == [str(tmp_path / f"{m}-{s}") for m, s in ((name, 1), (aug, 1), (plain, 2), (aug, 2))]
    assert result["synthesis_time_s"] == 40.0
    assert bench.transfer_dir(tmp_path, "lenet", name, 1) == bench.transfer_dir(tmp_path, "lenet", plain, 1)
    assert f"{aug} set of seed+2" in bench.describe_variant("zskd-augment3+plain-T4-is1-tv10-px1-inherit-grown")


def test_grown_variant_grows_its_stored_sets_against_the_student(tmp_path, monkeypatch) -> None:
    import benchmarks.datafree_kd as bench
    from datafree.cli import build_parser

    _stub_stored_runs(bench, tmp_path, monkeypatch)
    argv = bench.run_method("lenet", "zskd+augment-inherit-grown", 0, tmp_path, [])["argv"]
    args = build_parser().parse_args([*argv, "--out", "s"])  # a command the CLI takes as it stands (run adds --out)
    assert args.method == "zskd" and args.inherit and len(args.transfer) == 2
    overrides = dict(args.set)
    assert overrides["adv"] == 1.0 and overrides["student_steps"] == 400 and overrides["augment"] is True
    assert overrides["pixel_scale"] == 2 and overrides["iterations"] == 300  # the pair's zskd recipe underneath
    assert args.epochs * args.steps_per_epoch == 32000  # zskd+augment-inherit's student steps
    rkd_argv = bench.run_method("lenet", "zskd+augment-inherit-rkd", 0, tmp_path, [])["argv"]
    rkd = build_parser().parse_args([*rkd_argv, "--out", "s"])
    assert (rkd.rkd_distance, rkd.rkd_angle, rkd.method) == (25.0, 50.0, None) and rkd.inherit
    resnet = tmp_path / "teachers" / "fashion-mnist-resnet14"
    resnet.mkdir()
    (resnet / "model.safetensors").write_bytes(b"")
    rkdd = build_parser().parse_args([*bench.run_method("resnet", "fast5-stored-inherit-rkdd", 0, tmp_path, [])["argv"],
                                      "--out", "s"])
    assert (rkdd.rkd_distance, rkdd.rkd_angle, rkdd.epochs, len(rkdd.transfer)) == (25.0, 0.0, 40, 1) and rkdd.inherit
    assert bench.transfer_dir(tmp_path, "resnet", "fast5-stored-inherit-rkdd", 0).parent.name == "fast5-stored-seed0"
    assert "grows by zskd batches" in bench.describe_variant("zskd+augment-inherit-grown")


def test_synthesis_speed_times_every_part_of_a_step() -> None:
    """The speed table's split names the parts each preset runs: the student only with an adversarial term."""
    from benchmarks.synthesis_speed import time_case
    from datafree.data import FASHION_MNIST
    from datafree.models import build_model

    teacher = build_model("lenet5_bn", FASHION_MNIST, seed=0).eval()
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    di = time_case(teacher, student, FASHION_MNIST, "deepinversion", {"batch_size": 8}, iterations=1, repeats=1)
    fast = time_case(teacher, student, FASHION_MNIST, "fast", {"batch_size": 8, "ngf": 8}, iterations=1, repeats=1)
    assert di["iterations_per_batch"] == 200 and fast["iterations_per_batch"] == 5  # the presets', not the timed call's
    assert "student fwd+bwd" not in di["parts_s_per_step"] and "student fwd+bwd" in fast["parts_s_per_step"]
    for row in (di, fast):
        assert row["s_per_step"] > 0 and all(v > 0 for v in row["parts_s_per_step"].values())
        assert row["s_per_batch"] == pytest.approx(row["s_per_step"] * row["iterations_per_batch"])


def test_a_stored_set_counts_as_the_same_synthesis_only_from_the_same_teacher(tmp_path) -> None:
    from benchmarks.datafree_kd import same_synthesis
    from datafree.synthesis import preset

    config = preset("zskd")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.json").write_text(json.dumps({"sha256": "abc"}))
    manifest = {"config": config.to_dict(), "count": 10, "teacher": {"sha256": "abc"}}
    assert same_synthesis(manifest, config, 10, teacher) and same_synthesis(manifest, config, 10)
    assert not same_synthesis(manifest, config, 5, teacher)  # more images than asked for
    assert not same_synthesis(manifest, preset("zskd", iterations=7), 10, teacher)  # another recipe
    (teacher / "model.json").write_text(json.dumps({"sha256": "retrained"}))
    assert not same_synthesis(manifest, config, 10, teacher)


def test_datafree_kd_results_name_keeps_another_teachers_runs_out_of_the_published_table(tmp_path, monkeypatch):
    """A run under --root replaces the published run of its (pair, method, seed); the published seeds it does not
    have stay when they used the same teacher file and go when they used another; under another --results name
    the published table is neither read nor replaced, so runs on another teacher file cannot displace its rows."""
    import benchmarks.datafree_kd as bench

    def record(seed, acc, teacher="t1"):
        return {"config": {"seed": seed}, "teacher": {"sha256": teacher}, "metrics": {"test_accuracy": acc}}

    student = tmp_path / "datafree" / "lenet" / "zskd-seed1" / "student"
    student.mkdir(parents=True)
    (student / "result.json").write_text(json.dumps(record(1, 70.0)))
    tables = {"datafree_kd": {"runs": {"lenet/zskd": [record(0, 80.0), record(1, 81.0), record(2, 82.0, "t0")],
                                       "lenet/dafl": [record(0, 60.0)]}}}
    monkeypatch.setattr(bench, "published", lambda stem: tables.get(stem, {}))
    default = bench.finished_runs(tmp_path)
    assert [(r["config"]["seed"], r["metrics"]["test_accuracy"]) for r in default[("lenet", "zskd")]] == [(0, 80.0),
                                                                                                          (1, 70.0)]
    assert ("lenet", "dafl") in default
    only_dafl = bench.finished_runs(tmp_path, methods=["dafl"])  # --methods: the zskd run under root is left out
    assert [r["metrics"]["test_accuracy"] for r in only_dafl[("lenet", "zskd")]] == [80.0, 81.0, 82.0]
    other = bench.finished_runs(tmp_path, "datafree_kd_other_teacher")
    assert list(other) == [("lenet", "zskd")] and [r["metrics"]["test_accuracy"] for r in other[("lenet", "zskd")]] == [70.0]
    assert other[("lenet", "zskd")][0]["synthesis_time_s"] == 0
    with pytest.raises(SystemExit):
        bench.main(["--report-only", "--results", "datafree_kd_other_teacher", "--update-readme"])


def test_datafree_kd_reads_the_real_data_rows_of_the_teacher_file_its_runs_used(tmp_path, monkeypatch):
    """--baselines STEM puts the real-data rows of another teacher file (benchmarks.baselines --results STEM) beside
    that teacher's runs; the default file's rows, on another teacher, do not appear in that table."""
    import benchmarks.baselines as baselines
    import benchmarks.datafree_kd as bench

    def rows(acc: float, teacher: dict | None) -> list[dict]:
        return [{"metrics": {"test_accuracy": acc, "train_time_total_s": 100.0}, "teacher": teacher}]

    def pair(kd: float, sha: str) -> dict:
        return {"key": "lenet", "students": {"kd": rows(kd, {"sha256": sha}), "scratch": rows(90.0, None)}}

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "baselines-full.json").write_text(json.dumps({"pairs": [pair(89.6, "178963c2aa")]}))
    (results / "baselines_other.json").write_text(json.dumps({"pairs": [pair(88.1, "4dbf5be6bb")]}))
    monkeypatch.setattr(bench, "REPO", tmp_path)
    runs = {("lenet", "zskd"): [{"metrics": {"test_accuracy": 80.0, "wall_time_s": 1.0, "peak_memory_mb": 1.0},
                                 "synthesis_time_s": 0.0, "teacher": {"sha256": "4dbf5be6bb"}}]}
    other = bench.report(runs, ["lenet"], "baselines_other")
    assert "| real data, KD | 88.10 |" in other and "| 4dbf5be6 |" in other and "89.60" not in other
    assert "| real data, KD | 89.60 |" in bench.report(runs, ["lenet"])
    with pytest.raises(SystemExit):
        bench.main(["--report-only", "--results", "datafree_kd_other", "--baselines", "baselines_other",
                    "--update-readme"])
    with pytest.raises(SystemExit):
        baselines.main(["--profile", "full", "--results", "baselines_other", "--update-readme"])


def test_datafree_kd_table_shows_the_pairs_and_variants_it_has_runs_of(tmp_path, monkeypatch):
    """A table holds the pairs it has runs of (not every pair's real-data rows), one n/a row for the sources a
    BatchNorm-free teacher cannot use (not one per source), and the descriptions of the variants it shows only."""
    import benchmarks.datafree_kd as bench

    monkeypatch.setattr(bench, "REPO", tmp_path)  # no baselines file: only the runs' rows
    run = {"metrics": {"test_accuracy": 80.0, "wall_time_s": 1.0, "peak_memory_mb": 1.0}, "synthesis_time_s": 0.0}
    resnet_only = bench.report({("resnet", "fast5-stored-ngf32-inherit"): [run]}, ["lenet", "resnet"])
    assert "LeNet-5" not in resnet_only and "n/a" not in resnet_only
    assert f"- {bench.describe_variant('fast5-stored-ngf32-inherit')}" in resnet_only
    assert "fast5-stored-ngf64-inherit:" not in resnet_only
    both = bench.report({("resnet", "fast5-stored-ngf32-inherit"): [run], ("lenet", "zskd"): [run]},
                        ["lenet", "resnet"]).splitlines()
    na = [line for line in both if "n/a" in line]
    assert len(na) == 1 and na[0].startswith("| LeNet-5")


def test_teacher_view_reads_finished_students_of_either_benchmark_by_seed(tmp_path) -> None:
    from benchmarks.teacher_view import student_runs

    def finish(student: Path, **result) -> None:
        student.mkdir(parents=True)
        (student / "result.json").write_text(json.dumps(result))

    for seed in (10, 2, 0):  # datafree_levers: the student is the run
        finish(tmp_path / "levers" / f"kd-seed{seed}")
    finish(tmp_path / "levers" / "row-seed0", transfer="sets/row-seed0")
    (tmp_path / "levers" / "row-seed1").mkdir()  # unfinished: skipped
    finish(tmp_path / "levers" / "row-extra-seed0")  # another row whose name starts alike
    found = student_runs(tmp_path, "lenet", [], ["row", "kd"])
    assert [(name, seed) for name, seed, *_ in found] == [("row", 0), ("kd", 0), ("kd", 2), ("kd", 10)]
    assert found[0][3] == tmp_path / "levers" / "row-seed0"
    # datafree_kd: the student sits in the run's student/, and a run without a set is no data-free student
    finish(tmp_path / "datafree" / "lenet" / "zskd-seed0" / "student", transfer="t")
    finish(tmp_path / "datafree" / "lenet" / "zskd-seed1" / "student")
    found = student_runs(tmp_path, "lenet", ["zskd"], None)
    assert [(name, seed, run) for name, seed, run, *_ in found] == [("zskd", 0, "zskd-seed0")]
    assert found[0][3] == tmp_path / "datafree" / "lenet" / "zskd-seed0" / "student"


def test_channel_order_control_reorders_the_teacher_without_changing_its_function(tmp_path) -> None:
    """benchmarks.channel_order's random order: every hidden layer's channels move, the function stays."""
    from benchmarks.channel_order import TEACHER, reordered_teacher
    from datafree.checkpoint import ModelInfo, load_model, save_model
    from datafree.data import FASHION_MNIST
    from datafree.models import build_model

    teacher = build_model("lenet5_bn", FASHION_MNIST, seed=0)
    for m in teacher.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            torch.nn.init.uniform_(m.weight, 0.1, 2.0), torch.nn.init.normal_(m.bias)
    (tmp_path / TEACHER).mkdir(parents=True)
    save_model(tmp_path / TEACHER / "model.safetensors", teacher.eval(), ModelInfo("lenet5_bn", FASHION_MNIST))
    out = reordered_teacher(tmp_path, 1)
    assert reordered_teacher(tmp_path, 1) == out  # made once
    original, reordered = load_model(tmp_path / TEACHER)[0].eval(), load_model(out)[0].eval()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(reordered(x), original(x), rtol=1e-4, atol=1e-4)
    assert not torch.equal(reordered.features[0].weight, original.features[0].weight)


def test_channel_order_table_sets_the_important_channels_against_the_mean_of_the_draws(tmp_path, monkeypatch) -> None:
    """benchmarks.channel_order's table: each random order beside the recipe's student of its seed, and per seed the
    mean of the draws (the recipe's own order and each random order) against the important channels' student."""
    import benchmarks.channel_order as co

    def result(test: float, selection: float | None = None) -> dict:
        return {"metrics": {"test_accuracy": test}, "selection_accuracy": selection}

    published = {co.MAIN_JOB_ROW: {0: result(85.0, 86.0), 1: result(84.0, 85.0)},
                 f"{co.MAIN_JOB_ROW}-important": {0: result(84.5, 85.5)}}
    monkeypatch.setattr(co, "published_runs", lambda stem: published)
    selection = {"random1-seed0": 83.0, "random2-seed0": 84.0, "random1-seed1": 82.0}
    monkeypatch.setattr(co, "selection_accuracy", lambda path: selection[path.name])
    for name, accuracy in {"random1-seed0": 82.0, "random2-seed0": 83.0, "random1-seed1": 81.0}.items():
        (tmp_path / "channel_order" / name).mkdir(parents=True)
        (tmp_path / "channel_order" / name / "result.json").write_text(json.dumps(result(accuracy)))
    md, runs = co.table(tmp_path, "stem")
    assert "| random1 | 0 | 82.00 / 83.00 | 85.00 / 86.00 | -3.00 |" in md
    assert runs["random2"]["0"]["selection_accuracy"] == 84.0
    # seed 0: draws 85, 82, 83 (mean 83.33; selection 86, 83, 84: 84.33); the important channels 84.5 / 85.5
    assert "| 0 | 3 | 85.00 / 82.00 / 83.00 | 83.33 / 84.33 | 84.50 / 85.50 | +1.17 / +1.17 |" in md
    assert "| 1 | 2 | 84.00 / 81.00 | 82.50 / 83.50 |  |  |" in md  # no important run at seed 1


def test_paired_report_subtracts_the_base_per_seed_on_both_splits(tmp_path, monkeypatch) -> None:
    """benchmarks.datafree_kd --paired: the README's paired numbers, seed by seed, only where both runs finished."""
    import benchmarks.selection
    from benchmarks.datafree_kd import paired_report

    test = {("new", 0): 85.0, ("new", 1): 86.0, ("new", 2): 90.0, ("old", 0): 84.0, ("old", 1): 86.5}
    for (name, seed), accuracy in test.items():
        out = tmp_path / "datafree" / "resnet" / f"{name}-seed{seed}" / "student"
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps({"metrics": {"test_accuracy": accuracy}}))
    monkeypatch.setattr(benchmarks.selection, "selection_accuracy",
                        lambda path: test[(path.parent.name.split("-seed")[0], int(path.parent.name[-1]))] + 1.0)
    lines = paired_report(tmp_path, "resnet", "new", "old").splitlines()
    assert lines[0] == "seed 0: 85.00 (selection 86.00) against 84.00 (85.00)"
    assert lines[-1] == "new - old, paired over 2 seeds: test +0.25 ± 1.06, selection +0.25 ± 1.06"


def test_seeded_runs_reads_name_seed_folders_back_by_exact_name_finished_only(tmp_path) -> None:
    """benchmarks.baselines.seeded_runs, the one reader of the scripts' NAME-seedSEED folders: finished runs only,
    seeds as numbers, a name taken exactly (not as a prefix), the result's folder under ``inner`` where given."""
    from benchmarks.baselines import seeded_runs

    for run in ("kd-seed0", "kd-seed10", "kd-extra-seed0", "row.5+x-seed1", "kd-seedless"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "result.json").write_text("{}")
    (tmp_path / "kd-seed2").mkdir()  # unfinished
    assert seeded_runs(tmp_path, "kd") == [("kd", 0, tmp_path / "kd-seed0"), ("kd", 10, tmp_path / "kd-seed10")]
    assert [(n, s) for n, s, _ in seeded_runs(tmp_path)] == [("kd-extra", 0), ("kd", 0), ("kd", 10), ("row.5+x", 1)]
    (tmp_path / "nested" / "a-seed3" / "student").mkdir(parents=True)
    (tmp_path / "nested" / "a-seed3" / "student" / "result.json").write_text("{}")
    (tmp_path / "nested" / "a-seed4").mkdir()
    (tmp_path / "nested" / "a-seed4" / "result.json").write_text("{}")  # not under student/: not this layout's
    assert seeded_runs(tmp_path / "nested", inner="student") == [("a", 3, tmp_path / "nested" / "a-seed3" / "student")]


def test_finished_students_reads_the_run_layout_back_by_exact_method_and_seed(tmp_path) -> None:
    """benchmarks.datafree_kd.finished_students, the one reader of run_dir's layout: a method's runs only (not
    those of a variant whose name starts alike), finished students only, seeds as numbers."""
    from benchmarks.datafree_kd import finished_students, run_dir

    for pair, name, seed in [("resnet", "new", 0), ("resnet", "new", 10), ("resnet", "new-jacobian", 0),
                             ("wrn", "new", 1)]:
        (run_dir(tmp_path, pair, name, seed) / "student").mkdir(parents=True)
        (run_dir(tmp_path, pair, name, seed) / "student" / "result.json").write_text("{}")
    (run_dir(tmp_path, "resnet", "new", 2) / "student").mkdir(parents=True)  # unfinished
    (tmp_path / "datafree" / "resnet" / "new-seedless" / "student").mkdir(parents=True)
    (tmp_path / "datafree" / "resnet" / "new-seedless" / "student" / "result.json").write_text("{}")
    assert [(s, d) for _, _, s, d in finished_students(tmp_path, "resnet", "new")] == [
        (0, run_dir(tmp_path, "resnet", "new", 0) / "student"), (10, run_dir(tmp_path, "resnet", "new", 10) / "student")]
    assert [(p, n, s) for p, n, s, _ in finished_students(tmp_path)] == [
        ("resnet", "new-jacobian", 0), ("resnet", "new", 0), ("resnet", "new", 10), ("wrn", "new", 1)]


def test_merged_flags_keep_switches_and_replace_values():
    """A recipe's student flags merged with a variant's: a switch (no value) stays a switch, a flag given twice
    takes the override's value, and a negative number is a value, not a flag."""
    from datafree.bench.suites.base import merge_args

    merged = merge_args(("--lr", "0.05", "--seed", "-1", "--augment", "crop"), ("--balance-classes", "--lr", "0.01"))
    assert merged == ["--lr", "0.01", "--seed", "-1", "--augment", "crop", "--balance-classes"]
    assert merge_args(("--balance-classes",), ("--epochs", "3")) == ["--balance-classes", "--epochs", "3"]


def test_a_rebuilt_teachers_table_is_rendered_beside_its_own_baselines(tmp_path, monkeypatch):
    """A run that re-renders ``datafree_kd_SUFFIX`` must put ``baselines-full_SUFFIX`` (that teacher file's own KD
    students) beside it, not the published teacher's, unless told otherwise."""
    import benchmarks.datafree_kd as dk

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "baselines-full_resnet_teacherabc.json").write_text("{}")
    monkeypatch.setattr(dk, "REPO", tmp_path)
    assert dk.baselines_of("datafree_kd_resnet_teacherabc") == "baselines-full_resnet_teacherabc"
    assert dk.baselines_of("datafree_kd_resnet_teacherdef") == dk.BASELINES  # no baselines of its own
    assert dk.baselines_of("datafree_kd") == dk.BASELINES
    seen = []
    monkeypatch.setattr(dk, "finished_runs", lambda root, stem, methods: {})
    monkeypatch.setattr(dk, "report", lambda runs, pairs, baselines: seen.append(baselines) or "")
    monkeypatch.setattr(dk, "publish", lambda *a, **k: None)
    dk.main(["--report-only", "--results", "datafree_kd_resnet_teacherabc", "--root", str(tmp_path)])
    dk.main(["--report-only", "--results", "datafree_kd_resnet_teacherabc", "--root", str(tmp_path),
             "--baselines", "baselines-full"])
    assert seen == ["baselines-full_resnet_teacherabc", "baselines-full"]
