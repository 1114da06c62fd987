"""The maths of sparsegate, in torch and numpy.

Owns the gradient estimators for stochastic neurons (unbiased REINFORCE, stochastic times
smooth, noise injection, straight-through), the gaters and gated networks, the block-skipping
inference forward (CPU torch path and GPU Triton kernels), compute accounting in multiply-adds,
and the one reader and writer of the model artifact (``config.json`` + ``model.safetensors``).
May import only the standard library, torch, numpy and safetensors; triton only lazily, inside
functions on the GPU path. Reading configs and artifacts, compute accounting and the
onnxruntime engine import torch only where they build tensors, so that a server of exported
ONNX graphs runs without torch installed. Never imports ``training``, ``service`` or ``loadtest``.
"""
