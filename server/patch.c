/*
 * patch.c - runtime changes to a model's configuration (issue 4, item 7):
 * paramd__core_patch_model (see core.h).
 *
 * Rules, all checked before anything changes:
 *   - Hyperparameters: any of the optimizer's own and the common ones, for
 *     the model's configuration ("optimizer") or a parameter group's; the
 *     optimizer itself and group membership never change.  The new
 *     configuration must pass the same range and cross-field checks as at
 *     creation.  A change may not alter which optimizer state a tensor holds
 *     (momentum 0 to 0.9 would need a momentum buffer the tensor does not
 *     have), and initial_accumulator_value, which only fills state when a
 *     tensor is created, cannot change.
 *   - Schedule: replacing it (or adding one) restarts it at the current
 *     step: the new schedule is built from the new configurations as if the
 *     model were created now, and its first lr applies to the next push.
 *     null removes it (the optimizer's lr applies again).  On a scheduled
 *     model, lr (and the momentum or beta1 a schedule cycles) belongs to the
 *     schedule: changing it needs "schedule" in the same patch.
 *   - clip, nonfinite and grad_noise are replaced whole (null removes clip
 *     and grad_noise); the noise draw counters continue.
 *   - loss_scale: a new configuration keeps the running scale and growth
 *     tracker unless it gives init_scale (then the scale restarts there) or
 *     the model had none; null removes it.  "zero" cannot be combined with
 *     a loss scale (see nonfinite.h).
 * Each change is logged at info level with the old and the new value.
 */
#include "core.h"

#include "json_api.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The field prefix of configuration k: "optimizer" or "param_groups[g]". */
static void config_field(size_t k, char *field, size_t size)
{
    if (k == 0)
        snprintf(field, size, "optimizer");
    else
        snprintf(field, size, "param_groups[%zu]", k - 1);
}

/* Applies one configuration's changes to a copy and validates it. */
static int apply_changes(paramd__optimizer_config *config,
                         const paramd__hyperparameter_changes *changes, const char *prefix,
                         paramd__error *error)
{
    for (size_t c = 0; changes && c < changes->count; c++) {
        const paramd__hyperparameter_change *change = &changes->changes[c];
        char field[200];
        snprintf(field, sizeof field, "%s.%s", prefix, change->spec->name);
        if (strcmp(change->spec->name, "initial_accumulator_value") == 0)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: only fills the optimizer state when a tensor is "
                                     "created; it cannot change",
                                     field);
        int result = paramd__optimizer_config_set(config, change->spec, change->values, field,
                                                  error);
        if (result != PARAMD_OK)
            return result;
    }
    return paramd__optimizer_config_validate(config, prefix, error);
}

/* Whether the values of `name` differ between two configurations. */
static bool hyperparameter_changed(const paramd__optimizer_config *before,
                                   const paramd__optimizer_config *after, const char *name)
{
    const paramd__hyperparameter_spec *spec =
        paramd__optimizer_find_hyperparameter(before->type, name);
    if (spec == NULL)
        return false;
    int count = paramd__hyperparameter_width(spec->kind);
    for (int i = 0; i < count; i++)
        if (before->values[spec->slot + i] != after->values[spec->slot + i])
            return true;
    return false;
}

/* Checks that every tensor would hold exactly the state slots it holds now
 * under its new configuration (and the new schedule's momentum cycling). */
