"""Training of gated networks.

Owns datasets, the training loop and its objectives (task loss, sparsity penalty, REINFORCE
baselines), threshold calibration, checkpoints and resume, estimator diagnostics, and export of
trained models (native artifact through ``models``, and ONNX). May import ``models`` and the
training dependencies (tqdm, matplotlib, scikit-learn); never imports ``service`` or ``loadtest``.
"""
