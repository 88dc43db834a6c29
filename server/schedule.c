/*
 * schedule.c - the learning-rate schedule table, configuration checking, and
 * the schedules themselves, as torch.optim.lr_scheduler (1.13) computes them.
 *
 * Each schedule mirrors its torch class line by line: the constructor with
 * its first step (torch's _initial_step), step(), the chainable get_lr()
 * that most classes compute from the group's current lr, and the closed form
 * that step(epoch) uses, which SequentialLR calls as step(0) at a milestone.
 * Every double operation is torch's Python float operation, in its order:
 * an int divided by an int is the correctly rounded quotient of the two
 * converted to double, as Python's true division is; x ** y is
 * python_pow below, which is pow() with CPython's special cases; math.cos is
 * libm's cos.  The integer parameters are at most 2^53, so converting them to
 * double is exact, as in Python.
 *
 * Where torch raises in the middle of a run (OneCycleLR stepped past
 * total_steps, a float division by zero, a float power that overflows),
 * paramd__schedule_step fails and changes nothing.  What can be known from
 * the configuration alone is refused when it is parsed instead.
 */
#include "schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* math.pi */
static const double PI = 3.141592653589793;

/* ---------------------------------------------------------------------------
 * Python float arithmetic
 * ------------------------------------------------------------------------- */

/* What a schedule is computing for, and whether a Python exception happened. */
struct paramd__schedule_context {
    paramd__error *error;
    const char *field;  /* the schedule in errors: "schedule", "schedule.schedulers[1]" */
    int result;         /* PARAMD_OK until an operation fails */
};

/* Records the exception torch would raise (the first one only); callers
 * carry on with a NaN and the result is thrown away. */
static void python_raise(paramd__schedule_context *context, const char *name,
                         const char *exception, const char *what)
{
    if (context->result != PARAMD_OK)
        return;
    context->result = paramd__error_set(context->error, PARAMD_E_BAD_REQUEST,
                                        "%s: %s %s; torch raises %s here", context->field,
                                        name, what, exception);
}

/* a / b, where Python raises ZeroDivisionError for b == 0. */
static double python_divide(paramd__schedule_context *context, const char *name, double a,
                            double b)
{
    if (b == 0.0) {
        python_raise(context, name, "ZeroDivisionError", "divides by zero");
        return NAN;
    }
    return a / b;
}

static bool is_odd_integer(double x)
{
    return x == floor(x) && fmod(x, 2.0) != 0.0;
}

/* base ** exponent for two Python floats, as CPython's float_pow computes it:
 * pow() with its special cases first, and OverflowError where the result of
 * finite operands is infinite.  (Infinite operands do not occur here.) */
static double python_pow(paramd__schedule_context *context, const char *name, double base,
                         double exponent)
{
    if (exponent == 0.0)
        return 1.0;
    if (isnan(base))
        return base;
    if (isnan(exponent))
        return base == 1.0 ? 1.0 : exponent;
    if (base == 0.0) {
        if (exponent < 0.0) {
            python_raise(context, name, "ZeroDivisionError", "raises 0.0 to a negative power");
            return NAN;
        }
        return is_odd_integer(exponent) ? base : 0.0;
    }
    bool negate = false;
    if (base < 0.0) {
        if (exponent != floor(exponent)) {
            python_raise(context, name, "a complex result", "raises a negative number to a "
                                                            "fractional power");
            return NAN;
        }
        base = -base;
        negate = is_odd_integer(exponent);
    }
    if (base == 1.0)
        return negate ? -1.0 : 1.0;
    double result = pow(base, exponent);
    if (isinf(result)) {
        python_raise(context, name, "OverflowError", "overflows a float power");
        return NAN;
    }
    return negate ? -result : result;
}

static int64_t min_int64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------------------
 * Parameter tables
 * ------------------------------------------------------------------------- */

#define REAL(name, slot, default_value, minimum, maximum, flags, description)              \
    {{name, PARAMD__HYPERPARAMETER_REAL, slot, {default_value}, minimum, maximum, flags,    \
      description},                                                                         \
     PARAMD__SCHEDULE_PARAMETER_VALUE, false, NULL}
#define BOOLEAN(name, slot, default_value, flags, description)                              \
    {{name, PARAMD__HYPERPARAMETER_BOOLEAN, slot, {default_value}, 0, 1, flags, description}, \
     PARAMD__SCHEDULE_PARAMETER_VALUE, false, NULL}
#define INTEGER(name, slot, default_value, minimum, flags, description)                      \
    {{name, PARAMD__HYPERPARAMETER_REAL, slot, {default_value}, minimum,                     \
      PARAMD__SCHEDULE_MAX_INTEGER, flags, description},                                    \
     PARAMD__SCHEDULE_PARAMETER_INTEGER, false, NULL}
/* An integer whose torch default is None. */
#define OPTIONAL_INTEGER(name, slot, minimum, description)                                   \
    {{name, PARAMD__HYPERPARAMETER_REAL, slot, {NAN}, minimum, PARAMD__SCHEDULE_MAX_INTEGER, \
      0, description},                                                                      \
     PARAMD__SCHEDULE_PARAMETER_INTEGER, true, NULL}
#define CHOICE(name, slot, choices, count, flags, description)                               \
    {{name, PARAMD__HYPERPARAMETER_REAL, slot, {0}, 0, (count) - 1, flags, description},     \
     PARAMD__SCHEDULE_PARAMETER_CHOICE, false, choices}
#define LIST(name, kind, slot, description)                                                  \
    {{name, PARAMD__HYPERPARAMETER_REAL, slot, {0}, 0, PARAMD__SCHEDULE_MAX_INTEGER,          \
      PARAMD__HYPERPARAMETER_REQUIRED, description},                                        \
     kind, false, NULL}
#define VERBOSE(slot)                                                                        \
    BOOLEAN("verbose", slot, 0, PARAMD__HYPERPARAMETER_NO_EFFECT,                            \
            "accepted for torch compatibility (printing); no effect")

#define REQUIRED PARAMD__HYPERPARAMETER_REQUIRED

/* ---------------------------------------------------------------------------
 * _LRScheduler: the constructor and step() most schedulers inherit
 * ------------------------------------------------------------------------- */

/* The node's step(): its own, or _LRScheduler's. */
static int node_step(const paramd__schedule_node *node, paramd__schedule_state *state,
                     paramd__schedule_group *group, bool from_zero, double loss,
                     paramd__schedule_context *context);

/* _LRScheduler.__init__ with last_epoch=-1: group.setdefault("initial_lr",
 * group["lr"]), base_lrs from it, and the first step. */
static int lr_scheduler_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                                  paramd__schedule_group *group,
                                  paramd__schedule_context *context)
{
    if (isnan(group->initial_lr))
        group->initial_lr = group->lr;
    state->base_lr = group->initial_lr;
    state->last_epoch = -1;
    return node_step(node, state, group, false, NAN, context);
}

/* _LRScheduler.step(epoch): with no epoch, last_epoch + 1 and get_lr(); with
 * epoch 0, the closed form where the class has one, else get_lr(). */
static int lr_scheduler_step(const paramd__schedule_node *node, paramd__schedule_state *state,
                             paramd__schedule_group *group, bool from_zero,
                             paramd__schedule_context *context)
{
    const paramd__schedule_type *type = node->type;
    double lr;
    if (!from_zero) {
        state->last_epoch++;
        lr = type->get_lr(node, state, group, context);
    } else {
        state->last_epoch = 0;
        lr = type->closed_form ? type->closed_form(node, state, group, context)
                               : type->get_lr(node, state, group, context);
    }
    if (context->result != PARAMD_OK)
        return context->result;
    group->lr = lr;
    return PARAMD_OK;
}

static int node_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                          paramd__schedule_group *group, paramd__schedule_context *context)
{
    if (node->type->construct)
        return node->type->construct(node, state, group, context);
    return lr_scheduler_construct(node, state, group, context);
}

static int node_step(const paramd__schedule_node *node, paramd__schedule_state *state,
                     paramd__schedule_group *group, bool from_zero, double loss,
                     paramd__schedule_context *context)
{
    if (node->type->step)
        return node->type->step(node, state, group, from_zero, loss, context);
    return lr_scheduler_step(node, state, group, from_zero, context);
}

/* ---------------------------------------------------------------------------
 * StepLR
 * ------------------------------------------------------------------------- */

enum { STEP_LR_STEP_SIZE, STEP_LR_GAMMA, STEP_LR_VERBOSE };

static const paramd__schedule_parameter step_lr_parameters[] = {
    INTEGER("step_size", STEP_LR_STEP_SIZE, 0, 1, REQUIRED, "period of learning rate decay"),
    REAL("gamma", STEP_LR_GAMMA, 0.1, 0, INFINITY, 0, "multiplicative factor of the decay"),
    VERBOSE(STEP_LR_VERBOSE),
};

