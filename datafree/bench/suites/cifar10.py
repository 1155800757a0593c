"""CIFAR-10 at GPU scale: ResNet-34 -> ResNet-18 and WRN-40-2 -> WRN-16-1, every method, 3 seeds."""

from datafree.bench.suites.cifar import cifar_suite

SUITE = cifar_suite("cifar10", "cifar10", "CIFAR-10")
