"""The one place that maps estimator names to classes."""

from __future__ import annotations

import inspect

from .base import Estimator
from .noise_injection import DropoutSigmoid, NoisyRectifier, NoisySigmoid, Rectifier
from .relaxation import GumbelStraightThrough, HardConcrete
from .score_function import DisARM, LeaveOneOut, Reinforce, ReinforceMean, ReinforceNoBaseline
from .stochastic_times_smooth import StochasticTimesSmooth
from .straight_through import StraightThrough, StraightThroughSigmoid

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        Reinforce,
        ReinforceNoBaseline,
        ReinforceMean,
        StraightThrough,
        StraightThroughSigmoid,
        StochasticTimesSmooth,
        NoisyRectifier,
        Rectifier,
        NoisySigmoid,
        DropoutSigmoid,
        GumbelStraightThrough,
        HardConcrete,
        LeaveOneOut,
        DisARM,
    )
}


def estimator_class(name: str) -> type[Estimator]:
    """The class registered under `name`; ValueError naming the valid ones otherwise."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(ESTIMATORS))
        raise ValueError(f"unknown estimator {name!r}; valid names: {valid}") from None


def make_estimator(name: str, num_units: int, **settings: object) -> Estimator:
    """Build estimator `name` for `num_units` units; bad settings raise ValueError."""
    cls = estimator_class(name)
    try:
        return cls(num_units, **settings)
    except TypeError as err:  # an unexpected keyword: say which settings exist
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in
                  ("self", "num_units")]
        raise ValueError(f"bad settings for estimator {name!r}: {err}; it accepts: "
                         f"{', '.join(params) or 'no settings'}") from None
