/*
 * lbfgs.h - L-BFGS held by the server, driven by its workers through
 * reverse communication (issue 7, item 1).
 *
 * torch.optim.LBFGS.step(closure) calls the closure - loss and gradient at
 * the current weights - again and again: once to start, then once per
 * iteration (no line search) or once per trial point (strong Wolfe line
 * search).  Here the worker is the closure: every push to an LBFGS model
 * carries the loss and the gradient of every tensor at the weights the
 * server last handed out, and the reply hands out the weights to evaluate
 * next.  The server keeps everything torch keeps (the search direction, the
 * (s, y) history, the line-search bracket) and runs torch's algorithm,
 * suspended at each closure call, so for a deterministic function the
 * sequence of points it asks for is the sequence of points torch's closure
 * sees.  When torch's step() would return, the reply says the step is done:
 * its weights are the step's result, and the next push (their loss and
 * gradient) starts the next step, as the next step()'s first closure call
 * would.
 *
 * The model's tensors form one flat vector in model order, as torch
 * flattens its parameters.  Vectors live in each tensor's state slots (so
 * they are sized, allocated and checkpointed like any optimizer state); the
 * scalars live here.  Vector arithmetic is float32 through OpenBLAS (saxpy,
 * dsdot: dot products accumulate in double); scalars are doubles.  torch
 * keeps some scalars as float32 tensors, so the points agree to float32
 * precision, not bit for bit.
 *
 * Ownership: the model owns its state (paramd__model.lbfgs); `lock`
 * serialises its pushes.
 */
#ifndef PARAMD_SERVER_LBFGS_H
#define PARAMD_SERVER_LBFGS_H

#include "error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct paramd__model;
struct paramd__tensor_io;
struct paramd__push_outcome;

/* The state slots of an LBFGS tensor (its part of each flat vector). */
enum {
    PARAMD__LBFGS_D = 0,         /* the search direction */
    PARAMD__LBFGS_PREV_FLAT_GRAD,
    PARAMD__LBFGS_FLAT_GRAD,     /* the gradient at the current weights */
    PARAMD__LBFGS_G_PREV,        /* line search: the previous trial's gradient */
    PARAMD__LBFGS_BRACKET_G0,    /* line search: the bracket's gradients */
    PARAMD__LBFGS_BRACKET_G1,
    PARAMD__LBFGS_OLD_DIRS,      /* history_size + 1 vectors: y of each (s, y) pair */
    PARAMD__LBFGS_OLD_STPS,      /* history_size + 1 vectors: s */
    PARAMD__LBFGS_SLOT_COUNT
};

/* Where the algorithm waits: for which closure call the next push is. */
typedef enum paramd__lbfgs_phase {
    PARAMD__LBFGS_STEP_START = 0, /* the first call of a step: at the weights */
    PARAMD__LBFGS_FIXED_STEP,     /* no line search: after a fixed step */
    PARAMD__LBFGS_SEARCH_FIRST,   /* strong Wolfe: the first trial point */
    PARAMD__LBFGS_SEARCH_BRACKET, /* strong Wolfe: bracketing */
    PARAMD__LBFGS_SEARCH_ZOOM,    /* strong Wolfe: zooming in */
} paramd__lbfgs_phase;

typedef struct paramd__lbfgs_state {
    pthread_mutex_t lock;
    paramd__lbfgs_phase phase;
    size_t history_size;
    /* torch's state: func_evals and n_iter over all steps, the history ring
     * (history_count pairs from physical entry history_head, of
     * history_size + 1 entries: one is the spare a new pair is built in),
     * ro = 1 / (y.s) per entry, and the scalars carried between steps. */
    uint64_t func_evals, n_iter;
    size_t history_count, history_head;
    double *ro;  /* history_size + 1, by physical entry */
    double *al;  /* history_size + 1, by physical entry */
    double t, H_diag, loss, prev_loss;
    /* The step under way. */
    uint64_t step_iterations, current_evals;
    bool opt_cond;
    double gtd;
    /* The line search under way (torch's _strong_wolfe). */
    double f, d_norm, t_prev, f_prev, gtd_prev, f_new, gtd_new;
    int ls_iter, ls_func_evals;
    bool done, insuf_progress;
    double bracket[2], bracket_f[2], bracket_gtd[2];
    int bracket_size, low_pos, high_pos;
    /* The point handed out: the weights plus eval_t times the direction
     * (line search), or the weights themselves. */
    bool eval_at_offset;
    double eval_t;
    uint64_t steps_done;
} paramd__lbfgs_state;

/* Allocates the scalar state of an LBFGS model (history_size from its
 * configuration).  NULL when memory ran out. */
paramd__lbfgs_state *paramd__lbfgs_create(size_t history_size);
void paramd__lbfgs_destroy(paramd__lbfgs_state *state);

/* The length of an LBFGS tensor's state slot. */
size_t paramd__lbfgs_slot_length(int slot, size_t history_size, bool line_search, size_t count);

/* One closure evaluation: items hold every tensor of the model once (any
 * order), with its gradient at the weights last handed out and a weights
 * buffer for the next point; `loss` is the loss there.  Validated entirely
 * before anything changes.  Fills the outcome's lbfgs fields. */
int paramd__lbfgs_push(struct paramd__model *model, struct paramd__tensor_io *items,
                       size_t item_count, double loss, struct paramd__push_outcome *outcome,
                       paramd__error *error);

#endif
