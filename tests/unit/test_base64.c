/*
 * test_base64.c - unit tests for proto/base64.h (RFC 4648 base64 with padding).
 */
#include "test_util.h"

#include "base64.h"

#include <stdint.h>
#include <string.h>

/* RFC 4648 section 10 test vectors. */
static const struct {
    const char *plain;
    const char *encoded;
} vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
#define VECTOR_COUNT (sizeof vectors / sizeof vectors[0])

/* Decodes a string given as a NUL-terminated C literal (length = strlen). */
static long long decode_string(const char *text, void *output, size_t capacity)
{
    return paramd_base64_decode(text, strlen(text), output, capacity);
}

/* Decodes exactly `length` bytes from a heap copy that has no terminator, so
 * that AddressSanitizer reports any read past `length`. */
static long long decode_exact(const char *text, size_t length, void *output, size_t capacity)
{
    char *copy = malloc(length ? length : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, text, length);
    long long result = paramd_base64_decode(copy, length, output, capacity);
    free(copy);
    return result;
}

/* A tiny deterministic generator (xorshift64*). */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

START_TEST(test_lengths)
{
    ck_assert_uint_eq(paramd_base64_encoded_length(0), 0);
    ck_assert_uint_eq(paramd_base64_encoded_length(1), 4);
    ck_assert_uint_eq(paramd_base64_encoded_length(2), 4);
    ck_assert_uint_eq(paramd_base64_encoded_length(3), 4);
    ck_assert_uint_eq(paramd_base64_encoded_length(4), 8);
    ck_assert_uint_eq(paramd_base64_encoded_length(6), 8);
    ck_assert_uint_eq(paramd_base64_encoded_length(7), 12);
    ck_assert_uint_eq(paramd_base64_decoded_length_bound(0), 0);
    ck_assert_uint_eq(paramd_base64_decoded_length_bound(4), 3);
    ck_assert_uint_eq(paramd_base64_decoded_length_bound(8), 6);
    for (size_t n = 0; n < 100; n++)
        ck_assert_uint_ge(paramd_base64_decoded_length_bound(paramd_base64_encoded_length(n)), n);
}
END_TEST

START_TEST(test_encode_rfc4648_vectors)
{
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        size_t length = strlen(vectors[i].plain);
        size_t encoded_length = paramd_base64_encoded_length(length);
        ck_assert_uint_eq(encoded_length, strlen(vectors[i].encoded));
        char output[16];
        memset(output, '#', sizeof output);
        paramd_base64_encode(vectors[i].plain, length, output);
        ck_assert_mem_eq(output, vectors[i].encoded, encoded_length);
        /* Nothing written past the encoded length (no NUL either). */
        for (size_t j = encoded_length; j < sizeof output; j++)
            ck_assert_int_eq(output[j], '#');
    }
}
END_TEST

START_TEST(test_decode_rfc4648_vectors)
{
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        size_t length = strlen(vectors[i].plain);
        unsigned char output[16];
        memset(output, 0xAA, sizeof output);
        long long result = decode_exact(vectors[i].encoded, strlen(vectors[i].encoded), output,
                                        sizeof output);
        ck_assert_int_eq(result, (long long)length);
        ck_assert_mem_eq(output, vectors[i].plain, length);
        for (size_t j = length; j < sizeof output; j++)
            ck_assert_uint_eq(output[j], 0xAA);
        /* Exactly enough capacity also works. */
        memset(output, 0xAA, sizeof output);
        result = decode_exact(vectors[i].encoded, strlen(vectors[i].encoded), output, length);
        ck_assert_int_eq(result, (long long)length);
        ck_assert_mem_eq(output, vectors[i].plain, length);
        ck_assert_uint_eq(output[length], 0xAA);
    }
}
END_TEST

