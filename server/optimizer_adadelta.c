/*
 * optimizer_adadelta.c - torch.optim.Adadelta: rho, eps, weight_decay
 * (coupled L2) and maximize.
 *
 * Per element, in float32, exactly as torch.optim.Adadelta (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) and addcmul_ do:
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   v = fma((1 - rho) * g, g, v * rho)                     square_avg
 *   delta = (sqrt(u + eps) / sqrt(v + eps)) * g
 *   u = fma((1 - rho) * delta, delta, u * rho)             acc_delta
 *   p = fma(delta, -lr, p)
 * No per-step scalars: torch's state["step"] is not used by the update.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_RHO, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_FOREACH, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec adadelta_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1.0}, 0, INFINITY, 0,
     "coefficient that scales delta before it is applied"},
    {"rho", PARAMD__HYPERPARAMETER_REAL, SLOT_RHO, {0.9}, 0, 1, 0,
     "coefficient of the running averages of squared gradients and squared updates"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-6}, 0, INFINITY, 0,
     "term added inside both square roots"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const adadelta_state_slots[] = {"square_avg", "acc_delta"};

typedef struct adadelta_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float rho, one_minus_rho;
    float eps;
    float negative_lr;
    bool has_weight_decay, maximize;
} adadelta_scalars;
_Static_assert(sizeof(adadelta_scalars) <= sizeof(paramd__step_scalars),
               "adadelta_scalars too large");

static bool adadelta_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

static void adadelta_prepare(const paramd__optimizer_config *config, uint64_t step,
                             paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    adadelta_scalars *s = (adadelta_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->rho = (float)v[SLOT_RHO];
    s->one_minus_rho = (float)(1 - v[SLOT_RHO]);
    s->eps = (float)v[SLOT_EPS];
    s->negative_lr = (float)-v[SLOT_LR];
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void adadelta_reference_kernel(const paramd__step_scalars *scalars,
                                      const paramd__step_arrays *arrays, size_t begin,
                                      size_t end)
{
    const adadelta_scalars *s = PARAMD__SCALARS(adadelta_scalars, scalars);
    float *param = arrays->param, *square_avg = arrays->state[0], *acc_delta = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);              /* grad.add(param, alpha=wd) */
        square_avg[i] = square_avg[i] * s->rho;                  /* mul_(rho) */
        square_avg[i] = fmaf(s->one_minus_rho * g, g, square_avg[i]); /* addcmul_ */
        float std = square_avg[i] + s->eps;                      /* add(eps) */
        std = sqrtf(std);                                        /* sqrt_() */
        float delta = acc_delta[i] + s->eps;                     /* add(eps) */
        delta = sqrtf(delta);                                    /* sqrt_() */
        delta = delta / std;                                     /* div_(std) */
        delta = delta * g;                                       /* mul_(grad) */
        acc_delta[i] = acc_delta[i] * s->rho;                    /* mul_(rho) */
        acc_delta[i] = fmaf(s->one_minus_rho * delta, delta, acc_delta[i]); /* addcmul_ */
        param[i] = fmaf(delta, s->negative_lr, param[i]);       /* add_(delta, alpha=-lr) */
    }
}

/* The fast path: one branch-free pass per variant.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant; weight decay does
 * (fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void adadelta_loop(const adadelta_scalars *s,
                                                float *restrict param,
                                                const float *restrict grad,
                                                float *restrict square_avg,
                                                float *restrict acc_delta, size_t begin,
                                                size_t end, bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float rho = s->rho, one_minus_rho = s->one_minus_rho, eps = s->eps;
    const float negative_lr = s->negative_lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = fmaf(p, weight_decay, g);
        float v = fmaf(one_minus_rho * g, g, square_avg[i] * rho);
        float u = acc_delta[i];
        float delta = (sqrtf(u + eps) / sqrtf(v + eps)) * g;
        square_avg[i] = v;
        acc_delta[i] = fmaf(one_minus_rho * delta, delta, u * rho);
        param[i] = fmaf(delta, negative_lr, p);
    }
}

PARAMD__FAST_KERNEL
static void adadelta_kernel(const paramd__step_scalars *scalars,
                            const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const adadelta_scalars *s = PARAMD__SCALARS(adadelta_scalars, scalars);
    float *param = arrays->param, *square_avg = arrays->state[0], *acc_delta = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        adadelta_loop(s, param, grad, square_avg, acc_delta, begin, end, true);
    else
        adadelta_loop(s, param, grad, square_avg, acc_delta, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_adadelta = {
    .name = "Adadelta",
    .state_slot_names = adadelta_state_slots,
    .state_slot_count = 2,
    .hyperparameters = adadelta_hyperparameters,
    .hyperparameter_count = sizeof adadelta_hyperparameters / sizeof adadelta_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adadelta_uses_state_slot,
    .init_state = NULL,
    .prepare = adadelta_prepare,
    .kernel = adadelta_kernel,
    .reference_kernel = adadelta_reference_kernel,
};
