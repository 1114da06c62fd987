"""Learning from a trained network's predictions as well as the labels (knowledge distillation).

The teacher is a finished training run (its config.json and latest checkpoint), typically the
same network with every block on. Its softened class probabilities on the training set are
computed once, before the first epoch, and each batch reads its rows: the teacher costs one
forward pass over the training set, not one per epoch. A gated network that runs a tenth of its
blocks per example learns from the teacher which classes an example resembles, not only which
one it is; that is extra signal for the few units each example trains.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from models.config_checks import ConfigError
from models.gated_network import GatedNetwork

from .checkpoint import load_run_network


def load_teacher(run_dir: str | Path, device: torch.device) -> GatedNetwork:
    """The network of a finished run directory, in evaluation mode (a gated teacher serves with
    its calibrated deterministic gates)."""
    loaded = load_run_network(Path(run_dir))
    if loaded is None:
        raise ConfigError(f"distill_from: {run_dir} holds no config.json and checkpoint of a "
                          "training run")
    return loaded[0].to(device).eval()


@torch.no_grad()
def soft_targets(teacher: GatedNetwork, x: Tensor, temperature: float,
                 batch_size: int = 1024) -> Tensor:
    """The teacher's class probabilities at `temperature` for every row of x, (N, classes)."""
    rows = [F.softmax(teacher(x[i:i + batch_size]).logits / temperature, dim=-1)
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(rows)


def per_example_distillation_loss(logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(targets || softmax(logits / T)) per example; (..., B, classes), (B, classes)
    -> (..., B). T^2 keeps its gradient on the cross-entropy's scale whatever the temperature."""
    log_probs = F.log_softmax(logits / temperature, dim=-1)
    kl = (targets * (targets.clamp_min(1e-12).log() - log_probs)).sum(-1)
    return temperature ** 2 * kl
