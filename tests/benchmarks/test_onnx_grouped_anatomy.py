"""The grouped branch's anatomy times the dense graph, the skipping graph and the branch's two
products alone (checked against numpy), and reads the ceiling off them."""

import numpy as np
import pytest

from benchmarks.onnx_grouped_anatomy import GRAPHS, _products_feed, rows


def test_a_row_per_batch_with_every_graph_timed():
    (row,) = rows([32], 0.1, warmup=0, repeats=2, seed=0)
    assert row["batch"] == 32 and row["busiest_block"] >= np.ceil(row["mean_per_block"])
    assert all(row[f"{name}_ms"] > 0 for name in GRAPHS)
    assert row["ceiling"] == pytest.approx(row["dense_ms"] / row["products_ms"])
    assert row["products_share"] == pytest.approx(row["products_ms"] / row["skip_ms"])


def test_each_block_gathers_its_own_examples_first():
    x = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # row e holds e
    on = np.array([[0, 1], [1, 1], [0, 0], [1, 0]], bool)  # block 0: 1, 3; block 1: 0, 1
    feed = _products_feed(x, on, columns=3, s=5)
    assert feed["rows"][:, :2, 0].tolist() == [[1, 3], [0, 1]]  # then an off example each
    assert feed["rows"][0, 2, 0] in (0, 2) and feed["rows"][1, 2, 0] in (2, 3)
    assert feed["hidden"].shape == (2, 5, 4)
