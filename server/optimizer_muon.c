/*
 * optimizer_muon.c - Muon (Keller Jordan 2024, "Muon: An optimizer for
 * hidden layers in neural networks"), with PyTorch 2.9's torch.optim.Muon
 * keywords and defaults (torch 1.13 has no Muon): momentum, then the
 * momentum's orthogonalisation by a quintic Newton-Schulz iteration, for
 * 2-D tensors.  As is customary (Keller Jordan's MuonWithAuxAdam, Moonshot's
 * Muon), every other tensor - biases, norms, anything not 2-D, and 2-D
 * tensors in a group with "use_muon": false (embeddings, output layers) -
 * falls back to AdamW with the same lr and weight_decay and its own
 * adamw_betas and adamw_eps.  A parameter group with its own lr gives the
 * fallback tensors theirs, as separate torch param groups would.
 *
 * For a 2-D tensor of shape (rows, columns), per step, in float32:
 *   buf = lerp(buf, g, 1 - momentum)                    (torch's lerp, kernel.h)
 *   U = nesterov ? lerp(g, buf, momentum) : buf
 *   X = U * (1 / max(||U||, eps))                       (||U|| summed in double)
 *   ns_steps times, with (a, b, c) = ns_coefficients:
 *       A = X X^T;  B = b A + c A A;  X = a X + B X
 *     working on U^T when rows > columns, so that A is the smaller Gram
 *     matrix (torch transposes the same way)
 *   p = p * (1 - lr * weight_decay)
 *   p = p + (-adjusted_lr) * X
 * where adjusted_lr = lr * sqrt(max(1, rows / columns)) ("original", torch's
 * default) or lr * 0.2 * sqrt(max(rows, columns)) ("match_rms_adamw",
 * Moonshot's, which lets Muon reuse AdamW's lr and weight decay).
 *
 * The matrix products run on OpenBLAS's sgemm in float32.  torch.optim.Muon
 * computes the iteration in bfloat16 (fast on GPUs, slow and less accurate
 * on CPUs); paramd keeps float32.  sgemm's sums are blocked and threaded by
 * OpenBLAS, so Muon's results are reproducible for a given OpenBLAS build
 * and thread count but are not bit-identical to other matrix code: its
 * tests compare with a tolerance (the reference step multiplies matrices
 * with plain loops, accumulating in double).
 */
#include "kernel.h"
#include "parallel.h"
#include "reduce.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

enum { SLOT_LR, SLOT_WEIGHT_DECAY, SLOT_MOMENTUM, SLOT_NESTEROV, SLOT_NS_A, SLOT_NS_B, SLOT_NS_C,
       SLOT_EPS, SLOT_NS_STEPS, SLOT_ADJUST_LR_FN, SLOT_USE_MUON, SLOT_ADAMW_BETA1,
       SLOT_ADAMW_BETA2, SLOT_ADAMW_EPS };
enum { ADJUST_ORIGINAL, ADJUST_MATCH_RMS_ADAMW };
enum { STATE_MOMENTUM_BUFFER, STATE_EXP_AVG, STATE_EXP_AVG_SQ };

static const char *const adjust_lr_choices[] = {"original", "match_rms_adamw", NULL};

static const paramd__hyperparameter_spec muon_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-3}, 0, INFINITY, 0, "learning rate"},
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {0.1}, 0, INFINITY, 0,
     "decoupled weight decay: p *= 1 - lr * weight_decay"},
    {"momentum", PARAMD__HYPERPARAMETER_REAL, SLOT_MOMENTUM, {0.95}, 0, INFINITY, 0,
     "momentum factor"},
    {"nesterov", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_NESTEROV, {1}, 0, 1, 0,
     "Nesterov momentum"},
    {"ns_coefficients", PARAMD__HYPERPARAMETER_TRIPLE, SLOT_NS_A, {3.4445, -4.775, 2.0315},
     -INFINITY, INFINITY, 0, "coefficients (a, b, c) of the Newton-Schulz polynomial"},
    {"eps", PARAMD__HYPERPARAMETER_REAL, SLOT_EPS, {1e-7}, 0, INFINITY, 0,
     "floor of the momentum's norm"},
    {"ns_steps", PARAMD__HYPERPARAMETER_INTEGER, SLOT_NS_STEPS, {5}, 0, 99, 0,
     "Newton-Schulz iterations (below 100, as torch requires)"},
    {"adjust_lr_fn", PARAMD__HYPERPARAMETER_CHOICE, SLOT_ADJUST_LR_FN, {ADJUST_ORIGINAL}, 0, 0,
     PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT,
     "how the lr is scaled by the shape: \"original\" (null) or \"match_rms_adamw\"",
     adjust_lr_choices},
    {"use_muon", PARAMD__HYPERPARAMETER_BOOLEAN, SLOT_USE_MUON, {1}, 0, 1, 0,
     "false: AdamW for every tensor of the group, 2-D or not"},
    {"adamw_betas", PARAMD__HYPERPARAMETER_PAIR, SLOT_ADAMW_BETA1, {0.9, 0.95}, 0, 1,
     PARAMD__HYPERPARAMETER_MAXIMUM_OPEN, "betas of the AdamW fallback"},
    {"adamw_eps", PARAMD__HYPERPARAMETER_REAL, SLOT_ADAMW_EPS, {1e-10}, 0, INFINITY, 0,
     "eps of the AdamW fallback"},
};

