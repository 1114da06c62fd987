"""The model artifact: round trip, self-description, atomic writes, and every refusal."""

import ast
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import models.artifact as artifact
from models.artifact import (
    FORMAT_VERSION,
    ArtifactError,
    artifact_path,
    list_versions,
    read_artifact,
    read_config,
    read_extra_file,
    validate_name,
    validate_version,
    write_artifact,
)

CONFIG = {
    "architecture": {"input_size": 4, "layers": [{"blocks": 3, "block_size": 2}]},
    "estimator": {"name": "st", "settings": {}},
    "thresholds": [0.25, 0.5],
    "metrics": {"test_error": 0.0139, "note": "ünïcode ok"},
    "empty": None,
    "flag": True,
}


def make_tensors():
    generator = torch.Generator().manual_seed(0)
    transposed = torch.randn(3, 5, generator=generator).t()  # non-contiguous
    return {
        "layers.0.main.weight": torch.randn(6, 4, generator=generator),
        "layers.0.main.bias": torch.randn(6, generator=generator, dtype=torch.float16),
        "layers.0.gater.weight": torch.randn(3, 4, generator=generator).to(torch.bfloat16),
        "layers.0.gate.baseline_numerator": torch.randn(3, dtype=torch.float64),
        "transposed": transposed,
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 3),
        "steps": torch.tensor([7], dtype=torch.int64),
    }


def write(repo, name="mnist", version=1, config=CONFIG, tensors=None, **kwargs):
    return write_artifact(repo, name, version, config,
                          make_tensors() if tensors is None else tensors, **kwargs)


def entries(path: Path) -> list[str]:
    return sorted(child.name for child in path.iterdir())


def edit_config(folder: Path, change) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


# --- round trip and layout --------------------------------------------------------------------


def test_round_trip_gives_identical_tensors_and_config(tmp_path):
    tensors = make_tensors()
    folder = write(tmp_path, tensors=tensors)
    config, loaded = read_artifact(folder)
    assert set(loaded) == set(tensors)
    for key, tensor in tensors.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key
        assert loaded[key].device.type == "cpu"
    stored = {key: value for key, value in config.items() if key not in artifact.RESERVED_KEYS}
    assert stored == CONFIG


def test_parameters_with_grad_and_shared_storage_are_saved(tmp_path):
    weight = torch.nn.Parameter(torch.randn(4, 4))
    tensors = {"a": weight, "tied": weight, "row": weight[1]}  # shared memory, a view
    _, loaded = read_artifact(write(tmp_path, tensors=tensors))
    for key in tensors:
        assert torch.equal(loaded[key], tensors[key].detach())


def test_layout_and_self_description(tmp_path):
    folder = write(tmp_path / "repo", "mnist", "0003", extra_files={"model.onnx": b"onnx bytes"})
    assert folder == tmp_path / "repo" / "mnist" / "3" == artifact_path(tmp_path / "repo",
                                                                       "mnist", 3)
    assert entries(folder) == ["config.json", "model.onnx", "model.safetensors"]
    assert entries(folder.parent) == ["3"]  # no temporary folder left behind
    text = (folder / "config.json").read_text()
    config = json.loads(text)
    assert text == json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
    assert config["format_version"] == FORMAT_VERSION
    assert config["name"] == "mnist"
    assert config["version"] == "3"
    weights = config["weights"]
    assert weights["file"] == "model.safetensors"
    assert weights["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()
                                               ).hexdigest()
    assert weights["tensors"]["layers.0.main.weight"] == {"shape": [6, 4], "dtype": "float32"}
    assert weights["tensors"]["layers.0.main.bias"] == {"shape": [6], "dtype": "float16"}
    assert weights["tensors"]["layers.0.gater.weight"]["dtype"] == "bfloat16"
    assert weights["tensors"]["scalar"] == {"shape": [], "dtype": "float32"}
    assert config["extra_files"]["model.onnx"] == {
        "sha256": hashlib.sha256(b"onnx bytes").hexdigest(), "size": 10}
    assert (folder / "model.onnx").read_bytes() == b"onnx bytes"
    assert read_extra_file(folder, "model.onnx") == b"onnx bytes"
    with safe_open(folder / "model.safetensors", framework="pt") as file:
        assert file.metadata() == {"format": "pt"}


