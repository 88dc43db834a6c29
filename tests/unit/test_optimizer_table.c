/*
 * test_optimizer_table.c - invariants of the optimizer table, checked for
 * every row so that a new optimizer cannot be added half-described, and the
 * range checks of paramd__optimizer_config_set.
 */
#include "test_util.h"

#include "optimizer.h"
#include "tensor.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

START_TEST(test_rows_are_complete)
{
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        ck_assert_ptr_nonnull(type->name);
        /* Element-wise (prepare and both kernels), tensor-wise, or whole-model
         * (LBFGS: no kernel at all, lbfgs.c runs it). */
        if (type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL) {
            ck_assert_msg(type->prepare == NULL && type->kernel == NULL &&
                              type->reference_kernel == NULL && type->tensor_step == NULL,
                          "%s: a whole-model optimizer with a kernel", type->name);
        } else if (type->tensor_step) {
            ck_assert_msg(type->prepare == NULL && type->kernel == NULL &&
                              type->reference_kernel == NULL,
                          "%s: tensor_step and element kernels", type->name);
            ck_assert_msg(type->init_state == NULL, "%s: tensor-wise with init_state",
                          type->name);
        } else {
            ck_assert_ptr_nonnull(type->prepare);
            ck_assert_ptr_nonnull(type->kernel);
            ck_assert_ptr_nonnull(type->reference_kernel);
            ck_assert_msg(type->state_slot_length == NULL && type->scratch_bytes == NULL,
                          "%s: element-wise optimizers keep one state float per element",
                          type->name);
        }
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
            int width = paramd__hyperparameter_width(spec->kind);
            ck_assert_ptr_nonnull(spec->description);
            ck_assert_msg((spec->kind == PARAMD__HYPERPARAMETER_CHOICE) == (spec->choices != NULL),
                          "%s.%s: choices go with CHOICE", type->name, spec->name);
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

/* The defaults of the optimizers added after SGD and Adam, as in torch 1.13. */
START_TEST(test_torch_defaults_more)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("adagrad"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr_decay"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "initial_accumulator_value"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-10);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "maximize"), 0);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    paramd__optimizer_config_init(&config, paramd__optimizer_find("rmsprop"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "alpha"), 0.99);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "momentum"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "centered"), 0);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);
    /* momentum and centered decide which state RMSprop keeps. */
    ck_assert(config.type->uses_state_slot(&config, 0));
    ck_assert(!config.type->uses_state_slot(&config, 1));
    ck_assert(!config.type->uses_state_slot(&config, 2));

    paramd__optimizer_config_init(&config, paramd__optimizer_find("ADAMAX"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 2e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(config.values[paramd__optimizer_find_hyperparameter(config.type, "betas")
                                          ->slot + 1],
                        0.999);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    paramd__optimizer_config_init(&config, paramd__optimizer_find("adadelta"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "rho"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-6);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    paramd__optimizer_config_init(&config, paramd__optimizer_find("nadam"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 2e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "momentum_decay"), 4e-3);
    ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(config.type, "maximize"));
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    paramd__optimizer_config_init(&config, paramd__optimizer_find("radam"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(config.type, "maximize"));
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    const paramd__optimizer_type *rprop = paramd__optimizer_find("rprop");
    paramd__optimizer_config_init(&config, rprop);
    int etas = paramd__optimizer_find_hyperparameter(rprop, "etas")->slot;
    int step_sizes = paramd__optimizer_find_hyperparameter(rprop, "step_sizes")->slot;
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(config.values[etas], 0.5);
    ck_assert_double_eq(config.values[etas + 1], 1.2);
    ck_assert_double_eq(config.values[step_sizes], 1e-6);
    ck_assert_double_eq(config.values[step_sizes + 1], 50);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);

    paramd__optimizer_config_init(&config, paramd__optimizer_find("asgd"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lambd"), 1e-4);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "alpha"), 0.75);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "t0"), 1e6);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);
}
END_TEST

/* Rprop's etas: torch requires 0 < etas[0] < 1 < etas[1]. */
START_TEST(test_rprop_etas_rule)
{
    const paramd__optimizer_type *rprop = paramd__optimizer_find("Rprop");
    const paramd__hyperparameter_spec *etas = paramd__optimizer_find_hyperparameter(rprop, "etas");
    static const struct {
        double etas[2];
        bool valid;
    } cases[] = {
        {{0.5, 1.2}, true},    {{1e-50, 1.00001}, true}, {{0.0, 1.2}, false},
        {{-0.5, 1.2}, false},  {{1.0, 1.2}, false},      {{0.5, 1.0}, false},
        {{0.5, 0.9}, false},   {{1.5, 2.0}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paramd__optimizer_config config;
        paramd__optimizer_config_init(&config, rprop);
        paramd__error error;
        int result = paramd__optimizer_config_set(&config, etas, cases[i].etas, "optimizer.etas",
                                                  &error);
        if (result == PARAMD_OK)
            result = paramd__optimizer_config_validate(&config, "optimizer", &error);
        ck_assert_msg((result == PARAMD_OK) == cases[i].valid, "etas (%g, %g): expected %s",
                      cases[i].etas[0], cases[i].etas[1], cases[i].valid ? "valid" : "invalid");
        if (result != PARAMD_OK)
            ck_assert_ptr_nonnull(strstr(error.message, "optimizer.etas"));
    }
    /* Rprop's step_size starts at lr, rounded to float. */
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, rprop);
    int64_t shape[1] = {5};
    paramd__error error;
    paramd__tensor *tensor = paramd__tensor_create("t", 1, shape, &config, &error);
    ck_assert_ptr_nonnull(tensor);
    for (size_t i = 0; i < tensor->count; i++) {
        ck_assert(tensor->state[0][i] == 0.0f);  /* prev */
        ck_assert(tensor->state[1][i] == 0.01f); /* step_size */
    }
    paramd__tensor_destroy(tensor);
}
END_TEST

/* prepare depends only on the configuration and the step, whatever order the
 * steps come in (NAdam caches its mu_product between calls), and the float32
 * step torch keeps stops growing at 2^24. */
START_TEST(test_prepare_is_a_function_of_the_step)
{
    enum { STEPS = 1200 };
    static paramd__step_scalars ascending[STEPS + 1];
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        if (type->prepare == NULL)
            continue; /* tensor-wise: no per-step scalars */
        paramd__optimizer_config config;
        paramd__optimizer_config_init(&config, type);
        const paramd__hyperparameter_spec *lr = paramd__optimizer_find_hyperparameter(type, "lr");
        double value[1] = {0.01};
        ck_assert_int_eq(paramd__optimizer_config_set(&config, lr, value, "lr", NULL), PARAMD_OK);
        for (uint64_t step = 1; step <= STEPS; step++) {
            memset(&ascending[step], 0, sizeof ascending[step]);
            type->prepare(&config, step, &ascending[step]);
        }
        uint64_t step = 7;
        for (int i = 0; i < 3 * STEPS; i++) {
            step = (step * 6364136223846793005ULL + 1442695040888963407ULL);
            uint64_t s = 1 + (step >> 33) % STEPS;
            paramd__step_scalars scalars;
            memset(&scalars, 0, sizeof scalars);
            type->prepare(&config, s, &scalars);
            ck_assert_msg(memcmp(&scalars, &ascending[s], sizeof scalars) == 0,
                          "%s: prepare(step %llu) depends on the calls before it", type->name,
                          (unsigned long long)s);
        }
        paramd__step_scalars at_limit, beyond;
        memset(&at_limit, 0, sizeof at_limit);
        memset(&beyond, 0, sizeof beyond);
        type->prepare(&config, (UINT64_C(1) << 24) + 1, &at_limit);
        type->prepare(&config, (UINT64_C(1) << 24) + 1000, &beyond);
        if (strcmp(type->name, "NAdam") != 0 && strcmp(type->name, "Adagrad") != 0 &&
            strcmp(type->name, "Adamax") != 0 && strcmp(type->name, "RAdam") != 0 &&
            strcmp(type->name, "ASGD") != 0)
            continue;
        ck_assert_msg(memcmp(&at_limit, &beyond, sizeof at_limit) == 0,
                      "%s: torch's float32 step stops at 2^24", type->name);
    }
}
END_TEST

/* torch's constructor checks, for the optimizers added after SGD and Adam. */
START_TEST(test_ranges_more)
{
    static const struct {
        const char *optimizer, *name;
        double value;
        bool valid;
    } cases[] = {
        {"Adagrad", "lr_decay", -1e-3, false},
        {"Adagrad", "initial_accumulator_value", -0.1, false},
        {"Adagrad", "initial_accumulator_value", 0, true},
        {"Adagrad", "eps", 0, true},
        {"RMSprop", "alpha", -0.5, false},
        {"RMSprop", "alpha", 1.5, true}, /* torch checks only alpha >= 0 */
        {"RMSprop", "momentum", -0.1, false},
        {"Adadelta", "rho", 1.0, true},
        {"Adadelta", "rho", 1.01, false},
        {"Adadelta", "rho", -0.01, false},
        {"Adadelta", "lr", -1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const paramd__optimizer_type *type = paramd__optimizer_find(cases[i].optimizer);
        ck_assert_ptr_nonnull(type);
        const paramd__hyperparameter_spec *spec =
            paramd__optimizer_find_hyperparameter(type, cases[i].name);
        ck_assert_ptr_nonnull(spec);
        paramd__optimizer_config config;
        paramd__optimizer_config_init(&config, type);
        double values[1] = {cases[i].value};
        int result = paramd__optimizer_config_set(&config, spec, values, cases[i].name, NULL);
        ck_assert_msg((result == PARAMD_OK) == cases[i].valid, "%s.%s = %g: expected %s",
                      cases[i].optimizer, cases[i].name, cases[i].value,
                      cases[i].valid ? "valid" : "invalid");
    }
    const paramd__optimizer_type *adamax = paramd__optimizer_find("Adamax");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, adamax);
    double betas[2] = {0.9, 1.0};
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(adamax, "betas"), betas,
                         "betas", NULL),
                     PARAMD_E_BAD_HYPERPARAMETER);
}
END_TEST

/* paramd__tensor_create applies the init_state hook: Adagrad's "sum" starts
 * at initial_accumulator_value rounded to float, other state at zero. */
START_TEST(test_init_state)
{
    const paramd__optimizer_type *adagrad = paramd__optimizer_find("Adagrad");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, adagrad);
    double value[1] = {0.1};
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config,
                         paramd__optimizer_find_hyperparameter(adagrad,
                                                               "initial_accumulator_value"),
                         value, "initial_accumulator_value", NULL),
                     PARAMD_OK);
    int64_t shape[1] = {37};
    paramd__error error;
    paramd__tensor *tensor = paramd__tensor_create("t", 1, shape, &config, &error);
    ck_assert_ptr_nonnull(tensor);
    ck_assert_ptr_nonnull(tensor->state[0]);
    for (size_t i = 0; i < tensor->count; i++) {
        ck_assert(tensor->state[0][i] == 0.1f);
        ck_assert(tensor->values[i] == 0.0f);
    }
    paramd__tensor_destroy(tensor);

    const paramd__optimizer_type *adam = paramd__optimizer_find("Adam");
    ck_assert_ptr_null(adam->init_state);
    paramd__optimizer_config_init(&config, adam);
    tensor = paramd__tensor_create("t", 1, shape, &config, &error);
    ck_assert_ptr_nonnull(tensor);
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < tensor->count; i++)
            ck_assert(tensor->state[s][i] == 0.0f);
    paramd__tensor_destroy(tensor);
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


