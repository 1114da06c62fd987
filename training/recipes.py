"""Each preset's default training recipe: what `sparsegate-train --preset NAME` trains with.

A recipe is a partial TrainSettings; a config file's "training" part and command-line options
override it. The figures behind each choice, measured on validation splits, are in
docs/accuracy-vs-compute.md with the commands that made them.
"""

from __future__ import annotations

from typing import Any

# The paper's recipe (SGD, learning rate 0.1, batch 32, max-norm 2) for its own layer and its
# dense baselines: the reproduction compares estimators under the paper's settings.
PAPER = {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "max_norm": 2.0, "epochs": 10}

# Block-gated stacks: Adam at 1e-3 without max-norm (max-norm 2 caps a wide stack's weights far
# below a working scale), decayed to zero along a cosine (at a constant rate the weights of the
# last epoch are one noisy step's, and the network with every block on loses about 1.5 points
# of validation error to it), half the epochs with stochastic straight-through gates, then half
# with the served gates (thresholded forward, straight-through to the gaters, moving
# thresholds), so the network ends training on exactly the gates it is served with.
BLOCKS = {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "max_norm": None,
          "lr_schedule": "cosine", "epochs": 10, "deterministic_epochs": 10}

RECIPES: dict[str, dict[str, Any]] = {
    "paper": PAPER,
    "paper-baseline-sigmoid": PAPER,
    "dense-200-sigmoid": PAPER,
    "dense-2000-relu": PAPER,
    "blocks": BLOCKS,
    # On Fashion-MNIST's validation split at 10 % (docs/accuracy-vs-compute-fashion-mnist.md),
    # training on the served gates from the start with the count balance did best: with the
    # binary gates of seed 0, 10.24 %, against 10.42 % without the balance, 11.54 % after 10
    # stochastic epochs, and 11.60 % at a constant learning rate; the preset's rectifier gates
    # then took it from 10.40 % to 10.17 % (seeds 0-2).
    "blocks-narrow": {**BLOCKS, "epochs": 0, "deterministic_epochs": 20},
    # blocks-narrow's recipe, unchanged: the width is the only difference the comparisons with
    # it measure.
    "blocks-256x8": {**BLOCKS, "epochs": 0, "deterministic_epochs": 20},
    "blocks-512x8": {**BLOCKS, "epochs": 0, "deterministic_epochs": 20},
    "blocks-32x32": BLOCKS,
    # 1 318 training digits: small batches and more passes. On the digits' validation splits
    # (three seeds) training on the served gates from the start did best (0 + 40 epochs).
    "blocks-digits": {"optimizer": "adam", "lr": 3e-3, "batch_size": 32, "max_norm": None,
                      "epochs": 0, "deterministic_epochs": 40},
}


def recipe(preset: str | None) -> dict[str, Any]:
    """The preset's recipe (a copy); {} for no preset or a config file."""
    return dict(RECIPES.get(preset or "", {}))
