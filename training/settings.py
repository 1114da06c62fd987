"""Settings of a training run (everything that is not the network's architecture)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.config_checks import (
    ConfigError,
    check_choice,
    check_int,
    check_number,
    from_mapping,
)

from .optim import OPTIMIZERS


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
    max_norm: float | None = 2.0  # the paper's max-norm on incoming weights; None disables
    sparsity_weight: float = 1.0  # weight of the KL penalty (Eq. 14)
    l1_initial: float = 1e-3  # starting lambda of the adaptive L1 penalty (Eq. 15)
    l1_rate: float = 0.01  # log-step of lambda per update
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 1024
    max_seconds: float | None = None  # stop after the epoch that passes this wall time
    # Epochs after `epochs` that train the main path under the calibrated deterministic gates,
    # gaters frozen: the network then learns the gating it will be served with.
    finetune_epochs: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            check_int(name, getattr(self, name))
        check_int("finetune_epochs", self.finetune_epochs, minimum=0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("lr", "momentum", "weight_decay", "sparsity_weight", "l1_initial",
                     "l1_rate"):
            check_number(name, getattr(self, name))
        for name in ("gater_lr", "max_norm", "max_seconds"):
            check_number(name, getattr(self, name), allow_none=True)
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be < 1, got {self.momentum!r}")
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
