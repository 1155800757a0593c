import json
import os

import pytest
import torch

from datafree.condense.interop import dc_sidecar, export_set, import_set
from datafree.condense.run import protocol_record
from datafree.data import DataSpec
from datafree.data.transfer import TransferSet, TransferSetWriter
from datafree.errors import DatafreeError

SPEC = DataSpec(1, 8, 8, 4, (0.25,), (0.5,), name="tiny")
OTHER = DataSpec(1, 8, 8, 4, (0.5,), (0.5,), name="other")


def make_set(path, ipc=2, **fields):
    header = {"kind": "condensed", "method": "dm", "config": {"method": "dm", "ipc": ipc}, "seed": 0, "ipc": ipc,
              "teacher": None, "spec": SPEC.to_dict(), "protocol": protocol_record(SPEC, "tiny"),
              "soft_labels": False, "label_type": "class (hard labels)"}
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4 * ipc, *SPEC.shape, generator=g)
    labels = torch.arange(4).repeat_interleave(ipc)
    TransferSetWriter(path, header).replace(images, labels, **fields)
    return images, labels


def read(path):
    ts = TransferSet(path)
    return ts, ts.get_batch(torch.arange(len(ts)))


def test_dc_round_trip(tmp_path):
    images, labels = make_set(tmp_path / "set")
    out = tmp_path / "res_DM_tiny_ConvNet_2ipc.pt"
    assert export_set(tmp_path / "set", out, "dc") == out
    raw = torch.load(out, weights_only=True)
    assert raw["accs_all_exps"] == {} and len(raw["data"]) == 1
    assert raw["data"][0][0].dtype == torch.float32 and raw["data"][0][1].dtype == torch.int64
    side = json.loads(dc_sidecar(out).read_text())
    assert side["spec"] == SPEC.to_dict() and side["method"] == "dm" and side["protocol"]["normalisation"]["mean"] == [0.25]

    manifest = import_set(out, tmp_path / "back", spec=SPEC)
    ts, (x, y) = read(tmp_path / "back")
    assert torch.equal(x, images) and torch.equal(y, labels) and ts.spec == SPEC and not ts.soft_labels
    assert manifest["kind"] == "condensed" and manifest["method"] == "imported" and manifest["ipc"] == 2
    assert manifest["config"]["layout"] == "dc" and manifest["config"]["source_method"] == "dm"
    assert manifest["protocol"]["dataset"] == "tiny" and manifest["protocol"]["zca"] is False
    assert manifest["seed"] is None and manifest["teacher"] is None


def test_mtt_round_trip_keeps_syn_lr(tmp_path):
    images, labels = make_set(tmp_path / "set", syn_lr=0.0125)
    out = tmp_path / "mtt"
    export_set(tmp_path / "set", out, "mtt")
    assert {p.name for p in out.iterdir()} == {"images_best.pt", "labels_best.pt", "lr_best.pt", "datafree.json"}
    assert torch.load(out / "lr_best.pt", weights_only=True).dim() == 0
    manifest = import_set(out, tmp_path / "back", spec=SPEC, method="mtt", dataset="tiny")
    _, (x, y) = read(tmp_path / "back")
    assert torch.equal(x, images) and torch.equal(y, labels)
    assert manifest["method"] == "mtt" and manifest["config"]["layout"] == "mtt"
    assert manifest["syn_lr"] == pytest.approx(0.0125)


def test_dc_picks_experiment_and_records_zca(tmp_path):
    a, b = torch.randn(4, *SPEC.shape), torch.randn(8, *SPEC.shape)
    torch.save({"data": [[a, torch.arange(4)], [b, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])]], "accs_all_exps": {"ConvNet": [0.5]}},
               tmp_path / "res.pt")
    manifest = import_set(tmp_path / "res.pt", tmp_path / "back", spec=SPEC, zca=True, exp=1)
    _, (x, _) = read(tmp_path / "back")
    assert torch.equal(x, b) and manifest["ipc"] == 2 and manifest["protocol"]["zca"] is True
    with pytest.raises(DatafreeError, match="exp 2"):
        import_set(tmp_path / "res.pt", tmp_path / "other", spec=SPEC, exp=2)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("layout", ["dc", "mtt"])
def test_pickled_code_is_refused(tmp_path, layout):
    marker = tmp_path / "pwned"
    if layout == "dc":
        src = tmp_path / "evil.pt"
        torch.save({"data": [[torch.randn(4, *SPEC.shape), Evil(str(marker))]], "accs_all_exps": {}}, src)
    else:
        src = tmp_path / "evil"
        src.mkdir()
        torch.save(torch.randn(4, *SPEC.shape), src / "images_best.pt")
        torch.save(Evil(str(marker)), src / "labels_best.pt")
    assert not marker.exists()
    with pytest.raises(DatafreeError, match="pickled code, which datafree will not run") as e:
        import_set(src, tmp_path / "back", spec=SPEC)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value) and "not an allowed global" in str(e.value)
    assert not marker.exists() and not (tmp_path / "back").exists()
    torch.load(src if layout == "dc" else src / "labels_best.pt", weights_only=False)  # control: the payload is live
    assert marker.exists()


