"""The labelled examples an artifact carries (`models.labelled_examples`): a few from the test
split, never from the training set, so what a served model shows on them is what it does on
data it never learned from.

They are taken class by class in turn (the first example of each class in the split's order,
then the second of each, ...), so a page showing them shows every class it can; the split's
order is fixed by its seed, so the same data and seed give the same examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.artifact import read_config, read_extra_file
from models.labelled_examples import EXAMPLES_FILE, MAX_EXAMPLES, encode_examples

from .data import Split

SPLIT = "test"


def pick_examples(split: Split, count: int = MAX_EXAMPLES) -> np.ndarray:
    """Indices of up to `count` examples of `split`, the classes taken in turn."""
    labels = split.y.numpy()
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    chosen = []
    for rank in range(max((len(rows) for rows in by_class), default=0)):
        chosen += [int(rows[rank]) for rows in by_class if rank < len(rows)]
        if len(chosen) >= count:
            break
    return np.array(chosen[:count], dtype=np.int64)


def examples_file(test: Split) -> dict[str, bytes]:
    """The extra file for an artifact trained with `test` as its test split (none where the
    split is empty)."""
    chosen = pick_examples(test)
    if not len(chosen):
        return {}
    return {EXAMPLES_FILE: encode_examples(test.x.numpy()[chosen], test.y.numpy()[chosen],
                                           SPLIT)}


def carried_examples(folder: str | Path, config: dict | None = None) -> dict[str, bytes]:
    """The examples file of the artifact at `folder`, for a new artifact of the same network
    (a variant calibrated to another density); empty where it has none. `config`: its
    config.json, where the caller read it already."""
    if config is None:
        config = read_config(folder)
    if EXAMPLES_FILE not in (config.get("extra_files") or {}):
        return {}
    return {EXAMPLES_FILE: read_extra_file(folder, EXAMPLES_FILE, config=config)}
