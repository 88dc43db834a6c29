/*
 * test_reference_optimizers.c - two steps of each optimizer that torch 1.13
 * does not have (Lion, Yogi, AdaBelief, DeltaBarDelta, LAMB, LARS,
 * Adafactor, Muon), worked out by hand from the papers on tensors of 2 to 4
 * elements and run through paramd__optimizer_step.
 *
 * The hand arithmetic is decimal (or double precision where a square root
 * is irrational), while the kernels round every operation to float32, so
 * weights and state are compared with a tolerance of a few float32 ulps.
 * The bit-exact checks are the golden files of
 * tests/conformance/generate_reference_goldens.py, replayed by
 * test_conformance.
 */
#include "test_util.h"

#include "optimizer.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ULPS 4.0

/* |actual - expected| within ULPS float32 ulps of expected (with a floor at
 * the smallest normal float for expected values of 0). */
static void assert_close(const char *what, int element, float actual, double expected)
{
    double tolerance = ULPS * FLT_EPSILON * fmax(fabs(expected), FLT_MIN);
    ck_assert_msg(fabs((double)actual - expected) <= tolerance,
                  "%s[%d]: got %.9g, expected %.9g", what, element, (double)actual, expected);
}

static void assert_all_close(const char *what, const float *actual, const double *expected)
{
    for (int i = 0; i < 3; i++)
        assert_close(what, i, actual[i], expected[i]);
}

/* A configuration of `name` with the given hyperparameters set (pairs take
 * two values); aborts the test on an invalid one. */
typedef struct setting {
    const char *name;
    double values[2];
} setting;

static paramd__optimizer_config make_config(const char *optimizer, const setting *settings,
                                            int count)
{
    paramd__optimizer_config config;
    const paramd__optimizer_type *type = paramd__optimizer_find(optimizer);
    ck_assert_ptr_nonnull(type);
    paramd__optimizer_config_init(&config, type);
    for (int i = 0; i < count; i++) {
        const paramd__hyperparameter_spec *spec =
            paramd__optimizer_find_hyperparameter(type, settings[i].name);
        ck_assert_msg(spec != NULL, "%s has no %s", optimizer, settings[i].name);
        paramd__error error;
        ck_assert_msg(paramd__optimizer_config_set(&config, spec, settings[i].values,
                                                   settings[i].name, &error) == PARAMD_OK,
                      "%s", error.message);
    }
    paramd__error error;
    ck_assert_msg(paramd__optimizer_config_validate(&config, "optimizer", &error) == PARAMD_OK,
                  "%s", error.message);
    return config;
}

/* State arrays as paramd__tensor_create leaves them: zeros, then init_state. */
typedef struct tensor3 {
    float param[3];
    float state[PARAMD__MAX_STATE_SLOTS][3];
    paramd__step_arrays arrays;
} tensor3;

static void tensor3_init(tensor3 *t, const paramd__optimizer_config *config,
                         const float param[3])
{
    memset(t, 0, sizeof *t);
    memcpy(t->param, param, sizeof t->param);
    t->arrays.param = t->param;
    for (int s = 0; s < config->type->state_slot_count; s++)
        if (config->type->uses_state_slot(config, s))
            t->arrays.state[s] = t->state[s];
    if (config->type->init_state)
        config->type->init_state(config, t->arrays.state, 3);
}

static void tensor3_step(tensor3 *t, const paramd__optimizer_config *config, uint64_t step,
                         const float grad[3])
{
    t->arrays.grad = grad;
    paramd__optimizer_step(config, step, &t->arrays, 3);
}

/* ---------------------------------------------------------------------------
 * Lion: c = b1*m + (1-b1)*g; p = p*(1 - lr*wd) - lr*sign(c); m = b2*m + (1-b2)*g
 * ------------------------------------------------------------------------- */
START_TEST(test_lion_two_steps)
{
    /* lr 0.1, betas (0.5, 0.75), weight_decay 0.5: 1 - lr*wd = 0.95. */
    const setting settings[] = {{"lr", {0.1}}, {"betas", {0.5, 0.75}}, {"weight_decay", {0.5}}};
    paramd__optimizer_config config = make_config("Lion", settings, 3);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){1.0f, -2.0f, 0.5f});

    /* Step 1, g = (0.5, -1, 0), m = 0:
     *   c = 0.5*0 + 0.5*g             = (0.25, -0.5, 0)   sign (1, -1, 0)
     *   p = p*0.95 - 0.1*sign(c)
     *     = (0.95 - 0.1, -1.9 + 0.1, 0.475 - 0) = (0.85, -1.8, 0.475)
     *   m = 0.75*0 + 0.25*g           = (0.125, -0.25, 0) */
    tensor3_step(&t, &config, 1, (const float[3]){0.5f, -1.0f, 0.0f});
    assert_all_close("Lion step 1 p", t.param, (const double[3]){0.85, -1.8, 0.475});
    assert_all_close("Lion step 1 exp_avg", t.state[0], (const double[3]){0.125, -0.25, 0});

    /* Step 2, g = (-1, -1, 2):
     *   c = 0.5*m + 0.5*g = (0.0625 - 0.5, -0.125 - 0.5, 0 + 1)
     *     = (-0.4375, -0.625, 1)                           sign (-1, -1, 1)
     *   p = p*0.95 - 0.1*sign(c)
     *     = (0.8075 + 0.1, -1.71 + 0.1, 0.45125 - 0.1) = (0.9075, -1.61, 0.35125)
     *   m = 0.75*m + 0.25*g = (0.09375 - 0.25, -0.1875 - 0.25, 0 + 0.5)
     *     = (-0.15625, -0.4375, 0.5) */
    tensor3_step(&t, &config, 2, (const float[3]){-1.0f, -1.0f, 2.0f});
    assert_all_close("Lion step 2 p", t.param, (const double[3]){0.9075, -1.61, 0.35125});
    assert_all_close("Lion step 2 exp_avg", t.state[0],
                     (const double[3]){-0.15625, -0.4375, 0.5});
}
END_TEST

