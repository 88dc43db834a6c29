/*
 * optimizer.h - the optimizer table and optimizer configurations.
 *
 * Every optimizer paramd knows is one row of a single table
 * (paramd__optimizer_types in optimizer.c): its torch.optim class name, the
 * names of its per-tensor state slots (torch's state keys) and their initial
 * values (zero unless `init_state` says otherwise), its hyperparameter schema
 * (torch.optim keyword names, defaults and valid ranges), a cross-field
 * validator, and its step: `prepare` turns the configuration and the tensor's
 * step number into per-step scalars once (in double precision, as torch does
 * in Python), and `kernel` applies the fused element-wise update over a range
 * of elements.  Each optimizer also has a plain `reference_kernel`; a unit
 * test checks that the fast kernel agrees with it bit for bit.
 *
 * Adding an optimizer means adding one file with its schema and kernels and
 * one line to the table; nothing in the front ends changes.
 */
#ifndef PARAMD_SERVER_OPTIMIZER_H
#define PARAMD_SERVER_OPTIMIZER_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMD__MAX_HYPERPARAMETERS 24 /* value slots in a configuration */

/* Hyperparameters every optimizer has, in the last slots of a configuration
 * (an optimizer's own schema uses slots below PARAMD__FIRST_COMMON_SLOT):
 *   decoupled_weight_decay  apply weight_decay as p *= 1 - lr * weight_decay
 *                           before the step instead of adding it to the
 *                           gradient (torch 2.x's keyword; AdamW and Lion
 *                           always decouple and do not take it)
 *   l1                      after the step, a proximal soft-threshold:
 *                           p = sign(p) * max(|p| - lr * l1, 0) */
#define PARAMD__SLOT_DECOUPLED_WEIGHT_DECAY (PARAMD__MAX_HYPERPARAMETERS - 2)
#define PARAMD__SLOT_L1 (PARAMD__MAX_HYPERPARAMETERS - 1)
#define PARAMD__FIRST_COMMON_SLOT PARAMD__SLOT_DECOUPLED_WEIGHT_DECAY
#define PARAMD__MAX_STATE_SLOTS 8      /* per-tensor state arrays */

/* ---------------------------------------------------------------------------
 * Hyperparameter schema
 * ------------------------------------------------------------------------- */

typedef enum paramd__hyperparameter_kind {
    PARAMD__HYPERPARAMETER_REAL,    /* a finite number */
    PARAMD__HYPERPARAMETER_BOOLEAN, /* true or false, stored as 1.0 or 0.0 */
    PARAMD__HYPERPARAMETER_PAIR,    /* two numbers, e.g. betas; uses slot and slot + 1 */
    PARAMD__HYPERPARAMETER_TRIPLE,  /* three numbers, e.g. Muon's ns_coefficients;
                                       uses slot to slot + 2 */
    PARAMD__HYPERPARAMETER_INTEGER, /* a whole number, e.g. ns_steps */
    PARAMD__HYPERPARAMETER_CHOICE,  /* one of the strings in `choices` (or JSON null for
                                       the first, as torch's None), stored as its index */
} paramd__hyperparameter_kind;

/* Numbers a hyperparameter of `kind` holds (1 for all but pairs and triples). */
int paramd__hyperparameter_width(paramd__hyperparameter_kind kind);

enum {
    PARAMD__HYPERPARAMETER_REQUIRED = 1u << 0,      /* no default: must be given */
    PARAMD__HYPERPARAMETER_MINIMUM_OPEN = 1u << 1,  /* value > minimum (else >=) */
    PARAMD__HYPERPARAMETER_MAXIMUM_OPEN = 1u << 2,  /* value < maximum (else <=) */
    PARAMD__HYPERPARAMETER_NO_EFFECT = 1u << 3,     /* accepted for torch compatibility
                                                       (foreach, fused, ...), ignored */
    PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT = 1u << 4, /* a JSON null (inside a pair: one
                                                         of its numbers) means the default,
                                                         as torch's None (Adafactor's eps1) */
};

