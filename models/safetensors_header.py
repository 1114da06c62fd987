"""The header of a safetensors file, read and checked here before safetensors builds a tensor.

The format (https://huggingface.co/docs/safetensors/index#format): 8 bytes, a little-endian
unsigned length N; N bytes of JSON, an object mapping each tensor name to {"dtype", "shape",
"data_offsets": [begin, end]} (offsets into the data that follows the header), plus an optional
"__metadata__" object of strings; then the data. We parse it ourselves, so that a file whose
header lies (huge shapes, offsets past the end, overlapping tensors, a dtype other than the
manifest's) is refused with a message that says what is wrong, and nothing is allocated for it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from .artifact_errors import ArtifactError
from .config_checks import shown_value

# safetensors' dtype codes for the dtypes an artifact may hold, with torch's name and the bytes
# of one element.
DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2),
    "I8": ("int8", 1), "U8": ("uint8", 1), "BOOL": ("bool", 1),
}
ITEM_BYTES = {name: size for name, size in DTYPES.values()}
# A header lists each tensor in about 80 bytes; this bounds what is read before it is parsed.
MAX_HEADER_BYTES = 16 << 20
_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class TensorEntry:
    dtype: str  # torch's name: "float32"
    shape: tuple[int, ...]
    begin: int  # offsets into the data after the header
    end: int


def tensor_bytes(dtype: str, shape: list[int] | tuple[int, ...], limit: int) -> int | None:
    """Bytes of a tensor of ``dtype`` (a torch name) and ``shape`` (sizes >= 0), or None where
    they exceed ``limit``. Stops multiplying once past the limit: a header or manifest can list
    thousands of 19-digit sizes, whose full product would take long to compute."""
    if 0 in shape:
        return 0
    total = ITEM_BYTES[dtype]
    for size in shape:
        total *= size
        if total > limit:
            return None
    return total


def parse_header(data: bytes, shown: str) -> dict[str, TensorEntry]:
    """The tensors a safetensors file declares, after checking that the header is well formed
    and that the tensors tile the data exactly: each one's bytes are those its dtype and shape
    need, none overlaps another, and together they cover the data with nothing left over."""

    def refuse(reason: str) -> ArtifactError:
        return ArtifactError(f"{shown}: not a readable safetensors file: {reason}")

    if len(data) < _LENGTH.size:
        raise refuse(f"{len(data)} bytes, shorter than the 8-byte header length")
    (length,) = _LENGTH.unpack_from(data)
    if length > min(MAX_HEADER_BYTES, len(data) - _LENGTH.size):
        raise refuse(f"header length {length} exceeds the file ({len(data)} bytes) or "
                     f"{MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(data[_LENGTH.size:_LENGTH.size + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise refuse(f"header is not JSON: {type(error).__name__}") from None
    if not isinstance(header, dict):
        raise refuse(f"header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise refuse("__metadata__ must be an object of strings")
    entries = {name: _entry(name, value, refuse) for name, value in header.items()}
    data_bytes = len(data) - _LENGTH.size - length
    position = 0
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            raise refuse(f"tensor {name!r} starts at byte {entry.begin} of the data, expected "
                         f"{position} (tensors must tile the data without gaps or overlaps)")
        position = entry.end
    if position != data_bytes:
        raise refuse(f"the tensors cover {position} bytes of data, the file holds "
                     f"{data_bytes}")
    return entries


def _entry(name: str, value: Any, refuse) -> TensorEntry:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise refuse(f"tensor {name!r} must be {{dtype, shape, data_offsets}}")
    code, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise refuse(f"tensor {name!r} has dtype {shown_value(code, 16)}; allowed: "
                     f"{', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_natural(n) for n in shape):
        raise refuse(f"tensor {name!r} has a shape that is not a list of sizes >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_natural, offsets))
            or offsets[0] > offsets[1]):
        raise refuse(f"tensor {name!r} has data_offsets that are not [begin, end] with "
                     "0 <= begin <= end")
    dtype = DTYPES[code][0]
    span = offsets[1] - offsets[0]
    if tensor_bytes(dtype, shape, span) != span:
        raise refuse(f"tensor {name!r} spans {span} bytes, which its dtype {code} and shape "
                     f"{shape} do not fill exactly")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_against_manifest(entries: dict[str, TensorEntry],
                           manifest: dict[str, dict[str, Any]], shown: str) -> None:
    """The file holds exactly the tensors the manifest lists, with its shapes and dtypes."""
    missing = sorted(set(manifest) - set(entries))
    if missing:
        raise ArtifactError(f"{shown}: tensor(s) {', '.join(map(repr, missing))} listed in the "
                            "manifest are missing from the weights file")
    unexpected = sorted(set(entries) - set(manifest))
    if unexpected:
        raise ArtifactError(f"{shown}: tensor(s) {', '.join(map(repr, unexpected))} in the "
                            "weights file are not in the manifest")
    for key, expected in manifest.items():
        entry = entries[key]
        if list(entry.shape) != expected["shape"]:
            raise ArtifactError(f"{shown}: tensor {key!r} has shape {list(entry.shape)}, the "
                                f"manifest says {expected['shape']}")
        if entry.dtype != expected["dtype"]:
            raise ArtifactError(f"{shown}: tensor {key!r} has dtype {entry.dtype}, the manifest "
                                f"says {expected['dtype']}")
