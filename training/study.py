"""Accuracy against compute: a block-gated preset at several densities, the training variants
that end on the served gates, and dense MLPs of several widths, all with one recipe.

    python -m training.study run --stage variants      # choose the variant (validation, 1 seed)
    python -m training.study run --stage grid --variant deterministic-phase --seeds 0,1,2
    python -m training.study report            # docs/accuracy-vs-compute-<data>.md and plot

Every training is a `sparsegate-train --config` subprocess with its own run directory under
--work; a run with final.json is done and skipped, one with checkpoints resumes, so a study cut
short by a session's end goes on where it stopped; runs that `report` saved under docs/ as
finished are restored rather than trained again in a new checkout. `summary-<stage>.json` is
kept up to date while they train.

Variants (all train the preset's total epochs E of its recipe):
- stochastic: E epochs with stochastic gates, thresholds calibrated on validation after;
- finetune: E/2 stochastic, then E/2 training the main path under frozen calibrated gates;
- deterministic-phase: E/2 stochastic, then E/2 with the served gates, gaters learning;
- deterministic: E epochs with the served gates from the start;
- ...-unbalanced: the same without the count balance (training.objectives.count_balance);
- ...-constant-lr: the same at a constant learning rate instead of the recipe's schedule;
- ...-anneal: the same with the served density falling from every block on to the target over
  the first half of the deterministic epochs (training.density_schedule);
- ...-gater64, ...-gater128: the same with every gater's hidden layer that wide;
- ...-st: the same with binary straight-through gates instead of the preset's (blocks-narrow's
  are rectifier gates: served value max(0, a) where the logit a passes the threshold).
The variants stage trains the network with every block on under both learning-rate schedules
too: a schedule is only chosen for the gated model if the dense one is not left weaker by it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models.gated_config import GatedLayerConfig, GatedNetworkConfig, preset

from .jobs import Job, read_json, run_jobs
from .recipes import recipe

VARIANTS = ("stochastic", "finetune", "deterministic-phase", "deterministic",
            "deterministic-phase-unbalanced", "deterministic-unbalanced",
            "deterministic-constant-lr", "deterministic-phase-constant-lr",
            "deterministic-st", "deterministic-anneal", "deterministic-gater64",
            "deterministic-gater128")
CONSTANT_LR = "-constant-lr"
UNBALANCED = "-unbalanced"
ANNEAL = "-anneal"
# Variant suffixes that train another gate estimator than the preset's.
GATE_SUFFIXES = {"-st": "st"}
# Variant suffixes that give every gater another hidden width than the preset's.
GATER_SUFFIXES = {"-gater64": 64, "-gater128": 128}
DENSITIES = (0.05, 0.1, 0.25, 0.5, 1.0)
# Dense MLP widths: from one that costs what the 10 % gated preset executes up to its full width.
DENSE_WIDTHS = (32, 64, 128, 256, 512, 1024)
DENSE_DEPTHS = (1, 2)
DATA_SHAPES = {"fashion-mnist": (784, 10), "digits": (64, 10)}


@dataclass(frozen=True)
class StudyRun:
    name: str
    kind: str  # "gated", "every-block-on" (the preset, no gater) or "mlp"
    seed: int
    model: dict[str, Any]
    training: dict[str, Any]
    variant: str = ""
    density: float = 1.0
    widths: tuple[int, ...] = field(default_factory=tuple)


def variant_training(base: dict[str, Any], variant: str) -> dict[str, Any]:
    """The recipe's total epochs split as the variant trains them."""
    total = base.get("epochs", 10) + base.get("deterministic_epochs", 0) + base.get(
        "finetune_epochs", 0)
    half = total // 2
    name = variant.removesuffix(CONSTANT_LR).removesuffix(UNBALANCED).removesuffix(ANNEAL)
    for suffix in (*GATE_SUFFIXES, *GATER_SUFFIXES):
        name = name.removesuffix(suffix)
    split = {"stochastic": (total, 0, 0), "finetune": (total - half, 0, half),
             "deterministic-phase": (total - half, half, 0),
             "deterministic": (0, total, 0)}[name]
    # A variant says whether it balances: the recipe's own choice is one of the variants.
    rest = {k: v for k, v in base.items() if k != "balance_weight"}
    balance = {"balance_weight": 0.0} if UNBALANCED in variant else {}
    schedule = {"lr_schedule": "constant"} if variant.endswith(CONSTANT_LR) else {}
    warmup = {"density_warmup_epochs": split[1] // 2} if variant.endswith(ANNEAL) else {}
    return {**rest, "epochs": split[0], "deterministic_epochs": split[1],
            "finetune_epochs": split[2], **balance, **schedule, **warmup}


def variant_model(gated: GatedNetworkConfig, variant: str) -> GatedNetworkConfig:
    """The preset's network, with the gate estimator the variant names (if it names one)."""
    for suffix, estimator in GATE_SUFFIXES.items():
        if variant.endswith(suffix):
            return gated.replace(estimator=estimator, estimator_settings={})
    for suffix, hidden in GATER_SUFFIXES.items():
        if variant.endswith(suffix):
            return gated.replace(layers=tuple(
                replace(layer, gater_hidden=hidden) if layer.gated else layer
                for layer in gated.layers))
    return gated


def mlp_config(widths: tuple[int, ...], input_size: int, num_classes: int
               ) -> GatedNetworkConfig:
    layers = tuple(GatedLayerConfig(blocks=w, block_size=1, activation="relu", gated=False)
                   for w in widths)
    return GatedNetworkConfig(input_size, num_classes, layers, target_density=1.0)


def plan(stage: str, preset_name: str, data: str, seeds: list[int], variant: str
         ) -> list[StudyRun]:
    input_size, classes = DATA_SHAPES[data]
    base = recipe(preset_name)
    gated = preset(preset_name, input_size=input_size, num_classes=classes)
    train = variant_training(base, variant)
    # A network without gaters trains the same epochs; the gates' own settings mean nothing to it.
    ungated = {k: v for k, v in train.items() if k != "density_warmup_epochs"}
    runs: list[StudyRun] = []
    if stage == "variants":
        for seed in seeds:
            runs += [StudyRun(f"variant-{v}-s{seed}", "gated", seed,
                              variant_model(gated, v).to_dict(), variant_training(base, v), v,
                              gated.target_density)
                     for v in VARIANTS]
            runs.append(StudyRun(f"every-block-on-s{seed}", "every-block-on", seed,
                                 gated.every_block_on().to_dict(), ungated))
            if train.get("lr_schedule", "constant") != "constant":
                runs.append(StudyRun(f"every-block-on{CONSTANT_LR}-s{seed}", "every-block-on",
                                     seed, gated.every_block_on().to_dict(),
                                     {**ungated, "lr_schedule": "constant"}, CONSTANT_LR[1:]))
        return runs
    # The preset's own density too: the model its recipe makes by default.
    densities = sorted({*DENSITIES, gated.target_density})
    for seed in seeds:
        for density in densities:
            config = variant_model(gated, variant).replace(target_density=density)
            runs.append(StudyRun(f"gated-{density * 100:g}-s{seed}", "gated", seed,
                                 config.to_dict(), train, variant, density))
        runs.append(StudyRun(f"every-block-on-s{seed}", "every-block-on", seed,
                             gated.every_block_on().to_dict(), ungated))
        same_as_every_block_on = tuple(layer.width for layer in gated.layers)
        for depth in DENSE_DEPTHS:
            for width in DENSE_WIDTHS:
                widths = (width,) * depth
                if widths == same_as_every_block_on:
                    continue  # that run is the every-block-on one
                runs.append(StudyRun(f"mlp-{'x'.join(map(str, widths))}-s{seed}", "mlp", seed,
                                     mlp_config(widths, input_size, classes).to_dict(), ungated,
                                     widths=widths))
    return runs


def _command(run: StudyRun, data: str, run_dir: Path, device: str) -> list[str]:
    config_path = run_dir / "config.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps({"model": run.model, "training": run.training}, indent=1))
    cmd = [sys.executable, "-m", "training.train_cli", "--config", str(config_path),
           "--data", data, "--seed", str(run.seed), "--device", device, "--run-dir",
           str(run_dir), "--no-export", "--no-progress", "--name", run.name]
    if (run_dir / "checkpoints" / "latest.json").exists():
        cmd.append("--resume")
    return cmd


def collect(runs: list[StudyRun], work: Path, status: dict[str, str], meta: dict) -> dict:
    out = {}
    for run in runs:
        run_dir = work / run.name
        final = read_json(run_dir / "final.json")
        out[run.name] = {"spec": asdict(run), "status": "done" if final else
                         status.get(run.name, "pending"),
                         "history": read_json(run_dir / "metrics.json") or [],
                         "final": final}
    return {"settings": meta, "runs": out}


def restore_finished(runs: list[StudyRun], work: Path, saved: Path) -> int:
    """Put back the results of runs that a saved summary (docs/, committed) holds as finished
    but `work` does not (a new checkout): the study then goes on from there. Returns how many."""
    previous = (read_json(saved) or {}).get("runs", {})
    restored = 0
    for run in runs:
        entry = previous.get(run.name)
        run_dir = work / run.name
        if not entry or not entry.get("final") or (run_dir / "final.json").exists():
            continue
        if entry["spec"] != json.loads(json.dumps(asdict(run))):
            continue  # planned differently since: train it again
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(entry["history"]))
        (run_dir / "final.json").write_text(json.dumps(entry["final"]))
        restored += 1
    return restored


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = plan(args.stage, args.preset, args.data, seeds, args.variant)
    if args.only:
        runs = [r for r in runs if any(r.name.startswith(p) for p in args.only.split(","))]
    saved = [Path(args.docs) / f"accuracy-vs-compute-{args.data}" / f"summary-{args.stage}.json",
             *map(Path, args.restore_from or [])]
    for path in saved:
        restored = restore_finished(runs, work, path)
        if restored:
            print(f"[study] {restored} finished runs restored from {path}", flush=True)
    summary_path = work / f"summary-{args.stage}.json"
    earlier = read_json(summary_path) or {}
    # Every invocation that trained runs of this summary, so its page can say how to make it.
    commands = earlier.get("settings", {}).get("commands") or [
        c for c in [earlier.get("settings", {}).get("command")] if c]
    meta = {"data": args.data, "preset": args.preset, "stage": args.stage,
            "variant": args.variant, "seeds": seeds, "command": args.command_line,
            "commands": [*[c for c in commands if c != args.command_line], args.command_line]}
    previous = earlier.get("runs", {})
    todo = [r for r in runs if not (work / r.name / "final.json").exists()]
    print(f"[study] {len(runs)} runs, {len(runs) - len(todo)} already done", flush=True)
    started = time.time()

    def write_summary(status: dict[str, str]) -> None:
        summary = collect(runs, work, status, {**meta, "seconds": time.time() - started})
        # Runs of an earlier plan (other seeds, say) stay in the summary.
        summary["runs"] = {**{k: v for k, v in previous.items() if k not in summary["runs"]},
                           **summary["runs"]}
        work.mkdir(parents=True, exist_ok=True)
        tmp = summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary))
        os.replace(tmp, summary_path)

    jobs = [Job(r.name, _command(r, args.data, work / r.name, args.device), work / r.name)
            for r in todo]
    status = run_jobs(jobs, args.jobs, args.threads, write_summary, label="study")
    write_summary(status)
    failed = [n for n, s in status.items() if s != "done"]
    print(f"[study] finished in {time.time() - started:.0f} s; summary {summary_path}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the study's models (resumable)")
    r.add_argument("--stage", choices=("variants", "grid"), required=True)
    r.add_argument("--preset", default="blocks-narrow")
    r.add_argument("--data", default="fashion-mnist", choices=sorted(DATA_SHAPES))
    r.add_argument("--variant", default="deterministic-phase", choices=VARIANTS,
                   help="the grid's training variant (chosen on the variants stage)")
    r.add_argument("--seeds", default="0", help="comma-separated seeds")
    r.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    r.add_argument("--threads", type=int, default=1, help="torch threads per training")
    r.add_argument("--device", default="cpu")
    r.add_argument("--only", help="comma-separated prefixes of run names")
    r.add_argument("--work", default="runs/study", help="run directories and summaries")
    r.add_argument("--docs", default="docs", help="where `report` saved earlier summaries: "
                   "their finished runs are not trained again")
    r.add_argument("--restore-from", action="append", metavar="SUMMARY",
                   help="another saved summary (e.g. another preset's page) whose finished runs "
                   "of the same spec are not trained again (repeatable)")
    rep = sub.add_parser("report", help="write the accuracy-against-compute page and plot")
    rep.add_argument("--work", default="runs/study")
    rep.add_argument("--docs", default="docs")
    rep.add_argument("--page", help="the page's name (default: accuracy-vs-compute-<data>)")
    args = parser.parse_args(argv)
    args.command_line = "python -m training.study " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        return run(args)
    from .study_report import write_report

    return write_report(Path(args.work), Path(args.docs), args.page)


if __name__ == "__main__":
    sys.exit(main())