def test_the_folder_describes_itself_nothing_is_inferred_from_its_path(tmp_path):
    folder = write(tmp_path, "mnist", 2)
    moved = tmp_path / "elsewhere" / "other-name" / "99"
    shutil.copytree(folder, moved)
    config, _ = read_artifact(moved)
    assert (config["name"], config["version"]) == ("mnist", "2")
    assert config == json.loads((moved / "config.json").read_text())  # as stored


def test_reserved_keys_are_set_by_the_writer_so_a_read_config_can_be_written_again(tmp_path):
    config, tensors = read_artifact(write(tmp_path, "mnist", 1))
    config["weights"] = "stale"
    again, _ = read_artifact(write_artifact(tmp_path, "copy", 2, config, tensors))
    assert (again["name"], again["version"]) == ("copy", "2")
    assert again["weights"]["tensors"] == read_config(tmp_path / "mnist" / "1")["weights"][
        "tensors"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_read_onto_a_gpu(tmp_path):
    tensors = {key: value.cuda() for key, value in make_tensors().items()}
    _, loaded = read_artifact(write(tmp_path, tensors=tensors), device="cuda")
    for key, tensor in tensors.items():
        assert loaded[key].is_cuda and torch.equal(loaded[key], tensor)


# --- atomic writes ----------------------------------------------------------------------------


class Crash(Exception):
    pass


def crash(*args, **kwargs):
    raise Crash("simulated crash")


def test_a_crash_while_saving_weights_leaves_nothing(tmp_path, monkeypatch):
    real_save = safetensors.torch.save_file

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)  # half the work done: a weights file exists in the temp
        raise Crash("simulated crash after writing the weights")

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_crash)
    with pytest.raises(Crash):
        write(tmp_path, "mnist", 1)
    assert entries(tmp_path / "mnist") == []
    assert list_versions(tmp_path, "mnist") == []


def test_a_crash_at_the_final_rename_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact.os, "rename", crash)
    with pytest.raises(Crash):
        write(tmp_path, "mnist", 1)
    assert entries(tmp_path / "mnist") == []


def test_an_interrupt_while_writing_also_cleans_up(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact, "_fsync_dir", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, "mnist", 1)
    assert entries(tmp_path / "mnist") == []


def test_a_write_deletes_temporaries_left_by_killed_writes_not_live_ones(tmp_path):
    model_dir = tmp_path / "mnist"
    stale, live, aside = (model_dir / ".tmp-1-dead", model_dir / ".tmp-2-live",
                          model_dir / ".old-3-kept")
    for folder in (stale, live, aside):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"partial")
    old = time.time() - artifact.STALE_TEMPORARY_SECONDS - 60
    for folder in (stale, aside):
        os.utime(folder, (old, old))
    write(tmp_path, "mnist", 4)
    # The killed write's folder is gone; one that may be in progress, and an overwrite's
    # aside folder (possibly a version's only copy), stay.
    assert entries(model_dir) == [".old-3-kept", ".tmp-2-live", "4"]


def test_existing_version_is_refused_without_overwrite_and_stays_intact(tmp_path):
    folder = write(tmp_path, "mnist", 1)
    before = {name: (folder / name).read_bytes() for name in entries(folder)}
    with pytest.raises(ArtifactError, match=r"already exists.*overwrite=True"):
        write(tmp_path, "mnist", 1, config={"other": 1})
    assert {name: (folder / name).read_bytes() for name in entries(folder)} == before
    assert entries(tmp_path / "mnist") == ["1"]


@pytest.mark.parametrize("failure", ["save", "rename-in"])
def test_a_failed_overwrite_leaves_the_old_version_intact(tmp_path, monkeypatch, failure):
    folder = write(tmp_path, "mnist", 1)
    before = {name: (folder / name).read_bytes() for name in entries(folder)}
    if failure == "save":
        monkeypatch.setattr(safetensors.torch, "save_file", crash)
    else:
        real_rename, calls = os.rename, []

        def fail_second_rename(source, target):
            calls.append((source, target))
            if len(calls) == 2:  # 1: old folder aside; 2: new folder in
                raise Crash("simulated crash moving the new folder in")
            real_rename(source, target)

        monkeypatch.setattr(artifact.os, "rename", fail_second_rename)
        # the two-rename path of systems that cannot swap folders in one step
        monkeypatch.setattr(artifact, "_exchange", lambda first, second: False)
    with pytest.raises(Crash):
        write(tmp_path, "mnist", 1, config={"new": True}, overwrite=True)
    monkeypatch.undo()
    assert entries(tmp_path / "mnist") == ["1"]  # no temp, no aside folder
    assert {name: (folder / name).read_bytes() for name in entries(folder)} == before
    config, _ = read_artifact(folder)
    assert config["metrics"] == CONFIG["metrics"]


