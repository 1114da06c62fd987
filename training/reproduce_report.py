"""docs/reproduction.md and its plots, from the summary that `reproduce run` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPER_NOTE = ("The paper's column is its MNIST test error (Bengio, Léonard & Courville 2013); "
              "our data set is Fashion-MNIST, which is much harder, so compare orderings, not "
              "values.")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _density(final: dict[str, Any] | None) -> str:
    if not final or not final.get("test_density"):
        return "1 (dense)"
    return ", ".join(f"{100 * d:.1f} %" for d in final["test_density"])


def _seconds(final: dict[str, Any] | None) -> str:
    value = final and final.get("seconds_per_epoch")
    return "-" if not value else f"{value:.1f}"


def paper_table(runs: dict[str, Any], group: str = "paper") -> list[str]:
    lines = ["| model | estimator | test error % | test density | epochs | s / epoch "
             "| paper MNIST error % | note |", "|---|---|---:|---|---:|---:|---:|---|"]
    for name, run in runs.items():
        spec, final = run["spec"], run["final"]
        if spec["group"] != group:
            continue
        estimator = spec["estimator"] if not spec["preset"].startswith("dense") else "-"
        error = _pct(final["test_error"]) if final else f"({run['status']})"
        paper = "-" if spec["paper_mnist_error"] is None else f"{spec['paper_mnist_error']:.2f}"
        epochs = final["epochs"] if final else len(run["history"])
        lines.append(f"| {name} | {estimator} | {error} | {_density(final)} | {epochs} "
                     f"| {_seconds(final)} | {paper} | {spec['note']} |")
    return lines


def blocks_table(runs: dict[str, Any]) -> list[str]:
    lines = ["| target density | fine-tuned | test error % | test density per layer | epochs "
             "| s / epoch |", "|---:|---|---:|---|---:|---:|"]
    for name, run in runs.items():
        spec, final = run["spec"], run["final"]
        if spec["group"] != "blocks":
            continue
        error = _pct(final["test_error"]) if final else f"({run['status']})"
        epochs = final["epochs"] if final else len(run["history"])
        tuned = "yes" if "fine-tune" in name else "no"
        lines.append(f"| {100 * spec['density']:g} % | {tuned} | {error} | {_density(final)} "
                     f"| {epochs} | {_seconds(final)} |")
    return lines


def verdict(runs: dict[str, Any], group: str, dense_name: str) -> list[str]:
    """The done-when check: best gated model at 10 % against the dense rectifier MLP trained
    the same way."""
    dense = runs.get(dense_name, {}).get("final")
    gated = {n: r["final"] for n, r in runs.items()
             if r["spec"]["group"] == group and not r["spec"]["preset"].startswith("dense")
             and r["final"]}
    if not dense or not gated:
        return [f"The comparison with {dense_name} is missing: a run did not finish."]
    def line(title: str, names: list[str]) -> str:
        if not names:
            return f"{title}: none."
        best = min(names, key=lambda n: gated[n]["test_error"])
        gap = 100 * (gated[best]["test_error"] - dense["test_error"])
        return (f"{title}: **{best}**, {_pct(gated[best]['test_error'])} % test error at "
                f"{_density(gated[best])} test density, against {_pct(dense['test_error'])} % "
                f"for {dense_name}: a gap of **{gap:+.2f} percentage points**, "
                + ("within the 1.0-point target." if gap <= 1.0 else "which misses the "
                   "1.0-point target."))

    full = [n for n in gated if abs(sum(gated[n]["test_density"]) / len(
        gated[n]["test_density"]) - 0.1) <= 0.005]
    return [line("Best gated model at a 10 % target (test density 10 % or less)", list(gated)),
            "", line("Best gated model running the full 10 % at test time", full)]


def plot_learning_curves(runs: dict[str, Any], path: Path, group: str = "paper") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    colours: dict[str, Any] = {}
    for name, run in runs.items():
        if run["spec"]["group"] != group or not run["history"]:
            continue
        base, _, tuned = name.partition(" + ")
        rows = run["history"]
        if tuned:  # only the fine-tuning epochs, from the last training epoch on
            first = next((i for i, r in enumerate(rows) if r.get("phase") == "finetune"), 0)
            rows = rows[max(first - 1, 0):]
        style = ":" if tuned else "--" if run["spec"]["preset"].startswith("dense") else "-"
        epochs = [row["epoch"] for row in rows]
        for ax, values in ((axes[0], [100 * r["valid_error"] for r in rows]),
                           (axes[1], [r["train_task_loss"] for r in rows])):
            colour = colours.setdefault(base, plt.get_cmap("tab20")(len(colours) % 20))
            ax.plot(epochs, values, style, color=colour, label=None if tuned else base)
    axes[0].set(xlabel="epoch", ylabel="validation error % (deterministic gates, 10 %)",
                title="validation error (dotted: fine-tuning under deterministic gates)")
    axes[1].set(xlabel="epoch", ylabel="training cross-entropy (stochastic gates)",
                title="training loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    if axes[1].lines:
        axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_blocks(runs: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for tuned, label in ((False, "stochastic training only"),
                         (True, "+ fine-tuning under deterministic gates")):
        points = sorted((r["spec"]["density"], 100 * r["final"]["test_error"])
                        for n, r in runs.items() if r["spec"]["group"] == "blocks"
                        and r["final"] and ("fine-tune" in n) == tuned)
        if points:
            ax.plot([100 * d for d, _ in points], [e for _, e in points], "o-", label=label)
    # The stack trains with Adam: compare with the dense MLP trained with Adam where there is one.
    dense_name = next((n for n in ("dense-2000-relu-adam", "dense-2000-relu")
                       if runs.get(n, {}).get("final")), None)
    if dense_name:
        ax.axhline(100 * runs[dense_name]["final"]["test_error"], color="grey", ls="--",
                   label=f"{dense_name} (dense 2000-unit rectifier MLP)")
    if ax.lines:
        ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel="target density of blocks on (%)", ylabel="test error %",
           title="block-gated stack (2 x 64 x 64): error vs density")
    ax.set_xticks([5, 10, 25, 50, 100], ["5", "10", "25", "50", "100"])
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge_summaries(paths: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs from several summaries (e.g. CPU runs here, GPU runs there), later ones winning."""
    runs: dict[str, Any] = {}
    settings = []
    for path in paths:
        summary = json.loads(path.read_text())
        tuned = summary["settings"].get("finetune_epochs") or 0
        for name, run in summary["runs"].items():
            if tuned and not run["spec"]["preset"].startswith("dense"):
                # Fine-tuned continuations sit beside the runs they continued.
                run = {**run, "spec": {**run["spec"], "note": f"+ {tuned} epochs of "
                                       "fine-tuning under deterministic gates"}}
                name = f"{name} + fine-tune"
            elif tuned:
                runs.setdefault(name, run)  # dense runs are not fine-tuned: one row stands
                continue
            runs[name] = run
        settings.append({**summary["settings"], "summary": path.name,
                         "runs": list(summary["runs"])})
    order = {spec.name: i for i, spec in enumerate(_all_specs())}

    def key(item):
        base, _, tuned = item[0].partition(" + ")
        return (order.get(base, 1_000), bool(tuned))

    return dict(sorted(runs.items(), key=key)), settings


