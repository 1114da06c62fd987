"""The C grouped-product kernels equal numpy's products, and the skipping forward that uses them
equals the dense masked forward. Tolerance: 1e-4 relative, 1e-4 absolute (float32 sums of up to
1024 terms in a different order). Skipped where no C compiler builds them.

The products run with float32 and with bfloat16 panels; in bfloat16 the reference is the same
product over the weights rounded to bfloat16, which is what the kernels must compute exactly
(up to summation order): the rounding is the export's, not the kernels'."""

import time

import numpy as np
import pytest
import torch

from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from models.skip import c_kernels as native_kernels
from models.skip.cpu import SkipNetwork
from models.skip.routing import (
    DENSE_PROBE_CALLS,
    DENSE_PROBE_MARGIN,
    DENSE_REPROBE_GROWTH,
)

from .kernel_sets import KERNEL_SETS, kernel_set, kernels  # noqa: F401 (the fixture)
from .polling import eventually

pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")


@pytest.fixture(params=native_kernels.PRECISIONS)
def precision(request):
    return request.param


def packed(weights, precision):
    """The weights as the kernels take them in `precision`, and the float32 weights they must
    compute with (rounded to bfloat16 where the panels are)."""
    if precision == "float32":
        return weights, weights
    panels = kernels.pack(weights, precision)
    return panels, panels.unpack()


def random_pairs(rng, batch, blocks, density):
    on = rng.random((batch, blocks)) < density
    block_of, examples = np.nonzero(on.T)
    spans, start = [], 0
    for block, n in enumerate(np.bincount(block_of, minlength=blocks).tolist()):
        if n:
            spans.append((block, start, start + n))
            start += n
    return block_of, examples.astype(np.int64), np.array(spans, dtype=np.int64).reshape(-1, 3)


@pytest.mark.parametrize("batch, density", [(1, 0.3), (7, 0.5), (33, 0.2), (20, 1.0)])
@pytest.mark.parametrize("s", [64, 128, 192, 256])  # every block size is a multiple of 64
def test_kernels_equal_the_per_pair_products(batch, density, s, precision):
    rng = np.random.default_rng(batch)
    blocks, d, n = 5, 96, 128
    block_of, examples, spans = random_pairs(rng, batch, blocks, density)
    x = rng.standard_normal((batch, d), dtype=np.float32)
    panels, w_in = packed(rng.standard_normal((blocks, d, s), dtype=np.float32), precision)
    got = kernels.rows_times_blocks(x, examples, panels, spans,
                                    np.empty((examples.size, s), np.float32))
    for threads in (2, 3):  # spans split over threads write the same rows
        np.testing.assert_array_equal(kernels.rows_times_blocks(
            x, examples, panels, spans, np.empty((examples.size, s), np.float32), threads), got)
    want = np.stack([x[e] @ w_in[b] for e, b in zip(examples, block_of, strict=True)]) \
        if examples.size else got
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    h = rng.standard_normal((examples.size, s), dtype=np.float32)
    panels, w_out = packed(rng.standard_normal((blocks, s, n), dtype=np.float32), precision)
    out = np.ones((batch, n), np.float32)
    kernels.accumulate_blocks_times_rows(h, examples, panels, spans, out)
    for threads in (2, 3):  # output columns split over threads (128 = 2 tiles: one idle)
        split = np.ones((batch, n), np.float32)
        kernels.accumulate_blocks_times_rows(h, examples, panels, spans, split, threads)
        np.testing.assert_array_equal(split, out)
    want = np.ones((batch, n), np.float32)
    for p, (e, b) in enumerate(zip(examples, block_of, strict=True)):
        want[e] += h[p] @ w_out[b]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch, density", [(1, 0.3), (7, 0.5), (33, 0.2), (20, 1.0)])
@pytest.mark.parametrize("s", [64, 128, 192, 256])
@pytest.mark.parametrize("n", [1, 3, 10, 100])
def test_a_reader_narrower_than_the_panels_sums_every_pair(batch, density, s, n):
    rng = np.random.default_rng(200 + batch)
    blocks = 5
    block_of, examples, spans = random_pairs(rng, batch, blocks, density)
    h = rng.standard_normal((examples.size, s), dtype=np.float32)
    w = rng.standard_normal((blocks, s, n), dtype=np.float32)
    out = np.ones((batch, n), np.float32)
    kernels.accumulate_narrow(h, examples, np.ascontiguousarray(w.transpose(0, 2, 1)), spans,
                              out)
    want = np.ones((batch, n), np.float32)
    for p, (e, b) in enumerate(zip(examples, block_of, strict=True)):
        want[e] += h[p] @ w[b]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="columns"):  # (K, S, N) is not the layout it reads
        kernels.accumulate_narrow(h, examples, np.ones((blocks, s, n + 1), np.float32), spans,
                                  out)