def test_overwrite_replaces_the_version(tmp_path):
    write(tmp_path, "mnist", 1, extra_files={"model.onnx": b"old"})
    new_tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    folder = write(tmp_path, "mnist", 1, config={"new": True}, tensors=new_tensors,
                   overwrite=True)
    config, loaded = read_artifact(folder)
    assert config["new"] is True and "metrics" not in config
    assert set(loaded) == {"w"} and torch.equal(loaded["w"], new_tensors["w"])
    assert entries(folder) == ["config.json", "model.safetensors"]  # old extra file gone too
    assert entries(tmp_path / "mnist") == ["1"]


@pytest.mark.parametrize("swap", [True, False])
def test_overwrite_swaps_in_one_step_where_it_can(tmp_path, monkeypatch, swap):
    write(tmp_path, "mnist", 1)
    renames = []
    monkeypatch.setattr(artifact.os, "rename", lambda *paths: renames.append(paths) or
                        os.replace(*paths))
    real_exchange, swapped = artifact._exchange, []

    def exchange(first, second):
        swapped.append(swap and real_exchange(first, second))
        return swapped[-1]

    monkeypatch.setattr(artifact, "_exchange", exchange)
    folder = write(tmp_path, "mnist", 1, config={"new": True}, overwrite=True)
    assert read_config(folder)["new"] is True
    assert entries(tmp_path / "mnist") == ["1"]
    # Swapped (Linux, on filesystems that can): no moment without a version folder.
    assert len(renames) == (0 if swapped == [True] else 2)
    if swap and artifact._renameat2() is not None and os.uname().sysname == "Linux":
        assert swapped == [True], "renameat2(RENAME_EXCHANGE) refused on this filesystem"


def test_overwrite_of_a_version_that_does_not_exist_just_writes_it(tmp_path):
    folder = write(tmp_path, "mnist", 4, overwrite=True)
    assert read_config(folder)["version"] == "4"


# --- names and versions -----------------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", "", "..", ".", ".hidden", "a\\b", "/abs", "x" * 129, "name\n",
             " name", "na me", "é", "-dash", None, 3, b"bytes"]
BAD_VERSIONS = [0, -1, "1.5", "abc", "", "0", "-1", "+1", " 1", "1\n", "1e3", "../1", 1.0, 1.5,
                True, None, "١", "²", 10**18, "9" * 19]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ArtifactError, match="model name"):
        validate_name(name)
    with pytest.raises(ArtifactError):
        artifact_path(tmp_path, name, 1)
    with pytest.raises(ArtifactError):
        write(tmp_path, name, 1)
    with pytest.raises(ArtifactError):
        list_versions(tmp_path, name)
    assert entries(tmp_path) == []


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_bad_versions_are_refused(tmp_path, version):
    with pytest.raises(ArtifactError, match="model version"):
        validate_version(version)
    with pytest.raises(ArtifactError):
        artifact_path(tmp_path, "mnist", version)
    with pytest.raises(ArtifactError):
        write(tmp_path, "mnist", version)
    assert entries(tmp_path) == []


@pytest.mark.parametrize(("version", "folder"), [(1, "1"), ("1", "1"), ("007", "7"),
                                                 (10**18 - 1, str(10**18 - 1))])
def test_good_versions_are_stored_as_the_string_of_the_int(version, folder):
    assert validate_version(version) == folder


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=140), version=st.one_of(st.integers(), st.text(max_size=20)))
def test_any_accepted_request_stays_inside_the_repository(name, version):
    repository = Path("/srv/models")
    try:
        path = artifact_path(repository, name, version)
    except ArtifactError:
        return
    # one plain component each, neither of them a dot-folder, so the path cannot escape
    assert path.parent.parent == repository
    assert os.path.normpath(path) == str(path)
    assert not path.parent.name.startswith(".") and path.name.isascii()
    assert path.name.isdigit() and int(path.name) > 0


# --- list_versions ----------------------------------------------------------------------------


def test_list_versions_is_numeric_and_ignores_temporary_and_incomplete_folders(tmp_path):
    for version in (10, 2, 1):
        write(tmp_path, "mnist", version)
    model_dir = tmp_path / "mnist"
    temporary = model_dir / ".tmp-3-abcdef"
    shutil.copytree(model_dir / "1", temporary)  # a write in progress, complete or not
    (model_dir / "4").mkdir()  # no config.json
    (model_dir / "5").write_text("a file, not a folder")
    shutil.copytree(model_dir / "1", model_dir / "06")  # not a canonical version name
    shutil.copytree(model_dir / "1", model_dir / "latest")
    assert list_versions(tmp_path, "mnist") == ["1", "2", "10"]
    assert list_versions(tmp_path, "unknown") == []