static double step_lr_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                             paramd__schedule_group *group, paramd__schedule_context *context)
{
    (void)context;
    int64_t step_size = (int64_t)node->values[STEP_LR_STEP_SIZE];
    if (state->last_epoch == 0 || state->last_epoch % step_size != 0)
        return group->lr;
    return group->lr * node->values[STEP_LR_GAMMA];
}

static double step_lr_closed_form(const paramd__schedule_node *node,
                                  paramd__schedule_state *state, paramd__schedule_group *group,
                                  paramd__schedule_context *context)
{
    (void)group;
    int64_t step_size = (int64_t)node->values[STEP_LR_STEP_SIZE];
    return state->base_lr * python_pow(context, "StepLR", node->values[STEP_LR_GAMMA],
                                       (double)(state->last_epoch / step_size));
}

const paramd__schedule_type paramd__schedule_step_lr = {
    .name = "StepLR",
    .parameters = step_lr_parameters,
    .parameter_count = sizeof step_lr_parameters / sizeof step_lr_parameters[0],
    .get_lr = step_lr_get_lr,
    .closed_form = step_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * MultiStepLR
 * ------------------------------------------------------------------------- */

enum { MULTI_STEP_LR_MILESTONES, MULTI_STEP_LR_GAMMA, MULTI_STEP_LR_VERBOSE };

static const paramd__schedule_parameter multi_step_lr_parameters[] = {
    LIST("milestones", PARAMD__SCHEDULE_PARAMETER_MILESTONES, MULTI_STEP_LR_MILESTONES,
         "steps at which the lr is multiplied by gamma; any order, a repeated milestone "
         "multiplies by gamma once for each time it is listed (torch counts them)"),
    REAL("gamma", MULTI_STEP_LR_GAMMA, 0.1, 0, INFINITY, 0,
         "multiplicative factor of the decay"),
    VERBOSE(MULTI_STEP_LR_VERBOSE),
};

/* torch keeps the milestones in a Counter: self.milestones[last_epoch]. */
static double multi_step_lr_get_lr(const paramd__schedule_node *node,
                                   paramd__schedule_state *state, paramd__schedule_group *group,
                                   paramd__schedule_context *context)
{
    int count = 0;
    for (int i = 0; i < node->milestone_count; i++)
        count += node->milestones[i] == state->last_epoch;
    if (count == 0)
        return group->lr;
    return group->lr *
           python_pow(context, "MultiStepLR", node->values[MULTI_STEP_LR_GAMMA], count);
}

/* bisect_right(sorted(milestones), last_epoch): the milestones <= last_epoch. */
static double multi_step_lr_closed_form(const paramd__schedule_node *node,
                                        paramd__schedule_state *state,
                                        paramd__schedule_group *group,
                                        paramd__schedule_context *context)
{
    (void)group;
    int count = 0;
    for (int i = 0; i < node->milestone_count; i++)
        count += node->milestones[i] <= state->last_epoch;
    return state->base_lr *
           python_pow(context, "MultiStepLR", node->values[MULTI_STEP_LR_GAMMA], count);
}

const paramd__schedule_type paramd__schedule_multi_step_lr = {
    .name = "MultiStepLR",
    .parameters = multi_step_lr_parameters,
    .parameter_count = sizeof multi_step_lr_parameters / sizeof multi_step_lr_parameters[0],
    .get_lr = multi_step_lr_get_lr,
    .closed_form = multi_step_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * ConstantLR
 * ------------------------------------------------------------------------- */

enum { CONSTANT_LR_FACTOR, CONSTANT_LR_TOTAL_ITERS, CONSTANT_LR_VERBOSE };

static const paramd__schedule_parameter constant_lr_parameters[] = {
    REAL("factor", CONSTANT_LR_FACTOR, 1.0 / 3, 0, 1, 0,
         "the lr is multiplied by this until total_iters (> 0 when total_iters > 0)"),
    INTEGER("total_iters", CONSTANT_LR_TOTAL_ITERS, 5, 0, 0,
            "steps before the lr is divided by factor again"),
    VERBOSE(CONSTANT_LR_VERBOSE),
};

static int constant_lr_validate(const paramd__schedule_node *node, const char *field,
                                paramd__error *error)
{
    if (node->values[CONSTANT_LR_FACTOR] == 0 && node->values[CONSTANT_LR_TOTAL_ITERS] > 0)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.factor: must be > 0 when total_iters > 0 (torch divides "
                                 "the lr by factor at step total_iters), got 0",
                                 field);
    return PARAMD_OK;
}

static double constant_lr_get_lr(const paramd__schedule_node *node,
                                 paramd__schedule_state *state, paramd__schedule_group *group,
                                 paramd__schedule_context *context)
{
    double factor = node->values[CONSTANT_LR_FACTOR];
    int64_t total_iters = (int64_t)node->values[CONSTANT_LR_TOTAL_ITERS];
    if (state->last_epoch == 0)
        return group->lr * factor;
    if (state->last_epoch > total_iters || state->last_epoch != total_iters)
        return group->lr;
    /* The product rounds, so the lr need not come back to exactly its value
     * before: 0.1 * (1/3) * (1.0 / (1/3)) is 0.1, but not for every lr. */
    return group->lr * python_divide(context, "ConstantLR", 1.0, factor);
}

static double constant_lr_closed_form(const paramd__schedule_node *node,
                                      paramd__schedule_state *state,
                                      paramd__schedule_group *group,
                                      paramd__schedule_context *context)
{
    (void)group;
    (void)context;
    double factor = node->values[CONSTANT_LR_FACTOR];
    int64_t total_iters = (int64_t)node->values[CONSTANT_LR_TOTAL_ITERS];
    return state->base_lr *
           (factor + (double)(state->last_epoch >= total_iters) * (1 - factor));
}

const paramd__schedule_type paramd__schedule_constant_lr = {
    .name = "ConstantLR",
    .parameters = constant_lr_parameters,
    .parameter_count = sizeof constant_lr_parameters / sizeof constant_lr_parameters[0],
    .validate = constant_lr_validate,
    .get_lr = constant_lr_get_lr,
    .closed_form = constant_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * LinearLR
 * ------------------------------------------------------------------------- */

enum { LINEAR_LR_START_FACTOR, LINEAR_LR_END_FACTOR, LINEAR_LR_TOTAL_ITERS, LINEAR_LR_VERBOSE };

static const paramd__schedule_parameter linear_lr_parameters[] = {
    REAL("start_factor", LINEAR_LR_START_FACTOR, 1.0 / 3, 0, 1, PARAMD__HYPERPARAMETER_MINIMUM_OPEN,
         "factor of the first step (torch divides by it, so > 0)"),
    REAL("end_factor", LINEAR_LR_END_FACTOR, 1.0, 0, 1, 0, "factor from step total_iters on"),
    INTEGER("total_iters", LINEAR_LR_TOTAL_ITERS, 5, 1, 0,
            "steps over which the factor moves from start_factor to end_factor (torch "
            "divides by it, so >= 1)"),
    VERBOSE(LINEAR_LR_VERBOSE),
};

static double linear_lr_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                               paramd__schedule_group *group, paramd__schedule_context *context)
{
    double start = node->values[LINEAR_LR_START_FACTOR], end = node->values[LINEAR_LR_END_FACTOR];
    int64_t total_iters = (int64_t)node->values[LINEAR_LR_TOTAL_ITERS];
    int64_t epoch = state->last_epoch;
    if (epoch == 0)
        return group->lr * start;
    if (epoch > total_iters)
        return group->lr;
    double denominator = (double)total_iters * start + (double)(epoch - 1) * (end - start);
    return group->lr * (1. + python_divide(context, "LinearLR", end - start, denominator));
}

static double linear_lr_closed_form(const paramd__schedule_node *node,
                                    paramd__schedule_state *state, paramd__schedule_group *group,
                                    paramd__schedule_context *context)
{
    (void)group;
    double start = node->values[LINEAR_LR_START_FACTOR], end = node->values[LINEAR_LR_END_FACTOR];
    int64_t total_iters = (int64_t)node->values[LINEAR_LR_TOTAL_ITERS];
    double progress = (end - start) * (double)min_int64(total_iters, state->last_epoch);
    return state->base_lr *
           (start + python_divide(context, "LinearLR", progress, (double)total_iters));
}

const paramd__schedule_type paramd__schedule_linear_lr = {
    .name = "LinearLR",
    .parameters = linear_lr_parameters,
    .parameter_count = sizeof linear_lr_parameters / sizeof linear_lr_parameters[0],
    .get_lr = linear_lr_get_lr,
    .closed_form = linear_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * ExponentialLR
 * ------------------------------------------------------------------------- */

enum { EXPONENTIAL_LR_GAMMA, EXPONENTIAL_LR_VERBOSE };

static const paramd__schedule_parameter exponential_lr_parameters[] = {
    REAL("gamma", EXPONENTIAL_LR_GAMMA, 0, 0, INFINITY, REQUIRED,
         "multiplicative factor of the decay, every step"),
    VERBOSE(EXPONENTIAL_LR_VERBOSE),
};

static double exponential_lr_get_lr(const paramd__schedule_node *node,
                                    paramd__schedule_state *state,
                                    paramd__schedule_group *group,
                                    paramd__schedule_context *context)
{
    (void)context;
    if (state->last_epoch == 0)
        return group->lr;
    return group->lr * node->values[EXPONENTIAL_LR_GAMMA];
}

static double exponential_lr_closed_form(const paramd__schedule_node *node,
                                         paramd__schedule_state *state,
                                         paramd__schedule_group *group,
                                         paramd__schedule_context *context)
{
    (void)group;
    return state->base_lr * python_pow(context, "ExponentialLR",
                                       node->values[EXPONENTIAL_LR_GAMMA],
                                       (double)state->last_epoch);
}

const paramd__schedule_type paramd__schedule_exponential_lr = {
    .name = "ExponentialLR",
    .parameters = exponential_lr_parameters,
    .parameter_count = sizeof exponential_lr_parameters / sizeof exponential_lr_parameters[0],
    .get_lr = exponential_lr_get_lr,
    .closed_form = exponential_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * PolynomialLR
 * ------------------------------------------------------------------------- */

enum { POLYNOMIAL_LR_TOTAL_ITERS, POLYNOMIAL_LR_POWER, POLYNOMIAL_LR_VERBOSE };

static const paramd__schedule_parameter polynomial_lr_parameters[] = {
    INTEGER("total_iters", POLYNOMIAL_LR_TOTAL_ITERS, 5, 1, 0,
            "steps over which the lr decays to 0 (torch divides by it, so >= 1)"),
    REAL("power", POLYNOMIAL_LR_POWER, 1.0, 0, INFINITY, 0,
         "power of the polynomial (torch raises 0.0 to it at the end, so >= 0)"),
    VERBOSE(POLYNOMIAL_LR_VERBOSE),
};

static double polynomial_lr_get_lr(const paramd__schedule_node *node,
                                   paramd__schedule_state *state, paramd__schedule_group *group,
                                   paramd__schedule_context *context)
{
    int64_t total_iters = (int64_t)node->values[POLYNOMIAL_LR_TOTAL_ITERS];
    int64_t epoch = state->last_epoch;
    if (epoch == 0 || epoch > total_iters)
        return group->lr;
    double ratio = python_divide(context, "PolynomialLR",
                                 1.0 - (double)epoch / (double)total_iters,
                                 1.0 - (double)(epoch - 1) / (double)total_iters);
    double decay_factor =
        python_pow(context, "PolynomialLR", ratio, node->values[POLYNOMIAL_LR_POWER]);
    return group->lr * decay_factor;
}

static double polynomial_lr_closed_form(const paramd__schedule_node *node,
                                        paramd__schedule_state *state,
                                        paramd__schedule_group *group,
                                        paramd__schedule_context *context)
{
    (void)group;
    int64_t total_iters = (int64_t)node->values[POLYNOMIAL_LR_TOTAL_ITERS];
    double done = (double)min_int64(total_iters, state->last_epoch) / (double)total_iters;
    return state->base_lr *
           python_pow(context, "PolynomialLR", 1.0 - done, node->values[POLYNOMIAL_LR_POWER]);
}

const paramd__schedule_type paramd__schedule_polynomial_lr = {
    .name = "PolynomialLR",
    .parameters = polynomial_lr_parameters,
    .parameter_count = sizeof polynomial_lr_parameters / sizeof polynomial_lr_parameters[0],
    .get_lr = polynomial_lr_get_lr,
    .closed_form = polynomial_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * CosineAnnealingLR
 * ------------------------------------------------------------------------- */

enum { COSINE_LR_T_MAX, COSINE_LR_ETA_MIN, COSINE_LR_VERBOSE };

static const paramd__schedule_parameter cosine_lr_parameters[] = {
    INTEGER("T_max", COSINE_LR_T_MAX, 0, 1, REQUIRED, "half period of the cosine, in steps"),
    REAL("eta_min", COSINE_LR_ETA_MIN, 0, 0, INFINITY, 0, "minimum learning rate"),
    VERBOSE(COSINE_LR_VERBOSE),
};

/* The recursive form: each lr is the previous one scaled by the ratio of two
 * cosines, so the sequence drifts from the closed form by rounding, exactly
 * as torch's does.  (torch's branch for `_step_count == 1 and last_epoch > 0`
 * is for schedulers resumed with last_epoch >= 0; it never runs here.) */
static double cosine_lr_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                               paramd__schedule_group *group, paramd__schedule_context *context)
{
    int64_t t_max = (int64_t)node->values[COSINE_LR_T_MAX];
    double eta_min = node->values[COSINE_LR_ETA_MIN];
    int64_t epoch = state->last_epoch;
    if (epoch == 0)
        return group->lr;
    if ((epoch - 1 - t_max) % (2 * t_max) == 0)
        return group->lr + (state->base_lr - eta_min) * (1 - cos(PI / (double)t_max)) / 2;
    double ratio = python_divide(context, "CosineAnnealingLR",
                                 1 + cos(PI * (double)epoch / (double)t_max),
                                 1 + cos(PI * (double)(epoch - 1) / (double)t_max));
    return ratio * (group->lr - eta_min) + eta_min;
}

static double cosine_lr_closed_form(const paramd__schedule_node *node,
                                    paramd__schedule_state *state, paramd__schedule_group *group,
                                    paramd__schedule_context *context)
{
    (void)group;
    (void)context;
    double t_max = node->values[COSINE_LR_T_MAX], eta_min = node->values[COSINE_LR_ETA_MIN];
    return eta_min +
           (state->base_lr - eta_min) * (1 + cos(PI * (double)state->last_epoch / t_max)) / 2;
}

const paramd__schedule_type paramd__schedule_cosine_annealing_lr = {
    .name = "CosineAnnealingLR",
    .parameters = cosine_lr_parameters,
    .parameter_count = sizeof cosine_lr_parameters / sizeof cosine_lr_parameters[0],
    .get_lr = cosine_lr_get_lr,
    .closed_form = cosine_lr_closed_form,
};

/* ---------------------------------------------------------------------------
 * CosineAnnealingWarmRestarts
 * ------------------------------------------------------------------------- */

enum { RESTARTS_T_0, RESTARTS_T_MULT, RESTARTS_ETA_MIN, RESTARTS_VERBOSE };

static const paramd__schedule_parameter restarts_parameters[] = {
    INTEGER("T_0", RESTARTS_T_0, 0, 1, REQUIRED, "steps until the first restart"),
    INTEGER("T_mult", RESTARTS_T_MULT, 1, 1, 0, "factor of the period after each restart"),
    REAL("eta_min", RESTARTS_ETA_MIN, 0, 0, INFINITY, 0, "minimum learning rate"),
    VERBOSE(RESTARTS_VERBOSE),
};

/* Not recursive: computed from base_lr and the position in the period. */
static double restarts_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                              paramd__schedule_group *group, paramd__schedule_context *context)
{
    (void)group;
    (void)context;
    double eta_min = node->values[RESTARTS_ETA_MIN];
    return eta_min + (state->base_lr - eta_min) *
                         (1 + cos(PI * (double)state->T_cur / (double)state->T_i)) / 2;
}

static int restarts_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                              paramd__schedule_group *group, paramd__schedule_context *context)
{
    state->T_i = (int64_t)node->values[RESTARTS_T_0];
    state->T_cur = -1; /* last_epoch */
    return lr_scheduler_construct(node, state, group, context);
}

/* Its own step(): the first call, and step(0), start the first period. */
static int restarts_step(const paramd__schedule_node *node, paramd__schedule_state *state,
                         paramd__schedule_group *group, bool from_zero, double loss,
                         paramd__schedule_context *context)
{
    (void)loss;
    if (from_zero || state->last_epoch < 0) {
        /* step(epoch) with epoch = 0 < T_0 */
        state->T_i = (int64_t)node->values[RESTARTS_T_0];
        state->T_cur = 0;
        state->last_epoch = 0;
    } else {
        state->last_epoch++;
        state->T_cur++;
        if (state->T_cur >= state->T_i) {
            state->T_cur -= state->T_i;
            state->T_i *= (int64_t)node->values[RESTARTS_T_MULT];
        }
    }
    group->lr = restarts_get_lr(node, state, group, context);
    return context->result;
}

const paramd__schedule_type paramd__schedule_cosine_annealing_warm_restarts = {
    .name = "CosineAnnealingWarmRestarts",
    .parameters = restarts_parameters,
    .parameter_count = sizeof restarts_parameters / sizeof restarts_parameters[0],
    .construct = restarts_construct,
    .step = restarts_step,
    .get_lr = restarts_get_lr,
};

/* ---------------------------------------------------------------------------
 * CyclicLR
 * ------------------------------------------------------------------------- */

enum { CYCLIC_BASE_LR, CYCLIC_MAX_LR, CYCLIC_STEP_SIZE_UP, CYCLIC_STEP_SIZE_DOWN, CYCLIC_MODE,
       CYCLIC_GAMMA, CYCLIC_SCALE_MODE, CYCLIC_CYCLE_MOMENTUM, CYCLIC_BASE_MOMENTUM,
       CYCLIC_MAX_MOMENTUM, CYCLIC_VERBOSE };

enum { CYCLIC_TRIANGULAR, CYCLIC_TRIANGULAR2, CYCLIC_EXP_RANGE };
static const char *const cyclic_modes[] = {"triangular", "triangular2", "exp_range", NULL};
static const char *const cyclic_scale_modes[] = {"cycle", "iterations", NULL};

static const paramd__schedule_parameter cyclic_parameters[] = {
    REAL("base_lr", CYCLIC_BASE_LR, 0, 0, INFINITY, REQUIRED,
         "lower lr of the cycle (replaces the optimizer's lr)"),
    REAL("max_lr", CYCLIC_MAX_LR, 0, 0, INFINITY, REQUIRED, "upper lr of the cycle"),
    INTEGER("step_size_up", CYCLIC_STEP_SIZE_UP, 2000, 1, 0, "steps in the rising half"),
    OPTIONAL_INTEGER("step_size_down", CYCLIC_STEP_SIZE_DOWN, 0,
                     "steps in the falling half (default: step_size_up)"),
    CHOICE("mode", CYCLIC_MODE, cyclic_modes, 3, 0,
           "triangular, triangular2 (amplitude halves each cycle) or exp_range "
           "(amplitude times gamma ** step)"),
    REAL("gamma", CYCLIC_GAMMA, 1.0, 0, INFINITY, 0, "exp_range's factor"),
    CHOICE("scale_mode", CYCLIC_SCALE_MODE, cyclic_scale_modes, 2,
           PARAMD__HYPERPARAMETER_NO_EFFECT,
           "accepted for torch compatibility; torch uses it only with scale_fn, a Python "
           "function paramd cannot take"),
    BOOLEAN("cycle_momentum", CYCLIC_CYCLE_MOMENTUM, 1, 0,
            "cycle the optimizer's momentum inversely to the lr (needs a momentum "
            "hyperparameter: SGD, RMSprop)"),
    REAL("base_momentum", CYCLIC_BASE_MOMENTUM, 0.8, 0, INFINITY, 0,
         "momentum at the peak of the lr"),
    REAL("max_momentum", CYCLIC_MAX_MOMENTUM, 0.9, 0, INFINITY, 0,
         "momentum at the bottom of the lr"),
    VERBOSE(CYCLIC_VERBOSE),
};

/* get_lr(), which also sets the group's momentum when cycling it. */
static double cyclic_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                            paramd__schedule_group *group, paramd__schedule_context *context)
{
    const double *v = node->values;
    double step_size_up = v[CYCLIC_STEP_SIZE_UP];
    double step_size_down = isnan(v[CYCLIC_STEP_SIZE_DOWN]) ? step_size_up
                                                            : v[CYCLIC_STEP_SIZE_DOWN];
    double total_size = step_size_up + step_size_down;
    double step_ratio = step_size_up / total_size;
    double epoch = (double)state->last_epoch;

    double cycle = floor(1 + epoch / total_size);
    double x = 1. + epoch / total_size - cycle;
    double scale_factor = x <= step_ratio
                              ? python_divide(context, "CyclicLR", x, step_ratio)
                              : python_divide(context, "CyclicLR", x - 1, step_ratio - 1);

    /* scale_fn(cycle) for the triangular modes, scale_fn(last_epoch) for exp_range. */
    double scale;
    switch ((int)v[CYCLIC_MODE]) {
    case CYCLIC_TRIANGULAR:
        scale = 1.;
        break;
    case CYCLIC_TRIANGULAR2:
        scale = python_divide(context, "CyclicLR", 1,
                              python_pow(context, "CyclicLR triangular2", 2., cycle - 1));
        break;
    default:
        scale = python_pow(context, "CyclicLR exp_range", v[CYCLIC_GAMMA], epoch);
        break;
    }

    double base_height = (v[CYCLIC_MAX_LR] - state->base_lr) * scale_factor;
    double lr = state->base_lr + base_height * scale;
    if (v[CYCLIC_CYCLE_MOMENTUM] != 0) {
        double momentum_height = (state->max_momentum - state->base_momentum) * scale_factor;
        group->momentum = state->max_momentum - momentum_height * scale;
    }
    return lr;
}

/* The group's lr becomes base_lr and its momentum base_momentum.  The first
 * step runs inside _LRScheduler's constructor, before CyclicLR sets its
 * base_lrs, so it uses the group's initial_lr: base_lr when CyclicLR is the
 * first scheduler built on the optimizer, the optimizer's lr when it is
 * built after another (as a child of SequentialLR or ChainedScheduler). */
static int cyclic_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                            paramd__schedule_group *group, paramd__schedule_context *context)
{
    const double *v = node->values;
    group->lr = v[CYCLIC_BASE_LR];
    if (v[CYCLIC_CYCLE_MOMENTUM] != 0) {
        group->momentum = v[CYCLIC_BASE_MOMENTUM];
        state->base_momentum = group->momentum;
        state->max_momentum = v[CYCLIC_MAX_MOMENTUM];
    }
    int result = lr_scheduler_construct(node, state, group, context);
    state->base_lr = v[CYCLIC_BASE_LR];
    return result;
}

