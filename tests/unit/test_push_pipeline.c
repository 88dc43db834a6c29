/*
 * test_push_pipeline.c - the stages of paramd__core_push_ex (issue 4): the
 * non-finite policies, accumulation, gradient noise, and the fixed order
 * unscale -> non-finite -> clip -> noise -> accumulate -> optimizer.
 *
 * Most models use SGD with lr 1, so a weight moves by exactly minus the
 * gradient that reaches the optimizer (torch's p.add_(g, alpha=-1) is one
 * correctly rounded p - g), which makes every stage visible in the weights.
 */
#include "test_util.h"

#include "core.h"
#include "json_api.h"
#include "parallel.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static paramd__optimizer_config sgd(double lr)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("SGD"));
    config.values[paramd__optimizer_find_hyperparameter(config.type, "lr")->slot] = lr;
    return config;
}

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

/* A model "m" with tensors w [4] and b [2], zero-filled, SGD lr 1, and the
 * training options of `spec` (whose tensors and optimizer are filled in). */
static paramd__model *make_model(paramd__model_spec spec)
{
    static paramd__tensor_spec tensors[2] = {
        {.name = "w", .dimension_count = 1, .shape = {4}},
        {.name = "b", .dimension_count = 1, .shape = {2}},
    };
    paramd__initializer_init(&tensors[0].initializer, paramd__initializer_find("zeros"));
    paramd__initializer_init(&tensors[1].initializer, paramd__initializer_find("zeros"));
    spec.name = "m";
    if (spec.optimizer.type == NULL)
        spec.optimizer = sgd(1.0);
    spec.tensors = tensors;
    spec.tensor_count = 2;
    paramd__error error = {0};
    paramd__model *model = NULL;
    ck_assert_msg(paramd__core_create_model(&server, &spec, &model, &error) == PARAMD_OK, "%s",
                  error.message);
    return model;
}

/* Deletes a model made by make_model (or the core) and drops the reference. */
static void drop(paramd__model *model)
{
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}

/* Pushes w (and b unless NULL). */
static int push(paramd__model *model, const float *w, const float *b, float *w_out, float *b_out,
                paramd__push_outcome *outcome, paramd__error *error)
{
    paramd__tensor_io items[2] = {
        {.tensor = model->tensors[0], .grad = w, .grad_count = 4, .weights = w_out},
        {.tensor = model->tensors[1], .grad = b, .grad_count = 2, .weights = b_out},
    };
    paramd__push_options options = {NAN, NAN, NAN};
    if (w == NULL)
        return paramd__core_push_ex(&server, model, items + 1, 1, &options, outcome, error);
    return paramd__core_push_ex(&server, model, items, b ? 2 : 1, &options, outcome, error);
}

static void assert_floats(const float *got, const float *expected, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(got[i] == expected[i] || (isnan(got[i]) && isnan(expected[i])),
                      "%s[%zu]: %.9g, expected %.9g", what, i, (double)got[i],
                      (double)expected[i]);
}

/* ---------------------------------------------------------------------------
 * Non-finite gradients
 * ------------------------------------------------------------------------- */

START_TEST(test_nonfinite_error_changes_nothing)
{
    paramd__model *model = make_model((paramd__model_spec){0});
    float w[4] = {1, 1, 1, 1}, b[2] = {1, NAN}, w_out[4], b_out[2];
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(push(model, w, b, w_out, b_out, &outcome, &error), PARAMD_E_NON_FINITE);
    ck_assert_msg(strstr(error.message, "grads.b[1]") != NULL, "%s", error.message);
    ck_assert_uint_eq(atomic_load(&model->step), 0);
    ck_assert_uint_eq(model->tensors[0]->step, 0);
    ck_assert(model->tensors[0]->values[0] == 0);
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.refused), 1);
    drop(model);
}
END_TEST

