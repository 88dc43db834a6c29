/*
 * test_after_step.c - the stages after the optimizer step (issue 7, items 3,
 * 4 and 6; server/after_step.h) against PyTorch: each golden of
 * tests/conformance/after_step (generate_after_step_goldens.py) is created
 * through the JSON API, trained through the core with the same gradients,
 * and its weights, EMA and SWA compared with torch's after every step - bit
 * for bit, except the orthogonal retraction (QR in double here, in double
 * and rounded there: a tolerance).  Then checkpoint-free rules: errors that
 * name the field, and an orthonormal matrix is its own retraction.
 */
#include "test_util.h"

#include "after_step.h"
#include "core.h"
#include "json_api.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define AFTER_STEP_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/after_step"

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

static int create(const char *name, const json_t *body, paramd__model **model,
                  paramd__error *error)
{
    paramd__model_spec spec;
    int result = paramd__json_parse_model_spec(body, name, &spec, error);
    if (result == PARAMD_OK)
        result = paramd__core_create_model(&server, &spec, model, error);
    paramd__json_model_spec_free(&spec);
    return result;
}

static void compare(const float *got, const json_t *want, size_t count, double tolerance,
                    const char *what)
{
    ck_assert_uint_eq(json_array_size(want), count);
    for (size_t i = 0; i < count; i++) {
        float expected = (float)json_number_value(json_array_get(want, i));
        if (tolerance == 0)
            ck_assert_msg(memcmp(&got[i], &expected, sizeof expected) == 0,
                          "%s[%zu]: %.9g, torch %.9g", what, i, got[i], expected);
        else
            ck_assert_msg(fabsf(got[i] - expected) <= tolerance * (1 + fabsf(expected)),
                          "%s[%zu]: %.9g, torch %.9g", what, i, got[i], expected);
    }
}

static void replay(const char *path)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
    const char *name = json_string_value(json_object_get(golden, "name"));
    double tolerance = json_number_value(json_object_get(golden, "tolerance"));
    paramd__model *model = NULL;
    paramd__error error = {0};
    ck_assert_msg(create(name, json_object_get(golden, "model"), &model, &error) == PARAMD_OK,
                  "%s: %s", name, error.message);
    size_t n = model->tensor_count;
    paramd__tensor_io *items = calloc(n, sizeof *items);
    float **grads = calloc(n, sizeof *grads), **weights = calloc(n, sizeof *weights);
    for (size_t k = 0; k < n; k++) {
        grads[k] = malloc(model->tensors[k]->count * sizeof(float));
        weights[k] = malloc(model->tensors[k]->count * sizeof(float));
    }
    size_t index;
    json_t *step;
    json_array_foreach(json_object_get(golden, "steps"), index, step) {
        for (size_t k = 0; k < n; k++) {
            paramd__tensor *tensor = model->tensors[k];
            const json_t *g = json_object_get(json_object_get(step, "grads"), tensor->name);
            for (size_t i = 0; i < tensor->count; i++)
                grads[k][i] = (float)json_number_value(json_array_get(g, i));
            items[k] = (paramd__tensor_io){.tensor = tensor, .grad = grads[k],
                                           .grad_count = tensor->count, .weights = weights[k]};
        }
        paramd__push_outcome outcome;
        paramd__push_options options = {NAN, NAN, NAN, 0};
        ck_assert_msg(paramd__core_push_ex(&server, model, items, n, &options, &outcome,
                                           &error) == PARAMD_OK,
                      "%s: %s", name, error.message);
        for (size_t k = 0; k < n; k++) {
            char what[160];
            snprintf(what, sizeof what, "%s step %zu %s", name, index + 1, model->tensors[k]->name);
            /* The reply's weights, which the step (or the stages) wrote. */
            compare(weights[k], json_object_get(json_object_get(step, "weights"),
                                                model->tensors[k]->name),
                    model->tensors[k]->count, tolerance, what);
        }
        static const char *const averages[] = {"ema", "swa"};
        for (int a = 0; a < 2; a++) {
            const json_t *expected = json_object_get(step, averages[a]);
            if (expected == NULL)
                continue;
            uint64_t at;
            ck_assert_int_eq(paramd__core_pull_state(&server, model, averages[a], items, n, &at,
                                                     &error),
                             PARAMD_OK);
            for (size_t k = 0; k < n; k++) {
                char what[160];
                snprintf(what, sizeof what, "%s step %zu %s of %s", name, index + 1,
                         averages[a], model->tensors[k]->name);
                compare(weights[k], json_object_get(expected, model->tensors[k]->name),
                        model->tensors[k]->count, tolerance, what);
            }
        }
    }
    for (size_t k = 0; k < n; k++) {
        free(grads[k]);
        free(weights[k]);
    }
    free(grads);
    free(weights);
    free(items);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
    json_decref(golden);
}

START_TEST(test_replays_torch)
{
    int cases = paramd_test_for_each_golden(AFTER_STEP_DIRECTORY, "tests/conformance/generate_after_step_goldens.py", replay);
    ck_assert_int_ge(cases, 7);
}
END_TEST

