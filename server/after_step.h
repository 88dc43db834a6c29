/*
 * after_step.h - what happens to a tensor's weights after its optimizer
 * step (issue 7, items 3, 4 and 6), in this order, each only when the model
 * (or the tensor) has it:
 *
 *   7. Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward,
 *      1 step back"): every k-th step of the tensor, the slow weights move
 *      alpha of the way to the fast ones, slow += alpha (fast - slow), and
 *      the fast weights start again from them, fast = slow.
 *   8. A constraint of the tensor: "nonneg" (w = max(w, 0)); "max_norm"
 *      (each row, the sub-tensor at an index of the first dimension, with an
 *      L2 norm above max_norm is scaled to it, as torch.renorm(w, 2, 0,
 *      max_norm) does); "orthogonal" (the retraction onto the orthonormal
 *      matrices: Q of the QR factorisation of the tensor as a matrix of
 *      shape[0] rows, Q's columns times the signs of R's diagonal, so that
 *      an orthonormal matrix is its own retraction).
 *   9. Weight averaging, as torch.optim.swa_utils.AveragedModel keeps it:
 *      an exponential moving average (ema = decay ema + (1 - decay) w, from
 *      every step) and stochastic weight averaging (the running mean of the
 *      weights at steps start, start + frequency, ...).  Each average starts
 *      as a copy of the initial weights and takes the weights themselves at
 *      its first update, as AveragedModel does.  A pull may ask for an
 *      average instead of the weights.
 *
 * The arrays (slow weights, averages) live beside the tensor's optimizer
 * state (paramd__tensor_extra) and are checkpointed with it.
 */
#ifndef PARAMD_SERVER_AFTER_STEP_H
#define PARAMD_SERVER_AFTER_STEP_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct paramd__lookahead_config {
    bool enabled;
    int64_t k;    /* steps between synchronisations, >= 1 */
    double alpha; /* in (0, 1] */
} paramd__lookahead_config;

typedef struct paramd__averaging_config {
    bool ema;
    double ema_decay;      /* in [0, 1) */
    bool swa;
    int64_t swa_start;     /* the first step averaged, >= 1 */
    int64_t swa_frequency; /* steps between averaged steps, >= 1 */
} paramd__averaging_config;

typedef enum paramd__constraint_kind {
    PARAMD__CONSTRAINT_NONE = 0,
    PARAMD__CONSTRAINT_NONNEG,
    PARAMD__CONSTRAINT_MAX_NORM,
    PARAMD__CONSTRAINT_ORTHOGONAL,
} paramd__constraint_kind;

typedef struct paramd__constraint {
    paramd__constraint_kind kind;
    double max_norm; /* MAX_NORM: > 0 */
} paramd__constraint;

int paramd__lookahead_config_validate(const paramd__lookahead_config *config,
                                      paramd__error *error);
int paramd__averaging_config_validate(const paramd__averaging_config *config,
                                      paramd__error *error);

/* Whether any of them changes the weights after the step (then the step
 * cannot write the reply's weights itself: core.c copies them after). */
static inline bool paramd__after_step_changes_weights(const paramd__lookahead_config *lookahead,
                                                      const paramd__constraint *constraint)
{
    return lookahead->enabled || constraint->kind != PARAMD__CONSTRAINT_NONE;
}

/* Stage 7 after the tensor's step number `step` (1 for the first). */
void paramd__lookahead_apply(const paramd__lookahead_config *config, uint64_t step,
                             float *weights, float *slow, size_t count);

/* Stage 8.  A tensor of this shape (the orthogonal constraint treats it as
 * shape[0] rows; it needs two dimensions, checked at creation).  Returns
 * PARAMD_OK or PARAMD_E_NO_MEMORY (orthogonal's factorisation; the weights
 * are then as the optimizer left them). */
int paramd__constraint_apply(const paramd__constraint *constraint, float *weights, size_t count,
                             int dimension_count, const int64_t *shape);

/* Checks a constraint against its tensor's shape; errors name `field`. */
int paramd__constraint_validate(const paramd__constraint *constraint, int dimension_count,
                                const char *field, paramd__error *error);

const char *paramd__constraint_name(paramd__constraint_kind kind);

/* Stage 9 after the step number `step`: updates each average the model
 * keeps (ema, or swa with *swa_count updates so far; NULL arrays for those
 * it does not). */
void paramd__averaging_apply(const paramd__averaging_config *config, uint64_t step,
                             const float *weights, float *ema, uint64_t *ema_count, float *swa,
                             uint64_t *swa_count, size_t count);

#endif
