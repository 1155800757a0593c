"""Data-free quantization-aware fine-tuning (GDFQ / Genie style), with the shared trainer and KD loss.

The fp32 model (or a teacher) distils into a fake-quantized copy of itself on the calibration
images, synthetic ones in the data-free case. The copy mirrors what ONNX Runtime will do to it:

- BatchNorm is folded into the convolutions first (:func:`datafree.models.fold_batchnorm`), as the
  ONNX export folds it, so the weights that are fake-quantized are the ones that get
  quantized;
- every Conv/Linear weight is fake-quantized per output channel, symmetric int8, scale
  max|w| / 127 (ONNX Runtime's per-channel formula), with the straight-through estimator of
  ``torch.fake_quantize_per_channel_affine``;
- every Conv/Linear input is fake-quantized per tensor to uint8 over the range it spans on the
  calibration images before fine-tuning (MinMax, ranges frozen).

After fine-tuning the fake quantization is removed and the fine-tuned fp32 weights go through the
same export and static calibration as any model. Training is :class:`datafree.train.Trainer` with
``alpha = 0`` (pure KD at temperature ``T``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import Dataset

from datafree.data.loader import iterate_batches
from datafree.errors import DatafreeError
from datafree.models.fold import fold_batchnorm

QUANTIZED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class QATConfig:
    epochs: int = 0  # 0: no fine-tuning (post-training quantization only)
    lr: float = 1e-3
    batch_size: int = 64
    temperature: float = 4.0
    weight_decay: float = 0.0
    augment: str = "none"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (ONNX Runtime's formula)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        scale = (w.detach().abs().amax(dim=dims) / 127.0).clamp_min(1e-12).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


@torch.no_grad()
def input_ranges(model: nn.Module, data: Dataset, batch_size: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """Min and max of every quantized layer's input over ``data`` (eval mode)."""
    ranges: dict[str, list[float]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZED):
            def hook(_m, args, name=name):
                lo, hi = float(args[0].min()), float(args[0].max())
                old = ranges.get(name, [lo, hi])
                ranges[name] = [min(old[0], lo), max(old[1], hi)]
            handles.append(module.register_forward_pre_hook(hook))
    model.eval()
    try:
        for batch in iterate_batches(data, batch_size):
            model(batch[0].to(device))
    finally:
        for h in handles:
            h.remove()
    return {k: (v[0], v[1]) for k, v in ranges.items()}


def _activation_hook(lo: float, hi: float):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = int(min(255, max(0, round(-lo / scale))))

    def hook(_m, args):
        return (torch.fake_quantize_per_tensor_affine(args[0], scale, zero, 0, 255), *args[1:])
    return hook


def finetune(model: nn.Module, data: Dataset, config: QATConfig, *, teacher: nn.Module | None = None,
             device: str = "cpu", progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a BatchNorm-folded, fake-quantized copy of ``model`` by KD from ``teacher`` (default:
    ``model`` itself) on ``data``; returns the copy without its fake quantization, and the metrics."""
    from datafree.train import TrainConfig, Trainer

    if config.epochs < 1:
        raise DatafreeError("quantization-aware fine-tuning needs --qat-epochs >= 1")
    dev = torch.device(device)
    try:  # BatchNorm that follows no conv/linear stays: the ONNX export cannot fold it either
        folded = fold_batchnorm(model, strict=False).float().to(dev).requires_grad_(True)  # synthesis froze the model
    except DatafreeError as e:
        raise DatafreeError(f"quantization-aware fine-tuning: {e}; quantize without --qat-epochs") from None
    ranges = input_ranges(folded, data, config.batch_size, dev)
    handles = []
    for name, module in folded.named_modules():
        if isinstance(module, QUANTIZED):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant())
            if name in ranges:
                handles.append(module.register_forward_pre_hook(_activation_hook(*ranges[name])))
    teacher = copy.deepcopy(teacher if teacher is not None else model).float().eval()
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, alpha=0.0,
                               temperature=config.temperature, weight_decay=config.weight_decay, augment=config.augment,
                               seed=config.seed, device=device, progress=progress, clip_grad_norm=5.0)
    trainer = Trainer(folded, train_config, teacher=teacher)
    try:
        metrics = trainer.fit(data)
    finally:
        trainer.close()
        for h in handles:
            h.remove()
    for module in folded.modules():
        if isinstance(module, QUANTIZED) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    folded = folded.cpu().eval()
    keep = ("train_loss", "train_time_total_s", "wall_time_s", "epoch")
    return folded, {"config": {**config.to_dict(), "train": train_config.to_dict()},
                    **{k: metrics[k] for k in keep if k in metrics}}
