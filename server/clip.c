/* clip.c - see clip.h. */
#include "clip.h"

#include <math.h>

/* The key that selects each mode, for descriptions and errors. */
static const struct {
    paramd__clip_mode mode;
    const char *key;
} clip_modes[] = {
    {PARAMD__CLIP_VALUE, "value"},
    {PARAMD__CLIP_NORM, "max_norm"},
    {PARAMD__CLIP_AGC, "agc"},
};

const char *paramd__clip_mode_key(paramd__clip_mode mode)
{
    for (size_t i = 0; i < sizeof clip_modes / sizeof clip_modes[0]; i++)
        if (clip_modes[i].mode == mode)
            return clip_modes[i].key;
    return NULL;
}

int paramd__clip_config_validate(const paramd__clip_config *config, paramd__error *error)
{
    switch (config->mode) {
    case PARAMD__CLIP_NONE:
        return PARAMD_OK;
    case PARAMD__CLIP_VALUE:
        if (!(config->value > 0) || !isfinite(config->value))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.value: must be > 0 and finite");
        return PARAMD_OK;
    case PARAMD__CLIP_NORM:
        if (!(config->max_norm > 0) || !isfinite(config->max_norm))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.max_norm: must be > 0 and finite");
        if (!(config->norm_type > 0))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.norm_type: must be > 0 or \"inf\"");
        return PARAMD_OK;
    case PARAMD__CLIP_AGC:
        if (!(config->agc > 0) || !isfinite(config->agc))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.agc: must be > 0 and finite");
        if (!(config->eps > 0) || !isfinite(config->eps))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.eps: must be > 0 and finite");
        return PARAMD_OK;
    }
    return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "clip: unknown clipping mode");
}

double paramd__clip_norm(const float *values, size_t count, double norm_type)
{
    if (isinf(norm_type)) {
        double largest = 0;
        for (size_t i = 0; i < count; i++) {
            double magnitude = fabs((double)values[i]);
            largest = magnitude > largest ? magnitude : largest;
        }
        return largest;
    }
    double sum = 0;
    if (norm_type == 2) {
        for (size_t i = 0; i < count; i++)
            sum += (double)values[i] * (double)values[i];
        return sqrt(sum);
    }
    if (norm_type == 1) {
        for (size_t i = 0; i < count; i++)
            sum += fabs((double)values[i]);
        return sum;
    }
    for (size_t i = 0; i < count; i++)
        sum += pow(fabs((double)values[i]), norm_type);
    return pow(sum, 1 / norm_type);
}

double paramd__clip_total_norm(const double *norms, size_t count, double norm_type)
{
    if (isinf(norm_type)) {
        double largest = 0;
        for (size_t i = 0; i < count; i++)
            largest = norms[i] > largest ? norms[i] : largest;
        return largest;
    }
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += norm_type == 2 ? norms[i] * norms[i] : pow(norms[i], norm_type);
    return norm_type == 2 ? sqrt(sum) : pow(sum, 1 / norm_type);
}

float paramd__clip_coefficient(double max_norm, double total_norm)
{
    double coefficient = max_norm / (total_norm + 1e-6);
    return coefficient < 1 ? (float)coefficient : 1.0f;
}

void paramd__clip_scale(const float *in, float *out, size_t count, float coefficient)
{
    for (size_t i = 0; i < count; i++)
        out[i] = in[i] * coefficient;
}

void paramd__clip_value(const float *in, float *out, size_t count, float value)
{
    for (size_t i = 0; i < count; i++) {
        float g = in[i];
        out[i] = g > value ? value : g < -value ? -value : g;
    }
}

void paramd__clip_agc(const float *grad, float *out, const float *weights, size_t count,
                      int dimension_count, const int64_t *shape, double agc, double eps)
{
    size_t units = dimension_count >= 2 && shape[0] > 0 ? (size_t)shape[0] : 1;
    size_t unit_size = count / units;
    for (size_t u = 0; u < units; u++) {
        const float *g = grad + u * unit_size;
        float *o = out + u * unit_size;
        double grad_norm = paramd__clip_norm(g, unit_size, 2);
        double weight_norm = paramd__clip_norm(weights + u * unit_size, unit_size, 2);
        double max_norm = agc * (weight_norm > eps ? weight_norm : eps);
        if (grad_norm > max_norm)
            paramd__clip_scale(g, o, unit_size, (float)(max_norm / grad_norm));
        else if (o != g)
            for (size_t i = 0; i < unit_size; i++)
                o[i] = g[i];
    }
}