/* Lion's maximize flips the gradient; its defaults are the paper's. */
START_TEST(test_lion_maximize_and_defaults)
{
    paramd__optimizer_config config = make_config("lion", NULL, 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-4);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(config.values[paramd__optimizer_find_hyperparameter(config.type, "betas")
                                          ->slot + 1],
                        0.99);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "maximize"), 0);

    /* lr 0.5, maximize, defaults otherwise.  g = (1, -2, 0) becomes (-1, 2, 0):
     *   c = 0.1*(-1, 2, 0) = (-0.1, 0.2, 0); p = (0, 0, 0) - 0.5*(-1, 1, 0)
     *     = (0.5, -0.5, 0); m = 0.01*(-1, 2, 0) = (-0.01, 0.02, 0). */
    const setting settings[] = {{"lr", {0.5}}, {"maximize", {1}}};
    config = make_config("Lion", settings, 2);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){0, 0, 0});
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, -2.0f, 0.0f});
    assert_all_close("Lion maximize p", t.param, (const double[3]){0.5, -0.5, 0});
    assert_all_close("Lion maximize exp_avg", t.state[0], (const double[3]){-0.01, 0.02, 0});
}
END_TEST

/* ---------------------------------------------------------------------------
 * Yogi: m = b1*m + (1-b1)*g; v = v - (1-b2)*sign(v - g*g)*g*g;
 *       p = p - lr*m/(sqrt(v) + eps)
 * ------------------------------------------------------------------------- */
START_TEST(test_yogi_two_steps)
{
    /* lr 0.1, betas (0.5, 0.25): 1-b1 = 0.5, 1-b2 = 0.75; eps 0.5; v starts
     * at initial_accumulator_value 0.25 (init_state), m at 0. */
    const setting settings[] = {{"lr", {0.1}},
                                {"betas", {0.5, 0.25}},
                                {"eps", {0.5}},
                                {"initial_accumulator_value", {0.25}}};
    paramd__optimizer_config config = make_config("Yogi", settings, 4);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){1.0f, 2.0f, -1.0f});
    assert_all_close("Yogi initial exp_avg_sq", t.state[1], (const double[3]){0.25, 0.25, 0.25});

    /* Step 1, g = (1, 0.5, 0):
     *   m = 0.5*0 + 0.5*g = (0.5, 0.25, 0)
     *   g*g = (1, 0.25, 0); v - g*g = (-0.75, 0, 0.25): sign (-1, 0, 1)
     *   v = 0.25 - 0.75*sign*g*g = (0.25 + 0.75, 0.25 - 0, 0.25 - 0) = (1, 0.25, 0.25)
     *   sqrt(v) + eps = (1.5, 1, 1)
     *   p = p - 0.1*m/(sqrt(v) + eps) = (1 - 0.05/1.5, 2 - 0.025/1, -1 - 0/1)
     *     = (0.96666..., 1.975, -1) */
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, 0.5f, 0.0f});
    assert_all_close("Yogi step 1 exp_avg", t.state[0], (const double[3]){0.5, 0.25, 0});
    assert_all_close("Yogi step 1 exp_avg_sq", t.state[1], (const double[3]){1, 0.25, 0.25});
    assert_all_close("Yogi step 1 p", t.param, (const double[3]){1 - 0.05 / 1.5, 1.975, -1});

    /* Step 2, g = (-2, 0.25, 1):
     *   m = 0.5*m + 0.5*g = (0.25 - 1, 0.125 + 0.125, 0 + 0.5) = (-0.75, 0.25, 0.5)
     *   g*g = (4, 0.0625, 1); v - g*g = (-3, 0.1875, -0.75): sign (-1, 1, -1)
     *   v = (1 + 0.75*4, 0.25 - 0.75*0.0625, 0.25 + 0.75*1) = (4, 0.203125, 1)
     *   sqrt(v) + eps = (2.5, sqrt(0.203125) + 0.5 = 0.950694..., 1.5)
     *   p = (0.96666... + 0.075/2.5, 1.975 - 0.025/0.950694..., -1 - 0.05/1.5)
     *     = (0.99666..., 1.948703..., -1.03333...) */
    tensor3_step(&t, &config, 2, (const float[3]){-2.0f, 0.25f, 1.0f});
    assert_all_close("Yogi step 2 exp_avg", t.state[0], (const double[3]){-0.75, 0.25, 0.5});
    assert_all_close("Yogi step 2 exp_avg_sq", t.state[1], (const double[3]){4, 0.203125, 1});
    assert_all_close("Yogi step 2 p", t.param,
                     (const double[3]){1 - 0.05 / 1.5 + 0.075 / 2.5,
                                       1.975 - 0.025 / (sqrt(0.203125) + 0.5),
                                       -1 - 0.05 / 1.5});
}
END_TEST

