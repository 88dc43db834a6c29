/*
 * optimizer_adafactor.c - Adafactor (Shazeer and Stern 2018, "Adafactor:
 * Adaptive Learning Rates with Sublinear Memory Cost") as PyTorch 2.x's
 * torch.optim.Adafactor defines it (keywords lr, beta2_decay, eps = (eps1,
 * eps2), d, weight_decay, maximize; torch 1.13 has no Adafactor).
 *
 * A tensor of two or more dimensions keeps a factored second moment over
 * its last two dimensions: for shape (..., m, n), a row factor row_var of
 * shape (..., m, 1) and a column factor col_var of shape (..., 1, n), so the
 * state is m + n floats per matrix instead of m * n.  A scalar or vector
 * keeps a full `variance`.
 *
 * Per step t (counted from 1), in double precision:
 *   w2 = t^beta2_decay                      (torch's one_minus_beta2_t)
 *   rho = min(lr, 1 / sqrt(t))
 *   alpha = max(eps2, ||p|| / sqrt(numel)) * rho     (p before weight decay)
 * and in float32, each operation rounded separately:
 *   g = maximize ? -g : g
 *   factored, per matrix of the tensor:
 *     row_var[i] = lerp(row_var[i], (float)(sum_j g[i][j]^2 / n), w2)
 *     col_var[j] = lerp(col_var[j], (float)(sum_i g[i][j]^2 / m), w2)
 *     mean = max((float)(sum_i row_var[i] / m), eps1)
 *     v[i][j] = (row_var[i] * col_var[j]) / mean
 *   vector:
 *     variance = lerp(variance, g * g, w2); v = variance
 *   u = (1 / sqrt(max(v, eps1 * eps1))) * g
 *   denom = max(1, ||u|| / (sqrt(numel) * d))          (double)
 *   p = p * (1 - lr * weight_decay)
 *   p = p + (-alpha / denom) * u
 * lerp is torch's (kernel.h); the sums are in double precision: ||p||,
 * ||u|| and the sums over columns in reduce.h's lane order, row sums in lane
 * order along the row, column sums row by row in order within fixed row
 * blocks that are then added in order; so the result does not depend on the
 * thread count.  eps1 defaults to float32's machine epsilon, torch's choice
 * for eps1 = None (JSON null is accepted for it).
 *
 * Passes over memory (factored): p and g once for ||p||, the row and the
 * column sums; g once for ||u||; g and p to apply - 5 reads and 1 write per
 * element, less traffic than AdamW's 4 reads and 3 writes.
 */
#include "kernel.h"
#include "parallel.h"
#include "reduce.h"

#include <float.h>
#include <math.h>
#include <string.h>

enum { SLOT_LR, SLOT_BETA2_DECAY, SLOT_EPS1, SLOT_EPS2, SLOT_D, SLOT_WEIGHT_DECAY, SLOT_MAXIMIZE,
       SLOT_FOREACH };
enum { STATE_ROW_VAR, STATE_COL_VAR, STATE_VARIANCE };

static const paramd__hyperparameter_spec adafactor_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1e-2}, 0, INFINITY, 0,
     "maximum relative step size rho, and the factor of weight decay"},
    {"beta2_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_BETA2_DECAY, {-0.8}, -INFINITY, 0, 0,
     "decay rate of beta2: 1 - beta2_t = t^beta2_decay"},
    {"eps", PARAMD__HYPERPARAMETER_PAIR, SLOT_EPS1, {FLT_EPSILON, 1e-3}, 0, INFINITY,
     PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT,
     "eps1 (floor of the second moment; null: float32 epsilon) and eps2 (floor of the "
     "parameter RMS)"},
    {"d", PARAMD__HYPERPARAMETER_REAL, SLOT_D, {1.0}, 1, INFINITY, 0,
     "clipping threshold of the update's RMS"},
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, SLOT_WEIGHT_DECAY, {0}, 0, INFINITY, 0,
     "decoupled weight decay: p *= 1 - lr * weight_decay"},
    PARAMD__SPEC_MAXIMIZE(SLOT_MAXIMIZE),
    PARAMD__SPEC_NO_EFFECT("foreach", SLOT_FOREACH),
};

static const char *const adafactor_state_slots[] = {"row_var", "col_var", "variance"};

/* How a tensor is factored: batch matrices of rows x columns. */
typedef struct layout {
    bool factored;
    size_t batches, rows, columns;
} layout;