static const char *const muon_state_slots[] = {"momentum_buffer", "exp_avg", "exp_avg_sq"};

static bool orthogonalised(const paramd__optimizer_config *config, int dimension_count)
{
    return dimension_count == 2 && config->values[SLOT_USE_MUON] != 0;
}

static bool muon_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 3;
}

static size_t muon_state_slot_length(const paramd__optimizer_config *config, int slot,
                                     int dimension_count, const int64_t *shape, size_t count)
{
    (void)shape;
    bool muon = orthogonalised(config, dimension_count);
    return (slot == STATE_MOMENTUM_BUFFER) == muon ? count : 0;
}

/* The matrix Newton-Schulz works on: k x l with k <= l, the tensor itself
 * (rows <= columns) or its transpose. */
typedef struct matrix_shape {
    size_t rows, columns, k, l;
    bool transposed;
} matrix_shape;

static matrix_shape matrix_shape_of(const int64_t *shape)
{
    matrix_shape m = {.rows = (size_t)shape[0], .columns = (size_t)shape[1]};
    m.transposed = m.rows > m.columns;
    m.k = m.transposed ? m.columns : m.rows;
    m.l = m.transposed ? m.rows : m.columns;
    return m;
}

/* Scratch: two k x l matrices and two k x k ones, each 64-byte aligned. */
static size_t round_up(size_t bytes)
{
    return (bytes + 63) & ~(size_t)63;
}

static size_t muon_scratch_bytes(const paramd__optimizer_config *config, int dimension_count,
                                 const int64_t *shape, size_t count)
{
    if (!orthogonalised(config, dimension_count))
        return 0;
    matrix_shape m = matrix_shape_of(shape);
    return 2 * round_up(count * sizeof(float)) + 2 * round_up(m.k * m.k * sizeof(float));
}

typedef struct muon_job {
    const paramd__step_arrays *arrays;
    float *update;       /* U, then X */
    float complement;    /* 1 - momentum */
    float momentum;
    float scale;         /* 1 / max(||U||, eps) */
    float decay_factor;  /* 1 - lr * weight_decay */
    float negative_lr;   /* -adjusted_lr */
    bool nesterov;
} muon_job;

/* Pass 1: buf and U, and sums[0] = sum U^2. */
PARAMD__FAST_KERNEL
static void momentum_block(void *context, size_t begin, size_t end, double *sums)
{
    const muon_job *job = context;
    const float complement = job->complement, momentum = job->momentum;
    const bool nesterov = job->nesterov;
    const float *restrict grad = job->arrays->grad;
    float *restrict buffer = job->arrays->state[STATE_MOMENTUM_BUFFER];
    float *restrict update = job->update;
    double lanes[PARAMD__REDUCE_LANES] = {0};
    size_t i = begin;
    for (; i + PARAMD__REDUCE_LANES <= end; i += PARAMD__REDUCE_LANES)
        for (int k = 0; k < PARAMD__REDUCE_LANES; k++) {
            size_t e = i + (size_t)k;
            float b = paramd__lerp(buffer[e], grad[e], complement);
            float u = nesterov ? paramd__lerp(grad[e], b, momentum) : b;
            buffer[e] = b;
            update[e] = u;
            lanes[k] += (double)u * (double)u;
        }
    for (; i < end; i++) {
        float b = paramd__lerp(buffer[i], grad[i], complement);
        float u = nesterov ? paramd__lerp(grad[i], b, momentum) : b;
        buffer[i] = b;
        update[i] = u;
        lanes[i % PARAMD__REDUCE_LANES] += (double)u * (double)u;
    }
    sums[0] += paramd__lanes_total(lanes);
}

PARAMD__REFERENCE_KERNEL
static void momentum_block_reference(void *context, size_t begin, size_t end, double *sums)
{
    const muon_job *job = context;
    float *buffer = job->arrays->state[STATE_MOMENTUM_BUFFER];
    double lanes[PARAMD__REDUCE_LANES] = {0};
    for (size_t i = begin; i < end; i++) {
        buffer[i] = paramd__lerp(buffer[i], job->arrays->grad[i], job->complement);
        job->update[i] = job->nesterov ? paramd__lerp(job->arrays->grad[i], buffer[i], job->momentum)
                                       : buffer[i];
        lanes[i % PARAMD__REDUCE_LANES] += (double)job->update[i] * (double)job->update[i];
    }
    sums[0] += paramd__lanes_total(lanes);
}

