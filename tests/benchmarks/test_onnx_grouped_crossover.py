"""The crossover benchmark times the grouped branch, the graph without it and the dense graph
of the same network, each skipping graph first checked against torch."""

from benchmarks.cases import LAYER_CASE
from benchmarks.onnx_grouped_crossover import GRAPHS, rows


def test_a_row_per_cell_with_every_graph_timed():
    out = rows(0, 1, 0, batches=(32,), densities=(0.1,), cases=(LAYER_CASE,))
    assert len(out) == 1
    row = out[0]
    assert (row["case"], row["batch"], row["density"]) == (LAYER_CASE, 32, 0.1)
    assert all(row[f"{graph}_ms"] > 0 for graph in GRAPHS)
    assert row["fastest"] == min(GRAPHS, key=lambda g: row[f"{g}_ms"])


def test_the_grouped_branch_on_sparsegate_operators():
    from models.skip import onnx_ops

    if not onnx_ops.available():
        return  # no C compiler: the operators cannot be timed here
    (row,) = rows(0, 1, 0, batches=(3,), densities=(0.3,), cases=(LAYER_CASE,),
                  custom_ops=True)
    assert row["grouped_on"] == "sparsegate operators" and row["grouped_ms"] > 0
