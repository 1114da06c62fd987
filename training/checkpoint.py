"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder `<run>/checkpoints/epoch-NNNN/` with `state.safetensors` (model
parameters and buffers, optimiser tensors) and `state.json` (epoch,
optimiser hyperparameters, trainer state, metrics so far). It is written beside and renamed into
place, and `<run>/checkpoints/latest.json` (also replaced atomically) names the newest one, so a
run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork

KEEP = 2  # checkpoints kept per run: the newest and the one before it (and any asked to stay)


def _split_tensors(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor leaf of a JSON-like tree by a reference, collecting the tensors."""
    if isinstance(tree, torch.Tensor):
        key = prefix
        tensors[key] = tree.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(tree, dict):
        return {str(k): _split_tensors(v, f"{prefix}/{k}", tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_tensors(v, f"{prefix}/{i}", tensors) for i, v in enumerate(tree)]
    return tree


def _join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_tensors(v, tensors) for v in tree]
    return tree


def _optimizer_state_to_tree(state: dict) -> dict:
    # Optimiser state is keyed by integer parameter index; JSON keys are strings.
    return {"state": {str(k): v for k, v in state["state"].items()},
            "param_groups": state["param_groups"]}


def _optimizer_state_from_tree(tree: dict) -> dict:
    return {"state": {int(k): v for k, v in tree["state"].items()},
            "param_groups": tree["param_groups"]}


def save_checkpoint(run_dir: Path, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any],
                    keep_epochs: tuple[int, ...] = ()) -> Path:
    """No random generator state is saved: the trainer seeds every epoch's generators from
    (seed, epoch, rank), so a resumed epoch draws exactly what the lost one drew. The
    checkpoints of `keep_epochs` survive the pruning of old ones."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = {
        "epoch": epoch,
        "model": _split_tensors(dict(model.state_dict()), "model", tensors),
        "optimizer": _split_tensors(_optimizer_state_to_tree(optimizer.state_dict()),
                                    "optimizer", tensors),
        "trainer": trainer_state,
    }
    final = checkpoint_of(run_dir, epoch)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-epoch-{epoch:04d}-", dir=folder))
    try:
        save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": "pt"})
        (tmp / "state.json").write_text(json.dumps(tree, indent=1, allow_nan=False))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(folder / "latest.json", json.dumps({"checkpoint": final.name, "epoch": epoch}))
    kept = {checkpoint_of(run_dir, e) for e in keep_epochs}
    for old in sorted(p for p in folder.glob("epoch-*") if p != final)[:-(KEEP - 1) or None]:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_of(run_dir: Path, epoch: int) -> Path:
    """The folder that holds (or would hold) epoch `epoch`'s checkpoint."""
    return Path(run_dir) / "checkpoints" / f"epoch-{epoch:04d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest.json"
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["checkpoint"]
    path = pointer.parent / name
    return path if (path / "state.json").exists() else None


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None) -> tuple[int, dict[str, Any]]:
    """Restore model and optimiser (None: the model alone, to inspect it) in place; return
    (epoch, trainer_state)."""
    tensors = load_file(str(Path(path) / "state.safetensors"))
    tree = _join_tensors(json.loads((Path(path) / "state.json").read_text()), tensors)
    model.load_state_dict(tree["model"])
    if optimizer is not None:
        optimizer.load_state_dict(_optimizer_state_from_tree(tree["optimizer"]))
    return int(tree["epoch"]), tree["trainer"]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    for child in folder.iterdir():
        with open(child, "rb") as f:
            os.fsync(f.fileno())


def load_run_network(run_dir: Path) -> tuple[GatedNetwork, int] | None:
    """The network a training run directory holds (its config.json's model, with the latest
    checkpoint's weights) and that checkpoint's epoch; None when it holds no run."""
    run_dir = Path(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or not (run_dir / "config.json").is_file():
        return None
    config = GatedNetworkConfig.from_dict(
        json.loads((run_dir / "config.json").read_text())["model"])
    model = GatedNetwork(config)
    epoch, _ = load_checkpoint(checkpoint, model, None)
    return model, epoch
