"""Opening one file of an artifact without trusting the folder it lies in.

A model repository may hold folders copied from anywhere, so a file named config.json or
model.safetensors can be anything: a symlink to a file outside the repository (whose content,
or hash, an error message would then reveal), a symlink to /dev/zero (endless), a FIFO (a read
blocks until someone writes), a folder, or a sparse file of terabytes. `ArtifactFile` opens only
a regular file that resolves inside the given root, without following a final symlink and
without blocking (O_NOFOLLOW | O_NONBLOCK: opening a FIFO for reading would otherwise wait for
a writer), checks what it opened with fstat, and reads at most a size the caller bounds before
reading.

`shown_path` is how every message names a file: relative to the model repository when the
caller names one, so a server's errors never say where its files live.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .artifact_errors import ArtifactError

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_READ_CHUNK = 1 << 24


def shown_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` (the model repository) where it lies inside it; the last
    two components and the file otherwise. Without a root, the path as the caller gave it."""
    path = Path(path)
    if root is None:
        return str(path)
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return Path(*path.parts[-3:]).as_posix()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ArtifactFile:
    """An open regular file of an artifact, inside ``root`` (the containment boundary: the model
    repository, or the artifact folder itself where no repository is named). Use as a context
    manager; ``size`` is its size when opened; ``read(max_bytes)`` reads all of it."""

    def __init__(self, path: str | Path, *, root: str | Path, shown: str, what: str) -> None:
        self.shown, self.what = shown, what
        # Resolve every symlink on the way (folders included): a link is followed only where
        # it ends inside the root. The message does not say where a link outside points.
        real = os.path.realpath(path)
        if not _inside(real, os.path.realpath(root)):
            raise ArtifactError(f"{shown}: {what} is a link to a file outside the model "
                                "repository; refused")
        try:
            # O_NOFOLLOW: a final component swapped for a symlink after the check is refused
            # (ELOOP), not followed.
            self._fd = os.open(real, _OPEN_FLAGS)
        except FileNotFoundError:
            raise ArtifactError(f"{shown}: {what} is missing") from None
        except OSError as error:
            raise ArtifactError(f"{shown}: cannot open the {what}: "
                                f"{error.strerror or type(error).__name__}") from None
        try:
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode):
                raise ArtifactError(f"{shown}: {what} is {_kind(info.st_mode)}, not a regular "
                                    "file; refused")
        except BaseException:
            os.close(self._fd)
            raise
        self.size = info.st_size

    def read(self, max_bytes: int) -> bytes:
        """All of the file, refusing it if it holds (or grows to) more than ``max_bytes``."""
        if self.size > max_bytes:
            raise ArtifactError(f"{self.shown}: {self.what} holds {self.size} bytes, more than "
                                f"the {max_bytes} it may hold; refused without reading it")
        chunks, total = [], 0
        try:
            while True:
                chunk = os.read(self._fd, min(_READ_CHUNK, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise ArtifactError(f"{self.shown}: {self.what} grew past {max_bytes} "
                                        "bytes while being read; refused")
        except OSError as error:
            raise ArtifactError(f"{self.shown}: cannot read the {self.what}: "
                                f"{error.strerror or type(error).__name__}") from None
        return b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ArtifactFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_artifact_file(path: str | Path, *, root: str | Path, shown: str, what: str,
                       max_bytes: int) -> bytes:
    """Open ``path`` as an ArtifactFile and read it whole, at most ``max_bytes``."""
    with ArtifactFile(path, root=root, shown=shown, what=what) as file:
        return file.read(max_bytes)
