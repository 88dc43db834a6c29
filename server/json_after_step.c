/*
 * json_after_step.c - the JSON shapes of the stages after the optimizer step
 * and of the optimizers that wrap another (issue 7; after_step.h):
 *
 *     "optimizer": {"name": "Lookahead", "k": 5, "alpha": 0.5,
 *                   "base": {"name": "AdamW", "lr": 1e-3}}
 *     "optimizer": {"name": "SAM", "rho": 0.05, "adaptive": false,
 *                   "variant": "two_step" | "momentum", "base": {...}}  (sam.h)
 *     "averaging": {"ema": {"decay": 0.999}, "swa": {"start": 100, "frequency": 10}}
 *     tensors[i].constraint: "nonneg" | "orthogonal" | {"name": "max_norm", "max_norm": 2}
 *
 * Errors name the field; ranges are checked by after_step.c's validators.
 */
#include "json_api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Wrapping optimizers
 * ------------------------------------------------------------------------- */

/* Lookahead's keywords (torch-optimizer's and the paper's defaults). */
static int parse_lookahead(const json_t *object, paramd__lookahead_config *config,
                           paramd__error *error)
{
    config->enabled = true;
    config->k = 5;
    config->alpha = 0.5;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, "name") == 0 || strcmp(key, "base") == 0)
            continue;
        if (strcmp(key, "k") == 0) {
            if (!json_is_integer(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "optimizer.k: must be an integer");
            config->k = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "alpha") == 0) {
            if (!json_is_number(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "optimizer.alpha: must be a number");
            config->alpha = json_number_value(value);
        } else {
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "optimizer.%.100s: Lookahead takes k, alpha and base (the "
                                     "optimizer it wraps)",
                                     key);
        }
    }
    return paramd__lookahead_config_validate(config, error);
}

/* SAM's keywords (the reference implementation's defaults). */
static int parse_sam(const json_t *object, paramd__sam_config *config, paramd__error *error)
{
    config->enabled = true;
    config->rho = 0.05;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, "name") == 0 || strcmp(key, "base") == 0)
            continue;
        if (strcmp(key, "rho") == 0) {
            if (!json_is_number(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "optimizer.rho: must be a number");
            config->rho = json_number_value(value);
        } else if (strcmp(key, "adaptive") == 0) {
            if (!json_is_boolean(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "optimizer.adaptive: must be true (ASAM) or false");
            config->adaptive = json_is_true(value);
        } else if (strcmp(key, "variant") == 0) {
            const char *variant = json_string_value(value);
            if (variant == NULL ||
                (strcmp(variant, "two_step") != 0 && strcmp(variant, "momentum") != 0))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "optimizer.variant: must be \"two_step\" (an ascent "
                                         "and a descent push per step) or \"momentum\" (one "
                                         "push, perturbed along the momentum)");
            config->momentum = strcmp(variant, "momentum") == 0;
        } else {
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "optimizer.%.100s: SAM takes rho, adaptive, variant and "
                                     "base (the optimizer it wraps)",
                                     key);
        }
    }
    if (config->momentum && config->adaptive)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.adaptive: the \"momentum\" variant has no adaptive "
                                 "(ASAM) form");
    return paramd__sam_config_validate(config, error);
}

static bool is_wrapper(const json_t *object)
{
    const char *name = json_string_value(json_object_get(object, "name"));
    return name && (strcmp(name, "Lookahead") == 0 || strcmp(name, "SAM") == 0);
}

int paramd__json_parse_model_optimizer(const json_t *object, paramd__model_spec *spec,
                                       paramd__error *error)
{
    if (!json_is_object(object) || !is_wrapper(object))
        return paramd__json_parse_optimizer(object, &spec->optimizer, error);
    const char *name = json_string_value(json_object_get(object, "name"));
    int result = strcmp(name, "Lookahead") == 0 ? parse_lookahead(object, &spec->lookahead, error)
                                                : parse_sam(object, &spec->sam, error);
    if (result != PARAMD_OK)
        return result;
    const json_t *base = json_object_get(object, "base");
    if (!json_is_object(base))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer.base: required: the optimizer %s wraps, e.g. "
                                 "{\"name\": \"AdamW\", \"lr\": 0.001}",
                                 name);
    if (is_wrapper(base))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer.base: %s wraps a table optimizer, not %s", name,
                                 json_string_value(json_object_get(base, "name")));
    return paramd__json_parse_optimizer(base, &spec->optimizer, error);
}

json_t *paramd__json_model_optimizer(const paramd__model *model)
{
    json_t *optimizer = paramd__json_optimizer(&model->optimizer);
    if (optimizer == NULL)
        return NULL;
    if (model->lookahead.enabled)
        return json_pack("{s:s,s:I,s:f,s:o}", "name", "Lookahead", "k",
                         (json_int_t)model->lookahead.k, "alpha", model->lookahead.alpha, "base",
                         optimizer);
    if (model->sam.enabled)
        return json_pack("{s:s,s:f,s:b,s:s,s:o}", "name", "SAM", "rho", model->sam.rho,
                         "adaptive", model->sam.adaptive, "variant",
                         model->sam.momentum ? "momentum" : "two_step", "base", optimizer);
    return optimizer;
}

