/* initializer.c - see initializer.h. */
#include "initializer.h"

#include "parallel.h"

#include <lapacke.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
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

static double standard_normal_at(uint64_t seed, uint64_t i);

static void fill_normal(const paramd__initializer *initializer, float *out, uint64_t first,
                        size_t count)
{
    double mean = initializer->parameters[0], std = initializer->parameters[1];
    for (size_t k = 0; k < count; k++)
        out[k] = (float)(mean + std * standard_normal_at(initializer->seed, first + k));
}

/* ---------------------------------------------------------------------------
 * Scaled by the tensor's fans: xavier_*, kaiming_* (torch.nn.init)
 * ------------------------------------------------------------------------- */

void paramd__initializer_fans(const paramd__initializer *initializer, double *fan_in,
                              double *fan_out)
{
    double receptive_field = 1;
    for (int d = 2; d < initializer->dimension_count; d++)
        receptive_field *= (double)initializer->shape[d];
    *fan_in = (initializer->dimension_count > 1 ? (double)initializer->shape[1] : 1) *
              receptive_field;
    *fan_out = (initializer->dimension_count > 0 ? (double)initializer->shape[0] : 1) *
               receptive_field;
}

/* torch.nn.init.calculate_gain's names; leaky_relu first, kaiming's default
 * (so JSON null, the first choice, means it too). */
