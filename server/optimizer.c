/*
 * optimizer.c - the optimizer table, configuration checking and the step driver.
 */
#include "optimizer.h"

#include "kernel.h"
#include "parallel.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------
 * The table.  One line per optimizer; keep PARAMD__OPTIMIZER_COUNT in step.
 * ------------------------------------------------------------------------- */

#define PARAMD__OPTIMIZER_COUNT 20

const paramd__optimizer_type *const paramd__optimizer_types[] = {
    &paramd__optimizer_sgd,
    &paramd__optimizer_adam,
    &paramd__optimizer_adamw,
    &paramd__optimizer_adagrad,
    &paramd__optimizer_rmsprop,
    &paramd__optimizer_adamax,
    &paramd__optimizer_adadelta,
    &paramd__optimizer_nadam,
    &paramd__optimizer_radam,
    &paramd__optimizer_rprop,
    &paramd__optimizer_asgd,
    &paramd__optimizer_lion,
    &paramd__optimizer_yogi,
    &paramd__optimizer_adabelief,
    &paramd__optimizer_deltabardelta,
    &paramd__optimizer_lamb,
    &paramd__optimizer_lars,
    &paramd__optimizer_adafactor,
    &paramd__optimizer_muon,
    &paramd__optimizer_lbfgs,
};

_Static_assert(sizeof paramd__optimizer_types / sizeof paramd__optimizer_types[0] ==
                   PARAMD__OPTIMIZER_COUNT,
               "paramd__optimizer_types and PARAMD__OPTIMIZER_COUNT disagree");

const int paramd__optimizer_type_count = PARAMD__OPTIMIZER_COUNT;

