import json

import pytest
import torch
import torch.nn.functional as F

from datafree.audit import (
    AuditConfig,
    bootstrap_auc,
    class_standardise,
    membership_auc,
    nearest_neighbours,
    pair_grid,
    roc_auc,
    run_audit,
)
from datafree.checkpoint import ModelInfo, save_model
from datafree.cli import main
from datafree.data import FASHION_MNIST, DataSpec, load_dataset
from datafree.data.transfer import TransferSet, TransferSetWriter
from datafree.errors import DatafreeError
from datafree.models import build_model

COPIED = [3, 50, 200]  # training images copied verbatim into the transfer set


def make_transfer(directory, train, spec=FASHION_MNIST, noise=5):
    """A transfer set of exact training copies followed by uniform-noise images."""
    copies, labels = train.get_batch(torch.tensor(COPIED))
    noisy = spec.normalize(torch.rand(noise, *spec.shape, generator=torch.Generator().manual_seed(0)))
    images = torch.cat([copies, noisy])
    header = {"kind": "synthetic", "method": "copies", "config": {}, "seed": 0,
              "teacher": {"arch": "lenet5", "sha256": "00"}, "spec": spec.to_dict()}
    TransferSetWriter(directory, header).append(images, torch.cat([labels, torch.zeros(noise, dtype=torch.long)]),
                                                torch.zeros(len(images), spec.num_classes))
    return directory


def save_untrained(path, arch="lenet5_half", spec=FASHION_MNIST, seed=0):
    return save_model(path, build_model(arch, spec, seed=seed), ModelInfo(arch, spec))


# ---------------------------------------------------------------- nearest neighbours
def test_nearest_neighbours_matches_brute_force_across_chunks():
    g = torch.Generator().manual_seed(0)
    keys, queries = torch.rand(37, 20, generator=g), torch.rand(11, 20, generator=g)
    queries[4] = keys[29]
    distance, index = nearest_neighbours(queries, keys, query_chunk=4, key_chunk=8)
    full = ((queries[:, None] - keys[None]) ** 2).sum(-1).sqrt()
    assert torch.equal(index, full.argmin(1))
    assert torch.allclose(distance, full.min(1).values, atol=1e-5)
    assert distance[4].item() == 0.0 and index[4].item() == 29


def test_copies_are_flagged_and_noise_is_not(fmnist_root, tmp_path):
    train, test = load_dataset("fashion-mnist", "train", fmnist_root), load_dataset("fashion-mnist", "test", fmnist_root)
    transfer = TransferSet(make_transfer(tmp_path / "set", train))
    out = tmp_path / "audit"
    out.mkdir()
    teacher = build_model("lenet5_half", FASHION_MNIST, seed=0)
    config = AuditConfig(baseline_count=64, closest=4, train_chunk=100, query_chunk=3)
    report = run_audit(transfer, transfer.manifest, train, test, FASHION_MNIST, out, teacher=teacher, config=config)
    for space in ("pixel", "teacher_feature"):
        r = report["nearest_neighbour"][space]
        assert r["synthetic"]["min"] == pytest.approx(0.0, abs=1e-4)
        assert r["fraction_below_baseline_q05"] == pytest.approx(3 / 8)  # the three copies, none of the noise
    pixel = report["nearest_neighbour"]["pixel"]
    assert {c["synthetic_index"] for c in pixel["closest"][:3]} == {0, 1, 2}
    assert [c["train_index"] for c in sorted(pixel["closest"][:3], key=lambda c: c["synthetic_index"])] == COPIED
    assert all(c["distance"] == 0.0 for c in pixel["closest"][:3]) and pixel["closest"][3]["distance"] > 1
    assert report["protocol"]["baseline_count"] == 64 and report["protocol"]["spaces"] == ["pixel", "teacher_feature"]
    assert (out / "closest_pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "audit.json").read_text())["transfer"]["count"] == 8


def test_pair_grid_puts_each_training_image_below_its_synthetic_one():
    spec = DataSpec(1, 2, 2, 2, (0.0,), (1.0,))
    syn, real = torch.zeros(5, 1, 2, 2), torch.ones(5, 1, 2, 2)
    grid = pair_grid(syn, real, spec, cols=3)  # 2 blocks of (3 synthetic, 3 training)
    assert grid.shape == (12, 1, 2, 2)
    assert grid[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1]  # padding is white (1)


# ---------------------------------------------------------------- membership inference
def test_auc_exact_with_ties():
    assert roc_auc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.875)
    assert roc_auc(torch.full((5,), 7.0), torch.full((3,), 7.0)) == 0.5
    assert roc_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert roc_auc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == 0.0
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, 5, (40,), generator=g).float(), torch.randint(0, 5, (30,), generator=g).float()
    pairwise = ((a[:, None] > b[None]).double() + 0.5 * (a[:, None] == b[None]).double()).mean().item()
    assert roc_auc(a, b) == pytest.approx(pairwise)


