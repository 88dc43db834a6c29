/*
 * optimizer_lion.c - Lion (Chen et al. 2023, "Symbolic Discovery of
 * Optimization Algorithms", Algorithm 2): betas, weight_decay (decoupled, as
 * in the paper) and maximize.  torch 1.13 has no Lion; paramd's rounding is
 * its own and is checked against a numpy reference written from the paper
 * (tests/conformance/reference_optimizers.py).
 *
 * Per element, in float32, every operation rounded separately in exactly
 * this order (no fma):
 *   g = maximize ? -g : g
 *   c = beta1 * m + (1 - beta1) * g
 *   p = p * (1 - lr * weight_decay) - lr * sign(c)      (sign(0) = 0)
 *   m = beta2 * m + (1 - beta2) * g                      exp_avg
 * where the scalars 1 - beta1, 1 - beta2 and 1 - lr * weight_decay are
 * computed in double precision and rounded to float once.  Multiplying by
 * 1 - lr * weight_decay = 1 is exact, so weight_decay = 0 leaves p alone.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_WEIGHT_DECAY, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec lion_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-4}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.99}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "interpolation factor of the update direction, and decay of the momentum"},
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {0}, 0, INFINITY, 0,
     "decoupled weight decay: p *= 1 - lr * weight_decay"},
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const lion_state_slots[] = {"exp_avg"};

typedef struct lion_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float decay_factor;     /* 1 - lr * weight_decay */
    float lr;
    bool maximize;
} lion_scalars;
_Static_assert(sizeof(lion_scalars) <= sizeof(paramd__step_scalars), "lion_scalars too large");

static bool lion_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot == 0;
}

static void lion_prepare(const paramd__optimizer_config *config, uint64_t step,
                         paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    lion_scalars *s = (lion_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->beta1 = (float)v[SLOT_BETA1];
    s->one_minus_beta1 = (float)(1.0 - v[SLOT_BETA1]);
    s->beta2 = (float)v[SLOT_BETA2];
    s->one_minus_beta2 = (float)(1.0 - v[SLOT_BETA2]);
    s->decay_factor = (float)(1.0 - v[SLOT_LR] * v[SLOT_WEIGHT_DECAY]);
    s->lr = (float)v[SLOT_LR];
}

/* The reference: the paper's algorithm element by element, branches and all. */
PARAMD__REFERENCE_KERNEL
static void lion_reference_kernel(const paramd__step_scalars *scalars,
                                  const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const lion_scalars *s = PARAMD__SCALARS(lion_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        float c = s->beta1 * exp_avg[i];
        c = c + s->one_minus_beta1 * g;
        float direction;
        if (c > 0)
            direction = 1.0f;
        else if (c < 0)
            direction = -1.0f;
        else
            direction = 0.0f;
        param[i] = param[i] * s->decay_factor;
        param[i] = param[i] - s->lr * direction;
        exp_avg[i] = s->beta2 * exp_avg[i] + s->one_minus_beta2 * g;
    }
}

/* The fast path: one branch-free pass.  Multiplying by sign = +-1 is an exact
 * negation, so maximize needs no variant, nor does weight_decay = 0
 * (decay_factor = 1). */
PARAMD__FAST_KERNEL
static void lion_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                        size_t begin, size_t end)
{
    const lion_scalars *s = PARAMD__SCALARS(lion_scalars, scalars);
    float *restrict param = arrays->param, *restrict exp_avg = arrays->state[0];
    const float *restrict grad = arrays->grad;
    const float sign = s->sign, beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2;
    const float decay_factor = s->decay_factor, lr = s->lr;
    for (size_t i = begin; i < end; i++) {
        float g = grad[i] * sign;
        float m = exp_avg[i];
        float c = beta1 * m + one_minus_beta1 * g;
        float direction = (float)(c > 0) - (float)(c < 0); /* 1, -1 or +0 */
        param[i] = param[i] * decay_factor - lr * direction;
        exp_avg[i] = beta2 * m + one_minus_beta2 * g;
    }
}

const paramd__optimizer_type paramd__optimizer_lion = {
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .name = "Lion",
    .state_slot_names = lion_state_slots,
    .state_slot_count = 1,
    .hyperparameters = lion_hyperparameters,
    .hyperparameter_count = sizeof lion_hyperparameters / sizeof lion_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = lion_uses_state_slot,
    .init_state = NULL,
    .prepare = lion_prepare,
    .kernel = lion_kernel,
    .reference_kernel = lion_reference_kernel,
};
