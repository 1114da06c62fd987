"""Writes the estimator diagnostics as JSON, a Markdown table and a PNG heat map."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from .estimator_diagnostics import EstimatorReport

P_VALUE_FLOOR = 1e-3  # below this the z-test rejects "mean equals exact"


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return f"{x:.2e}"


def _fmt_p(p: float) -> str:
    """p-values of strongly biased estimators underflow float64: say so rather than print 0."""
    return "< 1e-300" if p < 1e-300 else _fmt(p)


def verdict(report: EstimatorReport) -> str:
    return "consistent" if report.p_value >= P_VALUE_FLOOR else "biased"


def write_json(reports: Sequence[EstimatorReport], settings: dict[str, object],
               path: Path) -> None:
    payload = {"settings": settings, "results": [r.as_dict() for r in reports]}
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")


def markdown_table(reports: Sequence[EstimatorReport]) -> str:
    """One table per problem: estimators as rows, the measures as columns."""
    lines: list[str] = []
    for problem in dict.fromkeys(r.problem for r in reports):
        rows = [r for r in reports if r.problem == problem]
        first = rows[0]
        lines += [
            f"### {problem} (K = {first.units}, |exact| = {_fmt(first.exact_norm)})",
            "",
            "| estimator | claims unbiased | rel. bias | z-test p | verdict | variance | MSE "
            "| cosine |",
            "|---|---|---:|---:|---|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r.estimator} | {'yes' if r.claimed_unbiased else 'no'} "
                f"| {_fmt(r.relative_bias)} | {_fmt_p(r.p_value)} | {verdict(r)} "
                f"| {_fmt(r.variance)} | {_fmt(r.mse)} | {r.cosine:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_markdown(reports: Sequence[EstimatorReport], settings: dict[str, object],
                   path: Path) -> None:
    header = [
        "# Estimator diagnostics",
        "",
        f"Replicates: {settings['replicates']}; loss evaluations per estimate: "
        f"{settings['budget']}; seed: {settings['seed']}.",
        "rel. bias = |mean - exact| / |exact|; z-test p: chi-square test (K dof) that the mean "
        f"equals the exact gradient, 'biased' when p < {P_VALUE_FLOOR:g}; variance: trace of the "
        "covariance of one estimate; MSE = E|estimate - exact|^2; cosine: mean cosine similarity "
        "of one estimate with the exact gradient.",
        "",
    ]
    path.write_text("\n".join(header) + markdown_table(reports))


def write_plot(reports: Sequence[EstimatorReport], path: Path) -> None:
    """Heat maps of relative bias and relative RMSE, estimators by problems."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    problems = list(dict.fromkeys(r.problem for r in reports))
    estimators = list(dict.fromkeys(r.estimator for r in reports))
    index = {(r.estimator, r.problem): r for r in reports}

    def grid(value) -> np.ndarray:
        out = np.full((len(estimators), len(problems)), np.nan)
        for i, e in enumerate(estimators):
            for j, p in enumerate(problems):
                if (e, p) in index:
                    out[i, j] = value(index[(e, p)])
        return out

    panels = [
        ("relative bias |mean - exact| / |exact|", grid(lambda r: r.relative_bias)),
        ("relative RMSE sqrt(MSE) / |exact|", grid(lambda r: math.sqrt(r.mse) / r.exact_norm)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(6 + 1.6 * len(problems), 1 + 0.42 * len(estimators)))
    for ax, (title, values) in zip(axes, panels, strict=True):
        shown = np.log10(np.clip(values, 1e-4, 1e4))
        image = ax.imshow(shown, cmap="viridis", vmin=-3, vmax=3, aspect="auto")
        ax.set_title(title + " (log10)", fontsize=9)
        ax.set_xticks(range(len(problems)), problems, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(estimators)), estimators, fontsize=8)
        for i in range(len(estimators)):
            for j in range(len(problems)):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if shown[i, j] < 0.5 else "black")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle("Gradient estimators against exact gradients (equal loss evaluations)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
