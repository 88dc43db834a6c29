/*
 * test_parallel.c - unit tests for server/parallel.h.
 *
 * Every loop records, per index, how many times it was visited (chunks are
 * disjoint, so plain byte increments are race-free when the pool is right),
 * plus per-call facts (chunk bounds, alignment, calling thread) collected
 * under a mutex and checked on the test's own thread afterwards.
 */
#include "test_util.h"

#include "parallel.h"
#include "paramd/paramd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDED_CALLS 256

typedef struct loop_context {
    uint8_t *visits;           /* count bytes */
    size_t count;
    size_t alignment;          /* expected chunk alignment (>= 1) */
    pthread_mutex_t lock;
    int calls;                 /* non-empty calls */
    int empty_calls;           /* calls with begin >= end */
    int misaligned_calls;      /* begin not a multiple of alignment */
    int out_of_range_calls;    /* end > count */
    int calls_after_close;     /* calls after the loop returned (must be 0) */
    bool closed;
    pthread_t threads[MAX_RECORDED_CALLS];
    size_t begins[MAX_RECORDED_CALLS];
    int recorded;
} loop_context;

static void context_init(loop_context *context, size_t count, size_t alignment)
{
    memset(context, 0, sizeof *context);
    context->visits = calloc(count ? count : 1, 1);
    ck_assert_ptr_nonnull(context->visits);
    context->count = count;
    context->alignment = alignment ? alignment : 1;
    pthread_mutex_init(&context->lock, NULL);
}

static void context_destroy(loop_context *context)
{
    free(context->visits);
    context->visits = NULL;
    pthread_mutex_destroy(&context->lock);
}

static void visit_range(void *argument, size_t begin, size_t end)
{
    loop_context *context = argument;
    pthread_mutex_lock(&context->lock);
    bool closed = context->closed;
    if (closed)
        context->calls_after_close++;
    if (begin >= end)
        context->empty_calls++;
    if (begin % context->alignment != 0)
        context->misaligned_calls++;
    if (end > context->count)
        context->out_of_range_calls++;
    if (context->recorded < MAX_RECORDED_CALLS) {
        context->threads[context->recorded] = pthread_self();
        context->begins[context->recorded] = begin;
        context->recorded++;
    }
    context->calls++;
    pthread_mutex_unlock(&context->lock);
    if (closed || end > context->count)
        return; /* visits may be gone; never touch them */
    for (size_t i = begin; i < end; i++)
        context->visits[i]++;
}

/* Number of distinct threads among the recorded calls. */
static int distinct_threads(const loop_context *context)
{
    int distinct = 0;
    for (int i = 0; i < context->recorded; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = pthread_equal(context->threads[i], context->threads[j]);
        distinct += !seen;
    }
    return distinct;
}

/* Index of the first element not visited exactly once, or count. */
static size_t first_bad_visit(const loop_context *context)
{
    for (size_t i = 0; i < context->count; i++)
        if (context->visits[i] != 1)
            return i;
    return context->count;
}

/* Runs one loop and checks it completely.  `width` is the pool width the loop
 * is expected to use (1: serial on the caller). */
