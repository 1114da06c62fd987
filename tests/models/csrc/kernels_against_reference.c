/* The C kernels' products against a plain scalar reference, in C alone: for a machine the
 * Python tests cannot run on, an ARM one emulated by qemu (tests/models/test_kernels_in_c.py),
 * and as a second check of every set on this one.
 *
 * For every kernel set the CPU runs and both weight precisions: the gated layer's products
 * over whole rows, the reader's accumulation into its examples' rows, the products over the
 * input blocks a previous gated layer computed (tiles), and the narrow reader's dot products;
 * on the calling thread and split over the pool (2 and 3 threads). Shapes from one pair to
 * several row groups a block, odd batch sizes, blocks of one to three panels; weights rounded
 * to bfloat16 first, so both precisions compute the same function. Prints a line per
 * mismatch and per set checked; exits 1 on any mismatch.
 */
#include "block_kernels.c"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t next_random(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static float uniform(void) { return (float)(next_random() >> 40) / (float)(1 << 24) * 2 - 1; }

/* A float32 rounded to the nearest bfloat16 (ties to even), as its bits. */
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t bits) {
    uint32_t u = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* n random weights, each exactly a bfloat16. */
static float *random_weights(int64_t n) {
    float *w = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; ++i) w[i] = from_bf16(bf16_bits(uniform()));
    return w;
}

static float *random_floats(int64_t n) {
    float *a = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; ++i) a[i] = uniform();
    return a;
}

/* (K, R, C) -> panels (K, C / W, R, W) in the precision asked for (float or bfloat16 bits). */
static void *pack(const float *w, int64_t K, int64_t R, int64_t C, int64_t W, int precision) {
    void *out = malloc((size_t)(K * R * C * (precision == BFLOAT16 ? 2 : 4)));
    for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < C / W; ++p)
            for (int64_t r = 0; r < R; ++r)
                for (int64_t i = 0; i < W; ++i) {
                    const int64_t to = ((k * (C / W) + p) * R + r) * W + i;
                    const float v = w[(k * R + r) * C + p * W + i];
                    if (precision == BFLOAT16) ((uint16_t *)out)[to] = bf16_bits(v);
                    else ((float *)out)[to] = v;
                }
    return out;
}

/* Random (example, block) pairs sorted by block: each block on for each example with
 * probability `density`; spans (block, start, end) for the blocks with pairs. Returns P. */
static int64_t random_pairs(int64_t B, int64_t K, double density, int64_t *ex, int64_t *spans,
                            int64_t *G) {
    int64_t P = 0;
    *G = 0;
    for (int64_t k = 0; k < K; ++k) {
        const int64_t start = P;
        for (int64_t b = 0; b < B; ++b)
            if ((double)(next_random() >> 11) / 9007199254740992.0 < density) ex[P++] = b;
        if (P > start) {
            spans[3 * *G] = k, spans[3 * *G + 1] = start, spans[3 * *G + 2] = P;
            ++*G;
        }
    }
    return P;
}

static int failures = 0;

static void compare(const char *what, const float *got, const float *want, int64_t n,
                    int64_t terms, const char *set, int precision, int64_t threads) {
    for (int64_t i = 0; i < n; ++i) {
        const double tolerance = 2e-6 * (double)terms + 1e-5 * fabs(want[i]);
        if (!(fabs((double)got[i] - want[i]) <= tolerance)) {
            printf("MISMATCH %s set %s precision %d threads %ld at %ld: %.7g, want %.7g\n", what,
                   set, precision, (long)threads, (long)i, got[i], want[i]);
            ++failures;
            return;
        }
    }
}

static const char *SET_NAMES[SETS] = {"generic", "avx2", "avx512"};

/* A reader's accumulation into its examples' rows: on the panels (`narrow` 0: kind 1), or as
 * dot products over each column's weights, transposed per block (`narrow` 1: a class read-out
 * of any width, on the calling thread). */
