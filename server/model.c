/* model.c - see model.h. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: a writer-preferring config_lock */
#include "model.h"

#include "lbfgs.h"

#include "log.h"
#include "shard_map.h"
#include "stats.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------- */

static bool name_valid(const char *name, size_t maximum_length, const char *extra_characters)
{
    size_t length = strlen(name);
    if (length == 0 || length > maximum_length || name[0] == '.')
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && strchr(extra_characters, c) == NULL)
            return false;
    }
    return true;
}

bool paramd__model_name_valid(const char *name)
{
    return name_valid(name, 128, "._-");
}

bool paramd__tensor_name_valid(const char *name)
{
    return name_valid(name, PARAMD__MAX_NAME_LENGTH, "._:/-");
}

/* ---------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------- */

/* Fills group_of[i] with the group of tensor spec i (-1 for none), checking
 * that every named tensor exists and belongs to at most one group. */
static int resolve_param_groups(const paramd__model_spec *spec, int *group_of,
                                paramd__error *error)
{
    if (spec->param_group_count == 0)
        return PARAMD_OK;
    for (size_t i = 0; i < spec->tensor_count; i++)
        group_of[i] = -1;
    for (size_t g = 0; g < spec->param_group_count; g++) {
        const paramd__param_group_spec *group = &spec->param_groups[g];
        if (group->tensor_count == 0)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "param_groups[%zu].tensors: name at least one tensor", g);
        for (size_t n = 0; n < group->tensor_count; n++) {
            size_t i = 0;
            while (i < spec->tensor_count && strcmp(spec->tensors[i].name, group->tensor_names[n]))
                i++;
            if (i == spec->tensor_count)
                return paramd__error_set(error, PARAMD_E_TENSOR_NOT_FOUND,
                                         "param_groups[%zu].tensors[%zu]: the model has no "
                                         "tensor \"%.200s\"",
                                         g, n, group->tensor_names[n]);
            if (group_of[i] >= 0)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "param_groups[%zu].tensors[%zu]: \"%s\" is already in "
                                         "param_groups[%d]; a tensor belongs to one group",
                                         g, n, group->tensor_names[n], group_of[i]);
            group_of[i] = (int)g;
        }
    }
    return PARAMD_OK;
}

static void free_remote(void *value, void *context)
{
    (void)context;
    free(value);
}

static void model_free(paramd__model *model)
{
    for (size_t i = 0; model->consistency_state.sums && i < model->tensor_count; i++)
        paramd__float_array_free(model->consistency_state.sums[i], model->tensors[i]->count);
    free(model->consistency_state.sums);
    for (size_t i = 0; i < model->tensor_count; i++) {
        if (model->extras) {
            paramd__float_array_free(model->extras[i].accumulated, model->tensors[i]->count);
            paramd__float_array_free(model->extras[i].slow, model->tensors[i]->count);
            paramd__float_array_free(model->extras[i].ema, model->tensors[i]->count);
            paramd__float_array_free(model->extras[i].swa, model->tensors[i]->count);
        }
        paramd__tensor_destroy(model->tensors[i]);
    }
    free(model->extras);
    paramd__model_stats_destroy(model->stats);
    json_decref(model->created_tensors);
    free(model->tensors);
    free(model->schedules);
    pthread_mutex_destroy(&model->schedule_lock);
    pthread_mutex_destroy(&model->loss_scale_lock);
    pthread_rwlock_destroy(&model->config_lock);
    free(model->param_groups);
    paramd__dictionary_free(&model->tensor_index);
    paramd__dictionary_for_each(&model->remote, free_remote, NULL);
    free(model->consistency_state.workers);
    pthread_mutex_destroy(&model->consistency_state.lock);
    paramd__lbfgs_destroy(model->lbfgs);
    paramd__sam_destroy(model->sam_state);
    paramd__dictionary_free(&model->remote);
    free(model->name);
    free(model);
}

/* What a model spread over several shards cannot do, because each shard
 * sees only its part of every push: decisions that need all the gradients
 * of a step.  Clipping by the total norm works when the client sends the
 * global norm (checked per push, core.c). */
