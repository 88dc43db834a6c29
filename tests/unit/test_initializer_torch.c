/*
 * test_initializer_torch.c - the torch.nn.init initializers (issue 7, item
 * 5) against PyTorch: the scales xavier_* and kaiming_* draw from, the
 * orthogonalisation torch.nn.init.orthogonal_ applies to a Gaussian matrix
 * (tests/conformance/init/init.json, written by
 * tests/conformance/generate_init_goldens.py), and the statistics of what
 * paramd's own seeded draws give.
 */
#include "test_util.h"

#include "initializer.h"
#include "json_api.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN PARAMD_TEST_DATA_DIR "/conformance/init/init.json"

static json_t *golden(void)
{
    json_error_t error;
    json_t *document = json_load_file(GOLDEN, 0, &error);
    ck_assert_msg(document != NULL, "%s: %s (run tests/conformance/generate_init_goldens.py)",
                  GOLDEN, error.text);
    return document;
}

/* An initializer from a golden case: name, shape and parameters by name
 * (choices by their names). */
static paramd__initializer from_case(const char *name, const json_t *shape,
                                     const json_t *parameters)
{
    const paramd__initializer_type *type = paramd__initializer_find(name);
    ck_assert_msg(type != NULL, "no initializer %s", name);
    paramd__initializer initializer;
    paramd__initializer_init(&initializer, type);
    int64_t dimensions[PARAMD__MAX_DIMENSIONS];
    int count = (int)json_array_size(shape);
    for (int d = 0; d < count; d++)
        dimensions[d] = json_integer_value(json_array_get(shape, (size_t)d));
    paramd__initializer_set_shape(&initializer, count, dimensions);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)parameters, key, value) {
        const paramd__hyperparameter_spec *spec = NULL;
        for (int i = 0; i < type->parameter_count; i++)
            if (strcmp(type->parameters[i].name, key) == 0)
                spec = &type->parameters[i];
        ck_assert_msg(spec != NULL, "%s has no parameter %s", name, key);
        if (spec->kind == PARAMD__HYPERPARAMETER_CHOICE) {
            int index = -1;
            for (int c = 0; spec->choices[c]; c++)
                if (strcmp(spec->choices[c], json_string_value(value)) == 0)
                    index = c;
            ck_assert_int_ge(index, 0);
            initializer.parameters[spec->slot] = index;
        } else {
            initializer.parameters[spec->slot] = json_number_value(value);
        }
    }
    paramd__error error = {0};
    ck_assert_msg(paramd__initializer_validate(&initializer, "init", &error) == PARAMD_OK, "%s",
                  error.message);
    return initializer;
}

static size_t element_count(const paramd__initializer *initializer)
{
    size_t count = 1;
    for (int d = 0; d < initializer->dimension_count; d++)
        count *= (size_t)initializer->shape[d];
    return count;
}

START_TEST(test_fan_scales_are_torchs)
{
    json_t *document = golden();
    size_t index;
    json_t *item;
    int cases = 0;
    json_array_foreach(json_object_get(document, "fans"), index, item) {
        const char *name = json_string_value(json_object_get(item, "init"));
        paramd__initializer initializer = from_case(name, json_object_get(item, "shape"),
                                                    json_object_get(item, "parameters"));
        bool uniform = strcmp(json_string_value(json_object_get(item, "draw")), "uniform") == 0;
        double expected = json_number_value(json_object_get(item, uniform ? "bound" : "std"));
        double scale = paramd__initializer_scale(&initializer);
        /* The same double operations as torch.nn.init, in the same order. */
        ck_assert_msg(scale == expected, "case %zu (%s): %.17g, torch %.17g", index, name, scale,
                      expected);
        /* And the draws: the shape's elements, repeated to 200k values by
         * filling a longer range of the same stream. */
        size_t count = 200000;
        float *values = malloc(count * sizeof *values);
        ck_assert_int_eq(paramd__initializer_fill(&initializer, values, count), PARAMD_OK);
        double sum = 0, squares = 0, largest = 0;
        for (size_t i = 0; i < count; i++) {
            sum += values[i];
            squares += (double)values[i] * values[i];
            largest = fabs(values[i]) > largest ? fabs(values[i]) : largest;
            if (uniform)
                ck_assert_msg(values[i] >= (float)-expected && values[i] < (float)expected,
                              "case %zu: %g outside [-%g, %g)", index, values[i], expected,
                              expected);
        }
        double mean = sum / (double)count, std = sqrt(squares / (double)count - mean * mean);
        double expected_std = uniform ? expected / sqrt(3.0) : expected;
        ck_assert_msg(fabs(mean) < 0.01 * expected_std, "case %zu: mean %g", index, mean);
        ck_assert_msg(fabs(std / expected_std - 1) < 0.01, "case %zu: std %g, expected %g", index,
                      std, expected_std);
        if (uniform)
            ck_assert_msg(largest > 0.999 * expected, "case %zu: largest %g of bound %g", index,
                          largest, expected);
        free(values);
        cases++;
    }
    ck_assert_int_eq(cases, 15);
    json_decref(document);
}
END_TEST

