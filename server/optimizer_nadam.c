/*
 * optimizer_nadam.c - torch.optim.NAdam: betas, eps, weight_decay (coupled
 * L2) and momentum_decay.
 *
 * torch 1.13 has two NAdam paths that disagree: the single-tensor one
 * multiplies mu_product by mu a second time when it forms mu_product_next
 * (mu_product * mu * mu_next), which departs from the published algorithm
 * (Dozat 2016) and was fixed in PyTorch 2.0.  paramd follows the foreach path
 * (foreach=True), which has it right and is what later releases compute.
 *
 * Per element, in float32, exactly as torch.optim.NAdam (1.13, foreach path),
 * where fma(a, b, c) = a * b + c rounded once, as torch's add_(alpha=) and
 * addcmul_ do (addcdiv_ has no fma):
 *   if weight_decay != 0:  g = fma(p, weight_decay, g)
 *   m = fma(g, 1 - beta1, m * beta1)                       exp_avg
 *   v = fma((1 - beta2) * g, g, v * beta2)                 exp_avg_sq
 *   denom = sqrt(v) / sqrt(bias_correction2) + eps
 *   p = p + (c_grad * g) / denom
 *   p = p + (c_exp_avg * m) / denom
 * where, in double precision as torch computes them in Python,
 *   bias_correction2 = 1 - beta2^step
 *   mu      = beta1 * (1 - 0.5 * 0.96^(step * momentum_decay))
 *   mu_next = beta1 * (1 - 0.5 * 0.96^((step + 1) * momentum_decay))
 *   c_grad    = -(lr * (1 - mu) / (1 - mu_product))
 *   c_exp_avg = -(lr * mu_next / (1 - mu_product * mu_next))
 * and mu_product is torch's state["mu_product"], a float32 tensor multiplied
 * by (float)mu in every step: the float32 product of mu over steps 1..step.
 * torch keeps state["step"] as a float32 tensor and reads it with .item(),
 * so the step it uses stops growing at 2^24 (mu_product keeps shrinking).
 */
#include "kernel.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_MOMENTUM_DECAY,
       SLOT_FOREACH };

static const paramd__hyperparameter_spec nadam_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {2e-3}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running averages of the gradient and its square"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,
     "term added to the denominator"},
    PARAMD__SPEC_WEIGHT_DECAY(SLOT_WEIGHT_DECAY),
    {"momentum_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_MOMENTUM_DECAY, {4e-3}, 0, INFINITY, 0,
     "momentum decay psi of the momentum schedule mu_t = beta1 (1 - 0.96^(t psi) / 2)"},
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
};

static const char *const nadam_state_slots[] = {"exp_avg", "exp_avg_sq"};

typedef struct nadam_scalars {
    float weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt;
    float eps;
    float grad_step;      /* c_grad */
    float exp_avg_step;   /* c_exp_avg */
    bool has_weight_decay;
} nadam_scalars;
_Static_assert(sizeof(nadam_scalars) <= sizeof(paramd__step_scalars), "nadam_scalars too large");

static bool nadam_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

/* mu_t, in double, as torch computes it in Python. */
static double nadam_mu(double beta1, double momentum_decay, double torch_step)
{
    return beta1 * (1. - 0.5 * pow(0.96, torch_step * momentum_decay));
}

/* torch's state["mu_product"] after `step` steps: starting from 1.0f, each
 * step k multiplies it by (float)mu_k in float32.  That takes a loop over the
 * steps, so each thread remembers where it got to: consecutive steps of a
 * model cost one iteration.  mu_k never decreases (momentum_decay >= 0) and
 * never exceeds beta1 < 1, so once a step leaves the product unchanged
 * (typically at 0 or the smallest subnormal, after a few hundred steps with
 * torch's defaults) no later step changes it, and the loop stops there. */
typedef struct mu_product_cache {
    bool valid;
    double beta1, momentum_decay;
    uint64_t step;   /* mu_product holds the product over steps 1..step */
    float mu_product;
    bool fixed;      /* no later step changes mu_product */
} mu_product_cache;

static _Thread_local mu_product_cache nadam_cache;

static float nadam_mu_product(double beta1, double momentum_decay, uint64_t step)
{
    mu_product_cache *cache = &nadam_cache;
    if (!cache->valid || cache->beta1 != beta1 || cache->momentum_decay != momentum_decay ||
        cache->step > step) {
        cache->valid = true;
        cache->beta1 = beta1;
        cache->momentum_decay = momentum_decay;
        cache->step = 0;
        cache->mu_product = 1.0f;
        cache->fixed = false;
    }
    if (cache->fixed) {
        if (cache->step < step)
            cache->step = step;
        return cache->mu_product;
    }
    float mu_product = cache->mu_product;
    uint64_t k = cache->step;
    while (k < step) {
        k++;
        float next = mu_product * (float)nadam_mu(beta1, momentum_decay, paramd__torch_float_step(k));
        if (next == mu_product) {
            cache->fixed = true;
            k = step;
        }
        mu_product = next;
    }
    cache->step = step;
    cache->mu_product = mu_product;
    return mu_product;
}

