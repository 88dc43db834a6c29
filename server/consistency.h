/*
 * consistency.h - how the pushes of many workers combine (issue 6):
 * asynchronous, bulk-synchronous and bounded-staleness training.
 *
 *   async  (default) every push is applied when it arrives.  Optionally the
 *          lr of a push is divided by its staleness (staleness_lr).
 *   sync   with K workers (and b backup workers): the gradients of K - b
 *          distinct workers for one step are averaged (per tensor, over the
 *          workers that sent it), the average goes through the model's
 *          push pipeline once (unscale, non-finite policy, clip, noise,
 *          accumulate, optimizer), and every waiting push gets the fresh
 *          weights.  A push too late for its step (its version is older
 *          than the model's step) is dropped and told so.  A step that does
 *          not fill up within `timeout` seconds is abandoned: every push
 *          waiting for it fails with PARAMD_E_TIMEOUT, and nothing changes.
 *   ssp    with K workers and staleness s (stale synchronous parallel, Ho
 *          et al. 2013): a worker's clock is the number of its pushes
 *          applied; a worker at clock c may push while c <= slowest + s,
 *          the slowest being the least clock of the K (0 until all K have
 *          pushed).  A push that would break that waits (up to `timeout`)
 *          until the slowest catches up, then is applied.  s = 0 is
 *          lockstep: no worker starts a push more than one ahead.
 *
 * Workers name themselves (`worker`) and may say which model step their
 * gradients were computed at (`version`, the `step` of the reply that gave
 * them their weights); staleness = model step at arrival - version.  It is
 * measured in every mode and shown per worker in the model's description.
 *
 * Waiting without threads.  A push that has to wait does not block: it
 * becomes a ticket in the model's consistency state, and the push that
 * completes the step (or lets the waiting worker proceed) applies it and
 * calls the ticket's notify.  The HTTP front end waits on a condition
 * variable in its own connection thread; the binary front end keeps the
 * connection busy and finishes the reply on its event loop.
 */
#ifndef PARAMD_SERVER_CONSISTENCY_H
#define PARAMD_SERVER_CONSISTENCY_H

#include "error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum paramd__consistency_mode {
    PARAMD__CONSISTENCY_ASYNC = 0, /* a zeroed configuration is async */
    PARAMD__CONSISTENCY_SYNC,
    PARAMD__CONSISTENCY_SSP,
} paramd__consistency_mode;

typedef struct paramd__consistency_config {
    paramd__consistency_mode mode;
    int64_t workers;         /* sync, ssp: K, at least 1 */
    int64_t backup_workers;  /* sync: b, 0 <= b < K */
    int64_t staleness;       /* ssp: s, at least 0 */
    double timeout_seconds;  /* sync, ssp: how long a push may wait */
    bool staleness_lr;       /* async: lr / max(1, staleness) */
} paramd__consistency_config;

#define PARAMD__CONSISTENCY_DEFAULT_TIMEOUT 60.0
#define PARAMD__WORKER_NAME_SIZE 129 /* model-name rules: at most 128 characters */

const char *paramd__consistency_mode_name(paramd__consistency_mode mode);
int paramd__consistency_mode_find(const char *name); /* -1 if unknown */

/* Range and cross-field checks; errors name the field ("consistency.workers"). */
int paramd__consistency_config_validate(const paramd__consistency_config *config,
                                        paramd__error *error);

/* What the server knows of one worker. */
typedef struct paramd__worker_record {
    char name[PARAMD__WORKER_NAME_SIZE];
    uint64_t pushes;       /* pushes applied (ssp: its clock) */
    uint64_t dropped;      /* sync: pushes too late for their step */
    bool has_version;
    uint64_t last_version;
    uint64_t last_staleness;
} paramd__worker_record;

/* Staleness seen by a model, for its description and /metrics. */
#define PARAMD__STALENESS_BUCKETS 8 /* 0, 1, 2, 4, 8, 16, 32, more */
typedef struct paramd__staleness_stats {
    uint64_t count, maximum;
    double sum;
    uint64_t buckets[PARAMD__STALENESS_BUCKETS];
} paramd__staleness_stats;

struct paramd__push_ticket;

/* A model's consistency state; `lock` guards all of it.  Unlike the other
 * running-state locks (model.h), `lock` comes before the model's
 * config_lock: sync and ssp pushes apply steps (taking config_lock for
 * reading) while they hold it.  So nothing may take `lock` while holding
 * config_lock (paramd__json_describe_model reads the workers first). */
typedef struct paramd__consistency_state {
    pthread_mutex_t lock;
    paramd__worker_record *workers;
    size_t worker_count, worker_capacity;
    paramd__staleness_stats staleness;
    uint64_t round;                      /* sync: rounds finished or abandoned */
    size_t round_workers;                /* sync: workers in this round */
    double round_deadline;               /* sync: when this round is abandoned */
    float **sums;                        /* sync: per tensor, NULL until needed */
    uint32_t *sum_counts;                /* sync: per tensor, workers in the sum */
    struct paramd__push_ticket *waiting; /* sync: this round's; ssp: blocked pushes */
    uint64_t timeouts;                   /* pushes that failed with PARAMD_E_TIMEOUT */
    bool closed;                         /* the model was deleted: no push may wait */
} paramd__consistency_state;

#endif
