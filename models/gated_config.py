"""The validated description of a gated network, and its presets.

A gated network is a stack of layers followed by a linear read-out to the classes. A gated layer
has a main path of K blocks of S units (input -> K*S units, then an activation) and a gater
(input -> M tanh units -> K gate logits, or input -> K when M = 0) whose stochastic units switch
whole blocks on and off: layer output = main ⊙ gate, each gate repeated over its block's S units.
A layer with `gated=False` is a plain dense layer (the dense baselines).

Everything is validated on construction, so a bad config is refused before training starts,
with the field named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from .activations import ACTIVATIONS as ACTIVATION_TABLE
from .config_checks import (
    MAX_SIZE,
    ConfigError,
    check_choice,
    check_int,
    from_mapping,
    shown_value,
)

__all__ = ["ConfigError", "GatedLayerConfig", "GatedNetworkConfig", "preset"]

ACTIVATIONS = tuple(ACTIVATION_TABLE)
# Layers a network may stack: building one costs a few milliseconds per gated layer (its
# default threshold is found by bisection), so an edited config of thousands of layers would
# hold a loading server for seconds; no network we train comes near this.
MAX_LAYERS = 256


@dataclass(frozen=True)
class GatedLayerConfig:
    blocks: int  # K: gates, one per block
    block_size: int = 1  # S: main-path units per block
    gater_hidden: int = 0  # M: tanh bottleneck of the gater; 0 = a single linear map
    activation: str = "linear"  # main-path activation
    gated: bool = True  # False: a plain dense layer of blocks * block_size units

    @property
    def width(self) -> int:
        return self.blocks * self.block_size

    def validate(self, where: str) -> None:
        check_int(f"{where}.blocks", self.blocks, maximum=MAX_SIZE)
        check_int(f"{where}.block_size", self.block_size, maximum=MAX_SIZE)
        check_int(f"{where}.gater_hidden", self.gater_hidden, minimum=0, maximum=MAX_SIZE)
        check_choice(f"{where}.activation", self.activation, ACTIVATIONS)
        if not isinstance(self.gated, bool):
            raise ConfigError(f"{where}.gated must be true or false, got {self.gated!r}")


@dataclass(frozen=True)
class GatedNetworkConfig:
    input_size: int
    num_classes: int
    layers: tuple[GatedLayerConfig, ...]
    estimator: str = "st"
    estimator_settings: dict[str, Any] = field(default_factory=dict)
    target_density: float = 0.1  # fraction of gates on, per layer

    def __post_init__(self) -> None:
        # Accept plain dicts/lists (from JSON) for the layers, then validate everything.
        layers = self.layers
        if not isinstance(layers, (list, tuple)) or not layers or len(layers) > MAX_LAYERS:
            raise ConfigError(f"layers must be a list of 1 to {MAX_LAYERS} layer configs, got "
                              f"{shown_value(layers)}")
        built = []
        for i, layer in enumerate(layers):
            if isinstance(layer, dict):
                layer = from_mapping(GatedLayerConfig, layer, f"layers[{i}]")
            if not isinstance(layer, GatedLayerConfig):
                raise ConfigError(f"layers[{i}] must be a layer config, got {shown_value(layer)}")
            built.append(layer)
        object.__setattr__(self, "layers", tuple(built))
        settings = self.estimator_settings
        if settings is not None and not (isinstance(settings, dict)
                                         and all(isinstance(key, str) for key in settings)):
            raise ConfigError(f"estimator_settings must be a mapping of setting names to "
                              f"values, got {shown_value(settings)}")
        object.__setattr__(self, "estimator_settings", dict(settings or {}))
        self.validate()

    @property
    def gated_layers(self) -> tuple[GatedLayerConfig, ...]:
        return tuple(layer for layer in self.layers if layer.gated)

    def validate(self) -> None:
        check_int("input_size", self.input_size, maximum=MAX_SIZE)
        check_int("num_classes", self.num_classes, maximum=MAX_SIZE)
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {self.num_classes}")
        for i, layer in enumerate(self.layers):
            layer.validate(f"layers[{i}]")
        # No math.isfinite: it overflows on an int like 10**400 (valid JSON); NaN and the
        # infinities fail the comparison anyway.
        ok = (isinstance(self.target_density, (int, float))
              and not isinstance(self.target_density, bool)
              and 0 < self.target_density <= 1)
        if not ok:
            raise ConfigError(f"target_density must lie in (0, 1], got {self.target_density!r}")
        self._check_estimator()

    def _check_estimator(self) -> None:
        """The estimator's name and settings, checked by building one. Without torch no
        estimator can be built, nor anything that would use one: such a process (a server of
        exported ONNX graphs, whose gates are fixed in the graph) checks only that the name is
        a string."""
        try:
            from .estimators import ESTIMATORS, make_estimator
        except ModuleNotFoundError as error:
            if error.name != "torch":
                raise
            if not isinstance(self.estimator, str):
                raise ConfigError(f"estimator must be a string, got "
                                  f"{shown_value(self.estimator)}") from None
            return
        check_choice("estimator", self.estimator, sorted(ESTIMATORS))
        try:  # the estimator validates its own settings
            probe = make_estimator(self.estimator, 1, **self.estimator_settings)
        except ValueError as err:
            raise ConfigError(f"estimator_settings: {err}") from None
        if probe.draws_per_estimate > 1 and self.estimator == "disarm" and len(
                self.gated_layers) > 1:
            # DisARM's two draws must share their logits; a second gated layer's logits depend
            # on the first layer's draws, so they differ between the two.
            raise ConfigError("estimator: disarm needs the two antithetic draws to share their "
                              "logits, which holds for one gated layer only; use rloo for stacks")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> GatedNetworkConfig:
        return from_mapping(cls, data, "config")

    def every_block_on(self) -> GatedNetworkConfig:
        """The same network with every block on and no gater: the dense reference it is
        compared with (same widths, activations and read-out)."""
        layers = [{**asdict(layer), "gated": False} for layer in self.layers]
        return self.replace(layers=layers, target_density=1.0)

    def replace(self, **changes: Any) -> GatedNetworkConfig:
        data = self.to_dict()
        data.update(changes)
        return GatedNetworkConfig.from_dict(data)


def paper_preset(input_size: int = 784, num_classes: int = 10, estimator: str = "st",
                 target_density: float = 0.1) -> GatedNetworkConfig:
    """The paper's conditional layer: gater input -> 400 tanh -> 2000 gates, main path
    input -> 2000 linear units, one gate per unit, 10 % of gates on."""
    layer = GatedLayerConfig(blocks=2000, block_size=1, gater_hidden=400, activation="linear")
    return GatedNetworkConfig(input_size, num_classes, (layer,), estimator,
                              target_density=target_density)


def paper_baseline_sigmoid_preset(input_size: int = 784, num_classes: int = 10,
                                  estimator: str = "noisy-sigmoid",
                                  target_density: float = 1.0) -> GatedNetworkConfig:
    """The paper's "Baseline Sigmoid": its conditional layer at 200 units, every gate a sigmoid
    that scales its unit (input -> 400 tanh -> 200 gates, main path input -> 200 linear units),
    with no sparsity: what 10 % of the 2000-unit layer computes, as a dense gated model."""
    layer = GatedLayerConfig(blocks=200, block_size=1, gater_hidden=400, activation="linear")
    return GatedNetworkConfig(input_size, num_classes, (layer,), estimator,
                              target_density=target_density)


def blocks_preset(input_size: int = 784, num_classes: int = 10, estimator: str = "st",
                  target_density: float = 0.1) -> GatedNetworkConfig:
    """Two gated layers of 64 blocks x 64 units with a 64-unit gater bottleneck: the gater costs
    ~2 % of the main path, so skipping blocks can pay off."""
    layer = GatedLayerConfig(blocks=64, block_size=64, gater_hidden=64, activation="relu")
    return GatedNetworkConfig(input_size, num_classes, (layer, layer), estimator,
                              target_density=target_density)


def narrow_blocks_preset(input_size: int = 784, num_classes: int = 10,
                         estimator: str = "rectifier", target_density: float = 0.1,
                         blocks: int = 128) -> GatedNetworkConfig:
    """Two gated layers of `blocks` blocks x 8 rectifier units (128: `blocks-narrow`), each
    gated through a 32-unit tanh bottleneck.

    At 10 % on (input 784) blocks-narrow executes ~8.5 % of the dense multiply-adds, gater
    included, and an epoch of Fashion-MNIST trains in ~12 s on one core (the 64 x 64 stack takes
    ~200 s). Small blocks let each example combine many of them: on Fashion-MNIST's validation
    split they learned faster than 32 blocks x 32 units at the same cost. Rectifier gates: a
    block that is on is scaled by its gater's max(0, a), so the gater learns from the blocks it
    runs by plain backpropagation; on the validation split (3 seeds) they beat binary
    straight-through gates (docs/accuracy-vs-compute-fashion-mnist.md).

    Wider: 256 blocks (`blocks-256x8`) execute ~5 % of their own dense multiply-adds at 10 %
    (~0.31 M per example), and on Fashion-MNIST's validation split (seed 0) closed about half of
    blocks-narrow's gap to the same network with every block on; 512 (`blocks-512x8`, ~3.4 %)
    narrowed it a little more at four times the training time."""
    layer = GatedLayerConfig(blocks=blocks, block_size=8, gater_hidden=32, activation="relu")
    return GatedNetworkConfig(input_size, num_classes, (layer, layer), estimator,
                              target_density=target_density)


def wide_blocks_preset(input_size: int = 784, num_classes: int = 10, estimator: str = "st",
                       target_density: float = 0.1) -> GatedNetworkConfig:
    """The same widths as blocks-narrow in 32 blocks x 32 units, each layer gated by one linear
    map: fewer, larger blocks (the skipping kernels' favourite), ~8 % of dense at 10 %."""
    layer = GatedLayerConfig(blocks=32, block_size=32, gater_hidden=0, activation="relu")
    return GatedNetworkConfig(input_size, num_classes, (layer, layer), estimator,
                              target_density=target_density)


def digits_blocks_preset(input_size: int = 64, num_classes: int = 10, estimator: str = "st",
                         target_density: float = 0.125) -> GatedNetworkConfig:
    """One gated layer of 32 blocks x 32 units for 8 x 8 inputs, gated by one linear map: the
    main job's model. At 12.5 % (4 blocks) it executes ~15 % of the dense multiply-adds, gater
    included."""
    layer = GatedLayerConfig(blocks=32, block_size=32, gater_hidden=0, activation="relu")
    return GatedNetworkConfig(input_size, num_classes, (layer,), estimator,
                              target_density=target_density)


def dense_preset(width: int, activation: str, input_size: int = 784,
                 num_classes: int = 10) -> GatedNetworkConfig:
    """A plain MLP with one hidden layer: the paper's dense baselines."""
    layer = GatedLayerConfig(blocks=width, block_size=1, activation=activation, gated=False)
    return GatedNetworkConfig(input_size, num_classes, (layer,), "st", target_density=1.0)


PRESETS = {
    "paper": paper_preset,
    "blocks": blocks_preset,
    "blocks-narrow": narrow_blocks_preset,
    "blocks-256x8": partial(narrow_blocks_preset, blocks=256),
    "blocks-512x8": partial(narrow_blocks_preset, blocks=512),
    "blocks-32x32": wide_blocks_preset,
    "blocks-digits": digits_blocks_preset,
    "dense-200-sigmoid": lambda **kw: dense_preset(200, "sigmoid", **kw),
    "dense-2000-relu": lambda **kw: dense_preset(2000, "relu", **kw),
    "paper-baseline-sigmoid": paper_baseline_sigmoid_preset,
}


def preset(name: str, **overrides: Any) -> GatedNetworkConfig:
    """A named preset; `overrides` (input_size, num_classes, estimator, target_density)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS[name](**{k: v for k, v in overrides.items()
                            if k in ("input_size", "num_classes")})
    rest = {k: v for k, v in overrides.items() if k not in ("input_size", "num_classes")}
    return base.replace(**rest) if rest else base
