"""Field checks shared by every config: each failure names the field it refuses."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import fields
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field."""


def check_int(where: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    return value


def check_number(where: str, value: Any, minimum: float = 0.0, *,
                 allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else math.nan
    except OverflowError:  # an int beyond the floats, such as 10**400 from JSON
        number = math.inf
    if not math.isfinite(number) or number < minimum:
        raise ConfigError(f"{where} must be a finite number >= {minimum:g}, got {value!r}")
    return number


def check_choice(where: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a JSON mapping, naming unknown or missing fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None
