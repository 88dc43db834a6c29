/*
 * optimizer_yogi.c - Yogi (Zaheer et al., NeurIPS 2018, "Adaptive Methods
 * for Nonconvex Optimization", Algorithm 2, without bias correction): betas,
 * eps, initial_accumulator_value, weight_decay (coupled L2, as torch's Adam)
 * and maximize.  torch 1.13 has no Yogi; paramd's rounding is its own and is
 * checked against a numpy reference written from the paper
 * (tests/conformance/reference_optimizers.py).
 *
 * Per element, in float32, every operation rounded separately in exactly
 * this order (no fma):
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = g + weight_decay * p
 *   m = beta1 * m + (1 - beta1) * g                           exp_avg
 *   v = v - (1 - beta2) * sign(v - g * g) * g * g             exp_avg_sq
 *   p = p - lr * m / (sqrt(v) + eps)
 * with sign(0) = 0, products and quotients evaluated left to right, and
 * 1 - beta1, 1 - beta2 computed in double precision and rounded to float
 * once.  v starts at initial_accumulator_value (rounded to float), m at 0.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_INITIAL_ACCUMULATOR_VALUE,
       SLOT_WEIGHT_DECAY, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec yogi_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running averages of the gradient and of its square"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-3}, 0, INFINITY, 0,
     "term added to the denominator"},
    {"initial_accumulator_value", PARAMD__HYPERPARAMETER_REAL, SLOT_INITIAL_ACCUMULATOR_VALUE,
     {1e-6}, 0, INFINITY, 0, "starting value of the second moment estimate"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const yogi_state_slots[] = {"exp_avg", "exp_avg_sq"};

typedef struct yogi_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float beta1, one_minus_beta1;
    float one_minus_beta2;
    float eps;
    float lr;
    bool has_weight_decay, maximize;
} yogi_scalars;
_Static_assert(sizeof(yogi_scalars) <= sizeof(paramd__step_scalars), "yogi_scalars too large");

static bool yogi_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

/* v starts at initial_accumulator_value, the double rounded to float. */
static void yogi_init_state(const paramd__optimizer_config *config, float *const *state,
                            size_t count)
{
    float initial = (float)config->values[SLOT_INITIAL_ACCUMULATOR_VALUE];
    float *exp_avg_sq = state[1];
    for (size_t i = 0; i < count; i++)
        exp_avg_sq[i] = initial;
}

static void yogi_prepare(const paramd__optimizer_config *config, uint64_t step,
                         paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    yogi_scalars *s = (yogi_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->beta1 = (float)v[SLOT_BETA1];
    s->one_minus_beta1 = (float)(1.0 - v[SLOT_BETA1]);
    s->one_minus_beta2 = (float)(1.0 - v[SLOT_BETA2]);
    s->eps = (float)v[SLOT_EPS];
    s->lr = (float)v[SLOT_LR];
}

/* The reference: the paper's algorithm element by element, branches and all. */
PARAMD__REFERENCE_KERNEL
static void yogi_reference_kernel(const paramd__step_scalars *scalars,
                                  const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const yogi_scalars *s = PARAMD__SCALARS(yogi_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = g + s->weight_decay * param[i];
        exp_avg[i] = s->beta1 * exp_avg[i] + s->one_minus_beta1 * g;
        float g2 = g * g;
        float difference = exp_avg_sq[i] - g2;
        float direction;
        if (difference > 0)
            direction = 1.0f;
        else if (difference < 0)
            direction = -1.0f;
        else
            direction = 0.0f;
        exp_avg_sq[i] = exp_avg_sq[i] - s->one_minus_beta2 * direction * g2;
        float denominator = sqrtf(exp_avg_sq[i]) + s->eps;
        param[i] = param[i] - s->lr * exp_avg[i] / denominator;
    }
}

/* The fast path: one branch-free pass per variant.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant; weight decay does
 * (g + 0 * p turns g = -0.0 into +0.0). */
static PARAMD__ALWAYS_INLINE void yogi_loop(const yogi_scalars *s, float *restrict param,
                                            const float *restrict grad, float *restrict exp_avg,
                                            float *restrict exp_avg_sq, size_t begin, size_t end,
                                            bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float one_minus_beta2 = s->one_minus_beta2, eps = s->eps, lr = s->lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = g + weight_decay * p;
        float m = beta1 * exp_avg[i] + one_minus_beta1 * g;
        float v = exp_avg_sq[i];
        float g2 = g * g;
        float difference = v - g2;
        float direction = (float)(difference > 0) - (float)(difference < 0); /* 1, -1 or +0 */
        v = v - one_minus_beta2 * direction * g2;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p - lr * m / (sqrtf(v) + eps);
    }
}

PARAMD__FAST_KERNEL
static void yogi_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                        size_t begin, size_t end)
{
    const yogi_scalars *s = PARAMD__SCALARS(yogi_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        yogi_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, true);
    else
        yogi_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_yogi = {
    .name = "Yogi",
    .state_slot_names = yogi_state_slots,
    .state_slot_count = 2,
    .hyperparameters = yogi_hyperparameters,
    .hyperparameter_count = sizeof yogi_hyperparameters / sizeof yogi_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = yogi_uses_state_slot,
    .init_state = yogi_init_state,
    .prepare = yogi_prepare,
    .kernel = yogi_kernel,
    .reference_kernel = yogi_reference_kernel,
};
