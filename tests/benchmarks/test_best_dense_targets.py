"""The best-dense target table reads every run's cell, takes the median and says a target is
met only when every run meets it."""

import json

import pytest

from benchmarks.best_dense_targets import BEGIN, END, TARGETS, every_cell, main, render


def run(figure: float) -> dict:
    return {"rows": [{"backend": backend, "case": case, "batch": batch, "density": density,
                      field: figure}
                     for _, backend, case, batch, density, field, _ in TARGETS]}


def test_a_target_is_met_only_in_every_run():
    table = render([run(10.0), run(10.0), run(0.5)], ["a", "b", "c"])
    rows = table.splitlines()[2:]
    assert len(rows) == len(TARGETS)
    assert all("**missed** in 1 of 3 runs, the median above the line" in r for r in rows)
    assert all("met in every run" in r for r in render([run(10.0)], ["a"]).splitlines()[2:])


def test_a_run_without_a_cell_is_refused():
    broken = run(1.0)
    broken["rows"] = broken["rows"][1:]
    with pytest.raises(SystemExit, match="no torch"):
        render([broken], ["a"])


def test_update_rewrites_only_between_the_markers(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text(f"before\n{BEGIN}\nold\n{END}\nafter\n")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run(7.0)))
    main([str(path), "--update", str(document)])
    text = document.read_text()
    assert text.startswith(f"before\n{BEGIN}\n| target") and text.endswith(f"{END}\nafter\n")
    assert "old" not in text and "7.00x" in text


def bfloat16_run(figure: float) -> dict:
    rows = [row | {"block_weights": "bfloat16"} for row in run(figure)["rows"]
            if row["backend"] == "torch"]
    return {"rows": rows}


def update_own_section(tmp_path, section: str, run_rows: dict, *args: str) -> str:
    """A document holding the main table and `section`'s, updated with one run: its text."""
    document = tmp_path / "doc.md"
    marks = f"<!-- skip-tables:{section}:{{}}-->"
    document.write_text(f"{BEGIN}\nmain table\n{END}\n{marks.format('begin ')}\nold\n"
                        f"{marks.format('end ')}\n")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run_rows))
    main([str(path), "--update", str(document), *args])
    return document.read_text()


def test_bfloat16_runs_are_read_on_torch_targets_into_their_own_section(tmp_path):
    table = render([bfloat16_run(7.0)], ["a"])
    assert table.startswith("| target (CPU, bfloat16 main-path weights)")
    assert len(table.splitlines()[2:]) == sum(t[1] == "torch" for t in TARGETS)
    with pytest.raises(SystemExit, match="mix main-path weight precisions"):
        render([run(7.0), bfloat16_run(7.0)], ["a", "b"])
    text = update_own_section(tmp_path, "best-dense-targets-bfloat16", bfloat16_run(7.0))
    assert "main table" in text and "old" not in text and "7.00x" in text


def test_another_machines_runs_go_into_their_own_table(tmp_path):
    text = update_own_section(tmp_path, "best-dense-targets-intel", run(3.0),
                              "--machine", "intel")
    assert "main table" in text and "old" not in text and "3.00x" in text


def test_every_cell_gives_each_runs_figure_and_the_median(tmp_path, capsys):
    runs = [run(figure) for figure in (2.0, 9.0, 4.0)]
    runs[0]["rows"].append({"backend": "triton", "case": "x", "batch": 1, "density": 1.0,
                            "speedup": 5.0})  # a backend the table does not read
    rows = every_cell(runs, ["a", "b", "c"]).splitlines()[2:]
    assert len(rows) == len(TARGETS)
    assert all(r.endswith("| 2.00x | 9.00x | 4.00x | 4.00x |") for r in rows)
    paths = []
    for i, r in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    main([*map(str, paths), "--every-cell"])
    assert capsys.readouterr().out.count("| 4.00x |") == len(TARGETS)
    runs[2]["rows"] = runs[2]["rows"][1:]
    with pytest.raises(SystemExit, match="run 3 has no"):
        every_cell(runs, ["a", "b", "c"])
