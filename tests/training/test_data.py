"""IDX reading and writing, IDX directories, and the splits that load_data hands the trainer."""

import gzip
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import data
from training.data import DatasetError, Split, load_data, load_idx_directory, read_idx, write_idx

ROWS, COLS = 4, 3
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_idx_dir(root, n_train=60, n_test=20, gz=False):
    """A tiny MNIST-layout directory. Pixels 0 and 1 encode each example's index (i // 256,
    i % 256), so tests can tell which examples ended up in which split."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    rng = np.random.default_rng(123)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, ROWS, COLS), dtype=np.uint8)  # (N, rows, cols)
        images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)
    return root


def example_ids(split: Split) -> list[int]:
    pixels = (split.x[:, :2] * 255).round().long()  # (N, 2)
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


# --- read_idx / write_idx -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) * 7 - 40).astype(dtype)
    back = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array))
    assert back.dtype == array.dtype.newbyteorder("=") and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_writes_the_published_layout(tmp_path):
    # MNIST labels: magic 0x00000801 (uint8, 1 dim), count as big-endian uint32, then bytes.
    path = write_idx(tmp_path / "labels", np.array([7, 2, 1], dtype=np.uint8))
    assert path.read_bytes() == bytes.fromhex("00000801 00000003 070201")
    path = write_idx(tmp_path / "shorts", np.array([[1, -2]], dtype=np.int16))
    assert path.read_bytes() == bytes.fromhex("00000b02 00000001 00000002 0001 fffe")


def test_gzip_is_recognised_by_its_magic_bytes_not_the_name(tmp_path):
    plain = write_idx(tmp_path / "x", np.arange(5, dtype=np.uint8)).read_bytes()
    (tmp_path / "misnamed").write_bytes(gzip.compress(plain))
    (tmp_path / "plain.gz").write_bytes(plain)
    for name in ("misnamed", "plain.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), np.arange(5))


def test_wrong_magic_names_the_file_and_both_numbers(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(bytes.fromhex("01020304") + bytes(8))
    with pytest.raises(DatasetError, match=r"bad-idx1-ubyte.*magic number 01 02 03 04"):
        read_idx(path)
    images = write_idx(tmp_path / "images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DatasetError, match=r"images-idx3-ubyte: wrong IDX magic number: "
                       r"expected 00 00 08 01 .*got 00 00 08 03"):
        read_idx(images, dtype=np.uint8, ndim=1)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file_and_sizes(tmp_path, gz):
    whole = write_idx(tmp_path / "whole", np.zeros((3, 2, 2), np.uint8)).read_bytes()
    path = tmp_path / ("cut.gz" if gz else "cut")
    if gz:
        path.write_bytes(gzip.compress(whole)[:-12])
        with pytest.raises(DatasetError, match=r"cut\.gz: corrupt or truncated gzip"):
            read_idx(path)
    else:
        path.write_bytes(whole[:-5])
        with pytest.raises(DatasetError, match=r"cut: truncated IDX file.*needs 12 bytes.*got 7"):
            read_idx(path)
    path.write_bytes(whole[:9])
    with pytest.raises(DatasetError, match=r"truncated IDX header: expected 16 bytes.*got 9"):
        read_idx(path)


def test_trailing_garbage_and_missing_file(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(write_idx(path, np.zeros(4, np.uint8)).read_bytes() + b"xyz")
    with pytest.raises(DatasetError, match=r"long: 3 bytes of trailing garbage"):
        read_idx(path)
    with pytest.raises(DatasetError, match=r"nothere: no such file"):
        read_idx(tmp_path / "nothere")


def idx_like_bytes():
    """Random bytes, and random bytes behind a plausible IDX header, each maybe gzipped and cut."""
    header = st.builds(lambda code, dims: bytes([0, 0, code, len(dims)]) + b"".join(
        d.to_bytes(4, "big") for d in dims),
        st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A]),
        st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), max_size=4))
    raw = st.binary(max_size=64) | st.builds(bytes.__add__, header, st.binary(max_size=200))
    gzipped = st.builds(lambda b, cut: gzip.compress(b)[:cut], raw, st.integers(0, 300))
    return raw | gzipped


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # tmp_path: overwritten
@given(blob=idx_like_bytes())
def test_any_bytes_read_or_raise_dataset_error(tmp_path, blob):
    path = tmp_path / "fuzz-idx3-ubyte"
    path.write_bytes(blob)
    try:
        array = read_idx(path)
    except DatasetError as err:
        assert str(path) in str(err)
    else:
        assert isinstance(array, np.ndarray) and array.flags.writeable


# --- IDX directories --------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_directory_gives_flat_scaled_images_and_int_labels(tmp_path, gz):
    root = make_idx_dir(tmp_path / "tiny", gz=gz)
    splits = load_idx_directory(root)
    x, y = splits["train"]
    assert x.shape == (60, ROWS * COLS) and x.dtype == np.float32
    assert y.shape == (60,) and y.dtype == np.int64 and y.tolist() == [i % 10 for i in range(60)]
    images = read_idx(root / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    np.testing.assert_array_equal(x, images.reshape(60, -1) / np.float32(255))
    assert x.min() >= 0 and x.max() <= 1
    assert splits["test"][0].shape == (20, ROWS * COLS)


def test_missing_file_lists_the_names_looked_for(tmp_path):
    root = make_idx_dir(tmp_path / "tiny")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"missing IDX file: looked for t10k-labels-idx1-ubyte, "
                       r"t10k-labels-idx1-ubyte\.gz"):
        load_idx_directory(root)


def test_kaggle_style_dotted_names_are_found(tmp_path):
    root = make_idx_dir(tmp_path / "tiny")
    for stem in STEMS:
        (root / stem).rename(root / stem.replace("-idx", ".idx"))
    assert load_idx_directory(root)["test"][1].shape == (20,)


def test_count_mismatch_names_both_files(tmp_path):
    root = make_idx_dir(tmp_path / "tiny")
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(59, np.uint8))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte holds 60 images but "
                       r".*train-labels-idx1-ubyte holds 59 labels"):
        load_idx_directory(root)


def test_labels_out_of_range_and_swapped_files(tmp_path):
    root = make_idx_dir(tmp_path / "tiny")
    write_idx(root / "t10k-labels-idx1-ubyte", np.full(20, 10, np.uint8))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: 20 labels outside 0\.\.9"):
        load_idx_directory(root)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros((20, ROWS, COLS), np.uint8))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: wrong IDX magic"):
        load_idx_directory(root)


# --- load_data --------------------------------------------------------------------------------

def test_validation_split_is_disjoint_complete_and_seeded(tmp_path):
    root = make_idx_dir(tmp_path / "mnistish", n_train=120)
    bundle = load_data(str(root), seed=3)
    train, valid = example_ids(bundle.train), example_ids(bundle.valid)
    assert len(valid) == 10 and len(train) == 110  # 120 / 12
    assert set(train).isdisjoint(valid) and sorted(train + valid) == list(range(120))
    assert bundle.train.y.tolist() == [i % 10 for i in train]  # labels travel with their images
    again = load_data(str(root), seed=3)
    assert torch.equal(again.train.x, bundle.train.x) and torch.equal(again.valid.y,
                                                                      bundle.valid.y)
    assert example_ids(load_data(str(root), seed=4).valid) != valid
    assert example_ids(bundle.test) == list(range(20))  # t10k, untouched and in file order
    assert (bundle.name, bundle.source) == ("mnistish", str(root.resolve()))
    assert (bundle.input_size, bundle.num_classes) == (ROWS * COLS, 10)


def test_limit_truncates_each_split_after_splitting(tmp_path):
    root = make_idx_dir(tmp_path / "tiny", n_train=120)
    full, small = load_data(f"idx:{root}"), load_data(str(root), limit=7)
    for name in ("train", "valid", "test"):
        assert len(getattr(small, name)) == 7
        assert torch.equal(getattr(small, name).x, getattr(full, name).x[:7])
    described = small.describe()
    assert described["sizes"] == {"train": 7, "valid": 7, "test": 7} and described["limit"] == 7
    json.dumps(described)


def test_digits_are_partitioned_into_three_stratified_splits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bundle = load_data("digits", seed=1)
    assert (bundle.name, bundle.input_size, bundle.num_classes) == ("digits", 64, 10)
    sizes = bundle.describe()["sizes"]
    assert sizes["test"] == 359 and sizes["valid"] == 120 and sum(sizes.values()) == 1797
    # The three splits together are exactly the data set: a partition, nothing seen twice.
    everything = torch.cat([bundle.train.x, bundle.valid.x, bundle.test.x])  # (1797, 64)
    expected = torch.from_numpy(sklearn_datasets.load_digits().data / 16).float()
    for got, want in zip(everything.unique(dim=0, return_counts=True),
                         expected.unique(dim=0, return_counts=True), strict=True):
        assert torch.equal(got, want)  # same rows, each as often (the set has duplicates)
    assert everything.min() >= 0 and everything.max() == 1
    per_class = bundle.test.y.bincount(minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # ~20 % of ~180 per class
    other_seed = load_data("digits", seed=2)
    assert torch.equal(other_seed.test.x, bundle.test.x)  # fixed test split for every seed
    assert not torch.equal(other_seed.valid.x, bundle.valid.x)


def test_bad_specs_explain_themselves(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"unknown data set 'mnist'.*'digits', 'fashion-mnist'"):
        load_data("mnist")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match=r"is a file, not a directory"):
        load_data(str(tmp_path / "file"))
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist")
    with pytest.raises(ValueError, match="valid_fraction"):
        load_data("digits", valid_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        load_data("digits", limit=0)


def test_split_checks_its_tensors():
    with pytest.raises(ValueError, match="float32"):
        Split(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64))


@pytest.mark.skipif(not data.FASHION_MNIST_DIR.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    root = data.FASHION_MNIST_DIR
    assert read_idx(root / "train-labels-idx1-ubyte.gz").shape == (60000,)
    assert np.bincount(read_idx(root / "t10k-labels-idx1-ubyte.gz")).tolist() == [1000] * 10
    bundle = load_data("fashion-mnist", limit=50)
    assert (bundle.input_size, bundle.num_classes) == (784, 10)
    assert bundle.describe()["sizes"] == {"train": 50, "valid": 50, "test": 50}
