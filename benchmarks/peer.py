"""sparsegate-serve against the server a user would run instead: MLServer serving the same
network dense, as an ONNX graph in onnxruntime (`benchmarks/peer_runtime.py`), on loopback, one
client, the same Open Inference Protocol requests to both, in JSON and in binary tensors.

    python -m benchmarks.peer --json docs/performance/peer-cpu.json

MLServer is installed into an environment of its own on first use (`--peer-env`, default
~/.cache/sparsegate/mlserver-env, from the package index), or named (`--peer-python`).

The network has the `blocks` preset's shape (784 -> 2 gated layers of 64 blocks x 64 -> 10),
random weights, thresholds at 10 % of blocks on Gaussian inputs (`benchmarks.cases`).
sparsegate serves it at 10 % and with every gate on (100 %); MLServer serves its dense ONNX
graph (`models.skip.onnx_export.export_dense_onnx`, every block, no gater), with onnxruntime's
threads set to sparsegate's. MLServer runs inference in its main process
(`parallel_workers: 0`), its fastest setting for one client. Per batch size and encoding: each
server's client-side p50 and p99 over `--requests` requests per round, servers alternating
round by round; sparsegate's answers with every gate on are checked against MLServer's.
MLServer 1.7 answers binary-extension requests over REST with a 500 (it parses the whole body
as JSON), so it is timed in JSON only and every row is read against its JSON p50.

`--block-weights float32,bfloat16` also serves the network with its main-path weights rounded
to bfloat16 (`models.block_weights`; `sparsegate-10-bf16`, `sparsegate-100-bf16`), in the same
rounds, against the same float32 peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import torch

from models.block_weights import PRECISIONS, round_main_weights
from models.gated_artifact import save_gated_network
from models.gated_config import preset
from models.gated_network import GatedNetwork
from models.skip.onnx_export import export_dense_onnx

from .cases import set_density
from .http_load import encode_request, one_at_a_time
from .run_record import write_rows
from .server_process import HttpServerProcess, ServerProcess, free_port

RUNTIME = Path(__file__).with_name("peer_runtime.py")
PEER_PACKAGES = ("mlserver", "onnxruntime", "numpy")
ENCODINGS = ("json", "binary")
PEER = "mlserver-dense"
# MLServer 1.7's REST server parses a binary-extension body as JSON and answers 500: it is
# timed in JSON only, and sparsegate's binary requests are read against its JSON ones.
PEER_ENCODINGS = ("json",)


def peer_python(env: Path) -> Path:
    """The Python of MLServer's own environment, made (and MLServer installed) if missing."""
    python = env / "bin" / "python"
    if not (env / "bin" / "mlserver").exists():
        print(f"[peer] installing {', '.join(PEER_PACKAGES)} into {env}", flush=True)
        venv.create(env, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
                       check=True)
    return python


class MLServerProcess(HttpServerProcess):
    """`mlserver start` on a folder holding one model: the dense graph behind the runtime."""

    def __init__(self, python: Path, graph: bytes, threads: int, timeout_s: float = 180.0):
        self.folder = Path(tempfile.mkdtemp(prefix="sparsegate-peer-"))
        model = self.folder / "dense"
        model.mkdir()
        (model / "model.onnx").write_bytes(graph)
        shutil.copy(RUNTIME, model / RUNTIME.name)
        (model / "model-settings.json").write_text(json.dumps({
            "name": "dense", "implementation": f"{RUNTIME.stem}.OnnxRuntimeModel",
            "parameters": {"uri": "./model.onnx", "extra": {"threads": threads}}}))
        port = free_port()
        (self.folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": 0, "debug": False}))
        super().__init__("MLServer", [str(python.parent / "mlserver"), "start",
                                      str(self.folder)],
                         port, env={"PYTHONPATH": ""}, ready_timeout_s=timeout_s)

    def stop(self) -> str:
        output = super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        return output


def infer_request(url: str, model: str, x: np.ndarray, encoding: str) -> bytes:
    """One Open Inference Protocol request for x (B, D): data in the JSON, or the binary
    tensor extension's raw little-endian bytes after it."""
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if encoding == "json":
        body = json.dumps({"inputs": [{**tensor, "data": x.round(5).reshape(-1).tolist()}]})
        return encode_request(url, f"/v2/models/{model}/infer", body.encode())
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{**tensor, "parameters": {
        "binary_data_size": len(raw)}}]}).encode()
    return encode_request(url, f"/v2/models/{model}/infer", header + raw,
                          content_type="application/octet-stream",
                          headers={"Inference-Header-Content-Length": str(len(header))})


def first_output(body: bytes, name: str) -> np.ndarray:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    return np.asarray(outputs[name]["data"], dtype=np.float64)


def served_name(density: str, block_weights: str) -> str:
    """The model sparsegate serves at `density` ("10" or "100") in `block_weights`."""
    return f"blocks-{density}" + ("-bf16" if block_weights == "bfloat16" else "")


def build(root: Path, seed: int, block_weights=("float32",)) -> tuple[bytes, np.ndarray]:
    """sparsegate's versions of the network in `root` (10 % and 100 %, in each precision of
    `block_weights`) and MLServer's dense graph (float32); returns the graph and the inputs
    requests are made of."""
    torch.manual_seed(seed)
    model = GatedNetwork(preset("blocks")).eval()
    x = torch.randn(512, 784, generator=torch.Generator().manual_seed(seed))
    set_density(model, x, 0.1)
    tenth = model.thresholds()
    graph = export_dense_onnx(model).SerializeToString()
    for precision in sorted(block_weights, key=PRECISIONS.index):  # float32 before rounding
        round_main_weights(model, precision)
        model.set_thresholds(tenth)
        save_gated_network(model, root, served_name("10", precision), 1)
        model.set_thresholds([-1e30] * len(model.gated_layers))  # every gate on
        save_gated_network(model, root, served_name("100", precision), 1)
    return graph, x.numpy()


