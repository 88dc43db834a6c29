/*
 * test_half.c - float16 and bfloat16 conversions (proto/half.h).
 *
 * Three independent checks:
 *   1. Golden files from numpy (float16) and torch (bfloat16), written by
 *      tests/conformance/generate_half_goldens.py: a digest over all 65536
 *      patterns to float32, a digest over ~1.4 million float32 inputs (every
 *      value and midpoint of the format, one float32 ulp either side, both
 *      signs, and 2^20 patterns spread over all of float32), and explicit
 *      cases that name the interesting values.
 *   2. Exhaustive properties over all 65536 patterns: decoding equals an
 *      arithmetic reference (ldexp), encoding the result gives the pattern
 *      back, and between every two neighbours the midpoint goes to the even
 *      one while one float32 ulp either side goes to the nearer one.
 *   3. An arithmetic reference for rounding (frexp and nearbyint in double)
 *      over the same inputs as the digest.
 * The golden files compare NaNs only as NaNs; the properties check paramd's
 * own rule (sign kept, quiet, payload kept where it fits).
 */
#include "test_util.h"

#include "half.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HALF_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/half"
#define WEYL_COUNT (1u << 20)

typedef enum format { FLOAT16, BFLOAT16 } format;

/* Check's assertions record a checkpoint with a system call each, too slow
 * for millions of checks: loops count failures with EXPECT (printing the
 * first few) and assert once at the end. */
static size_t failures;