const paramd__optimizer_type *paramd__optimizer_find(const char *name)
{
    for (int i = 0; i < PARAMD__OPTIMIZER_COUNT; i++)
        if (strcasecmp(paramd__optimizer_types[i]->name, name) == 0)
            return paramd__optimizer_types[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Hyperparameters common to every optimizer
 * ------------------------------------------------------------------------- */

static const paramd__hyperparameter_spec common_hyperparameters[] = {
    {"decoupled_weight_decay", PARAMD__HYPERPARAMETER_BOOLEAN,
     PARAMD__SLOT_DECOUPLED_WEIGHT_DECAY, {0}, 0, 1, 0,
     "apply weight_decay as p *= 1 - lr * weight_decay before the step (AdamW-style)"},
    {"l1", PARAMD__HYPERPARAMETER_REAL, PARAMD__SLOT_L1, {0}, 0, INFINITY, 0,
     "L1 penalty, applied after the step as a proximal soft-threshold of lr * l1"},
};

#define COMMON_COUNT ((int)(sizeof common_hyperparameters / sizeof common_hyperparameters[0]))

/* decoupled_weight_decay applies to optimizers that have a coupled
 * weight_decay; l1 to all but the whole-model ones. */
static bool common_applies(const paramd__optimizer_type *type,
                           const paramd__hyperparameter_spec *spec)
{
    if (type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL)
        return false;
    if (spec->slot != PARAMD__SLOT_DECOUPLED_WEIGHT_DECAY)
        return true;
    if (type->flags & PARAMD__OPTIMIZER_DECOUPLED)
        return false;
    for (int i = 0; i < type->hyperparameter_count; i++)
        if (strcmp(type->hyperparameters[i].name, "weight_decay") == 0)
            return true;
    return false;
}

const paramd__hyperparameter_spec *paramd__optimizer_common_hyperparameter(
    const paramd__optimizer_type *type, int index)
{
    for (int i = 0; i < COMMON_COUNT; i++)
        if (common_applies(type, &common_hyperparameters[i]) && index-- == 0)
            return &common_hyperparameters[i];
    return NULL;
}

const paramd__hyperparameter_spec *paramd__optimizer_find_hyperparameter(
    const paramd__optimizer_type *type, const char *name)
{
    for (int i = 0; i < type->hyperparameter_count; i++)
        if (strcmp(type->hyperparameters[i].name, name) == 0)
            return &type->hyperparameters[i];
    for (int i = 0; i < COMMON_COUNT; i++)
        if (strcmp(common_hyperparameters[i].name, name) == 0 &&
            common_applies(type, &common_hyperparameters[i]))
            return &common_hyperparameters[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Configurations
 * ------------------------------------------------------------------------- */

int paramd__hyperparameter_width(paramd__hyperparameter_kind kind)
{
    return kind == PARAMD__HYPERPARAMETER_PAIR ? 2 : kind == PARAMD__HYPERPARAMETER_TRIPLE ? 3 : 1;
}

void paramd__optimizer_config_init(paramd__optimizer_config *config,
                                   const paramd__optimizer_type *type)
{
    memset(config, 0, sizeof *config);
    config->type = type;
    for (int i = 0; i < type->hyperparameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
        bool required = spec->flags & PARAMD__HYPERPARAMETER_REQUIRED;
        for (int k = 0; k < paramd__hyperparameter_width(spec->kind); k++)
            config->values[spec->slot + k] = required ? NAN : spec->default_value[k];
    }
}

/* Formats the valid range of spec as "[0, 1)" for error messages. */
static void describe_range(const paramd__hyperparameter_spec *spec, char *buffer, size_t size)
{
    if (spec->kind == PARAMD__HYPERPARAMETER_BOOLEAN) {
        snprintf(buffer, size, "true or false");
        return;
    }
    if (spec->kind == PARAMD__HYPERPARAMETER_CHOICE) {
        size_t n = (size_t)snprintf(buffer, size, "one of null");
        for (int i = 0; spec->choices[i] && n < size; i++)
            n += (size_t)snprintf(buffer + n, size - n, ", \"%s\"", spec->choices[i]);
        return;
    }
    bool minimum_open = spec->flags & PARAMD__HYPERPARAMETER_MINIMUM_OPEN;
    bool maximum_open = spec->flags & PARAMD__HYPERPARAMETER_MAXIMUM_OPEN;
    char low[32], high[32];
    if (isinf(spec->minimum))
        snprintf(low, sizeof low, "-inf");
    else
        snprintf(low, sizeof low, "%.17g", spec->minimum);
    if (isinf(spec->maximum))
        snprintf(high, sizeof high, "inf");
    else
        snprintf(high, sizeof high, "%.17g", spec->maximum);
    snprintf(buffer, size, "%c%s, %s%c", minimum_open ? '(' : '[', low, high,
             maximum_open || isinf(spec->maximum) ? ')' : ']');
}

static bool in_range(const paramd__hyperparameter_spec *spec, double value)
{
    if (!isfinite(value))
        return false;
    if (spec->kind == PARAMD__HYPERPARAMETER_BOOLEAN)
        return value == 0.0 || value == 1.0;
    if (spec->kind == PARAMD__HYPERPARAMETER_INTEGER && value != floor(value))
        return false;
    if (spec->kind == PARAMD__HYPERPARAMETER_CHOICE) {
        int count = 0;
        while (spec->choices[count])
            count++;
        return value >= 0 && value < count && value == floor(value);
    }
    if (spec->flags & PARAMD__HYPERPARAMETER_MINIMUM_OPEN ? !(value > spec->minimum)
                                                          : !(value >= spec->minimum))
        return false;
    if (spec->flags & PARAMD__HYPERPARAMETER_MAXIMUM_OPEN ? !(value < spec->maximum)
                                                          : !(value <= spec->maximum))
        return false;
    return true;
}

int paramd__optimizer_config_set(paramd__optimizer_config *config,
                                 const paramd__hyperparameter_spec *spec, const double *values,
                                 const char *field, paramd__error *error)
{
    int result = paramd__hyperparameter_check(spec, values, field, error);
    if (result != PARAMD_OK)
        return result;
    for (int i = 0; i < paramd__hyperparameter_width(spec->kind); i++)
        config->values[spec->slot + i] = values[i];
    return PARAMD_OK;
}

int paramd__hyperparameter_check(const paramd__hyperparameter_spec *spec, const double *values,
                                 const char *field, paramd__error *error)
{
    int count = paramd__hyperparameter_width(spec->kind);
    for (int i = 0; i < count; i++) {
        if (!in_range(spec, values[i])) {
            char range[160];
            describe_range(spec, range, sizeof range);
            if (spec->kind == PARAMD__HYPERPARAMETER_INTEGER)
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be an integer in %s, got %.17g", field, range,
                                         values[i]);
            if (spec->kind == PARAMD__HYPERPARAMETER_CHOICE)
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER, "%s: must be %s",
                                         field, range);
            if (count > 1)
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s[%d]: must be in %s, got %.17g", field, i, range,
                                         values[i]);
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be in %s, got %.17g", field, range, values[i]);
        }
    }
    return PARAMD_OK;
}

int paramd__optimizer_config_validate(const paramd__optimizer_config *config, const char *field,
                                      paramd__error *error)
{
    const paramd__optimizer_type *type = config->type;
    for (int i = 0; i < type->hyperparameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
        if (isnan(config->values[spec->slot]))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.%s: required by %s, which has no default", field,
                                     spec->name, type->name);
    }
    return type->validate ? type->validate(config, field, error) : PARAMD_OK;
}