static int check_state_slots(const paramd__model *model, const paramd__optimizer_config *configs,
                             const paramd__schedule *schedules, paramd__error *error)
{
    for (size_t i = 0; i < model->tensor_count; i++) {
        const paramd__tensor *tensor = model->tensors[i];
        size_t k = (size_t)(tensor->param_group + 1);
        const paramd__optimizer_type *type = configs[k].type;
        paramd__optimizer_config with_schedule =
            paramd__model_state_config(&configs[k], schedules ? &schedules[k] : NULL);
        paramd__optimizer_config without_schedule = paramd__model_state_config(&configs[k], NULL);
        for (int slot = 0; slot < type->state_slot_count; slot++) {
            bool holds = tensor->state[slot] != NULL;
            bool needs_with = paramd__optimizer_state_length(&with_schedule, slot,
                                                             tensor->dimension_count,
                                                             tensor->shape, tensor->count) != 0;
            if (needs_with == holds)
                continue;
            char field[48];
            bool schedule_to_blame =
                (paramd__optimizer_state_length(&without_schedule, slot, tensor->dimension_count,
                                                 tensor->shape, tensor->count) != 0) == holds;
            if (schedule_to_blame)
                snprintf(field, sizeof field, "schedule");
            else
                config_field(k, field, sizeof field);
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: this change would make tensor \"%s\" %s the %s state "
                                     "\"%s\", which is allocated when the model is created; a "
                                     "change must keep the state each tensor holds",
                                     field, tensor->name, holds ? "drop" : "need", type->name,
                                     type->state_slot_names[slot]);
        }
    }
    return PARAMD_OK;
}

/* Writes a double with the fewest digits that read back exactly. */
static void format_number(char *text, size_t size, double value)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, size, "%.*g", digits, value);
        if (strtod(text, NULL) == value)
            return;
    }
}

/* Formats a hyperparameter's value for the log. */
static void format_value(const paramd__hyperparameter_spec *spec, const double *values,
                         char *text, size_t size)
{
    char first[32], second[32], third[32];
    format_number(first, sizeof first, values[0]);
    switch (spec->kind) {
    case PARAMD__HYPERPARAMETER_BOOLEAN:
        snprintf(text, size, "%s", values[0] != 0 ? "true" : "false");
        break;
    case PARAMD__HYPERPARAMETER_CHOICE:
        snprintf(text, size, "\"%s\"", spec->choices[(int)values[0]]);
        break;
    case PARAMD__HYPERPARAMETER_PAIR:
        format_number(second, sizeof second, values[1]);
        snprintf(text, size, "[%s, %s]", first, second);
        break;
    case PARAMD__HYPERPARAMETER_TRIPLE:
        format_number(second, sizeof second, values[1]);
        format_number(third, sizeof third, values[2]);
        snprintf(text, size, "[%s, %s, %s]", first, second, third);
        break;
    case PARAMD__HYPERPARAMETER_REAL:
    case PARAMD__HYPERPARAMETER_INTEGER:
        snprintf(text, size, "%s", first);
        break;
    }
}

/* Logs every hyperparameter that differs between before and after. */
static int log_hyperparameters(const paramd__model *model, const char *prefix,
                               const paramd__optimizer_config *before,
                               const paramd__optimizer_config *after)
{
    int logged = 0;
    const paramd__optimizer_type *type = before->type;
    int own = type->hyperparameter_count;
    for (int i = 0;; i++) {
        const paramd__hyperparameter_spec *spec =
            i < own ? &type->hyperparameters[i]
                    : paramd__optimizer_common_hyperparameter(type, i - own);
        if (spec == NULL)
            break;
        if (!hyperparameter_changed(before, after, spec->name))
            continue;
        char old_text[128], new_text[128];
        format_value(spec, &before->values[spec->slot], old_text, sizeof old_text);
        format_value(spec, &after->values[spec->slot], new_text, sizeof new_text);
        paramd__log_info("model \"%s\": %s.%s changed from %s to %s", model->name, prefix,
                         spec->name, old_text, new_text);
        logged++;
    }
    return logged;
}

/* Logs "<field> changed from <old> to <new>" with JSON texts (NULL: none). */
static void log_object_change(const paramd__model *model, const char *field, json_t *before,
                              json_t *after)
{
    char *old_text = before ? json_dumps(before, PARAMD__JSON_DUMP_FLAGS) : NULL;
    char *new_text = after ? json_dumps(after, PARAMD__JSON_DUMP_FLAGS) : NULL;
    paramd__log_info("model \"%s\": %s changed from %s to %s", model->name, field,
                     old_text ? old_text : "none", new_text ? new_text : "none");
    free(old_text);
    free(new_text);
    json_decref(before);
    json_decref(after);
}

