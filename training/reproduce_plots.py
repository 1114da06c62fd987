"""The reproduction's plots: learning curves averaged over seeds, and the block-gated stack's
error against density."""

from __future__ import annotations

from pathlib import Path

from .reproduce_results import RunResult, variant_of


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_by_epoch(histories: dict[int, list[dict]], key: str) -> tuple[list, list, list]:
    """Epochs, the mean of `key` over the seeds that reached each, and each epoch's phase."""
    by_epoch: dict[int, list[float]] = {}
    phase: dict[int, str] = {}
    for rows in histories.values():
        for row in rows:
            by_epoch.setdefault(row["epoch"], []).append(row[key])
            phase[row["epoch"]] = row.get("phase", "train")
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs], [phase[e] for e in epochs]


def plot_learning_curves(results: dict[str, RunResult], group: str, path: Path) -> bool:
    """Validation error and training loss per epoch, each the mean over seeds; fine-tuning
    epochs dotted. False (and no file) where the group has no history yet."""
    runs = [r for r in results.values() if r.spec["group"] == group and any(r.histories.values())]
    if not runs:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for i, result in enumerate(runs):
        colour = plt.get_cmap("tab20")(i % 20)
        for ax, key, scale in ((axes[0], "valid_error", 100), (axes[1], "train_task_loss", 1)):
            epochs, values, phases = _mean_by_epoch(result.histories, key)
            train = [j for j, p in enumerate(phases) if p == "train"]
            tuned = [j for j, p in enumerate(phases) if p != "train"]
            style = "--" if not result.gated else "-"
            ax.plot([epochs[j] for j in train], [scale * values[j] for j in train], style,
                    color=colour, label=result.name)
            if tuned:  # from the last training epoch on, so the line joins
                start = tuned[0] - 1 if tuned[0] > 0 else tuned[0]
                ax.plot([epochs[j] for j in range(start, len(epochs))],
                        [scale * values[j] for j in range(start, len(epochs))], ":",
                        color=colour)
    axes[0].set(xlabel="epoch", ylabel="validation error % (deterministic gates), mean of seeds",
                title="validation error (dotted: the fine-tuning epochs)")
    axes[1].set(xlabel="epoch", ylabel="training cross-entropy, mean of seeds",
                title="training loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_blocks(results: dict[str, RunResult], path: Path) -> bool:
    """The block-gated stack's chosen test error (mean and sd over seeds) against density."""
    points = sorted((r.spec["density"], v) for r in results.values()
                    if r.spec["group"] == "blocks" and (v := variant_of(r, "chosen")))
    if not points:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.errorbar([100 * d for d, _ in points], [100 * v.test_error.mean for _, v in points],
                yerr=[100 * v.test_error.sd for _, v in points], fmt="o-", capsize=3,
                label="chosen on validation (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel="target density of blocks on (%)", ylabel="test error %",
           title="block-gated stack (2 x 64 x 64): error against density")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
