/*
 * test_loss_scale.c - dynamic loss scaling (server/loss_scale.c) against
 * torch.cuda.amp.GradScaler, and through paramd__core_push.
 *
 * Each JSON file in tests/conformance/loss_scale (written by
 * tests/conformance/generate_loss_scale_goldens.py, which replicates
 * GradScaler's arithmetic with torch CPU tensors, since torch 1.13 has no CPU
 * _amp_update_scale_) holds a sequence of pushes: the scaled gradients, the
 * inv_scale torch computes, the unscaled gradients, whether the step is
 * skipped, and the scale and growth tracker after GradScaler.update().
 * Everything is compared exactly (bits of every float32).
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "core.h"
#include "json_api.h"
#include "loss_scale.h"

#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/loss_scale"

static uint32_t bits(float value)
{
    uint32_t b;
    memcpy(&b, &value, sizeof b);
    return b;
}

/* A step's pushed gradient, with its non-finite entries restored. */
static size_t read_grad(const json_t *step, float *grad, size_t capacity)
{
    const json_t *values = json_object_get(step, "grad");
    size_t count = json_array_size(values);
    ck_assert_uint_le(count, capacity);
    for (size_t i = 0; i < count; i++)
        grad[i] = (float)json_number_value(json_array_get(values, i));
    const json_t *bad = json_object_get(step, "nonfinite");
    for (size_t k = 0; k < json_array_size(bad); k++) {
        size_t index = (size_t)json_integer_value(json_array_get(bad, k));
        grad[index] = index % 2 == 0 ? INFINITY : NAN;
    }
    return count;
}

static paramd__loss_scale_config read_config(const json_t *golden)
{
    const json_t *object = json_object_get(golden, "loss_scale");
    paramd__loss_scale_config config;
    bool init_scale_given;
    paramd__error error = {0};
    ck_assert_msg(paramd__json_parse_loss_scale(object, &config, &init_scale_given, &error) ==
                      PARAMD_OK,
                  "%s", error.message);
    ck_assert(init_scale_given);
    return config;
}

/* Replays one file through the loss_scale functions; returns its step count. */
static size_t replay_functions(const json_t *golden, const char *name)
{
    paramd__loss_scale_config config = read_config(golden);
    paramd__loss_scale state;
    paramd__loss_scale_init(&state, &config);
    const json_t *steps = json_object_get(golden, "steps");
    for (size_t s = 0; s < json_array_size(steps); s++) {
        const json_t *step = json_array_get(steps, s);
        float grad[64], unscaled[64];
        size_t count = read_grad(step, grad, 64);
        ck_assert_msg(bits(state.scale) ==
                          bits((float)json_number_value(json_object_get(step, "scale_used"))),
                      "%s step %zu: scale %.9g", name, s, (double)state.scale);
        float inv_scale = paramd__loss_scale_inverse(state.scale);
        ck_assert_msg(bits(inv_scale) ==
                          bits((float)json_number_value(json_object_get(step, "inv_scale"))),
                      "%s step %zu: inv_scale %.9g", name, s, (double)inv_scale);
        size_t bad = paramd__loss_scale_unscale(grad, unscaled, count, inv_scale);
        bool skipped = json_is_true(json_object_get(step, "skipped"));
        ck_assert_msg((bad < count) == skipped, "%s step %zu: skipped", name, s);
        if (!skipped) {
            const json_t *expected = json_object_get(step, "unscaled");
            for (size_t i = 0; i < count; i++)
                ck_assert_msg(bits(unscaled[i]) ==
                                  bits((float)json_number_value(json_array_get(expected, i))),
                              "%s step %zu: unscaled[%zu] %.9g", name, s, i,
                              (double)unscaled[i]);
        }
        paramd__loss_scale_update(&state, &config, skipped);
        ck_assert_msg(bits(state.scale) ==
                          bits((float)json_number_value(json_object_get(step, "scale"))),
                      "%s step %zu: scale after %.9g", name, s, (double)state.scale);
        ck_assert_int_eq(state.growth_tracker,
                         json_integer_value(json_object_get(step, "growth_tracker")));
    }
    return json_array_size(steps);
}

/* Replays one file through real pushes to an SGD (lr 1) model, whose
 * weights then move by exactly minus the unscaled gradients. */
