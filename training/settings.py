"""Settings of a training run (everything that is not the network's architecture)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from models.gated_config import ConfigError

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
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")

        def non_negative(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                    or v < 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive_int(name)
        if (not isinstance(self.finetune_epochs, int) or isinstance(self.finetune_epochs, bool)
                or self.finetune_epochs < 0):
            raise ConfigError(f"finetune_epochs must be an integer >= 0, got "
                              f"{self.finetune_epochs!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                              f"{self.optimizer!r}")
        for name in ("lr", "momentum", "weight_decay", "sparsity_weight", "l1_initial",
                     "l1_rate"):
            non_negative(name)
        for name in ("gater_lr", "max_norm", "max_seconds"):
            non_negative(name, allow_none=True)
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"training: unknown field(s) {', '.join(unknown)}")
        return cls(**data)
