"""Distillation: the network learns from a finished run's predictions as well as the labels."""

import json

import pytest
import torch

from training.checkpoint import latest_checkpoint
from training.data import DataBundle, Split
from training.distill import load_teacher, per_example_distillation_loss, soft_targets
from training.settings import ConfigError, TrainSettings
from training.trainer import Trainer, TrainingError

from .conftest import make_bundle, tiny_config

QUIET = {"progress": False, "log": lambda *a, **k: None}
SETTINGS = {"optimizer": "adam", "lr": 1e-2, "batch_size": 32, "max_norm": None}


def finished_run(directory, bundle, config=None, **settings):
    """A trained run directory (config.json and checkpoints), as the training CLI leaves it."""
    config = config or tiny_config("st").every_block_on()
    run = TrainSettings(epochs=0, deterministic_epochs=2, **SETTINGS, **settings)
    Trainer(config, run, bundle, directory, **QUIET).fit()
    (directory / "config.json").write_text(json.dumps({"model": config.to_dict()}))
    return directory


def test_the_loss_is_zero_when_the_network_matches_the_teacher_and_grows_away_from_it():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    same = torch.softmax(logits / 4, dim=-1)
    assert per_example_distillation_loss(logits, same, 4.0).abs().max() < 1e-6
    uniform = torch.full((2, 3), 1 / 3)
    far = per_example_distillation_loss(logits, uniform, 4.0)
    assert (far > 1e-3).all()
    # T^2 scaling: the same logits at twice the temperature give a loss of the same order,
    # where an unscaled KL would shrink by about 4x.
    ratio = per_example_distillation_loss(logits, uniform, 8.0) / far
    assert (ratio > 0.5).all()


def test_the_teachers_targets_are_its_softened_probabilities(bundle, tmp_path):
    run = finished_run(tmp_path / "teacher", bundle)
    teacher = load_teacher(run, torch.device("cpu"))
    targets = soft_targets(teacher, bundle.train.x, 2.0, batch_size=100)
    expected = torch.softmax(teacher(bundle.train.x).logits / 2.0, dim=-1)
    assert targets.shape == (len(bundle.train), 3)
    torch.testing.assert_close(targets, expected)
    assert latest_checkpoint(run) is not None


def test_a_student_pulled_all_the_way_to_the_teacher_learns_its_answers(bundle, tmp_path):
    """A teacher trained on shifted labels (class c called c + 1): with the whole loss on its
    predictions, the student answers as the teacher does, not as the labels say."""
    shifted = DataBundle(bundle.name, bundle.source, bundle.input_size, bundle.num_classes,
                         *(Split(s.x, (s.y + 1) % 3) for s in (bundle.train, bundle.valid,
                                                               bundle.test)))
    run = finished_run(tmp_path / "shifted", shifted)
    teacher = load_teacher(run, torch.device("cpu"))
    teacher_says = teacher(bundle.valid.x).logits.argmax(-1)
    assert float((teacher_says == (bundle.valid.y + 1) % 3).float().mean()) > 0.8

    def agreement(name, **distill):
        settings = TrainSettings(epochs=0, deterministic_epochs=4, **SETTINGS, **distill)
        trainer = Trainer(tiny_config("st"), settings, bundle, tmp_path / name, **QUIET)
        trainer.fit()
        trainer.model.eval()
        said = trainer.model(bundle.valid.x).logits.argmax(-1)
        return float((said == teacher_says).float().mean())

    assert agreement("labels") < 0.3
    assert agreement("distilled", distill_from=str(run), distill_weight=1.0,
                     distill_temperature=1.0) > 0.8


def test_resume_with_a_teacher_ends_with_the_same_weights(bundle, tmp_path):
    run = finished_run(tmp_path / "teacher", bundle)

    def settings(**kw):
        return TrainSettings(epochs=0, deterministic_epochs=3, **SETTINGS,
                             distill_from=str(run), **kw)

    straight = Trainer(tiny_config("st"), settings(), bundle, tmp_path / "a", **QUIET)
    straight.fit()
    for _ in range(2):
        Trainer(tiny_config("st"), settings(max_seconds=0), bundle, tmp_path / "b",
                **QUIET).fit(resume=(tmp_path / "b" / "checkpoints").exists())
    resumed = Trainer(tiny_config("st"), settings(), bundle, tmp_path / "b", **QUIET)
    resumed.fit(resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_teacher_that_does_not_fit_the_data_is_refused(bundle, tmp_path):
    other = make_bundle(d=12, classes=4)
    config = tiny_config("st").every_block_on().replace(num_classes=4)
    run = finished_run(tmp_path / "teacher", other, config=config)
    settings = TrainSettings(epochs=0, deterministic_epochs=1, **SETTINGS, distill_from=str(run))
    with pytest.raises(TrainingError, match="does not fit"):
        Trainer(tiny_config("st"), settings, bundle, tmp_path / "s", **QUIET)


def test_a_directory_without_a_run_is_refused(bundle, tmp_path):
    settings = TrainSettings(epochs=0, deterministic_epochs=1, **SETTINGS,
                             distill_from=str(tmp_path))
    with pytest.raises(ConfigError, match="distill_from"):
        Trainer(tiny_config("st"), settings, bundle, tmp_path / "s", **QUIET)


@pytest.mark.parametrize(("changes", "field"), [
    ({"distill_weight": 1.5}, "distill_weight"), ({"distill_weight": -0.1}, "distill_weight"),
    ({"distill_temperature": 0}, "distill_temperature"), ({"distill_from": 3}, "distill_from")])
def test_bad_distillation_settings_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainSettings(**changes)


def test_every_training_option_reaches_the_settings():
    from training.train_cli import build_configs, parse_args

    args = parse_args(["--preset", "blocks-narrow", "--usage-balance-weight", "0.3",
                       "--distill-from", "runs/x", "--distill-weight", "0.7",
                       "--distill-temperature", "2"])
    _, settings = build_configs(args, 784, 10)
    assert settings.usage_balance_weight == 0.3
    assert (settings.distill_from, settings.distill_weight, settings.distill_temperature) == (
        "runs/x", 0.7, 2.0)
