"""The same code on CUDA (skipped on machines without a GPU, e.g. this project's CI)."""

import pytest
import torch

from datafree.data import load_dataset
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_kd_with_amp_on_cuda(fmnist_root):
    train, test = load_dataset("fashion-mnist", "train", fmnist_root), load_dataset("fashion-mnist", "test", fmnist_root)
    teacher = build_model("resnet8", train.spec, seed=0)
    student = build_model("lenet5_half", train.spec, seed=0)
    config = TrainConfig(epochs=1, batch_size=32, alpha=0.5, device="cuda", amp=True, progress=False, augment="crop-flip")
    result = Trainer(student, config, teacher=teacher).fit(train, test)
    assert next(student.parameters()).is_cuda and result["peak_memory_mb"] > 0
