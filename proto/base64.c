/* base64.c - see base64.h. */
#include "base64.h"

#include <stdint.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0-63 for alphabet characters, 64 for '=', 255 for anything else. */
static const uint8_t decode_table[256] = {
#define X 255
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  64, X,  X,
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
#undef X
};

size_t paramd_base64_encoded_length(size_t length)
{
    return (length + 2) / 3 * 4;
}

size_t paramd_base64_decoded_length_bound(size_t length)
{
    return length / 4 * 3;
}

void paramd_base64_encode(const void *input, size_t length, char *output)
{
    const uint8_t *in = input;
    size_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *output++ = alphabet[v >> 18];
        *output++ = alphabet[(v >> 12) & 63];
        *output++ = alphabet[(v >> 6) & 63];
        *output++ = alphabet[v & 63];
    }
    if (length - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *output++ = alphabet[v >> 18];
        *output++ = alphabet[(v >> 12) & 63];
        *output++ = '=';
        *output++ = '=';
    } else if (length - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *output++ = alphabet[v >> 18];
        *output++ = alphabet[(v >> 12) & 63];
        *output++ = alphabet[(v >> 6) & 63];
        *output++ = '=';
    }
}

long long paramd_base64_decode(const char *input, size_t length, void *output, size_t capacity)
{
    if (length % 4 != 0)
        return -1;
    const uint8_t *in = (const uint8_t *)input;
    uint8_t *out = output;
    size_t written = 0;
    for (size_t i = 0; i < length; i += 4) {
        uint8_t a = decode_table[in[i]], b = decode_table[in[i + 1]];
        uint8_t c = decode_table[in[i + 2]], d = decode_table[in[i + 3]];
        int last = i + 4 == length;
        /* Padding may only end the final quantum: "xx==" or "xxx=". */
        if (a > 63 || b > 63)
            return -1;
        size_t bytes = 3;
        if (d == 64) {
            if (!last)
                return -1;
            if (c == 64) {
                bytes = 1;
                if (b & 15) /* non-canonical: unused bits must be zero */
                    return -1;
            } else if (c > 63) {
                return -1;
            } else {
                bytes = 2;
                if (c & 3)
                    return -1;
            }
        } else if (c > 63 || d > 63) {
            return -1;
        }
        if (capacity - written < bytes)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)(c & 63) << 6 | (d & 63);
        out[written++] = (uint8_t)(v >> 16);
        if (bytes > 1)
            out[written++] = (uint8_t)(v >> 8);
        if (bytes > 2)
            out[written++] = (uint8_t)v;
    }
    return (long long)written;
}
