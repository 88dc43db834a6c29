/*
 * tensor.h - one named float32 tensor with its optimizer state.
 *
 * A tensor owns its value array and one array per optimizer state slot its
 * configuration uses (64-byte aligned, zeroed at creation): `count` floats
 * each for element-wise optimizers, the lengths the optimizer's
 * state_slot_length gives for tensor-wise ones (Adafactor's row and column
 * factors).  `lock` guards values, state and step: every update and every
 * read of a consistent snapshot holds it, which makes each push atomic per
 * tensor.
 */
#ifndef PARAMD_SERVER_TENSOR_H
#define PARAMD_SERVER_TENSOR_H

#include "optimizer.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMD__MAX_DIMENSIONS 8
#define PARAMD__MAX_NAME_LENGTH 255

/* Largest element count accepted for one tensor (2^40: 4 TiB of float32),
 * far beyond any memory, so that count * sizeof(float) never overflows. */
#define PARAMD__MAX_TENSOR_ELEMENTS (UINT64_C(1) << 40)

typedef struct paramd__tensor {
    char *name;                             /* owned, e.g. "fc1.weight" */
    int dimension_count;                    /* 0 (a scalar) to PARAMD__MAX_DIMENSIONS */
    int64_t shape[PARAMD__MAX_DIMENSIONS];
    size_t count;                           /* elements held here: the product of shape,
                                               or a shard's range of a split tensor */
    size_t full_count;                      /* product of shape (== count unless split) */
    size_t range_offset;                    /* first element held (0 unless split) */
    float *values;                          /* owned, count floats */
    float *state[PARAMD__MAX_STATE_SLOTS];  /* owned; NULL for unused slots */
    size_t state_length[PARAMD__MAX_STATE_SLOTS]; /* floats in each; 0 for unused slots */
    size_t position;                        /* index in its model's tensor list */
    const paramd__optimizer_config *optimizer; /* its parameter group's configuration
                                                  (owned by the model) */
    int param_group;                        /* index into the model's groups, -1 for none */
    uint64_t step;                          /* optimizer steps applied, as torch's state["step"] */
    pthread_mutex_t lock;
} paramd__tensor;

/* Checks a shape and computes its element count.  `field` prefixes errors. */
int paramd__tensor_check_shape(int dimension_count, const int64_t *shape, size_t *count,
                               const char *field, paramd__error *error);

/* Allocates a tensor with zeroed values and the state slots `config` uses.
 * Returns NULL and sets *error (PARAMD_E_NO_MEMORY) on failure. */
paramd__tensor *paramd__tensor_create(const char *name, int dimension_count,
                                      const int64_t *shape, const paramd__optimizer_config *config,
                                      paramd__error *error);

/* The same for the part [offset, offset + count) of a tensor of this shape
 * split across shards (element-wise optimizers only). */
paramd__tensor *paramd__tensor_create_range(const char *name, int dimension_count,
                                            const int64_t *shape, size_t offset, size_t count,
                                            const paramd__optimizer_config *config,
                                            paramd__error *error);

void paramd__tensor_destroy(paramd__tensor *tensor);

/* The arrays for one optimizer step of this tensor with gradient `grad`:
 * its values, state and shape. */
paramd__step_arrays paramd__tensor_step_arrays(const paramd__tensor *tensor, const float *grad);

/* The element count of the tensor's longest array: its weights, or a state
 * array (LBFGS keeps history_size + 1 vectors in one slot): what a buffer
 * for any of them needs. */
static inline size_t paramd__tensor_largest_array(const paramd__tensor *tensor)
{
    size_t largest = tensor->count;
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        largest = tensor->state_length[s] > largest ? tensor->state_length[s] : largest;
    return largest;
}

/* Bytes of memory the tensor holds (values and state). */
size_t paramd__tensor_memory_bytes(const paramd__tensor *tensor);

/* 64-byte aligned, zeroed float arrays.  Large arrays (1 MiB and up) come
 * from mmap, so the kernel supplies zero pages lazily and may back them with
 * huge pages, and each starts at a different cache colour (see tensor.c).
 * Free with the same count. */
float *paramd__float_array_alloc(size_t count);
void paramd__float_array_free(float *array, size_t count);

/* Index of the first non-finite value in values[0, count), or count if all
 * are finite. */
size_t paramd__find_non_finite(const float *values, size_t count);

#endif
