/*
 * optimizer_adagrad.c - torch.optim.Adagrad: lr_decay, weight_decay (coupled
 * L2), initial_accumulator_value and maximize.
 *
 * Per element, in float32, exactly as torch.optim.Adagrad (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) and addcmul_ do:
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   sum = fma(g, g, sum)                          (addcmul_ with value 1)
 *   p = p + ((-clr) * g) / (sqrt(sum) + eps)      (addcdiv_: no fma)
 * where, in double precision as torch computes it in Python,
 *   clr = lr / (1 + (step - 1) * lr_decay).
 * `sum` starts at initial_accumulator_value (torch.full_like in the
 * constructor), not at zero.  torch keeps state["step"] as a float32 tensor
 * and reads it with .item(), so the step it uses stops growing at 2^24.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_LR_DECAY, SLOT_WEIGHT_DECAY, SLOT_INITIAL_ACCUMULATOR_VALUE, SLOT_EPS,
       SLOT_FOREACH, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec adagrad_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0, "learning rate"},
    {"lr_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_LR_DECAY, {0}, 0, INFINITY, 0,
     "learning rate decay: step t uses lr / (1 + (t - 1) * lr_decay)"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    {"initial_accumulator_value", PARAMD__HYPERPARAMETER_REAL, SLOT_INITIAL_ACCUMULATOR_VALUE,
     {0}, 0, INFINITY, 0, "starting value of the sum of squared gradients"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-10}, 0, INFINITY, 0,
     "term added to the denominator"},
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const adagrad_state_slots[] = {"sum"};

typedef struct adagrad_scalars {
    float sign;            /* -1 with maximize, else 1 */
    float weight_decay;
    float eps;
    float negative_clr;    /* -(lr / (1 + (step - 1) * lr_decay)) */
    bool has_weight_decay, maximize;
} adagrad_scalars;
_Static_assert(sizeof(adagrad_scalars) <= sizeof(paramd__step_scalars),
               "adagrad_scalars too large");

static bool adagrad_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot == 0;
}

/* torch.full_like(p, initial_accumulator_value): the double rounded to float. */
static void adagrad_init_state(const paramd__optimizer_config *config, float *const *state,
                               size_t count)
{
    float initial = (float)config->values[SLOT_INITIAL_ACCUMULATOR_VALUE];
    float *sum = state[0];
    for (size_t i = 0; i < count; i++)
        sum[i] = initial;
}

static void adagrad_prepare(const paramd__optimizer_config *config, uint64_t step,
                            paramd__step_scalars *scalars)
{
    const double *v = config->values;
    adagrad_scalars *s = (adagrad_scalars *)(void *)scalars->bytes;
    double torch_step = paramd__torch_float_step(step);
    double clr = v[SLOT_LR] / (1 + (torch_step - 1) * v[SLOT_LR_DECAY]);
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->eps = (float)v[SLOT_EPS];
    s->negative_clr = (float)-clr;
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void adagrad_reference_kernel(const paramd__step_scalars *scalars,
                                     const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const adagrad_scalars *s = PARAMD__SCALARS(adagrad_scalars, scalars);
    float *param = arrays->param, *state_sum = arrays->state[0];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);             /* grad.add(param, alpha=wd) */
        state_sum[i] = fmaf(1.0f * g, g, state_sum[i]);         /* addcmul_(g, g, value=1) */
        float std = sqrtf(state_sum[i]);                        /* sqrt() */
        std = std + s->eps;                                     /* add_(eps) */
        param[i] = param[i] + (s->negative_clr * g) / std;      /* addcdiv_(g, std, -clr) */
    }
}

/* The fast path: one branch-free pass per variant.  Multiplying by sign = +-1
 * is an exact negation, so maximize needs no variant; weight decay does
 * (fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void adagrad_loop(const adagrad_scalars *s, float *restrict param,
                                               const float *restrict grad,
                                               float *restrict state_sum, size_t begin,
                                               size_t end, bool decay)
{
    const float sign = s->sign, weight_decay = s->weight_decay, eps = s->eps;
    const float negative_clr = s->negative_clr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = fmaf(p, weight_decay, g);
        float sum = fmaf(g, g, state_sum[i]);
        state_sum[i] = sum;
        param[i] = p + (negative_clr * g) / (sqrtf(sum) + eps);
    }
}

PARAMD__FAST_KERNEL
static void adagrad_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                           size_t begin, size_t end)
{
    const adagrad_scalars *s = PARAMD__SCALARS(adagrad_scalars, scalars);
    float *param = arrays->param, *state_sum = arrays->state[0];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        adagrad_loop(s, param, grad, state_sum, begin, end, true);
    else
        adagrad_loop(s, param, grad, state_sum, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_adagrad = {
    .name = "Adagrad",
    .state_slot_names = adagrad_state_slots,
    .state_slot_count = 1,
    .hyperparameters = adagrad_hyperparameters,
    .hyperparameter_count = sizeof adagrad_hyperparameters / sizeof adagrad_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = adagrad_uses_state_slot,
    .init_state = adagrad_init_state,
    .prepare = adagrad_prepare,
    .kernel = adagrad_kernel,
    .reference_kernel = adagrad_reference_kernel,
};
