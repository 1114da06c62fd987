"""Training subprocesses run a few at a time, with a callback that sees their progress.

Each job is a command with a run directory; its output goes to `<run_dir>/train.log`. The
studies (`training.reproduce`, `training.study`) describe what to train and how to summarise it;
this module only runs the commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def read_json(path: Path) -> Any:
    """A JSON file a training writes as it goes, or None while it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class Job:
    name: str
    # The command, or a function that builds it when the job starts (None: do not start it).
    command: list[str] | Callable[[], list[str] | None]
    run_dir: Path


def run_jobs(jobs: list[Job], parallel: int, threads: int,
             progress: Callable[[dict[str, str]], None], *, label: str = "jobs",
             every: float = 10.0) -> dict[str, str]:
    """Run `jobs`, `parallel` at a time with `threads` torch threads each; `progress(status)`
    is called every `every` seconds and at the end. Returns each job's final status: "done",
    "failed (exit code)", or "not started" where its command function declined."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    pending, active = list(jobs), {}
    status = {job.name: "pending" for job in jobs}
    started, last_report = time.time(), 0.0
    while pending or active:
        while pending and len(active) < parallel:
            job = pending.pop(0)
            command = job.command() if callable(job.command) else job.command
            if command is None:
                status[job.name] = "not started"
                continue
            job.run_dir.mkdir(parents=True, exist_ok=True)
            # Stays open while the child writes to it; closed when the child exits.
            log = open(job.run_dir / "train.log", "a")  # noqa: SIM115
            active[job.name] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                                 stderr=log), log)
            status[job.name] = "running"
            print(f"[{label}] started {job.name}", flush=True)
        for name, (proc, log) in list(active.items()):
            if proc.poll() is not None:
                log.close()
                status[name] = "done" if proc.returncode == 0 else f"failed ({proc.returncode})"
                print(f"[{label}] {name}: {status[name]} after {time.time() - started:.0f} s",
                      flush=True)
                del active[name]
        if time.time() - last_report > every or not (pending or active):
            progress(status)
            last_report = time.time()
        time.sleep(0.5)
    return status
