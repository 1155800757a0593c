"""MTT: expert buffers (safetensors, resume, corruption) and trajectory matching on a tiny problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from datafree.checkpoint import load_training_state, save_training_state
from datafree.condense import ClassPool, condense_set, method_config
from datafree.condense.methods import METHODS
from datafree.condense.mtt import BUFFER_JSON, MTT, flat_parameters, load_buffer, read_trajectory, train_experts
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models import build_model

SPEC = DataSpec(1, 8, 8, 4, (0.5,), (0.5,), name="tiny")
NET_KWARGS = {"width": 8, "depth": 1}
EXPERTS = dict(experts=2, epochs=4, net="convnet", net_kwargs=NET_KWARGS, lr=0.05, batch_size=16, seed=3,
               progress=False)


def tiny_pool(n: int = 64) -> ClassPool:
    """Learnable normalised images: class c brightens rows 2c, 2c + 1; plus noise."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.4
    for c in range(4):
        x[labels == c, :, 2 * c:2 * c + 2, :] = 0.9
    return ClassPool(SPEC.normalize(x), labels, SPEC)


@pytest.fixture(scope="module")
def pool() -> ClassPool:
    return tiny_pool()


@pytest.fixture(scope="module")
def buffer(tmp_path_factory, pool):
    out = tmp_path_factory.mktemp("buffer")
    train_experts(out, pool, SPEC, **EXPERTS)
    return out


def make_mtt(buffer, seed: int = 0, pool: ClassPool | None = None, **overrides) -> MTT:
    settings = dict(ipc=2, buffer=str(buffer), net_kwargs=NET_KWARGS, syn_steps=4, expert_epochs=2, max_start_epoch=2,
                    lr_img=10.0, lr_lr=1e-4, lr_teacher=0.05)
    config = method_config("mtt", **{**settings, **overrides})
    return MTT(config, SPEC, torch.Generator().manual_seed(seed), pool=pool or tiny_pool(), device="cpu")


def test_train_experts_writes_one_safetensors_file_per_expert_and_the_trajectories(buffer):
    meta, files = load_buffer(buffer, net="convnet", net_kwargs=NET_KWARGS, spec=SPEC)
    assert [f.name for f in files] == ["expert-00000.safetensors", "expert-00001.safetensors"]
    assert sorted(p.name for p in buffer.iterdir()) == [BUFFER_JSON, *[f.name for f in files]]
    on_disk = json.loads((buffer / BUFFER_JSON).read_text())
    assert on_disk == meta and meta["format"] == "datafree-buffer/1" and meta["epochs"] == 4 and meta["dsa"] is True
    params = sum(p.numel() for p in build_model("convnet", SPEC, **NET_KWARGS).parameters())
    assert meta["parameters"] == params and all(len(e["sha256"]) == 64 for e in meta["experts"])
    for i, f in enumerate(files):
        traj = read_trajectory(f)
        assert traj.shape == (5, params) and traj.dtype == torch.float32
        steps = (traj[1:] - traj[:-1]).norm(dim=1)
        assert (steps > 1e-3).all()  # the expert moved in every epoch
        assert torch.equal(traj[0], flat_parameters(build_model("convnet", SPEC, seed=3 + i, **NET_KWARGS)))
        assert torch.equal(read_trajectory(f, [3, 1], verify=False), traj[[3, 1]])
    assert not torch.equal(read_trajectory(files[0]), read_trajectory(files[1]))  # seeded seed + i


def test_resume_skips_finished_experts_and_equals_an_uninterrupted_buffer(tmp_path, pool, buffer):
    out = tmp_path / "buf"
    train_experts(out, pool, SPEC, **{**EXPERTS, "experts": 1})
    first = out / "expert-00000.safetensors"
    stamp = first.stat().st_mtime_ns
    with pytest.raises(DatafreeError, match="already holds an expert buffer"):
        train_experts(out, pool, SPEC, **EXPERTS)
    with pytest.raises(DatafreeError, match=r"other settings \(lr\)"):
        train_experts(out, pool, SPEC, **{**EXPERTS, "lr": 0.1}, resume=True)
    meta = train_experts(out, pool, SPEC, **EXPERTS, resume=True)
    assert first.stat().st_mtime_ns == stamp and len(meta["experts"]) == 2
    assert meta["experts"] == json.loads((buffer / BUFFER_JSON).read_text())["experts"]  # same bytes (sha256)
    again = train_experts(out, pool, SPEC, **EXPERTS, resume=True)  # nothing left to do
    assert again["experts"] == meta["experts"] and first.stat().st_mtime_ns == stamp


