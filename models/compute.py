"""Exact accounting of the multiply-adds a gated forward runs (design.md, "Compute accounting").

Counted from the shapes that run, per example:
- dense reference: the same network with every block on and no gater;
- executed: every gater, reading all of its input units; each gated layer's main path for the
  blocks it computed (the active ones, or all of them where the engine routed the example
  dense at that layer); and every layer after a gated layer, gated or not, reading only the
  units of the blocks that layer computed (an inactive block's units are zero and their weight
  rows are not read). An engine whose gated layers read the whole output of a gated layer
  before them (the Triton path) says so with `gated_reads_all_inputs`; one whose gaters after
  a gated layer read only the units of the blocks computed there, as its main path does (the
  CPU engine's lone example in C), says so with `gaters_read_all_inputs=False`, and its
  reports count those gaters' first products over those units.
Bias additions and element-wise activations are not counted: they are not multiply-adds and are
negligible next to the matrix products.

Counts come in as any array of integers (torch tensors on any device, numpy arrays, lists) and
are worked out with numpy, so that a server with no torch (one serving ONNX graphs) counts them
by the same code.

Letters: B examples, L layers (gated or not), G gated layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from .gated_config import GatedLayerConfig, GatedNetworkConfig

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class ComputeReport:
    """One example's compute: what a response reports."""

    dense_macs: int
    executed_macs: int
    gater_macs: int
    active_blocks: tuple[int, ...]  # per gated layer
    blocks: tuple[int, ...]  # per gated layer
    computed_blocks: tuple[int, ...]  # per gated layer: active, or all where routed dense

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.executed_macs / self.dense_macs

    def as_dict(self) -> dict[str, object]:
        return {"dense_macs": self.dense_macs, "executed_macs": self.executed_macs,
                "gater_macs": self.gater_macs, "saved_fraction": self.saved_fraction,
                "active_blocks": list(self.active_blocks), "blocks": list(self.blocks),
                "computed_blocks": list(self.computed_blocks)}


def dense_macs(config: GatedNetworkConfig) -> int:
    """Multiply-adds of the network run densely: every block, no gater."""
    total, width = 0, config.input_size
    for layer in config.layers:
        total += width * layer.width
        width = layer.width
    return total + width * config.num_classes


def gater_macs(config: GatedNetworkConfig) -> int:
    """Multiply-adds of all gaters reading every input unit (they always run: they decide what
    else runs)."""
    total, width = 0, config.input_size
    for layer in config.layers:
        if layer.gated:
            total += _one_gater(layer, width)
        width = layer.width
    return total


def _one_gater(layer: GatedLayerConfig, inputs: int | np.ndarray) -> int | np.ndarray:
    """A gater's multiply-adds reading `inputs` units (an int, or (B,) per example)."""
    hidden = layer.gater_hidden
    return inputs * hidden + hidden * layer.blocks if hidden else inputs * layer.blocks


def _int64(counts: Any) -> np.ndarray:
    """Block counts as a numpy int64 array, from a torch tensor on any device or an array."""
    if hasattr(counts, "detach"):  # a torch tensor, perhaps on a GPU
        counts = counts.detach().cpu().numpy()
    return np.asarray(counts).astype(np.int64, copy=False)


def executed_macs(config: GatedNetworkConfig, active_blocks: Tensor | np.ndarray,
                  computed_blocks: Tensor | np.ndarray | None = None, *,
                  gated_reads_all_inputs: bool = False,
                  gaters_read_all_inputs: bool = True) -> np.ndarray:
    """Per-example multiply-adds, (B,) int64, given the blocks each example computed per gated
    layer (B, G); `computed_blocks` defaults to `active_blocks` (every block computed is on).
    `gated_reads_all_inputs`: a gated layer after a gated layer reads all of its input units
    rather than those of the blocks computed; `gaters_read_all_inputs` False: its gater reads
    only those of the blocks computed."""
    return _executed(config, active_blocks, computed_blocks, gated_reads_all_inputs,
                     gaters_read_all_inputs)[0]


