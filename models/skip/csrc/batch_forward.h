/* A batch's whole forward in one call (models/skip/batch_program.py builds the program from the
 * same stages as a lone example's; block_kernels.c includes this after lone_forward.h).
 *
 * At batch 64 and a tenth of the blocks on, the grouped products stream a layer's weights at
 * about the cache's bandwidth, and the steps between them in numpy (the gater, the threshold,
 * sorting the pairs by block, bias, activation and gate values, the reports) took as long
 * again. Here every stage runs in C on the same kernels, as the Python engine runs it:
 *   - a gated stage runs its gater over every row (rows of the batch split over the pool; after
 *     a gated stage, each row over the units of the blocks its example computed there), turns
 *     on the blocks whose logit is above the threshold, and computes them as (example, block)
 *     pairs sorted by block. Where the next stage is gated too, an example with at least
 *     `widen_from` of the blocks on computes them all (the off ones times their gate, 0), so
 *     that stage reads its whole row (SkipNetwork._route). After a gated stage, a pair whose
 *     example computed every block of it reads the whole row (the rows kernel), any other only
 *     the input blocks its example computed (the tiles kernel);
 *   - a dense stage reads a gated stage's pairs (each pair's block rows of its weight summed
 *     into its example's row), or dense rows by dot products where it is narrower than the
 *     kernels' panels (a class read-out).
 * A binary gated stage with every gate of the batch on, reading whole rows, can run faster as
 * one dense product on some machines (`_AllOn` in cpu.py, which measures it): with
 * `stop_all_on` the forward stops there and says where, and the caller runs the batch its own
 * way.
 *
 * Working memory is allocated per call, as in lone_forward.h. */

#define BATCH_SPAN_ROWS 16 /* rows per span of a gater's product: the spans the pool shares out */

/* A gated stage's output as the next stage reads it: pairs sorted by block (values (P, S),
 * their examples, spans (block, start, end) one per block with pairs), and the blocks each
 * example computed. */
typedef struct {
    const float *pairs;
    const int64_t *examples, *spans;
    const uint8_t *reads;      /* (B, K): the blocks computed per example */
    const uint8_t *whole;      /* (B): every block computed */
    const int64_t *read_count; /* (B): blocks computed */
    int64_t pairs_count, span_count, blocks, block_size;
} batch_gated_out;

static int64_t batch_gated_bytes(const program_stage *st, int64_t B) {
    const int64_t K = st->blocks, M = st->gater_width;
    return lone_align(B * st->out_width * 4)                       /* pairs */
           + lone_align(B * M * 4) + lone_align(B * K * 4)         /* gater */
           + lone_align(B * K * 8) + lone_align(9 * K * 8)         /* examples, 3 span lists */
           + lone_align(2 * K * 8)                                 /* per-block counts */
           + lone_align(B * K) + lone_align(B) + lone_align(B * 8); /* reads, whole, counts */
}

/* x (B, D) @ W (D, M) for every row: in the kernels (rows split over the pool) where W is
 * packed, else a row at a time. */
static void batch_rows_times(const float *x, int64_t B, int64_t D, const float *panels,
                             const float *W, int64_t M, float *y, const int64_t *iota,
                             const int64_t *row_spans, int64_t row_span_count, int64_t threads,
                             int64_t threads_from) {
    if (panels) {
        grouped_products(set_for(FLOAT32), 0, x, D, iota, panels, M, row_spans, row_span_count,
                         y, lone_threads(B * D * M, threads, threads_from), 0, 0);
        return;
    }
    for (int64_t b = 0; b < B; ++b) lone_row_times(x + b * D, D, W, M, y + b * M);
}

/* A gated stage's working memory (batch_gated_bytes of it), carved into its arrays. */
typedef struct {
    float *pairs, *hidden, *logits;
    int64_t *examples, *spans, *row_list, *tile_list, *n_whole, *n_part;
    uint8_t *reads, *whole;
    int64_t *read_count;
} batch_scratch;

static batch_scratch batch_carve(const program_stage *st, int64_t B, char *memory) {
    const int64_t K = st->blocks, S = st->block_size, M = st->gater_width;
    batch_scratch s;
    s.pairs = (float *)memory;
    s.hidden = (float *)(memory += lone_align(B * K * S * 4));
    s.logits = (float *)(memory += lone_align(B * M * 4));
    s.examples = (int64_t *)(memory += lone_align(B * K * 4));
    s.spans = (int64_t *)(memory += lone_align(B * K * 8));
    s.row_list = s.spans + 3 * K, s.tile_list = s.spans + 6 * K;
    s.n_whole = (int64_t *)(memory += lone_align(9 * K * 8));
    s.n_part = s.n_whole + K;
    s.reads = (uint8_t *)(memory += lone_align(2 * K * 8));
    s.whole = s.reads + lone_align(B * K);
    s.read_count = (int64_t *)(s.whole + lone_align(B));
    return s;
}

