/*
 * grad_norm.c - the global gradient norm of a push, for a model whose
 * tensors are spread over several shards and which clips by total norm:
 * no shard sees every gradient, so the client computes the norm and sends
 * it to every shard (PARAMD_PUSH_HAS_GRAD_NORM).  See sharded.h.
 *
 * The result must be the very double one paramd would compute from the
 * same push (server/clip.c: paramd__clip_norm per tensor, then
 * paramd__clip_total_norm), so that a sharded model clips bit for bit as
 * an unsharded one does: the same sums, in the same order, in double, of
 * the values the server receives (float16 and bfloat16 gradients rounded
 * as the wire rounds them).  The library is compiled with -std=c11, which
 * like the server's build keeps every operation separately rounded.
 */
#include "sharded.h"

#include "half.h"

#include <math.h>

/* The value the server receives for a gradient sent as dtype. */
static inline float on_the_wire(float value, uint8_t dtype)
{
    if (dtype == PARAMD_DTYPE_FLOAT16)
        return paramd_float16_to_float32(paramd_float32_to_float16(value));
    if (dtype == PARAMD_DTYPE_BFLOAT16)
        return paramd_bfloat16_to_float32(paramd_float32_to_bfloat16(value));
    return value;
}

/* paramd__clip_norm of one tensor's wire values, with non-finite values
 * taken as zero (the first one's index in *bad, else count). */
static double tensor_norm(const float *grad, size_t count, uint8_t dtype, double norm_type,
                          size_t *bad)
{
    *bad = count;
    double sum = 0, largest = 0;
    for (size_t i = 0; i < count; i++) {
        double value = (double)on_the_wire(grad[i], dtype);
        if (!isfinite(value)) {
            if (*bad == count)
                *bad = i;
            value = 0;
        }
        if (isinf(norm_type)) {
            double magnitude = fabs(value);
            largest = magnitude > largest ? magnitude : largest;
        } else if (norm_type == 2) {
            sum += value * value;
        } else if (norm_type == 1) {
            sum += fabs(value);
        } else {
            sum += pow(fabs(value), norm_type);
        }
    }
    if (isinf(norm_type))
        return largest;
    if (norm_type == 2)
        return sqrt(sum);
    if (norm_type == 1)
        return sum;
    return pow(sum, 1 / norm_type);
}

/* The common case, float32 and the 2-norm, as one plain loop. */
static double tensor_norm2(const float *grad, size_t count)
{
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += (double)grad[i] * (double)grad[i];
    return sqrt(sum);
}

double paramd__push_grad_norm(const paramd_push_item *items, size_t count, uint8_t dtype,
                              double norm_type, size_t *bad_item, size_t *bad_index)
{
    *bad_item = *bad_index = count;
    double sum = 0, largest = 0;
    for (size_t i = 0; i < count; i++) {
        double norm = NAN;
        if (dtype == PARAMD_DTYPE_FLOAT32 && norm_type == 2)
            norm = tensor_norm2(items[i].grad, items[i].count);
        if (!isfinite(norm)) { /* another case, or a non-finite value to find */
            size_t bad;
            norm = tensor_norm(items[i].grad, items[i].count, dtype, norm_type, &bad);
            if (bad < items[i].count && *bad_item == count) {
                *bad_item = i;
                *bad_index = bad;
            }
        }
        if (isinf(norm_type))
            largest = norm > largest ? norm : largest;
        else
            sum += norm_type == 2 ? norm * norm : pow(norm, norm_type);
    }
    if (isinf(norm_type))
        return largest;
    return norm_type == 2 ? sqrt(sum) : pow(sum, 1 / norm_type);
}