const paramd__schedule_type paramd__schedule_cyclic_lr = {
    .name = "CyclicLR",
    .parameters = cyclic_parameters,
    .parameter_count = sizeof cyclic_parameters / sizeof cyclic_parameters[0],
    .construct = cyclic_construct,
    .get_lr = cyclic_get_lr,
};

/* ---------------------------------------------------------------------------
 * OneCycleLR
 * ------------------------------------------------------------------------- */

enum { ONE_CYCLE_MAX_LR, ONE_CYCLE_TOTAL_STEPS, ONE_CYCLE_EPOCHS, ONE_CYCLE_STEPS_PER_EPOCH,
       ONE_CYCLE_PCT_START, ONE_CYCLE_ANNEAL_STRATEGY, ONE_CYCLE_CYCLE_MOMENTUM,
       ONE_CYCLE_BASE_MOMENTUM, ONE_CYCLE_MAX_MOMENTUM, ONE_CYCLE_DIV_FACTOR,
       ONE_CYCLE_FINAL_DIV_FACTOR, ONE_CYCLE_THREE_PHASE, ONE_CYCLE_VERBOSE };

enum { ONE_CYCLE_COS, ONE_CYCLE_LINEAR };
static const char *const one_cycle_strategies[] = {"cos", "linear", NULL};