const char *const paramd__nonlinearities[] = {
    "leaky_relu", "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "selu", NULL};
enum { NONLINEARITY_LEAKY_RELU = 0, NONLINEARITY_SIGMOID = 8, NONLINEARITY_TANH, NONLINEARITY_RELU,
       NONLINEARITY_SELU };

double paramd__initializer_gain(int nonlinearity, double negative_slope)
{
    switch (nonlinearity) {
    case NONLINEARITY_LEAKY_RELU:
        return sqrt(2.0 / (1 + negative_slope * negative_slope));
    case NONLINEARITY_TANH:
        return 5.0 / 3;
    case NONLINEARITY_RELU:
        return sqrt(2.0);
    case NONLINEARITY_SELU:
        return 3.0 / 4;
    default: /* the linear functions and sigmoid */
        return 1;
    }
}

/* Fans need a matrix at least: torch raises for fewer than 2 dimensions. */
static int validate_fans(const paramd__initializer *initializer, const char *field,
                         paramd__error *error)
{
    if (initializer->dimension_count < 2)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: %s needs a tensor of at least 2 dimensions (its fan in "
                                 "and fan out), got %d",
                                 field, initializer->type->name, initializer->dimension_count);
    return PARAMD_OK;
}

/* Uniform in [-bound, bound), as fill_uniform. */
static void fill_symmetric_uniform(double bound, uint64_t seed, float *out, uint64_t first,
                                   size_t count)
{
    float high = (float)bound, below_high = nextafterf(high, -INFINITY);
    for (size_t k = 0; k < count; k++) {
        float value = (float)(-bound + 2 * bound * uniform_at(seed, first + k));
        out[k] = value >= high && bound > 0 ? below_high : value;
    }
}

/* A standard normal: Box-Muller on two uniforms drawn at indices 2i and
 * 2i + 1 (the `normal` initializer's draws too). */
static double standard_normal_at(uint64_t seed, uint64_t i)
{
    double u1 = 1.0 - uniform_at(seed, 2 * i); /* (0, 1] */
    double u2 = uniform_at(seed, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_centred_normal(double std, uint64_t seed, float *out, uint64_t first,
                                size_t count)
{
    for (size_t k = 0; k < count; k++)
        out[k] = (float)(std * standard_normal_at(seed, first + k));
}

static const paramd__hyperparameter_spec gain_parameters[] = {
    {"gain", PARAMD__HYPERPARAMETER_REAL, 0, {1}, 0, INFINITY, 0, "scaling factor"},
};

/* xavier: std = gain sqrt(2 / (fan_in + fan_out)); uniform bound sqrt(3) std. */
static double xavier_std(const paramd__initializer *initializer)
{
    double fan_in, fan_out;
    paramd__initializer_fans(initializer, &fan_in, &fan_out);
    return initializer->parameters[0] * sqrt(2.0 / (fan_in + fan_out));
}

static void fill_xavier_uniform(const paramd__initializer *initializer, float *out,
                                uint64_t first, size_t count)
{
    fill_symmetric_uniform(sqrt(3.0) * xavier_std(initializer), initializer->seed, out, first,
                           count);
}

static void fill_xavier_normal(const paramd__initializer *initializer, float *out, uint64_t first,
                               size_t count)
{
    fill_centred_normal(xavier_std(initializer), initializer->seed, out, first, count);
}

static const char *const fan_modes[] = {"fan_in", "fan_out", NULL};
static const paramd__hyperparameter_spec kaiming_parameters[] = {
    {"a", PARAMD__HYPERPARAMETER_REAL, 0, {0}, -INFINITY, INFINITY, 0,
     "negative slope of the rectifier after this layer (leaky_relu)"},
    {"mode", PARAMD__HYPERPARAMETER_CHOICE, 1, {0}, 0, 0, 0,
     "fan_in keeps the forward pass's variance, fan_out the backward pass's", fan_modes},
    {"nonlinearity", PARAMD__HYPERPARAMETER_CHOICE, 2, {NONLINEARITY_LEAKY_RELU}, 0, 0, 0,
     "the nonlinearity after this layer (torch.nn.init.calculate_gain's names)",
     paramd__nonlinearities},
};

/* kaiming: std = gain(nonlinearity, a) / sqrt(fan of mode). */
static double kaiming_std(const paramd__initializer *initializer)
{
    double fan_in, fan_out;
    paramd__initializer_fans(initializer, &fan_in, &fan_out);
    double fan = initializer->parameters[1] == 0 ? fan_in : fan_out;
    double gain = paramd__initializer_gain((int)initializer->parameters[2],
                                           initializer->parameters[0]);
    return gain / sqrt(fan);
}

static void fill_kaiming_uniform(const paramd__initializer *initializer, float *out,
                                 uint64_t first, size_t count)
{
    fill_symmetric_uniform(sqrt(3.0) * kaiming_std(initializer), initializer->seed, out, first,
                           count);
}

static void fill_kaiming_normal(const paramd__initializer *initializer, float *out,
                                uint64_t first, size_t count)
{
    fill_centred_normal(kaiming_std(initializer), initializer->seed, out, first, count);
}

double paramd__initializer_scale(const paramd__initializer *initializer)
{
    void (*fill)(const paramd__initializer *, float *, uint64_t, size_t) = initializer->type->fill;
    if (fill == fill_xavier_uniform)
        return sqrt(3.0) * xavier_std(initializer);
    if (fill == fill_xavier_normal)
        return xavier_std(initializer);
    if (fill == fill_kaiming_uniform)
        return sqrt(3.0) * kaiming_std(initializer);
    if (fill == fill_kaiming_normal)
        return kaiming_std(initializer);
    return NAN;
}

/* ---------------------------------------------------------------------------
 * trunc_normal: torch's inverse-CDF method
 * ------------------------------------------------------------------------- */

static const paramd__hyperparameter_spec trunc_normal_parameters[] = {
    {"mean", PARAMD__HYPERPARAMETER_REAL, 0, {0}, -INFINITY, INFINITY, 0, "mean"},
    {"std", PARAMD__HYPERPARAMETER_REAL, 1, {1}, 0, INFINITY, PARAMD__HYPERPARAMETER_MINIMUM_OPEN,
     "standard deviation"},
    {"a", PARAMD__HYPERPARAMETER_REAL, 2, {-2}, -INFINITY, INFINITY, 0, "lowest value"},
    {"b", PARAMD__HYPERPARAMETER_REAL, 3, {2}, -INFINITY, INFINITY, 0, "highest value"},
};

static int validate_trunc_normal(const paramd__initializer *initializer, const char *field,
                                 paramd__error *error)
{
    if (!(initializer->parameters[2] < initializer->parameters[3]))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: trunc_normal needs a < b, got a = %.17g, b = %.17g", field,
                                 initializer->parameters[2], initializer->parameters[3]);
    return PARAMD_OK;
}

/* erf's inverse on (-1, 1): Giles' approximation (2010), then two Newton
 * steps on erf, which leave it accurate to a few ulps of a double. */
static double inverse_erf(double y)
{
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 5.0) {
        w -= 2.5;
        x = 2.81022636e-08;
        x = 3.43273939e-07 + x * w;
        x = -3.5233877e-06 + x * w;
        x = -4.39150654e-06 + x * w;
        x = 0.00021858087 + x * w;
        x = -0.00125372503 + x * w;
        x = -0.00417768164 + x * w;
        x = 0.246640727 + x * w;
        x = 1.50140941 + x * w;
    } else {
        w = sqrt(w) - 3.0;
        x = -0.000200214257;
        x = 0.000100950558 + x * w;
        x = 0.00134934322 + x * w;
        x = -0.00367342844 + x * w;
        x = 0.00573950773 + x * w;
        x = -0.0076224613 + x * w;
        x = 0.00943887047 + x * w;
        x = 1.00167406 + x * w;
        x = 2.83297682 + x * w;
    }
    x *= y;
    for (int step = 0; step < 2; step++)
        x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
    return x;
}

static double normal_cdf(double x)
{
    return (1.0 + erf(x / sqrt(2.0))) / 2.0;
}

/* torch: uniform in [2 cdf(a') - 1, 2 cdf(b') - 1), erfinv, times std
 * sqrt(2), plus mean, clamped to [a, b] (a', b' standardised). */
static void fill_trunc_normal(const paramd__initializer *initializer, float *out, uint64_t first,
                              size_t count)
{
    double mean = initializer->parameters[0], std = initializer->parameters[1];
    double a = initializer->parameters[2], b = initializer->parameters[3];
    double low = 2 * normal_cdf((a - mean) / std) - 1, high = 2 * normal_cdf((b - mean) / std) - 1;
    for (size_t k = 0; k < count; k++) {
        double v = low + (high - low) * uniform_at(initializer->seed, first + k);
        double x = v <= -1 ? a : v >= 1 ? b : mean + std * sqrt(2.0) * inverse_erf(v);
        out[k] = (float)(x < a ? a : x > b ? b : x);
    }
}

/* ---------------------------------------------------------------------------
 * orthogonal: QR of a seeded Gaussian matrix (LAPACK)
 * ------------------------------------------------------------------------- */

int paramd__orthogonalize(const double *gaussian, size_t rows, size_t cols, double gain,
                          float *out)
{
    /* A is m x n with m >= n: the matrix, or its transpose when it is wide. */
    bool wide = rows < cols;
    size_t m = wide ? cols : rows, n = wide ? rows : cols;
    double *a = malloc(m * n * sizeof *a), *tau = malloc(n * sizeof *tau),
           *signs = malloc(n * sizeof *signs);
    int result = PARAMD_E_NO_MEMORY;
    if (a == NULL || tau == NULL || signs == NULL)
        goto done;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            a[wide ? j * n + i : i * n + j] = gaussian[i * cols + j];
    if (LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n, a, (lapack_int)n, tau) != 0)
        goto done;
    /* torch multiplies Q's columns by sign(diag(R)), sign(0) being 0. */
    for (size_t k = 0; k < n; k++)
        signs[k] = a[k * n + k] > 0 ? 1.0 : a[k * n + k] < 0 ? -1.0 : 0.0;
    if (LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n, (lapack_int)n, a,
                       (lapack_int)n, tau) != 0)
        goto done;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            size_t row = wide ? j : i, column = wide ? i : j;
            out[i * cols + j] = (float)(gain * signs[column] * a[row * n + column]);
        }
    result = PARAMD_OK;
