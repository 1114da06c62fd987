"""What each estimator's unit does forward and backward, in training and at evaluation."""

import json

import pytest
import torch

from models.estimators import ESTIMATORS, binary_states, make_estimator
from models.estimators.stochastic_times_smooth import (
    beta_draw,
    beta_quantiles,
    paper_beta_noise,
)

LOGITS = torch.tensor([-2.0, -0.5, 0.0, 0.7, 2.5])
WEIGHTS = torch.tensor([0.3, -1.2, 2.0, 0.5, -0.7])


def sample_with_grad(name, logits=LOGITS, seed=0, **settings):
    estimator = make_estimator(name, logits.shape[-1], **settings).train()
    leaf = logits.clone().requires_grad_(True)
    h = estimator.sample(leaf, torch.Generator().manual_seed(seed))
    (h * WEIGHTS).sum().backward()
    return h.detach(), leaf.grad


def test_straight_through_copies_dl_dh_to_the_logits():
    h, grad = sample_with_grad("st")
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(grad, WEIGHTS)


def test_straight_through_sigmoid_multiplies_by_the_sigmoid_derivative():
    _, grad = sample_with_grad("st-sigmoid")
    p = torch.sigmoid(LOGITS)
    torch.testing.assert_close(grad, WEIGHTS * p * (1 - p))


def test_sts_outputs_zero_or_sqrt_p_and_backprops_through_sqrt_p_only():
    h, grad = sample_with_grad("sts", seed=3)
    root = torch.sigmoid(LOGITS).sqrt()
    on = h > 0
    torch.testing.assert_close(h[on], root[on])
    # d sqrt(sigm(a)) / da = sqrt(p) (1 - p) / 2, times b (held constant) and dL/dh.
    p = torch.sigmoid(LOGITS)
    torch.testing.assert_close(grad, on.float() * WEIGHTS * root * (1 - p) / 2)


def test_sts_mean_output_is_p():
    # E[h] = sqrt(p) * P(b = 1) = p. 200k draws: standard error <= 0.0012; tolerance 0.006.
    est = make_estimator("sts", 5).train()
    draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(1))
    torch.testing.assert_close(draws.mean(0), torch.sigmoid(LOGITS), atol=6e-3, rtol=0)


@pytest.mark.parametrize(("name", "settings"), [("gumbel-st", {}), ("st", {}),
                                                 ("gumbel-st", {"temperature": 0.1})])
def test_hard_forward_draws_are_bernoulli_of_the_sigmoid(name, settings):
    # A binary Concrete thresholded at 1/2 is an exact Bernoulli(sigm(a)) draw. 200k draws,
    # tolerance 0.006 (5 standard errors at p = 1/2).
    est = make_estimator(name, 5, **settings).train()
    draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(2))
    torch.testing.assert_close(draws.mean(0), torch.sigmoid(LOGITS), atol=6e-3, rtol=0)


def test_hard_concrete_evaluation_value_is_the_mean_gate():
    # E[h | a] by quadrature against a 400k-draw Monte Carlo mean; tolerance 0.004.
    est = make_estimator("hard-concrete", 5).train()
    draws = est.sample(LOGITS.expand(400_000, 5), torch.Generator().manual_seed(12))
    torch.testing.assert_close(est.eval_value(LOGITS), draws.mean(0), atol=4e-3, rtol=0)


def test_hard_concrete_has_exact_zeros_at_the_rate_louizos_gives():
    est = make_estimator("hard-concrete", 5).train()
    draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(4))
    assert draws.min() >= 0 and draws.max() <= 1
    nonzero = (draws > 0).float().mean(0)
    torch.testing.assert_close(nonzero, est.probability_nonzero(LOGITS), atol=6e-3, rtol=0)


@pytest.mark.parametrize(("name", "mean_of"), [
    ("dropout-sigmoid", torch.sigmoid),
    ("noisy-sigmoid", None),
    ("noisy-rectifier", None),
])
def test_noise_injection_has_no_noise_at_evaluation(name, mean_of):
    est = make_estimator(name, 5).eval()
    first, second = est(LOGITS), est(LOGITS)
    torch.testing.assert_close(first, second)
    if mean_of is not None:  # dropout keeps the mean: E[sigm(a) m / keep] = sigm(a)
        est.train()
        draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(5))
        torch.testing.assert_close(draws.mean(0), mean_of(LOGITS), atol=6e-3, rtol=0)


def test_noisy_rectifier_gradient_is_plain_backprop_through_the_sample():
    h, grad = sample_with_grad("noisy-rectifier", seed=6)
    torch.testing.assert_close(grad, WEIGHTS * (h > 0).float())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_evaluation_is_a_threshold_on_the_smooth_gate_value(name):
    est = make_estimator(name, 5).eval()
    smooth = est.smooth(LOGITS)
    for tau in (0.0, 0.3, 0.6, float(smooth.max())):
        out = est.deterministic(LOGITS, tau)
        on = smooth > tau
        assert torch.equal(out != 0, on), (tau, out, smooth)
        expected = on.float() if est.binary else torch.where(on, est.eval_value(LOGITS), 0.0)
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(est(LOGITS), est.deterministic(LOGITS, est.default_threshold))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_describe_is_json_and_names_the_estimator(name):
    described = make_estimator(name, 4).describe()
    assert json.loads(json.dumps(described))["name"] == name


