"""The accuracy-against-compute study: what it plans, how it resumes, what it reports."""

import json
from dataclasses import asdict

from training.recipes import recipe
from training.study import DENSITIES, VARIANTS, plan, restore_finished, variant_training
from training.study_report import density_notes, group_runs, verdicts, write_report


def test_every_variant_trains_the_recipes_total_epochs():
    base = recipe("blocks-narrow")
    total = base["epochs"] + base["deterministic_epochs"]
    for variant in VARIANTS:
        t = variant_training(base, variant)
        assert t["epochs"] + t["deterministic_epochs"] + t["finetune_epochs"] == total
        assert (t.get("balance_weight") == 0.0) == variant.endswith("-unbalanced")
    assert variant_training(base, "deterministic")["epochs"] == 0


def test_the_grid_has_every_density_the_dense_widths_and_the_same_network_dense():
    runs = plan("grid", "blocks-narrow", "fashion-mnist", [0, 1, 2], "deterministic-phase")
    gated = [r for r in runs if r.kind == "gated"]
    assert sorted({r.density for r in gated}) == sorted(DENSITIES)
    assert {r.seed for r in runs} == {0, 1, 2}
    assert len({r.name for r in runs}) == len(runs)
    on = [r for r in runs if r.kind == "every-block-on"]
    assert all(not layer["gated"] for r in on for layer in r.model["layers"])
    # Dense and gated train with one recipe for the same epochs.
    assert len({json.dumps(r.training, sort_keys=True) for r in runs}) == 1
    digits = plan("grid", "blocks-digits", "digits", [0], "deterministic")
    assert 0.125 in {r.density for r in digits if r.kind == "gated"}


def test_finished_runs_come_back_from_a_saved_summary(tmp_path):
    runs = plan("variants", "blocks-digits", "digits", [0], "deterministic")
    done, changed = runs[0], runs[1]
    final = {"valid_error": 0.1, "test_error": 0.1, "valid_density": [0.125]}
    stale = {**asdict(changed), "seed": 99}  # planned differently: must be trained again
    saved = tmp_path / "summary.json"
    saved.write_text(json.dumps({"runs": {
        done.name: {"spec": asdict(done), "final": final, "history": [{"epoch": 1}]},
        changed.name: {"spec": stale, "final": final, "history": []}}}))
    assert restore_finished(runs, tmp_path / "work", saved) == 1
    assert json.loads((tmp_path / "work" / done.name / "final.json").read_text()) == final
    assert not (tmp_path / "work" / changed.name).exists()
    assert restore_finished(runs, tmp_path / "work", saved) == 0  # already there


def _run(kind, macs, error, seed, density=1.0, widths=()):
    spec = {"kind": kind, "seed": seed, "density": density, "widths": list(widths),
            "variant": "deterministic" if kind == "gated" else "",
            "training": {"epochs": 0, "deterministic_epochs": 4}, "model": {"estimator": "st"}}
    final = {"test_error": error, "valid_error": error, "test_executed_macs": macs,
             "dense_macs": 1000, "test_density": [density] if kind == "gated" else [],
             "valid_density": [density] if kind == "gated" else []}
    return {"spec": spec, "final": final, "history": [], "status": "done"}


def test_a_gated_model_is_judged_against_every_dense_model_that_costs_no_more(tmp_path):
    runs = [_run("gated", 150, 0.12, s, density=0.1) for s in (0, 1)]
    runs += [_run("gated", 300, 0.10, 0, density=0.25)]
    runs += [_run("mlp", 100, 0.13, 0, widths=(32,)), _run("mlp", 200, 0.11, 0, widths=(64,))]
    runs += [_run("every-block-on", 1000, 0.095, 0)]
    rows = group_runs(runs)
    ten = next(r for r in rows if "10 %" in r["label"])
    assert ten["seeds"] == 2 and ten["test"] == (12.0, 0.0)
    lines = verdicts(rows)
    # At 150 multiply-adds only the 32-wide MLP (13 %) costs no more: 12 % beats it.
    assert "beats the best dense model" in lines[0] and "MLP 32" in lines[0]
    # At 300 the 64-wide MLP (200, 11 %) is allowed too: 10 % beats it.
    assert "MLP 64" in lines[1] and "beats" in lines[1]
    runs.append(_run("mlp", 140, 0.115, 0, widths=(16, 16)))
    assert "does **not** beat" in verdicts(group_runs(runs))[0]
    work = tmp_path / "work"
    work.mkdir()
    (work / "summary-grid.json").write_text(json.dumps({
        "settings": {"data": "digits", "preset": "blocks-digits", "command": "c"},
        "runs": {f"r{i}": r for i, r in enumerate(runs)}}))
    assert write_report(work, tmp_path / "docs") == 0
    page = (tmp_path / "docs" / "accuracy-vs-compute-digits.md").read_text()
    assert "| gated, 10 % of blocks | 2 | 12.00 ± 0.00 | 150 (15.0 % of dense) |" in page
    assert (tmp_path / "docs" / "accuracy-vs-compute-digits.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "accuracy-vs-compute-digits" / "summary-grid.json").exists()
    # Each gated model against every block on (9.5 %): the 25 % one within half a point.
    assert "- **gated, 10 % of blocks**: 12.00 ± 0.00 % against 9.50 ± 0.00 %" in page
    assert "+2.50 points, **not** within 0.5 of it, at 15.0 % of its multiply-adds" in page
    assert "+0.50 points, within 0.5 of it" in page
    assert write_report(work, tmp_path / "docs", "named") == 0
    assert "report --work " + str(work) + " --page named" in (
        tmp_path / "docs" / "named.md").read_text()


def test_a_gate_variant_trains_its_own_estimator_with_the_same_recipe():
    runs = {r.name: r for r in plan("variants", "blocks-narrow", "fashion-mnist", [0],
                                    "deterministic")}
    binary = runs["variant-deterministic-st-s0"]
    preset_gates = runs["variant-deterministic-s0"]
    assert binary.model["estimator"] == "st" and preset_gates.model["estimator"] == "rectifier"
    assert binary.training == preset_gates.training
    grid = plan("grid", "blocks-narrow", "fashion-mnist", [0], "deterministic-st")
    assert {r.model["estimator"] for r in grid if r.kind == "gated"} == {"st"}
    assert all(not layer["gated"] for r in grid if r.kind != "gated"
               for layer in r.model["layers"])


def test_a_gated_model_short_of_its_target_density_is_pointed_out():
    on_target = _run("gated", 100, 0.1, 0, density=0.25)
    short = _run("gated", 600, 0.09, 0, density=1.0)
    short["final"]["test_density"] = [0.6]
    notes = density_notes(group_runs([on_target, short]))
    assert len(notes) == 1 and "100 % of blocks** runs 60.0 %" in notes[0], notes


def test_a_gater_variant_widens_only_the_gaters_and_keeps_the_recipe():
    base = recipe("blocks-256x8")
    runs = {r.name: r for r in plan("variants", "blocks-256x8", "fashion-mnist", [0],
                                    "deterministic")}
    plain = runs["variant-deterministic-s0"]
    for hidden in (64, 128):
        run = runs[f"variant-deterministic-gater{hidden}-s0"]
        assert [layer["gater_hidden"] for layer in run.model["layers"]] == [hidden, hidden]
        widths = [(layer["blocks"], layer["block_size"]) for layer in run.model["layers"]]
        assert widths == [(layer["blocks"], layer["block_size"])
                          for layer in plain.model["layers"]]
        assert run.training == plain.training == variant_training(base, "deterministic")
