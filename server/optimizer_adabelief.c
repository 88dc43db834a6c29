/*
 * optimizer_adabelief.c - AdaBelief (Zhuang et al., NeurIPS 2020, "AdaBelief
 * Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
 * Algorithm 2, without rectification or amsgrad): betas, eps, weight_decay
 * (coupled L2, as torch's Adam) and maximize.  torch 1.13 has no AdaBelief;
 * paramd's rounding is its own and is checked against a numpy reference
 * written from the paper (tests/conformance/reference_optimizers.py).
 *
 * Per element, in float32, every operation rounded separately in exactly
 * this order (no fma):
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = g + weight_decay * p
 *   m = beta1 * m + (1 - beta1) * g                               exp_avg
 *   s = beta2 * s + (1 - beta2) * ((g - m) * (g - m)) + eps       exp_avg_var
 *   p = p - (step_size * m) / (sqrt(s) / bias_correction2_sqrt + eps)
 * where, in double precision as prepare does for Adam, and rounded to float
 * once: bias_correction1 = 1 - beta1^step, bias_correction2 = 1 - beta2^step,
 * step_size = lr / bias_correction1, bias_correction2_sqrt =
 * sqrt(bias_correction2), and 1 - beta1, 1 - beta2.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec adabelief_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-3}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running averages of the gradient and of its variance"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-16}, 0, INFINITY, 0,
     "term added to the variance estimate and to the denominator"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const adabelief_state_slots[] = {"exp_avg", "exp_avg_var"};

typedef struct adabelief_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
    float step_size;        /* lr / (1 - beta1^step) */
    float bias_correction2_sqrt;
    bool has_weight_decay, maximize;
} adabelief_scalars;
_Static_assert(sizeof(adabelief_scalars) <= sizeof(paramd__step_scalars),
               "adabelief_scalars too large");

static bool adabelief_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

static void adabelief_prepare(const paramd__optimizer_config *config, uint64_t step,
                              paramd__step_scalars *scalars)
{
    const double *v = config->values;
    adabelief_scalars *s = (adabelief_scalars *)(void *)scalars->bytes;
    double beta1 = v[SLOT_BETA1], beta2 = v[SLOT_BETA2];
    double bias_correction1 = 1.0 - pow(beta1, (double)step);
    double bias_correction2 = 1.0 - pow(beta2, (double)step);
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->beta1 = (float)beta1;
    s->one_minus_beta1 = (float)(1.0 - beta1);
    s->beta2 = (float)beta2;
    s->one_minus_beta2 = (float)(1.0 - beta2);
    s->eps = (float)v[SLOT_EPS];
    s->step_size = (float)(v[SLOT_LR] / bias_correction1);
    s->bias_correction2_sqrt = (float)sqrt(bias_correction2);
}

/* The reference: the paper's algorithm element by element, branches and all. */
PARAMD__REFERENCE_KERNEL
static void adabelief_reference_kernel(const paramd__step_scalars *scalars,
                                       const paramd__step_arrays *arrays, size_t begin,
                                       size_t end)
{
    const adabelief_scalars *s = PARAMD__SCALARS(adabelief_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_var = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = g + s->weight_decay * param[i];
        exp_avg[i] = s->beta1 * exp_avg[i] + s->one_minus_beta1 * g;
        float belief = g - exp_avg[i];
        float squared = belief * belief;
        exp_avg_var[i] = s->beta2 * exp_avg_var[i] + s->one_minus_beta2 * squared;
        exp_avg_var[i] = exp_avg_var[i] + s->eps;
        float denominator = sqrtf(exp_avg_var[i]) / s->bias_correction2_sqrt;
        denominator = denominator + s->eps;
        param[i] = param[i] - (s->step_size * exp_avg[i]) / denominator;
    }
}

/* The fast path: one branch-free pass per variant.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant; weight decay does
 * (g + 0 * p turns g = -0.0 into +0.0). */
static PARAMD__ALWAYS_INLINE void adabelief_loop(const adabelief_scalars *s,
                                                 float *restrict param,
                                                 const float *restrict grad,
                                                 float *restrict exp_avg,
                                                 float *restrict exp_avg_var, size_t begin,
                                                 size_t end, bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2, eps = s->eps;
    const float step_size = s->step_size, bias_correction2_sqrt = s->bias_correction2_sqrt;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = g + weight_decay * p;
        float m = beta1 * exp_avg[i] + one_minus_beta1 * g;
        float belief = g - m;
        float var = beta2 * exp_avg_var[i] + one_minus_beta2 * (belief * belief) + eps;
        exp_avg[i] = m;
        exp_avg_var[i] = var;
        param[i] = p - (step_size * m) / (sqrtf(var) / bias_correction2_sqrt + eps);
    }
}

PARAMD__FAST_KERNEL
static void adabelief_kernel(const paramd__step_scalars *scalars,
                             const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const adabelief_scalars *s = PARAMD__SCALARS(adabelief_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_var = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        adabelief_loop(s, param, grad, exp_avg, exp_avg_var, begin, end, true);
    else
        adabelief_loop(s, param, grad, exp_avg, exp_avg_var, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_adabelief = {
    .name = "AdaBelief",
    .state_slot_names = adabelief_state_slots,
    .state_slot_count = 2,
    .hyperparameters = adabelief_hyperparameters,
    .hyperparameter_count =
        sizeof adabelief_hyperparameters / sizeof adabelief_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adabelief_uses_state_slot,
    .init_state = NULL,
    .prepare = adabelief_prepare,
    .kernel = adabelief_kernel,
    .reference_kernel = adabelief_reference_kernel,
};
