"""Settings of a training run (everything that is not the network's architecture)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from models.config_checks import (
    ConfigError,
    check_choice,
    check_int,
    check_number,
    from_mapping,
)

from .optim import LR_SCHEDULES, OPTIMIZERS


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 32  # per process; the paper's
    optimizer: str = "sgd"
    lr: float = 0.1  # the paper's
    gater_lr: float | None = None  # None: same as lr
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # training.optim.LR_SCHEDULES, over all of the run's epochs
    max_norm: float | None = 2.0  # the paper's max-norm on incoming weights; None disables
    sparsity_weight: float = 1.0  # weight of the KL penalty (Eq. 14)
    l1_initial: float = 1e-3  # starting lambda of the adaptive L1 penalty (Eq. 15)
    l1_rate: float = 0.01  # lambda's relative step per update (training.objectives.AdaptiveL1)
    l1_tolerance: float = 0.0  # distance from the target density within which lambda holds
    # The gaters' output bias at the start; None: the logit at which a gate is on with the
    # target density's probability (models.gated_network.GatedLayer), so a sparsity penalty only
    # has to hold the density there. A target of 1 asks for no sparsity: that logit saturates a
    # sigmoid gate, and 0 (the paper's start) lets it learn.
    gater_bias_init: float | None = None
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 1024
    max_seconds: float | None = None  # stop after the epoch that passes this wall time
    # Epochs after `epochs` that train with the gates it will be served with: thresholded
    # logits forward, straight-through to the gaters backward, each layer's threshold following
    # the target-density quantile of its batches (models.gated_network.GATE_MODES). With
    # epochs = 0 the network trains this way from the start.
    deterministic_epochs: int = 0
    threshold_momentum: float = 0.05  # the threshold's step toward each batch's quantile
    # Deterministic epochs over which the served density falls from every block on to the
    # target (training.density_schedule), so the blocks learn together before the
    # gaters must choose among them; 0 trains at the target from the first step.
    density_warmup_epochs: int = 0
    # Weight of the deterministic epochs' count balance (training.objectives.count_balance),
    # which evens out the number of blocks on across the examples of a batch.
    balance_weight: float = 1.0
    # Weight of the deterministic epochs' usage balance (training.objectives.usage_balance),
    # which evens out how many examples each block is on for; 0 disables.
    usage_balance_weight: float = 0.0
    # Epochs after those that train the main path under the deterministic gates, gaters and
    # thresholds frozen.
    finetune_epochs: int = 0
    # A trained run directory (config.json and checkpoints/) whose predictions the network also
    # learns from: the task loss becomes (1 - distill_weight) * cross-entropy + distill_weight
    # * T^2 * KL(teacher's softened probabilities || the network's), T the temperature.
    distill_from: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    # Keep, per phase (train, deterministic, finetune), the checkpoint of the epoch with the
    # lowest validation error, and report those networks: final.json's "best_epochs" gives each
    # one's validation and test figures (the test set is scored once per phase, at the end),
    # its top level and the returned network are the last phase's. Choices made on validation
    # alone; off, the last epoch's network is reported.
    best_epoch_per_phase: bool = False

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.deterministic_epochs + self.finetune_epochs

    def phase_of(self, epoch: int) -> str:
        """'train' (stochastic gates), 'deterministic' or 'finetune' for epoch 1, 2, ..."""
        if epoch <= self.epochs:
            return "train"
        if epoch <= self.epochs + self.deterministic_epochs:
            return "deterministic"
        return "finetune"

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size"):
            check_int(name, getattr(self, name))
        for name in ("epochs", "deterministic_epochs", "finetune_epochs",
                     "density_warmup_epochs"):
            check_int(name, getattr(self, name), minimum=0)
        if self.epochs + self.deterministic_epochs == 0:
            raise ConfigError("epochs: need at least one epoch that trains the gaters (epochs "
                              "or deterministic_epochs)")
        if self.density_warmup_epochs and self.density_warmup_epochs >= self.deterministic_epochs:
            raise ConfigError(f"density_warmup_epochs ({self.density_warmup_epochs}) must be "
                              f"fewer than deterministic_epochs ({self.deterministic_epochs}): "
                              "the density falls while the network trains on the served gates, "
                              "and at least one epoch trains at the target")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("lr", "momentum", "weight_decay", "sparsity_weight", "l1_initial",
                     "l1_rate", "l1_tolerance", "threshold_momentum", "balance_weight",
                     "usage_balance_weight", "distill_weight", "distill_temperature"):
            check_number(name, getattr(self, name))
        for name in ("gater_lr", "max_norm", "max_seconds"):
            check_number(name, getattr(self, name), allow_none=True)
        if not 0 < self.threshold_momentum <= 1:
            raise ConfigError(f"threshold_momentum must lie in (0, 1], got "
                              f"{self.threshold_momentum!r}")
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"distill_weight must lie in [0, 1], got {self.distill_weight!r}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be > 0, got "
                              f"{self.distill_temperature!r}")
        if self.distill_from is not None and not isinstance(self.distill_from, str):
            raise ConfigError(f"distill_from must be a run directory, got "
                              f"{self.distill_from!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got "
                              f"{self.lr_schedule!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be < 1, got {self.momentum!r}")
        check_number("gater_bias_init", self.gater_bias_init, -math.inf, allow_none=True)
        if not 0 <= self.l1_rate < 1:
            raise ConfigError(f"l1_rate must lie in [0, 1), got {self.l1_rate!r}")
        if not isinstance(self.best_epoch_per_phase, bool):
            raise ConfigError(f"best_epoch_per_phase must be true or false, got "
                              f"{self.best_epoch_per_phase!r}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not (self.device in ("cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        return from_mapping(cls, data, "training")