START_TEST(test_decode_binary_vectors)
{
    unsigned char output[8];
    ck_assert_int_eq(decode_string("AAAA", output, sizeof output), 3);
    ck_assert_uint_eq(output[0], 0);
    ck_assert_uint_eq(output[1], 0);
    ck_assert_uint_eq(output[2], 0);
    ck_assert_int_eq(decode_string("////", output, sizeof output), 3);
    ck_assert_uint_eq(output[0], 0xFF);
    ck_assert_uint_eq(output[1], 0xFF);
    ck_assert_uint_eq(output[2], 0xFF);
    ck_assert_int_eq(decode_string("+/+/", output, sizeof output), 3);
    ck_assert_uint_eq(output[0], 0xFB);
    ck_assert_uint_eq(output[1], 0xFF);
    ck_assert_uint_eq(output[2], 0xBF);
    ck_assert_int_eq(decode_string("/w==", output, sizeof output), 1);
    ck_assert_uint_eq(output[0], 0xFF);
    ck_assert_int_eq(decode_string("//8=", output, sizeof output), 2);
    ck_assert_uint_eq(output[0], 0xFF);
    ck_assert_uint_eq(output[1], 0xFF);
}
END_TEST

START_TEST(test_round_trip_every_length)
{
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    for (size_t length = 0; length <= 300; length++) {
        unsigned char *input = malloc(length ? length : 1);
        ck_assert_ptr_nonnull(input);
        for (size_t i = 0; i < length; i++)
            input[i] = (unsigned char)(next_random(&state) >> 56);
        size_t encoded_length = paramd_base64_encoded_length(length);
        ck_assert_uint_eq(encoded_length, (length + 2) / 3 * 4);
        /* Exactly encoded_length bytes, so ASan catches an over-write. */
        char *encoded = malloc(encoded_length ? encoded_length : 1);
        ck_assert_ptr_nonnull(encoded);
        paramd_base64_encode(input, length, encoded);
        for (size_t i = 0; i < encoded_length; i++) {
            char c = encoded[i];
            int valid = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '+' || c == '/' ||
                        (c == '=' && i + 2 >= encoded_length);
            ck_assert_msg(valid, "length %zu: bad output character %d at %zu", length, c, i);
        }
        size_t padding = (3 - length % 3) % 3;
        for (size_t i = 0; i < padding; i++)
            ck_assert_int_eq(encoded[encoded_length - 1 - i], '=');
        if (encoded_length > padding)
            ck_assert_int_ne(encoded[encoded_length - 1 - padding], '=');

        size_t capacity = paramd_base64_decoded_length_bound(encoded_length);
        ck_assert_uint_ge(capacity, length);
        unsigned char *decoded = malloc(capacity + 1);
        ck_assert_ptr_nonnull(decoded);
        long long result = decode_exact(encoded, encoded_length, decoded, capacity);
        ck_assert_int_eq(result, (long long)length);
        if (length > 0)
            ck_assert_mem_eq(decoded, input, length);
        /* Capacity of exactly `length` is enough. */
        result = decode_exact(encoded, encoded_length, decoded, length);
        ck_assert_int_eq(result, (long long)length);
        free(decoded);
        free(encoded);
        free(input);
    }
}
END_TEST

