/*
 * optimizer_rmsprop.c - torch.optim.RMSprop: alpha, eps, weight_decay
 * (coupled L2), momentum, centered and maximize.
 *
 * Per element, in float32, exactly as torch.optim.RMSprop (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) and addcmul_ do (addcdiv_ has no fma):
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   v = fma((1 - alpha) * g, g, v * alpha)                 square_avg
 *   if centered:
 *       m = fma(g, 1 - alpha, m * alpha)                   grad_avg
 *       avg = sqrt(fma(-m, m, v)) + eps                    addcmul(m, m, value=-1)
 *   else:
 *       avg = sqrt(v) + eps
 *   if momentum > 0:
 *       b = b * momentum + g / avg                         momentum_buffer
 *       p = fma(b, -lr, p)
 *   else:
 *       p = p + ((-lr) * g) / avg
 * No per-step scalars: torch's state["step"] is not used by the update.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_ALPHA, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_MOMENTUM, SLOT_CENTERED,
       SLOT_FOREACH, SLOT_MAXIMIZE, SLOT_DIFFERENTIABLE };

static const paramd__hyperparameter_spec rmsprop_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0, "learning rate"},
    {"alpha", PARAMD__HYPERPARAMETER_REAL, SLOT_ALPHA, {0.99}, 0, INFINITY, 0,
     "smoothing constant of the running average of the squared gradient"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,
     "term added to the denominator"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    {"momentum", PARAMD__HYPERPARAMETER_REAL, SLOT_MOMENTUM, {0}, 0, INFINITY, 0,
     "momentum factor"},
    {"centered", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_CENTERED, {0}, 0, 1, 0,
     "normalize by an estimate of the gradient's variance (centered RMSprop)"},
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
    PARAMD__SPEC_NO_EFFECT("differentiable", SLOT_DIFFERENTIABLE),
};

enum { STATE_SQUARE_AVG, STATE_MOMENTUM_BUFFER, STATE_GRAD_AVG };
static const char *const rmsprop_state_slots[] = {"square_avg", "momentum_buffer", "grad_avg"};

typedef struct rmsprop_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float alpha, one_minus_alpha;
    float eps;
    float momentum;
    float negative_lr;
    bool has_weight_decay, has_momentum, centered, maximize;
} rmsprop_scalars;
_Static_assert(sizeof(rmsprop_scalars) <= sizeof(paramd__step_scalars),
               "rmsprop_scalars too large");

static bool rmsprop_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    const double *v = config->values;
    return slot == STATE_SQUARE_AVG || (slot == STATE_MOMENTUM_BUFFER && v[SLOT_MOMENTUM] > 0) ||
           (slot == STATE_GRAD_AVG && v[SLOT_CENTERED] != 0);
}

static void rmsprop_prepare(const paramd__optimizer_config *config, uint64_t step,
                            paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    rmsprop_scalars *s = (rmsprop_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->alpha = (float)v[SLOT_ALPHA];
    s->one_minus_alpha = (float)(1.0 - v[SLOT_ALPHA]);
    s->eps = (float)v[SLOT_EPS];
    s->momentum = (float)v[SLOT_MOMENTUM];
    s->has_momentum = v[SLOT_MOMENTUM] > 0;
    s->centered = v[SLOT_CENTERED] != 0;
    s->negative_lr = (float)-v[SLOT_LR];
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void rmsprop_reference_kernel(const paramd__step_scalars *scalars,
                                     const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const rmsprop_scalars *s = PARAMD__SCALARS(rmsprop_scalars, scalars);
    float *param = arrays->param;
    const float *grad = arrays->grad;
    float *square_avg = arrays->state[STATE_SQUARE_AVG];
    float *momentum_buffer = arrays->state[STATE_MOMENTUM_BUFFER];
    float *grad_avg = arrays->state[STATE_GRAD_AVG];
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);              /* grad.add(param, alpha=wd) */
        square_avg[i] = square_avg[i] * s->alpha;                /* mul_(alpha) */
        square_avg[i] = fmaf(s->one_minus_alpha * g, g, square_avg[i]); /* addcmul_ */
        float avg;
        if (s->centered) {
            grad_avg[i] = grad_avg[i] * s->alpha;                /* mul_(alpha) */
            grad_avg[i] = fmaf(g, s->one_minus_alpha, grad_avg[i]); /* add_(g, alpha=1-a) */
            avg = fmaf(-1.0f * grad_avg[i], grad_avg[i], square_avg[i]); /* addcmul(value=-1) */
            avg = sqrtf(avg);                                    /* sqrt_() */
        } else {
            avg = sqrtf(square_avg[i]);                          /* sqrt() */
        }
        avg = avg + s->eps;                                      /* add_(eps) */
        if (s->has_momentum) {
            momentum_buffer[i] = momentum_buffer[i] * s->momentum;           /* mul_ */
            momentum_buffer[i] = momentum_buffer[i] + (1.0f * g) / avg;      /* addcdiv_ */
            param[i] = fmaf(momentum_buffer[i], s->negative_lr, param[i]);   /* add_(alpha=-lr) */
        } else {
            param[i] = param[i] + (s->negative_lr * g) / avg;    /* addcdiv_(value=-lr) */
        }
    }
}

