"""Bitwise check of the restructuring: a tiny suite on tiny written data, fingerprinted.

Runs a tiny custom suite (every path of 'datafree distill': real KD, scratch, a stored set, a stored set
grown live, a live online method, condensation with hard and soft labels, teacher-only condensation) and
writes OUT/fingerprint.json: per run its accuracy and the sha256 of every model and transfer-set shard.
Run it before and after a change and compare the two files:

    OMP_NUM_THREADS=1 python -m benchmarks.bitwise /tmp/before      # on the old commit
    OMP_NUM_THREADS=1 python -m benchmarks.bitwise /tmp/after       # on the new one
    python -m benchmarks.bitwise --compare /tmp/before /tmp/after

About 15 seconds on one core (docs/restructuring.md records the check of issue 19).
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch


def write_data(root: Path) -> Path:
    import gzip
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for c in range(10):
            images[labels == c, c * 2:(c + 1) * 2, :] = 230
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels.astype(np.uint8))):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + arr.tobytes())
    return root


def main(out: str) -> None:
    from datafree.bench import PairSpec, Recipes, Suite, run_suite

    torch.set_num_threads(1)
    out_dir = Path(out)
    data = write_data(out_dir / "data")
    train = ("--epochs", "1", "--batch-size", "64", "--lr", "0.05")
    suite = Suite(
        name="bitwise", dataset="fashion-mnist",
        pairs=[PairSpec(key="tiny", name="tiny", teacher="resnet8", student="resnet8", teacher_args=train,
                        student_args=train, teacher_kwargs={"width": 4}, student_kwargs={"width": 2}, live_lr="0.05")],
        sources=["kd", "scratch", "df:zskd", "df:deepinversion+fast5", "df:dfad", "cond:dm:2:hard", "cond:dm:2:soft",
                 "cond:teacher:2:soft"],
        seeds=[0],
        recipes=Recipes(df_scale={"batch_size": 16, "ngf": 8},
                        df_method_scale={"zskd": {"pixel_scale": 4, "iterations": 2},
                                         "deepinversion": {"iterations": 2}, "fast5": {"iterations": 2}},
                        df_live_student=("--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", "--alpha", "0"),
                        df_count=32, df_stored_student=("--epochs", "1", "--batch-size", "16", "--alpha", "0"),
                        df_grown_student=("--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", "--alpha", "0"),
                        cond={"dm": {"iterations": 2, "batch_real": 8, "net_kwargs": {"width": 8}},
                              "teacher": {"iterations": 2}},
                        cond_student=("--epochs", "1", "--batch-size", "16", "--lr", "0.01"), checkpoint_every=1),
    )
    summary = run_suite(suite, out_dir / "suite", data_root=data, device="cpu")
    assert not summary.failed, summary.failed
    finger = {}
    for row in (json.loads(line) for line in (out_dir / "suite" / "results.jsonl").read_text().splitlines()):
        files = {}
        for d in filter(None, [row.get("student_dir"), row.get("set_dir"), row.get("teacher_dir")]):
            for f in sorted(Path(d).rglob("*")):
                if f.suffix in (".safetensors",) or f.name.startswith("shard"):
                    files[str(f.relative_to(out_dir))] = hashlib.sha256(f.read_bytes()).hexdigest()
        transfer = Path(row["student_dir"]).parent / "transfer" if row.get("student_dir") else None
        if transfer and transfer.is_dir():
            for f in sorted(transfer.rglob("*")):
                if f.suffix == ".safetensors" or f.name.startswith("shard"):
                    files[str(f.relative_to(out_dir))] = hashlib.sha256(f.read_bytes()).hexdigest()
        finger[row["run_id"]] = {"accuracy": row["accuracy"], "files": files}
    (out_dir / "fingerprint.json").write_text(json.dumps(finger, indent=1, sort_keys=True))
    print(json.dumps({k: v["accuracy"] for k, v in finger.items()}, indent=1))


def _normalised(path: Path) -> dict:
    runs = json.loads(path.read_text())
    return {k: {"accuracy": v["accuracy"], "files": {p.split("/", 1)[1]: h for p, h in v["files"].items()}}
            for k, v in runs.items()}


def compare(before: str, after: str) -> int:
    """0 when both fingerprints agree: every run's accuracy and every model and shard file, bit for bit."""
    a, b = _normalised(Path(before) / "fingerprint.json"), _normalised(Path(after) / "fingerprint.json")
    files = sum(len(v["files"]) for v in a.values())
    if a == b:
        print(f"identical: {len(a)} runs, {files} files (sha256) and every accuracy")
        return 0
    for run in sorted(set(a) | set(b)):
        if a.get(run) != b.get(run):
            print(f"differs: {run}")
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    main(sys.argv[1])
