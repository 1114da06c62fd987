"""docs/reproduction.md and its plots, from the summaries `reproduce run` writes.

Every statement about results in the document is generated from the numbers in its tables:
the paper's table beside ours, the checks of the paper's claims, and the compute comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.compute import dense_macs
from models.gated_config import preset

from .reproduce_findings import NOISY, REINFORCE, check_claims, check_serving
from .reproduce_plots import plot_blocks, plot_learning_curves
from .reproduce_results import VARIANTS, RunResult, merge_summaries, run_results, variant_of
from .reproduce_specs import GROUPS, SWEEP_DEVIATIONS
from .reproduce_stats import (
    CANNOT_TELL,
    REFUTED,
    REPRODUCED,
    RULE,
    Comparison,
    Spread,
    compare,
)

PAPER_NOTE = ("The paper's column is its MNIST test error (Table 1); ours come from another "
              "data set (see above), so compare orderings, not values.")


@dataclass(frozen=True)
class References:
    """What the compute columns divide by: the paper's layer with every unit on and no gater,
    and the 200-unit MLP (the budget 10 % of the layer's units stands for)."""

    dense_2000: float
    mlp_200: float


def references(results: dict[str, RunResult]) -> References:
    """From the runs' own networks (their data's input size); Fashion-MNIST's sizes where no
    run has finished. A one-hidden-layer MLP costs width * (inputs + classes), so the 200-unit
    one costs a tenth of the 2000-unit one."""
    measured = next((r.dense_macs for r in results.values() if r.dense_macs
                     and r.spec["preset"] in ("paper", "dense-2000-relu")), None)
    dense_2000 = measured or dense_macs(preset("dense-2000-relu"))
    return References(dense_2000, dense_2000 * 200 / 2000)


def _pct(s: Spread | None) -> str:
    if s is None:
        return "-"
    return f"{100 * s.mean:.2f}" if s.n < 2 else f"{100 * s.mean:.2f} ± {100 * s.sd:.2f}"


def _macs(s: Spread | None, refs: References) -> tuple[str, str, str]:
    if s is None:
        return "-", "-", "-"
    return (f"{s.mean / 1e6:.3f} M", f"{100 * s.mean / refs.dense_2000:.1f} %",
            f"{s.mean / refs.mlp_200:.2f} ×")


def _seeds(r: RunResult) -> str:
    done, planned = len(r.done_seeds), len(r.planned_seeds)
    return str(done) if done == planned else f"{done} of {planned}"


def _budget(r: RunResult) -> str:
    if not r.budgets:
        return "-"
    if len(r.budgets) > 1:
        return "mixed: " + ", ".join(f"{t} + {f}" for t, f in r.budgets)
    t, f = r.budgets[0]
    return f"{t} + {f}"


def _chosen(r: RunResult) -> str:
    return VARIANTS[r.chosen] if r.chosen else "-"


def _row_figures(r: RunResult, refs: References) -> list[str]:
    """Test % without and with fine-tuning, the choice, validation % and density of the chosen
    variant, its multiply-adds (and as fractions), seeds and epochs."""
    chosen = variant_of(r, "chosen")
    if not r.gated:
        density = "100 (dense)"
    elif r.spec["density"] >= 1:
        density = "100 (every gate scales its unit)"
    else:
        density = _pct(chosen.test_density if chosen else None)
    return [_pct(v.test_error if (v := r.variants.get("train")) else None),
            _pct(v.test_error if (v := r.variants.get("finetune")) else None),
            _chosen(r), _pct(chosen.valid_error if chosen else None), density,
            *_macs(chosen.executed_macs if chosen else None, refs), _seeds(r), _budget(r)]


FIGURE_HEADER = ("test % without fine-tuning | test % with fine-tuning | chosen on validation | "
                 "validation % (chosen) | gates on, % (chosen, test) | multiply-adds / example "
                 "(chosen, gater included) | of the dense 2000-unit layer | of the 200-unit MLP "
                 "| seeds | epochs (train + fine-tune)")
FIGURE_ALIGN = "---:|" * 2 + "---|" + "---:|" * 7


def paper_table(results: dict[str, RunResult], refs: References) -> list[str]:
    lines = ["| the paper's model | paper: MNIST test % | ours | " + FIGURE_HEADER + " |",
             "|---|---:|---|" + FIGURE_ALIGN]
    for r in results.values():
        if r.spec["group"] != "paper":
            continue
        paper = r.spec["paper_model"] or "(not in the paper)"
        error = r.spec["paper_mnist_error"]
        lines.append(f"| {paper} | {'-' if error is None else f'{error:.2f}'} | {r.name} | "
                     + " | ".join(_row_figures(r, refs)) + " |")
    return lines


def group_table(results: dict[str, RunResult], group: str, refs: References) -> list[str]:
    lines = ["| run | estimator | target density | " + FIGURE_HEADER + " |",
             "|---|---|---:|" + FIGURE_ALIGN]
    for r in results.values():
        if r.spec["group"] == group:
            estimator = r.spec["estimator"] if r.gated else "- (dense)"
            lines.append(f"| {r.name} | {estimator} | {100 * r.spec['density']:g} % | "
                         + " | ".join(_row_figures(r, refs)) + " |")
    return lines


def settings_table(results: dict[str, RunResult]) -> list[str]:
    lines = ["| run | group | the paper's settings it uses | where we depart, and why |",
             "|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r.name} | {r.spec['group']} | {r.spec['paper'] or '-'} | "
                     f"{r.spec['deviation'] or 'nowhere beyond the sweep-wide list'} |")
    return lines


def best_gated_sentence(results: dict[str, RunResult], refs: References) -> list[str]:
    """The gated model at the paper's density that validation prefers, and what it scored."""
    candidates = {n: v for n, r in results.items() if r.spec["group"] == "paper" and r.gated
                  and r.spec["density"] < 1 and (v := variant_of(r, "chosen"))}
    if not candidates:
        return ["No gated run at 10 % has finished a seed yet."]
    name = min(candidates, key=lambda n: candidates[n].valid_error.mean)
    v, r = candidates[name], results[name]
    return [f"Chosen on validation alone, the gated model at 10 % with the lowest validation "
            f"error is **{name}** ({_chosen(r)}): validation {_pct(v.valid_error)} %, test "
            f"{_pct(v.test_error)} % over {v.test_error.n} seed(s), executing "
            f"{_macs(v.executed_macs, refs)[1]} of the dense 2000-unit layer's "
            "multiply-adds."]


def _comparison(c: Comparison, outcome: str | None = None) -> str:
    """The difference of mean test errors ± its standard error, the test, and `outcome` (the
    verdict unless given)."""
    if c.p_value is None:
        p = "too few seeds to test"
    else:
        p = "p < 0.001" if c.p_value < 0.001 else f"p = {c.p_value:.3f}"
    return (f"{c.lower} − {c.higher}: {100 * c.difference:+.2f} ± "
            f"{100 * c.standard_error:.2f} points ({p}): {outcome or c.verdict}")


SERVING_OUTCOMES = {REPRODUCED: "the gated model is better", REFUTED: "the dense model is better",
                    CANNOT_TELL: "cannot tell"}


def findings(results: dict[str, RunResult]) -> list[str]:
    by_variant = {v: check_claims(results, v) for v in ("train", "chosen")}
    lines = [RULE, "", "| the paper's claim | without fine-tuning (the paper's procedure) | "
             "chosen on validation |", "|---|---|---|"]
    for plain, chosen in zip(by_variant["train"], by_variant["chosen"], strict=True):
        lines.append(f"| {plain.claim.text} | **{plain.verdict}** | **{chosen.verdict}** |")
    lines.append("")
    for i, claim in enumerate(by_variant["train"]):
        lines.append(f"{i + 1}. {claim.claim.text}."
                     + (f" Not tested: {claim.claim.unchecked}." if claim.claim.unchecked else ""))
        for variant, label in (("train", "without fine-tuning"), ("chosen", "chosen")):
            result = by_variant[variant][i]
            details = [_comparison(c) for c in result.comparisons]
            if result.missing:
                details.append("no result yet for " + ", ".join(result.missing))
            lines.append(f"   - {label}: " + "; ".join(details) + ".")
    return lines


def close_gap(results: dict[str, RunResult]) -> list[str]:
    """The gap the second claim calls 'close', which no verdict decides."""
    lines = []
    for variant, label in (("train", "without fine-tuning"), ("chosen", "chosen")):
        a = variant_of(results[NOISY], variant) if NOISY in results else None
        b = variant_of(results[REINFORCE], variant) if REINFORCE in results else None
        if a and b:
            c = compare(NOISY, a.test_error, REINFORCE, b.test_error)
            outcome = {REPRODUCED: f"{NOISY} lower", REFUTED: f"{REINFORCE} lower",
                       CANNOT_TELL: CANNOT_TELL}[c.verdict]
            paper = [results[n].spec["paper_mnist_error"] for n in (NOISY, REINFORCE)]
            lines.append(f"- The gap the second claim calls close, {label}: "
                         f"{_comparison(c, outcome)} (the paper's: {paper[0]:.2f} − "
                         f"{paper[1]:.2f} = {paper[0] - paper[1]:+.2f} points).")
    return lines


def serving(results: dict[str, RunResult], refs: References) -> list[str]:
    lines = ["A gated model is worth serving only where it beats every dense model that "
             "executes no more multiply-adds per example (gater included); the same test "
             "decides each comparison, on the variants chosen on validation.", "",
             "| gated run | multiply-adds (chosen) | dense runs executing no more | result |",
             "|---|---:|---|---|"]
    for check in check_serving(results):
        v = variant_of(results[check.gated], "chosen")
        cheaper = ", ".join(c.higher for c in check.comparisons) or "none"
        verdicts = "; ".join(_comparison(c, SERVING_OUTCOMES[c.verdict])
                             for c in check.comparisons) or (
            "no dense run costs as little: nothing to beat at its cost")
        lines.append(f"| {check.gated} | {_macs(v.executed_macs, refs)[0]} | {cheaper} | "
                     f"{verdicts} |")
    return lines


def _provenance(settings: list[dict]) -> list[str]:
    lines = []
    for s in settings:
        lines += [f"- `{s['summary']}`: {len(s['runs'])} runs × seeds "
                  f"{', '.join(map(str, s['seeds']))} ({s['trainings']} trainings); "
                  f"{s['data']}, {s['epochs']} + {s['finetune_epochs']} epochs, device "
                  f"{s['device']}, {s['jobs']} trainings at a time, "
                  f"{s['epoch_seconds'] / 3600:.1f} h of epochs summed over the trainings"
                  + (f", {s['limit']} examples per split" if s.get("limit") else "") + ":",
                  "", "  ```bash", f"  {s['command']}", "  ```", ""]
    return lines


def write_report(summary_paths: list[Path], docs: Path, command: str) -> Path:
    runs, settings = merge_summaries(summary_paths)
    results = run_results(runs)
    refs = references(results)
    data = ", ".join(sorted({s["data"] for s in settings}))
    docs.mkdir(parents=True, exist_ok=True)
    curves = plot_learning_curves(results, "paper", docs / "reproduction-curves.png")
    groups = {r.spec["group"] for r in results.values()}
    text = [
        "# Reproducing the paper's conditional-computation experiment",
        "",
        "Bengio, Léonard & Courville (2013, arXiv 1308.3432) compare gradient estimators for "
        "stochastic gates that switch off 90 % of a 2000-unit layer (Table 1). Here every "
        f"model of that table is trained on {data} (a twelfth of the training set held out "
        "for validation, the test set scored once per reported network) with the paper's "
        "settings where it gives them, over several seeds: each figure below is the mean ± "
        "standard deviation over the seeds shown beside it.",
        "",
        "Regenerate it (the sweep resumes where it stopped, so it can span sessions):",
        "",
        "```bash",
        "make reproduce        # scripts/reproduce: the sweep, then this report",
        f"{command}",
        "```",
        "",
        "Runs that produced it:",
        "",
        *_provenance(settings),
        "## The paper's settings and ours",
        "",
        *settings_table(results),
        "",
        "Departures that hold for every run:",
        "",
        f"- {data} instead of the paper's MNIST: the paper's errors are compared by their "
        "ordering, not their values.",
        *[f"- {d}" for d in SWEEP_DEVIATIONS],
        "",
        "## The paper's Table 1 beside ours",
        "",
        PAPER_NOTE + " Without fine-tuning: each run's best validation epoch of its training "
        "phase (the paper's procedure); with fine-tuning: its best validation epoch of the "
        "fine-tuning epochs after it (dense runs: as many more epochs of the same training). "
        "The compute columns count what the chosen network executes per test example: the "
        "gater in full, and only the blocks on (the dense 2000-unit layer: "
        f"{refs.dense_2000:,.0f} multiply-adds; the 200-unit MLP: {refs.mlp_200:,.0f}).",
        "",
        *paper_table(results, refs),
        "",
        *best_gated_sentence(results, refs),
        "",
        "## Findings: the paper's claims",
        "",
        *findings(results),
        "",
        *close_gap(results),
        "",
        "## Compute: which gated model is worth serving",
        "",
        *serving(results, refs),
        "",
    ]
    if curves:
        text += ["## Learning curves", "", "![learning curves](reproduction-curves.png)", ""]
    for group in ("beyond", "adam", "blocks"):
        if group in groups:
            text += [f"## {GROUPS[group][0].upper()}{GROUPS[group][1:]}", "",
                     *group_table(results, group, refs), ""]
            if group == "blocks" and plot_blocks(results, docs / "reproduction-blocks.png"):
                text += ["![error against density](reproduction-blocks.png)", ""]
            elif group != "blocks" and plot_learning_curves(
                    results, group, docs / f"reproduction-curves-{group}.png"):
                text += [f"![learning curves](reproduction-curves-{group}.png)", ""]
    path = docs / "reproduction.md"
    path.write_text("\n".join(text))
    return path

