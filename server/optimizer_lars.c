/*
 * optimizer_lars.c - LARS (You, Gitman and Ginsburg 2017, "Large Batch
 * Training of Convolutional Networks", Algorithm 1): SGD with momentum whose
 * gradient is rescaled per tensor by a local learning rate,
 * trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps).
 * torch 1.13 has no LARS; the keywords follow torch.optim.SGD plus
 * trust_coefficient, eps and trust_clip (as timm's Lars and NVIDIA's LARC).
 *
 * Per tensor, with the norms summed in double precision in the fixed order
 * of reduce.h (g after maximize's negation):
 *   trust = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps),
 *           or 1 when ||w|| or ||g|| is 0
 *   trust_clip: trust = min(trust / lr, 1)   (LARC's clipping)
 *   without always_adapt, a tensor whose weight_decay is 0 gets trust = 1
 * then per element, in float32 with every operation rounded separately:
 *   d = maximize ? -g : g
 *   if weight_decay != 0:  d = d + weight_decay * w
 *   d = d * trust
 *   if momentum != 0:
 *       buf = (first step) ? d : momentum * buf + (1 - dampening) * d
 *       d   = nesterov ? d + momentum * buf : buf
 *   w = w + (-lr) * d
 *
 * Two passes over memory: the norms (reading w and g), then SGD's update.
 */
#include "kernel.h"
#include "parallel.h"
#include "reduce.h"

#include <math.h>

enum { SLOT_LR, SLOT_MOMENTUM, SLOT_DAMPENING, SLOT_WEIGHT_DECAY, SLOT_NESTEROV,
       SLOT_TRUST_COEFFICIENT, SLOT_EPS, SLOT_TRUST_CLIP, SLOT_ALWAYS_ADAPT, SLOT_MAXIMIZE };

static const paramd__hyperparameter_spec lars_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {0}, 0, INFINITY, PARAMD__HYPERPARAMETER_REQUIRED,
     "global learning rate (required, as SGD's)"},
    {"momentum", PARAMD__HYPERPARAMETER_REAL, SLOT_MOMENTUM, {0}, 0, INFINITY, 0,
     "momentum factor"},
    {"dampening", PARAMD__HYPERPARAMETER_REAL, SLOT_DAMPENING, {0}, 0, 1, 0,
     "dampening for momentum"},
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {0}, 0, INFINITY, 0,
     "weight decay, added to the gradient and to the trust ratio's denominator"},
    {"nesterov", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_NESTEROV, {0}, 0, 1, 0,
     "Nesterov momentum (needs momentum > 0 and dampening = 0)"},
    {"trust_coefficient", PARAMD__HYPERPARAMETER_REAL, SLOT_TRUST_COEFFICIENT, {1e-3}, 0,
     INFINITY, PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "the trust coefficient eta"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-8}, 0, INFINITY, 0,
     "term added to the trust ratio's denominator"},
    {"trust_clip", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_TRUST_CLIP, {0}, 0, 1, 0,
     "clip the local learning rate at the global one (LARC)"},
    {"always_adapt", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_ALWAYS_ADAPT, {1}, 0, 1, 0,
     "apply the trust ratio also where weight_decay is 0 (false: as timm)"},
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
};

static const char *const lars_state_slots[] = {"momentum_buffer"};

typedef struct lars_scalars {
    float sign, weight_decay, trust, momentum, one_minus_dampening, negative_lr;
    bool has_weight_decay, has_momentum, nesterov, first_step;
} lars_scalars;

static int lars_validate(const paramd__optimizer_config *config, const char *field,
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

static bool lars_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    return slot == 0 && config->values[SLOT_MOMENTUM] != 0;
}

