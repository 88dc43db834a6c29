/*
 * optimizer_rprop.c - torch.optim.Rprop: etas, step_sizes and maximize.
 *
 * Per element, in float32, exactly as torch.optim.Rprop (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * addcmul_ does:
 *   g = maximize ? -g : g
 *   s = sign(g * prev)                       (-1, 0 or 1, a float32 tensor)
 *   s[s > 0] = etaplus; s[s < 0] = etaminus; s[s == 0] = 1
 *   step_size = clamp(step_size * s, step_size_min, step_size_max)
 *   g[s == etaminus] = 0
 *   p = fma(-sign(g), step_size, p)          addcmul_(g.sign(), step_size, value=-1)
 *   prev = g
 * The three assignments run in that order on float32 values, so etas that
 * round to float32 0 or 1 behave as torch's do (etaminus rounding to 0 ends
 * up as 1; an etaminus rounding to 1 also zeroes gradients where
 * g * prev == 0).  step_size starts at lr (torch fills it in on the first
 * step) and prev at zero.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_ETAMINUS, SLOT_ETAPLUS, SLOT_STEP_SIZE_MIN, SLOT_STEP_SIZE_MAX, SLOT_FOREACH,
       SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec rprop_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0,
     "learning rate: the initial step size"},
    {"etas", PARAMD__HYPERPARAMETER_PAIR, SLOT_ETAMINUS, {0.5, 1.2}, 0, INFINITY,
     PARAMD__HYPERPARAMETER_MINIMUM_OPEN,
     "(etaminus, etaplus): step size factors, 0 < etaminus < 1 < etaplus"},
    {"step_sizes", PARAMD__HYPERPARAMETER_PAIR, SLOT_STEP_SIZE_MIN, {1e-6, 50}, -INFINITY,
     INFINITY, 0, "(minimal, maximal) step size"},
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

enum { STATE_PREV, STATE_STEP_SIZE };
static const char *const rprop_state_slots[] = {"prev", "step_size"};

typedef struct rprop_scalars {
    float sign;                  /* -1 with maximize, else 1 */
    float etaminus, etaplus;     /* as torch stores them in a float32 tensor */
    float negative_factor;       /* the factor g * prev < 0 ends up with */
    float step_size_min, step_size_max;
    bool maximize;
} rprop_scalars;
_Static_assert(sizeof(rprop_scalars) <= sizeof(paramd__step_scalars), "rprop_scalars too large");

/* torch: if not 0.0 < etas[0] < 1.0 < etas[1] (the range checks etas > 0). */
static int rprop_validate(const paramd__optimizer_config *config, const char *field,
                          paramd__error *error)
{
    const double *v = config->values;
    if (!(v[SLOT_ETAMINUS] < 1.0 && 1.0 < v[SLOT_ETAPLUS]))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.etas: Rprop needs 0 < etas[0] < 1 < etas[1] "
                                 "(got %.17g, %.17g)",
                                 field, v[SLOT_ETAMINUS], v[SLOT_ETAPLUS]);
    return PARAMD_OK;
}

static bool rprop_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

/* step_size = grad.new().resize_as_(grad).fill_(lr): lr rounded to float. */
static void rprop_init_state(const paramd__optimizer_config *config, float *const *state,
                             size_t count)
{
    float lr = (float)config->values[SLOT_LR];
    float *step_size = state[STATE_STEP_SIZE];
    for (size_t i = 0; i < count; i++)
        step_size[i] = lr;
}

static void rprop_prepare(const paramd__optimizer_config *config, uint64_t step,
                          paramd__step_scalars *scalars)
{
    (void)step;
    const double *v = config->values;
    rprop_scalars *s = (rprop_scalars *)(void *)scalars->bytes;
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->etaminus = (float)v[SLOT_ETAMINUS];
    s->etaplus = (float)v[SLOT_ETAPLUS];
    /* s[s < 0] = etaminus, then s[s == 0] = 1 catches an etaminus of 0. */
    s->negative_factor = s->etaminus == 0 ? 1.0f : s->etaminus;
    s->step_size_min = (float)v[SLOT_STEP_SIZE_MIN];
    s->step_size_max = (float)v[SLOT_STEP_SIZE_MAX];
}

