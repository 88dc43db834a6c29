/* initializer.c - see initializer.h. */
#include "initializer.h"

#include "parallel.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------
 * Counter-based random numbers
 * ------------------------------------------------------------------------- */

/* SplitMix64's output function applied to a counter: a high-quality 64-bit
 * hash, so element i's randomness is independent of every other element. */
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Uniform double in [0, 1) with 53 random bits, from stream `seed` at `index`. */
static double uniform_at(uint64_t seed, uint64_t index)
{
    uint64_t bits = splitmix64(splitmix64(seed) ^ index);
    return (double)(bits >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------------------
 * The initializers
 * ------------------------------------------------------------------------- */

static void fill_zeros(const paramd__initializer *initializer, float *out, uint64_t first,
                       size_t count)
{
    (void)initializer, (void)first;
    memset(out, 0, count * sizeof(float));
}

static const paramd__hyperparameter_spec constant_parameters[] = {
    {"val", PARAMD__HYPERPARAMETER_REAL, 0, {0}, -INFINITY, INFINITY,
     PARAMD__HYPERPARAMETER_REQUIRED, "the value of every element"},
};

static void fill_constant(const paramd__initializer *initializer, float *out, uint64_t first,
                          size_t count)
{
    (void)first;
    float value = (float)initializer->parameters[0];
    for (size_t k = 0; k < count; k++)
        out[k] = value;
}

static const paramd__hyperparameter_spec uniform_parameters[] = {
    {"a", PARAMD__HYPERPARAMETER_REAL, 0, {0}, -INFINITY, INFINITY, 0, "lower bound"},
    {"b", PARAMD__HYPERPARAMETER_REAL, 1, {1}, -INFINITY, INFINITY, 0, "upper bound"},
};

static int validate_uniform(const paramd__initializer *initializer, const char *field,
                            paramd__error *error)
{
    if (!(initializer->parameters[0] <= initializer->parameters[1]))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: uniform needs a <= b, got a = %.17g, b = %.17g", field,
                                 initializer->parameters[0], initializer->parameters[1]);
    return PARAMD_OK;
}

/* Values in [a, b): rounding a + (b - a) u to float32 can reach b itself, so
 * such values step down to the largest float below b. */
static void fill_uniform(const paramd__initializer *initializer, float *out, uint64_t first,
                         size_t count)
{
    double low = initializer->parameters[0], width = initializer->parameters[1] - low;
    float high = (float)initializer->parameters[1], below_high = nextafterf(high, -INFINITY);
    for (size_t k = 0; k < count; k++) {
        float value = (float)(low + width * uniform_at(initializer->seed, first + k));
        out[k] = value >= high && width > 0 ? below_high : value;
    }
}

static const paramd__hyperparameter_spec normal_parameters[] = {
    {"mean", PARAMD__HYPERPARAMETER_REAL, 0, {0}, -INFINITY, INFINITY, 0, "mean"},
    {"std", PARAMD__HYPERPARAMETER_REAL, 1, {1}, 0, INFINITY, 0, "standard deviation"},
};

/* Box-Muller on two uniforms drawn at indices 2i and 2i + 1. */
static void fill_normal(const paramd__initializer *initializer, float *out, uint64_t first,
                        size_t count)
{
    double mean = initializer->parameters[0], std = initializer->parameters[1];
    for (size_t k = 0; k < count; k++) {
        uint64_t i = first + k;
        double u1 = 1.0 - uniform_at(initializer->seed, 2 * i); /* (0, 1] */
        double u2 = uniform_at(initializer->seed, 2 * i + 1);
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        out[k] = (float)(mean + std * z);
    }
}

static const paramd__initializer_type zeros_type = {"zeros", NULL, 0, NULL, fill_zeros};
static const paramd__initializer_type constant_type = {"constant", constant_parameters, 1, NULL,
                                                       fill_constant};
static const paramd__initializer_type uniform_type = {"uniform", uniform_parameters, 2,
                                                      validate_uniform, fill_uniform};
static const paramd__initializer_type normal_type = {"normal", normal_parameters, 2, NULL,
                                                     fill_normal};

#define PARAMD__INITIALIZER_COUNT 4
const paramd__initializer_type *const paramd__initializer_types[] = {
    &zeros_type, &constant_type, &uniform_type, &normal_type,
};
_Static_assert(sizeof paramd__initializer_types / sizeof paramd__initializer_types[0] ==
                   PARAMD__INITIALIZER_COUNT,
               "paramd__initializer_types and PARAMD__INITIALIZER_COUNT disagree");
const int paramd__initializer_type_count = PARAMD__INITIALIZER_COUNT;

const paramd__initializer_type *paramd__initializer_find(const char *name)
{
    for (int i = 0; i < PARAMD__INITIALIZER_COUNT; i++)
        if (strcasecmp(paramd__initializer_types[i]->name, name) == 0)
            return paramd__initializer_types[i];
    return NULL;
}

void paramd__initializer_init(paramd__initializer *initializer,
                              const paramd__initializer_type *type)
{
    memset(initializer, 0, sizeof *initializer);
    initializer->type = type;
    for (int i = 0; i < type->parameter_count; i++)
        initializer->parameters[type->parameters[i].slot] =
            type->parameters[i].flags & PARAMD__HYPERPARAMETER_REQUIRED
                ? NAN
                : type->parameters[i].default_value[0];
}

typedef struct fill_job {
    const paramd__initializer *initializer;
    float *values;
    uint64_t offset;
} fill_job;

static void fill_range(void *context, size_t begin, size_t end)
{
    const fill_job *job = context;
    job->initializer->type->fill(job->initializer, job->values + begin, job->offset + begin,
                                 end - begin);
}

void paramd__initializer_fill(const paramd__initializer *initializer, float *values,
                              size_t count)
{
    paramd__initializer_fill_range(initializer, values, 0, count);
}

void paramd__initializer_fill_range(const paramd__initializer *initializer, float *values,
                                    uint64_t offset, size_t count)
{
    fill_job job = {initializer, values, offset};
    paramd__parallel_for(count, 16, 1u << 16, fill_range, &job);
}
