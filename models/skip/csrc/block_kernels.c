/* Grouped products of the CPU skipping forward (models/skip/c_kernels.py builds and loads this).
 *
 * Pairs (example, block) arrive sorted by block; `spans` holds (block, start, end) triples, one
 * per block present. A block's pairs are cut into row groups of at most RM rows (6, or 8
 * where the set has 32 vector registers), as even as possible, and each group runs
 * register-blocked micro-kernels over the block's weights: the partial sums of the group's rows across a strip of columns stay in vector registers while the
 * strip streams past once. Input rows are read straight from x by example index (no gathered
 * copy): a block has a handful of rows, too few to repay packing them.
 *
 * Weights are packed once, at load, in panels as wide as the chosen set's narrowest tile (see
 * c_kernels.py): a weight (K, R, C) is stored (K, C / PW, R, PW), so a tile's weights are one
 * contiguous stream (twice as fast as strips of wider rows, measured at batch 64). Column
 * counts must be multiples of 64; the Python side checks and falls back to numpy.
 *
 * The micro-kernels are written once (block_kernels_isa.h) and compiled for each instruction
 * set this compiler targets: AVX-512 and AVX2 with FMA on x86-64, and a portable copy in the
 * compiler's generic 16-byte vectors (SSE2 on x86-64, NEON on ARM). The set is chosen at run
 * time from what the CPU reports, so one build runs on any CPU of its architecture.
 *
 * Each set is compiled twice: for float32 weights and for bfloat16 weights (the upper 16 bits
 * of a float32, widened to float32 by a shift as they are loaded; inputs, sums and outputs stay
 * float32). The caller says which precision its panels hold, per call.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define COLUMNS 64 /* column counts are multiples of this; every set's panel divides it */
#define RMAX 8   /* rows per micro-kernel group, at most (each set has its own RM) */
#define VMAX 8   /* vectors per row of a micro-kernel tile, at most */
/* Panel rows ahead of the one being read that a streaming tile prefetches (see tile in
 * block_kernels_isa.h): 4 KiB of 32-float panels, far enough ahead for the reads to arrive
 * while the rows between are multiplied, near enough to stay within what the product reads
 * next (docs/history/stream-prefetch-every-group/). */
#define STREAM_AHEAD 32
/* Whether a row group of one row that streams a block's panels prefetches ahead too (else it
 * reads them panel by panel, leaving the reads to the hardware's prefetchers: one_row_panel
 * in block_kernels_isa.h). A group of several rows multiplies each weight it loads several
 * times, time in which the prefetches' loads land; one row only reads, and whether prefetches
 * beside the hardware's run it faster or only take its load slots depends on the CPU (faster
 * on an Intel Xeon, slower on an AMD EPYC), so the library measures both ways when it loads
 * (prefetch_probes.h) and sets this. */
static int one_row_streams = 1;

/* Set whether one-row groups prefetch ahead (nonzero: they do); returns the setting. */
int set_one_row_prefetch(int on) {
    one_row_streams = on != 0;
    return one_row_streams;
}

int one_row_prefetch(void) { return one_row_streams; }

/* How a gated layer reading a gated layer's output (tiles_from_blocks in block_kernels_isa.h)
 * prefetches the next weight tile it will read as it reads each one: not at all, into every
 * cache level, or into L2 and L3 only. Its tiles are 16 KiB runs that jump over those no pair
 * reads, where the hardware's prefetchers lose the stream. Which pays depends on the CPU: on
 * an Intel Xeon the prefetches into L1 ran the `blocks` model fastest; on an AMD EPYC they
 * slow it (into L1 they seem to take the miss buffers the loads of the tile being read need),
 * while those into L2 speed it up. So the library measures the three when it loads
 * (prefetch_probes.h) and sets this. */
#define TILE_PREFETCH_OFF 0
#define TILE_PREFETCH_L1 1
#define TILE_PREFETCH_L2 2
static int tile_prefetches = TILE_PREFETCH_L1;

/* Set how tiles_from_blocks prefetches its next tile (one of TILE_PREFETCH_*); returns the
 * setting, or -1 (unchanged) for a value that names none. */
int set_tile_prefetch(int way) {
    if (way < TILE_PREFETCH_OFF || way > TILE_PREFETCH_L2) return -1;
    tile_prefetches = way;
    return tile_prefetches;
}

