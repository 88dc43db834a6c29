/*
 * test_json_training.c - the JSON side of issue 4: float16 and bfloat16
 * base64 (decoded and encoded in 4096-character chunks), the push reply's
 * fields, and the training options' parsers and descriptions.
 */
#include "test_util.h"

#include "base64.h"
#include "half.h"
#include "json_api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ck_assert_error(error, expected_code, needle)                                      \
    do {                                                                                   \
        ck_assert_msg((error).code == (expected_code), "code %d, expected %d (%s)",       \
                      (error).code, (expected_code), (error).message);                     \
        ck_assert_msg(strstr((error).message, (needle)) != NULL,                          \
                      "message \"%s\" does not contain \"%s\"", (error).message, (needle)); \
    } while (0)

static json_t *parse(const char *text)
{
    json_error_t json_error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &json_error);
    ck_assert_msg(value != NULL, "bad test JSON %s: %s", text, json_error.text);
    return value;
}

/* {"dtype": dtype, "b64": base64 of `length` bytes}. */
static json_t *base64_object(const char *dtype, const unsigned char *bytes, size_t length)
{
    size_t characters = paramd_base64_encoded_length(length);
    char *text = malloc(characters + 1);
    ck_assert_ptr_nonnull(text);
    paramd_base64_encode(bytes, length, text);
    text[characters] = '\0';
    json_t *object = json_pack("{s:s,s:s}", "dtype", dtype, "b64", text);
    free(text);
    return object;
}

static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return *state >> 16;
}

/* Every length around the chunk size (1536 values per 4096 characters). */
START_TEST(test_decode_16_bit_chunks)
{
    const size_t lengths[] = {1, 2, 3, 4, 1535, 1536, 1537, 3071, 3072, 3073, 5000};
    uint64_t state = 42;
    for (int f = 0; f < 2; f++) {
        const char *dtype = f ? "bfloat16" : "float16";
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            size_t count = lengths[l];
            unsigned char *bytes = malloc(2 * count);
            for (size_t i = 0; i < 2 * count; i++)
                bytes[i] = (unsigned char)next_random(&state);
            json_t *object = base64_object(dtype, bytes, 2 * count);
            float *values = NULL;
            size_t decoded = 0;
            paramd__float_encoding encoding;
            paramd__error error = {0};
            ck_assert_int_eq(paramd__json_decode_floats(object, "g", &values, &decoded, &encoding,
                                                        &error),
                             PARAMD_OK);
            ck_assert_uint_eq(decoded, count);
            ck_assert_int_eq(encoding, f ? PARAMD__ENCODING_BASE64_BFLOAT16
                                         : PARAMD__ENCODING_BASE64_FLOAT16);
            size_t mismatches = 0;
            for (size_t i = 0; i < count; i++) {
                uint16_t bits = (uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8);
                float expected = f ? paramd_bfloat16_to_float32(bits)
                                   : paramd_float16_to_float32(bits);
                mismatches += memcmp(&expected, &values[i], sizeof expected) != 0;
            }
            ck_assert_msg(mismatches == 0, "%s, %zu values: %zu mismatches", dtype, count,
                          mismatches);
            paramd__float_array_free(values, decoded);
            json_decref(object);
            free(bytes);
        }
    }
}
END_TEST

START_TEST(test_decode_16_bit_errors)
{
    /* Padding at the end of the first 4096-character chunk, then more data:
     * each chunk alone is valid base64, the whole is not. */
    unsigned char bytes[3070] = {0};
    size_t first = paramd_base64_encoded_length(sizeof bytes); /* 4096, ends "==" */
    ck_assert_uint_eq(first, 4096);
    char *text = malloc(first + 5);
    paramd_base64_encode(bytes, sizeof bytes, text);
    ck_assert(text[first - 1] == '=' && text[first - 2] == '=');
    memcpy(text + first, "AAA=", 5);
    json_t *object = json_pack("{s:s,s:s}", "dtype", "float16", "b64", text);
    free(text);
    float *values = NULL;
    size_t count = 0;
    paramd__float_encoding encoding;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__json_decode_floats(object, "g", &values, &count, &encoding, &error),
                     PARAMD_E_BAD_ENCODING);
    ck_assert_error(error, PARAMD_E_BAD_ENCODING, "g.b64");
    ck_assert_ptr_null(values);
    json_decref(object);
    /* An odd number of bytes, and unknown dtypes. */
    const char *bad[][2] = {{"{\"dtype\": \"float16\", \"b64\": \"AAAA\"}", "g.b64"},
                            {"{\"dtype\": \"bfloat16\", \"b64\": \"AA==\"}", "g.b64"},
                            {"{\"dtype\": \"half\", \"b64\": \"AAAA\"}", "g.dtype"},
                            {"{\"dtype\": \"Float16\", \"b64\": \"AAAA\"}", "g.dtype"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        object = parse(bad[i][0]);
        ck_assert_int_eq(paramd__json_decode_floats(object, "g", &values, &count, &encoding,
                                                    &error),
                         PARAMD_E_BAD_ENCODING);
        ck_assert_error(error, PARAMD_E_BAD_ENCODING, bad[i][1]);
        json_decref(object);
    }
}
END_TEST

