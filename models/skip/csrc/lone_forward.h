/* A lone example's whole forward in one call (models/skip/lone_program.py builds the program;
 * block_kernels.c includes this after its products and thread pool).
 *
 * At batch 1 a layer with a tenth of its blocks on runs two products of tens of microseconds,
 * and the steps between them in numpy (the gater, the threshold, the block list, the bias and
 * activation, the routing) took as long again. Here the same steps run in C, stage after
 * stage, on the same kernels:
 *   - a gated stage runs its gater (after a gated stage, over the units of the blocks that
 *     stage computed, as its main path reads them), turns on the blocks whose logit is above
 *     the threshold, and computes those blocks only (split over the pool as the Python engine
 *     splits them, from `threads_from` multiply-adds); after a gated stage it reads only the
 *     input blocks that stage computed (the tiles kernel);
 *   - a dense stage (a hidden dense layer or the read-out) reads a gated stage's blocks as
 *     pairs (each block's rows of its weight, summed into the output row), or a dense row
 *     whole (a dot product per output unit, units split over the pool).
 * Every block computed is one that is on, so the counts say exactly what ran. A gate on
 * multiplies its block by its value: 1 for binary units, else the estimator's evaluation value
 * of its logit (LONE_GATE_RELU .. LONE_GATE_SQRT_SIGMOID).
 *
 * Working memory is allocated per call, so concurrent callers share nothing but the pool,
 * which serves one of them at a time (thread_pool.h: the others run their chunks alone). */
#include <math.h>
#include <stdlib.h>

enum { LONE_GATED = 0, LONE_DENSE = 1 };
/* Activations, by models.activations' `Activation.code`. */
enum { LONE_LINEAR = 0, LONE_RELU = 1, LONE_TANH = 2, LONE_SIGMOID = 3 };
/* What a gate on is worth, from its logit a: 1, max(0, a), sigm(a), sqrt(sigm(a)). */
enum { LONE_GATE_ONE = 0, LONE_GATE_RELU = 1, LONE_GATE_SIGMOID = 2, LONE_GATE_SQRT_SIGMOID = 3 };

/* One layer of the program; the pointers are into arrays the Python program keeps alive. */
typedef struct {
    int64_t kind;       /* LONE_GATED or LONE_DENSE */
    int64_t in_width;   /* D: units of the stage's input */
    int64_t out_width;  /* N: units of its output (K * S for a gated stage) */
    int64_t activation; /* LONE_LINEAR .. LONE_SIGMOID */
    int64_t precision;  /* of `panels`: FLOAT32 or BFLOAT16 */
    const float *bias;  /* (N) */
    /* Gated: the blocks' weights in panels (K, S / PW, D, PW). Dense after a gated stage of J
     * blocks of Sin units: (J, N / PW, Sin, PW), or null where N is no multiple of 64. */
    const void *panels;
    /* Dense, each output unit's weights contiguous: (J, N, Sin) after a gated stage (where
     * `panels` is null), (N, D) after a dense row. */
    const float *columns;
    int64_t blocks, block_size; /* gated: K, S */
    int64_t gater_width;        /* gated: M, the gater's first product's outputs */
    const float *gater_panels;  /* (1, M / PW, D, PW) float32, or null: gater_first */
    const float *gater_first;   /* (D, M) row-major */
    const float *gater_hidden_bias; /* (M), or null: no hidden layer (then M = K) */
    const float *gater_out;     /* (M, K) row-major, with a hidden layer */
    const float *gater_out_bias; /* (K) */
    double threshold;           /* a block is on where its logit (float) is above it */
    int64_t gate_value;         /* gated: LONE_GATE_ONE .. LONE_GATE_SQRT_SIGMOID */
    /* Read by a batch's forward only (batch_forward.h): */
    const float *gater_out_panels; /* (1, K / PW, M, PW) float32, or null: gater_out */
    double widen_from; /* an example with this fraction of the blocks on computes them all */
} program_stage;

/* A gated stage's blocks on as the next stage reads them besides its row (every unit, off
 * blocks zero): as pairs, one per block (values (P, S), spans (block, p, p + 1)). */
typedef struct {
    const float *pairs;
    const int64_t *spans;
    const uint8_t *on; /* (K) */
    int64_t pairs_count, blocks, block_size;
} lone_gated_out;

static const int64_t LONE_ONE_SPAN[3] = {0, 0, 1};

static inline int64_t lone_threads(int64_t macs, int64_t threads, int64_t threads_from) {
    return macs >= threads_from ? threads : 1;
}

