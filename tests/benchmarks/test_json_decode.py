"""The JSON decode benchmark times the server's decode, the full path's and their parts on the
peer's bodies, after checking that both decodes agree."""

from benchmarks.json_decode import FORMATS, INPUT_SIZE, rows

PARTS = ("decode_infer", "decode_infer_2_threads", "full_path", "native_arrays",
         "native_arrays_2_threads", "simdjson_arrays", "orjson_loads", "simdjson_parse",
         "booleans_translated", "booleans_searched", "to_numpy", "count_values",
         "count_values_bytes_count")


def test_a_row_per_format_and_batch_with_every_part_timed():
    out = rows(0, 2, 0, batches=(1, 2))
    assert [(r["numbers_format"], r["batch"]) for r in out] == [
        (f, b) for f in FORMATS for b in (1, 2)]
    for r in out:
        assert r["numbers"] == r["batch"] * INPUT_SIZE and r["body_bytes"] > r["numbers"]
        assert all(r[f"{part}_ms"] > 0 for part in PARTS)
