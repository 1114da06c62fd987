"""The service against a real server on loopback (`sparsegate-serve` in a subprocess):

    python -m benchmarks.service --json docs/performance/service-cpu.json

1. **Overhead at 1 client, default model** (`paper-st` from --model-repository if trained there,
   else the same architecture with random weights): client-side and server-side p50/p99
   latency, and HTTP + JSON overhead = client-side latency minus the server's forward.
2. **Skip against dense, 1 client**: the `blocks` stack widened (784 -> 2 gated layers of
   64 blocks x 128 -> 10, random weights) with thresholds at 10 % density, against the same
   artifact with every gate on (every example routed dense), served side by side and requested
   in alternating rounds; per-request client-side latency.
3. **Throughput at 32 concurrent clients**, batching on against off (`--no-batching`), for the
   default and the widened model: requests per second over a fixed time, in alternating rounds
   of the two servers.
4. **Backends** (with `--backends torch,onnxruntime`): the same artifacts served by one server
   per backend, 1 client, in alternating rounds: client-side p50 against the first backend's.

All requests go through `benchmarks.http_load` (raw asyncio HTTP/1.1 on keep-alive connections:
a Python HTTP client's own ~1 ms of CPU per request would be counted as the server's overhead
and, at 32 clients, saturate the shared cores). Requests go to the JSON API
(`/v1/models/{name}:predict`, one example each), with inputs from
the data the model expects (digits for the default model, Gaussian rows for the widened one).
Each figure is a median over rounds; the JSON keeps every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from models.artifact import list_versions
from models.gated_artifact import save_gated_network
from models.gated_config import GatedNetworkConfig, preset
from models.gated_network import GatedNetwork
from service.backends import BACKENDS

from .cases import set_density
from .http_load import closed_loop, encode_post, one_at_a_time
from .run_record import write_rows
from .server_process import ServerProcess

DEFAULT_MODEL = "paper-st"
WIDE = {"input_size": 784, "num_classes": 10, "estimator": "st", "target_density": 0.1,
        "layers": [{"blocks": 64, "block_size": 128, "gater_hidden": 64, "activation": "relu"},
                   {"blocks": 64, "block_size": 128, "gater_hidden": 64,
                    "activation": "relu"}]}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _digits(count: int) -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return np.random.default_rng(0).uniform(0, 1, size=(count, 64)).astype(np.float32)
    data = load_digits().data / 16.0
    return data[np.arange(count) % len(data)].astype(np.float32)


def build_repository(root: Path, source: Path, seed: int) -> dict[str, np.ndarray]:
    """The models to serve, written into `root`; returns example inputs per model."""
    inputs = {}
    versions = list_versions(source, DEFAULT_MODEL) if source.is_dir() else []
    if versions:
        # A copy, not a symlink: the server refuses files that resolve outside its repository.
        shutil.copytree(source / DEFAULT_MODEL / versions[-1],
                        root / DEFAULT_MODEL / versions[-1])
        provenance = f"trained ({source / DEFAULT_MODEL / versions[-1]})"
    else:
        torch.manual_seed(seed)
        model = GatedNetwork(preset("paper", input_size=64)).eval()
        set_density(model, torch.from_numpy(_digits(512)), 0.1)
        save_gated_network(model, root, DEFAULT_MODEL, 1)
        provenance = "random weights, thresholds at 10 % on digits"
    inputs[DEFAULT_MODEL] = _digits(256)
    torch.manual_seed(seed)
    wide = GatedNetwork(GatedNetworkConfig.from_dict(WIDE)).eval()
    x = torch.randn(512, 784, generator=torch.Generator().manual_seed(seed))
    set_density(wide, x, 0.1)
    save_gated_network(wide, root, "wide-10", 1)
    wide.set_thresholds([-1e30] * len(wide.gated_layers))  # every gate on: routed dense
    save_gated_network(wide, root, "wide-dense", 1)
    inputs["wide-10"] = inputs["wide-dense"] = x[:256].numpy()
    return inputs | {"_provenance": provenance}  # type: ignore[dict-item]


def _body(row: np.ndarray) -> dict:
    return {"instances": [row.round(5).tolist()]}


def sequential(url: str, models: list[str], inputs: dict, requests: int, rounds: int,
               warmup: int) -> dict[str, dict[str, list[float]]]:
    """One client; models requested in alternating rounds. Per model: client-side ms, server
    total_ms and compute_ms per request, and the saved fraction reported."""
    return sequential_targets({m: (url, m) for m in models}, inputs, requests, rounds, warmup)


def sequential_targets(targets: dict[str, tuple[str, str]], inputs: dict, requests: int,
                       rounds: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """`sequential` over (server URL, model) targets by label: one server per backend serving
    the same artifact, say."""
    out = {label: {"client": [], "server": [], "compute": [], "saved": []} for label in targets}
    bodies = {label: [encode_post(url, f"/v1/models/{m}:predict", _body(row))
                      for row in inputs[m]] for label, (url, m) in targets.items()}
    for label, (url, _) in targets.items():
        asyncio.run(one_at_a_time(url, bodies[label], warmup))
    for _ in range(rounds):
        for label, (url, _) in targets.items():
            result = asyncio.run(one_at_a_time(url, bodies[label], requests))
            for elapsed, raw in zip(result.latencies_ms, result.bodies, strict=True):
                data = json.loads(raw)
                out[label]["client"].append(elapsed)
                out[label]["server"].append(data["timings"]["total_ms"])
                out[label]["compute"].append(data["timings"]["compute_ms"])
                out[label]["saved"].append(
                    data["predictions"][0]["compute"]["saved_fraction"])
    return out


def throughput(urls: dict[str, str], model: str, inputs: np.ndarray, clients: int,
               seconds: float, rounds: int) -> dict[str, list[dict[str, float]]]:
    """Requests per second of each server under `clients` closed-loop clients, in alternating
    rounds after a 1 s warm-up each."""
    out: dict[str, list[dict[str, float]]] = {label: [] for label in urls}
    requests = {label: [encode_post(url, f"/v1/models/{model}:predict", _body(row))
                        for row in inputs] for label, url in urls.items()}
    for round_index in range(rounds + 1):
        warm_up = round_index == 0
        for label, url in urls.items():
            result = asyncio.run(closed_loop(url, requests[label], clients,
                                             1.0 if warm_up else seconds, keep_bodies=True))
            if warm_up:
                continue
            sizes = [json.loads(b)["timings"]["batch_size"] for b in result.bodies]
            out[label].append({"requests_per_s": result.requests_per_s,
                               "failed": result.failed,
                               "p50_ms": percentile(result.latencies_ms, 50),
                               "p99_ms": percentile(result.latencies_ms, 99),
                               "mean_batch_size": float(np.mean(sizes)) if sizes else 0.0})
    return out


def run(args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sparsegate-service-bench-") as tmp:
        repository = Path(tmp)
        inputs = build_repository(repository, args.model_repository, args.seed)
        provenance = inputs.pop("_provenance")
        common = ["--max-batch-size", str(args.max_batch_size), "--max-queue-examples", "100000"]
        with ServerProcess(repository, *common) as batching, \
                ServerProcess(repository, *common, "--no-batching") as unbatched:
            print("1 client, default model ...", flush=True)
            lat = sequential(batching.url, [DEFAULT_MODEL], inputs, args.requests,
                             args.rounds, args.warmup)[DEFAULT_MODEL]
            overhead = [c - s for c, s in zip(lat["client"], lat["compute"], strict=True)]
            rows.append({"kind": "latency", "model": DEFAULT_MODEL, "weights": provenance,
                         "clients": 1, "requests": len(lat["client"]),
                         "client_p50_ms": percentile(lat["client"], 50),
                         "client_p99_ms": percentile(lat["client"], 99),
                         "server_p50_ms": percentile(lat["server"], 50),
                         "server_p99_ms": percentile(lat["server"], 99),
                         "compute_p50_ms": percentile(lat["compute"], 50),
                         "overhead_p50_ms": percentile(overhead, 50),
                         "overhead_p99_ms": percentile(overhead, 99),
                         "saved_fraction": statistics.mean(lat["saved"])})
            print("1 client, widened model at 10 % against dense ...", flush=True)
            pair = sequential(batching.url, ["wide-10", "wide-dense"], inputs, args.requests,
                              args.rounds, args.warmup)
            skip, dense = pair["wide-10"], pair["wide-dense"]
            rows.append({"kind": "skip_vs_dense", "model": "wide-10", "baseline": "wide-dense",
                         "clients": 1, "requests": len(skip["client"]),
                         "dense_p50_ms": percentile(dense["client"], 50),
                         "skip_p50_ms": percentile(skip["client"], 50),
                         "dense_p99_ms": percentile(dense["client"], 99),
                         "skip_p99_ms": percentile(skip["client"], 99),
                         "speedup": percentile(dense["client"], 50)
                         / percentile(skip["client"], 50),
                         "server_speedup": percentile(dense["server"], 50)
                         / percentile(skip["server"], 50),
                         "saved_fraction": statistics.mean(skip["saved"]),
                         "dense_saved_fraction": statistics.mean(dense["saved"])})
            for model in (DEFAULT_MODEL, "wide-10"):
                print(f"{args.clients} clients, {model}, batching on and off ...", flush=True)
                result = throughput({"on": batching.url, "off": unbatched.url}, model,
                                    inputs[model], args.clients, args.seconds, args.rounds)
                on = statistics.median(r["requests_per_s"] for r in result["on"])
                off = statistics.median(r["requests_per_s"] for r in result["off"])
                rows.append({"kind": "throughput", "model": model, "clients": args.clients,
                             "seconds": args.seconds, "batching_rps": on,
                             "no_batching_rps": off, "ratio": on / off,
                             "failed": sum(r["failed"] for v in result.values() for r in v),
                             "mean_batch_size": statistics.median(
                                 r["mean_batch_size"] for r in result["on"]),
                             "rounds": result})
        if len(args.backends) > 1:
            rows += compare_backends(repository, args, common, inputs)
    return rows


def compare_backends(repository: Path, args: argparse.Namespace, common: list[str],
                     inputs: dict) -> list[dict]:
    """The same artifacts served by one server per backend, 1 client, alternating rounds."""
    if "onnxruntime" in args.backends:
        from models.skip.onnx_export import export_to_artifact

        for model in (DEFAULT_MODEL, "wide-10", "wide-dense"):
            export_to_artifact(repository, model)
    rows = []
    servers: list[ServerProcess] = []
    try:
        for backend in args.backends:
            servers.append(ServerProcess(repository, *common, "--backend", backend))
        for model in (DEFAULT_MODEL, "wide-10", "wide-dense"):
            print(f"1 client, {model} on {', '.join(args.backends)} ...", flush=True)
            targets = {b: (server.url, model) for b, server in zip(args.backends, servers,
                                                                   strict=True)}
            lat = sequential_targets(targets, inputs, args.requests, args.rounds, args.warmup)
            first = args.backends[0]
            for backend in args.backends:
                rows.append({"kind": "backend", "model": model, "backend": backend,
                             "clients": 1, "requests": len(lat[backend]["client"]),
                             "client_p50_ms": percentile(lat[backend]["client"], 50),
                             "client_p99_ms": percentile(lat[backend]["client"], 99),
                             "compute_p50_ms": percentile(lat[backend]["compute"], 50),
                             "speedup_vs_" + first: percentile(lat[first]["client"], 50)
                             / percentile(lat[backend]["client"], 50),
                             "saved_fraction": statistics.mean(lat[backend]["saved"])})
    finally:
        for server in servers:
            server.stop()
    return rows


def show(rows: list[dict]) -> None:
    for row in rows:
        if row["kind"] == "latency":
            print(f"{row['model']} at 1 client: client p50 {row['client_p50_ms']:.2f} ms, p99 "
                  f"{row['client_p99_ms']:.2f} ms; server p50 {row['server_p50_ms']:.2f} ms, "
                  f"p99 {row['server_p99_ms']:.2f} ms; forward p50 "
                  f"{row['compute_p50_ms']:.2f} ms; HTTP + JSON overhead p50 "
                  f"{row['overhead_p50_ms']:.2f} ms")
        elif row["kind"] == "skip_vs_dense":
            print(f"{row['model']} vs {row['baseline']} at 1 client: p50 "
                  f"{row['skip_p50_ms']:.2f} ms vs {row['dense_p50_ms']:.2f} ms = "
                  f"{row['speedup']:.2f}x (saved {row['saved_fraction']:.1%} of the MACs)")
        elif row["kind"] == "backend":
            ratio = next(v for k, v in row.items() if k.startswith("speedup_vs_"))
            print(f"{row['model']} on {row['backend']} at 1 client: client p50 "
                  f"{row['client_p50_ms']:.2f} ms ({ratio:.2f}x the first backend), forward "
                  f"p50 {row['compute_p50_ms']:.2f} ms, saved {row['saved_fraction']:.1%}")
        else:
            print(f"{row['model']} at {row['clients']} clients: batching "
                  f"{row['batching_rps']:.0f} req/s (mean batch {row['mean_batch_size']:.1f}) "
                  f"vs {row['no_batching_rps']:.0f} req/s without = {row['ratio']:.2f}x, "
                  f"{row['failed']} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--model-repository", type=Path, default=Path("model-repository"),
                        help="where to find the trained default model (paper-st)")
    parser.add_argument("--requests", type=int, default=100, help="per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput round")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="torch",
                        help="comma-separated server backends; with more than one, each "
                             "model is also served by one server per backend and compared "
                             "(onnxruntime exports the models first)")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or not set(args.backends) <= set(BACKENDS):
        parser.error(f"--backends takes a comma-separated list of {', '.join(BACKENDS)}")
    if min(args.requests, args.rounds, args.clients) < 1 or args.seconds <= 0:
        parser.error("--requests, --rounds, --clients must be >= 1 and --seconds > 0")
    rows = run(args)
    show(rows)
    if args.json:
        write_rows(args.json, rows, requests=args.requests, rounds=args.rounds,
                   warmup=args.warmup, clients=args.clients, seconds=args.seconds)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
