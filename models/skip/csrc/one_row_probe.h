/* Whether a one-row group prefetches ahead as it streams a block's panels or reads them panel
 * by panel with the hardware's prefetchers alone (one_row_streams in block_kernels.c), chosen
 * for this CPU when a library of these kernels loads: the engine's (c_kernels.py) and the
 * onnxruntime operators' (ort_ops.c). block_kernels.c includes this after the kernel sets.
 *
 * SPARSEGATE_ONE_ROW_PREFETCH=on or off asks for one way; unset (or `measure`), both are timed
 * on a one-row layer of PROBE_BLOCKS blocks of PROBE_UNITS units over PROBE_INPUTS inputs, its
 * gated product and its reader's, 4 MiB of float32 panels each (8 MiB: more than these
 * machines' L2 caches hold, well within their L3, as a served model's blocks are): a lone
 * example's two products, on the calling thread alone (split over the pool, the probe timed
 * one core in some rounds and two in others, where a worker just started shared its
 * caller's core for a while: a comparison of two states, not of two ways). On the AMD EPYC of
 * docs/performance.md a lone example's layer with every block on ran 1.09-1.10x as fast
 * without the prefetches (docs/history/one-row-prefetch-probe/), and faster again panel by
 * panel (docs/history/one-row-panel-by-panel/); on the Intel Xeon the prefetches had made it
 * 1.05x as fast (docs/history/stream-prefetch-every-group/). The ways run in alternating
 * rounds, PROBE_CALLS timed layers each after an untimed one, so a burst of load elsewhere
 * lands on both; the prefetches are kept unless the layer without them took under
 * PROBE_MARGIN of their time (medians). Only float32 panels are timed; bfloat16 ones follow
 * the same setting. */
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

/* Times the one-row layer both ways; writes the medians (ms) and returns the faster way as
 * above (1: prefetch), or -1 where its memory could not be allocated. Leaves the setting as it
 * found it. */
static int probe_one_row_prefetch(double *with_ms, double *without_ms) {
    const int64_t K = PROBE_BLOCKS, S = PROBE_UNITS, D = PROBE_INPUTS;
    const int64_t panel_floats = K * D * S; /* each product's panels */
    const int64_t floats = 2 * panel_floats + D + K * S + D; /* panels, x, pairs, out */
    float *memory = (float *)aligned_alloc(64, (size_t)floats * 4);
    int64_t *index = (int64_t *)malloc((size_t)(4 * K) * 8);
    if (!memory || !index) {
        free(memory);
        free(index);
        return -1;
    }
    /* Written, not left zero: untouched pages would all read one shared page of zeros. */
    for (int64_t i = 0; i < floats; ++i) memory[i] = 1e-3f;
    const float *gated = memory, *reader = memory + panel_floats, *x = reader + panel_floats;
    float *pairs = memory + 2 * panel_floats + D, *out = pairs + K * S;
    int64_t *zeros = index, *spans = index + K;
    for (int64_t k = 0; k < K; ++k) {
        zeros[k] = 0;
        spans[3 * k] = k, spans[3 * k + 1] = k, spans[3 * k + 2] = k + 1;
    }
    const kernel_set *set = set_for(FLOAT32);
    const int kept = one_row_streams;
    double times[2][PROBE_ROUNDS * PROBE_CALLS]; /* ns */
    for (int round = 0; round < PROBE_ROUNDS; ++round)
        for (int turn = 0; turn < 2; ++turn) {
            const int way = (round + turn) % 2; /* 1: prefetching; first every other round */
            one_row_streams = way;
            for (int call = -1; call < PROBE_CALLS; ++call) {
                const int64_t start = now_ns(); /* thread_pool.h */
                set->rows(x, D, zeros, gated, S, spans, K, pairs);
                set->columns(pairs, S, zeros, reader, D, spans, K, out, 0, D);
                if (call >= 0)
                    times[way][round * PROBE_CALLS + call] = (double)(now_ns() - start);
            }
        }
    one_row_streams = kept;
    free(memory);
    free(index);
    *with_ms = 1e-6 * probe_median(times[1], PROBE_ROUNDS * PROBE_CALLS);
    *without_ms = 1e-6 * probe_median(times[0], PROBE_ROUNDS * PROBE_CALLS);
    return *without_ms < PROBE_MARGIN * *with_ms ? 0 : 1;
}

/* Sets whether one-row groups prefetch, as SPARSEGATE_ONE_ROW_PREFETCH asks or as measured;
 * returns the setting (1: they prefetch), or -1 where the variable names no way (the setting
 * unchanged). Writes the probe's medians (ms), or -1 each where none ran (asked, or no memory
 * for the probe: the setting unchanged). */
int choose_one_row_prefetch(double *with_ms, double *without_ms) {
    const char *asked = getenv("SPARSEGATE_ONE_ROW_PREFETCH");
    *with_ms = *without_ms = -1.0;
    if (asked && *asked && strcmp(asked, "measure")) {
        if (!strcmp(asked, "on") || !strcmp(asked, "off"))
            return set_one_row_prefetch(!strcmp(asked, "on"));
        return -1;
    }
    const int way = probe_one_row_prefetch(with_ms, without_ms);
    return set_one_row_prefetch(way < 0 ? one_row_streams : way);
}