#define EXPECT(condition, ...)                                                             \
    do {                                                                                   \
        if (!(condition) && failures++ < 10) {                                             \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #condition);               \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

static float decode16(format f, uint16_t bits)
{
    return f == FLOAT16 ? paramd_float16_to_float32(bits) : paramd_bfloat16_to_float32(bits);
}

static uint16_t encode16(format f, float value)
{
    return f == FLOAT16 ? paramd_float32_to_float16(value) : paramd_float32_to_bfloat16(value);
}

static bool is_nan16(format f, uint16_t bits)
{
    return f == FLOAT16 ? (bits & 0x7c00u) == 0x7c00u && (bits & 0x03ffu)
                        : (bits & 0x7f80u) == 0x7f80u && (bits & 0x007fu);
}

/* The generator's canonical NaN: no sign, no payload (torch writes every
 * bfloat16 NaN as 0xffff, numpy keeps payloads). */
static uint16_t canonical16(format f, uint16_t bits)
{
    return is_nan16(f, bits) ? (f == FLOAT16 ? 0x7e00u : 0x7fc0u) : bits;
}

static uint32_t canonical32(uint32_t bits)
{
    return (bits & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : bits;
}

typedef struct fnv {
    uint64_t hash;
} fnv;

static void fnv_bytes(fnv *digest, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        digest->hash ^= bytes[i];
        digest->hash *= 0x100000001B3ULL;
    }
}

static void fnv_u16(fnv *digest, uint16_t value)
{
    unsigned char bytes[2] = {(unsigned char)(value & 0xff), (unsigned char)(value >> 8)};
    fnv_bytes(digest, bytes, 2);
}

static void fnv_u32(fnv *digest, uint32_t value)
{
    unsigned char bytes[4] = {(unsigned char)value, (unsigned char)(value >> 8),
                              (unsigned char)(value >> 16), (unsigned char)(value >> 24)};
    fnv_bytes(digest, bytes, 4);
}

/* The float32 inputs of the from_float32 digest, in the generator's order:
 * for each sign, for centres then midpoints, for delta -1, 0, 1, every
 * finite non-negative pattern; then the Weyl sequence.  Returns the count;
 * *inputs is malloc'ed. */
static size_t build_inputs(format f, uint32_t **inputs)
{
    uint32_t limit = f == FLOAT16 ? 0x7c00u : 0x7f80u;
    size_t count = 2 * 2 * 3 * (size_t)limit + WEYL_COUNT;
    uint32_t *list = malloc(count * sizeof *list);
    uint32_t *centres = malloc(limit * sizeof *centres);
    uint32_t *middles = malloc(limit * sizeof *middles);
    ck_assert_ptr_nonnull(list);
    ck_assert_ptr_nonnull(centres);
    ck_assert_ptr_nonnull(middles);
    for (uint32_t p = 0; p < limit; p++) {
        if (f == FLOAT16) {
            double value = paramd_float16_to_float32((uint16_t)p);
            double following = paramd_float16_to_float32((uint16_t)(p + 1));
            float middle = p == limit - 1 ? 65520.0f : (float)((value + following) / 2);
            centres[p] = paramd__float_bits((float)value);
            middles[p] = paramd__float_bits(middle);
        } else {
            centres[p] = p << 16;
            middles[p] = (p << 16) + 0x8000u;
        }
    }
    size_t n = 0;
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < 2; b++)
            for (int delta = -1; delta <= 1; delta++)
                for (uint32_t p = 0; p < limit; p++)
                    list[n++] = ((b ? middles : centres)[p] + (uint32_t)delta) |
                                (s ? 0x80000000u : 0u);
    for (uint64_t i = 0; i < WEYL_COUNT; i++)
        list[n++] = (uint32_t)((i * 0x9E3779B1u + 0x7F4A7C15u) & 0xffffffffu);
    ck_assert_uint_eq(n, count);
    free(centres);
    free(middles);
    *inputs = list;
    return count;
}

static uint32_t parse_hex(const json_t *value)
{
    ck_assert(json_is_string(value));
    return (uint32_t)strtoul(json_string_value(value), NULL, 16);
}

/* Replays one golden file. */
static void replay(format f, const char *file)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", HALF_DIRECTORY, file);
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s (run tests from the repository root)", path,
                  json_error.text);

    fnv decoded = {0xCBF29CE484222325ULL};
    for (uint32_t p = 0; p < 65536; p++)
        fnv_u32(&decoded, canonical32(paramd__float_bits(decode16(f, (uint16_t)p))));
    const json_t *to = json_object_get(golden, "to_float32");
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)decoded.hash);
    ck_assert_str_eq(hex, json_string_value(json_object_get(to, "fnv1a64")));

    uint32_t *inputs;
    size_t count = build_inputs(f, &inputs);
    const json_t *from = json_object_get(golden, "from_float32");
    ck_assert_uint_eq(count, (size_t)json_integer_value(json_object_get(from, "count")));
    fnv encoded = {0xCBF29CE484222325ULL};
    for (size_t i = 0; i < count; i++)
        fnv_u16(&encoded, canonical16(f, encode16(f, paramd__bits_float(inputs[i]))));
    free(inputs);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)encoded.hash);
    ck_assert_str_eq(hex, json_string_value(json_object_get(from, "fnv1a64")));

    const json_t *cases = json_object_get(golden, "cases_to_float32");
    ck_assert_uint_ge(json_array_size(cases), 20);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        uint32_t in = parse_hex(json_array_get(json_array_get(cases, i), 0));
        uint32_t expected = parse_hex(json_array_get(json_array_get(cases, i), 1));
        uint32_t got = canonical32(paramd__float_bits(decode16(f, (uint16_t)in)));
        ck_assert_msg(got == expected, "%s: %04x -> %08x, reference %08x", file, in, got,
                      expected);
    }
    cases = json_object_get(golden, "cases_from_float32");
    ck_assert_uint_ge(json_array_size(cases), 100);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        uint32_t in = parse_hex(json_array_get(json_array_get(cases, i), 0));
        uint32_t expected = parse_hex(json_array_get(json_array_get(cases, i), 1));
        uint16_t got = canonical16(f, encode16(f, paramd__bits_float(in)));
        ck_assert_msg(got == expected, "%s: %08x (%.9g) -> %04x, reference %04x", file, in,
                      (double)paramd__bits_float(in), got, expected);
    }
    json_decref(golden);
}

START_TEST(test_float16_matches_numpy)
{
    replay(FLOAT16, "float16.json");
}
END_TEST

START_TEST(test_bfloat16_matches_torch)
{
    replay(BFLOAT16, "bfloat16.json");
}
END_TEST

