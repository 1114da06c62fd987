"""Means, spreads and verdicts over seeds: the statistics docs/reproduction.md states.

A comparison "A has a lower error than B" is decided by Welch's two-sided t-test on the per-seed
errors (no equal-variance assumption, fit for a handful of seeds): `reproduced` when p < ALPHA
and A's mean is lower, `refuted` when p < ALPHA and A's mean is higher, and `cannot tell` within
the seeds' spread otherwise (or with fewer than two seeds on either side). A claim made of several
comparisons is reproduced when all of them are, refuted when any one is, and cannot tell
otherwise. No correction is made for the number of comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05
REPRODUCED, REFUTED, CANNOT_TELL = "reproduced", "refuted", "cannot tell"
RULE = (f"Welch's two-sided t-test on the per-seed test errors: a comparison is *reproduced* "
        f"when p < {ALPHA:g} and the difference has the paper's sign, *refuted* when p < "
        f"{ALPHA:g} and it has the other sign, and *cannot tell* (within the seeds' spread) "
        f"otherwise or with fewer than two seeds a side. A claim is reproduced when all of its "
        f"comparisons are, refuted when any one is, cannot tell otherwise; no correction for "
        f"the number of comparisons.")


@dataclass(frozen=True)
class Spread:
    """One quantity over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single seed."""
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))


def spread(values) -> Spread | None:
    values = tuple(float(v) for v in values)
    return Spread(values) if values else None


@dataclass(frozen=True)
class Comparison:
    """`lower` was claimed to have the lower error than `higher`."""

    lower: str
    higher: str
    difference: float  # mean(lower) - mean(higher); negative agrees with the claim
    standard_error: float  # of that difference
    p_value: float | None  # None: too few seeds to test
    verdict: str


def compare(lower: str, a: Spread, higher: str, b: Spread, alpha: float = ALPHA) -> Comparison:
    """Test the claim mean(a) < mean(b) (see the module's rule)."""
    difference = a.mean - b.mean
    var_a, var_b = a.sd ** 2 / a.n, b.sd ** 2 / b.n  # of each mean
    se = math.sqrt(var_a + var_b)
    if a.n < 2 or b.n < 2:
        return Comparison(lower, higher, difference, se, None, CANNOT_TELL)
    if se == 0:  # identical seeds on both sides: the difference is exact
        p = 0.0 if difference else 1.0
    else:
        # Welch-Satterthwaite degrees of freedom.
        df = (var_a + var_b) ** 2 / (var_a ** 2 / (a.n - 1) + var_b ** 2 / (b.n - 1))
        p = float(2 * stats.t.sf(abs(difference) / se, df))
    verdict = (REPRODUCED if difference < 0 else REFUTED) if p < alpha else CANNOT_TELL
    return Comparison(lower, higher, difference, se, p, verdict)


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from those of its comparisons."""
    if not verdicts:
        return CANNOT_TELL
    if REFUTED in verdicts:
        return REFUTED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else CANNOT_TELL
