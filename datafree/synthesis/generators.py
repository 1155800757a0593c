"""Generators that map noise (and optionally a class) to images in the teacher's input space, each
registered with the config dataclass that holds its own fields (:data:`GENERATORS`).

:class:`~datafree.synthesis.SynthesisConfig` keeps the generator's name and one of these configs; its
flat ``to_dict``/``from_dict`` form (manifests, saved states, ``--set ngf=16``) is unchanged, so
:func:`flat_fields` writes every generator's keys, the other generators' at their defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import class_weights
from datafree.synthesis.procedural import dead_leaves

OUTPUTS = ("sigmoid", "tanh-bn")


class Generator(nn.Module):
    """DCGAN-style generator (as in DAFL / Fast-DFKD), sized from the DataSpec.

    ``z -> linear -> (2*ngf, H/4, W/4) -> [upsample, conv, BN, LeakyReLU] x 2 -> conv -> head``.
    Two output heads, each the one its papers use:

    - ``sigmoid`` (CMI, Fast-DFKD): pixels in [0, 1], normalised with the spec's mean/std, so the
      output lives in exactly the space the teacher was trained on.
    - ``tanh-bn`` (DAFL, DFAD, ZSKT): tanh, then a BatchNorm without affine parameters. Every batch
      then has zero mean and unit variance per channel -- the statistics of normalised real data --
      which keeps the generator from drifting to blank or saturated images when the teacher has no
      BatchNorm statistics to match.

    With ``conditional`` the noise is multiplied by a learned class embedding.
    """

    def __init__(self, spec: DataSpec, nz: int = 256, ngf: int = 64, conditional: bool = False,
                 output: str = "sigmoid") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown generator output {output!r} ({', '.join(OUTPUTS)})")
        self.spec, self.nz, self.conditional = spec, nz, conditional
        self.init_h, self.init_w = -(-spec.height // 4), -(-spec.width // 4)
        self.project = nn.Linear(nz, 2 * ngf * self.init_h * self.init_w)
        self.embed = nn.Embedding(spec.num_classes, nz) if conditional else None
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, 2 * ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ngf), nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, spec.channels, 3, 1, 1),
        )
        self.out_norm = nn.BatchNorm2d(spec.channels, affine=False) if output == "tanh-bn" else None
        mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        std = torch.tensor(spec.std).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs class labels")
            z = z * self.embed(y)
        h = self.project(z).view(len(z), -1, self.init_h, self.init_w)
        x = self.body(h)[..., : self.spec.height, : self.spec.width]
        if self.out_norm is not None:
            return self.out_norm(torch.tanh(x))
        return (torch.sigmoid(x) - self.mean) / self.std


PIXEL_INITS = ("uniform", "mean", "dead_leaves")
PIXEL_PARAMS = ("pixels", "fourier")


class PixelGenerator(nn.Module):
    """Directly optimised images (DeepInversion): the 'generator' is the batch itself.

    ``forward`` ignores the noise and returns the learnable images in normalised space. With
    ``scale > 1`` the learnable tensor is ``scale`` times coarser and is upsampled bilinearly, a
    smoothness prior: without BatchNorm statistics to match, full-resolution pixels turn into
    high-frequency patterns that the teacher labels confidently but that teach a student little.
    Images start as uniform noise in [0, 1] pixel space (``init="uniform"``), or (``init="mean"``) close to the
    teacher's input mean: normal noise of std 0.2 in normalised units, so every image starts as the average
    intensity of the data the teacher was normalised for, a prior the checkpoint itself carries (its DataSpec).
    On Fashion-MNIST that start is dark, like the garments' background. ``init="dead_leaves"`` starts from procedural
    images of flat, overlapping shapes (:func:`~datafree.synthesis.procedural.dead_leaves`): mid-grey regions and
    edges at every scale, where uniform noise has none. After every optimiser step the engine
    calls :meth:`clamp_`, which keeps each pixel inside that range, as DeepInversion does:
    unclamped pixels drift far outside it and earn the teacher's confidence with extreme values.

    ``param="fourier"`` optimises each image's spectrum instead (Olah et al. 2017, "Feature Visualization"):
    coefficient ``f`` is scaled by ``1 / |f|``, then the inverse FFT and a sigmoid give pixels in [0, 1]. Adam moves
    every parameter at about the same rate, so on raw pixels fine detail appears as fast as shape; under the
    ``1/|f|`` scaling (the spectrum of natural images) shapes come first. On the main job's BatchNorm LeNet-5,
    100 such steps give garment silhouettes, where raw pixels need about 1000 (benchmarks/synthesis_look). It
    starts at the teacher's input mean (a flat image: small random coefficients around the sigmoid's offset),
    needs no clamp and takes no ``scale``: it is its own smoothness prior. ``fourier_std`` is the std of those
    random coefficients: larger starts differ more from each other, so a batch ends more diverse, and noisier.
    """

    def __init__(self, spec: DataSpec, batch_size: int, generator: torch.Generator | None = None,
                 scale: int = 1, init: str = "uniform", param: str = "pixels", fourier_std: float = 0.01) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError("pixel scale must be >= 1")
        if init not in PIXEL_INITS:
            raise DatafreeError(f"unknown pixel init {init!r} ({', '.join(PIXEL_INITS)})")
        if param not in PIXEL_PARAMS:
            raise DatafreeError(f"unknown pixel parametrisation {param!r} ({', '.join(PIXEL_PARAMS)})")
        self.spec, self.scale, self.param = spec, scale, param
        self.nz = 0
        self.conditional = False
        self.register_buffer("low", spec.normalize(torch.zeros(1, spec.channels, 1, 1)), persistent=False)
        self.register_buffer("high", spec.normalize(torch.ones(1, spec.channels, 1, 1)), persistent=False)
        if param == "fourier":
            if scale != 1:
                raise DatafreeError("pixel_param=fourier is its own smoothness prior: leave pixel_scale at 1")
            h, w = spec.height, spec.width
            freq = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None, :] ** 2).sqrt()
            # 1/|f| (the constant term as the lowest non-zero frequency) / 4, Lucid's scaling for an orthonormal FFT
            self.register_buffer("freq_scale", freq.clamp_min(1.0 / max(h, w)).reciprocal() / 4, persistent=False)
            mean = torch.tensor(spec.mean).clamp(0.01, 0.99).view(1, -1, 1, 1)
            self.register_buffer("offset", torch.log(mean / (1 - mean)), persistent=False)  # sigmoid(offset) = mean
            self.spectrum = nn.Parameter(fourier_std * torch.randn(batch_size, spec.channels, h, w // 2 + 1, 2,
                                                            generator=generator))
            return
        size = (-(-spec.height // scale), -(-spec.width // scale))
        if init == "uniform":
            uniform = torch.rand(batch_size, spec.channels, *size, generator=generator)
            images = self.low + uniform * (self.high - self.low)
        elif init == "dead_leaves":
            images = spec.normalize(dead_leaves(batch_size, spec.channels, *size, generator=generator))
        else:
            images = 0.2 * torch.randn(batch_size, spec.channels, *size, generator=generator)
            images = torch.maximum(torch.minimum(images, self.high), self.low)
        self.images = nn.Parameter(images)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the images back into the valid pixel range (in place; the Fourier form is always inside it)."""
        if self.param == "pixels":
            self.images.copy_(torch.maximum(torch.minimum(self.images, self.high), self.low))

    def forward(self, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.param == "fourier":
            coefficients = torch.view_as_complex(self.spectrum) * self.freq_scale
            signal = torch.fft.irfft2(coefficients, s=(self.spec.height, self.spec.width), norm="ortho")
            return self.spec.normalize(torch.sigmoid(signal + self.offset))
        if self.scale == 1:
            return self.images
        return F.interpolate(self.images, size=(self.spec.height, self.spec.width), mode="bilinear", align_corners=False)


class NoisyLayerGenerator(nn.Module):
    """NAYER's generator (Tran et al., CVPR 2024): a class embedding through a *noisy layer*, then the DCGAN body.

    Input of sample ``i``: ``BN(embedding[y_i]) @ W[k_i] + b[k_i]``, where ``k_i`` counts the earlier samples of
    the same class in the batch. So every noisy layer sees each class at most once and no two images of a batch
    share an input (NAYER groups 100 samples per layer, which on a 10-class problem gives ten identical inputs
    per class and layer). :meth:`reset_noise` redraws the noisy layers, ``W ~ N(0, 1)``, before each batch,
    while the body persists from batch to batch: the noise supplies the diversity, the body what it already
    learnt about the teacher, so a few steps per batch suffice. ``z`` is ignored.
    """

    def __init__(self, spec: DataSpec, embedding: torch.Tensor, batch_size: int, nz: int = 256, ngf: int = 64,
                 output: str = "sigmoid", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if embedding.ndim != 2 or len(embedding) != spec.num_classes:
            raise DatafreeError(f"the class embedding must have one row per class ({spec.num_classes}), "
                                f"not shape {tuple(embedding.shape)}")
        self.spec, self.nz = spec, nz
        self.register_buffer("embedding", embedding.detach().float().clone())
        self.embed_norm = nn.BatchNorm1d(embedding.shape[1])
        layers = -(-batch_size // spec.num_classes)  # the engine's batches hold at most this many of a class
        self.noise_weight = nn.Parameter(torch.empty(layers, embedding.shape[1], nz))
        self.noise_bias = nn.Parameter(torch.empty(layers, nz))
        self.decoder = Generator(spec, nz, ngf, conditional=False, output=output)
        self.reset_noise(generator or torch.Generator().manual_seed(0))

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator) -> None:
        """Redraw the noisy layers from ``generator`` (NAYER: before every batch)."""
        weight = torch.randn(self.noise_weight.shape, generator=generator)
        self.noise_weight.copy_(weight.to(self.noise_weight.device))
        self.noise_bias.zero_()

    def forward(self, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("the noisy-layer generator needs class labels")
        # k_i: how many samples of class y_i come before sample i (vectorised with a cumulative one-hot count)
        onehot = F.one_hot(y, self.spec.num_classes)
        k = (onehot.cumsum(0) - 1).gather(1, y.unsqueeze(1)).squeeze(1)
        if int(k.max()) >= len(self.noise_weight):
            raise ValueError(f"{int(k.max()) + 1} samples of one class but {len(self.noise_weight)} noisy layers "
                             "(one per copy of the class set in the batch size it was built for)")
        e = self.embed_norm(self.embedding[y])
        v = torch.einsum("bi,bio->bo", e, self.noise_weight[k]) + self.noise_bias[k]
        return self.decoder(v)


class KeepsItsGenerator:
    """What the meta schedule asks a generator config (NAYER's overrides both): when to build a fresh generator
    (never: ``renew_every`` 0) and what to redraw before each batch (nothing)."""

    renew_every: ClassVar[int] = 0

    def begin_batch(self, generator: nn.Module, rng: torch.Generator) -> None:
        """Before each meta-schedule batch: nothing to redraw."""


@dataclass(frozen=True)
class DCGANConfig(KeepsItsGenerator):
    """The DCGAN generator's fields (DAFL, DFAD, ZSKT, CMI, Fast-DFKD)."""

    conditional: bool = False  # sample target classes and condition the noise on them
    output: str = "sigmoid"  # head: sigmoid (CMI, Fast-DFKD) | tanh-bn (DAFL, DFAD, ZSKT)
    nz: int = 256
    ngf: int = 64
    schedules: ClassVar[tuple[str, ...] | None] = None  # every schedule

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise DatafreeError(f"unknown generator output {self.output!r} ({', '.join(OUTPUTS)})")

    @property
    def noise_dim(self) -> int:
        return self.nz

    @property
    def targets_sampled(self) -> bool:
        """The one-hot term aims at the sampled classes (else at the teacher's argmax)."""
        return self.conditional

    def build(self, spec: DataSpec, batch_size: int, seed: int, teacher: nn.Module | None = None) -> nn.Module:
        return Generator(spec, self.nz, self.ngf, self.conditional, self.output)


@dataclass(frozen=True)
class PixelConfig(KeepsItsGenerator):
    """The pixel 'generator's fields (DeepInversion, ADI, ZSKD): the batch itself is optimised."""

    pixel_scale: int = 1  # optimise images this many times coarser, upsampled (a smoothness prior)
    pixel_init: str = "uniform"  # uniform in [0, 1] | mean: near the teacher's input mean | dead_leaves: shapes
    pixel_param: str = "pixels"  # pixels | fourier: each image's spectrum, scaled by 1/|f| (a shape-first prior)
    fourier_std: float = 0.01  # std of the Fourier coefficients' random start: larger, more diverse and noisier
    schedules: ClassVar[tuple[str, ...] | None] = ("pool",)  # a fresh batch per call: pool only

    def __post_init__(self) -> None:
        if self.pixel_scale < 1:
            raise DatafreeError("pixel_scale must be >= 1")
        if self.pixel_init not in PIXEL_INITS:
            raise DatafreeError(f"unknown pixel_init {self.pixel_init!r} ({', '.join(PIXEL_INITS)})")
        if self.pixel_param not in PIXEL_PARAMS:
            raise DatafreeError(f"unknown pixel_param {self.pixel_param!r} ({', '.join(PIXEL_PARAMS)})")
        if self.pixel_param == "fourier" and (self.pixel_scale != 1 or self.pixel_init != "uniform"):
            raise DatafreeError("pixel_param=fourier starts at the teacher's input mean and is its own smoothness "
                                "prior: leave pixel_scale and pixel_init at their defaults")
        if not self.fourier_std > 0:
            raise DatafreeError(f"fourier_std must be > 0, not {self.fourier_std}")
        if self.fourier_std != PixelConfig.fourier_std and self.pixel_param != "fourier":
            raise DatafreeError("fourier_std sets the start of Fourier pixels: use it with pixel_param=fourier")

    @property
    def noise_dim(self) -> int:
        # pixels ignore the noise, but the engine has always drawn DCGANConfig's default size of it per
        # batch; drawing the same keeps every later draw, so every recorded set, bit for bit
        return DCGANConfig.nz

    @property
    def targets_sampled(self) -> bool:
        return True

    def build(self, spec: DataSpec, batch_size: int, seed: int, teacher: nn.Module | None = None) -> nn.Module:
        return PixelGenerator(spec, batch_size, torch.Generator().manual_seed(seed), self.pixel_scale, self.pixel_init,
                              self.pixel_param, self.fourier_std)


EMBEDDINGS = ("teacher", "random")


@dataclass(frozen=True)
class NoisyLayerConfig:
    """NAYER's noisy-layer generator's fields (:class:`NoisyLayerGenerator`).

    NAYER embeds class names with a text encoder; a data-free library has no such encoder for a user's
    classes, so ``label_embedding=teacher`` uses what the teacher knows about its classes: the rows of its
    last ``nn.Linear`` (similar classes get similar inputs). ``random``: a fixed Gaussian row per class.
    """

    label_embedding: str = "teacher"
    life: int = 0  # a fresh generator every this many batches (NAYER's g_life); 0 = the same one throughout
    output: str = "sigmoid"
    nz: int = 256
    ngf: int = 64
    # the body persists from batch to batch (meta schedule at meta_lr 1 continues it; Reptile blends it)
    schedules: ClassVar[tuple[str, ...] | None] = ("meta",)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise DatafreeError(f"unknown generator output {self.output!r} ({', '.join(OUTPUTS)})")
        if self.label_embedding not in EMBEDDINGS:
            raise DatafreeError(f"unknown label_embedding {self.label_embedding!r} ({', '.join(EMBEDDINGS)})")
        if self.life < 0:
            raise DatafreeError("life must be >= 0 (0 = never re-initialise the generator)")

    @property
    def noise_dim(self) -> int:
        return 1  # the noisy layers are the noise: z is not used

    @property
    def renew_every(self) -> int:
        return self.life

    def begin_batch(self, generator: nn.Module, rng: torch.Generator) -> None:
        """NAYER's noisy layers are drawn afresh for every batch, from the engine's random stream."""
        generator.reset_noise(rng)

    @property
    def targets_sampled(self) -> bool:
        return True

    def build(self, spec: DataSpec, batch_size: int, seed: int, teacher: nn.Module | None = None) -> nn.Module:
        rng = torch.Generator().manual_seed(seed)
        if self.label_embedding == "random":
            embedding = torch.randn(spec.num_classes, self.nz, generator=rng)
        else:
            if teacher is None:
                raise DatafreeError("label_embedding=teacher needs the teacher; use --set label_embedding=random")
            # e.g. a TorchScript teacher: its layers are not nn.Linear
            embedding = class_weights(teacher, remedy="label_embedding=teacher reads its classifier's rows: use "
                                                      "--set label_embedding=random").float().cpu()
            if len(embedding) != spec.num_classes:
                raise DatafreeError(
                    f"the teacher's last Linear has {len(embedding)} outputs, not one per class ({spec.num_classes}); "
                    "use --set label_embedding=random")
        return NoisyLayerGenerator(spec, embedding, batch_size, self.nz, self.ngf, self.output, rng)


GeneratorConfig = DCGANConfig | PixelConfig | NoisyLayerConfig
GENERATORS: dict[str, type[GeneratorConfig]] = {"dcgan": DCGANConfig, "pixels": PixelConfig, "noisy": NoisyLayerConfig}
# the flat keys SynthesisConfig.to_dict has always written, in its order, whatever the generator (a
# generator added later writes only its own keys besides these, so older records still compare equal)
FLAT_ORDER = ("conditional", "pixel_scale", "output", "nz", "ngf")


def _defaults() -> dict[str, Any]:
    return {k: v for config in GENERATORS.values() for k, v in asdict(config()).items()}


def generator_keys() -> set[str]:
    """Every registered generator's field names (the flat keys that belong to a generator)."""
    return set(_defaults())


def flat_fields(config: GeneratorConfig) -> dict[str, Any]:
    """The flat keys of ``config``: the recorded ones (the other generators' at their defaults), then its own."""
    defaults = _defaults()
    return {**{k: defaults[k] for k in FLAT_ORDER}, **asdict(config)}


def generator_config(name: str, flat: dict[str, Any]) -> GeneratorConfig:
    """The ``name`` generator's config from flat keys (any generator's; the others' must be at their defaults:
    a stored record writes them so, and a ``--set`` of one is a mistake worth a one-line error)."""
    if name not in GENERATORS:
        raise DatafreeError(f"unknown generator {name!r} ({', '.join(GENERATORS)})")
    cls = GENERATORS[name]
    own = {f.name for f in fields(cls)}
    defaults = _defaults()
    for key, value in flat.items():
        if key not in own and value != defaults[key]:
            raise DatafreeError(f"{key} is not a setting of the {name} generator (its settings: {', '.join(sorted(own))})")
    return cls(**{k: v for k, v in flat.items() if k in own})
