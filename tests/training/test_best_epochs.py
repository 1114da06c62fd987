"""Each phase reported at its best validation epoch, the test set scored once for it."""

import torch

from models.gated_network import GatedNetwork
from training.best_epochs import best_epochs
from training.calibrate import evaluate
from training.checkpoint import checkpoint_of, load_checkpoint
from training.settings import TrainSettings
from training.trainer import Trainer

from .conftest import tiny_config

QUIET = {"progress": False, "log": lambda *a, **k: None}


def test_the_best_epoch_is_the_lowest_validation_error_per_phase_earliest_on_ties():
    history = [{"epoch": 1, "phase": "train", "valid_error": 0.3},
               {"epoch": 2, "phase": "train", "valid_error": 0.2},
               {"epoch": 3, "phase": "train", "valid_error": 0.2},
               {"epoch": 4, "phase": "finetune", "valid_error": 0.25},
               {"epoch": 5, "phase": "finetune", "valid_error": 0.1}]
    assert best_epochs(history) == {"train": 2, "finetune": 5}


def settings(**overrides):
    return TrainSettings(**{"epochs": 3, "finetune_epochs": 2, "batch_size": 32,
                            "optimizer": "adam", "lr": 0.01, "best_epoch_per_phase": True,
                            **overrides})


def test_each_phase_is_reported_at_its_best_validation_epoch(bundle, tmp_path):
    result = Trainer(tiny_config("st", density=0.25), settings(), bundle, tmp_path,
                     **QUIET).fit()
    history = result.history
    chosen = result.final["best_epochs"]
    assert {p: c["epoch"] for p, c in chosen.items()} == best_epochs(history)
    for phase, figures in chosen.items():
        # The chosen epoch's checkpoint survived the pruning, and the test figures are its.
        network = GatedNetwork(tiny_config("st", density=0.25))
        load_checkpoint(checkpoint_of(tmp_path, figures["epoch"]), network, None)
        test = evaluate(network, bundle.test.x, bundle.test.y)
        assert figures["test_error"] == test["error"], phase
        row = next(r for r in history if r["epoch"] == figures["epoch"])
        assert figures["valid_error"] == row["valid_error"]
    # The top level and the network returned are the last phase's choice.
    assert result.final["test_error"] == chosen["finetune"]["test_error"]
    assert evaluate(result.model, bundle.test.x, bundle.test.y)["error"] == result.final[
        "test_error"]


def test_an_interrupted_run_resumed_reports_what_an_uninterrupted_one_does(bundle, tmp_path):
    whole = Trainer(tiny_config("st", density=0.25), settings(), bundle, tmp_path / "whole",
                    **QUIET).fit()
    first = Trainer(tiny_config("st", density=0.25), settings(max_seconds=0.0), bundle,
                    tmp_path / "cut", **QUIET).fit()
    assert len(first.history) == 1
    resumed = Trainer(tiny_config("st", density=0.25), settings(), bundle, tmp_path / "cut",
                      **QUIET).fit(resume=True)
    assert resumed.final["best_epochs"] == whole.final["best_epochs"]


def test_the_gaters_can_start_from_a_given_bias(bundle, tmp_path):
    trainer = Trainer(tiny_config("sts", density=0.1), settings(gater_bias_init=0.0), bundle,
                      tmp_path, **QUIET)
    bias = trainer.model.gated_layers[0].gater.out.bias
    assert torch.equal(bias, torch.zeros_like(bias))
