"""The training loop: gated networks with any estimator, held at a target density.

One epoch: a seeded shuffle (the same on every process), each process taking every
world-size-th example; per batch the task loss, the score-function surrogates of REINFORCE-family
gaters (fed per-example losses), the sparsity penalties; SGD or Adam; max-norm. After each epoch
the thresholds are calibrated on validation data and the deterministic validation error and
density are logged, then a checkpoint is written. Gate noise and data order are seeded from
(seed, rank, epoch), so a run resumed from a checkpoint ends exactly where an uninterrupted one
would.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch import distributed as dist

from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork

from .best_epochs import best_epochs
from .calibrate import calibrate_thresholds, evaluate
from .checkpoint import checkpoint_of, latest_checkpoint, load_checkpoint, save_checkpoint
from .data import DataBundle
from .density_schedule import scheduled_density
from .distill import load_teacher, per_example_distillation_loss, soft_targets
from .objectives import (
    AdaptiveL1,
    count_balance,
    per_example_task_loss,
    realised_density,
    sparsity_penalty,
    usage_balance,
)
from .optim import apply_max_norm, build_optimizer, lr_factor, set_learning_rates
from .settings import TrainSettings

# Training examples that place the moving thresholds at the start of the deterministic phase.
CALIBRATION_EXAMPLES = 8192


class TrainingError(RuntimeError):
    """A run that cannot go on; the message says why and what was kept."""


class TrainingStep(nn.Module):
    """One batch's objective as a module, so DistributedDataParallel can wrap it whole."""

    def __init__(self, model: GatedNetwork, target_density: float, sparsity_weight: float,
                 balance_weight: float = 0.0, usage_weight: float = 0.0,
                 distill_weight: float = 0.0, distill_temperature: float = 1.0):
        super().__init__()
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.model = model
        self.target = target_density
        self.sparsity_weight = sparsity_weight
        self.balance_weight = balance_weight
        self.usage_weight = usage_weight

    def forward(self, x: Tensor, y: Tensor, l1_weights: list[float],
                generator: torch.Generator | None,
                teacher: Tensor | None = None) -> tuple[Tensor, ...]:
        gated = self.model.gated_layers
        # Gates the network will be served with (deterministic or frozen): one draw, no
        # score-function surrogate, and no sparsity penalty (the thresholds hold the mean
        # density); while the gaters learn, the count balance evens it out over examples.
        served = self.model.gate_mode != "stochastic"
        balance = self.model.gate_mode == "deterministic" and self.balance_weight > 0
        c = 1 if served else self.model.draws_per_estimate
        inputs = x.expand(c, *x.shape) if c > 1 else x  # (C, B, D) for multi-draw estimators
        out = self.model(inputs, generator)
        losses = per_example_task_loss(out.logits, y)  # (C, B) or (B,)
        task = losses.mean()
        if teacher is not None:
            # Per example, so score-function gaters learn from the same loss as the network.
            w = self.distill_weight
            losses = (1 - w) * losses + w * per_example_distillation_loss(
                out.logits, teacher, self.distill_temperature)
        total = losses.mean()
        penalties, densities = [], []
        for layer, trace, l1 in zip(gated, out.traces, l1_weights, strict=True):
            est = layer.estimator
            densities.append(realised_density(trace.gates))
            if served:
                penalty = (count_balance(trace.logits, layer.threshold, self.target) if balance
                           else torch.zeros((), device=task.device))
                total = total + self.balance_weight * penalty
                if self.usage_weight > 0 and self.model.gate_mode == "deterministic":
                    total = total + self.usage_weight * usage_balance(
                        trace.logits, layer.threshold, self.target)
                penalties.append(penalty.detach())
                continue
            # Score-function gaters learn from per-example losses only (zero for the others).
            total = total + est.surrogate(trace.logits, trace.gates, losses.detach()).mean()
            penalty = sparsity_penalty(est, trace.logits, trace.gates, self.target, l1)
            weight = self.sparsity_weight if est.sparsity_kind == "kl" else 1.0
            total = total + weight * penalty
            penalties.append(penalty.detach())
        errors = (out.logits.detach().argmax(-1) != y).float().mean()
        stats = torch.stack([task.detach(), errors, *penalties, *densities]) if penalties else \
            torch.stack([task.detach(), errors])
        return total, stats


