"""Each run's results over its seeds, read from the summaries `reproduce run` writes.

A seed counts once its run has trained every planned epoch and reported each phase at its epoch
of lowest validation error (final.json's "best_epochs"). A run has up to two variants: "train",
the best epoch of the training phase (the paper's procedure), and "finetune", the best epoch of
the epochs after it. The variant *chosen* for a run is the one with the lower mean validation
error over its seeds (the training phase's on a tie); test errors are never used to choose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .reproduce_stats import Spread, spread

VARIANTS = {"train": "without fine-tuning", "finetune": "with fine-tuning"}


@dataclass(frozen=True)
class Variant:
    seeds: tuple[int, ...]
    test_error: Spread
    valid_error: Spread
    test_density: Spread | None  # mean over the gated layers; None for a dense run
    executed_macs: Spread  # per example, gaters included
    epochs: tuple[int, ...]  # the epoch reported, per seed


@dataclass(frozen=True)
class RunResult:
    name: str
    spec: dict[str, Any]
    planned_seeds: tuple[int, ...]
    done_seeds: tuple[int, ...]
    budgets: tuple[tuple[int, int], ...]  # distinct (training, fine-tuning) epochs, seeds done
    variants: dict[str, Variant]
    chosen: str | None
    histories: dict[int, list[dict[str, Any]]]  # per seed, as far as it trained
    dense_macs: float | None  # the run's network with every block on and no gater

    @property
    def gated(self) -> bool:
        return not self.spec["preset"].startswith("dense")


def seed_done(record: dict[str, Any]) -> bool:
    final = record.get("final") or {}
    return final.get("epochs") == record.get("planned_epochs") and "best_epochs" in final


def merge_summaries(paths: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs of several summaries, seed by seed: a later summary's record replaces an earlier
    one's unless only the earlier one is finished. Returns (runs, each summary's settings)."""
    runs: dict[str, Any] = {}
    settings = []
    for path in paths:
        summary = json.loads(Path(path).read_text())
        if any("seeds" not in run for run in summary["runs"].values()):
            raise ValueError(f"{path}: written by an earlier `reproduce run` (one seed, no best "
                             "epochs per phase); its runs cannot be reported: run them again")
        for name, run in summary["runs"].items():
            entry = runs.setdefault(name, {"spec": run["spec"], "seeds": {}})
            entry["spec"] = run["spec"]
            for seed, record in run["seeds"].items():
                earlier = entry["seeds"].get(seed)
                if earlier is None or seed_done(record) or not seed_done(earlier):
                    entry["seeds"][seed] = record
        records = [r for run in summary["runs"].values() for r in run["seeds"].values()]
        settings.append({**summary["settings"], "summary": str(path),
                         "runs": list(summary["runs"]), "trainings": len(records),
                         "epoch_seconds": sum(e.get("epoch_seconds", 0.0) for r in records
                                              for e in r.get("history", []))})
    return runs, settings


def _variant(records: dict[int, dict[str, Any]], phase: str) -> Variant | None:
    chosen = {seed: r["final"]["best_epochs"].get(phase) for seed, r in records.items()}
    if not chosen or any(v is None for v in chosen.values()):
        return None
    seeds = tuple(sorted(chosen))
    rows = [chosen[s] for s in seeds]
    densities = [sum(r["test_density"]) / len(r["test_density"]) for r in rows
                 if r["test_density"]]
    return Variant(seeds, spread(r["test_error"] for r in rows),
                   spread(r["valid_error"] for r in rows),
                   spread(densities) if len(densities) == len(rows) else None,
                   spread(r["test_executed_macs"] for r in rows),
                   tuple(r["epoch"] for r in rows))


def _budget(history: list[dict[str, Any]]) -> tuple[int, int]:
    phases = [row.get("phase", "train") for row in history]
    return phases.count("train"), len(phases) - phases.count("train")


def run_results(runs: dict[str, Any]) -> dict[str, RunResult]:
    results = {}
    for name, run in runs.items():
        records = {int(seed): r for seed, r in run["seeds"].items()}
        done = {seed: r for seed, r in records.items() if seed_done(r)}
        variants = {phase: v for phase in VARIANTS if (v := _variant(done, phase)) is not None}
        chosen = (min(variants, key=lambda p: (variants[p].valid_error.mean, p != "train"))
                  if variants else None)
        results[name] = RunResult(
            name, run["spec"], tuple(sorted(records)), tuple(sorted(done)),
            tuple(sorted({_budget(r["history"]) for r in done.values()})), variants, chosen,
            {seed: r.get("history") or [] for seed, r in sorted(records.items())},
            next((r["final"]["dense_macs"] for r in done.values()), None))
    return results


def variant_of(result: RunResult, variant: str) -> Variant | None:
    """The run's results for `variant` ("train", "finetune" or "chosen"), or None."""
    phase = result.chosen if variant == "chosen" else variant
    return result.variants.get(phase) if phase else None