size_t paramd__optimizer_state_length(const paramd__optimizer_config *config, int slot,
                                      int dimension_count, const int64_t *shape, size_t count)
{
    const paramd__optimizer_type *type = config->type;
    if (slot < 0 || slot >= type->state_slot_count)
        return 0;
    if (type->state_slot_length)
        return type->state_slot_length(config, slot, dimension_count, shape, count);
    return type->uses_state_slot(config, slot) ? count : 0;
}

size_t paramd__optimizer_scratch_bytes(const paramd__optimizer_config *config,
                                       int dimension_count, const int64_t *shape, size_t count)
{
    const paramd__optimizer_type *type = config->type;
    return type->scratch_bytes ? type->scratch_bytes(config, dimension_count, shape, count) : 0;
}

int paramd__optimizer_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                                    const int64_t *shape, paramd__memory_pass *passes)
{
    const paramd__optimizer_type *type = config->type;
    if (type->memory_passes)
        return type->memory_passes(config, dimension_count, shape, passes);
    /* The weights and each state slot written, the gradient read. */
    paramd__memory_pass pass = {.reads = 2, .writes = 1, .arrays = "p"};
    int length = 1;
    for (int s = 0; s < type->state_slot_count; s++)
        if (type->uses_state_slot(config, s)) {
            pass.arrays[length++] = (char)('0' + s);
            pass.reads++;
            pass.writes++;
        }
    pass.arrays[length] = 'g';
    passes[0] = pass;
    return 1;
}

double paramd__optimizer_config_get(const paramd__optimizer_config *config, const char *name)
{
    const paramd__hyperparameter_spec *spec =
        paramd__optimizer_find_hyperparameter(config->type, name);
    return spec ? config->values[spec->slot] : NAN;
}

/* ---------------------------------------------------------------------------
 * Step driver
 * ------------------------------------------------------------------------- */

typedef struct step_job {
    paramd__step_kernel kernel;
    const paramd__step_scalars *scalars;
    const paramd__step_arrays *arrays;
    float *weights_out; /* copy each block here once updated, or NULL */
} step_job;

/* Blocks small enough that a block's weights are still in L1/L2 when they
 * are copied out (a multiple of 16 floats, so blocks stay 64-byte aligned). */
#define COPY_BLOCK 4096

static void run_step_range(void *context, size_t begin, size_t end)
{
    const step_job *job = context;
    if (job->weights_out == NULL) {
        job->kernel(job->scalars, job->arrays, begin, end);
        return;
    }
    for (size_t block = begin; block < end; block += COPY_BLOCK) {
        size_t stop = end - block > COPY_BLOCK ? block + COPY_BLOCK : end;
        job->kernel(job->scalars, job->arrays, block, stop);
        memcpy(job->weights_out + block, job->arrays->param + block,
               (stop - block) * sizeof(float));
    }
}

/* The common regularisation around an optimizer's own step: decoupled
 * weight decay before it (with the optimizer's own, coupled weight_decay
 * turned off), the L1 soft-threshold after it.  Each is one extra pass over
 * the weights, paid only when enabled. */
typedef struct regularisation {
    paramd__optimizer_config kernel_config; /* the configuration the kernel sees */
    float decay_factor;                     /* 1 - lr * weight_decay; 1: no pass */
    float l1_threshold;                     /* lr * l1; 0: no pass */
} regularisation;

static void plan_regularisation(const paramd__optimizer_config *config, regularisation *plan)
{
    plan->kernel_config = *config;
    plan->decay_factor = 1.0f;
    plan->l1_threshold = 0.0f;
    const paramd__hyperparameter_spec *lr =
        paramd__optimizer_find_hyperparameter(config->type, "lr");
    double learning_rate = lr ? config->values[lr->slot] : 0.0;
    if (config->values[PARAMD__SLOT_DECOUPLED_WEIGHT_DECAY] != 0) {
        const paramd__hyperparameter_spec *weight_decay =
            paramd__optimizer_find_hyperparameter(config->type, "weight_decay");
        if (weight_decay) {
            double decay = config->values[weight_decay->slot];
            plan->decay_factor = (float)(1.0 - learning_rate * decay);
            plan->kernel_config.values[weight_decay->slot] = 0.0;
        }
    }
    if (config->values[PARAMD__SLOT_L1] > 0)
        plan->l1_threshold = (float)(learning_rate * config->values[PARAMD__SLOT_L1]);
}

typedef struct weights_job {
    float *param;
    float value; /* the decay factor or the L1 threshold */
    float *weights_out; /* L1: copy the result here too, or NULL */
} weights_job;

