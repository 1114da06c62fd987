"""Learning-rate schedules: the cosine's shape, per-group base rates, and a run that follows it."""

import math

import pytest

from training.optim import lr_factor
from training.settings import TrainSettings
from training.trainer import Trainer

from .conftest import tiny_config

QUIET = {"progress": False, "log": lambda *a, **k: None}


def test_constant_keeps_the_rate_and_cosine_falls_from_one_to_zero():
    assert [lr_factor("constant", t) for t in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0.0) == 1.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.25) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-15)
    rates = [lr_factor("cosine", t / 10) for t in range(11)]
    assert rates == sorted(rates, reverse=True)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("step", 0.5)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_last_step_of_a_run_used_the_scheduled_rate_of_each_group(schedule, bundle,
                                                                       tmp_path):
    settings = TrainSettings(epochs=1, deterministic_epochs=1, batch_size=32, optimizer="adam",
                             lr=0.01, gater_lr=0.002, lr_schedule=schedule)
    trainer = Trainer(tiny_config("st"), settings, bundle, tmp_path, **QUIET)
    trainer.fit()
    batches = math.ceil(len(bundle.train) / settings.batch_size)
    # The last step ran at progress (2 epochs - 1 batch) / 2 epochs.
    factor = lr_factor(schedule, (2 - 1 / batches) / 2)
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["main"] == pytest.approx(0.01 * factor)
    assert rates["gater"] == pytest.approx(0.002 * factor)
    if schedule == "cosine":
        assert rates["main"] < 0.01 * 0.01
