"""The registry, and what the public API does with any logits and with bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.estimators import ESTIMATORS, estimate_gradient, exact_gradient, make_estimator

REQUIRED = {
    "reinforce", "reinforce-nobaseline", "reinforce-mean", "st", "st-sigmoid", "sts",
    "noisy-rectifier", "noisy-sigmoid", "dropout-sigmoid", "gumbel-st", "hard-concrete",
    "rloo", "disarm",
}


def smooth_loss(h):
    # Differentiable in h, depends on every unit, non-linear: exercises every backward path.
    weights = torch.linspace(-1.0, 2.0, h.shape[-1], dtype=h.dtype)
    return torch.tanh(h @ weights) + (h - 0.3).square().sum(-1)


def test_registry_holds_every_required_estimator():
    assert set(ESTIMATORS) >= REQUIRED
    for name, cls in ESTIMATORS.items():
        assert cls.name == name
        assert isinstance(cls.unbiased, bool)
        assert cls.summary


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown estimator 'nope'") as info:
        make_estimator("nope", 3)
    for name in REQUIRED:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        estimate_gradient("nope", torch.zeros(2), smooth_loss, 4)


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("reinforce", {"decay": 1.5}, "decay"),
    ("noisy-rectifier", {"sigma": -1.0}, "sigma"),
    ("dropout-sigmoid", {"keep": 0.0}, "keep"),
    ("rloo", {"samples": 1}, "samples"),
    ("sts", {"beta_noise": (0.5, 2)}, "beta_noise"),
    ("hard-concrete", {"gamma": 0.2}, "gamma"),
    ("st", {"temperature": 1.0}, "accepts"),
])
def test_bad_settings_are_refused_with_the_setting_named(name, settings, message):
    with pytest.raises(ValueError, match=message):
        make_estimator(name, 3, **settings)


@pytest.mark.parametrize("num_units", [0, -2, 2.5, True, "4"])
def test_bad_unit_counts_are_refused(num_units):
    with pytest.raises(ValueError, match="num_units"):
        make_estimator("st", num_units)


finite_logits = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False),
    min_size=1, max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(values=finite_logits, dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**31 - 1))
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_gradients_are_finite_and_shaped_like_the_input(name, values, dtype, seed):
    logits = torch.tensor(values, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    grads = estimate_gradient(name, logits, smooth_loss, 3, g)
    assert grads.shape == (3, len(values))
    assert grads.dtype == dtype
    assert torch.isfinite(grads).all(), grads


@settings(max_examples=25, deadline=None)
@given(values=finite_logits)
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_module_outputs_are_finite_in_training_and_evaluation(name, values):
    logits = torch.tensor(values, dtype=torch.float32)
    estimator = make_estimator(name, logits.shape[0])
    group = estimator.draws_per_estimate
    batch = logits.expand(group, 2, -1) if group > 1 else logits.expand(2, -1)
    estimator.train()
    assert torch.isfinite(estimator(batch.clone())).all()
    estimator.eval()
    assert torch.isfinite(estimator(logits.expand(2, -1))).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["reinforce", "st", "disarm"])
def test_non_finite_logits_are_refused(name, bad):
    logits = torch.tensor([0.0, bad, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        estimate_gradient(name, logits, smooth_loss, 4)
    with pytest.raises(ValueError, match="non-finite"):
        exact_gradient(logits, smooth_loss)
    with pytest.raises(ValueError, match="non-finite"):
        make_estimator(name, 3)(logits.expand(2, 2, 3) if name == "disarm" else logits)


@pytest.mark.parametrize(("logits", "message"), [
    (torch.zeros(2, 3), r"shape \[K\]"),
    (torch.tensor(0.5), "last dimension"),
    (torch.zeros(0), "last dimension"),
    (torch.zeros(3, dtype=torch.int64), "floating dtype"),
    (torch.zeros(3, dtype=torch.bool), "floating dtype"),
    ([0.0, 1.0], "torch.Tensor"),
])
def test_bad_logits_are_refused(logits, message):
    with pytest.raises(ValueError, match=message):
        estimate_gradient("reinforce", logits, smooth_loss, 4)
    with pytest.raises(ValueError, match=message):
        exact_gradient(logits, smooth_loss)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_sample_counts_are_refused(n):
    with pytest.raises(ValueError, match="n_samples"):
        estimate_gradient("st", torch.zeros(2), smooth_loss, n)


@pytest.mark.parametrize("name", ["reinforce", "st", "rloo"])
def test_loss_functions_of_the_wrong_shape_are_refused(name):
    with pytest.raises(ValueError, match="loss_fn must map"):
        estimate_gradient(name, torch.zeros(3), lambda h: h, 4)
    with pytest.raises(ValueError, match="loss_fn must map"):
        exact_gradient(torch.zeros(3), lambda h: h.sum())


@pytest.mark.parametrize("name", ["reinforce", "sts"])
def test_non_finite_losses_are_refused(name):
    with pytest.raises(ValueError, match="non-finite losses"):
        estimate_gradient(name, torch.zeros(3), lambda h: h.sum(-1) / 0.0, 4)


def test_pathwise_estimators_need_a_differentiable_loss():
    with pytest.raises(ValueError, match="differentiable in h"):
        estimate_gradient("st", torch.zeros(3), lambda h: h.detach().sum(-1), 4)
    # Score-function estimators never differentiate the loss, so a detached one is fine.
    grads = estimate_gradient("reinforce", torch.zeros(3), lambda h: h.detach().sum(-1), 4)
    assert grads.shape == (4, 3)


def test_multi_draw_estimators_demand_their_group_dimension():
    with pytest.raises(ValueError, match="leading group dimension of size 2"):
        make_estimator("disarm", 3).train()(torch.zeros(5, 3))
