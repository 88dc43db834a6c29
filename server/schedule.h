/*
 * schedule.h - learning-rate schedules, as torch.optim.lr_scheduler computes them.
 *
 * Every schedule paramd knows is one row of a single table
 * (paramd__schedule_types in schedule.c), one row per torch scheduler class:
 * its class name, its parameter schema (torch's keyword names, defaults and
 * valid ranges, described with the optimizers' paramd__hyperparameter_spec),
 * a cross-field validator, and its behaviour, split as torch splits it into a
 * constructor, step(), the recursive ("chainable") get_lr() and, where torch
 * has one, the closed form that step(epoch) uses.
 *
 * A schedule is driven once per optimizer step, in torch's order:
 *
 *     lr = paramd__schedule_lr(&schedule);   (and the momentum, if cycled)
 *     ... one optimizer step with lr ...
 *     paramd__schedule_step(&schedule, loss, &error);
 *
 * The numbers are torch's to the last bit.  Most torch schedulers compute the
 * new lr from the lr they set last (param_group["lr"]), not from a formula in
 * the step number, so rounding accumulates; paramd keeps the same state and
 * repeats every double operation in torch's order, with the same libm.  It
 * also keeps the parts of torch's param_group that schedulers share
 * (paramd__schedule_group): SequentialLR and ChainedScheduler children read
 * and write one group, and some torch quirks come from that (a OneCycleLR
 * child rewrites the group's initial_lr when it is built, for one).
 *
 * A configuration (paramd__schedule_config) and a running schedule
 * (paramd__schedule) are plain data with a fixed size: SequentialLR and
 * ChainedScheduler hold up to PARAMD__MAX_SCHEDULE_CHILDREN children inline,
 * one level deep, and all state is explicit, so a schedule can be copied or
 * checkpointed as it is (the type pointers aside, which a checkpoint records
 * by name).
 */
#ifndef PARAMD_SERVER_SCHEDULE_H
#define PARAMD_SERVER_SCHEDULE_H

#include "optimizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PARAMD__MAX_SCHEDULE_PARAMETERS 16 /* value slots of one schedule */
#define PARAMD__MAX_SCHEDULE_MILESTONES 32 /* MultiStepLR and SequentialLR milestones */
#define PARAMD__MAX_SCHEDULE_CHILDREN 8    /* SequentialLR and ChainedScheduler children */

/* The largest integer parameter: every integer up to 2^53 is exact as a
 * double, as it is in torch's int-to-float arithmetic. */
#define PARAMD__SCHEDULE_MAX_INTEGER 9007199254740992.0

/* ---------------------------------------------------------------------------
 * Parameter schema
 * ------------------------------------------------------------------------- */

typedef enum paramd__schedule_parameter_kind {
    PARAMD__SCHEDULE_PARAMETER_VALUE,      /* a number or a boolean, as spec.kind says */
    PARAMD__SCHEDULE_PARAMETER_INTEGER,    /* a whole number in spec's range */
    PARAMD__SCHEDULE_PARAMETER_CHOICE,     /* one of `choices`, stored as its index */
    PARAMD__SCHEDULE_PARAMETER_MILESTONES, /* a list of integers, in node.milestones */
    PARAMD__SCHEDULE_PARAMETER_SCHEDULERS, /* child schedules, in config.children */
} paramd__schedule_parameter_kind;

/* One keyword argument of a torch scheduler.  `spec` holds its name, value
 * slot, default, range, flags (REQUIRED, NO_EFFECT) and description, as for
 * optimizer hyperparameters; for milestones and schedulers the slot holds
 * the list's length, NaN until given. */
typedef struct paramd__schedule_parameter {
    paramd__hyperparameter_spec spec;
    paramd__schedule_parameter_kind kind;
    bool nullable;               /* torch's default is None: NaN here, null in JSON */
    const char *const *choices;  /* CHOICE: the allowed strings, NULL-terminated */
} paramd__schedule_parameter;