int tile_prefetch(void) { return tile_prefetches; }

/* One set's products for one weight precision; weights are `const void *`, read as the
 * precision's element type. `narrow` (float32 columns) is null in the bfloat16 copies. */
typedef struct {
    void (*rows)(const float *, int64_t, const int64_t *, const void *, int64_t,
                 const int64_t *, int64_t, float *);
    void (*columns)(const float *, int64_t, const int64_t *, const void *, int64_t,
                    const int64_t *, int64_t, float *, int64_t, int64_t);
    void (*tiles)(const float *, int64_t, const uint8_t *, int64_t, const int64_t *,
                  const void *, int64_t, const int64_t *, int64_t, float *);
    void (*narrow)(const float *, int64_t, const int64_t *, const float *, int64_t,
                   const int64_t *, int64_t, float *);
    int64_t panel; /* weight panel width in elements */
} kernel_set;

/* Rows of the next group of a block with n pairs left, groups of at most `most` rows: the
 * groups as even as possible, so with six a block of 7 pairs runs 4 + 3 rows rather than 6 + 1
 * (a one-row group streams the weights for a sixth of the work). */
static inline int64_t group_rows(int64_t n, int64_t most) {
    int64_t groups = (n + most - 1) / most;
    return (n + groups - 1) / groups;
}

/* The portable copy: GCC's generic vectors of 4 floats. */
typedef float v4f __attribute__((vector_size(16)));
static inline v4f v4_load(const float *p) { v4f v; memcpy(&v, p, sizeof v); return v; }
static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }
/* bfloat16 bits to float32: the bits are a float32's upper half. */
static inline v4f v4_load_bf16(const uint16_t *p) {
    uint32_t bits[4];
    for (int i = 0; i < 4; ++i) bits[i] = (uint32_t)p[i] << 16;
    v4f v;
    memcpy(&v, bits, sizeof v);
    return v;
}
#define ATTR
#define VEC v4f
#define VW 4
#define PW 8
#define LOAD(p) v4_load(p)
#define STORE(p, v) v4_store((p), (v))
#define BCAST(f) ((v4f){0, 0, 0, 0} + (f))
#define ZERO() ((v4f){0, 0, 0, 0})
#define FMA(a, b, c) ((a) * (b) + (c))
#define ADD(a, b) ((a) + (b))
/* 16 registers (SSE2; NEON has 32): r * V sums, V loads and a broadcast. */
#define V_FOR(r) ((r) == 1 ? 8 : (r) <= 3 ? 4 : 2)
#define RM 6
#define ISA(name) name##_generic_bf16
#define WT uint16_t
#define WLOAD(p) v4_load_bf16(p)
#define WBF16 1
#define ANOTHER_PRECISION_FOLLOWS
#include "block_kernels_isa.h"
#define ISA(name) name##_generic
#define WT float
#define WLOAD(p) LOAD(p)
#define WBF16 0
#include "block_kernels_isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_SETS 1

#define ATTR __attribute__((target("avx2,fma")))
#define VEC __m256
#define VW 8
#define PW 16
#define LOAD(p) _mm256_loadu_ps(p)
#define STORE(p, v) _mm256_storeu_ps((p), (v))
#define BCAST(f) _mm256_set1_ps(f)
#define ZERO() _mm256_setzero_ps()
#define FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define ADD(a, b) _mm256_add_ps((a), (b))
/* 16 ymm registers: at most 12 sums, beside the weights' V vectors and a broadcast. */
#define V_FOR(r) ((r) == 1 ? 8 : (r) <= 3 ? 4 : 2)
#define RM 6
#define ISA(name) name##_avx2_bf16
#define WT uint16_t
#define WLOAD(p)                                                                              \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                    \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define WBF16 1
#define ANOTHER_PRECISION_FOLLOWS
#include "block_kernels_isa.h"
#define ISA(name) name##_avx2
#define WT float
#define WLOAD(p) LOAD(p)
#define WBF16 0
#include "block_kernels_isa.h"

