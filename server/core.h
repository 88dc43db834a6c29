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
} paramd__server;

void paramd__server_init(paramd__server *server);
void paramd__server_destroy(paramd__server *server);

/* Creates a model and registers it.  On success *model_out holds a reference
 * for the caller (release it), unless model_out is NULL. */
int paramd__core_create_model(paramd__server *server, const paramd__model_spec *spec,
                              paramd__model **model_out, paramd__error *error);

/* Returns a referenced model or PARAMD_E_MODEL_NOT_FOUND. */
int paramd__core_find_model(paramd__server *server, const char *name,
                            paramd__model **model_out, paramd__error *error);

int paramd__core_delete_model(paramd__server *server, const char *name, paramd__error *error);

/* One tensor of a push or a pull. */
typedef struct paramd__tensor_io {
    paramd__tensor *tensor;
    const float *grad;     /* push: tensor->count gradient values (borrowed) */
    size_t grad_count;     /* push: number of values in grad */
    float *weights;        /* out: tensor->count floats for the weights after
                              the update (push) or now (pull); may be NULL on push */
    size_t weights_count;  /* out: floats written to weights; tensor->count except
                              for a state array of another length (pull_state of
                              Adafactor's row_var, say).  0 means tensor->count. */
} paramd__tensor_io;

/* The number of floats in item->weights. */
static inline size_t paramd__tensor_io_count(const paramd__tensor_io *item)
{
    return item->weights_count ? item->weights_count : item->tensor->count;
}

/* What a push reports besides the weights. */
typedef struct paramd__push_outcome {
    uint64_t step; /* the model's step count after this push */
    double lr;     /* the learning rate this push used (the model's, not a group's) */
    double grad_norm; /* the norm before clipping that was used (the computed total
                         norm or the client's), when the model clips by norm; else NAN */
} paramd__push_outcome;

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

/* Copies one optimizer state array (e.g. "exp_avg", or ASGD's averaged
 * weights "ax") of each tensor in items into items[i].weights (which has room
 * for tensor->count floats; a state array is never longer) and sets
 * items[i].weights_count to its length.  Every tensor
 * must hold that state: PARAMD_E_BAD_REQUEST names the first that does not
 * (an unknown slot name, or one its configuration does not keep, such as
 * momentum_buffer with momentum 0).  *step_out as for a pull. */
int paramd__core_pull_state(paramd__server *server, paramd__model *model, const char *slot,
                            paramd__tensor_io *items, size_t item_count, uint64_t *step_out,
                            paramd__error *error);

/* Copies the current weights of each tensor in items.  *step_out receives the
 * model's step count, read before the copies. */
int paramd__core_pull(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, uint64_t *step_out, paramd__error *error);

#endif