/* Yogi's weight decay is coupled (added to the gradient) and maximize flips
 * the gradient first; the defaults are the paper's. */
START_TEST(test_yogi_weight_decay_maximize_and_defaults)
{
    paramd__optimizer_config config = make_config("YOGI", NULL, 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "initial_accumulator_value"), 1e-6);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);

    /* lr 0.1, betas (0.5, 0.25), eps 0.5, initial_accumulator_value 0,
     * weight_decay 0.5, maximize.  p = (2, -1, 0), grad = (1, 0.5, 1):
     *   g = -grad + 0.5*p = (-1 + 1, -0.5 - 0.5, -1 + 0) = (0, -1, -1)
     *   m = 0.5*g = (0, -0.5, -0.5); v = 0 + 0.75*g*g = (0, 0.75, 0.75)
     *   p = p - 0.1*m/(sqrt(v) + 0.5)
     *     = (2, -1 + 0.05/(sqrt(0.75) + 0.5), 0 + 0.05/(sqrt(0.75) + 0.5)) */
    const setting settings[] = {{"lr", {0.1}},
                                {"betas", {0.5, 0.25}},
                                {"eps", {0.5}},
                                {"initial_accumulator_value", {0}},
                                {"weight_decay", {0.5}},
                                {"maximize", {1}}};
    config = make_config("Yogi", settings, 6);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){2.0f, -1.0f, 0.0f});
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, 0.5f, 1.0f});
    assert_all_close("Yogi wd exp_avg", t.state[0], (const double[3]){0, -0.5, -0.5});
    assert_all_close("Yogi wd exp_avg_sq", t.state[1], (const double[3]){0, 0.75, 0.75});
    double step = 0.05 / (sqrt(0.75) + 0.5);
    assert_all_close("Yogi wd p", t.param, (const double[3]){2, -1 + step, step});
}
END_TEST

/* ---------------------------------------------------------------------------
 * AdaBelief: m = b1*m + (1-b1)*g; s = b2*s + (1-b2)*(g-m)^2 + eps;
 *            p = p - (lr/bc1)*m/(sqrt(s)/sqrt(bc2) + eps)
 * ------------------------------------------------------------------------- */
START_TEST(test_adabelief_two_steps)
{
    /* lr 0.1, betas (0.5, 0.75): 1-b1 = 0.5, 1-b2 = 0.25; eps 0.0625. */
    const setting settings[] = {{"lr", {0.1}}, {"betas", {0.5, 0.75}}, {"eps", {0.0625}}};
    paramd__optimizer_config config = make_config("AdaBelief", settings, 3);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){1.0f, -1.0f, 0.5f});

    /* Step 1: bc1 = 1 - 0.5 = 0.5, lr/bc1 = 0.2; bc2 = 1 - 0.75 = 0.25,
     * sqrt(bc2) = 0.5.  g = (1, -2, 0):
     *   m = 0.5*g = (0.5, -1, 0); g - m = (0.5, -1, 0); (g - m)^2 = (0.25, 1, 0)
     *   s = 0.75*0 + 0.25*(0.25, 1, 0) + 0.0625 = (0.125, 0.3125, 0.0625)
     *   p = p - 0.2*m/(sqrt(s)/0.5 + 0.0625)
     *     = (1 - 0.1/(2*sqrt(0.125) + 0.0625), -1 + 0.2/(2*sqrt(0.3125) + 0.0625),
     *        0.5 - 0/(2*0.25 + 0.0625))
     *     = (0.867398..., -0.817074..., 0.5) */
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, -2.0f, 0.0f});
    assert_all_close("AdaBelief step 1 exp_avg", t.state[0], (const double[3]){0.5, -1, 0});
    assert_all_close("AdaBelief step 1 exp_avg_var", t.state[1],
                     (const double[3]){0.125, 0.3125, 0.0625});
    const double p1[3] = {1 - 0.1 / (2 * sqrt(0.125) + 0.0625),
                          -1 + 0.2 / (2 * sqrt(0.3125) + 0.0625), 0.5};
    assert_all_close("AdaBelief step 1 p", t.param, p1);

    /* Step 2: bc1 = 1 - 0.25 = 0.75, lr/bc1 = 0.1/0.75 = 0.13333...;
     * bc2 = 1 - 0.5625 = 0.4375.  g = (-1, -2, 1):
     *   m = 0.5*m + 0.5*g = (0.25 - 0.5, -0.5 - 1, 0 + 0.5) = (-0.25, -1.5, 0.5)
     *   g - m = (-0.75, -0.5, 0.5); (g - m)^2 = (0.5625, 0.25, 0.25)
     *   s = 0.75*s + 0.25*(g - m)^2 + 0.0625
     *     = (0.09375 + 0.140625 + 0.0625, 0.234375 + 0.0625 + 0.0625,
     *        0.046875 + 0.0625 + 0.0625) = (0.296875, 0.359375, 0.171875)
     *   p = p - 0.13333...*m/(sqrt(s)/sqrt(0.4375) + 0.0625) */
    tensor3_step(&t, &config, 2, (const float[3]){-1.0f, -2.0f, 1.0f});
    assert_all_close("AdaBelief step 2 exp_avg", t.state[0], (const double[3]){-0.25, -1.5, 0.5});
    assert_all_close("AdaBelief step 2 exp_avg_var", t.state[1],
                     (const double[3]){0.296875, 0.359375, 0.171875});
    const double step_size = 0.1 / 0.75, bc2_sqrt = sqrt(0.4375);
    const double p2[3] = {p1[0] + step_size * 0.25 / (sqrt(0.296875) / bc2_sqrt + 0.0625),
                          p1[1] + step_size * 1.5 / (sqrt(0.359375) / bc2_sqrt + 0.0625),
                          p1[2] - step_size * 0.5 / (sqrt(0.171875) / bc2_sqrt + 0.0625)};
    assert_all_close("AdaBelief step 2 p", t.param, p2);
}
END_TEST

