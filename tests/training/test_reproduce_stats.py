"""The statistics behind the reproduction's verdicts."""

import pytest

from training.reproduce_stats import (
    CANNOT_TELL,
    REFUTED,
    REPRODUCED,
    Spread,
    combine,
    compare,
    spread,
)


def test_spread_is_the_mean_and_sample_standard_deviation():
    s = spread([0.10, 0.12, 0.14])
    assert s.n == 3
    assert s.mean == pytest.approx(0.12)
    assert s.sd == pytest.approx(0.02)  # n - 1 in the denominator
    assert spread([0.3]).sd == 0.0
    assert spread([]) is None


def test_a_clear_difference_in_the_claimed_direction_is_reproduced():
    c = compare("a", Spread((0.10, 0.11, 0.12)), "b", Spread((0.20, 0.21, 0.22)))
    assert c.verdict == REPRODUCED
    assert c.difference == pytest.approx(-0.10)
    assert c.p_value < 0.001


def test_a_clear_difference_the_other_way_is_refuted():
    c = compare("a", Spread((0.20, 0.21, 0.22)), "b", Spread((0.10, 0.11, 0.12)))
    assert c.verdict == REFUTED


def test_means_apart_by_less_than_the_seeds_spread_cannot_tell():
    # The means differ by 0.5 points, the seeds by about 1 point each: no verdict.
    c = compare("a", Spread((0.110, 0.125, 0.100)), "b", Spread((0.115, 0.130, 0.105)))
    assert c.difference < 0
    assert c.p_value > 0.05
    assert c.verdict == CANNOT_TELL


def test_one_seed_a_side_cannot_tell_however_far_apart():
    c = compare("a", Spread((0.10,)), "b", Spread((0.50, 0.52)))
    assert c.verdict == CANNOT_TELL and c.p_value is None


def test_a_claim_needs_all_its_comparisons_and_falls_with_any():
    assert combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, CANNOT_TELL]) == CANNOT_TELL
    assert combine([REPRODUCED, REFUTED, CANNOT_TELL]) == REFUTED
    assert combine([]) == CANNOT_TELL


def test_the_p_value_is_welchs():
    # Against scipy's own Welch test, on seeds with unequal spreads.
    from scipy import stats

    a, b = (0.11, 0.13, 0.12, 0.16), (0.15, 0.15, 0.16)
    c = compare("a", Spread(a), "b", Spread(b))
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
