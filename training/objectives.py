"""Training objectives: the task loss and the per-layer sparsity penalties.

- Sigmoid-type gaters (KL kind): Eq. 14's KL divergence between the target density rho and the
  batch-mean probability of each unit being on, summed over the layer's units.
- Rectifier gaters (L1 kind): Eq. 15's L1 penalty on the gate outputs with a weight lambda that
  adapts during training so the realised density settles at the target. As the authors' code
  did it (github.com/nicholas-leonard/delicious, conditional_gater.py, NoisyRectifier): after
  every step lambda is multiplied by 1 + rate when the batch's density is more than `tolerance`
  above the target, by 1 - rate when more than `tolerance` below, and left alone in between;
  clipped to [1e-6, 1e3].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from models.estimators import Estimator


def per_example_task_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy per example; (..., classes), (B,) -> (...,). Leading draw dims broadcast."""
    expanded = targets.expand(logits.shape[:-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), expanded.reshape(-1),
                           reduction="none").reshape(logits.shape[:-1])


def kl_sparsity(on_probability: Tensor, target: float, eps: float = 1e-6) -> Tensor:
    """Eq. 14: sum over units of KL(Bernoulli(rho) || Bernoulli(mean_batch p_k)).

    Summed, not averaged, over units: each unit's gradient then does not shrink as the layer
    widens, while the task loss's gradient on that unit does not either."""
    p = on_probability.reshape(-1, on_probability.shape[-1]).mean(0).clamp(eps, 1 - eps)  # (K,)
    rho = min(max(target, eps), 1 - eps)
    return (rho * torch.log(rho / p) + (1 - rho) * torch.log((1 - rho) / (1 - p))).sum()


def l1_sparsity(gates: Tensor) -> Tensor:
    """Per-example L1 norm of the gate outputs, averaged over examples: (..., K) -> scalar."""
    return gates.abs().sum(-1).mean()


def count_balance(logits: Tensor, threshold: Tensor, density: float) -> Tensor:
    """How unevenly the examples' counts of gates on spread around their batch mean, relative
    to the target count, squared and averaged over examples; (..., K) -> scalar.

    A layer-wide threshold holds the mean density only: without this, examples of one batch at
    10 % spread from zero blocks on (an example the read-out cannot classify) to a third of
    them. The count is soft (sigm(a - tau) per gate) so it has a gradient; it is compared with
    the batch's mean soft count, not with the target, because the soft count of the off gates
    is not zero: pulled to the target, every logit would drift down, the moving threshold
    behind them, and the density would lag below the target."""
    target = density * logits.shape[-1]
    soft_count = torch.sigmoid(logits - threshold).sum(-1)  # (...,)
    return ((soft_count - soft_count.mean()) / target).square().mean()


def usage_balance(logits: Tensor, threshold: Tensor, density: float) -> Tensor:
    """How unevenly a layer's blocks share the gates that are on, as mixture-of-experts routers
    measure it: sum over blocks of (the fraction of the batch's examples it is on for, less the
    blocks' mean fraction) times (its mean soft gate, sigm(a - tau)), over density^2 * K;
    (..., K) -> scalar, 0 for an even spread.

    The fractions carry no gradient; the soft gates do, so a block on for more examples than the
    average is pushed down, through the gater's weights as well as its bias, and one on for
    fewer is pushed up, and the moving threshold hands examples from the first to the second.
    Centred on the mean fraction so that it does not push every logit down (a rectifier gate's
    threshold cannot follow them below 0, and the density would fall). Without it the gaters
    settle on the few blocks that learned first and a gated layer works as a fixed narrow one."""
    flat = logits.reshape(-1, logits.shape[-1])  # (B, K)
    on = (flat > threshold).float().mean(0).detach()  # (K,)
    soft = torch.sigmoid(flat - threshold).mean(0)  # (K,)
    return ((on - on.mean()) * soft).sum() / (density ** 2 * flat.shape[-1])


def realised_density(gates: Tensor) -> Tensor:
    """Fraction of gates that are non-zero, i.e. blocks that would be computed."""
    return (gates.detach() != 0).float().mean()


class AdaptiveL1:
    """Eq. 15's weight lambda for one layer, moved after each step toward the target density.

    The authors' code used rate 0.1 and tolerance 0.01 (one point of density either side)."""

    def __init__(self, initial: float = 1e-3, rate: float = 0.01, tolerance: float = 0.0) -> None:
        self.value = float(initial)
        self.rate = float(rate)
        self.tolerance = float(tolerance)

    def update(self, density: float, target: float) -> None:
        if density > target + self.tolerance:
            factor = 1 + self.rate
        elif density < target - self.tolerance:
            factor = 1 - self.rate
        else:
            return
        self.value = min(max(self.value * factor, 1e-6), 1e3)


def sparsity_penalty(estimator: Estimator, logits: Tensor, gates: Tensor, target: float,
                     l1_weight: float) -> Tensor:
    """The layer's penalty (unweighted for KL; lambda-weighted for L1)."""
    if estimator.sparsity_kind == "l1":
        return l1_weight * l1_sparsity(gates)
    return kl_sparsity(estimator.on_probability(logits), target)
