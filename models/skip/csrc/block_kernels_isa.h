/* The grouped products for one instruction set and one weight precision, included by
 * block_kernels.c once per (set, precision) with these defined:
 *   ISA(name)       the name with the set's and the precision's suffix
 *   ATTR            the function attribute that lets the compiler use the set
 *   VEC, VW         the vector type and its width in floats
 *   PW              the set's weight panel width in elements, a multiple of VW dividing 64
 *   LOAD(p), STORE(p, v), BCAST(f), ZERO(), FMA(a, b, c) = a * b + c, ADD(a, b)
 *   RM              rows per micro-kernel group, at most: 6 or 8 (<= RMAX)
 *   V_FOR(r)        vectors per row of a micro-kernel tile of r rows (r = 1..RM): each
 *                   copy keeps r * V_FOR(r) partial sums in registers, as many as the set has
 *                   room for beside the weights' vectors and a broadcast; V_FOR(r) * VW is a
 *                   multiple of PW dividing 64
 *   WT, WLOAD(p)    the weights' element type (float, or uint16_t holding bfloat16 bits) and
 *                   the load of VW of them as floats; inputs, sums and outputs are float32
 *   WBF16           1 where WT holds bfloat16 (the class read-out's dot products, which read
 *                   float32 columns, are compiled only in the float32 copy)
 * It undefines ISA, WT, WLOAD and WBF16 at its end, and the set's own macros too unless
 * ANOTHER_PRECISION_FOLLOWS is defined (the set is included again for its other precision).
 *
 * Weights come packed in panels of PW columns (block_kernels.c): each row of a panel is
 * contiguous, and so is the panel, so a micro-kernel tile one panel wide streams one
 * contiguous run of memory, which the hardware prefetchers follow. In bfloat16 the same
 * panels hold half the bytes: where a product streams its weights from memory (one example,
 * or a tenth of the blocks at batch 64) it reads half as much, and widening costs a shift.
 */

#define VP (PW / VW) /* vectors per panel row */
#define LINE_ELEMENTS (64 / (int)sizeof(WT)) /* weights per 64-byte cache line */

/* A micro-kernel tile: for i < R, o[i][0 : V * VW] (+)= in[i][0 : K] @ w[0 : K, 0 : V * VW],
 * where w holds V / VP consecutive panels (or one), `panel` floats apart. With `pf`, row k of
 * each of `pf_panels` panels from pf (again `panel` apart) is prefetched as row k of w is
 * read: the next tile a caller will read, where its reads jump between tiles (see
 * tiles_from_blocks), into every cache level, or with `stream` into L2 and L3 only. Without
 * `pf`, with `stream`, row k + STREAM_AHEAD of the same panels
 * is prefetched as row k is read: where the caller reads its panels one after another, that
 * row lies further along the same contiguous run (past a tile's last row, in the next panel),
 * so the loads of a product that streams its weights from L3 are issued early enough to keep
 * both the multiply-adds and the reads busy. R and V are constants
 * in every copy (the callers switch on them), so the sums live in registers and every loop
 * below is unrolled but the one over K. */
ATTR static inline __attribute__((always_inline)) void
ISA(tile)(const float *const *in, int64_t K, const WT *__restrict w, int64_t panel,
          float *const *o, int accumulate, const int R, const int V, const WT *pf,
          int64_t pf_panels, int stream) {
    VEC acc[RMAX][VMAX];
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i][v] = ZERO();
#define ISA_TILE_STEP(k)                                                                      \
    do {                                                                                      \
        const WT *wr = w + (k) * PW;                                                          \
        VEC wv[VMAX];                                                                         \
        for (int v = 0; v < V; ++v) wv[v] = WLOAD(wr + (v / VP) * panel + (v % VP) * VW);    \
        for (int i = 0; i < R; ++i) {                                                         \
            VEC b = BCAST(in[i][k]);                                                          \
            for (int v = 0; v < V; ++v) acc[i][v] = FMA(b, wv[v], acc[i][v]);                 \
        }                                                                                     \
    } while (0)
    /* Row k of the next tile, in each of its panels, a cache line at a time; the locality is
     * the builtin's constant, so each is its own loop. */
