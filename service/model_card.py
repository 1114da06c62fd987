"""A served version's card: what it is, how it was trained and how well it did, from its
config.json, as `GET /v1/models/{name}/versions/{version}/card` answers it.

The architecture comes from the parsed, range-checked network config, the rest from the
artifact's provenance, each field passed on only where it has the type the card promises (an
edited config.json gives nulls, never an error). The data set's `source`, a path on the
machine that trained it, is left out, as every answer leaves out where files live.
"""

from __future__ import annotations

from typing import Any

from models.compute import gater_macs

from .engine import ModelEngine

MAX_COMMAND_CHARS = 4096


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _training_data(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    name, sizes = data.get("name"), data.get("sizes")
    if not (isinstance(sizes, dict) and all(
            isinstance(n, int) and not isinstance(n, bool) for n in sizes.values())):
        sizes = None
    return {"name": name if isinstance(name, str) else None, "sizes": sizes}


def model_card(engine: ModelEngine) -> dict[str, Any]:
    stored = engine.metadata
    command = _object(stored.get("training")).get("command")
    architecture = engine.config.to_dict()
    return {
        "name": engine.name, "version": engine.version, "backend": engine.backend,
        "input_size": engine.input_size, "num_classes": engine.num_classes,
        "architecture": architecture,
        # Checked at load (models.gated_artifact.check_served_fields): an object or absent.
        "estimator": stored.get("estimator"),
        "target_density": _number(architecture.get("target_density")),
        "test_density": engine.test_density,
        "test_error": _number(_object(stored.get("metrics")).get("test_error")),
        "block_weights": engine.block_weights,
        "dense_macs": engine.dense_macs, "gater_macs": gater_macs(engine.config),
        "expected_saved_fraction": engine.expected_saved_fraction,
        "data": _training_data(stored.get("data")),
        "training_command": (command if isinstance(command, str)
                             and len(command) <= MAX_COMMAND_CHARS else None),
        "examples": len(engine.examples) if engine.examples is not None else 0,
    }
