/*
 * core.h - the operations paramd offers, independent of any front end.
 *
 * The HTTP front end (and the binary protocol after it) only parses and
 * validates the syntax of a request, then calls these functions, which own
 * every semantic check and every change of state.  Each function either
 * succeeds completely or changes nothing and returns a negative
 * PARAMD_E* code with a message in *error.
 */
#ifndef PARAMD_SERVER_CORE_H
#define PARAMD_SERVER_CORE_H

#include "model.h"

#include <stdint.h>

/* Process-wide state shared by the front ends. */
typedef struct paramd__server {
    paramd__registry registry;
    time_t started;
    atomic_uint_fast64_t pushes;  /* successful pushes, all models */
    atomic_uint_fast64_t pulls;   /* successful pulls, all models */
    /* Sharding: the shard map this server is part of (NULL: none) and its
     * id in it.  Set before serving, then read-only. */
    const struct paramd_shard_map *shard_map;
    uint32_t shard_id;
    /* Issue 8: the checkpointer writing this server's models to its data
     * directory (checkpoint.h), or NULL (unit tests).  Deleting a model
     * removes its checkpoint files through it. */
    struct paramd__checkpointer *checkpointer;
    /* Issue 9: the bearer tokens (auth.h), NULL when the server has none;
     * and the pushes that may wait in sync and ssp models at once, over all
     * models (0: no limit), against those waiting now. */
    struct paramd__auth *auth;
    unsigned max_waiting_pushes;
    atomic_uint waiting_pushes;
} paramd__server;

void paramd__server_init(paramd__server *server);
void paramd__server_destroy(paramd__server *server);

/* Creates a model and registers it.  On success *model_out holds a reference
 * for the caller (release it), unless model_out is NULL. */
int paramd__core_create_model(paramd__server *server, const paramd__model_spec *spec,
                              paramd__model **model_out, paramd__error *error);

/* The checks paramd__core_create_model makes of a spec before building it
 * (each configuration's ranges and combinations); checkpoint restores reuse
 * them. */
int paramd__core_validate_spec(const paramd__model_spec *spec, paramd__error *error);

/* Returns a referenced model or PARAMD_E_MODEL_NOT_FOUND. */
int paramd__core_find_model(paramd__server *server, const char *name,
                            paramd__model **model_out, paramd__error *error);

int paramd__core_delete_model(paramd__server *server, const char *name, paramd__error *error);

/* One tensor of a push or a pull. */
typedef struct paramd__tensor_io {
    paramd__tensor *tensor;
    const float *grad;     /* push: tensor->count gradient values (borrowed) */
    size_t grad_count;     /* push: number of values in grad */
    /* push: true when grad points to memory the caller owns and discards
     * after the push, so the core may unscale, zero, clip and add noise in
     * it in place instead of copying; false keeps grad untouched. */
    bool grad_writable;
    float *weights;        /* out: tensor->count floats for the weights after
                              the update (push) or now (pull); may be NULL on push */
    size_t weights_count;  /* pull: elements to copy (0: the whole tensor); out:
                              floats written to weights - tensor->count except for
                              a range, or a state array of another length
                              (pull_state of Adafactor's row_var, say) */
    size_t range_offset;   /* pull: the first element copied (a range's start) */
    uint32_t accumulated;  /* out (push, accumulating models): the gradients in
                              the tensor's window after this push, 1 to steps;
                              steps means this push applied the step */
} paramd__tensor_io;

/* The number of floats in item->weights. */
static inline size_t paramd__tensor_io_count(const paramd__tensor_io *item)
{
    return item->weights_count ? item->weights_count : item->tensor->count;
}

/* What a push carries besides the gradients. */
typedef struct paramd__push_options {
    double loss;       /* drives ReduceLROnPlateau; NAN: none */
    double grad_norm;  /* the client's global gradient norm for clipping; NAN: none */
    double loss_scale; /* the scale the gradients carry (loss-scaled models);
                          NAN: the model's current scale */
    double lr_scale;   /* multiplies every lr of this push (staleness-aware async
                          SGD); 0 or 1: none */
    const char *worker; /* the pushing worker's name, or NULL (SAM tells its
                           workers' ascent and descent pushes apart) */
} paramd__push_options;

/* What a push reports besides the weights. */
typedef struct paramd__push_outcome {
    uint64_t step; /* the model's step count after this push */
    double lr;     /* the learning rate this push used (the model's, not a group's) */
    double grad_norm; /* the norm before clipping that was used (the computed total
                         norm or the client's), when the model clips by norm; else NAN */
    /* A skipped push changed no tensor: reason "nonfinite" (policy skip) or
     * "loss_scale" (an overflow with dynamic loss scaling); else NULL. */
    bool skipped;
    const char *skip_reason;
    bool has_loss_scale;
    float loss_scale;       /* the scale after this push: multiply the next loss by it */
    size_t zeroed;          /* non-finite entries zeroed (policy zero) */
    uint32_t accumulate_steps; /* the window length when the model accumulates, else 0 */
    /* Consistency modes (consistency.h): a sync push too late for its step
     * was dropped (no change; the current weights); the staleness of the
     * gradients, when the push gave the version they were computed at. */
    bool dropped;
    bool has_staleness;
    uint64_t staleness;
    /* LBFGS models (lbfgs.h): whether the step is done (the weights are its
     * result) or goes on (the weights are the next point to evaluate), and
     * torch's n_iter and func_evals so far. */
    bool has_lbfgs;
    bool lbfgs_step_done;
    uint64_t lbfgs_iterations, lbfgs_evaluations;
    /* SAM models (sam.h): an ascent push (no step; the weights are the
     * perturbed point to take the next gradient at) or a step. */
    bool has_sam;
    bool sam_ascent;
} paramd__push_outcome;

