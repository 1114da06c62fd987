"""Gradient estimates and exact gradients for K stochastic units with fixed logits.

The public, stable API that diagnostics, tests and other code call:
- `estimate_gradient(name, logits, loss_fn, n_samples)`: n_samples independent estimates;
- `exact_gradient(logits, loss_fn)`: the exact gradient for Bernoulli(sigm(logits)) units by
  enumerating all 2^K states.

`loss_fn` maps unit outputs (S, K) to per-row losses (S,), row by row (row s may depend only on
h[s]); pathwise estimators need it differentiable in h.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import validate_logits
from .registry import make_estimator

LossFn = Callable[[Tensor], Tensor]
MAX_EXACT_UNITS = 20


def _check_vector(logits: object) -> Tensor:
    logits = validate_logits(logits)
    if logits.dim() != 1:
        raise ValueError(f"logits must have shape [K], got {tuple(logits.shape)}")
    return logits


def _evaluate(loss_fn: LossFn, h: Tensor) -> Tensor:
    losses = loss_fn(h)
    if not isinstance(losses, Tensor) or losses.shape != (h.shape[0],):
        shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn must map outputs of shape {tuple(h.shape)} to losses of "
                         f"shape ({h.shape[0]},), got {shape}")
    if not losses.is_floating_point():
        raise ValueError(f"loss_fn must return floating losses, got {losses.dtype}")
    if not bool(torch.isfinite(losses.detach()).all()):
        raise ValueError("loss_fn returned non-finite losses (NaN or infinity)")
    return losses


def estimate_gradient(name: str, logits: Tensor, loss_fn: LossFn, n_samples: int,
                      generator: torch.Generator | None = None, *,
                      settings: dict[str, object] | None = None) -> Tensor:
    """Independent estimates (n_samples, K) of d/dlogits E_h[loss_fn(h)].

    h is estimator `name`'s stochastic output for `logits` (K,). Multi-draw estimators (rloo,
    disarm) spend `draws_per_estimate` loss evaluations on each estimate. Estimators that learn
    a baseline start from none and update it after each draw, so every estimate reads earlier
    draws only and stays unbiased where the estimator claims to be.
    """
    logits = _check_vector(logits)
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    estimator = make_estimator(name, logits.shape[0], **(settings or {}))
    estimator.train()
    c = estimator.draws_per_estimate
    k = logits.shape[0]
    grouped = logits.detach().expand(c, n_samples, k)  # (C, S, K)

    if estimator.family == "score-function":
        h = estimator.sample(grouped, generator)  # (C, S, K), no gradient path
        losses = _evaluate(loss_fn, h.reshape(c * n_samples, k)).detach().reshape(c, n_samples)
        if estimator.learns_baseline:
            # One draw at a time: draw s is baselined by draws 0..s-1 only.
            rows = [estimator.coefficients(logits.detach(), h[0, s], losses[0, s])
                    for s in range(n_samples)]
            return torch.stack(rows)
        coef = estimator.coefficients(grouped, h, losses)  # (C, S, K)
        return coef.sum(0)

    leaf = grouped.clone().requires_grad_(True)
    h = estimator.sample(leaf, generator)  # (C, S, K), carries the estimator's gradient
    losses = _evaluate(loss_fn, h.reshape(c * n_samples, k))
    if not losses.requires_grad:
        raise ValueError(f"estimator {name!r} backpropagates through h: loss_fn must be "
                         "differentiable in h (its output does not require grad)")
    (grad,) = torch.autograd.grad(losses.sum(), leaf)
    return grad.sum(0) / c


def binary_states(k: int, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None) -> Tensor:
    """All 2^k binary vectors, (2^k, k); row i holds the bits of i, least significant first."""
    index = torch.arange(2**k, device=device).unsqueeze(1)
    return ((index >> torch.arange(k, device=device)) & 1).to(dtype)


def _enumerate(logits: Tensor, loss_fn: LossFn, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """States (2^K, K), their probabilities (2^K,) and losses (2^K,), all float64."""
    logits = _check_vector(logits)
    k = logits.shape[0]
    if k > MAX_EXACT_UNITS:
        raise ValueError(f"{what} enumerates 2^K states and refuses K > {MAX_EXACT_UNITS}; "
                         f"got K = {k}")
    states = binary_states(k, logits.dtype, logits.device)  # (2^K, K)
    with torch.no_grad():
        losses = _evaluate(loss_fn, states).to(torch.float64)  # (2^K,)
    a = logits.detach().to(torch.float64)
    states = states.to(torch.float64)
    log_prob = (states * torch.nn.functional.logsigmoid(a)
                + (1 - states) * torch.nn.functional.logsigmoid(-a)).sum(-1)  # (2^K,)
    return states, log_prob.exp(), losses


def exact_gradient(logits: Tensor, loss_fn: LossFn) -> Tensor:
    """d/dlogits E_{h ~ Bernoulli(sigm(logits))}[loss_fn(h)] exactly, shape (K,).

    Enumerates the 2^K states, so K is capped at 20. Uses the identity
    dE/da_k = sum_h p(h) L(h) (h_k - sigm(a_k)), computed in float64.
    """
    states, probs, losses = _enumerate(logits, loss_fn, "exact_gradient")
    p = torch.sigmoid(logits.detach().to(torch.float64))
    grad = ((probs * losses).unsqueeze(-1) * (states - p)).sum(0)  # (K,)
    return grad.to(logits.dtype)


def exact_expectation(logits: Tensor, loss_fn: LossFn) -> Tensor:
    """E_{h ~ Bernoulli(sigm(logits))}[loss_fn(h)] exactly (float64 scalar), K <= 20."""
    _, probs, losses = _enumerate(logits, loss_fn, "exact_expectation")
    return (probs * losses).sum()
