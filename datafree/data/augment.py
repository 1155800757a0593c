"""Vectorised training augmentation on batches (no per-image Python loop).

:class:`RandomCropFlip` is the plain 2-pixel translation (+ flip) used to train teachers.
:class:`BatchMix` is mixup / cutmix for distillation with a live teacher.
:class:`GaussianNoise` perturbs every pixel, for distillation with a live teacher.

:class:`DSA` is Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021) as the
DatasetCondensation reference code (``DiffAugment`` in its ``utils.py``) implements it: one
group of ``color_crop_cutout_flip_scale_rotate`` is picked per call (``color`` = brightness,
saturation, contrast in sequence) and applied to normalised tensors without clamping. "Siamese"
means one parameter draw is shared by every image of a batch and by the real and the synthetic
batch, so matching losses compare like with like, while gradients flow back to the synthetic
images through every transform.

Why pure torch and not kornia: kornia's saturation/contrast are HSV/clamped image-space
operations, not the reference's mean-based formulas on normalised tensors (its global-RNG draws
alone could run under ``fork_rng``). Here the parameters are a value (:class:`DSAParams`) drawn only
from an explicit ``torch.Generator`` by :meth:`DSA.sample` and applied by :meth:`DSA.apply`, so
one draw can be applied to two batches of different sizes and a run is reproducible/resumable.

Differences from the reference:

* the reference reseeds the *global* RNG with an incrementing integer seed before every draw
  (``set_seed_DiffAug``); we draw from a generator passed in, never touching the global RNG, so
  the same seed does not reproduce the reference's exact draws;
* crop shifts and cutout centres are drawn as uniforms in [0, 1) and turned into integer pixels
  from the image size when applied (``floor(u * (2s + 1)) - s`` and ``floor(u * (H + 1 - cs % 2))``,
  the same discrete uniform distributions as the reference's ``randint``), so a draw does not
  depend on the batch or image size;
* the crop fills with zeros by padding ``s`` pixels instead of the reference's 1-pixel pad plus
  index clamping; the result is the same zero-filled translation;
* scale/rotate use ``align_corners=True`` by default, as the MTT copy of this code passes;
  DatasetCondensation's ``utils.py`` calls ``affine_grid``/``grid_sample`` without the
  argument, i.e. ``align_corners=False`` on torch >= 1.3 (``DSA(align_corners=False)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from datafree.errors import DatafreeError


class RandomCropFlip(nn.Module):
    """Random translation by up to ``padding`` pixels (zero padding) and horizontal flips.

    Every draw comes from the ``generator`` passed to :meth:`forward`, so augmentation is
    reproducible and resumable. Works in normalised space: padding uses the value a black
    pixel maps to only if ``fill`` is given, else 0 (the dataset mean), as torchvision does
    after ``Normalize``.
    """

    def __init__(self, padding: int = 2, flip: bool = True, fill: float = 0.0) -> None:
        super().__init__()
        self.padding, self.flip, self.fill = padding, flip, fill

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.flip:
            flip = torch.rand(b, generator=generator) < 0.5
            x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(3), x)
        p = self.padding
        if p > 0:
            shifts = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(x.device)
            padded = nn.functional.pad(x, (p, p, p, p), value=self.fill)
            rows = shifts[0].view(b, 1) + torch.arange(h, device=x.device)
            cols = shifts[1].view(b, 1) + torch.arange(w, device=x.device)
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            # advanced indices around a slice put the indexed dims first: (B, H, W, C)
            x = standard_strides(padded[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2))
        return x


def standard_strides(x: torch.Tensor) -> torch.Tensor:
    """``x`` with the default layout's strides. ``.contiguous()`` keeps a one-channel (B, 1, H, W) view out of a
    (B, H, W, 1) tensor as it is (its channel stride of 1 counts as contiguous), and a convolution reads that stride
    as channels_last and gives channels_last activations, which a user's model that flattens with ``x.view(n, -1)``
    cannot take ("view size is not compatible")."""
    return x.clone(memory_format=torch.contiguous_format)


MIX_MODES = ("none", "mixup", "cutmix")


class GaussianNoise(nn.Module):
    """Add zero-mean Gaussian noise of standard deviation ``std`` to every pixel, in the input's own (normalised)
    units.

    Meant for distillation with a live teacher, which labels the noisy view: the student then learns the teacher's
    answers in a neighbourhood of each image, i.e. its local slope in random directions, which is what Jacobian
    matching asks for in one direction at the cost of a second backward pass (Srinivas & Fleuret 2018 show the two
    agree for small noise). The noise is drawn on the CPU from the ``generator`` passed to :meth:`forward`, so a run
    is reproducible and a CPU and a CUDA run see the same noise.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise DatafreeError(f"the noise's standard deviation must be > 0, not {std}")
        self.std = std

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator)
        return x + self.std * noise.to(device=x.device, dtype=x.dtype)