#define ATTR __attribute__((target("avx512f")))
#define VEC __m512
#define VW 16
#define PW 32
#define LOAD(p) _mm512_loadu_ps(p)
#define STORE(p, v) _mm512_storeu_ps((p), (v))
#define BCAST(f) _mm512_set1_ps(f)
#define ZERO() _mm512_setzero_ps()
#define FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define ADD(a, b) _mm512_add_ps((a), (b))
/* 32 zmm registers: up to 16 sums in groups of up to 8 rows (two vectors each), so a block's
 * weights stream past once for up to 8 of its pairs, where groups of 6 would take two passes
 * (at batch 64 and 10 %, about 6 pairs a block). Groups of 12 (24 sums) ran slower with every
 * block on (docs/history/row-groups-of-eight/). */
#define V_FOR(r) ((r) <= 3 ? 4 : 2)
#define RM 8
#define ISA(name) name##_avx512_bf16
#define WT uint16_t
#define WLOAD(p)                                                                              \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                    \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define WBF16 1
#define ANOTHER_PRECISION_FOLLOWS
#include "block_kernels_isa.h"
#define ISA(name) name##_avx512
#define WT float
#define WLOAD(p) LOAD(p)
#define WBF16 0
#include "block_kernels_isa.h"
#endif

/* Instruction sets, by the numbers c_kernels.py uses. */
enum { SET_GENERIC = 0, SET_AVX2 = 1, SET_AVX512 = 2, SETS = 3 };
/* Weight precisions, by the numbers c_kernels.py uses. */
enum { FLOAT32 = 0, BFLOAT16 = 1, PRECISIONS = 2 };
static const kernel_set *const SET_TABLE[PRECISIONS][SETS] = {
    {&set_generic,
#ifdef HAVE_X86_SETS
     &set_avx2, &set_avx512},
#else
     0, 0},
#endif
    {&set_generic_bf16,
#ifdef HAVE_X86_SETS
     &set_avx2_bf16, &set_avx512_bf16},
#else
     0, 0},
#endif
};

/* Bit s set where this CPU runs set s. */
int kernel_sets_available(void) {
    int sets = 1 << SET_GENERIC;
#ifdef HAVE_X86_SETS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) sets |= 1 << SET_AVX2;
    if (__builtin_cpu_supports("avx512f")) sets |= 1 << SET_AVX512;
#endif
    return sets;
}

static int chosen = SET_GENERIC;

/* The set in use: one per process, as the library is loaded once. */
int kernel_set_chosen(void) { return chosen; }

/* The chosen set's products for weights of precision p (FLOAT32 where p is out of range). */
static const kernel_set *set_for(int p) {
    return SET_TABLE[p == BFLOAT16 ? BFLOAT16 : FLOAT32][chosen];
}

/* The panel width (elements) of the weights set s reads, in either precision. */
int64_t kernel_panel_width(int s) {
    return s >= 0 && s < SETS && SET_TABLE[FLOAT32][s] ? SET_TABLE[FLOAT32][s]->panel : 0;
}

/* Use set s from now on; returns s, or -1 (and changes nothing) where the CPU cannot run it. */
int choose_kernel_set(int s) {
    if (s < 0 || s >= SETS || !(kernel_sets_available() & (1 << s))) return -1;
    chosen = s;
    return s;
}

void rows_times_blocks(int precision, const float *x, int64_t D, const int64_t *ex,
                       const void *W, int64_t S, const int64_t *spans, int64_t G, float *out) {
    set_for(precision)->rows(x, D, ex, W, S, spans, G, out);
}

void accumulate_blocks_times_rows(int precision, const float *h, int64_t S, const int64_t *ex,
                                  const void *W, int64_t N, const int64_t *spans, int64_t G,
                                  float *out) {
    set_for(precision)->columns(h, S, ex, W, N, spans, G, out, 0, N);
}

void accumulate_narrow(const float *h, int64_t S, const int64_t *ex, const float *Wt, int64_t N,
                       const int64_t *spans, int64_t G, float *out) {
    set_for(FLOAT32)->narrow(h, S, ex, Wt, N, spans, G, out);
}

void tiles_from_blocks(int precision, const float *x, int64_t Sin, const uint8_t *reads,
                       int64_t J, const int64_t *ex, const void *W, int64_t S,
                       const int64_t *spans, int64_t G, float *out) {
    set_for(precision)->tiles(x, Sin, reads, J, ex, W, S, spans, G, out);
}

