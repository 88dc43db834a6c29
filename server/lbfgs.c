/*
 * lbfgs.c - torch.optim.LBFGS's step, suspended at every closure call; see
 * lbfgs.h for the protocol.
 *
 * The code follows torch/optim/lbfgs.py (step, _strong_wolfe,
 * _cubic_interpolate) section by section.  Each place where torch calls the
 * closure becomes "hand out a point, set the phase, return"; the push that
 * brings the loss and gradient there re-enters at that phase:
 *
 *   begin_step ─> iterate ─┬─ no line search: step ─> FIXED_STEP ─> after_iteration
 *                          └─ strong Wolfe: SEARCH_FIRST ─> bracket ─(SEARCH_BRACKET)─┐
 *                                            zoom ─(SEARCH_ZOOM)─> finish_search ─> after_iteration
 *   after_iteration ─> iterate again, or finish_step (the step's result goes out)
 */
#include "lbfgs.h"

#include "core.h"
#include "tensor.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Hyperparameter slots (optimizer_lbfgs.c's table). */
enum { SLOT_LR, SLOT_MAX_ITER, SLOT_MAX_EVAL, SLOT_TOLERANCE_GRAD, SLOT_TOLERANCE_CHANGE,
       SLOT_HISTORY_SIZE, SLOT_LINE_SEARCH };

/* _strong_wolfe's defaults, which torch's step does not override. */
#define WOLFE_C1 1e-4
#define WOLFE_C2 0.9
#define WOLFE_TOLERANCE_CHANGE 1e-9
#define WOLFE_MAX_LS 25

/* ---------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------- */

paramd__lbfgs_state *paramd__lbfgs_create(size_t history_size)
{
    paramd__lbfgs_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    state->history_size = history_size;
    state->ro = calloc(history_size + 1, sizeof *state->ro);
    state->al = calloc(history_size + 1, sizeof *state->al);
    if (state->ro == NULL || state->al == NULL) {
        paramd__lbfgs_destroy(state);
        return NULL;
    }
    pthread_mutex_init(&state->lock, NULL);
    state->H_diag = 1;
    return state;
}

void paramd__lbfgs_destroy(paramd__lbfgs_state *state)
{
    if (state == NULL)
        return;
    if (state->ro && state->al)
        pthread_mutex_destroy(&state->lock);
    free(state->ro);
    free(state->al);
    free(state);
}

