import json

import pytest
import torch

from datafree.data import DataSpec, iterate_batches
from datafree.data.transfer import TransferSet, TransferSets, TransferSetWriter, read_manifest
from datafree.errors import DatafreeError

SPEC = DataSpec(1, 4, 4, 3, (0.5,), (0.5,), name="tiny")
HEADER = {"kind": "synthetic", "method": "test", "config": {}, "seed": 0, "teacher": {"arch": "t", "sha256": "ab"},
          "spec": SPEC.to_dict()}


def batch(n, start):
    x = torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, *SPEC.shape).contiguous()
    y = torch.arange(start, start + n) % 3
    return x, y, torch.nn.functional.one_hot(y, 3).float() * 5


def test_write_append_read_round_trip(tmp_path):
    w = TransferSetWriter(tmp_path / "set", HEADER)
    w.append(*batch(5, 0))
    w.append(*batch(3, 5))
    ts = TransferSet(tmp_path / "set")
    assert len(ts) == 8 and ts.spec == SPEC
    x, y, logits = ts.get_batch(torch.tensor([7, 0, 5, 4]))
    assert x[:, 0, 0, 0].tolist() == [7, 0, 5, 4]
    assert y.tolist() == [1, 0, 2, 1] and torch.equal(logits.argmax(1), y)
    everything = torch.cat([b[0][:, 0, 0, 0] for b in iterate_batches(ts, 3, shuffle=True, generator=torch.Generator())])
    assert sorted(everything.tolist()) == list(range(8))
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["count"] == 8 and [s["count"] for s in manifest["shards"]] == [5, 3]
    assert manifest["teacher"]["sha256"] == "ab" and manifest["label_type"]


def test_interrupted_append_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    import datafree.data.transfer as transfer

    w = TransferSetWriter(tmp_path / "set", HEADER)
    w.append(*batch(4, 0))
    # crash after the shard file is in place but before the manifest lists it
    original = transfer.write_json

    def crash(path, obj):
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        w.append(*batch(4, 4))
    monkeypatch.setattr(transfer, "write_json", original)
    assert len(TransferSet(tmp_path / "set")) == 4  # the unlisted shard is not part of the set
    resumed = TransferSetWriter(tmp_path / "set", HEADER)
    resumed.append(*batch(4, 4))
    resumed.append(*batch(2, 8))
    ts = TransferSet(tmp_path / "set")
    values = ts.get_batch(torch.arange(len(ts)))[0][:, 0, 0, 0].tolist()
    assert values == list(range(10))
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == [
        "manifest.json", "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]


def test_crash_while_writing_a_shard_leaves_no_partial_file(tmp_path, monkeypatch):
    import datafree.data.transfer as transfer

    w = TransferSetWriter(tmp_path / "set", HEADER)

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(transfer, "save_file", boom)
    with pytest.raises(OSError):
        w.append(*batch(2, 0))
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["manifest.json"]


def test_reopening_with_another_recipe_is_refused(tmp_path):
    TransferSetWriter(tmp_path / "set", HEADER).append(*batch(2, 0))
    with pytest.raises(DatafreeError, match="another method"):
        TransferSetWriter(tmp_path / "set", {**HEADER, "method": "other"})
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(DatafreeError, match="not empty"):
        TransferSetWriter(tmp_path / "foreign", HEADER)


def test_corrupted_or_missing_shard_is_reported(tmp_path):
    w = TransferSetWriter(tmp_path / "set", HEADER)
    w.append(*batch(2, 0))
    shard = tmp_path / "set" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatafreeError, match="sha256"):
        TransferSet(tmp_path / "set")[0]
    shard.unlink()
    with pytest.raises(DatafreeError, match="missing"):
        TransferSet(tmp_path / "set")[0]
    with pytest.raises(DatafreeError, match="not a transfer set"):
        TransferSet(tmp_path)


def test_fields_are_recorded_with_their_shard(tmp_path):
    w = TransferSetWriter(tmp_path / "set", HEADER)
    w.append(*batch(2, 0), synthesis_time_s=1.5)
    w.append(*batch(2, 2), synthesis_time_s=3.0)
    manifest = read_manifest(tmp_path / "set")
    assert manifest["synthesis_time_s"] == 3.0 and manifest["count"] == 4


def test_several_sets_read_as_one_in_order(tmp_path):
    a, b = TransferSetWriter(tmp_path / "a", HEADER), TransferSetWriter(tmp_path / "b", HEADER)
    a.append(*batch(5, 0))
    b.append(*batch(2, 10))
    b.append(*batch(2, 20))
    both = TransferSets([TransferSet(tmp_path / "a"), TransferSet(tmp_path / "b")])
    assert len(both) == 9 and both.spec == SPEC
    x, y, logits = both.get_batch(torch.tensor([8, 0, 5, 4, 7]))
    assert x[:, 0, 0, 0].tolist() == [21, 0, 10, 4, 20]
    assert torch.equal(logits.argmax(1), y) and both[6][0][0, 0, 0].item() == 11
    other = TransferSetWriter(tmp_path / "c", {**HEADER, "spec": DataSpec(1, 4, 4, 5, (0.5,), (0.5,)).to_dict()})
    other.append(torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), torch.zeros(1, 5))
    with pytest.raises(DatafreeError, match="different data specs"):
        TransferSets([TransferSet(tmp_path / "a"), TransferSet(tmp_path / "c")])


def test_the_first_n_images_of_a_set_and_their_share_of_its_time(tmp_path):
    from datafree.data.transfer import read_transfer_source, sets_synthesis_seconds

    w = TransferSetWriter(tmp_path / "a", HEADER)
    w.append(*batch(5, 0), synthesis_time_s=2.0)
    w.append(*batch(3, 5), synthesis_time_s=4.0)
    first = TransferSet(tmp_path / "a", count=6)
    assert len(first) == 6 and first.get_batch(torch.tensor([5, 0]))[0][:, 0, 0, 0].tolist() == [5, 0]
    seen = torch.cat([b[0][:, 0, 0, 0] for b in iterate_batches(first, 4, shuffle=True, generator=torch.Generator())])
    assert sorted(seen.tolist()) == list(range(6))
    with pytest.raises(IndexError):
        first.get_batch(torch.tensor([0, 6]))
    for count in (0, 9):
        with pytest.raises(DatafreeError, match="holds 8 images"):
            TransferSet(tmp_path / "a", count=count)
    both, source = read_transfer_source([tmp_path / "a", tmp_path / "a"], 6)
    assert len(both) == 12 and both[7][0][0, 0, 0].item() == 1
    assert source["transfer_count"] == 6 and source["transfers"] == [str(tmp_path / "a")] * 2
    assert "transfer_count" not in read_transfer_source([tmp_path / "a"])[1]
    assert sets_synthesis_seconds([tmp_path / "a"]) == 4.0
    assert sets_synthesis_seconds([tmp_path / "a"] * 2, 6) == 6.0  # 6 of 8 images: 3 s of each set's 4


def test_a_set_made_by_several_processes_counts_the_time_of_each():
    from datafree.data.transfer import synthesis_seconds

    merged = {"synthesis_time_s": 50.0, "ranks": [{"synthesis_time_s": 50.0}, {"synthesis_time_s": 40.0}]}
    assert synthesis_seconds(merged) == 90.0  # process-seconds, not the slowest part's wall time
    assert synthesis_seconds({"synthesis_time_s": 12.5}) == 12.5
    assert synthesis_seconds({"synthesis_time_s": 7.0, "ranks": [{"count": 3}]}) == 7.0  # an older merge: its own
