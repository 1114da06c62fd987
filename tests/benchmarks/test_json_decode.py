"""The JSON decode benchmark times the server's decode and its parts on the peer's bodies."""

from benchmarks.json_decode import INPUT_SIZE, rows


def test_a_row_per_batch_with_every_part_timed():
    out = rows(0, 2, 0, batches=(1, 2))
    assert [r["batch"] for r in out] == [1, 2]
    for r in out:
        assert r["numbers"] == r["batch"] * INPUT_SIZE and r["body_bytes"] > r["numbers"]
        assert all(r[f"{part}_ms"] > 0 for part in ("decode_infer", "orjson_loads",
                                                    "booleans_translated",
                                                    "booleans_searched", "to_numpy"))