PARAMD__FAST_KERNEL
static void normalise_range(void *context, size_t begin, size_t end)
{
    const muon_job *job = context;
    float *restrict update = job->update;
    const float scale = job->scale;
    for (size_t i = begin; i < end; i++)
        update[i] = update[i] * scale;
}

PARAMD__FAST_KERNEL
static void apply_range(void *context, size_t begin, size_t end)
{
    const muon_job *job = context;
    float *restrict param = job->arrays->param;
    const float *restrict update = job->update;
    const float decay = job->decay_factor, negative_lr = job->negative_lr;
    for (size_t i = begin; i < end; i++)
        param[i] = param[i] * decay + negative_lr * update[i];
}

/* ns_steps iterations on OpenBLAS.  The tensor's row-major rows x columns
 * buffer is, read column-major, its columns x rows transpose, so the
 * transposed case needs no copy: the same products in column-major order. */
static float *newton_schulz(const double *v, matrix_shape m, float *x, float *y, float *gram,
                            float *polynomial)
{
    CBLAS_LAYOUT layout = m.transposed ? CblasColMajor : CblasRowMajor;
    const int k = (int)m.k, l = (int)m.l;
    const int leading = m.transposed ? k : l; /* of the k x l matrices */
    const float a = (float)v[SLOT_NS_A], b = (float)v[SLOT_NS_B], c = (float)v[SLOT_NS_C];
    for (int step = 0; step < (int)v[SLOT_NS_STEPS]; step++) {
        cblas_sgemm(layout, CblasNoTrans, CblasTrans, k, k, l, 1.0f, x, leading, x, leading, 0.0f,
                    gram, k);
        memcpy(polynomial, gram, m.k * m.k * sizeof(float));
        cblas_sgemm(layout, CblasNoTrans, CblasNoTrans, k, k, k, c, gram, k, gram, k, b,
                    polynomial, k);
        memcpy(y, x, m.k * m.l * sizeof(float));
        cblas_sgemm(layout, CblasNoTrans, CblasNoTrans, k, l, k, 1.0f, polynomial, k, x, leading,
                    a, y, leading);
        float *swap = x;
        x = y;
        y = swap;
    }
    return x;
}

/* The reference iteration: an explicit k x l matrix in `work` (transposed
 * by copying when rows > columns), plain loops accumulating in double, and
 * `update` (free once copied) for each new X; the result goes back to
 * `update` in the tensor's layout. */
PARAMD__REFERENCE_KERNEL
static void newton_schulz_reference(const double *v, matrix_shape m, float *update, float *work,
                                    float *gram, float *polynomial)
{
    const size_t k = m.k, l = m.l;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < l; j++)
            work[i * l + j] = m.transposed ? update[j * m.columns + i] : update[i * l + j];
    const double a = (float)v[SLOT_NS_A], b = (float)v[SLOT_NS_B], c = (float)v[SLOT_NS_C];
    for (int step = 0; step < (int)v[SLOT_NS_STEPS]; step++) {
        for (size_t i = 0; i < k; i++)
            for (size_t r = 0; r < k; r++) {
                double sum = 0;
                for (size_t j = 0; j < l; j++)
                    sum += (double)work[i * l + j] * (double)work[r * l + j];
                gram[i * k + r] = (float)sum;
            }
        for (size_t i = 0; i < k; i++)
            for (size_t r = 0; r < k; r++) {
                double sum = 0;
                for (size_t j = 0; j < k; j++)
                    sum += (double)gram[i * k + j] * (double)gram[j * k + r];
                polynomial[i * k + r] = (float)(b * gram[i * k + r] + c * sum);
            }
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < l; j++) {
                double sum = 0;
                for (size_t r = 0; r < k; r++)
                    sum += (double)polynomial[i * k + r] * (double)work[r * l + j];
                update[i * l + j] = (float)(a * work[i * l + j] + sum);
            }
        memcpy(work, update, k * l * sizeof(float));
    }
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < l; j++)
            update[m.transposed ? j * m.columns + i : i * l + j] = work[i * l + j];
}

