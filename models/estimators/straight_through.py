"""Straight-through estimators (paper, section 4 "Straight-Through Estimator").

Forward: the Bernoulli draw h = 1[z < sigm(a)]. Backward: dL/dh is copied to dL/da as if the
unit were the identity (`st`), or multiplied by sigm'(a) as if it were the sigmoid
(`st-sigmoid`, which the paper found worse). Both are biased: they ignore that h is a step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimator, bernoulli_draw


class StraightThrough(Estimator):
    name = "st"
    family = "straight-through"
    unbiased = False
    summary = "straight-through: Bernoulli forward, dL/da := dL/dh"

    def __init__(self, num_units: int) -> None:
        super().__init__(num_units)

    def _carrier(self, logits: Tensor) -> Tensor:
        """The smooth function whose gradient stands in for the step's."""
        return logits

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        hard = bernoulli_draw(torch.sigmoid(logits.detach()), generator)
        carrier = self._carrier(logits)
        # Value of `hard`, gradient of `carrier`.
        return hard + (carrier - carrier.detach())


class StraightThroughSigmoid(StraightThrough):
    name = "st-sigmoid"
    summary = "straight-through times sigm'(a)"

    def _carrier(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)
