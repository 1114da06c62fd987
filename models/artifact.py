"""The one reader and writer of model artifacts (design.md, "Contracts: Model artifact").

An artifact is one folder per model version, laid out like a model repository:

    <repository>/<name>/<version>/config.json         what the model is, and a weights manifest
    <repository>/<name>/<version>/model.safetensors   the weights, and nothing else
    <repository>/<name>/<version>/<extra files>       e.g. model.onnx, where exported

The folder describes itself: the writer stores ``format_version``, ``name`` and ``version`` in
``config.json`` and the reader returns the config exactly as stored, inferring nothing from the
path. ``config.json`` also holds a manifest of the weights (file, sha256, and every tensor's
shape and dtype), so the reader refuses a weights file that was truncated, corrupted or swapped.

This module is generic over content: callers pass any JSON-serialisable config dict and a dict of
tensors (a state dict). Weights are read only through safetensors, which stores raw tensor bytes
and a JSON header, so reading an artifact never executes code.

Reading trusts nothing in the folder (see "reading" below): each file must be a regular file
that resolves inside the repository, its size is bounded before it is read, every JSON number
must be finite and within int64, and the safetensors header is checked against the manifest
before any tensor is built. The sha256 in messages is only ever the one a config records.

Names and versions are validated before they touch a path, so no request can reach outside the
repository. Writes are atomic: everything is written and fsynced in a temporary dot-folder beside
the final one, then renamed into place (swapped with the old folder, on an overwrite), so a
reader (or a crash) never sees half an artifact. A crash can leave a dot-folder behind; readers
ignore it and nothing deletes it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact_errors import ArtifactError
from .artifact_files import ArtifactFile, read_artifact_file, shown_path
from .config_checks import shown_value
from .safetensors_header import (
    MAX_HEADER_BYTES,
    check_against_manifest,
    parse_header,
    tensor_bytes,
)

__all__ = [
    "CONFIG_FILE", "FORMAT_VERSION", "MAX_CONFIG_BYTES", "MAX_WEIGHTS_BYTES", "RESERVED_KEYS",
    "WEIGHTS_FILE", "ArtifactError", "add_extra_files", "artifact_path", "list_versions",
    "parse_json", "read_artifact", "read_config", "read_extra_file", "shown_path",
    "validate_name", "validate_version", "write_artifact",
]

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Keys of config.json that the writer owns; values the caller passes under them are replaced, so
# a config read from one artifact can be written again as another version.
RESERVED_KEYS = ("format_version", "name", "version", "weights", "extra_files")

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_VERSION_PATTERN = re.compile(r"[0-9]{1,18}", re.ASCII)  # 18 digits: a version fits an int64
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}", re.ASCII)
# safetensors stores these; the float types cover model weights in every precision we train and
# serve in (float64 for the REINFORCE baseline moving averages), the others cover counters/masks.
# Named as torch names them. torch itself is imported only where tensors are written or built:
# reading a config and an artifact's extra files (a server serving model.onnx) needs no torch.
_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
           "uint8", "bool")
_HASH_CHUNK = 1 << 20
# A writer's temporary folder this old was left by a process killed mid-write (a write takes
# seconds to minutes): the next write into the same model folder deletes it.
STALE_TEMPORARY_SECONDS = 24 * 3600


# --- names, versions, paths -------------------------------------------------------------------


def validate_name(name: object) -> str:
    """Return ``name`` if it is a safe model name (one path component, no dot-folder), else
    raise ArtifactError."""
    if not isinstance(name, str):
        raise ArtifactError(f"model name must be a string, got {type(name).__name__} {name!r}")
    if name in (".", "..") or _NAME_PATTERN.fullmatch(name) is None:
        raise ArtifactError(
            f"invalid model name {name!r}: use 1 to 128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit")
    return name


def validate_version(version: object) -> str:
    """Return the canonical folder name of ``version`` (a positive integer, given as an int or a
    string of ASCII digits: 7, "7" and "007" all give "7"), else raise ArtifactError."""
    if isinstance(version, bool):  # bool is an int subclass; True is not version 1
        raise ArtifactError(f"model version must be a positive integer, got {version!r}")
    if isinstance(version, int):
        number = version
    elif isinstance(version, str) and _VERSION_PATTERN.fullmatch(version):
        number = int(version)
    else:
        raise ArtifactError(
            f"model version must be a positive integer (an int or a string of at most 18 "
            f"digits), got {version!r}")
    if not 0 < number < 10**18:
        raise ArtifactError(f"model version must be a positive integer below 10**18, "
                            f"got {version!r}")
    return str(number)


def artifact_path(repository: str | Path, name: object, version: object) -> Path:
    """``<repository>/<name>/<version>``, after validating name and version."""
    return Path(repository) / validate_name(name) / validate_version(version)


def list_versions(repository: str | Path, name: object) -> list[str]:
    """The published versions of model ``name``, in numeric order ("2" before "10").

    Only folders with a canonical version name and a config.json count: temporary dot-folders
    of writes in progress (or of crashed ones) and anything else in the folder are ignored."""
    model_dir = Path(repository) / validate_name(name)
    versions = []
    try:
        if not model_dir.is_dir():
            return []
        for entry in model_dir.iterdir():
            if (entry.name.startswith(".") or _VERSION_PATTERN.fullmatch(entry.name) is None
                    or str(int(entry.name)) != entry.name or int(entry.name) == 0):
                continue
            if entry.is_dir() and (entry / CONFIG_FILE).is_file():
                versions.append(entry.name)
    except OSError as error:  # e.g. a folder the server may not read: not an absolute path
        raise ArtifactError(f"{name}: cannot list the model's versions: "
                            f"{error.strerror or type(error).__name__}") from None
    return sorted(versions, key=int)


# --- writing ----------------------------------------------------------------------------------


def write_artifact(
    repository: str | Path,
    name: object,
    version: object,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    *,
    extra_files: Mapping[str, bytes] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<repository>/<name>/<version>/`` atomically and return its path.

    ``config`` must be JSON-serialisable with string keys and finite numbers; it is stored with
    the reserved keys (RESERVED_KEYS) set by the writer, and goes through JSON (tuples come back
    as lists). ``tensors`` are saved to model.safetensors (moved to CPU, made contiguous).
    ``extra_files`` maps plain file names (e.g. "model.onnx") to their bytes; their sha256 is
    recorded under ``extra_files`` in the config. An existing version is refused unless
    ``overwrite``, which replaces it so that readers see either the old folder or the new one.
    """
    name = validate_name(name)
    version = validate_version(version)
    repository = Path(repository)
    model_dir = repository / name
    final = model_dir / version
    cpu_tensors, manifest_tensors = _prepare_tensors(tensors, final)
    extras = _prepare_extra_files(extra_files, final)
    stored_config = _prepare_config(config, final)
    if os.path.lexists(final) and not overwrite:
        raise ArtifactError(f"{final}: version {version} of {name!r} already exists "
                            "(pass overwrite=True to replace it)")

    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(model_dir)
    temporary = _make_sibling_dir(model_dir, f".tmp-{version}-")
    try:
        import safetensors.torch

        weights_path = temporary / WEIGHTS_FILE
        safetensors.torch.save_file(cpu_tensors, str(weights_path), metadata={"format": "pt"})
        _fsync_file(weights_path)
        stored_config.update(
            format_version=FORMAT_VERSION,
            name=name,
            version=version,
            weights={"file": WEIGHTS_FILE, "sha256": _sha256_of_file(weights_path),
                     "tensors": manifest_tensors},
            extra_files={file_name: {"sha256": hashlib.sha256(data).hexdigest(),
                                     "size": len(data)}
                         for file_name, data in extras.items()},
        )
        text = json.dumps(stored_config, indent=2, sort_keys=True, allow_nan=False) + "\n"
        _write_file(temporary / CONFIG_FILE, text.encode("utf-8"))
        for file_name, data in extras.items():
            _write_file(temporary / file_name, data)
        _fsync_dir(temporary)
        _publish(temporary, final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def _prepare_config(config: object, final: Path) -> dict[str, Any]:
    """A JSON copy of ``config`` without the reserved keys; refuses what JSON cannot hold
    faithfully (NaN, infinities, non-string keys, objects JSON does not know)."""
    if not isinstance(config, Mapping):
        raise ArtifactError(f"{final}: config must be a dict, got {type(config).__name__}")
    _check_json_value(config, "config", final)
    try:
        text = json.dumps(dict(config), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{final}: config is not JSON-serialisable: {error}") from error
    stored = json.loads(text)
    for key in RESERVED_KEYS:
        stored.pop(key, None)
    return stored


def _check_json_value(value: object, where: str, final: Path) -> None:
    """Name the exact place of a value JSON would refuse or silently change."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(f"{final}: {where} is {value!r}; JSON (and this artifact) allows "
                            "only finite numbers")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArtifactError(f"{final}: {where} has a non-string key {key!r}; JSON "
                                    "object keys must be strings")
            _check_json_value(item, f"{where}[{key!r}]", final)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]", final)


def _prepare_tensors(
    tensors: object, final: Path
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """CPU, contiguous, unshared copies of ``tensors`` and their manifest entries."""
    import torch

    if not isinstance(tensors, Mapping):
        raise ArtifactError(f"{final}: tensors must be a dict of name -> torch.Tensor, got "
                            f"{type(tensors).__name__}")
    prepared, manifest = {}, {}
    for key, tensor in tensors.items():
        if not isinstance(key, str) or not key:
            raise ArtifactError(f"{final}: tensor names must be non-empty strings, got {key!r}")
        if not isinstance(tensor, torch.Tensor):
            raise ArtifactError(f"{final}: tensor {key!r} is a {type(tensor).__name__}, not a "
                                "torch.Tensor")
        dtype_name = str(tensor.dtype).removeprefix("torch.")
        if dtype_name not in _DTYPES:
            raise ArtifactError(f"{final}: tensor {key!r} has dtype {dtype_name}; allowed: "
                                f"{', '.join(_DTYPES)}")
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            raise ArtifactError(f"{final}: tensor {key!r} must be a dense tensor with data "
                                f"(layout {tensor.layout}, device {tensor.device})")
        # clone: safetensors refuses tensors that share memory (tied weights, views of one
        # buffer), and the copy cannot change under us while it is written.
        prepared[key] = tensor.detach().to("cpu").contiguous().clone()
        manifest[key] = {"dtype": dtype_name, "shape": list(tensor.shape)}
    return prepared, manifest


def _prepare_extra_files(extra_files: object, final: Path) -> dict[str, bytes]:
    if extra_files is None:
        return {}
    if not isinstance(extra_files, Mapping):
        raise ArtifactError(f"{final}: extra_files must be a dict of file name -> bytes, got "
                            f"{type(extra_files).__name__}")
    prepared = {}
    for file_name, data in extra_files.items():
        if (not isinstance(file_name, str) or _NAME_PATTERN.fullmatch(file_name) is None
                or file_name in (CONFIG_FILE, WEIGHTS_FILE)):
            raise ArtifactError(
                f"{final}: invalid extra file name {file_name!r}: use a plain file name of "
                f"A-Z a-z 0-9 . _ - (not {CONFIG_FILE} or {WEIGHTS_FILE})")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ArtifactError(f"{final}: extra file {file_name!r} must be bytes, got "
                                f"{type(data).__name__}")
        prepared[file_name] = bytes(data)
    return prepared


def _remove_stale_temporaries(model_dir: Path) -> None:
    """Delete `.tmp-` folders older than STALE_TEMPORARY_SECONDS (writes killed before their
    own cleanup could run). Younger ones may belong to a write in progress and stay; `.old-`
    folders stay too: after a crash between the two renames of an overwrite they hold the
    only copy of a version."""
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    for entry in model_dir.iterdir():
        try:
            if (entry.name.startswith(".tmp-") and entry.is_dir() and not entry.is_symlink()
                    and entry.stat().st_mtime < cutoff):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # gone meanwhile (another writer's cleanup): nothing to do
            continue


def _make_sibling_dir(parent: Path, prefix: str) -> Path:
    """A new, empty dot-folder in ``parent`` with a random suffix. Not tempfile.mkdtemp: that
    makes the folder private (0700), and the final folder keeps its permissions."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(8)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise ArtifactError(f"{parent}: could not create a temporary folder")  # pragma: no cover


def _publish(temporary: Path, final: Path, *, overwrite: bool) -> None:
    """Rename the finished folder into place (POSIX rename is atomic within one filesystem)."""
    model_dir = final.parent
    if not os.path.lexists(final):
        try:
            os.rename(temporary, final)
        except OSError as error:
            if os.path.lexists(final):  # another writer published this version meanwhile
                raise ArtifactError(f"{final}: version {final.name} of {model_dir.name!r} "
                                    "already exists") from error
            raise
        _fsync_dir(model_dir)
        return
    if not overwrite:
        raise ArtifactError(f"{final}: version {final.name} of {model_dir.name!r} already "
                            "exists (pass overwrite=True to replace it)")
    # Swap the new folder and the old one in one step, then delete the old one (now in the
    # temporary's place): a reader, or a crash at any moment, finds the old version or the new.
    if _exchange(temporary, final):
        _fsync_dir(model_dir)
        shutil.rmtree(temporary, ignore_errors=True)
        return
    # Where the system cannot swap: move the old folder aside, move the new one in, then delete
    # the old one; if the second rename fails, put the old one back. Readers see the old folder
    # or the new one, never a mixture; in between, briefly, no folder at all, and a crash there
    # leaves the version only in the .old- dot-folder.
    aside = model_dir / f".old-{final.name}-{secrets.token_hex(8)}"
    os.rename(final, aside)
    try:
        os.rename(temporary, final)
    except BaseException:
        os.rename(aside, final)
        raise
    _fsync_dir(model_dir)
    shutil.rmtree(aside, ignore_errors=True)


# renameat2(2) flag and "relative to the working directory" (linux/fs.h, fcntl.h).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2():
    """The C library's renameat2 (Linux, glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two existing paths (renameat2 with RENAME_EXCHANGE); False where the
    system cannot: not Linux, an older C library or kernel, or a filesystem without it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (new files, renames) durable. POSIX only: Windows cannot open
    a folder for fsync."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading ----------------------------------------------------------------------------------
#
# Everything read is untrusted: a repository may hold folders copied from anywhere. Each file is
# opened as a regular file inside the repository (artifact_files.ArtifactFile: no symlink out,
# no FIFO or device, never a blocking open), its size is bounded before a byte is read, every
# JSON number is a finite float or an integer within int64, and the weights' header is checked
# against the manifest before safetensors builds a tensor. Messages name files relative to the
# repository when the caller passes one (a server does), so no error shows where files live,
# and never give the hash of what a file holds (only the one its config records).

# config.json describes a model and lists its tensors: a few kilobytes for every model trained
# here; this bound leaves room for thousands of tensors and long provenance.
MAX_CONFIG_BYTES = 1 << 20
# The largest weights file (and extra file) a reader accepts: 4 GiB is a billion float32
# weights, far beyond the networks served here. A file is further bounded by what its manifest
# (checked by the caller against the architecture) says it holds.
MAX_WEIGHTS_BYTES = 4 << 30
_INT64_LIMIT = 2**63


def read_artifact(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    repository: str | Path | None = None,
    check_config: Callable[[dict[str, Any]], None] | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read an artifact folder: its config as stored, and its tensors on ``device``.

    ``repository``: the model repository the folder lies in. Files must resolve inside it (by
    default inside the folder itself), and messages name paths relative to it.
    ``check_config``: called with the config before the weights file is opened, to refuse (with
    ArtifactError) a config whose manifest does not describe what the caller will build.
    ``config``: the folder's config.json as ``read_config`` returned it, where the caller read
    it already; the weights are then verified against that very config, not a second reading.

    Refuses (ArtifactError) a missing folder or file, a file that is not a regular file inside
    the repository, a config that is too large or not valid JSON, a format_version that is
    missing or newer than FORMAT_VERSION, a malformed weights manifest, a weights file larger
    than its manifest needs, whose sha256 differs from the manifest's or whose safetensors
    header is malformed, and any tensor missing, unexpected, or of another shape or dtype than
    the manifest says.
    """
    folder = Path(folder)
    root = folder if repository is None else Path(repository)
    if config is None:
        config = read_config(folder, repository=repository)
    config_shown = shown_path(folder / CONFIG_FILE, repository)
    weights, needed = _validate_manifest(config, config_shown)
    if check_config is not None:
        check_config(config)
    weights_shown = shown_path(folder / WEIGHTS_FILE, repository)
    with ArtifactFile(folder / WEIGHTS_FILE, root=root, shown=weights_shown,
                      what="weights file") as file:
        # The header is the only part the manifest does not size.
        limit = 8 + MAX_HEADER_BYTES + needed
        if file.size > limit:
            raise ArtifactError(
                f"{weights_shown}: weights file holds {file.size} bytes, more than the "
                f"{needed} bytes of tensors its manifest lists need (plus a header of at most "
                f"{MAX_HEADER_BYTES}); refused without reading it")
        data = file.read(limit)
    # Hash and parse the same bytes, so the weights checked are the weights returned even if the
    # folder is replaced while we read.
    if hashlib.sha256(data).hexdigest() != weights["sha256"]:
        raise ArtifactError(
            f"{weights_shown}: sha256 of the file does not match {weights['sha256']} recorded "
            f"in {CONFIG_FILE}; the weights file is corrupt or was changed after writing")
    check_against_manifest(parse_header(data, weights_shown), weights["tensors"], weights_shown)
    import safetensors.torch
    import torch

    try:
        tensors = safetensors.torch.load(data)
    except Exception as error:  # safetensors raises SafetensorError, or others on odd headers
        raise ArtifactError(f"{weights_shown}: not a readable safetensors file: "
                            f"{error}") from error
    _check_tensors_against_manifest(tensors, weights["tensors"], weights_shown)
    if torch.device(device).type != "cpu":
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    return config, tensors


def read_config(folder: str | Path, *, repository: str | Path | None = None) -> dict[str, Any]:
    """The config.json of an artifact folder, as stored, after checking that it is a JSON object
    of a format this reader supports. Does not read or verify the weights. ``repository``: as
    for read_artifact."""
    folder = Path(folder)
    shown = shown_path(folder, repository)
    if not folder.is_dir():
        raise ArtifactError(f"{shown}: artifact folder does not exist"
                            if not folder.exists() else f"{shown}: not a folder")
    shown = shown_path(folder / CONFIG_FILE, repository)
    data = read_artifact_file(folder / CONFIG_FILE, root=folder if repository is None
                              else repository, shown=shown, what="config file",
                              max_bytes=MAX_CONFIG_BYTES)
    config = parse_json(data, shown, "config")
    if "format_version" not in config:
        raise ArtifactError(f"{shown}: no format_version; not a sparsegate artifact config")
    format_version = config["format_version"]
    if not isinstance(format_version, int) or isinstance(format_version, bool) \
            or format_version < 1:
        raise ArtifactError(f"{shown}: format_version must be a positive integer, got "
                            f"{shown_value(format_version)}")
    if format_version > FORMAT_VERSION:
        raise ArtifactError(f"{shown}: format_version {format_version} is newer than this "
                            f"reader supports ({FORMAT_VERSION}); upgrade sparsegate to read it")
    for key, check in (("name", validate_name), ("version", validate_version)):
        if key not in config:
            raise ArtifactError(f"{shown}: config has no {key!r}")
        try:
            check(config[key])
        except ArtifactError as error:
            raise ArtifactError(f"{shown}: {error}") from error
    return config


def parse_json(data: bytes, shown: str, what: str) -> dict[str, Any]:
    """A JSON object read from an artifact file, as strictly as config.json is read: UTF-8,
    finite numbers only, integers within int64. ``what`` names the content in messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArtifactError(f"{shown}: {what} is not UTF-8 text: {error}") from error
    try:
        value = json.loads(text, parse_constant=_refuse_json_constant,
                           parse_float=_finite_json_float, parse_int=_int64_json_int)
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{shown}: invalid JSON at line {error.lineno} column {error.colno} "
                            f"(character {error.pos}): {error.msg}") from error
    except ValueError as error:
        raise ArtifactError(f"{shown}: invalid JSON: {error}") from error
    except RecursionError:
        raise ArtifactError(f"{shown}: invalid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{shown}: {what} must be a JSON object, got "
                            f"{type(value).__name__}")
    return value


def _refuse_json_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not allowed (only finite numbers)")


def _finite_json_float(text: str) -> float:
    """JSON reads 1e400 as infinity: refuse it, like the NaN and Infinity tokens."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is beyond the floats (only finite numbers)")
    return number


def _int64_json_int(text: str) -> int:
    """Integers within int64: every count, size and version an artifact holds is; a larger one
    (10**400 is valid JSON) is an edited config, refused before any field check sees it."""
    number = int(text)  # more than 4,300 digits: ValueError from Python itself
    if not -_INT64_LIMIT <= number < _INT64_LIMIT:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is out of range "
                         "(only integers within int64)")
    return number