START_TEST(test_trunc_normal_distribution)
{
    json_t *document = golden();
    size_t index;
    json_t *item;
    json_t *shape = json_pack("[i]", 1000000);
    json_array_foreach(json_object_get(document, "trunc_normal"), index, item) {
        paramd__initializer initializer =
            from_case("trunc_normal", shape, json_object_get(item, "parameters"));
        initializer.seed = 11 + index;
        double a = initializer.parameters[2], b = initializer.parameters[3];
        size_t count = 1000000;
        float *values = malloc(count * sizeof *values);
        ck_assert_int_eq(paramd__initializer_fill(&initializer, values, count), PARAMD_OK);
        double sum = 0, squares = 0;
        for (size_t i = 0; i < count; i++) {
            ck_assert_msg(values[i] >= (float)a && values[i] <= (float)b,
                          "case %zu: %g outside [%g, %g]", index, values[i], a, b);
            sum += values[i];
            squares += (double)values[i] * values[i];
        }
        double mean = sum / (double)count, std = sqrt(squares / (double)count - mean * mean);
        double expected_mean = json_number_value(json_object_get(item, "mean"));
        double expected_std = json_number_value(json_object_get(item, "std"));
        /* Five standard errors of the mean, 0.5% of the deviation. */
        ck_assert_msg(fabs(mean - expected_mean) < 5 * expected_std / 1000, "case %zu: mean %.6g, "
                      "expected %.6g", index, mean, expected_mean);
        ck_assert_msg(fabs(std / expected_std - 1) < 0.005, "case %zu: std %.6g, expected %.6g",
                      index, std, expected_std);
        free(values);
    }
    json_decref(shape);
    json_decref(document);
}
END_TEST

START_TEST(test_orthogonalize_is_torchs)
{
    json_t *document = golden();
    size_t index;
    json_t *item;
    json_array_foreach(json_object_get(document, "orthogonal"), index, item) {
        const json_t *shape = json_object_get(item, "shape");
        size_t rows = (size_t)json_integer_value(json_array_get(shape, 0)), count = 1;
        for (size_t d = 0; d < json_array_size(shape); d++)
            count *= (size_t)json_integer_value(json_array_get(shape, d));
        const json_t *gaussian = json_object_get(item, "gaussian");
        const json_t *expected = json_object_get(item, "expected");
        ck_assert_uint_eq(json_array_size(gaussian), count);
        double *g = malloc(count * sizeof *g);
        float *q = malloc(count * sizeof *q);
        for (size_t i = 0; i < count; i++)
            g[i] = json_number_value(json_array_get(gaussian, i));
        ck_assert_int_eq(paramd__orthogonalize(g, rows, count / rows,
                                               json_number_value(json_object_get(item, "gain")),
                                               q),
                         PARAMD_OK);
        /* torch's QR runs in float32, paramd's in double. */
        for (size_t i = 0; i < count; i++) {
            double want = json_number_value(json_array_get(expected, i));
            ck_assert_msg(fabs(q[i] - want) < 2e-6, "case %zu, element %zu: %.9g, torch %.9g",
                          index, i, q[i], want);
        }
        free(g);
        free(q);
    }
    json_decref(document);
}
END_TEST

/* Rows (or columns, for a wide matrix) are orthonormal times gain. */
static void check_orthonormal(const float *q, size_t rows, size_t cols, double gain)
{
    bool wide = rows < cols;
    size_t vectors = wide ? rows : cols, length = wide ? cols : rows;
    for (size_t x = 0; x < vectors; x++)
        for (size_t y = 0; y < vectors; y++) {
            double dot = 0;
            for (size_t k = 0; k < length; k++)
                dot += wide ? (double)q[x * cols + k] * q[y * cols + k]
                            : (double)q[k * cols + x] * q[k * cols + y];
            double want = x == y ? gain * gain : 0;
            ck_assert_msg(fabs(dot - want) < 1e-5, "%zu x %zu: <%zu, %zu> = %g", rows, cols, x, y,
                          dot);
        }
}