size_t paramd__lbfgs_slot_length(int slot, size_t history_size, bool line_search, size_t count)
{
    switch (slot) {
    case PARAMD__LBFGS_D:
    case PARAMD__LBFGS_PREV_FLAT_GRAD:
    case PARAMD__LBFGS_FLAT_GRAD:
        return count;
    case PARAMD__LBFGS_G_PREV:
    case PARAMD__LBFGS_BRACKET_G0:
    case PARAMD__LBFGS_BRACKET_G1:
        return line_search ? count : 0;
    case PARAMD__LBFGS_OLD_DIRS:
    case PARAMD__LBFGS_OLD_STPS:
        return (history_size + 1) * count;
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------
 * Flat vectors over the model's tensors
 * ------------------------------------------------------------------------- */

/* One push's view of the vectors: operands name a state slot, a history
 * entry, the weights, or the pushed gradient. */
typedef struct context {
    paramd__model *model;
    paramd__lbfgs_state *state;
    const paramd__optimizer_config *config;
    const float **grad; /* per tensor (by position): the pushed gradient */
} context;

enum { WEIGHTS = -1, PUSHED = -2 };
#define DIRECTION(entry) (1000 + (int)(entry)) /* y of history entry `entry` */
#define STEP(entry) (100000 + (int)(entry))    /* s of history entry `entry` */

static float *part(const context *c, int operand, size_t k)
{
    paramd__tensor *tensor = c->model->tensors[k];
    if (operand == WEIGHTS)
        return tensor->values;
    if (operand == PUSHED)
        return (float *)c->grad[k];
    if (operand >= STEP(0))
        return tensor->state[PARAMD__LBFGS_OLD_STPS] + (size_t)(operand - STEP(0)) * tensor->count;
    if (operand >= DIRECTION(0))
        return tensor->state[PARAMD__LBFGS_OLD_DIRS] +
               (size_t)(operand - DIRECTION(0)) * tensor->count;
    return tensor->state[operand];
}

/* a . b: OpenBLAS's sdot per tensor (the kernel torch's CPU dot calls, so a
 * one-tensor model's dot products are torch's), tensor sums added in double. */
static double dot(const context *c, int a, int b)
{
    double total = 0;
    for (size_t k = 0; k < c->model->tensor_count; k++)
        total += cblas_sdot((int)c->model->tensors[k]->count, part(c, a, k), 1, part(c, b, k), 1);
    return total;
}

/* y += alpha x (OpenBLAS saxpy; torch's add_(x, alpha=) rounds alpha to float32). */
static void axpy(const context *c, double alpha, int x, int y)
{
    for (size_t k = 0; k < c->model->tensor_count; k++)
        cblas_saxpy((int)c->model->tensors[k]->count, (float)alpha, part(c, x, k), 1,
                    part(c, y, k), 1);
}

static void copy(const context *c, int to, int from)
{
    for (size_t k = 0; k < c->model->tensor_count; k++)
        memcpy(part(c, to, k), part(c, from, k), c->model->tensors[k]->count * sizeof(float));
}

/* to = scale * from (scale rounded to float32, as torch's mul by a scalar). */
static void scaled(const context *c, int to, double scale, int from)
{
    float factor = (float)scale;
    for (size_t k = 0; k < c->model->tensor_count; k++) {
        float *out = part(c, to, k);
        const float *in = part(c, from, k);
        for (size_t i = 0; i < c->model->tensors[k]->count; i++)
            out[i] = in[i] * factor;
    }
}

static void difference(const context *c, int to, int a, int b)
{
    for (size_t k = 0; k < c->model->tensor_count; k++) {
        float *out = part(c, to, k);
        const float *x = part(c, a, k), *y = part(c, b, k);
        for (size_t i = 0; i < c->model->tensors[k]->count; i++)
            out[i] = x[i] - y[i];
    }
}

/* max |scale * a| (float32 products), as torch's a.mul(t).abs().max(). */
static float max_abs_scaled(const context *c, int a, double scale)
{
    float factor = (float)scale, largest = 0;
    for (size_t k = 0; k < c->model->tensor_count; k++) {
        const float *x = part(c, a, k);
        for (size_t i = 0; i < c->model->tensors[k]->count; i++) {
            float value = fabsf(x[i] * factor);
            largest = value > largest ? value : largest;
        }
    }
    return largest;
}

static float max_abs(const context *c, int a)
{
    return max_abs_scaled(c, a, 1.0);
}

static double abs_sum(const context *c, int a)
{
    double total = 0;
    for (size_t k = 0; k < c->model->tensor_count; k++) {
        const float *x = part(c, a, k);
        for (size_t i = 0; i < c->model->tensors[k]->count; i++)
            total += fabsf(x[i]);
    }
    return total;
}

/* The weights += t d (torch's _add_grad), under each tensor's lock so that
 * pulls see a tensor before or after, never half-updated. */
static void move_weights(const context *c, double t)
{
    for (size_t k = 0; k < c->model->tensor_count; k++) {
        paramd__tensor *tensor = c->model->tensors[k];
        pthread_mutex_lock(&tensor->lock);
        cblas_saxpy((int)tensor->count, (float)t, tensor->state[PARAMD__LBFGS_D], 1,
                    tensor->values, 1);
        pthread_mutex_unlock(&tensor->lock);
    }
}

/* ---------------------------------------------------------------------------
 * torch's scalar helpers
 * ------------------------------------------------------------------------- */

/* torch keeps these scalars in 0-dimensional float32 tensors (dot
 * products, their ratios, norms, and every step length that went through
 * _cubic_interpolate or the first iteration's formula): rounding them the
 * same way keeps the points handed out within float32 noise of torch's. */
static double f32(double x)
{
    return (double)(float)x;
}

/* Python's min and max: the first argument unless the second is strictly
 * smaller (larger), so a NaN first argument stays. */
static double python_min(double a, double b)
{
    return b < a ? b : a;
}

static double python_max(double a, double b)
{
    return b > a ? b : a;
}

/* _cubic_interpolate: the minimiser of the cubic through (x1, f1, g1) and
 * (x2, f2, g2), clamped to the bounds (default: between x1 and x2). */
static double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2,
                                const double *bounds)
{
    double low, high;
    if (bounds) {
        low = bounds[0];
        high = bounds[1];
    } else if (x1 <= x2) {
        low = x1;
        high = x2;
    } else {
        low = x2;
        high = x1;
    }
    /* g1 and g2 are float32 tensors in torch, so is everything they touch. */
    float d1 = (float)g1 + (float)g2 - (float)(3 * (f1 - f2) / (x1 - x2));
    float d2_square = d1 * d1 - (float)g1 * (float)g2;
    if (d2_square >= 0) {
        float d2 = sqrtf(d2_square), min_pos;
        if (x1 <= x2)
            min_pos = (float)x2 - (float)(x2 - x1) * (((float)g2 + d2 - d1) /
                                                      ((float)g2 - (float)g1 + 2 * d2));
        else
            min_pos = (float)x1 - (float)(x1 - x2) * (((float)g1 + d2 - d1) /
                                                      ((float)g1 - (float)g2 + 2 * d2));
        return python_min(python_max(min_pos, low), high);
    }
    return (low + high) / 2.0;
}

/* ---------------------------------------------------------------------------
 * The algorithm
 * ------------------------------------------------------------------------- */

enum { NEED_EVALUATION = 0, STEP_DONE = 1 };

static double hyperparameter(const context *c, int slot)
{
    return c->config->values[slot];
}

static uint64_t max_iter(const context *c)
{
    return (uint64_t)hyperparameter(c, SLOT_MAX_ITER);
}

/* torch: max_eval defaults to max_iter * 5 // 4 (stored as 0). */
static uint64_t max_eval(const context *c)
{
    double stored = hyperparameter(c, SLOT_MAX_EVAL);
    return stored > 0 ? (uint64_t)stored : max_iter(c) * 5 / 4;
}

static bool line_search(const context *c)
{
    return hyperparameter(c, SLOT_LINE_SEARCH) != 0;
}

static int iterate(context *c);

/* Hands out the weights plus t times the direction (a line-search trial). */
static int evaluate_at(context *c, double t, paramd__lbfgs_phase phase)
{
    c->state->eval_at_offset = true;
    c->state->eval_t = t;
    c->state->phase = phase;
    return NEED_EVALUATION;
}

/* The step is over: its result is the weights, and the next push starts
 * the next step. */
static int finish_step(context *c)
{
    c->state->steps_done++;
    c->state->phase = PARAMD__LBFGS_STEP_START;
    c->state->eval_at_offset = false;
    return STEP_DONE;
}

/* The closing checks of one iteration of torch's while loop. */
static int after_iteration(context *c)
{
    paramd__lbfgs_state *s = c->state;
    s->current_evals += (uint64_t)s->ls_func_evals;
    s->func_evals += (uint64_t)s->ls_func_evals;
    if (s->step_iterations == max_iter(c))
        return finish_step(c);
    if (s->current_evals >= max_eval(c))
        return finish_step(c);
    if (s->opt_cond)
        return finish_step(c);
    /* Lack of progress. */
    if (max_abs_scaled(c, PARAMD__LBFGS_D, s->t) <= (float)hyperparameter(c, SLOT_TOLERANCE_CHANGE))
        return finish_step(c);
    if (fabs(s->loss - s->prev_loss) < hyperparameter(c, SLOT_TOLERANCE_CHANGE))
        return finish_step(c);
    return iterate(c);
}

/* _strong_wolfe's end: the bracket's low point is the step. */
static int finish_search(context *c)
{
    paramd__lbfgs_state *s = c->state;
    int low = s->low_pos;
    s->t = s->bracket[low];
    s->loss = s->bracket_f[low];
    copy(c, PARAMD__LBFGS_FLAT_GRAD, low ? PARAMD__LBFGS_BRACKET_G1 : PARAMD__LBFGS_BRACKET_G0);
    move_weights(c, s->t);
    s->opt_cond = max_abs(c, PARAMD__LBFGS_FLAT_GRAD) <=
                  (float)hyperparameter(c, SLOT_TOLERANCE_GRAD);
    return after_iteration(c);
}

static int bracket_slot(int index)
{
    return index ? PARAMD__LBFGS_BRACKET_G1 : PARAMD__LBFGS_BRACKET_G0;
}

/* The zoom phase's loop: the next trial point inside the bracket, or the
 * end of the search. */
static int zoom(context *c)
{
    paramd__lbfgs_state *s = c->state;
    if (s->done || s->ls_iter >= WOLFE_MAX_LS)
        return finish_search(c);
    /* The bracket is too small to go on. */
    if (fabs(s->bracket[1] - s->bracket[0]) * s->d_norm < WOLFE_TOLERANCE_CHANGE)
        return finish_search(c);
    double t = cubic_interpolate(s->bracket[0], s->bracket_f[0], s->bracket_gtd[0],
                                 s->bracket[1], s->bracket_f[1], s->bracket_gtd[1], NULL);
    double high = python_max(s->bracket[0], s->bracket[1]);
    double low = python_min(s->bracket[0], s->bracket[1]);
    double eps = 0.1 * (high - low);
    if (python_min(high - t, t - low) < eps) {
        /* Close to a boundary: move 0.1 of the bracket away from it when
         * the last trial made too little progress, or t is on it. */
        if (s->insuf_progress || t >= high || t <= low) {
            t = fabs(t - high) < fabs(t - low) ? high - eps : low + eps;
            s->insuf_progress = false;
        } else {
            s->insuf_progress = true;
        }
    } else {
        s->insuf_progress = false;
    }
    s->t = t;
    return evaluate_at(c, t, PARAMD__LBFGS_SEARCH_ZOOM);
}

static void order_bracket(paramd__lbfgs_state *s)
{
    bool first_lower = s->bracket_f[0] <= s->bracket_f[s->bracket_size - 1];
    s->low_pos = first_lower ? 0 : 1;
    s->high_pos = first_lower ? 1 : 0;
}

static int start_zoom(context *c)
{
    c->state->insuf_progress = false;
    order_bracket(c->state);
    return zoom(c);
}

/* A two-point bracket [t_prev, t] around a point that satisfies the
 * conditions: its values, gradients (copied) and directional derivatives. */
static int bracket_previous_and_new(context *c)
{
    paramd__lbfgs_state *s = c->state;
    s->bracket_size = 2;
    s->bracket[0] = s->t_prev;
    s->bracket[1] = s->t;
    s->bracket_f[0] = s->f_prev;
    s->bracket_f[1] = s->f_new;
    copy(c, PARAMD__LBFGS_BRACKET_G0, PARAMD__LBFGS_G_PREV);
    copy(c, PARAMD__LBFGS_BRACKET_G1, PUSHED);
    s->bracket_gtd[0] = s->gtd_prev;
    s->bracket_gtd[1] = s->gtd_new;
    return start_zoom(c);
}

/* One check of the bracketing loop, with f_new, gtd_new and the pushed
 * gradient at the trial point t. */
static int bracket(context *c)
{
    paramd__lbfgs_state *s = c->state;
    if (s->f_new > s->f + WOLFE_C1 * s->t * s->gtd || (s->ls_iter > 1 && s->f_new >= s->f_prev))
        return bracket_previous_and_new(c);
    if (fabs(s->gtd_new) <= -WOLFE_C2 * s->gtd) {
        s->bracket_size = 1;
        s->bracket[0] = s->t;
        s->bracket_f[0] = s->f_new;
        copy(c, PARAMD__LBFGS_BRACKET_G0, PUSHED);
        s->bracket_gtd[0] = s->gtd_new;
        s->done = true;
        return start_zoom(c);
    }
    if (s->gtd_new >= 0)
        return bracket_previous_and_new(c);
    /* Extrapolate. */
    double bounds[2] = {s->t + 0.01 * (s->t - s->t_prev), s->t * 10};
    double previous = s->t;
    s->t = cubic_interpolate(s->t_prev, s->f_prev, s->gtd_prev, s->t, s->f_new, s->gtd_new,
                             bounds);
    s->t_prev = previous;
    s->f_prev = s->f_new;
    copy(c, PARAMD__LBFGS_G_PREV, PUSHED);
    s->gtd_prev = s->gtd_new;
    return evaluate_at(c, s->t, PARAMD__LBFGS_SEARCH_BRACKET);
}

/* The L-BFGS direction: -H g by the two-loop recursion over the history,
 * after adding the newest (s, y) pair when y.s > 1e-10. */
static void direction(context *c)
{
    paramd__lbfgs_state *s = c->state;
    size_t entries = s->history_size + 1;
    size_t spare = (s->history_head + s->history_count) % entries;
    difference(c, DIRECTION(spare), PARAMD__LBFGS_FLAT_GRAD, PARAMD__LBFGS_PREV_FLAT_GRAD);
    scaled(c, STEP(spare), s->t, PARAMD__LBFGS_D);
    double ys = f32(dot(c, DIRECTION(spare), STEP(spare)));
    if (ys > 1e-10) {
        if (s->history_count == s->history_size)
            s->history_head = (s->history_head + 1) % entries; /* drop the oldest */
        else
            s->history_count++;
        s->ro[spare] = f32(1.0 / ys);
        s->H_diag = f32(ys / f32(dot(c, DIRECTION(spare), DIRECTION(spare))));
    }
    /* q = -g, into d; then r = H_diag q, corrected, is the direction. */
    scaled(c, PARAMD__LBFGS_D, -1.0, PARAMD__LBFGS_FLAT_GRAD);
    for (size_t i = s->history_count; i-- > 0;) {
        size_t entry = (s->history_head + i) % entries;
        s->al[entry] = f32(f32(dot(c, STEP(entry), PARAMD__LBFGS_D)) * s->ro[entry]);
        axpy(c, -s->al[entry], DIRECTION(entry), PARAMD__LBFGS_D);
    }
    scaled(c, PARAMD__LBFGS_D, s->H_diag, PARAMD__LBFGS_D);
    for (size_t i = 0; i < s->history_count; i++) {
        size_t entry = (s->history_head + i) % entries;
        double be_i = f32(f32(dot(c, DIRECTION(entry), PARAMD__LBFGS_D)) * s->ro[entry]);
        axpy(c, f32(s->al[entry] - be_i), STEP(entry), PARAMD__LBFGS_D);
    }
}

/* One iteration of torch's while loop, up to its next closure call. */
static int iterate(context *c)
{
    paramd__lbfgs_state *s = c->state;
    s->step_iterations++;
    s->n_iter++;
    if (s->n_iter == 1) {
        scaled(c, PARAMD__LBFGS_D, -1.0, PARAMD__LBFGS_FLAT_GRAD);
        s->history_count = 0;
        s->history_head = 0;
        s->H_diag = 1;
    } else {
        direction(c);
    }
    copy(c, PARAMD__LBFGS_PREV_FLAT_GRAD, PARAMD__LBFGS_FLAT_GRAD);
    s->prev_loss = s->loss;
    double lr = hyperparameter(c, SLOT_LR);
    if (s->n_iter == 1) {
        double first = f32(1.0 / f32(abs_sum(c, PARAMD__LBFGS_FLAT_GRAD)));
        s->t = first < 1.0 ? f32(first * lr) : lr; /* min(1., tensor) * lr */
    } else {
        s->t = lr;
    }
    s->gtd = f32(dot(c, PARAMD__LBFGS_FLAT_GRAD, PARAMD__LBFGS_D));
    if (s->gtd > -hyperparameter(c, SLOT_TOLERANCE_CHANGE))
        return finish_step(c); /* the directional derivative is below tolerance */
    s->ls_func_evals = 0;
    if (line_search(c)) {
        /* _strong_wolfe(obj_func, x, t, d, loss, flat_grad, gtd). */
        s->d_norm = max_abs(c, PARAMD__LBFGS_D);
        s->f = s->loss;
        s->ls_iter = 0;
        s->t_prev = 0;
        s->f_prev = s->loss;
        copy(c, PARAMD__LBFGS_G_PREV, PARAMD__LBFGS_FLAT_GRAD);
        s->gtd_prev = s->gtd;
        s->done = false;
        return evaluate_at(c, s->t, PARAMD__LBFGS_SEARCH_FIRST);
    }
    move_weights(c, s->t);
    if (s->step_iterations != max_iter(c)) {
        /* Re-evaluate, except in the last iteration (torch does not). */
        s->eval_at_offset = false;
        s->phase = PARAMD__LBFGS_FIXED_STEP;
        return NEED_EVALUATION;
    }
    return after_iteration(c);
}

/* The first closure call of a step, at the weights. */
static int begin_step(context *c, double loss)
{
    paramd__lbfgs_state *s = c->state;
    s->loss = loss;
    s->current_evals = 1;
    s->func_evals++;
    copy(c, PARAMD__LBFGS_FLAT_GRAD, PUSHED);
    s->opt_cond = max_abs(c, PARAMD__LBFGS_FLAT_GRAD) <=
                  (float)hyperparameter(c, SLOT_TOLERANCE_GRAD);
    if (s->opt_cond)
        return finish_step(c); /* optimal already: nothing moves */
    s->step_iterations = 0;
    return iterate(c);
}

/* Re-enters the algorithm with the loss and gradient of the point handed out. */
static int resume(context *c, double loss)
{
    paramd__lbfgs_state *s = c->state;
    switch (s->phase) {
    case PARAMD__LBFGS_STEP_START:
        return begin_step(c, loss);
    case PARAMD__LBFGS_FIXED_STEP:
        s->loss = loss;
        copy(c, PARAMD__LBFGS_FLAT_GRAD, PUSHED);
        s->opt_cond = max_abs(c, PARAMD__LBFGS_FLAT_GRAD) <=
                      (float)hyperparameter(c, SLOT_TOLERANCE_GRAD);
        s->ls_func_evals = 1;
        return after_iteration(c);
    case PARAMD__LBFGS_SEARCH_FIRST:
        s->f_new = loss;
        s->ls_func_evals = 1;
        s->gtd_new = f32(dot(c, PUSHED, PARAMD__LBFGS_D));
        return bracket(c);
    case PARAMD__LBFGS_SEARCH_BRACKET:
        s->f_new = loss;
        s->ls_func_evals++;
        s->gtd_new = f32(dot(c, PUSHED, PARAMD__LBFGS_D));
        if (++s->ls_iter < WOLFE_MAX_LS)
            return bracket(c);
        /* Out of trials while bracketing: [0, t]. */
        s->bracket_size = 2;
        s->bracket[0] = 0;
        s->bracket[1] = s->t;
        s->bracket_f[0] = s->f;
        s->bracket_f[1] = s->f_new;
        copy(c, PARAMD__LBFGS_BRACKET_G0, PARAMD__LBFGS_FLAT_GRAD);
        copy(c, PARAMD__LBFGS_BRACKET_G1, PUSHED);
        return start_zoom(c);
    case PARAMD__LBFGS_SEARCH_ZOOM: {
        s->f_new = loss;
        s->ls_func_evals++;
        s->gtd_new = f32(dot(c, PUSHED, PARAMD__LBFGS_D));
        s->ls_iter++;
        int low = s->low_pos, high = s->high_pos;
        if (s->f_new > s->f + WOLFE_C1 * s->t * s->gtd || s->f_new >= s->bracket_f[low]) {
            /* Armijo fails, or no lower than the low point: a new high. */
            s->bracket[high] = s->t;
            s->bracket_f[high] = s->f_new;
            copy(c, bracket_slot(high), PUSHED);
            s->bracket_gtd[high] = s->gtd_new;
            order_bracket(s);
        } else {
            if (fabs(s->gtd_new) <= -WOLFE_C2 * s->gtd) {
                s->done = true; /* the Wolfe conditions hold */
            } else if (s->gtd_new * (s->bracket[high] - s->bracket[low]) >= 0) {
                /* The old high becomes the new low. */
                s->bracket[high] = s->bracket[low];
                s->bracket_f[high] = s->bracket_f[low];
                copy(c, bracket_slot(high), bracket_slot(low));
                s->bracket_gtd[high] = s->bracket_gtd[low];
            }
            s->bracket[low] = s->t;
            s->bracket_f[low] = s->f_new;
            copy(c, bracket_slot(low), PUSHED);
            s->bracket_gtd[low] = s->gtd_new;
        }
        return zoom(c);
    }
    }
    return finish_step(c);
}

/* ---------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------- */

int paramd__lbfgs_push(paramd__model *model, paramd__tensor_io *items, size_t item_count,
                       double loss, paramd__push_outcome *outcome, paramd__error *error)
{
    paramd__lbfgs_state *state = model->lbfgs;
    if (isnan(loss))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss: required: model \"%s\" trains with LBFGS, and every push "
                                 "brings the loss and gradient at the weights last handed out",
                                 model->name);
    if (item_count != model->tensor_count) {
        for (size_t k = 0; k < model->tensor_count; k++) {
            bool found = false;
            for (size_t i = 0; i < item_count && !found; i++)
                found = items[i].tensor == model->tensors[k];
            if (!found)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "grads.%s: required: an LBFGS push carries the "
                                         "gradient of every tensor of the model (one flat "
                                         "vector, as torch's LBFGS)",
                                         model->tensors[k]->name);
        }
    }
    for (size_t i = 0; i < item_count; i++) {
        size_t bad = paramd__find_non_finite(items[i].grad, items[i].tensor->count);
        if (bad < items[i].tensor->count)
            return paramd__error_set(error, PARAMD_E_NON_FINITE,
                                     "grads.%s[%zu]: %g: LBFGS needs finite gradients",
                                     items[i].tensor->name, bad, (double)items[i].grad[bad]);
    }
    const float **grad = calloc(model->tensor_count, sizeof *grad);
    if (grad == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    for (size_t i = 0; i < item_count; i++)
        grad[items[i].tensor->position] = items[i].grad;
    pthread_rwlock_rdlock(&model->config_lock);
    pthread_mutex_lock(&state->lock);
    context c = {model, state, &model->optimizer, grad};
    int answer = resume(&c, loss);
    if (answer == STEP_DONE)
        atomic_fetch_add(&model->step, 1);
    /* The reply: the next point to evaluate, or the step's result. */
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        pthread_mutex_lock(&tensor->lock);
        if (answer == STEP_DONE)
            tensor->step++; /* optimization steps done, as the model's */
        if (items[i].weights)
            memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
        if (items[i].weights == NULL)
            continue;
        if (state->eval_at_offset)
            cblas_saxpy((int)tensor->count, (float)state->eval_t, tensor->state[PARAMD__LBFGS_D],
                        1, items[i].weights, 1);
    }
    outcome->step = atomic_load(&model->step);
    outcome->lr = hyperparameter(&c, SLOT_LR);
    outcome->grad_norm = NAN;
    outcome->has_lbfgs = true;
    outcome->lbfgs_step_done = answer == STEP_DONE;
    outcome->lbfgs_iterations = state->n_iter;
    outcome->lbfgs_evaluations = state->func_evals;
    pthread_mutex_unlock(&state->lock);
    pthread_rwlock_unlock(&model->config_lock);
    free(grad);
    return PARAMD_OK;
}
