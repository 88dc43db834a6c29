/*
 * optimizer.c - the optimizer table, configuration checking and the step driver.
 */
#include "optimizer.h"

#include "parallel.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------
 * The table.  One line per optimizer; keep PARAMD__OPTIMIZER_COUNT in step.
 * ------------------------------------------------------------------------- */

#define PARAMD__OPTIMIZER_COUNT 15

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

const paramd__hyperparameter_spec *paramd__optimizer_find_hyperparameter(
    const paramd__optimizer_type *type, const char *name)
{
    for (int i = 0; i < type->hyperparameter_count; i++)
        if (strcmp(type->hyperparameters[i].name, name) == 0)
            return &type->hyperparameters[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Configurations
 * ------------------------------------------------------------------------- */

void paramd__optimizer_config_init(paramd__optimizer_config *config,
                                   const paramd__optimizer_type *type)
{
    memset(config, 0, sizeof *config);
    config->type = type;
    for (int i = 0; i < type->hyperparameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
        bool required = spec->flags & PARAMD__HYPERPARAMETER_REQUIRED;
        config->values[spec->slot] = required ? NAN : spec->default_value[0];
        if (spec->kind == PARAMD__HYPERPARAMETER_PAIR)
            config->values[spec->slot + 1] = required ? NAN : spec->default_value[1];
    }
}

/* Formats the valid range of spec as "[0, 1)" for error messages. */
static void describe_range(const paramd__hyperparameter_spec *spec, char *buffer, size_t size)
{
    if (spec->kind == PARAMD__HYPERPARAMETER_BOOLEAN) {
        snprintf(buffer, size, "true or false");
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
    int count = spec->kind == PARAMD__HYPERPARAMETER_PAIR ? 2 : 1;
    for (int i = 0; i < count; i++) {
        if (!in_range(spec, values[i])) {
            char range[96];
            describe_range(spec, range, sizeof range);
            if (count == 2)
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s[%d]: must be in %s, got %.17g", field, i, range,
                                         values[i]);
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be in %s, got %.17g", field, range, values[i]);
        }
    }
    for (int i = 0; i < count; i++)
        config->values[spec->slot + i] = values[i];
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
} step_job;

static void run_step_range(void *context, size_t begin, size_t end)
{
    const step_job *job = context;
    job->kernel(job->scalars, job->arrays, begin, end);
}

void paramd__optimizer_step(const paramd__optimizer_config *config, uint64_t step,
                            const paramd__step_arrays *arrays, size_t count)
{
    paramd__step_scalars scalars;
    config->type->prepare(config, step, &scalars);
    step_job job = {config->type->kernel, &scalars, arrays};
    /* Chunks start on 64-byte boundaries (16 floats) so each thread's vector
     * loop begins aligned when the arrays are. */
    paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, run_step_range, &job);
}

void paramd__optimizer_step_reference(const paramd__optimizer_config *config, uint64_t step,
                                      const paramd__step_arrays *arrays, size_t count)
{
    paramd__step_scalars scalars;
    config->type->prepare(config, step, &scalars);
    config->type->reference_kernel(&scalars, arrays, 0, count);
}
