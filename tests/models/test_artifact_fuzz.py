"""The artifact reader fuzzed with malformed artifacts: whatever is done to a saved artifact's
files, reading it either raises ArtifactError (a ValueError: the one documented refusal) or
returns exactly what the files truly hold. Never another exception, and never weights whose
bytes changed since they were written.

Each example edits a fresh copy of a small artifact saved once per module. Deterministic:
derandomized, no example database.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models.artifact import (
    RESERVED_KEYS,
    ArtifactError,
    read_artifact,
    read_extra_file,
    write_artifact,
)
from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_network import GatedNetwork

from ..tiny_networks import tiny_network as tiny_network_of

FUZZ = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
ONNX = b"\x08\x07model bytes"


def tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"w": torch.randn(4, 3, generator=generator),
            "b": torch.randn(3, generator=generator).to(torch.float16),
            "n": torch.tensor([7, -1], dtype=torch.int64),
            "m": torch.tensor([True, False]),
            "s": torch.tensor(2.5, dtype=torch.float64)}


def tiny_network() -> GatedNetwork:
    return tiny_network_of(
        [{"blocks": 3, "block_size": 2, "gater_hidden": 4, "activation": "relu"},
         {"blocks": 4, "block_size": 1, "gated": False, "activation": "tanh"}],
        input_size=6, num_classes=3, density=0.1, gate_spread=1.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("saved")
    write_artifact(root, "plain", 1, {"metrics": {"note": "x"}}, tensors(),
                   extra_files={"model.onnx": ONNX})
    save_gated_network(tiny_network(), root, "gated", 1)
    return root


def edited(saved: Path, name: str, edit: Callable[[Path], None], check: Callable[[Path], None]):
    """Copy artifact `name` to a fresh folder, `edit` it, then `check` it."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / name
        shutil.copytree(saved / name / "1", folder)
        edit(folder)
        check(folder)


# --- strategies -------------------------------------------------------------------------------

BIG = [10**400, -10**400, 2**64, 2**63, -1, 0, 10**18]
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(BIG), st.floats(),
                   st.text(max_size=8))
keys = st.one_of(st.sampled_from(["file", "sha256", "tensors", "shape", "dtype", "size", "w",
                                  "model.onnx", *RESERVED_KEYS]), st.text(max_size=6))
json_values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=16)


def changed_bytes(data, original: bytes, head: int | None = None) -> bytes:
    """`original` with one change: a flipped byte, a cut, garbage appended or inserted, bytes
    deleted, or something else altogether; always different from `original`. `head`: the
    length of a leading region (safetensors' header) to aim at half of the time."""
    kind = data.draw(st.sampled_from(["flip", "cut", "append", "insert", "delete", "replace"]))
    span = head if head and data.draw(st.booleans()) else len(original)
    at = data.draw(st.integers(0, max(0, span - 1)))
    if kind == "flip":
        mask = data.draw(st.integers(1, 255))
        return original[:at] + bytes([original[at] ^ mask]) + original[at + 1:]
    if kind == "cut":
        return original[:at]
    if kind == "append":
        return original + data.draw(st.binary(min_size=1, max_size=64))
    if kind == "insert":
        return original[:at] + data.draw(st.binary(min_size=1, max_size=16)) + original[at:]
    if kind == "delete":
        return original[:at] + original[at + data.draw(st.integers(1, 16)):]
    other = data.draw(st.binary(max_size=256).filter(lambda b: b != original))
    return other


def header_length(weights: bytes) -> int:
    return 8 + struct.unpack("<Q", weights[:8])[0]


# --- what a successful read must satisfy ------------------------------------------------------


def outcome(refused: bool) -> None:
    event("refused" if refused else "read")  # see --hypothesis-show-statistics


