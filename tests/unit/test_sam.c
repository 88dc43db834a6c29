/*
 * test_sam.c - SAM and ASAM held by the server (issue 7, item 2; sam.h):
 * each golden of tests/conformance/sam (generate_sam_goldens.py, the
 * reference implementation in torch operations) is replayed through the
 * core, two pushes per step from one worker: the ascent push must answer
 * the perturbed weights torch's first_step makes (to 1e-6: torch sums the
 * norm's squares in its own vectorised order), and the descent push the
 * weights after the base optimizer's step, bit for bit.  Then: workers
 * keep their own phase, a refused descent changes nothing, and the momentum
 * variant's perturbation by hand.
 */
#include "test_util.h"

#include "core.h"
#include "json_api.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SAM_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/sam"

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

static paramd__model *create(const char *name, const char *text, const json_t *body)
{
    json_t *parsed = body ? NULL : json_loads(text, 0, NULL);
    paramd__model_spec spec;
    paramd__error error = {0};
    paramd__model *model = NULL;
    int result = paramd__json_parse_model_spec(body ? body : parsed, name, &spec, &error);
    if (result == PARAMD_OK)
        result = paramd__core_create_model(&server, &spec, &model, &error);
    paramd__json_model_spec_free(&spec);
    json_decref(parsed);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", name, error.message);
    return model;
}

/* Pushes every tensor's gradient from `grads` ({name: [...]}) as `worker`;
 * the reply's weights land in out[k]. */
static int push(paramd__model *model, const json_t *grads, const char *worker, float **grad,
                float **out, paramd__push_outcome *outcome, paramd__error *error)
{
    paramd__tensor_io items[8];
    for (size_t k = 0; k < model->tensor_count; k++) {
        paramd__tensor *tensor = model->tensors[k];
        const json_t *values = json_object_get(grads, tensor->name);
        for (size_t i = 0; i < tensor->count; i++)
            grad[k][i] = (float)json_number_value(json_array_get(values, i));
        items[k] = (paramd__tensor_io){.tensor = tensor, .grad = grad[k],
                                       .grad_count = tensor->count, .weights = out[k]};
    }
    paramd__push_options options = {NAN, NAN, NAN, 0, worker};
    return paramd__core_push_ex(&server, model, items, model->tensor_count, &options, outcome,
                                error);
}

/* tolerance 0: bit for bit. */
static void expect(paramd__model *model, float **out, const json_t *want, const char *what,
                   size_t step, float tolerance)
{
    for (size_t k = 0; k < model->tensor_count; k++) {
        const json_t *values = json_object_get(want, model->tensors[k]->name);
        for (size_t i = 0; i < model->tensors[k]->count; i++) {
            float expected = (float)json_number_value(json_array_get(values, i));
            bool same = tolerance == 0
                            ? memcmp(&out[k][i], &expected, sizeof expected) == 0
                            : fabsf(out[k][i] - expected) <= tolerance * (1 + fabsf(expected));
            ck_assert_msg(same,
                          "%s step %zu: %s[%zu] %.9g, reference %.9g", what, step,
                          model->tensors[k]->name, i, out[k][i], expected);
        }
    }
}

static void replay(const char *path)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
    const char *name = json_string_value(json_object_get(golden, "name"));
    paramd__model *model = create(name, NULL, json_object_get(golden, "model"));
    float *grad[8], *out[8];
    for (size_t k = 0; k < model->tensor_count; k++) {
        grad[k] = malloc(model->tensors[k]->count * sizeof(float));
        out[k] = malloc(model->tensors[k]->count * sizeof(float));
    }
    size_t index;
    json_t *step;
    json_array_foreach(json_object_get(golden, "steps"), index, step) {
        paramd__push_outcome outcome;
        paramd__error error = {0};
        ck_assert_msg(push(model, json_object_get(step, "ascent_grads"), "w0", grad, out,
                           &outcome, &error) == PARAMD_OK,
                      "%s: %s", name, error.message);
        ck_assert(outcome.has_sam && outcome.sam_ascent);
        ck_assert_uint_eq(outcome.step, index); /* no step yet */
        char what[160];
        snprintf(what, sizeof what, "%s ascent", name);
        /* torch's float norm sums in its own vectorised order, so ||g|| (and
         * the perturbation) may differ from paramd's in the last bit. */
        expect(model, out, json_object_get(step, "perturbed"), what, index + 1, 1e-6f);
        ck_assert_msg(push(model, json_object_get(step, "descent_grads"), "w0", grad, out,
                           &outcome, &error) == PARAMD_OK,
                      "%s: %s", name, error.message);
        ck_assert(outcome.has_sam && !outcome.sam_ascent);
        ck_assert_uint_eq(outcome.step, index + 1);
        snprintf(what, sizeof what, "%s descent", name);
        /* The step itself runs from the unperturbed weights: bit for bit. */
        expect(model, out, json_object_get(step, "weights"), what, index + 1, 0);
    }
    for (size_t k = 0; k < model->tensor_count; k++) {
        free(grad[k]);
        free(out[k]);
    }
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
    json_decref(golden);
}

