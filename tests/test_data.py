import gzip
import pickle

import numpy as np
import pytest
import torch

from datafree.data import (
    FASHION_MNIST,
    DataSpec,
    RandomCropFlip,
    class_balance_weights,
    dataset_spec,
    epoch_generator,
    iterate_batches,
    load_dataset,
    num_batches,
)
from datafree.errors import DatafreeError
from tests.conftest import make_images, write_mnist_family


def test_fashion_mnist_idx_gz(fmnist_root):
    train = load_dataset("fashion-mnist", "train", fmnist_root)
    test = load_dataset("fashion-mnist", "test", fmnist_root)
    assert len(train) == 256 and len(test) == 128
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= int(y) < 10
    assert dataset_spec(train) == FASHION_MNIST
    # normalised with the spec's statistics
    raw = train.images[0].float() / 255
    assert torch.allclose(x, (raw - 0.2861) / 0.3530)


def test_uncompressed_idx_and_torchvision_layout(tmp_path):
    write_mnist_family(tmp_path / "MNIST" / "raw", compress=False)
    ds = load_dataset("mnist", "test", tmp_path)
    assert len(ds) == 128 and ds.spec.name == "mnist"


def test_env_var_root(fmnist_root, monkeypatch):
    monkeypatch.setenv("DATAFREE_DATA", str(fmnist_root))
    assert len(load_dataset("fashion-mnist", "test")) == 128


def test_missing_dataset_says_how_to_install(tmp_path, monkeypatch):
    import datafree.data.datasets as d

    monkeypatch.setattr(d, "SYSTEM_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DatafreeError, match="apt-get install -y dataset-fashion-mnist") as e:
        load_dataset("fashion-mnist", "train", tmp_path / "empty")
    assert "\n" not in str(e.value)


def test_truncated_idx(tmp_path):
    root = write_mnist_family(tmp_path / "f")
    path = root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatafreeError, match="truncated"):
        load_dataset("fashion-mnist", "test", root)


def test_cifar10_pickles(cifar10_root):
    train = load_dataset("cifar10", "train", cifar10_root)
    test = load_dataset("cifar10", "test", cifar10_root)
    assert len(train) == 100 and len(test) == 20
    assert train.spec.shape == (3, 32, 32) and train.spec.class_names[3] == "c3"
    x, y = train.get_batch(torch.arange(5))
    assert x.shape == (5, 3, 32, 32) and y.dtype == torch.int64


