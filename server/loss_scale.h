/*
 * loss_scale.h - dynamic loss scaling held by the server (issue 4, item 4),
 * with torch.cuda.amp.GradScaler's semantics.
 *
 * A worker multiplies its loss by the current scale before backward, so its
 * float16 gradients do not underflow, and pushes the scaled gradients.  For
 * each push paramd__core_push
 *   1. unscales: every gradient is multiplied by the float32 inv_scale, as
 *      GradScaler computes it: inv_scale = scale.double().reciprocal().float();
 *   2. looks for inf or NaN in the unscaled gradients: if any, the push is
 *      skipped (no tensor changes, the step and schedule do not advance);
 *   3. updates the scale as torch's _amp_update_scale_ does: after a skipped
 *      push, scale = float(scale * backoff_factor) (in double, then rounded
 *      to float32) and the growth tracker resets to 0; after a good push the
 *      tracker counts up, and when it reaches growth_interval,
 *      scale = float(scale * growth_factor) unless that is infinite, and the
 *      tracker resets.
 * Each push is one GradScaler iteration (one scaler.update()).
 *
 * The configuration is plain data; the state (scale and tracker) belongs to
 * the model and is guarded by its loss_scale_lock.
 */
#ifndef PARAMD_SERVER_LOSS_SCALE_H
#define PARAMD_SERVER_LOSS_SCALE_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* torch.cuda.amp.GradScaler's defaults. */
#define PARAMD__LOSS_SCALE_DEFAULT_INIT_SCALE 65536.0
#define PARAMD__LOSS_SCALE_DEFAULT_GROWTH_FACTOR 2.0
#define PARAMD__LOSS_SCALE_DEFAULT_BACKOFF_FACTOR 0.5
#define PARAMD__LOSS_SCALE_DEFAULT_GROWTH_INTERVAL 2000

typedef struct paramd__loss_scale_config {
    double init_scale;       /* > 0, at most FLT_MAX */
    double growth_factor;    /* > 1, finite */
    double backoff_factor;   /* in (0, 1) */
    int64_t growth_interval; /* 1 to INT32_MAX good pushes between growths */
} paramd__loss_scale_config;

typedef struct paramd__loss_scale {
    float scale;            /* torch's _scale, a float32 */
    int32_t growth_tracker; /* torch's _growth_tracker, an int32 */
} paramd__loss_scale;

/* Fills in GradScaler's defaults. */
void paramd__loss_scale_config_init(paramd__loss_scale_config *config);

/* Range checks; errors name the field ("loss_scale.growth_factor: ..."). */
int paramd__loss_scale_config_validate(const paramd__loss_scale_config *config,
                                       paramd__error *error);

/* Starts at init_scale (rounded to float32) with the tracker at 0. */
void paramd__loss_scale_init(paramd__loss_scale *state, const paramd__loss_scale_config *config);

/* GradScaler's inv_scale: 1 / scale in double, rounded to float32. */
float paramd__loss_scale_inverse(float scale);

/* One GradScaler.update(): found_inf says whether the push was skipped. */
void paramd__loss_scale_update(paramd__loss_scale *state, const paramd__loss_scale_config *config,
                               bool found_inf);

/* out[i] = in[i] * inv_scale in float32 (in and out may be the same array),
 * in one pass.  Returns the index of the first non-finite result, or count
 * if all are finite; after a non-finite result, out is only partly written. */
size_t paramd__loss_scale_unscale(const float *in, float *out, size_t count, float inv_scale);

#endif
