"""The paper's comparison on a real data set, and the block-gated stack against density.

    python -m training.reproduce run --data fashion-mnist --epochs 20 --jobs 2
    python -m training.reproduce report --summary runs/reproduce/summary.json --docs docs

`run` trains every model of RUNS with `sparsegate-train` in parallel subprocesses (same data,
seed and optimiser settings for all: the paper's SGD, learning rate 0.1, batch 32, max-norm 2)
and keeps `summary.json` up to date while they train, so even a run cut short leaves its
learning curves behind. `report` turns a summary into docs/reproduction.md and two PNG plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .jobs import Job, read_json, run_jobs


@dataclass(frozen=True)
class RunSpec:
    name: str
    preset: str
    estimator: str = "st"
    density: float = 0.1
    group: str = "paper"  # "paper": the 10 % comparison; "adam": the same with Adam;
    # "blocks": the block-gated stack's error against density
    paper_mnist_error: float | None = None  # the paper's MNIST test error, percent
    note: str = ""
    extra: tuple[str, ...] = field(default_factory=tuple)


RUNS = [
    RunSpec("noisy-rectifier", "paper", "noisy-rectifier", paper_mnist_error=1.87,
            note="paper: noisy rectifier (sigma = 1), adaptive L1"),
    RunSpec("straight-through", "paper", "st", paper_mnist_error=1.39,
            note="paper: straight-through, KL"),
    RunSpec("stochastic-times-smooth", "paper", "sts", paper_mnist_error=1.96,
            note="paper: STS, KL"),
    RunSpec("reinforce", "paper", "reinforce", paper_mnist_error=1.89,
            note="paper: unbiased, per-unit baseline, KL"),
    RunSpec("rectifier-baseline", "paper", "rectifier", paper_mnist_error=1.60,
            note="paper: noise-free rectifier, L1 held at 10 %"),
    RunSpec("dense-200-sigmoid", "dense-200-sigmoid", density=1.0, paper_mnist_error=1.92,
            note="paper: dense 200-unit sigmoid MLP"),
    RunSpec("dense-2000-relu", "dense-2000-relu", density=1.0,
            note="dense 2000-unit rectifier MLP: what the gated models must come close to"),
    RunSpec("st-sigmoid", "paper", "st-sigmoid", note="paper's worse ST variant"),
    RunSpec("gumbel-st", "paper", "gumbel-st", note="beyond the paper"),
    RunSpec("hard-concrete", "paper", "hard-concrete", note="beyond the paper"),
    RunSpec("rloo", "paper", "rloo", note="beyond the paper: 4 draws per example"),
    RunSpec("disarm", "paper", "disarm", note="beyond the paper: 2 antithetic draws"),
] + [
    # The same comparison with Adam (learning rate 1e-3, no max-norm), for gated and dense
    # alike: the paper's plain SGD is not what one would train these with today.
    RunSpec(f"{name}-adam", preset, estimator, density=density, group="adam", note=note,
            extra=("--optimizer", "adam", "--lr", "0.001", "--max-norm", "0"))
    for name, preset, estimator, density, note in [
        ("dense-2000-relu", "dense-2000-relu", "st", 1.0, "dense reference"),
        ("straight-through", "paper", "st", 0.1, ""),
        ("noisy-rectifier", "paper", "noisy-rectifier", 0.1, ""),
        ("reinforce", "paper", "reinforce", 0.1, ""),
        ("hard-concrete", "paper", "hard-concrete", 0.1, "beyond the paper"),
        ("rloo", "paper", "rloo", 0.1, "beyond the paper"),
    ]
] + [
    # Max-norm 2 is the paper's constraint for its one layer; it caps the 4096-wide stack's
    # weights far below a working scale (59 % validation error after one epoch with it). Without
    # it, SGD at learning rate 0.1 diverged (NaN loss in epoch 1 at 5 % and 10 % density, on an
    # H100 run), so the stack trains with Adam.
    RunSpec(f"blocks-{round(d * 100)}", "blocks", "st", density=d, group="blocks",
            note="2 gated layers of 64 blocks x 64 units",
            extra=("--optimizer", "adam", "--lr", "0.001", "--max-norm", "0"))
    for d in (0.05, 0.1, 0.25, 0.5, 1.0)
]


def _command(spec: RunSpec, args: argparse.Namespace, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "training.train_cli", "--preset", spec.preset,
           "--data", args.data, "--epochs", str(args.epochs), "--seed", str(args.seed),
           "--device", args.device, "--run-dir", str(run_dir), "--no-export", "--no-progress",
           "--name", spec.name,
           # The comparison's own settings, whatever the presets' default recipes say: the
           # paper's batch, and stochastic gates for every training epoch.
           "--batch-size", "32", "--deterministic-epochs", "0"]
    if spec.preset not in ("dense-200-sigmoid", "dense-2000-relu"):
        cmd += ["--estimator", spec.estimator, "--density", str(spec.density)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.max_seconds:
        cmd += ["--max-seconds", str(args.max_seconds)]
    if args.finetune_epochs and not spec.preset.startswith("dense"):
        cmd += ["--finetune-epochs", str(args.finetune_epochs)]
    if args.resume and (run_dir / "checkpoints" / "latest.json").exists():
        cmd.append("--resume")
    return [*cmd, *spec.extra]


def _collect(specs, work: Path, status: dict, args: argparse.Namespace, started: float) -> dict:
    runs = {}
    for spec in specs:
        run_dir = work / spec.name
        log = run_dir / "train.log"
        tail = log.read_text()[-1500:] if log.exists() else ""
        runs[spec.name] = {"spec": asdict(spec), "status": status.get(spec.name, "pending"),
                           "history": read_json(run_dir / "metrics.json") or [],
                           "final": read_json(run_dir / "final.json"), "log_tail": tail}
    return {"settings": {"data": args.data, "epochs": args.epochs, "seed": args.seed,
                         "device": args.device, "jobs": args.jobs, "limit": args.limit,
                         "finetune_epochs": args.finetune_epochs,
                         "elapsed_seconds": time.time() - started,
                         "command": args.command_line},
            "runs": runs}


def run(args: argparse.Namespace) -> int:
    specs = [s for s in RUNS if (not args.only or s.name in args.only.split(","))
             and (not args.groups or s.group in args.groups.split(","))]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    summary_path = Path(args.summary or work / "summary.json")
    started = time.time()

    def write_summary(status: dict[str, str]) -> None:
        summary = _collect(specs, work, status, args, started)
        tmp = summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary))
        os.replace(tmp, summary_path)

    jobs = [Job(spec.name, _command(spec, args, work / spec.name), work / spec.name)
            for spec in specs]
    status = run_jobs(jobs, args.jobs, args.threads, write_summary, label="reproduce")
    failed = [n for n, s in status.items() if s != "done"]
    print(f"[reproduce] finished in {time.time() - started:.0f} s; summary {summary_path}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reproduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train every model of the comparison")
    r.add_argument("--data", default="fashion-mnist")
    r.add_argument("--epochs", type=int, default=20)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu")
    r.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    r.add_argument("--threads", type=int, default=1, help="torch threads per training")
    r.add_argument("--limit", type=int, help="examples per split (quick checks)")
    r.add_argument("--max-seconds", type=float, help="time budget per training")
    r.add_argument("--only", help="comma-separated run names")
    r.add_argument("--groups", help="comma-separated groups: paper, adam, blocks")
    r.add_argument("--work", default="runs/reproduce", help="run directories")
    r.add_argument("--summary", help="summary JSON (default: WORK/summary.json)")
    r.add_argument("--resume", action="store_true", help="resume runs that have checkpoints")
    r.add_argument("--finetune-epochs", type=int, default=0,
                   help="epochs of main-path fine-tuning under deterministic gates (gated runs)")
    rep = sub.add_parser("report", help="write docs/reproduction.md and plots from a summary")
    rep.add_argument("--summary", nargs="+", type=Path,
                     default=[Path("runs/reproduce/summary.json")],
                     help="one or more summaries; runs are merged")
    rep.add_argument("--docs", default="docs")
    rep.add_argument("--notes", type=Path, help="Markdown analysis to include")
    args = parser.parse_args(argv)
    args.command_line = "python -m training.reproduce " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        return run(args)
    from .reproduce_report import write_report

    write_report(args.summary, Path(args.docs), args.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
