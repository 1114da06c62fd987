"""Built-in problems whose exact gradients are known, for judging gradient estimators.

Each problem is fixed logits (K,) and a loss over unit outputs (S, K) -> (S,), differentiable in h
so that pathwise estimators can run on it too. The exact gradient of the Bernoulli objective is
`models.estimators.exact_gradient(problem.logits, problem.loss)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from models.estimators import binary_states


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    logits: Tensor  # (K,)
    loss: Callable[[Tensor], Tensor]  # (S, K) -> (S,)


def toy_problem(target: float, units: int = 4) -> Problem:
    """E[sum_k (h_k - t)^2]: the classic toy of REBAR/RELAX. Near t = 1/2 the exact gradient,
    sigm'(a) (1 - 2t), is tiny next to the loss, which is what exposes biased estimators."""
    logits = torch.linspace(-1.5, 1.5, units)

    def loss(h: Tensor) -> Tensor:
        return (h - target).square().sum(-1)

    return Problem(f"toy-t{target:g}", f"E[sum (h - {target:g})^2], K = {units}", logits, loss)


def random_network_problem(units: int, seed: int, hidden: int = 16, outputs: int = 4) -> Problem:
    """A random tanh network of the binary units, squared error to a random target."""
    g = torch.Generator().manual_seed(seed)
    logits = 1.5 * torch.randn(units, generator=g)
    w1 = torch.randn(units, hidden, generator=g) / units**0.5
    c1 = torch.randn(hidden, generator=g)
    w2 = torch.randn(hidden, outputs, generator=g) / hidden**0.5
    target = torch.randn(outputs, generator=g)

    def loss(h: Tensor) -> Tensor:
        out = torch.tanh(h @ w1.to(h.dtype) + c1.to(h.dtype)) @ w2.to(h.dtype)  # (S, O)
        return (out - target.to(h.dtype)).square().sum(-1)

    return Problem(f"random-net-k{units}-s{seed}",
                   f"random tanh network ({units} -> {hidden} -> {outputs}), squared error",
                   logits, loss)


def sigmoid_belief_net_problem(seed: int = 0, top: int = 8, middle: int = 6,
                               visible: int = 16) -> Problem:
    """A two-layer sigmoid belief net h1 -> h2 -> x; the estimators act on h1's logits.

    The loss is -log p(x | h1) for one fixed observation x, with the second stochastic layer
    h2 summed out exactly: p(x | h1) = sum_{h2} p(h2 | h1) p(x | h2). It is smooth in h1, so the
    pathwise estimators apply, and every term is exact, so so is the gradient.
    """
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(top, generator=g)
    w12 = 2 * torch.randn(top, middle, generator=g) / top**0.5
    c2 = torch.randn(middle, generator=g)
    w2x = 2 * torch.randn(middle, visible, generator=g) / middle**0.5
    cx = torch.randn(visible, generator=g)
    x = (torch.rand(visible, generator=g) < 0.5).to(torch.float32)
    states2 = binary_states(middle, torch.float32)  # (M2, middle) with M2 = 2^middle
    x_logits = states2 @ w2x + cx  # (M2, visible)
    log_px_given_h2 = -F.binary_cross_entropy_with_logits(
        x_logits, x.expand_as(x_logits), reduction="none").sum(-1)  # (M2,)

    def loss(h1: Tensor) -> Tensor:
        dt = h1.dtype
        a2 = h1 @ w12.to(dt) + c2.to(dt)  # (S, middle)
        s2 = states2.to(dt)
        log_ph2 = (s2.unsqueeze(0) * F.logsigmoid(a2).unsqueeze(1)
                   + (1 - s2.unsqueeze(0)) * F.logsigmoid(-a2).unsqueeze(1)).sum(-1)  # (S, M2)
        return -torch.logsumexp(log_ph2 + log_px_given_h2.to(dt), dim=-1)  # (S,)

    return Problem(f"sbn-2layer-s{seed}",
                   f"two-layer sigmoid belief net ({top} -> {middle} -> {visible}), -log p(x|h1)",
                   logits, loss)


def builtin_problems() -> list[Problem]:
    return [
        toy_problem(0.45),
        toy_problem(0.499),
        random_network_problem(6, seed=1),
        random_network_problem(9, seed=2),
        random_network_problem(12, seed=3),
        sigmoid_belief_net_problem(seed=0),
    ]


def problem_by_name(name: str) -> Problem:
    problems = {p.name: p for p in builtin_problems()}
    if name not in problems:
        raise ValueError(f"unknown problem {name!r}; valid: {', '.join(problems)}")
    return problems[name]