/* torch.sign on float32: -1, 0 or 1. */
static PARAMD__ALWAYS_INLINE float sign_of(float x)
{
    return (float)((0.0f < x) - (x < 0.0f));
}

/* std::min(std::max(a, min), max), as torch's clamp with two scalars. */
static PARAMD__ALWAYS_INLINE float clamp(float a, float minimum, float maximum)
{
    float b = a < minimum ? minimum : a;
    return maximum < b ? maximum : b;
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void rprop_reference_kernel(const paramd__step_scalars *scalars,
                                   const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const rprop_scalars *s = PARAMD__SCALARS(rprop_scalars, scalars);
    float *param = arrays->param;
    const float *grad = arrays->grad;
    float *prev = arrays->state[STATE_PREV], *step_size = arrays->state[STATE_STEP_SIZE];
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        float factor = sign_of(g * prev[i]);                    /* grad.mul(prev).sign() */
        if (factor > 0)                                         /* sign[sign.gt(0)] = etaplus */
            factor = s->etaplus;
        if (factor < 0)                                         /* sign[sign.lt(0)] = etaminus */
            factor = s->etaminus;
        if (factor == 0)                                        /* sign[sign.eq(0)] = 1 */
            factor = 1.0f;
        step_size[i] = step_size[i] * factor;                   /* mul_(sign) */
        step_size[i] = clamp(step_size[i], s->step_size_min, s->step_size_max); /* clamp_ */
        if (factor == s->etaminus)                              /* grad[sign.eq(etaminus)] = 0 */
            g = 0.0f;
        param[i] = fmaf(-1.0f * sign_of(g), step_size[i], param[i]); /* addcmul_(value=-1) */
        prev[i] = g;                                            /* prev.copy_(grad) */
    }
}

/* The fast path: one branch-free pass (selects instead of branches).
 * Multiplying by sign = +-1 is an exact negation, so maximize needs no
 * variant. */
PARAMD__FAST_KERNEL
static void rprop_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                         size_t begin, size_t end)
{
    const rprop_scalars *s = PARAMD__SCALARS(rprop_scalars, scalars);
    float *restrict param = arrays->param;
    const float *restrict grad = arrays->grad;
    float *restrict prev = arrays->state[STATE_PREV];
    float *restrict step_size = arrays->state[STATE_STEP_SIZE];
    const float sign = s->sign, etaminus = s->etaminus, etaplus = s->etaplus;
    const float negative_factor = s->negative_factor;
    const float step_size_min = s->step_size_min, step_size_max = s->step_size_max;
    for (size_t i = begin; i < end; i++) {
        float g = grad[i] * sign;
        float product = g * prev[i];
        float factor = product > 0 ? etaplus : 1.0f;
        factor = product < 0 ? negative_factor : factor;
        float size = step_size[i] * factor;
        size = size < step_size_min ? step_size_min : size;
        size = step_size_max < size ? step_size_max : size;
        step_size[i] = size;
        g = factor == etaminus ? 0.0f : g;
        float negative_sign = g > 0 ? -1.0f : -0.0f;      /* -torch.sign(g) */
        negative_sign = g < 0 ? 1.0f : negative_sign;
        param[i] = fmaf(negative_sign, size, param[i]);
        prev[i] = g;
    }
}

const paramd__optimizer_type paramd__optimizer_rprop = {
    .name = "Rprop",
    .state_slot_names = rprop_state_slots,
    .state_slot_count = 2,
    .hyperparameters = rprop_hyperparameters,
    .hyperparameter_count = sizeof rprop_hyperparameters / sizeof rprop_hyperparameters[0],
    .validate = rprop_validate,
    .uses_state_slot = rprop_uses_state_slot,
    .init_state = rprop_init_state,
    .prepare = rprop_prepare,
    .kernel = rprop_kernel,
    .reference_kernel = rprop_reference_kernel,
};