/* Replies in 16-bit dtypes round each weight to nearest even. */
START_TEST(test_encode_16_bit_replies)
{
    enum { N = 5000 };
    static float weights[N];
    uint64_t state = 7;
    for (size_t i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)next_random(&state);
        memcpy(&weights[i], &bits, sizeof bits);
    }
    weights[0] = 65520.0f; /* beyond float16: infinity, not clamped */
    weights[1] = 1.0f + 0x1p-11f; /* a tie: to even, 1.0 */
    paramd__tensor tensor = {.name = "w", .count = N};
    paramd__tensor_io item = {.tensor = &tensor, .weights = weights};
    for (int f = 0; f < 2; f++) {
        paramd__float_encoding encoding =
            f ? PARAMD__ENCODING_BASE64_BFLOAT16 : PARAMD__ENCODING_BASE64_FLOAT16;
        size_t length;
        char *text = paramd__json_write_weights(3, &item, &encoding, 1, &length);
        ck_assert_ptr_nonnull(text);
        ck_assert_uint_eq(strlen(text), length);
        json_t *reply = parse(text);
        free(text);
        json_t *object = json_object_get(json_object_get(reply, "weights"), "w");
        ck_assert_str_eq(json_string_value(json_object_get(object, "dtype")),
                         f ? "bfloat16" : "float16");
        const char *b64 = json_string_value(json_object_get(object, "b64"));
        unsigned char *bytes = malloc(2 * N);
        ck_assert_int_eq(paramd_base64_decode(b64, strlen(b64), bytes, 2 * N), 2 * N);
        size_t mismatches = 0;
        for (size_t i = 0; i < N; i++) {
            uint16_t got = (uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8);
            uint16_t expected = f ? paramd_float32_to_bfloat16(weights[i])
                                  : paramd_float32_to_float16(weights[i]);
            mismatches += got != expected;
        }
        ck_assert_uint_eq(mismatches, 0);
        if (!f) {
            ck_assert_uint_eq(bytes[0] | bytes[1] << 8, 0x7c00);
            ck_assert_uint_eq(bytes[2] | bytes[3] << 8, 0x3c00);
        }
        /* The json_t form agrees. */
        json_t *same = paramd__json_encode_floats(weights, N, encoding);
        ck_assert(json_equal(same, object));
        json_decref(same);
        free(bytes);
        json_decref(reply);
    }
}
END_TEST

START_TEST(test_push_reply_fields)
{
    float w[2] = {1, -2};
    paramd__tensor tensor = {.name = "layer.0/w", .count = 2};
    paramd__tensor_io item = {.tensor = &tensor, .weights = w, .accumulated = 3};
    paramd__float_encoding encoding = PARAMD__ENCODING_JSON;
    paramd__push_outcome outcome = {.step = 7, .lr = 0.1, .grad_norm = NAN};
    size_t length;
    char *text = paramd__json_write_push_reply(&outcome, &item, &encoding, 1, &length);
    ck_assert_str_eq(text, "{\"step\":7,\"lr\":0.1,\"weights\":{\"layer.0/w\":[1.0,-2.0]}}\n");
    free(text);
    outcome = (paramd__push_outcome){.step = 7, .lr = 0.1, .grad_norm = 2.5, .skipped = true,
                                     .skip_reason = "loss_scale", .has_loss_scale = true,
                                     .loss_scale = 32768.0f, .zeroed = 4, .accumulate_steps = 4};
    text = paramd__json_write_push_reply(&outcome, &item, &encoding, 1, &length);
    json_t *reply = parse(text);
    free(text);
    json_t *expected = parse("{\"step\": 7, \"lr\": 0.1, \"grad_norm\": 2.5, \"loss_scale\": 32768,"
                             " \"skipped\": true, \"reason\": \"loss_scale\", \"zeroed\": 4,"
                             " \"accumulated\": {\"layer.0/w\": 3}, \"of\": 4,"
                             " \"weights\": {\"layer.0/w\": [1.0, -2.0]}}");
    /* 32768 arrives as an integer from "%.9g"; compare numbers as numbers. */
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "loss_scale")), 32768);
    json_object_del(reply, "loss_scale");
    json_object_del(expected, "loss_scale");
    ck_assert_msg(json_equal(reply, expected), "%s", json_dumps(reply, 0));
    json_decref(reply);
    json_decref(expected);
}
END_TEST