static layout layout_of(int dimension_count, const int64_t *shape, size_t count)
{
    layout l = {.factored = dimension_count >= 2, .batches = 1, .rows = 1, .columns = count};
    if (l.factored) {
        l.rows = (size_t)shape[dimension_count - 2];
        l.columns = (size_t)shape[dimension_count - 1];
        l.batches = count / (l.rows * l.columns);
    }
    return l;
}

static bool adafactor_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    (void)config;
    return slot < 3;
}

static size_t adafactor_state_slot_length(const paramd__optimizer_config *config, int slot,
                                          int dimension_count, const int64_t *shape,
                                          size_t count)
{
    (void)config;
    layout l = layout_of(dimension_count, shape, count);
    switch (slot) {
    case STATE_ROW_VAR:
        return l.factored ? l.batches * l.rows : 0;
    case STATE_COL_VAR:
        return l.factored ? l.batches * l.columns : 0;
    case STATE_VARIANCE:
        return l.factored ? 0 : count;
    }
    return 0;
}

/* The scalars of one step. */
typedef struct adafactor_scalars {
    float sign, weight, eps1, floor, decay_factor;
    double rho, eps2, d, lr;
} adafactor_scalars;

static void adafactor_prepare(const paramd__optimizer_config *config, uint64_t step,
                              adafactor_scalars *s)
{
    const double *v = config->values;
    double t = (double)step;
    s->sign = v[SLOT_MAXIMIZE] != 0 ? -1.0f : 1.0f;
    s->weight = (float)pow(t, v[SLOT_BETA2_DECAY]);
    s->eps1 = (float)v[SLOT_EPS1];
    s->floor = (float)(v[SLOT_EPS1] * v[SLOT_EPS1]);
    s->decay_factor = (float)(1.0 - v[SLOT_LR] * v[SLOT_WEIGHT_DECAY]);
    s->lr = v[SLOT_LR];
    s->rho = fmin(v[SLOT_LR], 1.0 / sqrt(t));
    s->eps2 = v[SLOT_EPS2];
    s->d = v[SLOT_D];
}

/* The step size from the two norms' sums of squares. */
static float step_size(const adafactor_scalars *s, double weight_squares, double update_squares,
                       size_t count)
{
    double root_count = sqrt((double)count);
    double alpha = fmax(s->eps2, sqrt(weight_squares) / root_count) * s->rho;
    double denominator = fmax(1.0, sqrt(update_squares) / (root_count * s->d));
    return (float)(-alpha / denominator);
}

/* ---------------------------------------------------------------------------
 * Factored tensors
 * ------------------------------------------------------------------------- */

/* Row blocks per matrix for the column sums: fixed by the matrix size alone,
 * never by the thread count. */
#define ROW_BLOCKS 16

typedef struct factored_job {
    const adafactor_scalars *scalars;
    const paramd__step_arrays *arrays;
    layout l;
    size_t batch;             /* the matrix the row-block pass works on */
    size_t row_block_count;   /* row blocks of that matrix */
    double *row_sums;         /* batches * rows: sum_j g^2, then per-row sum u^2 */
    double *column_partials;  /* row_block_count * columns */
    double *weight_partials;  /* row_block_count */
    const float *means;       /* per batch: max(mean(row_var), eps1) */
    float step;               /* -alpha / denom */
} factored_job;

/* Pass 1, one row block [first, end) of matrix job->batch: row sums of g^2,
 * partial column sums of g^2 and the block's sum of p^2. */
PARAMD__FAST_KERNEL
static void factored_sums_range(void *context, size_t first_block, size_t end_block)
{
    const factored_job *job = context;
    const size_t rows = job->l.rows, columns = job->l.columns;
    const float sign = job->scalars->sign;
    for (size_t block = first_block; block < end_block; block++) {
        size_t row_begin = rows * block / job->row_block_count;
        size_t row_end = rows * (block + 1) / job->row_block_count;
        double *restrict column_sums = job->column_partials + block * columns;
        double weight_lanes[PARAMD__REDUCE_LANES] = {0};
        memset(column_sums, 0, columns * sizeof *column_sums);
        for (size_t r = row_begin; r < row_end; r++) {
            size_t row = job->batch * rows + r;
            const float *restrict g = job->arrays->grad + row * columns;
            const float *restrict p = job->arrays->param + row * columns;
            double row_lanes[PARAMD__REDUCE_LANES] = {0};
            size_t j = 0;
            for (; j + PARAMD__REDUCE_LANES <= columns; j += PARAMD__REDUCE_LANES)
                for (int k = 0; k < PARAMD__REDUCE_LANES; k++) {
                    double x = g[j + (size_t)k] * sign, w = p[j + (size_t)k];
                    row_lanes[k] += x * x;
                    column_sums[j + (size_t)k] += x * x;
                    weight_lanes[k] += w * w;
                }
            for (; j < columns; j++) {
                double x = g[j] * sign, w = p[j];
                row_lanes[j % PARAMD__REDUCE_LANES] += x * x;
                column_sums[j] += x * x;
                weight_lanes[j % PARAMD__REDUCE_LANES] += w * w;
            }
            job->row_sums[row] = paramd__lanes_total(row_lanes);
        }
        job->weight_partials[block] = paramd__lanes_total(weight_lanes);
    }
}

