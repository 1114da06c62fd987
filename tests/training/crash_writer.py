"""Run by test_export_faults.py in a fresh process: write or export an artifact and die by
SIGKILL at a chosen moment, as a power cut, the OOM killer or `kill -9` would stop it.

    python -m tests.training.crash_writer TEMPLATE WORK MODE

For k = 1, 2, ...: copy the repository TEMPLATE to WORK/event-<k>, fork, and let the child
write the artifact and kill itself just before its k-th filesystem operation; stop at the first
k the child outlives. Then one child per file that dies halfway through writing it
(WORK/partial-<file>). Prints {point: "killed" | "finished" | ...} as JSON. This process runs
nothing multi-threaded before it forks (onnxruntime's pool starts in each child), and a child
that hangs anyway is killed after CHILD_TIMEOUT_S and reported "hung".

MODE: "new" writes version 3 of model "tiny" (v1's config and weights, NEW_ONNX); "overwrite"
rewrites version 2 with a marker in its config and NEW_ONNX, as the ONNX export does;
"two-renames" is "overwrite" on a system that cannot swap folders in one step; "export" runs
`training.onnx_export.export_to_artifact` on version 2 (whose writer is
`models.skip.onnx_export.write_artifact`).

A filesystem operation is a Python audit event (docs.python.org/3/library/audit_events.html) that
touches the filesystem: an open (for reading too), a mkdir, a rename, a removal, the
start of an rmtree, or a C call (the renameat2 that swaps folders). A kill before the k-th of
them covers every step of the writer without knowing its code; what one step writes is whole
once it returns (SIGKILL does not lose the page cache), so torn files come from the partial
points.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import safetensors.torch

import models.artifact as artifact

NEW_ONNX = b"new model.onnx bytes " * 64
FILESYSTEM_EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree",
                     "os.truncate", "os.link", "os.symlink", "os.chmod", "ctypes.call_function"}
PARTIAL_FILES = ("model.safetensors", "config.json", "model.onnx")
CHILD_TIMEOUT_S = 60.0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_before_event(k: int) -> None:
    """Arm an audit hook that kills this process just before its k-th filesystem operation."""
    seen = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if event in FILESYSTEM_EVENTS:
            seen += 1
            if seen == k:
                die()

    sys.addaudithook(hook)  # cannot be removed: arm it only right before the write


def die_halfway_through(file_name: str) -> None:
    """Make the writer die after writing, and syncing, half of `file_name`."""
    if file_name == artifact.WEIGHTS_FILE:
        def save_half(tensors, filename, metadata=None):
            data = safetensors.torch.save(tensors, metadata=metadata)
            write_half(Path(filename), data)

        safetensors.torch.save_file = save_half
        return
    real_write = artifact._write_file

    def write(path: Path, data: bytes) -> None:
        if path.name == file_name:
            write_half(path, data)
        real_write(path, data)

    artifact._write_file = write


def write_half(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data[:len(data) // 2])
        file.flush()
        os.fsync(file.fileno())
    die()


def write(repository: Path, mode: str, arm) -> None:
    """Write as `mode` says, calling `arm()` just before the writer starts."""
    if mode == "export":
        from models.skip import onnx_export
        from training.onnx_export import export_to_artifact

        real_write_artifact = onnx_export.write_artifact

        def armed_write_artifact(*args, **kwargs):
            arm()
            return real_write_artifact(*args, **kwargs)

        onnx_export.write_artifact = armed_write_artifact
        export_to_artifact(repository, "tiny", 2)
        return
    source, version = (1, 3) if mode == "new" else (2, 2)
    config, tensors = artifact.read_artifact(repository / "tiny" / str(source))
    if mode != "new":
        config["marker"] = "new"
    if mode == "two-renames":
        artifact._exchange = lambda first, second: False
    arm()
    artifact.write_artifact(repository, "tiny", version, config, tensors,
                            extra_files={"model.onnx": NEW_ONNX}, overwrite=mode != "new")


def arming(point: str):
    kind, _, value = point.partition("-")
    if kind == "event":
        return lambda: die_before_event(int(value))
    return lambda: die_halfway_through(value)


def run_child(repository: Path, mode: str, point: str) -> str:
    """Fork a child that writes and dies at `point`; "killed" or "finished"."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            write(repository, mode, arming(point))
        except BaseException as error:
            print(f"{point}: {type(error).__name__}: {error}", file=sys.stderr)
            os._exit(3)
        os._exit(0)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.005)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "finished" if os.WEXITSTATUS(status) == 0 else f"failed {os.WEXITSTATUS(status)}"


def sweep(template: Path, work: Path, mode: str) -> dict[str, str]:
    outcomes = {}
    for k in range(1, 200):
        repository = work / f"event-{k}"
        shutil.copytree(template, repository)
        outcomes[f"event-{k}"] = run_child(repository, mode, f"event-{k}")
        if outcomes[f"event-{k}"] != "killed":
            break
    for file_name in PARTIAL_FILES:
        repository = work / f"partial-{file_name}"
        shutil.copytree(template, repository)
        outcomes[f"partial-{file_name}"] = run_child(repository, mode, f"partial-{file_name}")
    return outcomes


def main(argv: list[str]) -> None:
    template, work, mode = argv
    if mode == "export":
        import onnxruntime  # noqa: F401  (imported once here, not in every child)
    print(json.dumps(sweep(Path(template), Path(work), mode)))


if __name__ == "__main__":
    main(sys.argv[1:])