START_TEST(test_training_option_parsers)
{
    paramd__error error = {0};
    json_t *value = parse("{\"steps\": 4, \"mode\": \"sum\"}");
    paramd__accumulate_config accumulate;
    ck_assert_int_eq(paramd__json_parse_accumulate(value, &accumulate, &error), PARAMD_OK);
    ck_assert(accumulate.steps == 4 && accumulate.mode == PARAMD__ACCUMULATE_SUM);
    json_t *description = paramd__json_accumulate(&accumulate);
    ck_assert(json_equal(description, value));
    json_decref(description);
    json_decref(value);
    value = parse("3");
    ck_assert_int_eq(paramd__json_parse_accumulate(value, &accumulate, &error), PARAMD_OK);
    ck_assert(accumulate.steps == 3 && accumulate.mode == PARAMD__ACCUMULATE_MEAN);
    json_decref(value);

    paramd__loss_scale_config loss_scale;
    bool given;
    value = parse("\"dynamic\"");
    ck_assert_int_eq(paramd__json_parse_loss_scale(value, &loss_scale, &given, &error),
                     PARAMD_OK);
    ck_assert(!given && loss_scale.init_scale == 65536 && loss_scale.growth_interval == 2000);
    json_decref(value);
    value = parse("{\"init_scale\": 128, \"growth_interval\": 10}");
    ck_assert_int_eq(paramd__json_parse_loss_scale(value, &loss_scale, &given, &error),
                     PARAMD_OK);
    ck_assert(given && loss_scale.init_scale == 128 && loss_scale.growth_factor == 2 &&
              loss_scale.backoff_factor == 0.5 && loss_scale.growth_interval == 10);
    json_decref(value);

    paramd__grad_noise_config noise;
    value = parse("{\"eta\": 0.3}");
    ck_assert_int_eq(paramd__json_parse_grad_noise(value, &noise, &error), PARAMD_OK);
    ck_assert(noise.enabled && noise.eta == 0.3 && noise.gamma == 0.55 && noise.seed == 0);
    json_decref(value);

    paramd__nonfinite_policy policy;
    value = parse("\"zero\"");
    ck_assert_int_eq(paramd__json_parse_nonfinite(value, &policy, &error), PARAMD_OK);
    ck_assert_int_eq(policy, PARAMD__NONFINITE_ZERO);
    json_decref(value);

    struct {
        int which; /* 0 accumulate, 1 loss_scale, 2 grad_noise, 3 nonfinite */
        const char *text, *needle;
    } bad[] = {
        {0, "0", "accumulate.steps: must be an integer >= 1, got 0"},
        {0, "2000000", "accumulate.steps: must be at most"},
        {0, "{\"steps\": 2, \"mode\": \"max\"}", "accumulate.mode"},
        {0, "{\"steps\": true}", "accumulate.steps: must be an integer >= 1, got a non-number"},
        {0, "[2]", "accumulate: must be"},
        {1, "{\"growth_interval\": 1.5}", "loss_scale.growth_interval: must be an integer >= 1, got 1.5"},
        {1, "{\"init_scale\": \"big\"}", "loss_scale.init_scale: must be a number"},
        {1, "{\"init_scale\": 0}", "loss_scale.init_scale"},
        {1, "true", "loss_scale: must be \"dynamic\""},
        {2, "{}", "grad_noise.eta: required"},
        {2, "{\"eta\": 1, \"seed\": -3}", "grad_noise.seed"},
        {2, "{\"eta\": 1, \"gamma\": -0.5}", "grad_noise.gamma"},
        {3, "\"Skip\"", "nonfinite: must be \"error\", \"skip\" or \"zero\", got \"Skip\""},
        {3, "null", "nonfinite: must be"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        value = parse(bad[i].text);
        int result = bad[i].which == 0   ? paramd__json_parse_accumulate(value, &accumulate, &error)
                     : bad[i].which == 1 ? paramd__json_parse_loss_scale(value, &loss_scale, &given,
                                                                         &error)
                     : bad[i].which == 2 ? paramd__json_parse_grad_noise(value, &noise, &error)
                                         : paramd__json_parse_nonfinite(value, &policy, &error);
        ck_assert_msg(result == PARAMD_E_BAD_REQUEST, "%s: %d", bad[i].text, result);
        ck_assert_error(error, PARAMD_E_BAD_REQUEST, bad[i].needle);
        json_decref(value);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("json_training");
    TCase *floats = tcase_create("floats");
    tcase_add_test(floats, test_decode_16_bit_chunks);
    tcase_add_test(floats, test_decode_16_bit_errors);
    tcase_add_test(floats, test_encode_16_bit_replies);
    suite_add_tcase(suite, floats);
    TCase *replies = tcase_create("replies");
    tcase_add_test(replies, test_push_reply_fields);
    tcase_add_test(replies, test_training_option_parsers);
    suite_add_tcase(suite, replies);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
