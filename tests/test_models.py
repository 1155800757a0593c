import pytest
import torch
from torch import nn

from datafree.data import CIFAR10, FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.hooks import FeatureHooks, InputHooks, penultimate_module
from datafree.models import build_model, count_parameters

ARCHS = [("lenet5", {}), ("lenet5_half", {}), ("convnet", {}), ("convnet", {"norm": "batch", "width": 16, "depth": 2}),
         ("convnet", {"norm": "none", "pooling": "max", "width": 8}), ("resnet8", {}), ("resnet20", {"width": 8}),
         ("resnet18", {"width": 8}), ("resnet34", {"width": 4}), ("wrn_16_1", {}), ("wrn-10-2", {"dropout": 0.3})]


@pytest.mark.parametrize("spec", [FASHION_MNIST, CIFAR10], ids=["fmnist", "cifar"])
@pytest.mark.parametrize("arch,kwargs", ARCHS)
def test_every_model_builds_and_runs(arch, kwargs, spec):
    model = build_model(arch, spec, **kwargs)
    out = model(torch.randn(2, *spec.shape))
    assert out.shape == (2, spec.num_classes)


def test_lenet_pair_parameter_counts():
    assert count_parameters(build_model("lenet5", FASHION_MNIST)) == 61706
    assert count_parameters(build_model("lenet5_half", FASHION_MNIST)) == 15738


def test_seeded_build_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("lenet5", FASHION_MNIST, seed=7)
    b = build_model("lenet5", FASHION_MNIST, seed=7)
    c = build_model("lenet5", FASHION_MNIST, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_torchvision_and_user_callables():
    m = build_model("torchvision:resnet18", CIFAR10)
    assert m.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    m = build_model("torch.nn:Linear", CIFAR10, in_features=4, out_features=2)
    assert isinstance(m, nn.Linear)
    m = build_model("tests.user_models:tiny_net", FASHION_MNIST)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_model_errors():
    with pytest.raises(DatafreeError, match="unknown model"):
        build_model("vgg99", FASHION_MNIST)
    with pytest.raises(DatafreeError, match="cannot build"):
        build_model("resnet9", FASHION_MNIST)
    with pytest.raises(DatafreeError, match="cannot build"):
        build_model("no_such_pkg.mod:fn", FASHION_MNIST)


def test_feature_hooks_capture_named_modules():
    model = build_model("resnet8", FASHION_MNIST)
    with FeatureHooks(model, ["layers.1", "layers.2.0.bn2"]) as hooks:
        model(torch.randn(2, 1, 28, 28))
        assert hooks.features["layers.1"].shape == (2, 32, 14, 14)
        assert hooks.features["layers.2.0.bn2"].shape == (2, 64, 7, 7)
    assert penultimate_module(model) == "classifier"
    with InputHooks(model, ["classifier"]) as hooks:
        model(torch.randn(2, 1, 28, 28))
        assert hooks.features["classifier"].shape == (2, 64)
    with pytest.raises(DatafreeError, match="no module 'nope'"):
        FeatureHooks(model, ["nope"])
