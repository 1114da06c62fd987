/* How the kernels' software prefetches run on this CPU, measured when a library of these
 * kernels loads (the engine's, c_kernels.py, and the onnxruntime operators', ort_ops.c):
 *   - one_row_streams (block_kernels.c): a one-row group prefetching ahead as it streams a
 *     block's panels (`on`), or reading them panel by panel with the hardware's prefetchers
 *     alone (`off`);
 *   - tile_prefetches (block_kernels.c): tiles_from_blocks leaving its jumps between weight
 *     tiles to the hardware (`off`), or prefetching the next tile it will read into every cache
 *     level (`l1`) or into L2 and L3 only (`l2`).
 * Each has its variable, SPARSEGATE_ONE_ROW_PREFETCH and SPARSEGATE_TILE_PREFETCH, that asks
 * for one way by its name; unset (or `measure`), every way is timed on the calling thread alone
 * (split over the pool, a probe timed one core in some rounds and two in others, where a worker
 * just started shared its caller's core for a while: a comparison of two states, not of the
 * ways), on a product shaped as the kernel's own work:
 *   - one row: a lone example's gated product and its reader's, PROBE_BLOCKS blocks of
 *     PROBE_UNITS units over PROBE_INPUTS inputs, 8 MiB of float32 panels (more than these
 *     machines' L2 caches hold, well within their L3, as a served model's blocks are). On the
 *     AMD EPYC of docs/performance.md a lone example's layer with every block on ran
 *     1.09-1.10x as fast without the prefetches (docs/history/one-row-prefetch-probe/), and
 *     faster again panel by panel (docs/history/one-row-panel-by-panel/); on the Intel Xeon the
 *     prefetches had made it 1.05x as fast (docs/history/stream-prefetch-every-group/);
 *   - tiles: a gated layer over a gated layer's output as large as the `blocks` model's second
 *     (64 MiB: 4096 inputs in 64 blocks, 64 blocks of 64 units), in TILE_PROBE_PARTS parts of
 *     its blocks read in turn, one call a part, so that a part's tiles come from L3 or memory
 *     as the model's do; one example per block, each reading about half of its input blocks,
 *     picked by a hash (so the tiles read jump by no fixed stride a hardware prefetcher could
 *     learn). docs/history/tile-prefetch-probe/ says what each way did to the `blocks` model.
 * The ways run in rotating rounds (each first in turn), PROBE_CALLS timed calls each after an
 * untimed one, so a burst of load elsewhere lands on all of them; the way the kernels had
 * before they were measured (`preferred`: the prefetches, into every level) is kept unless
 * another took under PROBE_MARGIN of its time (medians), and then the fastest is taken. Only
 * float32 panels are timed; bfloat16 ones follow the same settings. */
#include <stdlib.h>
#include <sys/mman.h>

#define PROBE_BLOCKS 16
#define PROBE_UNITS 64
#define PROBE_INPUTS 1024
#define TILE_PROBE_INPUTS 4096
#define TILE_PROBE_BLOCKS 64
#define TILE_PROBE_PARTS 8
#define PROBE_ROUNDS 7
#define PROBE_CALLS 3
#define PROBE_MARGIN 0.97
#define PROBE_WAYS_MAX 3
#define PROBE_MEASURE (-2) /* probe_asked: the variable asks for the probe */

