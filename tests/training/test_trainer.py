"""The training loop: every estimator trains and holds its density; calibration; bad runs."""

import math

import pytest
import torch

from models.estimators import ESTIMATORS
from models.gated_network import GatedNetwork
from training.calibrate import calibrate_thresholds, evaluate, threshold_for_density
from training.checkpoint import latest_checkpoint
from training.settings import TrainSettings
from training.trainer import Trainer, TrainingError

from .conftest import make_bundle, tiny_config

QUIET = {"progress": False, "log": lambda *a, **k: None}


@torch.no_grad()
def density_now(trainer, x):
    """What the sparsity penalty holds: the mean probability of being on (KL kind), or the
    fraction of non-zero gates (L1 kind)."""
    model = trainer.model.train()
    out = model(x.expand(model.draws_per_estimate, *x.shape)
                if model.draws_per_estimate > 1 else x, torch.Generator().manual_seed(0))
    trace, est = out.traces[0], model.gated_layers[0].estimator
    if est.sparsity_kind == "kl":
        return float(est.on_probability(trace.logits).mean())
    return float((trace.gates != 0).float().mean())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_trains_and_moves_density_toward_the_target(name, bundle, tmp_path):
    # Start every gater at density ~0.5 (biases shifted up), target 0.1: after 3 epochs of 8
    # steps the realised training density must have covered at least half the gap, and the loss
    # must be finite.
    target = 0.1
    settings = TrainSettings(epochs=3, batch_size=32, optimizer="adam", lr=0.01,
                             sparsity_weight=0.5, l1_initial=0.05, l1_rate=0.1)
    trainer = Trainer(tiny_config(name, density=target), settings, bundle, tmp_path, **QUIET)
    layer = trainer.model.gated_layers[0]
    with torch.no_grad():
        if layer.estimator.sparsity_kind == "kl":
            layer.gater.out.bias.fill_(0.0)
        else:
            layer.gater.out.bias.fill_(0.5)
    x = bundle.train.x
    goal = target
    before = density_now(trainer, x)
    result = trainer.fit()
    after = density_now(trainer, x)
    assert abs(after - goal) < 0.5 * abs(before - goal), (before, after, goal)
    assert all(math.isfinite(row["train_task_loss"]) for row in result.history)


def test_training_learns_the_task(bundle, tmp_path):
    settings = TrainSettings(epochs=8, batch_size=16, optimizer="adam", lr=0.01)
    result = Trainer(tiny_config("st", density=0.5), settings, bundle, tmp_path, **QUIET).fit()
    assert result.final["test_error"] < 0.3  # chance is 2/3


def test_threshold_for_density_is_exact_without_ties():
    values = torch.rand(1000, 20, generator=torch.Generator().manual_seed(0))
    for density in (0.05, 0.1, 0.5, 1.0):
        tau = threshold_for_density(values, density)
        assert float((values > tau).float().mean()) == pytest.approx(density, abs=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
def test_calibration_hits_the_target_on_held_out_data(layers, tmp_path):
    # Thresholds fitted on 2000 validation examples; the density on 2000 other examples must be
    # within 0.02 of the target in every layer.
    data = make_bundle(n_train=256, n_valid=2000, n_test=2000)
    settings = TrainSettings(epochs=2, batch_size=32, optimizer="adam", lr=0.01)
    trainer = Trainer(tiny_config("reinforce", density=0.2, layers=layers), settings, data,
                      tmp_path, **QUIET)
    result = trainer.fit()
    assert result.final["valid_density"] == pytest.approx([0.2] * layers, abs=1e-3)
    assert result.final["test_density"] == pytest.approx([0.2] * layers, abs=0.02)
    model = trainer.model
    thresholds = calibrate_thresholds(model, data.valid.x, 0.1)
    assert thresholds == model.thresholds()
    assert evaluate(model, data.valid.x, data.valid.y)["density"] == pytest.approx(
        [0.1] * layers, abs=1e-3)


def test_metrics_and_checkpoints_are_written_every_epoch(bundle, tmp_path):
    settings = TrainSettings(epochs=3, batch_size=64)
    Trainer(tiny_config(), settings, bundle, tmp_path, **QUIET).fit()
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 4  # header + 3 epochs
    assert latest_checkpoint(tmp_path).name == "epoch-0003"
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch-*"))
    assert kept == ["epoch-0002", "epoch-0003"]


def test_an_existing_run_is_not_overwritten_without_resume(bundle, tmp_path):
    settings = TrainSettings(epochs=1, batch_size=64)
    Trainer(tiny_config(), settings, bundle, tmp_path, **QUIET).fit()
    with pytest.raises(TrainingError, match="pass --resume"):
        Trainer(tiny_config(), settings, bundle, tmp_path, **QUIET).fit()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = make_bundle()
    settings = TrainSettings(epochs=1, batch_size=32)
    Trainer(tiny_config(), settings, data, tmp_path, **QUIET).fit()
    good = latest_checkpoint(tmp_path)
    before = (good / "state.safetensors").read_bytes()
    data.train.x[5, 3] = float("nan")  # poison one training example
    settings = TrainSettings(epochs=2, batch_size=32)
    with pytest.raises(TrainingError, match=r"non-finite loss.*epoch 2.*epoch-0001"):
        Trainer(tiny_config(), settings, data, tmp_path, **QUIET).fit(resume=True)
    assert latest_checkpoint(tmp_path) == good
    assert (good / "state.safetensors").read_bytes() == before


def test_data_that_does_not_fit_the_model_is_refused(tmp_path):
    data = make_bundle(d=7)
    with pytest.raises(TrainingError, match="does not fit the model"):
        Trainer(tiny_config(), TrainSettings(), data, tmp_path, **QUIET)


@pytest.mark.parametrize(("changes", "field"), [
    ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"optimizer": "lbfgs"}, "optimizer"),
    ({"momentum": 1.0}, "momentum"), ({"nesterov": True}, "nesterov"),
    ({"max_norm": float("inf")}, "max_norm"), ({"device": "tpu"}, "device"),
    ({"lr_schedule": "step"}, "lr_schedule"),
])
def test_invalid_training_settings_name_the_field(changes, field):
    from models.gated_config import ConfigError

    with pytest.raises(ConfigError, match=field):
        TrainSettings(**changes)