@pytest.mark.parametrize("batch, density", [(1, 0.3), (6, 0.5), (17, 0.2), (9, 1.0)])
@pytest.mark.parametrize("s", [64, 128, 192])
def test_tiles_read_only_the_input_blocks_each_example_reads(batch, density, s, precision,
                                                            prefetches):
    rng = np.random.default_rng(100 + batch)
    blocks, in_blocks, s_in = 5, 7, 32
    block_of, examples, spans = random_pairs(rng, batch, blocks, density)
    reads = (rng.random((batch, in_blocks)) < 0.4).astype(np.uint8)
    x = rng.standard_normal((batch, in_blocks * s_in), dtype=np.float32)
    panels, w = packed(rng.standard_normal((blocks, in_blocks * s_in, s), dtype=np.float32),
                       precision)
    got = kernels.tiles_from_blocks(x, reads, examples, panels, spans,
                                    np.full((examples.size, s), np.nan, np.float32))
    for threads in (2, 3):
        np.testing.assert_array_equal(kernels.tiles_from_blocks(
            x, reads, examples, panels, spans, np.empty((examples.size, s), np.float32),
            threads), got)
    # Input blocks an example does not read must not count, whatever they hold.
    masked = x * np.repeat(reads, s_in, axis=1)
    want = np.stack([masked[e] @ w[b] for e, b in zip(examples, block_of, strict=True)]) \
        if examples.size else got
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="reads"):
        kernels.tiles_from_blocks(x, reads.astype(bool), examples, w, spans, got)


# Every setting of how the kernels prefetch in each way: none, the most, and the tiles into L2.
PREFETCH_COMBINATIONS = {"plain": {"one_row": "off", "tile": "off"},
                         "prefetch-l1": {"one_row": "on", "tile": "l1"},
                         "prefetch-l2": {"one_row": "on", "tile": "l2"}}


@pytest.fixture(params=sorted(PREFETCH_COMBINATIONS))
def prefetches(request):
    """Runs a test with the kernels prefetching in each way of `PREFETCH_COMBINATIONS` (the
    settings measured at load restored after): every way must compute the same products."""
    measured = {name: kernels.prefetch(name) for name in native_kernels.PREFETCH_SETTINGS}
    for name, way in PREFETCH_COMBINATIONS[request.param].items():
        kernels.set_prefetch(name, way)
    try:
        yield request.param
    finally:
        for name, way in measured.items():
            kernels.set_prefetch(name, way)