def read_is_true_or_refused(folder: Path, original: dict[str, torch.Tensor] | None) -> bool:
    """read_artifact refuses (True) or returns the truth (False): the config as stored, and
    tensors that are what the weights file holds and the returned manifest describes (and,
    where `original` is given, bit for bit those written)."""
    try:
        config, loaded = read_artifact(folder)
    except ArtifactError:
        return True
    stored = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config == stored
    weights = (folder / "model.safetensors").read_bytes()
    assert config["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    manifest = config["weights"]["tensors"]
    assert set(manifest) == set(loaded)
    for key, tensor in loaded.items():
        assert manifest[key] == {"shape": list(tensor.shape),
                                 "dtype": str(tensor.dtype).removeprefix("torch.")}
    if original is not None:
        assert set(loaded) == set(original)
        for key, tensor in original.items():
            assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    return False


# --- the weights file -------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_changed_weights_are_always_refused(saved, data):
    def edit(folder: Path) -> None:
        path = folder / "model.safetensors"
        original = path.read_bytes()
        path.write_bytes(changed_bytes(data, original, header_length(original)))

    def check(folder: Path) -> None:
        with pytest.raises(ArtifactError):
            read_artifact(folder)

    edited(saved, "plain", edit, check)


def set_sha256(folder: Path, weights: bytes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
    path.write_text(json.dumps(config))


@FUZZ
@given(data=st.data())
def test_changed_weights_with_a_matching_hash_are_refused_or_read_as_they_are(saved, data):
    """As if someone rewrote the recorded sha256 too: the file must still parse as safetensors
    and match the manifest's names, shapes and dtypes, or be refused; never a crash of the
    safetensors parser (a Rust panic is a BaseException, which `except Exception` misses)."""

    def edit(folder: Path) -> None:
        path = folder / "model.safetensors"
        original = path.read_bytes()
        weights = changed_bytes(data, original, header_length(original))
        path.write_bytes(weights)
        set_sha256(folder, weights)

    edited(saved, "plain", edit, lambda folder: outcome(read_is_true_or_refused(folder, None)))


safetensors_headers = st.dictionaries(
    st.sampled_from(["w", "b", "n", "m", "s", "__metadata__", "x"]),
    st.one_of(json_values, st.fixed_dictionaries({
        "dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "BOOL", "U8", "F8_E4M3",
                                  "C64", "", "f32"]),
        "shape": st.lists(st.one_of(st.integers(0, 5), st.sampled_from(BIG)), max_size=3),
        "data_offsets": st.lists(st.one_of(st.integers(0, 64), st.sampled_from(BIG)),
                                 min_size=0, max_size=3)})),
    max_size=5)