static const paramd__schedule_parameter one_cycle_parameters[] = {
    REAL("max_lr", ONE_CYCLE_MAX_LR, 0, 0, INFINITY, REQUIRED, "peak learning rate"),
    OPTIONAL_INTEGER("total_steps", ONE_CYCLE_TOTAL_STEPS, 1,
                     "steps in the cycle (or give epochs and steps_per_epoch)"),
    OPTIONAL_INTEGER("epochs", ONE_CYCLE_EPOCHS, 1,
                     "with steps_per_epoch, the steps in the cycle when total_steps is not "
                     "given"),
    OPTIONAL_INTEGER("steps_per_epoch", ONE_CYCLE_STEPS_PER_EPOCH, 1,
                     "with epochs, the steps in the cycle when total_steps is not given"),
    REAL("pct_start", ONE_CYCLE_PCT_START, 0.3, 0, 1, 0, "fraction of the cycle spent rising"),
    CHOICE("anneal_strategy", ONE_CYCLE_ANNEAL_STRATEGY, one_cycle_strategies, 2, 0,
           "cos or linear annealing"),
    BOOLEAN("cycle_momentum", ONE_CYCLE_CYCLE_MOMENTUM, 1, 0,
            "cycle the optimizer's momentum, or beta1 of betas, inversely to the lr"),
    REAL("base_momentum", ONE_CYCLE_BASE_MOMENTUM, 0.85, 0, INFINITY, 0,
         "momentum at the peak of the lr"),
    REAL("max_momentum", ONE_CYCLE_MAX_MOMENTUM, 0.95, 0, INFINITY, 0,
         "momentum at the start and the end"),
    REAL("div_factor", ONE_CYCLE_DIV_FACTOR, 25., 0, INFINITY,
         PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "initial_lr = max_lr / div_factor"),
    REAL("final_div_factor", ONE_CYCLE_FINAL_DIV_FACTOR, 1e4, 0, INFINITY,
         PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "min_lr = initial_lr / final_div_factor"),
    BOOLEAN("three_phase", ONE_CYCLE_THREE_PHASE, 0, 0,
            "fall back to initial_lr symmetrically, then anneal to min_lr"),
    VERBOSE(ONE_CYCLE_VERBOSE),
};