def test_reinforce_surrogate_gradient_is_centred_output_times_baselined_loss():
    est = make_estimator("reinforce", 5).train()
    g = torch.Generator().manual_seed(8)
    logits = LOGITS.expand(64, 5).clone().requires_grad_(True)  # (B, K)
    h = est.sample(logits, g)
    assert not h.requires_grad  # the main path never backpropagates into the gater
    losses = (h * WEIGHTS).sum(-1) ** 2  # (B,)
    baseline = est.baseline().float().clone()  # read before the update
    est.surrogate(logits, h, losses).sum().backward()
    expected = (h - torch.sigmoid(LOGITS)) * (losses.unsqueeze(-1) - baseline)
    torch.testing.assert_close(logits.grad, expected)
    assert (est.baseline() != baseline.double()).any()  # and the draw then updated it


def test_reinforce_baseline_converges_to_the_minimum_variance_baseline_of_eq_10():
    # Fixed logits, many draws: the two moving averages converge to
    # E[(h_i - p_i)^2 L] / E[(h_i - p_i)^2], computed here exactly by enumeration.
    # Tolerance 3 % relative (decay 0.999 averages ~1000 batches of 64).
    est = make_estimator("reinforce", 5, decay=0.999).train()
    g = torch.Generator().manual_seed(9)

    def loss(h):
        return ((h * WEIGHTS).sum(-1) - 0.5) ** 2

    batch = LOGITS.expand(64, 5)
    for _ in range(6000):
        h = est.sample(batch, g)
        est.coefficients(batch, h, loss(h))
    states = binary_states(5, torch.float32)
    p = torch.sigmoid(LOGITS)
    prob = (states * p + (1 - states) * (1 - p)).prod(-1)  # (32,)
    weight = (states - p).square()  # (32, 5)
    expected = (prob[:, None] * weight * loss(states)[:, None]).sum(0) / (
        prob[:, None] * weight).sum(0)
    torch.testing.assert_close(est.baseline().float(), expected, rtol=0.03, atol=0)


def test_reinforce_baseline_survives_a_state_dict_round_trip():
    est = make_estimator("reinforce", 5).train()
    h = est.sample(LOGITS.expand(8, 5))
    est.coefficients(LOGITS.expand(8, 5), h, h.sum(-1))
    clone = make_estimator("reinforce", 5)
    clone.load_state_dict(est.state_dict())
    torch.testing.assert_close(clone.baseline(), est.baseline())


def test_disarm_draws_are_antithetic():
    est = make_estimator("disarm", 5).train()
    h = est.sample(LOGITS.expand(2, 100_000, 5), torch.Generator().manual_seed(10))
    # b = 1[u < p] and b~ = 1[1 - u < p]: both Bernoulli(p), never both off when p > 1/2.
    torch.testing.assert_close(h.mean(1), torch.sigmoid(LOGITS).expand(2, 5), atol=8e-3, rtol=0)
    positive = LOGITS > 0
    assert ((h[0] + h[1])[:, positive] >= 1).all()


@pytest.mark.parametrize(("alpha", "beta"), [(1, 1), (2, 2), (2, 5), (5.344, 40.1), (1.5, 1.0)])
def test_beta_draws_have_the_beta_moments(alpha, beta):
    # 200k draws; the mean's standard error is below 0.0007, tolerance 0.003 (the variance's
    # 0.002 also covers the clipped 1 / 8194 tails).
    draws = beta_draw(torch.Size([200_000]), beta_quantiles(alpha, beta), torch.zeros(()),
                      torch.Generator().manual_seed(11))
    n = alpha + beta
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1
    assert float(draws.mean()) == pytest.approx(alpha / n, abs=3e-3)
    assert float(draws.var()) == pytest.approx(alpha * beta / (n * n * (n + 1)), abs=2e-3)


def test_the_papers_sts_noise_has_its_mode_at_the_target_and_the_papers_scale():
    settings = paper_beta_noise(0.1)
    alpha, beta = settings["beta_noise"]
    assert beta == 40.1
    assert (alpha - 1) / (alpha + beta - 2) == pytest.approx(0.1)  # the mode
    # |logit(0.1 ** 2)| = log(99): where sqrt(sigm(a)) is the target.
    assert settings["beta_noise_scale"] == pytest.approx(4.59512, abs=1e-5)


def test_sts_is_non_zero_with_probability_sqrt_p_which_the_penalty_holds():
    # P(h != 0) = sqrt(sigm(a)): what on_probability returns. 200k draws, tolerance 0.006.
    est = make_estimator("sts", 5).train()
    draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(4))
    torch.testing.assert_close((draws != 0).float().mean(0), est.on_probability(LOGITS),
                               atol=6e-3, rtol=0)


def test_sts_noise_is_centred_so_the_mean_output_moves_little():
    # The noise (B - E[B]) * scale has mean zero: E[h] stays near sigm(a) (not equal: h is
    # not linear in a). The paper's uncentred B - 1/2 would move it far (mean -1.76 logits).
    est = make_estimator("sts", 5, **paper_beta_noise(0.1)).train()
    draws = est.sample(LOGITS.expand(200_000, 5), torch.Generator().manual_seed(5))
    torch.testing.assert_close(draws.mean(0), torch.sigmoid(LOGITS), atol=0.02, rtol=0)


def test_sts_beta_noise_changes_the_draws_and_keeps_them_finite():
    plain = make_estimator("sts", 5).train().sample(LOGITS, torch.Generator().manual_seed(0))
    noisy = make_estimator("sts", 5, beta_noise=(2.5, 2), beta_noise_scale=4.0).train().sample(
        LOGITS.expand(1000, 5), torch.Generator().manual_seed(0))
    assert torch.isfinite(noisy).all()
    assert noisy.unique().numel() > plain.unique().numel()
