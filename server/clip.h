/*
 * clip.h - gradient clipping (issue 4, item 2), applied by paramd__core_push
 * after validation and before the optimizer.
 *
 * Three modes, as torch and the AGC paper define them:
 *   value    torch.nn.utils.clip_grad_value_: clamp to [-value, value]
 *   max_norm torch 1.13's clip_grad_norm_: total_norm is the norm_type-norm
 *            of the per-tensor norm_type-norms; every gradient is multiplied
 *            by the float32 coefficient min(max_norm / (total_norm + 1e-6), 1)
 *            (per_tensor: each tensor by its own norm instead)
 *   agc      adaptive gradient clipping (Brock et al. 2021), per output unit
 *            (dimension 0; a 0-D or 1-D tensor is one unit)
 * Norms accumulate in double precision.
 */
#ifndef PARAMD_SERVER_CLIP_H
#define PARAMD_SERVER_CLIP_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum paramd__clip_mode {
    PARAMD__CLIP_NONE = 0, /* a zeroed configuration clips nothing */
    PARAMD__CLIP_VALUE,
    PARAMD__CLIP_NORM,
    PARAMD__CLIP_AGC,
} paramd__clip_mode;

typedef struct paramd__clip_config {
    paramd__clip_mode mode;
    double value;     /* PARAMD__CLIP_VALUE */
    double max_norm;  /* PARAMD__CLIP_NORM */
    double norm_type; /* PARAMD__CLIP_NORM: p > 0, or INFINITY for max abs */
    bool per_tensor;  /* PARAMD__CLIP_NORM: each tensor by its own norm */
    double agc;       /* PARAMD__CLIP_AGC: the clipping factor lambda */
    double eps;       /* PARAMD__CLIP_AGC: the floor of the weight norm */
} paramd__clip_config;

/* Defaults the parser fills in for keys not given. */
#define PARAMD__CLIP_DEFAULT_NORM_TYPE 2.0
#define PARAMD__CLIP_DEFAULT_AGC_EPS 1e-3

/* The name of a mode's defining key ("value", "max_norm", "agc"), or NULL. */
const char *paramd__clip_mode_key(paramd__clip_mode mode);

/* Range checks; errors name the field ("clip.max_norm: must be > 0"). */
int paramd__clip_config_validate(const paramd__clip_config *config, paramd__error *error);

/* The norm_type-norm of count values (INFINITY: the largest magnitude),
 * accumulated in double in one pass. */
double paramd__clip_norm(const float *values, size_t count, double norm_type);

/* The norm_type-norm of count per-tensor norms, as torch's
 * torch.norm(torch.stack(norms), norm_type). */
double paramd__clip_total_norm(const double *norms, size_t count, double norm_type);

/* torch 1.13's float32 coefficient: min(max_norm / (total_norm + 1e-6), 1). */
float paramd__clip_coefficient(double max_norm, double total_norm);

/* out[i] = in[i] * coefficient (in and out may be the same array). */
void paramd__clip_scale(const float *in, float *out, size_t count, float coefficient);

/* out[i] = in[i] clamped to [-value, value] (in and out may be the same). */
void paramd__clip_value(const float *in, float *out, size_t count, float value);

/* Adaptive gradient clipping of one tensor of `count` elements and shape
 * (dimension_count, shape) against its weights: for each unit along
 * dimension 0, if ||g|| > agc * max(||w||, eps), g *= agc * max(||w||, eps) / ||g||. */
void paramd__clip_agc(const float *grad, float *out, const float *weights, size_t count,
                      int dimension_count, const int64_t *shape, double agc, double eps);

#endif