/* u for one row (float32, as the header says). */
static PARAMD__ALWAYS_INLINE float factored_update(float row_var, float col_var, float mean,
                                                   float floor, float g)
{
    float v = (row_var * col_var) / mean;
    v = v > floor ? v : floor;
    return (1.0f / sqrtf(v)) * g;
}

/* Pass 2: the sum of u^2 of each row, into row_sums. */
PARAMD__FAST_KERNEL
static void factored_update_norms_range(void *context, size_t first_row, size_t end_row)
{
    const factored_job *job = context;
    const size_t rows = job->l.rows, columns = job->l.columns;
    const float sign = job->scalars->sign, floor = job->scalars->floor;
    for (size_t row = first_row; row < end_row; row++) {
        size_t batch = row / rows;
        const float *restrict g = job->arrays->grad + row * columns;
        const float *restrict col_var = job->arrays->state[STATE_COL_VAR] + batch * columns;
        const float row_var = job->arrays->state[STATE_ROW_VAR][row], mean = job->means[batch];
        double lanes[PARAMD__REDUCE_LANES] = {0};
        size_t j = 0;
        for (; j + PARAMD__REDUCE_LANES <= columns; j += PARAMD__REDUCE_LANES)
            for (int k = 0; k < PARAMD__REDUCE_LANES; k++) {
                double u = factored_update(row_var, col_var[j + (size_t)k], mean, floor,
                                           g[j + (size_t)k] * sign);
                lanes[k] += u * u;
            }
        for (; j < columns; j++) {
            double u = factored_update(row_var, col_var[j], mean, floor, g[j] * sign);
            lanes[j % PARAMD__REDUCE_LANES] += u * u;
        }
        job->row_sums[row] = paramd__lanes_total(lanes);
    }
}

/* Pass 3: p = p * decay + step * u. */
PARAMD__FAST_KERNEL
static void factored_apply_range(void *context, size_t first_row, size_t end_row)
{
    const factored_job *job = context;
    const size_t rows = job->l.rows, columns = job->l.columns;
    const float sign = job->scalars->sign, floor = job->scalars->floor;
    const float decay = job->scalars->decay_factor, step = job->step;
    for (size_t row = first_row; row < end_row; row++) {
        size_t batch = row / rows;
        const float *restrict g = job->arrays->grad + row * columns;
        float *restrict p = job->arrays->param + row * columns;
        const float *restrict col_var = job->arrays->state[STATE_COL_VAR] + batch * columns;
        const float row_var = job->arrays->state[STATE_ROW_VAR][row], mean = job->means[batch];
        for (size_t j = 0; j < columns; j++) {
            float u = factored_update(row_var, col_var[j], mean, floor, g[j] * sign);
            p[j] = p[j] * decay + step * u;
        }
    }
}

/* Rows a parallel row loop needs before it is worth splitting. */
static size_t minimum_rows(size_t columns)
{
    return (PARAMD__PARALLEL_STEP_MINIMUM + columns - 1) / columns;
}

/* Row blocks of each matrix of a tensor with this layout. */
static size_t row_blocks(layout l)
{
    bool large = l.rows * l.columns >= PARAMD__PARALLEL_STEP_MINIMUM;
    return large && l.rows >= ROW_BLOCKS ? ROW_BLOCKS : 1;
}

/* The scratch of a factored step: a sum per row (batches * rows doubles),
 * the column partial sums (row blocks * columns doubles) and a mean per
 * matrix (batches floats). */
typedef struct factored_scratch {
    double *row_sums, *column_partials;
    float *means;
} factored_scratch;