def test_class_standardisation_removes_class_difficulty():
    # class 1 is hard for everyone: raw loss mixes classes, standardised loss separates members
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    loss = torch.tensor([0.1, 0.2, 2.1, 2.2, 0.3, 0.4, 2.3, 2.4])
    member = torch.tensor([True] * 4 + [False] * 4)
    assert roc_auc(-loss[member], -loss[~member]) < 1.0
    z = class_standardise(loss, labels, loss[~member], labels[~member], 2)
    assert roc_auc(-z[member], -z[~member]) == 1.0
    assert z[~member].view(2, 2).sum().abs() < 1e-9  # the pool has mean 0 per class


def test_bootstrap_auc_matches_resampling_by_hand_and_pairs_the_rows():
    """Each resample's AUC equals roc_auc on the members and non-members it drew (ties included); rows share the
    draws, so a row against itself differs by exactly 0 and a shifted copy by its fixed effect; seeded."""
    g = torch.Generator().manual_seed(0)
    n = 60
    member = torch.arange(2 * n) < n
    base = torch.randn(2 * n, generator=g).round(decimals=1)  # rounded: ties between members and non-members
    base[:n] += 0.5
    scores = torch.stack([base, base, -base])
    aucs = bootstrap_auc(scores, member, 50, torch.Generator().manual_seed(1), chunk=7)
    assert aucs.shape == (3, 50)
    assert torch.equal(aucs[0], aucs[1]) and torch.allclose(aucs[2], 1 - aucs[0])
    assert torch.equal(aucs, bootstrap_auc(scores, member, 50, torch.Generator().manual_seed(1)))
    # replay the draws: the members' counts first, then the non-members', as the function draws them
    replay = torch.Generator().manual_seed(1)
    draw_in, draw_out = torch.randint(n, (50, n), generator=replay), torch.randint(n, (50, n), generator=replay)
    for b in (0, 17, 49):
        assert aucs[0, b].item() == pytest.approx(roc_auc(base[:n][draw_in[b]], base[n:][draw_out[b]]), abs=1e-12)
    assert aucs[0].std() > 0.01 and abs(aucs[0].mean().item() - roc_auc(base[:n], base[n:])) < 0.03
    with pytest.raises(DatafreeError, match="member"):
        bootstrap_auc(scores, torch.ones(2 * n, dtype=torch.bool), 5, torch.Generator())


