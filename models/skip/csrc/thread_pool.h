/* A pool of worker threads kept between calls, for block_kernels.c's threaded products.
 *
 * Starting and joining a POSIX thread per product took tens of microseconds, the time of a
 * lone example's whole grouped product at 10 % of blocks (`python -m benchmarks.kernel_threads`),
 * so a split over threads only paid from millions of multiply-adds. The pool's workers stay
 * alive: after a job each one spins for a short while (SPIN_NS) on the round counter, where
 * the next product of the same forward finds it awake, then sleeps on a condition variable
 * until work comes.
 *
 * A job is `count` chunks; the caller and the workers take chunks from one shared ticket
 * until none is left, so a worker that wakes late costs nothing: the caller has taken its
 * chunks. The ticket holds the round, the round's chunk count and the next chunk in one
 * atomic word, so a worker still looking at one round can never take a chunk of the next,
 * nor read one round's count against another's next chunk.
 *
 * One caller at a time: `pool_run` returns 0 without running anything when another thread is
 * using the pool (the caller then runs the job itself), so concurrent forwards stay correct.
 * A forked child starts with no workers (pthread_atfork), as threads do not survive a fork.
 */
#include <stdatomic.h>
#include <sched.h>
#include <time.h>

#define POOL_MAX 64
/* How long an idle worker spins before it sleeps: longer than the bookkeeping between two
 * products of one forward, far shorter than the gap between requests. */
#define SPIN_NS 200000
/* YIELD: a spinning thread yields its core every 256 pauses (a few microseconds). A worker
 * woken by a caller is often placed on the caller's own core (the other one idle, on a
 * virtual machine, slow to wake); spinning there without yielding, it held the caller off
 * that core until the spin ended, and took the event loop's core while a server answered
 * (batch-1 JSON requests 1.13-1.19 ms without yielding, 1.01-1.03 with, `python -m
 * benchmarks.peer`, docs/history/pool-yield/). On a core of its own sched_yield returns at
 * once. */

typedef void (*pool_fn)(void *arg, int64_t chunk);

