"""An artifact's labelled examples (examples.json): exact round trip, artifacts without them
still valid, and every file that does not fit its network refused, the oversized ones before
they are read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.artifact import ArtifactError, read_config
from models.gated_artifact import save_gated_network
from models.labelled_examples import (
    EXAMPLES_FILE,
    MAX_EXAMPLES,
    encode_examples,
    max_examples_bytes,
    read_examples,
)

from ..tiny_networks import tiny_network

INPUT_SIZE, CLASSES = 12, 4
LAYERS = [{"blocks": 4, "block_size": 2, "activation": "relu"}]


def write(tmp_path, extra_files=None):
    model = tiny_network(LAYERS, input_size=INPUT_SIZE, num_classes=CLASSES)
    return save_gated_network(model, tmp_path, "m", 1, extra_files=extra_files)


def read(folder, **sizes):
    sizes = {"input_size": INPUT_SIZE, "num_classes": CLASSES, **sizes}
    return read_examples(folder, read_config(folder), **sizes)


def raw_file(body: dict) -> dict[str, bytes]:
    return {EXAMPLES_FILE: json.dumps(body).encode()}


def test_examples_come_back_exactly_as_float32(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(5, INPUT_SIZE)).astype(np.float32) / 3
    labels = np.array([0, 3, 1, 1, 2])
    folder = write(tmp_path, {EXAMPLES_FILE: encode_examples(inputs, labels, "test")})
    examples = read(folder)
    assert examples.split == "test" and len(examples) == 5
    np.testing.assert_array_equal(examples.inputs, inputs)
    assert examples.inputs.dtype == np.float32 and examples.labels.tolist() == labels.tolist()


def test_an_artifact_without_examples_has_none(tmp_path):
    assert read(write(tmp_path)) is None


@pytest.mark.parametrize("inputs, labels, split", [
    (np.zeros((MAX_EXAMPLES + 1, 3)), np.zeros(MAX_EXAMPLES + 1, dtype=int), "test"),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), "test"),
    (np.full((1, 3), np.nan), np.zeros(1, dtype=int), "test"),
    (np.zeros((2, 3)), np.zeros(1, dtype=int), "test"),
    (np.zeros((1, 3)), np.array([0.5]), "test"),
    (np.zeros((1, 3)), np.zeros(1, dtype=int), "Test Split"),
])
def test_the_writer_refuses_what_a_reader_would(inputs, labels, split):
    with pytest.raises(ArtifactError):
        encode_examples(inputs, labels, split)


@pytest.mark.parametrize("body, message", [
    ({"split": "test", "labels": [CLASSES], "inputs": [[0.0] * INPUT_SIZE]}, "'labels'"),
    ({"split": "test", "labels": [True], "inputs": [[0.0] * INPUT_SIZE]}, "'labels'"),
    ({"split": "test", "labels": [], "inputs": []}, "'labels'"),
    ({"split": "test", "labels": [0], "inputs": [[0.0] * (INPUT_SIZE - 1)]}, "'inputs'"),
    ({"split": "test", "labels": [0, 1], "inputs": [[0.0] * INPUT_SIZE]}, "'inputs'"),
    ({"split": "test", "labels": [0], "inputs": [[1e39] * INPUT_SIZE]}, "'inputs'"),
    ({"split": "test", "labels": [0], "inputs": [["1"] * INPUT_SIZE]}, "'inputs'"),
    ({"split": "../x", "labels": [0], "inputs": [[0.0] * INPUT_SIZE]}, "'split'"),
    ({"labels": [0], "inputs": [[0.0] * INPUT_SIZE]}, "'split'"),
])
def test_a_file_that_does_not_fit_the_network_is_refused(tmp_path, body, message):
    folder = write(tmp_path, raw_file(body))
    with pytest.raises(ArtifactError, match=message) as refused:
        read(folder)
    assert "examples.json" in str(refused.value)


def test_non_finite_json_and_other_json_are_refused(tmp_path):
    folder = write(tmp_path, {EXAMPLES_FILE: b'{"split": "test", "labels": [0], '
                                             b'"inputs": [[NaN]]}'})
    with pytest.raises(ArtifactError, match="invalid JSON"):
        read(folder)
    folder = write(tmp_path / "list", {EXAMPLES_FILE: b"[1, 2]"})
    with pytest.raises(ArtifactError, match="must be a JSON object"):
        read(folder)


def test_a_file_larger_than_the_network_needs_is_refused_before_it_is_read(tmp_path):
    inputs = np.ones((MAX_EXAMPLES, 200), dtype=np.float32) / 3
    data = encode_examples(inputs, np.zeros(MAX_EXAMPLES, dtype=int), "test")
    assert len(data) > max_examples_bytes(INPUT_SIZE)
    folder = write(tmp_path, {EXAMPLES_FILE: data})
    (folder / EXAMPLES_FILE).write_bytes(b"")  # were it read, the size check would say so
    with pytest.raises(ArtifactError, match=r"size must be a size in bytes up to"):
        read(folder)
    # The bound leaves room for the longest float32 values a network of that size can take.
    longest = np.full((MAX_EXAMPLES, INPUT_SIZE), -1.1754944e-38, dtype=np.float32)
    assert len(encode_examples(longest, np.zeros(MAX_EXAMPLES, dtype=int), "test")) <= \
        max_examples_bytes(INPUT_SIZE)


def test_a_changed_file_is_refused_by_its_hash(tmp_path):
    inputs = np.zeros((1, INPUT_SIZE), dtype=np.float32)
    folder = write(tmp_path, {EXAMPLES_FILE: encode_examples(inputs, [1], "test")})
    data = (folder / EXAMPLES_FILE).read_bytes()
    (folder / EXAMPLES_FILE).write_bytes(data.replace(b"[1]", b"[2]"))
    with pytest.raises(ArtifactError, match="sha256"):
        read(folder)
