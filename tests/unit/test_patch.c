/*
 * test_patch.c - runtime changes (paramd__core_patch_model, and the PATCH
 * body parser): validation that changes nothing, the state-slot and schedule
 * rules, loss-scale state, and PATCH concurrent with pushes (no lost update,
 * every push under one whole configuration).
 */
#include "test_util.h"

#include "core.h"
#include "json_api.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

static json_t *parse(const char *text)
{
    json_error_t json_error;
    json_t *value = json_loads(text, 0, &json_error);
    ck_assert_msg(value != NULL, "bad test JSON %s: %s", text, json_error.text);
    return value;
}

/* Creates a model from a JSON body, as PUT does. */
static paramd__model *create(const char *name, const char *body_text)
{
    json_t *body = parse(body_text);
    paramd__model_spec spec;
    paramd__error error = {0};
    paramd__model *model = NULL;
    int result = paramd__json_parse_model_spec(body, name, &spec, &error);
    if (result == PARAMD_OK)
        result = paramd__core_create_model(&server, &spec, &model, &error);
    paramd__json_model_spec_free(&spec);
    json_decref(body);
    ck_assert_msg(result == PARAMD_OK, "%s", error.message);
    return model;
}

/* Applies a PATCH body; returns the result code, with the error in *error. */
static int patch(paramd__model *model, const char *body_text, paramd__error *error)
{
    json_t *body = parse(body_text);
    paramd__model_patch changes;
    paramd__error_clear(error);
    int result = paramd__json_parse_model_patch(body, model, &changes, error);
    if (result == PARAMD_OK)
        result = paramd__core_patch_model(&server, model, &changes, error);
    paramd__json_model_patch_free(&changes);
    json_decref(body);
    return result;
}