/* AdaBelief's weight decay is coupled and maximize flips the gradient first;
 * the defaults are the paper's. */
START_TEST(test_adabelief_weight_decay_maximize_and_defaults)
{
    paramd__optimizer_config config = make_config("adabelief", NULL, 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-16);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);

    /* lr 0.1, betas (0.5, 0.75), eps 0.0625, weight_decay 0.5, maximize.
     * p = (2, -2, 0), grad = (1, -1, 3):
     *   g = -grad + 0.5*p = (-1 + 1, 1 - 1, -3 + 0) = (0, 0, -3)
     *   m = 0.5*g = (0, 0, -1.5); g - m = (0, 0, -1.5); (g - m)^2 = (0, 0, 2.25)
     *   s = 0.25*(0, 0, 2.25) + 0.0625 = (0.0625, 0.0625, 0.625)
     *   p = p - 0.2*m/(2*sqrt(s) + 0.0625) = (2, -2, 0.3/(2*sqrt(0.625) + 0.0625)) */
    const setting settings[] = {{"lr", {0.1}},
                                {"betas", {0.5, 0.75}},
                                {"eps", {0.0625}},
                                {"weight_decay", {0.5}},
                                {"maximize", {1}}};
    config = make_config("AdaBelief", settings, 5);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){2.0f, -2.0f, 0.0f});
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, -1.0f, 3.0f});
    assert_all_close("AdaBelief wd exp_avg", t.state[0], (const double[3]){0, 0, -1.5});
    assert_all_close("AdaBelief wd exp_avg_var", t.state[1],
                     (const double[3]){0.0625, 0.0625, 0.625});
    assert_all_close("AdaBelief wd p", t.param,
                     (const double[3]){2, -2, 0.3 / (2 * sqrt(0.625) + 0.0625)});
}
END_TEST

/* ---------------------------------------------------------------------------
 * DeltaBarDelta: if bar*d > 0: gain = min(gain + kappa, max_gain);
 *                if bar*d < 0: gain = max(gain*(1-phi), min_gain);
 *                p = p - lr*gain*d; bar = (1-theta)*d + theta*bar
 * ------------------------------------------------------------------------- */
START_TEST(test_deltabardelta_two_steps)
{
    /* lr 0.1, kappa 0.5, phi 0.5, theta 0.5, min_gain 0.6, max_gain 1.25.
     * gain starts at 1 (init_state), bar_delta at 0. */
    const setting settings[] = {{"lr", {0.1}},       {"kappa", {0.5}},    {"phi", {0.5}},
                                {"theta", {0.5}},    {"min_gain", {0.6}}, {"max_gain", {1.25}}};
    paramd__optimizer_config config = make_config("DeltaBarDelta", settings, 6);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){1.0f, -1.0f, 2.0f});
    assert_all_close("DeltaBarDelta initial gain", t.state[0], (const double[3]){1, 1, 1});
    assert_all_close("DeltaBarDelta initial bar_delta", t.state[1], (const double[3]){0, 0, 0});

    /* Step 1, d = (1, -2, 0.5): bar*d = (0, 0, 0), so the gains stay 1.
     *   p = p - 0.1*1*d = (1 - 0.1, -1 + 0.2, 2 - 0.05) = (0.9, -0.8, 1.95)
     *   bar = 0.5*d + 0.5*0 = (0.5, -1, 0.25) */
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, -2.0f, 0.5f});
    assert_all_close("DeltaBarDelta step 1 gain", t.state[0], (const double[3]){1, 1, 1});
    assert_all_close("DeltaBarDelta step 1 p", t.param, (const double[3]){0.9, -0.8, 1.95});
    assert_all_close("DeltaBarDelta step 1 bar_delta", t.state[1],
                     (const double[3]){0.5, -1, 0.25});

    /* Step 2, d = (2, 1, 0): bar*d = (1, -1, 0)
     *   gain[0] = min(1 + 0.5, 1.25) = 1.25     (agree: clipped at max_gain)
     *   gain[1] = max(1 * 0.5, 0.6) = 0.6       (disagree: clipped at min_gain)
     *   gain[2] = 1                             (bar*d = 0: unchanged)
     *   p = p - 0.1*gain*d = (0.9 - 0.125*2, -0.8 - 0.06*1, 1.95 - 0.1*0)
     *     = (0.65, -0.86, 1.95)
     *   bar = 0.5*d + 0.5*bar = (1 + 0.25, 0.5 - 0.5, 0 + 0.125) = (1.25, 0, 0.125) */
    tensor3_step(&t, &config, 2, (const float[3]){2.0f, 1.0f, 0.0f});
    assert_all_close("DeltaBarDelta step 2 gain", t.state[0], (const double[3]){1.25, 0.6, 1});
    assert_all_close("DeltaBarDelta step 2 p", t.param, (const double[3]){0.65, -0.86, 1.95});
    assert_all_close("DeltaBarDelta step 2 bar_delta", t.state[1],
                     (const double[3]){1.25, 0, 0.125});
}
END_TEST