/* The value of a finite non-negative pattern, by arithmetic. */
static double reference_value(format f, uint16_t bits)
{
    int mantissa_bits = f == FLOAT16 ? 10 : 7;
    int bias = f == FLOAT16 ? 15 : 127;
    unsigned exponent = (bits & 0x7fffu) >> mantissa_bits;
    unsigned mantissa = bits & ((1u << mantissa_bits) - 1);
    if (exponent == 0)
        return ldexp(mantissa, 1 - bias - mantissa_bits);
    return ldexp(mantissa | (1u << mantissa_bits), (int)exponent - bias - mantissa_bits);
}

static void check_decoding(format f)
{
    failures = 0;
    for (uint32_t p = 0; p < 65536; p++) {
        uint16_t bits = (uint16_t)p;
        float value = decode16(f, bits);
        bool negative = bits & 0x8000u;
        EXPECT((signbit(value) != 0) == negative, "%04x: sign", p);
        if (is_nan16(f, bits)) {
            EXPECT(isnan(value), "%04x: not a NaN", p);
            EXPECT(paramd__float_bits(value) & 0x00400000u, "%04x: not quiet", p);
            /* A quiet NaN's payload survives the round trip. */
            uint16_t quiet = (uint16_t)(bits | (f == FLOAT16 ? 0x0200u : 0x0040u));
            EXPECT(encode16(f, value) == quiet, "%04x: NaN round trip %04x", p,
                   encode16(f, value));
            continue;
        }
        uint16_t infinity = f == FLOAT16 ? 0x7c00u : 0x7f80u;
        if ((bits & 0x7fffu) == infinity) {
            EXPECT(isinf(value), "%04x: not infinite", p);
        } else {
            double expected = reference_value(f, bits & 0x7fffu);
            EXPECT(fabs((double)value) == expected, "%04x: %.17g, expected %.17g", p,
                   (double)value, expected);
        }
        EXPECT(encode16(f, value) == bits, "%04x: round trip gives %04x", p,
               encode16(f, value)); /* exact */
    }
    ck_assert_uint_eq(failures, 0);
}

/* Between each two neighbouring non-negative finite values a < b: the
 * midpoint goes to the one with an even pattern, one float32 ulp below it
 * to a, one above to b; likewise for the negatives. */
static void check_neighbours(format f)
{
    failures = 0;
    uint32_t limit = f == FLOAT16 ? 0x7c00u : 0x7f80u;
    for (uint32_t p = 0; p + 1 < limit; p++) {
        float a = decode16(f, (uint16_t)p), b = decode16(f, (uint16_t)(p + 1));
        float middle = (float)(((double)a + (double)b) / 2);
        EXPECT((double)middle == ((double)a + (double)b) / 2, "%04x: inexact midpoint", p);
        uint32_t even = (p & 1u) ? p + 1 : p;
        for (int s = 0; s < 2; s++) {
            float sign = s ? -1.0f : 1.0f;
            uint32_t sign_bit = s ? 0x8000u : 0;
            EXPECT(encode16(f, sign * middle) == (even | sign_bit), "%04x: midpoint", p);
            EXPECT(encode16(f, sign * nextafterf(middle, 0)) == (p | sign_bit),
                   "%04x: below the midpoint", p);
            EXPECT(encode16(f, sign * nextafterf(middle, INFINITY)) == ((p + 1) | sign_bit),
                   "%04x: above the midpoint", p);
            EXPECT(encode16(f, sign * a) == (p | sign_bit), "%04x: the value itself", p);
        }
    }
    ck_assert_uint_eq(failures, 0);
    /* The largest finite value: up to just below the midpoint to "the next
     * power" it stays; the midpoint and beyond overflow to infinity. */
    uint16_t largest = (uint16_t)(limit - 1), infinity = (uint16_t)limit;
    float top = decode16(f, largest);
    float threshold = f == FLOAT16 ? 65520.0f : paramd__bits_float(0x7f7f8000u);
    ck_assert_uint_eq(encode16(f, nextafterf(threshold, 0)), largest);
    ck_assert_uint_eq(encode16(f, threshold), infinity);
    ck_assert_uint_eq(encode16(f, -threshold), infinity | 0x8000u);
    ck_assert_uint_eq(encode16(f, top), largest);
    ck_assert_uint_eq(encode16(f, 3.4028234663852886e38f), infinity);
    ck_assert_uint_eq(encode16(f, INFINITY), infinity);
    ck_assert_uint_eq(encode16(f, -INFINITY), infinity | 0x8000u);
    ck_assert(is_nan16(f, encode16(f, NAN)));
    ck_assert(is_nan16(f, encode16(f, paramd__bits_float(0x7f800001u)))); /* a signalling NaN */
    ck_assert_uint_eq(encode16(f, -NAN) & 0x8000u, 0x8000u);
}