@pytest.mark.parametrize("d", [96, 97])
def test_every_row_group_size_and_remainder(precision, prefetches, d):
    # Blocks with 1 to 26 pairs each: the kernels cut a block's pairs into groups of up to 6
    # rows (8 in the AVX-512 set), as even as possible, each with its own micro-kernel shape;
    # every group size and every split (26 = 7 + 7 + 6 + 6 in eights) must give the same
    # products, one-row groups prefetching or read panel by panel and the tiles kernel
    # prefetching its next tile in each way (an odd input width leaves the last row of a panel
    # without its pair of rows).
    rng = np.random.default_rng(7)
    counts = np.arange(1, 27)
    blocks, batch, s, n = counts.size, 32, 64, 128
    ends = np.cumsum(counts)
    spans = np.stack([np.arange(blocks), ends - counts, ends], axis=1).astype(np.int64)
    block_of = np.repeat(np.arange(blocks), counts)
    # Distinct examples within a block, as the engine's pair lists have them.
    examples = np.concatenate([rng.permutation(batch)[:c] for c in counts]).astype(np.int64)
    x = rng.standard_normal((batch, d), dtype=np.float32)
    panels, w_in = packed(rng.standard_normal((blocks, d, s), dtype=np.float32), precision)
    got = kernels.rows_times_blocks(x, examples, panels, spans,
                                    np.empty((examples.size, s), np.float32))
    want = np.einsum("pd,pds->ps", x[examples], w_in[block_of])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    h = rng.standard_normal((examples.size, s), dtype=np.float32)
    panels, w_out = packed(rng.standard_normal((blocks, s, n), dtype=np.float32), precision)
    out = np.zeros((batch, n), np.float32)
    kernels.accumulate_blocks_times_rows(h, examples, panels, spans, out)
    want = np.zeros((batch, n), np.float32)
    np.add.at(want, examples, np.einsum("ps,psn->pn", h, w_out[block_of]))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)

    in_blocks, s_in = 3, 32
    reads = (rng.random((batch, in_blocks)) < 0.7).astype(np.uint8)
    x = rng.standard_normal((batch, in_blocks * s_in), dtype=np.float32)
    panels, w = packed(rng.standard_normal((blocks, in_blocks * s_in, s), dtype=np.float32),
                       precision)
    got = kernels.tiles_from_blocks(x, reads, examples, panels, spans,
                                    np.empty((examples.size, s), np.float32))
    masked = x * np.repeat(reads, s_in, axis=1)
    want = np.einsum("pd,pds->ps", masked[examples], w[block_of])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_kernels_refuse_arrays_they_cannot_read():
    x = np.zeros((2, 64), np.float64)
    with pytest.raises(ValueError, match="float32"):
        kernels.rows_times_blocks(x, np.zeros(1, np.int64), np.zeros((1, 64, 64), np.float32),
                                  np.zeros((1, 3), np.int64), np.zeros((1, 64), np.float32))
    assert native_kernels.supports(128) and not native_kernels.supports(10)


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_the_skipping_forward_with_native_kernels_equals_dense_masked(batch, prefetches):
    torch.manual_seed(batch)
    config = GatedNetworkConfig.from_dict({
        "input_size": 48, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": 6, "block_size": 64, "gater_hidden": 8, "activation": "relu"},
            {"blocks": 128, "block_size": 1, "activation": "tanh", "gated": False}]})
    model = GatedNetwork(config).eval()
    model.layers[0].threshold.fill_(0.0)
    with torch.no_grad():
        model.layers[0].gater.out.weight.mul_(4.0)
    x = torch.randn(batch, 48)
    want = model(x).logits
    native = SkipNetwork(model, dense_from=2.0)
    assert native.native is not None
    native._batch = None  # a batch's products from Python (tests/models/test_batch_program.py)
    numpy_only = SkipNetwork(model, dense_from=2.0, native=False)
    calls = []
    for name in ("rows_times_blocks", "accumulate_blocks_times_rows"):
        kernel = getattr(native.native, name)
        setattr(native.native, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    lone = native._lone.run
    native._lone.run = lambda *a: calls.append("lone forward") or lone(*a)
    try:
        torch.testing.assert_close(native(x).logits, want, rtol=1e-4, atol=1e-4)
    finally:
        for name in ("rows_times_blocks", "accumulate_blocks_times_rows"):
            delattr(native.native, name)
        del native._lone.run
    # Both products run in C at any batch, one row per block included: a lone example's
    # inside its one C forward.
    assert calls == (["lone forward"] if batch == 1
                     else ["rows_times_blocks", "accumulate_blocks_times_rows"])
    torch.testing.assert_close(numpy_only(x).logits, want, rtol=1e-4, atol=1e-4)
    assert 0 < int(native(x).active_blocks.sum()) < 6 * batch


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_a_class_read_out_of_a_gated_layer_sums_its_pairs_in_c(batch):
    torch.manual_seed(batch)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 48, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": 6, "block_size": 64, "gater_hidden": 8, "activation": "relu"}]})).eval()
    x = torch.randn(batch, 48)
    with torch.no_grad():  # about half of the gates on, the line midway between two logits
        logits = model.layers[0].gater(x).flatten().sort().values
        middle = logits.numel() // 2
        model.layers[0].threshold.fill_(float(logits[middle - 1:middle + 1].mean()))
    engine = SkipNetwork(model, dense_from=2.0)
    engine._batch = None  # a batch's products from Python (tests/models/test_batch_program.py)
    calls = []
    narrow, lone = engine.native.accumulate_narrow, engine._lone.run
    engine.native.accumulate_narrow = lambda *a: calls.append("narrow") or narrow(*a)
    engine._lone.run = lambda *a: calls.append("lone forward") or lone(*a)
    try:
        got = engine(x)
    finally:
        del engine.native.accumulate_narrow, engine._lone.run
    torch.testing.assert_close(got.logits, model(x).logits, rtol=1e-4, atol=1e-4)
    assert calls == (["lone forward"] if batch == 1 else ["narrow"])
    assert 0 < int(got.active_blocks.sum()) < 6 * batch


@pytest.mark.parametrize("env", [{"SPARSEGATE_NATIVE": "0"}, {"CC": "/bin/false"}],
                         ids=["switched-off", "compiler-fails"])
def test_without_kernels_the_engine_falls_back_to_numpy(env, monkeypatch, tmp_path):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SPARSEGATE_CACHE", str(tmp_path))  # nothing built yet: must compile
    native_kernels.load.cache_clear()
    try:
        assert native_kernels.load() is None
        model = GatedNetwork(GatedNetworkConfig.from_dict({
            "input_size": 8, "num_classes": 2, "layers": [
                {"blocks": 2, "block_size": 64, "gater_hidden": 0, "activation": "relu"}]}))
        assert SkipNetwork(model).native is None
    finally:
        native_kernels.load.cache_clear()


@pytest.mark.parametrize("dense_from", [2.0, 0.5, None], ids=["never", "half", "default"])
@pytest.mark.parametrize("batch", [1, 6, 30])
def test_a_gated_layer_after_a_gated_layer_reads_only_computed_input_blocks(batch,
                                                                            dense_from):
    torch.manual_seed(batch)
    config = GatedNetworkConfig.from_dict({
        "input_size": 20, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": 6, "block_size": 16, "gater_hidden": 8, "activation": "relu"},
            {"blocks": 5, "block_size": 64, "gater_hidden": 0, "activation": "tanh"}]})
    model = GatedNetwork(config).eval()
    for layer in model.gated_layers:
        layer.threshold.fill_(0.0)
        with torch.no_grad():
            layer.gater.out.weight.mul_(4.0)
    x = torch.randn(batch, 20)
    reference = model(x)
    first_on = reference.traces[0].gates != 0  # (B, 6)
    engine = SkipNetwork(model, dense_from=dense_from)
    seen = []
    tiles = engine.native.tiles_from_blocks
    engine.native.tiles_from_blocks = lambda x_, reads, *a: seen.append(reads.copy()) or tiles(
        x_, reads, *a)
    try:
        out = engine(x)
    finally:
        del engine.native.tiles_from_blocks
    torch.testing.assert_close(out.logits, reference.logits, rtol=1e-4, atol=1e-4)
    routed_dense = out.computed_blocks[:, 0] == 6
    if not routed_dense.all():
        # Each example reads the first layer's blocks it computed: its own blocks on, or all.
        (reads,) = seen
        want = np.where(routed_dense[:, None].numpy(), True, first_on.numpy())
        np.testing.assert_array_equal(reads.astype(bool), want)
    numpy_only = SkipNetwork(model, dense_from=dense_from, native=False)(x)
    torch.testing.assert_close(numpy_only.logits, reference.logits, rtol=1e-4, atol=1e-4)
    assert out.reports(model) == numpy_only.reports(model)