def test_cifar100_pickles(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name, seed in (("train", 0), ("test", 1)):
        images, labels = make_images(30, 100, (3, 32, 32), seed)
        with open(d / name, "wb") as f:
            pickle.dump({"data": images.reshape(30, -1), "fine_labels": labels.astype(int).tolist()}, f)
    ds = load_dataset("cifar100", "train", tmp_path)
    assert len(ds) == 30 and ds.spec.num_classes == 100


def test_cifar_pickle_with_code_is_refused(tmp_path):
    import os

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(DatafreeError, match="refusing to unpickle"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c in ("cat", "dog", "eel"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                arr = np.full((20, 24, 3), 40 * i + 10, dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    ds = load_dataset("imagefolder", "train", tmp_path, image_size=16, channels=1)
    x, y = ds[0]
    assert len(ds) == 6 and x.shape == (1, 16, 16) and ds.spec.class_names == ("cat", "dog", "eel")


def test_unknown_dataset_and_split(fmnist_root):
    with pytest.raises(DatafreeError, match="unknown dataset"):
        load_dataset("svhn", "train", fmnist_root)
    with pytest.raises(DatafreeError, match="unknown split"):
        load_dataset("fashion-mnist", "val", fmnist_root)


def test_spec_round_trip_and_validation():
    assert DataSpec.from_dict(FASHION_MNIST.to_dict()) == FASHION_MNIST
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(FASHION_MNIST.denormalize(FASHION_MNIST.normalize(x)), x, atol=1e-6)
    with pytest.raises(DatafreeError):
        DataSpec(3, 32, 32, 10, (0.5,), (0.5,))


def test_batches_cover_every_sample_once_and_are_seeded(fmnist_root):
    ds = load_dataset("fashion-mnist", "test", fmnist_root)
    labels = [b[1] for b in iterate_batches(ds, 50, shuffle=True, generator=epoch_generator(0, 0))]
    assert [len(b) for b in labels] == [50, 50, 28] == [50, 50, 28][: num_batches(ds, 50)]
    assert sorted(torch.cat(labels).tolist()) == sorted(ds.labels.tolist())
    again = [b[1] for b in iterate_batches(ds, 50, shuffle=True, generator=epoch_generator(0, 0))]
    other = [b[1] for b in iterate_batches(ds, 50, shuffle=True, generator=epoch_generator(0, 1))]
    assert all(torch.equal(a, b) for a, b in zip(labels, again))
    assert not all(torch.equal(a, b) for a, b in zip(labels, other))


def test_batches_split_disjointly_across_ranks(fmnist_root):
    ds = load_dataset("fashion-mnist", "test", fmnist_root)
    seen = []  # each sample by its image (the labels repeat)
    for rank in range(2):
        rows = [b[0].flatten(1) for b in iterate_batches(ds, 16, shuffle=True, generator=epoch_generator(0, 0),
                                                         rank=rank, world_size=2)]
        seen.append(torch.cat(rows))
    assert len(seen[0]) == len(seen[1]) == 64
    every = torch.cat([b[0].flatten(1) for b in iterate_batches(ds, 128, shuffle=False)])
    assert len(torch.unique(every, dim=0)) == 128  # the test's data has no duplicate image
    # together the ranks hold every sample once: no sample on both, none left out
    assert torch.equal(torch.unique(torch.cat(seen), dim=0), torch.unique(every, dim=0))


def test_class_balanced_draws_even_out_unbalanced_labels_in_memory_and_through_a_dataloader():
    """A set whose labels are 80% class 0: weighted draws bring every class up about equally often, seeded, the
    same for an in-memory set and a plain Dataset, and split across ranks like the shuffled order."""
    labels = torch.cat([torch.zeros(800, dtype=torch.long), torch.arange(200) % 4 + 1])
    images = torch.arange(1000, dtype=torch.float32).view(-1, 1, 1, 1)

    class Plain(torch.utils.data.Dataset):  # no get_batch, no labels attribute: read through a DataLoader
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return images[i], labels[i]

    class InMemory(Plain):
        def get_batch(self, index):
            return images[index], labels[index]

    weights = class_balance_weights(InMemory())
    assert torch.allclose(weights[:800], torch.full((800,), 1 / 800, dtype=torch.float64))
    assert torch.allclose(weights[800:], torch.full((200,), 1 / 50, dtype=torch.float64))
    assert torch.equal(class_balance_weights(Plain()), weights)

    def draw(ds, seed=0, **kw):
        return torch.cat([b[1] for b in iterate_batches(ds, 64, shuffle=True, generator=epoch_generator(seed, 0),
                                                        weights=weights, **kw)])

    drawn = draw(InMemory())
    assert len(drawn) == 1000
    counts = torch.bincount(drawn, minlength=5)
    assert counts.min() > 150 and counts.max() < 250  # 200 each expected; unweighted, class 0 would be 800
    assert torch.equal(draw(Plain()), drawn) and torch.equal(draw(InMemory()), drawn)
    assert not torch.equal(draw(InMemory(), seed=1), drawn)
    ranks = [draw(InMemory(), rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.stack(ranks, 1).flatten(), drawn)
    with pytest.raises(DatafreeError, match="one weight per sample"):
        next(iterate_batches(InMemory(), 64, shuffle=True, weights=weights[:10]))


def test_random_crop_flip_is_seeded_and_shifts_content():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    aug = RandomCropFlip(padding=2, flip=True)
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    # no flip, fixed shift: output equals a manually shifted copy
    aug = RandomCropFlip(padding=1, flip=False)
    g = torch.Generator().manual_seed(3)
    shifts = torch.randint(0, 3, (2, 2), generator=torch.Generator().manual_seed(3))
    out = aug(x, g)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        r, c = int(shifts[0, i]), int(shifts[1, i])
        assert torch.equal(out[i], padded[i, :, r:r + 6, c:c + 6])


def test_append_jsonl_never_glues_a_row_onto_a_torn_line(tmp_path):
    import json

    from datafree.io import append_jsonl

    path = tmp_path / "rows.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"b": ')  # a crash mid-write
    append_jsonl(path, {"c": 3})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"a": 1} and lines[1] == '{"b": ' and json.loads(lines[2]) == {"c": 3}