static int spanning_check(const paramd__model *model, bool split, paramd__error *error)
{
    if (!model->spans_shards)
        return PARAMD_OK;
    if (model->sam.momentum)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer.variant: SAM's \"momentum\" variant needs the norm "
                                 "of the whole model's moment, and this shard map spreads the "
                                 "model over several shards (use \"two_step\", whose norm the "
                                 "client sends)");
    if (model->lbfgs)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer: LBFGS needs the whole model on one shard (its "
                                 "direction and history are vectors over all the tensors); this "
                                 "shard map places its tensors on several");
    if (split && model->clip.mode == PARAMD__CLIP_AGC)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip.agc: not available for a model with tensors split "
                                 "across shards (a unit's rows may lie on two shards)");
    if (split && model->clip.mode == PARAMD__CLIP_NORM && model->clip.per_tensor)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip.per_tensor: not available for a model with tensors split "
                                 "across shards (no shard sees a whole tensor's norm)");
    if (model->has_loss_scale)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale: not available for a model spread over several "
                                 "shards (an overflow on one shard must skip the step on all of "
                                 "them); scale on the worker, as GradScaler does");
    if (model->consistency.mode == PARAMD__CONSISTENCY_SYNC &&
        model->clip.mode == PARAMD__CLIP_NORM && !model->clip.per_tensor)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip.max_norm: a sync model spread over several shards cannot "
                                 "clip the averaged gradient by its total norm: no shard sees "
                                 "all of it (clip on the workers, or per tensor)");
    if (model->nonfinite == PARAMD__NONFINITE_SKIP)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "nonfinite: \"skip\" is not available for a model spread over "
                                 "several shards (a skip on one shard must skip the step on all "
                                 "of them); use \"error\" or \"zero\"");
    return PARAMD_OK;
}

/* Whether a tensor whose optimizer is `config` may be split across shards:
 * only element-wise optimizers update a range without the rest. */
static bool splittable(const paramd__optimizer_config *config)
{
    return config->type->tensor_step == NULL &&
           !(config->type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL);
}

/* A whole-model optimizer (LBFGS) runs its own step over several pushes,
 * so nothing that shapes one push's gradients applies to it. */
static int whole_model_check(const paramd__model_spec *spec, paramd__error *error)
{
    const char *name = spec->optimizer.type->name;
    if (!(spec->optimizer.type->flags & PARAMD__OPTIMIZER_WHOLE_MODEL))
        return PARAMD_OK;
    static const char reason[] = "each of its steps runs over many pushes (closure evaluations)";
    if (spec->param_group_count > 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "param_groups: %s has one configuration for the whole model, as "
                                 "torch's (which refuses parameter groups)", name);
    if (spec->clip.mode != PARAMD__CLIP_NONE)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip: not available with %s: %s, whose gradients it must see "
                                 "as they are", name, reason);
    if (spec->has_schedule)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "schedule: not available with %s: %s; set its lr", name, reason);
    if (spec->has_loss_scale || spec->accumulate.steps != 0 || spec->grad_noise.enabled)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: not available with %s: %s",
                                 spec->has_loss_scale ? "loss_scale"
                                 : spec->accumulate.steps ? "accumulate" : "grad_noise",
                                 name, reason);
    if (spec->nonfinite != PARAMD__NONFINITE_ERROR)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "nonfinite: %s needs finite gradients, so only \"error\" "
                                 "applies", name);
    if (spec->consistency.mode != PARAMD__CONSISTENCY_ASYNC)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency: %s is driven by one worker's evaluations; only "
                                 "\"async\" applies", name);
    if (spec->lookahead.enabled || spec->sam.enabled || spec->averaging.ema ||
        spec->averaging.swa)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: not available with %s: %s",
                                 spec->lookahead.enabled ? "optimizer: Lookahead"
                                 : spec->sam.enabled     ? "optimizer: SAM"
                                                         : "averaging",
                                 name, reason);
    for (size_t i = 0; i < spec->tensor_count; i++)
        if (spec->tensors[i].constraint.kind != PARAMD__CONSTRAINT_NONE)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "tensors[%zu].constraint: not available with %s: %s", i,
                                     name, reason);
    return PARAMD_OK;
}