/* ---------------------------------------------------------------------------
 * Pushes in every consistency mode (consistency.h, consistency.c)
 * ------------------------------------------------------------------------- */

/* One push, as a front end submits it.  In sync and ssp models a push may
 * have to wait for other workers: the ticket, its items, their gradients
 * and their weights buffers must then stay alive, untouched, until the core
 * completes the ticket, and the front end learns of that through notify.
 * The core completes a waiting ticket from another push's thread, with the
 * model's consistency lock held: notify must only signal (a condition
 * variable, uv_async_send), never call back into the core. */
typedef struct paramd__push_ticket {
    /* Set by the front end. */
    paramd__tensor_io *items;
    size_t item_count;
    paramd__push_options options;
    const char *worker;       /* the worker's name; required in sync and ssp */
    bool has_version;
    uint64_t version;         /* the model step the gradients were computed at */
    void (*notify)(struct paramd__push_ticket *ticket);
    void *context;            /* the front end's */
    /* Set by the core once done is true. */
    bool done;
    int result;               /* PARAMD_OK or an error code */
    paramd__error error;
    paramd__push_outcome outcome;
    /* The core's. */
    struct paramd__push_ticket *next;
    uint64_t round;
    double deadline;          /* CLOCK_MONOTONIC seconds */
    atomic_uint *counted_in;  /* the server's waiting_pushes, while it waits */
} paramd__push_ticket;

/* paramd__core_push_submit's answer for a push that waits. */
#define PARAMD__PUSH_WAITING 1

/* Submits a push in the model's consistency mode.  Returns an error code
 * (the ticket is done, nothing changed), PARAMD_OK (the ticket is done:
 * outcome holds the result), or PARAMD__PUSH_WAITING: the ticket waits,
 * until ticket->deadline at most, and the core calls notify once it is
 * done (the caller must not read the ticket before that, or before
 * paramd__core_push_expire returned).  Async pushes never wait. */
int paramd__core_push_submit(paramd__server *server, paramd__model *model,
                             paramd__push_ticket *ticket);

/* Gives up on a waiting ticket (its deadline passed, or its connection
 * closed): a sync step it belongs to is abandoned, every other push
 * waiting for that step failing with PARAMD_E_TIMEOUT (notified); an ssp
 * push stops waiting.  The ticket itself ends done with PARAMD_E_TIMEOUT,
 * without a notify.  Nothing changes in the model.  Does nothing to a
 * ticket already done. */
void paramd__core_push_expire(paramd__server *server, paramd__model *model,
                              paramd__push_ticket *ticket);

/* Takes back a waiting ticket whose worker went away (its connection
 * closed): a sync push leaves its round, which goes on waiting for the
 * workers it still needs (a reconnecting worker may push again); an ssp
 * push stops waiting.  The ticket ends done with PARAMD_E_UNAVAILABLE,
 * without a notify; nothing changes in the model.  Does nothing to a
 * ticket already done. */
void paramd__core_push_withdraw(paramd__server *server, paramd__model *model,
                                paramd__push_ticket *ticket);

/* Ends every push waiting in a model that was just deleted: each fails
 * with PARAMD_E_MODEL_NOT_FOUND (notified), nothing is applied, and pushes
 * submitted later fail at once instead of waiting for workers that will
 * never come. */
void paramd__core_push_close(paramd__server *server, paramd__model *model);

/* Copies the weights of each item that has a weights buffer (under each
 * tensor's lock): what a dropped or finished waiting push answers with. */
void paramd__core_copy_weights(paramd__tensor_io *items, size_t item_count);

/* Checks a push's items before anything changes: at least one, no tensor
 * twice, each gradient as long as its tensor. */
int paramd__core_validate_push(const paramd__model *model, const paramd__tensor_io *items,
                               size_t item_count, paramd__error *error);

/* Applies one optimizer step to each tensor in items (any subset of the
 * model's tensors, each at most once), atomically per tensor, and copies the
 * resulting weights out.  Every item is validated (lengths, finite values,
 * duplicates) before any tensor changes.  With a schedule, the push uses the
 * scheduled lr (and momentum, where cycled) and then advances the schedule
 * once, with `loss` for ReduceLROnPlateau (NAN: none given; ReduceLROnPlateau
 * then does not advance).  A schedule that cannot advance (OneCycleLR past
 * total_steps) refuses the push, changing nothing.
 *
 * A model with a clip configuration clips the gradients after validation and
 * before the optimizer (with its scheduled lr, if any); see clip.h.  The
 * callers' gradients are not changed: each tensor's clipped gradient is
 * written to a scratch buffer (see core.c).  `grad_norm` is the client's
 * global gradient norm over the whole model (NAN: none), used instead of the
 * computed total norm by max_norm clipping (not per_tensor); it must be
 * finite and >= 0 whenever given. */
