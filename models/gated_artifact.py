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
from .gated_config import ConfigError, GatedNetworkConfig
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
    except (KeyError, ConfigError) as err:
        raise ArtifactError(f"{folder}: invalid architecture in config.json: {err}") from None
    model = GatedNetwork(architecture).to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{folder}: weights do not fit the architecture: {err}") from None
    thresholds = config.get("thresholds")
    if not isinstance(thresholds, list) or len(thresholds) != len(model.gated_layers):
        raise ArtifactError(f"{folder}: config.json needs one threshold per gated layer "
                            f"({len(model.gated_layers)}), got {thresholds!r}")
    model.set_thresholds([float(t) for t in thresholds])
    return model.eval(), config