paramd__model *paramd__model_create(const paramd__model_spec *spec, paramd__error *error)
{
    int *group_of = NULL; /* tensor spec index -> parameter group, -1 for none */
    if (!paramd__model_name_valid(spec->name)) {
        paramd__error_set(error, PARAMD_E_BAD_NAME,
                          "model name \"%.200s\": use 1 to 128 characters from A-Z a-z 0-9 . _ -, "
                          "not starting with '.'",
                          spec->name);
        return NULL;
    }
    if (spec->tensor_count == 0) {
        paramd__error_set(error, PARAMD_E_BAD_REQUEST, "tensors: a model needs at least one tensor");
        return NULL;
    }
    if (whole_model_check(spec, error) != PARAMD_OK)
        return NULL;
    if (paramd__lookahead_config_validate(&spec->lookahead, error) != PARAMD_OK ||
        paramd__averaging_config_validate(&spec->averaging, error) != PARAMD_OK ||
        paramd__sam_config_validate(&spec->sam, error) != PARAMD_OK)
        return NULL;
    if (spec->sam.enabled && spec->consistency.mode != PARAMD__CONSISTENCY_ASYNC) {
        paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                          "consistency: SAM's two pushes per step are each worker's own; only "
                          "\"async\" applies");
        return NULL;
    }
    if (spec->sam.enabled && spec->accumulate.steps != 0) {
        paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                          "accumulate: not available with SAM (each ascent needs its own "
                          "gradient's direction)");
        return NULL;
    }
    for (size_t i = 0; i < spec->tensor_count; i++) {
        char field[64];
        snprintf(field, sizeof field, "tensors[%zu].constraint", i);
        if (paramd__constraint_validate(&spec->tensors[i].constraint,
                                        spec->tensors[i].dimension_count, field,
                                        error) != PARAMD_OK)
            return NULL;
    }
    paramd__model *model = calloc(1, sizeof *model);
    if (model == NULL)
        goto out_of_memory;
    paramd__dictionary_init(&model->tensor_index);
    paramd__dictionary_init(&model->remote);
    if (spec->shard_map) {
        model->sharded = true;
        model->shard_id = spec->shard_id;
        model->shard_map_version = spec->shard_map->version;
    }
    pthread_mutex_init(&model->schedule_lock, NULL);
    pthread_mutex_init(&model->loss_scale_lock, NULL);
    pthread_mutex_init(&model->consistency_state.lock, NULL);
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&model->config_lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    model->name = strdup(spec->name);
    model->tensors = calloc(spec->tensor_count, sizeof *model->tensors);
    model->extras = calloc(spec->tensor_count, sizeof *model->extras);
    model->stats = paramd__model_stats_create(spec->tensor_count); /* issue 8 */
    model->created_tensors = json_array();
    for (size_t i = 0; model->created_tensors && i < spec->tensor_count; i++) {
        json_t *shape = json_array();
        for (int d = 0; shape && d < spec->tensors[i].dimension_count; d++)
            json_array_append_new(shape, json_integer((json_int_t)spec->tensors[i].shape[d]));
        json_t *entry = json_pack("{s:s,s:o}", "name", spec->tensors[i].name, "shape", shape);
        const paramd__constraint *constraint = &spec->tensors[i].constraint;
        if (entry && constraint->kind == PARAMD__CONSTRAINT_MAX_NORM)
            json_object_set_new(entry, "constraint",
                                json_pack("{s:s,s:f}", "name", "max_norm", "max_norm",
                                          constraint->max_norm));
        else if (entry && constraint->kind != PARAMD__CONSTRAINT_NONE)
            json_object_set_new(entry, "constraint",
                                json_string(paramd__constraint_name(constraint->kind)));
        if (json_array_append_new(model->created_tensors, entry) != 0) {
            json_decref(model->created_tensors);
            model->created_tensors = NULL;
        }
    }
    if (model->name == NULL || model->tensors == NULL || model->extras == NULL ||
        model->stats == NULL || model->created_tensors == NULL)
        goto out_of_memory;
    model->optimizer = spec->optimizer;
    model->clip = spec->clip;
    model->nonfinite = spec->nonfinite;
    model->grad_noise = spec->grad_noise;
    model->accumulate = spec->accumulate;
    model->consistency = spec->consistency;
    model->lookahead = spec->lookahead;
    model->averaging = spec->averaging;
    model->sam = spec->sam;
    if (spec->sam.enabled && (model->sam_state = paramd__sam_create()) == NULL)
        goto out_of_memory;
    model->has_loss_scale = spec->has_loss_scale;
    if (spec->has_loss_scale) {
        model->loss_scale_config = spec->loss_scale;
        paramd__loss_scale_init(&model->loss_scale, &spec->loss_scale);
    }
    model->created = time(NULL);
    if (spec->param_group_count > 0) {
        model->param_groups = calloc(spec->param_group_count, sizeof *model->param_groups);
        group_of = malloc(spec->tensor_count * sizeof *group_of);
        if (model->param_groups == NULL || group_of == NULL)
            goto out_of_memory;
        model->param_group_count = spec->param_group_count;
        for (size_t g = 0; g < spec->param_group_count; g++)
            model->param_groups[g] = spec->param_groups[g].optimizer;
    }
    if (resolve_param_groups(spec, group_of, error) != PARAMD_OK)
        goto fail;
    if (spec->has_schedule) {
        size_t count = 1 + spec->param_group_count;
        model->schedules = calloc(count, sizeof *model->schedules);
        if (model->schedules == NULL)
            goto out_of_memory;
        model->has_schedule = true;
        model->schedule_config = spec->schedule;
        for (size_t k = 0; k < count; k++) {
            const paramd__optimizer_config *config =
                k == 0 ? &model->optimizer : &model->param_groups[k - 1];
            if (paramd__schedule_init_for_optimizer(&model->schedules[k], &spec->schedule, config,
                                                    error) != PARAMD_OK)
                goto fail;
        }
    }
    atomic_init(&model->step, 0);
    atomic_init(&model->references, 1);
    if (model->optimizer.type == &paramd__optimizer_lbfgs &&
        (model->lbfgs = paramd__lbfgs_create((size_t)paramd__optimizer_config_get(
             &model->optimizer, "history_size"))) == NULL)
        goto out_of_memory;

    for (size_t i = 0; i < spec->tensor_count; i++) {
        const paramd__tensor_spec *tensor_spec = &spec->tensors[i];
        if (!paramd__tensor_name_valid(tensor_spec->name)) {
            paramd__error_set(error, PARAMD_E_BAD_NAME,
                              "tensors[%zu].name \"%.200s\": use 1 to 255 characters from "
                              "A-Z a-z 0-9 . _ : / -, not starting with '.'",
                              i, tensor_spec->name);
            goto fail;
        }
        if (paramd__dictionary_find(&model->tensor_index, tensor_spec->name) != NULL ||
            paramd__dictionary_find(&model->remote, tensor_spec->name) != NULL) {
            paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                              "tensors[%zu].name: \"%s\" appears more than once", i,
                              tensor_spec->name);
            goto fail;
        }
        char field[64];
        snprintf(field, sizeof field, "tensors[%zu].shape", i);
        size_t count;
        if (paramd__tensor_check_shape(tensor_spec->dimension_count, tensor_spec->shape, &count,
                                       field, error) != PARAMD_OK)
            goto fail;
        if (!tensor_spec->has_values) {
            /* Checked on every shard, for tensors held elsewhere too. */
            paramd__initializer initializer = tensor_spec->initializer;
            paramd__initializer_set_shape(&initializer, tensor_spec->dimension_count,
                                          tensor_spec->shape);
            char init_field[64];
            snprintf(init_field, sizeof init_field, "tensors[%zu].init", i);
            if (paramd__initializer_validate(&initializer, init_field, error) != PARAMD_OK)
                goto fail;
        }
        if (tensor_spec->has_values && tensor_spec->value_count != count) {
            paramd__error_set(error, PARAMD_E_SHAPE_MISMATCH,
                              "tensors[%zu].values: shape holds %zu elements, got %zu values", i,
                              count, tensor_spec->value_count);
            goto fail;
        }
        if (tensor_spec->has_values) {
            size_t bad = paramd__find_non_finite(tensor_spec->values, count);
            if (bad < count) {
                paramd__error_set(error, PARAMD_E_NON_FINITE, "tensors[%zu].values[%zu]: %g",
                                  i, bad, (double)tensor_spec->values[bad]);
                goto fail;
            }
        }
        int group = group_of ? group_of[i] : -1;
        const paramd__optimizer_config *config =
            group >= 0 ? &model->param_groups[group] : &model->optimizer;
        /* Placement on a sharded server (shard_map.h): a whole tensor here
         * or elsewhere, or this shard's range of a split one. */
        size_t offset = 0, held = count;
        if (spec->shard_map) {
            const paramd_shard_map *map = spec->shard_map;
            /* A row-wise or matrix constraint needs the whole tensor too. */
            bool whole_constraint =
                tensor_spec->constraint.kind == PARAMD__CONSTRAINT_MAX_NORM ||
                tensor_spec->constraint.kind == PARAMD__CONSTRAINT_ORTHOGONAL;
            if (paramd_shard_splits(map, count) && splittable(config) && !whole_constraint) {
                uint64_t range_offset, range_count;
                paramd_shard_range(count, map->shard_count, spec->shard_id, &range_offset,
                                   &range_count);
                offset = (size_t)range_offset;
                held = (size_t)range_count;
            } else {
                uint32_t owner = paramd_shard_owner(map, spec->name, tensor_spec->name);
                if (owner != spec->shard_id) {
                    size_t length = strlen(tensor_spec->name);
                    paramd__remote_tensor *remote = malloc(sizeof *remote + length + 1);
                    if (remote == NULL)
                        goto out_of_memory;
                    remote->owner = owner;
                    memcpy(remote->name, tensor_spec->name, length + 1);
                    if (paramd__dictionary_insert(&model->remote, remote->name, remote) != 0) {
                        free(remote);
                        goto out_of_memory;
                    }
                    continue;
                }
            }
        }
        paramd__optimizer_config allocation = paramd__model_state_config(
            config, model->has_schedule ? &model->schedules[group + 1] : NULL);
        paramd__tensor *tensor = paramd__tensor_create_range(
            tensor_spec->name, tensor_spec->dimension_count, tensor_spec->shape, offset, held,
            &allocation, error);
        if (tensor == NULL)
            goto fail;
        tensor->optimizer = config;
        tensor->param_group = group;
        tensor->position = model->tensor_count;
        model->tensors[model->tensor_count++] = tensor;
        if (paramd__dictionary_insert(&model->tensor_index, tensor->name, tensor) != 0)
            goto out_of_memory;
        if (tensor_spec->has_values) {
            memcpy(tensor->values, tensor_spec->values + offset, held * sizeof(float));
        } else {
            paramd__initializer initializer = tensor_spec->initializer;
            paramd__initializer_set_shape(&initializer, tensor_spec->dimension_count,
                                          tensor_spec->shape);
            if (paramd__initializer_fill_range(&initializer, tensor->values, offset, held) !=
                PARAMD_OK)
                goto out_of_memory;
        }
        model->parameter_count += held;
        model->memory_bytes += paramd__tensor_memory_bytes(tensor);
        /* After-step arrays start as copies of the initial weights. */
        paramd__tensor_extra *extra = &model->extras[tensor->position];
        extra->constraint = tensor_spec->constraint;
        float **copies[3] = {model->lookahead.enabled ? &extra->slow : NULL,
                             model->averaging.ema ? &extra->ema : NULL,
                             model->averaging.swa ? &extra->swa : NULL};
        for (int c = 0; c < 3; c++) {
            if (copies[c] == NULL)
                continue;
            if ((*copies[c] = paramd__float_array_alloc(held)) == NULL)
                goto out_of_memory;
            memcpy(*copies[c], tensor->values, held * sizeof(float));
            model->memory_bytes += held * sizeof(float);
        }
        if (paramd__accumulate_enabled(&model->accumulate)) {
            model->extras[tensor->position].accumulated = paramd__float_array_alloc(held);
            if (model->extras[tensor->position].accumulated == NULL)
                goto out_of_memory;
            model->memory_bytes += count * sizeof(float);
        }
    }
    for (size_t i = 0; model->sam.momentum && i < model->tensor_count; i++)
        if (paramd__sam_moment_slot(model, i) < 0) {
            paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                              "optimizer.variant: \"momentum\" perturbs along the base "
                              "optimizer's first moment, and %s keeps none for tensor \"%s\" "
                              "(SGD needs momentum > 0)",
                              model->tensors[i]->optimizer->type->name, model->tensors[i]->name);
            goto fail;
        }
    if (model->sharded) {
        bool split = false;
        for (size_t i = 0; i < model->tensor_count; i++)
            split |= model->tensors[i]->count != model->tensors[i]->full_count;
        model->spans_shards = split || model->remote.count > 0;
        if (spanning_check(model, split, error) != PARAMD_OK)
            goto fail;
    }
    free(group_of);
    return model;