int paramd__core_push(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, double loss, double grad_norm,
                      paramd__push_outcome *outcome, paramd__error *error);

/* The full push pipeline (issue 4), in this fixed order, each stage only when
 * the model has it:
 *   1. unscale: gradients times the loss scale's float32 inverse (loss_scale.h);
 *   2. non-finite check: with a loss scale, any inf or NaN skips the push and
 *      backs the scale off; otherwise the model's nonfinite policy refuses
 *      the push, skips it, or zeroes the entries (nonfinite.h);
 *   3. clip (clip.h);
 *   4. noise (grad_noise.h), with t = the model's step before this push;
 *   5. accumulate (accumulate.h): a tensor whose window is not full only
 *      stores its gradient;
 *   6. the optimizer step, with the scheduled lr.
 * paramd__core_push is this with options {loss, grad_norm, NAN}.  A skipped
 * push returns PARAMD_OK with outcome->skipped set and the current weights;
 * it changes no tensor, step or schedule (the loss scale and the counters
 * do change).  With accumulation the model's step, and its schedule, advance
 * once for each push that applied the optimizer step to at least one tensor.
 * The push holds the model's config_lock for reading throughout. */
int paramd__core_push_ex(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                         size_t item_count, const paramd__push_options *options,
                         paramd__push_outcome *outcome, paramd__error *error);

/* ---------------------------------------------------------------------------
 * Runtime changes (PATCH /v1/models/{model}; server/patch.c)
 * ------------------------------------------------------------------------- */

/* A new value for one hyperparameter of the model's optimizer type. */
typedef struct paramd__hyperparameter_change {
    const paramd__hyperparameter_spec *spec;
    double values[3]; /* one number, two for a pair, three for a triple; booleans 0 or 1 */
} paramd__hyperparameter_change;

typedef struct paramd__hyperparameter_changes {
    paramd__hyperparameter_change *changes;
    size_t count;
} paramd__hyperparameter_changes;

/* What one PATCH changes.  Hyperparameters are changes, applied to the
 * values current when the patch runs, so concurrent patches of different
 * fields never undo each other; the other fields are replaced whole. */
typedef struct paramd__model_patch {
    paramd__hyperparameter_changes optimizer;  /* the model's own configuration */
    paramd__hyperparameter_changes *groups;    /* NULL, or one per parameter group */
    size_t group_count;
    bool set_clip;
    paramd__clip_config clip;                  /* mode NONE: stop clipping */
    bool set_schedule, has_schedule;           /* has_schedule false: remove it */
    paramd__schedule_config schedule;
    bool set_nonfinite;
    paramd__nonfinite_policy nonfinite;
    bool set_grad_noise;
    paramd__grad_noise_config grad_noise;      /* enabled false: stop */
    bool set_loss_scale, has_loss_scale;       /* has_loss_scale false: stop */
    paramd__loss_scale_config loss_scale;
    bool loss_scale_restart;                   /* init_scale given: restart at it */
} paramd__model_patch;

/* Applies a patch atomically: everything is validated first (ranges and
 * cross-field rules of every changed configuration, state slots the tensors
 * hold, combinations), and a failure changes nothing and names the field.
 * Then every change is committed and logged at info level with its old and
 * new value.  Holds the model's config_lock for writing, so no push runs
 * half under the old and half under the new configuration. */
int paramd__core_patch_model(paramd__server *server, paramd__model *model,
                             const paramd__model_patch *patch, paramd__error *error);

/* Copies one optimizer state array (e.g. "exp_avg", or ASGD's averaged
 * weights "ax"; "ema", "swa" and "slow" for the averages and Lookahead's
 * slow weights of after_step.h) of each tensor in items into
 * items[i].weights (which has room for paramd__tensor_largest_array floats)
 * and sets items[i].weights_count to its length.  Every tensor
 * must hold that state: PARAMD_E_BAD_REQUEST names the first that does not
 * (an unknown slot name, or one its configuration does not keep, such as
 * momentum_buffer with momentum 0).  *step_out as for a pull. */
int paramd__core_pull_state(paramd__server *server, paramd__model *model, const char *slot,
                            paramd__tensor_io *items, size_t item_count, uint64_t *step_out,
                            paramd__error *error);

/* Copies the current weights of each tensor in items: the whole tensor, or
 * the range of weights_count elements from range_offset when weights_count
 * is not 0 (PARAMD_E_BAD_RANGE, before anything is copied, when a range
 * leaves its tensor).  *step_out receives the model's step count, read
 * before the copies. */
int paramd__core_pull(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, uint64_t *step_out, paramd__error *error);

#endif