def test_batches_stay_sparse_by_default_where_the_kernels_run_the_blocks():
    """With every gate on, a batch and a lone example still run their blocks grouped (none
    routed dense), equal to the dense masked forward, and report every block computed; without
    the kernels both keep the dense route."""
    model = every_gate_on_network(3)
    engine, numpy_only = SkipNetwork(model), SkipNetwork(model, native=False)
    assert engine.dense_fraction(1) == engine.dense_fraction(256) == float("inf")
    assert numpy_only.dense_fraction(1) == 0.75
    assert numpy_only.dense_fraction(2) == numpy_only.dense_fraction(256) <= 1.0
    for batch in (12, 1):
        x = torch.randn(batch, 48, generator=torch.Generator().manual_seed(4))
        calls = []
        kernel, lone = engine.native.rows_times_blocks, engine._lone.run
        engine.native.rows_times_blocks = lambda *a: calls.append(a) or kernel(*a)  # noqa: B023
        engine._lone.run = lambda *a: calls.append(a) or lone(*a)  # noqa: B023
        try:
            out = engine(x)
        finally:
            del engine.native.rows_times_blocks, engine._lone.run
        # the grouped route ran (for a lone example, in its C forward), although every block
        # is on
        assert calls
        torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)
        assert out.active_blocks.tolist() == out.computed_blocks.tolist() == [[4, 3]] * batch