typedef struct paramd__hyperparameter_spec {
    const char *name;                 /* torch.optim keyword, e.g. "weight_decay" */
    paramd__hyperparameter_kind kind;
    int slot;                         /* index into paramd__optimizer_config.values */
    double default_value[3];          /* [1] and [2] only for pairs and triples */
    double minimum, maximum;          /* valid range of each number */
    unsigned flags;                   /* PARAMD__HYPERPARAMETER_* */
    const char *description;          /* one line, for docs and errors */
    const char *const *choices;       /* CHOICE only: the names, NULL-terminated */
} paramd__hyperparameter_spec;

/* ---------------------------------------------------------------------------
 * Configurations and step kernels
 * ------------------------------------------------------------------------- */

struct paramd__optimizer_type;

/* A validated optimizer configuration: which optimizer and all of its
 * hyperparameter values (defaults filled in).  Plain data, copied freely. */
typedef struct paramd__optimizer_config {
    const struct paramd__optimizer_type *type;
    double values[PARAMD__MAX_HYPERPARAMETERS];
} paramd__optimizer_config;

/* Per-step scalars computed by `prepare`; each optimizer lays out its own
 * struct inside (checked by a static assertion in its file). */
typedef struct paramd__step_scalars {
    _Alignas(16) unsigned char bytes[256];
} paramd__step_scalars;

/* The arrays one step works on.  param and grad have the step's element
 * count, and so does every state array of an element-wise optimizer;
 * state[i] is NULL for slots the configuration does not use.  A tensor-wise
 * optimizer (see paramd__optimizer_type.tensor_step) also reads the shape,
 * and its state arrays have the lengths its state_slot_length gives (e.g.
 * Adafactor's row and column factors).  A zero dimension_count with a NULL
 * shape means a flat (1-D) tensor of the step's count. */
typedef struct paramd__step_arrays {
    float *param;
    const float *grad;
    float *state[PARAMD__MAX_STATE_SLOTS];
    int dimension_count;
    const int64_t *shape;
    /* Working memory for a tensor-wise step, at least the bytes the
     * optimizer's scratch_bytes asks for (64-byte aligned), provided by the
     * caller so that a push can allocate everything before it changes
     * anything.  NULL: paramd__optimizer_step allocates it (tests, bench). */
    void *scratch;
    /* When not NULL, paramd__optimizer_step also copies the resulting
     * weights here (count floats), block by block while they are still in
     * cache, instead of the caller reading them back afterwards: the reply
     * of a PUSHPULL without a second pass over memory. */
    float *weights_out;
} paramd__step_arrays;

/* Updates elements [begin, end) of the arrays.  Must touch nothing else, so
 * disjoint ranges can run on different threads. */
typedef void (*paramd__step_kernel)(const paramd__step_scalars *scalars,
                                    const paramd__step_arrays *arrays, size_t begin, size_t end);

/* A tensor-wise step: the whole update of one tensor, for optimizers whose
 * update of an element depends on the rest of the tensor (a norm, a trust
 * ratio, a factored second moment, a matrix product).  It runs its own
 * passes (threaded through parallel.h for large tensors, with reductions in
 * a fixed order so results do not depend on the thread count) and, with
 * `reference` set, plain scalar loops on the calling thread instead. */
typedef void (*paramd__tensor_step_function)(const paramd__optimizer_config *config,
                                             uint64_t step, const paramd__step_arrays *arrays,
                                             size_t count, bool reference);

/* One pass of a step over memory, for paramd-bench's bandwidth probe:
 * how many tensor-sized arrays it reads and writes, and which: `arrays`
 * names the `reads` arrays, those written (read, then written back) first,
 * with 'p' the weights, 'g' the gradient, '0' to '7' the state slots and
 * 'x', 'y' tensor-sized working arrays. */
typedef struct paramd__memory_pass {
    int reads, writes;
    char arrays[PARAMD__MAX_STATE_SLOTS + 4];
} paramd__memory_pass;

#define PARAMD__MAX_MEMORY_PASSES 6

/* paramd__optimizer_type.flags */
enum {
    PARAMD__OPTIMIZER_DECOUPLED = 1u << 0, /* weight_decay is already decoupled (AdamW, Lion),
                                              or part of the method (LAMB, LARS) */
    PARAMD__OPTIMIZER_WHOLE_MODEL = 1u << 1, /* one step over all of a model's tensors,
                                                driven by several pushes (LBFGS, lbfgs.h):
                                                no kernel, no parameter groups, no
                                                common hyperparameters */
};

