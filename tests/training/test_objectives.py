"""Sparsity penalties, the adaptive L1 weight, and the optimiser's groups and max-norm."""

import math

import pytest
import torch

from models.gated_network import GatedNetwork
from training.objectives import (
    AdaptiveL1,
    kl_sparsity,
    l1_sparsity,
    per_example_task_loss,
    usage_balance,
)
from training.optim import apply_max_norm, build_optimizer

from .conftest import tiny_config


def test_kl_penalty_is_eq_14_summed_over_units():
    p = torch.tensor([[0.2, 0.1, 0.4], [0.4, 0.1, 0.2]])  # batch means 0.3, 0.1, 0.3
    rho = 0.1

    def kl(q):
        return rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))

    assert float(kl_sparsity(p, rho)) == pytest.approx(2 * kl(0.3), rel=1e-5)
    assert float(kl_sparsity(torch.full((4, 5), rho), rho)) == pytest.approx(0.0, abs=1e-6)


def test_kl_penalty_pulls_the_mean_toward_the_target():
    for start in (0.02, 0.5):
        logits = torch.full((8, 4), math.log(start / (1 - start)), requires_grad=True)
        kl_sparsity(torch.sigmoid(logits), 0.1).backward()
        # Gradient descent moves logits against the gradient: up from 0.02, down from 0.5.
        assert (logits.grad < 0).all() if start < 0.1 else (logits.grad > 0).all()


def test_l1_is_per_example_norm_averaged():
    gates = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    assert float(l1_sparsity(gates)) == pytest.approx(2.0)


def test_adaptive_l1_raises_lambda_above_target_and_lowers_it_below():
    penalty = AdaptiveL1(initial=1e-3, rate=0.1)
    penalty.update(density=0.3, target=0.1)
    assert penalty.value == pytest.approx(1e-3 * 1.1)
    penalty.update(density=0.05, target=0.1)
    penalty.update(density=0.05, target=0.1)
    assert penalty.value == pytest.approx(1e-3 * 1.1 * 0.9 * 0.9)


def test_adaptive_l1_leaves_lambda_alone_within_the_tolerance():
    # The authors' schedule: nothing moves within one point of density of the target.
    penalty = AdaptiveL1(initial=1e-3, rate=0.1, tolerance=0.01)
    for density in (0.105, 0.095, 0.1):
        penalty.update(density=density, target=0.1)
    assert penalty.value == 1e-3
    penalty.update(density=0.12, target=0.1)
    assert penalty.value == pytest.approx(1.1e-3)


def test_task_loss_is_per_example_and_broadcasts_over_draws():
    logits = torch.randn(3, 5, 4)  # (C, B, classes)
    targets = torch.randint(0, 4, (5,))
    losses = per_example_task_loss(logits, targets)
    assert losses.shape == (3, 5)
    expected = torch.nn.functional.cross_entropy(logits[1], targets, reduction="none")
    torch.testing.assert_close(losses[1], expected)


def test_gaters_get_their_own_learning_rate():
    model = GatedNetwork(tiny_config())
    opt = build_optimizer(model, "sgd", lr=0.1, gater_lr=0.01, momentum=0.9, nesterov=True)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["main"]["lr"] == 0.1 and groups["gater"]["lr"] == 0.01
    assert {id(p) for p in groups["gater"]["params"]} == {id(p) for p in
                                                          model.gater_parameters()}
    assert build_optimizer(model, "adam", lr=1e-3).param_groups[1]["lr"] == 1e-3
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(model, "rmsprop", lr=1.0)


def test_max_norm_caps_each_units_incoming_weights():
    model = GatedNetwork(tiny_config())
    with torch.no_grad():
        for linear in model.weight_matrices():
            linear.weight.mul_(100.0)
    apply_max_norm(model, 2.0)
    for linear in model.weight_matrices():
        norms = linear.weight.detach().norm(dim=1)
        assert (norms <= 2.0 + 1e-5).all()
        assert norms.max() == pytest.approx(2.0, rel=1e-5)


def test_the_usage_balance_scores_an_even_spread_0_and_moves_busy_blocks_down_idle_ones_up():
    high, low = 8.0, -8.0
    threshold = torch.tensor(0.0)
    even = torch.full((8, 8), low)
    for example in range(8):  # each block on for 2 of the 8 examples
        even[example, [example, (example + 1) % 8]] = high
    assert float(usage_balance(even, threshold, 0.25)) == pytest.approx(0.0, abs=0.01)
    collapsed = torch.full((8, 8), low)
    collapsed[:, :2] = high  # the same 2 blocks for every example
    collapsed.requires_grad_(True)
    score = usage_balance(collapsed, threshold, 0.25)
    assert float(score) == pytest.approx(3.0, abs=0.01)
    score.backward()
    grad = collapsed.grad.sum(0)
    assert (grad[:2] > 0).all() and (grad[2:] < 0).all()  # descent: busy down, idle up
