"""The peer benchmark's requests are what sparsegate's server reads, and the whole benchmark
runs end to end at a tiny size against a real MLServer (from `.venv-mlserver` or
SPARSEGATE_PEER_PYTHON; `.ci/run` makes it)."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import peer
from service.tensors import binary_json_bytes, decode_infer
from tests.service.environments import MLSERVER


class _Headers:
    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")[1:]
        self.headers = {k.strip().lower(): v.strip() for k, v in
                        (line.split(":", 1) for line in lines if line)}


@pytest.mark.parametrize("encoding", peer.ENCODINGS)
def test_each_encoding_decodes_to_the_same_matrix(encoding):
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    raw = peer.infer_request("http://127.0.0.1:1", "m", x, encoding)
    head, body = raw.split(b"\r\n\r\n", 1)
    request = _Headers(head)
    assert int(request.headers["content-length"]) == len(body)
    _, got = decode_infer(body, binary_json_bytes(request), 784, 8)
    # JSON carries the numbers rounded to 5 decimals; the binary tensor carries them exactly.
    np.testing.assert_allclose(got, x, atol=1e-5 if encoding == "json" else 0)


def test_the_benchmark_runs_against_a_real_mlserver(tmp_path):
    out = tmp_path / "peer.json"
    assert peer.main(["--peer-python", MLSERVER.python(), "--batches", "2",
                      "--requests", "2", "--rounds", "1", "--warmup", "1",
                      "--block-weights", "float32,bfloat16", "--json", str(out)]) == 0
    rows = json.loads(Path(out).read_text())["rows"]
    assert {(r["server"], r["encoding"]) for r in rows} == {(peer.PEER, "json")} | {
        (f"sparsegate-{density}{suffix}", encoding) for density in ("10", "100")
        for suffix in ("", "-bf16") for encoding in ("json", "binary")}
    assert all(r["p50_ms"] > 0 and r["requests"] == 2 for r in rows)
