"""The paper's qualitative claims, each checked against our runs' test errors over seeds.

A claim is a list of comparisons "this run has a lower test error than that one", the orderings
the paper's Table 1 shows for it; training.reproduce_stats decides each one and the claim. The
claims are checked twice: on the variant without fine-tuning (the paper's procedure) and on the
variant chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reproduce_results import RunResult, variant_of
from .reproduce_stats import CANNOT_TELL, Comparison, combine, compare

ST, NOISY, REINFORCE, STS = ("straight-through", "noisy-rectifier", "reinforce",
                             "stochastic-times-smooth")
RECTIFIER, SIGMOID = "rectifier-baseline", "baseline-sigmoid"


@dataclass(frozen=True)
class Claim:
    text: str  # the paper's claim, in words
    comparisons: tuple[tuple[str, str], ...]  # (claimed lower error, claimed higher error)
    unchecked: str = ""  # a part of the claim the comparisons cannot decide, and why


CLAIMS = (
    Claim("Straight-through has the lowest test error of the paper's models",
          tuple((ST, other) for other in (NOISY, REINFORCE, STS, RECTIFIER, SIGMOID))),
    Claim("The noisy rectifier and the unbiased estimator (REINFORCE) come close behind "
          "straight-through, ahead of STS",
          ((ST, NOISY), (ST, REINFORCE), (NOISY, STS), (REINFORCE, STS)),
          unchecked="'close': a few seeds cannot show two errors equal; their gap is listed"),
    Claim("Stochastic times smooth trails the other stochastic estimators",
          ((ST, STS), (NOISY, STS), (REINFORCE, STS))),
    Claim("The gated models beat the same-budget baseline (Baseline Sigmoid: the 200 units "
          "10 % of the layer computes)",
          ((ST, SIGMOID), (NOISY, SIGMOID), (REINFORCE, SIGMOID), (RECTIFIER, SIGMOID))),
)


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    comparisons: tuple[Comparison, ...]  # those both of whose runs have results
    missing: tuple[str, ...]  # runs without a result for this variant
    verdict: str


def check_claims(results: dict[str, RunResult], variant: str) -> list[ClaimResult]:
    out = []
    for claim in CLAIMS:
        comparisons, missing = [], set()
        for lower, higher in claim.comparisons:
            a = variant_of(results[lower], variant) if lower in results else None
            b = variant_of(results[higher], variant) if higher in results else None
            missing.update(n for n, v in ((lower, a), (higher, b)) if v is None)
            if a is not None and b is not None:
                comparisons.append(compare(lower, a.test_error, higher, b.test_error))
        verdict = combine([c.verdict for c in comparisons])
        if missing and verdict != "refuted":
            verdict = CANNOT_TELL  # a comparison not made cannot be counted as reproduced
        out.append(ClaimResult(claim, tuple(comparisons), tuple(sorted(missing)), verdict))
    return out


@dataclass(frozen=True)
class ServingCheck:
    """A gated run against every dense run that executes no more multiply-adds per example."""

    gated: str
    comparisons: tuple[Comparison, ...]  # gated claimed lower than each cheaper dense run


def check_serving(results: dict[str, RunResult], group: str = "paper") -> list[ServingCheck]:
    """On the chosen variants: the design's rule that a gated model is worth serving only
    where it beats every dense model that costs as little."""
    chosen = {n: variant_of(r, "chosen") for n, r in results.items()
              if r.spec["group"] == group}
    dense = {n: v for n, v in chosen.items() if v is not None and not results[n].gated}
    checks = []
    for name, v in chosen.items():
        if v is None or not results[name].gated:
            continue
        cheaper = [d for d, dv in dense.items()
                   if dv.executed_macs.mean <= v.executed_macs.mean]
        checks.append(ServingCheck(name, tuple(
            compare(name, v.test_error, d, dense[d].test_error) for d in cheaper)))
    return checks