START_TEST(test_orthogonal_initializer)
{
    static const int64_t shapes[][3] = {{64, 32, 1}, {32, 64, 1}, {8, 4, 2}, {1, 16, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        paramd__initializer initializer;
        paramd__initializer_init(&initializer, paramd__initializer_find("orthogonal"));
        initializer.parameters[0] = 1.5;
        initializer.seed = 3;
        paramd__initializer_set_shape(&initializer, 3, shapes[s]);
        size_t count = element_count(&initializer), rows = (size_t)shapes[s][0];
        float *whole = malloc(count * sizeof *whole), *again = malloc(count * sizeof *again);
        ck_assert_int_eq(paramd__initializer_fill(&initializer, whole, count), PARAMD_OK);
        check_orthonormal(whole, rows, count / rows, 1.5);
        /* Reproducible, and a shard's range is that range of the whole. */
        ck_assert_int_eq(paramd__initializer_fill(&initializer, again, count), PARAMD_OK);
        ck_assert(memcmp(whole, again, count * sizeof *whole) == 0);
        size_t offset = count / 3, length = count / 2;
        ck_assert_int_eq(paramd__initializer_fill_range(&initializer, again, offset, length),
                         PARAMD_OK);
        ck_assert(memcmp(whole + offset, again, length * sizeof *whole) == 0);
        /* Another seed, another matrix. */
        initializer.seed = 4;
        ck_assert_int_eq(paramd__initializer_fill(&initializer, again, count), PARAMD_OK);
        ck_assert(memcmp(whole, again, count * sizeof *whole) != 0);
        free(whole);
        free(again);
    }
}
END_TEST

START_TEST(test_ones_and_the_table)
{
    ck_assert_int_eq(paramd__initializer_type_count, 11);
    static const char *names[] = {"zeros", "constant", "uniform", "normal", "ones",
                                  "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                  "kaiming_normal", "trunc_normal", "orthogonal"};
    for (int i = 0; i < paramd__initializer_type_count; i++)
        ck_assert_str_eq(paramd__initializer_types[i]->name, names[i]);
    paramd__initializer ones;
    paramd__initializer_init(&ones, paramd__initializer_find("ones"));
    float values[5] = {0};
    ck_assert_int_eq(paramd__initializer_fill(&ones, values, 5), PARAMD_OK);
    for (int i = 0; i < 5; i++)
        ck_assert(values[i] == 1.0f);
    /* calculate_gain. */
    ck_assert_double_eq(paramd__initializer_gain(0, 0), sqrt(2.0));
    ck_assert_double_eq(paramd__initializer_gain(0, 0.01), sqrt(2.0 / (1 + 0.01 * 0.01)));
}
END_TEST

/* Through the JSON API: what is refused, and the field each error names. */
START_TEST(test_json_errors_name_the_field)
{
    static const struct {
        const char *body, *names;
    } cases[] = {
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"b\", "
         "\"shape\": [8], \"init\": {\"name\": \"xavier_uniform\"}}]}",
         "tensors[0].init: xavier_uniform needs a tensor of at least 2 dimensions"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8, 4], \"init\": {\"name\": \"kaiming_normal\", \"mode\": \"fan_sideways\"}}]}",
         "tensors[0].init.mode: must be one of null, \"fan_in\", \"fan_out\""},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8, 4], \"init\": {\"name\": \"kaiming_uniform\", \"nonlinearity\": 3}}]}",
         "tensors[0].init.nonlinearity: must be a string"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8], \"init\": {\"name\": \"trunc_normal\", \"a\": 1, \"b\": -1}}]}",
         "tensors[0].init: trunc_normal needs a < b"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8], \"init\": {\"name\": \"trunc_normal\", \"std\": 0}}]}",
         "tensors[0].init.std: must be in (0, inf)"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8], \"init\": {\"name\": \"orthogonal\"}}]}",
         "tensors[0].init: orthogonal needs a tensor of at least 2 dimensions"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [8], \"init\": {\"name\": \"he\"}}]}",
         "unknown initializer \"he\" (known: zeros, constant, uniform, normal, ones, "
         "xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, trunc_normal, "
         "orthogonal)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads(cases[i].body, 0, NULL);
        ck_assert_ptr_nonnull(body);
        paramd__model_spec spec;
        paramd__error error = {0};
        int result = paramd__json_parse_model_spec(body, "m", &spec, &error);
        ck_assert_int_eq(result, PARAMD_E_BAD_REQUEST);
        ck_assert_msg(strstr(error.message, cases[i].names) != NULL, "case %zu: \"%s\"", i,
                      error.message);
        paramd__json_model_spec_free(&spec);
        json_decref(body);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("initializer_torch");
    TCase *tc = tcase_create("torch.nn.init");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fan_scales_are_torchs);
    tcase_add_test(tc, test_trunc_normal_distribution);
    tcase_add_test(tc, test_orthogonalize_is_torchs);
    tcase_add_test(tc, test_orthogonal_initializer);
    tcase_add_test(tc, test_ones_and_the_table);
    tcase_add_test(tc, test_json_errors_name_the_field);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
