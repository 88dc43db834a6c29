/*
 * nonfinite.h - what a push does with NaN or infinite gradients (issue 4,
 * item 3): one policy per model, applied by paramd__core_push after loss
 * unscaling and before clipping.
 *
 *   error  (the default) the push is refused, naming the tensor and index;
 *          nothing changes
 *   skip   the whole push is skipped: no tensor changes, the model's step and
 *          schedule do not advance; the reply says so
 *   zero   non-finite entries become 0, and the push goes on
 *
 * A model with a loss scale does not use the policy: there a non-finite
 * gradient means the scale overflowed, so the step is skipped and the scale
 * backs off (see loss_scale.h).
 */
#ifndef PARAMD_SERVER_NONFINITE_H
#define PARAMD_SERVER_NONFINITE_H

#include <stddef.h>

typedef enum paramd__nonfinite_policy {
    PARAMD__NONFINITE_ERROR = 0, /* a zeroed configuration refuses */
    PARAMD__NONFINITE_SKIP,
    PARAMD__NONFINITE_ZERO,
} paramd__nonfinite_policy;

/* "error", "skip" or "zero". */
const char *paramd__nonfinite_policy_name(paramd__nonfinite_policy policy);

/* The policy named `name`, or -1. */
int paramd__nonfinite_policy_find(const char *name);

/* out[i] = in[i] where finite, else 0 (in and out may be the same array).
 * Returns the number of entries zeroed. */
size_t paramd__nonfinite_zero(const float *in, float *out, size_t count);

#endif
