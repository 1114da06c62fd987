"""sparsegate-train end to end: artifact round trip, resume after SIGKILL, two-process DDP,
and bad input refused before training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.artifact import read_artifact
from models.gated_artifact import load_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from models.labelled_examples import read_examples
from training.data import load_data
from training.train_cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--data", "digits", "--limit", "400", "--no-progress"]
TINY_MODEL = {"input_size": 64, "num_classes": 10, "target_density": 0.25,
              "layers": [{"blocks": 16, "block_size": 8, "gater_hidden": 16,
                          "activation": "relu"}]}


def write_config(tmp_path, estimator="st", **training):
    path = tmp_path / "net.json"
    model = {**TINY_MODEL, "estimator": estimator}
    path.write_text(json.dumps({"model": model, "training": training}))
    return path


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "training.train_cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_trains_and_writes_an_artifact_that_loads_to_identical_outputs(tmp_path):
    config = write_config(tmp_path, "reinforce")
    code = main(["--config", str(config), *SMALL, "--epochs", "2", "--run-dir",
                 str(tmp_path / "run"), "--repository", str(tmp_path / "repo"), "--name", "m"])
    assert code == 0
    folder = tmp_path / "repo" / "m" / "1"
    stored, tensors = read_artifact(folder)
    assert stored["architecture"]["estimator"] == "reinforce"
    assert stored["estimator"]["name"] == "reinforce" and stored["estimator"]["unbiased"]
    assert len(stored["thresholds"]) == 1
    assert stored["data"]["name"] == "digits" and stored["data"]["limit"] == 400
    assert "--epochs 2" in stored["training"]["command"]
    assert {"test_error", "test_density", "valid_error"} <= set(stored["metrics"])
    model, _ = load_gated_network(folder)
    # The trained weights, as the last checkpoint holds them, give the artifact's outputs.
    trained = GatedNetwork(GatedNetworkConfig.from_dict(stored["architecture"])).eval()
    state = load_file(str(tmp_path / "run" / "checkpoints" / "epoch-0002" / "state.safetensors"))
    trained.load_state_dict({k.removeprefix("model/"): v for k, v in state.items()
                             if k.startswith("model/")})
    x = load_data("digits", limit=50).test.x
    assert torch.equal(model(x).logits, trained(x).logits)
    assert set(tensors) == set(model.state_dict())
    # A few labelled examples of the test split ride along, one of each class first.
    examples = read_examples(folder, stored, input_size=64, num_classes=10)
    test = load_data("digits", limit=400).test
    assert examples.split == "test" and len(examples) == 16
    assert sorted(examples.labels[:10].tolist()) == list(range(10))
    assert any(torch.equal(torch.from_numpy(examples.inputs[0]), row) for row in test.x)
    # A second run of the same name becomes version 2.
    assert main(["--config", str(config), *SMALL, "--epochs", "1", "--run-dir",
                 str(tmp_path / "run2"), "--repository", str(tmp_path / "repo"),
                 "--name", "m"]) == 0
    assert (tmp_path / "repo" / "m" / "2" / "config.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "paper", "--density", "0"], "target_density"),
    (["--preset", "paper", "--estimator", "nope"], "estimator must be one of"),
    (["--preset", "paper", "--lr", "-1"], "lr must be"),
    (["--preset", "paper", "--estimator-setting", "sigma", "--estimator", "noisy-rectifier"],
     "KEY=VALUE"),
    (["--preset", "paper", "--data", "/no/such/dir"], "/no/such/dir"),
    (["--preset", "paper", "--name", "../escape"], "name"),
])
def test_bad_input_is_refused_before_training(args, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main([*args, "--run-dir", str(run_dir), "--repository", str(tmp_path / "repo"),
                 "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_bad_config_file_names_the_field(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {**TINY_MODEL, "layers": [{"blocks": -4}]}}))
    assert main(["--config", str(path), *SMALL, "--run-dir", str(tmp_path / "r")]) == 2
    assert "layers[0].blocks" in capsys.readouterr().err


def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path):
    # Uninterrupted reference run, then a run killed with SIGKILL as soon as its first
    # checkpoint exists (so mid-way through epoch 2 or 3), resumed with --resume.
    config = write_config(tmp_path, "reinforce", batch_size=16)
    common = ["--config", str(config), "--data", "digits", "--epochs", "4", "--no-progress",
              "--repository", str(tmp_path / "repo")]
    done = run_cli(*common, "--run-dir", str(tmp_path / "straight"), "--name", "straight")
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "training.train_cli", *common, "--run-dir",
                             str(tmp_path / "killed"), "--name", "killed"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while not pointer.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "repo" / "killed").exists()
    resumed = run_cli(*common, "--run-dir", str(tmp_path / "killed"), "--name", "killed",
                      "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    _, straight = read_artifact(tmp_path / "repo" / "straight" / "1")
    _, killed = read_artifact(tmp_path / "repo" / "killed" / "1")
    assert straight.keys() == killed.keys()
    for key in straight:
        assert torch.equal(straight[key], killed[key]), key


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    # The noise-free rectifier gate makes training deterministic, so 2 processes x 16 examples
    # (gloo all-reduce of gradients) must match 1 process x 32 up to float summation order.
    config = write_config(tmp_path, "rectifier")
    common = ["--config", str(config), "--data", "digits", "--limit", "512", "--epochs", "2",
              "--no-progress", "--repository", str(tmp_path / "repo")]
    single = run_cli(*common, "--batch-size", "32", "--run-dir", str(tmp_path / "one"),
                     "--name", "one")
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "training.train_cli", *common, "--batch-size", "16", "--run-dir",
         str(tmp_path / "two"), "--name", "two"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 process(es)" in ddp.stdout
    _, one = read_artifact(tmp_path / "repo" / "one" / "1")
    two_cfg, two = read_artifact(tmp_path / "repo" / "two" / "1")
    assert two_cfg["training"]["processes"] == 2
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-5, msg=key)


def test_a_preset_trains_with_its_recipe_unless_told_otherwise(tmp_path):
    from training.recipes import RECIPES
    from training.train_cli import build_configs, parse_args

    _, settings = build_configs(parse_args(["--preset", "blocks-digits"]), 64, 10)
    for key, value in RECIPES["blocks-digits"].items():
        assert getattr(settings, key) == value, key
    _, settings = build_configs(parse_args(["--preset", "blocks-digits", "--epochs", "3",
                                            "--lr", "0.05"]), 64, 10)
    assert (settings.epochs, settings.lr) == (3, 0.05)
    assert settings.deterministic_epochs == RECIPES["blocks-digits"]["deterministic_epochs"]
    # A config file's training part is the whole recipe: no preset's is mixed in.
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": TINY_MODEL, "training": {"epochs": 2}}))
    _, settings = build_configs(parse_args(["--config", str(path)]), 64, 10)
    assert (settings.epochs, settings.optimizer, settings.deterministic_epochs) == (2, "sgd", 0)