def one_line(match: str):
    """``pytest.raises(DatafreeError)`` whose message is one line."""
    return pytest.raises(DatafreeError, match=f"^[^\\n]*{match}[^\\n]*$")


def test_corrupt_missing_or_mismatched_buffers_give_one_line_errors(tmp_path, buffer):
    bad = tmp_path / "bad"
    shutil.copytree(buffer, bad)
    expert = bad / "expert-00001.safetensors"
    data = bytearray(expert.read_bytes())
    data[-5] ^= 0xFF  # one corrupted byte in the trajectory data
    expert.write_bytes(bytes(data))
    with one_line("does not match the sha256"):
        read_trajectory(expert)
    expert.write_bytes(bytes(data[:40]))  # truncated
    with one_line("cannot read expert trajectory"):
        read_trajectory(expert, [0], verify=False)
    expert.unlink()
    with one_line("lacks 1 listed file"):
        load_buffer(bad)
    (bad / BUFFER_JSON).write_text("{not json")
    with one_line("is corrupt"):
        load_buffer(bad)
    with one_line("not found"):
        load_buffer(tmp_path / "nowhere")
    with one_line("was trained with convnet"):
        load_buffer(buffer, net="convnet", net_kwargs={"width": 16, "depth": 1})
    with one_line("was trained on tiny"):
        load_buffer(buffer, spec=DataSpec(1, 8, 8, 4, (0.1,), (0.5,)))
    with one_line("mtt needs expert trajectories"):
        make_mtt("")
    with one_line("was trained with convnet"):
        make_mtt(buffer, net_kwargs={"width": 8, "depth": 1, "norm": "none"})
    with one_line("expert_epochs"):
        make_mtt(buffer, expert_epochs=5)


def test_one_unrolled_step_is_a_manual_sgd_step(buffer):
    mtt = make_mtt(buffer, syn_steps=1, dsa=False)
    theta, _ = mtt.expert_params(1, 2)
    net = build_model("convnet", SPEC, **NET_KWARGS).train()
    vector_to_parameters(theta.clone(), net.parameters())
    loss = F.cross_entropy(net(mtt.images.detach()), mtt.labels)
    grad = parameters_to_vector(torch.autograd.grad(loss, list(net.parameters())))
    expected = theta - 0.05 * grad
    got = mtt.unroll(theta)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, theta, atol=1e-4)  # the step is not trivially zero


def test_the_loss_reaches_images_and_the_learnable_lr(buffer):
    mtt = make_mtt(buffer)
    theta_s, theta_t = mtt.expert_params(0, 1)
    theta_n = mtt.unroll(theta_s)
    loss = (theta_n - theta_t).pow(2).sum() / (theta_s - theta_t).pow(2).sum()
    g_img, g_lr = torch.autograd.grad(loss, [mtt.images, mtt.syn_lr])
    assert g_img.abs().sum() > 0 and g_lr.abs() > 0 and torch.isfinite(g_img).all()
    assert g_lr < 0  # a larger lr gets the student further along the expert's path
    before = mtt.syn_lr.item()
    terms = mtt.step()
    assert set(terms) == {"mtt", "syn_lr"} and terms["syn_lr"] == mtt.syn_lr.item() != before
    assert mtt.extra_fields() == {"syn_lr": mtt.syn_lr.item()}


def run_losses(buffer, iterations: int, **overrides) -> list[float]:
    mtt = make_mtt(buffer, seed=1, **overrides)
    return [mtt.step()["mtt"] for _ in range(iterations)]