/* The model's description as JSON text (configuration and counters). */
static char *describe(paramd__model *model)
{
    json_t *description = paramd__json_describe_model(model);
    json_object_del(description, "created");
    char *text = json_dumps(description, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(description);
    return text;
}

#define ck_assert_error(error, expected_code, needle)                                      \
    do {                                                                                   \
        ck_assert_msg((error).code == (expected_code), "code %d, expected %d (%s)",       \
                      (error).code, (expected_code), (error).message);                     \
        ck_assert_msg(strstr((error).message, (needle)) != NULL,                          \
                      "message \"%s\" does not contain \"%s\"", (error).message, (needle)); \
    } while (0)

static const char *const sgd_model =
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.5, \"momentum\": 0.9},"
    " \"tensors\": [{\"name\": \"w\", \"shape\": [2], \"values\": [1, 1]},"
    "               {\"name\": \"b\", \"shape\": [1]}],"
    " \"param_groups\": [{\"tensors\": [\"b\"], \"lr\": 0.25}]}";

START_TEST(test_patch_hyperparameters_keeps_state)
{
    paramd__model *model = create("p", sgd_model);
    float w[2] = {1, 1}, out[2];
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = w, .grad_count = 2,
                              .weights = out};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    float momentum = model->tensors[0]->state[0][0];
    ck_assert(momentum == 1.0f);
    ck_assert_int_eq(patch(model, "{\"optimizer\": {\"lr\": 0.125, \"name\": \"sgd\", "
                                  "\"weight_decay\": 0}, \"param_groups\": [{\"momentum\": 0.5}]}",
                           &error),
                     PARAMD_OK);
    ck_assert(paramd__optimizer_config_get(&model->optimizer, "lr") == 0.125);
    ck_assert(paramd__optimizer_config_get(&model->param_groups[0], "momentum") == 0.5);
    ck_assert(paramd__optimizer_config_get(&model->param_groups[0], "lr") == 0.25);
    /* The momentum buffer survives: buf = 0.9 * 1 + 1, w -= 0.125 * buf. */
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    ck_assert(outcome.lr == 0.125);
    float buf = 0.9f * 1.0f + 1.0f;
    ck_assert(model->tensors[0]->state[0][0] == buf);
    ck_assert_uint_eq(model->tensors[0]->step, 2);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_patch_errors_change_nothing)
{
    paramd__model *model = create("p", sgd_model);
    char *before = describe(model);
    struct {
        const char *body;
        int code;
        const char *needle;
    } cases[] = {
        {"{\"optimizer\": {\"lr\": -1}}", PARAMD_E_BAD_HYPERPARAMETER, "optimizer.lr"},
        {"{\"optimizer\": {\"lr\": 0.1, \"dampening\": 2}}", PARAMD_E_BAD_HYPERPARAMETER,
         "optimizer.dampening"},
        {"{\"optimizer\": {\"lr\": 0.1}, \"clip\": {\"max_norm\": 0}}", PARAMD_E_BAD_REQUEST,
         "clip.max_norm"},
        {"{\"optimizer\": {\"name\": \"Adam\"}}", PARAMD_E_BAD_REQUEST, "optimizer.name"},
        {"{\"optimizer\": {\"bogus\": 1}}", PARAMD_E_BAD_HYPERPARAMETER, "optimizer.bogus"},
        {"{\"optimizer\": {\"nesterov\": true, \"dampening\": 0.5}}", PARAMD_E_BAD_HYPERPARAMETER,
         "optimizer.nesterov"},
        {"{\"optimizer\": {\"momentum\": 0}}", PARAMD_E_BAD_HYPERPARAMETER, "momentum_buffer"},
        {"{\"param_groups\": [{\"lr\": -3}]}", PARAMD_E_BAD_HYPERPARAMETER, "param_groups[0].lr"},
        {"{\"param_groups\": [{}, {}]}", PARAMD_E_BAD_REQUEST, "param_groups"},
        {"{\"param_groups\": [{\"tensors\": [\"w\"]}]}", PARAMD_E_BAD_REQUEST,
         "param_groups[0].tensors"},
        {"{\"accumulate\": 2}", PARAMD_E_BAD_REQUEST, "accumulate"},
        {"{\"tensors\": []}", PARAMD_E_BAD_REQUEST, "tensors"},
        {"{\"nonfinite\": \"ignore\"}", PARAMD_E_BAD_REQUEST, "nonfinite"},
        {"{\"grad_noise\": {\"eta\": -1}}", PARAMD_E_BAD_REQUEST, "grad_noise.eta"},
        {"{\"loss_scale\": {\"growth_factor\": 0.5}}", PARAMD_E_BAD_REQUEST,
         "loss_scale.growth_factor"},
        {"{\"nonfinite\": \"zero\", \"loss_scale\": \"dynamic\"}", PARAMD_E_BAD_REQUEST,
         "nonfinite"},
        {"{\"schedule\": {\"name\": \"StepLR\"}}", PARAMD_E_BAD_HYPERPARAMETER, "step_size"},
        {"{\"bogus\": 1}", PARAMD_E_BAD_REQUEST, "bogus"},
        {"{}", PARAMD_E_BAD_REQUEST, "request body"},
        /* The last change is bad: the good ones before it must not stick. */
        {"{\"nonfinite\": \"skip\", \"clip\": {\"value\": 1}, \"optimizer\": {\"lr\": 0.1},"
         " \"grad_noise\": {\"eta\": 0.1}, \"loss_scale\": \"dynamic\","
         " \"param_groups\": [{\"lr\": -1}]}",
         PARAMD_E_BAD_HYPERPARAMETER, "param_groups[0].lr"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paramd__error error;
        ck_assert_msg(patch(model, cases[i].body, &error) != PARAMD_OK, "%s", cases[i].body);
        ck_assert_error(error, cases[i].code, cases[i].needle);
        char *after = describe(model);
        ck_assert_msg(strcmp(before, after) == 0, "%s changed the model:\n%s\n%s", cases[i].body,
                      before, after);
        free(after);
    }
    free(before);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_patch_schedule_rules)
{
    paramd__model *model = create("s", "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 1},"
                                       " \"schedule\": {\"name\": \"ExponentialLR\", \"gamma\": 0.5},"
                                       " \"tensors\": [{\"name\": \"w\", \"shape\": [1]}]}");
    float g[1] = {1}, out[1];
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = g, .grad_count = 1,
                              .weights = out};
    paramd__push_outcome outcome;
    paramd__error error;
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                         PARAMD_OK);
    ck_assert(outcome.lr == 0.5);
    /* The schedule owns lr. */
    ck_assert_int_ne(patch(model, "{\"optimizer\": {\"lr\": 2}}", &error), PARAMD_OK);
    ck_assert_error(error, PARAMD_E_BAD_HYPERPARAMETER, "optimizer.lr");
    /* With the schedule given, it restarts at the current step from the new lr. */
    ck_assert_int_eq(patch(model, "{\"optimizer\": {\"lr\": 2}, \"schedule\": {\"name\": "
                                  "\"ExponentialLR\", \"gamma\": 0.25}}",
                           &error),
                     PARAMD_OK);
    const double expected[3] = {2, 0.5, 0.125};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                         PARAMD_OK);
        ck_assert_msg(outcome.lr == expected[k], "push %d: lr %g", k, outcome.lr);
    }
    ck_assert_uint_eq(outcome.step, 5);
    /* Removing it: the optimizer's lr applies again, and can change freely. */
    ck_assert_int_eq(patch(model, "{\"schedule\": null}", &error), PARAMD_OK);
    ck_assert(!model->has_schedule);
    ck_assert_int_eq(patch(model, "{\"optimizer\": {\"lr\": 0.75}}", &error), PARAMD_OK);
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    ck_assert(outcome.lr == 0.75);
    /* A schedule cycling momentum would need a momentum buffer w lacks. */
    ck_assert_int_ne(patch(model, "{\"schedule\": {\"name\": \"OneCycleLR\", \"max_lr\": 1, "
                                  "\"total_steps\": 10}}",
                           &error),
                     PARAMD_OK);
    ck_assert_error(error, PARAMD_E_BAD_HYPERPARAMETER, "schedule");
    ck_assert(!model->has_schedule);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_patch_loss_scale_state)
{
    paramd__model *model = create("l", "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 1},"
                                       " \"loss_scale\": {\"init_scale\": 8, \"growth_interval\": 1},"
                                       " \"tensors\": [{\"name\": \"w\", \"shape\": [1]}]}");
    float g[1] = {8}, out[1];
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = g, .grad_count = 1,
                              .weights = out};
    paramd__push_outcome outcome;
    paramd__error error;
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    ck_assert(outcome.loss_scale == 16.0f);
    /* A new configuration without init_scale keeps the running scale. */
    ck_assert_int_eq(patch(model, "{\"loss_scale\": {\"growth_interval\": 100}}", &error),
                     PARAMD_OK);
    ck_assert(model->loss_scale.scale == 16.0f);
    ck_assert_int_eq(model->loss_scale_config.growth_interval, 100);
    /* With init_scale it restarts there. */
    ck_assert_int_eq(patch(model, "{\"loss_scale\": {\"init_scale\": 2}}", &error), PARAMD_OK);
    ck_assert(model->loss_scale.scale == 2.0f);
    ck_assert_int_eq(model->loss_scale.growth_tracker, 0);
    /* Removed: gradients are no longer unscaled, and "zero" is allowed. */
    ck_assert_int_eq(patch(model, "{\"loss_scale\": null, \"nonfinite\": \"zero\"}", &error),
                     PARAMD_OK);
    ck_assert(!model->has_loss_scale);
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    ck_assert(!outcome.has_loss_scale);
    ck_assert(out[0] == -1 - 8); /* first push: -8 / 8; this one: -8 */
    paramd__model_release(model);
}
END_TEST

