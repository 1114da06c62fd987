"""The service's model engine on a GPU (the Triton path under CUDA graphs) answers what the
CPU engine answers: the same artifact, batches inside and beyond the graph buckets, logits
within bf16's tolerance and the first gated layer's gates exactly (both read the caller's
fp32 input). Skipped without CUDA; it lives outside tests/service so that it runs where
only torch and triton are installed (the service's engine needs no web framework)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.gated_artifact import save_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from service.engine import ModelEngine

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

INPUT = 96
LAYOUTS = {
    # binary units, a small gater: the fused gate kernels on both paths
    "small-gater": ("st", [{"blocks": 16, "block_size": 32, "gater_hidden": 32,
                            "activation": "relu"},
                           {"blocks": 64, "block_size": 1, "activation": "tanh",
                            "gated": False}]),
    # the paper's wide gater (2000 logits from 400 hidden units): torch's gater at large
    # batches, the separate gate kernels at small ones; then a gated layer after a gated one
    "wide-gater": ("st", [{"blocks": 2000, "block_size": 1, "gater_hidden": 400,
                           "activation": "relu"},
                          {"blocks": 8, "block_size": 16, "gater_hidden": 0,
                           "activation": "relu"}]),
    # non-binary units: gate values from the estimator in torch
    "non-binary": ("sts", [{"blocks": 16, "block_size": 32, "gater_hidden": 32,
                            "activation": "relu"}]),
}


def artifact(tmp_path, layout: str):
    estimator, layers = LAYOUTS[layout]
    torch.manual_seed(0)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": INPUT, "num_classes": 5, "estimator": estimator, "target_density": 0.2,
        "layers": layers}))
    with torch.no_grad():  # spread the logits so a threshold of 0 cuts anywhere
        for layer in model.gated_layers:
            layer.gater.out.weight.mul_(4.0)
            if layer.estimator.sparsity_kind == "kl":  # STS starts far lower: sqrt(sigm(a))
                layer.gater.out.bias.fill_(math.log(0.2 / 0.8))
    model.set_thresholds([float(layer.estimator.logit_threshold(0.0))
                          for layer in model.gated_layers])
    save_gated_network(model.eval(), tmp_path, layout, 1)
    return tmp_path / layout / "1"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cuda_engine_serves_what_the_cpu_engine_serves(tmp_path, layout):
    folder = artifact(tmp_path, layout)
    cpu, gpu = ModelEngine(folder, "cpu"), ModelEngine(folder, "cuda")
    gpu.warm_up((1, 2, 4, 8, 16))
    rng = np.random.default_rng(0)
    for batch in (1, 3, 8, 16, 40, 300):  # graph buckets, then eager grouped batches
        x = rng.normal(size=(batch, INPUT)).astype(np.float32)
        want, got = cpu.infer(x), gpu.infer(x)
        scale = float(np.abs(want.logits).max())
        assert float(np.abs(want.logits - got.logits).max()) <= 3e-2 * scale, (layout, batch)
        assert ([r.active_blocks[0] for r in got.reports]
                == [r.active_blocks[0] for r in want.reports]), (layout, batch)
        again = gpu.infer(x)  # a replay of the same graph: the same answer
        np.testing.assert_allclose(again.logits, got.logits, rtol=1e-3, atol=1e-3 * scale)
