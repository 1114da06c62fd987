"""Score-function (REINFORCE-family) estimators for Bernoulli units h = 1[z < sigm(a)].

The gradient of E[L] w.r.t. a is E[(h - sigm(a)) L] (paper, Eq. 7-8): the unit's output is not
differentiated, so the main path never backpropagates into the gater. Subtracting a baseline that
does not depend on the current draw keeps the estimate unbiased and can cut its variance; the
paper's minimum-variance choice is per unit (Eq. 10):

    Lbar_i = E[(h_i - sigm(a_i))^2 L] / E[(h_i - sigm(a_i))^2]

kept here as two exponential moving averages per unit (numerator and denominator). Because both
start at zero and decay alike, their ratio needs no bias correction: after the first update it is
already a proper weighted average. The baseline is read before the current draws update it, so
each estimate uses earlier draws only and stays unbiased.

Beyond the paper: leave-one-out REINFORCE (Kool et al. 2019), where each of C draws uses the mean
loss of the other C - 1 as its baseline, and DisARM (Dong, Mnih & Tucker 2020), which couples two
antithetic draws and integrates out their shared noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, bernoulli_draw, check_count, check_probability, uniform_like

# Draws per estimate: each is a forward of the whole network in training.
MAX_SAMPLES = 1024


class _ScoreFunction(Estimator):
    family = "score-function"
    unbiased = True

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check_group(logits)
        with torch.no_grad():
            return bernoulli_draw(torch.sigmoid(logits), generator)

    def coefficients(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        """The gradient estimate itself, per draw (..., K); sums over a group give one estimate."""
        raise NotImplementedError

    def surrogate(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        _check_losses(h, losses)
        coef = self.coefficients(logits.detach(), h.detach(), losses.detach())
        per_draw = (coef * logits).sum(-1)
        return per_draw.sum(0) if self.draws_per_estimate > 1 else per_draw


def _check_losses(h: Tensor, losses: Tensor) -> None:
    if losses.shape != h.shape[:-1]:
        raise ValueError(f"losses must have shape {tuple(h.shape[:-1])} (one per draw), got "
                         f"{tuple(losses.shape)}")


class Reinforce(_ScoreFunction):
    """The paper's unbiased estimator with the per-unit minimum-variance baseline (Eq. 10)."""

    name = "reinforce"
    summary = "REINFORCE, per-unit minimum-variance baseline (paper Eq. 10)"
    baseline_kind = "per-unit"
    learns_baseline = True

    def __init__(self, num_units: int, *, decay: float = 0.99) -> None:
        super().__init__(num_units, decay=decay)
        self.decay = check_probability("decay", decay)
        size = num_units if self.baseline_kind == "per-unit" else 1
        # float64: these averages run for the whole of training and must not drift.
        self.register_buffer("baseline_numerator", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("baseline_denominator", torch.zeros(size, dtype=torch.float64))

    def baseline(self) -> Tensor:
        """Current baseline: (K,) per unit, or (1,) for the scalar moving average."""
        den = self.baseline_denominator
        return torch.where(den > 0, self.baseline_numerator / den.clamp_min(1e-300),
                           torch.zeros_like(den))

    def coefficients(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        centred = h - torch.sigmoid(logits)  # (..., K)
        b = self.baseline().to(logits.dtype)  # (K,) or (1,), from earlier draws only
        coef = centred * (losses.unsqueeze(-1) - b)
        if self.training:
            self._update(centred, losses)
        return coef

    def _update(self, centred: Tensor, losses: Tensor) -> None:
        centred = centred.reshape(-1, centred.shape[-1]).to(torch.float64)  # (N, K)
        losses = losses.reshape(-1, 1).to(torch.float64)  # (N, 1)
        # Eq. 10's weights (h_i - sigm(a_i))^2 per unit, or 1 for the plain loss average.
        per_unit = self.baseline_kind == "per-unit"
        weight = centred.square() if per_unit else torch.ones_like(losses)
        beta = self.decay
        self.baseline_numerator.mul_(beta).add_((1 - beta) * (weight * losses).mean(0))
        self.baseline_denominator.mul_(beta).add_((1 - beta) * weight.mean(0))


class ReinforceMean(Reinforce):
    """One scalar moving average of the loss as baseline: the common textbook choice."""

    name = "reinforce-mean"
    summary = "REINFORCE, one scalar moving-average baseline"
    baseline_kind = "mean"


class ReinforceNoBaseline(_ScoreFunction):
    """Plain REINFORCE: (h - sigm(a)) L. Unbiased, and the noisiest of all."""

    name = "reinforce-nobaseline"
    summary = "REINFORCE without baseline"

    def __init__(self, num_units: int) -> None:
        super().__init__(num_units)

    def coefficients(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        return (h - torch.sigmoid(logits)) * losses.unsqueeze(-1)


class LeaveOneOut(_ScoreFunction):
    """RLOO: C independent draws, each baselined by the mean loss of the other C - 1."""

    name = "rloo"
    summary = "leave-one-out REINFORCE over C draws (Kool et al. 2019)"

    def __init__(self, num_units: int, *, samples: int = 4) -> None:
        check_count("samples", samples, 2, MAX_SAMPLES)
        super().__init__(num_units, samples=samples)
        self.draws_per_estimate = samples

    def coefficients(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        c = self.draws_per_estimate
        # L_s - mean_{j != s} L_j = C / (C - 1) * (L_s - mean_j L_j); the 1/C of the average
        # over draws then leaves 1 / (C - 1).
        centred_loss = losses - losses.mean(0, keepdim=True)  # (C, ...)
        return (h - torch.sigmoid(logits)) * centred_loss.unsqueeze(-1) / (c - 1)


class DisARM(_ScoreFunction):
    """DisARM: two antithetic draws b = 1[u < p], b~ = 1[1 - u < p] (Dong et al. 2020, Eq. 6).

    Per unit: 1/2 (L(b) - L(b~)) (-1)^{b~_i} 1[b_i != b~_i] sigm(|a_i|).
    """

    name = "disarm"
    summary = "DisARM, antithetic pair with the shared noise integrated out (Dong et al. 2020)"
    draws_per_estimate = 2

    def __init__(self, num_units: int) -> None:
        super().__init__(num_units)

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check_group(logits)
        with torch.no_grad():
            p = torch.sigmoid(logits[0])  # (..., K): both draws share the logits
            u = uniform_like(p, generator)
            return torch.stack([(u < p), (1 - u < p)]).to(logits.dtype)  # (2, ..., K)

    def coefficients(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        b, b_tilde = h[0], h[1]
        sign = 1 - 2 * b_tilde  # (-1)^{b~}
        differ = (b != b_tilde).to(logits.dtype)
        half_diff = 0.5 * (losses[0] - losses[1]).unsqueeze(-1)
        coef = half_diff * sign * differ * torch.sigmoid(logits[0].abs())
        # All of the estimate on the first draw of the pair, nothing on the second.
        return torch.stack([coef, torch.zeros_like(coef)])
