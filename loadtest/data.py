"""Inputs for load tests: real examples of the data set a model takes, chosen by its input size
(which the server's model metadata gives). This package speaks HTTP only, so it reads the data
itself rather than through `training`:

- 64 inputs: scikit-learn's embedded 8x8 digits, pixels / 16 (as trained);
- 784 inputs: Fashion-MNIST's test images from $SPARSEGATE_FASHION_MNIST or
  /usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`), pixels / 255;
- anything else, or when those are missing: uniform [0, 1) rows, seeded, with `source` saying
  so.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST = Path(os.environ.get("SPARSEGATE_FASHION_MNIST",
                                    "/usr/share/datasets/fashion-mnist"))
IMAGE_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions


def import_readers() -> None:
    """Import the optional data set readers now: scikit-learn takes seconds to import on a busy
    machine, which a caller that starts a clock before its first `examples` call would count."""
    with contextlib.suppress(ImportError):
        import sklearn.datasets  # noqa: F401


def examples(input_size: int, count: int = 1000, seed: int = 0) -> tuple[np.ndarray, str]:
    """(count, input_size) float32 rows, and where they came from."""
    if input_size == 64:
        try:
            from sklearn.datasets import load_digits

            data = load_digits().data / 16.0
            return _take(data, count), "sklearn digits"
        except ImportError:
            pass
    if input_size == 784:
        for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
            path = FASHION_MNIST / name
            if path.is_file():
                return _take(_idx_images(path) / 255.0, count), f"fashion-mnist {path}"
    rows = np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, input_size))
    return rows.astype(np.float32), f"uniform random (no data set of {input_size} inputs found)"


def _take(data: np.ndarray, count: int) -> np.ndarray:
    return data[np.arange(count) % len(data)].astype(np.float32)


def _idx_images(path: Path) -> np.ndarray:
    """An IDX file of uint8 images as (N, rows * cols)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    header = np.frombuffer(raw, dtype=">u4", count=4)
    if int(header[0]) != IMAGE_MAGIC:
        raise ValueError(f"{path}: not an IDX image file (magic {int(header[0])})")
    n, rows, cols = (int(v) for v in header[1:])
    return np.frombuffer(raw, dtype=np.uint8, offset=16, count=n * rows * cols).reshape(
        n, rows * cols)