START_TEST(test_nonfinite_skip)
{
    paramd__model_spec spec = {.nonfinite = PARAMD__NONFINITE_SKIP};
    /* A schedule too: a skipped push must not advance it. */
    paramd__error error = {0};
    json_error_t json_error;
    json_t *schedule = json_loads("{\"name\": \"ExponentialLR\", \"gamma\": 0.5}", 0, &json_error);
    ck_assert_int_eq(paramd__json_parse_schedule(schedule, &spec.schedule, &error), PARAMD_OK);
    json_decref(schedule);
    spec.has_schedule = true;
    paramd__model *model = make_model(spec);
    float w[4] = {1, 2, 3, 4}, b[2] = {1, 1}, w_out[4], b_out[2];
    paramd__push_outcome outcome;
    ck_assert_int_eq(push(model, w, b, w_out, b_out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.lr == 1.0);
    b[0] = -INFINITY;
    ck_assert_int_eq(push(model, w, b, w_out, b_out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.skipped);
    ck_assert_str_eq(outcome.skip_reason, "nonfinite");
    ck_assert_uint_eq(outcome.step, 1);
    ck_assert(outcome.lr == 0.5); /* the lr the next push will use, not advanced */
    float expected_w[4] = {-1, -2, -3, -4}, expected_b[2] = {-1, -1};
    assert_floats(w_out, expected_w, 4, "w");
    assert_floats(b_out, expected_b, 2, "b");
    ck_assert_uint_eq(model->tensors[0]->step, 1);
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.skipped), 1);
    b[0] = 1;
    ck_assert_int_eq(push(model, w, b, w_out, b_out, &outcome, &error), PARAMD_OK);
    ck_assert(!outcome.skipped);
    ck_assert(outcome.lr == 0.5);
    ck_assert_uint_eq(outcome.step, 2);
    drop(model);
}
END_TEST

START_TEST(test_nonfinite_zero_before_clip)
{
    paramd__model_spec spec = {.nonfinite = PARAMD__NONFINITE_ZERO};
    spec.clip.mode = PARAMD__CLIP_NORM;
    spec.clip.max_norm = 1.0;
    spec.clip.norm_type = 2;
    paramd__model *model = make_model(spec);
    float w[4] = {3, INFINITY, 0, NAN}, b[2] = {4, 0}, w_out[4], b_out[2];
    const float w_copy[4] = {3, INFINITY, 0, NAN};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(push(model, w, b, w_out, b_out, &outcome, &error), PARAMD_OK);
    ck_assert_uint_eq(outcome.zeroed, 2);
    /* The norm is taken after zeroing: sqrt(9 + 16) = 5. */
    ck_assert(fabs(outcome.grad_norm - 5.0) < 1e-12);
    float c = (float)(1.0 / (5.0 + 1e-6));
    float expected_w[4] = {-(3 * c), 0, 0, 0}, expected_b[2] = {-(4 * c), 0};
    assert_floats(w_out, expected_w, 4, "w");
    assert_floats(b_out, expected_b, 2, "b");
    /* The caller's (non-writable) gradients are untouched. */
    ck_assert_mem_eq(w, w_copy, sizeof w);
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.zeroed), 1);
    ck_assert_uint_eq(atomic_load(&model->nonfinite_counts.zeroed_values), 2);
    drop(model);
}
END_TEST

START_TEST(test_writable_gradients_are_used_in_place)
{
    paramd__model_spec spec = {.nonfinite = PARAMD__NONFINITE_ZERO};
    spec.clip.mode = PARAMD__CLIP_VALUE;
    spec.clip.value = 0.5;
    paramd__model *model = make_model(spec);
    float w[4] = {2, NAN, -0.25f, 1}, w_out[4];
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = w, .grad_count = 4,
                              .grad_writable = true, .weights = w_out};
    paramd__push_options options = {NAN, NAN, NAN};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, &item, 1, &options, &outcome, &error),
                     PARAMD_OK);
    float expected[4] = {-0.5f, 0, 0.25f, -0.5f};
    assert_floats(w_out, expected, 4, "w");
    float worked[4] = {0.5f, 0, -0.25f, 0.5f}; /* zeroed and clipped in the caller's buffer */
    assert_floats(w, worked, 4, "the writable gradient");
    drop(model);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Accumulation
 * ------------------------------------------------------------------------- */