def _all_specs():
    from .reproduce import RUNS

    return RUNS


def _provenance(settings: list[dict[str, Any]]) -> list[str]:
    lines = []
    for s in settings:
        lines += [f"- `{s['summary']}`: {', '.join(s['runs'])}; data {s['data']}, up to "
                  f"{s['epochs']} epochs, seed {s['seed']}, device {s['device']}, {s['jobs']} "
                  f"trainings at a time, {s['elapsed_seconds'] / 60:.0f} min in all:",
                  "", "  ```bash", f"  {s['command']}", "  ```", ""]
    return lines


def write_report(summary_paths: list[Path], docs: Path, notes: Path | None = None) -> Path:
    """Write docs/reproduction.md; `notes` (Markdown: what the numbers show) goes after the
    introduction, so the analysis survives regeneration."""
    runs, settings = merge_summaries(summary_paths)
    docs.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(runs, docs / "reproduction-curves.png")
    plot_learning_curves(runs, docs / "reproduction-curves-adam.png", group="adam")
    plot_blocks(runs, docs / "reproduction-blocks.png")
    text = [
        "# Reproducing the paper's conditional-computation experiment",
        "",
        "Every model is trained on Fashion-MNIST (55000 training examples, 5000 held out for "
        "validation, the 10000 test examples for the figures) with the KL penalty (Eq. 14) for "
        "sigmoid gaters and the adaptive L1 penalty (Eq. 15) for rectifiers; thresholds are "
        "calibrated per layer on the validation split to the target density, and the test "
        "error and density are measured with those deterministic gates. Unless a table says "
        "otherwise, training uses the paper's SGD: learning rate 0.1, batch 32, max-norm 2.",
        "",
        "Produced by these runs, then "
        "`python -m training.reproduce report --summary SUMMARY... --docs docs`:",
        "",
        *_provenance(settings),
        *([notes.read_text(), ""] if notes else []),
        "## The paper's comparison at 10 % density",
        "",
        *paper_table(runs),
        "",
        PAPER_NOTE + " s / epoch is wall time with the other trainings sharing the machine.",
        "",
        *verdict(runs, "paper", "dense-2000-relu"),
        "",
        "![learning curves](reproduction-curves.png)",
        "",
        "## The same with Adam",
        "",
        "Adam, learning rate 1e-3, no max-norm, for the gated models and the dense reference "
        "alike.",
        "",
        *paper_table(runs, "adam"),
        "",
        *verdict(runs, "adam", "dense-2000-relu-adam"),
        "",
        "![learning curves with Adam](reproduction-curves-adam.png)",
        "",
        "## Block-gated stack: test error against density",
        "",
        *blocks_table(runs),
        "",
        "![error against density](reproduction-blocks.png)",
        "",
    ]
    path = docs / "reproduction.md"
    path.write_text("\n".join(text))
    return path