/* DeltaBarDelta's weight decay is coupled and maximize flips the gradient
 * first; its defaults and the max_gain >= min_gain check. */
START_TEST(test_deltabardelta_weight_decay_maximize_and_checks)
{
    paramd__optimizer_config config = make_config("deltabardelta", NULL, 0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-2);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "kappa"), 0.05);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "phi"), 0.05);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "theta"), 0.7);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "min_gain"), 0.01);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "max_gain"), 10);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0);

    /* max_gain below min_gain is refused, naming max_gain. */
    const paramd__optimizer_type *type = config.type;
    double low[1] = {0.5}, high[1] = {2};
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(type, "min_gain"), high,
                         "min_gain", NULL),
                     PARAMD_OK);
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(type, "max_gain"), low,
                         "max_gain", NULL),
                     PARAMD_OK);
    paramd__error error;
    ck_assert_int_eq(paramd__optimizer_config_validate(&config, "optimizer", &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_ptr_nonnull(strstr(error.message, "optimizer.max_gain"));
    /* min_gain must be positive, phi at most 1, theta below 1. */
    double zero[1] = {0}, one[1] = {1}, above_one[1] = {1.5};
    ck_assert_int_ne(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(type, "min_gain"), zero,
                         "min_gain", NULL),
                     PARAMD_OK);
    ck_assert_int_ne(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(type, "phi"), above_one,
                         "phi", NULL),
                     PARAMD_OK);
    ck_assert_int_ne(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(type, "theta"), one,
                         "theta", NULL),
                     PARAMD_OK);

    /* lr 0.1, weight_decay 0.5, maximize, theta 0.7 (1 - theta = 0.3).
     * p = (2, -2, 0), grad = (1, -1, 3):
     *   d = -grad + 0.5*p = (-1 + 1, 1 - 1, -3 + 0) = (0, 0, -3); bar*d = 0: gains stay 1
     *   p = p - 0.1*1*d = (2, -2, 0.3); bar = 0.3*d + 0.7*0 = (0, 0, -0.9) */
    const setting settings[] = {{"lr", {0.1}}, {"weight_decay", {0.5}}, {"maximize", {1}}};
    config = make_config("DeltaBarDelta", settings, 3);
    tensor3 t;
    tensor3_init(&t, &config, (const float[3]){2.0f, -2.0f, 0.0f});
    tensor3_step(&t, &config, 1, (const float[3]){1.0f, -1.0f, 3.0f});
    assert_all_close("DeltaBarDelta wd gain", t.state[0], (const double[3]){1, 1, 1});
    assert_all_close("DeltaBarDelta wd p", t.param, (const double[3]){2, -2, 0.3});
    assert_all_close("DeltaBarDelta wd bar_delta", t.state[1], (const double[3]){0, 0, -0.9});
}
END_TEST


/* ---------------------------------------------------------------------------
 * Tensor-wise optimizers, on small shaped tensors
 * ------------------------------------------------------------------------- */

/* Hand arithmetic through several roundings: a looser bound than ULPS. */
#define TENSOR_WISE_ULPS 16.0

static void assert_near(const char *what, int element, float actual, double expected)
{
    double tolerance = TENSOR_WISE_ULPS * FLT_EPSILON * fmax(fabs(expected), 1e-30);
    ck_assert_msg(fabs((double)actual - expected) <= tolerance,
                  "%s[%d]: got %.9g, expected %.9g", what, element, (double)actual, expected);
}

/* A tensor of up to 4 elements with a shape, state laid out as
 * paramd__tensor_create does. */
typedef struct small_tensor {
    float param[4];
    float state[PARAMD__MAX_STATE_SLOTS][4];
    int64_t shape[2];
    size_t count;
    paramd__step_arrays arrays;
} small_tensor;

static void small_init(small_tensor *t, const paramd__optimizer_config *config, int dimensions,
                       int64_t rows, int64_t columns, const float *param)
{
    memset(t, 0, sizeof *t);
    t->shape[0] = rows;
    t->shape[1] = columns;
    t->count = (size_t)(rows * columns);
    memcpy(t->param, param, t->count * sizeof(float));
    t->arrays.param = t->param;
    t->arrays.dimension_count = dimensions;
    t->arrays.shape = t->shape;
    for (int s = 0; s < config->type->state_slot_count; s++)
        if (paramd__optimizer_state_length(config, s, dimensions, t->shape, t->count) > 0)
            t->arrays.state[s] = t->state[s];
}