/* paramd__core_patch_model under the model's config_lock (write). */
static int patch_locked(paramd__model *model, const paramd__model_patch *patch,
                        paramd__error *error)
{
    size_t count = 1 + model->param_group_count;
    if (patch->groups && patch->group_count != model->param_group_count)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "param_groups: the model has %zu groups, the patch %zu",
                                 model->param_group_count, patch->group_count);
    paramd__optimizer_config *configs = malloc(count * sizeof *configs);
    paramd__schedule *schedules = NULL;
    if (configs == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "patch: out of memory");
    int result = PARAMD_OK;
    /* 1. The new optimizer configurations. */
    for (size_t k = 0; k < count && result == PARAMD_OK; k++) {
        char prefix[48];
        config_field(k, prefix, sizeof prefix);
        configs[k] = k == 0 ? model->optimizer : model->param_groups[k - 1];
        result = apply_changes(&configs[k], k == 0 ? &patch->optimizer
                                            : patch->groups ? &patch->groups[k - 1]
                                                            : NULL,
                               prefix, error);
    }
    /* 2. The schedule: lr (and cycled momentum) belong to it. */
    bool has_schedule = patch->set_schedule ? patch->has_schedule : model->has_schedule;
    bool restart = patch->set_schedule && patch->has_schedule;
    for (size_t k = 0; k < count && result == PARAMD_OK && model->has_schedule && !patch->set_schedule;
         k++) {
        const paramd__optimizer_config *old = k == 0 ? &model->optimizer
                                                     : &model->param_groups[k - 1];
        const char *owned = NULL;
        if (hyperparameter_changed(old, &configs[k], "lr"))
            owned = "lr";
        else if (paramd__schedule_cycles_momentum(&model->schedules[k]) &&
                 (hyperparameter_changed(old, &configs[k], "momentum") ||
                  hyperparameter_changed(old, &configs[k], "betas")))
            owned = paramd__optimizer_find_hyperparameter(old->type, "momentum") ? "momentum"
                                                                                  : "betas";
        if (owned) {
            char prefix[48];
            config_field(k, prefix, sizeof prefix);
            result = paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                       "%s.%s: the model's schedule sets it; give \"schedule\" "
                                       "in the same patch (the same schedule restarts it from "
                                       "the new value)",
                                       prefix, owned);
        }
    }
    if (result == PARAMD_OK && restart) {
        schedules = calloc(count, sizeof *schedules);
        if (schedules == NULL)
            result = paramd__error_set(error, PARAMD_E_NO_MEMORY, "patch: out of memory");
        for (size_t k = 0; k < count && result == PARAMD_OK; k++)
            result = paramd__schedule_init_for_optimizer(&schedules[k], &patch->schedule,
                                                         &configs[k], error);
    }
    /* 3. The state each tensor holds must stay as it is. */
    if (result == PARAMD_OK)
        result = check_state_slots(model, configs,
                                   restart ? schedules : has_schedule ? model->schedules : NULL,
                                   error);
    /* 4. The other options. */
    if (result == PARAMD_OK && patch->set_clip)
        result = paramd__clip_config_validate(&patch->clip, error);
    if (result == PARAMD_OK && patch->set_grad_noise)
        result = paramd__grad_noise_config_validate(&patch->grad_noise, error);
    if (result == PARAMD_OK && patch->set_loss_scale && patch->has_loss_scale)
        result = paramd__loss_scale_config_validate(&patch->loss_scale, error);
    paramd__nonfinite_policy nonfinite = patch->set_nonfinite ? patch->nonfinite : model->nonfinite;
    bool has_loss_scale = patch->set_loss_scale ? patch->has_loss_scale : model->has_loss_scale;
    if (result == PARAMD_OK && has_loss_scale && nonfinite == PARAMD__NONFINITE_ZERO)
        result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                   "%s: \"zero\" cannot be combined with loss_scale (with a loss "
                                   "scale a non-finite gradient skips the step and backs the "
                                   "scale off)",
                                   patch->set_nonfinite ? "nonfinite" : "loss_scale");
    if (result != PARAMD_OK) {
        free(configs);
        free(schedules);
        return result;
    }

    /* Commit: nothing fails from here on.  Only values are written; the
     * optimizer type of each configuration never changes. */
    int changed = 0;
    for (size_t k = 0; k < count; k++) {
        char prefix[48];
        config_field(k, prefix, sizeof prefix);
        paramd__optimizer_config *target = k == 0 ? &model->optimizer : &model->param_groups[k - 1];
        changed += log_hyperparameters(model, prefix, target, &configs[k]);
        memcpy(target->values, configs[k].values, sizeof target->values);
    }
    if (patch->set_schedule) {
        log_object_change(model, "schedule",
                          model->has_schedule ? paramd__json_schedule(&model->schedule_config)
                                              : NULL,
                          restart ? paramd__json_schedule(&patch->schedule) : NULL);
        pthread_mutex_lock(&model->schedule_lock);
        free(model->schedules);
        model->schedules = schedules;
        schedules = NULL;
        model->has_schedule = restart;
        if (restart)
            model->schedule_config = patch->schedule;
        paramd__error_clear(&model->schedule_error);
        pthread_mutex_unlock(&model->schedule_lock);
        changed++;
    }
    if (patch->set_clip) {
        log_object_change(model, "clip",
                          model->clip.mode != PARAMD__CLIP_NONE ? paramd__json_clip(&model->clip)
                                                                : NULL,
                          patch->clip.mode != PARAMD__CLIP_NONE ? paramd__json_clip(&patch->clip)
                                                                : NULL);
        model->clip = patch->clip;
        changed++;
    }
    if (patch->set_nonfinite) {
        paramd__log_info("model \"%s\": nonfinite changed from \"%s\" to \"%s\"", model->name,
                         paramd__nonfinite_policy_name(model->nonfinite),
                         paramd__nonfinite_policy_name(patch->nonfinite));
        model->nonfinite = patch->nonfinite;
        changed++;
    }
    if (patch->set_grad_noise) {
        log_object_change(model, "grad_noise",
                          model->grad_noise.enabled ? paramd__json_grad_noise(&model->grad_noise)
                                                    : NULL,
                          patch->grad_noise.enabled ? paramd__json_grad_noise(&patch->grad_noise)
                                                    : NULL);
        model->grad_noise = patch->grad_noise;
        changed++;
    }
    if (patch->set_loss_scale) {
        pthread_mutex_lock(&model->loss_scale_lock);
        paramd__loss_scale state = model->loss_scale;
        log_object_change(model, "loss_scale",
                          model->has_loss_scale
                              ? paramd__json_loss_scale(&model->loss_scale_config, &state)
                              : NULL,
                          patch->has_loss_scale ? paramd__json_loss_scale(&patch->loss_scale, NULL)
                                                : NULL);
        if (patch->has_loss_scale && (!model->has_loss_scale || patch->loss_scale_restart))
            paramd__loss_scale_init(&model->loss_scale, &patch->loss_scale);
        model->has_loss_scale = patch->has_loss_scale;
        if (patch->has_loss_scale)
            model->loss_scale_config = patch->loss_scale;
        pthread_mutex_unlock(&model->loss_scale_lock);
        changed++;
    }
    if (changed == 0)
        paramd__log_info("model \"%s\": patch changed nothing (every value was already set)",
                         model->name);
    free(configs);
    return PARAMD_OK;
}

int paramd__core_patch_model(paramd__server *server, paramd__model *model,
                             const paramd__model_patch *patch, paramd__error *error)
{
    (void)server;
    pthread_rwlock_wrlock(&model->config_lock);
    int result = patch_locked(model, patch, error);
    pthread_rwlock_unlock(&model->config_lock);
    return result;
}