START_TEST(test_replays_the_reference)
{
    int cases = paramd_test_for_each_golden(SAM_DIRECTORY, "tests/conformance/generate_sam_goldens.py", replay);
    ck_assert_int_ge(cases, 3);
}
END_TEST

START_TEST(test_workers_keep_their_own_phase)
{
    /* SGD lr 1, w = [3, 4]: ||g|| = 5 for g = [3, 4], rho 0.5: e = g / 10. */
    paramd__model *model = create("phases", "{\"optimizer\": {\"name\": \"SAM\", \"rho\": 0.5, "
                                            "\"base\": {\"name\": \"SGD\", \"lr\": 1}}, "
                                            "\"tensors\": [{\"name\": \"w\", \"shape\": [2], "
                                            "\"values\": [3, 4]}]}",
                                  NULL);
    json_t *g = json_pack("{s:[f,f]}", "w", 3.0, 4.0), *bad = json_pack("{s:[f,f]}", "w", 1.0, 1.0);
    float grad_buffer[2], out_buffer[2], *grad[1] = {grad_buffer}, *out[1] = {out_buffer};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(push(model, g, "a", grad, out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.sam_ascent);
    ck_assert_float_eq_tol(out_buffer[0], 3.3f, 1e-6);
    ck_assert_float_eq_tol(out_buffer[1], 4.4f, 1e-6);
    /* Worker b's first push is its own ascent, not a's descent. */
    ck_assert_int_eq(push(model, g, "b", grad, out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.sam_ascent);
    ck_assert(model->tensors[0]->values[0] == 3); /* nothing stepped */
    /* a's descent steps: w - g. */
    ck_assert_int_eq(push(model, g, "a", grad, out, &outcome, &error), PARAMD_OK);
    ck_assert(!outcome.sam_ascent);
    ck_assert(out_buffer[0] == 0 && out_buffer[1] == 0);
    /* b's descent refused (a wrong length) changes nothing: b still owes it. */
    paramd__tensor_io short_item = {.tensor = model->tensors[0], .grad = grad_buffer,
                                    .grad_count = 1, .weights = out_buffer};
    paramd__push_options options = {NAN, NAN, NAN, 0, "b"};
    ck_assert_int_ne(paramd__core_push_ex(&server, model, &short_item, 1, &options, &outcome,
                                          &error),
                     PARAMD_OK);
    /* A non-finite descent under the policy "error" is refused after the
     * phase was read: the mark must come back. */
    float nan_values[2] = {1.0f, NAN};
    paramd__tensor_io nan_item = {.tensor = model->tensors[0], .grad = nan_values,
                                  .grad_count = 2, .weights = out_buffer};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, &nan_item, 1, &options, &outcome,
                                          &error),
                     PARAMD_E_NON_FINITE);
    ck_assert(model->tensors[0]->values[0] == 0); /* unchanged */
    ck_assert_int_eq(push(model, bad, "b", grad, out, &outcome, &error), PARAMD_OK);
    ck_assert(!outcome.sam_ascent);
    ck_assert(out_buffer[0] == -1 && out_buffer[1] == -1);
    json_decref(g);
    json_decref(bad);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_momentum_variant)
{
    /* SGD lr 1 momentum 0.5, w = [0, 0]: the first push (g = [3, 4]) steps
     * w = -g and sets buf = g; the reply is perturbed along buf: w + rho
     * buf / ||buf|| = [-3, -4] + 2 * [0.6, 0.8]. */
    paramd__model *model = create("momentum", "{\"optimizer\": {\"name\": \"SAM\", \"rho\": 2, "
                                              "\"variant\": \"momentum\", \"base\": {\"name\": "
                                              "\"SGD\", \"lr\": 1, \"momentum\": 0.5}}, "
                                              "\"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
                                  NULL);
    json_t *g = json_pack("{s:[f,f]}", "w", 3.0, 4.0);
    float grad_buffer[2], out_buffer[2], *grad[1] = {grad_buffer}, *out[1] = {out_buffer};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(push(model, g, "a", grad, out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.has_sam && !outcome.sam_ascent);
    ck_assert_uint_eq(outcome.step, 1);
    ck_assert_float_eq_tol(out_buffer[0], -3 + 1.2f, 1e-6);
    ck_assert_float_eq_tol(out_buffer[1], -4 + 1.6f, 1e-6);
    ck_assert(model->tensors[0]->values[0] == -3); /* the server's weights are unperturbed */
    json_decref(g);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
    /* Without a first moment the variant is refused at creation. */
    json_t *body = json_loads("{\"optimizer\": {\"name\": \"SAM\", \"variant\": \"momentum\", "
                              "\"base\": {\"name\": \"SGD\", \"lr\": 1}}, \"tensors\": "
                              "[{\"name\": \"w\", \"shape\": [2]}]}",
                              0, NULL);
    paramd__model_spec spec;
    ck_assert_int_eq(paramd__json_parse_model_spec(body, "refused", &spec, &error), PARAMD_OK);
    paramd__model *refused = NULL;
    ck_assert_int_eq(paramd__core_create_model(&server, &spec, &refused, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "first moment"));
    paramd__json_model_spec_free(&spec);
    json_decref(body);
}
END_TEST

START_TEST(test_errors_name_the_field)
{
    static const struct {
        const char *body, *names;
    } cases[] = {
        {"{\"optimizer\": {\"name\": \"SAM\", \"rho\": 0, \"base\": {\"name\": \"SGD\", \"lr\": "
         "0.1}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.rho"},
        {"{\"optimizer\": {\"name\": \"SAM\", \"variant\": \"three_step\", \"base\": {\"name\": "
         "\"SGD\", \"lr\": 0.1}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.variant"},
        {"{\"optimizer\": {\"name\": \"SAM\", \"base\": {\"name\": \"Lookahead\", \"base\": "
         "{\"name\": \"SGD\", \"lr\": 0.1}}}, \"tensors\": [{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer.base: SAM wraps a table optimizer, not Lookahead"},
        {"{\"optimizer\": {\"name\": \"SAM\", \"base\": {\"name\": \"SGD\", \"lr\": 0.1}}, "
         "\"consistency\": {\"mode\": \"sync\", \"workers\": 2}, \"tensors\": [{\"name\": \"w\", "
         "\"shape\": [2]}]}",
         "consistency: SAM"},
        {"{\"optimizer\": {\"name\": \"SAM\", \"base\": {\"name\": \"LBFGS\"}}, \"tensors\": "
         "[{\"name\": \"w\", \"shape\": [2]}]}",
         "optimizer: SAM: not available with LBFGS"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads(cases[i].body, 0, NULL);
        ck_assert_msg(body != NULL, "case %zu", i);
        paramd__model_spec spec;
        paramd__error error = {0};
        int result = paramd__json_parse_model_spec(body, "refused", &spec, &error);
        paramd__model *model = NULL;
        if (result == PARAMD_OK)
            result = paramd__core_create_model(&server, &spec, &model, &error);
        paramd__json_model_spec_free(&spec);
        json_decref(body);
        ck_assert_msg(result != PARAMD_OK && strstr(error.message, cases[i].names),
                      "case %zu: %d \"%s\"", i, result, error.message);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("sam");
    TCase *tc = tcase_create("sam");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replays_the_reference);
    tcase_add_test(tc, test_workers_keep_their_own_phase);
    tcase_add_test(tc, test_momentum_variant);
    tcase_add_test(tc, test_errors_name_the_field);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
