/*
 * optimizer_deltabardelta.c - the delta-bar-delta rule (Jacobs 1988,
 * "Increased rates of convergence through learning rate adaptation"): each
 * weight has its own gain, which grows additively (kappa) while the current
 * gradient agrees in sign with an exponential average of past gradients
 * (bar-delta, averaging factor theta) and shrinks multiplicatively (phi)
 * when they disagree, clipped to [min_gain, max_gain].  Also weight_decay
 * (coupled L2, as torch) and maximize.  torch 1.13 has no such optimizer;
 * paramd's rounding is its own and is checked against a numpy reference
 * written from the paper (tests/conformance/reference_optimizers.py).
 *
 * Per element, in float32, every operation rounded separately in exactly
 * this order (no fma):
 *   d = maximize ? -g : g
 *   if weight_decay != 0:  d = d + weight_decay * p
 *   if bar_delta * d > 0:        gain = min(gain + kappa, max_gain)
 *   else if bar_delta * d < 0:   gain = max(gain * (1 - phi), min_gain)
 *   (bar_delta * d == 0: gain unchanged)
 *   p = p - lr * gain * d                      (left to right, new gain)
 *   bar_delta = (1 - theta) * d + theta * bar_delta
 * with 1 - phi and 1 - theta computed in double precision and rounded to
 * float once.  gain starts at 1 (init_state), bar_delta at 0, so the first
 * step uses gain 1.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_KAPPA, SLOT_PHI, SLOT_THETA, SLOT_MIN_GAIN, SLOT_MAX_GAIN,
       SLOT_WEIGHT_DECAY, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec deltabardelta_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0,
     "learning rate (multiplied by each weight's gain)"},
    {"kappa", PARAMD__HYPERPARAMETER_REAL, SLOT_KAPPA, {0.05}, 0, INFINITY, 0,
     "additive increase of a gain while successive gradients agree in sign"},
    {"phi", PARAMD__HYPERPARAMETER_REAL, SLOT_PHI, {0.05}, 0, 1, 0,
     "multiplicative decrease of a gain when they disagree: gain *= 1 - phi"},
    {"theta", PARAMD__HYPERPARAMETER_REAL, SLOT_THETA, {0.7}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "averaging factor of bar-delta, the running average of the gradient"},
    {"min_gain", PARAMD__HYPERPARAMETER_REAL, SLOT_MIN_GAIN, {0.01}, 0, INFINITY,
     PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "lower bound of every gain"},
    {"max_gain", PARAMD__HYPERPARAMETER_REAL, SLOT_MAX_GAIN, {10}, 0, INFINITY,
     PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "upper bound of every gain (at least min_gain)"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const deltabardelta_state_slots[] = {"gain", "bar_delta"};

typedef struct deltabardelta_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float kappa, one_minus_phi;
    float theta, one_minus_theta;
    float min_gain, max_gain;
    float lr;
    bool has_weight_decay, maximize;
} deltabardelta_scalars;
_Static_assert(sizeof(deltabardelta_scalars) <= sizeof(paramd__step_scalars),
               "deltabardelta_scalars too large");

static int deltabardelta_validate(const paramd__optimizer_config *config, const char *field,
                                  paramd__error *error)
{
    const double *v = config->values;
    if (!(v[SLOT_MAX_GAIN] >= v[SLOT_MIN_GAIN]))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.max_gain: must be at least min_gain (got max_gain %.17g, "
                                 "min_gain %.17g)",
                                 field, v[SLOT_MAX_GAIN], v[SLOT_MIN_GAIN]);
    return PARAMD_OK;
}

static bool deltabardelta_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

/* Every gain starts at 1 (bar_delta stays at 0). */
static void deltabardelta_init_state(const paramd__optimizer_config *config,
                                     float *const *state, size_t count)
{
    (void)config;
    float *gain = state[0];
    for (size_t i = 0; i < count; i++)
        gain[i] = 1.0f;
}