static void run_and_check(size_t count, size_t alignment, size_t minimum, int width)
{
    loop_context context;
    context_init(&context, count, alignment);
    paramd__parallel_for(count, alignment, minimum, visit_range, &context);
    pthread_mutex_lock(&context.lock);
    context.closed = true;
    pthread_mutex_unlock(&context.lock);

    size_t bad = first_bad_visit(&context);
    ck_assert_msg(bad == count, "count %zu alignment %zu: index %zu visited %u times", count,
                  alignment, bad, bad < count ? context.visits[bad] : 0);
    ck_assert_int_eq(context.misaligned_calls, 0);
    ck_assert_int_eq(context.out_of_range_calls, 0);
    size_t effective_alignment = alignment ? alignment : 1;
    size_t blocks = (count + effective_alignment - 1) / effective_alignment;
    size_t expected_calls = blocks < (size_t)width ? blocks : (size_t)width;
    if (count == 0 && width == 1 && context.calls == 1) {
        /* The serial path may hand the function the empty range [0, 0)
         * (harmless for a kernel); the pooled path never calls it. */
        ck_assert_int_eq(context.empty_calls, 1);
        ck_assert_uint_eq(context.begins[0], 0);
        expected_calls = 1;
    } else {
        ck_assert_int_eq(context.empty_calls, 0);
    }
    ck_assert_msg(context.calls == (int)expected_calls,
                  "count %zu alignment %zu width %d: %d calls, expected %zu", count, alignment,
                  width, context.calls, expected_calls);
    /* Each share runs on its own thread; a serial loop runs on the caller. */
    ck_assert_int_eq(distinct_threads(&context), context.calls);
    if (width == 1 && context.calls == 1)
        ck_assert(pthread_equal(context.threads[0], pthread_self()));
    for (int i = 0; i < context.recorded; i++)
        ck_assert_uint_eq(context.begins[i] % effective_alignment, 0);
    ck_assert_int_eq(context.calls_after_close, 0);
    context_destroy(&context);
}

static const size_t loop_counts[] = {0, 1, 15, 16, 17, 1000, (1u << 20) + 3};
#define LOOP_COUNT_COUNT (sizeof loop_counts / sizeof loop_counts[0])

static void sleep_milliseconds(long milliseconds)
{
    struct timespec duration = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) != 0)
        ;
}

START_TEST(test_default_pool)
{
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_start(0), PARAMD_OK);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int expected_width = cores > 1 ? (int)cores : 1;
    if (expected_width > 65)
        expected_width = 65;
    ck_assert_int_eq(paramd__parallel_width(), expected_width);
    for (size_t i = 0; i < LOOP_COUNT_COUNT; i++)
        run_and_check(loop_counts[i], 16, 0, expected_width);
    /* Starting again is ignored. */
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), expected_width);
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_width(), 1);
}
END_TEST

START_TEST(test_three_threads)
{
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), 4);
    for (size_t i = 0; i < LOOP_COUNT_COUNT; i++)
        run_and_check(loop_counts[i], 16, 0, 4);
    /* Other alignments, including 0 (treated as 1) and ones not dividing count. */
    const size_t alignments[] = {0, 1, 3, 7, 64, 1000, 4096};
    for (size_t a = 0; a < sizeof alignments / sizeof alignments[0]; a++)
        for (size_t i = 0; i < LOOP_COUNT_COUNT; i++)
            run_and_check(loop_counts[i], alignments[a], 0, 4);
    /* Below the minimum a loop runs serially on the caller. */
    run_and_check(1000, 16, 1001, 1);
    run_and_check(1000, 16, 1000, 4);
    run_and_check((1u << 20) + 3, 16, 1u << 21, 1);
    /* Many small loops in a row reuse the same workers. */
    for (int round = 0; round < 2000; round++)
        run_and_check((size_t)(round % 100), 4, 0, 4);
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_width(), 1);
}
END_TEST

typedef struct concurrent_job {
    int thread_index;
    int failures;
    int serial_loops;   /* loops that ran in one call on this thread */
    int loops;
} concurrent_job;

static void *concurrent_main(void *argument)
{
    concurrent_job *job = argument;
    for (int round = 0; round < 40; round++) {
        size_t count = (size_t)(50000 + 1000 * job->thread_index + round);
        loop_context context;
        memset(&context, 0, sizeof context);
        context.visits = calloc(count, 1);
        if (context.visits == NULL) {
            job->failures++;
            continue;
        }
        context.count = count;
        context.alignment = 16;
        pthread_mutex_init(&context.lock, NULL);
        paramd__parallel_for(count, 16, 0, visit_range, &context);
        pthread_mutex_lock(&context.lock);
        context.closed = true;
        pthread_mutex_unlock(&context.lock);
        if (first_bad_visit(&context) != count || context.misaligned_calls != 0 ||
            context.empty_calls != 0 || context.out_of_range_calls != 0)
            job->failures++;
        if (context.calls == 1 && pthread_equal(context.threads[0], pthread_self()))
            job->serial_loops++;
        job->loops++;
        context_destroy(&context);
    }
    return NULL;
}