def _validate_manifest(config: dict[str, Any], shown: str) -> tuple[dict[str, Any], int]:
    """The weights manifest of ``config``, after checking its structure, and the bytes its
    tensors need (at most MAX_WEIGHTS_BYTES)."""
    weights = config.get("weights")
    if not isinstance(weights, dict):
        raise ArtifactError(f"{shown}: config has no 'weights' manifest object")
    if weights.get("file") != WEIGHTS_FILE:
        raise ArtifactError(f"{shown}: weights.file must be {WEIGHTS_FILE!r}, got "
                            f"{shown_value(weights.get('file'))}")
    sha256 = weights.get("sha256")
    if not isinstance(sha256, str) or _SHA256_PATTERN.fullmatch(sha256) is None:
        raise ArtifactError(f"{shown}: weights.sha256 must be 64 lowercase hex digits, got "
                            f"{shown_value(sha256)}")
    entries = weights.get("tensors")
    if not isinstance(entries, dict):
        raise ArtifactError(f"{shown}: weights.tensors must be an object of name -> "
                            "{shape, dtype}")
    needed = 0
    for key, entry in entries.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if (not isinstance(shape, list)
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                           for n in shape)
                or not isinstance(dtype, str) or dtype not in _DTYPES):  # [] is unhashable
            raise ArtifactError(f"{shown}: weights.tensors[{key!r}] must be {{\"shape\": [sizes "
                                f">= 0], \"dtype\": one of {', '.join(_DTYPES)}}}, got "
                                f"{shown_value(entry)}")
        size = tensor_bytes(dtype, shape, MAX_WEIGHTS_BYTES - needed)
        if size is None:
            raise ArtifactError(f"{shown}: weights.tensors need more than {MAX_WEIGHTS_BYTES} "
                                f"bytes (at {key!r}), more than an artifact may hold")
        needed += size
    return weights, needed


