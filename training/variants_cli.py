"""`sparsegate-variants`: one trained gated model, re-calibrated to several densities, each
written as its own model (same architecture and weights, other thresholds), for load tests of
latency against sparsity.

    sparsegate-variants --model-repository model-repository --name blocks-st --data digits \
        --densities 1,0.5,0.25,0.1,0.05

writes `blocks-st-d100`, `blocks-st-d50`, ... (version 1, or the next free one), each with its
thresholds calibrated on the validation split to that density (`training.calibrate`), and the
density and test error measured on the test split in its config.json. Density 1 puts every
gate on: the same network served dense.

`--block-weights bfloat16` writes the variants with their main-path weights rounded to bfloat16
(`models.block_weights`: half the bytes on disk and for the CPU kernels to read; gaters, biases
and thresholds stay float32), named `blocks-st-d10-bf16`, .... Each is calibrated after the
rounding, and its config.json's metrics give the accuracy cost: `test_error` of the rounded
network beside `test_error_float32_weights`, the same network unrounded, calibrated to the same
density.

Exit status: 0 on success, 1 when the model or data is missing or broken, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from models.artifact import ArtifactError, artifact_path, list_versions, validate_name
from models.block_weights import PRECISIONS, round_main_weights
from models.gated_artifact import load_gated_network, save_gated_network

from .calibrate import calibrate_thresholds
from .data import DatasetError, load_data
from .recorded_examples import carried_examples

# Below every logit a gater can produce: density 1 means every gate on, whatever the input.
ALL_ON_THRESHOLD = -1e30


def _densities(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"densities must be numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"densities must be in (0, 1], got {text!r}")
    return values


def variant_name(name: str, density: float, block_weights: str = "float32") -> str:
    suffix = "-bf16" if block_weights == "bfloat16" else ""
    return f"{name}-d{round(density * 100):g}{suffix}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sparsegate-variants", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repository", type=Path, required=True)
    p.add_argument("--name", required=True, help="the trained model (its newest version)")
    p.add_argument("--data", default="digits", help="data set it was trained on")
    p.add_argument("--densities", type=_densities, default=[1.0, 0.5, 0.25, 0.1, 0.05])
    p.add_argument("--block-weights", choices=PRECISIONS, default="float32",
                   help="the variants' main-path weights: float32 (default) or rounded to "
                        "bfloat16, with the accuracy cost measured")
    return p.parse_args(argv)


def _calibrated(model, data, density: float) -> None:
    if density >= 1.0:
        model.set_thresholds([ALL_ON_THRESHOLD] * len(model.gated_layers))
    else:
        calibrate_thresholds(model, data.valid.x, density)


@torch.no_grad()
def _measure(model, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], float]:
    out = model(x)
    density = [float((t.gates != 0).float().mean()) for t in out.traces]
    return density, float((out.logits.argmax(-1) != y).float().mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        name = validate_name(args.name)
        versions = list_versions(args.model_repository, name)
        if not versions:
            print(f"sparsegate-variants: no published version of {name!r} in "
                  f"{args.model_repository}", file=sys.stderr)
            return 1
        source = artifact_path(args.model_repository, name, versions[-1])
        model, config = load_gated_network(source)
        examples = carried_examples(source, config)  # the same for every variant
        data = load_data(args.data)
    except (ArtifactError, DatasetError) as error:
        print(f"sparsegate-variants: {error}", file=sys.stderr)
        return 1
    if data.input_size != model.config.input_size:
        print(f"sparsegate-variants: {args.data} has {data.input_size} inputs, {name} takes "
              f"{model.config.input_size}", file=sys.stderr)
        return 1
    unrounded = None
    if args.block_weights != model.block_weights:
        unrounded = copy.deepcopy(model)
        round_main_weights(model, args.block_weights)
    for density in args.densities:
        _calibrated(model, data, density)
        measured, error = _measure(model, data.test.x, data.test.y)
        target = variant_name(name, density, args.block_weights)
        existing = list_versions(args.model_repository, target)
        version = int(existing[-1]) + 1 if existing else 1
        metadata = {k: v for k, v in config.items() if k in ("training", "data")}
        metadata["metrics"] = {"test_density": measured, "test_error": error,
                               "calibrated_density": density}
        if unrounded is not None:
            _calibrated(unrounded, data, density)
            metadata["metrics"]["test_error_float32_weights"] = _measure(
                unrounded, data.test.x, data.test.y)[1]
        metadata["variant_of"] = {"name": name, "version": versions[-1]}
        folder = save_gated_network(model, args.model_repository, target, version, metadata,
                                    extra_files=examples)
        cost = ("" if unrounded is None else f" ({args.block_weights}; float32 weights: "
                f"{metadata['metrics']['test_error_float32_weights']:.4f})")
        print(f"{folder}: density {density:g} (test {sum(measured) / len(measured):.3f}), "
              f"test error {error:.4f}{cost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