done:
    free(a);
    free(tau);
    free(signs);
    return result;
}

/* The Gaussian matrix is float32 normals (as torch's is a float tensor),
 * drawn like the `normal` initializer's. */
static int fill_orthogonal(const paramd__initializer *initializer, float *out)
{
    size_t rows = (size_t)initializer->shape[0], count = 1;
    for (int d = 0; d < initializer->dimension_count; d++)
        count *= (size_t)initializer->shape[d];
    if (count == 0)
        return PARAMD_OK;
    size_t cols = count / rows;
    double *gaussian = malloc(count * sizeof *gaussian);
    if (gaussian == NULL)
        return PARAMD_E_NO_MEMORY;
    for (size_t i = 0; i < count; i++)
        gaussian[i] = (double)(float)standard_normal_at(initializer->seed, i);
    int result = paramd__orthogonalize(gaussian, rows, cols, initializer->parameters[0], out);
    free(gaussian);
    return result;
}

static int validate_orthogonal(const paramd__initializer *initializer, const char *field,
                               paramd__error *error)
{
    if (initializer->dimension_count < 2)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: orthogonal needs a tensor of at least 2 dimensions, got %d",
                                 field, initializer->dimension_count);
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------- */

static void fill_ones(const paramd__initializer *initializer, float *out, uint64_t first,
                      size_t count)
{
    (void)initializer, (void)first;
    for (size_t k = 0; k < count; k++)
        out[k] = 1.0f;
}

