/*
 * test_lbfgs.c - L-BFGS held by the server (issue 7, item 1) against
 * torch.optim.LBFGS: each golden of tests/conformance/lbfgs (written by
 * generate_lbfgs_goldens.py) is replayed through the core, pushing the loss
 * and gradient torch's closure saw at each point; the server must ask for
 * the same points, end each step after the same number of evaluations, and
 * leave torch's parameters.  "The same" is to 1e-4 of each element (1e-5 of
 * the vector's largest for elements near zero): rounding differences in
 * dot products (torch dots the concatenated vector, paramd tensor by
 * tensor) grow over dozens of evaluations of an ill-conditioned function
 * such as Rosenbrock's; the decisions (which point, when a step ends) are
 * exactly torch's.  Then the protocol's own
 * rules: what a push to an LBFGS model must carry, and what a model cannot
 * combine with LBFGS.
 */
#include "test_util.h"

#include "core.h"
#include "json_api.h"
#include "lbfgs.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define LBFGS_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/lbfgs"

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

/* Creates model `name` from a JSON body through the JSON API and the core. */
static int create(const char *name, json_t *body, paramd__model **model, paramd__error *error)
{
    paramd__model_spec spec;
    int result = paramd__json_parse_model_spec(body, name, &spec, error);
    if (result == PARAMD_OK)
        result = paramd__core_create_model(&server, &spec, model, error);
    paramd__json_model_spec_free(&spec);
    return result;
}

static void check_close(const float *got, const json_t *want, size_t count, const char *what,
                        const char *name, size_t index)
{
    ck_assert_uint_eq(json_array_size(want), count);
    /* Relative to each element and to the vector's largest: an element
     * near zero carries the rounding of the others. */
    double largest = 0;
    for (size_t i = 0; i < count; i++)
        largest = fmax(largest, fabs(json_number_value(json_array_get(want, i))));
    for (size_t i = 0; i < count; i++) {
        double expected = json_number_value(json_array_get(want, i));
        ck_assert_msg(fabs(got[i] - expected) <= 1e-4 * fabs(expected) + 1e-5 * largest,
                      "%s: %s %zu, element %zu: %.9g, torch %.9g", name, what, index, i, got[i],
                      expected);
    }
}

/* Goldens replayed with the strong Wolfe line search. */
static int strong_wolfe_cases;