#define ISA_NEXT_TILE_LOOP(locality)                                                          \
    for (int64_t k = 0; k < K; ++k) {                                                         \
        for (int64_t q = 0; q < pf_panels; ++q)                                               \
            for (int f = 0; f < PW; f += LINE_ELEMENTS)                                       \
                __builtin_prefetch(pf + q * panel + k * PW + f, 0, locality);                 \
        ISA_TILE_STEP(k);                                                                     \
    }
    /* Separate loops, so none carries a test for another's prefetches. */
    if (pf && stream) {
        ISA_NEXT_TILE_LOOP(2)
    } else if (pf) {
        ISA_NEXT_TILE_LOOP(3)
    } else if (stream) {
        for (int64_t k = 0; k < K; ++k) {
            for (int q = 0; q < (V + VP - 1) / VP; ++q)
                for (int f = 0; f < PW; f += LINE_ELEMENTS)
                    __builtin_prefetch(w + q * panel + (k + STREAM_AHEAD) * PW + f, 0, 3);
            ISA_TILE_STEP(k);
        }
    } else {
        for (int64_t k = 0; k < K; ++k) ISA_TILE_STEP(k);
    }
#undef ISA_NEXT_TILE_LOOP
#undef ISA_TILE_STEP
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) {
            float *dst = o[i] + v * VW;
            STORE(dst, accumulate ? ADD(LOAD(dst), acc[i][v]) : acc[i][v]);
        }
}

/* The tile for each row count as a function of its own, never inlined into group: inlined,
 * group's pointers (the output rows' among them) stayed live across the tile's loop, and the
 * compiler, out of general registers, kept the input rows' pointers in vector registers and
 * moved each one back before its broadcast, on a port the multiply-adds need. Alone, the
 * loop holds its pointers in general registers. */
#define ISA_TILE_FOR(R)                                                                       \
    ATTR static __attribute__((noinline)) void ISA(tile_rows_##R)(                            \
        const float *const *in, int64_t K, const WT *__restrict w, int64_t panel,             \
        float *const *o, int accumulate, const WT *pf, int64_t pf_panels, int stream) {       \
        ISA(tile)(in, K, w, panel, o, accumulate, R, V_FOR(R), pf, pf_panels, stream);        \
    }
ISA_TILE_FOR(1)
ISA_TILE_FOR(2)
ISA_TILE_FOR(3)
ISA_TILE_FOR(4)
ISA_TILE_FOR(5)
ISA_TILE_FOR(6)
#if RM > 6
ISA_TILE_FOR(7)
ISA_TILE_FOR(8)
#endif
#undef ISA_TILE_FOR

/* One row across one panel: o[0 : PW] (+)= in[0 : K] @ w[0 : K, 0 : PW]. A one-row group that
 * leaves its reads to the hardware's prefetchers (one_row_streams off, block_kernels.c) reads
 * its weights through this, one panel after another: a single contiguous stream, where a tile
 * of several panels reads as many streams side by side (docs/history/one-row-panel-by-panel/:
 * the layer with every block on at batch 1 1.11-1.16x as fast). A panel's VP vectors of sums
 * alone would have each multiply-add wait on the one before it in the same sum, so rows k of
 * one parity go to one set of sums and the others to a second, added at the end. */