/* The defaults of LAMB, LARS, Adafactor and Muon: the papers', apex's and
 * timm's for LAMB and LARS, torch 2.x's for Adafactor and Muon. */
START_TEST(test_tensor_wise_defaults)
{
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("lamb"));
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-6);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "bias_correction"), 1);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "always_adapt"), 1);
    ck_assert_ptr_null(paramd__optimizer_find_hyperparameter(config.type, "decoupled_weight_decay"));

    paramd__optimizer_config_init(&config, paramd__optimizer_find("LARS"));
    ck_assert(isnan(paramd__optimizer_config_get(&config, "lr"))); /* required, as SGD's */
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "trust_coefficient"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);

    const paramd__optimizer_type *adafactor = paramd__optimizer_find("Adafactor");
    paramd__optimizer_config_init(&config, adafactor);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "beta2_decay"), -0.8);
    int eps = paramd__optimizer_find_hyperparameter(adafactor, "eps")->slot;
    ck_assert_double_eq(config.values[eps], FLT_EPSILON); /* torch: None -> finfo.eps */
    ck_assert_double_eq(config.values[eps + 1], 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "d"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);

    const paramd__optimizer_type *muon = paramd__optimizer_find("muon");
    paramd__optimizer_config_init(&config, muon);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.1);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "momentum"), 0.95);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "nesterov"), 1);
    int ns = paramd__optimizer_find_hyperparameter(muon, "ns_coefficients")->slot;
    ck_assert_double_eq(config.values[ns], 3.4445);
    ck_assert_double_eq(config.values[ns + 1], -4.775);
    ck_assert_double_eq(config.values[ns + 2], 2.0315);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-7);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "ns_steps"), 5);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "adjust_lr_fn"), 0); /* original */
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", NULL), PARAMD_OK);
}
END_TEST