def test_the_matching_objective_decreases(buffer):
    losses = run_losses(buffer, 30)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, losses
    # control: the same draws without learning do not decrease (the drop is not an artefact of the draws)
    frozen = run_losses(buffer, 30, lr_img=1e-12, lr_lr=0.0)
    assert sum(frozen[-5:]) / 5 > 0.95 * sum(frozen[:5]) / 5, frozen


def test_state_dict_resume_continues_bitwise(tmp_path, buffer):
    a = make_mtt(buffer, seed=5)
    straight = [a.step() for _ in range(5)]
    b = make_mtt(buffer, seed=5)
    head = [b.step() for _ in range(2)]
    save_training_state(tmp_path / "state.pt", {"condenser": b.state_dict(), "rng": b.rng.get_state()})
    state = load_training_state(tmp_path / "state.pt")  # weights_only: no pickled objects in the state
    c = make_mtt(buffer, seed=99)
    c.load_state_dict(state["condenser"])
    c.rng.set_state(state["rng"])
    tail = [c.step() for _ in range(3)]
    assert head + tail == straight
    assert torch.equal(c.images, a.images) and torch.equal(c.syn_lr, a.syn_lr)


def test_registered_and_runs_through_the_driver(tmp_path, buffer, pool):
    assert METHODS["mtt"].condenser is MTT
    config = method_config("mtt", ipc=1, iterations=2, buffer=str(buffer), net_kwargs=NET_KWARGS, syn_steps=2,
                           expert_epochs=1, max_start_epoch=3, lr_img=10.0, lr_teacher=0.05)
    manifest = condense_set(tmp_path / "set", config, SPEC, pool=pool, progress=False, checkpoint_every=1)
    assert manifest["iterations_done"] == 2 and manifest["count"] == 4
    # the manifest records the learned rate: the run's own, moved off its start (lr_teacher) by the two updates
    learned = load_training_state(tmp_path / "set" / "condense-state.pt")["condenser"]["syn_lr"].item()
    assert manifest["syn_lr"] == pytest.approx(learned) and manifest["syn_lr"] != pytest.approx(0.05, abs=1e-9)


def test_the_unrolled_gradient_matches_finite_differences(buffer):
    """Second-order gradients through functional_call, DSA and the learnable lr (float64)."""
    mtt = make_mtt(buffer, syn_steps=3, batch_syn=5)
    theta_s, theta_t = (t.double() for t in mtt.expert_params(0, 1))
    state = mtt.rng.get_state()
    images = mtt.images.detach().double().requires_grad_(True)
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)

    def objective(x, rate):
        mtt.rng.set_state(state)  # the same minibatches and augmentation draws every time
        mtt.images, mtt.syn_lr = x, rate
        return (mtt.unroll(theta_s) - theta_t).pow(2).sum() / (theta_s - theta_t).pow(2).sum()

    g_img, g_lr = torch.autograd.grad(objective(images, lr), [images, lr])
    v = torch.randn(images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-5
    x, rate = images.detach(), lr.detach()  # the inner steps still need autograd: no no_grad() here
    fd_img = (objective(x + eps * v, rate) - objective(x - eps * v, rate)).detach() / (2 * eps)
    fd_lr = (objective(x, rate + eps) - objective(x, rate - eps)).detach() / (2 * eps)
    assert torch.allclose((g_img * v).sum(), fd_img, rtol=1e-4)
    assert torch.allclose(g_lr, fd_lr, rtol=1e-4)


def test_a_non_finite_loss_changes_nothing_and_the_lr_stays_positive(buffer):
    mtt = make_mtt(buffer, lr_lr=0.0)
    images, lr = mtt.images.detach().clone(), mtt.syn_lr.item()
    theta, _ = mtt.expert_params(0, 0)
    mtt.expert_params = lambda expert, start: (theta, theta)  # an expert that did not move: 0 / 0
    with pytest.raises(DatafreeError, match="non-finite mtt loss"):
        mtt.step()
    assert torch.equal(mtt.images, images) and mtt.syn_lr.item() == lr and not mtt.optimizer.state
    del mtt.expert_params
    with torch.no_grad():
        mtt.syn_lr.fill_(-0.01)
    assert mtt.step()["syn_lr"] == pytest.approx(1e-3 * 0.05)