/* ---------------------------------------------------------------------------
 * Averaging
 * ------------------------------------------------------------------------- */

static int integer_field(const json_t *object, const char *field, const char *key, int64_t *out,
                         paramd__error *error)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL)
        return PARAMD_OK;
    if (!json_is_integer(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s.%s: must be an integer", field,
                                 key);
    *out = (int64_t)json_integer_value(value);
    return PARAMD_OK;
}

int paramd__json_parse_averaging(const json_t *value, paramd__averaging_config *config,
                                 paramd__error *error)
{
    memset(config, 0, sizeof *config);
    if (!json_is_object(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "averaging: must be an object such as {\"ema\": {\"decay\": "
                                 "0.999}, \"swa\": {\"start\": 100, \"frequency\": 10}}");
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)value, key, member) {
        if (strcmp(key, "ema") && strcmp(key, "swa"))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "averaging.%.100s: unknown field (expected ema and swa)",
                                     key);
        if (!json_is_object(member))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "averaging.%s: must be an object", key);
        const char *inner;
        json_t *item;
        json_object_foreach(member, inner, item) {
            bool known = strcmp(key, "ema") == 0
                             ? strcmp(inner, "decay") == 0
                             : strcmp(inner, "start") == 0 || strcmp(inner, "frequency") == 0;
            if (!known)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "averaging.%s.%.100s: unknown field (expected %s)", key,
                                         inner,
                                         strcmp(key, "ema") == 0 ? "decay" : "start, frequency");
        }
    }
    const json_t *ema = json_object_get(value, "ema");
    if (ema) {
        config->ema = true;
        config->ema_decay = 0.999;
        const json_t *decay = json_object_get(ema, "decay");
        if (decay && !json_is_number(decay))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "averaging.ema.decay: must be a number");
        if (decay)
            config->ema_decay = json_number_value(decay);
    }
    const json_t *swa = json_object_get(value, "swa");
    if (swa) {
        config->swa = true;
        config->swa_start = 1;
        config->swa_frequency = 1;
        int result = integer_field(swa, "averaging.swa", "start", &config->swa_start, error);
        if (result == PARAMD_OK)
            result = integer_field(swa, "averaging.swa", "frequency", &config->swa_frequency,
                                   error);
        if (result != PARAMD_OK)
            return result;
    }
    if (!config->ema && !config->swa)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "averaging: give ema, swa or both");
    return paramd__averaging_config_validate(config, error);
}

json_t *paramd__json_averaging(const paramd__averaging_config *config)
{
    json_t *object = json_object();
    if (object && config->ema)
        json_object_set_new(object, "ema", json_pack("{s:f}", "decay", config->ema_decay));
    if (object && config->swa)
        json_object_set_new(object, "swa", json_pack("{s:I,s:I}", "start",
                                                     (json_int_t)config->swa_start, "frequency",
                                                     (json_int_t)config->swa_frequency));
    return object;
}

/* ---------------------------------------------------------------------------
 * Constraints
 * ------------------------------------------------------------------------- */

int paramd__json_parse_constraint(const json_t *value, const char *field,
                                  paramd__constraint *constraint, paramd__error *error)
{
    memset(constraint, 0, sizeof *constraint);
    const char *name = json_is_string(value) ? json_string_value(value)
                       : json_is_object(value) ? json_string_value(json_object_get(value, "name"))
                                               : NULL;
    if (name == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: must be \"nonneg\", \"orthogonal\" or {\"name\": "
                                 "\"max_norm\", \"max_norm\": 1.0}",
                                 field);
    if (strcmp(name, "nonneg") == 0)
        constraint->kind = PARAMD__CONSTRAINT_NONNEG;
    else if (strcmp(name, "orthogonal") == 0)
        constraint->kind = PARAMD__CONSTRAINT_ORTHOGONAL;
    else if (strcmp(name, "max_norm") == 0)
        constraint->kind = PARAMD__CONSTRAINT_MAX_NORM;
    else
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: unknown constraint \"%.100s\" (known: nonneg, max_norm, "
                                 "orthogonal)",
                                 field, name);
    if (json_is_object(value)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item) {
            if (strcmp(key, "name") == 0 ||
                (constraint->kind == PARAMD__CONSTRAINT_MAX_NORM && strcmp(key, "max_norm") == 0))
                continue;
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.%.100s: %s takes no such parameter", field, key, name);
        }
    }
    if (constraint->kind == PARAMD__CONSTRAINT_MAX_NORM) {
        const json_t *limit = json_is_object(value) ? json_object_get(value, "max_norm") : NULL;
        if (!json_is_number(limit))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.max_norm: required, a number > 0 (each row's largest "
                                     "L2 norm)",
                                     field);
        constraint->max_norm = json_number_value(limit);
    }
    return PARAMD_OK;
}