START_TEST(test_float16_exhaustive)
{
    check_decoding(FLOAT16);
    check_neighbours(FLOAT16);
    /* Known values. */
    ck_assert_uint_eq(paramd_float32_to_float16(1.0f), 0x3c00u);
    ck_assert_uint_eq(paramd_float32_to_float16(-2.0f), 0xc000u);
    ck_assert_uint_eq(paramd_float32_to_float16(65504.0f), 0x7bffu);
    ck_assert_uint_eq(paramd_float32_to_float16(0x1p-24f), 0x0001u);
    ck_assert_uint_eq(paramd_float32_to_float16(0x1p-25f), 0x0000u); /* tie to even: 0 */
    ck_assert_uint_eq(paramd_float32_to_float16(0x1.8p-24f), 0x0002u); /* tie to even: 2 */
    ck_assert_uint_eq(paramd_float32_to_float16(0x1p-14f), 0x0400u);
    ck_assert_uint_eq(paramd_float32_to_float16(1e-8f), 0x0000u);
    ck_assert_uint_eq(paramd_float32_to_float16(-0.0f), 0x8000u);
    ck_assert(paramd_float16_to_float32(0x0001u) == 0x1p-24f);
    ck_assert(paramd_float16_to_float32(0x3555u) == 0x1.554p-2f);
}
END_TEST

START_TEST(test_bfloat16_exhaustive)
{
    check_decoding(BFLOAT16);
    check_neighbours(BFLOAT16);
    ck_assert_uint_eq(paramd_float32_to_bfloat16(1.0f), 0x3f80u);
    ck_assert_uint_eq(paramd_float32_to_bfloat16(0x1.01p0f), 0x3f80u);  /* tie to even: down */
    ck_assert_uint_eq(paramd_float32_to_bfloat16(0x1.03p0f), 0x3f82u);  /* tie to even: up */
    ck_assert_uint_eq(paramd_float32_to_bfloat16(0x1p-133f), 0x0001u);  /* smallest subnormal */
    ck_assert_uint_eq(paramd_float32_to_bfloat16(0x1p-134f), 0x0000u);  /* tie to even: 0 */
    ck_assert_uint_eq(paramd_float32_to_bfloat16(-3.0e38f), 0xff62u);
}
END_TEST

/* Round to nearest even by arithmetic: the quantum at |x|'s binade (or the
 * subnormal quantum), nearbyint in double (exact: |x| / quantum < 2^25),
 * and the pattern found by binary search over the format's values. */
static uint16_t reference_encode(format f, float x)
{
    uint16_t sign = signbit(x) ? 0x8000u : 0;
    if (isnan(x))
        return f == FLOAT16 ? 0x7e00u : 0x7fc0u; /* canonical, as canonical16 */
    int precision = f == FLOAT16 ? 11 : 8;   /* significant bits */
    int minimum_exponent = f == FLOAT16 ? -24 : -133; /* the subnormal quantum */
    uint16_t infinity = f == FLOAT16 ? 0x7c00u : 0x7f80u;
    double a = fabs((double)x);
    if (isinf(a))
        return sign | infinity;
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int quantum = e - precision > minimum_exponent ? e - precision : minimum_exponent;
    double rounded = ldexp(nearbyint(ldexp(a, -quantum)), quantum);
    uint32_t low = 0, high = infinity; /* decode(high) = inf > rounded */
    double largest = decode16(f, (uint16_t)(infinity - 1));
    double threshold = largest + ldexp(1, (f == FLOAT16 ? 15 : 127) - precision);
    if (rounded >= threshold || (a >= (largest + threshold) / 2 && rounded > largest))
        return sign | infinity;
    while (low < high) {
        uint32_t middle = (low + high) / 2;
        if ((double)decode16(f, (uint16_t)middle) < rounded)
            low = middle + 1;
        else
            high = middle;
    }
    EXPECT((double)decode16(f, (uint16_t)low) == rounded, "reference: %.17g not found",
           rounded);
    return (uint16_t)(sign | low);
}