/* PATCH concurrent with pushes: SGD on one element with gradient 1; the
 * patcher alternates lr between 0.5 and 0.25 (weight_decay stays 0), so the
 * weight is exactly minus the sum of the lrs the pushes report, and no push
 * sees a half-applied configuration. */
enum { PUSHERS = 3, PUSHES = 400, PATCHES = 200 };

typedef struct worker_context {
    paramd__model *model;
    double lr_sum;
    int failures;
} worker_context;

static void *pusher(void *argument)
{
    worker_context *context = argument;
    float g[1] = {1};
    paramd__tensor_io item = {.tensor = context->model->tensors[0], .grad = g, .grad_count = 1};
    for (int k = 0; k < PUSHES; k++) {
        paramd__push_outcome outcome;
        paramd__error error;
        if (paramd__core_push(&server, context->model, &item, 1, NAN, NAN, &outcome, &error) !=
                PARAMD_OK ||
            (outcome.lr != 0.5 && outcome.lr != 0.25 && outcome.lr != 1.0))
            context->failures++;
        context->lr_sum += outcome.lr;
    }
    return NULL;
}

static void *patcher(void *argument)
{
    worker_context *context = argument;
    for (int k = 0; k < PATCHES; k++) {
        paramd__error error;
        const char *body = k % 2 ? "{\"optimizer\": {\"lr\": 0.25}, \"clip\": {\"value\": 100}}"
                                 : "{\"optimizer\": {\"lr\": 0.5}, \"clip\": null}";
        context->failures += patch(context->model, body, &error) != PARAMD_OK;
    }
    return NULL;
}

