"""Field checks shared by every config: each failure names the field it refuses.

Configs come from JSON files that anyone may have edited, and JSON allows what Python's numbers
do not hold: an integer such as 10**400 (float() of it raises OverflowError) and booleans where
numbers are wanted (True is an int in Python). Every check here refuses those with ConfigError
(a ValueError), never another exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

# The largest size (units, blocks, inputs, classes) a config may give: torch indexes tensor
# dimensions with int64, and no layer we train comes near 2**31 units.
MAX_SIZE = 2**31 - 1


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field."""


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None where it is not a real number that a float holds
    (a bool, a string, NaN, an infinity, or an int beyond the floats such as 10**400)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_int(where: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    if (not isinstance(value, int) or isinstance(value, bool) or value < minimum
            or (maximum is not None and value > maximum)):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if maximum is not None:
            kind += f" <= {maximum}"
        raise ConfigError(f"{where} must be {kind}, got {shown_value(value)}")
    return value


def check_number(where: str, value: Any, minimum: float = 0.0, *,
                 allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    number = finite_float(value)
    if number is None or number < minimum:
        raise ConfigError(f"{where} must be a finite number >= {minimum:g}, got "
                          f"{shown_value(value)}")
    return number


def check_choice(where: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {shown_value(value)}")
    return value


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a JSON mapping, naming unknown or missing fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


def shown_value(value: Any, limit: int = 80) -> str:
    """repr of a refused value, cut short: an edited config can hold a 4,000-digit integer or a
    long list, and an error message need not repeat it all."""
    # bit_length, not str(): str() refuses ints of more than 4,300 digits.
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else \
        f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[:limit] + "..."