def test_memorising_student_is_detected_untrained_one_is_not(fmnist_root):
    torch.manual_seed(0)
    train, test = load_dataset("fashion-mnist", "train", fmnist_root), load_dataset("fashion-mnist", "test", fmnist_root)
    x_in, y_in = train.get_batch(torch.arange(32))
    x_out, y_out = test.get_batch(torch.arange(32))
    y_in = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(0))  # random labels: pure memorisation
    images, labels = torch.cat([x_in, x_out]), torch.cat([y_in, y_out])
    member = torch.arange(64) < 32
    untrained = build_model("lenet5_half", FASHION_MNIST, seed=0)
    memorised = build_model("lenet5_half", FASHION_MNIST, seed=0)
    opt = torch.optim.Adam(memorised.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(memorised(x_in), y_in).backward()
        opt.step()
    before = membership_auc(untrained, images, labels, member, 10)
    after = membership_auc(memorised, images, labels, member, 10)
    calibrated = membership_auc(memorised, images, labels, member, 10,
                                reference_loss=F.cross_entropy(untrained(images), labels, reduction="none").detach())
    assert after["auc_loss"] > 0.9 and after["auc_loss"] > before["auc_loss"] + 0.2
    assert after["auc_calibrated"] > 0.9 and calibrated["auc_calibrated"] > 0.9


# ---------------------------------------------------------------- CLI
def test_cli_audit_writes_report_and_refuses(fmnist_root, tmp_path, capsys):
    train = load_dataset("fashion-mnist", "train", fmnist_root)
    transfer = make_transfer(tmp_path / "set", train)
    a, b = save_untrained(tmp_path / "a.safetensors"), save_untrained(tmp_path / "b.safetensors", seed=1)
    teacher = save_untrained(tmp_path / "t.safetensors", arch="lenet5")
    common = ["audit", "--transfer", str(transfer), "--dataset", "fashion-mnist", "--data-root", str(fmnist_root),
              "--baseline-count", "50", "--device", "cpu"]
    out = tmp_path / "audit"
    assert main([*common, "--teacher", str(teacher), "--student", str(a), "--student", str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pixel NN distance" in printed and "teacher_feature NN distance" in printed and str(a) in printed
    report = json.loads((out / "audit.json").read_text())
    assert report["transfer"] == {"kind": "synthetic", "method": "copies", "count": 8}
    assert report["protocol"]["argv"][:2] == ["datafree", "audit"] and report["protocol"]["seed"] == 0
    assert report["protocol"]["dataset"] == "fashion-mnist" and report["protocol"]["mia_count"] == 2000
    mia = report["membership_inference"]
    assert mia["calibration"] == "class_standardised" and mia["members"] == mia["nonmembers"] == 128
    assert [s["student"] for s in mia["students"]] == [str(a), str(b)]
    assert all(0 <= s[k] <= 1 for s in mia["students"] for k in ("auc_loss", "auc_calibrated"))
    first, second = mia["students"]
    assert mia["resamples"] == 1000 and "auc_loss_minus_first" not in first
    for attack in ("loss", "calibrated"):  # each AUC inside its interval; the paired difference inside its own
        for s in mia["students"]:
            low, high = s[f"auc_{attack}_95"]
            assert low <= s[f"auc_{attack}"] <= high and high - low > 0
        difference = second[f"auc_{attack}"] - first[f"auc_{attack}"]
        assert second[f"auc_{attack}_minus_first"] == pytest.approx(difference)
        low, high = second[f"auc_{attack}_minus_first_95"]
        assert low <= difference <= high
    assert "paired bootstrap" in printed and "vs first" in printed
    assert (out / "closest_pairs.png").is_file()

    # a negative resample count: one line, exit 2, no directory
    assert main([*common, "--student", str(a), "--resamples", "-1", "--out", str(tmp_path / "negative")]) == 2
    assert "--resamples must be >= 0" in capsys.readouterr().err and not (tmp_path / "negative").exists()

    # a non-empty --out is refused; --overwrite (and a reference model) runs
    assert main([*common, "--student", str(a), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*common, "--student", str(a), "--reference-student", str(b), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "audit.json").read_text())["membership_inference"]["calibration"] == "reference"
    capsys.readouterr()

    # a transfer set or a student for another spec: one line, exit 2, nothing written
    cifar_like = DataSpec(1, 32, 32, 10, FASHION_MNIST.mean, FASHION_MNIST.std, name="other")
    other = tmp_path / "other"
    TransferSetWriter(other, {"kind": "synthetic", "method": "x", "config": {}, "seed": 0, "teacher": {},
                              "spec": cifar_like.to_dict()}).append(torch.zeros(2, 1, 32, 32), torch.zeros(2).long(),
                                                                    torch.zeros(2, 10))
    wrong_student = save_untrained(tmp_path / "w.safetensors", spec=cifar_like)
    for argv in ([*common[:2], str(other), *common[3:], "--out", str(tmp_path / "x")],
                 [*common, "--student", str(wrong_student), "--out", str(tmp_path / "y")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("datafree: error:") and "does not fit" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