def two_gated_layers(first_blocks: int, seed: int) -> GatedNetwork:
    """32 inputs -> first_blocks x 64 -> 4 x 64 -> 3: a gated layer read by a gated layer,
    blocks the C kernels run."""
    torch.manual_seed(seed)
    return GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 32, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": first_blocks, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
            {"blocks": 4, "block_size": 64, "gater_hidden": 8, "activation": "relu"}]})).eval()


def test_a_gated_layer_reads_whole_inputs_by_rows_and_part_read_ones_by_tiles():
    """After a gated layer, examples that computed every block there run the next gated layer
    as whole rows, the others tile by tile; in one batch both, equal to the dense masked
    forward."""
    model = two_gated_layers(first_blocks=3, seed=5)
    first, second = model.gated_layers
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():  # half the examples get every first-layer gate on, half about half
        first.gater.out.bias.fill_(0.0)
        first.gater.out.weight.mul_(6.0)
        x[:20] = x[:20].abs()
        first.gater.out.weight.copy_(first.gater.out.weight.abs())
        x[20:] = x[20:] * torch.where(torch.arange(32) % 2 == 0, 1.0, -1.0)
    first.threshold.fill_(0.0)
    second.threshold.fill_(-1e9)  # every second-layer gate on: every example has pairs
    engine = SkipNetwork(model)
    engine._batch = None  # the Python path's products (the C forward's: test_batch_program)
    calls = []
    for name in ("rows_times_blocks", "tiles_from_blocks"):
        kernel = getattr(engine.native, name)
        setattr(engine.native, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    try:
        out = engine(x)
    finally:
        for name in ("rows_times_blocks", "tiles_from_blocks"):
            delattr(engine.native, name)
    active = out.active_blocks[:, 0]
    assert (active == 3).any() and (active < 3).any()  # both kinds of reader in the batch
    assert calls.count("tiles_from_blocks") == 1 and calls.count("rows_times_blocks") == 2
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)


def test_before_a_gated_layer_examples_with_most_blocks_on_compute_them_all():
    """In a batch, an example with at least WHOLE_BEFORE_GATED_FROM of a gated layer's blocks
    on computes all of them (as pairs, in C) when the next layer is gated, which then reads its
    whole row; the reports count every block it computed, and the output is unchanged."""
    from models.compute import compute_reports
    from models.skip.cpu import WHOLE_BEFORE_GATED_FROM

    model = two_gated_layers(first_blocks=8, seed=7)
    first, second = model.gated_layers
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        logits = first.gater(x)
        first.threshold.fill_(float(logits.median()))  # about half the gates on, spread
    second.threshold.fill_(-1e9)
    engine = SkipNetwork(model)
    out = engine(x)
    active, computed = out.active_blocks[:, 0], out.computed_blocks[:, 0]
    most = active >= WHOLE_BEFORE_GATED_FROM * 8
    assert most.any() and (~most).any() and (active[most] < 8).any()
    assert computed[most].tolist() == [8] * int(most.sum())
    assert torch.equal(computed[~most], active[~most])
    assert out.reports(model) == compute_reports(
        model.config, out.active_blocks, out.computed_blocks,
        gaters_read_all_inputs=out.gaters_read_all_inputs)
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)


def test_panels_pack_each_matrix_in_column_panels():
    w = np.arange(2 * 3 * 128, dtype=np.float32).reshape(2, 3, 128)
    panels = native_kernels.Panels.pack(w, 16)
    assert panels.shape == (2, 3, 128) and panels.array.shape == (2, 8, 3, 16)
    np.testing.assert_array_equal(panels.array[1, 5, 2], w[1, 2, 80:96])
    with pytest.raises(ValueError, match="multiple of 64"):
        native_kernels.Panels.pack(np.zeros((1, 3, 96), np.float32), 16)


def test_bfloat16_panels_round_to_nearest_even_and_unpack_exactly():
    # 1 + 2**-8 lies halfway between two bfloat16 numbers (1 and 1 + 2**-7): it rounds to the
    # even one, 1; 1 + 3 * 2**-8 rounds up to 1 + 2**-6. An exact bfloat16 value stays.
    w = np.zeros((1, 2, 64), np.float32)
    w[0, 0, :3] = [1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -0.375]
    panels = native_kernels.Panels.pack(w, 16, "bfloat16")
    assert panels.array.dtype == np.uint16 and panels.array.nbytes == w.nbytes // 2
    np.testing.assert_array_equal(panels.unpack()[0, 0, :3], [1.0, 1 + 2.0 ** -6, -0.375])
    again = native_kernels.Panels.pack(panels.unpack(), 16, "bfloat16")
    np.testing.assert_array_equal(again.array, panels.array)
    with pytest.raises(ValueError, match="precision"):
        native_kernels.Panels.pack(w, 16, "float16")
    bits = kernels.pack(w, "bfloat16").array.view(np.int16)
    forged = native_kernels.Panels(bits, panels.shape, kernels.panel_width, "bfloat16")
    with pytest.raises(ValueError, match="stored as their precision"):
        kernels.rows_times_blocks(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), forged,
                                  np.array([[0, 0, 1]], np.int64), np.zeros((1, 64), np.float32))


