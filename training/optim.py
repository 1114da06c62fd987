"""Optimisers with a separate learning rate for the gater, and max-norm on incoming weights."""

from __future__ import annotations

import torch

from models.gated_network import GatedNetwork

OPTIMIZERS = ("sgd", "adam")


def build_optimizer(model: GatedNetwork, name: str, lr: float, gater_lr: float | None = None,
                    momentum: float = 0.0, nesterov: bool = False,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    groups = [{"params": model.main_parameters(), "lr": lr, "name": "main"}]
    gater = model.gater_parameters()
    if gater:
        groups.append({"params": gater, "lr": lr if gater_lr is None else gater_lr,
                       "name": "gater"})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


@torch.no_grad()
def apply_max_norm(model: GatedNetwork, max_norm: float | None) -> None:
    """Rescale each unit's incoming weight vector (a row of W) to norm <= max_norm (paper: 2)."""
    if not max_norm:
        return
    for linear in model.weight_matrices():
        w = linear.weight  # (out, in): row i holds unit i's incoming weights
        norms = w.norm(dim=1, keepdim=True)
        w.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))
