"""The layer plan every skipping backend builds from: a `GatedNetwork` read once into the
facts each engine routes by (which layers are gated, which layer reads a gated layer's blocks,
what reads a gated layer's output), so that no backend works them out again.

Letters: K blocks of S units; a reader of a gated layer reads its K_in blocks of S_in units.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..gated_config import GatedLayerConfig
from ..gated_network import GatedLayer, GatedNetwork


@dataclass(frozen=True)
class PlannedLayer:
    index: int  # position in the network's layers; the read-out comes last
    linear: nn.Linear  # the main path (or the read-out)
    activation: str
    gated: GatedLayer | None  # the layer, where it is gated (its gater, threshold, estimator)
    reads_blocks_of: GatedLayerConfig | None  # the gated layer whose output this one reads
    read_by_gated: bool = False  # gated: the next layer is gated too
    reader_width: int | None = None  # gated: output units of the dense layer reading it
    readout: bool = False

    @property
    def path(self) -> str:
        """Where `linear` lies in the network's state dict ("layers.<i>.main" or "readout")."""
        return "readout" if self.readout else f"layers.{self.index}.main"


def plan_layers(model: GatedNetwork) -> list[PlannedLayer]:
    """The network's layers then its read-out (activation "linear"), in order."""
    layers: list[GatedLayer] = list(model.layers)
    planned = []
    for i, layer in enumerate(layers):
        previous = layers[i - 1] if i else None
        reader = layers[i + 1] if i + 1 < len(layers) else None
        gated = layer if layer.gater is not None else None
        reader_width = None
        if gated is not None:
            reader_width = (model.readout.out_features if reader is None
                            else reader.main.out_features if reader.gater is None else None)
        planned.append(PlannedLayer(
            i, layer.main, layer.config.activation, gated,
            previous.config if previous is not None and previous.gater is not None else None,
            read_by_gated=reader is not None and reader.gater is not None and gated is not None,
            reader_width=reader_width))
    last = layers[-1] if layers else None
    planned.append(PlannedLayer(
        len(layers), model.readout, "linear", None,
        last.config if last is not None and last.gater is not None else None, readout=True))
    return planned