/* tanh(x) within 1.4e-7 of the exact value (libm's tanhf: 2e-8) in arithmetic the compiler
 * vectorizes, where libm's is a call per element: at batch 64 a gater's hidden layer (4096
 * values) took 64 us through tanhf, a quarter of a 10 % layer's Python-free overhead. Near 0
 * an odd Taylor polynomial (its next term under 2e-8 below 0.3); elsewhere
 * 1 - 2 / (e^{2|x|} + 1), with e^{2|x|} = 2^n e^r, |r| <= ln 2 / 2, e^r by its Taylor
 * polynomial of degree 6; |x| past 9 gives 1 (tanh(9) rounds to 1 in float). NaN stays NaN.
 * Selects rather than branches, so the loops calling it vectorize. */
static inline float lone_tanh(float x) {
    const float ax = fabsf(x), a = ax < 9.0f ? ax : 9.0f;
    const float t = a * 2.88539008177792681f; /* 2a log2(e) */
    const int32_t n = (int32_t)(t + 0.5f);
    const float r = (t - (float)n) * 0.69314718055994531f;
    float e = 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    const int32_t bits = (n + 127) << 23; /* 2^n, n in 0 .. 26 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float big = 1.0f - 2.0f / (e * scale + 1.0f);
    const float x2 = x * x;
    const float small =
        x + x * x2 * (-1.0f / 3.0f +
                      x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f + x2 * (62.0f / 2835.0f))));
    const float signed_big = x < 0.0f ? -big : big;
    const float out = a < 0.3f ? small : signed_big;
    return x != x ? x : out;
}

static void lone_activate(float *v, int64_t n, int64_t activation) {
    switch (activation) {
    case LONE_RELU:
        /* NaN (from +inf + -inf in an overflowing sum) stays NaN, as torch's relu keeps
         * it: such an example has no answer, and its logits must say so. */
        for (int64_t i = 0; i < n; ++i) v[i] = v[i] < 0.0f ? 0.0f : v[i];
        break;
    case LONE_TANH:
        for (int64_t i = 0; i < n; ++i) v[i] = lone_tanh(v[i]);
        break;
    case LONE_SIGMOID: /* through tanh, which cannot overflow the way exp(-x) can */
        for (int64_t i = 0; i < n; ++i) v[i] = 0.5f * lone_tanh(0.5f * v[i]) + 0.5f;
        break;
    default:
        break;
    }
}

/* log(sigm(a)), without overflow either side. */
static inline float lone_log_sigmoid(float a) {
    return a >= 0.0f ? -log1pf(expf(-a)) : a - log1pf(expf(a));
}

static inline float lone_gate_value(float a, int64_t kind) {
    switch (kind) {
    case LONE_GATE_RELU: return a > 0.0f ? a : 0.0f;
    case LONE_GATE_SIGMOID: return expf(lone_log_sigmoid(a));
    case LONE_GATE_SQRT_SIGMOID: return expf(0.5f * lone_log_sigmoid(a));
    default: return 1.0f;
    }
}

/* y (M) += x (D) @ W (D, M) row-major: the gater's small products. */
static void lone_row_times_add(const float *x, int64_t D, const float *W, int64_t M, float *y) {
    for (int64_t d = 0; d < D; ++d) {
        const float xd = x[d], *w = W + d * M;
        for (int64_t m = 0; m < M; ++m) y[m] += xd * w[m];
    }
}

/* y (M) = x (D) @ W (D, M). */
static void lone_row_times(const float *x, int64_t D, const float *W, int64_t M, float *y) {
    for (int64_t m = 0; m < M; ++m) y[m] = 0.0f;
    lone_row_times_add(x, D, W, M, y);
}

/* The same, reading only the input blocks j (of J, Sin units each) where on[j]: a gater after
 * a gated stage, whose off blocks' units are zeros. */
static void lone_row_times_blocks(const float *x, int64_t Sin, const uint8_t *on, int64_t J,
                                  const float *W, int64_t M, float *y) {
    for (int64_t m = 0; m < M; ++m) y[m] = 0.0f;
    for (int64_t j = 0; j < J; ++j)
        if (on[j]) lone_row_times_add(x + j * Sin, Sin, W + j * Sin * M, M, y);
}

/* A dense row times (N, D) columns, output units split into runs, one a chunk. */
typedef struct {
    const kernel_set *set;
    const float *x;
    int64_t D, N, chunks;
    const int64_t *zeros;
    const float *columns;
    float *out;
} lone_dots_job;