static void nadam_prepare(const paramd__optimizer_config *config, uint64_t step,
                          paramd__step_scalars *scalars)
{
    const double *v = config->values;
    nadam_scalars *s = (nadam_scalars *)(void *)scalars->bytes;
    double lr = v[SLOT_LR], beta1 = v[SLOT_BETA1], beta2 = v[SLOT_BETA2];
    double momentum_decay = v[SLOT_MOMENTUM_DECAY];
    double torch_step = paramd__torch_float_step(step);
    double bias_correction2 = 1 - pow(beta2, torch_step);
    double mu = nadam_mu(beta1, momentum_decay, torch_step);
    double mu_next = nadam_mu(beta1, momentum_decay, torch_step + 1);
    double mu_product = nadam_mu_product(beta1, momentum_decay, step);
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
    s->has_weight_decay = v[SLOT_WEIGHT_DECAY] != 0;
    s->beta1 = (float)beta1;
    s->one_minus_beta1 = (float)(1 - beta1);
    s->beta2 = (float)beta2;
    s->one_minus_beta2 = (float)(1 - beta2);
    s->bias_correction2_sqrt = (float)sqrt(bias_correction2);
    s->eps = (float)v[SLOT_EPS];
    s->grad_step = (float)((lr * (1. - mu) / (1. - mu_product)) * -1);
    s->exp_avg_step = (float)((lr * mu_next / (1. - mu_product * mu_next)) * -1);
}

/* The reference: torch's sequence of tensor operations, one element at a time. */
PARAMD__REFERENCE_KERNEL
static void nadam_reference_kernel(const paramd__step_scalars *scalars,
                                   const paramd__step_arrays *arrays, size_t begin, size_t end)
{
    const nadam_scalars *s = PARAMD__SCALARS(nadam_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    for (size_t i = begin; i < end; i++) {
        float g = grad[i];
        if (s->has_weight_decay)
            g = fmaf(param[i], s->weight_decay, g);              /* add_(params, alpha=wd) */
        exp_avg[i] = exp_avg[i] * s->beta1;                      /* mul_(beta1) */
        exp_avg[i] = fmaf(g, s->one_minus_beta1, exp_avg[i]);    /* add_(g, alpha=1-beta1) */
        exp_avg_sq[i] = exp_avg_sq[i] * s->beta2;                /* mul_(beta2) */
        exp_avg_sq[i] = fmaf(s->one_minus_beta2 * g, g, exp_avg_sq[i]); /* addcmul_ */
        float denom = sqrtf(exp_avg_sq[i]);                      /* sqrt */
        denom = denom / s->bias_correction2_sqrt;                /* div_(sqrt(bc2)) */
        denom = denom + s->eps;                                  /* add(eps) */
        param[i] = param[i] + (s->grad_step * g) / denom;        /* addcdiv_(g, denom) */
        param[i] = param[i] + (s->exp_avg_step * exp_avg[i]) / denom; /* addcdiv_(m, denom) */
    }
}

/* The fast path: one branch-free pass per variant; weight decay needs one
 * (fma(p, 0, -0.0) is +0.0, while torch leaves -0.0 alone). */
static PARAMD__ALWAYS_INLINE void nadam_loop(const nadam_scalars *s, float *restrict param,
                                             const float *restrict grad,
                                             float *restrict exp_avg,
                                             float *restrict exp_avg_sq, size_t begin,
                                             size_t end, bool decay)
{
    const float weight_decay = s->weight_decay;
    const float beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const float beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2;
    const float bias_correction2_sqrt = s->bias_correction2_sqrt, eps = s->eps;
    const float grad_step = s->grad_step, exp_avg_step = s->exp_avg_step;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float g = grad[i];
        if (decay)
            g = fmaf(p, weight_decay, g);
        float m = fmaf(g, one_minus_beta1, exp_avg[i] * beta1);
        float v = fmaf(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / bias_correction2_sqrt + eps;
        p = p + (grad_step * g) / denom;
        param[i] = p + (exp_avg_step * m) / denom;
    }
}

PARAMD__FAST_KERNEL
static void nadam_kernel(const paramd__step_scalars *scalars, const paramd__step_arrays *arrays,
                         size_t begin, size_t end)
{
    const nadam_scalars *s = PARAMD__SCALARS(nadam_scalars, scalars);
    float *param = arrays->param, *exp_avg = arrays->state[0], *exp_avg_sq = arrays->state[1];
    const float *grad = arrays->grad;
    if (s->has_weight_decay)
        nadam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, true);
    else
        nadam_loop(s, param, grad, exp_avg, exp_avg_sq, begin, end, false);
}

const paramd__optimizer_type paramd__optimizer_nadam = {
    .name = "NAdam",
    .state_slot_names = nadam_state_slots,
    .state_slot_count = 2,
    .hyperparameters = nadam_hyperparameters,
    .hyperparameter_count = sizeof nadam_hyperparameters / sizeof nadam_hyperparameters[0],
    .validate = NULL,
    .uses_state_slot = nadam_uses_state_slot,
    .init_state = NULL,
    .prepare = nadam_prepare,
    .kernel = nadam_kernel,
    .reference_kernel = nadam_reference_kernel,
};
