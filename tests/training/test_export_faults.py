"""A full disk or a crash while an artifact is written or exported: no partial artifact ever
becomes visible in the repository, and what was there keeps loading.

- Full disk, in this process: the writer's lowest-level writes (the safetensors save, the
  `open(...).write` of config.json and model.onnx, fsync) fail with ENOSPC partway. The error
  reaches the caller and the repository is left byte for byte as it was.
- Crash: a child process writing a new version, rewriting one as the ONNX export does, or
  running the export itself is killed with SIGKILL just before each of its filesystem
  operations in turn, and halfway through writing each file (tests/training/crash_writer.py).
  Every version listed afterwards loads, the one rewritten is wholly old or wholly new, and its
  model.onnx matches its config.

A crash can leave a dot-folder in the model's folder (.tmp-<version>-<random> of an unfinished
write, or the old version after a swap). `list_versions` and the server's repository scan
ignore it, a later write of the same version is not disturbed by it, and nothing deletes it:
it stays until someone removes it.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import safetensors.torch
import torch

import models.artifact as artifact
from models.artifact import list_versions, read_artifact, read_config, read_extra_file
from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_network import GatedNetwork
from service.config import Settings
from service.metrics import Metrics
from service.repository import ModelRepository
from training.export_cli import main as export_main
from training.onnx_export import DEFAULT_OPSET, export_to_artifact

from .conftest import tiny_config
from .crash_writer import NEW_ONNX

ROOT = Path(__file__).resolve().parents[2]
OLD_OPSET = 20  # version 2's model.onnx before the export under test (DEFAULT_OPSET) runs
assert OLD_OPSET != DEFAULT_OPSET
MODES = ("new", "overwrite", "two-renames", "export")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Model "tiny": versions 1 and 2 of one small network, 2 exported to ONNX at OLD_OPSET."""
    repository = tmp_path_factory.mktemp("template") / "repo"
    torch.manual_seed(0)
    model = GatedNetwork(tiny_config()).eval()
    for version in (1, 2):
        save_gated_network(model, repository, "tiny", version, {"metrics": {"note": version}})
    export_to_artifact(repository, "tiny", 2, opset=OLD_OPSET)
    return repository


@pytest.fixture
def repository(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "repo"))


def snapshot(repository: Path) -> dict[str, bytes]:
    """Every file under the repository, dot-folders included, and its bytes."""
    return {str(path.relative_to(repository)): path.read_bytes()
            for path in sorted(repository.rglob("*")) if path.is_file()}


def loads(folder: Path) -> dict:
    """Read the artifact as the server would, and every extra file it records."""
    config, _ = read_artifact(folder)
    load_gated_network(folder)
    for name in config["extra_files"]:
        read_extra_file(folder, name)
    return config


def onnx_opset(folder: Path) -> int:
    """The opset of model.onnx, after checking that config.json says the same."""
    graph = onnx.load_from_string(read_extra_file(folder, "model.onnx"))
    opset = graph.opset_import[0].version
    assert read_config(folder)["onnx"]["opset"] == opset
    return opset


# --- a full disk ------------------------------------------------------------------------------


