/* Whether the kernels' software prefetches pay on this CPU, measured when a library of these
 * kernels loads (the engine's, c_kernels.py, and the onnxruntime operators', ort_ops.c):
 *   - one_row_streams (block_kernels.c): a one-row group prefetching ahead as it streams a
 *     block's panels, or reading them panel by panel with the hardware's prefetchers alone;
 *   - tile_prefetches (block_kernels.c): tiles_from_blocks prefetching the next weight tile it
 *     will read, or leaving its jumps between tiles to the hardware.
 * Each has its variable, SPARSEGATE_ONE_ROW_PREFETCH and SPARSEGATE_TILE_PREFETCH: on or off
 * asks for one way; unset (or `measure`), both ways are timed on the calling thread alone
 * (split over the pool, a probe timed one core in some rounds and two in others, where a worker
 * just started shared its caller's core for a while: a comparison of two states, not of two
 * ways), on PROBE_BLOCKS blocks of PROBE_UNITS units over PROBE_INPUTS inputs, 4 MiB of
 * float32 panels per product (more than these machines' L2 caches hold, well within their L3,
 * as a served model's blocks are):
 *   - one row: a lone example's gated product and its reader's (8 MiB). On the AMD EPYC of
 *     docs/performance.md a lone example's layer with every block on ran 1.09-1.10x as fast
 *     without the prefetches (docs/history/one-row-prefetch-probe/), and faster again panel by
 *     panel (docs/history/one-row-panel-by-panel/); on the Intel Xeon the prefetches had made
 *     it 1.05x as fast (docs/history/stream-prefetch-every-group/);
 *   - tiles: a gated layer over a gated layer's output, the two products' panels read as one
 *     of twice the inputs (32 input blocks), one example per block, each reading about half of
 *     its input blocks, picked by a hash (so the tiles read jump by no fixed stride a hardware
 *     prefetcher could learn): 4 MiB in 16 KiB tiles. The `blocks` model, whose second gated layer runs this kernel,
 *     ran 1.05-1.08x as fast with the prefetches on the Intel Xeon
 *     (docs/history/next-tile-prefetch-l1/), and 1.01-1.11x as fast without them on the AMD
 *     EPYC (docs/history/tile-prefetch-probe/).
 * The ways run in alternating rounds, PROBE_CALLS timed calls each after an untimed one, so a
 * burst of load elsewhere lands on both; the prefetches are kept unless the way without them
 * took under PROBE_MARGIN of their time (medians). Only float32 panels are timed; bfloat16 ones
 * follow the same settings. */
#include <stdlib.h>

#define PROBE_BLOCKS 16
#define PROBE_UNITS 64
#define PROBE_INPUTS 1024
#define PROBE_ROUNDS 7
#define PROBE_CALLS 3
#define PROBE_MARGIN 0.97

