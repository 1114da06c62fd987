"""Tiny data and models shared by the training tests."""

import pytest
import torch

from models.gated_config import GatedNetworkConfig
from training.data import DataBundle, Split


def make_bundle(n_train=256, n_valid=128, n_test=128, d=12, classes=3, seed=0) -> DataBundle:
    """A learnable synthetic problem: the class is the argmax of a fixed linear map."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, classes, generator=g)

    def split(n):
        x = torch.rand(n, d, generator=g)
        return Split(x, (x @ w).argmax(-1))

    return DataBundle("synthetic", "tests", d, classes, split(n_train), split(n_valid),
                      split(n_test))


@pytest.fixture
def bundle() -> DataBundle:
    return make_bundle()


def tiny_config(estimator="st", density=0.25, layers=1, **settings) -> GatedNetworkConfig:
    layer = {"blocks": 16, "block_size": 4, "gater_hidden": 8, "activation": "relu"}
    return GatedNetworkConfig.from_dict({
        "input_size": 12, "num_classes": 3, "layers": [layer] * layers,
        "estimator": estimator, "estimator_settings": settings, "target_density": density})