START_TEST(test_accumulate_mean_and_sum)
{
    for (int mode = 0; mode < 2; mode++) {
        paramd__model_spec spec = {.accumulate = {3, mode ? PARAMD__ACCUMULATE_SUM
                                                          : PARAMD__ACCUMULATE_MEAN}};
        paramd__model *model = make_model(spec);
        ck_assert_uint_eq(model->memory_bytes, 2 * 6 * sizeof(float)); /* weights + buffers */
        const float pushes[3][4] = {{1, 2, 0, -1}, {3, 4, 0, -1}, {5, 9, 0.5f, -1}};
        float w_out[4], b_out[2], b[2] = {1, 1};
        paramd__push_outcome outcome;
        paramd__error error = {0};
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(push(model, pushes[k], b, w_out, b_out, &outcome, &error), PARAMD_OK);
            ck_assert_uint_eq(outcome.accumulate_steps, 3);
            ck_assert_uint_eq(outcome.step, k == 2 ? 1 : 0);
            ck_assert_uint_eq(model->tensors[0]->step, k == 2 ? 1 : 0);
            if (k < 2) {
                float zeros[4] = {0};
                assert_floats(w_out, zeros, 4, "w before the window is full");
            }
        }
        float expected_mean[4] = {-3, -5, -(0.5f / 3), 1};
        float expected_sum[4] = {-9, -15, -0.5f, 3};
        assert_floats(w_out, mode ? expected_sum : expected_mean, 4, "w");
        /* The next window starts empty. */
        ck_assert_int_eq(push(model, pushes[0], NULL, w_out, NULL, &outcome, &error), PARAMD_OK);
        ck_assert_uint_eq(outcome.step, 1);
        assert_floats(w_out, mode ? expected_sum : expected_mean, 4, "w after one more push");
        drop(model);
    }
}
END_TEST

START_TEST(test_accumulate_is_per_tensor)
{
    paramd__model *model = make_model((paramd__model_spec){.accumulate = {2, 0}});
    float w[4] = {2, 2, 2, 2}, b[2] = {4, 4}, w_out[4], b_out[2];
    paramd__tensor_io items[2] = {
        {.tensor = model->tensors[0], .grad = w, .grad_count = 4, .weights = w_out},
        {.tensor = model->tensors[1], .grad = b, .grad_count = 2, .weights = b_out},
    };
    paramd__push_options options = {NAN, NAN, NAN};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    /* w and b, then b alone: b's window is full, w's is not. */
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(items[0].accumulated, 1);
    ck_assert_uint_eq(items[1].accumulated, 1);
    ck_assert_uint_eq(outcome.step, 0);
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items + 1, 1, &options, &outcome, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(items[1].accumulated, 2);
    ck_assert_uint_eq(outcome.step, 1); /* a tensor stepped: the model's step counts it */
    ck_assert(b_out[0] == -4);
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(items[0].accumulated, 2); /* w's second gradient: it steps */
    ck_assert_uint_eq(items[1].accumulated, 1); /* b's new window */
    ck_assert_uint_eq(outcome.step, 2);
    ck_assert(w_out[0] == -2 && b_out[0] == -4);
    ck_assert_uint_eq(model->tensors[0]->step, 1);
    ck_assert_uint_eq(model->tensors[1]->step, 1);
    drop(model);
}
END_TEST

START_TEST(test_accumulate_advances_schedule_per_optimizer_step)
{
    paramd__model_spec spec = {.accumulate = {2, PARAMD__ACCUMULATE_SUM}};
    paramd__error error = {0};
    json_error_t json_error;
    json_t *schedule = json_loads("{\"name\": \"ExponentialLR\", \"gamma\": 0.5}", 0, &json_error);
    ck_assert_int_eq(paramd__json_parse_schedule(schedule, &spec.schedule, &error), PARAMD_OK);
    json_decref(schedule);
    spec.has_schedule = true;
    paramd__model *model = make_model(spec);
    float w[4] = {1, 1, 1, 1}, w_out[4];
    paramd__push_outcome outcome;
    const double lrs[4] = {1, 1, 0.5, 0.5};
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(push(model, w, NULL, w_out, NULL, &outcome, &error), PARAMD_OK);
        ck_assert_msg(outcome.lr == lrs[k], "push %d: lr %g", k, outcome.lr);
    }
    /* -(1 * 2) - (0.5 * 2) */
    ck_assert(w_out[0] == -3);
    ck_assert_uint_eq(outcome.step, 2);
    drop(model);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Gradient noise
 * ------------------------------------------------------------------------- */

