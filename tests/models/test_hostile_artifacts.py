"""The gated-network reader against artifacts built to hurt the process that reads them: every
attack is refused with ArtifactError, at once, before the network is allocated, with a message
that names files relative to the repository and tells nothing about files outside it."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

import models.gated_network as gated_network
from models.artifact import ArtifactError, read_artifact
from models.estimators import ESTIMATORS
from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_network import GatedNetwork
from tests.hostile_artifacts import attacks, copy_model, within

from ..tiny_networks import tiny_network as tiny_network_of

ATTACK_NAMES = [attack.name for attack in attacks(Path("outside"))]


def tiny_network(estimator: str = "st") -> GatedNetwork:
    return tiny_network_of(
        [{"blocks": 4, "block_size": 4, "gater_hidden": 6, "activation": "relu"},
         {"blocks": 8, "block_size": 1, "activation": "tanh", "gated": False}],
        estimator=estimator, num_classes=3, density=0.5, gate_spread=1.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A good artifact, saved once."""
    root = tmp_path_factory.mktemp("saved")
    return save_gated_network(tiny_network(), root, "good", 1,
                              {"metrics": {"test_density": [0.5], "test_error": 0.1}})


@pytest.fixture
def repository(tmp_path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


@pytest.fixture
def outside(tmp_path, saved) -> Path:
    """Real weights outside the repository: a reader that followed a link here could hash them."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copy(saved / "model.safetensors", tmp_path / "outside"))


@pytest.fixture
def networks_built(monkeypatch) -> list[str]:
    """The device of every GatedNetwork the reader builds ("meta" holds no memory)."""
    built: list[str] = []
    real = gated_network.GatedNetwork

    def recording(config):
        built.append(torch.empty(()).device.type)
        return real(config)

    # The reader imports the class when it builds one, so patching its module reaches it.
    monkeypatch.setattr(gated_network, "GatedNetwork", recording)
    return built


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_is_refused_at_once_before_the_network_is_allocated(
        name, saved, repository, outside, tmp_path, networks_built):
    attack = {a.name: a for a in attacks(outside)}[name]
    folder = copy_model(saved, repository, name)
    attack.edit(folder)
    started = time.monotonic()
    with pytest.raises(ArtifactError) as refusal:
        within(10, lambda: load_gated_network(folder, repository=repository))
    assert time.monotonic() - started < 5
    message = str(refusal.value)
    assert attack.words in message
    assert message.startswith(f"{name}/1")  # relative to the repository
    assert str(tmp_path) not in message and "/dev/zero" not in message
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in message
    assert "cpu" not in networks_built


def test_the_good_artifact_loads_and_is_built_once_for_real(saved, repository, networks_built):
    folder = copy_model(saved, repository, "fine")
    model, config = load_gated_network(folder, repository=repository)
    assert config["name"] == "fine" and not model.training
    assert networks_built == ["meta", "cpu"]  # its expected state, then the network itself


def test_a_link_that_stays_inside_the_repository_is_followed(saved, repository):
    folder = copy_model(saved, repository, "linked")
    other = copy_model(saved, repository, "linked", 2)
    (other / "model.safetensors").unlink()
    (other / "model.safetensors").symlink_to(Path("..") / "1" / "model.safetensors")
    load_gated_network(other, repository=repository)
    load_gated_network(folder, repository=repository)


def test_a_version_folder_linked_out_of_the_repository_is_refused(saved, repository):
    (repository / "elsewhere").mkdir()
    (repository / "elsewhere" / "1").symlink_to(saved, target_is_directory=True)
    with pytest.raises(ArtifactError, match=r"^elsewhere/1/config\.json: config file is a link "
                                            "to a file outside the model repository"):
        load_gated_network(repository / "elsewhere" / "1", repository=repository)


def test_without_a_repository_the_files_must_lie_in_the_artifact_folder(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(saved / "model.safetensors")
    with pytest.raises(ArtifactError, match="outside the model repository"):
        read_artifact(folder)


def test_a_weights_file_grown_past_its_manifest_is_not_read(saved, repository, monkeypatch):
    folder = copy_model(saved, repository, "grown")
    os.truncate(folder / "model.safetensors", 64 << 30)  # sparse: 64 GiB that use no disk
    read = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: read.append(real_read(fd, n)) or read[-1])
    with pytest.raises(ArtifactError, match="holds 68719476736 bytes, more than the"):
        within(10, lambda: load_gated_network(folder, repository=repository))
    assert sum(map(len, read)) == (folder / "config.json").stat().st_size  # and nothing more


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_the_state_expected_from_an_architecture_is_the_state_of_the_real_network(estimator):
    """The reader compares the manifest with a network built on the meta device: it must list
    what the real network holds, name for name, shape and dtype, for every estimator."""
    config = tiny_network(estimator if estimator != "disarm" else "st").config
    with torch.device("meta"):
        expected = GatedNetwork(config).state_dict()
    real = GatedNetwork(config).state_dict()
    assert {k: (v.shape, v.dtype) for k, v in expected.items()} == \
        {k: (v.shape, v.dtype) for k, v in real.items()}
    assert all(v.device.type == "meta" for v in expected.values())