/* Which group entry a phase starts or ends at. */
enum { AT_INITIAL_LR, AT_MAX_LR, AT_MIN_LR, AT_MAX_MOMENTUM, AT_BASE_MOMENTUM };

typedef struct one_cycle_phase {
    double end_step;
    int start_lr, end_lr, start_momentum, end_momentum;
} one_cycle_phase;

static int64_t one_cycle_total_steps(const paramd__schedule_node *node)
{
    const double *v = node->values;
    if (!isnan(v[ONE_CYCLE_TOTAL_STEPS]))
        return (int64_t)v[ONE_CYCLE_TOTAL_STEPS];
    return (int64_t)v[ONE_CYCLE_EPOCHS] * (int64_t)v[ONE_CYCLE_STEPS_PER_EPOCH];
}

/* self._schedule_phases; returns the phase count. */
static int one_cycle_phases(const paramd__schedule_node *node, one_cycle_phase phases[3])
{
    double pct_start = node->values[ONE_CYCLE_PCT_START];
    int64_t total_steps = one_cycle_total_steps(node);
    if (node->values[ONE_CYCLE_THREE_PHASE] != 0) {
        phases[0] = (one_cycle_phase){pct_start * (double)total_steps - 1, AT_INITIAL_LR,
                                      AT_MAX_LR, AT_MAX_MOMENTUM, AT_BASE_MOMENTUM};
        phases[1] = (one_cycle_phase){2 * pct_start * (double)total_steps - 2, AT_MAX_LR,
                                      AT_INITIAL_LR, AT_BASE_MOMENTUM, AT_MAX_MOMENTUM};
        phases[2] = (one_cycle_phase){(double)(total_steps - 1), AT_INITIAL_LR, AT_MIN_LR,
                                      AT_MAX_MOMENTUM, AT_MAX_MOMENTUM};
        return 3;
    }
    phases[0] = (one_cycle_phase){pct_start * (double)total_steps - 1, AT_INITIAL_LR, AT_MAX_LR,
                                  AT_MAX_MOMENTUM, AT_BASE_MOMENTUM};
    phases[1] = (one_cycle_phase){(double)(total_steps - 1), AT_MAX_LR, AT_MIN_LR,
                                  AT_BASE_MOMENTUM, AT_MAX_MOMENTUM};
    return 2;
}

/* torch's constructor accepts these, but its get_lr divides by zero: in the
 * first step when pct_start * total_steps is 1, and in the step after the
 * last when the final phase is empty (pct_start = 1, or 2 pct_start
 * total_steps = total_steps + 1 with three_phase).  A zero-length middle
 * phase is never entered. */
static int one_cycle_validate(const paramd__schedule_node *node, const char *field,
                              paramd__error *error)
{
    const double *v = node->values;
    if (isnan(v[ONE_CYCLE_TOTAL_STEPS])) {
        if (isnan(v[ONE_CYCLE_EPOCHS]) && isnan(v[ONE_CYCLE_STEPS_PER_EPOCH]))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.total_steps: OneCycleLR needs total_steps, or epochs "
                                     "and steps_per_epoch",
                                     field);
        if (isnan(v[ONE_CYCLE_EPOCHS]))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.epochs: required with steps_per_epoch when "
                                     "total_steps is not given",
                                     field);
        if (isnan(v[ONE_CYCLE_STEPS_PER_EPOCH]))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.steps_per_epoch: required with epochs when "
                                     "total_steps is not given",
                                     field);
        if (v[ONE_CYCLE_EPOCHS] * v[ONE_CYCLE_STEPS_PER_EPOCH] > PARAMD__SCHEDULE_MAX_INTEGER)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.steps_per_epoch: epochs * steps_per_epoch must be at "
                                     "most %.17g",
                                     field, PARAMD__SCHEDULE_MAX_INTEGER);
    }
    one_cycle_phase phases[3];
    int count = one_cycle_phases(node, phases);
    if (phases[0].end_step == 0)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.pct_start: pct_start * total_steps must not be 1 (torch "
                                 "divides by pct_start * total_steps - 1 in the first step), "
                                 "got %.17g * %lld",
                                 field, v[ONE_CYCLE_PCT_START],
                                 (long long)one_cycle_total_steps(node));
    if (phases[count - 1].end_step - phases[count - 2].end_step == 0)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.pct_start: leaves the last phase empty (torch divides by "
                                 "its length after step total_steps), got %.17g with "
                                 "total_steps %lld%s",
                                 field, v[ONE_CYCLE_PCT_START],
                                 (long long)one_cycle_total_steps(node),
                                 count == 3 ? " and three_phase" : "");
    return PARAMD_OK;
}

static double group_entry(const paramd__schedule_group *group, int which)
{
    switch (which) {
    case AT_INITIAL_LR:
        return group->initial_lr;
    case AT_MAX_LR:
        return group->max_lr;
    case AT_MIN_LR:
        return group->min_lr;
    case AT_MAX_MOMENTUM:
        return group->max_momentum;
    default:
        return group->base_momentum;
    }
}

static double one_cycle_anneal(const paramd__schedule_node *node, double start, double end,
                               double pct)
{
    if ((int)node->values[ONE_CYCLE_ANNEAL_STRATEGY] == ONE_CYCLE_LINEAR)
        return (end - start) * pct + start;
    double cos_out = cos(PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* get_lr(): from the group's initial_lr, max_lr and min_lr (which a later
 * OneCycleLR on the same optimizer would rewrite); sets the momentum. */
static double one_cycle_get_lr(const paramd__schedule_node *node, paramd__schedule_state *state,
                               paramd__schedule_group *group, paramd__schedule_context *context)
{
    int64_t total_steps = one_cycle_total_steps(node);
    int64_t step_num = state->last_epoch;
    if (step_num > total_steps) {
        if (context->result == PARAMD_OK)
            context->result = paramd__error_set(
                context->error, PARAMD_E_BAD_REQUEST,
                "%s: OneCycleLR stepped %lld times, past its total_steps of %lld (torch "
                "raises ValueError here); its last lr, for step total_steps + 1, has been used",
                context->field, (long long)step_num + 1, (long long)total_steps);
        return NAN;
    }
    one_cycle_phase phases[3];
    int count = one_cycle_phases(node, phases);
    double start_step = 0, lr = NAN, momentum = NAN;
    for (int i = 0; i < count; i++) {
        double end_step = phases[i].end_step;
        if ((double)step_num <= end_step || i == count - 1) {
            double pct = python_divide(context, "OneCycleLR", (double)step_num - start_step,
                                       end_step - start_step);
            lr = one_cycle_anneal(node, group_entry(group, phases[i].start_lr),
                                  group_entry(group, phases[i].end_lr), pct);
            if (node->values[ONE_CYCLE_CYCLE_MOMENTUM] != 0)
                momentum = one_cycle_anneal(node, group_entry(group, phases[i].start_momentum),
                                            group_entry(group, phases[i].end_momentum), pct);
            break;
        }
        start_step = end_step;
    }
    if (node->values[ONE_CYCLE_CYCLE_MOMENTUM] != 0)
        group->momentum = momentum;
    return lr;
}

static int one_cycle_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                               paramd__schedule_group *group, paramd__schedule_context *context)
{
    const double *v = node->values;
    group->initial_lr = v[ONE_CYCLE_MAX_LR] / v[ONE_CYCLE_DIV_FACTOR];
    group->max_lr = v[ONE_CYCLE_MAX_LR];
    group->min_lr = group->initial_lr / v[ONE_CYCLE_FINAL_DIV_FACTOR];
    if (v[ONE_CYCLE_CYCLE_MOMENTUM] != 0) {
        group->momentum = v[ONE_CYCLE_MAX_MOMENTUM];
        group->max_momentum = v[ONE_CYCLE_MAX_MOMENTUM];
        group->base_momentum = v[ONE_CYCLE_BASE_MOMENTUM];
    }
    return lr_scheduler_construct(node, state, group, context);
}