@FUZZ
@given(header=safetensors_headers, payload=st.binary(max_size=64),
       declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_a_forged_safetensors_header_is_refused_or_read_as_it_is(saved, header, payload,
                                                                 declared):
    text = json.dumps(header).encode()
    weights = struct.pack("<Q", len(text) if declared is None else declared) + text + payload

    def edit(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(weights)
        set_sha256(folder, weights)

    edited(saved, "plain", edit, lambda folder: outcome(read_is_true_or_refused(folder, None)))


# --- config.json ------------------------------------------------------------------------------

CONFIG_CHANGES = ["bytes", "whole", "key", "drop", "manifest", "entry", "extra_files"]


def change_config(data, config: dict[str, Any]) -> Any:
    change = data.draw(st.sampled_from(CONFIG_CHANGES[1:]))
    value = data.draw(json_values)
    if change == "whole":
        return value
    if change == "key":
        config[data.draw(st.sampled_from([*RESERVED_KEYS, "metrics"]))] = value
    elif change == "drop":
        config.pop(data.draw(st.sampled_from(sorted(config))))
    elif change == "manifest":
        config["weights"][data.draw(st.sampled_from(["file", "sha256", "tensors", "other"]))] \
            = value
    elif change == "entry":
        entry = config["weights"]["tensors"][data.draw(st.sampled_from(sorted(tensors())))]
        entry[data.draw(st.sampled_from(["shape", "dtype"]))] = value
    else:
        extra = config["extra_files"]["model.onnx"]
        extra[data.draw(st.sampled_from(["sha256", "size"]))] = value
    return config


@FUZZ
@given(data=st.data())
def test_a_changed_config_is_refused_or_read_as_it_is(saved, data):
    def edit(folder: Path) -> None:
        path = folder / "config.json"
        if data.draw(st.booleans()):
            path.write_bytes(changed_bytes(data, path.read_bytes()))
        else:  # allow_nan: infinities go in as the tokens the reader must refuse
            path.write_text(json.dumps(change_config(data, json.loads(path.read_text())),
                                       allow_nan=True))

    def check(folder: Path) -> None:
        outcome(read_is_true_or_refused(folder, tensors()))
        try:
            onnx = read_extra_file(folder, "model.onnx")
        except ArtifactError:
            return
        assert onnx == ONNX

    edited(saved, "plain", edit, check)


@FUZZ
@given(data=st.data())
def test_a_changed_extra_file_is_refused(saved, data):
    def edit(folder: Path) -> None:
        path = folder / "model.onnx"
        path.write_bytes(changed_bytes(data, path.read_bytes()))

    def check(folder: Path) -> None:
        with pytest.raises(ArtifactError):
            read_extra_file(folder, "model.onnx")

    edited(saved, "plain", edit, check)


# --- the gated network on top -----------------------------------------------------------------

ARCHITECTURE_FIELDS = ["input_size", "num_classes", "layers", "estimator", "estimator_settings",
                       "target_density"]
LAYER_FIELDS = ["blocks", "block_size", "gater_hidden", "activation", "gated"]
sizes = st.one_of(st.integers(-2, 8), st.sampled_from(BIG), json_values)


@FUZZ
@given(data=st.data())
def test_an_edited_network_config_is_refused_or_loads_what_was_saved(saved, data):
    """config.json is not covered by the weights' hash, so anything in it may have been edited;
    sizes from the config must not make the loader allocate before checking them against the
    weights file (10**18 blocks would)."""

    def edit(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        where = data.draw(st.sampled_from(["kind", "thresholds", "threshold", "architecture",
                                           "field", "layer"]))
        architecture = config["architecture"]
        if where in ("kind", "thresholds", "architecture"):
            config[where] = data.draw(json_values)
        elif where == "threshold":
            config["thresholds"][0] = data.draw(st.one_of(leaves, st.sampled_from(BIG)))
        elif where == "field":
            architecture[data.draw(st.sampled_from(ARCHITECTURE_FIELDS))] = data.draw(sizes)
        else:
            layer = architecture["layers"][data.draw(st.integers(0, 1))]
            layer[data.draw(st.sampled_from(LAYER_FIELDS))] = data.draw(sizes)
        path.write_text(json.dumps(config, allow_nan=True))

    def check(folder: Path) -> None:
        try:
            model, _ = load_gated_network(folder)
        except ArtifactError:
            outcome(refused=True)
            return
        outcome(refused=False)
        state = tiny_network().state_dict()
        loaded = model.state_dict()
        for key in state:
            if not key.endswith("threshold"):
                assert torch.equal(loaded[key], state[key]), key
        assert all(math.isfinite(float(layer.threshold)) for layer in model.gated_layers)

    edited(saved, "gated", edit, check)


@pytest.mark.parametrize("threshold", [None, "0.5", True, [0.5], 10**400, 1e39, -3.5e38])
def test_a_threshold_no_float32_can_hold_is_refused(saved, tmp_path, threshold):
    """Found by the property above: these raised TypeError, ValueError, OverflowError or
    torch's RuntimeError rather than ArtifactError (10**400 is valid JSON, now refused as it is
    parsed; 1e39 is a finite double but not a float32)."""
    folder = tmp_path / "gated"
    shutil.copytree(saved / "gated" / "1", folder)
    config = json.loads((folder / "config.json").read_text())
    config["thresholds"][0] = threshold
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"one threshold per gated layer|within int64"):
        load_gated_network(folder)


@pytest.mark.parametrize(("field", "value"), [("target_density", 10**400),
                                              ("estimator_settings", "ab")])
def test_an_architecture_field_json_allows_but_python_chokes_on_is_refused(saved, tmp_path,
                                                                           field, value):
    folder = tmp_path / "gated"
    shutil.copytree(saved / "gated" / "1", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"][field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"invalid architecture|within int64"):
        load_gated_network(folder)


def test_a_huge_architecture_is_refused_before_anything_is_allocated(saved, tmp_path):
    folder = tmp_path / "gated"
    shutil.copytree(saved / "gated" / "1", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"]["layers"][0].update(blocks=10**9, block_size=10**9)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="weights do not fit the architecture"):
        load_gated_network(folder)


def test_the_saved_artifacts_themselves_read(saved):
    """The fuzzed properties start from artifacts that read."""
    assert not read_is_true_or_refused(saved / "plain" / "1", tensors())
    assert read_extra_file(saved / "plain" / "1", "model.onnx") == ONNX
    load_gated_network(saved / "gated" / "1")
    assert safetensors.torch.load_file(saved / "plain" / "1" / "model.safetensors").keys() \
        == tensors().keys()
