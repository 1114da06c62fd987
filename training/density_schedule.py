"""The served density while it warms up: from every block on down to the target.

The fall is cubic in the warm-up's progress, as in gradual magnitude pruning (Zhu & Gupta 2017,
"To prune, or not to prune"): fast at first, while the network with most blocks on still has
plenty to lose, and slow near the target, where each block taken away costs most. Progress is
measured in epochs from the start of the deterministic phase, from (epoch, batch) alone, so a
resumed run follows the same schedule.
"""

from __future__ import annotations


def warmup_density(target: float, progress: float) -> float:
    """The density at `progress` (0 at the warm-up's start, >= 1 past its end)."""
    if not 0 < target <= 1:
        raise ValueError(f"target density must lie in (0, 1], got {target!r}")
    remaining = 1.0 - min(max(progress, 0.0), 1.0)
    return target + (1.0 - target) * remaining ** 3


def scheduled_density(target: float, warmup_epochs: int, epochs_into_phase: float) -> float:
    """The density `epochs_into_phase` epochs into the deterministic phase (fractions count
    batches); the target itself without a warm-up."""
    if warmup_epochs <= 0:
        return target
    return warmup_density(target, epochs_into_phase / warmup_epochs)