typedef struct paramd__optimizer_type {
    const char *name;                      /* torch.optim class name, e.g. "AdamW" */
    unsigned flags;                        /* PARAMD__OPTIMIZER_* */
    const char *const *state_slot_names;   /* state_slot_count names, e.g. "exp_avg" */
    int state_slot_count;                  /* slots the optimizer may use */
    const paramd__hyperparameter_spec *hyperparameters;
    int hyperparameter_count;
    /* Cross-field checks after each value passed its own range check
     * (e.g. nesterov needs momentum > 0).  `field` names the configuration
     * in messages ("optimizer", "param_groups[2]").  May be NULL. */
    int (*validate)(const paramd__optimizer_config *config, const char *field,
                    paramd__error *error);
    /* Whether a configuration uses state slot i (e.g. Adam's max_exp_avg_sq
     * only with amsgrad).  Unused slots are never allocated. */
    bool (*uses_state_slot)(const paramd__optimizer_config *config, int slot);
    /* Sets the initial values of a new tensor's state slots (state[i] is NULL
     * for slots the configuration does not use), as torch's constructor or
     * lazy state initialisation does, e.g. Adagrad's initial_accumulator_value.
     * NULL: every slot starts at zero. */
    void (*init_state)(const paramd__optimizer_config *config, float *const *state,
                       size_t count);
    /* Element-wise optimizers: fills *scalars for the tensor's step number
     * `step` (1 for the first), then `kernel` runs over the elements. */
    void (*prepare)(const paramd__optimizer_config *config, uint64_t step,
                    paramd__step_scalars *scalars);
    paramd__step_kernel kernel;            /* fused, vectorised */
    paramd__step_kernel reference_kernel;  /* plain scalar loop, for tests */
    /* Tensor-wise optimizers set this instead of prepare and the kernels. */
    paramd__tensor_step_function tensor_step;
    /* Tensor-wise optimizers whose state is not one array per element (or
     * depends on the shape): the length of state slot `slot` for a tensor of
     * that shape, 0 when the tensor does not use the slot.  NULL: every slot
     * that uses_state_slot accepts has `count` elements.  init_state is only
     * for optimizers without it. */
    size_t (*state_slot_length)(const paramd__optimizer_config *config, int slot,
                                int dimension_count, const int64_t *shape, size_t count);
    /* Bytes of working memory one tensor_step of a tensor of this shape
     * needs (see paramd__step_arrays.scratch).  NULL: none. */
    size_t (*scratch_bytes)(const paramd__optimizer_config *config, int dimension_count,
                            const int64_t *shape, size_t count);
    /* The passes a step of a `count`-element tensor of this shape makes over
     * memory, for the bandwidth probe; returns how many it wrote to passes
     * (at most PARAMD__MAX_MEMORY_PASSES).  NULL: one pass that reads the
     * weights, the gradient and each state array and writes the weights and
     * each state array. */
    int (*memory_passes)(const paramd__optimizer_config *config, int dimension_count,
                         const int64_t *shape, paramd__memory_pass *passes);
} paramd__optimizer_type;

/* The table, and its length. */
extern const paramd__optimizer_type *const paramd__optimizer_types[];
extern const int paramd__optimizer_type_count;

/* Finds an optimizer by torch.optim class name, case-insensitively. */
const paramd__optimizer_type *paramd__optimizer_find(const char *name);

/* Finds a hyperparameter of `type` by exact keyword name: one of its own, or
 * a common one (decoupled_weight_decay, l1) that applies to it. */
const paramd__hyperparameter_spec *paramd__optimizer_find_hyperparameter(
    const paramd__optimizer_type *type, const char *name);

/* The i-th common hyperparameter that applies to `type`, or NULL past the
 * last: for listing every hyperparameter of a configuration. */
const paramd__hyperparameter_spec *paramd__optimizer_common_hyperparameter(
    const paramd__optimizer_type *type, int index);

