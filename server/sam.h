/*
 * sam.h - sharpness-aware minimisation held by the server (issue 7, item 2):
 * SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021) around any base
 * optimizer, as the reference implementation (davda54/sam) runs them.
 *
 *   "optimizer": {"name": "SAM", "rho": 0.05, "adaptive": false,
 *                 "base": {"name": "SGD", "lr": 0.1, "momentum": 0.9}}
 *
 * Two pushes make one step (variant "two_step", the default):
 *   1. the ascent push brings the gradient g at the weights w; the server
 *      changes nothing and answers with the perturbed weights w + e,
 *          e = rho / (||s g|| + 1e-12) * s^2 g,   s = |w| (ASAM) or 1 (SAM),
 *      ||.|| over all the tensors of the push (or the client's grad_norm,
 *      which a model spread over several shards requires);
 *   2. the descent push brings the gradient at w + e; the server applies
 *      the base optimizer (and the whole push pipeline) to w itself - the
 *      server never moved w, so nothing is "restored" - and answers with the
 *      new weights.
 * The server keeps, per worker (the push's `worker`; an unnamed worker is
 * one more), whether its next push is an ascent or a descent.
 *
 * Variant "momentum" needs no second gradient (after Momentum-SAM, Becker
 * et al. 2023): every push is an ordinary step, and the reply's weights are
 * perturbed along the base optimizer's first moment m (SGD's momentum
 * buffer, Adam's exp_avg): w + rho m / ||m||, so the worker's next
 * gradient is taken at the perturbed point while the server's weights stay
 * unperturbed.
 */
#ifndef PARAMD_SERVER_SAM_H
#define PARAMD_SERVER_SAM_H

#include "dictionary.h"
#include "error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct paramd__model;
struct paramd__tensor_io;
struct paramd__push_options;
struct paramd__push_outcome;

typedef struct paramd__sam_config {
    bool enabled;
    double rho;    /* > 0, default 0.05 */
    bool adaptive; /* ASAM */
    bool momentum; /* the "momentum" variant */
} paramd__sam_config;

/* Which workers are between their ascent and descent pushes. */
typedef struct paramd__sam_state {
    pthread_mutex_t lock;
    paramd__dictionary pending; /* worker name -> a non-NULL marker */
} paramd__sam_state;

int paramd__sam_config_validate(const paramd__sam_config *config, paramd__error *error);

paramd__sam_state *paramd__sam_create(void);
void paramd__sam_destroy(paramd__sam_state *state);

/* The two-step variant's first push: when it is the worker's ascent push,
 * computes the perturbed weights into each item's weights buffer, fills
 * the outcome and returns PARAMD_OK with *handled set; when it is the
 * descent, returns PARAMD_OK with *handled clear (the caller runs the
 * ordinary push).  Errors change nothing. */
int paramd__sam_ascent(struct paramd__model *model, struct paramd__tensor_io *items,
                       size_t item_count, const struct paramd__push_options *options,
                       struct paramd__push_outcome *outcome, bool *handled, paramd__error *error);

/* Marks the worker as between its ascent and descent again (a descent push
 * that was refused). */
void paramd__sam_set_pending(struct paramd__model *model, const char *worker);

/* The momentum variant, after an ordinary push: adds rho m / ||m|| to the
 * reply's weights. */
void paramd__sam_perturb_reply(struct paramd__model *model, struct paramd__tensor_io *items,
                               size_t item_count);

/* The base optimizer's first-moment slot for the momentum variant, or -1. */
int paramd__sam_moment_slot(const struct paramd__model *model, size_t tensor);

#endif