/* ---------------------------------------------------------------------------
 * Configurations and state
 * ------------------------------------------------------------------------- */

struct paramd__schedule_type;
struct paramd__schedule_context; /* private to schedule.c */

/* One scheduler's configuration: which scheduler and all of its values
 * (defaults filled in). */
typedef struct paramd__schedule_node {
    const struct paramd__schedule_type *type;
    double values[PARAMD__MAX_SCHEDULE_PARAMETERS];
    int milestone_count;
    int64_t milestones[PARAMD__MAX_SCHEDULE_MILESTONES];
} paramd__schedule_node;

/* A validated schedule: the scheduler itself and, for SequentialLR and
 * ChainedScheduler, its children in order (which have no children). */
typedef struct paramd__schedule_config {
    paramd__schedule_node schedule;
    int child_count;
    paramd__schedule_node children[PARAMD__MAX_SCHEDULE_CHILDREN];
} paramd__schedule_config;

/* What the optimizer offers to a schedule that cycles momentum, as torch
 * tells by the keys of optimizer.defaults. */
typedef enum paramd__schedule_momentum_kind {
    PARAMD__SCHEDULE_MOMENTUM_NONE,  /* neither (Adagrad, Adadelta) */
    PARAMD__SCHEDULE_MOMENTUM_VALUE, /* a "momentum" hyperparameter (SGD, RMSprop) */
    PARAMD__SCHEDULE_MOMENTUM_BETA1, /* "betas", of which beta1 is cycled (Adam, AdamW, ...) */
} paramd__schedule_momentum_kind;

/* The entries of torch's param_groups[0] that schedulers read and write. */
typedef struct paramd__schedule_group {
    double lr;           /* group["lr"]: the lr of the next optimizer step */
    double initial_lr;   /* group["initial_lr"]; NaN until a scheduler sets it */
    double momentum;     /* group["momentum"] or group["betas"][0]; NaN if neither */
    double max_lr, min_lr, max_momentum, base_momentum; /* set by OneCycleLR */
} paramd__schedule_group;

/* One scheduler's own state: torch's attributes of that name. */
typedef struct paramd__schedule_state {
    int64_t last_epoch;
    double base_lr;                      /* base_lrs[0] */
    int64_t T_i, T_cur;                  /* CosineAnnealingWarmRestarts */
    double base_momentum, max_momentum;  /* CyclicLR's base_momentums[0], max_momentums[0] */
    double best;                         /* ReduceLROnPlateau */
    int64_t num_bad_epochs, cooldown_counter;
} paramd__schedule_state;

/* A running schedule. */
typedef struct paramd__schedule {
    paramd__schedule_config config;
    paramd__schedule_momentum_kind momentum_kind;
    paramd__schedule_group group;
    int64_t last_epoch;                  /* SequentialLR's own */
    uint64_t step_count;                 /* paramd__schedule_step calls that succeeded */
    paramd__schedule_state state;        /* of config.schedule */
    paramd__schedule_state children[PARAMD__MAX_SCHEDULE_CHILDREN];
} paramd__schedule;

/* ---------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------- */

typedef enum paramd__schedule_composition {
    PARAMD__SCHEDULE_LEAF,       /* a scheduler of its own */
    PARAMD__SCHEDULE_SEQUENTIAL, /* SequentialLR: one child at a time, by milestones */
    PARAMD__SCHEDULE_CHAINED,    /* ChainedScheduler: every child, every step */
} paramd__schedule_composition;

typedef struct paramd__schedule_context paramd__schedule_context;

