/*
 * sam.c - see sam.h.  The float32 arithmetic follows the reference
 * implementation's torch operations one by one, so that the perturbed
 * weights are torch's: per-tensor norms, the norm of those norms, scale =
 * (1 / (norm + 1e-12)) * rho (Python's rho / tensor is a reciprocal and a
 * product), e = (w * w) * g * scale or g * scale, w + e.
 */
#include "sam.h"

#include "core.h"
#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int paramd__sam_config_validate(const paramd__sam_config *config, paramd__error *error)
{
    if (config->enabled && !(config->rho > 0 && isfinite(config->rho)))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.rho: SAM's neighbourhood size, a number > 0, got "
                                 "%.17g",
                                 config->rho);
    return PARAMD_OK;
}

paramd__sam_state *paramd__sam_create(void)
{
    paramd__sam_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    pthread_mutex_init(&state->lock, NULL);
    paramd__dictionary_init(&state->pending);
    return state;
}

static void free_name(void *value, void *context)
{
    (void)context;
    free(value);
}

void paramd__sam_destroy(paramd__sam_state *state)
{
    if (state == NULL)
        return;
    paramd__dictionary_for_each(&state->pending, free_name, NULL);
    paramd__dictionary_free(&state->pending);
    pthread_mutex_destroy(&state->lock);
    free(state);
}

int paramd__sam_moment_slot(const paramd__model *model, size_t tensor)
{
    const paramd__tensor *t = model->tensors[tensor];
    const paramd__optimizer_type *type = t->optimizer->type;
    for (int s = 0; s < type->state_slot_count; s++)
        if (t->state[s] && (strcmp(type->state_slot_names[s], "momentum_buffer") == 0 ||
                            strcmp(type->state_slot_names[s], "exp_avg") == 0))
            return s;
    return -1;
}

/* ---------------------------------------------------------------------------
 * Two steps
 * ------------------------------------------------------------------------- */

/* ||s g|| of one tensor, s = |w| or 1: a float32 norm, as torch's
 * .norm(p=2) of a float tensor (its sum is vectorised, so for tensors longer
 * than a vector the order, and the last bit, can differ). */
static float tensor_norm(const float *weights, const float *grad, size_t count, bool adaptive)
{
    float squares = 0;
    for (size_t i = 0; i < count; i++) {
        float value = adaptive ? fabsf(weights[i]) * grad[i] : grad[i];
        squares += value * value;
    }
    return sqrtf(squares);
}

int paramd__sam_ascent(paramd__model *model, paramd__tensor_io *items, size_t item_count,
                       const paramd__push_options *options, paramd__push_outcome *outcome,
                       bool *handled, paramd__error *error)
{
    paramd__sam_state *state = model->sam_state;
    const paramd__sam_config *config = &model->sam;
    const char *worker = options->worker ? options->worker : "";
    *handled = false;
    pthread_mutex_lock(&state->lock);
    char *pending = paramd__dictionary_remove(&state->pending, worker);
    pthread_mutex_unlock(&state->lock);
    if (pending) {
        /* The descent push: the caller runs the ordinary step (and puts the
         * mark back if it is refused). */
        free(pending);
        return PARAMD_OK;
    }
    if (model->spans_shards && isnan(options->grad_norm))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_norm: required: model \"%s\" is spread over several "
                                 "shards, so SAM's perturbation needs the norm of the whole "
                                 "gradient (%s), which the client computes",
                                 model->name, config->adaptive ? "||w * g|| for ASAM" : "||g||");
    for (size_t i = 0; i < item_count; i++) {
        size_t bad = paramd__find_non_finite(items[i].grad, items[i].tensor->count);
        if (bad < items[i].tensor->count)
            return paramd__error_set(error, PARAMD_E_NON_FINITE,
                                     "grads.%s[%zu]: %g: SAM's ascent push needs finite "
                                     "gradients",
                                     items[i].tensor->name, bad, (double)items[i].grad[bad]);
    }
    paramd__sam_set_pending(model, worker);
    /* The norm: the client's, or the norm of the tensors' norms. */
    float norm;
    if (!isnan(options->grad_norm)) {
        norm = (float)options->grad_norm;
    } else {
        float squares = 0;
        for (size_t i = 0; i < item_count; i++) {
            paramd__tensor *tensor = items[i].tensor;
            pthread_mutex_lock(&tensor->lock);
            float n = tensor_norm(tensor->values, items[i].grad, tensor->count, config->adaptive);
            pthread_mutex_unlock(&tensor->lock);
            squares += n * n;
        }
        norm = sqrtf(squares);
    }
    float scale = (1.0f / (norm + 1e-12f)) * (float)config->rho;
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        if (items[i].weights == NULL)
            continue;
        pthread_mutex_lock(&tensor->lock);
        const float *w = tensor->values, *g = items[i].grad;
        for (size_t k = 0; k < tensor->count; k++) {
            float e = config->adaptive ? (w[k] * w[k]) * g[k] * scale : g[k] * scale;
            items[i].weights[k] = w[k] + e;
        }
        pthread_mutex_unlock(&tensor->lock);
    }
    outcome->step = atomic_load(&model->step);
    outcome->lr = paramd__optimizer_config_get(&model->optimizer, "lr");
    outcome->grad_norm = norm;
    outcome->has_sam = true;
    outcome->sam_ascent = true;
    *handled = true;
    return PARAMD_OK;
}

void paramd__sam_set_pending(paramd__model *model, const char *worker)
{
    paramd__sam_state *state = model->sam_state;
    char *name = strdup(worker ? worker : "");
    pthread_mutex_lock(&state->lock);
    if (name == NULL || paramd__dictionary_insert(&state->pending, name, name) != 0)
        free(name);
    pthread_mutex_unlock(&state->lock);
}

/* ---------------------------------------------------------------------------
 * Momentum
 * ------------------------------------------------------------------------- */

void paramd__sam_perturb_reply(paramd__model *model, paramd__tensor_io *items, size_t item_count)
{
    double squares = 0;
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        int slot = paramd__sam_moment_slot(model, tensor->position);
        if (slot < 0)
            continue;
        pthread_mutex_lock(&tensor->lock);
        for (size_t k = 0; k < tensor->count; k++)
            squares += (double)tensor->state[slot][k] * tensor->state[slot][k];
        pthread_mutex_unlock(&tensor->lock);
    }
    if (!(squares > 0))
        return; /* no moment yet: the weights themselves */
    float scale = (float)(model->sam.rho / sqrt(squares));
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        int slot = paramd__sam_moment_slot(model, tensor->position);
        if (slot < 0 || items[i].weights == NULL)
            continue;
        pthread_mutex_lock(&tensor->lock);
        for (size_t k = 0; k < tensor->count; k++)
            items[i].weights[k] = items[i].weights[k] + scale * tensor->state[slot][k];
        pthread_mutex_unlock(&tensor->lock);
    }
}
