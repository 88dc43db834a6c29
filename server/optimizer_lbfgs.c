/*
 * optimizer_lbfgs.c - LBFGS's row of the optimizer table: torch.optim.LBFGS's
 * keywords and defaults, and the per-tensor state the algorithm keeps
 * (lbfgs.h).  LBFGS is the table's one whole-model optimizer: its step
 * treats all of a model's tensors as one vector and runs over several
 * pushes, so it has no kernel; core.c hands its pushes to lbfgs.c.
 */
#include "lbfgs.h"
#include "optimizer.h"

#include <math.h>

enum { SLOT_LR, SLOT_MAX_ITER, SLOT_MAX_EVAL, SLOT_TOLERANCE_GRAD, SLOT_TOLERANCE_CHANGE,
       SLOT_HISTORY_SIZE, SLOT_LINE_SEARCH };

static const char *const line_search_choices[] = {"none", "strong_wolfe", NULL};

static const paramd__hyperparameter_spec lbfgs_hyperparameters[] = {
    {"lr", PARAMD__HYPERPARAMETER_REAL, SLOT_LR, {1}, 0, INFINITY,
     PARAMD__HYPERPARAMETER_MINIMUM_OPEN, "learning rate: the first trial step of each iteration"},
    {"max_iter", PARAMD__HYPERPARAMETER_INTEGER, SLOT_MAX_ITER, {20}, 1, 1e9, 0,
     "iterations per optimization step"},
    {"max_eval", PARAMD__HYPERPARAMETER_INTEGER, SLOT_MAX_EVAL, {0}, 0, 1e9,
     PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT,
     "function evaluations per step; null (or 0): max_iter * 5 // 4, as torch"},
    {"tolerance_grad", PARAMD__HYPERPARAMETER_REAL, SLOT_TOLERANCE_GRAD, {1e-7}, 0, INFINITY, 0,
     "the step ends once the largest gradient entry is this small"},
    {"tolerance_change", PARAMD__HYPERPARAMETER_REAL, SLOT_TOLERANCE_CHANGE, {1e-9}, 0, INFINITY,
     0, "the step ends once the loss or the weights change less than this"},
    {"history_size", PARAMD__HYPERPARAMETER_INTEGER, SLOT_HISTORY_SIZE, {100}, 1, 100000, 0,
     "(s, y) pairs kept"},
    {"line_search_fn", PARAMD__HYPERPARAMETER_CHOICE, SLOT_LINE_SEARCH, {0}, 0, 0,
     PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT,
     "null (or \"none\"): fixed steps of lr; \"strong_wolfe\": torch's line search",
     line_search_choices},
};

static const char *const lbfgs_state_slots[PARAMD__LBFGS_SLOT_COUNT] = {
    "d", "prev_flat_grad", "flat_grad", "g_prev", "bracket_g0", "bracket_g1", "old_dirs",
    "old_stps"};

static size_t lbfgs_state_slot_length(const paramd__optimizer_config *config, int slot,
                                      int dimension_count, const int64_t *shape, size_t count)
{
    (void)dimension_count, (void)shape;
    return paramd__lbfgs_slot_length(slot, (size_t)config->values[SLOT_HISTORY_SIZE],
                                     config->values[SLOT_LINE_SEARCH] != 0, count);
}

static bool lbfgs_uses_state_slot(const paramd__optimizer_config *config, int slot)
{
    return lbfgs_state_slot_length(config, slot, 1, NULL, 1) > 0;
}

const paramd__optimizer_type paramd__optimizer_lbfgs = {
    .name = "LBFGS",
    .flags = PARAMD__OPTIMIZER_WHOLE_MODEL,
    .state_slot_names = lbfgs_state_slots,
    .state_slot_count = PARAMD__LBFGS_SLOT_COUNT,
    .hyperparameters = lbfgs_hyperparameters,
    .hyperparameter_count = sizeof lbfgs_hyperparameters / sizeof lbfgs_hyperparameters[0],
    .uses_state_slot = lbfgs_uses_state_slot,
    .state_slot_length = lbfgs_state_slot_length,
};