static void small_step(small_tensor *t, const paramd__optimizer_config *config, uint64_t step,
                       const float *grad)
{
    t->arrays.grad = grad;
    paramd__optimizer_step(config, step, &t->arrays, t->count);
}

static void assert_all_near(const char *what, const float *actual, const double *expected,
                            int count)
{
    for (int i = 0; i < count; i++)
        assert_near(what, i, actual[i], expected[i]);
}

/* LAMB: r = m_hat / (sqrt(v_hat) + eps), u = r + wd*w, w -= lr * ||w||/||u|| * u */
START_TEST(test_lamb_two_steps)
{
    /* lr 0.1, betas (0.5, 0.75), eps 0, weight_decay 0. */
    const setting settings[] = {{"lr", {0.1}}, {"betas", {0.5, 0.75}}, {"eps", {0}}};
    paramd__optimizer_config config = make_config("LAMB", settings, 3);
    small_tensor t;
    small_init(&t, &config, 1, 1, 3, (const float[3]){1.0f, -2.0f, 2.0f});

    /* Step 1, g = (0.5, -1, 2): m = 0.5 g, v = 0.25 g^2, bias corrections
     * 0.5 and 0.25, so m_hat = g, v_hat = g^2 and r = sign(g) = (1, -1, 1).
     * ||w|| = 3, ||u|| = sqrt(3): trust = sqrt(3), w -= 0.1 sqrt(3) (1, -1, 1). */
    small_step(&t, &config, 1, (const float[3]){0.5f, -1.0f, 2.0f});
    double step1 = 0.1 * sqrt(3.0);
    const double p1[3] = {1 - step1, -2 + step1, 2 - step1};
    assert_all_near("LAMB step 1 p", t.param, p1, 3);
    assert_all_near("LAMB step 1 exp_avg", t.state[0], (const double[3]){0.25, -0.5, 1}, 3);
    assert_all_near("LAMB step 1 exp_avg_sq", t.state[1], (const double[3]){0.0625, 0.25, 1}, 3);

    /* Step 2, g = (1, 1, -1):
     *   m = 0.5 m + 0.5 g   = (0.625, 0.25, 0)
     *   v = 0.75 v + 0.25 g^2 = (0.296875, 0.4375, 1)
     *   bias corrections 1 - 0.25 = 0.75 and 1 - 0.5625 = 0.4375
     *   r_i = (m_i / 0.75) / sqrt(v_i / 0.4375), trust = ||p1|| / ||r|| */
    small_step(&t, &config, 2, (const float[3]){1.0f, 1.0f, -1.0f});
    const double m[3] = {0.625, 0.25, 0}, v[3] = {0.296875, 0.4375, 1};
    double r[3], r_squares = 0, p_squares = 0;
    for (int i = 0; i < 3; i++) {
        r[i] = (m[i] / 0.75) / sqrt(v[i] / 0.4375);
        r_squares += r[i] * r[i];
        p_squares += p1[i] * p1[i];
    }
    double trust = sqrt(p_squares) / sqrt(r_squares);
    const double p2[3] = {p1[0] - 0.1 * trust * r[0], p1[1] - 0.1 * trust * r[1],
                          p1[2] - 0.1 * trust * r[2]};
    assert_all_near("LAMB step 2 p", t.param, p2, 3);
    assert_all_near("LAMB step 2 exp_avg", t.state[0], m, 3);

    /* Zero weights have no trust ratio (1): w = -lr * r, here with weight
     * decay, which adds wd * 0 = 0. */
    const setting decayed[] = {{"lr", {0.1}}, {"betas", {0.5, 0.75}}, {"eps", {0}},
                               {"weight_decay", {0.3}}};
    config = make_config("LAMB", decayed, 4);
    small_init(&t, &config, 1, 1, 2, (const float[2]){0.0f, 0.0f});
    small_step(&t, &config, 1, (const float[2]){-3.0f, 0.25f});
    assert_all_near("LAMB zero weights", t.param, (const double[2]){0.1, -0.1}, 2);
}
END_TEST