static size_t factored_scratch_layout(layout l, void *base, factored_scratch *out)
{
    size_t row_sums = l.batches * l.rows * sizeof(double);
    size_t partials = row_blocks(l) * l.columns * sizeof(double);
    if (out) {
        out->row_sums = base;
        out->column_partials = (double *)(void *)((char *)base + row_sums);
        out->means = (float *)(void *)((char *)base + row_sums + partials);
    }
    return row_sums + partials + l.batches * sizeof(float);
}

static size_t adafactor_scratch_bytes(const paramd__optimizer_config *config,
                                      int dimension_count, const int64_t *shape, size_t count)
{
    (void)config;
    layout l = layout_of(dimension_count, shape, count);
    return l.factored ? factored_scratch_layout(l, NULL, NULL) : 0;
}

static void factored_step(const adafactor_scalars *s, const paramd__step_arrays *arrays,
                          size_t count, layout l)
{
    size_t all_rows = l.batches * l.rows;
    size_t row_block_count = row_blocks(l);
    factored_scratch scratch;
    factored_scratch_layout(l, arrays->scratch, &scratch);
    double *row_sums = scratch.row_sums, *column_partials = scratch.column_partials;
    float *means = scratch.means;
    double weight_partials[ROW_BLOCKS];
    factored_job job = {s, arrays, l, 0, row_block_count, row_sums, column_partials,
                        weight_partials, means, 0.0f};
    double weight_squares = 0;
    float *row_var = arrays->state[STATE_ROW_VAR], *col_var = arrays->state[STATE_COL_VAR];
    for (size_t b = 0; b < l.batches; b++) {
        job.batch = b;
        paramd__parallel_for(row_block_count, 1, 2, factored_sums_range, &job);
        for (size_t block = 0; block < row_block_count; block++)
            weight_squares += weight_partials[block];
        /* The factors of this matrix, and the mean of its row factor. */
        for (size_t j = 0; j < l.columns; j++) {
            double sum = 0;
            for (size_t block = 0; block < row_block_count; block++)
                sum += column_partials[block * l.columns + j];
            float mean = (float)(sum / (double)l.rows);
            col_var[b * l.columns + j] = paramd__lerp(col_var[b * l.columns + j], mean, s->weight);
        }
        double row_total = 0;
        for (size_t i = 0; i < l.rows; i++) {
            size_t row = b * l.rows + i;
            float mean = (float)(row_sums[row] / (double)l.columns);
            row_var[row] = paramd__lerp(row_var[row], mean, s->weight);
            row_total += row_var[row];
        }
        float mean = (float)(row_total / (double)l.rows);
        means[b] = mean > s->eps1 ? mean : s->eps1;
    }
    paramd__parallel_for(all_rows, 1, minimum_rows(l.columns), factored_update_norms_range, &job);
    double update_squares = 0;
    for (size_t row = 0; row < all_rows; row++)
        update_squares += row_sums[row];
    job.step = step_size(s, weight_squares, update_squares, count);
    paramd__parallel_for(all_rows, 1, minimum_rows(l.columns), factored_apply_range, &job);
}