/* Integers, choices and triples are range-checked like numbers. */
START_TEST(test_integer_choice_and_triple)
{
    const paramd__optimizer_type *muon = paramd__optimizer_find("Muon");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, muon);
    paramd__optimizer_config before = config;
    paramd__error error;
    const paramd__hyperparameter_spec *steps =
        paramd__optimizer_find_hyperparameter(muon, "ns_steps");
    double value[3] = {2.5};
    ck_assert_int_eq(paramd__optimizer_config_set(&config, steps, value, "optimizer.ns_steps",
                                                  &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.ns_steps: must be an integer in [0, 99]"));
    value[0] = 100; /* torch refuses 100 steps or more */
    ck_assert_int_eq(paramd__optimizer_config_set(&config, steps, value, "s", NULL),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert(memcmp(&config, &before, sizeof config) == 0);
    value[0] = 0;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, steps, value, "s", NULL), PARAMD_OK);

    const paramd__hyperparameter_spec *adjust =
        paramd__optimizer_find_hyperparameter(muon, "adjust_lr_fn");
    value[0] = 2;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, adjust, value, "optimizer.adjust_lr_fn",
                                                  &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "\"original\", \"match_rms_adamw\""));
    value[0] = 1;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, adjust, value, "a", NULL), PARAMD_OK);

    const paramd__hyperparameter_spec *coefficients =
        paramd__optimizer_find_hyperparameter(muon, "ns_coefficients");
    double triple[3] = {1, 2, NAN};
    ck_assert_int_eq(paramd__optimizer_config_set(&config, coefficients, triple,
                                                  "optimizer.ns_coefficients", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.ns_coefficients[2]"));
    triple[2] = 3;
    ck_assert_int_eq(paramd__optimizer_config_set(&config, coefficients, triple, "c", NULL),
                     PARAMD_OK);
    ck_assert_double_eq(config.values[coefficients->slot + 2], 3);

    /* Adafactor: torch's ranges. */
    const paramd__optimizer_type *adafactor = paramd__optimizer_find("Adafactor");
    paramd__optimizer_config_init(&config, adafactor);
    value[0] = 0.1; /* beta2_decay must be <= 0 */
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(adafactor, "beta2_decay"),
                         value, "b", NULL),
                     PARAMD_E_BAD_HYPERPARAMETER);
    value[0] = 0.5; /* d must be >= 1 */
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(adafactor, "d"), value,
                         "d", NULL),
                     PARAMD_E_BAD_HYPERPARAMETER);
}
END_TEST

