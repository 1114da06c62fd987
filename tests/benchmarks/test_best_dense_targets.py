"""The best-dense target table reads every run's cell, takes the median and says a target is
met only when every run meets it."""

import json

import pytest

from benchmarks.best_dense_targets import BEGIN, END, TARGETS, main, render


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


def test_bfloat16_runs_are_read_on_torch_targets_into_their_own_section(tmp_path):
    table = render([bfloat16_run(7.0)], ["a"])
    assert table.startswith("| target (CPU, bfloat16 main-path weights)")
    assert len(table.splitlines()[2:]) == sum(t[1] == "torch" for t in TARGETS)
    with pytest.raises(SystemExit, match="mix main-path weight precisions"):
        render([run(7.0), bfloat16_run(7.0)], ["a", "b"])
    document = tmp_path / "doc.md"
    marks = "<!-- skip-tables:best-dense-targets-bfloat16:{}-->"
    document.write_text(f"{BEGIN}\nfp32\n{END}\n{marks.format('begin ')}\nold\n"
                        f"{marks.format('end ')}\n")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(bfloat16_run(7.0)))
    main([str(path), "--update", str(document)])
    text = document.read_text()
    assert "fp32" in text and "old" not in text and "7.00x" in text