ATTR static __attribute__((noinline)) void ISA(one_row_panel)(const float *in, int64_t K,
                                                              const WT *__restrict w, float *o,
                                                              int accumulate) {
    VEC even[VP], odd[VP];
    for (int v = 0; v < VP; ++v) even[v] = ZERO(), odd[v] = ZERO();
    int64_t k = 0;
    for (; k + 2 <= K; k += 2) {
        const VEC x0 = BCAST(in[k]), x1 = BCAST(in[k + 1]);
        for (int v = 0; v < VP; ++v) {
            even[v] = FMA(x0, WLOAD(w + k * PW + v * VW), even[v]);
            odd[v] = FMA(x1, WLOAD(w + (k + 1) * PW + v * VW), odd[v]);
        }
    }
    if (k < K) {
        const VEC x0 = BCAST(in[k]);
        for (int v = 0; v < VP; ++v) even[v] = FMA(x0, WLOAD(w + k * PW + v * VW), even[v]);
    }
    for (int v = 0; v < VP; ++v) {
        const VEC sum = ADD(even[v], odd[v]);
        STORE(o + v * VW, accumulate ? ADD(LOAD(o + v * VW), sum) : sum);
    }
}

/* One row across `columns` columns (a multiple of PW), panel by panel; w: the first panel,
 * the next ones `panel` elements apart. */
ATTR static void ISA(one_row_panels)(const float *in, int64_t K, const WT *__restrict w,
                                     int64_t panel, float *o, int accumulate, int64_t columns) {
    for (int64_t c = 0; c < columns; c += PW)
        ISA(one_row_panel)(in, K, w + (c / PW) * panel, o + c, accumulate);
}

/* One row group (r <= RM rows) across `columns` columns (a multiple of 64): strips of
 * V_FOR(r) vectors, each one or more whole panels. w: the panel of the first column.
 * Prefetching: with `pf`, the first strip prefetches the caller's next tile (all `columns`
 * wide, see tiles_from_blocks), into L2 and L3 only with `stream`, and the others nothing;
 * without, with `stream`, every strip prefetches ahead in its own run (see tile). */
#define ISA_STRIPS(R)                                                                         \
    do {                                                                                      \
        float *o_[RMAX];                                                                      \
        const int64_t step = V_FOR(R) * VW;                                                   \
        for (int64_t c = 0; c < columns; c += step) {                                         \
            for (int i = 0; i < (R); ++i) o_[i] = o[i] + c;                                   \
            ISA(tile_rows_##R)(in, K, w + (c / PW) * panel, panel, o_, accumulate,             \
                      c ? 0 : pf, columns / PW, c && pf ? 0 : stream);                        \
        }                                                                                     \
    } while (0)

ATTR static void ISA(group)(const float *const *in, int64_t K, const WT *__restrict w,
                            int64_t panel, float *const *o, int accumulate, int r,
                            int64_t columns, const WT *pf, int stream) {
    switch (r) {
    case 1: ISA_STRIPS(1); break;
    case 2: ISA_STRIPS(2); break;
    case 3: ISA_STRIPS(3); break;
    case 4: ISA_STRIPS(4); break;
    case 5: ISA_STRIPS(5); break;
#if RM > 6
    case 6: ISA_STRIPS(6); break;
    case 7: ISA_STRIPS(7); break;
    default: ISA_STRIPS(8); break;
#else
    default: ISA_STRIPS(6); break;
#endif
    }
}
#undef ISA_STRIPS

/* A group of a block's rows that streams its weights (rows_times_blocks, accumulate_columns):
 * the block's first group reads them from L3 or memory, prefetching ahead, a one-row group
 * only where the CPU gains by it (one_row_streams) and else panel by panel; the next groups
 * find them in L2. Arguments as for group; `first`: the block's first group. */
ATTR static void ISA(streamed_group)(const float *const *in, int64_t K, const WT *__restrict w,
                                     int64_t panel, float *const *o, int accumulate, int r,
                                     int64_t columns, int first) {
    if (r == 1 && !one_row_streams)
        ISA(one_row_panels)(in[0], K, w, panel, o[0], accumulate, columns);
    else
        ISA(group)(in, K, w, panel, o, accumulate, r, columns, 0, first);
}

