/*
 * test_regularisation.c - the hyperparameters every optimizer has:
 * decoupled_weight_decay and l1 (see server/optimizer.h).  Checks which
 * optimizers take them, their effect on hand-computed values, and that the
 * fast and reference paths agree bit for bit for every optimizer with both
 * enabled.  (That Adam + decoupled_weight_decay reproduces torch's AdamW is
 * checked against the golden files in test_conformance.c.)
 */
#include "test_util.h"

#include "optimizer.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

static void set(paramd__optimizer_config *config, const char *name, double value)
{
    const paramd__hyperparameter_spec *spec =
        paramd__optimizer_find_hyperparameter(config->type, name);
    ck_assert_msg(spec != NULL, "%s has no %s", config->type->name, name);
    double values[2] = {value, value};
    paramd__error error;
    ck_assert_msg(paramd__optimizer_config_set(config, spec, values, name, &error) == PARAMD_OK,
                  "%s.%s: %s", config->type->name, name, error.message);
}

START_TEST(test_which_optimizers_take_them)
{
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        if (type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL) {
            /* LBFGS: torch's keywords only. */
            ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(type, "l1"));
            ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(type, "decoupled_weight_decay"));
            continue;
        }
        /* Every other optimizer takes l1. */
        ck_assert_ptr_nonnull(paramd__optimizer_find_hyperparameter(type, "l1"));
        bool has_weight_decay =
            paramd__optimizer_find_hyperparameter(type, "weight_decay") != NULL;
        bool already_decoupled = type->flags & PARAMD__OPTIMIZER_DECOUPLED;
        bool takes_flag =
            paramd__optimizer_find_hyperparameter(type, "decoupled_weight_decay") != NULL;
        ck_assert_msg(takes_flag == (has_weight_decay && !already_decoupled),
                      "%s: decoupled_weight_decay offered wrongly", type->name);
        /* The common slots are free in every schema. */
        for (int i = 0; i < type->hyperparameter_count; i++)
            ck_assert_int_lt(type->hyperparameters[i].slot +
                                 paramd__hyperparameter_width(type->hyperparameters[i].kind) - 1,
                             PARAMD__FIRST_COMMON_SLOT);
    }
    ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(paramd__optimizer_find("AdamW"),
                                                             "decoupled_weight_decay"));
    ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(paramd__optimizer_find("Rprop"),
                                                             "decoupled_weight_decay"));
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("Adam"));
    double negative[1] = {-0.1};
    paramd__error error;
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(config.type, "l1"),
                         negative, "optimizer.l1", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.l1"));
}
END_TEST

/* SGD, lr 0.1, l1 0.5, zero gradient: the weights only shrink towards zero
 * by lr * l1 = 0.05 and stop there. */
START_TEST(test_l1_soft_threshold)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("SGD"));
    set(&config, "lr", 0.1);
    set(&config, "l1", 0.5);
    float param[6] = {1.0f, 0.03f, -0.02f, -2.0f, 0.05f, -0.06f};
    float grad[6] = {0};
    paramd__step_arrays arrays = {.param = param, .grad = grad};
    paramd__optimizer_step(&config, 1, &arrays, 6);
    const float t = 0.05f;
    const float expected[6] = {1.0f - t, 0.0f, 0.0f, -2.0f + t, 0.0f, -0.06f + t};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(param[i] == expected[i], "element %d: %.9g, expected %.9g", i,
                      (double)param[i], (double)expected[i]);
}
END_TEST

/* SGD with decoupled weight decay: p = p * (1 - lr * wd) - lr * g, instead
 * of p - lr * (g + wd * p). */
START_TEST(test_decoupled_weight_decay)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("SGD"));
    set(&config, "lr", 0.5);
    set(&config, "weight_decay", 0.2);
    set(&config, "decoupled_weight_decay", 1);
    float param[2] = {2.0f, -4.0f};
    float grad[2] = {1.0f, 1.0f};
    paramd__step_arrays arrays = {.param = param, .grad = grad};
    paramd__optimizer_step(&config, 1, &arrays, 2);
    /* 1 - 0.5 * 0.2 = 0.9: 2 * 0.9 - 0.5 = 1.3, -4 * 0.9 - 0.5 = -4.1. */
    ck_assert_float_eq(param[0], fmaf(1.0f, -0.5f, 2.0f * 0.9f));
    ck_assert_float_eq(param[1], fmaf(1.0f, -0.5f, -4.0f * 0.9f));
    ck_assert_float_eq_tol(param[0], 1.3f, 1e-6f);
    ck_assert_float_eq_tol(param[1], -4.1f, 1e-6f);
}
END_TEST

