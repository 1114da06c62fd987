"""What every gradient estimator for a stochastic gating unit shares.

An estimator is a small `nn.Module` that turns pre-activations ("logits") into unit outputs. In
training it draws a stochastic output whose backward pass carries that estimator's gradient; at
evaluation it is deterministic: the unit is on where its smooth gate value passes a threshold.

Letters used in shape comments: B examples, K units, C draws that form one estimate (RLOO,
DisARM), S draws in `estimate_gradient`.

Two ways a gradient reaches the logits:
- pathwise estimators (straight-through, STS, noise injection, relaxations) put their gradient on
  `h` itself, so backprop from the loss through `h` does it;
- score-function estimators (REINFORCE and friends) return `h` detached and give the gradient
  through `surrogate(logits, h, losses)`, whose gradient with respect to the logits is the
  estimate. The caller adds the surrogate to the loss it backpropagates.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..config_checks import finite_float, shown_value

FAMILIES = (
    "deterministic",
    "score-function",
    "straight-through",
    "stochastic-times-smooth",
    "noise-injection",
    "relaxation",
)


def validate_logits(logits: object, *, check_finite: bool = True) -> Tensor:
    """Refuse what would otherwise turn into a silent NaN or a broadcasting surprise."""
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must have a floating dtype, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits need a last dimension of units (K >= 1), got shape "
                         f"{tuple(logits.shape)}")
    if check_finite and not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        raise ValueError(f"logits contain {bad} non-finite value(s) (NaN or infinity)")
    return logits


def uniform_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U(0, 1) draws shaped like `x`, from `generator` when given (for reproducible tests)."""
    return torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def normal_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def bernoulli_draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """h = 1[z < p], z ~ U(0, 1): the paper's Eq. 3 with the inequality the right way round."""
    return (uniform_like(probs, generator) < probs).to(probs.dtype)