/* The state each tensor-wise optimizer keeps depends on the tensor's shape. */
START_TEST(test_state_follows_the_shape)
{
    paramd__error error;
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, paramd__optimizer_find("Adafactor"));
    int64_t matrix[2] = {6, 10}, batched[3] = {2, 3, 4}, vector[1] = {7};
    paramd__tensor *t = paramd__tensor_create("m", 2, matrix, &config, &error);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->state_length[0], 6);  /* row_var (6, 1) */
    ck_assert_uint_eq(t->state_length[1], 10); /* col_var (1, 10) */
    ck_assert_ptr_null(t->state[2]);           /* no full variance */
    ck_assert_uint_eq(paramd__tensor_memory_bytes(t), (60 + 16) * sizeof(float));
    paramd__tensor_destroy(t);
    t = paramd__tensor_create("b", 3, batched, &config, &error);
    ck_assert_uint_eq(t->state_length[0], 2 * 3);
    ck_assert_uint_eq(t->state_length[1], 2 * 4);
    paramd__tensor_destroy(t);
    t = paramd__tensor_create("v", 1, vector, &config, &error);
    ck_assert_ptr_null(t->state[0]);
    ck_assert_ptr_null(t->state[1]);
    ck_assert_uint_eq(t->state_length[2], 7);
    paramd__tensor_destroy(t);

    /* Muon: a momentum buffer for matrices, AdamW's moments for the rest. */
    paramd__optimizer_config_init(&config, paramd__optimizer_find("Muon"));
    t = paramd__tensor_create("m", 2, matrix, &config, &error);
    ck_assert_uint_eq(t->state_length[0], 60);
    ck_assert_ptr_null(t->state[1]);
    ck_assert_ptr_null(t->state[2]);
    ck_assert_uint_gt(paramd__optimizer_scratch_bytes(&config, 2, matrix, 60),
                      2 * 60 * sizeof(float));
    paramd__tensor_destroy(t);
    t = paramd__tensor_create("v", 1, vector, &config, &error);
    ck_assert_ptr_null(t->state[0]);
    ck_assert_uint_eq(t->state_length[1], 7);
    ck_assert_uint_eq(t->state_length[2], 7);
    ck_assert_uint_eq(paramd__optimizer_scratch_bytes(&config, 1, vector, 7), 0);
    paramd__tensor_destroy(t);
    double off[1] = {0};
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(config.type, "use_muon"),
                         off, "use_muon", NULL),
                     PARAMD_OK);
    t = paramd__tensor_create("m", 2, matrix, &config, &error);
    ck_assert_ptr_null(t->state[0]);
    ck_assert_uint_eq(t->state_length[1], 60);
    paramd__tensor_destroy(t);
}
END_TEST


