"""An artifact with bfloat16 main-path weights is served as the network it stores (the C
kernels reading bfloat16 panels), and the server says which precision it reads."""

from __future__ import annotations

import numpy as np
import torch
from fastapi.testclient import TestClient

from models.block_weights import round_main_weights
from models.gated_artifact import save_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from service.app import create_app

from .conftest import settings


def kernel_sized_network(seed: int) -> GatedNetwork:
    """24 inputs -> 4 blocks x 64 -> 3 blocks x 64 -> 3 classes: blocks the kernels run."""
    torch.manual_seed(seed)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 24, "num_classes": 3, "target_density": 0.5, "layers": [
            {"blocks": 4, "block_size": 64, "activation": "relu"},
            {"blocks": 3, "block_size": 64, "gater_hidden": 8, "activation": "relu"}]})).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.5)
    model.set_thresholds([0.0, 0.0])
    return model


def test_a_bfloat16_artifact_answers_as_its_network_and_says_so(tmp_path):
    model = round_main_weights(kernel_sized_network(3), "bfloat16")
    save_gated_network(model, tmp_path, "half", 1)
    save_gated_network(kernel_sized_network(3), tmp_path, "full", 1)
    x = np.random.default_rng(0).normal(size=(5, 24)).round(4)
    with TestClient(create_app(settings(tmp_path))) as client:
        listed = {m["name"]: m["versions"][0] for m in client.get("/v1/models").json()["models"]}
        card = client.get("/v1/models/half/card").json()
        half = client.post("/v1/models/half:predict", json={"instances": x.tolist()}).json()
        full = client.post("/v1/models/full:predict", json={"instances": x.tolist()}).json()
    assert listed["half"]["block_weights"] == card["block_weights"] == "bfloat16"
    assert listed["full"]["block_weights"] == "float32"
    want = torch.softmax(model(torch.tensor(x, dtype=torch.float32)).logits, -1).detach()
    got = np.array([p["probabilities"] for p in half["predictions"]])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)  # float summation order only
    assert any(0 < p["compute"]["saved_fraction"] < 1 for p in half["predictions"])
    unrounded = np.array([p["probabilities"] for p in full["predictions"]])
    assert not np.allclose(got, unrounded, atol=1e-6, rtol=0)  # the rounding is served