# --- corrupt weights and tampered configs -----------------------------------------------------


def test_flipped_bytes_in_the_weights_are_refused(tmp_path):
    folder = write(tmp_path)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor data, so the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256 .* does not match"):
        read_artifact(folder)


@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_truncated_weights_are_refused(tmp_path, keep):
    folder = write(tmp_path)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256"):
        read_artifact(folder)


@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_unparseable_weights_are_refused_even_when_the_hash_was_updated(tmp_path, keep):
    folder = write(tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()[:keep]
    path.write_bytes(data)
    edit_config(folder, lambda config: config["weights"].update(
        sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: not a readable safetensors"):
        read_artifact(folder)


def test_missing_weights_file_is_refused(tmp_path):
    folder = write(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"model\.safetensors: weights file is missing"):
        read_artifact(folder)


def tamper_shape(config):
    config["weights"]["tensors"]["layers.0.main.weight"]["shape"] = [4, 6]


def tamper_dtype(config):
    config["weights"]["tensors"]["layers.0.main.weight"]["dtype"] = "float16"


def tamper_missing(config):
    config["weights"]["tensors"]["ghost"] = {"shape": [1], "dtype": "float32"}


def tamper_unexpected(config):
    del config["weights"]["tensors"]["scalar"]


def tamper_hash(config):
    config["weights"]["sha256"] = "0" * 64


@pytest.mark.parametrize(("tamper", "message"), [
    (tamper_shape, r"'layers\.0\.main\.weight' has shape \[6, 4\], the manifest says \[4, 6\]"),
    (tamper_dtype, r"'layers\.0\.main\.weight' has dtype float32, the manifest says float16"),
    (tamper_missing, r"'ghost' listed in the manifest are missing"),
    (tamper_unexpected, r"'scalar' in the weights file are not in the manifest"),
    (tamper_hash, r"sha256 .* does not match 0{64}"),
])
def test_a_tampered_manifest_is_refused(tmp_path, tamper, message):
    folder = write(tmp_path)
    edit_config(folder, tamper)
    with pytest.raises(ArtifactError, match=message):
        read_artifact(folder)


def test_weights_swapped_for_another_valid_file_are_refused(tmp_path):
    folder = write(tmp_path)
    safetensors.torch.save_file({"other": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ArtifactError, match="sha256"):
        read_artifact(folder)


@pytest.mark.parametrize("weights", [
    None, "x", {"file": "../model.safetensors", "sha256": "0" * 64, "tensors": {}},
    {"file": "model.safetensors", "sha256": "ABC", "tensors": {}},
    {"file": "model.safetensors", "sha256": "0" * 64, "tensors": []},
    {"file": "model.safetensors", "sha256": "0" * 64, "tensors": {"w": {"shape": [-1],
                                                                     "dtype": "float32"}}},
    {"file": "model.safetensors", "sha256": "0" * 64, "tensors": {"w": {"shape": [1],
                                                                     "dtype": "complex64"}}},
])
def test_a_malformed_manifest_is_refused(tmp_path, weights):
    folder = write(tmp_path)
    edit_config(folder, lambda config: config.update(weights=weights))
    with pytest.raises(ArtifactError, match=r"config\.json: .*weights"):
        read_artifact(folder)


# --- refused configs --------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    {"threshold": float("nan")}, {"threshold": float("inf")},
    {"nested": {"values": [1.0, float("-inf")]}},
])
def test_non_finite_numbers_in_the_config_are_refused(tmp_path, config):
    with pytest.raises(ArtifactError, match="only finite numbers"):
        write(tmp_path, config=config)
    assert not (tmp_path / "mnist" / "1").exists()


@pytest.mark.parametrize(("config", "message"), [
    ({"threshold": torch.tensor(0.5)}, "not JSON-serialisable"),
    ({"settings": {1: "a"}}, "non-string key 1"),
    (["not", "a", "dict"], "config must be a dict"),
])
def test_configs_json_cannot_hold_are_refused(tmp_path, config, message):
    with pytest.raises(ArtifactError, match=message):
        write(tmp_path, config=config)
    assert not (tmp_path / "mnist" / "1").exists()


@pytest.mark.parametrize(("tensors", "message"), [
    ({"w": [1.0, 2.0]}, "not a torch.Tensor"),
    ({"": torch.zeros(1)}, "non-empty strings"),
    ({3: torch.zeros(1)}, "non-empty strings"),
    ({"w": torch.zeros(1, dtype=torch.complex64)}, "dtype complex64"),
    ({"w": torch.zeros(2, 2).to_sparse()}, "dense tensor"),
    ({"w": torch.zeros(2, device="meta")}, "dense tensor"),
])
def test_bad_tensors_are_refused(tmp_path, tensors, message):
    with pytest.raises(ArtifactError, match=message):
        write(tmp_path, tensors=tensors)
    assert not (tmp_path / "mnist" / "1").exists()


@pytest.mark.parametrize("extra", [{"../evil": b"x"}, {"a/b": b"x"}, {"config.json": b"{}"},
                                   {"model.safetensors": b""}, {".hidden": b"x"},
                                   {"model.onnx": "text, not bytes"}])
def test_bad_extra_files_are_refused(tmp_path, extra):
    with pytest.raises(ArtifactError, match="extra file"):
        write(tmp_path, extra_files=extra)
    assert not (tmp_path / "mnist" / "1").exists()


def test_a_changed_extra_file_is_refused(tmp_path):
    folder = write(tmp_path, extra_files={"model.onnx": b"onnx"})
    (folder / "model.onnx").write_bytes(b"evil")
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256"):
        read_extra_file(folder, "model.onnx")
    with pytest.raises(ArtifactError, match=r"no extra file 'other\.bin'"):
        read_extra_file(folder, "other.bin")


# --- refused folders and config files ---------------------------------------------------------


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"nowhere: artifact folder does not exist"):
        read_artifact(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not a folder"):
        read_artifact(tmp_path / "file")


def test_a_missing_config_is_refused(tmp_path):
    folder = write(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"config\.json: config file is missing"):
        read_artifact(folder)


@pytest.mark.parametrize(("text", "message"), [
    ('{\n  "a": 1,\n}', r"invalid JSON at line 3 column 1 \(character 12\)"),
    ("", r"invalid JSON at line 1 column 1"),
    ('{"a": NaN}', r"invalid JSON: NaN is not allowed"),
    ("[1, 2]", "config must be a JSON object, got list"),
])
def test_an_invalid_json_config_is_refused_with_the_position(tmp_path, text, message):
    folder = write(tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(ArtifactError, match=r"config\.json: " + message):
        read_artifact(folder)


def test_a_config_that_is_not_utf8_is_refused(tmp_path):
    folder = write(tmp_path)
    (folder / "config.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ArtifactError, match="not UTF-8"):
        read_artifact(folder)


@pytest.mark.parametrize(("change", "message"), [
    (lambda config: config.pop("format_version"), "no format_version"),
    (lambda config: config.update(format_version=FORMAT_VERSION + 1),
     f"format_version {FORMAT_VERSION + 1} is newer than this reader supports"),
    (lambda config: config.update(format_version="1"), "must be a positive integer"),
    (lambda config: config.update(format_version=0), "must be a positive integer"),
    (lambda config: config.update(format_version=True), "must be a positive integer"),
    (lambda config: config.pop("name"), "no 'name'"),
    (lambda config: config.update(name="../x"), "invalid model name"),
    (lambda config: config.update(version="1.5"), "model version"),
])
def test_bad_self_description_is_refused(tmp_path, change, message):
    folder = write(tmp_path)
    edit_config(folder, change)
    with pytest.raises(ArtifactError, match=message):
        read_artifact(folder)


def test_every_refusal_is_a_value_error():
    assert issubclass(ArtifactError, ValueError)


# --- no code execution on read ----------------------------------------------------------------


def test_the_module_never_unpickles():
    source = Path(artifact.__file__).read_text()
    # safetensors.torch.load parses raw tensor bytes; torch's own load unpickles
    assert re.search(r"(?<!safetensors\.)torch\.load", source) is None
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [alias.name for alias in node.names]
        else:
            names = []
        for imported in names:
            assert not any(bad in imported for bad in ("pickle", "dill", "joblib", "marshal")), \
                imported
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("Unpickler", "loads") or ast.unparse(node) == "json.loads"
            if node.attr == "load":
                assert ast.unparse(node) == "safetensors.torch.load", ast.unparse(node)
        if isinstance(node, ast.keyword):
            assert node.arg not in ("weights_only", "allow_pickle", "pickle_module")
