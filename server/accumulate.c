/* accumulate.c - see accumulate.h. */
#include "accumulate.h"

#include "optimizer.h"
#include "parallel.h"

#include <string.h>

static const char *const mode_names[] = {"mean", "sum"};

bool paramd__accumulate_enabled(const paramd__accumulate_config *config)
{
    return config->steps > 1;
}

const char *paramd__accumulate_mode_name(paramd__accumulate_mode mode)
{
    return mode == PARAMD__ACCUMULATE_SUM ? "sum" : "mean";
}

int paramd__accumulate_mode_find(const char *name)
{
    for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
        if (strcmp(mode_names[i], name) == 0)
            return (int)i;
    return -1;
}

int paramd__accumulate_config_validate(const paramd__accumulate_config *config,
                                       paramd__error *error)
{
    if (config->steps < 1)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "accumulate.steps: must be an integer >= 1, got %lld",
                                 (long long)config->steps);
    if (config->steps > PARAMD__ACCUMULATE_MAX_STEPS)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "accumulate.steps: must be at most %d, got %lld",
                                 PARAMD__ACCUMULATE_MAX_STEPS, (long long)config->steps);
    if (config->mode != PARAMD__ACCUMULATE_MEAN && config->mode != PARAMD__ACCUMULATE_SUM)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "accumulate.mode: must be \"mean\" or \"sum\"");
    return PARAMD_OK;
}

typedef struct add_job {
    float *sum;
    const float *grad;
    float divisor; /* finish: the window length */
} add_job;

static void add_range(void *context, size_t begin, size_t end)
{
    const add_job *job = context;
    float *restrict sum = job->sum;
    const float *restrict grad = job->grad;
    for (size_t i = begin; i < end; i++)
        sum[i] += grad[i];
}

static void copy_range(void *context, size_t begin, size_t end)
{
    const add_job *job = context;
    memcpy(job->sum + begin, job->grad + begin, (end - begin) * sizeof(float));
}

static void divide_range(void *context, size_t begin, size_t end)
{
    const add_job *job = context;
    float *restrict sum = job->sum;
    const float divisor = job->divisor;
    for (size_t i = begin; i < end; i++)
        sum[i] = sum[i] / divisor;
}

void paramd__accumulate_add(float *sum, const float *grad, size_t count, bool first)
{
    add_job job = {sum, grad, 1.0f};
    paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, first ? copy_range : add_range,
                         &job);
}

void paramd__accumulate_finish(float *sum, size_t count, const paramd__accumulate_config *config)
{
    if (config->mode != PARAMD__ACCUMULATE_MEAN)
        return;
    add_job job = {sum, NULL, (float)config->steps};
    paramd__parallel_for(count, 16, PARAMD__PARALLEL_STEP_MINIMUM, divide_range, &job);
}