START_TEST(test_noise_statistics)
{
    enum { N = 1 << 20 };
    const double eta = 0.3, gamma = 0.55;
    paramd__tensor_spec tensor = {.name = "w", .dimension_count = 1, .shape = {N}};
    paramd__initializer_init(&tensor.initializer, paramd__initializer_find("zeros"));
    paramd__model_spec spec = {.name = "noisy", .optimizer = sgd(1.0), .tensors = &tensor,
                               .tensor_count = 1,
                               .grad_noise = {.enabled = true, .eta = eta, .gamma = gamma,
                                              .seed = 7}};
    paramd__error error = {0};
    paramd__model *model = NULL;
    ck_assert_int_eq(paramd__core_create_model(&server, &spec, &model, &error), PARAMD_OK);
    float *zeros = calloc(N, sizeof(float));
    float *first = malloc(N * sizeof(float)), *second = malloc(N * sizeof(float));
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = zeros, .grad_count = N,
                              .weights = first};
    paramd__push_outcome outcome;
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    item.weights = second;
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    /* Push 1 (t = 0) moved the weights by -noise with variance eta; push 2
     * (t = 1) by noise of variance eta / 2^gamma. */
    for (int t = 0; t < 2; t++) {
        double sum = 0, squares = 0;
        size_t within_one = 0;
        double variance = eta / pow(1.0 + t, gamma), sigma = sqrt(variance);
        for (size_t i = 0; i < N; i++) {
            double noise = t == 0 ? -(double)first[i] : (double)first[i] - (double)second[i];
            sum += noise;
            squares += noise * noise;
            within_one += fabs(noise) < sigma;
        }
        double mean = sum / N, sample_variance = squares / N - mean * mean;
        /* 6 standard errors: mean sigma/sqrt(N), variance variance*sqrt(2/N). */
        ck_assert_msg(fabs(mean) < 6 * sigma / sqrt(N), "t=%d: mean %g", t, mean);
        ck_assert_msg(fabs(sample_variance - variance) < 6 * variance * sqrt(2.0 / N),
                      "t=%d: variance %g, expected %g", t, sample_variance, variance);
        /* Gaussian: 68.27% within one sigma (standard error 0.00045). */
        double fraction = (double)within_one / N;
        ck_assert_msg(fabs(fraction - 0.682689) < 0.003, "t=%d: %g within one sigma", t,
                      fraction);
    }
    free(zeros);
    free(first);
    free(second);
    drop(model);
}
END_TEST

START_TEST(test_noise_reproducible_and_thread_independent)
{
    enum { N = 300000 }; /* above the parallel threshold */
    static float in[N], parallel_out[N];
    for (size_t i = 0; i < N; i++)
        in[i] = (float)(i % 7) - 3;
    uint64_t stream = paramd__grad_noise_stream(1, 0, 0);
    ck_assert_int_eq(paramd__parallel_start(2), PARAMD_OK);
    paramd__grad_noise_add(in, parallel_out, N, 0.1, stream);
    paramd__parallel_stop();
    size_t mismatches = 0;
    for (size_t i = 0; i < N; i++) {
        float serial = in[i] + (float)(0.1 * paramd__grad_noise_normal(stream, i));
        mismatches += memcmp(&serial, &parallel_out[i], sizeof serial) != 0;
    }
    ck_assert_uint_eq(mismatches, 0);
    /* Streams differ by seed, tensor and draw; a stream is a pure function. */
    ck_assert(paramd__grad_noise_stream(1, 0, 0) == stream);
    ck_assert(paramd__grad_noise_stream(2, 0, 0) != stream);
    ck_assert(paramd__grad_noise_stream(1, 1, 0) != stream);
    ck_assert(paramd__grad_noise_stream(1, 0, 1) != stream);
    ck_assert(paramd__grad_noise_normal(stream, 5) == paramd__grad_noise_normal(stream, 5));
    ck_assert(paramd__grad_noise_normal(stream, 5) != paramd__grad_noise_normal(stream, 6));
    /* sigma_t = sqrt(eta / (1 + t)^gamma). */
    paramd__grad_noise_config config = {.enabled = true, .eta = 0.01, .gamma = 0.55};
    ck_assert(paramd__grad_noise_stddev(&config, 0) == 0.1);
    ck_assert(fabs(paramd__grad_noise_stddev(&config, 99) - sqrt(0.01 / pow(100, 0.55))) < 1e-15);
}
END_TEST