static struct {
    pthread_mutex_t lock;   /* guards sleeping workers' waits and the pool's growth */
    pthread_cond_t wake;
    pthread_mutex_t caller; /* held by the one caller using the pool */
    int workers;                 /* started so far */
    atomic_uint_fast64_t ticket; /* round << 32 | chunk count << 16 | next chunk to take */
    atomic_int sleepers;         /* workers waiting on `wake` */
    atomic_uint nudges;          /* pool_nudge calls: each sends sleeping workers to spin */
    atomic_int_fast64_t awake_until; /* idle workers spin at least until then (now_ns), 0: no */
    atomic_int_fast64_t done;    /* chunks of the current round finished */
    pool_fn fn;                  /* the current round's job */
    void *arg;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .caller = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#define POOL_MAX_CHUNKS 0xffff /* the ticket's count and next chunk are 16 bits each */

static inline uint_fast64_t round_of(uint_fast64_t ticket) { return ticket >> 32; }
static inline int64_t count_of(uint_fast64_t ticket) { return (int64_t)((ticket >> 16) & 0xffff); }
static inline int64_t next_of(uint_fast64_t ticket) { return (int64_t)(ticket & 0xffff); }

/* Take chunks of round `round` until none is left (or the round is over). */
static void pool_take_chunks(uint_fast64_t round) {
    uint_fast64_t ticket = atomic_load(&pool.ticket);
    for (;;) {
        if (round_of(ticket) != round) return;
        int64_t chunk = next_of(ticket);
        if (chunk >= count_of(ticket)) return;
        if (!atomic_compare_exchange_weak(&pool.ticket, &ticket, ticket + 1)) continue;
        /* Holding a chunk of this round, the round cannot end: fn and arg are its own. */
        pool.fn(pool.arg, chunk);
        atomic_fetch_add(&pool.done, 1);
        ticket = atomic_load(&pool.ticket);
    }
}

/* Wait until the round differs from `seen`: spin for SPIN_NS (or until `awake_until`, where
 * that is later), then sleep until a round starts or a nudge (pool_nudge) sends the worker
 * back to spinning. */
static uint_fast64_t pool_wait_round(uint_fast64_t seen) {
    for (;;) {
        int64_t until = now_ns() + SPIN_NS;
        for (int spins = 0;; ++spins) {
            uint_fast64_t round = round_of(atomic_load(&pool.ticket));
            if (round != seen) return round;
            cpu_relax();
            if ((spins & 255) == 255) {
                int64_t now = now_ns();
                if (now > until && now > atomic_load(&pool.awake_until)) break;
                sched_yield(); /* see YIELD above */
            }
        }
        pthread_mutex_lock(&pool.lock);
        atomic_fetch_add(&pool.sleepers, 1);
        unsigned nudged = atomic_load(&pool.nudges);
        uint_fast64_t round;
        /* Read again after counting itself asleep: a caller that started the round before
         * seeing the count is seen here; one that starts it after broadcasts under the lock. */
        while ((round = round_of(atomic_load(&pool.ticket))) == seen
               && atomic_load(&pool.nudges) == nudged)
            pthread_cond_wait(&pool.wake, &pool.lock);
        atomic_fetch_sub(&pool.sleepers, 1);
        pthread_mutex_unlock(&pool.lock);
        if (round != seen) return round;
    }
}

/* Wake sleeping workers to spin for SPIN_NS, without work: a caller about to run products
 * after a pause (a server's next request) calls this first, so a worker is awake by the
 * time the first product is split, rather than waking (tens of microseconds) while the
 * caller runs that product's chunks alone. A nudge that races a worker falling asleep is
 * lost: it costs that worker's help, never a product's result. */
void pool_nudge(void) {
    if (atomic_load(&pool.sleepers) == 0) return;
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.nudges, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
}

/* Keep idle workers spinning for the next `ns` nanoseconds (waking sleeping ones), or, with
 * ns <= 0, no longer than SPIN_NS after their last round. A server calls it as a request
 * arrives, so the workers are awake when that request's forward starts, a body's reading and
 * decoding later: a worker woken only as the forward starts, after sleeping for milliseconds,
 * leaves the first products to the caller alone and slows the whole forward (`python -m
 * benchmarks.forward_after_pause`). The forward clears it at its end. */
void pool_keep_awake(int64_t ns) {
    if (ns <= 0) {
        atomic_store(&pool.awake_until, 0);
        return;
    }
    int64_t until = now_ns() + ns, seen = atomic_load(&pool.awake_until);
    while (seen < until && !atomic_compare_exchange_weak(&pool.awake_until, &seen, until)) {
    }
    pool_nudge();
}

/* Workers asleep now (not spinning, not working): what tests read keep_awake's effect by. */
int pool_sleeping_workers(void) { return atomic_load(&pool.sleepers); }

static void *pool_worker(void *unused) {
    (void)unused;
    uint_fast64_t seen = round_of(atomic_load(&pool.ticket));
    for (;;) {
        seen = pool_wait_round(seen);
        pool_take_chunks(seen);
    }
    return NULL;
}

static void pool_forget_workers(void) {
    /* In a forked child the parent's workers are not there, and the locks may have been held
     * by threads that are not either. */
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_mutex_init(&pool.caller, NULL);
    pool.workers = 0;
    atomic_store(&pool.sleepers, 0);
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_register_fork(void) { pthread_atfork(NULL, NULL, pool_forget_workers); }

/* fn(arg, chunk) for every chunk in 0 .. count - 1, on this thread and `threads` - 1 of the
 * pool's workers; returns 1 when every chunk is done, or 0 (nothing run) when the pool is busy
 * with another caller or has no worker and cannot start one. */
static int pool_run(pool_fn fn, void *arg, int64_t count, int64_t threads) {
    if (threads > POOL_MAX) threads = POOL_MAX;
    if (count <= 0) return 1;
    if (count > POOL_MAX_CHUNKS) return 0;
    pthread_once(&pool_once, pool_register_fork);
    if (pthread_mutex_trylock(&pool.caller) != 0) return 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.workers < threads - 1) {
        pthread_t id;
        if (pthread_create(&id, NULL, pool_worker, NULL) != 0) break;
        pthread_detach(id);
        pool.workers++;
    }
    int workers = pool.workers;
    pthread_mutex_unlock(&pool.lock);
    if (workers == 0) {
        pthread_mutex_unlock(&pool.caller);
        return 0;
    }
    pool.fn = fn;
    pool.arg = arg;
    atomic_store(&pool.done, 0);
    uint_fast64_t round = (round_of(atomic_load(&pool.ticket)) + 1) & 0xffffffffu;
    /* Publishes the round and its job. */
    atomic_store(&pool.ticket, round << 32 | (uint_fast64_t)count << 16);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    pool_take_chunks(round);
    for (int spins = 1; atomic_load(&pool.done) < count; ++spins) {
        cpu_relax();
        if ((spins & 255) == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.caller);
    return 1;
}
