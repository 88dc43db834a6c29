/* core.c - see core.h. */
#include "core.h"

#include "clip.h"
#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void paramd__server_init(paramd__server *server)
{
    memset(server, 0, sizeof *server);
    paramd__registry_init(&server->registry);
    server->started = time(NULL);
    atomic_init(&server->pushes, 0);
    atomic_init(&server->pulls, 0);
}

void paramd__server_destroy(paramd__server *server)
{
    paramd__registry_destroy(&server->registry);
}

int paramd__core_create_model(paramd__server *server, const paramd__model_spec *spec,
                              paramd__model **model_out, paramd__error *error)
{
    int result = paramd__optimizer_config_validate(&spec->optimizer, "optimizer", error);
    if (result == PARAMD_OK)
        result = paramd__clip_config_validate(&spec->clip, error);
    for (size_t g = 0; g < spec->param_group_count && result == PARAMD_OK; g++) {
        char field[48];
        snprintf(field, sizeof field, "param_groups[%zu]", g);
        result = paramd__optimizer_config_validate(&spec->param_groups[g].optimizer, field, error);
    }
    if (result != PARAMD_OK)
        return result;
    /* Refuse a duplicate before allocating what may be gigabytes. */
    paramd__model *existing = paramd__registry_acquire(&server->registry, spec->name);
    if (existing) {
        paramd__model_release(existing);
        return paramd__error_set(error, PARAMD_E_MODEL_EXISTS, "model \"%s\" already exists",
                                 spec->name);
    }
    paramd__model *model = paramd__model_create(spec, error);
    if (model == NULL)
        return error->code;
    result = paramd__registry_add(&server->registry, model, error);
    if (result != PARAMD_OK) {
        paramd__model_release(model);
        return result;
    }
    paramd__log_info("model \"%s\" created: optimizer %s, %zu tensors, %zu parameters, %.1f MiB",
                     model->name, model->optimizer.type->name, model->tensor_count,
                     model->parameter_count, (double)model->memory_bytes / (1 << 20));
    if (model_out)
        *model_out = model;
    else
        paramd__model_release(model);
    return PARAMD_OK;
}

int paramd__core_find_model(paramd__server *server, const char *name,
                            paramd__model **model_out, paramd__error *error)
{
    *model_out = paramd__registry_acquire(&server->registry, name);
    if (*model_out == NULL)
        return paramd__error_set(error, PARAMD_E_MODEL_NOT_FOUND, "model \"%.200s\" not found",
                                 name);
    return PARAMD_OK;
}

int paramd__core_delete_model(paramd__server *server, const char *name, paramd__error *error)
{
    int result = paramd__registry_remove(&server->registry, name, error);
    if (result == PARAMD_OK)
        paramd__log_info("model \"%s\" deleted", name);
    return result;
}

