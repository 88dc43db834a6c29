/*
 * test_kernels.c - the fast (vectorised, threaded) kernels agree with the
 * portable reference kernels bit for bit, for every optimizer in the table,
 * every combination of its boolean hyperparameters, lengths that are not a
 * multiple of any vector width, unaligned starts, and tensors large enough to
 * be split across the thread pool.
 */
#include "test_util.h"

#include "optimizer.h"
#include "parallel.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* A small deterministic generator (xorshift64*) for test data. */
static uint64_t random_state = 88172645463325252ULL;
static float random_float(float scale)
{
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    uint64_t bits = random_state * 2685821657736338717ULL;
    return scale * (float)((double)(bits >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* Sets a configuration's booleans from the bits of `mask` and a few
 * non-default reals, then validates it; returns false if invalid. */
static bool make_config(const paramd__optimizer_type *type, unsigned mask,
                        paramd__optimizer_config *config)
{
    paramd__optimizer_config_init(config, type);
    int bit = 0;
    for (int i = 0; i < type->hyperparameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
        double values[2];
        if (spec->kind == PARAMD__HYPERPARAMETER_BOOLEAN) {
            values[0] = (mask >> bit++) & 1;
        } else if (strcmp(spec->name, "lr") == 0) {
            values[0] = 0.01;
        } else if (strcmp(spec->name, "momentum") == 0) {
            /* Bit 0 (SGD's nesterov needs momentum), made independent of
             * the first boolean by bit 4 (RMSprop's centered). */
            values[0] = ((mask ^ (mask >> 4)) & 1) ? 0.9 : 0.0;
        } else if (strcmp(spec->name, "weight_decay") == 0) {
            /* Bit 1, made independent of the second boolean by bit 5. */
            values[0] = (((mask >> 1) ^ (mask >> 5)) & 1) ? 0.0 : 0.05;
        } else if (strcmp(spec->name, "dampening") == 0) {
            values[0] = (mask & 4) ? 0.0 : 0.1;
        } else if (strcmp(spec->name, "lr_decay") == 0) {
            values[0] = 0.01;
        } else if (strcmp(spec->name, "initial_accumulator_value") == 0) {
            values[0] = (mask & 4) ? 0.0 : 0.1;
        } else if (strcmp(spec->name, "etas") == 0) {
            /* Rprop; an etaminus that rounds to float32 0 ends up as 1. */
            values[0] = (mask & 4) ? 1e-50 : 0.5;
            values[1] = 1.2;
        } else if (strcmp(spec->name, "step_sizes") == 0) {
            /* Rprop; narrow enough that both bounds clamp. */
            values[0] = (mask & 8) ? 0.009 : 1e-6;
            values[1] = (mask & 8) ? 0.011 : 50;
        } else if (strcmp(spec->name, "min_gain") == 0) {
            /* DeltaBarDelta; narrow enough that both bounds clip. */
            values[0] = (mask & 8) ? 0.9 : 0.01;
        } else if (strcmp(spec->name, "max_gain") == 0) {
            values[0] = (mask & 8) ? 1.1 : 10;
        } else if (strcmp(spec->name, "t0") == 0) {
            /* ASGD averages (mu != 1) from step t0 + 3 on. */
            values[0] = (mask & 4) ? 1e6 : 2;
        } else {
            continue;
        }
        if (paramd__optimizer_config_set(config, spec, values, spec->name, NULL) != PARAMD_OK)
            return false;
    }
    return paramd__optimizer_config_validate(config, "optimizer", NULL) == PARAMD_OK;
}

typedef struct buffers {
    float *param, *grad, *state[PARAMD__MAX_STATE_SLOTS];
} buffers;

/* State starts as paramd__tensor_create leaves it: zeros, then the
 * optimizer's init_state hook (e.g. Adagrad's initial_accumulator_value). */
static void buffers_alloc(buffers *b, size_t count, const paramd__optimizer_config *config)
{
    memset(b, 0, sizeof *b);
    b->param = malloc((count + 1) * sizeof(float));
    b->grad = malloc((count + 1) * sizeof(float));
    for (int s = 0; s < config->type->state_slot_count; s++)
        if (config->type->uses_state_slot(config, s))
            b->state[s] = calloc(count + 1, sizeof(float));
    if (config->type->init_state)
        config->type->init_state(config, b->state, count + 1);
}

static void buffers_free(buffers *b)
{
    free(b->param);
    free(b->grad);
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        free(b->state[s]);
}

static paramd__step_arrays arrays_at(const buffers *b, size_t offset)
{
    paramd__step_arrays arrays = {.param = b->param + offset, .grad = b->grad + offset};
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        arrays.state[s] = b->state[s] ? b->state[s] + offset : NULL;
    return arrays;
}

/* Runs `steps` steps through both kernels from identical data and compares
 * parameters and every state slot bit for bit after each step. */
static void compare(const paramd__optimizer_config *config, size_t count, size_t offset,
                    int steps)
{
    buffers fast, reference;
    buffers_alloc(&fast, count + offset, config);
    buffers_alloc(&reference, count + offset, config);
    for (size_t i = 0; i < count + offset; i++)
        fast.param[i] = reference.param[i] = random_float(2.0f);
    for (int step = 1; step <= steps; step++) {
        float scale = step % 3 == 0 ? 10.0f : step % 3 == 1 ? 1.0f : 1e-3f;
        for (size_t i = 0; i < count + offset; i++)
            fast.grad[i] = reference.grad[i] = i % 7 == 0 ? 0.0f : random_float(scale);
        paramd__step_arrays fast_arrays = arrays_at(&fast, offset);
        paramd__step_arrays reference_arrays = arrays_at(&reference, offset);
        paramd__optimizer_step(config, (uint64_t)step, &fast_arrays, count);
        paramd__optimizer_step_reference(config, (uint64_t)step, &reference_arrays, count);
        ck_assert_msg(memcmp(fast.param, reference.param, (count + offset) * sizeof(float)) == 0,
                      "%s: parameters differ after step %d (count %zu, offset %zu)",
                      config->type->name, step, count, offset);
        for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
            if (fast.state[s])
                ck_assert_msg(memcmp(fast.state[s], reference.state[s],
                                     (count + offset) * sizeof(float)) == 0,
                              "%s: state %s differs after step %d (count %zu)",
                              config->type->name, config->type->state_slot_names[s], step,
                              count);
    }
    buffers_free(&fast);
    buffers_free(&reference);
}

START_TEST(test_fast_matches_reference_small)
{
    static const size_t lengths[] = {1, 2, 7, 15, 16, 17, 31, 33, 63, 64, 65, 257, 1000};
    int configurations = 0;
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        for (unsigned mask = 0; mask < 64; mask++) {
            paramd__optimizer_config config;
            if (!make_config(type, mask, &config))
                continue;
            configurations++;
            for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
                compare(&config, lengths[l], mask % 3, 6);
        }
    }
    ck_assert_int_gt(configurations, 3 * 8);
}
END_TEST

/* Large enough that paramd__optimizer_step splits it over the pool. */
START_TEST(test_fast_matches_reference_threaded)
{
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    ck_assert_int_eq(paramd__parallel_width(), 4);
    size_t count = PARAMD__PARALLEL_STEP_MINIMUM * 3 + 5;
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        /* Every valid combination of booleans, on a tensor the pool splits. */
        for (unsigned mask = 0; mask < 8; mask++) {
            paramd__optimizer_config config;
            if (make_config(paramd__optimizer_types[t], mask, &config))
                compare(&config, count, 0, 3);
        }
    }
    paramd__parallel_stop();
}
END_TEST

/* The comparison itself can fail: a one-ulp change is caught. */
START_TEST(test_comparison_detects_one_ulp)
{
    float a = 1.0f, b = nextafterf(1.0f, 2.0f);
    ck_assert(memcmp(&a, &b, sizeof a) != 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("kernels");
    TCase *tcase = tcase_create("fast_vs_reference");
    tcase_set_timeout(tcase, 300);
    tcase_add_test(tcase, test_fast_matches_reference_small);
    tcase_add_test(tcase, test_fast_matches_reference_threaded);
    tcase_add_test(tcase, test_comparison_detects_one_ulp);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