START_TEST(test_noise_same_seed_same_weights)
{
    float results[3][4];
    const uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        paramd__model_spec spec = {.grad_noise = {.enabled = true, .eta = 1.0, .gamma = 0.55,
                                                  .seed = seeds[k]}};
        paramd__model *model = make_model(spec);
        float w[4] = {1, 2, 3, 4}, b[2] = {0, 0}, b_out[2];
        paramd__push_outcome outcome;
        paramd__error error = {0};
        for (int p = 0; p < 3; p++)
            ck_assert_int_eq(push(model, w, b, results[k], b_out, &outcome, &error), PARAMD_OK);
        ck_assert_uint_eq(model->extras[0].noise_draws, 3);
        drop(model);
    }
    ck_assert_mem_eq(results[0], results[1], sizeof results[0]);
    ck_assert(memcmp(results[0], results[2], sizeof results[0]) != 0);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Order of the stages
 * ------------------------------------------------------------------------- */

START_TEST(test_order_unscale_clip_accumulate)
{
    /* Scale 4: [8, -40] unscales to [2, -10], clipped to [1, -1]; then
     * [2, 2] -> [0.5, 0.5].  The sum [1.5, -0.5] steps.  Clipping after
     * accumulation would give [1, -1]; before unscaling, [0.25, -0.25]. */
    paramd__model_spec spec = {.has_loss_scale = true,
                               .loss_scale = {4.0, 2.0, 0.5, 1000},
                               .accumulate = {2, PARAMD__ACCUMULATE_SUM}};
    spec.clip.mode = PARAMD__CLIP_VALUE;
    spec.clip.value = 1.0;
    paramd__model *model = make_model(spec);
    float b_out[2];
    paramd__push_outcome outcome;
    paramd__error error = {0};
    float first[2] = {8, -40}, second[2] = {2, 2}, overflow[2] = {INFINITY, 0};
    ck_assert_int_eq(push(model, NULL, first, NULL, b_out, &outcome, &error), PARAMD_OK);
    /* An overflow between them is skipped, accumulates nothing, and halves the scale. */
    ck_assert_int_eq(push(model, NULL, overflow, NULL, b_out, &outcome, &error), PARAMD_OK);
    ck_assert(outcome.skipped && outcome.loss_scale == 2.0f);
    second[0] = 1; /* [1, 1] at scale 2 is again [0.5, 0.5] */
    second[1] = 1;
    ck_assert_int_eq(push(model, NULL, second, NULL, b_out, &outcome, &error), PARAMD_OK);
    ck_assert(!outcome.skipped);
    float expected[2] = {-1.5f, 0.5f};
    assert_floats(b_out, expected, 2, "b");
    ck_assert_uint_eq(outcome.step, 1);
    drop(model);
}
END_TEST