/* LARS: trust = eta ||w|| / (||g|| + wd ||w|| + eps); buf = m buf + trust (g + wd w) */
START_TEST(test_lars_two_steps)
{
    /* lr 1, trust_coefficient 0.1, momentum 0.5, eps 0. */
    const setting settings[] = {{"lr", {1.0}}, {"trust_coefficient", {0.1}},
                                {"momentum", {0.5}}, {"eps", {0}}};
    paramd__optimizer_config config = make_config("LARS", settings, 4);
    small_tensor t;
    small_init(&t, &config, 1, 1, 3, (const float[3]){3.0f, 0.0f, 4.0f});

    /* Step 1, g = (0, 0.6, 0.8): ||w|| = 5, ||g|| = 1, trust = 0.1 * 5 / 1 = 0.5;
     *   d = 0.5 g = (0, 0.3, 0.4) = buf (first step); w = w - d = (3, -0.3, 3.6) */
    small_step(&t, &config, 1, (const float[3]){0.0f, 0.6f, 0.8f});
    assert_all_near("LARS step 1 p", t.param, (const double[3]){3, -0.3, 3.6}, 3);
    assert_all_near("LARS step 1 buf", t.state[0], (const double[3]){0, 0.3, 0.4}, 3);

    /* Step 2, g = (1, 2, 2): ||g|| = 3, ||w|| = sqrt(9 + 0.09 + 12.96);
     *   trust = 0.1 ||w|| / 3; buf = 0.5 buf + trust g; w = w - buf */
    small_step(&t, &config, 2, (const float[3]){1.0f, 2.0f, 2.0f});
    double trust = 0.1 * sqrt(9 + 0.09 + 12.96) / 3;
    const double buf[3] = {0 + trust * 1, 0.15 + trust * 2, 0.2 + trust * 2};
    assert_all_near("LARS step 2 buf", t.state[0], buf, 3);
    assert_all_near("LARS step 2 p", t.param,
                    (const double[3]){3 - buf[0], -0.3 - buf[1], 3.6 - buf[2]}, 3);

    /* Weight decay enters the gradient and the denominator: lr 1, wd 0.5,
     * eta 1, no momentum; w = (0, 2), g = (1, 0): ||w|| = 2, ||g|| = 1,
     * trust = 2 / (1 + 0.5 * 2) = 1; d = g + 0.5 w = (1, 1); w = (-1, 1) */
    const setting decayed[] = {{"lr", {1.0}}, {"trust_coefficient", {1.0}},
                               {"weight_decay", {0.5}}, {"eps", {0}}};
    config = make_config("LARS", decayed, 4);
    small_init(&t, &config, 1, 1, 2, (const float[2]){0.0f, 2.0f});
    small_step(&t, &config, 1, (const float[2]){1.0f, 0.0f});
    assert_all_near("LARS weight decay", t.param, (const double[2]){-1, 1}, 2);
}
END_TEST

/* Adafactor on a 2 x 2 matrix: the factored second moment. */
START_TEST(test_adafactor_two_steps)
{
    /* lr 0.1: rho = min(0.1, 1/sqrt(t)) = 0.1 for t = 1, 2; eps1 tiny. */
    const setting settings[] = {{"lr", {0.1}}, {"eps", {1e-30, 1e-3}}};
    paramd__optimizer_config config = make_config("Adafactor", settings, 2);
    small_tensor t;
    small_init(&t, &config, 2, 2, 2, (const float[4]){1.0f, 2.0f, 2.0f, 4.0f});
    ck_assert_ptr_nonnull(t.arrays.state[0]); /* row_var */
    ck_assert_ptr_nonnull(t.arrays.state[1]); /* col_var */
    ck_assert_ptr_null(t.arrays.state[2]);    /* no full variance */

    /* Step 1, g = [[1, 2], [3, 4]]: 1 - beta2 = 1^-0.8 = 1, so the factors are
     * the means of g^2: rows (1 + 4)/2 = 2.5 and (9 + 16)/2 = 12.5, columns
     * (1 + 9)/2 = 5 and (4 + 16)/2 = 10; their row mean is 7.5, so
     * v = r c / 7.5 = [[5/3, 10/3], [25/3, 50/3]] and u^2 = g^2 / v =
     * [[0.6, 1.2], [1.08, 0.96]]: RMS(u) = sqrt(0.96) < d = 1, no clipping.
     * RMS(p) = sqrt((1 + 4 + 4 + 16)/4) = 2.5, alpha = 2.5 * 0.1 = 0.25. */
    small_step(&t, &config, 1, (const float[4]){1.0f, 2.0f, 3.0f, 4.0f});
    const double u1[4] = {sqrt(0.6), sqrt(1.2), sqrt(1.08), sqrt(0.96)};
    const double p1[4] = {1 - 0.25 * u1[0], 2 - 0.25 * u1[1], 2 - 0.25 * u1[2],
                          4 - 0.25 * u1[3]};
    assert_all_near("Adafactor step 1 p", t.param, p1, 4);
    assert_all_near("Adafactor step 1 row_var", t.state[0], (const double[2]){2.5, 12.5}, 2);
    assert_all_near("Adafactor step 1 col_var", t.state[1], (const double[2]){5, 10}, 2);

    /* Step 2, g = [[2, 0], [0, 1]]: w = 2^-0.8; the means of g^2 are rows
     * (2, 0.5) and columns (2, 0.5); factors move by lerp with weight w. */
    small_step(&t, &config, 2, (const float[4]){2.0f, 0.0f, 0.0f, 1.0f});
    double w = pow(2.0, -0.8);
    double rows[2] = {2.5 + w * (2 - 2.5), 12.5 + w * (0.5 - 12.5)};
    double columns[2] = {5 + w * (2 - 5), 10 + w * (0.5 - 10)};
    double mean = (rows[0] + rows[1]) / 2;
    const double g2[4] = {2, 0, 0, 1};
    double u2[4], u_squares = 0, p_squares = 0;
    for (int i = 0; i < 4; i++) {
        u2[i] = g2[i] / sqrt(rows[i / 2] * columns[i % 2] / mean);
        u_squares += u2[i] * u2[i];
        p_squares += p1[i] * p1[i];
    }
    double alpha = fmax(1e-3, sqrt(p_squares / 4)) * 0.1;
    double denominator = fmax(1.0, sqrt(u_squares / 4));
    double p2[4];
    for (int i = 0; i < 4; i++)
        p2[i] = p1[i] - alpha / denominator * u2[i];
    assert_all_near("Adafactor step 2 row_var", t.state[0], rows, 2);
    assert_all_near("Adafactor step 2 col_var", t.state[1], columns, 2);
    assert_all_near("Adafactor step 2 p", t.param, p2, 4);
}
END_TEST

