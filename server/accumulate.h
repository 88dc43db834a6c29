/*
 * accumulate.h - gradient accumulation (issue 4, item 5): k pushes of a
 * tensor are summed, or averaged, before one optimizer step.
 *
 * Accumulation is per tensor: each tensor keeps a buffer of its own and
 * steps when it has received `steps` gradients, whatever the other tensors
 * did.  The first gradient of a window is copied into the buffer, later ones
 * are added in float32 in the order the pushes reach the tensor, and the
 * k-th push divides the sum by k ("mean", a float32 division) or keeps it
 * ("sum") and applies the optimizer step with it.  Buffers are allocated
 * with the model, only when it accumulates, and guarded by the tensor's lock.
 */
#ifndef PARAMD_SERVER_ACCUMULATE_H
#define PARAMD_SERVER_ACCUMULATE_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum paramd__accumulate_mode {
    PARAMD__ACCUMULATE_MEAN = 0,
    PARAMD__ACCUMULATE_SUM,
} paramd__accumulate_mode;

/* The most pushes one window may hold. */
#define PARAMD__ACCUMULATE_MAX_STEPS 1000000

typedef struct paramd__accumulate_config {
    int64_t steps; /* 0: no accumulation; 1 steps on every push, as without */
    paramd__accumulate_mode mode;
} paramd__accumulate_config;

/* Whether a configuration keeps buffers (steps > 1). */
bool paramd__accumulate_enabled(const paramd__accumulate_config *config);

/* "mean" or "sum"; paramd__accumulate_mode_find returns -1 for others. */
const char *paramd__accumulate_mode_name(paramd__accumulate_mode mode);
int paramd__accumulate_mode_find(const char *name);

/* Range checks; errors name the field ("accumulate.steps: ..."). */
int paramd__accumulate_config_validate(const paramd__accumulate_config *config,
                                       paramd__error *error);

/* sum = grad (first gradient of a window) or sum += grad, in float32; large
 * tensors are split across the thread pool. */
void paramd__accumulate_add(float *sum, const float *grad, size_t count, bool first);

/* Turns a full window's sum into the gradient to step with: divides by
 * steps in "mean" mode, leaves it in "sum" mode. */
void paramd__accumulate_finish(float *sum, size_t count, const paramd__accumulate_config *config);

#endif
