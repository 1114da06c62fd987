/* Grouped products of the CPU skipping forward (models/skip/c_kernels.py builds and loads this).
 *
 * Pairs (example, block) arrive sorted by block; `spans` holds (block, start, end) triples, one
 * per block present. Each kernel streams a block's weight tile by tile exactly once per few pair
 * rows, keeping the partial sums of R rows x T columns in registers: no packing copy of the
 * weight (which a general GEMM makes, and which dominated at a block's handful of rows), and the
 * input rows are read straight from x by example index (no gathered copy).
 * Column counts must be multiples of T; the Python side checks and falls back to numpy.
 */
#include <pthread.h>
#include <stdint.h>

#define T 64 /* output columns per tile: four AVX-512 or eight AVX2 vectors */

/* Row tiles: each kernel below keeps the sums of up to RMAX pair rows in registers while it
 * streams a weight tile, and pads a short tile by repeating a row. Padding is not free: at one
 * pair per block (batch 1) a 6-row tile does six times the multiply-adds for the same bytes.
 * So the tile is the smallest of 1, 2, 4 and RMAX rows that holds what is left, and the row
 * count is a constant in each copy of the inner loop (FOR_ROWS below), which the compiler
 * unrolls and keeps in registers. */
#define FOR_ROWS(n, rmax, CALL)                                                                \
    do {                                                                                      \
        if ((n) <= 1) { CALL(1); } else if ((n) <= 2) { CALL(2); }                            \
        else if ((n) <= 4 || (rmax) == 4) { CALL(4); } else { CALL(rmax); }                   \
    } while (0)
#define INLINE static inline __attribute__((always_inline))

#define R1 6 /* pair rows per pass over a weight tile: 6 x 64 sums fit the vector registers */
/* out[p0 + i, c0:c0+T] = x[ex[p0 + i], :D] @ W[:D, c0:c0+T] for i < n, with R >= n rows. */
INLINE void rows_tile(const float *__restrict x, int64_t D, const int64_t *ex, int64_t p0,
                      int64_t n, const float *__restrict Wk, int64_t S, int64_t c0,
                      float *__restrict out, const int R) {
    float acc[R1][T] = {{0}};
    const float *xr[R1];
    for (int i = 0; i < R; ++i) xr[i] = x + ex[p0 + (i < n ? i : 0)] * D;
    for (int64_t d = 0; d < D; ++d) {
        const float *wr = Wk + d * S + c0;
        for (int i = 0; i < R; ++i) {
            float xv = xr[i][d];
            for (int64_t c = 0; c < T; ++c) acc[i][c] += xv * wr[c];
        }
    }
    for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < T; ++c) out[(p0 + i) * S + c0 + c] = acc[i][c];
}

/* out[p, :S] = x[ex[p], :D] @ W[block, :D, :S] for every pair p of every span. */
void rows_times_blocks(const float *__restrict x, int64_t D, const int64_t *ex,
                       const float *__restrict W, int64_t S, const int64_t *spans, int64_t G,
                       float *__restrict out) {
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = W + spans[3 * g] * D * S;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t c0 = 0; c0 < S; c0 += T) {
            for (int64_t p0 = start; p0 < end; p0 += R1) {
                int64_t n = end - p0 < R1 ? end - p0 : R1;
#define ROWS_CALL(R) rows_tile(x, D, ex, p0, n, Wk, S, c0, out, R)
                FOR_ROWS(n, R1, ROWS_CALL);
#undef ROWS_CALL
            }
        }
    }
}

/* out[ex[p], c_begin:c_end] += h[p, :S] @ W[block, :S, c_begin:c_end] for every pair p of every
 * span; c_begin and c_end are multiples of T. */