typedef struct paramd__schedule_type {
    const char *name;                 /* torch class name, e.g. "CosineAnnealingLR" */
    const paramd__schedule_parameter *parameters;
    int parameter_count;
    paramd__schedule_composition composition;
    bool needs_loss;                  /* ReduceLROnPlateau: step() takes the loss */
    /* Cross-field checks after each value passed its own; `field` names the
     * schedule in errors ("schedule.schedulers[1]").  May be NULL. */
    int (*validate)(const paramd__schedule_node *node, const char *field, paramd__error *error);
    /* The behaviour of leaf schedules, as torch's class defines it.
     * construct: __init__, its first step included; NULL: _LRScheduler's.
     * step: step() (from_zero: step(0), as SequentialLR calls at a milestone);
     *       NULL: _LRScheduler's, which calls get_lr or closed_form.
     * get_lr: the new lr, mostly from group->lr (chainable form).
     * closed_form: the lr as a function of last_epoch; NULL where torch has none. */
    int (*construct)(const paramd__schedule_node *node, paramd__schedule_state *state,
                     paramd__schedule_group *group, paramd__schedule_context *context);
    int (*step)(const paramd__schedule_node *node, paramd__schedule_state *state,
                paramd__schedule_group *group, bool from_zero, double loss,
                paramd__schedule_context *context);
    double (*get_lr)(const paramd__schedule_node *node, paramd__schedule_state *state,
                     paramd__schedule_group *group, paramd__schedule_context *context);
    double (*closed_form)(const paramd__schedule_node *node, paramd__schedule_state *state,
                          paramd__schedule_group *group, paramd__schedule_context *context);
} paramd__schedule_type;

/* The table, and its length. */
extern const paramd__schedule_type *const paramd__schedule_types[];
extern const int paramd__schedule_type_count;

/* Finds a schedule by torch class name, case-insensitively. */
const paramd__schedule_type *paramd__schedule_find(const char *name);

/* Writes "StepLR, MultiStepLR, ..." into buffer, for error messages. */
void paramd__schedule_list_names(char *buffer, size_t size);

/* Finds a parameter of `type` by exact keyword name. */
const paramd__schedule_parameter *paramd__schedule_find_parameter(
    const paramd__schedule_type *type, const char *name);

/* ---------------------------------------------------------------------------
 * Configurations
 * ------------------------------------------------------------------------- */

/* Starts a scheduler's configuration with every default filled in; required
 * parameters are NaN until given. */
void paramd__schedule_node_init(paramd__schedule_node *node, const paramd__schedule_type *type);

/* Sets a number, boolean (0 or 1), integer, or choice (its index; see
 * paramd__schedule_find_choice) after checking its range; NaN for a nullable
 * parameter means None.  `field` prefixes the error ("schedule.T_max").
 * Changes nothing on error. */
int paramd__schedule_node_set(paramd__schedule_node *node,
                              const paramd__schedule_parameter *parameter, double value,
                              const char *field, paramd__error *error);

/* Sets a milestones list (each >= 0; at most PARAMD__MAX_SCHEDULE_MILESTONES). */
int paramd__schedule_node_set_milestones(paramd__schedule_node *node,
                                         const paramd__schedule_parameter *parameter,
                                         const int64_t *milestones, int count,
                                         const char *field, paramd__error *error);

/* The index of `text` among a choice parameter's strings, or -1. */
int paramd__schedule_find_choice(const paramd__schedule_parameter *parameter, const char *text);

/* Reads a value by name (a choice's index); NaN if there is no such value. */
double paramd__schedule_node_get(const paramd__schedule_node *node, const char *name);

/* Checks a whole configuration: required values given, each scheduler's
 * cross-field rules, and the children of SequentialLR and ChainedScheduler
 * (one at least, no nested composites, no ReduceLROnPlateau, SequentialLR's
 * milestone count).  Errors name the field, prefixed "schedule". */
int paramd__schedule_config_validate(const paramd__schedule_config *config,
                                     paramd__error *error);

/* Whether paramd__schedule_step needs the loss (ReduceLROnPlateau). */
bool paramd__schedule_needs_loss(const paramd__schedule_config *config);

/* ---------------------------------------------------------------------------
 * Running a schedule
 * ------------------------------------------------------------------------- */

