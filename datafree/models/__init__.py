"""Model zoo: every network is built from a DataSpec through :func:`build_model`."""

from datafree.models.convnet import ConvNet
from datafree.models.dcnets import MLP, VGG, AlexNetDC
from datafree.models.fade import FadingWidth
from datafree.models.fold import fold_batchnorm
from datafree.models.inherit import Inheritance, inherit_weights
from datafree.models.lenet import LeNet5
from datafree.models.rank import rank_channels
from datafree.models.registry import EVAL_POOL, available_models, build_model, count_parameters
from datafree.models.resnet import ResNet
from datafree.models.wrn import WideResNet

__all__ = ["EVAL_POOL", "MLP", "VGG", "AlexNetDC", "ConvNet", "FadingWidth", "Inheritance", "LeNet5", "ResNet",
           "WideResNet", "available_models", "build_model", "count_parameters", "fold_batchnorm", "inherit_weights",
           "rank_channels"]
