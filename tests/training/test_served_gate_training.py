"""Training on the served gates: the deterministic phase (thresholded forward, straight-through
to the gaters, moving thresholds) ends on exactly the gates the model is served with, holds the
density, keeps the gaters learning, resumes exactly, and gives models the skipping engine runs.
"""

import pytest
import torch

from models.compute import active_blocks_of, compute_reports
from models.gated_network import GatedNetwork, density_threshold
from models.skip.cpu import SkipNetwork
from training.calibrate import evaluate
from training.settings import ConfigError, TrainSettings
from training.trainer import Trainer

from .conftest import tiny_config

QUIET = {"progress": False, "log": lambda *a, **k: None}
TOLERANCE = 1 / 16 + 0.01
SETTINGS = {"batch_size": 32, "optimizer": "adam", "lr": 0.01}


def served_and_trained_gates(model: GatedNetwork, x: torch.Tensor):
    """Gates of a training-mode forward and of the evaluation forward, same parameters."""
    thresholds = model.thresholds()
    model.train()
    with torch.no_grad():
        trained = [t.gates for t in model(x).traces]
    model.set_thresholds(thresholds)  # the training forward stepped them; put them back
    model.eval()
    served = [t.gates for t in model(x).traces]
    return trained, served


@pytest.mark.parametrize("epochs", [0, 2])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_last_epochs_train_on_the_served_gates_and_hold_the_density(epochs, layers, bundle,
                                                                        tmp_path):
    # Tolerance: one block of 16 (0.0625) plus 0.01. On this tiny problem the gaters learn
    # nearly the same logits for every example, so a threshold step turns a block on or off for
    # most examples at once. Without the moving threshold or the centring, densities drift past
    # 0.4. Eight batches an epoch: the threshold's momentum is raised from 0.05 to 0.3 so it
    # settles in so few steps.
    settings = TrainSettings(epochs=epochs, deterministic_epochs=4, threshold_momentum=0.3,
                             **SETTINGS)
    trainer = Trainer(tiny_config("st", density=0.25, layers=layers), settings, bundle,
                      tmp_path, **QUIET)
    result = trainer.fit()
    phases = [row["phase"] for row in result.history]
    assert phases == ["train"] * epochs + ["deterministic"] * 4
    for row in result.history[-2:]:
        assert all(abs(d - 0.25) < TOLERANCE for d in row["train_density"]), row
    assert all(abs(d - 0.25) < TOLERANCE for d in result.final["valid_density"])
    model = trainer.model
    assert model.gate_mode == "deterministic"
    trained, served = served_and_trained_gates(model, bundle.valid.x)
    for t, s in zip(trained, served, strict=True):
        assert torch.equal(t, s)
    # No recalibration after the deterministic phase: the served thresholds are the trained.
    assert result.final["thresholds"] == model.thresholds()
    assert result.final["test_error"] < 0.4  # chance is 2/3


def test_the_gaters_learn_through_the_served_gates(bundle, tmp_path):
    settings = TrainSettings(epochs=0, deterministic_epochs=1, **SETTINGS)
    trainer = Trainer(tiny_config("st", density=0.25), settings, bundle, tmp_path, **QUIET)
    model = trainer.model
    model.set_gate_mode("deterministic")
    model.train()
    out = model(bundle.train.x[:32])
    out.logits.logsumexp(-1).sum().backward()
    gater = model.gated_layers[0].gater.out.weight.grad
    assert gater is not None and float(gater.abs().sum()) > 0
    before = [p.detach().clone() for p in model.gater_parameters()]
    trainer.fit()
    assert any(not torch.equal(b, a) for b, a in zip(before, model.gater_parameters(),
                                                     strict=True))


def test_the_straight_through_gradient_is_centred_per_example(bundle):
    # With the per-example mean removed, the logits' gradient sums to zero over the blocks, so
    # the gaters cannot raise every logit together (which would only drag the moving threshold
    # up behind them).
    model = GatedNetwork(tiny_config("st", density=0.25))
    model.set_gate_mode("deterministic")
    model.train()
    layer = model.gated_layers[0]
    logits = layer.gater(bundle.train.x[:8]).detach().requires_grad_(True)
    gates = layer._learning_served_gates(logits)
    upstream = torch.randn_like(gates)
    (gates * upstream).sum().backward()
    torch.testing.assert_close(logits.grad, upstream - upstream.mean(-1, keepdim=True))
    on = logits.detach() > layer.threshold
    assert torch.equal(gates.detach(), on.float())