out_of_memory:
    paramd__error_set(error, PARAMD_E_NO_MEMORY, "model \"%.200s\": out of memory", spec->name);
fail:
    free(group_of);
    if (model)
        model_free(model);
    return NULL;
}

paramd__optimizer_config paramd__model_state_config(const paramd__optimizer_config *config,
                                                    const paramd__schedule *schedule)
{
    paramd__optimizer_config allocation = *config;
    if (schedule && paramd__schedule_cycles_momentum(schedule)) {
        const paramd__hyperparameter_spec *momentum =
            paramd__optimizer_find_hyperparameter(config->type, "momentum");
        if (momentum && allocation.values[momentum->slot] == 0)
            allocation.values[momentum->slot] = 1.0;
    }
    return allocation;
}

paramd__tensor *paramd__model_find_tensor(const paramd__model *model, const char *name)
{
    return paramd__dictionary_find(&model->tensor_index, name);
}

int paramd__model_remote_owner(const paramd__model *model, const char *name)
{
    const paramd__remote_tensor *remote = paramd__dictionary_find(&model->remote, name);
    return remote ? (int)remote->owner : -1;
}

int paramd__model_missing_tensor(const paramd__model *model, const char *field, const char *name,
                                 paramd__error *error)
{
    int owner = paramd__model_remote_owner(model, name);
    if (owner >= 0) {
        paramd__error_set(error, PARAMD_E_NOT_OWNER,
                          "%s: tensor \"%.200s\" of model \"%s\" is held by shard %d, not "
                          "shard %u (shard map version %llu)",
                          field, name, model->name, owner, (unsigned)model->shard_id,
                          (unsigned long long)model->shard_map_version);
        error->shard_map_version = model->shard_map_version;
        error->owner = owner;
        return PARAMD_E_NOT_OWNER;
    }
    return paramd__error_set(error, PARAMD_E_TENSOR_NOT_FOUND,
                             "%s: model \"%s\" has no tensor \"%.200s\"", field, model->name,
                             name);
}