START_TEST(test_patch_concurrent_with_pushes)
{
    paramd__model *model = create("c", "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 1},"
                                       " \"tensors\": [{\"name\": \"w\", \"shape\": [1]}]}");
    worker_context pushers[PUSHERS], patching = {model, 0, 0};
    pthread_t threads[PUSHERS + 1];
    for (int i = 0; i < PUSHERS; i++) {
        pushers[i] = (worker_context){model, 0, 0};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, pusher, &pushers[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&threads[PUSHERS], NULL, patcher, &patching), 0);
    for (int i = 0; i <= PUSHERS; i++)
        pthread_join(threads[i], NULL);
    double total = 0;
    for (int i = 0; i < PUSHERS; i++) {
        ck_assert_int_eq(pushers[i].failures, 0);
        total += pushers[i].lr_sum;
    }
    ck_assert_int_eq(patching.failures, 0);
    ck_assert_uint_eq(atomic_load(&model->step), PUSHERS * PUSHES);
    ck_assert_uint_eq(model->tensors[0]->step, PUSHERS * PUSHES);
    /* Every lr is a multiple of 1/4 and the sum stays below 2^22: exact. */
    ck_assert_msg(model->tensors[0]->values[0] == (float)-total, "w %.9g, expected %.9g",
                  (double)model->tensors[0]->values[0], -total);
    /* The last patch (k = 199, odd) set lr 0.25 and clipping by value. */
    ck_assert(paramd__optimizer_config_get(&model->optimizer, "lr") == 0.25);
    ck_assert_int_eq(model->clip.mode, PARAMD__CLIP_VALUE);
    paramd__model_release(model);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("patch");
    TCase *rules = tcase_create("rules");
    tcase_add_checked_fixture(rules, setup, teardown);
    tcase_add_test(rules, test_patch_hyperparameters_keeps_state);
    tcase_add_test(rules, test_patch_errors_change_nothing);
    tcase_add_test(rules, test_patch_schedule_rules);
    tcase_add_test(rules, test_patch_loss_scale_state);
    suite_add_tcase(suite, rules);
    TCase *concurrency = tcase_create("concurrency");
    tcase_add_checked_fixture(concurrency, setup, teardown);
    tcase_set_timeout(concurrency, 300);
    tcase_add_test(concurrency, test_patch_concurrent_with_pushes);
    suite_add_tcase(suite, concurrency);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
