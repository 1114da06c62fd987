"""The density warm-up: the served density falls from every block on to the target over the
first deterministic epochs, then holds there; the run still ends on the served gates and
resumes to the same weights."""

from itertools import pairwise

import pytest
import torch

from training.density_schedule import scheduled_density, warmup_density
from training.recipes import recipe
from training.settings import ConfigError, TrainSettings
from training.study import plan, variant_training
from training.trainer import Trainer

from .conftest import tiny_config
from .test_served_gate_training import QUIET, SETTINGS, TOLERANCE, served_and_trained_gates


def test_the_density_falls_along_a_cubic_from_every_block_on_to_the_target():
    assert warmup_density(0.1, 0.0) == 1.0
    assert warmup_density(0.1, 0.5) == pytest.approx(0.1 + 0.9 / 8)
    assert warmup_density(0.1, 1.0) == pytest.approx(0.1)
    assert warmup_density(0.1, 7.0) == pytest.approx(0.1)  # past the warm-up: the target
    steps = [warmup_density(0.25, p / 20) for p in range(21)]
    assert all(a >= b for a, b in pairwise(steps))
    assert scheduled_density(0.1, 0, 0.0) == 0.1  # no warm-up: the target from the start
    assert scheduled_density(0.1, 4, 2.0) == pytest.approx(0.1 + 0.9 / 8)
    with pytest.raises(ValueError, match="target density"):
        warmup_density(0.0, 0.5)


@pytest.mark.parametrize("changes", [
    {"epochs": 0, "deterministic_epochs": 3, "density_warmup_epochs": 3},
    {"epochs": 3, "deterministic_epochs": 0, "density_warmup_epochs": 1},
    {"epochs": 0, "deterministic_epochs": 3, "density_warmup_epochs": -1},
])
def test_a_warmup_that_leaves_no_epoch_at_the_target_is_refused(changes):
    with pytest.raises(ConfigError, match="density_warmup_epochs"):
        TrainSettings(**changes)


def test_the_warmup_starts_dense_and_the_run_ends_on_the_served_gates(bundle, tmp_path):
    # Tolerances as in test_served_gate_training: one block of 16 plus 0.01 at the target.
    settings = TrainSettings(epochs=0, deterministic_epochs=5, density_warmup_epochs=2,
                             threshold_momentum=0.3, **SETTINGS)
    trainer = Trainer(tiny_config("st", density=0.25), settings, bundle, tmp_path, **QUIET)
    result = trainer.fit()
    densities = [row["train_density"][0] for row in result.history]
    # Epoch 1 averages the schedule from 1 down to 0.25 + 0.75/8 (about 0.6); without the
    # warm-up it would sit at 0.25.
    assert densities[0] > 0.5, densities
    assert densities[0] > densities[1] > densities[2] - TOLERANCE, densities
    for d in densities[-2:]:
        assert abs(d - 0.25) < TOLERANCE, densities
    assert all(abs(d - 0.25) < TOLERANCE for d in result.final["valid_density"])
    assert all(layer.target_density == 0.25 for layer in trainer.model.gated_layers)
    trained, served = served_and_trained_gates(trainer.model, bundle.valid.x)
    for t, s in zip(trained, served, strict=True):
        assert torch.equal(t, s)


def test_resume_inside_the_warmup_ends_with_the_same_weights(bundle, tmp_path):
    def settings(**kw):
        return TrainSettings(epochs=0, deterministic_epochs=3, density_warmup_epochs=2,
                             lr_schedule="cosine", **SETTINGS, **kw)

    straight = Trainer(tiny_config("st", layers=2), settings(), bundle, tmp_path / "a",
                       **QUIET)
    straight.fit()
    # Stopped after epoch 1, inside the warm-up: the density must pick up from the schedule.
    Trainer(tiny_config("st", layers=2), settings(max_seconds=0), bundle, tmp_path / "b",
            **QUIET).fit()
    resumed = Trainer(tiny_config("st", layers=2), settings(), bundle, tmp_path / "b", **QUIET)
    resumed.fit(resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_anneal_variant_warms_up_over_half_its_served_epochs_and_only_the_gated_runs():
    base = recipe("blocks-256x8")
    t = variant_training(base, "deterministic-anneal")
    assert (t["epochs"], t["deterministic_epochs"], t["density_warmup_epochs"]) == (0, 20, 10)
    TrainSettings(**t)  # a valid recipe
    runs = plan("grid", "blocks-256x8", "fashion-mnist", [0], "deterministic-anneal")
    for run in runs:
        assert ("density_warmup_epochs" in run.training) == (run.kind == "gated"), run.name
    # The networks without gaters train exactly as in the plain grid, so their finished runs
    # are shared with it.
    plain = {r.name: r for r in plan("grid", "blocks-256x8", "fashion-mnist", [0],
                                     "deterministic")}
    for run in runs:
        if run.kind != "gated":
            assert run == plain[run.name]
