/*
 * optimizer_adam.c - torch.optim.Adam and torch.optim.AdamW (amsgrad,
 * weight_decay, maximize).  They differ only in how weight decay is applied,
 * so they share their kernels.
 *
 * Per element, in float32, as torch.optim.Adam/AdamW (1.13, single-tensor),
 * where fma(a, b, c) = a * b + c rounded once, as torch's add_(alpha=) and
 * addcmul_ do:
 *   g = maximize ? -g : g
 *   Adam:   if weight_decay != 0:  g = fma(p, weight_decay, g)       (coupled L2)
 *   AdamW:  p = p * (1 - lr * weight_decay)                          (decoupled)
 *   m = fma(g, 1 - beta1, m * beta1)
 *   v = fma((1 - beta2) * g, g, v * beta2)
 *   amsgrad: v_max = max(v_max, v), and v_max replaces v below
 *   p = p + ((-step_size) * m) / (sqrt(v) / sqrt(bias_correction2) + eps)
 * where, in double precision as torch computes them in Python,
 *   bias_correction1 = 1 - beta1^step, bias_correction2 = 1 - beta2^step,
 *   step_size = lr / bias_correction1.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_AMSGRAD, SLOT_MAXIMIZE,
       SLOT_FOREACH, SLOT_CAPTURABLE, SLOT_DIFFERENTIABLE, SLOT_FUSED };

#define ADAM_HYPERPARAMETERS(default_weight_decay, weight_decay_description)                   \
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-3}, 0, INFINITY, 0, "learning rate"},     \
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,                     \
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,                                                       \
     "coefficients of the running averages of the gradient and its square"},                   \
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,                      \
     "term added to the denominator"},                                                          \
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {default_weight_decay}, 0, \
     INFINITY, 0, weight_decay_description},                                                    \
    {"amsgrad", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_AMSGRAD, {0}, 0, 1, 0,                     \
     "use the maximum of past squared-gradient averages (AMSGrad)"},                           \
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),                                                      \
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),                                           \
    PARAMD__SPEC_NO_EFFECT("capturable", SLOT_CAPTURABLE),                                     \
    PARAMD__SPEC_NO_EFFECT("differentiable", SLOT_DIFFERENTIABLE),                             \
    PARAMD__SPEC_NO_EFFECT("fused", SLOT_FUSED)

static const paramd__hyperparameter_spec adam_hyperparameters[] = {
    ADAM_HYPERPARAMETERS(0, "L2 penalty added to the gradient"),
};

static const paramd__hyperparameter_spec adamw_hyperparameters[] = {
    ADAM_HYPERPARAMETERS(1e-2, "decoupled weight decay: p *= 1 - lr * weight_decay"),
};

static const char *const adam_state_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

typedef struct adam_scalars {
    float sign;                   /* -1 with maximize, else 1 */
    float coupled_weight_decay;   /* Adam's weight_decay; 0 for AdamW */
    float decay_factor;           /* AdamW's 1 - lr * weight_decay; 1 for Adam */
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt;
    float eps;
    float negative_step_size;
    bool maximize, amsgrad, decoupled;
} adam_scalars;
_Static_assert(sizeof(adam_scalars) <= sizeof(paramd__step_scalars), "adam_scalars too large");

static bool adam_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    return slot < 2 || (slot == 2 && config->values[SLOT_AMSGRAD] != 0);
}

static void prepare(const paramd__optimizer_config *config, uint64_t step,
                    paramd__step_scalars *scalars, bool decoupled)
{
    const double *v = config->values;
    adam_scalars *s = (adam_scalars *)(void *)scalars->bytes;
    double lr = v[SLOT_LR], beta1 = v[SLOT_BETA1], beta2 = v[SLOT_BETA2];
    double bias_correction1 = 1.0 - pow(beta1, (double)step);
    double bias_correction2 = 1.0 - pow(beta2, (double)step);
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->amsgrad = v[SLOT_AMSGRAD] != 0;
    s->decoupled = decoupled;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->coupled_weight_decay = decoupled ? 0.0f : (float)v[SLOT_WEIGHT_DECAY];
    s->decay_factor = decoupled ? (float)(1.0 - lr * v[SLOT_WEIGHT_DECAY]) : 1.0f;
    s->beta1 = (float)beta1;
    s->one_minus_beta1 = (float)(1.0 - beta1);
    s->beta2 = (float)beta2;
    s->one_minus_beta2 = (float)(1.0 - beta2);
    s->bias_correction2_sqrt = (float)sqrt(bias_correction2);
    s->eps = (float)v[SLOT_EPS];
    s->negative_step_size = (float)-(lr / bias_correction1);
}