const paramd__schedule_type paramd__schedule_one_cycle_lr = {
    .name = "OneCycleLR",
    .parameters = one_cycle_parameters,
    .parameter_count = sizeof one_cycle_parameters / sizeof one_cycle_parameters[0],
    .validate = one_cycle_validate,
    .construct = one_cycle_construct,
    .get_lr = one_cycle_get_lr,
};

/* ---------------------------------------------------------------------------
 * ReduceLROnPlateau
 * ------------------------------------------------------------------------- */

enum { PLATEAU_MODE, PLATEAU_FACTOR, PLATEAU_PATIENCE, PLATEAU_THRESHOLD,
       PLATEAU_THRESHOLD_MODE, PLATEAU_COOLDOWN, PLATEAU_MIN_LR, PLATEAU_EPS, PLATEAU_VERBOSE };

enum { PLATEAU_MIN, PLATEAU_MAX };
enum { PLATEAU_REL, PLATEAU_ABS };
static const char *const plateau_modes[] = {"min", "max", NULL};
static const char *const plateau_threshold_modes[] = {"rel", "abs", NULL};

static const paramd__schedule_parameter plateau_parameters[] = {
    CHOICE("mode", PLATEAU_MODE, plateau_modes, 2, 0,
           "min: the loss should fall; max: the metric should rise"),
    REAL("factor", PLATEAU_FACTOR, 0.1, 0, 1, PARAMD__HYPERPARAMETER_MAXIMUM_OPEN,
         "new_lr = lr * factor"),
    INTEGER("patience", PLATEAU_PATIENCE, 10, 0, 0,
            "steps without improvement before the lr is reduced"),
    REAL("threshold", PLATEAU_THRESHOLD, 1e-4, 0, INFINITY, 0,
         "smallest change that counts as an improvement"),
    CHOICE("threshold_mode", PLATEAU_THRESHOLD_MODE, plateau_threshold_modes, 2, 0,
           "rel: relative to the best value; abs: absolute"),
    INTEGER("cooldown", PLATEAU_COOLDOWN, 0, 0, 0, "steps to wait after a reduction"),
    REAL("min_lr", PLATEAU_MIN_LR, 0, 0, INFINITY, 0, "lower bound of the lr"),
    REAL("eps", PLATEAU_EPS, 1e-8, 0, INFINITY, 0,
         "a reduction smaller than this is skipped"),
    VERBOSE(PLATEAU_VERBOSE),
};

static int plateau_construct(const paramd__schedule_node *node, paramd__schedule_state *state,
                             paramd__schedule_group *group, paramd__schedule_context *context)
{
    (void)group;
    (void)context;
    state->last_epoch = 0;
    state->best = (int)node->values[PLATEAU_MODE] == PLATEAU_MIN ? INFINITY : -INFINITY;
    state->cooldown_counter = 0;
    state->num_bad_epochs = 0;
    return PARAMD_OK;
}

static bool plateau_is_better(const paramd__schedule_node *node, double a, double best)
{
    double threshold = node->values[PLATEAU_THRESHOLD];
    bool rel = (int)node->values[PLATEAU_THRESHOLD_MODE] == PLATEAU_REL;
    if ((int)node->values[PLATEAU_MODE] == PLATEAU_MIN)
        return rel ? a < best * (1. - threshold) : a < best - threshold;
    return rel ? a > best * (threshold + 1.) : a > best + threshold;
}

static int plateau_step(const paramd__schedule_node *node, paramd__schedule_state *state,
                        paramd__schedule_group *group, bool from_zero, double loss,
                        paramd__schedule_context *context)
{
    (void)from_zero; /* never a child, so never step(0) */
    if (isnan(loss)) {
        if (context->result == PARAMD_OK)
            context->result = paramd__error_set(context->error, PARAMD_E_BAD_REQUEST,
                                                "%s: ReduceLROnPlateau needs the loss of every "
                                                "step",
                                                context->field);
        return context->result;
    }
    state->last_epoch++;
    if (plateau_is_better(node, loss, state->best)) {
        state->best = loss;
        state->num_bad_epochs = 0;
    } else {
        state->num_bad_epochs++;
    }
    if (state->cooldown_counter > 0) {
        state->cooldown_counter--;
        state->num_bad_epochs = 0; /* bad epochs in cooldown do not count */
    }
    if (state->num_bad_epochs > (int64_t)node->values[PLATEAU_PATIENCE]) {
        /* _reduce_lr: new_lr = max(old_lr * factor, min_lr), kept if it
         * moves the lr by more than eps. */
        double old_lr = group->lr, min_lr = node->values[PLATEAU_MIN_LR];
        double new_lr = old_lr * node->values[PLATEAU_FACTOR];
        if (min_lr > new_lr)
            new_lr = min_lr;
        if (old_lr - new_lr > node->values[PLATEAU_EPS])
            group->lr = new_lr;
        state->cooldown_counter = (int64_t)node->values[PLATEAU_COOLDOWN];
        state->num_bad_epochs = 0;
    }
    return PARAMD_OK;
}

const paramd__schedule_type paramd__schedule_reduce_lr_on_plateau = {
    .name = "ReduceLROnPlateau",
    .parameters = plateau_parameters,
    .parameter_count = sizeof plateau_parameters / sizeof plateau_parameters[0],
    .needs_loss = true,
    .construct = plateau_construct,
    .step = plateau_step,
};

/* ---------------------------------------------------------------------------
 * SequentialLR and ChainedScheduler (their behaviour is in the driver below)
 * ------------------------------------------------------------------------- */

enum { SEQUENTIAL_SCHEDULERS, SEQUENTIAL_MILESTONES, SEQUENTIAL_VERBOSE };

static const paramd__schedule_parameter sequential_parameters[] = {
    LIST("schedulers", PARAMD__SCHEDULE_PARAMETER_SCHEDULERS, SEQUENTIAL_SCHEDULERS,
         "the schedules, each active from its milestone on"),
    LIST("milestones", PARAMD__SCHEDULE_PARAMETER_MILESTONES, SEQUENTIAL_MILESTONES,
         "one step fewer than schedulers, in increasing order: where each next schedule "
         "takes over"),
    VERBOSE(SEQUENTIAL_VERBOSE),
};

static int sequential_validate(const paramd__schedule_node *node, const char *field,
                               paramd__error *error)
{
    for (int i = 1; i < node->milestone_count; i++)
        if (node->milestones[i] < node->milestones[i - 1])
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.milestones[%d]: must not be less than the milestone "
                                     "before it, got %lld after %lld",
                                     field, i, (long long)node->milestones[i],
                                     (long long)node->milestones[i - 1]);
    return PARAMD_OK;
}

const paramd__schedule_type paramd__schedule_sequential_lr = {
    .name = "SequentialLR",
    .parameters = sequential_parameters,
    .parameter_count = sizeof sequential_parameters / sizeof sequential_parameters[0],
    .composition = PARAMD__SCHEDULE_SEQUENTIAL,
    .validate = sequential_validate,
};

enum { CHAINED_SCHEDULERS };

static const paramd__schedule_parameter chained_parameters[] = {
    LIST("schedulers", PARAMD__SCHEDULE_PARAMETER_SCHEDULERS, CHAINED_SCHEDULERS,
         "the schedules, all stepped in order every step"),
};

const paramd__schedule_type paramd__schedule_chained_scheduler = {
    .name = "ChainedScheduler",
    .parameters = chained_parameters,
    .parameter_count = sizeof chained_parameters / sizeof chained_parameters[0],
    .composition = PARAMD__SCHEDULE_CHAINED,
};

/* ---------------------------------------------------------------------------
 * The table.  One line per schedule; keep PARAMD__SCHEDULE_COUNT in step.
 * ------------------------------------------------------------------------- */

#define PARAMD__SCHEDULE_COUNT 13

const paramd__schedule_type *const paramd__schedule_types[] = {
    &paramd__schedule_step_lr,
    &paramd__schedule_multi_step_lr,
    &paramd__schedule_constant_lr,
    &paramd__schedule_linear_lr,
    &paramd__schedule_exponential_lr,
    &paramd__schedule_polynomial_lr,
    &paramd__schedule_cosine_annealing_lr,
    &paramd__schedule_cosine_annealing_warm_restarts,
    &paramd__schedule_cyclic_lr,
    &paramd__schedule_one_cycle_lr,
    &paramd__schedule_reduce_lr_on_plateau,
    &paramd__schedule_sequential_lr,
    &paramd__schedule_chained_scheduler,
};

_Static_assert(sizeof paramd__schedule_types / sizeof paramd__schedule_types[0] ==
                   PARAMD__SCHEDULE_COUNT,
               "paramd__schedule_types and PARAMD__SCHEDULE_COUNT disagree");

