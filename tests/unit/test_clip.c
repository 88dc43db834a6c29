/*
 * test_clip.c - gradient clipping (server/clip.c) against torch.
 *
 * Each JSON file in tests/conformance/clip (written by
 * tests/conformance/generate_clip_goldens.py) holds multi-tensor gradients
 * before and after torch.nn.utils.clip_grad_norm_ or clip_grad_value_, and
 * torch's total norm.  They are replayed through paramd's clip functions with
 * a relative tolerance of 1e-6: torch reduces in float32, in its own order,
 * where paramd accumulates in double, so norms (and the coefficients derived
 * from them) may differ in the last float32 bits.  Adaptive gradient clipping
 * has no torch function; it is checked against a hand computation.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "clip.h"
#include "json_api.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/clip"
#define TOLERANCE 1e-6

static void assert_close(double expected, double actual, const char *what, const char *name,
                         size_t index)
{
    double scale = fmax(fabs(expected), fabs(actual));
    ck_assert_msg(fabs(expected - actual) <= TOLERANCE * scale,
                  "%s: %s[%zu]: torch %.9g, paramd %.9g", name, what, index, expected, actual);
}

static float *read_floats(const json_t *array, size_t *count)
{
    *count = json_array_size(array);
    float *values = malloc((*count ? *count : 1) * sizeof *values);
    ck_assert_ptr_nonnull(values);
    for (size_t i = 0; i < *count; i++)
        values[i] = (float)json_number_value(json_array_get(array, i));
    return values;
}

/* Replays one golden file; returns 1. */
static int replay(const char *path)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
    const char *name = json_string_value(json_object_get(golden, "name"));
    paramd__clip_config clip;
    paramd__error error = {0};
    ck_assert_msg(paramd__json_parse_clip(json_object_get(golden, "clip"), &clip, &error) ==
                      PARAMD_OK,
                  "%s: %s", name, error.message);
    const json_t *tensors = json_object_get(golden, "tensors");
    size_t tensor_count = json_array_size(tensors);
    ck_assert_uint_gt(tensor_count, 0);
    float **grads = calloc(tensor_count, sizeof *grads);
    size_t *counts = calloc(tensor_count, sizeof *counts);
    double *norms = calloc(tensor_count, sizeof *norms);
    for (size_t t = 0; t < tensor_count; t++) {
        grads[t] = read_floats(json_object_get(json_array_get(tensors, t), "grad"), &counts[t]);
        norms[t] = paramd__clip_norm(grads[t], counts[t], clip.norm_type);
    }
    float coefficient = 1.0f;
    if (clip.mode == PARAMD__CLIP_NORM) {
        double total = paramd__clip_total_norm(norms, tensor_count, clip.norm_type);
        assert_close(json_number_value(json_object_get(golden, "total_norm")), total,
                     "total_norm", name, 0);
        coefficient = paramd__clip_coefficient(clip.max_norm, total);
    } else {
        ck_assert_int_eq(clip.mode, PARAMD__CLIP_VALUE);
    }
    for (size_t t = 0; t < tensor_count; t++) {
        size_t count;
        float *expected =
            read_floats(json_object_get(json_array_get(tensors, t), "clipped"), &count);
        ck_assert_uint_eq(count, counts[t]);
        float *out = malloc((count ? count : 1) * sizeof *out);
        if (clip.mode == PARAMD__CLIP_NORM)
            paramd__clip_scale(grads[t], out, count, coefficient);
        else
            paramd__clip_value(grads[t], out, count, (float)clip.value);
        for (size_t i = 0; i < count; i++)
            assert_close(expected[i], out[i], "clipped", name, i);
        free(out);
        free(expected);
        free(grads[t]);
    }
    free(grads);
    free(counts);
    free(norms);
    json_decref(golden);
    return 1;
}

START_TEST(test_clipping_matches_pytorch)
{
    DIR *directory = opendir(CLIP_DIRECTORY);
    ck_assert_msg(directory != NULL, "cannot open %s (run tests from the repository root)",
                  CLIP_DIRECTORY);
    struct dirent *entry;
    int replayed = 0;
    while ((entry = readdir(directory)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CLIP_DIRECTORY, entry->d_name);
        replayed += replay(path);
    }
    closedir(directory);
    printf("clip: %d PyTorch cases replayed\n", replayed);
    ck_assert_int_ge(replayed, 10);
}
END_TEST