/* Starts a configuration of `type` with every default filled in; required
 * hyperparameters are left unset (NaN) until given. */
void paramd__optimizer_config_init(paramd__optimizer_config *config,
                                   const paramd__optimizer_type *type);

/* Checks values (paramd__hyperparameter_width(spec->kind) of them) against
 * spec's range or choices; errors name `field` and the valid range. */
int paramd__hyperparameter_check(const paramd__hyperparameter_spec *spec, const double *values,
                                 const char *field, paramd__error *error);

/* Sets one hyperparameter after checking its range.  `values` holds one
 * number (two for a pair); booleans are 0 or 1.  The error message is
 * prefixed with `field` (e.g. "optimizer.lr").  Changes nothing on error. */
int paramd__optimizer_config_set(paramd__optimizer_config *config,
                                 const paramd__hyperparameter_spec *spec, const double *values,
                                 const char *field, paramd__error *error);

/* Checks that required hyperparameters are set and runs the optimizer's
 * cross-field validator.  `field` prefixes error messages ("optimizer"). */
int paramd__optimizer_config_validate(const paramd__optimizer_config *config, const char *field,
                                      paramd__error *error);

/* The length of state slot `slot` for a tensor of this shape and `count`
 * elements under `config`; 0 when that tensor keeps no such state. */
size_t paramd__optimizer_state_length(const paramd__optimizer_config *config, int slot,
                                      int dimension_count, const int64_t *shape, size_t count);

/* Bytes of scratch one step of such a tensor needs (0 for most optimizers). */
size_t paramd__optimizer_scratch_bytes(const paramd__optimizer_config *config,
                                       int dimension_count, const int64_t *shape, size_t count);

/* The memory passes of one step (see paramd__optimizer_type.memory_passes). */
int paramd__optimizer_memory_passes(const paramd__optimizer_config *config, int dimension_count,
                                    const int64_t *shape, paramd__memory_pass *passes);

/* Reads a hyperparameter by name (the first number for a pair). */
double paramd__optimizer_config_get(const paramd__optimizer_config *config, const char *name);

/* Element count above which a step is split across the thread pool. */
#define PARAMD__PARALLEL_STEP_MINIMUM (1u << 18)

/* Applies one step to arrays of `count` elements with the fast kernel,
 * threaded for large tensors.  `step` is the tensor's new step number. */
void paramd__optimizer_step(const paramd__optimizer_config *config, uint64_t step,
                            const paramd__step_arrays *arrays, size_t count);

/* The same with the reference kernel on the calling thread (tests only). */
void paramd__optimizer_step_reference(const paramd__optimizer_config *config, uint64_t step,
                                      const paramd__step_arrays *arrays, size_t count);

/* The rows of the table, each defined in its optimizer_*.c file. */
extern const paramd__optimizer_type paramd__optimizer_sgd;
extern const paramd__optimizer_type paramd__optimizer_adam;
extern const paramd__optimizer_type paramd__optimizer_adamw;
extern const paramd__optimizer_type paramd__optimizer_adagrad;
extern const paramd__optimizer_type paramd__optimizer_rmsprop;
extern const paramd__optimizer_type paramd__optimizer_adamax;
extern const paramd__optimizer_type paramd__optimizer_adadelta;
extern const paramd__optimizer_type paramd__optimizer_nadam;
extern const paramd__optimizer_type paramd__optimizer_radam;
extern const paramd__optimizer_type paramd__optimizer_rprop;
extern const paramd__optimizer_type paramd__optimizer_asgd;
extern const paramd__optimizer_type paramd__optimizer_lion;
extern const paramd__optimizer_type paramd__optimizer_yogi;
extern const paramd__optimizer_type paramd__optimizer_adabelief;
extern const paramd__optimizer_type paramd__optimizer_deltabardelta;
extern const paramd__optimizer_type paramd__optimizer_lamb;
extern const paramd__optimizer_type paramd__optimizer_lars;
extern const paramd__optimizer_type paramd__optimizer_adafactor;
extern const paramd__optimizer_type paramd__optimizer_muon;
extern const paramd__optimizer_type paramd__optimizer_lbfgs;

#endif
