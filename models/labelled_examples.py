"""A few labelled examples an artifact carries, so that whoever tries a served model can run it
on real inputs of its data set rather than made-up ones.

They are held out from training (the trainer records them from the test split) and stored as
one extra file of the artifact, ``examples.json``, written and verified by `models.artifact`
like any other (sha256 and size in config.json):

    {"split": "test", "labels": [7, 2, ...], "inputs": [[0.0, 0.31, ...], ...]}

An artifact without the file (every artifact written before it existed) is still valid: it
simply has no examples. A file that is there is read as strictly as config.json: its recorded
size is bounded by what `MAX_EXAMPLES` inputs of the network's size can take before a byte is
read, every number is finite within float32, every label a class of the network.

Letters: N examples, D input units.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import ArtifactError, parse_json, read_extra_file, shown_path
from .config_checks import shown_value

EXAMPLES_FILE = "examples.json"
MAX_EXAMPLES = 16
# The longest number JSON writes for a float32 value ("-1.1754943508222875e-38") and its comma,
# with room to spare; the labels and the split name fit in the fixed allowance.
_BYTES_PER_VALUE = 32
_FIXED_BYTES = 4096
_SPLIT_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.ASCII)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class LabelledExamples:
    split: str  # the data split they were drawn from, e.g. "test"
    inputs: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


def max_examples_bytes(input_size: int) -> int:
    """The largest examples file a network of `input_size` inputs may have."""
    return _FIXED_BYTES + MAX_EXAMPLES * (input_size + 1) * _BYTES_PER_VALUE


def encode_examples(inputs: Any, labels: Any, split: str) -> bytes:
    """The examples file for inputs (N, D) and integer labels (N,), N at most MAX_EXAMPLES.
    Inputs are stored as float32 values, so a reader gets back exactly what the network
    would have been given."""
    x = np.asarray(inputs, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != x.shape[:1] or not 0 < len(y) <= MAX_EXAMPLES:
        raise ArtifactError(f"examples must be 1 to {MAX_EXAMPLES} inputs (N, D) with one "
                            f"label each, got inputs {x.shape} and labels {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or not np.isfinite(x).all():
        raise ArtifactError("examples need integer labels and finite inputs")
    if _SPLIT_PATTERN.fullmatch(split) is None:
        raise ArtifactError(f"examples' split must be a short lower-case name, got {split!r}")
    # float32 -> Python float is exact, and JSON writes the shortest text that reads back as
    # that same double, so the values come back as the same float32.
    body = {"split": split, "labels": y.astype(np.int64).tolist(), "inputs": x.tolist()}
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")


def read_examples(folder: str | Path, config: dict[str, Any], *, input_size: int,
                  num_classes: int, repository: str | Path | None = None
                  ) -> LabelledExamples | None:
    """The examples of the artifact whose config.json is `config` (as read from `folder`), or
    None where it records none. Refuses (ArtifactError) a file that is too large, corrupt, or
    does not fit the network: `input_size` inputs, labels below `num_classes`."""
    extras = config.get("extra_files")
    if not isinstance(extras, dict) or EXAMPLES_FILE not in extras:
        return None
    shown = shown_path(Path(folder) / EXAMPLES_FILE, repository)
    data = read_extra_file(folder, EXAMPLES_FILE, repository=repository, config=config,
                           max_bytes=max_examples_bytes(input_size))
    body = parse_json(data, shown, "examples file")
    split, labels, inputs = body.get("split"), body.get("labels"), body.get("inputs")
    if not isinstance(split, str) or _SPLIT_PATTERN.fullmatch(split) is None:
        raise ArtifactError(f"{shown}: 'split' must be a short lower-case name, got "
                            f"{shown_value(split)}")
    if not (isinstance(labels, list) and 0 < len(labels) <= MAX_EXAMPLES and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < num_classes
            for c in labels)):
        raise ArtifactError(f"{shown}: 'labels' must be 1 to {MAX_EXAMPLES} classes of the "
                            f"network (0 to {num_classes - 1}), got {shown_value(labels)}")
    if not (isinstance(inputs, list) and len(inputs) == len(labels) and all(
            isinstance(row, list) and len(row) == input_size and all(
                isinstance(v, int | float) and not isinstance(v, bool)
                and abs(v) <= _FLOAT32_MAX for v in row)
            for row in inputs)):
        raise ArtifactError(f"{shown}: 'inputs' must hold one list of {input_size} numbers "
                            f"within float32 per label ({len(labels)})")
    return LabelledExamples(split, np.array(inputs, dtype=np.float32),
                            np.array(labels, dtype=np.int64))