/* Fast (threaded, vectorised) and reference paths agree bit for bit for
 * every optimizer with l1 and, where offered, decoupled weight decay. */
static void compare_paths(const paramd__optimizer_config *config, size_t count)
{
    float *fast[1 + PARAMD__MAX_STATE_SLOTS] = {0}, *reference[1 + PARAMD__MAX_STATE_SLOTS] = {0};
    float *grad = malloc(count * sizeof(float));
    for (int a = 0; a <= PARAMD__MAX_STATE_SLOTS; a++) {
        if (a > 0 && (a - 1 >= config->type->state_slot_count ||
                      !config->type->uses_state_slot(config, a - 1)))
            continue;
        fast[a] = calloc(count, sizeof(float));
        reference[a] = calloc(count, sizeof(float));
    }
    for (size_t i = 0; i < count; i++)
        fast[0][i] = reference[0][i] = (float)((int)(i % 201) - 100) * 0.01f;
    /* The fast path also copies its weights out, fused with its last pass
     * over them (what a PUSHPULL's reply uses): the copy must be exact. */
    float *out = malloc(count * sizeof(float));
    paramd__step_arrays fast_arrays = {.param = fast[0], .grad = grad, .weights_out = out};
    paramd__step_arrays reference_arrays = {.param = reference[0], .grad = grad};
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++) {
        fast_arrays.state[s] = fast[s + 1];
        reference_arrays.state[s] = reference[s + 1];
    }
    if (config->type->init_state) {
        config->type->init_state(config, fast_arrays.state, count);
        config->type->init_state(config, reference_arrays.state, count);
    }
    for (uint64_t step = 1; step <= 4; step++) {
        for (size_t i = 0; i < count; i++)
            grad[i] = (float)((int)((i * 7 + step * 13) % 11) - 5) * 0.1f;
        paramd__optimizer_step(config, step, &fast_arrays, count);
        paramd__optimizer_step_reference(config, step, &reference_arrays, count);
        ck_assert_msg(memcmp(fast[0], reference[0], count * sizeof(float)) == 0,
                      "%s: weights differ after step %llu", config->type->name,
                      (unsigned long long)step);
        ck_assert_msg(memcmp(out, fast[0], count * sizeof(float)) == 0,
                      "%s: the weights copied out differ after step %llu", config->type->name,
                      (unsigned long long)step);
    }
    free(out);
    for (int a = 0; a <= PARAMD__MAX_STATE_SLOTS; a++) {
        free(fast[a]);
        free(reference[a]);
    }
    free(grad);
}

START_TEST(test_fast_matches_reference_with_regularisation)
{
    ck_assert_int_eq(paramd__parallel_start(2), PARAMD_OK);
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        if (paramd__optimizer_types[t]->flags & PARAMD__OPTIMIZER_WHOLE_MODEL)
            continue; /* LBFGS has no per-tensor kernel */
        paramd__optimizer_config config;
        paramd__optimizer_config_init(&config, paramd__optimizer_types[t]);
        set(&config, "lr", 0.01);
        set(&config, "l1", 0.02);
        if (paramd__optimizer_find_hyperparameter(config.type, "decoupled_weight_decay")) {
            set(&config, "weight_decay", 0.1);
            set(&config, "decoupled_weight_decay", 1);
        }
        ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL),
                         PARAMD_OK);
        compare_paths(&config, 1003);
        compare_paths(&config, PARAMD__PARALLEL_STEP_MINIMUM + 77);
        /* Without L1 the copy rides on the kernel's own pass. */
        set(&config, "l1", 0);
        compare_paths(&config, PARAMD__PARALLEL_STEP_MINIMUM + 4099);
    }
    paramd__parallel_stop();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("regularisation");
    TCase *tcase = tcase_create("common_hyperparameters");
    tcase_set_timeout(tcase, 300);
    tcase_add_test(tcase, test_which_optimizers_take_them);
    tcase_add_test(tcase, test_l1_soft_threshold);
    tcase_add_test(tcase, test_decoupled_weight_decay);
    tcase_add_test(tcase, test_fast_matches_reference_with_regularisation);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