void paramd__model_retain(paramd__model *model)
{
    atomic_fetch_add(&model->references, 1);
}

void paramd__model_release(paramd__model *model)
{
    if (model != NULL && atomic_fetch_sub(&model->references, 1) == 1)
        model_free(model);
}

/* ---------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------- */

void paramd__registry_init(paramd__registry *registry)
{
    pthread_rwlock_init(&registry->lock, NULL);
    paramd__dictionary_init(&registry->models);
    paramd__dictionary_init(&registry->by_id);
    registry->next_id = 1;
}

static void release_visitor(void *value, void *context)
{
    (void)context;
    paramd__model_release(value);
}

void paramd__registry_destroy(paramd__registry *registry)
{
    pthread_rwlock_wrlock(&registry->lock);
    paramd__dictionary_for_each(&registry->models, release_visitor, NULL);
    paramd__dictionary_free(&registry->models);
    paramd__dictionary_free(&registry->by_id);
    pthread_rwlock_unlock(&registry->lock);
    pthread_rwlock_destroy(&registry->lock);
}

int paramd__registry_add(paramd__registry *registry, paramd__model *model, paramd__error *error)
{
    pthread_rwlock_wrlock(&registry->lock);
    model->id = registry->next_id;
    snprintf(model->id_key, sizeof model->id_key, "%u", (unsigned)model->id);
    int result = paramd__dictionary_insert(&registry->models, model->name, model);
    if (result == 0 && paramd__dictionary_insert(&registry->by_id, model->id_key, model) != 0) {
        paramd__dictionary_remove(&registry->models, model->name);
        result = -1;
    }
    if (result == 0) {
        paramd__model_retain(model);
        registry->next_id++;
    }
    pthread_rwlock_unlock(&registry->lock);
    if (result == 1)
        return paramd__error_set(error, PARAMD_E_MODEL_EXISTS, "model \"%s\" already exists",
                                 model->name);
    if (result != 0)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "model registry: out of memory");
    return PARAMD_OK;
}