static void lone_dots_chunk(void *arg, int64_t c) {
    const lone_dots_job *j = (const lone_dots_job *)arg;
    int64_t n0 = j->N * c / j->chunks, n1 = j->N * (c + 1) / j->chunks;
    /* One pair, one block: the kernel's block offset is 0, so a run of units is a run of
     * columns and of the output. */
    if (n1 > n0)
        j->set->narrow(j->x, j->D, j->zeros, j->columns + n0 * j->D, n1 - n0, LONE_ONE_SPAN, 1,
                       j->out + n0);
}

/* Working memory of a stage, in bytes (each piece 64-byte aligned). */
static inline int64_t lone_align(int64_t bytes) { return (bytes + 63) & ~(int64_t)63; }

static int64_t lone_stage_bytes(const program_stage *st) {
    int64_t bytes = lone_align(st->out_width * 4);
    if (st->kind == LONE_GATED) {
        int64_t K = st->blocks;
        bytes += lone_align(st->out_width * 4)                       /* pairs */
                 + lone_align(st->gater_width * 4) + lone_align(K * 4) /* gater */
                 + lone_align(3 * K * 8) + lone_align(K);              /* spans, on */
    }
    return bytes;
}

/* A gated stage: gater, threshold, the blocks on. `in` is the input row; `prev` the gated
 * stage before, or null. Writes the gate values (K) and returns the blocks on. */
static int64_t lone_gated(const program_stage *st, const float *in, const lone_gated_out *prev,
                          char *memory, float *row, const int64_t *zeros, float *gates,
                          int64_t threads, int64_t threads_from, lone_gated_out *result) {
    const kernel_set *f32 = set_for(FLOAT32), *main = set_for((int)st->precision);
    const int64_t D = st->in_width, K = st->blocks, S = st->block_size, M = st->gater_width;
    float *pairs = (float *)memory;
    float *hidden = (float *)(memory += lone_align(K * S * 4));
    float *logits = (float *)(memory += lone_align(M * 4));
    int64_t *spans = (int64_t *)(memory += lone_align(K * 4));
    uint8_t *on = (uint8_t *)(memory + lone_align(3 * K * 8));

    /* The gater: after a gated stage that computed some of its blocks, reading only their
     * units, as the main path does (the others are zeros); else every input unit. */
    if (prev && prev->pairs_count < prev->blocks) {
        const int64_t Sin = D / prev->blocks;
        if (st->gater_panels)
            f32->tiles(in, Sin, prev->on, prev->blocks, zeros, st->gater_panels, M,
                       LONE_ONE_SPAN, 1, hidden);
        else
            lone_row_times_blocks(in, Sin, prev->on, prev->blocks, st->gater_first, M, hidden);
    } else if (st->gater_panels) {
        f32->rows(in, D, zeros, st->gater_panels, M, LONE_ONE_SPAN, 1, hidden);
    } else {
        lone_row_times(in, D, st->gater_first, M, hidden);
    }
    if (st->gater_hidden_bias) {
        for (int64_t m = 0; m < M; ++m) hidden[m] = lone_tanh(hidden[m] + st->gater_hidden_bias[m]);
        lone_row_times(hidden, M, st->gater_out, K, logits);
    } else {
        memcpy(logits, hidden, K * 4);
    }
    const float threshold = (float)st->threshold;
    int64_t P = 0;
    for (int64_t k = 0; k < K; ++k) {
        const float logit = logits[k] + st->gater_out_bias[k];
        /* A gate whose value is 0 (one underflowed) multiplies nothing: off, as in Python. */
        const float value = logit > threshold ? lone_gate_value(logit, st->gate_value) : 0.0f;
        const int is_on = value != 0.0f;
        on[k] = (uint8_t)is_on;
        gates[k] = value;
        if (is_on) {
            spans[3 * P] = k;
            spans[3 * P + 1] = P;
            spans[3 * P + 2] = P + 1;
            ++P;
        }
    }

    /* The blocks on: over the whole input row, or over the input blocks the gated stage
     * before computed. */
    memset(row, 0, K * S * 4);
    if (P) {
        const int64_t read = prev ? prev->pairs_count : 0; /* input blocks computed */
        if (!prev || read == prev->blocks) {
            grouped_products(main, 0, in, D, zeros, st->panels, S, spans, P, pairs,
                             lone_threads(P * D * S, threads, threads_from), 0, 0);
        } else {
            int64_t Sin = D / prev->blocks;
            grouped_products(main, 2, in, Sin, zeros, st->panels, S, spans, P, pairs,
                             lone_threads(P * read * Sin * S, threads, threads_from), prev->on,
                             prev->blocks);
        }
        for (int64_t p = 0; p < P; ++p) {
            float *v = pairs + p * S;
            const float *b = st->bias + spans[3 * p] * S;
            for (int64_t c = 0; c < S; ++c) v[c] += b[c];
            lone_activate(v, S, st->activation);
            if (st->gate_value != LONE_GATE_ONE) {
                const float value = gates[spans[3 * p]];
                for (int64_t c = 0; c < S; ++c) v[c] *= value;
            }
            memcpy(row + spans[3 * p] * S, v, S * 4);
        }
    }
    *result = (lone_gated_out){pairs, spans, on, P, K, S};
    return P;
}

