"""Model registry: build any architecture by name from a DataSpec.

Names: ``lenet5``, ``lenet5_half``, ``lenet5_bn`` (LeNet-5 with BatchNorm), ``convnet`` (kwargs width/depth/norm/pooling),
``resnet8/14/20/32/44/56/110`` (CIFAR 6n+2, kwarg width), ``resnet18``, ``resnet34``,
``wrn_D_K`` (e.g. ``wrn_16_1``, ``wrn_40_2``; kwarg dropout), ``mobilenetv2`` (kwarg width), ``mlp``, ``alexnet_dc`` and
``vgg11`` (kwarg norm) of the condensation evaluation pool (see ``EVAL_POOL``), ``tucker`` (a
Tucker-2 compressed network, kwargs base/base_kwargs/ranks, made by ``datafree compress``), ``torchvision:NAME`` and
``package.module:callable`` for users' own architectures. A callable receives ``spec=`` if it
takes that argument, else ``num_classes=`` if it takes that.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models.convnet import ConvNet
from datafree.models.dcnets import alexnet_dc, mlp, vgg11
from datafree.models.lenet import lenet5, lenet5_bn, lenet5_half
from datafree.models.mobilenet import mobilenetv2
from datafree.models.resnet import cifar_resnet, resnet18, resnet34
from datafree.models.tucker import tucker
from datafree.models.wrn import WideResNet

_FIXED: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "lenet5_half": lenet5_half,
    "lenet5_bn": lenet5_bn,
    "convnet": ConvNet,
    "mobilenetv2": mobilenetv2,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "mlp": mlp,
    "alexnet_dc": alexnet_dc,
    "vgg11": vgg11,
    "tucker": tucker,
}
EVAL_POOL = ("mlp", "convnet", "lenet5", "alexnet_dc", "vgg11", "resnet18")
"""The cross-architecture pool of the dataset-condensation evaluation (MLP/ConvNet/LeNet/AlexNet/VGG11/ResNet18)."""
_CIFAR_RESNET = re.compile(r"^resnet(\d+)$")
_WRN = re.compile(r"^wrn[_-](\d+)[_-](\d+)$")


def available_models() -> list[str]:
    """Names for ``--help`` listings."""
    return sorted(_FIXED) + ["resnet8/14/20/32/44/56/110", "wrn_D_K", "torchvision:NAME", "module:callable"]


def _call_user(fn: Callable[..., nn.Module], spec: DataSpec, kwargs: dict[str, Any]) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "spec" in params:
        kwargs = {"spec": spec, **kwargs}
    elif "num_classes" in params:
        kwargs = {"num_classes": spec.num_classes, **kwargs}
    return fn(**kwargs)


def _import_user_module(name: str) -> Any:
    """``importlib.import_module(name)``, also finding ``name`` in the working directory.

    The ``datafree`` console script does not put the working directory on ``sys.path`` (``python -m``
    does), yet ``--teacher-arch mymodels:build`` means the ``mymodels.py`` beside the user.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name != name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            sys.path.remove(cwd)
            raise e from None


def build_model(arch: str, spec: DataSpec, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate ``arch`` for inputs and classes described by ``spec``.

    With ``seed``, the initial weights are drawn from that seed without touching the caller's
    global random state.
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(arch, spec, **kwargs)
    try:
        if arch in _FIXED:
            return _FIXED[arch](spec, **kwargs)
        if m := _CIFAR_RESNET.match(arch):
            return cifar_resnet(spec, int(m.group(1)), **kwargs)
        if m := _WRN.match(arch):
            return WideResNet(spec, int(m.group(1)), int(m.group(2)), **kwargs)
        if arch.startswith("torchvision:"):
            from torchvision import models as tvm

            return tvm.get_model(arch.split(":", 1)[1], num_classes=spec.num_classes, **kwargs)
        if ":" in arch:
            module_name, attr = arch.split(":", 1)
            fn = getattr(_import_user_module(module_name), attr)
            model = _call_user(fn, spec, kwargs)
            if not isinstance(model, nn.Module):
                raise DatafreeError(f"{arch} returned {type(model).__name__}, not an nn.Module")
            return model
    except (TypeError, ValueError, ImportError, AttributeError) as e:
        raise DatafreeError(f"cannot build model {arch!r} with {kwargs}: {e}") from None
    raise DatafreeError(f"unknown model {arch!r}; choose one of {', '.join(available_models())}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