def measure(targets: dict[str, tuple[str, str]], inputs: np.ndarray, batches: list[int],
            requests: int, rounds: int, warmup: int) -> list[dict]:
    """Per batch size, every (server, encoding) but MLServer's binary (PEER_ENCODINGS), in
    alternating rounds; each speed-up is against MLServer's JSON p50 at that batch size."""
    rows = []
    for batch in batches:
        chunks = [inputs[i:i + batch] for i in range(0, len(inputs) - batch + 1, batch)]
        cells = {(label, encoding): [infer_request(url, model, c, encoding) for c in chunks]
                 for label, (url, model) in targets.items() for encoding in ENCODINGS
                 if label != PEER or encoding in PEER_ENCODINGS}
        for (label, _), bodies in cells.items():
            asyncio.run(one_at_a_time(targets[label][0], bodies, warmup))
        latencies: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
        server: dict[tuple[str, str], list[tuple[float, float]]] = {cell: [] for cell in cells}
        for _ in range(rounds):
            for (label, encoding), bodies in cells.items():
                result = asyncio.run(one_at_a_time(targets[label][0], bodies, requests))
                latencies[label, encoding] += result.latencies_ms
                if label != PEER:  # sparsegate's own timings: (forward, whole request)
                    server[label, encoding] += [
                        (p["compute_ms"], p["total_ms"]) for p in
                        (json.loads(b)["parameters"] for b in result.bodies)]
        peer = float(np.percentile(latencies[PEER, "json"], 50))
        for (label, encoding), values in latencies.items():
            p50 = float(np.percentile(values, 50))
            row = {"batch": batch, "encoding": encoding, "server": label,
                   "p50_ms": p50, "p99_ms": float(np.percentile(values, 99)),
                   "speedup_vs_peer_json": peer / p50, "requests": len(values)}
            if server[label, encoding]:
                forward, total = np.median(np.array(server[label, encoding]), axis=0)
                row |= {"server_forward_p50_ms": float(forward),
                        "server_total_p50_ms": float(total)}
            rows.append(row)
    return rows


def check_same_answers(targets: dict[str, tuple[str, str]], x: np.ndarray) -> None:
    """sparsegate with every gate on runs the dense network: its classes are the peer's."""
    answers = {}
    for label in (PEER, "sparsegate-100"):
        url, model = targets[label]
        result = asyncio.run(one_at_a_time(url, [infer_request(url, model, x, "json")], 1))
        answers[label] = result.bodies[0]
    logits = first_output(answers[PEER], "logits").reshape(len(x), -1)
    classes = first_output(answers["sparsegate-100"], "predicted_class")
    if not np.array_equal(logits.argmax(-1), classes):
        raise RuntimeError("sparsegate with every gate on and MLServer's dense graph disagree")


def show(rows: list[dict]) -> None:
    print(f"{'batch':>5} {'encoding':>8} {'server':>20} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'vs MLServer JSON':>16} {'forward / server ms':>19}")
    for r in rows:
        own = (f"{r['server_forward_p50_ms']:.2f} / {r['server_total_p50_ms']:.2f}"
               if "server_forward_p50_ms" in r else "-")
        print(f"{r['batch']:>5} {r['encoding']:>8} {r['server']:>20} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['speedup_vs_peer_json']:>15.2f}x {own:>19}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--peer-env", type=Path,
                        default=Path.home() / ".cache" / "sparsegate" / "mlserver-env")
    parser.add_argument("--peer-python", type=Path, help="a Python with MLServer installed")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--requests", type=int, default=40, help="per server and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-weights", default="float32",
                        help="sparsegate's main-path weight precisions, comma-separated: "
                             "float32 (default), bfloat16 or both")
    args = parser.parse_args(argv)
    precisions = tuple(p.strip() for p in args.block_weights.split(",") if p.strip())
    if not precisions or set(precisions) - set(PRECISIONS):
        parser.error(f"--block-weights takes {', '.join(PRECISIONS)}, comma-separated")
    python = args.peer_python or peer_python(args.peer_env)
    batches = [int(b) for b in args.batches.split(",")]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="sparsegate-peer-repo-") as tmp:
        graph, inputs = build(Path(tmp), args.seed, precisions)
        peer = MLServerProcess(python, graph, args.threads)
        try:
            with ServerProcess(tmp, "--threads", str(args.threads)) as ours:
                targets = {PEER: (peer.url, "dense")}
                for precision in precisions:
                    for density in ("10", "100"):
                        name = served_name(density, precision)
                        targets[name.replace("blocks", "sparsegate")] = (ours.url, name)
                if "float32" in precisions:
                    check_same_answers(targets, inputs[:8])
                rows = measure(targets, inputs, batches, args.requests, args.rounds,
                               args.warmup)
        finally:
            peer.stop()
    show(rows)
    if args.json:
        version = subprocess.run(
            [str(python), "-c", "import mlserver; print(mlserver.__version__)"],
            capture_output=True, text=True).stdout.strip()
        write_rows(args.json, rows, settings={
            "command": "python -m benchmarks.peer " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "mlserver": version, "threads": args.threads, "block_weights": list(precisions),
            "seconds": time.time() - started})
    return 0


if __name__ == "__main__":
    sys.exit(main())