def test_weights_packed_for_another_set_are_repacked():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32), dtype=np.float32)
    w = rng.standard_normal((1, 32, 64), dtype=np.float32)
    other = native_kernels.Panels.pack(w, 64 if kernels.panel_width != 64 else 32)
    spans, examples = np.array([[0, 0, 2]], np.int64), np.arange(2, dtype=np.int64)
    got = kernels.rows_times_blocks(x, examples, other, spans, np.empty((2, 64), np.float32))
    np.testing.assert_allclose(got, x @ w[0], rtol=1e-4, atol=1e-4)


def test_a_kernel_set_the_cpu_cannot_run_is_refused():
    with pytest.raises(ValueError, match="cannot run on this CPU"):
        kernels.choose("sse9")
    assert "generic" in kernels.kernel_sets


def test_every_kernel_source_ships_in_the_package():
    # An installed package without one of them would fail to build the kernels and fall back
    # to numpy without a word.
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["models.skip"]
    for source in native_kernels.SOURCES:
        shipped = source.relative_to(root / "models" / "skip").as_posix()
        assert any(fnmatch.fnmatch(shipped, p) for p in patterns), shipped


@pytest.mark.parametrize("batch", [1, 6, 31])
def test_bfloat16_main_weights_run_in_bfloat16_panels_and_equal_the_dense_forward(batch):
    # A gated layer read by a gated layer read by a wide dense layer: every kernel that takes
    # panels (rows, tiles, columns) runs on bfloat16 panels, and the result is the rounded
    # model's own dense masked forward (the rounding is the model's, the kernels add none).
    from models.block_weights import round_main_weights

    torch.manual_seed(batch)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 40, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": 6, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
            {"blocks": 4, "block_size": 64, "gater_hidden": 8, "activation": "relu"},
            {"blocks": 2, "block_size": 64, "activation": "tanh", "gated": False}]})).eval()
    with torch.no_grad():  # biases away from 0, so the gates of layer 2 see a signal
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.5)
    model.set_thresholds([0.0, 0.0])
    x = torch.randn(batch, 40)
    float32 = SkipNetwork(model)(x).logits
    round_main_weights(model, "bfloat16")
    engine = SkipNetwork(model)
    panels = [panel for stage in engine._stages
              for panel in (stage.linear.out_panels, stage.linear.in_panels) if panel is not None]
    assert len(panels) == 3 and all(p.precision == "bfloat16" for p in panels)
    out = engine(x)
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)
    assert not torch.equal(out.logits, float32)  # the rounded weights did change the answer
    active = out.active_blocks.float()
    assert 0 < active[:, 0].mean() < 6 and 0 < active[:, 1].mean() < 4


def test_expect_forward_keeps_the_pool_awake_until_the_forward_ends():
    """A server tells the engine a forward is coming (`SkipNetwork.expect_forward`): the
    kernels' workers spin until then, and the forward lets them sleep again at its end."""
    torch.manual_seed(0)
    config = GatedNetworkConfig.from_dict({
        "input_size": 48, "num_classes": 3, "target_density": 0.5, "layers": [
            {"blocks": 8, "block_size": 64, "activation": "relu"}]})
    model = GatedNetwork(config).eval()
    engine = SkipNetwork(model, threads=2, dense_from=2.0)
    x = torch.randn(64, 48)
    native_kernels.load().keep_awake(0)
    engine(x)  # the pool has a worker; idle, it sleeps
    assert eventually(lambda: engine.native.sleeping_workers() >= 1)
    engine.expect_forward(30.0)
    assert eventually(lambda: engine.native.sleeping_workers() == 0)
    torch.testing.assert_close(engine(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)
    assert eventually(lambda: engine.native.sleeping_workers() >= 1)  # not held 30 s
    SkipNetwork(model, threads=1).expect_forward(30.0)  # one thread: no pool to hold
    time.sleep(0.05)
    assert engine.native.sleeping_workers() >= 1


def every_gate_on_network(seed: int) -> GatedNetwork:
    """48 -> 4 x 64 -> 3 x 64 -> 64 dense -> 3, every gate on."""
    torch.manual_seed(seed)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 48, "num_classes": 3, "target_density": 0.3, "layers": [
            {"blocks": 4, "block_size": 64, "gater_hidden": 8, "activation": "relu"},
            {"blocks": 3, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
            {"blocks": 64, "block_size": 1, "activation": "tanh", "gated": False}]})).eval()
    for layer in model.gated_layers:
        layer.threshold.fill_(-1e9)
    return model