START_TEST(test_concurrent_callers)
{
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    enum { CALLERS = 4 };
    pthread_t threads[CALLERS];
    concurrent_job jobs[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        jobs[i] = (concurrent_job){.thread_index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, concurrent_main, &jobs[i]), 0);
    }
    int serial_loops = 0;
    for (int i = 0; i < CALLERS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_int_eq(jobs[i].failures, 0);
        ck_assert_int_eq(jobs[i].loops, 40);
        serial_loops += jobs[i].serial_loops;
    }
    ck_assert_int_le(serial_loops, CALLERS * 40);
    /* The pool is still usable afterwards. */
    run_and_check(1000, 16, 0, 4);
    paramd__parallel_stop();
}
END_TEST

START_TEST(test_serial_after_stop)
{
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    run_and_check(100000, 16, 0, 4);
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_width(), 1);
    for (size_t i = 0; i < LOOP_COUNT_COUNT; i++)
        run_and_check(loop_counts[i], 16, 0, 1);
    /* Stopping twice is harmless. */
    paramd__parallel_stop();
    run_and_check(1000, 16, 0, 1);
}
END_TEST

START_TEST(test_serial_without_start)
{
    /* Never started: every loop runs on the caller. */
    ck_assert_int_eq(paramd__parallel_width(), 1);
    for (size_t i = 0; i < LOOP_COUNT_COUNT; i++)
        run_and_check(loop_counts[i], 16, 0, 1);
}
END_TEST

/* Stop, then start again with another thread count: the new workers must not
 * replay the job the previous pool ran last (whose context is gone), and the
 * next loop must wait for all of its own chunks. */
START_TEST(test_restart)
{
    paramd__parallel_stop();
    ck_assert_int_eq(paramd__parallel_start(2), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), 3);
    loop_context old;
    context_init(&old, 100000, 16);
    paramd__parallel_for(old.count, 16, 0, visit_range, &old);
    pthread_mutex_lock(&old.lock);
    old.closed = true;
    pthread_mutex_unlock(&old.lock);
    ck_assert_uint_eq(first_bad_visit(&old), old.count);
    ck_assert_int_eq(old.calls, 3);
    paramd__parallel_stop();

    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), 4);
    sleep_milliseconds(100); /* let the new workers reach their wait */
    pthread_mutex_lock(&old.lock);
    int stale_calls = old.calls_after_close;
    pthread_mutex_unlock(&old.lock);
    ck_assert_msg(stale_calls == 0,
                  "after restart, workers re-ran the previous pool's last job %d times",
                  stale_calls);
    for (int round = 0; round < 20; round++)
        run_and_check(100000, 16, 0, 4);
    paramd__parallel_stop();
    ck_assert_int_eq(old.calls_after_close, 0);
    context_destroy(&old);

    /* And once more, after loops on the 3-thread pool. */
    ck_assert_int_eq(paramd__parallel_start(1), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), 2);
    for (int round = 0; round < 20; round++)
        run_and_check(100000, 16, 0, 2);
    paramd__parallel_stop();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("parallel");
    TCase *tcase = tcase_create("parallel");
    tcase_set_timeout(tcase, 60);
    tcase_add_test(tcase, test_default_pool);
    tcase_add_test(tcase, test_three_threads);
    tcase_add_test(tcase, test_concurrent_callers);
    tcase_add_test(tcase, test_serial_after_stop);
    tcase_add_test(tcase, test_serial_without_start);
    tcase_add_test(tcase, test_restart);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
