/* Grouped products of the CPU skipping forward (models/native_kernels.py builds and loads this).
 *
 * Pairs (example, block) arrive sorted by block; `spans` holds (block, start, end) triples, one
 * per block present. Each kernel streams a block's weight tile by tile exactly once per few pair
 * rows, keeping the partial sums of R rows x T columns in registers: no packing copy of the
 * weight (which a general GEMM makes, and which dominated at a block's handful of rows), and the
 * input rows are read straight from x by example index (no gathered copy).
 * Column counts must be multiples of T; the Python side checks and falls back to numpy.
 */
#include <stdint.h>

#define T 64 /* output columns per tile: four AVX-512 or eight AVX2 vectors */

/* out[p, :S] = x[ex[p], :D] @ W[block, :D, :S] for every pair p of every span. */
#define R1 6 /* pair rows per pass over a weight tile: 6 x 64 sums fit the vector registers */
void rows_times_blocks(const float *__restrict x, int64_t D, const int64_t *ex,
                       const float *__restrict W, int64_t S, const int64_t *spans, int64_t G,
                       float *__restrict out) {
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = W + spans[3 * g] * D * S;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t c0 = 0; c0 < S; c0 += T) {
            for (int64_t p0 = start; p0 < end; p0 += R1) {
                int64_t n = end - p0 < R1 ? end - p0 : R1;
                float acc[R1][T] = {{0}};
                const float *xr[R1];
                for (int64_t i = 0; i < R1; ++i) xr[i] = x + ex[p0 + (i < n ? i : 0)] * D;
                for (int64_t d = 0; d < D; ++d) {
                    const float *wr = Wk + d * S + c0;
                    for (int64_t i = 0; i < R1; ++i) {
                        float xv = xr[i][d];
                        for (int64_t c = 0; c < T; ++c) acc[i][c] += xv * wr[c];
                    }
                }
                for (int64_t i = 0; i < n; ++i)
                    for (int64_t c = 0; c < T; ++c) out[(p0 + i) * S + c0 + c] = acc[i][c];
            }
        }
    }
}

/* out[ex[p], :N] += h[p, :S] @ W[block, :S, :N] for every pair p of every span. */
#define R2 4 /* fewer rows here: the inner dimension is short and the tile loads dominate */
void accumulate_blocks_times_rows(const float *__restrict h, int64_t S, const int64_t *ex,
                                  const float *__restrict W, int64_t N, const int64_t *spans,
                                  int64_t G, float *__restrict out) {
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = W + spans[3 * g] * S * N;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p0 = start; p0 < end; p0 += R2) {
            int64_t n = end - p0 < R2 ? end - p0 : R2;
            for (int64_t c0 = 0; c0 < N; c0 += T) {
                float acc[R2][T] = {{0}};
                for (int64_t s = 0; s < S; ++s) {
                    const float *wr = Wk + s * N + c0;
                    for (int64_t i = 0; i < R2; ++i) {
                        float hv = i < n ? h[(p0 + i) * S + s] : 0.0f;
                        for (int64_t c = 0; c < T; ++c) acc[i][c] += hv * wr[c];
                    }
                }
                for (int64_t i = 0; i < n; ++i) {
                    float *o = out + ex[p0 + i] * N + c0;
                    for (int64_t c = 0; c < T; ++c) o[c] += acc[i][c];
                }
            }
        }
    }
}