/* Every optimizer describes its memory passes consistently: as many arrays
 * named as it reads, only arrays that exist for that configuration. */
START_TEST(test_memory_passes_name_real_arrays)
{
    static const int64_t matrix[2] = {64, 48}, vector[1] = {3072};
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[t];
        if (type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL)
            continue; /* no kernel: no pass for the probe */
        paramd__optimizer_config config;
        paramd__optimizer_config_init(&config, type);
        const paramd__hyperparameter_spec *lr = paramd__optimizer_find_hyperparameter(type, "lr");
        double value[3] = {0.01};
        paramd__optimizer_config_set(&config, lr, value, "lr", NULL);
        for (int shaped = 0; shaped < 2; shaped++) {
            int dimensions = shaped ? 2 : 1;
            const int64_t *shape = shaped ? matrix : vector;
            paramd__memory_pass passes[PARAMD__MAX_MEMORY_PASSES];
            int count = paramd__optimizer_memory_passes(&config, dimensions, shape, passes);
            ck_assert_int_ge(count, 1);
            ck_assert_int_le(count, PARAMD__MAX_MEMORY_PASSES);
            for (int p = 0; p < count; p++) {
                ck_assert_msg((int)strlen(passes[p].arrays) == passes[p].reads,
                              "%s pass %d: %d reads, arrays \"%s\"", type->name, p,
                              passes[p].reads, passes[p].arrays);
                ck_assert_int_le(passes[p].writes, passes[p].reads);
                for (const char *a = passes[p].arrays; *a; a++) {
                    bool known = *a == 'p' || *a == 'g' || *a == 'x' || *a == 'y' ||
                                 (*a >= '0' && *a < '0' + type->state_slot_count);
                    ck_assert_msg(known, "%s: unknown array '%c'", type->name, *a);
                    if (*a >= '0' && *a <= '9')
                        ck_assert_msg(paramd__optimizer_state_length(&config, *a - '0', dimensions,
                                                                     shape, 3072) == 3072,
                                      "%s pass %d names state %c, which this tensor does not "
                                      "keep at full length",
                                      type->name, p, *a);
                }
                /* The gradient is never written. */
                ck_assert_ptr_null(memchr(passes[p].arrays, 'g', (size_t)passes[p].writes));
            }
        }
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("optimizer_table");
    TCase *tcase = tcase_create("table");
    tcase_add_test(tcase, test_rows_are_complete);
    tcase_add_test(tcase, test_schemas_are_consistent);
    tcase_add_test(tcase, test_torch_defaults);
    tcase_add_test(tcase, test_torch_defaults_more);
    tcase_add_test(tcase, test_ranges_more);
    tcase_add_test(tcase, test_rprop_etas_rule);
    tcase_add_test(tcase, test_prepare_is_a_function_of_the_step);
    tcase_add_test(tcase, test_init_state);
    tcase_add_test(tcase, test_ranges_are_enforced);
    tcase_add_test(tcase, test_sgd_nesterov_rule);
    tcase_add_test(tcase, test_tensor_wise_defaults);
    tcase_add_test(tcase, test_integer_choice_and_triple);
    tcase_add_test(tcase, test_state_follows_the_shape);
    tcase_add_test(tcase, test_memory_passes_name_real_arrays);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
