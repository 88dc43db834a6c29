/* tensor.c - see tensor.h. */
#define _DEFAULT_SOURCE
#include "tensor.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PARAMD__MMAP_THRESHOLD_BYTES (1u << 20)

/* Cache colouring of large arrays.  Tensors often have power-of-two sizes,
 * and mappings of such sizes land at addresses that are equal modulo a large
 * power of two, so the streams of one update (weights, gradient, moments)
 * compete for the same cache sets and memory banks: paramd-bench measured a
 * 64M-element AdamW step 3 times slower that way.  Each large array therefore
 * starts at one of 16 different offsets (17 cache lines apart) inside a
 * slightly larger mapping; a header just before the array records the
 * mapping for paramd__float_array_free. */
#define PARAMD__COLOUR_COUNT 16
#define PARAMD__COLOUR_STRIDE (17 * 64)
#define PARAMD__COLOUR_HEADER 64

typedef struct mapping_header {
    void *base;
    size_t length;
} mapping_header;

static atomic_uint next_colour;

float *paramd__float_array_alloc(size_t count)
{
    size_t bytes = count * sizeof(float);
    if (bytes >= PARAMD__MMAP_THRESHOLD_BYTES) {
        size_t offset = PARAMD__COLOUR_HEADER +
                        (atomic_fetch_add(&next_colour, 1) % PARAMD__COLOUR_COUNT) *
                            PARAMD__COLOUR_STRIDE;
        size_t length = offset + bytes;
        void *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(base, length, MADV_HUGEPAGE);
#endif
        unsigned char *array = (unsigned char *)base + offset;
        mapping_header header = {base, length};
        memcpy(array - sizeof header, &header, sizeof header);
        return (float *)(void *)array;
    }
    void *memory = NULL;
    if (posix_memalign(&memory, 64, bytes ? bytes : 64) != 0)
        return NULL;
    memset(memory, 0, bytes);
    return memory;
}

void paramd__float_array_free(float *array, size_t count)
{
    if (array == NULL)
        return;
    size_t bytes = count * sizeof(float);
    if (bytes >= PARAMD__MMAP_THRESHOLD_BYTES) {
        mapping_header header;
        memcpy(&header, (unsigned char *)array - sizeof header, sizeof header);
        munmap(header.base, header.length);
    } else {
        free(array);
    }
}

size_t paramd__find_non_finite(const float *values, size_t count)
{
    /* A branch-free pass that gcc vectorises: a float is non-finite exactly
     * when its exponent bits are all ones. */
    const size_t block = 4096;
    for (size_t begin = 0; begin < count; begin += block) {
        size_t end = begin + block < count ? begin + block : count;
        unsigned bad = 0;
        for (size_t i = begin; i < end; i++) {
            uint32_t bits;
            memcpy(&bits, &values[i], sizeof bits);
            bad |= (bits & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (size_t i = begin; i < end; i++) {
                uint32_t bits;
                memcpy(&bits, &values[i], sizeof bits);
                if ((bits & 0x7f800000u) == 0x7f800000u)
                    return i;
            }
    }
    return count;
}

int paramd__tensor_check_shape(int dimension_count, const int64_t *shape, size_t *count,
                               const char *field, paramd__error *error)
{
    if (dimension_count < 0 || dimension_count > PARAMD__MAX_DIMENSIONS)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: a tensor has at most %d dimensions, got %d", field,
                                 PARAMD__MAX_DIMENSIONS, dimension_count);
    uint64_t product = 1;
    for (int i = 0; i < dimension_count; i++) {
        if (shape[i] < 1)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s[%d]: dimensions must be at least 1, got %lld", field, i,
                                     (long long)shape[i]);
        if ((uint64_t)shape[i] > PARAMD__MAX_TENSOR_ELEMENTS ||
            product * (uint64_t)shape[i] > PARAMD__MAX_TENSOR_ELEMENTS)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s: more than 2^40 elements", field);
        product *= (uint64_t)shape[i];
    }
    *count = (size_t)product;
    return PARAMD_OK;
}