def _executed(config: GatedNetworkConfig, active_blocks, computed_blocks,
              gated_reads_all_inputs: bool, gaters_read_all_inputs: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """(executed multiply-adds, of which the gaters'), both (B,) int64."""
    computed = _int64(active_blocks if computed_blocks is None else computed_blocks)
    gated = [layer for layer in config.layers if layer.gated]
    if computed.ndim != 2 or computed.shape[1] != len(gated):
        raise ValueError(f"blocks per example must be (B, {len(gated)}), got "
                         f"{tuple(computed.shape)}")
    # Python ints until a count depends on the example: a request's few numpy calls are most
    # of what accounting costs it.
    total: int | np.ndarray = 0
    gaters: int | np.ndarray = 0
    width = config.input_size  # units the previous layer outputs
    reads: int | np.ndarray = width  # of those, units a dense layer reads, (B,) once gated
    g = 0
    for layer in config.layers:
        if layer.gated:
            gaters = gaters + _one_gater(layer, width if gaters_read_all_inputs else reads)
            units = computed[:, g] * layer.block_size  # (B,) units computed
            total = total + (width if gated_reads_all_inputs else reads) * units
            reads = units
            g += 1
        else:
            total = total + reads * layer.width
            reads = layer.width
        width = layer.width
    batch = computed.shape[0]
    return (_per_example(total + gaters + reads * config.num_classes, batch),
            _per_example(gaters, batch))


def _per_example(count: int | np.ndarray, batch: int) -> np.ndarray:
    """A count that may be the same for every example as a fresh (B,) int64 array."""
    if isinstance(count, np.ndarray):  # already (B,): a count of each example's blocks
        return count.astype(np.int64)
    return np.full(batch, count, dtype=np.int64)


class ComputeReports(Sequence[ComputeReport]):
    """A batch's reports, one per example, held as arrays: made, sliced, summed and written
    out in a few numpy calls however large the batch, so a thousand-example request costs no
    thousand Python objects. Indexing one example gives its `ComputeReport`.

    executed_macs, gater_macs (B,) int64 (the gaters' share of the executed ones: all of every
    gater, or fewer where gaters read only the blocks computed before them); active_blocks,
    computed_blocks (B, G) int64; the dense multiply-adds and the blocks per gated layer are the
    network's, the same for every example. `gater_macs` may be given as one number for all."""

    def __init__(self, dense_macs: int, gater_macs: int | np.ndarray, blocks: tuple[int, ...],
                 executed_macs: np.ndarray, active_blocks: np.ndarray,
                 computed_blocks: np.ndarray) -> None:
        rows = executed_macs.shape[0]
        shape = (rows, len(blocks))
        if not (isinstance(gater_macs, np.ndarray) and gater_macs.shape == (rows,)):
            gater_macs = np.broadcast_to(np.asarray(gater_macs, dtype=np.int64), (rows,))
        if (executed_macs.ndim != 1 or active_blocks.shape != shape
                or computed_blocks.shape != shape):
            raise ValueError(f"reports of {rows} examples and {len(blocks)} gated layers need "
                             f"(B,) and (B, G) counts, got {executed_macs.shape}, "
                             f"{active_blocks.shape}, {computed_blocks.shape}")
        self.dense_macs, self.gater_macs, self.blocks = int(dense_macs), gater_macs, blocks
        self.executed_macs = executed_macs.astype(np.int64, copy=False)
        self.active_blocks = active_blocks.astype(np.int64, copy=False)
        self.computed_blocks = computed_blocks.astype(np.int64, copy=False)

    @classmethod
    def of(cls, reports: Sequence[ComputeReport]) -> ComputeReports:
        """The batch of some single reports, all of one network (at least one)."""
        if not reports:
            raise ValueError("no reports")
        first = reports[0]
        shape = (len(reports), len(first.blocks))
        return cls(first.dense_macs, np.array([r.gater_macs for r in reports], dtype=np.int64),
                   first.blocks, np.array([r.executed_macs for r in reports], dtype=np.int64),
                   np.array([r.active_blocks for r in reports], dtype=np.int64).reshape(shape),
                   np.array([r.computed_blocks for r in reports],
                            dtype=np.int64).reshape(shape))

    @classmethod
    def joined(cls, parts: Sequence[ComputeReports]) -> ComputeReports:
        """The reports of consecutive parts of one batch, in order, as one (at least one
        part, all of one network)."""
        if not parts:
            raise ValueError("no reports")
        first = parts[0]
        return cls(first.dense_macs, np.concatenate([p.gater_macs for p in parts]),
                   first.blocks, np.concatenate([p.executed_macs for p in parts]),
                   np.concatenate([p.active_blocks for p in parts]),
                   np.concatenate([p.computed_blocks for p in parts]))

    def __len__(self) -> int:
        return self.executed_macs.shape[0]

    @overload
    def __getitem__(self, index: int) -> ComputeReport: ...
    @overload
    def __getitem__(self, index: slice) -> ComputeReports: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ComputeReports(self.dense_macs, self.gater_macs[index], self.blocks,
                                  self.executed_macs[index], self.active_blocks[index],
                                  self.computed_blocks[index])
        return ComputeReport(self.dense_macs, int(self.executed_macs[index]),
                             int(self.gater_macs[index]),
                             tuple(self.active_blocks[index].tolist()), self.blocks,
                             tuple(self.computed_blocks[index].tolist()))

    def __iter__(self) -> Iterator[ComputeReport]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # mutable arrays inside

    def __repr__(self) -> str:
        return f"ComputeReports({len(self)} examples, blocks {self.blocks})"

    def saved_fractions(self) -> np.ndarray:
        """(B,) float64: each example's 1 - executed / dense, as `ComputeReport` computes it."""
        return 1.0 - self.executed_macs / self.dense_macs

    def active_fractions(self) -> np.ndarray:
        """(B,) float64: blocks on over blocks, summed over the gated layers (empty where the
        network has no gated layer)."""
        if not self.blocks:
            return np.empty(0)
        return self.active_blocks.sum(axis=1) / sum(self.blocks)

    def as_dicts(self) -> list[dict[str, object]]:
        """Each example's `ComputeReport.as_dict()`, equal to it value for value."""
        blocks = list(self.blocks)
        dense = self.dense_macs
        return [{"dense_macs": dense, "executed_macs": e, "gater_macs": gater,
                 "saved_fraction": s, "active_blocks": a, "blocks": blocks.copy(),
                 "computed_blocks": c}
                for e, gater, s, a, c in zip(self.executed_macs.tolist(),
                                             self.gater_macs.tolist(),
                                             self.saved_fractions().tolist(),
                                             self.active_blocks.tolist(),
                                             self.computed_blocks.tolist(), strict=True)]


def compute_reports(config: GatedNetworkConfig, active_blocks: Tensor | np.ndarray,
                    computed_blocks: Tensor | np.ndarray | None = None, *,
                    gated_reads_all_inputs: bool = False,
                    gaters_read_all_inputs: bool = True) -> ComputeReports:
    """The reports of a batch from active blocks per gated layer (B, G) and the blocks
    computed (default: the active ones); see `executed_macs`."""
    active_blocks = _int64(active_blocks)
    computed_blocks = active_blocks if computed_blocks is None else _int64(computed_blocks)
    executed, gaters = _executed(config, active_blocks, computed_blocks, gated_reads_all_inputs,
                                 gaters_read_all_inputs)
    blocks = tuple(layer.blocks for layer in config.layers if layer.gated)
    return ComputeReports(dense_macs(config), gaters, blocks, executed, active_blocks,
                          computed_blocks)


def active_blocks_of(gates: list[Tensor]) -> Tensor:
    """Active blocks per example and gated layer, (B, G), from each layer's gates (B, K)."""
    if not gates:
        raise ValueError("the network has no gated layer")
    import torch

    return torch.stack([(g != 0).sum(-1) for g in gates], dim=-1)