static void batch_blocks(const program_stage *st, int64_t B, const float *in,
                         const batch_gated_out *prev, const float *gates,
                         const batch_scratch *scratch, float *row, int64_t threads,
                         int64_t threads_from, batch_gated_out *result);

/* A gated stage over B rows `in`. Writes the gate values (B, K), the blocks on and computed per
 * example (at `active[b * G]`, `computed[b * G]`), the stage's output rows into `row` (B, K * S)
 * where the next stage reads them (non-null), and `result`. Returns 1 where it stopped before
 * its products, every gate on (see the file's comment), else 0. */
static int batch_gated(const program_stage *st, int64_t B, const float *in,
                       const batch_gated_out *prev, char *memory, float *row,
                       const int64_t *iota, const int64_t *row_spans, int64_t row_span_count,
                       float *gates, int64_t *active, int64_t *computed, int64_t G,
                       int64_t threads, int64_t threads_from, int stop_all_on,
                       batch_gated_out *result) {
    const int64_t D = st->in_width, K = st->blocks, M = st->gater_width;
    const batch_scratch scratch = batch_carve(st, B, memory);
    float *hidden = scratch.hidden, *logits = scratch.logits;
    uint8_t *reads = scratch.reads, *whole = scratch.whole;
    int64_t *read_count = scratch.read_count;

    /* The gater: after a gated stage, each row reading only the units of the blocks its
     * example computed there, as the main path does (the others are zeros); else every input
     * unit of every row. */
    if (prev) {
        const int64_t J = prev->blocks, Sin = D / J;
        if (st->gater_panels) { /* the blocks computed there are its pairs */
            grouped_products(set_for(FLOAT32), 2, in, Sin, iota, st->gater_panels, M, row_spans,
                             row_span_count, hidden,
                             lone_threads(prev->pairs_count * Sin * M, threads, threads_from),
                             prev->reads, J);
        } else {
            for (int64_t b = 0; b < B; ++b)
                lone_row_times_blocks(in + b * D, Sin, prev->reads + b * J, J, st->gater_first,
                                      M, hidden + b * M);
        }
    } else {
        batch_rows_times(in, B, D, st->gater_panels, st->gater_first, M, hidden, iota,
                         row_spans, row_span_count, threads, threads_from);
    }
    if (st->gater_hidden_bias) {
        for (int64_t b = 0; b < B; ++b)
            for (int64_t m = 0; m < M; ++m)
                hidden[b * M + m] = lone_tanh(hidden[b * M + m] + st->gater_hidden_bias[m]);
        batch_rows_times(hidden, B, M, st->gater_out_panels, st->gater_out, K, logits, iota,
                         row_spans, row_span_count, threads, threads_from);
    } else {
        logits = hidden; /* M = K */
    }

    /* Gates, and the blocks each example computes. */
    const float threshold = (float)st->threshold;
    int every_on = 1, prev_whole = 1;
    for (int64_t b = 0; b < B; ++b) {
        int64_t count = 0;
        for (int64_t k = 0; k < K; ++k) {
            const float logit = logits[b * K + k] + st->gater_out_bias[k];
            /* A gate whose value is 0 (one underflowed) multiplies nothing: off, as in Python. */
            const float value =
                logit > threshold ? lone_gate_value(logit, st->gate_value) : 0.0f;
            gates[b * K + k] = value;
            reads[b * K + k] = value != 0.0f;
            count += value != 0.0f;
        }
        every_on &= count == K;
        active[b * G] = count;
        if (count < K && (double)count >= st->widen_from * (double)K) {
            memset(reads + b * K, 1, K);
            count = K;
        }
        computed[b * G] = read_count[b] = count;
        whole[b] = count == K;
        if (prev) prev_whole &= prev->whole[b];
    }
    if (stop_all_on && every_on && st->gate_value == LONE_GATE_ONE && prev_whole) return 1;
    batch_blocks(st, B, in, prev, gates, &scratch, row, threads, threads_from, result);
    return 0;
}