def test_the_threshold_moves_toward_the_batch_quantile():
    model = GatedNetwork(tiny_config("st", density=0.25))
    model.set_gate_mode("deterministic", threshold_momentum=0.5)
    layer = model.gated_layers[0]
    layer.threshold.fill_(10.0)
    logits = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    quantile = float(density_threshold(logits, 0.25))
    assert float((logits > quantile).float().mean()) == 0.25
    layer.train()
    layer._learning_served_gates(logits)
    assert float(layer.threshold) == pytest.approx((10.0 + quantile) / 2)


def test_resume_inside_the_deterministic_phase_ends_with_the_same_weights(bundle, tmp_path):
    def settings(**kw):
        return TrainSettings(epochs=1, deterministic_epochs=2, finetune_epochs=1, **SETTINGS,
                             lr_schedule="cosine", **kw)

    straight = Trainer(tiny_config("st", layers=2), settings(), bundle, tmp_path / "a",
                       **QUIET)
    straight.fit()
    # max_seconds=0 stops after every epoch: three stops, each resumed (the second one inside
    # the deterministic phase, whose moving thresholds must come back from the checkpoint; the
    # learning rate's cosine must pick up where it stopped).
    for _ in range(3):
        Trainer(tiny_config("st", layers=2), settings(max_seconds=0), bundle, tmp_path / "b",
                **QUIET).fit(resume=(tmp_path / "b" / "checkpoints").exists())
    resumed = Trainer(tiny_config("st", layers=2), settings(), bundle, tmp_path / "b", **QUIET)
    result = resumed.fit(resume=True)
    assert [row["phase"] for row in result.history] == ["train", "deterministic",
                                                        "deterministic", "finetune"]
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("estimator", ["st", "sts", "reinforce", "noisy-rectifier",
                                       "hard-concrete", "rloo"])
def test_every_kind_of_gater_trains_on_served_gates_and_the_engine_runs_it(estimator, bundle,
                                                                            tmp_path):
    settings = TrainSettings(epochs=1, deterministic_epochs=3, threshold_momentum=0.3,
                             **SETTINGS)
    trainer = Trainer(tiny_config(estimator, density=0.25, layers=2), settings, bundle,
                      tmp_path, **QUIET)
    result = trainer.fit()
    # Held near the target (the ST test above holds it to one block): 24 steps at Adam's 0.01
    # move these gaters' logits faster than a 0.3-momentum threshold follows.
    assert all(abs(d - 0.25) < 0.15 for d in result.final["valid_density"]), result.final
    model = trainer.model.eval()
    x = bundle.test.x[:40]
    reference = model(x)
    skipped = SkipNetwork(model)(x)
    torch.testing.assert_close(skipped.logits, reference.logits, atol=1e-5, rtol=1e-5)
    active = active_blocks_of([t.gates for t in reference.traces])
    assert torch.equal(skipped.active_blocks, active)
    reports = skipped.reports(model)
    assert reports == compute_reports(model.config, active, skipped.computed_blocks)
    # The trainer's test figure is the mean of what the engine reports per example.
    test = evaluate(model, x, bundle.test.y[:40])
    expected = sum(r.executed_macs for r in compute_reports(model.config, active)) / 40
    assert test["executed_macs"] == pytest.approx(expected)


@pytest.mark.parametrize(("changes", "field"), [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 0, "deterministic_epochs": 0, "finetune_epochs": 3}, "epochs"),
    ({"deterministic_epochs": -1}, "deterministic_epochs"),
    ({"threshold_momentum": 0.0}, "threshold_momentum"),
    ({"threshold_momentum": 1.5}, "threshold_momentum"),
])
def test_bad_phase_settings_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainSettings(**changes)


def test_an_unknown_gate_mode_is_refused():
    with pytest.raises(ValueError, match="gate mode"):
        GatedNetwork(tiny_config()).set_gate_mode("sometimes")