def _check_tensors_against_manifest(
    tensors: dict[str, torch.Tensor], manifest: dict[str, dict[str, Any]], shown: str
) -> None:
    """What safetensors built is what the header (checked against the manifest) declared."""
    for key, entry in manifest.items():
        tensor = tensors.get(key)
        if (tensor is None or list(tensor.shape) != entry["shape"]
                or str(tensor.dtype).removeprefix("torch.") != entry["dtype"]):
            raise ArtifactError(f"{shown}: tensor {key!r} read from the weights file differs "
                                "from its manifest entry")
    if set(tensors) != set(manifest):
        raise ArtifactError(f"{shown}: the weights file holds other tensors than its manifest "
                            "lists")


def read_extra_file(folder: str | Path, file_name: str, *,
                    repository: str | Path | None = None, max_bytes: int = MAX_WEIGHTS_BYTES,
                    config: dict[str, Any] | None = None) -> bytes:
    """The bytes of an extra file of an artifact (e.g. "model.onnx"), verified against the
    size and sha256 recorded in its config. ``repository``: as for read_artifact.
    ``max_bytes``: a file recorded, or found, larger than this is refused before it is read.
    ``config``: the folder's config.json as ``read_config`` returned it, where the caller read
    it already (the file is then checked against that very config)."""
    folder = Path(folder)
    if config is None:
        config = read_config(folder, repository=repository)
    shown = shown_path(folder / CONFIG_FILE, repository)
    extras = config.get("extra_files", {})
    if not isinstance(extras, dict):
        raise ArtifactError(f"{shown}: extra_files must be an object")
    entry = extras.get(file_name) if isinstance(file_name, str) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ArtifactError(f"{shown}: no extra file {shown_value(file_name)} recorded "
                            f"(recorded: {', '.join(sorted(extras)) or 'none'})")
    # Recorded names were validated by the writer; validate again, the config may be edited.
    if _NAME_PATTERN.fullmatch(file_name) is None or file_name in (CONFIG_FILE, WEIGHTS_FILE):
        raise ArtifactError(f"{shown}: invalid extra file name {file_name!r}")
    recorded_size = entry.get("size")
    max_bytes = min(max_bytes, MAX_WEIGHTS_BYTES)
    if recorded_size is not None and not (isinstance(recorded_size, int)
                                          and not isinstance(recorded_size, bool)
                                          and 0 <= recorded_size <= max_bytes):
        raise ArtifactError(f"{shown}: extra_files[{file_name!r}].size must be a size in bytes "
                            f"up to {max_bytes}, got {shown_value(recorded_size)}")
    file_shown = shown_path(folder / file_name, repository)
    with ArtifactFile(folder / file_name, root=folder if repository is None else repository,
                      shown=file_shown, what="extra file") as file:
        if recorded_size is not None and file.size != recorded_size:
            raise ArtifactError(f"{file_shown}: extra file holds {file.size} bytes, "
                                f"{CONFIG_FILE} records {recorded_size}; the file is corrupt "
                                "or was changed")
        data = file.read(max_bytes if recorded_size is None else recorded_size)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ArtifactError(f"{file_shown}: sha256 of the file does not match "
                            f"{shown_value(entry['sha256'])} recorded in {CONFIG_FILE}; the "
                            "file is corrupt or was changed")
    return data


# --- rewriting ----------------------------------------------------------------------------


def add_extra_files(repository: str | Path, name: object, version: object,
                    extra_files: Mapping[str, bytes]) -> Path:
    """Rewrite a published version with `extra_files` added (or replacing files of the same
    names), atomically, like any overwrite: its config, weights and other extra files are
    kept, each verified as it is read. Returns the folder."""
    folder = artifact_path(repository, name, version)
    config, tensors = read_artifact(folder)
    kept = {file_name: read_extra_file(folder, file_name, config=config)
            for file_name in (config.get("extra_files") or {}) if file_name not in extra_files}
    return write_artifact(repository, name, version, config, tensors,
                          extra_files={**kept, **extra_files}, overwrite=True)