#define ELEMENTWISE(name, parameters, count, validate, fill) \
    {name, parameters, count, validate, fill, NULL}
static const paramd__initializer_type zeros_type = ELEMENTWISE("zeros", NULL, 0, NULL, fill_zeros);
static const paramd__initializer_type ones_type = ELEMENTWISE("ones", NULL, 0, NULL, fill_ones);
static const paramd__initializer_type constant_type =
    ELEMENTWISE("constant", constant_parameters, 1, NULL, fill_constant);
static const paramd__initializer_type uniform_type =
    ELEMENTWISE("uniform", uniform_parameters, 2, validate_uniform, fill_uniform);
static const paramd__initializer_type normal_type =
    ELEMENTWISE("normal", normal_parameters, 2, NULL, fill_normal);
static const paramd__initializer_type xavier_uniform_type =
    ELEMENTWISE("xavier_uniform", gain_parameters, 1, validate_fans, fill_xavier_uniform);
static const paramd__initializer_type xavier_normal_type =
    ELEMENTWISE("xavier_normal", gain_parameters, 1, validate_fans, fill_xavier_normal);
static const paramd__initializer_type kaiming_uniform_type =
    ELEMENTWISE("kaiming_uniform", kaiming_parameters, 3, validate_fans, fill_kaiming_uniform);
static const paramd__initializer_type kaiming_normal_type =
    ELEMENTWISE("kaiming_normal", kaiming_parameters, 3, validate_fans, fill_kaiming_normal);
static const paramd__initializer_type trunc_normal_type =
    ELEMENTWISE("trunc_normal", trunc_normal_parameters, 4, validate_trunc_normal,
                fill_trunc_normal);
static const paramd__initializer_type orthogonal_type = {
    "orthogonal", gain_parameters, 1, validate_orthogonal, NULL, fill_orthogonal};

#define PARAMD__INITIALIZER_COUNT 11
const paramd__initializer_type *const paramd__initializer_types[] = {
    &zeros_type,           &constant_type,        &uniform_type,       &normal_type,
    &ones_type,            &xavier_uniform_type,  &xavier_normal_type, &kaiming_uniform_type,
    &kaiming_normal_type,  &trunc_normal_type,    &orthogonal_type,
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

void paramd__initializer_set_shape(paramd__initializer *initializer, int dimension_count,
                                   const int64_t *shape)
{
    initializer->dimension_count = dimension_count;
    for (int d = 0; d < dimension_count && d < PARAMD__MAX_DIMENSIONS; d++)
        initializer->shape[d] = shape[d];
}

int paramd__initializer_validate(const paramd__initializer *initializer, const char *field,
                                 paramd__error *error)
{
    return initializer->type->validate ? initializer->type->validate(initializer, field, error)
                                       : PARAMD_OK;
}

int paramd__initializer_fill(const paramd__initializer *initializer, float *values,
                             size_t count)
{
    return paramd__initializer_fill_range(initializer, values, 0, count);
}

int paramd__initializer_fill_range(const paramd__initializer *initializer, float *values,
                                   uint64_t offset, size_t count)
{
    if (initializer->type->fill_whole) {
        /* A shard's range of such a tensor: the whole, then the range. */
        size_t total = 1;
        for (int d = 0; d < initializer->dimension_count; d++)
            total *= (size_t)initializer->shape[d];
        if (offset == 0 && count == total)
            return initializer->type->fill_whole(initializer, values);
        float *whole = malloc((total ? total : 1) * sizeof *whole);
        if (whole == NULL)
            return PARAMD_E_NO_MEMORY;
        int result = initializer->type->fill_whole(initializer, whole);
        if (result == PARAMD_OK)
            memcpy(values, whole + offset, count * sizeof *values);
        free(whole);
        return result;
    }
    fill_job job = {initializer, values, offset};
    paramd__parallel_for(count, 16, 1u << 16, fill_range, &job);
    return PARAMD_OK;
}