/* A dense stage: out = activation(bias + the input @ W.T), reading a gated stage's pairs
 * (`prev`) or the dense row `in`. */
static void lone_dense(const program_stage *st, const float *in, const lone_gated_out *prev,
                       float *out, const int64_t *zeros, int64_t threads,
                       int64_t threads_from) {
    const int64_t N = st->out_width;
    memcpy(out, st->bias, N * 4);
    if (prev) {
        const int64_t P = prev->pairs_count, S = prev->block_size;
        if (P && st->panels) {
            grouped_products(set_for((int)st->precision), 1, prev->pairs, S, zeros, st->panels,
                             N, prev->spans, P, out, lone_threads(P * S * N, threads, threads_from),
                             0, 0);
        } else if (P) {
            set_for(FLOAT32)->narrow(prev->pairs, S, zeros, st->columns, N, prev->spans, P, out);
        }
    } else {
        const int64_t D = st->in_width;
        int64_t parts = lone_threads(N * D, threads, threads_from);
        if (parts > N) parts = N;
        if (parts > POOL_MAX) parts = POOL_MAX;
        lone_dots_job job = {set_for(FLOAT32), in, D, N, parts, zeros, st->columns, out};
        if (!(parts > 1 && pool_run(lone_dots_chunk, &job, parts, parts)))
            for (int64_t c = 0; c < parts; ++c) lone_dots_chunk(&job, c);
    }
    lone_activate(out, N, st->activation);
}

/* The forward of one example x through n stages, the last one the read-out. Writes its logits
 * (the last stage's output), per gated stage g of G the blocks on into counts[g] and the
 * blocks computed (the same) into counts[G + g], and each gated stage's gate values, one
 * after another, into `gates`. Products of `threads_from` multiply-adds or more run on
 * `threads` threads. Returns 0, or -1 where its working memory could not be allocated. */
int64_t lone_forward(const program_stage *stages, int64_t n, const float *x, float *logits,
                     int64_t *counts, float *gates, int64_t threads, int64_t threads_from) {
    /* Working memory: the pairs' example indices (all 0, as many as the most blocks of a
     * stage), then each stage's. */
    int64_t gated = 0, most_blocks = 1, bytes = 0;
    for (int64_t i = 0; i < n; ++i) {
        bytes += lone_stage_bytes(&stages[i]);
        if (stages[i].kind != LONE_GATED) continue;
        ++gated;
        if (stages[i].blocks > most_blocks) most_blocks = stages[i].blocks;
    }
    char *memory = (char *)aligned_alloc(64, (size_t)(bytes + lone_align(most_blocks * 8)));
    if (!memory) return -1;
    if (threads > 1) pool_nudge(); /* workers asleep since the last request start spinning */
    int64_t *zeros = (int64_t *)memory;
    memset(zeros, 0, most_blocks * 8);
    char *next = memory + lone_align(most_blocks * 8);

    const float *in = x;
    lone_gated_out outputs[2], *prev = 0;
    int64_t g = 0;
    for (int64_t i = 0; i < n; ++i) {
        const program_stage *st = &stages[i];
        float *out = i == n - 1 ? logits : (float *)next;
        next += lone_align(st->out_width * 4);
        if (st->kind == LONE_GATED) {
            lone_gated_out *mine = &outputs[g & 1];
            int64_t P = lone_gated(st, in, prev, next, out, zeros, gates, threads, threads_from,
                                   mine);
            next += lone_stage_bytes(st) - lone_align(st->out_width * 4);
            counts[g] = counts[gated + g] = P;
            gates += st->blocks;
            ++g;
            prev = mine;
        } else {
            lone_dense(st, in, prev, out, zeros, threads, threads_from);
            prev = 0;
        }
        in = out;
    }
    free(memory);
    return 0;
}
