"""Gated networks to and from model artifacts.

config.json carries `kind`, `architecture` (the GatedNetworkConfig), `estimator` (what trained
it), `thresholds` (calibrated, per gated layer), and whatever provenance the trainer passes
(`training`, `data`, `metrics`). The weights are the network's state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .artifact import ArtifactError, read_artifact, write_artifact
from .compute import dense_macs, gater_macs
from .gated_config import GatedNetworkConfig
from .gated_network import GatedNetwork

KIND = "sparsegate.gated-network"


def save_gated_network(model: GatedNetwork, repository: str | Path, name: str,
                       version: str | int, metadata: dict[str, Any] | None = None, *,
                       overwrite: bool = False) -> Path:
    """Write `model` as artifact <repository>/<name>/<version>; returns the folder."""
    gated = model.gated_layers
    config = {
        **(metadata or {}),
        "kind": KIND,
        "architecture": model.config.to_dict(),
        "estimator": gated[0].estimator.describe() if gated else None,
        "thresholds": model.thresholds(),
    }
    tensors = {k: v for k, v in model.state_dict().items()}
    return write_artifact(repository, name, version, config, tensors, overwrite=overwrite)


def load_gated_network(folder: str | Path, device: str | torch.device = "cpu"
                       ) -> tuple[GatedNetwork, dict[str, Any]]:
    """Build the network an artifact describes, in eval mode, with its thresholds; also return
    the stored config. Incompatible artifacts raise ArtifactError naming the problem."""
    config, tensors = read_artifact(folder, device=str(device))
    if config.get("kind") != KIND:
        raise ArtifactError(f"{folder}: not a gated-network artifact (kind = "
                            f"{config.get('kind')!r}, expected {KIND!r})")
    try:
        architecture = GatedNetworkConfig.from_dict(config["architecture"])
    except (KeyError, ValueError, TypeError) as err:  # ConfigError, or odd JSON in a field
        raise ArtifactError(f"{folder}: invalid architecture in config.json: {err}") from None
    # Each weight matrix holds one element per multiply-add of the dense forward or a gater, and
    # all of them are in the (verified) weights file: an architecture needing more was edited,
    # and is refused here before building it could allocate any amount of memory.
    needed, stored = dense_macs(architecture) + gater_macs(architecture), sum(
        tensor.numel() for tensor in tensors.values())
    if needed > stored:
        raise ArtifactError(f"{folder}: weights do not fit the architecture: it has {needed} "
                            f"weights, the weights file holds {stored} numbers")
    thresholds = _thresholds(config.get("thresholds"), len(architecture.gated_layers), folder)
    model = GatedNetwork(architecture).to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{folder}: weights do not fit the architecture: {err}") from None
    model.set_thresholds(thresholds)
    return model.eval(), config


def _thresholds(values: Any, gated_layers: int, folder: str | Path) -> list[float]:
    """One number per gated layer, within float32 (the thresholds are float32 buffers)."""
    limit = torch.finfo(torch.float32).max
    # abs(t) <= limit refuses NaN and infinities too, and compares an int of any size (JSON
    # allows 10**400, which float() cannot convert) exactly.
    if not (isinstance(values, list) and len(values) == gated_layers and all(
            isinstance(t, int | float) and not isinstance(t, bool) and abs(t) <= limit
            for t in values)):
        raise ArtifactError(f"{folder}: config.json needs one threshold per gated layer "
                            f"({gated_layers}), each a number within float32, got {values!r}")
    return [float(t) for t in values]