/* A gated stage's blocks, given its gate values (B, K) and the blocks each example computes
 * (scratch->reads; after a gated stage also ->whole and ->read_count): the (example, block)
 * pairs sorted by block, their products, then bias, activation and gate value per pair, into
 * `result` and, where non-null, the stage's output rows `row` (B, K * S), off blocks zero. */
static void batch_blocks(const program_stage *st, int64_t B, const float *in,
                         const batch_gated_out *prev, const float *gates,
                         const batch_scratch *scratch, float *row, int64_t threads,
                         int64_t threads_from, batch_gated_out *result) {
    const kernel_set *main = set_for((int)st->precision);
    const int64_t D = st->in_width, K = st->blocks, S = st->block_size;
    float *pairs = scratch->pairs;
    int64_t *examples = scratch->examples, *spans = scratch->spans;
    int64_t *row_list = scratch->row_list, *tile_list = scratch->tile_list;
    int64_t *n_whole = scratch->n_whole, *n_part = scratch->n_part;
    const uint8_t *reads = scratch->reads;

    /* Pairs sorted by block, each block's examples in order: first those reading their whole
     * input row (every one, after a dense row), then those reading part of it. */
    memset(n_whole, 0, 2 * K * 8);
    for (int64_t b = 0; b < B; ++b) {
        int64_t *n = !prev || prev->whole[b] ? n_whole : n_part;
        for (int64_t k = 0; k < K; ++k) n[k] += reads[b * K + k];
    }
    int64_t P = 0, spans_n = 0, rows_n = 0, tiles_n = 0, rows_pairs = 0;
    for (int64_t k = 0; k < K; ++k) {
        const int64_t w = n_whole[k], p = n_part[k];
        rows_pairs += w;
        if (w) {
            int64_t *s = row_list + 3 * rows_n++;
            s[0] = k, s[1] = P, s[2] = P + w;
        }
        if (p) {
            int64_t *s = tile_list + 3 * tiles_n++;
            s[0] = k, s[1] = P + w, s[2] = P + w + p;
        }
        if (w + p) {
            int64_t *s = spans + 3 * spans_n++;
            s[0] = k, s[1] = P, s[2] = P + w + p;
        }
        n_part[k] = P + w; /* from here on: where the block's next partial pair goes */
        n_whole[k] = P;    /* and its next whole one */
        P += w + p;
    }
    for (int64_t b = 0; b < B; ++b) {
        int64_t *next = !prev || prev->whole[b] ? n_whole : n_part;
        for (int64_t k = 0; k < K; ++k)
            if (reads[b * K + k]) examples[next[k]++] = b;
    }

    /* The products: whole input rows, then the input blocks computed before. */
    if (rows_n)
        grouped_products(main, 0, in, D, examples, st->panels, S, row_list, rows_n, pairs,
                         lone_threads(rows_pairs * D * S, threads, threads_from), 0, 0);
    if (tiles_n) {
        const int64_t Sin = D / prev->blocks;
        /* Each partial example's pairs read its computed input blocks: blocks on x Sin x S. */
        int64_t macs = 0;
        for (int64_t i = 0; i < tiles_n; ++i)
            for (int64_t p = tile_list[3 * i + 1]; p < tile_list[3 * i + 2]; ++p)
                macs += prev->read_count[examples[p]];
        grouped_products(main, 2, in, Sin, examples, st->panels, S, tile_list, tiles_n, pairs,
                         lone_threads(macs * Sin * S, threads, threads_from), prev->reads,
                         prev->blocks);
    }

    /* Bias, activation and gate value per pair; the output rows where the next stage reads
     * them (off blocks zero). */
    if (row) memset(row, 0, B * K * S * 4);
    for (int64_t i = 0; i < spans_n; ++i) {
        const int64_t k = spans[3 * i];
        const float *bias = st->bias + k * S;
        for (int64_t p = spans[3 * i + 1]; p < spans[3 * i + 2]; ++p) {
            float *v = pairs + p * S;
            for (int64_t c = 0; c < S; ++c) v[c] += bias[c];
            lone_activate(v, S, st->activation);
            const float value = gates[examples[p] * K + k];
            if (value == 0.0f) /* an off block computed anyway adds nothing, even inf or NaN */
                memset(v, 0, S * 4);
            else if (value != 1.0f)
                for (int64_t c = 0; c < S; ++c) v[c] *= value;
            if (row) memcpy(row + (examples[p] * K + k) * S, v, S * 4);
        }
    }
    *result = (batch_gated_out){pairs, examples, spans, reads, scratch->whole,
                                scratch->read_count, P, spans_n, K, S};
}