class BatchMix(nn.Module):
    """Mix each image with another image of the same batch: ``mixup`` blends the two, ``cutmix``
    pastes a box of the other image in.

    Meant for distillation with a live teacher, which labels the mixed image itself, so labels
    are not mixed. Mixed images fill the space between a transfer set's images, which is sparse
    when the set is small or synthetic. The mixing weight is uniform (Beta(1, 1)), partner,
    weight and box position come from the ``generator`` passed to :meth:`forward`.

    ``share`` < 1 mixes only that share of the images (each one with that probability) and leaves the rest as
    they are: the student still sees whole images, the kind it is tested on, in every batch.
    """

    def __init__(self, mode: str = "mixup", share: float = 1.0) -> None:
        super().__init__()
        if mode not in MIX_MODES[1:]:
            raise DatafreeError(f"unknown mixing {mode!r} ({', '.join(MIX_MODES[1:])})")
        if not 0.0 < share <= 1.0:
            raise DatafreeError(f"the share of mixed images must be in (0, 1], not {share}")
        self.mode, self.share = mode, share

    def extra_repr(self) -> str:
        return self.mode if self.share == 1.0 else f"{self.mode}, share={self.share}"

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mixed = self._mix(x, generator)
        if self.share == 1.0:  # no draw: a run that mixes every image is the same as before the share existed
            return mixed
        chosen = torch.rand(x.shape[0], generator=generator).to(x.device) < self.share
        return torch.where(chosen.view(-1, 1, 1, 1), mixed, x)

    def _mix(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        other = x[torch.randperm(b, generator=generator).to(x.device)]
        lam = torch.rand(b, generator=generator).to(device=x.device, dtype=x.dtype)
        if self.mode == "mixup":
            lam = lam.view(b, 1, 1, 1)
            return lam * x + (1 - lam) * other
        # cutmix: a box with sides sqrt(1 - lam) of the image's, centred uniformly, clipped at the border
        side = (1 - lam).sqrt()
        centre = torch.rand(2, b, generator=generator).to(device=x.device, dtype=x.dtype)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        cy, cx, hh, hw = centre[0] * h, centre[1] * w, side * h / 2, side * w / 2
        in_rows = (rows >= (cy - hh).view(b, 1)) & (rows < (cy + hh).view(b, 1))  # (B, H)
        in_cols = (cols >= (cx - hw).view(b, 1)) & (cols < (cx + hw).view(b, 1))  # (B, W)
        box = in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)
        return torch.where(box, other, x)


DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DSA_GROUPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    """One DSA draw: the chosen group and its parameters (fields of other groups are ``None``).

    Every tensor has a leading dimension ``n``: 1 for a siamese draw (broadcast to any batch),
    or the batch size for per-image draws. All live on the CPU; :meth:`DSA.apply` moves them.

    * ``flip`` ``(n,)`` bool: flip the width axis;
    * ``brightness`` ``(n,)``: added to every pixel;
    * ``saturation`` ``(n,)``: factor on the deviation from the per-pixel channel mean;
    * ``contrast`` ``(n,)``: factor on the deviation from the per-image mean;
    * ``crop`` ``(n, 2)`` uniforms in [0, 1) for the (row, column) shift; output pixel
      ``(i, j)`` reads input ``(i + dy, j + dx)``, zero outside;
    * ``cutout`` ``(n, 2)`` uniforms in [0, 1) for the (row, column) centre of the zeroed square;
    * ``scale`` ``(n, 2)``: ``(sx, sy)``, the diagonal of the affine ``theta`` (> 1 shrinks);
    * ``rotate`` ``(n,)``: angle in radians.
    """

    strategy: str
    flip: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    crop: torch.Tensor | None = None
    cutout: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    rotate: torch.Tensor | None = None


class DSA(nn.Module):
    """Differentiable Siamese Augmentation with the reference defaults.

    ``sample(generator)`` draws one :class:`DSAParams` (only from ``generator``);
    ``apply(x, params)`` applies it to a batch, differentiably and without a per-image loop;
    ``forward(x, generator)`` is both, so the module can replace :class:`RandomCropFlip`.
    With ``per_image=True``, :meth:`forward` draws the group once per call but the parameters
    per image, which is what the reference does outside its siamese calls (``seed=-1``,
    e.g. when it trains evaluation models); the default shares one draw across the batch.
    """

    def __init__(self, strategy: str = DSA_STRATEGY, *, prob_flip: float = 0.5, ratio_scale: float = 1.2,
                 ratio_rotate: float = 15.0, ratio_crop_pad: float = 0.125, ratio_cutout: float = 0.5,
                 brightness: float = 1.0, saturation: float = 2.0, contrast: float = 0.5,
                 align_corners: bool = True, per_image: bool = False) -> None:
        super().__init__()
        groups = tuple(strategy.split("_"))
        unknown = [g for g in groups if g not in DSA_GROUPS]
        if not strategy or unknown:
            raise DatafreeError(f"unknown DSA strategy {strategy!r} (underscore-joined groups of {', '.join(DSA_GROUPS)})")
        if ratio_scale < 1.0:
            raise DatafreeError("DSA ratio_scale must be >= 1")
        self.strategy, self.groups = strategy, groups
        self.prob_flip, self.ratio_scale, self.ratio_rotate = prob_flip, ratio_scale, ratio_rotate
        self.ratio_crop_pad, self.ratio_cutout = ratio_crop_pad, ratio_cutout
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.align_corners, self.per_image = align_corners, per_image

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, per_image={self.per_image}"

    # ------------------------------------------------------------------ parameters
    def sample(self, generator: torch.Generator, batch_size: int | None = None) -> DSAParams:
        """Draw a group and its parameters from ``generator`` only (never the global RNG).

        ``batch_size=None`` gives one siamese draw (``n = 1``) for any batch; an integer gives
        independent parameters per image (the group is still shared).
        """
        if not isinstance(generator, torch.Generator):
            raise DatafreeError("DSA.sample needs an explicit torch.Generator")
        n = 1 if batch_size is None else batch_size
        group = self.groups[int(torch.randint(len(self.groups), (1,), generator=generator))]

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(n, *shape, generator=generator)

        if group == "color":
            return DSAParams(group, brightness=(rand() - 0.5) * self.brightness,
                             saturation=rand() * self.saturation, contrast=rand() + self.contrast)
        if group == "crop":
            return DSAParams(group, crop=rand(2))
        if group == "cutout":
            return DSAParams(group, cutout=rand(2))
        if group == "flip":
            return DSAParams(group, flip=rand() < self.prob_flip)
        if group == "scale":
            r = self.ratio_scale
            return DSAParams(group, scale=rand(2) * (r - 1.0 / r) + 1.0 / r)
        return DSAParams(group, rotate=(rand() - 0.5) * 2 * self.ratio_rotate / 180 * math.pi)

    # ------------------------------------------------------------------ transforms
    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply ``params`` to ``x`` ``(B, C, H, W)``; differentiable with respect to ``x``."""
        if x.dim() != 4:
            raise DatafreeError(f"DSA expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        b = x.shape[0]
        for name in ("flip", "brightness", "saturation", "contrast", "crop", "cutout", "scale", "rotate"):
            v = getattr(params, name)
            if v is not None and v.shape[0] not in (1, b):
                raise DatafreeError(f"DSA params {name!r} hold {v.shape[0]} draws for a batch of {b}")
        p = params
        if p.strategy == "color":
            x = self._brightness(x, p.brightness) if p.brightness is not None else x
            x = self._saturation(x, p.saturation) if p.saturation is not None else x
            return self._contrast(x, p.contrast) if p.contrast is not None else x
        if p.strategy == "crop":
            return self._crop(x, _need(p.crop, "crop"))
        if p.strategy == "cutout":
            return self._cutout(x, _need(p.cutout, "cutout"))
        if p.strategy == "flip":
            return self._flip(x, _need(p.flip, "flip"))
        if p.strategy == "scale":
            s = _need(p.scale, "scale").to(x.device, x.dtype)
            zero = torch.zeros_like(s[:, 0])
            theta = torch.stack([torch.stack([s[:, 0], zero, zero], 1), torch.stack([zero, s[:, 1], zero], 1)], 1)
            return self._affine(x, theta)
        if p.strategy == "rotate":
            a = _need(p.rotate, "rotate").to(x.device, x.dtype)
            cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
            return self._affine(x, theta)
        raise DatafreeError(f"unknown DSA group {p.strategy!r} ({', '.join(DSA_GROUPS)})")

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(generator, x.shape[0] if self.per_image else None))

    @staticmethod
    def _flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)

    @staticmethod
    def _brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return x + shift.to(x.device, x.dtype).view(-1, 1, 1, 1)

    @staticmethod
    def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        return (x - mean) * factor.to(x.device, x.dtype).view(-1, 1, 1, 1) + mean

    @staticmethod
    def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * factor.to(x.device, x.dtype).view(-1, 1, 1, 1) + mean

    def _crop(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        sh, sw = int(h * self.ratio_crop_pad + 0.5), int(w * self.ratio_crop_pad + 0.5)
        u = u.to(x.device)
        dy = torch.floor(u[:, 0] * (2 * sh + 1)).long().clamp_(0, 2 * sh)  # index into the padded image
        dx = torch.floor(u[:, 1] * (2 * sw + 1)).long().clamp_(0, 2 * sw)
        padded = F.pad(x, (sw, sw, sh, sh))
        n = u.shape[0]
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, w)
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        # advanced indices around a slice put the indexed dims first: (B, H, W, C)
        return standard_strides(padded[batch, :, rows, cols].permute(0, 3, 1, 2))

    def _cutout(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        u = u.to(x.device)

        def band(size: int, ui: torch.Tensor) -> torch.Tensor:  # (n, size) bool: inside the square
            cs = int(size * self.ratio_cutout + 0.5)
            centre = torch.floor(ui * (size + 1 - cs % 2)).long().clamp_(0, size - cs % 2)
            lo = (centre - cs // 2).view(-1, 1)
            idx = torch.arange(size, device=x.device)
            return (idx >= lo) & (idx < lo + cs)

        inside = band(h, u[:, 0]).unsqueeze(2) & band(w, u[:, 1]).unsqueeze(1)
        return x * (~inside).to(x.dtype).unsqueeze(1)

    def _affine(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        grid = F.affine_grid(theta, [theta.shape[0], *x.shape[1:]], align_corners=self.align_corners)
        grid = grid.expand(b, -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=self.align_corners)


def _need(v: torch.Tensor | None, name: str) -> torch.Tensor:
    if v is None:
        raise DatafreeError(f"DSA params for {name!r} are missing")
    return v