/* The reference: the same sums in the same order, scalar loops, one thread. */
PARAMD__REFERENCE_KERNEL
static void factored_step_reference(const adafactor_scalars *s, const paramd__step_arrays *a,
                                    size_t count, layout l)
{
    size_t all_rows = l.batches * l.rows;
    size_t row_block_count = row_blocks(l);
    factored_scratch scratch;
    factored_scratch_layout(l, a->scratch, &scratch);
    double *row_sums = scratch.row_sums, *column_sums = scratch.column_partials;
    float *means = scratch.means;
    float *row_var = a->state[STATE_ROW_VAR], *col_var = a->state[STATE_COL_VAR];
    double weight_squares = 0;
    for (size_t b = 0; b < l.batches; b++) {
        memset(column_sums, 0, row_block_count * l.columns * sizeof *column_sums);
        for (size_t block = 0; block < row_block_count; block++) {
            double weight_lanes[PARAMD__REDUCE_LANES] = {0};
            for (size_t i = l.rows * block / row_block_count;
                 i < l.rows * (block + 1) / row_block_count; i++) {
                double row_lanes[PARAMD__REDUCE_LANES] = {0};
                size_t row = b * l.rows + i;
                for (size_t j = 0; j < l.columns; j++) {
                    float g = s->sign < 0 ? -a->grad[row * l.columns + j] : a->grad[row * l.columns + j];
                    double w = a->param[row * l.columns + j];
                    row_lanes[j % PARAMD__REDUCE_LANES] += (double)g * (double)g;
                    column_sums[block * l.columns + j] += (double)g * (double)g;
                    weight_lanes[j % PARAMD__REDUCE_LANES] += w * w;
                }
                row_sums[row] = paramd__lanes_total(row_lanes);
            }
            weight_squares += paramd__lanes_total(weight_lanes);
        }
        for (size_t j = 0; j < l.columns; j++) {
            double sum = 0;
            for (size_t block = 0; block < row_block_count; block++)
                sum += column_sums[block * l.columns + j];
            size_t c = b * l.columns + j;
            col_var[c] = paramd__lerp(col_var[c], (float)(sum / (double)l.rows), s->weight);
        }
        double row_total = 0;
        for (size_t i = 0; i < l.rows; i++) {
            size_t row = b * l.rows + i;
            row_var[row] = paramd__lerp(row_var[row], (float)(row_sums[row] / (double)l.columns),
                                        s->weight);
            row_total += row_var[row];
        }
        means[b] = fmaxf((float)(row_total / (double)l.rows), s->eps1);
    }
    double update_squares = 0;
    for (size_t row = 0; row < all_rows; row++) {
        double lanes[PARAMD__REDUCE_LANES] = {0};
        size_t b = row / l.rows;
        for (size_t j = 0; j < l.columns; j++) {
            float g = s->sign < 0 ? -a->grad[row * l.columns + j] : a->grad[row * l.columns + j];
            float v = (row_var[row] * col_var[b * l.columns + j]) / means[b];
            float u = (1.0f / sqrtf(v > s->floor ? v : s->floor)) * g;
            lanes[j % PARAMD__REDUCE_LANES] += (double)u * (double)u;
        }
        update_squares += paramd__lanes_total(lanes);
    }
    float step = step_size(s, weight_squares, update_squares, count);
    for (size_t row = 0; row < all_rows; row++) {
        size_t b = row / l.rows;
        for (size_t j = 0; j < l.columns; j++) {
            size_t e = row * l.columns + j;
            float g = s->sign < 0 ? -a->grad[e] : a->grad[e];
            float v = (row_var[row] * col_var[b * l.columns + j]) / means[b];
            float u = (1.0f / sqrtf(v > s->floor ? v : s->floor)) * g;
            a->param[e] = a->param[e] * s->decay_factor + step * u;
        }
    }
}

/* ---------------------------------------------------------------------------
 * Scalars and vectors: a full second moment
 * ------------------------------------------------------------------------- */

typedef struct vector_job {
    const adafactor_scalars *scalars;
    const paramd__step_arrays *arrays;
    float step;
} vector_job;

static PARAMD__ALWAYS_INLINE float vector_update(float variance, float floor, float g)
{
    return (1.0f / sqrtf(variance > floor ? variance : floor)) * g;
}

