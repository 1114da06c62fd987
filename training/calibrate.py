"""Deterministic thresholds per layer that hit the target density (the paper's appendix A.3).

Layer by layer, on validation data: with the earlier layers already thresholded, collect the
layer's gater logits and pick the threshold above which the target fraction lies. Thresholds
live in logit space (every smooth gate value is non-decreasing in the logit, so this is the same
rule as a threshold on the smooth value, without sigmoid saturation ties). Later layers see the
thresholded earlier ones, exactly as at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.compute import active_blocks_of, dense_macs, executed_macs
from models.gated_network import GatedNetwork, density_threshold


def threshold_for_density(values: Tensor, density: float) -> float:
    """tau such that the fraction of `values` strictly above tau is `density` (up to ties)."""
    return float(density_threshold(values.float(), density))


def _batches(x: Tensor, batch_size: int):
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size]


@torch.no_grad()
def calibrate_thresholds(model: GatedNetwork, x: Tensor, density: float,
                         batch_size: int = 1024) -> list[float]:
    """Set and return per-layer thresholds so each gated layer is on at `density` on `x`."""
    was_training = model.training
    model.eval()
    thresholds = []
    gated = model.gated_layers
    for target_layer in gated:
        logits = []
        for chunk in _batches(x, batch_size):
            h = chunk
            for layer in model.layers:
                if layer is target_layer:
                    logits.append(layer.gater(h))  # (B, K)
                    break
                h, _ = layer(h)
        tau = float(target_layer.estimator.logit_threshold(
            threshold_for_density(torch.cat(logits), density)))
        target_layer.threshold.fill_(tau)
        thresholds.append(tau)
    model.train(was_training)
    return thresholds


@torch.no_grad()
def evaluate(model: GatedNetwork, x: Tensor, y: Tensor, batch_size: int = 1024) -> dict:
    """Deterministic error rate, per-layer density (fraction of blocks on) and the mean
    multiply-adds per example that a skipping engine executes (models.compute: gaters
    included, only the active blocks) against the dense network's, on (x, y)."""
    was_training = model.training
    model.eval()
    errors, macs = 0, 0
    dense = dense_macs(model.config)
    on = torch.zeros(len(model.gated_layers), dtype=torch.float64)  # summed per-example density
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start:start + batch_size])
        errors += int((out.logits.argmax(-1) != y[start:start + batch_size]).sum())
        for i, trace in enumerate(out.traces):
            on[i] += float((trace.gates != 0).double().mean(-1).sum())
        if out.traces:
            active = active_blocks_of([t.gates for t in out.traces]).cpu()  # (B, G)
            macs += int(executed_macs(model.config, active).sum())
        else:
            macs += dense * out.logits.shape[0]
    model.train(was_training)
    n = x.shape[0]
    return {"error": errors / n, "density": (on / n).tolist(), "executed_macs": macs / n,
            "dense_macs": dense}