/* Muon on one row: the Newton-Schulz polynomial acts on its only singular
 * value, 1 after normalisation: s -> a s + b s^3 + c s^5 per iteration. */
START_TEST(test_muon_two_steps)
{
    /* lr 0.1, weight_decay 0.5 (decay factor 0.95), momentum 0.5, nesterov,
     * two Newton-Schulz iterations, coefficients (a, b, c) the defaults. */
    const setting settings[] = {{"lr", {0.1}}, {"weight_decay", {0.5}}, {"momentum", {0.5}},
                                {"ns_steps", {2}}};
    paramd__optimizer_config config = make_config("Muon", settings, 4);
    const double a = 3.4445, b = -4.775, c = 2.0315;
    double s1 = a + b + c;
    double s = a * s1 + b * pow(s1, 3) + c * pow(s1, 5);
    for (int tall = 0; tall < 2; tall++) {
        /* The same row as a 1 x 2 and as a 2 x 1 matrix (rows > columns
         * works on the transpose); both adjust the lr by
         * sqrt(max(1, rows / columns)): 1 and sqrt(2). */
        double lr = 0.1 * (tall ? sqrt(2.0) : 1.0);
        small_tensor t;
        small_init(&t, &config, 2, tall ? 2 : 1, tall ? 1 : 2, (const float[2]){1.0f, -1.0f});
        ck_assert_ptr_nonnull(t.arrays.state[0]); /* momentum_buffer */

        /* Step 1, g = (3, 4): buf = lerp(0, g, 0.5) = 0.5 g; the Nesterov
         * update lerp(g, buf, 0.5) = 0.75 g has direction (0.6, 0.8), so
         * X = s (0.6, 0.8) and p = 0.95 p - lr X. */
        small_step(&t, &config, 1, (const float[2]){3.0f, 4.0f});
        const double p1[2] = {0.95 * 1 - lr * s * 0.6, 0.95 * -1 - lr * s * 0.8};
        assert_all_near(tall ? "Muon tall step 1 p" : "Muon step 1 p", t.param, p1, 2);
        assert_all_near("Muon step 1 buf", t.state[0], (const double[2]){1.5, 2}, 2);

        /* Step 2, g = (0, 1): buf = lerp(buf, g, 0.5) = 0.5 buf + 0.5 g =
         * (0.75, 1.5); U = lerp(g, buf, 0.5) = (0.375, 1.25). */
        small_step(&t, &config, 2, (const float[2]){0.0f, 1.0f});
        double norm = sqrt(0.375 * 0.375 + 1.25 * 1.25);
        const double p2[2] = {0.95 * p1[0] - lr * s * 0.375 / norm,
                              0.95 * p1[1] - lr * s * 1.25 / norm};
        assert_all_near("Muon step 2 buf", t.state[0], (const double[2]){0.75, 1.5}, 2);
        assert_all_near(tall ? "Muon tall step 2 p" : "Muon step 2 p", t.param, p2, 2);
    }

    /* A vector is not orthogonalised: AdamW's first step moves each weight
     * by lr (after decay), whatever the gradient's size. */
    small_tensor v;
    small_init(&v, &config, 1, 1, 2, (const float[2]){1.0f, -1.0f});
    ck_assert_ptr_null(v.arrays.state[0]);
    small_step(&v, &config, 1, (const float[2]){100.0f, -0.001f});
    assert_all_near("Muon AdamW fallback", v.param, (const double[2]){0.95 - 0.1, -0.95 + 0.1}, 2);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("reference_optimizers");
    TCase *tcase = tcase_create("by_hand");
    tcase_add_test(tcase, test_lion_two_steps);
    tcase_add_test(tcase, test_lion_maximize_and_defaults);
    tcase_add_test(tcase, test_yogi_two_steps);
    tcase_add_test(tcase, test_yogi_weight_decay_maximize_and_defaults);
    tcase_add_test(tcase, test_adabelief_two_steps);
    tcase_add_test(tcase, test_adabelief_weight_decay_maximize_and_defaults);
    tcase_add_test(tcase, test_deltabardelta_two_steps);
    tcase_add_test(tcase, test_deltabardelta_weight_decay_maximize_and_checks);
    tcase_add_test(tcase, test_lamb_two_steps);
    tcase_add_test(tcase, test_lars_two_steps);
    tcase_add_test(tcase, test_adafactor_two_steps);
    tcase_add_test(tcase, test_muon_two_steps);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
