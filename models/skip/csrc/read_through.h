/* Reading weights and nothing else: the floor under a forward that streams them
 * (benchmarks/weight_reads.py reads each product's panels through this, on the kernels' threads,
 * beside the forward that multiplies them). block_kernels.c includes this after thread_pool.h.
 *
 * Each thread reads one contiguous share of the bytes, as a product's thread reads its blocks'
 * panels, and folds every 8-byte word into a checksum that the caller gets back, so no read can
 * be left out. With `prefetch` it prefetches STREAM_AHEAD panel rows of 32 floats ahead as the
 * kernels do; without, the hardware's prefetchers alone run ahead. Which is faster depends on
 * the CPU, so the floor is the faster of the two. */

typedef struct {
    const uint64_t *words;
    int64_t count, shares, prefetch;
    uint64_t folded[POOL_MAX];
} read_job;

static void read_share(void *arg, int64_t share) {
    read_job *job = (read_job *)arg;
    const int64_t begin = job->count * share / job->shares;
    const int64_t end = job->count * (share + 1) / job->shares;
    const int64_t ahead = STREAM_AHEAD * 32 * 4 / 8; /* in words */
    uint64_t a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0;
    int64_t i = begin;
#define READ_LINE                                                                             \
    a ^= job->words[i], b ^= job->words[i + 1], c ^= job->words[i + 2];                       \
    d ^= job->words[i + 3], e ^= job->words[i + 4], f ^= job->words[i + 5];                   \
    g ^= job->words[i + 6], h ^= job->words[i + 7]
    /* one 64-byte line a step, in eight independent folds; separate loops, so neither carries
     * a test for the other's prefetch */
    if (job->prefetch) {
        for (; i + 8 <= end; i += 8) {
            __builtin_prefetch(job->words + i + ahead, 0, 3);
            READ_LINE;
        }
    } else {
        for (; i + 8 <= end; i += 8) {
            READ_LINE;
        }
    }
#undef READ_LINE
    for (; i < end; ++i) a ^= job->words[i];
    job->folded[share] = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h;
}

/* Reads `bytes` (a multiple of 8) from p on `threads` threads, prefetching ahead or not;
 * returns the XOR of its 8-byte words. */
uint64_t read_through(const void *p, int64_t bytes, int64_t threads, int64_t prefetch) {
    if (threads > POOL_MAX) threads = POOL_MAX;
    if (threads < 1) threads = 1;
    read_job job = {(const uint64_t *)p, bytes / 8, threads, prefetch, {0}};
    if (!(threads > 1 && pool_run(read_share, &job, threads, threads))) {
        job.shares = 1;
        read_share(&job, 0);
    }
    uint64_t folded = 0;
    for (int64_t s = 0; s < job.shares; ++s) folded ^= job.folded[s];
    return folded;
}