static void check_against_reference(format f)
{
    uint32_t *inputs;
    size_t count = build_inputs(f, &inputs);
    failures = 0;
    for (size_t i = 0; i < count; i++) {
        float x = paramd__bits_float(inputs[i]);
        uint16_t got = canonical16(f, encode16(f, x));
        uint16_t expected = reference_encode(f, x);
        EXPECT(got == expected, "%08x (%.9g): %04x, reference %04x", inputs[i], (double)x, got,
               expected);
    }
    free(inputs);
    ck_assert_uint_eq(failures, 0);
}

START_TEST(test_float16_rounding_reference)
{
    check_against_reference(FLOAT16);
}
END_TEST

START_TEST(test_bfloat16_rounding_reference)
{
    check_against_reference(BFLOAT16);
}
END_TEST

/* The array functions agree with the scalar ones and use little-endian bytes. */
START_TEST(test_arrays)
{
    enum { N = 1037 };
    float values[N], decoded[N];
    unsigned char bytes[2 * N];
    uint64_t state = 0x243F6A8885A308D3ULL;
    for (int i = 0; i < N; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        values[i] = paramd__bits_float((uint32_t)(state >> 32));
    }
    values[0] = 1.0f;
    for (int k = 0; k < 2; k++) {
        format f = k ? BFLOAT16 : FLOAT16;
        memset(bytes, 0xa5, sizeof bytes);
        if (f == FLOAT16)
            paramd_float16_encode(values, bytes, N);
        else
            paramd_bfloat16_encode(values, bytes, N);
        ck_assert_uint_eq(bytes[0], f == FLOAT16 ? 0x00 : 0x80); /* 1.0: 3c00 or 3f80 */
        ck_assert_uint_eq(bytes[1], f == FLOAT16 ? 0x3c : 0x3f);
        failures = 0;
        for (int i = 0; i < N; i++)
            EXPECT((bytes[2 * i] | bytes[2 * i + 1] << 8) == encode16(f, values[i]), "[%d]", i);
        if (f == FLOAT16)
            paramd_float16_decode(bytes, decoded, N);
        else
            paramd_bfloat16_decode(bytes, decoded, N);
        for (int i = 0; i < N; i++) {
            uint16_t bits = (uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8);
            EXPECT(paramd__float_bits(decoded[i]) == paramd__float_bits(decode16(f, bits)),
                   "[%d]", i);
        }
        ck_assert_uint_eq(failures, 0);
        /* Zero elements touch nothing. */
        decoded[0] = 7.0f;
        if (f == FLOAT16)
            paramd_float16_decode(bytes, decoded, 0);
        else
            paramd_bfloat16_decode(bytes, decoded, 0);
        ck_assert(decoded[0] == 7.0f);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("half");
    TCase *golden = tcase_create("golden");
    tcase_set_timeout(golden, 600);
    tcase_add_test(golden, test_float16_matches_numpy);
    tcase_add_test(golden, test_bfloat16_matches_torch);
    suite_add_tcase(suite, golden);
    TCase *properties = tcase_create("properties");
    tcase_set_timeout(properties, 600);
    tcase_add_test(properties, test_float16_exhaustive);
    tcase_add_test(properties, test_bfloat16_exhaustive);
    tcase_add_test(properties, test_float16_rounding_reference);
    tcase_add_test(properties, test_bfloat16_rounding_reference);
    tcase_add_test(properties, test_arrays);
    suite_add_tcase(suite, properties);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