static void deltabardelta_prepare(const paramd__optimizer_config *config, uint64_t step,
                                  paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    deltabardelta_scalars *s = (deltabardelta_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->kappa = (float)v[SLOT_KAPPA];
    s->one_minus_phi = (float)(1.0 - v[SLOT_PHI]);
    s->theta = (float)v[SLOT_THETA];
    s->one_minus_theta = (float)(1.0 - v[SLOT_THETA]);
    s->min_gain = (float)v[SLOT_MIN_GAIN];
    s->max_gain = (float)v[SLOT_MAX_GAIN];
    s->lr = (float)v[SLOT_LR];
}

/* The reference: the rule element by element, branches and all. */
PARAMD__REFERENCE_KERNEL
static void deltabardelta_reference_kernel(const paramd__step_scalars *scalars,
                                           const paramd__step_arrays *arrays, size_t begin,
                                           size_t end)
{
    const deltabardelta_scalars *s = PARAMD__SCALARS(deltabardelta_scalars, scalars);
    float *param = arrays->param, *gain = arrays->state[0], *bar_delta = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float d = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            d = d + s->weight_decay * param[i];
        float agreement = bar_delta[i] * d;
        if (agreement > 0) {
            float increased = gain[i] + s->kappa;
            gain[i] = increased < s->max_gain ? increased : s->max_gain;
        } else if (agreement < 0) {
            float decreased = gain[i] * s->one_minus_phi;
            gain[i] = decreased > s->min_gain ? decreased : s->min_gain;
        }
        param[i] = param[i] - s->lr * gain[i] * d;
        bar_delta[i] = s->one_minus_theta * d + s->theta * bar_delta[i];
    }
}

/* The fast path: one branch-free pass per variant, the gain chosen by
 * selects.  Multiplying by sign = +-1 is an exact negation, so maximize
 * needs no variant; weight decay does (d + 0 * p turns d = -0.0 into +0.0). */
static PARAMD__ALWAYS_INLINE void deltabardelta_loop(const deltabardelta_scalars *s,
                                                     float *restrict param,
                                                     const float *restrict grad,
                                                     float *restrict gains,
                                                     float *restrict bar_deltas, size_t begin,
                                                     size_t end, bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float kappa = s->kappa, one_minus_phi = s->one_minus_phi;
    const float theta = s->theta, one_minus_theta = s->one_minus_theta;
    const float min_gain = s->min_gain, max_gain = s->max_gain, lr = s->lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float d = grad[i] * sign;
        if (decay)
            d = d + weight_decay * p;
        float bar_delta = bar_deltas[i], gain = gains[i];
        float agreement = bar_delta * d;
        float increased = gain + kappa;
        increased = increased < max_gain ? increased : max_gain;
        float decreased = gain * one_minus_phi;
        decreased = decreased > min_gain ? decreased : min_gain;
        gain = agreement > 0 ? increased : gain;
        gain = agreement < 0 ? decreased : gain;
        gains[i] = gain;
        param[i] = p - lr * gain * d;
        bar_deltas[i] = one_minus_theta * d + theta * bar_delta;
    }
}

PARAMD__FAST_KERNEL
static void deltabardelta_kernel(const paramd__step_scalars *scalars,
                                 const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const deltabardelta_scalars *s = PARAMD__SCALARS(deltabardelta_scalars, scalars);
    float *param = arrays->param, *gain = arrays->state[0], *bar_delta = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        deltabardelta_loop(s, param, grad, gain, bar_delta, begin, end, true);
    else
        deltabardelta_loop(s, param, grad, gain, bar_delta, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_deltabardelta = {
    .name = "DeltaBarDelta",
    .state_slot_names = deltabardelta_state_slots,
    .state_slot_count = 2,
    .hyperparameters = deltabardelta_hyperparameters,
    .hyperparameter_count =
        sizeof deltabardelta_hyperparameters / sizeof deltabardelta_hyperparameters[0],
    .validate = deltabardelta_validate,
    .uses_state_slot = deltabardelta_uses_state_slot,
    .init_state = deltabardelta_init_state,
    .prepare = deltabardelta_prepare,
    .kernel = deltabardelta_kernel,
    .reference_kernel = deltabardelta_reference_kernel,
};
