/*
 * metrics.h - process-wide counters and histograms, and the Prometheus text
 * exposition of everything paramd measures (GET /metrics).
 *
 * Ownership: the request counters, byte counters and push-latency
 * histograms here are process-wide and lock-free (relaxed atomics), so the
 * front ends may count from any thread at any time; per-model series come
 * from each model's paramd__model_stats (stats.h) and are read when
 * /metrics is scraped.  Nothing here allocates on the request path.
 *
 * Every front end calls paramd__metrics_count_request once per request it
 * answered: the HTTP front end in http.c, the binary protocol in
 * tcp_handlers.c.
 */
#ifndef PARAMD_SERVER_METRICS_H
#define PARAMD_SERVER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct paramd__server;

/* ---------------------------------------------------------------------------
 * Histograms
 * ------------------------------------------------------------------------- */

#define PARAMD__HISTOGRAM_MAX_BOUNDS 20

/* A Prometheus histogram with fixed upper bounds (`le`, ascending, +Inf
 * implied).  Observations are lock-free; a scrape may see a count one
 * observation ahead of the sum, which Prometheus tolerates. */
typedef struct paramd__histogram {
    const double *bounds;
    size_t bound_count;
    atomic_uint_fast64_t buckets[PARAMD__HISTOGRAM_MAX_BOUNDS + 1]; /* not cumulative */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_bits; /* the sum, a double's bits */
} paramd__histogram;

void paramd__histogram_init(paramd__histogram *histogram, const double *bounds,
                            size_t bound_count);
void paramd__histogram_observe(paramd__histogram *histogram, double value);
double paramd__histogram_sum(const paramd__histogram *histogram);

/* Bucket bounds in use: latencies in seconds, staleness in steps, and
 * checkpoint durations in seconds. */
extern const double paramd__latency_bounds[];
extern const size_t paramd__latency_bound_count;
extern const double paramd__staleness_bounds[];
extern const size_t paramd__staleness_bound_count;
extern const double paramd__checkpoint_bounds[];
extern const size_t paramd__checkpoint_bound_count;

/* ---------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------- */

typedef enum paramd__transport {
    PARAMD__TRANSPORT_HTTP = 0,
    PARAMD__TRANSPORT_TCP = 1,
    PARAMD__TRANSPORT_COUNT
} paramd__transport;

/* What a request did, the `operation` label. */
typedef enum paramd__operation {
    PARAMD__OPERATION_OTHER = 0, /* unknown routes, bad frames */
    PARAMD__OPERATION_PUSH,
    PARAMD__OPERATION_PULL,
    PARAMD__OPERATION_STATE,
    PARAMD__OPERATION_CREATE,
    PARAMD__OPERATION_DESCRIBE,
    PARAMD__OPERATION_LIST,
    PARAMD__OPERATION_PATCH,
    PARAMD__OPERATION_DELETE,
    PARAMD__OPERATION_CHECKPOINT,
    PARAMD__OPERATION_STATS,
    PARAMD__OPERATION_HISTORY,
    PARAMD__OPERATION_METRICS,
    PARAMD__OPERATION_DASHBOARD,
    PARAMD__OPERATION_HEALTH,
    PARAMD__OPERATION_HELLO,
    PARAMD__OPERATION_LOOKUP,
    PARAMD__OPERATION_ECHO,
    PARAMD__OPERATION_COUNT
} paramd__operation;

/* The label value of an operation ("push"). */
const char *paramd__operation_name(paramd__operation operation);

/* Statuses are paramd's error codes: 0 ("ok") to -(PARAMD__METRICS_STATUS_COUNT - 1);
 * codes beyond count as "internal". */
#define PARAMD__METRICS_STATUS_COUNT 32

/* Counts one answered request: its status (PARAMD_OK or a PARAMD_E* code),
 * how long it took in seconds (from its first byte to its reply being
 * queued), and the bytes of its request and reply. Push requests also feed
 * the push latency histogram of their transport. */
void paramd__metrics_count_request(paramd__transport transport, paramd__operation operation,
                                   int status, double seconds, uint64_t bytes_in,
                                   uint64_t bytes_out);

/* Requests counted so far with these labels (tests). */
uint64_t paramd__metrics_requests(paramd__transport transport, paramd__operation operation,
                                  int status);

/* Seconds on a monotonic clock, for measuring durations. */
double paramd__metrics_now(void);

/* ---------------------------------------------------------------------------
 * Exposition
 * ------------------------------------------------------------------------- */

/* The Content-Type of the exposition. */
#define PARAMD__METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Writes every series in the Prometheus text format 0.0.4: a malloc'ed,
 * NUL-terminated buffer of *length bytes, or NULL if memory ran out. */
char *paramd__metrics_render(struct paramd__server *server, size_t *length);

#endif
