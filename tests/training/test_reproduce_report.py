"""docs/reproduction.md from synthetic multi-seed summaries: spreads, choices made on validation,
the claims' verdicts, and the compute comparison."""

import json
import re
from dataclasses import asdict

import pytest

from training.reproduce import main
from training.reproduce_results import merge_summaries, run_results
from training.reproduce_specs import PAPER_RUNS

SPECS = {s.name: s for s in PAPER_RUNS}
GATED_MACS, DENSE_2000, MLP_200 = 1_272_400, 1_588_000, 158_800


def phase(test, valid, macs, density):
    return {"epoch": 2, "valid_error": valid, "valid_density": [density] if density else [],
            "thresholds": [0.0] if density else [], "test_error": test,
            "test_density": [density] if density else [], "test_executed_macs": macs,
            "dense_macs": DENSE_2000}


def record(test, valid, tuned_test, tuned_valid, *, macs=GATED_MACS, density=0.1, done=True):
    """One seed: 2 training epochs and 1 of fine-tuning (or only the first 2, unfinished)."""
    history = [{"epoch": e, "phase": "train" if e < 3 else "finetune", "valid_error": valid,
                "train_task_loss": 1.0 / e} for e in range(1, 4 if done else 3)]
    final = {"epochs": len(history), "dense_macs": DENSE_2000,
             "best_epochs": {"train": phase(test, valid, macs, density)}}
    if done:
        final["best_epochs"]["finetune"] = phase(tuned_test, tuned_valid, macs, density)
    return {"status": "finished" if done else "paused", "planned_epochs": 3,
            "history": history, "final": final, "log_tail": ""}


def run_entry(name, tests, valids=None, tuned=None, tuned_valids=None, **kw):
    valids = valids or tests
    tuned = tuned or tests
    tuned_valids = tuned_valids or tuned
    dones = kw.pop("dones", [True] * len(tests))
    return {"spec": asdict(SPECS[name]), "seeds": {
        str(i): record(t, v, tt, tv, done=d, **kw)
        for i, (t, v, tt, tv, d) in enumerate(zip(tests, valids, tuned, tuned_valids, dones,
                                                  strict=True))}}


def summary(runs, seeds=(0, 1, 2)):
    return {"settings": {"data": "fashion-mnist", "epochs": 2, "finetune_epochs": 1,
                         "seeds": list(seeds), "device": "cpu", "jobs": 2, "limit": None,
                         "elapsed_seconds": 3600.0, "command": "python -m training.reproduce run"},
            "runs": runs}


def paper_runs():
    return {
        # Fine-tuning helps on validation as on test: chosen.
        "straight-through": run_entry("straight-through", [0.10, 0.11, 0.12],
                                      tuned=[0.09, 0.10, 0.11]),
        # Fine-tuning looks better on test but worse on validation: not chosen.
        "noisy-rectifier": run_entry("noisy-rectifier", [0.15, 0.16, 0.17],
                                     valids=[0.14, 0.15, 0.16], tuned=[0.12, 0.12, 0.12],
                                     tuned_valids=[0.18, 0.18, 0.18]),
        "stochastic-times-smooth": run_entry("stochastic-times-smooth", [0.30, 0.31, 0.32]),
        # Worse than the Baseline Sigmoid: the paper's fourth claim is refuted.
        "reinforce": run_entry("reinforce", [0.25, 0.26, 0.27]),
        # Within the seeds' spread of straight-through: the first claim cannot tell.
        "rectifier-baseline": run_entry("rectifier-baseline", [0.105, 0.125, 0.115]),
        "baseline-sigmoid": run_entry("baseline-sigmoid", [0.20, 0.21, 0.22], macs=393_600 +
                                      156_800 + 2_000, density=1.0),
        "dense-200-sigmoid": run_entry("dense-200-sigmoid", [0.18, 0.19, 0.20], macs=MLP_200,
                                       density=None),
        # The third seed has not finished: two count.
        "dense-2000-relu": run_entry("dense-2000-relu", [0.09, 0.10, 0.11], macs=DENSE_2000,
                                     density=None, dones=[True, True, False]),
    }


@pytest.fixture
def report(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary(paper_runs())))
    docs = tmp_path / "docs"
    assert main(["report", "--summary", str(path), "--docs", str(docs)]) == 0
    return (docs / "reproduction.md").read_text()


def table_row(text, first_cells):
    line = next(line for line in text.splitlines() if line.startswith(first_cells))
    return [c.strip() for c in line.strip("|").split("|")]