START_TEST(test_agc_by_hand)
{
    /* A [2, 2] tensor.  Row 0: ||w|| = 5, limit 0.1 * 5 = 0.5, ||g|| = 5 >
     * 0.5, so g *= 0.5 / 5.  Row 1: ||w|| = 0 < eps = 1e-3, limit 1e-4,
     * ||g|| = 2, so g *= 1e-4 / 2. */
    const float weights[4] = {3, 4, 0, 0};
    const float grad[4] = {3, -4, 0, 2};
    const int64_t shape[2] = {2, 2};
    float out[4];
    paramd__clip_agc(grad, out, weights, 4, 2, shape, 0.1, 1e-3);
    const double expected[4] = {0.3, -0.4, 0, 1e-4};
    for (size_t i = 0; i < 4; i++)
        assert_close(expected[i], out[i], "agc 2-D", "hand", i);
    /* A 1-D tensor is one unit: ||w|| = 2, limit 0.2, ||g|| = 0.1: unchanged. */
    const float w1[3] = {0, 2, 0}, g1[3] = {0.06f, 0, -0.08f};
    const int64_t shape1[1] = {3};
    float o1[3];
    paramd__clip_agc(g1, o1, w1, 3, 1, shape1, 0.1, 1e-3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_float_eq(o1[i], g1[i]);
    /* ... but clipped when larger: ||g|| = 1 > 0.2, g *= 0.2. */
    const float g2[3] = {0.6f, 0, -0.8f};
    paramd__clip_agc(g2, o1, w1, 3, 1, shape1, 0.1, 1e-3);
    assert_close(0.12, o1[0], "agc 1-D", "hand", 0);
    assert_close(-0.16, o1[2], "agc 1-D", "hand", 2);
    /* A scalar (0-D). */
    const float w0 = 1, g0 = -3;
    float o0;
    paramd__clip_agc(&g0, &o0, &w0, 1, 0, shape, 0.5, 1e-3);
    assert_close(-0.5, o0, "agc 0-D", "hand", 0);
}
END_TEST

START_TEST(test_norms_by_hand)
{
    const float g[4] = {3, -4, 0, 1};
    ck_assert_double_eq_tol(paramd__clip_norm(g, 4, 2), sqrt(26.0), 1e-12);
    ck_assert_double_eq_tol(paramd__clip_norm(g, 4, 1), 8.0, 1e-12);
    ck_assert_double_eq(paramd__clip_norm(g, 4, INFINITY), 4.0);
    ck_assert_double_eq_tol(paramd__clip_norm(g, 4, 3), cbrt(27.0 + 64 + 1), 1e-12);
    const double norms[2] = {3, 4};
    ck_assert_double_eq_tol(paramd__clip_total_norm(norms, 2, 2), 5.0, 1e-12);
    ck_assert_double_eq(paramd__clip_total_norm(norms, 2, INFINITY), 4.0);
    ck_assert_float_eq(paramd__clip_coefficient(1.0, 0.5), 1.0f);
    ck_assert_float_eq(paramd__clip_coefficient(1.0, 4.0), (float)(1.0 / (4.0 + 1e-6)));
}
END_TEST

static const struct {
    const char *text;
    const char *message;
} bad_clips[] = {
    {"{}", "clip: give exactly one of value, max_norm and agc"},
    {"{\"value\": 1, \"max_norm\": 1}", "clip: give exactly one of value, max_norm and agc"},
    {"{\"value\": 0}", "clip.value: must be > 0 and finite"},
    {"{\"value\": \"1\"}", "clip.value: must be a number"},
    {"{\"max_norm\": -1}", "clip.max_norm: must be > 0 and finite"},
    {"{\"max_norm\": 1, \"norm_type\": 0}", "clip.norm_type: must be > 0 or \"inf\""},
    {"{\"max_norm\": 1, \"norm_type\": \"max\"}", "clip.norm_type: must be a number > 0 or \"inf\""},
    {"{\"max_norm\": 1, \"per_tensor\": 1}", "clip.per_tensor: must be true or false"},
    {"{\"agc\": 0}", "clip.agc: must be > 0 and finite"},
    {"{\"agc\": 0.01, \"eps\": 0}", "clip.eps: must be > 0 and finite"},
    {"{\"value\": 1, \"eps\": 1}", "clip.eps: only with agc"},
    {"{\"agc\": 1, \"norm_type\": 1}", "clip.norm_type: only with max_norm"},
    {"{\"max_norm\": 1, \"foo\": 1}", "clip.foo: unknown field (expected value, max_norm, "
                                      "norm_type, per_tensor, agc or eps)"},
    {"[1]", "clip: must be an object, e.g. {\"max_norm\": 1.0}"},
};

START_TEST(test_bad_configurations_name_the_field)
{
    for (size_t i = 0; i < sizeof bad_clips / sizeof bad_clips[0]; i++) {
        json_t *object = json_loads(bad_clips[i].text, JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(object);
        paramd__clip_config clip;
        paramd__error error = {0};
        ck_assert_int_eq(paramd__json_parse_clip(object, &clip, &error), PARAMD_E_BAD_REQUEST);
        ck_assert_str_eq(error.message, bad_clips[i].message);
        json_decref(object);
    }
}
END_TEST

START_TEST(test_description_fills_in_defaults)
{
    static const struct {
        const char *text, *description;
    } cases[] = {
        {"{\"max_norm\": 1}", "{\"max_norm\":1.0,\"norm_type\":2.0,\"per_tensor\":false}"},
        {"{\"max_norm\": 1, \"norm_type\": \"inf\", \"per_tensor\": true}",
         "{\"max_norm\":1.0,\"norm_type\":\"inf\",\"per_tensor\":true}"},
        {"{\"agc\": 0.01}", "{\"agc\":0.01,\"eps\":0.001}"},
        {"{\"value\": 0.5}", "{\"value\":0.5}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *object = json_loads(cases[i].text, 0, NULL);
        paramd__clip_config clip;
        paramd__error error = {0};
        ck_assert_int_eq(paramd__json_parse_clip(object, &clip, &error), PARAMD_OK);
        json_t *description = paramd__json_clip(&clip);
        char *text = json_dumps(description, JSON_COMPACT | JSON_SORT_KEYS);
        ck_assert_str_eq(text, cases[i].description);
        free(text);
        json_decref(description);
        json_decref(object);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("clip");
    TCase *golden = tcase_create("pytorch");
    tcase_add_test(golden, test_clipping_matches_pytorch);
    suite_add_tcase(suite, golden);
    TCase *hand = tcase_create("hand");
    tcase_add_test(hand, test_agc_by_hand);
    tcase_add_test(hand, test_norms_by_hand);
    suite_add_tcase(suite, hand);
    TCase *validation = tcase_create("validation");
    tcase_add_test(validation, test_bad_configurations_name_the_field);
    tcase_add_test(validation, test_description_fills_in_defaults);
    suite_add_tcase(suite, validation);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
