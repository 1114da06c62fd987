"""Where onnxruntime's time goes in the portable skipping graph's grouped branch, and the most
that branch could gain over the dense graph.

    python -m benchmarks.onnx_grouped_anatomy --json docs/performance/onnx-grouped-anatomy.json

On the benchmark layer (`benchmarks.cases.layer_model`, gates at `--density` of the blocks per
example, the inputs of `benchmarks.onnx_cases`), at each of `--batches` (where the exported
graph takes its grouped branch, `models/skip/onnx_grouped.py`), it times in alternating rounds
(`benchmarks.timing.median_ms`), each graph at its faster of 1 and 2 intra-op threads:

- `dense`: the network exported densely (`export_dense_onnx`);
- `skip`: the exported skipping graph (`export_onnx`, as `sparsegate-export` writes it);
- `products`: the branch's two batched products and nothing else, on the shapes it runs them:
  (K, S, D) @ (K, D, C) over the rows it gathers, with the bias and the activation, and the
  reading layer's (K, N, S) @ (K, S, C + 1), C the largest count of examples on any block of
  the batch (each block is padded to it). A branch whose gathers, sorts, transposes and sums
  took no time, and whose gater was free, would take this long: `dense / products` is the
  most the branch can gain over the dense graph on onnxruntime's products (`ceiling`);
- `products_at_mean`: the same products with C the mean count per block, rounded up: what they
  would cost had each block only its own examples (were that a shape a batched MatMul took).

The products are built here with `onnx.helper` from the model's weights, in the exported
graph's layouts, and checked against numpy before they are timed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

from models.skip.onnx_export import export_dense_onnx, export_onnx

from .cases import batch_input, layer_model, set_density
from .onnx_cases import THREADS, _session, check_logits, fastest_ms
from .run_record import write_rows_if_asked

GRAPHS = ("dense", "skip", "products", "products_at_mean")


def _products_graph(w1: np.ndarray, b1: np.ndarray, w2_first: np.ndarray) -> bytes:
    """Inputs rows (K, C, D) and hidden (K, S, C + 1); outputs relu(w1 @ rows^T + b1),
    (K, S, C), and w2_first @ hidden, (K, N, C + 1): the two products as the branch runs
    them (the weight first, the gathered rows transposed into the first)."""
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1[..., None], "b1"),
             numpy_helper.from_array(w2_first, "w2_first")]
    nodes = [helper.make_node("Transpose", ["rows"], ["rows_t"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["w1", "rows_t"], ["pre"]),
             helper.make_node("Add", ["pre", "b1"], ["pre_b"]),
             helper.make_node("Relu", ["pre_b"], ["hidden_out"]),
             helper.make_node("MatMul", ["w2_first", "hidden"], ["partial"])]
    floats = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "grouped-products",
        [helper.make_tensor_value_info("rows", floats, [None, None, None]),
         helper.make_tensor_value_info("hidden", floats, [None, None, None])],
        [helper.make_tensor_value_info(name, floats, None)
         for name in ("hidden_out", "partial")], inits)
    opsets = [helper.make_opsetid("", 18)]
    return helper.make_model(graph, opset_imports=opsets,
                             ir_version=helper.find_min_ir_version_for(opsets)
                             ).SerializeToString()


def _products_feed(x: np.ndarray, on: np.ndarray, columns: int, s: int) -> dict:
    """The rows each block gathers (its examples first, then off examples as padding) to
    `columns`, and activations shaped as the reading product's operand."""
    k = on.shape[1]
    order = np.argsort(~on, axis=0, kind="stable")[:columns].T  # (K, columns)
    rng = np.random.default_rng(0)
    return {"rows": np.ascontiguousarray(x[order]),
            "hidden": rng.random((k, s, columns + 1), dtype=np.float32)}


def rows(batches, density: float, warmup: int, repeats: int, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    model = layer_model()
    gated, reader = model.layers[0], model.layers[1]
    k, s, d = gated.config.blocks, gated.config.block_size, model.config.input_size
    w1 = gated.main.weight.detach().numpy().reshape(k, s, d)
    b1 = gated.main.bias.detach().numpy().reshape(k, s)
    w2_first = np.ascontiguousarray(
        reader.main.weight.detach().numpy().reshape(-1, k, s).transpose(1, 0, 2))  # (K, N, S)
    products = _products_graph(w1, b1, w2_first)
    dense = export_dense_onnx(model).SerializeToString()
    out = []
    for batch in batches:
        x = batch_input(model, batch, seed)
        set_density(model, x, density)
        with torch.no_grad():
            on = (gated.gater(x) > gated.threshold).numpy()
            want = model(x).logits.numpy()
        counts = on.sum(axis=0)
        busiest, mean = int(counts.max()), math.ceil(float(counts.mean()))
        skip = export_onnx(model).SerializeToString()
        feeds = {"dense": {"x": x.numpy()}, "skip": {"x": x.numpy()},
                 "products": _products_feed(x.numpy(), on, busiest, s),
                 "products_at_mean": _products_feed(x.numpy(), on, mean, s)}
        graphs = {"dense": dense, "skip": skip, "products": products,
                  "products_at_mean": products}
        sessions = {(name, t): _session(graph, t) for name, graph in graphs.items()
                    for t in THREADS}
        check_logits(sessions[("skip", 1)].run(None, feeds["skip"])[0], want,
                     f"the skipping graph at batch {batch}")
        for name in ("products", "products_at_mean"):
            feed = feeds[name]
            hidden, partial = sessions[(name, 1)].run(None, feed)
            want_hidden = np.maximum(w1 @ feed["rows"].transpose(0, 2, 1) + b1[..., None], 0)
            np.testing.assert_allclose(hidden, want_hidden, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(partial, w2_first @ feed["hidden"], rtol=1e-4,
                                       atol=1e-4)
        fastest = fastest_ms(sessions, feeds, warmup=warmup, repeats=repeats,
                             rounds=max(1, repeats // 20))
        ms = {name: fastest[name][0] for name in GRAPHS}
        out.append({"device": "cpu", "backend": "onnxruntime", "case": "layer-1024-64x64-1024",
                    "batch": batch, "density": density, "busiest_block": busiest,
                    "mean_per_block": float(counts.mean()),
                    **{f"{name}_ms": ms[name] for name in GRAPHS},
                    "skip_vs_dense": ms["dense"] / ms["skip"],
                    "ceiling": ms["dense"] / ms["products"],
                    "products_share": ms["products"] / ms["skip"],
                    "ceiling_at_mean": ms["dense"] / ms["products_at_mean"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_grouped_anatomy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    result = rows([int(b) for b in args.batches.split(",")], args.density, args.warmup,
                  args.repeats, args.seed)
    print(f"{'batch':>5} {'C':>3} {'mean':>5} {'dense ms':>8} {'skip ms':>8} "
          f"{'products':>8} {'at mean':>8} {'skip x':>6} {'ceiling':>7}")
    for r in result:
        print(f"{r['batch']:>5} {r['busiest_block']:>3} {r['mean_per_block']:>5.1f} "
              f"{r['dense_ms']:>8.3f} {r['skip_ms']:>8.3f} {r['products_ms']:>8.3f} "
              f"{r['products_at_mean_ms']:>8.3f} {r['skip_vs_dense']:>6.2f} "
              f"{r['ceiling']:>7.2f}")
    write_rows_if_asked(args.json, result, onnxruntime=ort.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
