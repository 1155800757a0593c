"""FKD-style relabelling (SRe2L, CDA): the teacher's soft label of every augmented crop, stored compactly.

A condensed set of a few images per class trains a student for hundreds of epochs; the teacher's
label of the *whole* image is one number per image, but the student sees a different crop every
epoch. SRe2L relabels each crop. Storing them is what makes evaluation run without the live
teacher, and what costs space (SRe2L issue #26: labels can outweigh the images), so per epoch
and image only the crop (4 numbers), the CutMix partner and box (5) and the teacher's top-k logits
(k values, k class indices) are kept, in float16 / int16 / uint8, and the cost is reported.

:class:`CropLabels` replays the exact crops: :meth:`CropLabels.batches` yields the images the
teacher saw with their stored logits, epoch by epoch, for :class:`datafree.train.Trainer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from datafree.errors import DatafreeError
from datafree.io import atomic_write
from datafree.synthesis.augment import apply_crops, crop_params

CROP_LABELS = "crop-labels.safetensors"
FILL_BELOW = 1000.0  # classes outside the stored top-k sit this far below the weakest stored logit


@dataclass
class CropLabels:
    """Per epoch ``e`` and image ``i``: crop ``crops[e, i]`` (see :func:`crop_params`), CutMix partner
    ``partner[e, i]`` pasted into box ``boxes[e, i]`` (x0, y0, x1, y1 as fractions; empty without
    mixing), and the teacher's ``top_k`` logits ``values[e, i]`` of classes ``indices[e, i]``."""

    crops: torch.Tensor  # (E, N, 4) float16
    partner: torch.Tensor  # (E, N) int16
    boxes: torch.Tensor  # (E, N, 4) float16
    values: torch.Tensor  # (E, N, k) float16
    indices: torch.Tensor  # (E, N, k) uint8
    num_classes: int

    @property
    def epochs(self) -> int:
        return self.crops.shape[0]

    def storage_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.crops, self.partner, self.boxes, self.values, self.indices))

    def logits(self, epoch: int, index: torch.Tensor) -> torch.Tensor:
        """Full ``(len(index), C)`` float logits: the stored top-k, the other classes far below."""
        values = self.values[epoch, index].float()
        out = torch.full((len(index), self.num_classes), 0.0)
        out.copy_((values.min(1, keepdim=True).values - FILL_BELOW).expand_as(out))
        return out.scatter_(1, self.indices[epoch, index].long(), values)

    def views(self, images: torch.Tensor, epoch: int, index: torch.Tensor) -> torch.Tensor:
        """The augmented images of ``index`` at ``epoch``, exactly as the teacher labelled them."""
        return mixed_views(images, self.crops[epoch].float(), self.partner[epoch].long(), self.boxes[epoch].float(), index)

    def batches(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(views, labels, stored logits)`` batches: every stored epoch in turn, shuffled per epoch by ``seed``."""
        for epoch in range(self.epochs):
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            for index in order.split(batch_size):
                yield self.views(images, epoch, index), labels[index], self.logits(epoch, index)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {"crops": self.crops, "partner": self.partner, "boxes": self.boxes, "values": self.values,
                   "indices": self.indices}
        atomic_write(Path(path), lambda p: save_file({k: v.contiguous() for k, v in tensors.items()}, str(p),
                                                     metadata={"num_classes": str(self.num_classes)}))

    @classmethod
    def load(cls, path: str | Path) -> CropLabels:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                tensors = {k: f.get_tensor(k) for k in ("crops", "partner", "boxes", "values", "indices")}
                num_classes = int((f.metadata() or {})["num_classes"])
        except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as e:
            raise DatafreeError(f"{path} is not a crop-label file written by datafree ({e})") from None
        return cls(**tensors, num_classes=num_classes)


def load_crop_labels(directory: str | Path) -> CropLabels:
    """The crop labels stored beside the set in ``directory`` (written by ``condense --method teacher``)."""
    path = Path(directory) / CROP_LABELS
    if not path.is_file():
        raise DatafreeError(f"{directory} has no {CROP_LABELS} (make it with condense --method teacher)")
    return CropLabels.load(path)


def control_relabeller(manifest: dict[str, Any], labels: CropLabels, teacher: nn.Module, *, seed: int,
                       device: str = "cpu") -> Callable[[torch.Tensor], CropLabels]:
    """Relabels other images (a random real control) with the set's own recipe: its epochs, top-k, crops and mixing."""
    config = manifest.get("config") or {}
    return lambda images: relabel(teacher, images, labels.epochs, seed=seed,
                                  top_k=int(config.get("top_k", labels.values.shape[-1])),
                                  scale=(float(config.get("crop_scale", 0.25)), 1.0),
                                  mix_prob=float(config.get("mix_prob", 0.5)), device=device, progress=False)


def mixed_views(images: torch.Tensor, crops: torch.Tensor, partner: torch.Tensor, boxes: torch.Tensor,
                index: torch.Tensor) -> torch.Tensor:
    """Crops of ``images[index]`` with their partners' crops pasted into ``boxes`` (CutMix), vectorised."""
    own = apply_crops(images[index], crops[index])
    other = apply_crops(images[partner[index]], crops[partner[index]])
    h, w = images.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    b = boxes[index]
    inside = ((xs.view(1, 1, -1) >= b[:, 0, None, None]) & (xs.view(1, 1, -1) < b[:, 2, None, None])
              & (ys.view(1, -1, 1) >= b[:, 1, None, None]) & (ys.view(1, -1, 1) < b[:, 3, None, None]))
    return torch.where(inside.unsqueeze(1).to(own.device), other, own)


def draw_epoch(n: int, generator: torch.Generator, scale: tuple[float, float], mix_prob: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch of crop, partner and CutMix box parameters for ``n`` images."""
    crops = crop_params(n, generator, scale, flip=True)
    partner = torch.randperm(n, generator=generator)
    lam = torch.rand(n, generator=generator)  # area kept; the box covers 1 - lam (CutMix)
    side = (1 - lam).sqrt()
    cx, cy = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    boxes = torch.stack([(cx - side / 2).clamp(0, 1), (cy - side / 2).clamp(0, 1),
                         (cx + side / 2).clamp(0, 1), (cy + side / 2).clamp(0, 1)], 1)
    boxes[torch.rand(n, generator=generator) >= mix_prob] = 0.0  # no mixing: an empty box
    return crops, partner, boxes


@torch.no_grad()
def relabel(teacher: nn.Module, images: torch.Tensor, epochs: int, *, seed: int, top_k: int = 10,
            scale: tuple[float, float] = (0.25, 1.0), mix_prob: float = 0.5, batch_size: int = 512,
            device: str | torch.device = "cpu", progress: bool = True) -> CropLabels:
    """The teacher's top-k logits on ``epochs`` random crops (and CutMix) of every image; deterministic in ``seed``."""
    n = len(images)
    if epochs < 1:
        raise DatafreeError("relabel at least one epoch")
    if n > 32767:
        raise DatafreeError(f"crop labels index partners in int16: at most 32767 images, not {n}")
    teacher = teacher.eval()
    num_classes = int(teacher(images[:1].to(device)).shape[1])
    k = min(top_k, num_classes)
    g = torch.Generator().manual_seed(seed)
    crops, partners, boxes, values, indices = [], [], [], [], []
    for _ in tqdm(range(epochs), desc="relabel", unit="epoch", disable=not progress, dynamic_ncols=True):
        c, p, b = draw_epoch(n, g, scale, mix_prob)
        c, b = c.half().float(), b.half().float()  # label exactly the crops that are stored
        logits = torch.cat([teacher(mixed_views(images, c, p, b, idx).to(device)).float().cpu()
                            for idx in torch.arange(n).split(batch_size)])
        top = logits.topk(k, dim=1)
        crops.append(c.half())
        partners.append(p.to(torch.int16))
        boxes.append(b.half())
        values.append(top.values.half())
        indices.append(top.indices.to(torch.uint8))
    return CropLabels(torch.stack(crops), torch.stack(partners), torch.stack(boxes), torch.stack(values),
                      torch.stack(indices), num_classes)
