/*
 * optimizer_asgd.c - torch.optim.ASGD (averaged SGD): lambd, alpha, t0,
 * weight_decay (coupled L2) and maximize.
 *
 * Per element, in float32, exactly as torch.optim.ASGD (1.13,
 * single-tensor), where fma(a, b, c) = a * b + c rounded once, as torch's
 * add_(alpha=) does:
 *   g = maximize ? -g : g
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   p = p * (1 - lambd * eta)
 *   p = fma(g, -eta, p)
 *   ax = (mu != 1) ? ax + (p - ax) * mu : p
 * torch keeps eta and mu as float32 tensors, set at the end of each step for
 * the next one, so step t uses
 *   eta = float(lr)                                           for t = 1
 *         float(lr / (1 + lambd * lr * (t - 1))^alpha)        for t > 1
 *   mu  = 1                                                   for t = 1
 *         float(1 / max(1, (t - 1) - t0))                     for t > 1
 * with the arithmetic inside float() in double, as torch computes it in
 * Python.  torch keeps state["step"] as a float32 tensor and reads it with
 * .item(), so the step it uses stops growing at 2^24.  The averaged
 * parameters ax (torch's state["ax"]) do not feed back into p.
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_LAMBD, SLOT_ALPHA, SLOT_T0, SLOT_WEIGHT_DECAY, SLOT_FOREACH, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec asgd_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0, "learning rate"},
    {"lambd", PARAMD__HYPERPARAMETER_REAL, SLOT_LAMBD, {1e-4}, -INFINITY, INFINITY, 0,
     "decay term"},
    {"alpha", PARAMD__HYPERPARAMETER_REAL, SLOT_ALPHA, {0.75}, -INFINITY, INFINITY, 0,
     "power for the learning rate update"},
    {"t0", PARAMD__HYPERPARAMETER_REAL, SLOT_T0, {1e6}, -INFINITY, INFINITY, 0,
     "step at which averaging starts"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const asgd_state_slots[] = {"ax"};

typedef struct asgd_scalars {
    float sign;              /* -1 with maximize, else 1 */
    float weight_decay;
    float decay_factor;      /* 1 - lambd * eta */
    float negative_eta;
    float mu;
    bool has_weight_decay, maximize, averaging;
} asgd_scalars;
_Static_assert(sizeof(asgd_scalars) <= sizeof(paramd__step_scalars), "asgd_scalars too large");

static bool asgd_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot == 0;
}

static void asgd_prepare(const paramd__optimizer_config *config, uint64_t step,
                         paramd__step_scalars *scalars)
{
    const double *v = config->values;
    asgd_scalars *s = (asgd_scalars *)(void *)scalars->bytes;
    double lr = v[SLOT_LR], lambd = v[SLOT_LAMBD];
    float eta = (float)lr, mu = 1.0f;     /* torch.tensor(lr), torch.tensor(1.) */
    if (step > 1) {
        /* What the previous step stored: new_eta and new_mu. */
        double previous = paramd__torch_float_step(step - 1);
        eta = (float)(lr / pow(1 + lambd * lr * previous, v[SLOT_ALPHA]));
        double shifted = previous - v[SLOT_T0];
        mu = (float)(1 / (shifted > 1 ? shifted : 1)); /* 1 / max(1, step - t0) */
    }
    s->maximize = v[SLOT_MAXIMIZE] != 0;
    s->sign = s->maximize ? -1.0f : 1.0f;
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->decay_factor = (float)(1 - lambd * (double)eta);
    s->negative_eta = (float)-(double)eta;
    s->mu = mu;
    s->averaging = (double)mu != 1;
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void asgd_reference_kernel(const paramd__step_scalars *scalars,
                                  const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const asgd_scalars *s = PARAMD__SCALARS(asgd_scalars, scalars);
    float *param = arrays->param, *ax = arrays->state[0];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = s->maximize ? -grad[i] : grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);              /* grad.add(param, alpha=wd) */
        param[i] = param[i] * s->decay_factor;                   /* mul_(1 - lambd * eta) */
        param[i] = fmaf(g, s->negative_eta, param[i]);           /* add_(g, alpha=-eta) */
        if (s->averaging) {
            float difference = fmaf(ax[i], -1.0f, param[i]);     /* param.sub(ax) */
            difference = difference * s->mu;                     /* mul(mu) */
            ax[i] = fmaf(difference, 1.0f, ax[i]);               /* ax.add_() */
        } else {
            ax[i] = param[i];                                    /* ax.copy_(param) */
        }
    }
}

/* The fast path: one branch-free pass per variant (weight decay, averaging).
 * Multiplying by sign = +-1 is an exact negation, so maximize needs no
 * variant; weight decay does (fma(p, 0, -0.0) is +0.0, while torch leaves
 * -0.0 alone).  fma(a, -1, b) is b - a and fma(a, 1, b) is b + a, each
 * rounded once. */
static PARAMD__ALWAYS_INLINE void asgd_loop(const asgd_scalars *s, float *restrict param,
                                            const float *restrict grad, float *restrict ax,
                                            size_t begin, size_t end, bool decay,
                                            bool averaging)
{
    const float sign = s->sign, weight_decay = s->weight_decay;
    const float decay_factor = s->decay_factor, negative_eta = s->negative_eta, mu = s->mu;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i] * sign;
        if (decay)
            g = fmaf(p, weight_decay, g);
        p = fmaf(g, negative_eta, p * decay_factor);
        param[i] = p;
        if (averaging) {
            float a = ax[i];
            ax[i] = a + (p - a) * mu;
        } else {
            ax[i] = p;
        }
    }
}

PARAMD__FAST_KERNEL
static void asgd_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                        size_t begin, size_t end)
{
    const asgd_scalars *s = PARAMD__SCALARS(asgd_scalars, scalars);
    float *param = arrays->param, *ax = arrays->state[0];
    const float *grad = arrays->grad;
    if (s->has_weight_decay && s->averaging)
        asgd_loop(s, param, grad, ax, begin, end, true, true);
    else if (s->has_weight_decay)
        asgd_loop(s, param, grad, ax, begin, end, true, false);
    else if (s->averaging)
        asgd_loop(s, param, grad, ax, begin, end, false, true);
    else
        asgd_loop(s, param, grad, ax, begin, end, false, false);
}

const paramd__optimizer_type paramd__optimizer_asgd = {
    .name = "ASGD",
    .state_slot_names = asgd_state_slots,
    .state_slot_count = 1,
    .hyperparameters = asgd_hyperparameters,
    .hyperparameter_count = sizeof asgd_hyperparameters / sizeof asgd_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = asgd_uses_state_slot,
    .init_state = NULL,
    .prepare = asgd_prepare,
    .kernel = asgd_kernel,
    .reference_kernel = asgd_reference_kernel,
};