@pytest.mark.parametrize("dense_pays", [True, False])
def test_a_batch_with_every_gate_on_runs_dense_where_measured_faster(dense_pays, monkeypatch):
    """The first batch of a size range with a layer all on is timed both ways; the way
    measured faster runs that range from then on: dense products (no kernel call), or the
    kernels' blocks. Either way the dense masked forward's logits and every block counted."""
    model = every_gate_on_network(8)
    engine = SkipNetwork(model)
    probes = []
    monkeypatch.setattr(engine, "_dense_pays",
                        lambda x, as_torch: probes.append(x.shape[0]) or dense_pays)
    calls = []
    kernel, batch_run = engine.native.rows_times_blocks, engine._batch.run
    engine.native.rows_times_blocks = lambda *a: calls.append(a) or kernel(*a)

    def in_c(*args, **kwargs):  # the batch's forward in C, which calls the kernels inside
        out = batch_run(*args, **kwargs)
        if out is not None:
            calls.append(args)
        return out

    engine._batch.run = in_c
    try:
        for batch in (5, 6, 7, 8, 3, 9):  # size ranges 4-7, 8-15 and 2-3
            calls.clear()
            x = torch.randn(batch, 48, generator=torch.Generator().manual_seed(batch))
            out = engine(x)
            torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)
            assert out.active_blocks.tolist() == out.computed_blocks.tolist() == [[4, 3]] * batch
            first_of_range = batch in (5, 8, 3)  # runs with the kernels, then is timed
            assert bool(calls) == (first_of_range or not dense_pays), batch
    finally:
        del engine.native.rows_times_blocks, engine._batch.run
    assert probes == [5, 8, 3]


@pytest.mark.parametrize("dense_pays", [True, False])
def test_a_size_range_is_measured_again_after_16_then_256_all_on_batches(dense_pays,
                                                                        monkeypatch):
    """Whichever way was chosen (the dense route counts its batches itself, the kernels' C
    forward by its blocks on), the route of a size range is measured again after
    DENSE_REPROBE_GROWTH batches with a layer all on, then its square; a batch not all on
    neither counts nor is measured."""
    engine = SkipNetwork(every_gate_on_network(3))
    probes = []
    monkeypatch.setattr(engine, "_dense_pays",
                        lambda x, as_torch: probes.append(len(probes)) or dense_pays)
    x = torch.randn(6, 48, generator=torch.Generator().manual_seed(2))
    seen = []
    for _ in range(1 + DENSE_REPROBE_GROWTH ** 2):
        engine(x)
        seen.append(len(probes))
    # measured on the 1st batch, and on the one after the 16th and after the 256th
    assert [i + 1 for i in range(len(seen)) if seen[i] > (seen[i - 1] if i else 0)] == [
        1, DENSE_REPROBE_GROWTH + 1, DENSE_REPROBE_GROWTH ** 2 + 1]
    for layer in engine.model.gated_layers:  # every gate off from now on: no batch counts
        layer.threshold.fill_(1e9)
    for _ in range(2 * DENSE_REPROBE_GROWTH ** 2):
        engine(x)
    assert len(probes) == 3


def test_each_way_is_judged_by_its_fastest_over_every_measurement():
    """A measurement in which load elsewhere slowed the dense way is outvoted by the next: the
    fastest forward of each way is kept over all of them, per size range."""
    engine = SkipNetwork(every_gate_on_network(4))
    assert engine._judge(3, {True: [3.0, 3.5], False: [2.0, 2.2]}) is False  # dense slowed
    assert engine._judge(3, {True: [1.0, 1.1], False: [2.1, 2.0]}) is True  # at its speed
    assert engine._judge(3, {True: [5.0], False: [5.0]}) is True  # a slow one changes nothing
    assert engine._probe_fastest[3] == {True: 1.0, False: 2.0}
    # the dense way must beat the kernels by the margin (a tie keeps the kernels); another
    # size range is judged on its own
    assert engine._judge(4, {True: [1.0], False: [1.0 / DENSE_PROBE_MARGIN * 0.999]}) is False
    assert engine._judge(4, {True: [0.9], False: [1.0]}) is True