static void check_accumulate(const char *set, int64_t W, int precision, int64_t threads,
                             int64_t B, int64_t S, int64_t K, int64_t N, double density,
                             int narrow) {
    float *w = random_weights(K * S * N), *wt = malloc((size_t)(K * S * N * 4));
    for (int64_t k = 0; k < K; ++k) /* (K, N, S): each column's weights contiguous */
        for (int64_t s = 0; s < S; ++s)
            for (int64_t n = 0; n < N; ++n) wt[(k * N + n) * S + s] = w[(k * S + s) * N + n];
    void *panels = narrow ? 0 : pack(w, K, S, N, W, precision);
    int64_t *ex = malloc((size_t)(B * K * 8) + 8), *spans = malloc((size_t)(K * 24) + 24), G;
    const int64_t P = random_pairs(B, K, density, ex, spans, &G);
    float *h = random_floats(P * S + 1), *out = random_floats(B * N);
    float *want = malloc((size_t)(B * N * 4));
    memcpy(want, out, (size_t)(B * N * 4)); /* accumulated onto what is there */
    for (int64_t g = 0; g < G; ++g)
        for (int64_t p = spans[3 * g + 1]; p < spans[3 * g + 2]; ++p)
            for (int64_t c = 0; c < N; ++c) {
                double sum = 0;
                for (int64_t s = 0; s < S; ++s)
                    sum += (double)h[p * S + s] * w[(spans[3 * g] * S + s) * N + c];
                want[ex[p] * N + c] += (float)sum;
            }
    if (narrow)
        accumulate_narrow(h, S, ex, wt, N, spans, G, out);
    else
        grouped_products_threaded(1, precision, h, S, ex, panels, N, spans, G, out, threads, 0,
                                  0);
    compare(narrow ? "accumulate_narrow" : "accumulate_blocks_times_rows", out, want, B * N,
            S * K, set, precision, threads);
    free(w), free(wt), free(panels), free(ex), free(spans), free(h), free(out), free(want);
}

/* A gated layer's products: over whole input rows (`tiles` 0: kind 0, every input unit read),
 * or over the input blocks each example's previous gated layer computed (`tiles` 1: kind 2,
 * J blocks of Sin units, some of them off). */
static void check_gated(const char *set, int64_t W, int precision, int64_t threads, int64_t B,
                        int64_t J, int64_t Sin, int64_t K, int64_t S, double density,
                        int tiles) {
    const int64_t D = J * Sin;
    float *x = random_floats(B * D), *w = random_weights(K * D * S);
    void *panels = pack(w, K, D, S, W, precision);
    uint8_t *reads = malloc((size_t)(B * J));
    for (int64_t i = 0; i < B * J; ++i) reads[i] = !tiles || (next_random() & 3) != 0;
    int64_t *ex = malloc((size_t)(B * K * 8) + 8), *spans = malloc((size_t)(K * 24) + 24), G;
    const int64_t P = random_pairs(B, K, density, ex, spans, &G);
    float *out = malloc((size_t)(P * S * 4) + 4), *want = calloc((size_t)(P * S) + 1, 4);
    for (int64_t g = 0; g < G; ++g)
        for (int64_t p = spans[3 * g + 1]; p < spans[3 * g + 2]; ++p)
            for (int64_t c = 0; c < S; ++c) {
                double sum = 0;
                for (int64_t d = 0; d < D; ++d)
                    if (reads[ex[p] * J + d / Sin])
                        sum += (double)x[ex[p] * D + d] * w[(spans[3 * g] * D + d) * S + c];
                want[p * S + c] = (float)sum;
            }
    if (tiles)
        grouped_products_threaded(2, precision, x, Sin, ex, panels, S, spans, G, out, threads,
                                  reads, J);
    else
        grouped_products_threaded(0, precision, x, D, ex, panels, S, spans, G, out, threads, 0,
                                  0);
    compare(tiles ? "tiles_from_blocks" : "rows_times_blocks", out, want, P * S, D, set,
            precision, threads);
    free(x), free(w), free(panels), free(reads), free(ex), free(spans), free(out), free(want);
}

int main(void) {
    static const int64_t batches[] = {1, 2, 7, 9, 13, 33};
    static const double densities[] = {0.15, 0.6, 1.0};
    static const int64_t threads_list[] = {1, 2, 3};
    int sets_checked = 0;
    for (int s = 0; s < SETS; ++s) {
        if (choose_kernel_set(s) < 0) continue;
        const int64_t W = kernel_panel_width(s);
        for (int precision = FLOAT32; precision < PRECISIONS; ++precision)
            for (size_t t = 0; t < sizeof threads_list / sizeof *threads_list; ++t)
                for (size_t b = 0; b < sizeof batches / sizeof *batches; ++b)
                    for (size_t d = 0; d < sizeof densities / sizeof *densities; ++d) {
                        const int64_t B = batches[b], threads = threads_list[t];
                        const double density = densities[d];
                        for (int64_t S = 64; S <= 192; S += 64) {
                            check_gated(SET_NAMES[s], W, precision, threads, B, 1, 96, 5, S,
                                        density, 0);
                            check_accumulate(SET_NAMES[s], W, precision, threads, B, S, 4,
                                             128, density, 0);
                            check_gated(SET_NAMES[s], W, precision, threads, B, 3, 64, 4, S,
                                        density, 1);
                        }
                    }
        for (int64_t N = 1; N <= 11; N += 5)
            for (int64_t S = 64; S <= 128; S += 64)
                check_accumulate(SET_NAMES[s], W, FLOAT32, 1, 9, S, 3, N, 0.5, 1);
        printf("checked set %s\n", SET_NAMES[s]);
        ++sets_checked;
    }
    if (!sets_checked) printf("no kernel set runs here\n");
    return failures || !sets_checked;
}
