/* parallel.c - see parallel.h. */
#define _POSIX_C_SOURCE 200809L
#include "parallel.h"

#include "paramd/paramd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define PARAMD__PARALLEL_MAX_THREADS 64

/* The pool.  `busy` guards use of the pool by one loop at a time (taken with
 * trylock); `lock` and the two condition variables hand a job to the workers
 * and collect their completion. */
static struct {
    pthread_mutex_t busy;
    pthread_mutex_t lock;
    pthread_cond_t job_ready;
    pthread_cond_t job_done;
    pthread_t threads[PARAMD__PARALLEL_MAX_THREADS];
    int thread_count;
    bool started;
    bool stopping;
    unsigned long generation; /* incremented for every job */
    /* The current job: worker i processes share i + 1 of `shares`. */
    paramd__range_function function;
    void *context;
    size_t count, alignment;
    int shares;
    int pending; /* workers that have not finished the current job */
} pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .job_ready = PTHREAD_COND_INITIALIZER,
    .job_done = PTHREAD_COND_INITIALIZER,
};

/* Bounds of share `index` of `shares`, aligned to `alignment` elements. */
static void share_bounds(size_t count, size_t alignment, int shares, int index, size_t *begin,
                         size_t *end)
{
    size_t blocks = (count + alignment - 1) / alignment;
    size_t first = blocks * (size_t)index / (size_t)shares;
    size_t last = blocks * (size_t)(index + 1) / (size_t)shares;
    *begin = first * alignment < count ? first * alignment : count;
    *end = last * alignment < count ? last * alignment : count;
}

/* What a worker is started with.  The generation current at its creation
 * (read under pool.lock, which start holds) tells it which jobs are old, so a
 * restarted pool never replays a finished job and never misses a new one. */
typedef struct worker_start {
    int index;
    unsigned long generation;
} worker_start;

static worker_start worker_starts[PARAMD__PARALLEL_MAX_THREADS];

static void *worker_main(void *argument)
{
    const worker_start *start = argument;
    int worker_index = start->index;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen_generation = start->generation;
    for (;;) {
        while (!pool.stopping && pool.generation == seen_generation)
            pthread_cond_wait(&pool.job_ready, &pool.lock);
        if (pool.stopping)
            break;
        seen_generation = pool.generation;
        if (worker_index + 1 >= pool.shares)
            continue; /* this job needs fewer threads */
        paramd__range_function function = pool.function;
        void *context = pool.context;
        size_t begin, end;
        share_bounds(pool.count, pool.alignment, pool.shares, worker_index + 1, &begin, &end);
        pthread_mutex_unlock(&pool.lock);
        if (begin < end)
            function(context, begin, end);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.job_done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

int paramd__parallel_start(int thread_count)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.started) {
        pthread_mutex_unlock(&pool.lock);
        return 0;
    }
    if (thread_count <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        thread_count = cores > 1 ? (int)cores - 1 : 0;
    }
    if (thread_count > PARAMD__PARALLEL_MAX_THREADS)
        thread_count = PARAMD__PARALLEL_MAX_THREADS;
    pool.stopping = false;
    int started = 0;
    for (; started < thread_count; started++) {
        worker_starts[started] = (worker_start){started, pool.generation};
        if (pthread_create(&pool.threads[started], NULL, worker_main, &worker_starts[started]) != 0)
            break;
    }
    pool.thread_count = started;
    pool.started = true;
    pthread_mutex_unlock(&pool.lock);
    return started == thread_count ? 0 : PARAMD_E_NO_MEMORY;
}

void paramd__parallel_stop(void)
{
    pthread_mutex_lock(&pool.busy); /* wait for a running loop to finish */
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    pthread_cond_broadcast(&pool.job_ready);
    int thread_count = pool.thread_count;
    pool.thread_count = 0;
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < thread_count; i++)
        pthread_join(pool.threads[i], NULL);
    pthread_mutex_lock(&pool.lock);
    pool.started = false;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}

int paramd__parallel_width(void)
{
    pthread_mutex_lock(&pool.lock);
    int width = pool.thread_count + 1;
    pthread_mutex_unlock(&pool.lock);
    return width;
}

void paramd__parallel_for(size_t count, size_t alignment, size_t minimum_parallel_count,
                          paramd__range_function function, void *context)
{
    if (alignment == 0)
        alignment = 1;
    if (count < minimum_parallel_count || pthread_mutex_trylock(&pool.busy) != 0) {
        if (count > 0)
            function(context, 0, count);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    int shares = pool.thread_count + 1;
    if (shares == 1) {
        pthread_mutex_unlock(&pool.lock);
        pthread_mutex_unlock(&pool.busy);
        if (count > 0)
            function(context, 0, count);
        return;
    }
    pool.function = function;
    pool.context = context;
    pool.count = count;
    pool.alignment = alignment;
    pool.shares = shares;
    pool.pending = shares - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.job_ready);
    pthread_mutex_unlock(&pool.lock);

    size_t begin, end;
    share_bounds(count, alignment, shares, 0, &begin, &end);
    if (begin < end)
        function(context, begin, end);

    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.job_done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}