/* out[p, :S] = x[ex[p], :D] @ W[block, :D, :S] for every pair p of every span; W in panels
 * (K, S / PW, D, PW). */
ATTR static void ISA(rows_times_blocks)(const float *__restrict x, int64_t D, const int64_t *ex,
                                        const void *W_, int64_t S, const int64_t *spans,
                                        int64_t G, float *__restrict out) {
    const WT *W = (const WT *)W_;
    for (int64_t g = 0; g < G; ++g) {
        const WT *Wk = W + spans[3 * g] * D * S;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p0 = start, r; p0 < end; p0 += r) {
            r = group_rows(end - p0, RM);
            const float *in[RMAX];
            float *o[RMAX];
            for (int i = 0; i < r; ++i) {
                in[i] = x + ex[p0 + i] * D;
                o[i] = out + (p0 + i) * S;
            }
            ISA(streamed_group)(in, D, Wk, D * PW, o, 0, (int)r, S, p0 == start);
        }
    }
}

/* out[ex[p], c_begin : c_end] += h[p, :S] @ W[block, :S, c_begin : c_end] for every pair p of
 * every span; W in panels (K, N / PW, S, PW); c_begin and c_end multiples of 64. */
ATTR static void ISA(accumulate_columns)(const float *__restrict h, int64_t S, const int64_t *ex,
                                         const void *W_, int64_t N, const int64_t *spans,
                                         int64_t G, float *__restrict out, int64_t c_begin,
                                         int64_t c_end) {
    const WT *W = (const WT *)W_;
    for (int64_t g = 0; g < G; ++g) {
        const WT *Wk = W + spans[3 * g] * S * N + (c_begin / PW) * S * PW;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p0 = start, r; p0 < end; p0 += r) {
            r = group_rows(end - p0, RM);
            const float *in[RMAX];
            float *o[RMAX];
            for (int i = 0; i < r; ++i) {
                in[i] = h + (p0 + i) * S;
                o[i] = out + ex[p0 + i] * N + c_begin;
            }
            ISA(streamed_group)(in, S, Wk, S * PW, o, 1, (int)r, c_end - c_begin, p0 == start);
        }
    }
}

/* The first input block from j on that some pair of start .. end reads, or J. */
static inline int64_t ISA(next_read)(const uint8_t *reads, int64_t J, const int64_t *ex,
                                     int64_t start, int64_t end, int64_t j) {
    for (; j < J; ++j)
        for (int64_t p = start; p < end; ++p)
            if (reads[ex[p] * J + j]) return j;
    return J;
}

/* A gated layer reading a gated layer's output: for every pair p of every span,
 *   out[p, :S] = sum over input blocks j with reads[ex[p] * J + j] != 0 of
 *                x[ex[p], j*Sin:(j+1)*Sin] @ W[block, j*Sin:(j+1)*Sin, :S]
 * W in panels (K, S / PW, J * Sin, PW). Per (block, input block) the weight tile (Sin x S) is
 * read once per row group of the pairs that read that input block. The tiles read jump over
 * those no pair reads, which the hardware's prefetchers cannot follow (they stay within a
 * page), so each tile's first row group prefetches the next tile read, row by row as it
 * reads its own, into the caches where that pays on this CPU (tile_prefetches,
 * block_kernels.c). */