/* Pass 1: variance, and sums[0] = sum p^2, sums[1] = sum u^2. */
PARAMD__FAST_KERNEL
static void vector_moments_block(void *context, size_t begin, size_t end, double *sums)
{
    const vector_job *job = context;
    const float sign = job->scalars->sign, weight = job->scalars->weight;
    const float floor = job->scalars->floor;
    const float *restrict param = job->arrays->param, *restrict grad = job->arrays->grad;
    float *restrict variance = job->arrays->state[STATE_VARIANCE];
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, update_lanes[PARAMD__REDUCE_LANES] = {0};
    size_t i = begin;
    for (; i + PARAMD__REDUCE_LANES <= end; i += PARAMD__REDUCE_LANES)
        for (int k = 0; k < PARAMD__REDUCE_LANES; k++) {
            size_t e = i + (size_t)k;
            float g = grad[e] * sign;
            float v = paramd__lerp(variance[e], g * g, weight);
            variance[e] = v;
            double w = param[e], u = vector_update(v, floor, g);
            weight_lanes[k] += w * w;
            update_lanes[k] += u * u;
        }
    for (; i < end; i++) {
        float g = grad[i] * sign;
        float v = paramd__lerp(variance[i], g * g, weight);
        variance[i] = v;
        double w = param[i], u = vector_update(v, floor, g);
        weight_lanes[i % PARAMD__REDUCE_LANES] += w * w;
        update_lanes[i % PARAMD__REDUCE_LANES] += u * u;
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(update_lanes);
}

PARAMD__REFERENCE_KERNEL
static void vector_moments_block_reference(void *context, size_t begin, size_t end,
                                           double *sums)
{
    const vector_job *job = context;
    const adafactor_scalars *s = job->scalars;
    const paramd__step_arrays *a = job->arrays;
    double weight_lanes[PARAMD__REDUCE_LANES] = {0}, update_lanes[PARAMD__REDUCE_LANES] = {0};
    for (size_t i = begin; i < end; i++) {
        float g = s->sign < 0 ? -a->grad[i] : a->grad[i];
        float *variance = &a->state[STATE_VARIANCE][i];
        *variance = paramd__lerp(*variance, g * g, s->weight);
        float u = (1.0f / sqrtf(*variance > s->floor ? *variance : s->floor)) * g;
        weight_lanes[i % PARAMD__REDUCE_LANES] += (double)a->param[i] * (double)a->param[i];
        update_lanes[i % PARAMD__REDUCE_LANES] += (double)u * (double)u;
    }
    sums[0] += paramd__lanes_total(weight_lanes);
    sums[1] += paramd__lanes_total(update_lanes);
}

PARAMD__FAST_KERNEL
static void vector_apply_range(void *context, size_t begin, size_t end)
{
    const vector_job *job = context;
    const float sign = job->scalars->sign, floor = job->scalars->floor;
    const float decay = job->scalars->decay_factor, step = job->step;
    float *restrict param = job->arrays->param;
    const float *restrict grad = job->arrays->grad;
    const float *restrict variance = job->arrays->state[STATE_VARIANCE];
    for (size_t i = begin; i < end; i++)
        param[i] = param[i] * decay + step * vector_update(variance[i], floor, grad[i] * sign);
}

PARAMD__REFERENCE_KERNEL
static void vector_apply_reference(const vector_job *job, size_t count)
{
    const adafactor_scalars *s = job->scalars;
    const paramd__step_arrays *a = job->arrays;
    for (size_t i = 0; i < count; i++) {
        float g = s->sign < 0 ? -a->grad[i] : a->grad[i];
        float v = a->state[STATE_VARIANCE][i];
        float u = (1.0f / sqrtf(v > s->floor ? v : s->floor)) * g;
        a->param[i] = a->param[i] * s->decay_factor + job->step * u;
    }
}

static void adafactor_step(const paramd__optimizer_config *config, uint64_t step,
                           const paramd__step_arrays *arrays, size_t count, bool reference)
{
    adafactor_scalars s;
    adafactor_prepare(config, step, &s);
    layout l = layout_of(arrays->dimension_count, arrays->shape, count);
    if (l.factored) {
        if (reference)
            factored_step_reference(&s, arrays, count, l);
        else
            factored_step(&s, arrays, count, l);
        return;
    }
    vector_job job = {&s, arrays, 0.0f};
    double sums[2];
    paramd__block_sums(count, 2, reference ? vector_moments_block_reference : vector_moments_block,
                       &job, !reference, sums);
    job.step = step_size(&s, sums[0], sums[1], count);
    if (reference)
        vector_apply_reference(&job, count);
    else
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, vector_apply_range, &job);
}

static int adafactor_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                                   const int64_t *shape, paramd__memory_pass *passes)
{
    (void)config, (void)shape;
    if (dimension_count >= 2) {
        passes[0] = (paramd__memory_pass){2, 0, "pg"}; /* ||p||, row and column sums */
        passes[1] = (paramd__memory_pass){1, 0, "g"};  /* ||u|| */
        passes[2] = (paramd__memory_pass){2, 1, "pg"}; /* apply */
        return 3;
    }
    passes[0] = (paramd__memory_pass){3, 1, "2pg"}; /* variance, norms */
    passes[1] = (paramd__memory_pass){3, 1, "p2g"}; /* apply */
    return 2;
}

const paramd__optimizer_type paramd__optimizer_adafactor = {
    .name = "Adafactor",
    .flags = PARAMD__OPTIMIZER_DECOUPLED,
    .state_slot_names = adafactor_state_slots,
    .state_slot_count = 3,
    .hyperparameters = adafactor_hyperparameters,
    .hyperparameter_count = sizeof adafactor_hyperparameters / sizeof adafactor_hyperparameters[0],
    .uses_state_slot = adafactor_uses_state_slot,
    .state_slot_length = adafactor_state_slot_length,
    .scratch_bytes = adafactor_scratch_bytes,
    .tensor_step = adafactor_step,
    .memory_passes = adafactor_memory_passes,
};