@dataclass
class TrainResult:
    model: GatedNetwork
    history: list[dict[str, Any]]
    final: dict[str, Any]  # thresholds, validation and test error and density


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: str) -> tuple[int, int, str]:
    """Join the torchrun process group when launched by torchrun; returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist.get_rank(), dist.get_world_size(), device


def close_distributed(*, wait: bool) -> None:
    """Leave the process group so its communication threads stop before the interpreter exits.

    Without this, a process that finishes first can abort in the group's destructor while
    another is still writing the artifact. `wait` makes every process wait for the others
    first (the normal end); after an error a process leaves at once, since its peers may never
    reach the barrier.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def _seed_for(seed: int, *parts: int) -> int:
    value = seed
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**63 - 1)
    return value


class Trainer:
    def __init__(self, config: GatedNetworkConfig, settings: TrainSettings, data: DataBundle,
                 run_dir: Path, *, progress: bool = True, log=print) -> None:
        if data.input_size != config.input_size or data.num_classes != config.num_classes:
            raise TrainingError(
                f"the data ({data.name}: {data.input_size} inputs, {data.num_classes} classes) "
                f"does not fit the model ({config.input_size} inputs, {config.num_classes} "
                "classes)")
        self.config, self.settings, self.data = config, settings, data
        self.run_dir = Path(run_dir)
        self.rank, self.world = _distributed()
        self.device = torch.device(settings.device)
        self.progress = progress and self.rank == 0
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        torch.manual_seed(settings.seed)  # identical initial weights on every process
        self.model = GatedNetwork(config).to(self.device)
        if settings.gater_bias_init is not None:
            with torch.no_grad():
                for layer in self.model.gated_layers:
                    layer.gater.out.bias.fill_(settings.gater_bias_init)
        self.optimizer = build_optimizer(self.model, settings.optimizer, settings.lr,
                                         settings.gater_lr, settings.momentum, settings.nesterov,
                                         settings.weight_decay)
        self.step = TrainingStep(self.model, config.target_density, settings.sparsity_weight,
                                 settings.balance_weight, settings.usage_balance_weight,
                                 settings.distill_weight, settings.distill_temperature)
        self.step_module: nn.Module = self.step
        if self.world > 1:
            # Fine-tuning freezes the gaters mid-run: DDP must then not wait for their grads.
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, find_unused_parameters=settings.finetune_epochs > 0)
        self.l1 = [AdaptiveL1(settings.l1_initial, settings.l1_rate, settings.l1_tolerance)
                   for _ in self.model.gated_layers]
        self.history: list[dict[str, Any]] = []
        # The training set lives on the device for the whole run: one copy, no per-batch
        # host-to-device transfers.
        self._train_on_device = (data.train.x.to(self.device), data.train.y.to(self.device))
        self._teacher = None
        if settings.distill_from is not None:
            teacher = load_teacher(settings.distill_from, self.device)
            if (teacher.config.input_size, teacher.config.num_classes) != (
                    config.input_size, config.num_classes):
                raise TrainingError(f"the teacher in {settings.distill_from} does not fit the "
                                    "data (input size or classes differ)")
            self._teacher = soft_targets(teacher, self._train_on_device[0],
                                         settings.distill_temperature,
                                         settings.eval_batch_size)
            self.log(f"distilling from {settings.distill_from} (weight "
                     f"{settings.distill_weight:g}, temperature "
                     f"{settings.distill_temperature:g})")

    # -- state -----------------------------------------------------------------------------
    def _trainer_state(self) -> dict[str, Any]:
        return {"history": self.history, "l1": [p.value for p in self.l1]}

    def _restore(self) -> int:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            self.log(f"no checkpoint in {self.run_dir}: starting from scratch")
            return 0
        epoch, state = load_checkpoint(path, self.model, self.optimizer)
        self.history = state["history"]
        for penalty, value in zip(self.l1, state["l1"], strict=True):
            penalty.value = value
        self.log(f"resumed from {path} (epoch {epoch} done)")
        return epoch

    # -- loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        checkpoints = self.run_dir / "checkpoints"
        if not resume and latest_checkpoint(self.run_dir) is not None:
            raise TrainingError(f"{checkpoints} already holds checkpoints: pass --resume to "
                                "continue that run, or choose another run directory")
        start = self._restore() if resume else 0
        started = time.perf_counter()
        last = self.settings.total_epochs
        for epoch in range(start + 1, last + 1):
            phase = self.settings.phase_of(epoch)
            if self.model.gated_layers:
                self._enter_phase(phase, epoch)
            row = self._train_epoch(epoch)
            row["phase"] = phase
            # Recalibrated after fine-tuning epochs too: in a stack, a later layer's gater reads
            # an earlier layer's output, which fine-tuning changes (a frozen gater alone does
            # not keep its density). Deterministic epochs keep the thresholds they trained with.
            row.update(self._validate(calibrate=phase != "deterministic"))
            self.history.append(row)
            if self.rank == 0:
                keep = (tuple(best_epochs(self.history).values())
                        if self.settings.best_epoch_per_phase else ())
                save_checkpoint(self.run_dir, epoch, self.model, self.optimizer,
                                self._trainer_state(), keep_epochs=keep)
                self._write_metrics()
            self.log(_summary(row))
            budget = self.settings.max_seconds
            if budget is not None and time.perf_counter() - started > budget and (
                    epoch < last):
                self.log(f"time budget of {budget:g} s reached after epoch {epoch}: stopping")
                break
        if self.settings.best_epoch_per_phase and self.history:
            return self._best_epochs_result()
        return TrainResult(self.model, self.history, self._final())

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        s = self.settings
        n = len(self.data.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(
            _seed_for(s.seed, epoch)))[self.rank::self.world].to(self.device)
        gates = torch.Generator(device=self.device).manual_seed(
            _seed_for(s.seed, epoch, self.rank))
        x_all, y_all = self._train_on_device
        layers = len(self.model.gated_layers)
        sums = torch.zeros(2 + 2 * layers, dtype=torch.float64)
        batches = math.ceil(len(order) / s.batch_size)
        self.model.train()
        started = time.perf_counter()
        bar = _progress(batches, f"epoch {epoch}/{s.total_epochs}", self.progress)
        for b in range(batches):
            index = order[b * s.batch_size:(b + 1) * s.batch_size]
            x, y = x_all[index], y_all[index]
            # From (epoch, batch) alone, so a resumed run follows the same schedule.
            set_learning_rates(self.optimizer, s.lr, s.gater_lr, lr_factor(
                s.lr_schedule, (epoch - 1 + b / batches) / s.total_epochs))
            if s.density_warmup_epochs and self.model.gate_mode == "deterministic":
                self._set_training_density(self._density_at(epoch - 1 + b / batches))
            teacher = self._teacher[index] if self._teacher is not None else None
            loss, stats = self.step_module(x, y, [p.value for p in self.l1], gates, teacher)
            if not torch.isfinite(loss):
                last = latest_checkpoint(self.run_dir)
                kept = f"the last good checkpoint is {last}" if last else "no checkpoint yet"
                value = float(loss.detach())
                raise TrainingError(f"non-finite loss ({value}) at epoch {epoch}, batch {b + 1}: "
                                    f"stopping; {kept}. Lower the learning rate or check the "
                                    "data.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            apply_max_norm(self.model, s.max_norm)
            stats = stats.detach().double().cpu()
            if self.world > 1:  # the same lambda update on every process
                dist.all_reduce(stats)
                stats /= self.world
            for i, penalty in enumerate(self.l1):
                if self.model.gated_layers[i].estimator.sparsity_kind == "l1":
                    penalty.update(float(stats[2 + layers + i]), self.config.target_density)
            sums += stats
            if bar is not None:
                bar.update(1)
                if b % 20 == 0:
                    dens = stats[2 + layers:].tolist()
                    bar.set_postfix(loss=f"{float(stats[0]):.3f}",
                                    density=",".join(f"{d:.2f}" for d in dens))
        if bar is not None:
            bar.close()
        mean = (sums / max(batches, 1)).tolist()
        return {
            "epoch": epoch,
            "train_task_loss": mean[0],
            "train_error": mean[1],
            "train_penalty": mean[2:2 + layers],
            "train_density": mean[2 + layers:],
            "l1_lambda": [p.value for p in self.l1],
            "epoch_seconds": time.perf_counter() - started,
        }

    def _enter_phase(self, phase: str, epoch: int) -> None:
        if phase == "train":
            self.model.set_gate_mode("stochastic")
        elif phase == "deterministic":
            if epoch == self.settings.epochs + 1:
                # The moving thresholds start where the target density lies on training data
                # (at a later epoch they are the checkpoint's, so a resumed run is identical).
                x = self.data.train.x[:CALIBRATION_EXAMPLES].to(self.device)
                calibrate_thresholds(self.model, x, self._density_at(epoch - 1),
                                     self.settings.eval_batch_size)
                self.log("training with the served gates: thresholded forward, "
                         "straight-through to the gaters")
            self.model.set_gate_mode("deterministic", self.settings.threshold_momentum)
        elif self.model.gate_mode != "frozen":
            self._enter_finetuning()

    def _density_at(self, epochs_done: float) -> float:
        """The density the served gates train at after `epochs_done` epochs of the run."""
        into_phase = epochs_done - self.settings.epochs
        return scheduled_density(self.config.target_density,
                                 self.settings.density_warmup_epochs, into_phase)

    def _set_training_density(self, density: float) -> None:
        """Where the moving thresholds and the count balance hold the density."""
        self.step.target = density
        for layer in self.model.gated_layers:
            layer.target_density = density

    def _enter_finetuning(self) -> None:
        """Freeze the gaters at thresholds calibrated now; the main path trains on under them."""
        x = self.data.valid.x.to(self.device)
        calibrate_thresholds(self.model, x, self.config.target_density,
                             self.settings.eval_batch_size)
        self.model.set_gate_mode("frozen")
        for p in self.model.gater_parameters():
            p.requires_grad_(False)
        self.log("fine-tuning the main path under the calibrated deterministic gates")

    def _validate(self, calibrate: bool = True) -> dict[str, Any]:
        x = self.data.valid.x.to(self.device)
        y = self.data.valid.y.to(self.device)
        if calibrate:
            calibrate_thresholds(self.model, x, self.config.target_density,
                                 self.settings.eval_batch_size)
        thresholds = self.model.thresholds()
        result = evaluate(self.model, x, y, self.settings.eval_batch_size)
        return {"valid_error": result["error"], "valid_density": result["density"],
                "valid_executed_macs": result["executed_macs"], "thresholds": thresholds}

    def _final(self) -> dict[str, Any]:
        # The last epoch already calibrated on validation data (its thresholds are in the
        # model, also after a resume); only a run with no epoch yet calibrates here.
        keys = ("valid_error", "valid_density", "thresholds")
        valid = ({k: self.history[-1][k] for k in keys} if self.history
                 else self._validate())
        test = evaluate(self.model, self.data.test.x.to(self.device),
                        self.data.test.y.to(self.device), self.settings.eval_batch_size)
        seconds = [row["epoch_seconds"] for row in self.history]
        return {**valid, "test_error": test["error"], "test_density": test["density"],
                "test_executed_macs": test["executed_macs"], "dense_macs": test["dense_macs"],
                "epochs": len(self.history),
                "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None}

    def _best_epochs_result(self) -> TrainResult:
        """Each phase's network at its best validation epoch, its test figures measured now
        (once per phase); the last phase's network is the one returned."""
        if self.world > 1:  # rank 0 wrote the checkpoints read here
            dist.barrier()
        rows = {row["epoch"]: row for row in self.history}
        x, y = self.data.test.x.to(self.device), self.data.test.y.to(self.device)
        chosen, network = {}, self.model
        for phase, epoch in best_epochs(self.history).items():
            network = GatedNetwork(self.config).to(self.device)
            load_checkpoint(checkpoint_of(self.run_dir, epoch), network, None)
            test = evaluate(network, x, y, self.settings.eval_batch_size)
            row = rows[epoch]
            chosen[phase] = {"epoch": epoch, "valid_error": row["valid_error"],
                             "valid_density": row["valid_density"],
                             "thresholds": row["thresholds"], "test_error": test["error"],
                             "test_density": test["density"],
                             "test_executed_macs": test["executed_macs"],
                             "dense_macs": test["dense_macs"]}
        seconds = [row["epoch_seconds"] for row in self.history]
        final = {**chosen[phase], "epochs": len(self.history), "best_epochs": chosen,
                 "seconds_per_epoch": sum(seconds) / len(seconds)}
        return TrainResult(network, self.history, final)

    def _write_metrics(self) -> None:
        (self.run_dir / "metrics.json").write_text(json.dumps(self.history, indent=1))
        with open(self.run_dir / "metrics.csv", "w", newline="") as f:
            writer = csv.writer(f)
            keys = list(self.history[0])
            writer.writerow(keys)
            for row in self.history:
                writer.writerow([json.dumps(row[k]) if isinstance(row[k], list) else row[k]
                                 for k in keys])


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)


def _summary(row: dict[str, Any]) -> str:
    dens = ",".join(f"{d:.3f}" for d in row["train_density"]) or "-"
    vdens = ",".join(f"{d:.3f}" for d in row["valid_density"]) or "-"
    return (f"epoch {row['epoch']}: loss {row['train_task_loss']:.4f}, train error "
            f"{row['train_error']:.4f}, train density {dens}, valid error "
            f"{row['valid_error']:.4f} at density {vdens}, {row['epoch_seconds']:.1f} s")