def test_rows_give_mean_and_sd_over_seeds_beside_the_papers_error(report):
    row = table_row(report, "| Straight-through | 1.39 | straight-through |")
    assert row[3:7] == ["11.00 ± 1.00", "10.00 ± 1.00", "with fine-tuning", "10.00 ± 1.00"]
    assert row[7] == "10.00 ± 0.00"  # gates on, %
    # 1.2724 M multiply-adds: 80.1 % of the dense 2000-unit layer, 8.01 times the 200-unit MLP.
    assert row[8:13] == ["1.272 M", "80.1 %", "8.01 ×", "3", "2 + 1"]


def test_the_variant_is_chosen_on_validation_not_on_test(report):
    row = table_row(report, "| Noisy Rectifier | 1.87 | noisy-rectifier |")
    assert row[4] == "12.00 ± 0.00"  # fine-tuned: lower test error...
    assert row[5] == "without fine-tuning"  # ...but higher validation error
    assert row[6] == "15.00 ± 1.00"


def test_unfinished_seeds_are_left_out_and_counted(report):
    row = table_row(report, "| (not in the paper) | - | dense-2000-relu |")
    assert row[3] == "9.50 ± 0.71"  # seeds 0 and 1 only
    assert row[11] == "2 of 3"


def test_the_papers_baseline_sigmoid_and_the_dense_mlp_are_separate_rows(report):
    sigmoid = table_row(report, "| Baseline Sigmoid | 1.92 | baseline-sigmoid |")
    mlp = table_row(report, "| (not in the paper) | - | dense-200-sigmoid |")
    assert sigmoid[8:11] == ["0.552 M", "34.8 %", "3.48 ×"]
    assert mlp[8:11] == ["0.159 M", "10.0 %", "1.00 ×"]


def test_each_claim_gets_a_verdict_by_the_stated_rule(report):
    assert "Welch's two-sided t-test" in report
    verdicts = {row[0]: row[1:] for row in (
        table_row(report, f"| {start}") for start in (
            "Straight-through has", "The noisy rectifier", "Stochastic times smooth trails",
            "The gated models beat"))}
    by_start = {k.split(" (")[0][:20]: v for k, v in verdicts.items()}
    assert by_start["Straight-through has"] == ["**cannot tell**", "**cannot tell**"]
    assert by_start["The noisy rectifier "] == ["**reproduced**", "**reproduced**"]
    assert by_start["Stochastic times smo"] == ["**reproduced**", "**reproduced**"]
    assert by_start["The gated models bea"] == ["**refuted**", "**refuted**"]
    # Each verdict comes with the numbers it rests on.
    assert re.search(r"straight-through − rectifier-baseline: -0\.50 ± [0-9.]+ points "
                     r"\(p = 0\.[0-9]{3}\): cannot tell", report)
    assert re.search(r"reinforce − baseline-sigmoid: \+5\.00 ± [0-9.]+ points \(p = 0\.[0-9]{3}"
                     r"\): refuted", report)


def test_the_best_gated_model_is_named_by_validation(report):
    assert ("the gated model at 10 % with the lowest validation error is **straight-through** "
            "(with fine-tuning): validation 10.00 ± 1.00 %, test 10.00 ± 1.00 %") in report


def test_gated_models_are_checked_against_dense_ones_that_cost_no_more(report):
    row = table_row(report, "| straight-through | 1.272 M |")
    assert row[2] == "dense-200-sigmoid"  # the 2000-unit MLP costs more
    assert "the gated model is better" in row[3]


def test_the_regenerating_commands_are_given(report):
    assert "make reproduce" in report
    assert "python -m training.reproduce report --summary" in report
    assert "python -m training.reproduce run" in report


def test_a_later_summary_adds_seeds_and_never_undoes_a_finished_one(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    runs = paper_runs()
    first.write_text(json.dumps(summary({"straight-through": runs["straight-through"]})))
    later = run_entry("straight-through", [0.5, 0.5, 0.5], dones=[False, True, True])
    later["seeds"]["3"] = later["seeds"].pop("2")
    second.write_text(json.dumps(summary({"straight-through": later})))
    merged, settings = merge_summaries([first, second])
    result = run_results(merged)["straight-through"]
    assert len(settings) == 2
    assert result.done_seeds == (0, 1, 2, 3)
    # Seed 0 stays the first summary's finished record; seeds 1 and 3 are the second's.
    assert result.variants["train"].test_error.values == (0.10, 0.5, 0.12, 0.5)


def test_a_summary_of_the_earlier_single_seed_format_is_refused_by_name(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"settings": {}, "runs": {"straight-through": {
        "spec": {}, "status": "done", "history": [], "final": {}}}}))
    assert main(["report", "--summary", str(old), "--docs", str(tmp_path / "docs")]) == 2
    assert "earlier `reproduce run`" in capsys.readouterr().err