PARAMD__FAST_KERNEL
static void decay_range(void *context, size_t begin, size_t end)
{
    const weights_job *job = context;
    float *restrict param = job->param;
    const float factor = job->value;
    for (size_t i = begin; i < end; i++)
        param[i] = param[i] * factor;
}

/* p = sign(p) * max(|p| - t, 0), written so gcc vectorises it. */
PARAMD__FAST_KERNEL
static void soft_threshold_range(void *context, size_t begin, size_t end)
{
    const weights_job *job = context;
    float *restrict param = job->param;
    const float threshold = job->value;
    for (size_t i = begin; i < end; i++) {
        float p = param[i];
        float shrunk = p > threshold ? p - threshold : 0.0f;
        param[i] = p < -threshold ? p + threshold : shrunk;
    }
    if (job->weights_out)
        memcpy(job->weights_out + begin, param + begin, (end - begin) * sizeof(float));
}

/* Runs a tensor-wise step, allocating its scratch when the caller gave
 * none.  Only tests and paramd-bench give none; the server's push allocates
 * scratch before it changes anything, so running out of memory here is
 * fatal. */
static void run_tensor_step(const paramd__optimizer_config *config, uint64_t step,
                            const paramd__step_arrays *arrays, size_t count, bool reference)
{
    size_t bytes = paramd__optimizer_scratch_bytes(config, arrays->dimension_count,
                                                   arrays->shape, count);
    if (bytes == 0 || arrays->scratch != NULL) {
        config->type->tensor_step(config, step, arrays, count, reference);
        return;
    }
    paramd__step_arrays with_scratch = *arrays;
    size_t floats = (bytes + sizeof(float) - 1) / sizeof(float);
    with_scratch.scratch = paramd__float_array_alloc(floats);
    if (with_scratch.scratch == NULL) {
        fprintf(stderr, "paramd: %s: cannot allocate %zu bytes of scratch\n", config->type->name,
                bytes);
        abort();
    }
    config->type->tensor_step(config, step, &with_scratch, count, reference);
    paramd__float_array_free(with_scratch.scratch, floats);
}

void paramd__optimizer_step(const paramd__optimizer_config *config, uint64_t step,
                            const paramd__step_arrays *arrays, size_t count)
{
    regularisation plan;
    plan_regularisation(config, &plan);
    /* Chunks start on 64-byte boundaries (16 floats) so each thread's vector
     * loop begins aligned when the arrays are. */
    if (plan.decay_factor != 1.0f) {
        weights_job decay = {arrays->param, plan.decay_factor, NULL};
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, decay_range, &decay);
    }
    /* The copy out goes with the last pass over the weights. */
    bool l1 = plan.l1_threshold > 0.0f;
    bool copied = false;
    if (config->type->tensor_step) {
        run_tensor_step(&plan.kernel_config, step, arrays, count, false);
    } else {
        paramd__step_scalars scalars;
        config->type->prepare(&plan.kernel_config, step, &scalars);
        step_job job = {config->type->kernel, &scalars, arrays, l1 ? NULL : arrays->weights_out};
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, run_step_range, &job);
        copied = job.weights_out != NULL;
    }
    if (l1) {
        weights_job threshold = {arrays->param, plan.l1_threshold, arrays->weights_out};
        paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, soft_threshold_range,
                             &threshold);
        copied = arrays->weights_out != NULL;
    }
    if (arrays->weights_out && !copied) /* tensor-wise steps: their own passes */
        memcpy(arrays->weights_out, arrays->param, count * sizeof(float));
}

void paramd__optimizer_step_reference(const paramd__optimizer_config *config, uint64_t step,
                                      const paramd__step_arrays *arrays, size_t count)
{
    regularisation plan;
    plan_regularisation(config, &plan);
    for (size_t i = 0; plan.decay_factor != 1.0f && i < count; i++)
        arrays->param[i] = arrays->param[i] * plan.decay_factor;
    if (config->type->tensor_step) {
        run_tensor_step(&plan.kernel_config, step, arrays, count, true);
    } else {
        paramd__step_scalars scalars;
        config->type->prepare(&plan.kernel_config, step, &scalars);
        config->type->reference_kernel(&scalars, arrays, 0, count);
    }
    for (size_t i = 0; plan.l1_threshold > 0.0f && i < count; i++) {
        float p = arrays->param[i];
        if (p > plan.l1_threshold)
            arrays->param[i] = p - plan.l1_threshold;
        else if (p < -plan.l1_threshold)
            arrays->param[i] = p + plan.l1_threshold;
        else
            arrays->param[i] = 0.0f;
    }
}