/* The same three products split over `threads` threads (the caller's and the pool's,
 * thread_pool.h). The gated layers' pairs are split by spans, a few chunks per thread taken as
 * threads come free (each chunk writes its own pair rows), which keeps both busy when one
 * starts late. The consumer's are split by output columns, 64 at a time, one run per thread
 * (each owns its columns of every output row): every chunk reads all of the pairs' rows
 * again, and at batch 256 with every block on four chunks a thread ran the layer 1.3x
 * slower than one (medians of three runs, docs/history/thread-pool/). So no thread ever
 * writes where another does.
 * OpenMP is avoided on purpose: a second OpenMP runtime beside torch's would keep its own
 * workers spinning against torch's. */
#include "thread_pool.h"

#define CHUNKS_PER_THREAD 4
#define MAX_CHUNKS (POOL_MAX * CHUNKS_PER_THREAD)

typedef struct {
    int kind; /* 0: rows_times_blocks, 1: accumulate_blocks_times_rows, 2: tiles_from_blocks */
    const float *in; int64_t in_cols; const int64_t *ex; const void *W; int64_t out_cols;
    const int64_t *spans; int64_t G; float *out;
    const uint8_t *reads; int64_t in_blocks; /* tiles: which input blocks each example reads */
    const kernel_set *set;
    int64_t bounds[MAX_CHUNKS + 1]; /* chunk c: spans, or 64-column tiles, bounds[c] .. [c+1] */
} split_t;

static void run_chunk(void *arg, int64_t c) {
    const split_t *j = (const split_t *)arg;
    int64_t a = j->bounds[c], b = j->bounds[c + 1];
    if (j->kind == 0)
        j->set->rows(j->in, j->in_cols, j->ex, j->W, j->out_cols, j->spans + 3 * a, b - a,
                     j->out);
    else if (j->kind == 2)
        j->set->tiles(j->in, j->in_cols, j->reads, j->in_blocks, j->ex, j->W, j->out_cols,
                      j->spans + 3 * a, b - a, j->out);
    else
        j->set->columns(j->in, j->in_cols, j->ex, j->W, j->out_cols, j->spans, j->G, j->out,
                        a * COLUMNS, b * COLUMNS);
}

static void grouped_products(const kernel_set *set, int kind, const float *in,
                             int64_t in_cols, const int64_t *ex, const void *W,
                             int64_t out_cols, const int64_t *spans, int64_t G, float *out,
                             int64_t threads, const uint8_t *reads, int64_t in_blocks) {
    if (threads > POOL_MAX) threads = POOL_MAX;
    if (threads < 1) threads = 1;
    split_t job = {kind, in, in_cols, ex, W, out_cols, spans, G, out, reads, in_blocks, set,
                   {0}};
    int64_t chunks = 0, wanted = kind == 1 ? threads : threads * CHUNKS_PER_THREAD;
    if (kind != 1) { /* contiguous runs of spans with about equal numbers of pairs */
        int64_t total = G ? spans[3 * (G - 1) + 2] - spans[1] : 0, g = 0;
        if (wanted > G) wanted = G;
        for (int64_t c = 0; c < wanted && g < G; ++c) {
            int64_t target = spans[1] + total * (c + 1) / wanted, g1 = g + 1;
            while (g1 < G && spans[3 * g1 + 1] < target) ++g1;
            if (c == wanted - 1) g1 = G;
            job.bounds[chunks++] = g;
            g = g1;
        }
        job.bounds[chunks] = G;
    } else { /* runs of whole 64-column tiles */
        int64_t tiles = out_cols / COLUMNS;
        if (wanted > tiles) wanted = tiles;
        for (int64_t c = 0; c <= wanted; ++c) job.bounds[c] = tiles * c / (wanted ? wanted : 1);
        chunks = wanted;
    }
    if (threads > 1 && chunks > 1 && pool_run(run_chunk, &job, chunks, threads)) return;
    for (int64_t c = 0; c < chunks; ++c) run_chunk(&job, c);
}

void grouped_products_threaded(int kind, int precision, const float *in, int64_t in_cols,
                               const int64_t *ex, const void *W, int64_t out_cols,
                               const int64_t *spans, int64_t G, float *out, int64_t threads,
                               const uint8_t *reads, int64_t in_blocks) {
    grouped_products(set_for(precision), kind, in, in_cols, ex, W, out_cols, spans, G, out,
                     threads, reads, in_blocks);
}

#include "prefetch_probes.h"
#include "read_through.h"
#include "lone_forward.h"
#include "batch_forward.h"