def test_wrong_shape_and_labels_are_refused(tmp_path):
    torch.save({"data": [[torch.randn(4, 3, 8, 8), torch.arange(4)]], "accs_all_exps": {}}, tmp_path / "shape.pt")
    with pytest.raises(DatafreeError, match="images of shape"):
        import_set(tmp_path / "shape.pt", tmp_path / "a", spec=SPEC)
    torch.save({"data": [[torch.randn(4, *SPEC.shape), torch.tensor([0, 1, 2, 4])]], "accs_all_exps": {}}, tmp_path / "lab.pt")
    with pytest.raises(DatafreeError, match=r"outside \[0, 4\)"):
        import_set(tmp_path / "lab.pt", tmp_path / "b", spec=SPEC)
    torch.save({"data": [[torch.randn(4, *SPEC.shape), torch.arange(3)]], "accs_all_exps": {}}, tmp_path / "n.pt")
    with pytest.raises(DatafreeError, match="labels of shape"):
        import_set(tmp_path / "n.pt", tmp_path / "c", spec=SPEC)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(DatafreeError, match="not a DatasetCondensation result"):
        import_set(tmp_path / "model.pt", tmp_path / "d", spec=SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatafreeError, match="mtt layout"):
        import_set(tmp_path / "empty", tmp_path / "e", spec=SPEC)


def test_sidecar_guards_the_input_space(tmp_path):
    make_set(tmp_path / "set")
    export_set(tmp_path / "set", tmp_path / "res.pt", "dc")
    with pytest.raises(DatafreeError, match="not the input space"):
        import_set(tmp_path / "res.pt", tmp_path / "back", spec=OTHER)
    torch.save({"data": [[torch.randn(8, *SPEC.shape), torch.arange(8) % 4]], "accs_all_exps": {}}, tmp_path / "res.pt")
    with pytest.raises(DatafreeError, match="sha256 differs"):
        import_set(tmp_path / "res.pt", tmp_path / "back", spec=SPEC)


def test_export_refuses_to_overwrite(tmp_path):
    make_set(tmp_path / "set")
    export_set(tmp_path / "set", tmp_path / "res.pt", "dc")
    export_set(tmp_path / "set", tmp_path / "mtt", "mtt")
    before = os.stat(tmp_path / "res.pt").st_mtime_ns
    with pytest.raises(DatafreeError, match="exists"):
        export_set(tmp_path / "set", tmp_path / "res.pt", "dc")
    with pytest.raises(DatafreeError, match="exists"):
        export_set(tmp_path / "set", tmp_path / "mtt", "mtt")
    assert os.stat(tmp_path / "res.pt").st_mtime_ns == before
    export_set(tmp_path / "set", tmp_path / "res.pt", "dc", overwrite=True)
    export_set(tmp_path / "set", tmp_path / "mtt", "mtt", overwrite=True)
    assert not (tmp_path / "mtt" / "lr_best.pt").exists()
    with pytest.raises(DatafreeError, match="unknown layout"):
        export_set(tmp_path / "set", tmp_path / "x", "tfrecord")
    assert not list(tmp_path.glob(".*.tmp"))


def test_mtt_soft_labels(tmp_path):
    d = tmp_path / "logged" / "Normal"  # the layout of MTT's soft-label descendants
    d.mkdir(parents=True)
    images = torch.randn(6, *SPEC.shape)
    soft = torch.randn(6, 4) * 3
    torch.save(images, d / "images_best.pt")
    torch.save(soft.requires_grad_(), d / "labels_best.pt")
    torch.save(0.01, d / "lr_best.pt")  # some forks save syn_lr.item()
    manifest = import_set(tmp_path / "logged", tmp_path / "back", spec=SPEC)
    ts, (x, y, logits) = read(tmp_path / "back")
    assert ts.soft_labels and manifest["soft_labels"] and "logits" in manifest["label_type"]
    assert torch.equal(x, images) and torch.equal(y, soft.argmax(1)) and torch.equal(logits, soft.detach())
    assert manifest["syn_lr"] == pytest.approx(0.01)

    probs = soft.detach().softmax(1)
    torch.save(probs, d / "labels_best.pt")
    manifest = import_set(tmp_path / "logged", tmp_path / "probs", spec=SPEC)
    _, (_, y, logits) = read(tmp_path / "probs")
    assert "probabilities" in manifest["label_type"]
    assert torch.allclose(logits.softmax(1), probs, atol=1e-6) and torch.equal(y, probs.argmax(1))

    with pytest.raises(DatafreeError, match="soft labels of shape"):
        torch.save(torch.randn(6, 5), d / "labels_best.pt")
        import_set(tmp_path / "logged", tmp_path / "bad", spec=SPEC)


def test_import_refuses_existing_set(tmp_path):
    make_set(tmp_path / "set")
    export_set(tmp_path / "set", tmp_path / "res.pt", "dc")
    with pytest.raises(DatafreeError, match="already holds"):
        import_set(tmp_path / "res.pt", tmp_path / "set", spec=SPEC)
    with pytest.raises(DatafreeError, match="already a datafree transfer set"):
        import_set(tmp_path / "set", tmp_path / "x", spec=SPEC)
