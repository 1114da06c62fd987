"""The reproduction's runs: the paper's settings in their commands, one recipe for all, seeds,
and resuming a sweep across sessions (on a tiny budget)."""

import argparse
import json

import pytest

from models.gated_config import preset
from training.reproduce import main, train_command
from training.reproduce_specs import PAPER_RUNS, RUNS, select


def args(**overrides):
    base = {"data": "fashion-mnist", "epochs": 20, "finetune_epochs": 3, "device": "cpu",
            "limit": None}
    return argparse.Namespace(**{**base, **overrides})


def command(name, tmp_path, **overrides):
    spec = next(s for s in RUNS if s.name == name)
    return train_command(spec, 0, args(**overrides), tmp_path / name, None)


def option(cmd, flag):
    return [cmd[i + 1] for i, part in enumerate(cmd) if part == flag]


def test_the_default_sweep_is_the_papers_table_and_the_rest_is_optional():
    assert {s.name for s in select(None, None)} == {
        "noisy-rectifier", "straight-through", "stochastic-times-smooth", "reinforce",
        "rectifier-baseline", "baseline-sigmoid", "dense-200-sigmoid", "dense-2000-relu"}
    beyond = {s.name for s in select(None, "beyond")}
    assert beyond == {"st-sigmoid", "gumbel-st", "hard-concrete", "rloo", "disarm"}
    with pytest.raises(ValueError, match="unknown group"):
        select(None, "nope")


def test_reinforce_runs_with_the_papers_gater_learning_rate_and_baseline_decay(tmp_path):
    cmd = command("reinforce", tmp_path)
    assert option(cmd, "--gater-lr") == ["0.001"]  # appendix A.4; the main path keeps 0.1
    assert "decay=0.9" in option(cmd, "--estimator-setting")
    assert option(command("straight-through", tmp_path), "--gater-lr") == []


def test_sts_runs_with_the_papers_noise_and_the_rectifiers_with_its_l1_schedule(tmp_path):
    settings = dict(s.split("=", 1) for s in option(command("stochastic-times-smooth",
                                                                    tmp_path),
                                                            "--estimator-setting"))
    alpha, beta = json.loads(settings["beta_noise"])
    assert beta == 40.1 and (alpha - 1) / (alpha + beta - 2) == pytest.approx(0.1)
    for name in ("noisy-rectifier", "rectifier-baseline"):
        cmd = command(name, tmp_path)
        assert option(cmd, "--l1-rate") == ["0.1"] and option(cmd, "--l1-tolerance") == ["0.01"]


def test_every_run_trains_the_same_epochs_with_the_same_recipe(tmp_path):
    commands = {s.name: command(s.name, tmp_path) for s in PAPER_RUNS}
    for flag, value in (("--epochs", "20"), ("--finetune-epochs", "3"), ("--batch-size", "32")):
        assert {tuple(option(c, flag)) for c in commands.values()} == {(value,)}, flag
    assert all("--best-epoch-per-phase" in c for c in commands.values())
    assert option(commands["dense-2000-relu"], "--estimator") == []  # dense: no gates


def test_the_papers_baseline_sigmoid_is_a_gated_200_unit_model_without_sparsity(tmp_path):
    spec = next(s for s in PAPER_RUNS if s.name == "baseline-sigmoid")
    config = preset(spec.preset, estimator=spec.estimator, target_density=spec.density)
    (layer,) = config.layers
    assert layer.gated and layer.blocks * layer.block_size == 200 and layer.gater_hidden > 0
    assert config.target_density == 1.0
    cmd = command("baseline-sigmoid", tmp_path)
    assert option(cmd, "--sparsity-weight") == ["0"] and option(cmd, "--gater-bias-init") == ["0"]
    assert spec.deviation  # what the paper leaves open is said


def test_every_deviation_and_setting_is_written_down():
    for spec in PAPER_RUNS:
        assert spec.paper, spec.name
    assert {s.paper_mnist_error for s in PAPER_RUNS if s.paper_model} == {
        1.87, 1.39, 1.96, 1.89, 1.60, 1.92}


TINY = ["run", "--data", "digits", "--limit", "120", "--epochs", "1", "--finetune-epochs", "1",
        "--seeds", "0,1", "--jobs", "1", "--only", "straight-through"]


def test_a_sweep_pauses_resumes_and_skips_what_is_finished(tmp_path):
    work = tmp_path / "work"
    common = [*TINY, "--work", str(work)]
    # A time budget of 0 stops every run after its first epoch: both paused.
    assert main([*common, "--max-seconds", "0"]) == 0
    runs = json.loads((work / "summary.json").read_text())["runs"]["straight-through"]["seeds"]
    assert {r["status"] for r in runs.values()} == {"paused"}
    assert all(len(r["history"]) == 1 for r in runs.values())
    # Without --resume the checkpoints are not silently overwritten.
    assert main(common) == 2
    assert main([*common, "--resume"]) == 0
    for seed in (0, 1):
        log = (work / "straight-through" / f"seed-{seed}" / "train.log").read_text()
        assert "resumed from" in log
    runs = json.loads((work / "summary.json").read_text())["runs"]["straight-through"]["seeds"]
    assert {r["status"] for r in runs.values()} == {"finished"}
    assert set(runs["0"]["final"]["best_epochs"]) == {"train", "finetune"}
    # Finished runs are skipped: nothing trains, nothing changes.
    before = {s: (work / "straight-through" / f"seed-{s}" / "final.json").read_text()
              for s in (0, 1)}
    assert main([*common, "--resume"]) == 0
    assert before == {s: (work / "straight-through" / f"seed-{s}" / "final.json").read_text()
                      for s in (0, 1)}


def test_a_session_budget_starts_nothing_it_cannot_finish_an_epoch_in(tmp_path):
    work = tmp_path / "work"
    assert main([*TINY, "--work", str(work), "--session-seconds", "1"]) == 0
    runs = json.loads((work / "summary.json").read_text())["runs"]["straight-through"]["seeds"]
    assert {r["status"] for r in runs.values()} == {"pending"}
    assert not (work / "straight-through" / "seed-0" / "train.log").exists()
