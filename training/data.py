"""Data sets for training: MNIST-style IDX directories and scikit-learn's 8x8 digits.

``load_data(spec)`` is the one entry point the trainer uses. ``spec`` is ``"digits"`` (embedded
in scikit-learn, no download: the quick set for tests and smoke runs), ``"fashion-mnist"``
(Debian's ``dataset-fashion-mnist`` package), or a directory of IDX files such as MNIST's.
Every split is held out with a seeded permutation, so the same spec and seed give the same
examples in the same order on every machine.

Shapes: N examples, D = input features (rows * cols for images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .idx import DatasetError, read_idx, write_idx

__all__ = ["DataBundle", "DatasetError", "Split", "load_data", "load_idx_directory",
           "read_idx", "write_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The standard MNIST names; some mirrors (e.g. Kaggle's) write "train-images.idx3-ubyte".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = 10  # MNIST, Fashion-MNIST, KMNIST and the 8x8 digits all have ten
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0  # fixed: every training seed is scored on the same test examples


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs and integer class labels."""

    x: torch.Tensor  # (N, D) float32
    y: torch.Tensor  # (N,) int64

    def __post_init__(self):
        if self.x.dtype != torch.float32 or self.x.dim() != 2:
            raise ValueError(f"x must be a 2-D float32 tensor, got {self.x.dtype} "
                             f"{tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != self.x.shape[:1]:
            raise ValueError(f"y must be an int64 tensor of shape ({self.x.shape[0]},), got "
                             f"{self.y.dtype} {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class DataBundle:
    """A data set split three ways, with where it came from and how it was split."""

    name: str  # "digits", or the IDX directory's name ("fashion-mnist", "mnist")
    source: str  # provenance: an absolute path or "sklearn.datasets.load_digits"
    input_size: int
    num_classes: int
    train: Split
    valid: Split
    test: Split
    valid_fraction: float = 0.0
    seed: int = 0
    limit: int | None = None

    def describe(self) -> dict:
        """JSON-serialisable summary, for run logs and the model artifact's provenance."""
        return {
            "name": self.name,
            "source": self.source,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "sizes": {"train": len(self.train), "valid": len(self.valid),
                      "test": len(self.test)},
            "validation": {"fraction": self.valid_fraction, "seed": self.seed},
            "limit": self.limit,
        }


def _find(root: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: missing IDX file: looked for {', '.join(candidates)}")


def load_idx_directory(root: str | Path, *, num_classes: int = NUM_CLASSES,
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the MNIST-layout files in ``root`` into ``{"train": (x, y), "test": (x, y)}``.

    ``x`` is (N, rows * cols) float32 in [0, 1] (uint8 pixels / 255); ``y`` is (N,) int64 in
    [0, num_classes). The ``t10k`` files are the test split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory of IDX files")
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = _find(root, images_stem), _find(root, labels_stem)
        images = read_idx(images_path, dtype=np.uint8, ndim=3)  # (N, rows, cols)
        labels = read_idx(labels_path, dtype=np.uint8, ndim=1)  # (N,)
        if len(images) != len(labels):
            raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} "
                               f"holds {len(labels)} labels")
        labels = labels.astype(np.int64)
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise DatasetError(f"{labels_path}: {int(bad.sum())} labels outside "
                               f"0..{num_classes - 1}, the first {int(labels[bad][0])} at index "
                               f"{int(np.argmax(bad))}")
        x = images.reshape(len(images), -1).astype(np.float32)  # (N, D)
        x /= 255  # in place: avoids a second (N, D) float copy for 60k images
        splits[split] = (x, labels)
    return splits


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits, with a fixed stratified 20 % test split."""
    try:
        from sklearn.datasets import load_digits  # lazy: scikit-learn is a training extra
    except ImportError as err:
        raise DatasetError("the 'digits' data set needs scikit-learn: "
                           "pip install 'sparsegate[train]'") from err
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (N, 64); pixels are counts 0..16
    y = digits.target.astype(np.int64)  # (N,)
    rng = np.random.default_rng(DIGITS_TEST_SEED)
    # Per class, so every class keeps ~20 % of its examples in test: the set is small enough
    # that a plain permutation would skew class balance by a few percent.
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[
        :round(DIGITS_TEST_FRACTION * np.sum(y == c))] for c in np.unique(y)])
    test = rng.permutation(test)  # mix the classes, so `limit` keeps all of them
    train = rng.permutation(np.setdiff1d(np.arange(len(y)), test))
    return x[train], y[train], x[test], y[test]


def _resolve(spec: str) -> tuple[str, Path]:
    """Map a spec that is not "digits" to (name, IDX directory), or explain what is wrong."""
    if spec == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise DatasetError(f"fashion-mnist: {FASHION_MNIST_DIR} does not exist; install it "
                               "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
                               "or pass the path of a directory holding its IDX files")
        return "fashion-mnist", FASHION_MNIST_DIR
    root = Path(spec.removeprefix("idx:")).expanduser()
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise DatasetError(
            f"unknown data set {spec!r}: {root} {what}. Expected 'digits', 'fashion-mnist', or "
            "a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz)")
    root = root.resolve()
    return root.name, root


def load_data(spec: str, *, valid_fraction: float = 1 / 12, seed: int = 0,
              limit: int | None = None) -> DataBundle:
    """Load ``spec`` and split it into train, validation and test.

    The validation split is ``round(valid_fraction * N_train)`` training examples chosen by a
    permutation seeded with ``seed`` (MNIST: 60000 / 12 = 5000, as is customary). ``limit``
    then keeps the first ``limit`` examples of each split, for quick runs.
    """
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    if spec == "digits":
        name, source = "digits", "sklearn.datasets.load_digits"
        x_train, y_train, x_test, y_test = _load_digits()
    else:
        name, root = _resolve(spec)
        source = str(root)
        splits = load_idx_directory(root)
        (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]

    order = np.random.default_rng(seed).permutation(len(y_train))
    n_valid = round(valid_fraction * len(y_train))
    valid_idx, train_idx = order[:n_valid], order[n_valid:]

    def split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
        idx = idx[:limit]  # truncate the indices first: copy only the rows we keep
        return Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))  # (N, D), (N,)

    return DataBundle(
        name=name, source=source, input_size=x_train.shape[1], num_classes=NUM_CLASSES,
        train=split(x_train, y_train, train_idx),
        valid=split(x_train, y_train, valid_idx),
        test=split(x_test, y_test, np.arange(len(y_test))),
        valid_fraction=valid_fraction, seed=seed, limit=limit)
