/*
 * json_patch.c - the body of PATCH /v1/models/{model} to a paramd__model_patch
 * (see json_api.h and core.h).
 *
 *     {"optimizer": {"lr": 0.01, "weight_decay": 0},
 *      "param_groups": [{"lr": 0.1}, {}],
 *      "clip": {"max_norm": 0.5} | null,
 *      "schedule": {"name": "CosineAnnealingLR", "T_max": 100} | null,
 *      "nonfinite": "skip",
 *      "grad_noise": {"eta": 0.01} | null,
 *      "loss_scale": "dynamic" | {...} | null}
 *
 * Only types are checked here (and what the model's fixed shape decides:
 * its optimizer's hyperparameter names, its group count); ranges, cross-field
 * rules and combinations are checked by paramd__core_patch_model against the
 * configuration current when the patch runs.
 */
#include "json_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses {hyperparameter: value, ...} of the model's optimizer type into
 * changes; `skip` names a key handled by the caller ("name"), or NULL. */
static int parse_changes(const json_t *object, const char *prefix,
                         const paramd__optimizer_type *type, const char *model_name,
                         paramd__hyperparameter_changes *changes, paramd__error *error)
{
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: must be an object of hyperparameters, e.g. {\"lr\": 0.01}",
                                 prefix);
    size_t size = json_object_size(object);
    changes->changes = calloc(size ? size : 1, sizeof *changes->changes);
    if (changes->changes == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "%s: out of memory", prefix);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        char field[200];
        snprintf(field, sizeof field, "%s.%.120s", prefix, key);
        if (strcmp(key, "name") == 0) {
            if (!json_is_string(value) || strcasecmp(json_string_value(value), type->name) != 0)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "%s: the optimizer cannot change (model \"%s\" uses "
                                         "%s; its state belongs to it); create a new model",
                                         field, model_name, type->name);
            continue;
        }
        if (strcmp(key, "tensors") == 0)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s: parameter-group membership is fixed when the model is "
                                     "created",
                                     field);
        const paramd__hyperparameter_spec *spec = paramd__optimizer_find_hyperparameter(type, key);
        if (spec == NULL)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: %s has no hyperparameter named \"%.100s\"", field,
                                     type->name, key);
        paramd__hyperparameter_change *change = &changes->changes[changes->count];
        change->spec = spec;
        int result = paramd__json_hyperparameter_value(value, spec, field, change->values, error);
        if (result != PARAMD_OK)
            return result;
        changes->count++;
    }
    return PARAMD_OK;
}

static int parse_param_groups(const json_t *groups, const paramd__model *model,
                              const paramd__optimizer_type *type, paramd__model_patch *patch,
                              paramd__error *error)
{
    if (model->param_group_count == 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "param_groups: model \"%s\" has no parameter groups (change "
                                 "its hyperparameters under \"optimizer\")",
                                 model->name);
    if (!json_is_array(groups) || json_array_size(groups) != model->param_group_count)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "param_groups: model \"%s\" has %zu parameter groups: give an "
                                 "array of %zu objects, in order ({} leaves a group as it is)",
                                 model->name, model->param_group_count,
                                 model->param_group_count);
    patch->groups = calloc(model->param_group_count, sizeof *patch->groups);
    if (patch->groups == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "param_groups: out of memory");
    patch->group_count = model->param_group_count;
    for (size_t g = 0; g < model->param_group_count; g++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "param_groups[%zu]", g);
        int result = parse_changes(json_array_get(groups, g), prefix, type, model->name,
                                   &patch->groups[g], error);
        if (result != PARAMD_OK)
            return result;
    }
    return PARAMD_OK;
}

int paramd__json_parse_model_patch(const json_t *body, const paramd__model *model,
                                   paramd__model_patch *patch, paramd__error *error)
{
    memset(patch, 0, sizeof *patch);
    /* The optimizer type and the group count never change after creation,
     * so they may be read without the model's config_lock. */
    const paramd__optimizer_type *type = model->optimizer.type;
    if (!json_is_object(body) || json_object_size(body) == 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "request body: a JSON object naming what to change: optimizer, "
                                 "param_groups, clip, schedule, nonfinite, grad_noise or "
                                 "loss_scale");
    const char *key;
    json_t *value;
    int result = PARAMD_OK;
    json_object_foreach((json_t *)body, key, value) {
        if (strcmp(key, "optimizer") == 0) {
            result = parse_changes(value, "optimizer", type, model->name, &patch->optimizer,
                                   error);
        } else if (strcmp(key, "param_groups") == 0) {
            result = parse_param_groups(value, model, type, patch, error);
        } else if (strcmp(key, "clip") == 0) {
            patch->set_clip = true;
            if (!json_is_null(value))
                result = paramd__json_parse_clip(value, &patch->clip, error);
        } else if (strcmp(key, "schedule") == 0) {
            patch->set_schedule = true;
            patch->has_schedule = !json_is_null(value);
            if (patch->has_schedule)
                result = paramd__json_parse_schedule(value, &patch->schedule, error);
        } else if (strcmp(key, "nonfinite") == 0) {
            patch->set_nonfinite = true;
            result = paramd__json_parse_nonfinite(value, &patch->nonfinite, error);
        } else if (strcmp(key, "grad_noise") == 0) {
            patch->set_grad_noise = true;
            if (!json_is_null(value))
                result = paramd__json_parse_grad_noise(value, &patch->grad_noise, error);
        } else if (strcmp(key, "loss_scale") == 0) {
            patch->set_loss_scale = true;
            patch->has_loss_scale = !json_is_null(value);
            if (patch->has_loss_scale)
                result = paramd__json_parse_loss_scale(value, &patch->loss_scale,
                                                       &patch->loss_scale_restart, error);
        } else if (strcmp(key, "tensors") == 0 || strcmp(key, "accumulate") == 0) {
            result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                       "%s: fixed when the model is created (%s); create a new "
                                       "model to change it",
                                       key,
                                       strcmp(key, "tensors") == 0
                                           ? "tensors own their weights and state"
                                           : "each tensor's accumulation buffer is allocated "
                                             "with it");
        } else {
            result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                       "%.100s: unknown field (expected optimizer, param_groups, "
                                       "clip, schedule, nonfinite, grad_noise or loss_scale)",
                                       key);
        }
        if (result != PARAMD_OK)
            return result;
    }
    return PARAMD_OK;
}

void paramd__json_model_patch_free(paramd__model_patch *patch)
{
    free(patch->optimizer.changes);
    for (size_t g = 0; g < patch->group_count; g++)
        free(patch->groups[g].changes);
    free(patch->groups);
    memset(patch, 0, sizeof *patch);
}
