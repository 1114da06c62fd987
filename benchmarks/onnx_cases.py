"""onnxruntime on the CPU: the exported skipping graph against its own dense graph.

    python -m benchmarks.onnx_cases --json runs/bench/onnx-cpu.json [--threads 1]

The cases, inputs and gate patterns are those of the torch rows (`benchmarks.cpu_cases`), so the
two backends line up: `layer-1024-64x64-1024` (`benchmarks.cases.layer_model`: one gated layer
1024 -> 64 blocks x 64 relu with a 64-unit gater, a dense 1024-unit linear layer, a 2-class
read-out) and the whole `blocks` model (`benchmarks.cases.whole_model`: 784 -> two gated layers
of 64 x 64 relu with 64-unit gaters -> 10, random weights, not a trained model). Gates are set
per example by `benchmarks.cases.set_density` (each gated layer's threshold between two of its
logits over the batch, the density's share of them above it), written into the graph's
`layers.<i>.threshold` initializers; every setting is first checked against torch (logits
within 1e-4 relative).

Each case is saved as a model artifact in a temporary folder and exported by
`sparsegate-export` (run as `python -m training.export_cli`, which verifies the graph and also
writes the dense baseline: every block, no gater): benchmarks may not import `training`
(design.md), and this times the very file a server would load.

Timing: both sessions have the same options (`threads` intra-op threads, default torch's thread
count as in the torch rows; one inter-op thread; all graph optimisations), timed by
`benchmarks.timing.median_ms` (alternating rounds, medians). `computed_density` is the fraction
of blocks the graph computed (the batch's union, or all of them under the dense fallback),
`realised_density` the fraction of gates on, `saved_fraction` the compute report's saving
(`models.compute`) from the graph's own outputs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from models.artifact import read_extra_file
from models.compute import compute_reports
from models.gated_artifact import save_gated_network
from models.gated_network import GatedNetwork
from models.skip import onnx_ops

from .cases import LAYER_CASE, MODEL_CASE, batch_input, layer_model, set_density, whole_model
from .run_record import write_rows
from .timing import median_ms

BATCHES = (1, 8, 64, 256)
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
THREADS = (1, 2)  # intra-op threads: the comparisons time each graph at both, read its faster
TOLERANCE = 1e-4  # relative to max(1, max |logit|), as the export's own verification


def _model(case: str, seed: int) -> GatedNetwork:
    torch.manual_seed(seed)
    return layer_model() if case == LAYER_CASE else whole_model(seed)


def _export(model: GatedNetwork, repository: Path, custom_ops: bool = False
            ) -> tuple[bytes, bytes]:
    """model.onnx (through the CLI, verified; `custom_ops`: on sparsegate's operators) and the
    dense baseline graph."""
    save_gated_network(model, repository, "bench", 1, {"note": "benchmark, random weights"})
    dense_path = repository / "dense.onnx"
    command = [sys.executable, "-m", "training.export_cli", "--model-repository",
               str(repository), "--name", "bench", "--dense-baseline", str(dense_path),
               *(["--custom-ops"] if custom_ops else [])]
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
    # Two sessions (dense and skip) are timed in alternation: with spinning thread pools, the
    # idle one's workers spin on the cores the other one is running on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    onnx_ops.register_for(options, data)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def check_logits(got: np.ndarray, want: np.ndarray, label: str) -> float:
    """The largest |got - want|, refused (RuntimeError naming `label`) past TOLERANCE of
    max(1, max |want|)."""
    diff = float(np.abs(got - want).max())
    if diff > TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise RuntimeError(f"{label}: the graph's logits differ from torch's by {diff:.3g}")
    return diff


def density_cells(model: GatedNetwork, batches, densities, seed: int):
    """Per batch and density: (batch, density, x, want), x the benchmarks' input of that batch
    with the model's gates set to the density on it (`set_density`), want torch's logits."""
    for batch in batches:
        x = batch_input(model, batch, seed)
        for density in densities:
            set_density(model, x, density)
            with torch.no_grad():
                want = model(x).logits.numpy()
            yield batch, density, x, want


def fastest_ms(sessions: dict, feeds: dict, **timing) -> dict[str, tuple[float, int]]:
    """Sessions keyed (graph, threads) timed in alternating rounds (`median_ms`, `timing` its
    options), each on `feeds[graph]`; per graph its fastest setting, (ms, threads)."""
    timed = median_ms({key: (lambda s=session, f=feeds[key[0]]: s.run(None, f))
                       for key, session in sessions.items()}, **timing)
    return {graph: min((ms, t) for (g, t), ms in timed.items() if g == graph)
            for graph in dict.fromkeys(g for g, _ in sessions)}


def _with_thresholds(graph: bytes, model: GatedNetwork) -> bytes:
    """The graph with each gated layer's threshold initializer (`layers.<i>.threshold`, i its
    index among all layers) set to the model's."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(graph)
    wanted = {f"layers.{i}.threshold": float(layer.threshold)
              for i, layer in enumerate(model.layers) if layer.gater is not None}
    found = 0
    for init in proto.graph.initializer:
        if init.name in wanted:
            value = np.array(wanted[init.name], np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
            found += 1
    if found != len(wanted):
        raise RuntimeError(f"the graph has {found} of {len(wanted)} threshold initializers")
    return proto.SerializeToString()


def rows(warmup: int, repeats: int, seed: int, batches=BATCHES, densities=DENSITIES,
         threads: int | None = None, cases=(LAYER_CASE, MODEL_CASE), settle_s: float = 0.0,
         custom_ops: bool = False) -> list[dict]:
    import onnxruntime as ort  # noqa: F401  (fail early, before exporting, when missing)

    # Each graph is timed with 1 intra-op thread and with `threads`, and reported at its faster
    # setting (`dense_threads`, `skip_threads`): measured here, the dense graph runs faster on
    # two threads and the skipping graph, a chain of small nodes, on one (6.2x at batch 1 and
    # 10 % on one thread each, 2.5x on two each); a server picks the options per model.
    settings = sorted({1, threads or torch.get_num_threads()})
    out = []
    for case in cases:
        model = _model(case, seed)
        with tempfile.TemporaryDirectory(prefix="sparsegate-onnx-bench-") as tmp:
            graph, dense_graph = _export(model, Path(tmp), custom_ops)
        dense = {t: _session(dense_graph, t) for t in settings}
        blocks = np.array([layer.config.blocks for layer in model.gated_layers])
        # The torch rows' inputs (benchmarks.cpu_cases), so the gate patterns match.
        for batch, density, x, want in density_cells(model, batches, densities, seed):
            feed = {"x": x.numpy()}
            graph_now = _with_thresholds(graph, model)
            skip = {t: _session(graph_now, t) for t in settings}
            logits, active, computed = skip[settings[-1]].run(None, feed)
            diff = check_logits(logits, want,
                                f"{case}, ORT at batch {batch}, density {density}")
            # The graph's gated layers read the batch's union of input blocks: counted
            # as all of them (an upper bound; exact at batch 1 would be lower).
            reports = compute_reports(model.config, torch.from_numpy(active),
                                      torch.from_numpy(computed),
                                      gated_reads_all_inputs=True)
            sessions = {(kind, t): session for kind, group in (("dense", dense),
                                                                ("skip", skip))
                        for t, session in group.items()}
            best = fastest_ms(sessions, {"dense": feed, "skip": feed}, warmup=warmup,
                              repeats=repeats, settle_s=settle_s)
            times = {kind: ms for kind, (ms, _) in best.items()}
            out.append({
                "device": "cpu", "backend": "onnxruntime-ops" if custom_ops else "onnxruntime",
                "case": case, "batch": batch,
                "density": density,
                "realised_density": float((active / blocks).mean()),
                "computed_density": float((computed / blocks).mean()),
                "saved_fraction": sum(r.saved_fraction for r in reports) / len(reports),
                "dense_ms": times["dense"], "skip_ms": times["skip"],
                "speedup": times["dense"] / times["skip"],
                "dense_threads": best["dense"][1], "skip_threads": best["skip"][1],
                "weights": "random", "max_abs_diff": diff, "settle_ms": settle_s * 1e3})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_cases",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="intra-op threads of both sessions "
                        "(default: torch's thread count)")
    parser.add_argument("--custom-ops", action="store_true",
                        help="time the graph on sparsegate's onnxruntime operators "
                             "(sparsegate-export --custom-ops)")
    parser.add_argument("--case", action="append", choices=[LAYER_CASE, MODEL_CASE],
                        help="only this case (repeatable; default: both)")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    result = rows(args.warmup, args.repeats, args.seed, threads=args.threads,
                  cases=tuple(args.case or (LAYER_CASE, MODEL_CASE)), custom_ops=args.custom_ops)
    print(f"{'case':<30} {'batch':>5} {'density':>7} {'realised':>8} {'computed':>8} "
          f"{'dense ms':>9} {'skip ms':>9} {'speedup':>7}")
    for r in result:
        print(f"{r['case']:<30} {r['batch']:>5} {r['density']:>7.2f} "
              f"{r['realised_density']:>8.3f} {r['computed_density']:>8.3f} "
              f"{r['dense_ms']:>9.3f} {r['skip_ms']:>9.3f} {r['speedup']:>7.2f}")
    if args.json:
        write_rows(args.json, result, onnxruntime=ort.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
