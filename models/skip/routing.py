"""Every line the skipping engines route by, each with why it sits there and the command that
measures it. Fractions are of a gated layer's blocks; sizes are per batch.

The CPU figures come from `python -m benchmarks.skip --device cpu` (2-core AMD EPYC), the GPU
ones from `python -m benchmarks.skip --device cuda` and `python -m benchmarks.cuda_tune`
(H100/H200), the ONNX ones from `python -m benchmarks.onnx_cases`; docs/performance.md holds
the current tables.
"""

# --- CPU (models.skip.cpu) ----------------------------------------------------------------
# Without the C kernels (no compiler), a lone example reads only its blocks' weights until
# nearly all are on: memory-bound, so skipping pays even at half of the blocks; it computes
# them all from three quarters. With them, no example is routed dense (`dense_fraction`).
DENSE_FROM_SINGLE = 0.75
# Without the C kernels, a few rows per block run in numpy far below a large product's rate:
# examples of a batch with this many blocks on run as one dense product instead.
DENSE_FROM_BATCH = 0.4
# Before a gated layer, an example of a batch with this many blocks on computes them all, so
# the next layer reads its whole row with the whole-row kernel (faster than per-tile then).
WHOLE_BEFORE_GATED_FROM = 0.75
# Multiply-adds from which one C grouped product is split over the kernels' thread pool
# (models/skip/csrc/thread_pool.h): a lone example's product of 65 K multiply-adds took as
# long on two threads as on one, its 460 K (7 of 64 blocks of 64 units) ran 1.35-1.53x faster
# (`python -m benchmarks.kernel_threads`).
NATIVE_THREADS_FROM_MACS = 200_000
# Multiply-adds from which a gater's first product runs in the C kernels, split over their
# threads by rows, rather than in numpy on one thread: below it numpy's small products win
# (the kernels' call costs ~10 us more), above it the kernels do, 1.3x at 1 M and 2x at 16 M
# (`python -m benchmarks.gater_products`).
GATER_NATIVE_FROM_MACS = 1_000_000
# A batch's gated layers with every gate on run as dense products where, timed on the first
# such batch of its size range (DENSE_PROBE_CALLS rounds, each timing a forward each way after
# an untimed one the same way), the dense forward's fastest is under DENSE_PROBE_MARGIN of the
# kernels' (`models.skip.cpu._AllOn`). No head start for the kernels: where the two come within
# a few percent, the kernels are the way a burst of load elsewhere slows the more
# (docs/history/all-on-probe-margin/).
DENSE_PROBE_CALLS = 6
DENSE_PROBE_MARGIN = 1.0
# A size range is measured again after this many batches with a layer all on, then its square,
# and so on, each way's fastest kept over every measurement: on a shared machine a burst of load
# through the first measurement can pick the slower way, and would otherwise keep it for good.
# Each measurement runs 4 x DENSE_PROBE_CALLS forwards; taken at the first such batch and after
# the 16th, 256th and 4096th, they add 2.3 % to the first 4096 forwards, and ever less after.
DENSE_REPROBE_GROWTH = 16
# Multiply-adds from which a dense product of two or more rows runs in torch on all its
# threads rather than in numpy on the calling one (a single row always stays in numpy).
TORCH_DENSE_FROM_MACS = 8_000_000
# Mean multiply-adds per numpy grouped product from which they are spread over threads (each
# hands the GIL back and forth around its BLAS call).
PARALLEL_FROM_MACS = 2_000_000

# --- CUDA (models.skip.cuda) --------------------------------------------------------------
# Up to this batch a gated layer runs as per-example GEMV kernels over the blocks on.
GEMV_MAX_BATCH = 4
# Grouped path: an example computes every block from this fraction on (its blocks' tiles cost
# more than the dense row past it).
GROUPED_DENSE_FROM = 1.0 / 3.0
# From this batch an uncaptured forward may route the whole batch dense when its mean density
# passes BATCH_DENSE_FROM (cuBLAS beats the grouped kernels on dense-ish large batches).
BATCH_ROUTE_MIN_BATCH = 64
BATCH_DENSE_FROM = 0.25
# A dense layer with at most this many weights runs as a row GEMV kernel, not through cuBLAS.
SMALL_DENSE_WEIGHTS = 1 << 16

# --- ONNX graph (models.skip.onnx_export) ---------------------------------------------------
# The graph gathers the batch's union of blocks on; past this fraction the Gather copies cost
# more than the rows they save and an If takes the dense masked product.
DENSE_FALLBACK_FRACTION = 0.3
# From this batch, while at most GROUPED_MAX_FRACTION of the first layer's (example, block)
# pairs are on, a grouped branch computes each example's own blocks (the union is then
# nearly every block). Forced on the layer and the `blocks` model, it beat both other paths
# from batch 32 at 5-20 % of pairs on, lost at batches 8-16 at every density, and at 30 %
# won or lost by a few percent depending on the batch; from 40 % it lost
# (`python -m benchmarks.onnx_grouped_crossover`).
GROUPED_FROM_BATCH = 32
GROUPED_MAX_FRACTION = 0.25
# The same for a graph whose grouped branch runs on sparsegate's onnxruntime operators
# (`export_onnx(custom_ops=True)`): they copy and pad nothing, so the branch runs at every batch
# size and density (`python -m benchmarks.onnx_grouped_crossover --custom-ops`).
OPERATORS_GROUPED_FROM_BATCH = 1
OPERATORS_GROUPED_MAX_FRACTION = 1.0
