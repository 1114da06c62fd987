"""onnxruntime on the CPU: the exported skipping graph against its own dense graph.

    python -m benchmarks.onnx_cases --json runs/bench/onnx-cpu.json [--threads 1]

Cases:
- `layer-1024-64x64-1024`: `benchmarks.skip.layer_model()` (one gated layer 1024 -> 64 blocks
  x 64 relu with a 64-unit gater, a dense 1024-unit linear layer, a 2-class read-out).
- `blocks-preset-random-weights`: the `blocks` preset (784 -> two gated layers of 64 x 64 relu,
  64-unit gaters -> 10 classes) with random weights, not a trained model; thresholds calibrated
  per layer, in order, like the layer case's.

Each case is saved as a model artifact in a temporary repository and exported by
`sparsegate-export` (run as `python -m training.export_cli`, which also writes the dense
baseline: every block, no gater): benchmarks may not import `training` (design.md), and this
times exactly the file a server would load. The gate pattern is per example, as in
`benchmarks.skip.run`: each gated layer's threshold is set at the density's quantile of its
gater logits over the batch, written into the graph's `layers.<i>.threshold` initializer; every
setting is first checked against torch (logits within 1e-4 relative, active blocks equal).

Timing: both sessions have the same options (`threads` intra-op threads, one inter-op thread,
all graph optimisations); after `warmup` calls of each, `repeats` rounds alternate one dense and
one skipping call, and each figure is the median of its calls (alternating keeps the ratio
honest on a noisy machine). `computed_density` is the fraction of blocks the graph computed
(the batch's union, or every block under the dense fallback); `realised_density` the fraction
of gates on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.artifact import read_extra_file
from models.gated_artifact import save_gated_network
from models.gated_config import blocks_preset
from models.gated_network import GatedNetwork

from .skip import layer_model

BATCHES = (1, 8, 64, 256)
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
TOLERANCE = 1e-4  # relative to max(1, max |logit|), as the export's own verification


def _blocks_model() -> GatedNetwork:
    return GatedNetwork(blocks_preset()).eval()


CASES = {
    "layer-1024-64x64-1024": layer_model,
    "blocks-preset-random-weights": _blocks_model,
}


def _export(model: GatedNetwork, repository: Path) -> tuple[bytes, bytes]:
    """model.onnx (through the CLI, verified) and the dense baseline graph."""
    save_gated_network(model, repository, "bench", 1, {"note": "benchmark, random weights"})
    dense_path = repository / "dense.onnx"
    command = [sys.executable, "-m", "training.export_cli", "--model-repository",
               str(repository), "--name", "bench", "--dense-baseline", str(dense_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"sparsegate-export failed ({done.returncode}): {done.stderr}")
    return read_extra_file(repository / "bench" / "1", "model.onnx"), dense_path.read_bytes()


def _session(data: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _with_thresholds(graph: bytes, model: GatedNetwork, thresholds: list[float]) -> bytes:
    """The graph with each gated layer's threshold initializer (`layers.<i>.threshold`, i its
    index among all layers) set."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(graph)
    indices = [i for i, layer in enumerate(model.layers) if layer.gater is not None]
    wanted = {f"layers.{i}.threshold": t for i, t in zip(indices, thresholds, strict=True)}
    found = 0
    for init in proto.graph.initializer:
        if init.name in wanted:
            value = np.array(wanted[init.name], np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
            found += 1
    if found != len(thresholds):
        raise RuntimeError(f"the graph has {found} of {len(thresholds)} threshold initializers")
    return proto.SerializeToString()


@torch.no_grad()
def _calibrate(model: GatedNetwork, x: torch.Tensor, density: float) -> list[float]:
    """Per gated layer, in order, the threshold at the density's quantile of its logits on x."""
    thresholds = []
    for position, layer in enumerate(model.gated_layers):
        logits = model(x).traces[position].logits
        tau = -1e30 if density >= 1 else float(torch.quantile(logits.flatten(), 1 - density))
        layer.threshold.fill_(tau)
        thresholds.append(tau)
    return thresholds


def _median_ms(dense, skip, x: np.ndarray, warmup: int, repeats: int) -> tuple[float, float]:
    feed = {"x": x}
    for _ in range(warmup):
        dense.run(None, feed)
        skip.run(None, feed)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for session, out in ((dense, times[0]), (skip, times[1])):
            start = time.perf_counter()
            session.run(None, feed)
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES, densities=DENSITIES,
         threads: int = 1, cases=tuple(CASES)) -> list[dict]:
    import onnxruntime as ort  # noqa: F401  (fail early, before exporting, when missing)

    out = []
    for case in cases:
        torch.manual_seed(seed)
        model = CASES[case]()
        with tempfile.TemporaryDirectory(prefix="sparsegate-onnx-bench-") as tmp:
            graph, dense_graph = _export(model, Path(tmp))
        dense = _session(dense_graph, threads)
        gen = torch.Generator().manual_seed(seed)
        for batch in batches:
            x = torch.randn(batch, model.config.input_size, generator=gen)
            for density in densities:
                thresholds = _calibrate(model, x, density)
                skip = _session(_with_thresholds(graph, model, thresholds), threads)
                logits, active, computed = skip.run(None, {"x": x.numpy()})
                with torch.no_grad():
                    want = model(x).logits.numpy()
                scale = max(1.0, float(np.abs(want).max()))
                diff = float(np.abs(logits - want).max())
                if diff > TOLERANCE * scale:
                    raise RuntimeError(f"{case}: ORT differs from torch by {diff:.3g} at batch "
                                       f"{batch}, density {density}")
                blocks = np.array([layer.config.blocks for layer in model.gated_layers])
                dense_ms, skip_ms = _median_ms(dense, skip, x.numpy(), warmup, repeats)
                out.append({
                    "device": "cpu", "backend": "onnxruntime", "case": case, "batch": batch,
                    "density": density,
                    "realised_density": float((active / blocks).mean()),
                    "computed_density": float((computed / blocks).mean()),
                    "dense_ms": dense_ms, "skip_ms": skip_ms, "speedup": dense_ms / skip_ms,
                    "threads": threads, "max_abs_diff": diff})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_cases",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both "
                        "sessions (default: %(default)s)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="only this case (repeatable; default: all)")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    result = rows(args.warmup, args.repeats, args.seed, threads=args.threads,
                  cases=tuple(args.case or CASES))
    print(f"{'case':<30} {'batch':>5} {'density':>7} {'realised':>8} {'computed':>8} "
          f"{'dense ms':>9} {'skip ms':>9} {'speedup':>7}")
    for r in result:
        print(f"{r['case']:<30} {r['batch']:>5} {r['density']:>7.2f} "
              f"{r['realised_density']:>8.3f} {r['computed_density']:>8.3f} "
              f"{r['dense_ms']:>9.3f} {r['skip_ms']:>9.3f} {r['speedup']:>7.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": platform.processor() or platform.machine(), "onnxruntime": ort.__version__,
            "torch": torch.__version__, "threads": args.threads, "rows": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
