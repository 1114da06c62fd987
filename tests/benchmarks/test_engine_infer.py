"""The server-forward benchmark times each preset and batch, at a density where asked."""

import json

from benchmarks import engine_infer


def test_each_preset_and_batch_is_timed(capsys):
    engine_infer.main(["--presets", "blocks-digits", "--batches", "1,3", "--repeats", "2",
                       "--warmup", "1", "--density", "0.5"])
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"blocks-digits batch 1", "blocks-digits batch 3"}
    assert all(ms > 0 for ms in rows.values())
