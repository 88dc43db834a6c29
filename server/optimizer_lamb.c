/*
 * optimizer_lamb.c - LAMB (You et al., ICLR 2020, "Large Batch Optimization
 * for Deep Learning: Training BERT in 76 minutes", Algorithm 2): Adam's
 * direction, rescaled per tensor by the trust ratio ||w|| / ||r + wd * w||.
 * torch 1.13 has no LAMB.
 *
 * Per element, in float32 with every operation rounded separately (no fused
 * multiply-add), in this order:
 *   g = maximize ? -g : g
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * (g * g)
 *   r = (m * c1) / (sqrt(v) * c2 + eps)
 *   u = r + weight_decay * w
 * then, per tensor, with the norms summed in double precision in the fixed
 * order of reduce.h:
 *   trust = ||w|| / ||u||, or 1 when either norm is 0
 *   trust_clip: trust = min(trust, 1)
 *   without always_adapt, a tensor whose weight_decay is 0 gets trust = 1
 *   (as NVIDIA apex's FusedLAMB and timm do for biases and norms)
 *   w = w + (-(lr * trust)) * u
 * where c1 = 1 / (1 - beta1^step) and c2 = 1 / sqrt(1 - beta2^step) are the
 * bias corrections (both 1 without bias_correction), computed in double and
 * rounded to float32 once.  Multiplying by them instead of dividing, as
 * Adam's paper writes it, leaves one division and one square root per
 * element, which keeps LAMB's two passes close to memory speed.
 *
 * Two passes over memory, the least a trust ratio allows: the first updates
 * m and v and sums ||w||^2 and ||u||^2; the second recomputes u from the
 * stored m and v (the same float32 operations, so the same u) and updates w.
 */
#include "kernel.h"
#include "parallel.h"
#include "reduce.h"

#include <math.h>

enum { SLOT_LR, SLOT_BETA1, SLOT_BETA2, SLOT_EPS, SLOT_WEIGHT_DECAY, SLOT_BIAS_CORRECTION,
       SLOT_TRUST_CLIP, SLOT_ALWAYS_ADAPT, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec lamb_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-3}, 0, INFINITY, 0, "learning rate"},
    {"betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_BETA1, {0.9, 0.999}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
     "coefficients of the running averages of the gradient and its square"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-6}, 0, INFINITY, 0,
     "term added to the denominator"},
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {0}, 0, INFINITY, 0,
     "weight decay, added to the update before the trust ratio"},
    {"bias_correction", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_BIAS_CORRECTION, {1}, 0, 1, 0,
     "divide the moments by 1 - beta^step, as Adam"},
    {"trust_clip", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_TRUST_CLIP, {0}, 0, 1, 0,
     "clamp the trust ratio at 1"},
    {"always_adapt", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_ALWAYS_ADAPT, {1}, 0, 1, 0,
     "apply the trust ratio also where weight_decay is 0 (false: as apex and timm)"},
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const lamb_state_slots[] = {"exp_avg", "exp_avg_sq"};

/* The float32 scalars of one step. */
typedef struct lamb_scalars {
    float sign;
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float c1, c2; /* 1 / bias_correction1, 1 / sqrt(bias_correction2) */
    float eps, weight_decay;
} lamb_scalars;

static bool lamb_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 2;
}

static void lamb_prepare(const paramd__optimizer_config *config, uint64_t step, lamb_scalars *s)
{
    const double *v = config->values;
    bool bias_correction = v[SLOT_BIAS_CORRECTION] != 0;
    s->sign = v[SLOT_MAXIMIZE] != 0 ? -1.0f : 1.0f;
    s->beta1 = (float)v[SLOT_BETA1];
    s->one_minus_beta1 = (float)(1.0 - v[SLOT_BETA1]);
    s->beta2 = (float)v[SLOT_BETA2];
    s->one_minus_beta2 = (float)(1.0 - v[SLOT_BETA2]);
    s->c1 = bias_correction ? (float)(1.0 / (1.0 - pow(v[SLOT_BETA1], (double)step))) : 1.0f;
    s->c2 = bias_correction ? (float)(1.0 / sqrt(1.0 - pow(v[SLOT_BETA2], (double)step))) : 1.0f;
    s->eps = (float)v[SLOT_EPS];
    s->weight_decay = (float)v[SLOT_WEIGHT_DECAY];
}

/* u for one element from the updated moments. */
static PARAMD__ALWAYS_INLINE float lamb_direction(const lamb_scalars *s, float m, float v, float w)
{
    float r = (m * s->c1) / (sqrtf(v) * s->c2 + s->eps);
    return r + s->weight_decay * w;
}

typedef struct lamb_job {
    const lamb_scalars *scalars;
    const paramd__step_arrays *arrays;
    float negative_step;
} lamb_job;