/* Starts a schedule for an optimizer with learning rate base_lr and, where
 * momentum_kind is not NONE, momentum (or beta1) base_momentum, as building
 * the torch scheduler(s) on that optimizer does.  Checks the configuration
 * again, and what depends on the optimizer: CyclicLR's cycle_momentum needs
 * a "momentum" hyperparameter (torch 1.13 cannot cycle Adam's beta1 there),
 * OneCycleLR's needs momentum or betas, and a cycled beta1 stays in [0, 1). */
int paramd__schedule_init(paramd__schedule *schedule, const paramd__schedule_config *config,
                          double base_lr, paramd__schedule_momentum_kind momentum_kind,
                          double base_momentum, paramd__error *error);

/* The same, taking lr, momentum or betas[0], and the momentum kind from an
 * optimizer configuration. */
int paramd__schedule_init_for_optimizer(paramd__schedule *schedule,
                                        const paramd__schedule_config *config,
                                        const paramd__optimizer_config *optimizer,
                                        paramd__error *error);

/* The learning rate to use for the next optimizer step. */
double paramd__schedule_lr(const paramd__schedule *schedule);

/* Whether the schedule cycles the optimizer's momentum (CyclicLR or
 * OneCycleLR with cycle_momentum, alone or as a child). */
bool paramd__schedule_cycles_momentum(const paramd__schedule *schedule);

/* The momentum (or beta1) to use for the next optimizer step; NaN when the
 * schedule does not cycle momentum. */
double paramd__schedule_momentum(const paramd__schedule *schedule);

/* Advances the schedule after an optimizer step: torch's scheduler.step(),
 * or scheduler.step(loss) for ReduceLROnPlateau.  `loss` is NAN when there
 * is none; ReduceLROnPlateau refuses that (JSON cannot carry a NaN, so NaN
 * only ever means "no loss").  Fails, changing nothing, where torch raises:
 * OneCycleLR stepped past total_steps, and the rare float overflow or
 * division by zero (CyclicLR triangular2 after 1024 cycles, for one). */
int paramd__schedule_step(paramd__schedule *schedule, double loss, paramd__error *error);

/* ---------------------------------------------------------------------------
 * JSON (json_schedule.c)
 * ------------------------------------------------------------------------- */

/* Parses {"name": "CosineAnnealingLR", "T_max": 1000, ...}: the name
 * case-insensitively, torch's keyword arguments, "milestones": [...] lists
 * and, for SequentialLR and ChainedScheduler, "schedulers": [{...}, ...].
 * Unknown keys are refused.  Fills in defaults and validates the result. */
int paramd__json_parse_schedule(const json_t *object, paramd__schedule_config *config,
                                paramd__error *error);

/* {"name": ..., every parameter with defaults filled in (null for None),
 * "schedulers": [...] for composites}.  NULL if memory ran out. */
json_t *paramd__json_schedule(const paramd__schedule_config *config);

/* The rows of the table. */
extern const paramd__schedule_type paramd__schedule_step_lr;
extern const paramd__schedule_type paramd__schedule_multi_step_lr;
extern const paramd__schedule_type paramd__schedule_constant_lr;
extern const paramd__schedule_type paramd__schedule_linear_lr;
extern const paramd__schedule_type paramd__schedule_exponential_lr;
extern const paramd__schedule_type paramd__schedule_polynomial_lr;
extern const paramd__schedule_type paramd__schedule_cosine_annealing_lr;
extern const paramd__schedule_type paramd__schedule_cosine_annealing_warm_restarts;
extern const paramd__schedule_type paramd__schedule_cyclic_lr;
extern const paramd__schedule_type paramd__schedule_one_cycle_lr;
extern const paramd__schedule_type paramd__schedule_reduce_lr_on_plateau;
extern const paramd__schedule_type paramd__schedule_sequential_lr;
extern const paramd__schedule_type paramd__schedule_chained_scheduler;

#endif
