/*
 * half.h - IEEE float16 ("half") and bfloat16 to and from float32, pure
 * functions with no I/O and no allocation.
 *
 * Both directions are exact in the IEEE sense:
 *   - float16 and bfloat16 to float32 is exact (every value is representable),
 *     subnormals included;
 *   - float32 to float16 or bfloat16 rounds to nearest, ties to even, with
 *     gradual underflow to subnormals and zero, and overflow to infinity
 *     (a finite float32 beyond the format's largest value, 65504 for
 *     float16, rounds to infinity exactly when IEEE 754 says so);
 *   - infinities keep their sign;
 *   - a NaN stays a NaN with its sign and becomes quiet (the quiet bit set),
 *     keeping as much of its payload as fits, as the x86 F16C and Arm
 *     conversion instructions do.  Payloads are not part of paramd's
 *     contract.
 *
 * The rounding uses integer arithmetic, plus one float32 addition for
 * float16 subnormals, so it relies only on the default rounding mode
 * (round to nearest even), never on the host having half-precision
 * hardware.  The array functions read and write little-endian bytes and are
 * written so that gcc vectorises them.
 */
#ifndef PARAMD_PROTO_HALF_H
#define PARAMD_PROTO_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t paramd__float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static inline float paramd__bits_float(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* The float32 value of a float16 bit pattern. */
static inline float paramd_float16_to_float32(uint16_t half)
{
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t magnitude = half & 0x7fffu;
    /* Normal: rebias the exponent from 15 to 127. */
    uint32_t normal = (magnitude << 13) + ((127u - 15u) << 23);
    /* Infinity or NaN: all exponent bits set; a NaN is quieted. */
    uint32_t special = 0x7f800000u | ((magnitude & 0x3ffu) << 13) |
                       ((magnitude & 0x3ffu) ? 0x00400000u : 0u);
    /* Zero or subnormal: magnitude * 2^-24, exact in float32. */
    uint32_t subnormal = paramd__float_bits((float)magnitude * 0x1p-24f);
    uint32_t bits = magnitude >= 0x7c00u ? special : magnitude >= 0x0400u ? normal : subnormal;
    return paramd__bits_float(sign | bits);
}

/* A float32 rounded to the nearest float16 (ties to even). */
static inline uint16_t paramd_float32_to_float16(float value)
{
    uint32_t bits = paramd__float_bits(value);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t magnitude = bits & 0x7fffffffu;
    uint32_t result;
    if (magnitude > 0x7f800000u) {
        result = 0x7e00u | ((magnitude >> 13) & 0x3ffu); /* quiet NaN */
    } else if (magnitude >= 0x477ff000u) {
        /* 65520 (65504 plus half its spacing) and up, infinity included:
         * the tie at 65520 goes to the even neighbour, infinity. */
        result = 0x7c00u;
    } else if (magnitude < 0x38800000u) {
        /* Below 2^-14, the smallest normal float16: adding 0.5 (whose
         * float32 spacing, 2^-24, is the float16 subnormal spacing) rounds
         * to a multiple of 2^-24, ties to even, in the FPU; the low bits are
         * then the float16 pattern.  2^-14 - tiny rounds up to 0x0400. */
        float shifted = paramd__bits_float(magnitude) + 0.5f;
        result = paramd__float_bits(shifted) - 0x3f000000u;
    } else {
        /* Normal: rebias the exponent and round the 13 dropped bits to
         * nearest even (adding 0xfff, plus 1 when the kept part is odd). */
        uint32_t odd = (magnitude >> 13) & 1u;
        result = (magnitude - ((127u - 15u) << 23) + 0xfffu + odd) >> 13;
    }
    return (uint16_t)(sign | result);
}

/* The float32 value of a bfloat16 bit pattern (its upper 16 bits); a NaN is
 * quieted. */
static inline float paramd_bfloat16_to_float32(uint16_t bfloat)
{
    uint32_t bits = (uint32_t)bfloat << 16;
    uint32_t quiet = (bits & 0x7fffffffu) > 0x7f800000u ? 0x00400000u : 0u;
    return paramd__bits_float(bits | quiet);
}

/* A float32 rounded to the nearest bfloat16 (ties to even). */
static inline uint16_t paramd_float32_to_bfloat16(float value)
{
    uint32_t bits = paramd__float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x0040u); /* quiet NaN */
    /* Round the 16 dropped bits to nearest even; a carry into the exponent
     * is correct, up to infinity. */
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* Arrays.  `bytes` holds count little-endian 16-bit values (2 * count
 * bytes); `values` count floats.  The two never overlap. */
void paramd_float16_decode(const unsigned char *bytes, float *values, size_t count);
void paramd_float16_encode(const float *values, unsigned char *bytes, size_t count);
void paramd_bfloat16_decode(const unsigned char *bytes, float *values, size_t count);
void paramd_bfloat16_encode(const float *values, unsigned char *bytes, size_t count);

#endif