class Estimator(nn.Module):
    """Base class. Subclasses set the class attributes and implement `sample` and `smooth`."""

    name: ClassVar[str]
    family: ClassVar[str]
    # True where E[estimate] equals d/dlogits E_{h ~ Bernoulli(sigm(logits))}[L(h)] exactly.
    unbiased: ClassVar[bool]
    # True where the estimator's training output takes only the values 0 and 1.
    binary: ClassVar[bool] = True
    # Draws (and loss evaluations) that one estimate consumes; > 1 means the caller feeds
    # `sample` logits with a leading group dimension of exactly this size.
    draws_per_estimate: ClassVar[int] = 1
    # Threshold on `smooth(logits)` used at evaluation unless calibration sets another.
    default_threshold: ClassVar[float] = 0.5
    # True where the estimator keeps running statistics that each estimate must read before
    # the current draw updates them (REINFORCE's moving-average baselines).
    learns_baseline: ClassVar[bool] = False
    # How a training objective holds this unit at a target density: "kl" penalises the
    # divergence of the mean probability of being on from the target (paper Eq. 14, sigmoid
    # gaters); "l1" an adaptively weighted L1 norm of the output (Eq. 15, rectifiers).
    sparsity_kind: ClassVar[str] = "kl"
    summary: ClassVar[str] = ""

    def __init__(self, num_units: int, **settings: object) -> None:
        super().__init__()
        if not isinstance(num_units, int) or isinstance(num_units, bool) or num_units < 1:
            raise ValueError(f"num_units must be a positive int, got {num_units!r}")
        self.num_units = num_units
        # JSON-serialisable settings, stored in model artifacts so a model describes itself.
        self.settings: dict[str, object] = dict(settings)
        self.check_inputs = True

    # -- training -------------------------------------------------------------------------
    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Stochastic training output, shaped like `logits` (..., K)."""
        raise NotImplementedError

    def surrogate(self, logits: Tensor, h: Tensor, losses: Tensor) -> Tensor:
        """Per-example term whose gradient w.r.t. `logits` is the score-function estimate.

        `losses` holds the per-example loss of each draw, shaped like `h` without the unit
        dimension. Returns a tensor shaped like one estimate per example. Pathwise estimators
        return zeros: their gradient already flows through `h`.
        """
        del h
        return torch.zeros_like(losses[0] if self.draws_per_estimate > 1 else losses)

    def on_probability(self, logits: Tensor) -> Tensor:
        """What the KL penalty holds at the target density: the probability that the unit's
        output is non-zero; differentiable in logits. sigm(a) for Bernoulli(sigm(a)) units;
        an estimator whose draw is on with another probability says so (STS: sqrt(sigm(a)))."""
        return torch.sigmoid(logits)

    # -- evaluation -----------------------------------------------------------------------
    def smooth(self, logits: Tensor) -> Tensor:
        """The smooth gate value that the evaluation threshold is applied to."""
        return torch.sigmoid(logits)

    def deterministic(self, logits: Tensor, threshold: float | Tensor | None = None) -> Tensor:
        """Evaluation output: on where smooth(logits) > threshold, 0 elsewhere.

        Binary units output 1 when on; the others output `eval_value` (their smooth value
        unless the estimator says otherwise), so the main path sees the scale it trained with.
        """
        if self.check_inputs:
            validate_logits(logits)
        tau = self.default_threshold if threshold is None else threshold
        return self.gate_values(logits, self.smooth(logits) > tau)

    def gate_values(self, logits: Tensor, on: Tensor) -> Tensor:
        """Evaluation outputs for a given on/off pattern: 1 (binary) or `eval_value` where on."""
        if self.binary:
            return on.to(logits.dtype)
        value = self.eval_value(logits)
        return torch.where(on, value, torch.zeros_like(value))

    def logit_threshold(self, logit_tau: Tensor | float) -> Tensor | float:
        """Clamp a threshold on the logits to where this unit can be on at all.

        Every `smooth` here is non-decreasing in the logit, so "smooth(a) > tau" is
        "a > tau'" for some tau' in logit space. Gated layers threshold the logits directly:
        no sigmoid to compute at inference, and no ties where sigm(a) rounds to 0 or 1 in
        float32. Rectifiers are flat (zero) below 0, so they are never on there.
        """
        return logit_tau

    def eval_value(self, logits: Tensor) -> Tensor:
        """What a non-binary unit outputs at evaluation where it is on (default: smooth)."""
        return self.smooth(logits)

    def forward(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.check_inputs:
            validate_logits(logits)
        if self.training:
            return self.sample(logits, generator)
        return self.deterministic(logits)

    # -- description ----------------------------------------------------------------------
    def describe(self) -> dict[str, object]:
        """What a model artifact records about the estimator it was trained with."""
        return {
            "name": self.name,
            "family": self.family,
            "unbiased": self.unbiased,
            "binary": self.binary,
            "draws_per_estimate": self.draws_per_estimate,
            "sparsity_kind": self.sparsity_kind,
            "settings": dict(self.settings),
        }

    def extra_repr(self) -> str:
        items = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"num_units={self.num_units}" + (f", {items}" if items else "")

    def _check_group(self, logits: Tensor) -> None:
        """Multi-draw estimators read dim 0 as the group of draws behind one estimate."""
        c = self.draws_per_estimate
        if c > 1 and (logits.dim() < 2 or logits.shape[0] != c):
            raise ValueError(
                f"estimator {self.name!r} draws {c} samples per estimate: pass logits with a "
                f"leading group dimension of size {c}, got shape {tuple(logits.shape)}"
            )


# Settings arrive from config.json files, where 10**400 is a valid integer and true a valid
# value: every check goes through finite_float, which refuses both (and NaN, infinities) with
# the ValueError a refused setting raises, never float()'s OverflowError.


def check_positive(name: str, value: float) -> float:
    number = finite_float(value)
    if number is None or not number > 0:
        raise ValueError(f"{name} must be a finite positive number, got {shown_value(value)}")
    return number


def check_probability(name: str, value: float, *, open_interval: bool = True) -> float:
    number = finite_float(value)
    ok = number is not None and (0 < number < 1 if open_interval else 0 <= number <= 1)
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {shown_value(value)}")
    return number


def check_count(name: str, value: int, minimum: int, maximum: int) -> int:
    """An integer setting that sizes tensors drawn in training (draws, uniforms per draw):
    bounded, so an edited config cannot ask for more memory than exists."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an int from {minimum} to {maximum}, got "
                         f"{shown_value(value)}")
    return value