/* Pass 1: sums[0] = sum w^2, sums[1] = sum g^2. */
PARAMD__FAST_KERNEL
static void lars_norms_block(void *context, size_t begin, size_t end, double *sums)
{
    const paramd__step_arrays *arrays = context;
    const float *restrict param = arrays->param, *restrict grad = arrays->grad;
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, grad_lanes[PARAMD__REDUCE_LANES] = {0};
    size_t i = begin;
    for (; i + PARAMD__REDUCE_LANES <= end; i += PARAMD__REDUCE_LANES)
        for (int j = 0; j < PARAMD__REDUCE_LANES; j++) {
            double w = param[i + (size_t)j], g = grad[i + (size_t)j];
            weight_lanes[j] += w * w;
            grad_lanes[j] += g * g;
        }
    for (; i < end; i++) {
        double w = param[i], g = grad[i];
        weight_lanes[i % PARAMD__REDUCE_LANES] += w * w;
        grad_lanes[i % PARAMD__REDUCE_LANES] += g * g;
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(grad_lanes);
}

PARAMD__REFERENCE_KERNEL
static void lars_norms_block_reference(void *context, size_t begin, size_t end, double *sums)
{
    const paramd__step_arrays *a = context;
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, grad_lanes[PARAMD__REDUCE_LANES] = {0};
    for (size_t i = begin; i < end; i++) {
        weight_lanes[i % PARAMD__REDUCE_LANES] += (double)a->param[i] * (double)a->param[i];
        grad_lanes[i % PARAMD__REDUCE_LANES] += (double)a->grad[i] * (double)a->grad[i];
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(grad_lanes);
}

typedef struct lars_job {
    lars_scalars scalars;
    const paramd__step_arrays *arrays;
} lars_job;

/* Pass 2: SGD's update of the rescaled gradient, one branch-free loop per
 * variant so gcc vectorises each. */
static PARAMD__ALWAYS_INLINE void lars_loop(const lars_scalars *s, float *restrict param,
                                            const float *restrict grad, float *restrict buffer,
                                            size_t begin, size_t end, bool decay, bool momentum,
                                            bool first, bool nesterov)
{
    const float sign = s->sign, weight_decay = s->weight_decay, trust = s->trust;
    const float m = s->momentum, one_minus_dampening = s->one_minus_dampening;
    const float negative_lr = s->negative_lr;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float d = grad[i] * sign;
        if (decay)
            d = d + weight_decay * p;
        d = d * trust;
        if (momentum) {
            float b = first ? d : m * buffer[i] + one_minus_dampening * d;
            buffer[i] = b;
            d = nesterov ? d + m * b : b;
        }
        param[i] = p + negative_lr * d;
    }
}

PARAMD__FAST_KERNEL
static void lars_apply_range(void *context, size_t begin, size_t end)
{
    const lars_job *job = context;
    const lars_scalars *s = &job->scalars;
    float *param = job->arrays->param, *buffer = job->arrays->state[0];
    const float *grad = job->arrays->grad;
#define LARS_VARIANT(decay)                                                                    \
    do {                                                                                       \
        if (!s->has_momentum)                                                                  \
            lars_loop(s, param, grad, buffer, begin, end, decay, false, false, false);         \
        else if (s->first_step)                                                                \
            lars_loop(s, param, grad, buffer, begin, end, decay, true, true, s->nesterov);     \
        else if (s->nesterov)                                                                  \
            lars_loop(s, param, grad, buffer, begin, end, decay, true, false, true);           \
        else                                                                                   \
            lars_loop(s, param, grad, buffer, begin, end, decay, true, false, false);          \
    } while (0)
    if (s->has_weight_decay)
        LARS_VARIANT(true);
    else
        LARS_VARIANT(false);
#undef LARS_VARIANT
}

PARAMD__REFERENCE_KERNEL
static void lars_apply_reference(const lars_job *job, size_t count)
{
    const lars_scalars *s = &job->scalars;
    const paramd__step_arrays *a = job->arrays;
    for (size_t i = 0; i < count; i++) {
        float d = s->sign < 0 ? -a->grad[i] : a->grad[i];
        if (s->has_weight_decay)
            d = d + s->weight_decay * a->param[i];
        d = d * s->trust;
        if (s->has_momentum) {
            if (s->first_step)
                a->state[0][i] = d;
            else
                a->state[0][i] = s->momentum * a->state[0][i] + s->one_minus_dampening * d;
            d = s->nesterov ? d + s->momentum * a->state[0][i] : a->state[0][i];
        }
        a->param[i] = a->param[i] + s->negative_lr * d;
    }
}

static void lars_step(const paramd__optimizer_config *config, uint64_t step,
                      const paramd__step_arrays *arrays, size_t count, bool reference)
{
    const double *v = config->values;
    double lr = v[SLOT_LR], weight_decay = v[SLOT_WEIGHT_DECAY];
    double trust = 1.0;
    if (v[SLOT_ALWAYS_ADAPT] != 0 || weight_decay != 0) {
        double sums[2];
        paramd__block_sums(count, 2, reference ? lars_norms_block_reference : lars_norms_block,
                           (void *)arrays, !reference, sums);
        double weight_norm = sqrt(sums[0]), grad_norm = sqrt(sums[1]);
        if (weight_norm > 0 && grad_norm > 0)
            trust = v[SLOT_TRUST_COEFFICIENT] * weight_norm /
                    (grad_norm + weight_decay * weight_norm + v[SLOT_EPS]);
        if (v[SLOT_TRUST_CLIP] != 0)
            trust = lr > 0 && trust / lr < 1.0 ? trust / lr : 1.0;
    }
    lars_job job = {.arrays = arrays};
    lars_scalars *s = &job.scalars;
    s->sign = v[SLOT_MAXIMIZE] != 0 ? -1.0f : 1.0f;
    s->weight_decay = (float)weight_decay;
    s->trust = (float)trust;
    s->momentum = (float)v[SLOT_MOMENTUM];
    s->one_minus_dampening = (float)(1.0 - v[SLOT_DAMPENING]);
    s->negative_lr = (float)-lr;
    s->has_weight_decay = weight_decay != 0;
    s->has_momentum = v[SLOT_MOMENTUM] != 0;
    s->nesterov = v[SLOT_NESTEROV] != 0;
    s->first_step = step == 1;
    if (reference)
        lars_apply_reference(&job, count);
    else
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, lars_apply_range, &job);
}

static int lars_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                              const int64_t *shape, paramd__memory_pass *passes)
{
    (void)dimension_count, (void)shape;
    int buffers = config->values[SLOT_MOMENTUM] != 0;
    passes[0] = (paramd__memory_pass){2, 0, "pg"};
    passes[1] = buffers ? (paramd__memory_pass){3, 2, "p0g"} : (paramd__memory_pass){2, 1, "pg"};
    return 2;
}

const paramd__optimizer_type paramd__optimizer_lars = {
    .name = "LARS",
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .state_slot_names = lars_state_slots,
    .state_slot_count = 1,
    .hyperparameters = lars_hyperparameters,
    .hyperparameter_count = sizeof lars_hyperparameters / sizeof lars_hyperparameters[0],
    .validate = lars_validate,
    .uses_state_slot = lars_uses_state_slot,
    .tensor_step = lars_step,
    .memory_passes = lars_memory_passes,
};