static void replay_pushes(const json_t *golden, const char *name)
{
    const json_t *steps = json_object_get(golden, "steps");
    size_t size = json_array_size(json_object_get(json_array_get(steps, 0), "grad"));
    paramd__optimizer_config sgd;
    paramd__optimizer_config_init(&sgd, paramd__optimizer_find("SGD"));
    sgd.values[paramd__optimizer_find_hyperparameter(sgd.type, "lr")->slot] = 1.0;
    paramd__tensor_spec tensor = {.name = "w", .dimension_count = 1, .shape = {(int64_t)size}};
    paramd__initializer_init(&tensor.initializer, paramd__initializer_find("zeros"));
    paramd__model_spec spec = {.name = "scaled", .optimizer = sgd, .tensors = &tensor,
                               .tensor_count = 1, .has_loss_scale = true,
                               .loss_scale = read_config(golden)};
    paramd__server server;
    paramd__server_init(&server);
    paramd__error error = {0};
    paramd__model *model = NULL;
    ck_assert_msg(paramd__core_create_model(&server, &spec, &model, &error) == PARAMD_OK, "%s",
                  error.message);
    float expected[64] = {0}, weights[64];
    uint64_t good = 0;
    for (size_t s = 0; s < json_array_size(steps); s++) {
        const json_t *step = json_array_get(steps, s);
        float grad[64];
        read_grad(step, grad, 64);
        paramd__tensor_io item = {.tensor = model->tensors[0], .grad = grad, .grad_count = size,
                                  .weights = weights};
        paramd__push_outcome outcome;
        ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                         PARAMD_OK);
        bool skipped = json_is_true(json_object_get(step, "skipped"));
        ck_assert_int_eq(outcome.skipped, skipped);
        if (skipped) {
            ck_assert_str_eq(outcome.skip_reason, "loss_scale");
        } else {
            good++;
            const json_t *unscaled = json_object_get(step, "unscaled");
            for (size_t i = 0; i < size; i++)
                expected[i] = expected[i] - (float)json_number_value(json_array_get(unscaled, i));
        }
        ck_assert(outcome.has_loss_scale);
        ck_assert_msg(bits(outcome.loss_scale) ==
                          bits((float)json_number_value(json_object_get(step, "scale"))),
                      "%s push %zu: loss_scale %.9g", name, s, (double)outcome.loss_scale);
        ck_assert_uint_eq(outcome.step, good);
        for (size_t i = 0; i < size; i++)
            ck_assert_msg(bits(weights[i]) == bits(expected[i]), "%s push %zu: w[%zu] %.9g, "
                          "expected %.9g", name, s, i, (double)weights[i], (double)expected[i]);
        /* The caller's gradients are never changed. */
        float again[64];
        read_grad(step, again, 64);
        ck_assert_mem_eq(grad, again, size * sizeof(float));
    }
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.loss_scale_skipped),
                      json_array_size(steps) - good);
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.refused), 0);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}