#define R2 4 /* fewer rows here: the inner dimension is short and the tile loads dominate */
INLINE void columns_tile(const float *__restrict h, int64_t S, const int64_t *ex, int64_t p0,
                         int64_t n, const float *__restrict Wk, int64_t N, int64_t c0,
                         float *__restrict out, const int R) {
    float acc[R2][T] = {{0}};
    for (int64_t s = 0; s < S; ++s) {
        const float *wr = Wk + s * N + c0;
        for (int i = 0; i < R; ++i) {
            float hv = i < n ? h[(p0 + i) * S + s] : 0.0f;
            for (int64_t c = 0; c < T; ++c) acc[i][c] += hv * wr[c];
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        float *o = out + ex[p0 + i] * N + c0;
        for (int64_t c = 0; c < T; ++c) o[c] += acc[i][c];
    }
}

static void accumulate_columns(const float *__restrict h, int64_t S, const int64_t *ex,
                               const float *__restrict W, int64_t N, const int64_t *spans,
                               int64_t G, float *__restrict out, int64_t c_begin, int64_t c_end) {
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = W + spans[3 * g] * S * N;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p0 = start; p0 < end; p0 += R2) {
            int64_t n = end - p0 < R2 ? end - p0 : R2;
            for (int64_t c0 = c_begin; c0 < c_end; c0 += T) {
#define COLUMNS_CALL(R) columns_tile(h, S, ex, p0, n, Wk, N, c0, out, R)
                FOR_ROWS(n, R2, COLUMNS_CALL);
#undef COLUMNS_CALL
            }
        }
    }
}

/* out[ex[p], :N] += h[p, :S] @ W[block, :S, :N] for every pair p of every span. */
void accumulate_blocks_times_rows(const float *__restrict h, int64_t S, const int64_t *ex,
                                  const float *__restrict W, int64_t N, const int64_t *spans,
                                  int64_t G, float *__restrict out) {
    accumulate_columns(h, S, ex, W, N, spans, G, out, 0, N);
}

/* A gated layer reading a gated layer's output, tile by tile: for every pair p of every span,
 *   out[p, :S] = sum over input blocks j with reads[ex[p] * J + j] != 0 of
 *                x[ex[p], j*Sin:(j+1)*Sin] @ W[block, j*Sin:(j+1)*Sin, :S]
 * so an example reads only the input blocks its previous layer computed. x is (B, J * Sin), W
 * (K, J * Sin, S), reads (B, J) bytes. Per (block, column tile, input block) the weight tile
 * (Sin x T) is streamed once per R3 of the pairs that read that input block. */
#define R3 4
/* out[rows[i], c0:c0+T] += x[ex[rows[i]], :Sin] @ tile[:Sin, :T] for i < n, with R >= n rows;
 * x points at the input block's first column, tile at its weight rows' column c0. */
INLINE void input_block_tile(const float *__restrict x, int64_t D, int64_t Sin,
                             const int64_t *ex, const int64_t *rows, int64_t n,
                             const float *__restrict tile, int64_t S, int64_t c0,
                             float *__restrict out, const int R) {
    const float *xr[R3];
    for (int i = 0; i < R; ++i) xr[i] = x + ex[rows[i < n ? i : 0]] * D;
    float acc[R3][T] = {{0}};
    for (int64_t s = 0; s < Sin; ++s) {
        const float *wr = tile + s * S;
        for (int i = 0; i < R; ++i) {
            float xv = xr[i][s];
            for (int64_t c = 0; c < T; ++c) acc[i][c] += xv * wr[c];
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        float *o = out + rows[i] * S + c0;
        for (int64_t c = 0; c < T; ++c) o[c] += acc[i][c];
    }
}

void tiles_from_blocks(const float *__restrict x, int64_t Sin, const uint8_t *reads, int64_t J,
                       const int64_t *ex, const float *__restrict W, int64_t S,
                       const int64_t *spans, int64_t G, float *__restrict out) {
    int64_t D = J * Sin;
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = W + spans[3 * g] * D * S;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p = start; p < end; ++p)
            for (int64_t c = 0; c < S; ++c) out[p * S + c] = 0.0f;
        for (int64_t c0 = 0; c0 < S; c0 += T) {
            for (int64_t j = 0; j < J; ++j) {
                const float *tile = Wk + j * Sin * S + c0;
                int64_t p = start;
                while (p < end) {
                    int64_t rows[R3], n = 0; /* the next pairs that read input block j */
                    for (; p < end && n < R3; ++p)
                        if (reads[ex[p] * J + j]) rows[n++] = p;
                    if (n == 0) break;
#define TILES_CALL(R) input_block_tile(x + j * Sin, D, Sin, ex, rows, n, tile, S, c0, out, R)
                    FOR_ROWS(n, R3, TILES_CALL);
#undef TILES_CALL
                }
            }
        }
    }
}

