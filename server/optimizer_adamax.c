/*
 * optimizer_adamax.c - torch.optim.Adamax: betas, eps, weight_decay (coupled
 * L2) and maximize.
 *
 * Per element, in float32, exactly as torch.optim.Adamax (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) does (addcdiv_ has no fma):
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   m = fma(g, 1 - beta1, m * beta1)                       exp_avg
 *   u = max(u * beta2, |g| + eps)                          exp_inf (torch.amax)
 *   p = p + ((-clr) * m) / u
 * where, in double precision as torch computes them in Python,
 *   clr = lr / (1 - beta1^step).
 * torch keeps state["step"] as a float32 tensor and reads it with .item(),
 * so the step it uses stops growing at 2^24.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_FOREACH,
       SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec adamax_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {2e-3}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running average of the gradient and of the infinity norm"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,
     "term added to the infinity norm"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const adamax_state_slots[] = {"exp_avg", "exp_inf"};

typedef struct adamax_scalars {
    float sign;              /* -1 with maximize, else 1 */
    float weight_decay;
    float beta1, one_minus_beta1;
    float beta2;
    float eps;
    float negative_clr;      /* -(lr / (1 - beta1^step)) */
    bool has_weight_decay, maximize;
} adamax_scalars;
_Static_assert(sizeof(adamax_scalars) <= sizeof(paramd__step_scalars),
               "adamax_scalars too large");

static bool adamax_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

static void adamax_prepare(const paramd__optimizer_config *config, uint64_t step,
                           paramd__step_scalars *scalars)
{
    const double *v = config->values;
    adamax_scalars *s = (adamax_scalars *)(void *)scalars->bytes;
    double beta1 = v[SLOT_BETA1];
    double bias_correction = 1 - pow(beta1, paramd__torch_float_step(step));
    double clr = v[SLOT_LR] / bias_correction;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->beta1 = (float)beta1;
    s->one_minus_beta1 = (float)(1 - beta1);
    s->beta2 = (float)v[SLOT_BETA2];
    s->eps = (float)v[SLOT_EPS];
    s->negative_clr = (float)-clr;
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void adamax_reference_kernel(const paramd__step_scalars *scalars,
                                    const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const adamax_scalars *s = PARAMD__SCALARS(adamax_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_inf = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);             /* grad.add(param, alpha=wd) */
        exp_avg[i] = exp_avg[i] * s->beta1;                     /* mul_(beta1) */
        exp_avg[i] = fmaf(g, s->one_minus_beta1, exp_avg[i]);   /* add_(g, alpha=1-beta1) */
        exp_inf[i] = exp_inf[i] * s->beta2;                     /* mul_(beta2) */
        float norm = fabsf(g) + s->eps;                         /* grad.abs().add_(eps) */
        if (norm > exp_inf[i])                                  /* torch.amax over both */
            exp_inf[i] = norm;
        param[i] = param[i] + (s->negative_clr * exp_avg[i]) / exp_inf[i]; /* addcdiv_ */
    }
}

/* The fast path: one branch-free pass per variant.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant; weight decay does
 * (fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void adamax_loop(const adamax_scalars *s, float *restrict param,
                                              const float *restrict grad,
                                              float *restrict exp_avg, float *restrict exp_inf,
                                              size_t begin, size_t end, bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1, beta2 = s->beta2;
    const float eps = s->eps, negative_clr = s->negative_clr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = fmaf(p, weight_decay, g);
        float m = fmaf(g, one_minus_beta1, exp_avg[i] * beta1);
        float u = exp_inf[i] * beta2;
        float norm = fabsf(g) + eps;
        u = norm > u ? norm : u;
        exp_avg[i] = m;
        exp_inf[i] = u;
        param[i] = p + (negative_clr * m) / u;
    }
}

PARAMD__FAST_KERNEL
static void adamax_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                          size_t begin, size_t end)
{
    const adamax_scalars *s = PARAMD__SCALARS(adamax_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_inf = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        adamax_loop(s, param, grad, exp_avg, exp_inf, begin, end, true);
    else
        adamax_loop(s, param, grad, exp_avg, exp_inf, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_adamax = {
    .name = "Adamax",
    .state_slot_names = adamax_state_slots,
    .state_slot_count = 2,
    .hyperparameters = adamax_hyperparameters,
    .hyperparameter_count = sizeof adamax_hyperparameters / sizeof adamax_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adamax_uses_state_slot,
    .init_state = NULL,
    .prepare = adamax_prepare,
    .kernel = adamax_kernel,
    .reference_kernel = adamax_reference_kernel,
};
