"""Where onnxruntime's time goes in the skipping graph at batch 1.

    python -m benchmarks.onnx_anatomy --json docs/performance/onnx-anatomy.json

On the benchmark layer (`benchmarks.cases.layer_model`, gates at `--density` of the blocks for
one input, the torch rows' input at batch 1), it times in alternating rounds
(`benchmarks.timing.median_ms`, one intra-op thread, as the skipping graph runs fastest):

- `dense`: the network exported densely (`sparsegate-export --dense-baseline`), at 1 and 2
  threads (the faster is the baseline, as in `benchmarks.onnx_cases`);
- `skip`: the exported skipping graph, as a server loads it;
- `gater`: the gater alone and the batch's union of blocks (NonZero);
- `gather`: that, plus the Gathers that copy the selected blocks' weight rows (both layers'
  weights and the gated layer's bias) out of the stored initializers;
- `union`: that, plus the two products over the copies: the skipping graph's work without
  its If fallbacks and bookkeeping outputs;
- `oracle`: the gater, then the same two products over initializers that already hold only
  the selected blocks' rows (no copy: what the graph would cost if ONNX had views).

The parts are built here with `onnx.helper` from the same weights, in the exported graph's
layouts ((K, S, D) and (K_in, S_in, N) stored by block); each is checked against torch first.
`bytes` counts the weights each reads: the dense graph's, the gater's, the gater's and the
selected blocks' rows (the others; the skipping graph also reads the read-out, 8 KiB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .cases import layer_model, set_density
from .onnx_cases import _export, _session, _with_thresholds
from .run_record import write_rows
from .timing import median_ms

PARTS = ("gater", "gather", "union", "oracle")


def _part(model, selected: np.ndarray, part: str) -> bytes:
    """One part of the batch-1 skipping forward as its own graph (see the module docstring)."""
    gated, reader = model.layers[0], model.layers[1]
    k, s, d = gated.config.blocks, gated.config.block_size, model.config.input_size
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, array: np.ndarray) -> None:
        inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().numpy()

    w1 = np32(gated.main.weight).reshape(k, s, d)
    b1 = np32(gated.main.bias).reshape(k, s)
    w2 = np.ascontiguousarray(np32(reader.main.weight).T).reshape(k, s, -1)  # (K, S, N)
    const("gater.hidden.weight", np32(gated.gater.hidden.weight))
    const("gater.hidden.bias", np32(gated.gater.hidden.bias))
    const("gater.out.weight", np32(gated.gater.out.weight))
    const("gater.out.bias", np32(gated.gater.out.bias))
    const("threshold", np.array(float(gated.threshold), np.float32))
    const("axis0", np.array([0], np.int64))
    node("Gemm", ["x", "gater.hidden.weight", "gater.hidden.bias"], "hidden", transB=1)
    node("Gemm", [node("Tanh", ["hidden"], "hidden_tanh"), "gater.out.weight",
                  "gater.out.bias"], "logits", transB=1)
    top = node("ReduceMax", ["logits", "axis0"], "top", keepdims=0)
    idx = node("Transpose", [node("NonZero", [node("Greater", [top, "threshold"], "needed")],
                                  "nonzero")], "idx")  # (n, 1)
    outputs = [top]  # a graph output keeps the gater live in every part

    def rows(name: str, array: np.ndarray) -> str:
        """The selected blocks' rows of a weight stored by block: copied by a Gather, or
        (oracle) an initializer holding only them."""
        if part == "oracle":
            const(f"{name}.rows", array[selected].reshape(-1, *array.shape[2:]))
            return f"{name}.rows"
        const(name, array)
        const(f"{name}.shape", np.array([-1, *array.shape[2:]], np.int64))
        return node("Reshape", [node("Gather", [name, idx], f"{name}.picked", axis=0),
                                f"{name}.shape"], f"{name}.rows")

    if part == "gather":  # outputs only the copies' shapes: returning them would copy them
        for name, array in (("w1", w1), ("b1", b1), ("w2", w2)):
            outputs.append(node("Cast", [node("Shape", [rows(name, array)], f"{name}.size")],
                                f"{name}.size.float", to=TensorProto.FLOAT))
    if part in ("union", "oracle"):  # in the export's order: each copy read right after it
        main = node("Gemm", ["x", rows("w1", w1), rows("b1", b1)], "main", transB=1)
        hidden = node("Relu", [main], "main.relu")  # (1, n*S); binary gates: values are 1
        const("b2", np32(reader.main.bias))
        outputs.append(node("Gemm", [hidden, rows("w2", w2), "b2"], "read"))
    graph = helper.make_graph(
        nodes, part, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        inits)
    opsets = [helper.make_opsetid("", 18)]
    built = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    return built.SerializeToString()


def rows(density: float, warmup: int, repeats: int, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    model = layer_model()
    # The torch and onnxruntime rows' input at batch 1 (benchmarks.cpu_cases, onnx_cases).
    x = torch.randn(1, model.config.input_size, generator=torch.Generator().manual_seed(seed + 1))
    set_density(model, x, density)
    gated, reader = model.layers[0], model.layers[1]
    with torch.no_grad():
        selected = np.flatnonzero((gated.gater(x) > gated.threshold)[0].numpy())
        hidden = torch.relu(gated.main(x)).unflatten(-1, (gated.config.blocks, -1))
        read = hidden[:, selected].flatten(1) @ reader.main.weight.T.unflatten(
            0, (gated.config.blocks, -1))[selected].flatten(0, 1) + reader.main.bias
    with tempfile.TemporaryDirectory(prefix="sparsegate-onnx-anatomy-") as tmp:
        skip_graph, dense_graph = _export(model, Path(tmp))
    sessions = {("dense", t): _session(dense_graph, t) for t in (1, 2)}
    sessions[("skip", 1)] = _session(_with_thresholds(skip_graph, model), 1)
    feed = {"x": x.numpy()}
    for part in PARTS:
        session = _session(_part(model, selected, part), 1)
        if part in ("union", "oracle"):  # checked against torch before it is timed
            got, want = session.run(None, feed)[-1], read.numpy()
            np.testing.assert_allclose(got, want, rtol=1e-4,
                                       atol=1e-4 * float(np.abs(want).max()))
        sessions[(part, 1)] = session
    timed = median_ms({key: (lambda s=s: s.run(None, feed)) for key, s in sessions.items()},
                      warmup=warmup, repeats=repeats)
    dense_ms = min(timed[("dense", 1)], timed[("dense", 2)])
    row_bytes = (model.config.input_size + reader.main.weight.shape[0] + 1) * 4  # w1, w2, b1
    selected_bytes = len(selected) * gated.config.block_size * row_bytes
    dense_bytes = sum(p.numel() * 4 for p in model.parameters())
    gater_bytes = sum(p.numel() * 4 for p in gated.gater.parameters())
    out = []
    for (name, threads), ms in timed.items():
        out.append({"device": "cpu", "backend": "onnxruntime", "case": "layer-1024-64x64-1024",
                    "batch": 1, "density": density, "part": name, "threads": threads,
                    "ms": ms, "dense_ms": dense_ms, "ratio_to_dense": dense_ms / ms,
                    "selected_blocks": len(selected),
                    "bytes": {"dense": dense_bytes, "gater": gater_bytes}.get(
                        name, selected_bytes + gater_bytes)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_anatomy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    result = rows(args.density, args.warmup, args.repeats, args.seed)
    print(f"{'part':<8} {'threads':>7} {'ms':>8} {'dense/ms':>8} {'MiB read':>8}")
    for r in result:
        print(f"{r['part']:<8} {r['threads']:>7} {r['ms']:>8.3f} {r['ratio_to_dense']:>8.2f} "
              f"{r['bytes'] / 2**20:>8.2f}")
    if args.json:
        write_rows(args.json, result, onnxruntime=ort.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
