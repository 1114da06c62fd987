"""Ways to break a saved gated-network artifact as an attacker with write access to a model
repository would: each attack edits an artifact folder in place, and names the words its
refusal must contain. Shared by the reader's unit tests (tests/models) and the real-server tests
(tests/service).

The config edits write JSON text by hand where Python's json would refuse or change the value:
10**400 as a JSON integer, 1e400 (which reads as infinity), NaN.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

HUGE = "1" + "0" * 400  # 10**400 as JSON text: a valid JSON integer, beyond every float


def copy_model(source: Path, repository: Path, name: str, version: int = 1) -> Path:
    """A copy of the artifact folder `source` as `<repository>/<name>/<version>`, saying so in
    its config."""
    folder = repository / name / str(version)
    shutil.copytree(source, folder)
    config = read_config(folder)
    config.update(name=name, version=str(version))
    write_config(folder, config)
    return folder


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def write_config(folder: Path, config: dict, **replacements: str) -> None:
    """Write `config`, then replace each quoted placeholder string "KEY" by raw JSON text (how
    values that Python's json cannot write get in)."""
    text = json.dumps(config, indent=1)
    for placeholder, raw in replacements.items():
        text = text.replace(json.dumps(placeholder), raw)
    (folder / "config.json").write_text(text)


def set_raw_setting(estimator: str, setting: str, raw: str) -> Callable[[Path], None]:
    """Train-time estimator `estimator` with `setting` written as the raw JSON `raw`. The
    estimators used here keep no state of their own, so the weights still fit."""

    def edit(folder: Path) -> None:
        config = read_config(folder)
        config["architecture"]["estimator"] = estimator
        config["architecture"]["estimator_settings"] = {setting: "RAW"}
        write_config(folder, config, RAW=raw)

    return edit


def set_raw_size(path: tuple, raw: str) -> Callable[[Path], None]:
    """An architecture size (e.g. ("input_size",) or ("layers", 0, "blocks")) as raw JSON."""

    def edit(folder: Path) -> None:
        config = read_config(folder)
        holder = config["architecture"]
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = "RAW"
        write_config(folder, config, RAW=raw)

    return edit


def link_weights_to(target: Path | str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors").symlink_to(target)

    return edit


def fifo_instead_of(file_name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / file_name).unlink()
        os.mkfifo(folder / file_name)

    return edit


def rewrite_weights(folder: Path, change: Callable[[dict], dict]) -> None:
    """Replace the weights by `change(state)`, with a manifest and hash that match the new file
    (so only a check against the architecture can refuse them)."""
    state = safetensors.torch.load_file(folder / "model.safetensors")
    state = change(state)
    safetensors.torch.save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    data = (folder / "model.safetensors").read_bytes()
    config = read_config(folder)
    config["weights"].update(sha256=hashlib.sha256(data).hexdigest(), tensors={
        key: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        for key, t in state.items()})
    write_config(folder, config)


def one_tensor_as_uint8(folder: Path) -> None:
    """A float32 bias stored as uint8 of the same shape: the bytes of the whole state still
    pass a bound on its size, only its dtype is wrong."""
    rewrite_weights(folder, lambda state: {
        key: (t.to(torch.uint8) if key == "layers.0.main.bias" else t)
        for key, t in state.items()})


def all_weights_as_one_uint8_blob(folder: Path) -> None:
    """One uint8 tensor with as many elements as the network has numbers: the old check,
    which counted elements, let it through to building the network."""
    rewrite_weights(folder, lambda state: {
        "blob": torch.zeros(sum(t.numel() for t in state.values()), dtype=torch.uint8)})


def oversize_weights(folder: Path) -> None:
    """The weights file grown to 1 GiB (sparse: no disk used), far beyond its manifest."""
    os.truncate(folder / "model.safetensors", 1 << 30)


def oversize_config(folder: Path) -> None:
    """A valid config.json padded with 2 MiB of spaces."""
    path = folder / "config.json"
    path.write_text(path.read_text() + " " * (2 << 20))


def deeply_nested_config(folder: Path) -> None:
    """100,000 nested lists in a field nobody reads: Python's parser recurses on each."""
    config = read_config(folder)
    config["notes"] = "RAW"
    write_config(folder, config, RAW="[" * 100_000 + "]" * 100_000)


@dataclass(frozen=True)
class Attack:
    name: str  # also the model's name in a repository of attacks
    edit: Callable[[Path], None]
    words: str  # in the refusal's message


def attacks(outside_file: Path) -> list[Attack]:
    """Every attack on an artifact, `outside_file` being a regular file outside the repository
    (a copy of real weights, so following the link would read it)."""
    return [
        *(Attack(f"huge-{estimator}-{setting}", set_raw_setting(estimator, setting, HUGE),
                 "within int64")
          for estimator, setting in (("gumbel-st", "temperature"), ("sts", "beta_noise_scale"),
                                     ("noisy-rectifier", "sigma"),
                                     ("hard-concrete", "temperature"),
                                     ("hard-concrete", "gamma"), ("hard-concrete", "zeta"))),
        Attack("negative-huge-gamma", set_raw_setting("hard-concrete", "gamma", "-" + HUGE),
               "within int64"),
        Attack("float-1e400-temperature", set_raw_setting("gumbel-st", "temperature", "1e400"),
               "beyond the floats"),
        Attack("nan-temperature", set_raw_setting("gumbel-st", "temperature", "NaN"),
               "NaN is not allowed"),
        Attack("bool-temperature", set_raw_setting("gumbel-st", "temperature", "true"),
               "temperature must be a finite positive number"),
        Attack("huge-input-size", set_raw_size(("input_size",), HUGE), "within int64"),
        Attack("huge-blocks", set_raw_size(("layers", 0, "blocks"), HUGE), "within int64"),
        Attack("int64-blocks", set_raw_size(("layers", 0, "blocks"), str(2**62)),
               "blocks must be a positive integer <= 2147483647"),
        Attack("negative-block-size", set_raw_size(("layers", 0, "block_size"), "-4"),
               "block_size must be a positive integer"),
        Attack("weights-link-to-dev-zero", link_weights_to("/dev/zero"),
               "link to a file outside the model repository"),
        Attack("weights-link-outside", link_weights_to(outside_file),
               "link to a file outside the model repository"),
        Attack("weights-fifo", fifo_instead_of("model.safetensors"),
               "weights file is a FIFO, not a regular file"),
        Attack("config-fifo", fifo_instead_of("config.json"),
               "config file is a FIFO, not a regular file"),
        Attack("uint8-tensor", one_tensor_as_uint8,
               "weights do not fit the architecture: tensor 'layers.0.main.bias' is uint8"),
        Attack("uint8-blob", all_weights_as_one_uint8_blob, "weights do not fit the architecture"),
        Attack("oversize-weights", oversize_weights, "refused without reading it"),
        Attack("oversize-config", oversize_config, "refused without reading it"),
        Attack("deeply-nested-config", deeply_nested_config, "nested too deeply"),
    ]


def within(seconds: float, function: Callable[[], object]) -> object:
    """`function()`, run on a daemon thread so that a hang fails the test (AssertionError after
    `seconds`) instead of blocking it; its exception, if any, is raised here."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")
