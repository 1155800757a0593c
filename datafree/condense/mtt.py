"""MTT (Cazenavette et al., 2022): match the training trajectories of experts trained on real data.

Two stages, as in the reference code (``buffer.py`` then ``distill.py``):

1. :func:`train_experts` trains ``experts`` fresh networks on the real training set (SGD, lr
   0.01, no momentum, no weight decay, DSA drawn per image) and records every expert's flattened
   parameter vector at the start and after each epoch. Each expert is one safetensors file
   (tensor ``trajectory``, shape ``(epochs + 1, P)``) and ``buffer.json`` lists the finished ones
   with their sha256, so nothing is ever unpickled and an interrupted run resumes per expert.
2. :class:`MTT` (``--method mtt --set buffer=DIR``): per iteration, start a student at an expert's
   parameters at a random epoch, train it for ``syn_steps`` differentiable SGD steps on the
   synthetic set with a learnable learning rate, and minimise its normalised distance to where
   the expert was ``expert_epochs`` later; the gradient flows back to the images and the rate.

The student is unrolled with :func:`torch.func.functional_call` on a template network built
once (its own weights are never used), **in train mode**: norm layers see the statistics of the
synthetic minibatch. The default ConvNet uses instance norm (GroupNorm), which has no running
state; with BatchNorm the template's running statistics would be updated as a side effect and
the trajectories record parameters only, not buffers (as the reference's ``ReparamModule``).

Differences from the reference:

* the start epoch is drawn from ``0 .. min(max_start_epoch, epochs - expert_epochs + 1) - 1``:
  the reference's ``randint(0, max_start_epoch)`` (exclusive), bounded so the target exists;
* the learnable learning rate is clamped back to ``1e-3 * lr_teacher`` should an update ever make
  it <= 0 (the reference does not guard it; a non-positive rate would make the student ascend);
* the learning rate's SGD (``lr_lr``, momentum 0.5) is a second parameter group of the image
  optimiser rather than a second optimiser (the same updates; one state to save);
* experts are stored one per safetensors file with flat vectors, not ten per pickled ``.pt``
  list of per-layer tensors; every random draw comes from explicit generators, so the same seed
  does not reproduce the reference's numbers. ZCA whitening is not used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

import datafree
from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig, check
from datafree.condense.real import ClassPool
from datafree.data.augment import DSA
from datafree.data.datasets import NormalizedTensorDataset
from datafree.data.loader import epoch_generator, iterate_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.io import atomic_path, remove_stale_temps, sha256_file, write_json
from datafree.models import build_model

FORMAT = "datafree-buffer/1"
BUFFER_JSON = "buffer.json"
EXPERT_FILE = re.compile(r"^expert-\d{5,}\.safetensors$")
HINT = "train one with 'datafree buffer'"


def flat_parameters(net: nn.Module) -> torch.Tensor:
    """All parameters of ``net`` as one float32 CPU vector (``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------ expert buffers
def train_experts(out_dir: str | Path, data: ClassPool | Dataset, spec: DataSpec, *, experts: int, epochs: int,
                  net: str = "convnet", net_kwargs: dict[str, Any] | None = None, lr: float = 0.01,
                  momentum: float = 0.0, weight_decay: float = 0.0, batch_size: int = 256, dsa: bool = True,
                  seed: int = 0, device: str | torch.device = "cpu", progress: bool = True,
                  resume: bool = False) -> dict[str, Any]:
    """Train ``experts`` networks (seeded ``seed + i``) on ``data`` and write their trajectories.

    ``data`` is a :class:`ClassPool` or a dataset of normalised images (``get_batch`` is used when
    it has one). Expert ``i``'s batch order and augmentation come from generators derived from
    (``seed + i``, epoch), so a resumed buffer equals an uninterrupted one. Returns ``buffer.json``.
    """
    out, kwargs = Path(out_dir), _jsonable(dict(net_kwargs or {}))
    if experts < 1 or epochs < 1 or batch_size < 1 or lr <= 0:
        raise DatafreeError("experts, epochs and batch_size must be >= 1 and lr > 0")
    dataset = NormalizedTensorDataset(data.images, data.labels, spec) if isinstance(data, ClassPool) else data
    if len(dataset) == 0:
        raise DatafreeError("the real training data is empty")
    meta: dict[str, Any] = {
        "format": FORMAT, "datafree_version": datafree.__version__, "net": net, "net_kwargs": kwargs,
        "spec": spec.to_dict(), "epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
        "batch_size": batch_size, "dsa": dsa, "seed": seed,
        "parameters": sum(p.numel() for p in build_model(net, spec, **kwargs).parameters()), "experts": []}
    if (out / BUFFER_JSON).is_file():
        if not resume:
            raise DatafreeError(f"{out} already holds an expert buffer; pass --resume to add experts, or choose another --out")
        old = _read_meta(out)
        diff = [k for k in meta if k not in ("experts", "datafree_version") and old.get(k) != meta[k]]
        if diff:
            raise DatafreeError(f"cannot resume {out}: its experts were trained with other settings ({', '.join(diff)})")
        meta["experts"] = old["experts"]
    remove_stale_temps(out)  # a killed write's temporary; an unlisted expert file is simply trained again
    done = {e["file"] for e in meta["experts"]}
    todo = [i for i in range(experts) if f"expert-{i:05d}.safetensors" not in done]
    aug = DSA(per_image=True) if dsa else None
    bar = tqdm(total=len(todo) * epochs, desc="experts", unit="epoch", disable=not progress, dynamic_ncols=True)
    try:
        for i in todo:
            model = build_model(net, spec, seed=seed + i, **kwargs).to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
            trajectory = [flat_parameters(model)]
            for epoch in range(epochs):
                aug_gen = epoch_generator(seed + i, epoch, 1)
                for x, y, *_ in iterate_batches(dataset, batch_size, shuffle=True,
                                                generator=epoch_generator(seed + i, epoch, 0)):
                    x, y = x.to(device), y.to(device)
                    loss = F.cross_entropy(model(aug(x, aug_gen) if aug is not None else x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                trajectory.append(flat_parameters(model))
                if not torch.isfinite(trajectory[-1]).all():
                    raise DatafreeError(f"expert {i} diverged in epoch {epoch + 1}; lower the learning rate")
                bar.update(1)
                bar.set_postfix({"expert": i, "loss": f"{loss.item():.4g}"}, refresh=False)
            name = f"expert-{i:05d}.safetensors"
            with atomic_path(out / name) as tmp:
                save_file({"trajectory": torch.stack(trajectory).contiguous()}, str(tmp), metadata={"format": FORMAT})
            meta["experts"] = sorted(meta["experts"] + [{"file": name, "sha256": sha256_file(out / name)}],
                                     key=lambda e: e["file"])
            write_json(out / BUFFER_JSON, meta)
    finally:
        bar.close()
    return meta


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / BUFFER_JSON
    if not root.is_dir():
        raise DatafreeError(f"expert buffer {root} not found; {HINT}")
    if not path.is_file():
        raise DatafreeError(f"{root} is not an expert buffer (no {BUFFER_JSON}); {HINT}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatafreeError(f"{path} is corrupt ({e}); delete the buffer and train it again") from None
    keys = ("net", "net_kwargs", "spec", "epochs", "parameters", "experts")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or any(k not in meta for k in keys):
        raise DatafreeError(f"{path} is not a {FORMAT} description (missing fields or another format)")
    bad = [e for e in meta["experts"] if not isinstance(e, dict) or not EXPERT_FILE.match(str(e.get("file", "")))]
    if bad:
        raise DatafreeError(f"{path} lists invalid expert entries ({bad[0]!r})")
    return meta


def load_buffer(root: str | Path, *, net: str | None = None, net_kwargs: dict[str, Any] | None = None,
                spec: DataSpec | None = None) -> tuple[dict[str, Any], list[Path]]:
    """``buffer.json`` and the paths of its finished experts; with ``net``/``spec``, check they match."""
    root = Path(root)
    meta = _read_meta(root)
    if net is not None and (meta["net"] != net or meta["net_kwargs"] != _jsonable(dict(net_kwargs or {}))):
        raise DatafreeError(f"expert buffer {root} was trained with {meta['net']} {meta['net_kwargs']}, not "
                            f"{net} {dict(net_kwargs or {})}; use the buffer's --net/--net-kwargs or another buffer")
    if spec is not None:
        theirs = DataSpec.from_dict(meta["spec"])
        fields = ("shape", "num_classes", "mean", "std")
        if any(getattr(theirs, f) != getattr(spec, f) for f in fields):
            raise DatafreeError(f"expert buffer {root} was trained on {theirs.name or 'another dataset'} "
                                f"{theirs.shape} ({theirs.num_classes} classes, mean {theirs.mean}, std {theirs.std}), "
                                f"not on {spec.name or 'this dataset'} {spec.shape}; use a buffer of this dataset")
    if not meta["experts"]:
        raise DatafreeError(f"expert buffer {root} holds no finished expert yet; resume its training")
    files = [root / e["file"] for e in meta["experts"]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DatafreeError(f"expert buffer {root} lacks {len(missing)} listed file(s) ({', '.join(missing[:3])}); "
                            "restore them or train the buffer again")
    return meta, files


def read_trajectory(path: str | Path, rows: Sequence[int] | None = None, *, verify: bool = True) -> torch.Tensor:
    """An expert's ``(epochs + 1, P)`` trajectory, or only ``rows`` of it.

    With ``verify`` the whole file is read and checked against the sha256 that ``buffer.json``
    beside it lists; without, only the requested rows are read (for files already verified).
    """
    path = Path(path)
    try:
        if verify:
            meta = _read_meta(path.parent)
            expected = {e["file"]: e.get("sha256") for e in meta["experts"]}
            if path.name not in expected:
                raise DatafreeError(f"{path} is not a finished expert of {path.parent / BUFFER_JSON}")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != expected[path.name]:
                raise DatafreeError(f"{path} does not match the sha256 in {BUFFER_JSON}: the file was modified or "
                                    "corrupted; delete the buffer and train it again")
            trajectory = load_safetensors(data)["trajectory"]
            if trajectory.dim() != 2:
                raise ValueError(f"trajectory has shape {tuple(trajectory.shape)}, expected (epochs + 1, P)")
            return trajectory if rows is None else trajectory[list(rows)]
        with safe_open(str(path), "pt") as f:
            part = f.get_slice("trajectory")
            n = part.get_shape()[0]
            if rows is None:
                return part[:]
            if any(not 0 <= r < n for r in rows):
                raise ValueError(f"rows {list(rows)} out of range for {n} stored epochs")
            return torch.cat([part[r:r + 1] for r in rows])
    except FileNotFoundError:
        raise DatafreeError(f"expert file {path} not found; {HINT}") from None
    except (SafetensorError, KeyError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatafreeError(f"cannot read expert trajectory {path}: {msg} (truncated or corrupted?)") from None


# ------------------------------------------------------------------ distillation
@dataclass
class MTTConfig(CondenseConfig):
    """Trajectory matching: unrolled steps on the synthetic set towards a point of an expert trajectory."""

    syn_steps: int = 20  # unrolled student steps on the synthetic set
    expert_epochs: int = 2  # how far along the expert trajectory the target lies
    max_start_epoch: int = 20
    lr_lr: float = 1e-5  # learning rate of the learnable synthetic learning rate
    lr_teacher: float = 0.01  # initial synthetic learning rate
    batch_syn: int = 0  # 0 = the whole synthetic set per unrolled step
    buffer: str = ""  # the expert-trajectory directory (train_experts / 'datafree buffer'); required

    def __post_init__(self) -> None:
        super().__post_init__()
        check([(self.syn_steps >= 1 and self.expert_epochs >= 1, "syn_steps and expert_epochs must be >= 1")])


class MTT(Condenser):
    config_class = MTTConfig
    """Trajectory matching with a learnable synthetic learning rate (``syn_lr``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        if not cfg.buffer:
            raise DatafreeError(f"mtt needs expert trajectories: pass --set buffer=DIR ({HINT})")
        self.meta, self.files = load_buffer(cfg.buffer, net=cfg.net, net_kwargs=cfg.net_kwargs, spec=self.spec)
        self.epochs = int(self.meta["epochs"])
        if self.epochs < cfg.expert_epochs or cfg.max_start_epoch < 1:
            raise DatafreeError(f"expert buffer {cfg.buffer} has {self.epochs} epochs: expert_epochs "
                                f"({cfg.expert_epochs}) must be <= that and max_start_epoch >= 1")
        self.net = self.fresh_net().train().requires_grad_(False)  # architecture template only
        named = list(self.net.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        if sum(self.sizes) != int(self.meta["parameters"]):
            raise DatafreeError(f"expert buffer {cfg.buffer} holds {self.meta['parameters']} parameters per network, "
                                f"{cfg.net} has {sum(self.sizes)}; train the buffer with this network")
        self.verified: set[int] = set()  # experts whose file hash was checked (once per process)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """One SGD over two groups: the images (lr_img) and the learnable learning rate (lr_lr, m 0.5)."""
        cfg = self.config
        self.syn_lr = nn.Parameter(torch.tensor(float(cfg.lr_teacher), device=self.device))
        return torch.optim.SGD([{"params": [self.images], "lr": cfg.lr_img, "momentum": cfg.momentum_img},
                                {"params": [self.syn_lr], "lr": cfg.lr_lr, "momentum": 0.5}], lr=cfg.lr_img)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def expert_params(self, expert: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(θ at ``start``, θ ``expert_epochs`` later) of one expert, on the device."""
        rows = read_trajectory(self.files[expert], [start, start + self.config.expert_epochs],
                               verify=expert not in self.verified)
        self.verified.add(expert)
        if rows.shape != (2, sum(self.sizes)):
            raise DatafreeError(f"{self.files[expert]} holds vectors of {rows.shape[1]} parameters, "
                                f"expected {sum(self.sizes)}; train the buffer again")
        rows = rows.float().to(self.device)
        return rows[0], rows[1]

    def unroll(self, theta: torch.Tensor) -> torch.Tensor:
        """``syn_steps`` differentiable SGD steps of the student from ``theta`` on the synthetic set."""
        cfg = self.config
        labels = self.labels.to(self.device)
        n = len(labels)
        chunks: list[torch.Tensor] = []
        theta = theta.detach().clone().requires_grad_(True)
        for _ in range(cfg.syn_steps):
            if not chunks:
                chunks = list(torch.randperm(n, generator=self.rng).split(cfg.batch_syn or n))
            idx = chunks.pop(0).to(self.device)
            x = self.images[idx]
            if self.dsa is not None:  # per-image draws, as the reference's DiffAugment(seed=-1) here
                x = self.dsa.apply(x, self.dsa.sample(self.rng, len(idx)))
            ce = F.cross_entropy(functional_call(self.net, self.unflatten(theta), (x,)), labels[idx])
            (grad,) = torch.autograd.grad(ce, theta, create_graph=True)
            theta = theta - self.syn_lr * grad
        return theta

    def step(self) -> dict[str, float]:
        cfg = self.config
        expert = int(torch.randint(len(self.files), (1,), generator=self.rng))
        last = min(cfg.max_start_epoch - 1, self.epochs - cfg.expert_epochs)
        start = int(torch.randint(last + 1, (1,), generator=self.rng))
        theta_s, theta_t = self.expert_params(expert, start)
        theta_n = self.unroll(theta_s)
        loss = (theta_n - theta_t).pow(2).sum() / (theta_s - theta_t).pow(2).sum()
        self.update_images(loss)  # raises on a non-finite loss before touching anything
        with torch.no_grad():
            if self.syn_lr.item() <= 0:  # keep the student descending
                self.syn_lr.fill_(1e-3 * cfg.lr_teacher)
        return {"mtt": loss.item(), "syn_lr": self.syn_lr.item()}

    def extra_fields(self) -> dict[str, Any]:
        return {"syn_lr": self.syn_lr.item()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "syn_lr": self.syn_lr.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.device))


