"""The export job: an artifact's network written as model.onnx (`models.skip.onnx_export`),
verified against torch on random inputs and on test inputs of the data set it was trained on,
where that data loads here (the artifact records which)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.artifact import artifact_path, read_config
from models.skip import onnx_export
from models.skip.onnx_export import DEFAULT_OPSET, resolve_version

from .data import DatasetError, load_data

__all__ = ["export_to_artifact", "real_inputs", "resolve_version"]


def real_inputs(config: dict[str, Any], input_size: int) -> tuple[torch.Tensor | None, str]:
    """Test inputs of the data set the artifact was trained on, where it can be loaded here,
    and a note saying what they are (or why there are none)."""
    data = config.get("data")
    if not isinstance(data, dict):
        return None, "none recorded"
    name, source = data.get("name"), data.get("source")
    spec = "digits" if name == "digits" else source
    if not isinstance(spec, str) or (spec != "digits" and not Path(spec).exists()):
        return None, f"{name} not available here"
    try:
        bundle = load_data(spec, limit=512)
    except (DatasetError, OSError, ValueError) as err:
        return None, f"{name} not loadable: {err}"
    if bundle.input_size != input_size:
        return None, f"{name} has {bundle.input_size} inputs, the model {input_size}"
    return bundle.test.x, f"{name} test split"


def export_to_artifact(repository: str | Path, name: str, version: str | int | None = None,
                       opset: int = DEFAULT_OPSET, serve_with: str | None = None,
                       custom_ops: bool = False) -> tuple[Path, dict[str, Any]]:
    """`models.skip.onnx_export.export_to_artifact` with the artifact's own test inputs."""
    version = resolve_version(repository, name, version)
    config = read_config(artifact_path(repository, name, version))
    architecture = config.get("architecture") or {}
    real, note = real_inputs(config, architecture.get("input_size", -1))
    return onnx_export.export_to_artifact(repository, name, version, opset, real=real,
                                          real_note=note, serve_with=serve_with,
                                          custom_ops=custom_ops)
