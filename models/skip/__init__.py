"""Inference that skips the blocks whose gates are off, and counts what it ran.

Every backend takes a trained `GatedNetwork` (or its exported graph) and returns a `SkipOutput`
(`output.py`): logits, blocks on and blocks computed per example, from which
`models.compute` builds each example's compute report. The CPU and CUDA engines read the
network through one layer plan (`plan.py`); `routing.py` holds every line they route by.

- `cpu.py`: numpy with the C kernels of `c_kernels.py` (`csrc/`), or numpy's BLAS
  (`numpy_products.py`) where no compiler is found;
- `cuda.py`: Triton kernels (`triton_kernels.py`, `triton_gemv.py`) under CUDA graphs;
- `onnx_export.py` (with `onnx_graph.py`, `onnx_grouped.py`): the same network as an ONNX graph
  that skips blocks itself, written into the artifact as model.onnx; `onnx_runtime.py` serves
  that file through onnxruntime.

The ONNX and Triton modules import their optional dependencies; nothing here imports them
until they are used.
"""