static void replay(const char *path)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
    const char *search = json_string_value(
        json_object_get(json_object_get(golden, "optimizer"), "line_search_fn"));
    strong_wolfe_cases += search && strcmp(search, "strong_wolfe") == 0;
    const char *name = json_string_value(json_object_get(golden, "name"));
    json_t *body = json_pack("{s:O,s:O}", "optimizer", json_object_get(golden, "optimizer"),
                             "tensors", json_object_get(golden, "tensors"));
    paramd__model *model = NULL;
    paramd__error error = {0};
    ck_assert_msg(create(name, body, &model, &error) == PARAMD_OK, "%s: %s", name, error.message);
    json_decref(body);
    size_t total = 0;
    for (size_t k = 0; k < model->tensor_count; k++)
        total += model->tensors[k]->count;
    float *grad = malloc(total * sizeof *grad), *point = malloc(total * sizeof *point);
    paramd__tensor_io items[2];
    ck_assert_uint_le(model->tensor_count, 2);
    size_t offset = 0;
    for (size_t k = 0; k < model->tensor_count; k++) {
        items[k] = (paramd__tensor_io){.tensor = model->tensors[k], .grad = grad + offset,
                                       .grad_count = model->tensors[k]->count,
                                       .weights = point + offset};
        offset += model->tensors[k]->count;
    }
    const json_t *evaluations = json_object_get(golden, "evaluations");
    const json_t *step_evaluations = json_object_get(golden, "step_evaluations");
    const json_t *results = json_object_get(golden, "results");
    size_t evaluation = 0;
    for (size_t step = 0; step < json_array_size(step_evaluations); step++) {
        size_t calls = (size_t)json_integer_value(json_array_get(step_evaluations, step));
        for (size_t call = 0; call < calls; call++, evaluation++) {
            const json_t *e = json_array_get(evaluations, evaluation);
            ck_assert_msg(e != NULL, "%s: more evaluations than torch made", name);
            const json_t *g = json_object_get(e, "grad");
            for (size_t i = 0; i < total; i++)
                grad[i] = (float)json_number_value(json_array_get(g, i));
            paramd__push_options options = {json_number_value(json_object_get(e, "loss")), NAN,
                                            NAN, 0};
            paramd__push_outcome outcome;
            ck_assert_msg(paramd__core_push_ex(&server, model, items, model->tensor_count,
                                               &options, &outcome, &error) == PARAMD_OK,
                          "%s: %s", name, error.message);
            ck_assert(outcome.has_lbfgs);
            bool last = call + 1 == calls;
            ck_assert_msg(outcome.lbfgs_step_done == last,
                          "%s: step %zu: the server %s after call %zu of torch's %zu", name,
                          step + 1, outcome.lbfgs_step_done ? "ended it" : "went on", call + 1,
                          calls);
            ck_assert_uint_eq(outcome.step, step + (last ? 1 : 0));
            if (!last) /* the next point torch's closure saw */
                check_close(point, json_object_get(json_array_get(evaluations, evaluation + 1),
                                                   "x"),
                            total, "point", name, evaluation + 1);
        }
        /* The step's result: the parameters torch's step() left. */
        check_close(point, json_array_get(results, step), total, "result of step", name, step);
    }
    ck_assert_uint_eq(evaluation, json_array_size(evaluations));
    ck_assert_uint_eq(model->lbfgs->func_evals, evaluation);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
    free(grad);
    free(point);
    json_decref(golden);
}

START_TEST(test_replays_torch)
{
    strong_wolfe_cases = 0;
    int cases = paramd_test_for_each_golden(LBFGS_DIRECTORY,
                                            "tests/conformance/generate_lbfgs_goldens.py", replay);
    ck_assert_int_ge(cases, 6);
    ck_assert_int_ge(strong_wolfe_cases, 3);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Rules
 * ------------------------------------------------------------------------- */

static paramd__model *small_model(const char *optimizer_json)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"optimizer\": %s, \"tensors\": [{\"name\": \"w\", \"shape\": [2], \"values\": [1, "
             "2]}, {\"name\": \"b\", \"shape\": [1], \"values\": [3]}]}",
             optimizer_json);
    json_t *body = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(body);
    paramd__model *model = NULL;
    paramd__error error = {0};
    ck_assert_msg(create("small", body, &model, &error) == PARAMD_OK, "%s", error.message);
    json_decref(body);
    return model;
}