const int paramd__schedule_type_count = PARAMD__SCHEDULE_COUNT;

const paramd__schedule_type *paramd__schedule_find(const char *name)
{
    for (int i = 0; i < PARAMD__SCHEDULE_COUNT; i++)
        if (strcasecmp(paramd__schedule_types[i]->name, name) == 0)
            return paramd__schedule_types[i];
    return NULL;
}

void paramd__schedule_list_names(char *buffer, size_t size)
{
    if (size == 0)
        return;
    buffer[0] = '\0';
    for (int i = 0; i < PARAMD__SCHEDULE_COUNT; i++) {
        strncat(buffer, i ? ", " : "", size - strlen(buffer) - 1);
        strncat(buffer, paramd__schedule_types[i]->name, size - strlen(buffer) - 1);
    }
}

const paramd__schedule_parameter *paramd__schedule_find_parameter(
    const paramd__schedule_type *type, const char *name)
{
    for (int i = 0; i < type->parameter_count; i++)
        if (strcmp(type->parameters[i].spec.name, name) == 0)
            return &type->parameters[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Configurations
 * ------------------------------------------------------------------------- */

void paramd__schedule_node_init(paramd__schedule_node *node, const paramd__schedule_type *type)
{
    memset(node, 0, sizeof *node);
    node->type = type;
    for (int i = 0; i < type->parameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->parameters[i].spec;
        node->values[spec->slot] =
            spec->flags & PARAMD__HYPERPARAMETER_REQUIRED ? NAN : spec->default_value[0];
    }
}

/* Formats the valid range as "[0, 1)" or "an integer in [1, 9007199254740992]". */
static void describe_range(const paramd__schedule_parameter *parameter, char *buffer,
                           size_t size)
{
    const paramd__hyperparameter_spec *spec = &parameter->spec;
    bool minimum_open = spec->flags & PARAMD__HYPERPARAMETER_MINIMUM_OPEN;
    bool maximum_open = spec->flags & PARAMD__HYPERPARAMETER_MAXIMUM_OPEN;
    char low[32], high[32];
    snprintf(low, sizeof low, isinf(spec->minimum) ? "-inf" : "%.17g", spec->minimum);
    snprintf(high, sizeof high, isinf(spec->maximum) ? "inf" : "%.17g", spec->maximum);
    snprintf(buffer, size, "%s%c%s, %s%c",
             parameter->kind == PARAMD__SCHEDULE_PARAMETER_INTEGER ? "an integer in " : "",
             minimum_open ? '(' : '[', low, high,
             maximum_open || isinf(spec->maximum) ? ')' : ']');
}

static bool in_range(const paramd__hyperparameter_spec *spec, double value)
{
    if (spec->flags & PARAMD__HYPERPARAMETER_MINIMUM_OPEN ? !(value > spec->minimum)
                                                          : !(value >= spec->minimum))
        return false;
    if (spec->flags & PARAMD__HYPERPARAMETER_MAXIMUM_OPEN ? !(value < spec->maximum)
                                                          : !(value <= spec->maximum))
        return false;
    return true;
}

int paramd__schedule_node_set(paramd__schedule_node *node,
                              const paramd__schedule_parameter *parameter, double value,
                              const char *field, paramd__error *error)
{
    const paramd__hyperparameter_spec *spec = &parameter->spec;
    switch (parameter->kind) {
    case PARAMD__SCHEDULE_PARAMETER_MILESTONES:
    case PARAMD__SCHEDULE_PARAMETER_SCHEDULERS:
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER, "%s: must be a list",
                                 field);
    case PARAMD__SCHEDULE_PARAMETER_CHOICE: {
        int count = 0;
        while (parameter->choices[count] != NULL)
            count++;
        if (!(value >= 0 && value < count && value == floor(value)))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: choice index %.17g out of range", field, value);
        break;
    }
    case PARAMD__SCHEDULE_PARAMETER_VALUE:
        if (spec->kind == PARAMD__HYPERPARAMETER_BOOLEAN) {
            if (value != 0 && value != 1)
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be true or false", field);
            break;
        }
        /* fall through */
    case PARAMD__SCHEDULE_PARAMETER_INTEGER:
        if (isnan(value) && parameter->nullable)
            break;
        if (!isfinite(value) || !in_range(spec, value) ||
            (parameter->kind == PARAMD__SCHEDULE_PARAMETER_INTEGER && value != floor(value))) {
            char range[96];
            describe_range(parameter, range, sizeof range);
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be %s, got %.17g", field, range, value);
        }
        break;
    }
    node->values[spec->slot] = value;
    return PARAMD_OK;
}

int paramd__schedule_node_set_milestones(paramd__schedule_node *node,
                                         const paramd__schedule_parameter *parameter,
                                         const int64_t *milestones, int count,
                                         const char *field, paramd__error *error)
{
    if (parameter->kind != PARAMD__SCHEDULE_PARAMETER_MILESTONES)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: is not a list of milestones", field);
    if (count < 0 || count > PARAMD__MAX_SCHEDULE_MILESTONES)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: at most %d milestones, got %d", field,
                                 PARAMD__MAX_SCHEDULE_MILESTONES, count);
    for (int i = 0; i < count; i++)
        if (milestones[i] < 0 || (double)milestones[i] > PARAMD__SCHEDULE_MAX_INTEGER)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s[%d]: must be an integer in [0, %.17g], got %lld",
                                     field, i, PARAMD__SCHEDULE_MAX_INTEGER,
                                     (long long)milestones[i]);
    if (count > 0)
        memcpy(node->milestones, milestones, (size_t)count * sizeof milestones[0]);
    node->milestone_count = count;
    node->values[parameter->spec.slot] = count;
    return PARAMD_OK;
}

int paramd__schedule_find_choice(const paramd__schedule_parameter *parameter, const char *text)
{
    if (parameter->kind != PARAMD__SCHEDULE_PARAMETER_CHOICE)
        return -1;
    for (int i = 0; parameter->choices[i] != NULL; i++)
        if (strcmp(parameter->choices[i], text) == 0)
            return i;
    return -1;
}

double paramd__schedule_node_get(const paramd__schedule_node *node, const char *name)
{
    const paramd__schedule_parameter *parameter =
        paramd__schedule_find_parameter(node->type, name);
    return parameter ? node->values[parameter->spec.slot] : NAN;
}

static int validate_node(const paramd__schedule_node *node, const char *field,
                         paramd__error *error)
{
    const paramd__schedule_type *type = node->type;
    if (type == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.name: no schedule chosen", field);
    for (int i = 0; i < type->parameter_count; i++) {
        const paramd__schedule_parameter *parameter = &type->parameters[i];
        if (isnan(node->values[parameter->spec.slot]) && !parameter->nullable)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.%s: required by %s, which has no default", field,
                                     parameter->spec.name, type->name);
    }
    return type->validate ? type->validate(node, field, error) : PARAMD_OK;
}

int paramd__schedule_config_validate(const paramd__schedule_config *config,
                                     paramd__error *error)
{
    const paramd__schedule_node *schedule = &config->schedule;
    int result = validate_node(schedule, "schedule", error);
    if (result != PARAMD_OK)
        return result;
    if (schedule->type->composition == PARAMD__SCHEDULE_LEAF) {
        if (config->child_count != 0)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "schedule.schedulers: %s takes no child schedules",
                                     schedule->type->name);
        return PARAMD_OK;
    }
    if (config->child_count < 1 || config->child_count > PARAMD__MAX_SCHEDULE_CHILDREN)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "schedule.schedulers: %s needs 1 to %d schedules, got %d",
                                 schedule->type->name, PARAMD__MAX_SCHEDULE_CHILDREN,
                                 config->child_count);
    for (int i = 0; i < config->child_count; i++) {
        const paramd__schedule_node *child = &config->children[i];
        char field[64];
        snprintf(field, sizeof field, "schedule.schedulers[%d]", i);
        if (child->type != NULL && child->type->composition != PARAMD__SCHEDULE_LEAF)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.name: %s cannot be nested in %s (paramd keeps one "
                                     "level of child schedules)",
                                     field, child->type->name, schedule->type->name);
        if (child->type != NULL && child->type->needs_loss)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s.name: %s cannot be a child of %s (torch steps "
                                     "children without the loss it needs)",
                                     field, child->type->name, schedule->type->name);
        result = validate_node(child, field, error);
        if (result != PARAMD_OK)
            return result;
    }
    if (schedule->type->composition == PARAMD__SCHEDULE_SEQUENTIAL &&
        schedule->milestone_count != config->child_count - 1)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "schedule.milestones: SequentialLR needs one milestone fewer "
                                 "than schedulers, got %d milestones for %d schedulers",
                                 schedule->milestone_count, config->child_count);
    return PARAMD_OK;
}