/* Checks a push completely before anything changes. */
static int validate_push(const paramd__model *model, const paramd__tensor_io *items,
                         size_t item_count, paramd__error *error)
{
    if (item_count == 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grads: a push needs at least one tensor");
    unsigned char *seen = calloc(model->tensor_count, 1);
    if (seen == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    int result = PARAMD_OK;
    for (size_t i = 0; i < item_count && result == PARAMD_OK; i++) {
        const paramd__tensor *tensor = items[i].tensor;
        if (seen[tensor->position]++) {
            result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                       "grads.%s: tensor appears more than once in one push",
                                       tensor->name);
        } else if (items[i].grad_count != tensor->count) {
            result = paramd__error_set(error, PARAMD_E_SHAPE_MISMATCH,
                                       "grads.%s: tensor has %zu elements, got %zu values",
                                       tensor->name, tensor->count, items[i].grad_count);
        } else {
            size_t bad = paramd__find_non_finite(items[i].grad, items[i].grad_count);
            if (bad < items[i].grad_count)
                result = paramd__error_set(error, PARAMD_E_NON_FINITE,
                                           "grads.%s[%zu]: gradient is %g; nothing was applied",
                                           tensor->name, bad, (double)items[i].grad[bad]);
        }
    }
    free(seen);
    return result;
}

/* Sets the lr (and, where the schedule cycles it, the momentum or beta1) of
 * a configuration copy to the schedule's values for the next step. */
static void apply_schedule(paramd__optimizer_config *config, const paramd__schedule *schedule)
{
    const paramd__hyperparameter_spec *lr = paramd__optimizer_find_hyperparameter(config->type, "lr");
    if (lr)
        config->values[lr->slot] = paramd__schedule_lr(schedule);
    if (!paramd__schedule_cycles_momentum(schedule))
        return;
    const paramd__hyperparameter_spec *momentum =
        paramd__optimizer_find_hyperparameter(config->type, "momentum");
    if (momentum == NULL)
        momentum = paramd__optimizer_find_hyperparameter(config->type, "betas");
    if (momentum)
        config->values[momentum->slot] = paramd__schedule_momentum(schedule);
}

/* Reads the scheduled configurations for this push into configs (1 + group
 * count entries) and advances every schedule, as torch calls
 * scheduler.step() after optimizer.step().  All or nothing: the schedules
 * advance in copies, committed only when each step succeeded.  A schedule
 * that cannot advance does not stop this push, which uses lrs it was given,
 * as torch's optimizer step before the raising scheduler.step() does; it
 * refuses every later push. */
static int advance_schedules(paramd__model *model, double loss, paramd__optimizer_config *configs,
                             paramd__error *error)
{
    size_t count = 1 + model->param_group_count;
    paramd__schedule *next = malloc(count * sizeof *next);
    if (next == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    pthread_mutex_lock(&model->schedule_lock);
    if (model->schedule_error.code != PARAMD_OK) {
        *error = model->schedule_error;
        pthread_mutex_unlock(&model->schedule_lock);
        free(next);
        return error->code;
    }
    int result = PARAMD_OK;
    paramd__error step_error = {0};
    bool advance = !isnan(loss) || !paramd__schedule_needs_loss(&model->schedule_config);
    for (size_t k = 0; k < count; k++) {
        configs[k] = k == 0 ? model->optimizer : model->param_groups[k - 1];
        apply_schedule(&configs[k], &model->schedules[k]);
        next[k] = model->schedules[k];
        if (advance && result == PARAMD_OK)
            result = paramd__schedule_step(&next[k], loss, &step_error);
    }
    if (result == PARAMD_OK) {
        memcpy(model->schedules, next, count * sizeof *next);
    } else {
        model->schedule_error = step_error;
        paramd__log_warn("model \"%s\": %s; later pushes are refused", model->name,
                         step_error.message);
    }
    pthread_mutex_unlock(&model->schedule_lock);
    free(next);
    return PARAMD_OK;
}

/* The clipping a push applies to every tensor: the norm coefficient when
 * clipping by total norm, and the reported norm.  Reads only gradients. */
static int prepare_clip(const paramd__model *model, const paramd__tensor_io *items,
                        size_t item_count, double client_grad_norm, float *coefficient,
                        double *reported_norm, paramd__error *error)
{
    const paramd__clip_config *clip = &model->clip;
    *coefficient = 1.0f;
    *reported_norm = NAN;
    if (clip->mode != PARAMD__CLIP_NORM)
        return PARAMD_OK;
    bool use_client = !isnan(client_grad_norm) && !clip->per_tensor;
    if (use_client) {
        *reported_norm = client_grad_norm;
    } else {
        double *norms = malloc(item_count * sizeof *norms);
        if (norms == NULL)
            return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
        for (size_t i = 0; i < item_count; i++)
            norms[i] = paramd__clip_norm(items[i].grad, items[i].grad_count, clip->norm_type);
        *reported_norm = paramd__clip_total_norm(norms, item_count, clip->norm_type);
        free(norms);
    }
    if (!clip->per_tensor)
        *coefficient = paramd__clip_coefficient(clip->max_norm, *reported_norm);
    return PARAMD_OK;
}

/* Writes tensor's clipped gradient to scratch (tensor->count floats) and
 * returns it, or returns grad unchanged when the model does not clip.  Called
 * under the tensor's lock: AGC reads the weights. */
static const float *clip_tensor(const paramd__clip_config *clip, const paramd__tensor *tensor,
                                const float *grad, float coefficient, float *scratch)
{
    switch (clip->mode) {
    case PARAMD__CLIP_NONE:
        return grad;
    case PARAMD__CLIP_VALUE:
        paramd__clip_value(grad, scratch, tensor->count, (float)clip->value);
        return scratch;
    case PARAMD__CLIP_NORM:
        if (clip->per_tensor) {
            double norm = paramd__clip_norm(grad, tensor->count, clip->norm_type);
            coefficient = paramd__clip_coefficient(clip->max_norm, norm);
        }
        paramd__clip_scale(grad, scratch, tensor->count, coefficient);
        return scratch;
    case PARAMD__CLIP_AGC:
        paramd__clip_agc(grad, scratch, tensor->values, tensor->count, tensor->dimension_count,
                         tensor->shape, clip->agc, clip->eps);
        return scratch;
    }
    return grad;
}

int paramd__core_push(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, double loss, double grad_norm,
                      paramd__push_outcome *outcome, paramd__error *error)
{
    int result = validate_push(model, items, item_count, error);
    if (result != PARAMD_OK)
        return result;
    if (!isnan(loss) && !isfinite(loss))
        return paramd__error_set(error, PARAMD_E_NON_FINITE, "loss: must be a finite number");
    if (!isnan(grad_norm) && !(isfinite(grad_norm) && grad_norm >= 0))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_norm: must be a finite number >= 0");
    float coefficient;
    double reported_norm;
    result = prepare_clip(model, items, item_count, grad_norm, &coefficient, &reported_norm, error);
    if (result != PARAMD_OK)
        return result;
    /* Clipped gradients go to one scratch buffer as large as the largest
     * pushed tensor rather than into the callers' arrays: the gradients stay
     * const for every caller (tests reuse static arrays, and a front end may
     * hand over memory it does not own), at the cost of one tensor's worth of
     * memory per push, and only for models that clip. */
    float *scratch = NULL;
    size_t largest = 0;
    if (model->clip.mode != PARAMD__CLIP_NONE) {
        for (size_t i = 0; i < item_count; i++)
            largest = items[i].tensor->count > largest ? items[i].tensor->count : largest;
        scratch = paramd__float_array_alloc(largest);
        if (scratch == NULL)
            return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    }
    /* Tensor-wise optimizers' working memory (Muon's matrices, Adafactor's
     * row sums), as large as the neediest tensor, allocated before anything
     * changes so that running out of memory refuses the push cleanly. */
    size_t scratch_bytes = 0;
    for (size_t i = 0; i < item_count; i++) {
        const paramd__tensor *tensor = items[i].tensor;
        size_t bytes = paramd__optimizer_scratch_bytes(tensor->optimizer, tensor->dimension_count,
                                                       tensor->shape, tensor->count);
        scratch_bytes = bytes > scratch_bytes ? bytes : scratch_bytes;
    }
    size_t step_scratch_floats = (scratch_bytes + sizeof(float) - 1) / sizeof(float);
    float *step_scratch = NULL;
    paramd__optimizer_config *scheduled = NULL;
    if (step_scratch_floats > 0) {
        step_scratch = paramd__float_array_alloc(step_scratch_floats);
        if (step_scratch == NULL) {
            result = paramd__error_set(error, PARAMD_E_NO_MEMORY,
                                       "push: out of memory for the optimizer's %zu bytes of "
                                       "working memory", scratch_bytes);
            goto done;
        }
    }
    if (model->has_schedule) {
        scheduled = malloc((1 + model->param_group_count) * sizeof *scheduled);
        if (scheduled == NULL) {
            result = paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
            goto done;
        }
        result = advance_schedules(model, loss, scheduled, error);
        if (result != PARAMD_OK)
            goto done;
    }
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        const paramd__optimizer_config *config =
            scheduled ? &scheduled[tensor->param_group + 1] : tensor->optimizer;
        pthread_mutex_lock(&tensor->lock);
        paramd__step_arrays arrays = paramd__tensor_step_arrays(
            tensor, clip_tensor(&model->clip, tensor, items[i].grad, coefficient, scratch));
        arrays.scratch = step_scratch;
        tensor->step++;
        paramd__optimizer_step(config, tensor->step, &arrays, tensor->count);
        if (items[i].weights)
            memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
    outcome->step = atomic_fetch_add(&model->step, 1) + 1;
    outcome->lr = paramd__optimizer_config_get(scheduled ? &scheduled[0] : &model->optimizer, "lr");
    outcome->grad_norm = reported_norm;
    atomic_fetch_add(&server->pushes, 1);
done:
    free(scheduled);
    if (scratch)
        paramd__float_array_free(scratch, largest);
    if (step_scratch)
        paramd__float_array_free(step_scratch, step_scratch_floats);
    return result;
}

int paramd__core_pull(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, uint64_t *step_out, paramd__error *error)
{
    (void)error;
    *step_out = atomic_load(&model->step);
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        pthread_mutex_lock(&tensor->lock);
        memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
    atomic_fetch_add(&server->pulls, 1);
    return PARAMD_OK;
}

/* Index of the state slot named `slot` that `tensor` holds, or -1. */
static int held_state_slot(const paramd__tensor *tensor, const char *slot)
{
    const paramd__optimizer_type *type = tensor->optimizer->type;
    for (int i = 0; i < type->state_slot_count; i++)
        if (strcmp(type->state_slot_names[i], slot) == 0)
            return tensor->state[i] ? i : -1;
    return -1;
}

int paramd__core_pull_state(paramd__server *server, paramd__model *model, const char *slot,
                            paramd__tensor_io *items, size_t item_count, uint64_t *step_out,
                            paramd__error *error)
{
    for (size_t i = 0; i < item_count; i++) {
        const paramd__tensor *tensor = items[i].tensor;
        if (held_state_slot(tensor, slot) < 0) {
            const paramd__optimizer_type *type = tensor->optimizer->type;
            char held[256] = "";
            for (int s = 0; s < type->state_slot_count; s++)
                if (tensor->state[s]) {
                    strncat(held, held[0] ? ", " : "", sizeof held - strlen(held) - 1);
                    strncat(held, type->state_slot_names[s], sizeof held - strlen(held) - 1);
                }
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "slot: tensor \"%s\" (%s) holds no state \"%.100s\"; it "
                                     "holds: %s",
                                     tensor->name, type->name, slot, held[0] ? held : "none");
        }
    }
    *step_out = atomic_load(&model->step);
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        pthread_mutex_lock(&tensor->lock);
        int held = held_state_slot(tensor, slot);
        memcpy(items[i].weights, tensor->state[held], tensor->state_length[held] * sizeof(float));
        items[i].weights_count = tensor->state_length[held];
        pthread_mutex_unlock(&tensor->lock);
    }
    atomic_fetch_add(&server->pulls, 1);
    return PARAMD_OK;
}
