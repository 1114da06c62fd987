"""Gated networks to and from model artifacts.

config.json carries `kind`, `architecture` (the GatedNetworkConfig), `estimator` (what trained
it), `thresholds` (calibrated, per gated layer), and whatever provenance the trainer passes
(`training`, `data`, `metrics`); `block_weights: "bfloat16"` where the main-path weights are
stored in bfloat16 (`models.block_weights`; absent: float32). The weights are the network's state
dict, main-path weights in that precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import block_weights
from .artifact import (
    MAX_WEIGHTS_BYTES,
    ArtifactError,
    read_artifact,
    read_config,
    shown_path,
    write_artifact,
)
from .compute import dense_macs, gater_macs
from .config_checks import finite_float, shown_value
from .gated_config import GatedNetworkConfig
from .safetensors_header import tensor_bytes

if TYPE_CHECKING:
    import torch

    from .gated_network import GatedNetwork

KIND = "sparsegate.gated-network"
BYTES = {"float32": 4, "bfloat16": 2}  # per weight, by precision


def save_gated_network(model: GatedNetwork, repository: str | Path, name: str,
                       version: str | int, metadata: dict[str, Any] | None = None, *,
                       extra_files: dict[str, bytes] | None = None,
                       overwrite: bool = False) -> Path:
    """Write `model` as artifact <repository>/<name>/<version>; returns the folder.
    `extra_files`: other files of the version, such as its labelled examples
    (`models.labelled_examples`)."""
    gated = model.gated_layers
    precision = block_weights.precision_of(model)
    config = {
        **(metadata or {}),
        "kind": KIND,
        "architecture": model.config.to_dict(),
        "estimator": gated[0].estimator.describe() if gated else None,
        "thresholds": model.thresholds(),
    }
    if precision != block_weights.DEFAULT:
        config[block_weights.CONFIG_KEY] = precision
    tensors = block_weights.stored_tensors(model)
    return write_artifact(repository, name, version, config, tensors,
                          extra_files=extra_files, overwrite=overwrite)


def load_gated_network(folder: str | Path, device: str | torch.device = "cpu", *,
                       repository: str | Path | None = None,
                       config: dict[str, Any] | None = None
                       ) -> tuple[GatedNetwork, dict[str, Any]]:
    """Build the network an artifact describes, in eval mode, with its thresholds; also return
    the stored config. Incompatible artifacts raise ArtifactError naming the problem.

    ``repository``: the model repository the folder lies in (see read_artifact): files must
    resolve inside it, and messages name paths relative to it. ``config``: config.json as the
    caller read it already (with `load_gated_config` or `read_artifact`), so that the weights
    are verified against the same config rather than a second reading of the file.

    Everything config.json says is checked before the weights file is opened: the architecture
    (every size and estimator setting in range), the fields a server reports, and the manifest
    against the state the architecture needs, name by name, shape and dtype. So a weights file
    is read only up to the bytes this network needs, and the network is built only from weights
    that were verified to be exactly its own. Main-path weights stored in bfloat16 are widened
    to the network's float32 parameters, exactly.
    """
    from .gated_network import GatedNetwork

    shown = shown_path(folder, repository)
    checked: dict[str, Any] = {}

    def check_config(config: dict[str, Any]) -> None:
        checked.update(_check_config(config, shown))
        _check_manifest_fits(checked["architecture"], config["weights"]["tensors"], shown,
                             checked["block_weights"])

    config, tensors = read_artifact(folder, device=str(device), repository=repository,
                                    check_config=check_config, config=config)
    model = GatedNetwork(checked["architecture"]).to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{shown}: weights do not fit the architecture: {err}") from None
    model.set_thresholds(checked["thresholds"])
    model.block_weights = checked["block_weights"]
    return model.eval(), config


def load_gated_config(folder: str | Path, *, repository: str | Path | None = None
                      ) -> tuple[GatedNetworkConfig, dict[str, Any]]:
    """The architecture an artifact describes and its stored config, after every check of
    config.json that needs no weights (those of `load_gated_network` but the manifest's fit to
    the network's tensors). Reads no weights and needs no torch: what serves an exported
    graph (model.onnx, read with `read_extra_file`, which verifies it) needs nothing else."""
    config = read_config(folder, repository=repository)
    return _check_config(config, shown_path(folder, repository))["architecture"], config


def _check_config(config: dict[str, Any], shown: str) -> dict[str, Any]:
    """The architecture and thresholds of a gated-network config, after every check that needs
    no weights; refuses (ArtifactError) anything else."""
    if config.get("kind") != KIND:
        raise ArtifactError(f"{shown}: not a gated-network artifact (kind = "
                            f"{shown_value(config.get('kind'))}, expected {KIND!r})")
    try:
        architecture = GatedNetworkConfig.from_dict(config["architecture"])
    except (KeyError, ValueError, TypeError) as err:  # ConfigError, or odd JSON in a field
        raise ArtifactError(f"{shown}: invalid architecture in config.json: {err}") from None
    check_served_fields(config, shown)
    thresholds = _thresholds(config.get("thresholds"), len(architecture.gated_layers), shown)
    precision = block_weights.stored_precision(config)
    try:
        block_weights.check_precision(precision, f"config.json '{block_weights.CONFIG_KEY}'")
    except ValueError as err:
        raise ArtifactError(f"{shown}: {err}") from None
    return {"architecture": architecture, "thresholds": thresholds, "block_weights": precision}


def _check_manifest_fits(architecture: GatedNetworkConfig, manifest: dict[str, Any],
                         shown: str, precision: str = block_weights.DEFAULT) -> None:
    """The manifest lists exactly the state the architecture has: the same names, shapes and
    dtypes (main-path weights in `precision`). Checked on a network built on the meta device,
    which holds shapes and no memory, after a bound on its size: each weight matrix holds one
    number per multiply-add of the dense forward (in `precision`) or a gater (float32), so an
    architecture needing more bytes than the manifest lists was edited (10**9 blocks), and is
    refused before even its shapes are built."""
    import torch

    from .gated_network import GatedNetwork

    listed = sum(tensor_bytes(entry["dtype"], entry["shape"], MAX_WEIGHTS_BYTES) or 0
                 for entry in manifest.values())
    needed = (BYTES[precision] * dense_macs(architecture)
              + BYTES["float32"] * gater_macs(architecture))
    if needed > listed:
        raise ArtifactError(f"{shown}: weights do not fit the architecture: its weight "
                            f"matrices need {needed} bytes ({precision} main path), the "
                            f"manifest lists {listed} bytes")
    with torch.device("meta"):
        expected = {key: {"shape": list(value.shape),
                          "dtype": block_weights.stored_dtype(
                              key, str(value.dtype).removeprefix("torch."), precision)}
                    for key, value in GatedNetwork(architecture).state_dict().items()}
    for key in sorted(set(expected) | set(manifest)):
        if manifest.get(key) != expected.get(key):
            raise ArtifactError(
                f"{shown}: weights do not fit the architecture: tensor {key!r} is "
                f"{_described(manifest.get(key))} in the manifest, the architecture needs "
                f"{_described(expected.get(key))}")


def _described(entry: dict[str, Any] | None) -> str:
    return "absent" if entry is None else f"{entry['dtype']} {entry['shape']}"


def check_served_fields(config: dict[str, Any], shown: str) -> None:
    """The provenance fields a server reports as they are (its estimator's name, its test
    error) have the types its answers promise, or are absent: an edited config must not turn a
    model listing into an error. (The measured density is checked where it is used, and
    replaced by the target density where it does not fit.)"""
    estimator, metrics = config.get("estimator"), config.get("metrics")
    if estimator is not None and not (isinstance(estimator, dict) and isinstance(
            estimator.get("name", ""), str)):
        raise ArtifactError(f"{shown}: config.json 'estimator' must be an object with a string "
                            f"'name', got {shown_value(estimator)}")
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise ArtifactError(f"{shown}: config.json 'metrics' must be an object, got "
                            f"{shown_value(metrics)}")
    error = metrics.get("test_error")
    if error is not None and not _within(error, 0, 1):
        raise ArtifactError(f"{shown}: metrics.test_error must be a number in [0, 1], got "
                            f"{shown_value(error)}")


def _within(value: Any, low: float, high: float) -> bool:
    number = finite_float(value)
    return number is not None and low <= number <= high


def _thresholds(values: Any, gated_layers: int, shown: str) -> list[float]:
    """One number per gated layer, within float32 (the thresholds are float32 buffers)."""
    limit = float(np.finfo(np.float32).max)
    # abs(t) <= limit refuses NaN and infinities too, and compares an int of any size (JSON
    # allows 10**400, which float() cannot convert) exactly.
    if not (isinstance(values, list) and len(values) == gated_layers and all(
            isinstance(t, int | float) and not isinstance(t, bool) and abs(t) <= limit
            for t in values)):
        raise ArtifactError(f"{shown}: config.json needs one threshold per gated layer "
                            f"({gated_layers}), each a number within float32, got "
                            f"{shown_value(values)}")
    return [float(t) for t in values]