bool paramd__schedule_needs_loss(const paramd__schedule_config *config)
{
    return config->schedule.type != NULL && config->schedule.type->needs_loss;
}

/* ---------------------------------------------------------------------------
 * Running a schedule
 * ------------------------------------------------------------------------- */

static bool node_cycles_momentum(const paramd__schedule_node *node)
{
    if (node->type == &paramd__schedule_cyclic_lr)
        return node->values[CYCLIC_CYCLE_MOMENTUM] != 0;
    if (node->type == &paramd__schedule_one_cycle_lr)
        return node->values[ONE_CYCLE_CYCLE_MOMENTUM] != 0;
    return false;
}

/* The checks that depend on the optimizer, as torch's constructors make
 * them, plus one of paramd's: a cycled beta1 must stay in [0, 1), or Adam's
 * bias correction 1 - beta1^t would divide by zero. */
static int check_momentum(const paramd__schedule_node *node, const char *field,
                          paramd__schedule_momentum_kind kind, paramd__error *error)
{
    if (!node_cycles_momentum(node))
        return PARAMD_OK;
    if (node->type == &paramd__schedule_cyclic_lr && kind != PARAMD__SCHEDULE_MOMENTUM_VALUE)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.cycle_momentum: CyclicLR cycles a \"momentum\" "
                                 "hyperparameter, which this optimizer does not have (torch "
                                 "1.13 refuses it too); set cycle_momentum to false",
                                 field);
    if (kind == PARAMD__SCHEDULE_MOMENTUM_NONE)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.cycle_momentum: %s cycles momentum or betas, which this "
                                 "optimizer does not have; set cycle_momentum to false",
                                 field, node->type->name);
    if (kind == PARAMD__SCHEDULE_MOMENTUM_BETA1) {
        static const char *const names[] = {"base_momentum", "max_momentum"};
        for (int i = 0; i < 2; i++) {
            double value = paramd__schedule_node_get(node, names[i]);
            if (!(value < 1))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s.%s: becomes the optimizer's beta1, so must be in "
                                         "[0, 1), got %.17g",
                                         field, names[i], value);
        }
    }
    return PARAMD_OK;
}

static void child_field(char *buffer, size_t size, int index)
{
    snprintf(buffer, size, "schedule.schedulers[%d]", index);
}

int paramd__schedule_init(paramd__schedule *schedule, const paramd__schedule_config *config,
                          double base_lr, paramd__schedule_momentum_kind momentum_kind,
                          double base_momentum, paramd__error *error)
{
    int result = paramd__schedule_config_validate(config, error);
    if (result != PARAMD_OK)
        return result;
    if (!(isfinite(base_lr) && base_lr >= 0))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.lr: a schedule needs a finite lr >= 0, got %.17g",
                                 base_lr);
    if (momentum_kind != PARAMD__SCHEDULE_MOMENTUM_NONE && !isfinite(base_momentum))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.momentum: must be finite, got %.17g", base_momentum);
    char field[64];
    result = check_momentum(&config->schedule, "schedule", momentum_kind, error);
    for (int i = 0; result == PARAMD_OK && i < config->child_count; i++) {
        child_field(field, sizeof field, i);
        result = check_momentum(&config->children[i], field, momentum_kind, error);
    }
    if (result != PARAMD_OK)
        return result;

    paramd__schedule built;
    memset(&built, 0, sizeof built);
    built.config = *config;
    built.momentum_kind = momentum_kind;
    built.group = (paramd__schedule_group){
        .lr = base_lr,
        .initial_lr = NAN,
        .momentum = momentum_kind == PARAMD__SCHEDULE_MOMENTUM_NONE ? NAN : base_momentum,
        .max_lr = NAN,
        .min_lr = NAN,
        .max_momentum = NAN,
        .base_momentum = NAN,
    };
    paramd__schedule_context context = {error, "schedule", PARAMD_OK};
    const paramd__schedule_config *c = &built.config;
    switch (c->schedule.type->composition) {
    case PARAMD__SCHEDULE_LEAF:
        result = node_construct(&c->schedule, &built.state, &built.group, &context);
        break;
    case PARAMD__SCHEDULE_CHAINED:
        /* The children are built in order on the optimizer; ChainedScheduler
         * itself takes no first step. */
        for (int i = 0; result == PARAMD_OK && i < c->child_count; i++) {
            child_field(field, sizeof field, i);
            context.field = field;
            result = node_construct(&c->children[i], &built.children[i], &built.group, &context);
        }
        break;
    case PARAMD__SCHEDULE_SEQUENTIAL:
        for (int i = 0; result == PARAMD_OK && i < c->child_count; i++) {
            child_field(field, sizeof field, i);
            context.field = field;
            result = node_construct(&c->children[i], &built.children[i], &built.group, &context);
        }
        if (result != PARAMD_OK)
            break;
        /* SequentialLR.__init__: reset the lr to initial_lr, undo the
         * children's first steps, and redo the first child's. */
        built.last_epoch = 0;
        built.group.lr = built.group.initial_lr;
        for (int i = 0; i < c->child_count; i++)
            built.children[i].last_epoch--;
        child_field(field, sizeof field, 0);
        context.field = field;
        result = node_step(&c->children[0], &built.children[0], &built.group, false, NAN,
                           &context);
        break;
    }
    if (result != PARAMD_OK)
        return result;
    *schedule = built;
    return PARAMD_OK;
}

int paramd__schedule_init_for_optimizer(paramd__schedule *schedule,
                                        const paramd__schedule_config *config,
                                        const paramd__optimizer_config *optimizer,
                                        paramd__error *error)
{
    paramd__schedule_momentum_kind kind = PARAMD__SCHEDULE_MOMENTUM_NONE;
    double momentum = NAN;
    if (paramd__optimizer_find_hyperparameter(optimizer->type, "momentum") != NULL) {
        kind = PARAMD__SCHEDULE_MOMENTUM_VALUE;
        momentum = paramd__optimizer_config_get(optimizer, "momentum");
    } else if (paramd__optimizer_find_hyperparameter(optimizer->type, "betas") != NULL) {
        kind = PARAMD__SCHEDULE_MOMENTUM_BETA1;
        momentum = paramd__optimizer_config_get(optimizer, "betas");
    }
    return paramd__schedule_init(schedule, config, paramd__optimizer_config_get(optimizer, "lr"),
                                 kind, momentum, error);
}

double paramd__schedule_lr(const paramd__schedule *schedule)
{
    return schedule->group.lr;
}

bool paramd__schedule_cycles_momentum(const paramd__schedule *schedule)
{
    const paramd__schedule_config *config = &schedule->config;
    if (node_cycles_momentum(&config->schedule))
        return true;
    for (int i = 0; i < config->child_count; i++)
        if (node_cycles_momentum(&config->children[i]))
            return true;
    return false;
}

double paramd__schedule_momentum(const paramd__schedule *schedule)
{
    return paramd__schedule_cycles_momentum(schedule) ? schedule->group.momentum : NAN;
}

int paramd__schedule_step(paramd__schedule *schedule, double loss, paramd__error *error)
{
    /* Steps a copy, so that a failure changes nothing. */
    paramd__schedule next = *schedule;
    const paramd__schedule_config *c = &next.config;
    paramd__schedule_context context = {error, "schedule", PARAMD_OK};
    char field[64];
    int result = PARAMD_OK;
    switch (c->schedule.type->composition) {
    case PARAMD__SCHEDULE_LEAF:
        result = node_step(&c->schedule, &next.state, &next.group, false, loss, &context);
        break;
    case PARAMD__SCHEDULE_CHAINED:
        for (int i = 0; result == PARAMD_OK && i < c->child_count; i++) {
            child_field(field, sizeof field, i);
            context.field = field;
            result = node_step(&c->children[i], &next.children[i], &next.group, false, NAN,
                               &context);
        }
        break;
    case PARAMD__SCHEDULE_SEQUENTIAL: {
        /* idx = bisect_right(milestones, last_epoch); step(0) on arrival. */
        next.last_epoch++;
        int active = 0;
        while (active < c->schedule.milestone_count &&
               c->schedule.milestones[active] <= next.last_epoch)
            active++;
        bool arrival = active > 0 && c->schedule.milestones[active - 1] == next.last_epoch;
        child_field(field, sizeof field, active);
        context.field = field;
        result = node_step(&c->children[active], &next.children[active], &next.group, arrival,
                           NAN, &context);
        break;
    }
    }
    if (result != PARAMD_OK)
        return result;
    next.step_count++;
    *schedule = next;
    return PARAMD_OK;
}