START_TEST(test_loss_scale_matches_grad_scaler)
{
    DIR *directory = opendir(GOLDEN_DIRECTORY);
    ck_assert_msg(directory != NULL, "cannot open %s (run tests from the repository root)",
                  GOLDEN_DIRECTORY);
    struct dirent *entry;
    int replayed = 0;
    size_t steps = 0;
    while ((entry = readdir(directory)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", GOLDEN_DIRECTORY, entry->d_name);
        json_error_t json_error;
        json_t *golden = json_load_file(path, 0, &json_error);
        ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
        steps += replay_functions(golden, entry->d_name);
        replay_pushes(golden, entry->d_name);
        json_decref(golden);
        replayed++;
    }
    closedir(directory);
    printf("loss_scale: %d GradScaler sequences (%zu steps) replayed\n", replayed, steps);
    ck_assert_int_ge(replayed, 6);
}
END_TEST

START_TEST(test_config_validation)
{
    paramd__loss_scale_config config;
    paramd__loss_scale_config_init(&config);
    ck_assert(config.init_scale == 65536.0 && config.growth_factor == 2.0 &&
              config.backoff_factor == 0.5 && config.growth_interval == 2000);
    paramd__error error = {0};
    ck_assert_int_eq(paramd__loss_scale_config_validate(&config, &error), PARAMD_OK);
    struct {
        const char *field;
        double value;
    } bad[] = {{"init_scale", 0},         {"init_scale", -1},      {"init_scale", 1e39},
               {"init_scale", INFINITY},  {"growth_factor", 1.0},  {"growth_factor", 0.5},
               {"growth_factor", INFINITY}, {"backoff_factor", 1.0}, {"backoff_factor", 0},
               {"backoff_factor", -0.5},  {"growth_interval", 0},  {"growth_interval", 3e9}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        paramd__loss_scale_config changed = config;
        if (strcmp(bad[i].field, "init_scale") == 0)
            changed.init_scale = bad[i].value;
        else if (strcmp(bad[i].field, "growth_factor") == 0)
            changed.growth_factor = bad[i].value;
        else if (strcmp(bad[i].field, "backoff_factor") == 0)
            changed.backoff_factor = bad[i].value;
        else
            changed.growth_interval = (int64_t)bad[i].value;
        ck_assert_int_eq(paramd__loss_scale_config_validate(&changed, &error),
                         PARAMD_E_BAD_REQUEST);
        char field[64];
        snprintf(field, sizeof field, "loss_scale.%s", bad[i].field);
        ck_assert_msg(strstr(error.message, field) != NULL, "%s", error.message);
    }
}
END_TEST

START_TEST(test_unscale)
{
    enum { N = 10000 };
    static float in[N], out[N];
    for (size_t i = 0; i < N; i++)
        in[i] = (float)i - 5000.5f;
    ck_assert_uint_eq(paramd__loss_scale_unscale(in, out, N, 0.25f), N);
    for (size_t i = 0; i < N; i++)
        ck_assert(out[i] == in[i] * 0.25f);
    /* The first non-finite value is found past the first 4096-element block. */
    in[7001] = NAN;
    in[9000] = INFINITY;
    ck_assert_uint_eq(paramd__loss_scale_unscale(in, out, N, 0.25f), 7001);
    in[7001] = 1;
    in[9000] = 1;
    /* A finite value that overflows when unscaled (a scale below 1). */
    in[123] = FLT_MAX;
    ck_assert_uint_eq(paramd__loss_scale_unscale(in, out, N, 2.0f), 123);
    /* In place. */
    in[123] = 8;
    ck_assert_uint_eq(paramd__loss_scale_unscale(in, in, N, 0.5f), N);
    ck_assert(in[123] == 4);
    /* inv_scale is 1 / scale in double, rounded once. */
    ck_assert(paramd__loss_scale_inverse(65536.0f) == 0x1p-16f);
    ck_assert(paramd__loss_scale_inverse(3.0f) == (float)(1.0 / 3.0));
    ck_assert(paramd__loss_scale_inverse(1000.0f) == (float)(1.0 / 1000.0));
}
END_TEST

START_TEST(test_update_rules)
{
    paramd__loss_scale_config config;
    paramd__loss_scale_config_init(&config);
    config.growth_interval = 3;
    paramd__loss_scale state;
    paramd__loss_scale_init(&state, &config);
    paramd__loss_scale_update(&state, &config, false);
    paramd__loss_scale_update(&state, &config, false);
    ck_assert_int_eq(state.growth_tracker, 2);
    ck_assert(state.scale == 65536.0f);
    paramd__loss_scale_update(&state, &config, false); /* the third good step grows */
    ck_assert(state.scale == 131072.0f);
    ck_assert_int_eq(state.growth_tracker, 0);
    paramd__loss_scale_update(&state, &config, false);
    paramd__loss_scale_update(&state, &config, true); /* an overflow resets the tracker */
    ck_assert(state.scale == 65536.0f);
    ck_assert_int_eq(state.growth_tracker, 0);
    /* Growth never reaches infinity. */
    state.scale = FLT_MAX;
    config.growth_interval = 1;
    paramd__loss_scale_update(&state, &config, false);
    ck_assert(state.scale == FLT_MAX);
    ck_assert_int_eq(state.growth_tracker, 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("loss_scale");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_loss_scale_matches_grad_scaler);
    tcase_add_test(core, test_config_validation);
    tcase_add_test(core, test_unscale);
    tcase_add_test(core, test_update_rules);
    suite_add_tcase(suite, core);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
