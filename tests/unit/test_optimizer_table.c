/*
 * test_optimizer_table.c - invariants of the optimizer table, checked for
 * every row so that a new optimizer cannot be added half-described, and the
 * range checks of paramd__optimizer_config_set.
 */
#include "test_util.h"

#include "optimizer.h"

#include <math.h>
#include <string.h>
#include <strings.h>

START_TEST(test_rows_are_complete)
{
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        ck_assert_ptr_nonnull(type->name);
        ck_assert_ptr_nonnull(type->prepare);
        ck_assert_ptr_nonnull(type->kernel);
        ck_assert_ptr_nonnull(type->reference_kernel);
        ck_assert_ptr_nonnull(type->uses_state_slot);
        ck_assert_int_le(type->state_slot_count, PARAMD__MAX_STATE_SLOTS);
        for (int s = 0; s < type->state_slot_count; s++)
            ck_assert_ptr_nonnull(type->state_slot_names[s]);
        ck_assert_ptr_eq(paramd__optimizer_find(type->name), type);
        for (int u = 0; u < t; u++)
            ck_assert_msg(strcasecmp(paramd__optimizer_types[u]->name, type->name) != 0,
                          "duplicate optimizer name %s", type->name);
    }
}
END_TEST

START_TEST(test_schemas_are_consistent)
{
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        bool used[PARAMD__MAX_HYPERPARAMETERS] = {false};
        ck_assert_ptr_nonnull(paramd__optimizer_find_hyperparameter(type, "lr"));
        for (int i = 0; i < type->hyperparameter_count; i++) {
            const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
            int width = spec->kind == PARAMD__HYPERPARAMETER_PAIR ? 2 : 1;
            ck_assert_ptr_nonnull(spec->description);
            for (int w = 0; w < width; w++) {
                ck_assert_int_lt(spec->slot + w, PARAMD__MAX_HYPERPARAMETERS);
                ck_assert_msg(!used[spec->slot + w], "%s.%s: slot %d used twice", type->name,
                              spec->name, spec->slot + w);
                used[spec->slot + w] = true;
            }
            ck_assert_ptr_eq(paramd__optimizer_find_hyperparameter(type, spec->name), spec);
            /* Every default is inside its own valid range. */
            if (!(spec->flags & PARAMD__HYPERPARAMETER_REQUIRED)) {
                paramd__optimizer_config config;
                paramd__optimizer_config_init(&config, type);
                ck_assert_msg(paramd__optimizer_config_set(&config, spec, spec->default_value,
                                                           spec->name, NULL) == PARAMD_OK,
                              "%s.%s: default outside its range", type->name, spec->name);
            }
        }
    }
}
END_TEST

/* The defaults are torch.optim's. */
START_TEST(test_torch_defaults)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("adam"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    paramd__optimizer_config_init(&config, paramd__optimizer_find("AdamW"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 1e-2);
    paramd__optimizer_config_init(&config, paramd__optimizer_find("sgd"));
    ck_assert(isnan(paramd__optimizer_config_get(&config, "lr"))); /* required */
    paramd__error error;
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.lr"));
    ck_assert_ptr_null(paramd__optimizer_find("Adagrad2000"));
}
END_TEST

START_TEST(test_ranges_are_enforced)
{
    const paramd__optimizer_type *adam = paramd__optimizer_find("Adam");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, adam);
    paramd__optimizer_config before = config;
    paramd__error error;
    const paramd__hyperparameter_spec *betas = paramd__optimizer_find_hyperparameter(adam, "betas");
    double bad_betas[2] = {0.9, 1.0};
    ck_assert_int_eq(paramd__optimizer_config_set(&config, betas, bad_betas, "optimizer.betas",
                                                  &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.betas[1]"));
    ck_assert_ptr_nonnull(strstr(error.message, "[0, 1)"));
    ck_assert(memcmp(&config, &before, sizeof config) == 0); /* nothing changed */
    double good_betas[2] = {0.0, 0.5};
    ck_assert_int_eq(paramd__optimizer_config_set(&config, betas, good_betas, "b", &error),
                     PARAMD_OK);
    const paramd__hyperparameter_spec *lr = paramd__optimizer_find_hyperparameter(adam, "lr");
    double values[1] = {-1e-3};
    ck_assert_int_eq(paramd__optimizer_config_set(&config, lr, values, "optimizer.lr", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    values[0] = INFINITY;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, lr, values, "optimizer.lr", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    values[0] = NAN;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, lr, values, "optimizer.lr", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    values[0] = 0; /* lr = 0 is allowed, as in torch */
    ck_assert_int_eq(paramd__optimizer_config_set(&config, lr, values, "optimizer.lr", &error),
                     PARAMD_OK);
    const paramd__hyperparameter_spec *amsgrad =
        paramd__optimizer_find_hyperparameter(adam, "amsgrad");
    values[0] = 0.5;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, amsgrad, values, "a", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
}
END_TEST

START_TEST(test_sgd_nesterov_rule)
{
    const paramd__optimizer_type *sgd = paramd__optimizer_find("SGD");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, sgd);
    double one[1] = {1}, lr[1] = {0.1};
    paramd__optimizer_config_set(&config, paramd__optimizer_find_hyperparameter(sgd, "lr"), lr,
                                 "lr", NULL);
    paramd__optimizer_config_set(&config, paramd__optimizer_find_hyperparameter(sgd, "nesterov"),
                                 one, "nesterov", NULL);
    paramd__error error;
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "nesterov"));
    double momentum[1] = {0.9};
    paramd__optimizer_config_set(&config, paramd__optimizer_find_hyperparameter(sgd, "momentum"),
                                 momentum, "momentum", NULL);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", &error), PARAMD_OK);
    /* Momentum decides whether SGD keeps a buffer. */
    ck_assert(sgd->uses_state_slot(&config, 0));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("optimizer_table");
    TCase *tcase = tcase_create("table");
    tcase_add_test(tcase, test_rows_are_complete);
    tcase_add_test(tcase, test_schemas_are_consistent);
    tcase_add_test(tcase, test_torch_defaults);
    tcase_add_test(tcase, test_ranges_are_enforced);
    tcase_add_test(tcase, test_sgd_nesterov_rule);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