START_TEST(test_reject_bad_length)
{
    unsigned char output[16];
    const char *bad[] = {"Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zm9vYg", "Zm9vYg=", "Zm9vYmFy=",
                         "Zm9vYmFyZ"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(decode_exact(bad[i], strlen(bad[i]), output, sizeof output) == -1,
                      "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_reject_invalid_characters)
{
    unsigned char output[16];
    /* URL-safe alphabet, whitespace and punctuation are not standard base64. */
    const char *bad[] = {"Zm9-", "Zm9_", "-m9v", "_m9v", "Zm 9", " Zm9", "Zm9v\n", "Zm9\n",
                         "Zm9v Zm9v", "Zm.v", "Zm9v!AAA", "Zm9*", "Z\tm9", "Zm9v\r\nAA==",
                         "Zm9vYmF:", "Zm9vYm@y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(decode_exact(bad[i], strlen(bad[i]), output, sizeof output) == -1,
                      "accepted \"%s\"", bad[i]);
    /* A NUL inside the given length. */
    ck_assert_int_eq(decode_exact("Zm\0v", 4, output, sizeof output), -1);
    ck_assert_int_eq(decode_exact("Zm9vYm\0y", 8, output, sizeof output), -1);
    ck_assert_int_eq(decode_exact("\0\0\0\0", 4, output, sizeof output), -1);
    /* Every byte value outside the alphabet, in each position of a quantum. */
    for (int c = 0; c < 256; c++) {
        int in_alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
        if (in_alphabet)
            continue;
        for (int position = 0; position < 4; position++) {
            char text[8] = "Zm9vYmFy";
            text[4 + position] = (char)c;
            ck_assert_msg(decode_exact(text, 8, output, sizeof output) == -1,
                          "accepted byte %d at %d", c, 4 + position);
            char first[4] = {'Z', 'm', '9', 'v'};
            first[position] = (char)c;
            ck_assert_msg(decode_exact(first, 4, output, sizeof output) == -1,
                          "accepted byte %d at %d", c, position);
        }
    }
    /* High bytes explicitly. */
    ck_assert_int_eq(decode_exact("Zm9\x80", 4, output, sizeof output), -1);
    ck_assert_int_eq(decode_exact("\xffm9v", 4, output, sizeof output), -1);
    ck_assert_int_eq(decode_exact("Zm\xc3\xa9", 4, output, sizeof output), -1);
}
END_TEST

START_TEST(test_reject_misplaced_padding)
{
    unsigned char output[16];
    const char *bad[] = {
        "====",        /* all padding */
        "Z===",        /* "===" padding */
        "Zm9vZ===",    /* "===" padding in the last quantum */
        "=m9v",        /* '=' first in a quantum */
        "Z=9v",        /* '=' second in a quantum */
        "==9v",        /* both */
        "Zm=v",        /* '=' third, followed by data */
        "Zg==Zm9v",    /* padded quantum followed by another */
        "Zm8=Zm9v",    /* the same with one '=' */
        "Zm9v=m9v",    /* '=' first in the second quantum */
        "Zm9vZ=9v",    /* '=' second in the second quantum */
        "Zm9vZm=v",    /* '=' third in the second quantum */
        "Zg==Zg==",    /* two padded quanta */
        "Zm9vYmFy====",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(decode_exact(bad[i], strlen(bad[i]), output, sizeof output) == -1,
                      "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_reject_non_canonical_trailing_bits)
{
    unsigned char output[16];
    /* "f" is "Zg=="; the low four bits of the second character must be 0. */
    ck_assert_int_eq(decode_string("Zg==", output, sizeof output), 1);
    ck_assert_uint_eq(output[0], 'f');
    const char *bad_one[] = {"Zh==", "Zi==", "Zj==", "Zk==", "Zl==", "Zm==", "Zn==", "Zo==",
                             "Zp==", "Zq==", "Zr==", "Zs==", "Zt==", "Zu==", "Zv=="};
    for (size_t i = 0; i < sizeof bad_one / sizeof bad_one[0]; i++)
        ck_assert_msg(decode_string(bad_one[i], output, sizeof output) == -1, "accepted \"%s\"",
                      bad_one[i]);
    /* "fo" is "Zm8="; the low two bits of the third character must be 0. */
    ck_assert_int_eq(decode_string("Zm8=", output, sizeof output), 2);
    ck_assert_uint_eq(output[0], 'f');
    ck_assert_uint_eq(output[1], 'o');
    const char *bad_two[] = {"Zm9=", "Zm+=", "Zm/=", "Zm5=", "Zm9vZm9=", "Zm9vYmF="};
    for (size_t i = 0; i < sizeof bad_two / sizeof bad_two[0]; i++)
        ck_assert_msg(decode_string(bad_two[i], output, sizeof output) == -1, "accepted \"%s\"",
                      bad_two[i]);
    /* Exhaustively: for every (b, c) exactly the canonical ones are accepted. */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int accepted_one = 0, accepted_two = 0;
    for (int b = 0; b < 64; b++) {
        char one[4] = {'Q', alphabet[b], '=', '='};
        long long result = decode_exact(one, 4, output, sizeof output);
        if (b % 16 == 0) {
            ck_assert_int_eq(result, 1);
            ck_assert_uint_eq(output[0], (unsigned)(16 << 2 | b >> 4));
            accepted_one++;
        } else {
            ck_assert_int_eq(result, -1);
        }
        for (int c = 0; c < 64; c++) {
            char two[4] = {'Q', alphabet[b], alphabet[c], '='};
            result = decode_exact(two, 4, output, sizeof output);
            if (c % 4 == 0) {
                ck_assert_int_eq(result, 2);
                ck_assert_uint_eq(output[0], (unsigned)(16 << 2 | b >> 4));
                ck_assert_uint_eq(output[1], (unsigned)((b & 15) << 4 | c >> 2));
                accepted_two++;
            } else {
                ck_assert_int_eq(result, -1);
            }
        }
    }
    ck_assert_int_eq(accepted_one, 4);
    ck_assert_int_eq(accepted_two, 64 * 16);
}
END_TEST

START_TEST(test_capacity_too_small)
{
    /* Output buffer of `capacity` bytes plus a canary. */
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        size_t length = strlen(vectors[i].plain);
        for (size_t capacity = 0; capacity < length; capacity++) {
            unsigned char *output = malloc(capacity + 1);
            ck_assert_ptr_nonnull(output);
            memset(output, 0x5C, capacity + 1);
            long long result = decode_exact(vectors[i].encoded, strlen(vectors[i].encoded),
                                            output, capacity);
            ck_assert_msg(result == -1, "\"%s\" into %zu bytes returned %lld",
                          vectors[i].encoded, capacity, result);
            ck_assert_msg(output[capacity] == 0x5C, "\"%s\" into %zu bytes wrote the canary",
                          vectors[i].encoded, capacity);
            free(output);
        }
    }
    /* A longer input, with capacity one short. */
    unsigned char input[100];
    for (size_t i = 0; i < sizeof input; i++)
        input[i] = (unsigned char)(i * 37 + 11);
    for (size_t length = 1; length <= sizeof input; length++) {
        char encoded[200];
        paramd_base64_encode(input, length, encoded);
        size_t encoded_length = paramd_base64_encoded_length(length);
        unsigned char output[101];
        memset(output, 0x5C, sizeof output);
        ck_assert_int_eq(decode_exact(encoded, encoded_length, output, length - 1), -1);
        ck_assert_uint_eq(output[length - 1], 0x5C);
        ck_assert_int_eq(decode_exact(encoded, encoded_length, output, length), (long long)length);
        ck_assert_mem_eq(output, input, length);
        ck_assert_uint_eq(output[length], 0x5C);
    }
    /* Empty input into no buffer at all. */
    ck_assert_int_eq(paramd_base64_decode("", 0, NULL, 0), 0);
}
END_TEST

START_TEST(test_every_truncation)
{
    uint64_t state = 12345;
    unsigned char input[64];
    for (size_t i = 0; i < sizeof input; i++)
        input[i] = (unsigned char)(next_random(&state) >> 56);
    for (size_t length = 0; length <= sizeof input; length++) {
        char encoded[96];
        paramd_base64_encode(input, length, encoded);
        size_t encoded_length = paramd_base64_encoded_length(length);
        for (size_t prefix = 0; prefix <= encoded_length; prefix++) {
            unsigned char output[64];
            long long result = decode_exact(encoded, prefix, output, sizeof output);
            if (prefix % 4 != 0) {
                ck_assert_int_eq(result, -1);
                continue;
            }
            /* A prefix of whole quanta is valid base64 of a prefix of the
             * input (only the last quantum can hold padding). */
            ck_assert_int_eq(result, (long long)(prefix == encoded_length ? length : prefix / 4 * 3));
            if (result > 0)
                ck_assert_mem_eq(output, input, (size_t)result);
        }
        /* The full string is always accepted. */
        unsigned char output[64];
        ck_assert_int_eq(decode_exact(encoded, encoded_length, output, sizeof output),
                         (long long)length);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("base64");
    TCase *tcase = tcase_create("base64");
    tcase_add_test(tcase, test_lengths);
    tcase_add_test(tcase, test_encode_rfc4648_vectors);
    tcase_add_test(tcase, test_decode_rfc4648_vectors);
    tcase_add_test(tcase, test_decode_binary_vectors);
    tcase_add_test(tcase, test_round_trip_every_length);
    tcase_add_test(tcase, test_reject_bad_length);
    tcase_add_test(tcase, test_reject_invalid_characters);
    tcase_add_test(tcase, test_reject_misplaced_padding);
    tcase_add_test(tcase, test_reject_non_canonical_trailing_bits);
    tcase_add_test(tcase, test_capacity_too_small);
    tcase_add_test(tcase, test_every_truncation);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