def test_calibration_survives_saturated_sigmoids(bundle, tmp_path):
    # Gater logits of +-40 make sigm(a) exactly 0 or 1 in float32; thresholds in logit space
    # still separate them, so the density on the same data is exact.
    trainer = Trainer(tiny_config("st", density=0.3), TrainSettings(epochs=1), bundle, tmp_path,
                      **QUIET)
    layer = trainer.model.gated_layers[0]
    with torch.no_grad():
        layer.gater.out.weight.mul_(1000.0)
        logits = layer.gater(bundle.valid.x)
    assert float((torch.sigmoid(logits) == 1).float().mean()) > 0.3  # saturated
    calibrate_thresholds(trainer.model, bundle.valid.x, 0.3)
    density = evaluate(trainer.model, bundle.valid.x, bundle.valid.y)["density"]
    assert density == pytest.approx([0.3], abs=1e-3)


@pytest.mark.parametrize("name", ["st", "sts", "noisy-rectifier", "hard-concrete"])
@torch.no_grad()
def test_a_logit_threshold_is_the_same_rule_as_a_smooth_threshold(name):
    model = GatedNetwork(tiny_config(name)).eval()
    layer = model.gated_layers[0]
    x = torch.rand(64, 12)
    logits = layer.gater(x)
    tau = float(logits.median())
    layer.threshold.fill_(float(layer.estimator.logit_threshold(tau)))
    _, trace = layer(x)
    smooth_tau = float(layer.estimator.smooth(torch.tensor(max(tau, 0.0) if name ==
                                                           "noisy-rectifier" else tau)))
    expected = layer.estimator.deterministic(logits, smooth_tau)
    torch.testing.assert_close(trace.gates, expected)


def test_finetuning_trains_the_main_path_under_frozen_deterministic_gates(bundle, tmp_path):
    settings = TrainSettings(epochs=2, finetune_epochs=2, batch_size=32, optimizer="adam",
                             lr=0.01)
    trainer = Trainer(tiny_config("st", density=0.25), settings, bundle, tmp_path, **QUIET)
    original = trainer._enter_finetuning
    snapshot = {}

    def enter():
        original()
        snapshot["gater"] = [p.detach().clone() for p in trainer.model.gater_parameters()]
        snapshot["main"] = [p.detach().clone() for p in trainer.model.main_parameters()]
        snapshot["thresholds"] = trainer.model.thresholds()

    trainer._enter_finetuning = enter
    result = trainer.fit()
    assert [row["phase"] for row in result.history] == ["train", "train", "finetune",
                                                        "finetune"]
    model = trainer.model
    for before, after in zip(snapshot["gater"], model.gater_parameters(), strict=True):
        assert torch.equal(before, after)
    assert any(not torch.equal(b, a) for b, a in zip(snapshot["main"], model.main_parameters(),
                                                     strict=True))
    assert model.thresholds() == snapshot["thresholds"] == result.final["thresholds"]
    # In training mode the gates are now exactly the evaluation gates.
    x = bundle.valid.x[:16]
    model.train()
    train_gates = model(x, torch.Generator().manual_seed(0)).traces[0].gates
    model.eval()
    torch.testing.assert_close(train_gates, model(x).traces[0].gates)


@pytest.mark.parametrize("name", ["rloo", "disarm", "reinforce", "noisy-rectifier"])
def test_finetuning_works_for_every_kind_of_gater(name, bundle, tmp_path):
    settings = TrainSettings(epochs=1, finetune_epochs=1, batch_size=64)
    result = Trainer(tiny_config(name), settings, bundle, tmp_path, **QUIET).fit()
    assert [row["phase"] for row in result.history] == ["train", "finetune"]
    assert math.isfinite(result.history[-1]["train_task_loss"])