START_TEST(test_orthonormal_matrix_is_its_own_retraction)
{
    /* A rotation and a 3 x 2 matrix with orthonormal columns. */
    float rotation[4] = {0.6f, -0.8f, 0.8f, 0.6f};
    float tall[6] = {1, 0, 0, 1, 0, 0};
    int64_t square[2] = {2, 2}, three_by_two[2] = {3, 2};
    paramd__constraint orthogonal = {PARAMD__CONSTRAINT_ORTHOGONAL, 0};
    float before[4];
    memcpy(before, rotation, sizeof before);
    ck_assert_int_eq(paramd__constraint_apply(&orthogonal, rotation, 4, 2, square), PARAMD_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(rotation[i], before[i], 1e-6);
    ck_assert_int_eq(paramd__constraint_apply(&orthogonal, tall, 6, 2, three_by_two), PARAMD_OK);
    ck_assert_float_eq_tol(tall[0], 1, 1e-6);
    ck_assert_float_eq_tol(tall[3], 1, 1e-6);
    ck_assert_float_eq_tol(tall[1], 0, 1e-6);
    /* nonneg and max_norm by hand. */
    float values[4] = {-1, 2, 3, 4}; /* rows (-1, 2) and (3, 4), norms sqrt(5) and 5 */
    paramd__constraint max_norm = {PARAMD__CONSTRAINT_MAX_NORM, 3.0};
    ck_assert_int_eq(paramd__constraint_apply(&max_norm, values, 4, 2, square), PARAMD_OK);
    ck_assert(values[0] == -1 && values[1] == 2); /* under the limit: unchanged */
    ck_assert_float_eq_tol(values[2], 3 * 3 / 5.0, 1e-6);
    ck_assert_float_eq_tol(values[3], 4 * 3 / 5.0, 1e-6);
    paramd__constraint nonneg = {PARAMD__CONSTRAINT_NONNEG, 0};
    ck_assert_int_eq(paramd__constraint_apply(&nonneg, values, 4, 2, square), PARAMD_OK);
    ck_assert(values[0] == 0 && values[1] == 2);
}
END_TEST

START_TEST(test_errors_name_the_field)
{
    static const struct {
        const char *body, *names;
    } cases[] = {
        {"{\"optimizer\": {\"name\": \"Lookahead\", \"k\": 0, \"base\": {\"name\": \"SGD\", "
         "\"lr\": 0.1}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.k"},
        {"{\"optimizer\": {\"name\": \"Lookahead\", \"alpha\": 1.5, \"base\": {\"name\": \"SGD\", "
         "\"lr\": 0.1}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.alpha"},
        {"{\"optimizer\": {\"name\": \"Lookahead\"}, \"tensors\": [{\"name\": \"w\", \"shape\": "
         "[2]}]}",
         "optimizer.base: required"},
        {"{\"optimizer\": {\"name\": \"Lookahead\", \"base\": {\"name\": \"SGD\", \"lr\": 0.1}, "
         "\"kk\": 2}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.kk"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"averaging\": {\"ema\": {\"decay\": "
         "1}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "averaging.ema.decay"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"averaging\": {\"swa\": {\"start\": "
         "0}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "averaging.swa.start"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"averaging\": {\"sma\": {}}, "
         "\"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "averaging.sma"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [2], \"constraint\": \"unit\"}]}",
         "tensors[0].constraint: unknown constraint \"unit\""},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [2], \"constraint\": \"orthogonal\"}]}",
         "tensors[0].constraint: orthogonal needs a tensor of at least 2 dimensions"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [2, 2], \"constraint\": {\"name\": \"max_norm\"}}]}",
         "tensors[0].constraint.max_norm: required"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [2, 2], \"constraint\": {\"name\": \"max_norm\", \"max_norm\": -1}}]}",
         "tensors[0].constraint.max_norm: must be a number > 0"},
        {"{\"optimizer\": {\"name\": \"LBFGS\"}, \"averaging\": {\"ema\": {}}, \"tensors\": "
         "[{\"name\": \"w\", \"shape\": [2]}]}",
         "averaging: not available with LBFGS"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads(cases[i].body, 0, NULL);
        ck_assert_msg(body != NULL, "case %zu", i);
        paramd__model *model = NULL;
        paramd__error error = {0};
        int result = create("refused", body, &model, &error);
        json_decref(body);
        ck_assert_msg(result != PARAMD_OK && strstr(error.message, cases[i].names),
                      "case %zu: %d \"%s\"", i, result, error.message);
        ck_assert_ptr_null(model);
    }
}
END_TEST

START_TEST(test_description_shows_the_wrapper)
{
    json_t *body = json_loads("{\"optimizer\": {\"name\": \"Lookahead\", \"k\": 4, \"base\": "
                              "{\"name\": \"SGD\", \"lr\": 0.1}}, \"averaging\": {\"ema\": {}}, "
                              "\"tensors\": [{\"name\": \"w\", \"shape\": [2, 2], "
                              "\"constraint\": \"nonneg\"}]}",
                              0, NULL);
    paramd__model *model = NULL;
    paramd__error error = {0};
    ck_assert_msg(create("shown", body, &model, &error) == PARAMD_OK, "%s", error.message);
    json_decref(body);
    json_t *optimizer = paramd__json_model_optimizer(model);
    ck_assert_str_eq(json_string_value(json_object_get(optimizer, "name")), "Lookahead");
    ck_assert_int_eq(json_integer_value(json_object_get(optimizer, "k")), 4);
    ck_assert_double_eq(json_number_value(json_object_get(optimizer, "alpha")), 0.5);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(optimizer, "base"),
                                                       "name")),
                     "SGD");
    json_decref(optimizer);
    ck_assert(model->averaging.ema && model->averaging.ema_decay == 0.999);
    ck_assert_int_eq(model->extras[0].constraint.kind, PARAMD__CONSTRAINT_NONNEG);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("after_step");
    TCase *tc = tcase_create("after_step");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replays_torch);
    tcase_add_test(tc, test_orthonormal_matrix_is_its_own_retraction);
    tcase_add_test(tc, test_errors_name_the_field);
    tcase_add_test(tc, test_description_shows_the_wrapper);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
