import json
import os
import pickle

import pytest
import torch

from datafree.checkpoint import ModelInfo, load_model, read_state_dict, save_model
from datafree.data import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import build_model


@pytest.fixture
def saved(tmp_path):
    model = build_model("lenet5_half", FASHION_MNIST, seed=0)
    path = save_model(tmp_path / "m.safetensors", model, ModelInfo("lenet5_half", FASHION_MNIST, {}, {"test_accuracy": 1.0}))
    return model, path


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip_with_sidecar(saved, tmp_path):
    model, path = saved
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["arch"] == "lenet5_half" and side["spec"]["mean"] == [0.2861] and len(side["sha256"]) == 64
    loaded, info = load_model(path)
    assert same_weights(model, loaded)
    assert info.spec == FASHION_MNIST and info.metrics == {"test_accuracy": 1.0}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_run_directory_resolves_to_model_file(tmp_path):
    model = build_model("lenet5", FASHION_MNIST, seed=1)
    save_model(tmp_path / "model.safetensors", model, ModelInfo("lenet5", FASHION_MNIST))
    loaded, _ = load_model(tmp_path)
    assert same_weights(model, loaded)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "net", "module_prefix"])
def test_pt_files_unwrapped(tmp_path, wrap):
    model = build_model("lenet5_half", FASHION_MNIST, seed=2)
    sd = model.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {}},
        "net": {"net": sd, "acc": 0.9},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
    }[wrap]
    torch.save(obj, tmp_path / "w.pt")
    loaded, info = load_model(tmp_path / "w.pt", arch="lenet5_half", spec=FASHION_MNIST)
    assert same_weights(model, loaded) and info.arch == "lenet5_half"


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    evil = _Evil()
    evil.marker = marker
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": evil}, f)
    with pytest.raises(DatafreeError, match="trust-pickle"):
        read_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


def test_trusted_pickle_of_full_module_loads(tmp_path):
    model = build_model("lenet5_half", FASHION_MNIST, seed=3)
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(DatafreeError, match="pickled code"):
        read_state_dict(tmp_path / "full.pt")
    sd = read_state_dict(tmp_path / "full.pt", trust_pickle=True)
    assert torch.equal(sd["classifier.weight"], model.state_dict()["classifier.weight"])


def test_truncated_safetensors_gives_one_line_error(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatafreeError, match="truncated or corrupted") as e:
        load_model(bad, arch="lenet5_half", spec=FASHION_MNIST)
    assert "\n" not in str(e.value)


def test_modified_weights_fail_checksum(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatafreeError, match="sha256"):
        load_model(path)


def test_truncated_pt_file(tmp_path):
    torch.save(build_model("lenet5", FASHION_MNIST).state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "w.pt").write_bytes(data[:100])
    with pytest.raises(DatafreeError, match="cannot read"):
        read_state_dict(tmp_path / "w.pt")


def test_wrong_architecture_names_keys(saved):
    _, path = saved
    with pytest.raises(DatafreeError) as e:
        load_model(path, arch="lenet5")
    msg = str(e.value)
    assert "mis-shaped" in msg and "features.0.weight [3, 1, 5, 5] vs [6, 1, 5, 5]" in msg and "\n" not in msg
    with pytest.raises(DatafreeError, match=r"missing .*unexpected"):
        load_model(path, arch="resnet8")


def test_no_sidecar_needs_arch(saved, tmp_path):
    _, path = saved
    (tmp_path / "m.json").unlink()
    with pytest.raises(DatafreeError, match="--arch"):
        load_model(path)
    load_model(path, arch="lenet5_half", spec=FASHION_MNIST)


def test_corrupt_sidecar(saved, tmp_path):
    _, path = saved
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(DatafreeError, match="not valid JSON"):
        load_model(path)


def test_missing_file():
    with pytest.raises(DatafreeError, match="not found"):
        load_model("/nonexistent/x.safetensors")


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import datafree.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        save_model(tmp_path / "x.safetensors", build_model("lenet5", FASHION_MNIST), ModelInfo("lenet5", FASHION_MNIST))
    assert list(tmp_path.iterdir()) == []


def test_identical_models_save_identical_bytes(tmp_path):
    """safetensors writes metadata keys in a per-process random order, so a model's sha256 is only
    reproducible with a single metadata key."""
    from safetensors import safe_open

    from datafree.checkpoint import ModelInfo, save_model
    from datafree.data import FASHION_MNIST
    from datafree.models import build_model

    model = build_model("lenet5_half", FASHION_MNIST, seed=0)
    info = ModelInfo("lenet5_half", FASHION_MNIST)
    path = save_model(tmp_path / "m.safetensors", model, info)
    with safe_open(str(path), "pt") as f:
        assert len(f.metadata()) == 1
    # the property itself: two processes with different hash seeds write the same bytes
    import hashlib
    import subprocess
    import sys

    script = ("import sys; from datafree.checkpoint import ModelInfo, save_model; from datafree.data import "
              "FASHION_MNIST; from datafree.models import build_model; save_model(sys.argv[1], build_model("
              "'lenet5_half', FASHION_MNIST, seed=0), ModelInfo('lenet5_half', FASHION_MNIST))")
    digests = set()
    for hash_seed in ("1", "2"):
        out = tmp_path / f"p{hash_seed}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"})
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests == {hashlib.sha256(path.read_bytes()).hexdigest()}
