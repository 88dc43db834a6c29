/*
 * optimizer_sgd.c - torch.optim.SGD: momentum, dampening, nesterov,
 * weight_decay (coupled L2) and maximize.
 *
 * Per element, in float32, exactly as torch.optim.SGD (1.13, single-tensor),
 * where fma(a, b, c) = a * b + c rounded once, as torch's add_(alpha=) does:
 *   d = maximize ? -g : g
 *   if weight_decay != 0:  d = fma(p, weight_decay, d)
 *   if momentum != 0:
 *       buf = (first step) ? d : fma(d, 1 - dampening, buf * momentum)
 *       d   = nesterov ? fma(buf, momentum, d) : buf
 *   p = fma(d, -lr, p)
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_MOMENTUM, SLOT_DAMPENING, SLOT_WEIGHT_DECAY, SLOT_NESTEROV, SLOT_MAXIMIZE,
       SLOT_FOREACH, SLOT_DIFFERENTIABLE };

static const paramd__hyperparameter_spec sgd_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {0}, 0, INFINITY, PARAMD__HYPERPARAMETER_REQUIRED,
     "learning rate (required, as in torch 1.13)"},
    {"momentum", PARAMD__HYPERPARAMETER_REAL, SLOT_MOMENTUM, {0}, 0, INFINITY, 0,
     "momentum factor"},
    {"dampening", PARAMD__HYPERPARAMETER_REAL, SLOT_DAMPENING, {0}, 0, 1, 0,
     "dampening for momentum"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    {"nesterov", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_NESTEROV, {0}, 0, 1, 0,
     "Nesterov momentum (needs momentum > 0 and dampening = 0)"},
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_NO_EFFECT("differentiable", SLOT_DIFFERENTIABLE),
};

static const char *const sgd_state_slots[] = {"momentum_buffer"};

typedef struct sgd_scalars {
    float sign;             /* -1 with maximize, else 1 */
    float weight_decay;
    float momentum;
    float one_minus_dampening;
    float negative_lr;
    bool has_weight_decay, has_momentum, nesterov, maximize, first_step;
} sgd_scalars;
_Static_assert(sizeof(sgd_scalars) <= sizeof(paramd__step_scalars), "sgd_scalars too large");

static int sgd_validate(const paramd__optimizer_config *config, const char *field,
                         paramd__error *error)
{
    const double *v = config->values;
    if (v[SLOT_NESTEROV] != 0 && (v[SLOT_MOMENTUM] <= 0 || v[SLOT_DAMPENING] != 0))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.nesterov: Nesterov momentum requires momentum > 0 "
                                 "and dampening = 0 (got momentum %.17g, dampening %.17g)",
                                 field, v[SLOT_MOMENTUM], v[SLOT_DAMPENING]);
    return PARAMD_OK;
}

static bool sgd_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    return slot == 0 && config->values[SLOT_MOMENTUM] != 0;
}

static void sgd_prepare(const paramd__optimizer_config *config, uint64_t step,
                        paramd__step_scalars *scalars)
{
    const double *v = config->values;
    sgd_scalars *s = (sgd_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->momentum = (float)v[SLOT_MOMENTUM];
    s->one_minus_dampening = (float)(1.0 - v[SLOT_DAMPENING]);
    s->negative_lr = (float)-v[SLOT_LR];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->has_momentum = v[SLOT_MOMENTUM] != 0;
    s->nesterov = v[SLOT_NESTEROV] != 0;
    s->first_step = step == 1;
}

/* The reference: torch's algorithm element by element, branches and all. */
PARAMD__REFERENCE_KERNEL
static void sgd_reference_kernel(const paramd__step_scalars *scalars,
                                 const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const sgd_scalars *s = PARAMD__SCALARS(sgd_scalars, scalars);
    float *param = arrays->param, *buffer = arrays->state[0];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float d = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            d = fmaf(param[i], s->weight_decay, d);
        if (s->has_momentum) {
            if (s->first_step) {
                buffer[i] = d;
            } else {
                buffer[i] = buffer[i] * s->momentum;
                buffer[i] = fmaf(d, s->one_minus_dampening, buffer[i]);
            }
            d = s->nesterov ? fmaf(buffer[i], s->momentum, d) : buffer[i];
        }
        param[i] = fmaf(d, s->negative_lr, param[i]);
    }
}

/* The fast path: one loop per variant (weight decay or not, momentum kind),
 * with no branches inside, so gcc vectorises each.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant.  (Weight decay does:
 * fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone.) */
static PARAMD__ALWAYS_INLINE void sgd_loop(const sgd_scalars *s, float *restrict param,
                                           const float *restrict grad, float *restrict buffer,
                                           size_t begin, size_t end, bool decay, bool momentum,
                                           bool first, bool nesterov)
{
    const float sign = s->sign, weight_decay = s->weight_decay, m = s->momentum;
    const float one_minus_dampening = s->one_minus_dampening, negative_lr = s->negative_lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float d = grad[i] * sign;
        if (decay)
            d = fmaf(p, weight_decay, d);
        if (momentum) {
            float b = first ? d : fmaf(d, one_minus_dampening, buffer[i] * m);
            buffer[i] = b;
            d = nesterov ? fmaf(b, m, d) : b;
        }
        param[i] = fmaf(d, negative_lr, p);
    }
}

PARAMD__FAST_KERNEL
static void sgd_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                       size_t begin, size_t end)
{
    const sgd_scalars *s = PARAMD__SCALARS(sgd_scalars, scalars);
    float *param = arrays->param, *buffer = arrays->state[0];
    const float *grad = arrays->grad;
#define SGD_VARIANT(decay)                                                                     \
    do {                                                                                       \
        if (!s->has_momentum)                                                                  \
            sgd_loop(s, param, grad, NULL, begin, end, decay, false, false, false);            \
        else if (s->first_step && s->nesterov)                                                 \
            sgd_loop(s, param, grad, buffer, begin, end, decay, true, true, true);             \
        else if (s->first_step)                                                                \
            sgd_loop(s, param, grad, buffer, begin, end, decay, true, true, false);            \
        else if (s->nesterov)                                                                  \
            sgd_loop(s, param, grad, buffer, begin, end, decay, true, false, true);            \
        else                                                                                   \
            sgd_loop(s, param, grad, buffer, begin, end, decay, true, false, false);           \
    } while (0)
    if (s->has_weight_decay)
        SGD_VARIANT(true);
    else
        SGD_VARIANT(false);
#undef SGD_VARIANT
}

const paramd__optimizer_type paramd__optimizer_sgd = {
    .name = "SGD",
    .state_slot_names = sgd_state_slots,
    .state_slot_count = 1,
    .hyperparameters = sgd_hyperparameters,
    .hyperparameter_count = sizeof sgd_hyperparameters / sizeof sgd_hyperparameters[0],
    .validate = sgd_validate,
    .uses_state_slot = sgd_uses_state_slot,
    .prepare = sgd_prepare,
    .kernel = sgd_kernel,
    .reference_kernel = sgd_reference_kernel,
};
