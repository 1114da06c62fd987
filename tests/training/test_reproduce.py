"""The reproduction driver and its report, on a tiny budget."""

import json

from training.reproduce import RUNS, main


def test_runs_cover_the_papers_comparison_and_the_density_sweep():
    names = {r.name for r in RUNS}
    assert {"noisy-rectifier", "straight-through", "stochastic-times-smooth", "reinforce",
            "rectifier-baseline", "dense-200-sigmoid", "dense-2000-relu"} <= names
    assert {r.estimator for r in RUNS if r.group == "paper"} >= {"gumbel-st", "hard-concrete",
                                                                 "rloo", "disarm"}
    assert sorted(r.density for r in RUNS if r.group == "blocks") == [0.05, 0.1, 0.25, 0.5, 1.0]


def test_run_then_report(tmp_path):
    work = tmp_path / "work"
    code = main(["run", "--data", "digits", "--limit", "120", "--epochs", "1", "--jobs", "2",
                 "--only", "straight-through,dense-2000-relu,blocks-10", "--work", str(work)])
    assert code == 0
    summary = json.loads((work / "summary.json").read_text())
    assert {r["status"] for r in summary["runs"].values()} == {"done"}
    tuned = main(["run", "--data", "digits", "--limit", "120", "--epochs", "1", "--resume",
                  "--finetune-epochs", "1", "--only", "straight-through,dense-2000-relu",
                  "--work", str(work), "--summary", str(tmp_path / "tuned.json")])
    assert tuned == 0
    notes = tmp_path / "notes.md"
    notes.write_text("## What it shows\n\nHand-written analysis.\n")
    docs = tmp_path / "docs"
    assert main(["report", "--summary", str(work / "summary.json"), str(tmp_path / "tuned.json"),
                 "--docs", str(docs), "--notes", str(notes)]) == 0
    text = (docs / "reproduction.md").read_text()
    assert "| straight-through | st |" in text
    assert "| straight-through + fine-tune | st |" in text
    assert "Hand-written analysis." in text
    assert "for dense-2000-relu: a gap of" in text
    for png in ("reproduction-curves.png", "reproduction-blocks.png"):
        assert (docs / png).read_bytes()[:4] == b"\x89PNG"
