"""The paper's comparison on a real data set, over several seeds, resumable across sessions.

    python -m training.reproduce run --data fashion-mnist --seeds 0,1,2 --resume
    python -m training.reproduce report --summary runs/reproduce/summary.json --docs docs

`run` trains every run of the chosen groups (training.reproduce_specs; default: the paper's
table) once per seed with `sparsegate-train`, a few at a time, each in `WORK/<run>/seed-<n>`,
and keeps `WORK/summary.json` up to date while they train. Every run gets the same budget:
`--epochs` of training, then `--finetune-epochs` more (gated runs: the main path under frozen
deterministic gates; dense runs: more of the same training), and is reported per phase at its
best validation epoch. With `--resume`, finished runs are skipped and interrupted ones continue
from their last checkpoint, so a sweep can span sessions; `--session-seconds` starts no run after
that budget and stops the running ones within an epoch of it. `report` turns one or more
summaries into docs/reproduction.md and its plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .checkpoint import latest_checkpoint
from .jobs import Job, read_json, run_jobs
from .reproduce_specs import GROUPS, RunSpec, select

# No run starts with less than this left of the session: it would stop before its first epoch.
MIN_START_SECONDS = 60.0


def run_dir_of(work: Path, spec: RunSpec, seed: int) -> Path:
    return work / spec.name / f"seed-{seed}"


def finished(run_dir: Path, planned_epochs: int) -> bool:
    """True where the run trained all `planned_epochs` and reported its best epochs."""
    final = read_json(run_dir / "final.json")
    return bool(final) and final.get("epochs") == planned_epochs and "best_epochs" in final


def train_command(spec: RunSpec, seed: int, args: argparse.Namespace, run_dir: Path,
                  max_seconds: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "training.train_cli", "--preset", spec.preset,
           "--data", args.data, "--epochs", str(args.epochs),
           "--finetune-epochs", str(args.finetune_epochs), "--seed", str(seed),
           "--device", args.device, "--run-dir", str(run_dir), "--no-export", "--no-progress",
           "--name", spec.name, "--best-epoch-per-phase",
           # The comparison's own settings, whatever the presets' default recipes say: the
           # paper's batch, and stochastic gates for every training epoch.
           "--batch-size", "32", "--deterministic-epochs", "0"]
    if not spec.dense:
        cmd += ["--estimator", spec.estimator, "--density", str(spec.density)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if max_seconds is not None:
        cmd += ["--max-seconds", f"{max_seconds:.0f}"]
    if latest_checkpoint(run_dir) is not None:
        cmd.append("--resume")
    return [*cmd, *spec.extra]


def _state(run_dir: Path, planned: int, job_status: str) -> str:
    """finished, running, failed (exit code), paused (checkpoints, not finished) or pending."""
    if finished(run_dir, planned):
        return "finished"
    if job_status == "running" or job_status.startswith("failed"):
        return job_status
    return "paused" if latest_checkpoint(run_dir) is not None else "pending"


def _seed_record(run_dir: Path, planned: int, job_status: str) -> dict:
    log = run_dir / "train.log"
    return {"status": _state(run_dir, planned, job_status), "planned_epochs": planned,
            "history": read_json(run_dir / "metrics.json") or [],
            "final": read_json(run_dir / "final.json"),
            "log_tail": log.read_text()[-1500:] if log.exists() else ""}


def run(args: argparse.Namespace) -> int:
    try:
        specs = select(args.only, args.groups)
    except ValueError as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work)
    planned = args.epochs + args.finetune_epochs
    # Seed by seed: a sweep cut short holds every run of its first seeds, so the tables and
    # the claims already compare every model, over fewer seeds.
    plan = [(spec, seed, run_dir_of(work, spec, seed)) for seed in seeds for spec in specs]
    started_dirs = [d for _, _, d in plan if latest_checkpoint(d) is not None]
    if started_dirs and not args.resume:
        print(f"reproduce: {len(started_dirs)} run(s) under {work} already hold checkpoints "
              f"(e.g. {started_dirs[0]}): pass --resume to continue them, or use another "
              "--work", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    summary_path = Path(args.summary or work / "summary.json")
    started = time.time()

    def job_for(spec: RunSpec, seed: int, run_dir: Path) -> Job:
        def command() -> list[str] | None:
            budget = args.max_seconds
            if args.session_seconds is not None:
                left = args.session_seconds - (time.time() - started)
                if left < MIN_START_SECONDS:
                    return None
                budget = left if budget is None else min(budget, left)
            return train_command(spec, seed, args, run_dir, budget)

        return Job(f"{spec.name}/seed-{seed}", command, run_dir)

    skipped = {f"{s.name}/seed-{seed}" for s, seed, d in plan if finished(d, planned)}
    jobs = [job_for(s, seed, d) for s, seed, d in plan if f"{s.name}/seed-{seed}" not in skipped]

    def write_summary(status: dict[str, str]) -> None:
        runs: dict[str, dict] = {}
        for spec, seed, run_dir in plan:
            job_status = status.get(f"{spec.name}/seed-{seed}", "pending")
            entry = runs.setdefault(spec.name, {"spec": asdict(spec), "seeds": {}})
            entry["seeds"][str(seed)] = _seed_record(run_dir, planned, job_status)
        summary = {"settings": {"data": args.data, "epochs": args.epochs,
                                "finetune_epochs": args.finetune_epochs, "seeds": seeds,
                                "device": args.device, "jobs": args.jobs, "limit": args.limit,
                                "elapsed_seconds": time.time() - started,
                                "command": args.command_line},
                   "runs": runs}
        tmp = summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary))
        os.replace(tmp, summary_path)

    if skipped:
        print(f"[reproduce] {len(skipped)} run(s) already finished: skipped", flush=True)
    status = run_jobs(jobs, args.jobs, args.threads, write_summary, label="reproduce")
    failed = sorted(n for n, s in status.items() if s.startswith("failed"))
    left = [f"{s.name}/seed-{seed}" for s, seed, d in plan if not finished(d, planned)]
    print(f"[reproduce] {time.time() - started:.0f} s; summary {summary_path}; "
          f"{len(plan) - len(left)} of {len(plan)} runs finished"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + ("; run again with --resume to continue the rest" if left and not failed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train every run of the comparison, once per seed")
    r.add_argument("--data", default="fashion-mnist")
    r.add_argument("--epochs", type=int, default=20, help="training epochs of every run")
    r.add_argument("--finetune-epochs", type=int, default=3,
                   help="epochs after them, for every run: gated runs train the main path under "
                   "frozen deterministic gates, dense runs train on")
    r.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (at least 3 for "
                   "the report's spreads)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    r.add_argument("--threads", type=int, default=1, help="torch threads per training")
    r.add_argument("--limit", type=int, help="examples per split (quick checks)")
    r.add_argument("--max-seconds", type=float, help="time budget per training")
    r.add_argument("--session-seconds", type=float,
                   help="start no training after this long, and stop the running ones within "
                   "an epoch of it; --resume continues them next time")
    r.add_argument("--only", help="comma-separated run names")
    r.add_argument("--groups", help=f"comma-separated groups (default paper): "
                   f"{'; '.join(f'{k}: {v}' for k, v in GROUPS.items())}")
    r.add_argument("--work", default="runs/reproduce", help="run directories")
    r.add_argument("--summary", help="summary JSON (default: WORK/summary.json)")
    r.add_argument("--resume", action="store_true",
                   help="skip finished runs and continue interrupted ones from their checkpoints")
    rep = sub.add_parser("report", help="write docs/reproduction.md and plots from summaries")
    rep.add_argument("--summary", nargs="+", type=Path,
                     default=[Path("runs/reproduce/summary.json")],
                     help="one or more summaries; a later one's seeds replace an earlier one's")
    rep.add_argument("--docs", default="docs")
    args = parser.parse_args(argv)
    args.command_line = "python -m training.reproduce " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        return run(args)
    from .reproduce_report import write_report

    try:
        write_report(args.summary, Path(args.docs), args.command_line)
    except (OSError, ValueError) as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