START_TEST(test_order_noise_after_clip)
{
    /* Clipping to 1e-6 before noise of variance 1 leaves the noise visible;
     * noise before clipping would be clipped away. */
    paramd__model_spec spec = {.grad_noise = {.enabled = true, .eta = 1.0, .gamma = 0.55,
                                              .seed = 3}};
    spec.clip.mode = PARAMD__CLIP_VALUE;
    spec.clip.value = 1e-6;
    paramd__model *model = make_model(spec);
    float w[4] = {5, 5, 5, 5}, w_out[4];
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(push(model, w, NULL, w_out, NULL, &outcome, &error), PARAMD_OK);
    int large = 0;
    for (int i = 0; i < 4; i++)
        large += fabsf(w_out[i]) > 1e-3f;
    ck_assert_int_ge(large, 3);
    drop(model);
}
END_TEST

START_TEST(test_option_errors)
{
    paramd__model *model = make_model((paramd__model_spec){0});
    float w[4] = {1, 1, 1, 1};
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = w, .grad_count = 4};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    paramd__push_options options = {NAN, NAN, 1024};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, &item, 1, &options, &outcome, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "loss_scale") != NULL, "%s", error.message);
    options.loss_scale = -1;
    ck_assert_int_eq(paramd__core_push_ex(&server, model, &item, 1, &options, &outcome, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_uint_eq(atomic_load(&model->step), 0);
    drop(model);
    /* Creation refuses "zero" with a loss scale, and bad option values. */
    paramd__model_spec spec = {.name = "bad", .optimizer = sgd(1),
                               .nonfinite = PARAMD__NONFINITE_ZERO, .has_loss_scale = true};
    paramd__loss_scale_config_init(&spec.loss_scale);
    paramd__tensor_spec tensor = {.name = "w", .dimension_count = 0};
    paramd__initializer_init(&tensor.initializer, paramd__initializer_find("zeros"));
    spec.tensors = &tensor;
    spec.tensor_count = 1;
    ck_assert_int_eq(paramd__core_create_model(&server, &spec, NULL, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "nonfinite") != NULL, "%s", error.message);
    spec.nonfinite = PARAMD__NONFINITE_ERROR;
    spec.accumulate.steps = -2;
    ck_assert_int_eq(paramd__core_create_model(&server, &spec, NULL, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "accumulate.steps") != NULL, "%s", error.message);
    spec.accumulate.steps = 0;
    spec.grad_noise = (paramd__grad_noise_config){.enabled = true, .eta = 0, .gamma = 0.55};
    ck_assert_int_eq(paramd__core_create_model(&server, &spec, NULL, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "grad_noise.eta") != NULL, "%s", error.message);
    ck_assert_ptr_null(paramd__registry_acquire(&server.registry, "bad"));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("push_pipeline");
    TCase *nonfinite = tcase_create("nonfinite");
    tcase_add_checked_fixture(nonfinite, setup, teardown);
    tcase_add_test(nonfinite, test_nonfinite_error_changes_nothing);
    tcase_add_test(nonfinite, test_nonfinite_skip);
    tcase_add_test(nonfinite, test_nonfinite_zero_before_clip);
    tcase_add_test(nonfinite, test_writable_gradients_are_used_in_place);
    suite_add_tcase(suite, nonfinite);
    TCase *accumulate = tcase_create("accumulate");
    tcase_add_checked_fixture(accumulate, setup, teardown);
    tcase_add_test(accumulate, test_accumulate_mean_and_sum);
    tcase_add_test(accumulate, test_accumulate_is_per_tensor);
    tcase_add_test(accumulate, test_accumulate_advances_schedule_per_optimizer_step);
    suite_add_tcase(suite, accumulate);
    TCase *noise = tcase_create("noise");
    tcase_add_checked_fixture(noise, setup, teardown);
    tcase_set_timeout(noise, 300);
    tcase_add_test(noise, test_noise_statistics);
    tcase_add_test(noise, test_noise_reproducible_and_thread_independent);
    tcase_add_test(noise, test_noise_same_seed_same_weights);
    suite_add_tcase(suite, noise);
    TCase *order = tcase_create("order");
    tcase_add_checked_fixture(order, setup, teardown);
    tcase_add_test(order, test_order_unscale_clip_accumulate);
    tcase_add_test(order, test_order_noise_after_clip);
    tcase_add_test(order, test_option_errors);
    suite_add_tcase(suite, order);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