paramd__model *paramd__registry_acquire(paramd__registry *registry, const char *name)
{
    pthread_rwlock_rdlock(&registry->lock);
    paramd__model *model = paramd__dictionary_find(&registry->models, name);
    if (model)
        paramd__model_retain(model);
    pthread_rwlock_unlock(&registry->lock);
    return model;
}

paramd__model *paramd__registry_acquire_id(paramd__registry *registry, uint32_t id)
{
    char key[12];
    snprintf(key, sizeof key, "%u", (unsigned)id);
    pthread_rwlock_rdlock(&registry->lock);
    paramd__model *model = paramd__dictionary_find(&registry->by_id, key);
    if (model)
        paramd__model_retain(model);
    pthread_rwlock_unlock(&registry->lock);
    return model;
}

int paramd__registry_take(paramd__registry *registry, const char *name, paramd__model **model_out,
                          paramd__error *error)
{
    pthread_rwlock_wrlock(&registry->lock);
    paramd__model *model = paramd__dictionary_remove(&registry->models, name);
    if (model)
        paramd__dictionary_remove(&registry->by_id, model->id_key);
    pthread_rwlock_unlock(&registry->lock);
    *model_out = model;
    if (model == NULL)
        return paramd__error_set(error, PARAMD_E_MODEL_NOT_FOUND, "model \"%.200s\" not found",
                                 name);
    return PARAMD_OK;
}

int paramd__registry_remove(paramd__registry *registry, const char *name, paramd__error *error)
{
    paramd__model *model = NULL;
    int result = paramd__registry_take(registry, name, &model, error);
    if (model)
        paramd__model_release(model);
    return result;
}

typedef struct list_context {
    paramd__model **models;
    size_t count;
} list_context;

static void list_visitor(void *value, void *context)
{
    list_context *list = context;
    paramd__model *model = value;
    paramd__model_retain(model);
    list->models[list->count++] = model;
}

static int compare_model_names(const void *a, const void *b)
{
    const paramd__model *const *left = a, *const *right = b;
    return strcmp((*left)->name, (*right)->name);
}

paramd__model **paramd__registry_list(paramd__registry *registry, size_t *count)
{
    list_context list = {NULL, 0};
    pthread_rwlock_rdlock(&registry->lock);
    if (registry->models.count > 0) {
        list.models = malloc(registry->models.count * sizeof *list.models);
        if (list.models)
            paramd__dictionary_for_each(&registry->models, list_visitor, &list);
    }
    pthread_rwlock_unlock(&registry->lock);
    if (list.count > 1)
        qsort(list.models, list.count, sizeof *list.models, compare_model_names);
    *count = list.count;
    return list.models;
}
