"""docs/accuracy-vs-compute.md and its plot, from the summaries that `training.study run`
writes: the variants chosen on validation, then test error against executed multiply-adds."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from models.gated_config import ConfigError, preset

from .study import GATE_SUFFIXES


def _load(work: Path, stage: str) -> dict[str, Any]:
    path = work / f"summary-{stage}.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": {}, "settings": {}}


def _done(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in summary["runs"].values() if run.get("final")]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _label(spec: dict[str, Any]) -> str:
    if spec["kind"] == "gated":
        return f"gated, {100 * spec['density']:g} % of blocks"
    if spec["kind"] == "every-block-on":
        return "the same network, every block on (no gater)"
    return f"dense MLP {' x '.join(map(str, spec['widths']))}"


def group_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model (its seeds pooled): errors as mean and std over seeds, in %."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_label(run["spec"]), []).append(run)
    rows = []
    for label, members in groups.items():
        finals = [m["final"] for m in members]
        test = _mean_std([100 * f["test_error"] for f in finals])
        valid = _mean_std([100 * f["valid_error"] for f in finals])
        macs = statistics.fmean(f.get("test_executed_macs") or f["dense_macs"] for f in finals)
        rows.append({"label": label, "spec": members[0]["spec"], "seeds": len(members),
                     "test": test, "valid": valid, "macs": macs,
                     "dense_macs": finals[0].get("dense_macs"),
                     "density": [statistics.fmean(d) for d in zip(
                         *[f["test_density"] for f in finals], strict=True)]})
    return sorted(rows, key=lambda r: (r["spec"]["kind"] != "gated", r["macs"]))


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """For each gated model: the best dense model that costs no more, and who wins."""
    # Dense competitors: the MLPs and the gated network itself with every block on.
    dense = [r for r in rows if r["spec"]["kind"] in ("mlp", "every-block-on")]
    lines = []
    for row in rows:
        if row["spec"]["kind"] != "gated":
            continue
        cheaper = [m for m in dense if m["macs"] <= row["macs"]]
        if not cheaper:
            lines.append(f"- **{row['label']}** ({row['macs'] / 1e3:.0f} k multiply-adds): no "
                         "dense MLP of this study costs as little.")
            continue
        best = min(cheaper, key=lambda m: m["test"][0])
        gap = row["test"][0] - best["test"][0]
        verdict = ("beats" if gap < 0 else "does **not** beat")
        spread = max(row["test"][1], best["test"][1])
        noise = ", within the spread over seeds" if abs(gap) <= spread else ""
        lines.append(f"- **{row['label']}** ({row['macs'] / 1e3:.0f} k multiply-adds, "
                     f"{row['test'][0]:.2f} % error) {verdict} the best dense model that costs "
                     f"no more: {best['label']} ({best['macs'] / 1e3:.0f} k, "
                     f"{best['test'][0]:.2f} %), by {abs(gap):.2f} points{noise}.")
    return lines


def gap_lines(rows: list[dict[str, Any]], target: float = 0.5) -> list[str]:
    """Each gated model against the same network with every block on (the accuracy target:
    within `target` points of it, over the same seeds), where the study trained that one."""
    full = next((r for r in rows if r["spec"]["kind"] == "every-block-on"), None)
    if full is None:
        return []
    lines = []
    for row in rows:
        if row["spec"]["kind"] != "gated":
            continue
        gap = row["test"][0] - full["test"][0]
        verdict = "within" if gap <= target else "**not** within"
        lines.append(f"- **{row['label']}**: {row['test'][0]:.2f} ± {row['test'][1]:.2f} % "
                     f"against {full['test'][0]:.2f} ± {full['test'][1]:.2f} % with every block "
                     f"on ({row['seeds']} and {full['seeds']} seeds): {gap:+.2f} points, "
                     f"{verdict} {target:g} of it, at "
                     f"{100 * row['macs'] / full['macs']:.1f} % of its multiply-adds.")
    return lines


def _table(rows: list[dict[str, Any]], metric: str) -> list[str]:
    lines = [f"| model | seeds | {metric} error % (mean ± std) | executed multiply-adds "
             "per example | density per gated layer |", "|---|---:|---:|---:|---|"]
    for row in rows:
        mean, std = row[metric]
        share = (f" ({100 * row['macs'] / row['dense_macs']:.1f} % of dense)"
                 if row["spec"]["kind"] == "gated" and row["dense_macs"] else "")
        density = ", ".join(f"{100 * d:.1f} %" for d in row["density"]) or "-"
        lines.append(f"| {row['label']} | {row['seeds']} | {mean:.2f} ± {std:.2f} | "
                     f"{row['macs']:,.0f}{share} | {density} |")
    return lines


def density_notes(rows: list[dict[str, Any]], tolerance: float = 0.02) -> list[str]:
    """A line for each gated model whose measured density is off its target: rectifier gates
    are off wherever their logit is not positive, so a target no threshold can reach (100 %)
    runs fewer blocks than it names."""
    lines = []
    for row in rows:
        spec = row["spec"]
        if spec["kind"] != "gated" or all(abs(d - spec["density"]) <= tolerance
                                           for d in row["density"]):
            continue
        measured = ", ".join(f"{100 * d:.1f} %" for d in row["density"])
        lines.append(f"- **{row['label']}** runs {measured} of its blocks on the test set: its "
                     f"{spec['model']['estimator']} gates are off wherever the gater's logit is "
                     "below the threshold, and the threshold cannot go below where the gate "
                     "value is 0.")
    return lines


def stale_gates_note(runs: list[dict[str, Any]], preset_name: str) -> list[str]:
    """A note when variants were trained with gates the preset no longer has (and do not name
    theirs): the page's commands would now train them with the preset's current gates."""
    try:
        current = preset(preset_name).estimator
    except ConfigError:
        return []
    stale = sorted({r["spec"]["variant"] for r in runs if r["spec"]["kind"] == "gated"
                    and r["spec"]["model"]["estimator"] != current
                    and not any(r["spec"]["variant"].endswith(s) for s in GATE_SUFFIXES)})
    if not stale:
        return []
    return [f"The variants {', '.join(f'`{v}`' for v in stale)} were trained when the "
            f"preset's gates were those in their row; the commands above now train them with "
            f"its `{current}` gates.", ""]


def _commands(settings: dict[str, Any]) -> list[str]:
    """The study invocations behind a summary, as indented command lines."""
    commands = settings.get("commands") or [settings.get("command", "")]
    return [f"    {command}" for command in commands]


def variant_table(runs: list[dict[str, Any]]) -> list[str]:
    """One row per variant, its seeds pooled, best validation error first."""
    lines = ["| variant | gates | stochastic epochs | served-gate epochs | fine-tune epochs | "
             "count balance | learning rate | seeds | validation error % (mean ± std) | "
             "validation density |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        spec = run["spec"]
        name = spec["variant"] if spec["kind"] == "gated" else (
            _label(spec) + (f", {spec['variant']}" if spec["variant"] else ""))
        groups.setdefault(name, []).append(run)
    rows = []
    for name, members in groups.items():
        t = members[0]["spec"]["training"]
        error = _mean_std([100 * m["final"]["valid_error"] for m in members])
        density = ", ".join(
            f"{100 * statistics.fmean(d):.1f} %" for d in zip(
                *[m["final"]["valid_density"] for m in members], strict=True)) or "-"
        balance = t.get("balance_weight", 1.0) if t.get("deterministic_epochs") else "-"
        phases = f"{t['epochs']} | {t.get('deterministic_epochs', 0)} | " \
                 f"{t.get('finetune_epochs', 0)}"
        if members[0]["spec"]["kind"] != "gated":  # no gates: every epoch is the same
            total = t["epochs"] + t.get("deterministic_epochs", 0) + t.get("finetune_epochs", 0)
            balance, phases = "-", f"{total} (no gates) | - | -"
        schedule = t.get("lr_schedule", "constant")
        spec = members[0]["spec"]
        gates = spec["model"]["estimator"] if spec["kind"] == "gated" else "-"
        rows.append((error, f"| {name} | {gates} | {phases} | {balance} | {schedule} | "
                            f"{len(members)} | "
                            f"{error[0]:.2f} ± {error[1]:.2f} | {density} |"))
    return lines + [row for _, row in sorted(rows, key=lambda r: r[0][0])]


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for kind, depth, style, name in [("mlp", 1, "s-", "dense MLP, 1 hidden layer"),
                                     ("mlp", 2, "^-", "dense MLP, 2 hidden layers"),
                                     ("gated", None, "o-", "block-gated")]:
        chosen = [r for r in rows if r["spec"]["kind"] == kind
                  and (depth is None or len(r["spec"]["widths"]) == depth)]
        if not chosen:
            continue
        chosen.sort(key=lambda r: r["macs"])
        ax.errorbar([r["macs"] for r in chosen], [r["test"][0] for r in chosen],
                    yerr=[r["test"][1] for r in chosen], fmt=style, capsize=3, label=name)
        if kind == "gated":
            for r in chosen:
                target = round(100 * r["spec"]["density"])
                ran = round(100 * statistics.fmean(r["density"]))
                text = f"{target} %" if ran == target else f"{target} % (runs {ran} %)"
                ax.annotate(text, (r["macs"], r["test"][0]),
                            textcoords="offset points", xytext=(4, 6), fontsize=8)
    on = [r for r in rows if r["spec"]["kind"] == "every-block-on"]
    for r in on:
        ax.errorbar([r["macs"]], [r["test"][0]], yerr=[r["test"][1]], fmt="*", markersize=12,
                    capsize=3, label="same network, every block on")
    ax.set_xscale("log")
    ax.set_xlabel("executed multiply-adds per example (gater included)")
    ax.set_ylabel("test error % (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(work: Path, docs: Path, page: str | None = None) -> int:
    variants, grid = _load(work, "variants"), _load(work, "grid")
    grid_runs = _done(grid)
    if not grid_runs and not _done(variants):
        print(f"no finished runs under {work}")
        return 1
    settings = grid["settings"] or variants["settings"]
    data, preset_name = settings.get("data", "?"), settings.get("preset", "?")
    page = page or f"accuracy-vs-compute-{data}"
    saved = docs / page
    saved.mkdir(parents=True, exist_ok=True)
    for stage in ("variants", "grid"):
        source = work / f"summary-{stage}.json"
        if source.exists():
            shutil.copyfile(source, saved / f"summary-{stage}.json")
    lines = [f"# Accuracy against compute: `{preset_name}` on {data}", "",
             "What a block-gated model is worth: its test error beside the multiply-adds a "
             "skipping engine executes for it per example (gaters included, counted by "
             "`models.compute` from the gates of every test example), against dense MLPs "
             "trained with the same recipe for the same epochs. Choices (the training variant) "
             "were made on the validation split; test error is read once, at the end.", ""]
    if _done(variants):
        density = next(iter(variants["runs"].values()))["spec"]["density"]
        lines += [f"## Training variants (validation split, {100 * density:g} % of blocks)", "",
                  *_commands(variants["settings"]), "",
                  *variant_table(_done(variants)), "",
                  *stale_gates_note(_done(variants), preset_name)]
    if grid_runs:
        rows = group_runs(grid_runs)
        plot(rows, docs / f"{page}.png", f"{preset_name} on {data}: error against compute")
        named = "" if page == f"accuracy-vs-compute-{data}" else f" --page {page}"
        lines += ["## Test error against executed multiply-adds", "",
                  *_commands(grid["settings"]),
                  f"    python -m training.study report --work {work}{named}", "",
                  f"![test error against multiply-adds]({page}.png)", "",
                  *_table(rows, "test"), ""]
        gaps = gap_lines(rows)
        if gaps:
            lines += ["### Against the same network with every block on", "", *gaps, ""]
        notes = density_notes(rows)
        if notes:
            lines += [*notes, ""]
        if any(r["spec"]["kind"] != "gated" for r in rows):  # dense models to judge against
            lines += ["### Where the gated model is worth serving", "", *verdicts(rows), ""]
    lines += [f"The summaries behind these tables are saved in `docs/{page}/`.", ""]
    (docs / f"{page}.md").write_text("\n".join(lines))
    print(f"wrote {docs / f'{page}.md'}")
    return 0
