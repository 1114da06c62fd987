"""Reader and writer for the IDX format of MNIST and its look-alikes (Fashion-MNIST, KMNIST).

Layout (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a 4-byte magic number
``00 00 <type code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the values in C order,
big-endian. Files are often gzip-compressed; we recognise that by gzip's own magic bytes (1f 8b),
not by the name, so a mis-named file still reads.

Every problem with a file is a ``DatasetError`` that names the file, because the usual failure is
a half-downloaded or mis-named file, and the user needs to know which one to fetch again.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A data set cannot be found or read; the message names the file or spec at fault."""


def _describe_magic(code: int, ndim: int) -> str:
    dtype = IDX_DTYPES.get(code)
    kind = dtype.name if dtype is not None else "unknown type"
    return f"{code:02x} = {kind}, {ndim} dimension{'s' if ndim != 1 else ''}"


def _type_code(dtype: str | np.dtype) -> int | None:
    big_endian = np.dtype(dtype).newbyteorder(">")
    return next((c for c, d in IDX_DTYPES.items() if d == big_endian), None)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, not an IDX file") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read: {err}") from err
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: corrupt or truncated gzip stream: {err}") from err


def read_idx(path: str | Path, *, dtype: str | np.dtype | None = None,
             ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a writable, native-byte-order array.

    ``dtype`` and ``ndim``, where given, are what the caller expects (e.g. uint8 and 3 for
    ``*-idx3-ubyte`` images); a file that declares anything else is rejected with the expected
    and actual magic number, which catches swapped image and label files early.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(
            f"{path}: truncated IDX header: expected at least 4 bytes, got {len(data)}")
    zero0, zero1, code, dims_count = data[:4]
    got = f"{data[:4].hex(' ')} ({_describe_magic(code, dims_count)})"
    if zero0 or zero1 or code not in IDX_DTYPES:
        raise DatasetError(
            f"{path}: not an IDX file: bad magic number {got}; expected 00 00 <type code> "
            f"<ndim> with a type code in {', '.join(f'{c:02x}' for c in IDX_DTYPES)}")
    if dtype is not None or ndim is not None:
        want_code = _type_code(dtype) if dtype is not None else code
        if want_code is None:
            raise ValueError(f"IDX has no type code for dtype {np.dtype(dtype)}")
        want_ndim = ndim if ndim is not None else dims_count
        if (want_code, want_ndim) != (code, dims_count):
            expected = f"{bytes([0, 0, want_code, want_ndim]).hex(' ')} " \
                       f"({_describe_magic(want_code, want_ndim)})"
            raise DatasetError(f"{path}: wrong IDX magic number: expected {expected}, got {got}")

    header_size = 4 + 4 * dims_count
    if len(data) < header_size:
        raise DatasetError(f"{path}: truncated IDX header: expected {header_size} bytes for "
                           f"{dims_count} dimensions, got {len(data)}")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims_count, offset=4))
    item = IDX_DTYPES[code]
    # math.prod of Python ints: up to 255 uint32 sizes must not overflow before we compare.
    expected = item.itemsize * math.prod(shape)
    payload = len(data) - header_size
    if payload < expected:
        raise DatasetError(f"{path}: truncated IDX file: shape {shape} of {item.name} needs "
                           f"{expected} bytes of data after the header, got {payload}")
    if payload > expected:
        raise DatasetError(f"{path}: {payload - expected} bytes of trailing garbage after the "
                           f"{expected} bytes of data that shape {shape} of {item.name} needs")
    try:
        values = np.frombuffer(data, dtype=item, offset=header_size).reshape(shape)
    except ValueError as err:  # e.g. a zero dimension beside dimensions numpy cannot index
        raise DatasetError(f"{path}: cannot hold shape {shape} of {item.name}: {err}") from None
    # astype copies: the result is writable (torch.from_numpy warns otherwise) and native-endian.
    return values.astype(item.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    The inverse of ``read_idx``: useful for tests and for exporting one's own data in the format
    that MNIST tools read.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _type_code(array.dtype)
    if code is None:
        raise DatasetError(f"{path}: IDX cannot store dtype {array.dtype}; use one of "
                           f"{', '.join(d.name for d in IDX_DTYPES.values())}")
    if array.ndim > 255 or any(s >= 2**32 for s in array.shape):
        raise DatasetError(f"{path}: IDX cannot store shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0: identical input, identical bytes
    path.write_bytes(data)
    return path