/* The fast path: one branch-free pass per variant (weight decay, centered,
 * momentum).  Multiplying by sign = +-1 is an exact negation, so maximize
 * needs no variant; weight decay does (fma(p, 0, -0.0) is +0.0, while torch
 * leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void rmsprop_loop(const rmsprop_scalars *s, float *restrict param,
                                               const float *restrict grad,
                                               float *restrict square_avg,
                                               float *restrict momentum_buffer,
                                               float *restrict grad_avg, size_t begin,
                                               size_t end, bool decay, bool centered,
                                               bool momentum)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float alpha = s->alpha, one_minus_alpha = s->one_minus_alpha, eps = s->eps;
    const float m = s->momentum, negative_lr = s->negative_lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = fmaf(p, weight_decay, g);
        float v = fmaf(one_minus_alpha * g, g, square_avg[i] * alpha);
        square_avg[i] = v;
        float avg;
        if (centered) {
            float mean = fmaf(g, one_minus_alpha, grad_avg[i] * alpha);
            grad_avg[i] = mean;
            avg = sqrtf(fmaf(-mean, mean, v)) + eps;
        } else {
            avg = sqrtf(v) + eps;
        }
        if (momentum) {
            float b = momentum_buffer[i] * m + g / avg;
            momentum_buffer[i] = b;
            param[i] = fmaf(b, negative_lr, p);
        } else {
            param[i] = p + (negative_lr * g) / avg;
        }
    }
}

PARAMD__FAST_KERNEL
static void rmsprop_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                           size_t begin, size_t end)
{
    const rmsprop_scalars *s = PARAMD__SCALARS(rmsprop_scalars, scalars);
    float *param = arrays->param;
    const float *grad = arrays->grad;
    float *square_avg = arrays->state[STATE_SQUARE_AVG];
    float *momentum_buffer = arrays->state[STATE_MOMENTUM_BUFFER];
    float *grad_avg = arrays->state[STATE_GRAD_AVG];
#define RMSPROP_VARIANT(decay)                                                                 \
    do {                                                                                       \
        if (s->centered && s->has_momentum)                                                    \
            rmsprop_loop(s, param, grad, square_avg, momentum_buffer, grad_avg, begin, end,    \
                         decay, true, true);                                                   \
        else if (s->centered)                                                                  \
            rmsprop_loop(s, param, grad, square_avg, NULL, grad_avg, begin, end, decay, true,  \
                         false);                                                               \
        else if (s->has_momentum)                                                              \
            rmsprop_loop(s, param, grad, square_avg, momentum_buffer, NULL, begin, end, decay, \
                         false, true);                                                         \
        else                                                                                   \
            rmsprop_loop(s, param, grad, square_avg, NULL, NULL, begin, end, decay, false,     \
                         false);                                                               \
    } while (0)
    if (s->has_weight_decay)
        RMSPROP_VARIANT(true);
    else
        RMSPROP_VARIANT(false);
#undef RMSPROP_VARIANT
}

const paramd__optimizer_type paramd__optimizer_rmsprop = {
    .name = "RMSprop",
    .state_slot_names = rmsprop_state_slots,
    .state_slot_count = 3,
    .hyperparameters = rmsprop_hyperparameters,
    .hyperparameter_count = sizeof rmsprop_hyperparameters / sizeof rmsprop_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = rmsprop_uses_state_slot,
    .init_state = NULL,
    .prepare = rmsprop_prepare,
    .kernel = rmsprop_kernel,
    .reference_kernel = rmsprop_reference_kernel,
};