static void adam_prepare(const paramd__optimizer_config *config, uint64_t step,
                         paramd__step_scalars *scalars)
{
    prepare(config, step, scalars, false);
}

static void adamw_prepare(const paramd__optimizer_config *config, uint64_t step,
                          paramd__step_scalars *scalars)
{
    prepare(config, step, scalars, true);
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void adam_reference_kernel(const paramd__step_scalars *scalars,
                                  const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const adam_scalars *s = PARAMD__SCALARS(adam_scalars, scalars);
    float *param = arrays->param;
    const float *grad = arrays->grad;
    float *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    float *max_exp_avg_sq = arrays->state[2];
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->decoupled)
            param[i] = param[i] * s->decay_factor;
        else if (s->coupled_weight_decay != 0)
            g = fmaf(param[i], s->coupled_weight_decay, g);
        exp_avg[i] = exp_avg[i] * s->beta1;
        exp_avg[i] = fmaf(g, s->one_minus_beta1, exp_avg[i]);
        exp_avg_sq[i] = exp_avg_sq[i] * s->beta2;
        exp_avg_sq[i] = fmaf(s->one_minus_beta2 * g, g, exp_avg_sq[i]);
        float second_moment = exp_avg_sq[i];
        if (s->amsgrad) {
            if (exp_avg_sq[i] > max_exp_avg_sq[i])
                max_exp_avg_sq[i] = exp_avg_sq[i];
            second_moment = max_exp_avg_sq[i];
        }
        float denominator = sqrtf(second_moment) / s->bias_correction2_sqrt + s->eps;
        param[i] = param[i] + (s->negative_step_size * exp_avg[i]) / denominator;
    }
}

/* The fast path: one branch-free pass that reads p, g, m, v (and v_max) once
 * and writes p, m, v once.  Multiplying by sign = +-1 or by decay_factor = 1
 * is exact, so maximize and AdamW need no variant; coupled weight decay does
 * (fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void adam_loop(const adam_scalars *s, float *restrict param,
                                            const float *restrict grad, float *restrict exp_avg,
                                            float *restrict exp_avg_sq,
                                            float *restrict max_exp_avg_sq, size_t begin,
                                            size_t end, bool coupled_decay, bool amsgrad)
{
    const float sign = s->sign, weight_decay = s->coupled_weight_decay;
    const float decay_factor = s->decay_factor;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2;
    const float bias_correction2_sqrt = s->bias_correction2_sqrt, eps = s->eps;
    const float negative_step_size = s->negative_step_size;
    for (size_t i = begin; i < end; i++) {
        float p = param[i] * decay_factor;
        float g = grad[i] * sign;
        if (coupled_decay)
            g = fmaf(param[i], weight_decay, g);
        float m = fmaf(g, one_minus_beta1, exp_avg[i] * beta1);
        float v = fmaf(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        if (amsgrad) {
            float previous = max_exp_avg_sq[i];
            v = v > previous ? v : previous;
            max_exp_avg_sq[i] = v;
        }
        param[i] = p + (negative_step_size * m) / (sqrtf(v) / bias_correction2_sqrt + eps);
    }
}

PARAMD__FAST_KERNEL
static void adam_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                        size_t begin, size_t end)
{
    const adam_scalars *s = PARAMD__SCALARS(adam_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    float *max_exp_avg_sq = arrays->state[2];
    const float *grad = arrays->grad;
    bool coupled_decay = s->coupled_weight_decay != 0;
    if (coupled_decay && s->amsgrad)
        adam_loop(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, begin, end, true, true);
    else if (coupled_decay)
        adam_loop(s, param, grad, exp_avg, exp_avg_sq, NULL, begin, end, true, false);
    else if (s->amsgrad)
        adam_loop(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, begin, end, false, true);
    else
        adam_loop(s, param, grad, exp_avg, exp_avg_sq, NULL, begin, end, false, false);
}

const paramd__optimizer_type paramd__optimizer_adam = {
    .name = "Adam",
    .state_slot_names = adam_state_slots,
    .state_slot_count = 3,
    .hyperparameters = adam_hyperparameters,
    .hyperparameter_count = sizeof adam_hyperparameters / sizeof adam_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adam_uses_state_slot,
    .prepare = adam_prepare,
    .kernel = adam_kernel,
    .reference_kernel = adam_reference_kernel,
};

const paramd__optimizer_type paramd__optimizer_adamw = {
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .name = "AdamW",
    .state_slot_names = adam_state_slots,
    .state_slot_count = 3,
    .hyperparameters = adamw_hyperparameters,
    .hyperparameter_count = sizeof adamw_hyperparameters / sizeof adamw_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adam_uses_state_slot,
    .prepare = adamw_prepare,
    .kernel = adam_kernel,
    .reference_kernel = adam_reference_kernel,
};