/* Pass 1: moments, and sums[0] = sum w^2, sums[1] = sum u^2. */
PARAMD__FAST_KERNEL
static void lamb_moments_block(void *context, size_t begin, size_t end, double *sums)
{
    const lamb_job *job = context;
    const lamb_scalars scalars = *job->scalars, *s = &scalars; /* a local copy: no aliasing */
    const float *restrict param = job->arrays->param;
    const float *restrict grad = job->arrays->grad;
    float *restrict exp_avg = job->arrays->state[0];
    float *restrict exp_avg_sq = job->arrays->state[1];
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, update_lanes[PARAMD__REDUCE_LANES] = {0};
    size_t i = begin;
    for (; i + PARAMD__REDUCE_LANES <= end; i += PARAMD__REDUCE_LANES)
        for (int j = 0; j < PARAMD__REDUCE_LANES; j++) {
            size_t e = i + (size_t)j;
            float g = grad[e] * s->sign;
            float m = s->beta1 * exp_avg[e] + s->one_minus_beta1 * g;
            float v = s->beta2 * exp_avg_sq[e] + s->one_minus_beta2 * (g * g);
            exp_avg[e] = m;
            exp_avg_sq[e] = v;
            double w = param[e], u = lamb_direction(s, m, v, param[e]);
            weight_lanes[j] += w * w;
            update_lanes[j] += u * u;
        }
    for (; i < end; i++) {
        float g = grad[i] * s->sign;
        float m = s->beta1 * exp_avg[i] + s->one_minus_beta1 * g;
        float v = s->beta2 * exp_avg_sq[i] + s->one_minus_beta2 * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        double w = param[i], u = lamb_direction(s, m, v, param[i]);
        weight_lanes[i % PARAMD__REDUCE_LANES] += w * w;
        update_lanes[i % PARAMD__REDUCE_LANES] += u * u;
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(update_lanes);
}

PARAMD__REFERENCE_KERNEL
static void lamb_moments_block_reference(void *context, size_t begin, size_t end, double *sums)
{
    const lamb_job *job = context;
    const lamb_scalars *s = job->scalars;
    const paramd__step_arrays *a = job->arrays;
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, update_lanes[PARAMD__REDUCE_LANES] = {0};
    for (size_t i = begin; i < end; i++) {
        float g = s->sign < 0 ? -a->grad[i] : a->grad[i];
        a->state[0][i] = s->beta1 * a->state[0][i] + s->one_minus_beta1 * g;
        a->state[1][i] = s->beta2 * a->state[1][i] + s->one_minus_beta2 * (g * g);
        float m_hat = a->state[0][i] * s->c1;
        float denominator = sqrtf(a->state[1][i]) * s->c2 + s->eps;
        float u = m_hat / denominator + s->weight_decay * a->param[i];
        weight_lanes[i % PARAMD__REDUCE_LANES] += (double)a->param[i] * (double)a->param[i];
        update_lanes[i % PARAMD__REDUCE_LANES] += (double)u * (double)u;
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(update_lanes);
}

/* Pass 2: w = w + negative_step * u. */
PARAMD__FAST_KERNEL
static void lamb_apply_range(void *context, size_t begin, size_t end)
{
    const lamb_job *job = context;
    const lamb_scalars scalars = *job->scalars, *s = &scalars;
    float *restrict param = job->arrays->param;
    const float *restrict exp_avg = job->arrays->state[0];
    const float *restrict exp_avg_sq = job->arrays->state[1];
    const float negative_step = job->negative_step;
    for (size_t i = begin; i < end; i++)
        param[i] = param[i] + negative_step * lamb_direction(s, exp_avg[i], exp_avg_sq[i], param[i]);
}

PARAMD__REFERENCE_KERNEL
static void lamb_apply_reference(const lamb_job *job, size_t count)
{
    const lamb_scalars *s = job->scalars;
    const paramd__step_arrays *a = job->arrays;
    for (size_t i = 0; i < count; i++) {
        float m_hat = a->state[0][i] * s->c1;
        float denominator = sqrtf(a->state[1][i]) * s->c2 + s->eps;
        float u = m_hat / denominator + s->weight_decay * a->param[i];
        a->param[i] = a->param[i] + job->negative_step * u;
    }
}

static void lamb_step(const paramd__optimizer_config *config, uint64_t step,
                      const paramd__step_arrays *arrays, size_t count, bool reference)
{
    const double *v = config->values;
    lamb_scalars scalars;
    lamb_prepare(config, step, &scalars);
    lamb_job job = {&scalars, arrays, 0.0f};
    double sums[2];
    paramd__block_sums(count, 2, reference ? lamb_moments_block_reference : lamb_moments_block,
                       &job, !reference, sums);
    double weight_norm = sqrt(sums[0]), update_norm = sqrt(sums[1]);
    double trust = weight_norm > 0 && update_norm > 0 ? weight_norm / update_norm : 1.0;
    if (v[SLOT_TRUST_CLIP] != 0 && trust > 1.0)
        trust = 1.0;
    if (v[SLOT_ALWAYS_ADAPT] == 0 && v[SLOT_WEIGHT_DECAY] == 0)
        trust = 1.0;
    job.negative_step = (float)-(v[SLOT_LR] * trust);
    if (reference)
        lamb_apply_reference(&job, count);
    else
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, lamb_apply_range, &job);
}

static int lamb_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                              const int64_t *shape, paramd__memory_pass *passes)
{
    (void)config, (void)dimension_count, (void)shape;
    passes[0] = (paramd__memory_pass){4, 2, "01pg"}; /* w, g, m, v -> m, v */
    passes[1] = (paramd__memory_pass){3, 1, "p01"};  /* w, m, v -> w */
    return 2;
}

const paramd__optimizer_type paramd__optimizer_lamb = {
    .name = "LAMB",
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .state_slot_names = lamb_state_slots,
    .state_slot_count = 2,
    .hyperparameters = lamb_hyperparameters,
    .hyperparameter_count = sizeof lamb_hyperparameters / sizeof lamb_hyperparameters[0],
    .uses_state_slot = lamb_uses_state_slot,
    .tensor_step = lamb_step,
    .memory_passes = lamb_memory_passes,
};
