"""Optimisers with a separate learning rate for the gater, learning-rate schedules, and
max-norm on incoming weights."""

from __future__ import annotations

import math

import torch

from models.gated_network import GatedNetwork

OPTIMIZERS = ("sgd", "adam")
# "constant": the learning rate as given for the whole run (the paper's).
# "cosine": the learning rate times (1 + cos(pi * t)) / 2, t the fraction of the run's steps
# done, so the last steps take small moves: the weights served are not those of one noisy
# full-size step, which at a constant rate moves validation error by half a point from one
# epoch to the next.
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, progress: float) -> float:
    """The schedule's multiplier of the learning rate at `progress` (0 at the first step, 1
    at the end of the run)."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: float, gater_lr: float | None,
                       factor: float) -> None:
    """Each parameter group's base rate (the gater's own where it has one) times `factor`."""
    for group in optimizer.param_groups:
        base = gater_lr if group.get("name") == "gater" and gater_lr is not None else lr
        group["lr"] = base * factor


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