def no_space(filename: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


class HalfFullDisk:
    """A file with room for half of what is written to it."""

    def __init__(self, file) -> None:
        self.file = file

    def write(self, data: bytes) -> int:
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        raise no_space(self.file.name)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self) -> HalfFullDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def fill_disk(monkeypatch, where: str) -> None:
    """Make the artifact writer run out of space at `where`."""
    if where == "model.safetensors":  # written in Rust: fail the call after half the bytes
        def save_half(tensors, filename, metadata=None):
            data = safetensors.torch.save(tensors, metadata=metadata)
            Path(filename).write_bytes(data[:len(data) // 2])
            raise no_space(filename)

        monkeypatch.setattr(safetensors.torch, "save_file", save_half)
    elif where == "fsync":  # where delayed allocation reports a full disk
        def fsync(fd: int) -> None:
            raise no_space()

        monkeypatch.setattr(artifact.os, "fsync", fsync)
    else:  # the builtin open that the writer's files go through
        def open_on_full_disk(path, mode="r", *args, **kwargs):
            file = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes)
            return HalfFullDisk(file) if Path(path).name == where and "r" not in mode else file

        monkeypatch.setattr(artifact, "open", open_on_full_disk, raising=False)


FULL_AT = ["model.safetensors", "config.json", "model.onnx", "fsync"]


@pytest.mark.parametrize("where", FULL_AT)
def test_a_full_disk_while_writing_a_new_version_leaves_the_repository_as_it_was(
        repository, monkeypatch, where):
    before = snapshot(repository)
    config, tensors = read_artifact(repository / "tiny" / "1")
    fill_disk(monkeypatch, where)
    with pytest.raises(OSError) as raised:
        artifact.write_artifact(repository, "tiny", 3, config, tensors,
                                extra_files={"model.onnx": NEW_ONNX})
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert snapshot(repository) == before  # no version, no temporary folder, nothing
    assert list_versions(repository, "tiny") == ["1", "2"]
    for version in ("1", "2"):
        loads(repository / "tiny" / version)


@pytest.mark.parametrize("where", FULL_AT)
def test_a_full_disk_during_the_onnx_export_keeps_the_old_model_onnx(repository, monkeypatch,
                                                                     where):
    before = snapshot(repository)
    fill_disk(monkeypatch, where)
    with pytest.raises(OSError) as raised:
        export_to_artifact(repository, "tiny", 2)
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert snapshot(repository) == before
    loads(repository / "tiny" / "2")
    assert onnx_opset(repository / "tiny" / "2") == OLD_OPSET


def test_the_export_cli_reports_a_full_disk_and_exits_1(repository, monkeypatch, capsys):
    before = snapshot(repository)
    fill_disk(monkeypatch, "model.onnx")
    assert export_main(["--model-repository", str(repository), "--name", "tiny"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert snapshot(repository) == before


# --- a crash (SIGKILL) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashes(template, tmp_path_factory) -> dict[str, tuple[Path, dict[str, str]]]:
    """Each mode's sweep of crash points, run in parallel: mode -> (work folder, outcomes)."""
    work = {mode: tmp_path_factory.mktemp(f"crash-{mode}") for mode in MODES}
    processes = {mode: subprocess.Popen(
        [sys.executable, "-m", "tests.training.crash_writer", str(template), str(work[mode]),
         mode], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for mode in MODES}
    results = {}
    for mode, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results[mode] = (work[mode], json.loads(out))
    return results


def crashed_repositories(crashes, mode: str) -> list[tuple[str, str, Path]]:
    """(point, outcome, repository) of a mode's sweep, after checking that every child died
    where it was meant to, but the last one of the event sweep, which finished."""
    work, outcomes = crashes[mode]
    events = [point for point in outcomes if point.startswith("event-")]
    assert len(events) >= 8, outcomes  # the sweep went through the whole write
    assert outcomes[events[-1]] == "finished", outcomes
    assert all(outcome == "killed" for point, outcome in outcomes.items()
               if point != events[-1]), outcomes
    return [(point, outcome, work / point) for point, outcome in outcomes.items()]


def check_scan(repository: Path, versions: list[str]) -> list[str]:
    """The listing and the server's repository scan show `versions` and nothing else; returns
    the dot-folders a crash left in the model's folder."""
    assert list_versions(repository, "tiny") == versions
    scan = ModelRepository(Settings(model_repository=repository), Metrics()).available()
    assert scan == [{"name": "tiny", "version": v, "state": "UNAVAILABLE"} for v in versions]
    leftovers = [p.name for p in (repository / "tiny").iterdir() if p.name not in versions]
    assert all(name.startswith(".") for name in leftovers), leftovers
    return leftovers


def test_a_crash_while_writing_a_new_version_never_shows_part_of_it(crashes, template):
    old_tensors = read_artifact(template / "tiny" / "1")[1]
    seen, leftovers = set(), []
    for point, outcome, repository in crashed_repositories(crashes, "new"):
        versions = list_versions(repository, "tiny")
        assert versions in (["1", "2"], ["1", "2", "3"]), (point, versions)
        seen.add(len(versions))
        leftovers += check_scan(repository, versions)
        for version in versions:
            loads(repository / "tiny" / version)
        if "3" in versions:  # visible means complete
            _, tensors = read_artifact(repository / "tiny" / "3")
            assert all(torch.equal(tensors[k], old_tensors[k]) for k in old_tensors)
            assert read_extra_file(repository / "tiny" / "3", "model.onnx") == NEW_ONNX
        if outcome == "finished":
            assert "3" in versions
    assert seen == {2, 3}  # crashes both before and after the version appeared
    assert any(name.startswith(".tmp-3-") for name in leftovers)


def test_a_crash_while_rewriting_a_version_leaves_the_old_or_the_new_one_whole(crashes,
                                                                               template):
    old_onnx = read_extra_file(template / "tiny" / "2", "model.onnx")
    seen = set()
    for point, outcome, repository in crashed_repositories(crashes, "overwrite"):
        check_scan(repository, ["1", "2"])  # version 2 never disappears
        config = loads(repository / "tiny" / "2")
        onnx_bytes = read_extra_file(repository / "tiny" / "2", "model.onnx")
        state = "new" if config.get("marker") == "new" else "old"
        assert onnx_bytes == (NEW_ONNX if state == "new" else old_onnx), point
        seen.add(state)
        if outcome == "finished":
            assert state == "new"
    assert seen == {"old", "new"}


def test_without_the_one_step_swap_a_crash_could_lose_the_version(crashes):
    """Why overwrites swap folders with renameat2: the two-rename fallback has a moment with no
    version folder at all, and this sweep finds it (so the sweeps do reach that step)."""
    lost = []
    for point, _, repository in crashed_repositories(crashes, "two-renames"):
        versions = list_versions(repository, "tiny")
        if versions == ["1"]:
            aside = [p for p in (repository / "tiny").iterdir() if p.name.startswith(".old-2-")]
            assert len(aside) == 1 and loads(aside[0])  # the old version survives, unlisted
            lost.append(point)
    assert len(lost) >= 1


def test_a_crash_during_the_onnx_export_leaves_a_whole_model_onnx(crashes):
    seen = set()
    for point, outcome, repository in crashed_repositories(crashes, "export"):
        check_scan(repository, ["1", "2"])
        loads(repository / "tiny" / "2")
        opset = onnx_opset(repository / "tiny" / "2")  # parses, and config.json agrees
        assert opset in (OLD_OPSET, DEFAULT_OPSET), point
        seen.add(opset)
        if outcome == "finished":
            assert opset == DEFAULT_OPSET
    assert seen == {OLD_OPSET, DEFAULT_OPSET}


def test_after_a_crash_the_version_can_be_written_again_and_the_leftover_stays(crashes):
    _, _, repository = next(r for r in crashed_repositories(crashes, "new")
                            if r[0] == "partial-config.json")
    leftovers = check_scan(repository, ["1", "2"])
    assert leftovers and leftovers[0].startswith(".tmp-3-")
    config, tensors = read_artifact(repository / "tiny" / "1")
    artifact.write_artifact(repository, "tiny", 3, config, tensors)
    assert check_scan(repository, ["1", "2", "3"]) == leftovers  # nothing cleaned it up
