"""Gated networks: the training forward (dense compute times gates, differentiable) and the
deterministic evaluation forward (gates thresholded, inactive blocks zeroed: the dense masked
reference that every block-skipping forward must match).

Letters in shape comments: B examples, D input features, K blocks (gates), S units per block,
M gater hidden units, C draws per estimate (leading group dimension for rloo / disarm), N the
layer's output width (K * S).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .activations import ACTIVATIONS
from .estimators import Estimator, make_estimator
from .gated_config import GatedLayerConfig, GatedNetworkConfig

ACTIVATION_FUNCTIONS = {name: a.torch for name, a in ACTIVATIONS.items()}


@dataclass
class LayerTrace:
    """What one gated layer did: the training objectives and estimators need it."""

    logits: Tensor  # (..., K) gater pre-activations
    gates: Tensor  # (..., K) unit outputs that multiplied the blocks


@dataclass
class NetworkOutput:
    logits: Tensor  # (..., classes)
    traces: list[LayerTrace]  # one per gated layer


class Gater(nn.Module):
    """input -> M tanh -> K gate logits (the paper's 784 -> 400 -> 2000), or input -> K."""

    def __init__(self, in_features: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden) if hidden else None
        self.out = nn.Linear(hidden or in_features, blocks)

    def forward(self, x: Tensor) -> Tensor:
        if self.hidden is not None:
            x = torch.tanh(self.hidden(x))  # (..., M)
        return self.out(x)  # (..., K)


def _crossing_logit(fn, level: float, lo: float = -60.0, hi: float = 60.0) -> float:
    """The smallest logit a with fn(a) > level, for fn non-decreasing (bisection).

    On the CPU whatever the default device: the artifact reader builds a network on the meta
    device to learn the shapes of its state without allocating it, and meta tensors hold no
    value to compare."""
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(fn(torch.tensor([mid], dtype=torch.float64, device="cpu"))) > level:
            hi = mid
        else:
            lo = mid
    return hi


def logit_for_on_probability(estimator: Estimator, target: float) -> float:
    """The logit at which a unit is on with probability `target`."""
    return _crossing_logit(estimator.on_probability, target, -30.0, 30.0)


def density_threshold(logits: Tensor, density: float) -> Tensor:
    """tau such that the fraction of `logits` strictly above tau is `density` (up to ties).

    kthvalue rather than a sort: this runs on every training batch of the deterministic phase
    (and once per layer in calibration).
    """
    flat = logits.detach().reshape(-1)
    n = flat.numel()
    n_on = round(density * n)
    if n_on >= n:
        return flat.min() - 1.0
    if n_on == 0:
        return flat.max()
    return flat.kthvalue(n - n_on).values


def _default_logit_threshold(estimator: Estimator) -> float:
    """The logit where smooth(a) crosses the estimator's default threshold."""
    return float(estimator.logit_threshold(
        _crossing_logit(estimator.smooth, estimator.default_threshold)))


# How a gated layer gates while training (evaluation always thresholds the logits):
# - "stochastic": the estimator's draw, with its own gradient (the paper's training);
# - "deterministic": the served gates, on where the logit passes the layer's threshold, with
#   the straight-through gradient dL/da := dL/dh to the gater (the paper's section 4 applied to
#   the threshold instead of a draw); the threshold follows each batch's target-density
#   quantile by an exponential moving average, so the density holds while the gater learns and
#   the gates of the last step are exactly those served;
# - "frozen": the served gates, thresholds fixed (the gaters' parameters are frozen by the
#   trainer): fine-tuning the main path alone.
GATE_MODES = ("stochastic", "deterministic", "frozen")


class GatedLayer(nn.Module):
    def __init__(self, in_features: int, config: GatedLayerConfig, estimator: str,
                 settings: dict, target_density: float) -> None:
        super().__init__()
        self.config = config
        self.target_density = target_density
        self.activation = ACTIVATION_FUNCTIONS[config.activation]
        self.main = nn.Linear(in_features, config.width)
        self.gater: Gater | None = None
        self.estimator: Estimator | None = None
        if config.gated:
            self.gater = Gater(in_features, config.gater_hidden, config.blocks)
            self.estimator = make_estimator(estimator, config.blocks, **settings)
            if self.estimator.sparsity_kind == "kl":
                # Start at the target density: the KL penalty then only has to hold it there.
                with torch.no_grad():
                    bias = logit_for_on_probability(self.estimator, target_density)
                    self.gater.out.bias.fill_(bias)
            # Evaluation threshold on the gater's logits (see Estimator.logit_threshold): a gate
            # is on where its logit exceeds it. Starts at the logit of the estimator's default
            # smooth threshold; calibration replaces it.
            self.register_buffer("threshold", torch.tensor(_default_logit_threshold(
                self.estimator)))
        self.gate_mode = "stochastic"  # one of GATE_MODES; used in training mode only
        self.threshold_momentum = 0.05  # the deterministic mode's step toward a batch quantile

    def forward(self, x: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, LayerTrace | None]:
        main = self.activation(self.main(x))  # (..., N)
        if self.gater is None:
            return main, None
        logits = self.gater(x)  # (..., K)
        if self.training and self.gate_mode == "stochastic":
            gates = self.estimator.sample(logits, generator)  # (..., K)
        elif self.training and self.gate_mode == "deterministic":
            gates = self._learning_served_gates(logits)  # (..., K)
        else:
            gates = self.estimator.gate_values(logits, logits > self.threshold)  # (..., K)
        k, s = self.config.blocks, self.config.block_size
        out = (main.unflatten(-1, (k, s)) * gates.unsqueeze(-1)).flatten(-2)  # (..., N)
        return out, LayerTrace(logits, gates)

    def _learning_served_gates(self, logits: Tensor) -> Tensor:
        """The served gates in the forward pass, straight-through to the logits backward; then
        the threshold takes a step toward this batch's target-density quantile."""
        gates = self.estimator.gate_values(logits, logits > self.threshold)  # (..., K)
        # Value of the served gate, gradient of the identity (the paper's ST) with its mean over
        # the blocks removed per example: raising every logit together changes no gate once
        # the threshold follows, so that direction gets no gradient (without it the logits
        # and the threshold drift up together and the density lags above the target).
        carrier = logits - logits.mean(-1, keepdim=True)
        gates = gates.detach() + (carrier - carrier.detach())
        with torch.no_grad():
            quantile = self.estimator.logit_threshold(
                density_threshold(logits, self.target_density))
            self.threshold.lerp_(torch.as_tensor(quantile, dtype=self.threshold.dtype),
                                 self.threshold_momentum)
        return gates


class GatedNetwork(nn.Module):
    def __init__(self, config: GatedNetworkConfig) -> None:
        super().__init__()
        self.config = config
        layers = []
        width = config.input_size
        for layer_config in config.layers:
            layers.append(GatedLayer(width, layer_config, config.estimator,
                                     config.estimator_settings, config.target_density))
            width = layer_config.width
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Linear(width, config.num_classes)
        # The precision its main-path weights' values lie in (models.block_weights): float32
        # until `round_main_weights` rounds them; an artifact stores them in it.
        self.block_weights = "float32"
        self.reset_main_parameters()

    @torch.no_grad()
    def reset_main_parameters(self) -> None:
        """Variance-preserving initialisation that knows the gates.

        Only a fraction rho of a gated layer's outputs are non-zero, so the layer reading them
        sees an effective fan-in of rho * N: its weights get variance gain / (rho * fan_in)
        (gain 2 after a rectifier, 1 otherwise), the way dropout rescales by 1 / keep. Without
        it, PyTorch's default init shrinks the signal by ~rho per gated layer and a deep gated
        stack at 10 % starts with vanishing gradients.
        """
        density = 1.0
        for layer in self.layers:
            gain = 2.0 if layer.config.activation == "relu" else 1.0
            std = (gain / (layer.main.in_features * density)) ** 0.5
            layer.main.weight.normal_(0.0, std)
            layer.main.bias.zero_()
            density = self.config.target_density if layer.gater is not None else 1.0
        std = (1.0 / (self.readout.in_features * density)) ** 0.5
        self.readout.weight.normal_(0.0, std)
        self.readout.bias.zero_()

    @property
    def gated_layers(self) -> list[GatedLayer]:
        return [layer for layer in self.layers if layer.gater is not None]

    @property
    def draws_per_estimate(self) -> int:
        layers = self.gated_layers
        return layers[0].estimator.draws_per_estimate if layers else 1

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> NetworkOutput:
        traces = []
        for layer in self.layers:
            x, trace = layer(x, generator)
            if trace is not None:
                traces.append(trace)
        return NetworkOutput(self.readout(x), traces)

    def set_gate_mode(self, mode: str, threshold_momentum: float | None = None) -> None:
        """How every gated layer gates in training mode (see GATE_MODES)."""
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode must be one of {', '.join(GATE_MODES)}, got {mode!r}")
        for layer in self.gated_layers:
            layer.gate_mode = mode
            if threshold_momentum is not None:
                layer.threshold_momentum = float(threshold_momentum)

    @property
    def gate_mode(self) -> str:
        layers = self.gated_layers
        return layers[0].gate_mode if layers else "stochastic"

    def thresholds(self) -> list[float]:
        return [float(layer.threshold) for layer in self.gated_layers]

    def set_thresholds(self, values: list[float]) -> None:
        layers = self.gated_layers
        if len(values) != len(layers):
            raise ValueError(f"need {len(layers)} thresholds, got {len(values)}")
        for layer, value in zip(layers, values, strict=True):
            layer.threshold.fill_(float(value))

    def weight_matrices(self) -> list[nn.Linear]:
        """Every linear map, for max-norm on incoming weights."""
        return [m for m in self.modules() if isinstance(m, nn.Linear)]

    def gater_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.gated_layers for p in layer.gater.parameters()]

    def main_parameters(self) -> list[nn.Parameter]:
        gater = {id(p) for p in self.gater_parameters()}
        return [p for p in self.parameters() if id(p) not in gater]
