/* core.c - see core.h. */
#include "core.h"

#include "log.h"

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

int paramd__core_push(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, uint64_t *step_out, paramd__error *error)
{
    int result = validate_push(model, items, item_count, error);
    if (result != PARAMD_OK)
        return result;
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        paramd__step_arrays arrays = {.param = tensor->values, .grad = items[i].grad};
        memcpy(arrays.state, tensor->state, sizeof arrays.state);
        pthread_mutex_lock(&tensor->lock);
        tensor->step++;
        paramd__optimizer_step(tensor->optimizer, tensor->step, &arrays, tensor->count);
        if (items[i].weights)
            memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
    *step_out = atomic_fetch_add(&model->step, 1) + 1;
    atomic_fetch_add(&server->pushes, 1);
    return PARAMD_OK;
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
        memcpy(items[i].weights, tensor->state[held_state_slot(tensor, slot)],
               tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
    atomic_fetch_add(&server->pulls, 1);
    return PARAMD_OK;
}
