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
    if (type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL)
        return false; /* LBFGS: no kernel (test_lbfgs.c) */
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
    size_t state_length[PARAMD__MAX_STATE_SLOTS];
} buffers;

/* A flat tensor, or one of `dimension_count` dimensions (count must be
 * their product). */
typedef struct tensor_shape {
    int dimension_count;
    int64_t shape[4];
} tensor_shape;

static const tensor_shape flat = {0, {0}};

/* State starts as paramd__tensor_create leaves it: zeros, then the
 * optimizer's init_state hook (e.g. Adagrad's initial_accumulator_value).
 * `extra` floats beyond `count` allow unaligned views (flat tensors only). */
static void buffers_alloc(buffers *b, size_t count, size_t extra,
                          const paramd__optimizer_config *config, const tensor_shape *shape)
{
    memset(b, 0, sizeof *b);
    b->param = malloc((count + extra + 1) * sizeof(float));
    b->grad = malloc((count + extra + 1) * sizeof(float));
    for (int s = 0; s < config->type->state_slot_count; s++) {
        size_t length = paramd__optimizer_state_length(config, s, shape->dimension_count,
                                                       shape->shape, count);
        if (length == 0)
            continue;
        if (length == count)
            length += extra;
        b->state[s] = calloc(length + 1, sizeof(float));
        b->state_length[s] = length;
    }
    if (config->type->init_state)
        config->type->init_state(config, b->state, count + extra);
}

static void buffers_free(buffers *b)
{
    free(b->param);
    free(b->grad);
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        free(b->state[s]);
}

static paramd__step_arrays arrays_at(const buffers *b, size_t offset, const tensor_shape *shape)
{
    paramd__step_arrays arrays = {.param = b->param + offset,
                                  .grad = b->grad + offset,
                                  .dimension_count = shape->dimension_count,
                                  .shape = shape->shape};
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        arrays.state[s] = b->state[s] ? b->state[s] + offset : NULL;
    return arrays;
}

/* Whether fast and reference may differ by rounding: Muon's matrix
 * products (sgemm against plain double-precision loops). */
static bool compared_with_tolerance(const paramd__optimizer_config *config,
                                    const tensor_shape *shape)
{
    return strcmp(config->type->name, "Muon") == 0 && shape->dimension_count == 2 &&
           paramd__optimizer_state_length(config, 0, 2, shape->shape, 1) != 0;
}

static void assert_arrays_agree(const paramd__optimizer_config *config, const float *fast,
                                const float *reference, size_t count, bool tolerant,
                                const char *what, int step)
{
    if (!tolerant) {
        ck_assert_msg(memcmp(fast, reference, count * sizeof(float)) == 0,
                      "%s: %s differ after step %d (count %zu)", config->type->name, what, step,
                      count);
        return;
    }
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(fabsf(fast[i] - reference[i]) <= 1e-4f * fabsf(reference[i]) + 1e-6f,
                      "%s: %s[%zu] %.9g (fast) and %.9g (reference) after step %d",
                      config->type->name, what, i, (double)fast[i], (double)reference[i], step);
}

/* Runs `steps` steps through both kernels from identical data and compares
 * parameters and every state slot after each step: bit for bit, or within
 * a tight tolerance for Muon's matrix products. */
static void compare_shaped(const paramd__optimizer_config *config, size_t count, size_t offset,
                           int steps, const tensor_shape *shape)
{
    buffers fast, reference;
    buffers_alloc(&fast, count, offset, config, shape);
    buffers_alloc(&reference, count, offset, config, shape);
    bool tolerant = compared_with_tolerance(config, shape);
    for (size_t i = 0; i < count + offset; i++)
        fast.param[i] = reference.param[i] = random_float(2.0f);
    for (int step = 1; step <= steps; step++) {
        float scale = step % 3 == 0 ? 10.0f : step % 3 == 1 ? 1.0f : 1e-3f;
        for (size_t i = 0; i < count + offset; i++)
            fast.grad[i] = reference.grad[i] = i % 7 == 0 ? 0.0f : random_float(scale);
        paramd__step_arrays fast_arrays = arrays_at(&fast, offset, shape);
        paramd__step_arrays reference_arrays = arrays_at(&reference, offset, shape);
        paramd__optimizer_step(config, (uint64_t)step, &fast_arrays, count);
        paramd__optimizer_step_reference(config, (uint64_t)step, &reference_arrays, count);
        assert_arrays_agree(config, fast.param, reference.param, count + offset, tolerant,
                            "parameters", step);
        for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
            if (fast.state[s])
                assert_arrays_agree(config, fast.state[s], reference.state[s],
                                    fast.state_length[s], tolerant,
                                    config->type->state_slot_names[s], step);
    }
    buffers_free(&fast);
    buffers_free(&reference);
}

static void compare(const paramd__optimizer_config *config, size_t count, size_t offset,
                    int steps)
{
    compare_shaped(config, count, offset, steps, &flat);
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

static size_t shape_count(const tensor_shape *shape)
{
    size_t count = 1;
    for (int d = 0; d < shape->dimension_count; d++)
        count *= (size_t)shape->shape[d];
    return count;
}

/* Tensor-wise optimizers read the shape: matrices wide and tall, batched
 * matrices, a single row, a scalar. */
START_TEST(test_fast_matches_reference_shaped)
{
    static const tensor_shape shapes[] = {
        {2, {37, 45}}, {2, {45, 37}}, {3, {3, 17, 19}}, {2, {1, 33}}, {2, {33, 1}},
        {0, {0}},      {1, {1000}},   {4, {2, 2, 5, 16}},
    };
    int configurations = 0;
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        if (type->tensor_step == NULL)
            continue;
        for (unsigned mask = 0; mask < 32; mask++) {
            paramd__optimizer_config config;
            if (!make_config(type, mask, &config))
                continue;
            configurations++;
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                compare_shaped(&config, shapes[i].dimension_count ? shape_count(&shapes[i]) : 1,
                               0, 5, &shapes[i]);
        }
    }
    ck_assert_int_ge(configurations, 4 * 4);
}
END_TEST

/* Large shaped tensors go through the thread pool, and their sums are taken
 * in blocks and row blocks: still bit-identical to the serial reference, so
 * results do not depend on the thread count. */
START_TEST(test_fast_matches_reference_shaped_threaded)
{
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    static const tensor_shape large[] = {{2, {600, 701}}, {2, {70, 6001}}, {3, {2, 400, 400}}};
    static const tensor_shape muon[] = {{2, {96, 160}}, {2, {160, 96}}};
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        if (type->tensor_step == NULL)
            continue;
        bool is_muon = strcmp(type->name, "Muon") == 0;
        const tensor_shape *shapes = is_muon ? muon : large;
        size_t shape_total = is_muon ? 2 : 3;
        for (unsigned mask = 0; mask < 4; mask++) {
            paramd__optimizer_config config;
            if (!make_config(type, mask, &config))
                continue;
            for (size_t i = 0; i < shape_total; i++)
                compare_shaped(&config, shape_count(&shapes[i]), 0, 3, &shapes[i]);
            if (!is_muon)
                compare(&config, PARAMD__PARALLEL_STEP_MINIMUM * 3 + 5, 0, 3);
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
    tcase_add_test(tcase, test_fast_matches_reference_shaped);
    tcase_add_test(tcase, test_fast_matches_reference_shaped_threaded);
    tcase_add_test(tcase, test_comparison_detects_one_ulp);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
