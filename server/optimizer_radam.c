/*
 * optimizer_radam.c - torch.optim.RAdam: betas, eps and weight_decay
 * (coupled L2).
 *
 * torch 1.13 has two RAdam paths that disagree: the foreach one leaves eps
 * out of the adaptive learning rate (sqrt(v) / sqrt(bias_correction2) with no
 * "+ eps").  paramd follows the single-tensor path (foreach=False), which
 * adds eps as the published algorithm (Liu et al. 2019) and later releases do.
 *
 * Per element, in float32, exactly as torch.optim.RAdam (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) and addcmul_ do:
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   m = fma(g, 1 - beta1, m * beta1)                       exp_avg
 *   v = fma((1 - beta2) * g, g, v * beta2)                 exp_avg_sq
 *   m_hat = m / bias_correction1
 *   if rho_t > 5:
 *       adaptive_lr = (1 / (sqrt(v) + eps)) * sqrt(bias_correction2)
 *                         (a Python float divided by a tensor is
 *                          tensor.reciprocal() * float)
 *       p = p - ((m_hat * lr) * adaptive_lr) * rect
 *   else:
 *       p = p - m_hat * lr
 * where, in double precision as torch computes them in Python,
 *   bias_correction1 = 1 - beta1^step, bias_correction2 = 1 - beta2^step,
 *   rho_inf = 2 / (1 - beta2) - 1,
 *   rho_t = rho_inf - 2 * step * beta2^step / bias_correction2,
 *   rect = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t)).
 * torch keeps state["step"] as a float32 tensor and reads it with .item(),
 * so the step it uses stops growing at 2^24.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_FOREACH };

static const paramd__hyperparameter_spec radam_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-3}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running averages of the gradient and its square"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,
     "term added to the denominator"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
};

static const char *const radam_state_slots[] = {"exp_avg", "exp_avg_sq"};

typedef struct radam_scalars {
    float weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float bias_correction1;
    float bias_correction2_sqrt;
    float eps;
    float lr;
    float rect;
    bool has_weight_decay, rectified;
} radam_scalars;
_Static_assert(sizeof(radam_scalars) <= sizeof(paramd__step_scalars), "radam_scalars too large");

static bool radam_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

static void radam_prepare(const paramd__optimizer_config *config, uint64_t step,
                          paramd__step_scalars *scalars)
{
    const double *v = config->values;
    radam_scalars *s = (radam_scalars *)(void *)scalars->bytes;
    double beta1 = v[SLOT_BETA1], beta2 = v[SLOT_BETA2];
    double torch_step = paramd__torch_float_step(step);
    double bias_correction1 = 1 - pow(beta1, torch_step);
    double bias_correction2 = 1 - pow(beta2, torch_step);
    double rho_inf = 2 / (1 - beta2) - 1;
    double rho_t = rho_inf - 2 * torch_step * pow(beta2, torch_step) / bias_correction2;
    s->rectified = rho_t > 5.;
    s->rect = s->rectified ? (float)sqrt((rho_t - 4) * (rho_t - 2) * rho_inf /
                                         ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                           : 0.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->beta1 = (float)beta1;
    s->one_minus_beta1 = (float)(1 - beta1);
    s->beta2 = (float)beta2;
    s->one_minus_beta2 = (float)(1 - beta2);
    s->bias_correction1 = (float)bias_correction1;
    s->bias_correction2_sqrt = (float)sqrt(bias_correction2);
    s->eps = (float)v[SLOT_EPS];
    s->lr = (float)v[SLOT_LR];
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void radam_reference_kernel(const paramd__step_scalars *scalars,
                                   const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const radam_scalars *s = PARAMD__SCALARS(radam_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);              /* grad.add(param, alpha=wd) */
        exp_avg[i] = exp_avg[i] * s->beta1;                      /* mul_(beta1) */
        exp_avg[i] = fmaf(g, s->one_minus_beta1, exp_avg[i]);    /* add_(g, alpha=1-beta1) */
        exp_avg_sq[i] = exp_avg_sq[i] * s->beta2;                /* mul_(beta2) */
        exp_avg_sq[i] = fmaf(s->one_minus_beta2 * g, g, exp_avg_sq[i]); /* addcmul_ */
        float corrected = exp_avg[i] / s->bias_correction1;      /* exp_avg / bc1 */
        if (s->rectified) {
            float denom = sqrtf(exp_avg_sq[i]);                  /* sqrt() */
            denom = denom + s->eps;                              /* add_(eps) */
            float adaptive_lr = 1.0f / denom;                    /* reciprocal() */
            adaptive_lr = adaptive_lr * s->bias_correction2_sqrt; /* * sqrt(bc2) */
            float update = corrected * s->lr;                    /* * lr */
            update = update * adaptive_lr;                       /* * adaptive_lr */
            update = update * s->rect;                           /* * rect */
            param[i] = fmaf(update, -1.0f, param[i]);            /* add_(alpha=-1) */
        } else {
            float update = corrected * s->lr;                    /* * lr */
            param[i] = fmaf(update, -1.0f, param[i]);            /* add_(alpha=-1) */
        }
    }
}

/* The fast path: one branch-free pass per variant (weight decay, and whether
 * this step is rectified).  fma(x, -1, p) is p - x rounded once. */
static PARAMD__ALWAYS_INLINE void radam_loop(const radam_scalars *s, float *restrict param,
                                             const float *restrict grad,
                                             float *restrict exp_avg,
                                             float *restrict exp_avg_sq, size_t begin,
                                             size_t end, bool decay, bool rectified)
{
    const float weight_decay = s->weight_decay;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2;
    const float bias_correction1 = s->bias_correction1;
    const float bias_correction2_sqrt = s->bias_correction2_sqrt, eps = s->eps;
    const float lr = s->lr, rect = s->rect;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i];
        if (decay)
            g = fmaf(p, weight_decay, g);
        float m = fmaf(g, one_minus_beta1, exp_avg[i] * beta1);
        float v = fmaf(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float update = (m / bias_correction1) * lr;
        if (rectified)
            update = (update * ((1.0f / (sqrtf(v) + eps)) * bias_correction2_sqrt)) * rect;
        param[i] = p - update;
    }
}

PARAMD__FAST_KERNEL
static void radam_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                         size_t begin, size_t end)
{
    const radam_scalars *s = PARAMD__SCALARS(radam_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay && s->rectified)
        radam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, true, true);
    else if (s->has_weight_decay)
        radam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, true, false);
    else if (s->rectified)
        radam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, false, true);
    else
        radam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, false, false);
}

const paramd__optimizer_type paramd__optimizer_radam = {
    .name = "RAdam",
    .state_slot_names = radam_state_slots,
    .state_slot_count = 2,
    .hyperparameters = radam_hyperparameters,
    .hyperparameter_count = sizeof radam_hyperparameters / sizeof radam_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = radam_uses_state_slot,
    .init_state = NULL,
    .prepare = radam_prepare,
    .kernel = radam_kernel,
    .reference_kernel = radam_reference_kernel,
};