START_TEST(test_push_rules)
{
    paramd__model *model = small_model("{\"name\": \"LBFGS\", \"max_eval\": null}");
    ck_assert_double_eq(paramd__optimizer_config_get(&model->optimizer, "max_eval"), 0);
    float gw[2] = {1, 1}, gb[1] = {1}, ww[2], wb[1];
    paramd__tensor_io items[2] = {
        {.tensor = model->tensors[0], .grad = gw, .grad_count = 2, .weights = ww},
        {.tensor = model->tensors[1], .grad = gb, .grad_count = 1, .weights = wb}};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    /* The loss is required, */
    paramd__push_options no_loss = {NAN, NAN, NAN, 0};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &no_loss, &outcome, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "loss: required"));
    /* every tensor, */
    paramd__push_options options = {5.0, NAN, NAN, 0};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 1, &options, &outcome, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "grads.b: required"));
    /* and finite gradients; none of it changed anything. */
    gb[0] = NAN;
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_E_NON_FINITE);
    ck_assert_uint_eq(model->lbfgs->func_evals, 0);
    ck_assert(model->tensors[0]->values[0] == 1 && model->tensors[1]->values[0] == 3);
    gb[0] = 1;
    /* A good push: the first fixed step goes along -g scaled by
     * min(1, 1 / |g|_1) * lr = 1/3, and the server asks for the loss there. */
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_OK);
    ck_assert(outcome.has_lbfgs && !outcome.lbfgs_step_done);
    ck_assert_uint_eq(outcome.lbfgs_iterations, 1);
    ck_assert_uint_eq(outcome.lbfgs_evaluations, 1);
    ck_assert_float_eq_tol(ww[0], 1 - 1.0f / 3, 1e-6);
    ck_assert_float_eq_tol(wb[0], 3 - 1.0f / 3, 1e-6);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_optimal_start_ends_the_step_at_once)
{
    paramd__model *model = small_model("{\"name\": \"LBFGS\"}");
    float gw[2] = {0, 0}, gb[1] = {0}, ww[2], wb[1];
    paramd__tensor_io items[2] = {
        {.tensor = model->tensors[0], .grad = gw, .grad_count = 2, .weights = ww},
        {.tensor = model->tensors[1], .grad = gb, .grad_count = 1, .weights = wb}};
    paramd__push_options options = {0.0, NAN, NAN, 0};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_OK);
    ck_assert(outcome.lbfgs_step_done);
    ck_assert_uint_eq(outcome.step, 1);
    ck_assert(ww[0] == 1 && ww[1] == 2 && wb[0] == 3); /* nothing moved */
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_refused_combinations_name_the_field)
{
    static const struct {
        const char *extra, *names;
    } cases[] = {
        {"\"clip\": {\"max_norm\": 1}", "clip: not available with LBFGS"},
        {"\"schedule\": {\"name\": \"StepLR\", \"step_size\": 2}", "schedule: not available"},
        {"\"accumulate\": 2", "accumulate: not available"},
        {"\"loss_scale\": \"dynamic\"", "loss_scale: not available"},
        {"\"nonfinite\": \"skip\"", "nonfinite: LBFGS needs finite gradients"},
        {"\"consistency\": {\"mode\": \"sync\", \"workers\": 2}", "consistency: LBFGS"},
        {"\"param_groups\": [{\"tensors\": [\"w\"], \"lr\": 0.5}]", "param_groups: LBFGS"},
        {"\"grad_noise\": {\"eta\": 0.1}", "grad_noise: not available"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"optimizer\": {\"name\": \"LBFGS\"}, %s, \"tensors\": [{\"name\": \"w\", "
                 "\"shape\": [2]}]}",
                 cases[i].extra);
        json_t *body = json_loads(text, 0, NULL);
        ck_assert_msg(body != NULL, "case %zu", i);
        paramd__model *model = NULL;
        paramd__error error = {0};
        int result = create("refused", body, &model, &error);
        json_decref(body);
        ck_assert_msg(result == PARAMD_E_BAD_REQUEST && strstr(error.message, cases[i].names),
                      "case %zu: %d \"%s\"", i, result, error.message);
        ck_assert_ptr_null(model);
    }
    /* torch's keywords only: LBFGS takes no l1. */
    json_t *body = json_loads("{\"optimizer\": {\"name\": \"LBFGS\", \"l1\": 0.1}, \"tensors\": "
                              "[{\"name\": \"w\", \"shape\": [2]}]}",
                              0, NULL);
    paramd__model *model = NULL;
    paramd__error error = {0};
    ck_assert_int_eq(create("refused", body, &model, &error), PARAMD_E_BAD_HYPERPARAMETER);
    json_decref(body);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("lbfgs");
    TCase *tc = tcase_create("lbfgs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replays_torch);
    tcase_add_test(tc, test_push_rules);
    tcase_add_test(tc, test_optimal_start_ends_the_step_at_once);
    tcase_add_test(tc, test_refused_combinations_name_the_field);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
