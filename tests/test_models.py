import pytest
import torch
from torch import nn

from datafree.data import CIFAR10, FASHION_MNIST, DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import FeatureHooks, InputHooks, penultimate_module
from datafree.models import EVAL_POOL, available_models, build_model, count_parameters

ARCHS = [("lenet5", {}), ("lenet5_half", {}), ("lenet5_bn", {}),
         ("convnet", {}), ("convnet", {"norm": "batch", "width": 16, "depth": 2}),
         ("convnet", {"norm": "none", "pooling": "max", "width": 8}), ("resnet8", {}), ("resnet20", {"width": 8}),
         ("resnet18", {"width": 8}), ("resnet34", {"width": 4}), ("wrn_16_1", {}), ("wrn-10-2", {"dropout": 0.3}),
         ("mobilenetv2", {"width": 0.5})]


@pytest.mark.parametrize("spec", [FASHION_MNIST, CIFAR10], ids=["fmnist", "cifar"])
@pytest.mark.parametrize("arch,kwargs", ARCHS)
def test_every_model_builds_and_runs(arch, kwargs, spec):
    model = build_model(arch, spec, **kwargs)
    out = model(torch.randn(2, *spec.shape))
    assert out.shape == (2, spec.num_classes)


RGB100 = DataSpec(3, 32, 32, 100, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (), "rgb100")


@pytest.mark.parametrize("spec", [FASHION_MNIST, RGB100], ids=["fmnist", "rgb100"])
@pytest.mark.parametrize("arch", EVAL_POOL)
def test_eval_pool_forward_backward(arch, spec):
    model = build_model(arch, spec, seed=0)
    out = model(torch.randn(2, *spec.shape))
    assert out.shape == (2, spec.num_classes)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", EVAL_POOL)
def test_eval_pool_seeded_build_is_identical(arch):
    a = build_model(arch, FASHION_MNIST, seed=3).state_dict()
    b = build_model(arch, FASHION_MNIST, seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert set(EVAL_POOL) <= set(available_models())


def test_eval_pool_parameter_counts_and_options():
    counts = {arch: count_parameters(build_model(arch, FASHION_MNIST)) for arch in ("mlp", "alexnet_dc", "vgg11")}
    assert counts == {"mlp": 118282, "alexnet_dc": 1865802, "vgg11": 9229962}
    assert count_parameters(build_model("mlp", RGB100)) == 3072 * 128 + 128 + 128 * 128 + 128 + 128 * 100 + 100
    bn = build_model("vgg11", FASHION_MNIST, norm="batch")
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert bn(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(DatafreeError, match="cannot build|norm must be"):
        build_model("vgg11", FASHION_MNIST, norm="layer")


def test_lenet_pair_parameter_counts():
    assert count_parameters(build_model("lenet5", FASHION_MNIST)) == 61706
    assert count_parameters(build_model("lenet5_half", FASHION_MNIST)) == 15738


def test_lenet5_bn_adds_batchnorm_and_keeps_lenet5_keys():
    plain, bn = build_model("lenet5", FASHION_MNIST), build_model("lenet5_bn", FASHION_MNIST)
    kinds = [type(m) for m in bn.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert kinds == [nn.BatchNorm2d] * 3 + [nn.BatchNorm1d]
    assert count_parameters(bn) == 61706 + 2 * (6 + 16 + 120 + 84)
    # the plain LeNet-5's layer indices (its checkpoints' keys) are unchanged by the option
    assert list(plain.state_dict())[:4] == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]


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


def test_resnet18_instance_norm_for_condensation_pool():
    net = build_model("resnet18", FASHION_MNIST, norm="instance", width=8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_mobilenetv2_is_depthwise_with_batchnorm():
    model = build_model("mobilenetv2", FASHION_MNIST, width=0.5)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    assert len(depthwise) == 8  # one per inverted residual block
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 20
    assert count_parameters(model) < count_parameters(build_model("mobilenetv2", FASHION_MNIST))
