"""The epoch each phase of a run is reported at: the one with the lowest validation error.

The authors of the paper reported each model at its best validation epoch (their analysis picks,
per run, the epoch of lowest validation cost). Choosing it on the validation split alone and
scoring the test split once, for the network chosen, keeps the test error an honest estimate.
"""

from __future__ import annotations

from typing import Any


def best_epochs(history: list[dict[str, Any]]) -> dict[str, int]:
    """Per phase present in `history` (rows with "epoch", "valid_error" and "phase"), the epoch
    of lowest validation error; the earliest one on ties. Phases in the order they ran."""
    best: dict[str, dict[str, Any]] = {}
    for row in history:
        phase = row.get("phase", "train")
        if phase not in best or row["valid_error"] < best[phase]["valid_error"]:
            best[phase] = row
    return {phase: row["epoch"] for phase, row in best.items()}