static int probe_compare(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double probe_median(double *times, int n) {
    qsort(times, (size_t)n, sizeof *times, probe_compare);
    return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

/* The probes' memory: panels of two products (read as one, of twice the inputs, by the tiles
 * probe), an input row per block (of those inputs), a partial row per block, an output row;
 * the pairs' indices (one example per block, and the spans). */
typedef struct {
    float *panels, *x, *pairs, *out;
    uint8_t *reads;   /* (K, 2D / S): the input blocks each example reads (the tiles probe) */
    int64_t *zeros;   /* every pair's example 0 (the one-row probe) */
    int64_t *iota;    /* pair k's example k (the tiles probe) */
    int64_t *spans;   /* (K, 3): block k's pair k */
} probe_memory;

static int probe_alloc(probe_memory *m) {
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    const int64_t J = 2 * D / S, floats = 2 * K * D * S + 2 * K * D + K * S + D;
    m->panels = (float *)aligned_alloc(64, (size_t)floats * 4);
    m->reads = (uint8_t *)malloc((size_t)(K * J));
    m->zeros = (int64_t *)malloc((size_t)(5 * K) * 8);
    if (!m->panels || !m->reads || !m->zeros) {
        free(m->panels);
        free(m->reads);
        free(m->zeros);
        return -1;
    }
    /* Written, not left zero: untouched pages would all read one shared page of zeros. */
    for (int64_t i = 0; i < floats; ++i) m->panels[i] = 1e-3f;
    m->x = m->panels + 2 * K * D * S;
    m->pairs = m->x + 2 * K * D;
    m->out = m->pairs + K * S;
    m->iota = m->zeros + K;
    m->spans = m->iota + K;
    for (int64_t k = 0; k < K; ++k) {
        m->zeros[k] = 0, m->iota[k] = k;
        m->spans[3 * k] = k, m->spans[3 * k + 1] = k, m->spans[3 * k + 2] = k + 1;
        for (int64_t j = 0; j < J; ++j) /* a multiplicative hash's top bit: about half */
            m->reads[k * J + j] = (uint32_t)((k * J + j) * 2654435761u) >> 31;
    }
    return 0;
}

static void probe_free(probe_memory *m) {
    free(m->panels);
    free(m->reads);
    free(m->zeros);
}

static void probe_one_row_call(const probe_memory *m) {
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    const kernel_set *set = set_for(FLOAT32);
    set->rows(m->x, D, m->zeros, m->panels, S, m->spans, K, m->pairs);
    set->columns(m->pairs, S, m->zeros, m->panels + K * D * S, D, m->spans, K, m->out, 0, D);
}

static void probe_tiles_call(const probe_memory *m) {
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    set_for(FLOAT32)->tiles(m->x, S, m->reads, 2 * D / S, m->iota, m->panels, S, m->spans, K,
                            m->pairs);
}

/* Times `call` with `set(1)` (prefetching) and `set(0)` in alternating rounds; writes the two
 * medians (ms) and returns the faster way as above (1: prefetch), or -1 where its memory could
 * not be allocated. Leaves the setting at `kept`. */
static int probe_ways(void (*call)(const probe_memory *), int (*set)(int), int kept,
                      double *with_ms, double *without_ms) {
    probe_memory m;
    if (probe_alloc(&m)) return -1;
    double times[2][PROBE_ROUNDS * PROBE_CALLS]; /* ns */
    for (int round = 0; round < PROBE_ROUNDS; ++round)
        for (int turn = 0; turn < 2; ++turn) {
            const int way = (round + turn) % 2; /* 1: prefetching; first every other round */
            set(way);
            for (int c = -1; c < PROBE_CALLS; ++c) {
                const int64_t start = now_ns(); /* thread_pool.h */
                call(&m);
                if (c >= 0) times[way][round * PROBE_CALLS + c] = (double)(now_ns() - start);
            }
        }
    set(kept);
    probe_free(&m);
    *with_ms = 1e-6 * probe_median(times[1], PROBE_ROUNDS * PROBE_CALLS);
    *without_ms = 1e-6 * probe_median(times[0], PROBE_ROUNDS * PROBE_CALLS);
    return *without_ms < PROBE_MARGIN * *with_ms ? 0 : 1;
}

/* Sets one way as `variable` asks or as `call` measures it; returns the setting (1: the
 * prefetches), or -1 where the variable names no way (the setting unchanged). Writes the
 * probe's medians (ms), or -1 each where none ran (asked, or no memory for the probe: the
 * setting unchanged). */
static int probe_choose(const char *variable, void (*call)(const probe_memory *),
                        int (*set)(int), int kept, double *with_ms, double *without_ms) {
    const char *asked = getenv(variable);
    *with_ms = *without_ms = -1.0;
    if (asked && *asked && strcmp(asked, "measure")) {
        if (!strcmp(asked, "on") || !strcmp(asked, "off")) return set(!strcmp(asked, "on"));
        return -1;
    }
    const int way = probe_ways(call, set, kept, with_ms, without_ms);
    return set(way < 0 ? kept : way);
}

/* Whether one-row groups prefetch, as SPARSEGATE_ONE_ROW_PREFETCH asks or as measured (see
 * probe_choose). */
int choose_one_row_prefetch(double *with_ms, double *without_ms) {
    return probe_choose("SPARSEGATE_ONE_ROW_PREFETCH", probe_one_row_call,
                        set_one_row_prefetch, one_row_streams, with_ms, without_ms);
}

/* Whether tiles_from_blocks prefetches its next tile, as SPARSEGATE_TILE_PREFETCH asks or as
 * measured (see probe_choose). */
int choose_tile_prefetch(double *with_ms, double *without_ms) {
    return probe_choose("SPARSEGATE_TILE_PREFETCH", probe_tiles_call, set_tile_prefetch,
                        tile_prefetches, with_ms, without_ms);
}
