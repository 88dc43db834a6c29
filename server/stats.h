/*
 * stats.h - training statistics per model: the last and averaged loss, the
 * learning rate, gradient and update norms, staleness, a time series for
 * the dashboard, and checkpoint outcomes (issue 8).
 *
 * Ownership: each model owns one paramd__model_stats (model->stats),
 * created and freed with the model.  Its scalar fields are guarded by its
 * own `lock`, taken briefly after a push and when stats are read, never
 * while a tensor lock or the config lock is held for writing.  The
 * per-tensor norms (tensors[i]) are guarded by that tensor's lock, like the
 * tensor itself.  Counters and the staleness histogram are atomic.
 *
 * What a push costs.  Norms need a pass over memory, so they are not
 * computed on every push.  A push is *sampled* when the model's previous
 * sample is at least the sampling interval old (paramd__stats_set_sample_interval,
 * --stats-sample-ms, 500 ms by default; 0 samples every push): only then
 * does the push measure, per tensor it steps, the L2 norm of the gradient
 * (after unscaling and the non-finite stage, before clipping), of the
 * update (new weights minus old, which needs a copy of the old weights)
 * and of the new weights; and the next sample waits at least 19 times as
 * long as that measuring took (PARAMD__STATS_SAMPLE_DUTY), so that for a
 * large model, whose pushes take longer than the interval, sampling stays
 * under about 5% of the push time (an interval of 0 samples every push
 * regardless).  Every other push costs two clock reads and a few
 * uncontended atomic and mutex operations.  When the model clips by norm,
 * or the client sends grad_norm, the gradient norm of every push is known
 * for free and is used instead.  GET /stats adds norms of the current
 * weights and summaries of every optimizer state array, computed when
 * asked, one tensor at a time under its lock.
 */
#ifndef PARAMD_SERVER_STATS_H
#define PARAMD_SERVER_STATS_H

#include "error.h"
#include "metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct paramd__model;
struct paramd__tensor;
struct paramd__server;
struct paramd__push_outcome;
struct paramd__tensor_io;

/* The exponential moving average of the loss: ema = (1 - w) * ema + w * loss. */
#define PARAMD__LOSS_EMA_WEIGHT 0.1

/* Points in each model's history: one a second, ten minutes. */
#define PARAMD__HISTORY_LENGTH 600

/* The last sampled norms of one tensor (NAN before the first sample). */
typedef struct paramd__tensor_stats {
    double grad_norm;     /* ||g||, the gradient of the sampled push */
    double update_norm;   /* ||w_after - w_before|| */
    double weight_norm;   /* ||w_after|| */
    uint64_t sampled_step; /* the tensor's step after that push; 0: never sampled */
} paramd__tensor_stats;

/* One point of the time series behind the dashboard. */
typedef struct paramd__history_point {
    double time;              /* Unix seconds */
    uint64_t step;
    double lr, loss, loss_ema, grad_norm, update_ratio; /* NAN: not known yet */
    double pushes_per_second; /* pushes accepted since the previous point, per second */
    double staleness;         /* mean staleness of the pushes since the previous point; NAN: none */
} paramd__history_point;

typedef struct paramd__model_stats {
    pthread_mutex_t lock;
    /* Under lock. */
    double loss, loss_ema;     /* NAN until a push gives a loss */
    double lr;                 /* the lr of the last applied push; NAN before */
    double grad_norm;          /* the last known total gradient norm; NAN before */
    const char *grad_norm_source; /* "clip", "client" or "sampled" */
    double update_ratio;       /* ||update|| / ||weights|| of the last sampled push */
    uint64_t sampled_step;     /* the model's step at that sample */
    double checkpoint_seconds; /* the last successful checkpoint: whole time, */
    double checkpoint_snapshot_seconds; /* the part during which pushes waited, */
    double checkpoint_time;    /* its Unix time (0: none yet), */
    uint64_t checkpoint_bytes; /* and the file's size */
    uint64_t checkpoint_step;  /* the model's step it recorded */
    uint64_t checkpoint_fingerprint; /* checkpoint.c: what it recorded, to skip unchanged models */
    char checkpoint_error[PARAMD__ERROR_MESSAGE_SIZE]; /* the last failure's message, empty if none since */
    paramd__history_point history[PARAMD__HISTORY_LENGTH];
    size_t history_start, history_count; /* a ring */
    uint64_t history_pushes;   /* `pushes` at the previous point */
    uint64_t history_staleness_count;
    double history_staleness_sum;
    double history_time;       /* monotonic time of the previous point */
    /* Atomic. */
    atomic_int_fast64_t next_sample_ns; /* monotonic time the next sample is due */
    atomic_uint_fast64_t pushes;        /* pushes accepted (applied or skipped) */
    atomic_uint_fast64_t updates;       /* pushes that applied an optimizer step */
    atomic_uint_fast64_t invalid;       /* pushes refused before the pipeline ran
                                           (shape, unknown option, ...) */
    atomic_uint_fast64_t checkpoints_ok, checkpoints_failed;
    paramd__histogram staleness;        /* steps; fed by paramd__stats_observe_staleness */
    paramd__histogram checkpoint_duration; /* seconds */
    /* Per tensor, each under its tensor's lock. */
    paramd__tensor_stats *tensors;
    size_t tensor_count;
} paramd__model_stats;

