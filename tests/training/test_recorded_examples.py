"""The labelled examples training records into an artifact: from the test split, every class
before any class twice, and carried over to variants of the same network."""

from __future__ import annotations

import numpy as np
import torch

from models.artifact import read_artifact, read_config, read_extra_file
from models.gated_artifact import save_gated_network
from models.gated_config import preset
from models.gated_network import GatedNetwork
from models.labelled_examples import EXAMPLES_FILE, read_examples
from training.data import Split
from training.record_examples_cli import main as record_main
from training.recorded_examples import carried_examples, examples_file, pick_examples
from training.variants_cli import main as variants_main


def split_of(labels: list[int]) -> Split:
    x = torch.arange(len(labels) * 3, dtype=torch.float32).reshape(len(labels), 3)
    return Split(x, torch.tensor(labels, dtype=torch.int64))


def test_classes_are_taken_in_turn_in_the_split_order():
    split = split_of([2, 2, 0, 1, 0, 2, 1])
    assert pick_examples(split, count=5).tolist() == [2, 3, 0, 4, 6]
    assert pick_examples(split, count=100).tolist() == [2, 3, 0, 4, 6, 1, 5]
    assert pick_examples(split_of([1] * 20)).tolist() == list(range(16))


def test_the_examples_file_holds_the_test_inputs_exactly(tmp_path):
    test = split_of([1, 0, 1, 0])
    test = Split(test.x / 7, test.y)  # values with no short decimal form
    torch.manual_seed(0)
    model = GatedNetwork(preset("blocks-digits", input_size=3)).eval()
    folder = save_gated_network(model, tmp_path, "m", 1, extra_files=examples_file(test))
    read = read_examples(folder, read_config(folder), input_size=3, num_classes=10)
    assert read.split == "test" and read.labels.tolist() == [0, 1, 0, 1]  # classes in turn
    np.testing.assert_array_equal(read.inputs, test.x.numpy()[[1, 0, 3, 2]])


def test_variants_carry_the_examples_of_their_network(tmp_path):
    torch.manual_seed(0)
    model = GatedNetwork(preset("blocks", input_size=64))
    digits = split_of(list(range(10)))
    digits = Split(torch.rand(10, 64), digits.y)
    save_gated_network(model, tmp_path, "b", 1, extra_files=examples_file(digits))
    save_gated_network(model, tmp_path, "plain", 1)
    assert carried_examples(tmp_path / "plain" / "1") == {}
    assert variants_main(["--model-repository", str(tmp_path), "--name", "b", "--data",
                          "digits", "--densities", "0.5"]) == 0
    assert carried_examples(tmp_path / "b-d50" / "1") == carried_examples(tmp_path / "b" / "1")
    assert EXAMPLES_FILE in read_config(tmp_path / "b-d50" / "1")["extra_files"]


def test_examples_are_recorded_into_an_artifact_written_without_them(tmp_path, capsys):
    torch.manual_seed(0)
    model = GatedNetwork(preset("blocks-digits", input_size=64))
    folder = write_artifact_without_examples(tmp_path, model)
    args = ["--model-repository", str(tmp_path), "--name", "d", "--if-missing"]
    assert record_main(args) == 0
    config, tensors = read_artifact(folder)
    examples = read_examples(folder, config, input_size=64, num_classes=10)
    assert examples.split == "test" and len(examples) == 16
    assert read_extra_file(folder, "notes.txt") == b"kept"  # the rest is as it was
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    written = (folder / "config.json").read_bytes()
    assert record_main(args) == 0  # already there: nothing rewritten
    assert (folder / "config.json").read_bytes() == written
    assert record_main([*args[:-1], "--data", "fashion-mnist-nowhere"]) == 1
    assert "fashion-mnist-nowhere" in capsys.readouterr().err


def test_examples_of_another_shape_are_refused(tmp_path, capsys):
    model = GatedNetwork(preset("blocks-digits", input_size=12))
    write_artifact_without_examples(tmp_path, model)
    assert record_main(["--model-repository", str(tmp_path), "--name", "d"]) == 1
    assert "64 inputs" in capsys.readouterr().err


def write_artifact_without_examples(root, model):
    folder = save_gated_network(model, root, "d", 1, {"data": {"name": "digits"}},
                                extra_files={"notes.txt": b"kept"})
    assert carried_examples(folder) == {}
    return folder
