"""The benchmarks' gate setting turns on the density's share of gates, with no logit at the
threshold (where another implementation's rounding could turn a gate the other way)."""

import pytest
import torch

from benchmarks.cases import layer_model, set_density


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.5, 1.0])
def test_the_share_of_gates_on_and_a_margin_at_the_threshold(density):
    torch.manual_seed(0)
    model = layer_model(d_in=32, blocks=16, block_size=4, d_out=8)
    x = torch.randn(24, 32, generator=torch.Generator().manual_seed(1))
    set_density(model, x, density)
    layer = model.layers[0]
    with torch.no_grad():
        logits = layer.gater(x)
    on = int((logits > layer.threshold).sum())
    assert on == round(density * logits.numel())
    assert float((logits - layer.threshold).abs().min()) > 0.0