/* A dense stage over B rows: out = activation(bias + input @ W.T), reading a gated stage's
 * pairs (`prev`) or dense rows `in` (dot products: the program gives such a stage only when it
 * is narrower than the panels). */
static void batch_dense(const program_stage *st, int64_t B, const float *in,
                        const batch_gated_out *prev, float *out, const int64_t *iota,
                        int64_t threads, int64_t threads_from) {
    const int64_t N = st->out_width;
    for (int64_t b = 0; b < B; ++b) memcpy(out + b * N, st->bias, N * 4);
    if (prev) {
        const int64_t P = prev->pairs_count, S = prev->block_size;
        if (P && st->panels)
            grouped_products(set_for((int)st->precision), 1, prev->pairs, S, prev->examples,
                             st->panels, N, prev->spans, prev->span_count, out,
                             lone_threads(P * S * N, threads, threads_from), 0, 0);
        else if (P)
            set_for(FLOAT32)->narrow(prev->pairs, S, prev->examples, st->columns, N,
                                     prev->spans, prev->span_count, out);
    } else {
        const int64_t every_row[3] = {0, 0, B};
        set_for(FLOAT32)->narrow(in, st->in_width, iota, st->columns, N, every_row, 1, out);
    }
    lone_activate(out, B * N, st->activation);
}

/* The forward of B examples x (B, D) through n stages, the last one the read-out. Writes the
 * logits (B, C); per gated stage g of G the blocks on of example b into counts[b * G + g] and
 * the blocks computed into counts[(B + b) * G + g] (counts (2, B, G)); and each gated stage's
 * gate values (B, K), one stage after another, into `gates`. Products of `threads_from`
 * multiply-adds or more run on `threads` threads. Returns 0; i + 1 where, with `stop_all_on`,
 * it stopped at stage i (every gate on: see the file's comment); or -1 where its working
 * memory could not be allocated. */
int64_t batch_forward(const program_stage *stages, int64_t n, int64_t B, const float *x,
                      float *logits, int64_t *counts, float *gates, int64_t threads,
                      int64_t threads_from, int64_t stop_all_on) {
    const int64_t row_span_count = (B + BATCH_SPAN_ROWS - 1) / BATCH_SPAN_ROWS;
    int64_t G = 0, bytes = lone_align(B * 8) + lone_align(row_span_count * 3 * 8);
    for (int64_t i = 0; i < n; ++i) {
        bytes += lone_align(B * stages[i].out_width * 4);
        if (stages[i].kind == LONE_GATED) {
            bytes += batch_gated_bytes(&stages[i], B);
            ++G;
        }
    }
    char *memory = (char *)aligned_alloc(64, (size_t)bytes);
    if (!memory) return -1;
    if (threads > 1) pool_nudge(); /* workers asleep since the last request start spinning */
    int64_t *iota = (int64_t *)memory, *row_spans = iota + lone_align(B * 8) / 8;
    for (int64_t b = 0; b < B; ++b) iota[b] = b;
    for (int64_t r = 0; r < row_span_count; ++r) {
        row_spans[3 * r] = 0;
        row_spans[3 * r + 1] = r * BATCH_SPAN_ROWS;
        row_spans[3 * r + 2] = r + 1 < row_span_count ? (r + 1) * BATCH_SPAN_ROWS : B;
    }
    char *next = memory + lone_align(B * 8) + lone_align(row_span_count * 3 * 8);

    const float *in = x;
    batch_gated_out outputs[2], *prev = 0;
    int64_t g = 0, status = 0;
    for (int64_t i = 0; i < n; ++i) {
        const program_stage *st = &stages[i];
        float *out = i == n - 1 ? logits : (float *)next;
        next += lone_align(B * st->out_width * 4);
        if (st->kind == LONE_GATED) {
            batch_gated_out *mine = &outputs[g & 1];
            const int read_next = i + 1 < n && stages[i + 1].kind == LONE_GATED;
            if (batch_gated(st, B, in, prev, next, read_next ? out : 0, iota, row_spans,
                            row_span_count, gates, counts + g, counts + B * G + g, G, threads,
                            threads_from, (int)stop_all_on, mine)) {
                status = i + 1;
                break;
            }
            next += batch_gated_bytes(st, B);
            gates += B * st->blocks;
            ++g;
            prev = mine;
        } else {
            batch_dense(st, B, in, prev, out, iota, threads, threads_from);
            prev = 0;
        }
        in = out;
    }
    free(memory);
    return status;
}
