/* half.c - see half.h.  Bytes are assembled explicitly, so the wire order
 * is little-endian on any host. */
#include "half.h"

void paramd_float16_decode(const unsigned char *restrict bytes, float *restrict values,
                           size_t count)
{
    for (size_t i = 0; i < count; i++)
        values[i] = paramd_float16_to_float32(
            (uint16_t)(bytes[2 * i] | (unsigned)bytes[2 * i + 1] << 8));
}

void paramd_float16_encode(const float *restrict values, unsigned char *restrict bytes,
                           size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint16_t half = paramd_float32_to_float16(values[i]);
        bytes[2 * i] = (unsigned char)(half & 0xffu);
        bytes[2 * i + 1] = (unsigned char)(half >> 8);
    }
}

void paramd_bfloat16_decode(const unsigned char *restrict bytes, float *restrict values,
                            size_t count)
{
    for (size_t i = 0; i < count; i++)
        values[i] = paramd_bfloat16_to_float32(
            (uint16_t)(bytes[2 * i] | (unsigned)bytes[2 * i + 1] << 8));
}

void paramd_bfloat16_encode(const float *restrict values, unsigned char *restrict bytes,
                            size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint16_t bfloat = paramd_float32_to_bfloat16(values[i]);
        bytes[2 * i] = (unsigned char)(bfloat & 0xffu);
        bytes[2 * i + 1] = (unsigned char)(bfloat >> 8);
    }
}