static int probe_compare(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double probe_median(double *times, int n) {
    qsort(times, (size_t)n, sizeof *times, probe_compare);
    return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

/* Times `call(state, i)` (i counts the calls) with each of `ways` settings (`set(way)`) in
 * rotating rounds; writes their medians (ms) and returns the way chosen as above. Leaves the
 * setting at `kept`. */
static int probe_ways(void (*call)(void *, int64_t), void *state, int (*set)(int), int ways,
                      int preferred, int kept, double *medians) {
    double times[PROBE_WAYS_MAX][PROBE_ROUNDS * PROBE_CALLS]; /* ns */
    int64_t calls = 0;
    for (int round = 0; round < PROBE_ROUNDS; ++round)
        for (int turn = 0; turn < ways; ++turn) {
            const int way = (round + turn) % ways;
            set(way);
            for (int c = -1; c < PROBE_CALLS; ++c) {
                const int64_t start = now_ns(); /* thread_pool.h */
                call(state, calls++);
                if (c >= 0) times[way][round * PROBE_CALLS + c] = (double)(now_ns() - start);
            }
        }
    set(kept);
    for (int way = 0; way < ways; ++way)
        medians[way] = 1e-6 * probe_median(times[way], PROBE_ROUNDS * PROBE_CALLS);
    int fastest = preferred;
    for (int way = 0; way < ways; ++way)
        if (medians[way] < medians[fastest]) fastest = way;
    return medians[fastest] < PROBE_MARGIN * medians[preferred] ? fastest : preferred;
}

/* The way `variable` asks for: its index in `names`, PROBE_MEASURE where it is unset or
 * `measure`, or -1 where it names no way. */
static int probe_asked(const char *variable, const char *const *names, int ways) {
    const char *asked = getenv(variable);
    if (!asked || !*asked || !strcmp(asked, "measure")) return PROBE_MEASURE;
    for (int way = 0; way < ways; ++way)
        if (!strcmp(asked, names[way])) return way;
    return -1;
}

/* Memory in huge pages where the system gives them on request, as numpy asks for them for the
 * engine's panels (fewer page faults to fill it, and the same reach of the TLB as the model's
 * weights have), and written, not left zero: untouched pages would all read one shared page of
 * zeros. Freed with free(). */
static float *probe_floats(int64_t n) {
    const size_t huge = (size_t)2 << 20, bytes = ((size_t)n * 4 + huge - 1) / huge * huge;
    void *memory = 0;
    if (posix_memalign(&memory, huge, bytes)) return 0;
#ifdef MADV_HUGEPAGE
    madvise(memory, bytes, MADV_HUGEPAGE); /* a request: without it, ordinary pages */
#endif
    float *floats = (float *)memory;
    for (int64_t i = 0; i < n; ++i) floats[i] = 1e-3f;
    return floats;
}

/* Spans (K, 3) with block k's one pair, k. */
static void probe_spans(int64_t *spans, int64_t K) {
    for (int64_t k = 0; k < K; ++k)
        spans[3 * k] = k, spans[3 * k + 1] = k, spans[3 * k + 2] = k + 1;
}

typedef struct {
    float *memory;   /* the two products' panels, then x, the pairs, the output */
    int64_t *index;  /* every pair's example 0, then the spans */
} one_row_probe;

static void one_row_probe_call(void *state, int64_t i) {
    const one_row_probe *m = (const one_row_probe *)state;
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    const float *gated = m->memory, *reader = gated + K * D * S, *x = reader + K * D * S;
    float *pairs = m->memory + 2 * K * D * S + D, *out = pairs + K * S;
    const kernel_set *set = set_for(FLOAT32);
    (void)i;
    set->rows(x, D, m->index, gated, S, m->index + K, K, pairs);
    set->columns(pairs, S, m->index, reader, D, m->index + K, K, out, 0, D);
}

static const char *const ONE_ROW_WAYS[] = {"off", "on"};

/* How one-row groups stream their panels, as SPARSEGATE_ONE_ROW_PREFETCH asks (off or on) or
 * as measured; returns the setting (1: they prefetch), or -1 where the variable names no way
 * (the setting unchanged). Writes the probe's medians (ms) per way (off, on), or -1 each
 * where none ran (asked, or no memory for the probe: the setting unchanged). */
int choose_one_row_prefetch(double *medians) {
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    for (int way = 0; way < 2; ++way) medians[way] = -1.0;
    const int asked = probe_asked("SPARSEGATE_ONE_ROW_PREFETCH", ONE_ROW_WAYS, 2);
    if (asked != PROBE_MEASURE) return asked < 0 ? -1 : set_one_row_prefetch(asked);
    one_row_probe m = {probe_floats(2 * K * D * S + D + K * S + D),
                       (int64_t *)calloc((size_t)(4 * K), 8)};
    int way = one_row_streams;
    if (m.memory && m.index) {
        probe_spans(m.index + K, K);
        way = probe_ways(one_row_probe_call, &m, set_one_row_prefetch, 2, 1, one_row_streams,
                         medians);
    }
    free(m.memory);
    free(m.index);
    return set_one_row_prefetch(way);
}

typedef struct {
    float *panels, *x, *pairs; /* panels (K, S / PW, D, PW); x (K, D); pairs (K, S) */
    uint8_t *reads;            /* (K, J): the input blocks each example reads */
    int64_t *index;            /* pair k's example k, then the spans */
} tile_probe;

static void tile_probe_call(void *state, int64_t i) {
    const tile_probe *m = (const tile_probe *)state;
    const int64_t S = PROBE_UNITS, D = TILE_PROBE_INPUTS, J = D / S;
    const int64_t per_part = TILE_PROBE_BLOCKS / TILE_PROBE_PARTS;
    const int64_t first = (i % TILE_PROBE_PARTS) * per_part; /* this call's blocks */
    set_for(FLOAT32)->tiles(m->x, S, m->reads, J, m->index, m->panels, S,
                            m->index + TILE_PROBE_BLOCKS + 3 * first, per_part, m->pairs);
}

static const char *const TILE_WAYS[] = {"off", "l1", "l2"};

/* How tiles_from_blocks prefetches its next tile, as SPARSEGATE_TILE_PREFETCH asks (off, l1 or
 * l2) or as measured; returns the setting (TILE_PREFETCH_*), or -1 where the variable names no
 * way (the setting unchanged). Writes the probe's medians (ms) per way (off, l1, l2), or -1
 * each where none ran (asked, or no memory for the probe: the setting unchanged). */
int choose_tile_prefetch(double *medians) {
    const int64_t K = TILE_PROBE_BLOCKS, S = PROBE_UNITS, D = TILE_PROBE_INPUTS, J = D / S;
    for (int way = 0; way < 3; ++way) medians[way] = -1.0;
    const int asked = probe_asked("SPARSEGATE_TILE_PREFETCH", TILE_WAYS, 3);
    if (asked != PROBE_MEASURE) return asked < 0 ? -1 : set_tile_prefetch(asked);
    float *floats = probe_floats(K * D * S + K * D + K * S);
    float *x = floats ? floats + K * D * S : 0;
    tile_probe m = {floats, x, x ? x + K * D : 0, (uint8_t *)malloc((size_t)(K * J)),
                    (int64_t *)malloc((size_t)(4 * K) * 8)};
    int way = tile_prefetches;
    if (floats && m.reads && m.index) {
        for (int64_t k = 0; k < K; ++k) {
            m.index[k] = k;
            for (int64_t j = 0; j < J; ++j) /* a multiplicative hash's top bit: about half */
                m.reads[k * J + j] = (uint32_t)((k * J + j) * 2654435761u) >> 31;
        }
        probe_spans(m.index + K, K);
        way = probe_ways(tile_probe_call, &m, set_tile_prefetch, 3, TILE_PREFETCH_L1,
                         tile_prefetches, medians);
    }
    free(floats);
    free(m.reads);
    free(m.index);
    return set_tile_prefetch(way);
}