/* Tensors Muon does not orthogonalise: AdamW on slots 1 and 2. */
static void adamw_fallback(const paramd__optimizer_config *config, uint64_t step,
                           const paramd__step_arrays *arrays, size_t count, bool reference)
{
    const double *v = config->values;
    const paramd__optimizer_type *adamw = &paramd__optimizer_adamw;
    paramd__optimizer_config adamw_config;
    paramd__optimizer_config_init(&adamw_config, adamw);
    const struct {
        const char *name;
        double value;
    } settings[] = {{"lr", v[SLOT_LR]},
                    {"betas", v[SLOT_ADAMW_BETA1]},
                    {"eps", v[SLOT_ADAMW_EPS]},
                    {"weight_decay", v[SLOT_WEIGHT_DECAY]}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        const paramd__hyperparameter_spec *spec =
            paramd__optimizer_find_hyperparameter(adamw, settings[i].name);
        adamw_config.values[spec->slot] = settings[i].value;
    }
    const paramd__hyperparameter_spec *betas = paramd__optimizer_find_hyperparameter(adamw, "betas");
    adamw_config.values[betas->slot + 1] = v[SLOT_ADAMW_BETA2];
    paramd__step_arrays adam_arrays = *arrays;
    memset(adam_arrays.state, 0, sizeof adam_arrays.state);
    adam_arrays.state[0] = arrays->state[STATE_EXP_AVG];
    adam_arrays.state[1] = arrays->state[STATE_EXP_AVG_SQ];
    if (reference)
        paramd__optimizer_step_reference(&adamw_config, step, &adam_arrays, count);
    else
        paramd__optimizer_step(&adamw_config, step, &adam_arrays, count);
}

static double adjusted_lr(const double *v, matrix_shape m)
{
    double rows = (double)m.rows, columns = (double)m.columns;
    if ((int)v[SLOT_ADJUST_LR_FN] == ADJUST_MATCH_RMS_ADAMW)
        return v[SLOT_LR] * 0.2 * sqrt(fmax(rows, columns));
    return v[SLOT_LR] * sqrt(fmax(1.0, rows / columns));
}

static void muon_step(const paramd__optimizer_config *config, uint64_t step,
                      const paramd__step_arrays *arrays, size_t count, bool reference)
{
    if (!orthogonalised(config, arrays->dimension_count)) {
        adamw_fallback(config, step, arrays, count, reference);
        return;
    }
    const double *v = config->values;
    matrix_shape m = matrix_shape_of(arrays->shape);
    char *scratch = arrays->scratch;
    float *x = (float *)(void *)scratch;
    float *y = (float *)(void *)(scratch + round_up(count * sizeof(float)));
    float *gram = (float *)(void *)(scratch + 2 * round_up(count * sizeof(float)));
    float *polynomial = gram + round_up(m.k * m.k * sizeof(float)) / sizeof(float);

    muon_job job = {.arrays = arrays,
                    .update = x,
                    .complement = (float)(1.0 - v[SLOT_MOMENTUM]),
                    .momentum = (float)v[SLOT_MOMENTUM],
                    .decay_factor = (float)(1.0 - v[SLOT_LR] * v[SLOT_WEIGHT_DECAY]),
                    .negative_lr = (float)-adjusted_lr(v, m),
                    .nesterov = v[SLOT_NESTEROV] != 0};
    double squares;
    paramd__block_sums(count, 1, reference ? momentum_block_reference : momentum_block, &job,
                       !reference, &squares);
    job.scale = 1.0f / (float)fmax(sqrt(squares), v[SLOT_EPS]);
    if (reference) {
        for (size_t i = 0; i < count; i++)
            x[i] = x[i] * job.scale;
        newton_schulz_reference(v, m, x, y, gram, polynomial);
        for (size_t i = 0; i < count; i++)
            arrays->param[i] = arrays->param[i] * job.decay_factor + job.negative_lr * x[i];
        return;
    }
    paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, normalise_range, &job);
    job.update = newton_schulz(v, m, x, y, gram, polynomial);
    paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, apply_range, &job);
}

static int muon_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                              const int64_t *shape, paramd__memory_pass *passes)
{
    (void)shape;
    if (!orthogonalised(config, dimension_count)) {
        passes[0] = (paramd__memory_pass){4, 3, "p12g"}; /* AdamW */
        return 1;
    }
    /* The Newton-Schulz products are compute-bound and not counted. */
    passes[0] = (paramd__memory_pass){3, 2, "0xg"}; /* g, buf -> buf, U */
    passes[1] = (paramd__memory_pass){1, 1, "x"};   /* U / ||U|| */
    passes[2] = (paramd__memory_pass){2, 1, "px"};  /* p, X -> p */
    return 3;
}

const paramd__optimizer_type paramd__optimizer_muon = {
    .name = "Muon",
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .state_slot_names = muon_state_slots,
    .state_slot_count = 3,
    .hyperparameters = muon_hyperparameters,
    .hyperparameter_count = sizeof muon_hyperparameters / sizeof muon_hyperparameters[0],
    .uses_state_slot = muon_uses_state_slot,
    .state_slot_length = muon_state_slot_length,
    .scratch_bytes = muon_scratch_bytes,
    .tensor_step = muon_step,
    .memory_passes = muon_memory_passes,
};