/* The same three products split over `threads` POSIX threads (the caller's included). The gated
 * layers' pairs are split by spans (each thread writes its own pair rows); the consumer's by
 * output column tiles (each thread owns its columns of every output row), so no thread ever
 * writes where another does. OpenMP is avoided on purpose: a second OpenMP runtime beside
 * torch's would keep its own workers spinning against torch's. */
typedef struct {
    int kind; /* 0: rows_times_blocks, 1: accumulate_blocks_times_rows, 2: tiles_from_blocks */
    const float *in; int64_t in_cols; const int64_t *ex; const float *W; int64_t out_cols;
    const int64_t *spans; int64_t G; float *out;
    int64_t col_begin, col_end; /* consumer: this thread's output columns */
    const uint8_t *reads; int64_t in_blocks; /* tiles: which input blocks each example reads */
} job_t;

static void *run_job(void *arg) {
    job_t *j = (job_t *)arg;
    if (j->kind == 0)
        rows_times_blocks(j->in, j->in_cols, j->ex, j->W, j->out_cols, j->spans, j->G, j->out);
    else if (j->kind == 2)
        tiles_from_blocks(j->in, j->in_cols, j->reads, j->in_blocks, j->ex, j->W, j->out_cols,
                          j->spans, j->G, j->out);
    else
        accumulate_columns(j->in, j->in_cols, j->ex, j->W, j->out_cols, j->spans, j->G, j->out,
                           j->col_begin, j->col_end);
    return NULL;
}

#define MAX_THREADS 64
void grouped_products_threaded(int kind, const float *in, int64_t in_cols, const int64_t *ex,
                               const float *W, int64_t out_cols, const int64_t *spans,
                               int64_t G, float *out, int64_t threads, const uint8_t *reads,
                               int64_t in_blocks) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    job_t jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int64_t used = 0;
    if (kind != 1) { /* contiguous runs of spans with about equal numbers of pairs */
        int64_t total = G ? spans[3 * (G - 1) + 2] - spans[1] : 0, g0 = 0;
        for (int64_t t = 0; t < threads && g0 < G; ++t) {
            int64_t target = spans[1] + total * (t + 1) / threads, g1 = g0 + 1;
            while (g1 < G && spans[3 * g1 + 1] < target) ++g1;
            if (t == threads - 1) g1 = G;
            jobs[used++] = (job_t){kind, in, in_cols, ex, W, out_cols, spans + 3 * g0, g1 - g0,
                                   out, 0, 0, reads, in_blocks};
            g0 = g1;
        }
    } else { /* whole column tiles per thread */
        int64_t tiles = out_cols / T;
        for (int64_t t = 0; t < threads; ++t) {
            int64_t a = tiles * t / threads, b = tiles * (t + 1) / threads;
            if (b > a)
                jobs[used++] = (job_t){1, in, in_cols, ex, W, out_cols, spans, G, out,
                                       a * T, b * T, NULL, 0};
        }
    }
    for (int64_t t = 1; t < used; ++t) pthread_create(&ids[t], NULL, run_job, &jobs[t]);
    if (used) run_job(&jobs[0]);
    for (int64_t t = 1; t < used; ++t) pthread_join(ids[t], NULL);
}