def test_the_measurement_times_both_routes_and_a_batch_not_all_on_is_never_timed(monkeypatch):
    model = every_gate_on_network(9)
    engine = SkipNetwork(model)
    x = torch.randn(6, 48, generator=torch.Generator().manual_seed(1))
    routes = []
    real = engine._layers
    monkeypatch.setattr(engine, "_layers",
                        lambda x, as_torch, all_on: routes.append(all_on.dense)
                        or real(x, as_torch, all_on))
    graph = engine._all_on_graph.run
    monkeypatch.setattr(engine._all_on_graph, "run",
                        lambda x: routes.append("graph") or graph(x))
    engine(x)
    # the forward itself, then alternating pairs of dense (every gate on: one onnxruntime run
    # of the dense network, models.skip.all_on_graph) and kernel forwards
    assert routes == [False] + ["graph", "graph", False, False] * DENSE_PROBE_CALLS
    engine._all_on_graph = None  # without onnxruntime: the dense products in torch
    engine._dense_when_all_on.clear()
    routes.clear()
    engine(x)
    assert routes == [False] + [True, True, False, False] * DENSE_PROBE_CALLS
    assert set(engine._dense_when_all_on) == {x.shape[0].bit_length()}
    chosen = "dense" if engine._dense_when_all_on[x.shape[0].bit_length()] else "kernels"
    assert engine.all_on_route(6) == engine.all_on_route(7) == chosen  # its size range
    assert engine.all_on_route(8) is None and engine.all_on_route(1) is None
    for layer in model.gated_layers:  # every gate off: nothing to time
        layer.threshold.fill_(1e9)
    routes.clear()
    engine = SkipNetwork(model)
    monkeypatch.setattr(engine, "_layers",
                        lambda x, as_torch, all_on: routes.append(all_on.dense)
                        or engine.__class__._layers(engine, x, as_torch, all_on))
    engine(x)
    assert routes == [] and engine._dense_when_all_on == {}  # all of it in the C forward
    engine._batch = None
    engine(x)
    assert routes == [False] and engine._dense_when_all_on == {}


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("words", [1, 7, 8, 9, 1000, 4096 + 3])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_read_through_folds_every_word_it_reads(words, threads, prefetch):
    # A share left unread, or a line of one, would leave its words out of the XOR: each word
    # in turn is changed, at the start, the end and where the shares meet.
    rng = np.random.default_rng(words * 10 + threads)
    array = rng.integers(0, 2 ** 63, words, dtype=np.uint64)
    assert kernels.read_through(array, threads, prefetch) == int(np.bitwise_xor.reduce(array))
    for i in {0, words - 1, *(words * s // threads for s in range(1, threads))}:
        changed = array.copy()
        changed[min(i, words - 1)] ^= np.uint64(1 << 40)
        assert (kernels.read_through(changed, threads, prefetch)
                != kernels.read_through(array, threads, prefetch))


def test_read_through_refuses_what_it_cannot_read_whole():
    with pytest.raises(ValueError, match="multiple of 8 bytes"):
        kernels.read_through(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.read_through(np.zeros((4, 4), np.float64)[:, ::2])


def test_weight_panels_are_the_main_paths_panels_in_forward_order():
    torch.manual_seed(0)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 24, "num_classes": 3, "layers": [
            {"blocks": 4, "block_size": 64, "gater_hidden": 8, "activation": "relu"},
            {"blocks": 128, "block_size": 1, "activation": "tanh", "gated": False}]})).eval()
    skip = SkipNetwork(model)
    gated, reader = skip.weight_panels()
    # (blocks, column panels, rows, panel width): the gated layer's 4 blocks of 24 x 64, and
    # the dense layer's 128 columns read by input block (4 blocks of 64 rows)
    width = kernels.panel_width
    assert gated.shape == (4, 64 // width, 24, width)
    assert reader.shape == (4, 128 // width, 64, width)
    assert gated.nbytes + reader.nbytes == 4 * (24 * 256 + 256 * 128)