paramd__tensor *paramd__tensor_create(const char *name, int dimension_count,
                                      const int64_t *shape, const paramd__optimizer_config *config,
                                      paramd__error *error)
{
    size_t count;
    if (paramd__tensor_check_shape(dimension_count, shape, &count, "shape", error) != PARAMD_OK)
        return NULL;
    return paramd__tensor_create_range(name, dimension_count, shape, 0, count, config, error);
}

paramd__tensor *paramd__tensor_create_range(const char *name, int dimension_count,
                                            const int64_t *shape, size_t offset, size_t count,
                                            const paramd__optimizer_config *config,
                                            paramd__error *error)
{
    size_t full_count;
    if (paramd__tensor_check_shape(dimension_count, shape, &full_count, "shape", error) !=
        PARAMD_OK)
        return NULL;
    if (offset > full_count || count > full_count - offset || count == 0) {
        paramd__error_set(error, PARAMD_E_BAD_RANGE,
                          "tensor \"%s\": range [%zu, %zu) of %zu elements", name, offset,
                          offset + count, full_count);
        return NULL;
    }
    paramd__tensor *tensor = calloc(1, sizeof *tensor);
    if (tensor == NULL)
        goto out_of_memory;
    tensor->count = count;
    tensor->full_count = full_count;
    tensor->range_offset = offset;
    tensor->dimension_count = dimension_count;
    memcpy(tensor->shape, shape, (size_t)dimension_count * sizeof *shape);
    tensor->name = strdup(name);
    tensor->values = paramd__float_array_alloc(count);
    if (tensor->name == NULL || tensor->values == NULL)
        goto out_of_memory;
    for (int slot = 0; slot < config->type->state_slot_count; slot++) {
        size_t length =
            paramd__optimizer_state_length(config, slot, dimension_count, shape, count);
        if (length == 0)
            continue;
        tensor->state[slot] = paramd__float_array_alloc(length);
        if (tensor->state[slot] == NULL)
            goto out_of_memory;
        tensor->state_length[slot] = length;
    }
    if (config->type->init_state)
        config->type->init_state(config, tensor->state, count);
    pthread_mutex_init(&tensor->lock, NULL);
    return tensor;

out_of_memory:
    if (tensor) {
        free(tensor->name);
        paramd__float_array_free(tensor->values, count);
        for (int slot = 0; slot < PARAMD__MAX_STATE_SLOTS; slot++)
            paramd__float_array_free(tensor->state[slot], tensor->state_length[slot]);
        free(tensor);
    }
    paramd__error_set(error, PARAMD_E_NO_MEMORY,
                      "tensor \"%s\": cannot allocate %zu elements and their optimizer state",
                      name, count);
    return NULL;
}

void paramd__tensor_destroy(paramd__tensor *tensor)
{
    if (tensor == NULL)
        return;
    pthread_mutex_destroy(&tensor->lock);
    paramd__float_array_free(tensor->values, tensor->count);
    for (int slot = 0; slot < PARAMD__MAX_STATE_SLOTS; slot++)
        paramd__float_array_free(tensor->state[slot], tensor->state_length[slot]);
    free(tensor->name);
    free(tensor);
}

paramd__step_arrays paramd__tensor_step_arrays(const paramd__tensor *tensor, const float *grad)
{
    paramd__step_arrays arrays = {.param = tensor->values,
                                  .grad = grad,
                                  .dimension_count = tensor->dimension_count,
                                  .shape = tensor->shape};
    memcpy(arrays.state, tensor->state, sizeof arrays.state);
    return arrays;
}

size_t paramd__tensor_memory_bytes(const paramd__tensor *tensor)
{
    size_t floats = tensor->count;
    for (int slot = 0; slot < PARAMD__MAX_STATE_SLOTS; slot++)
        floats += tensor->state_length[slot];
    return floats * sizeof(float);
}