/* Allocates stats for a model of tensor_count tensors; NULL if memory ran out. */
paramd__model_stats *paramd__model_stats_create(size_t tensor_count);
void paramd__model_stats_destroy(paramd__model_stats *stats);

/* The sampling interval in milliseconds (0: every push). */
void paramd__stats_set_sample_interval(unsigned milliseconds);

/* ---------------------------------------------------------------------------
 * Hooks the push path calls (core.c)
 * ------------------------------------------------------------------------- */

/* A sampled push in progress: per push, on the caller's stack. */
typedef struct paramd__stats_sample {
    bool active;
    float *before;          /* the old weights of the tensor being stepped */
    size_t before_count;
    double grad_squares;    /* sums over the push's stepped tensors */
    double update_squares;
    double weight_squares;
    double tensor_grad_norm; /* of the tensor between the two calls below */
    double seconds;          /* time spent measuring, to bound the overhead */
} paramd__stats_sample;

/* A sampled push of a large model costs several passes over its memory; the
 * next sample waits at least this many times as long as measuring took, so
 * sampling never takes more than about 1 / (1 + this) of a push stream's
 * time (5%), whatever the interval. */
#define PARAMD__STATS_SAMPLE_DUTY 19

/* Decides whether this push is sampled (at most one per interval). */
void paramd__stats_sample_begin(struct paramd__model *model, paramd__stats_sample *sample);

/* Under the tensor's lock: the gradient as it enters clipping. */
void paramd__stats_sample_gradient(paramd__stats_sample *sample, const float *grad,
                                   size_t count);

/* Under the tensor's lock, just before and just after its optimizer step. */
void paramd__stats_sample_before_step(paramd__stats_sample *sample,
                                      const struct paramd__tensor *tensor);
void paramd__stats_sample_after_step(paramd__stats_sample *sample,
                                     struct paramd__model *model,
                                     const struct paramd__tensor *tensor);

/* After the push, with its outcome: result is what paramd__core_push_ex
 * returns; `loss` the loss the push carried (NAN: none). Frees the sample. */
void paramd__stats_after_push(struct paramd__model *model, paramd__stats_sample *sample,
                              int result, double loss,
                              const struct paramd__push_outcome *outcome,
                              const struct paramd__tensor_io *items, size_t item_count);

/* Records how stale a push was, in model steps (the consistency modes call
 * this; nothing does yet, so the histogram has no observations). */
void paramd__stats_observe_staleness(struct paramd__model *model, uint64_t staleness);

/* ---------------------------------------------------------------------------
 * Readers
 * ------------------------------------------------------------------------- */

/* Appends one history point to every model now (the sampler thread calls it
 * every second; tests call it directly). */
void paramd__stats_record_history(struct paramd__server *server);

/* GET /v1/models/{model}/stats: norms and state summaries, computed now. */
json_t *paramd__stats_json(struct paramd__model *model);

/* GET /v1/models/{model}/history: {"model", "interval_seconds", "length",
 * "points": {"time_ms": [...], "step": [...], "lr": [...], ...}}, one array
 * per series (null where a value is not known yet), the points after Unix
 * time `since` in milliseconds (0: all). */
json_t *paramd__stats_history_json(struct paramd__model *model, double since);

/* Starts and stops the thread that records history once a second. */
int paramd__stats_sampler_start(struct paramd__server *server);
void paramd__stats_sampler_stop(void);

#endif