ATTR static void ISA(tiles_from_blocks)(const float *__restrict x, int64_t Sin,
                                        const uint8_t *reads, int64_t J, const int64_t *ex,
                                        const void *W_, int64_t S, const int64_t *spans,
                                        int64_t G, float *__restrict out) {
    const WT *W = (const WT *)W_;
    int64_t D = J * Sin;
    /* The setting read once per call, not per tile. */
    const int prefetching = tile_prefetches != TILE_PREFETCH_OFF;
    const int into_l2 = tile_prefetches == TILE_PREFETCH_L2;
    for (int64_t g = 0; g < G; ++g) {
        const WT *Wk = W + spans[3 * g] * D * S;
        int64_t start = spans[3 * g + 1], end = spans[3 * g + 2];
        for (int64_t p = start; p < end; ++p)
            for (int64_t c = 0; c < S; ++c) out[p * S + c] = 0.0f;
        for (int64_t j = ISA(next_read)(reads, J, ex, start, end, 0), after; j < J; j = after) {
            after = ISA(next_read)(reads, J, ex, start, end, j + 1);
            const WT *pf = prefetching && after < J ? Wk + after * Sin * PW : 0;
            int64_t p = start;
            while (p < end) {
                int64_t rows[RMAX], n = 0; /* the next pairs that read input block j */
                for (; p < end && n < RM; ++p)
                    if (reads[ex[p] * J + j]) rows[n++] = p;
                if (n == 0) break;
                const float *in[RMAX];
                float *o[RMAX];
                for (int64_t i = 0; i < n; ++i) {
                    in[i] = x + ex[rows[i]] * D + j * Sin;
                    o[i] = out + rows[i] * S;
                }
                ISA(group)(in, Sin, Wk + j * Sin * PW, D * PW, o, 1, (int)n, S, pf, into_l2);
                pf = 0;
            }
        }
    }
}

#if !WBF16
/* A reader narrower than the panels (N columns, any number): for every pair p of every span,
 *   out[ex[p], :N] += h[p, :S] @ W[block, :S, :N]
 * with W transposed per block, (K, N, S), so each output column's weights are one contiguous
 * run of S: a dot product per (pair, column), its vector lanes summed at the end. S is a
 * gated layer's block size (a multiple of 64) or, for a lone example's dense row
 * (lone_forward.h), any width: a tail past the last 2 * VW runs in scalars. A class read-out
 * of a handful of columns costs too little to split over threads. */
ATTR static void ISA(accumulate_narrow)(const float *__restrict h, int64_t S, const int64_t *ex,
                                        const float *__restrict Wt, int64_t N,
                                        const int64_t *spans, int64_t G,
                                        float *__restrict out) {
    for (int64_t g = 0; g < G; ++g) {
        const float *Wk = Wt + spans[3 * g] * N * S;
        for (int64_t p = spans[3 * g + 1]; p < spans[3 * g + 2]; ++p) {
            const float *hp = h + p * S;
            float *op = out + ex[p] * N;
            for (int64_t n = 0; n < N; ++n) {
                const float *w = Wk + n * S;
                VEC a = ZERO(), b = ZERO();
                int64_t k = 0;
                for (; k + 2 * VW <= S; k += 2 * VW) {
                    a = FMA(LOAD(hp + k), LOAD(w + k), a);
                    b = FMA(LOAD(hp + k + VW), LOAD(w + k + VW), b);
                }
                float lanes[VW], sum = 0.0f;
                STORE(lanes, ADD(a, b));
                for (int i = 0; i < VW; ++i) sum += lanes[i];
                for (; k < S; ++k) sum += hp[k] * w[k]; /* a dense row's odd width */
                op[n] += sum;
            }
        }
    }
}

#define ISA_NARROW ISA(accumulate_narrow)
#else
#define ISA_NARROW 0
#endif

static const kernel_set ISA(set) = {ISA(rows_times_blocks), ISA(accumulate_columns),
                                    ISA(tiles_from_blocks), ISA_NARROW, PW};

#undef ISA_NARROW
#undef LINE_ELEMENTS
#undef VP
#undef ISA
#undef WT
#undef WLOAD
#undef WBF16
#ifdef ANOTHER_PRECISION_FOLLOWS
#undef ANOTHER_PRECISION_FOLLOWS
#else
#undef ATTR
#undef VEC
#undef VW
#undef PW
#undef LOAD
#undef STORE
#undef BCAST
#undef ZERO
#undef FMA
#undef ADD
#undef V_FOR
#undef RM
#endif
