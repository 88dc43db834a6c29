/*
 * json_training.c - the JSON shapes of a model's training options (issue 4,
 * items 3-6): "nonfinite", "loss_scale", "accumulate" and "grad_noise", to
 * and from their configurations (see json_api.h).
 *
 *     "nonfinite": "error" | "skip" | "zero"
 *     "loss_scale": "dynamic" | {"init_scale": 65536, "growth_factor": 2,
 *                                "backoff_factor": 0.5, "growth_interval": 2000}
 *     "accumulate": 4 | {"steps": 4, "mode": "mean" | "sum"}
 *     "grad_noise": {"eta": 0.01, "gamma": 0.55, "seed": 1}
 *
 * Parsing checks JSON types and names the field in every error; ranges are
 * checked by each feature's validate function, which these call.
 */
#include "json_api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Refuses keys of `object` that are not in `known` (NULL-terminated). */
static int check_keys(const json_t *object, const char *field, const char *const *known,
                      const char *expected, paramd__error *error)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        size_t k = 0;
        while (known[k] && strcmp(known[k], key) != 0)
            k++;
        if (known[k] == NULL)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.%.100s: unknown field (expected %s)", field, key,
                                     expected);
    }
    return PARAMD_OK;
}

/* Reads an optional number member into *out. */
static int number_member(const json_t *object, const char *field, const char *key, double *out,
                         paramd__error *error)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL)
        return PARAMD_OK;
    if (!json_is_number(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s.%s: must be a number", field,
                                 key);
    *out = json_number_value(value);
    return PARAMD_OK;
}

/* Reads an optional integer member into *out; `rule` describes the range
 * for the error message of a non-integer. */
static int integer_member(const json_t *object, const char *field, const char *key,
                          int64_t *out, const char *rule, paramd__error *error)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL)
        return PARAMD_OK;
    if (!json_is_integer(value)) {
        char got[64] = "a non-number";
        if (json_is_number(value))
            snprintf(got, sizeof got, "%.17g", json_number_value(value));
        else if (json_is_string(value))
            snprintf(got, sizeof got, "a string");
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s.%s: must be %s, got %s", field,
                                 key, rule, got);
    }
    *out = (int64_t)json_integer_value(value);
    return PARAMD_OK;
}

int paramd__json_parse_nonfinite(const json_t *value, paramd__nonfinite_policy *policy,
                                 paramd__error *error)
{
    int found = json_is_string(value) ? paramd__nonfinite_policy_find(json_string_value(value))
                                      : -1;
    if (found < 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "nonfinite: must be \"error\", \"skip\" or \"zero\"%s%.100s%s",
                                 json_is_string(value) ? ", got \"" : "",
                                 json_is_string(value) ? json_string_value(value) : "",
                                 json_is_string(value) ? "\"" : "");
    *policy = (paramd__nonfinite_policy)found;
    return PARAMD_OK;
}

int paramd__json_parse_loss_scale(const json_t *value, paramd__loss_scale_config *config,
                                  bool *init_scale_given, paramd__error *error)
{
    paramd__loss_scale_config_init(config);
    *init_scale_given = false;
    if (json_is_string(value) && strcmp(json_string_value(value), "dynamic") == 0)
        return PARAMD_OK;
    if (!json_is_object(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale: must be \"dynamic\" or an object such as "
                                 "{\"init_scale\": 65536, \"growth_interval\": 2000}");
    static const char *const known[] = {"init_scale", "growth_factor", "backoff_factor",
                                        "growth_interval", NULL};
    int result = check_keys(value, "loss_scale", known,
                            "init_scale, growth_factor, backoff_factor or growth_interval", error);
    if (result == PARAMD_OK)
        result = number_member(value, "loss_scale", "init_scale", &config->init_scale, error);
    if (result == PARAMD_OK)
        result = number_member(value, "loss_scale", "growth_factor", &config->growth_factor,
                               error);
    if (result == PARAMD_OK)
        result = number_member(value, "loss_scale", "backoff_factor", &config->backoff_factor,
                               error);
    if (result == PARAMD_OK)
        result = integer_member(value, "loss_scale", "growth_interval", &config->growth_interval,
                                "an integer >= 1", error);
    if (result != PARAMD_OK)
        return result;
    *init_scale_given = json_object_get(value, "init_scale") != NULL;
    return paramd__loss_scale_config_validate(config, error);
}

int paramd__json_parse_accumulate(const json_t *value, paramd__accumulate_config *config,
                                  paramd__error *error)
{
    config->mode = PARAMD__ACCUMULATE_MEAN;
    config->steps = 0;
    if (json_is_integer(value)) {
        config->steps = (int64_t)json_integer_value(value);
        return paramd__accumulate_config_validate(config, error);
    }
    if (!json_is_object(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "accumulate: must be an integer >= 1 or {\"steps\": k, "
                                 "\"mode\": \"mean\" | \"sum\"}");
    static const char *const known[] = {"steps", "mode", NULL};
    int result = check_keys(value, "accumulate", known, "steps or mode", error);
    if (result != PARAMD_OK)
        return result;
    if (json_object_get(value, "steps") == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "accumulate.steps: required, an integer >= 1");
    result = integer_member(value, "accumulate", "steps", &config->steps, "an integer >= 1",
                            error);
    if (result != PARAMD_OK)
        return result;
    const json_t *mode = json_object_get(value, "mode");
    if (mode) {
        int found = json_is_string(mode) ? paramd__accumulate_mode_find(json_string_value(mode))
                                         : -1;
        if (found < 0)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "accumulate.mode: must be \"mean\" or \"sum\"");
        config->mode = (paramd__accumulate_mode)found;
    }
    return paramd__accumulate_config_validate(config, error);
}

int paramd__json_parse_grad_noise(const json_t *value, paramd__grad_noise_config *config,
                                  paramd__error *error)
{
    memset(config, 0, sizeof *config);
    config->gamma = PARAMD__GRAD_NOISE_DEFAULT_GAMMA;
    if (!json_is_object(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_noise: must be an object such as {\"eta\": 0.01, "
                                 "\"gamma\": 0.55, \"seed\": 1}");
    static const char *const known[] = {"eta", "gamma", "seed", NULL};
    int result = check_keys(value, "grad_noise", known, "eta, gamma or seed", error);
    if (result != PARAMD_OK)
        return result;
    if (json_object_get(value, "eta") == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_noise.eta: required, the noise variance at step 0 "
                                 "(e.g. 0.01)");
    config->eta = NAN;
    result = number_member(value, "grad_noise", "eta", &config->eta, error);
    if (result == PARAMD_OK)
        result = number_member(value, "grad_noise", "gamma", &config->gamma, error);
    int64_t seed = 0;
    if (result == PARAMD_OK)
        result = integer_member(value, "grad_noise", "seed", &seed, "a non-negative integer",
                                error);
    if (result != PARAMD_OK)
        return result;
    if (seed < 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_noise.seed: must be a non-negative integer, got %lld",
                                 (long long)seed);
    config->seed = (uint64_t)seed;
    config->enabled = true;
    return paramd__grad_noise_config_validate(config, error);
}

json_t *paramd__json_loss_scale(const paramd__loss_scale_config *config,
                                const paramd__loss_scale *state)
{
    json_t *object = json_pack("{s:f,s:f,s:f,s:I}", "init_scale", config->init_scale,
                               "growth_factor", config->growth_factor, "backoff_factor",
                               config->backoff_factor, "growth_interval",
                               (json_int_t)config->growth_interval);
    if (object && state) {
        json_object_set_new(object, "scale", json_real(state->scale));
        json_object_set_new(object, "growth_tracker", json_integer(state->growth_tracker));
    }
    return object;
}

json_t *paramd__json_accumulate(const paramd__accumulate_config *config)
{
    return json_pack("{s:I,s:s}", "steps", (json_int_t)config->steps, "mode",
                     paramd__accumulate_mode_name(config->mode));
}

json_t *paramd__json_grad_noise(const paramd__grad_noise_config *config)
{
    return json_pack("{s:f,s:f,s:I}", "eta", config->eta, "gamma", config->gamma, "seed",
                     (json_int_t)config->seed);
}

json_t *paramd__json_nonfinite_counts(paramd__nonfinite_counters *counts)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "refused",
                     (json_int_t)atomic_load(&counts->refused), "skipped",
                     (json_int_t)atomic_load(&counts->skipped), "zeroed",
                     (json_int_t)atomic_load(&counts->zeroed), "zeroed_values",
                     (json_int_t)atomic_load(&counts->zeroed_values), "loss_scale_skipped",
                     (json_int_t)atomic_load(&counts->loss_scale_skipped));
}

/* ---------------------------------------------------------------------------
 * Consistency (issue 6)
 * ------------------------------------------------------------------------- */

int paramd__json_parse_consistency(const json_t *value, paramd__consistency_config *config,
                                   paramd__error *error)
{
    memset(config, 0, sizeof *config);
    config->timeout_seconds = PARAMD__CONSISTENCY_DEFAULT_TIMEOUT;
    config->staleness = -1;
    if (json_is_string(value) && strcmp(json_string_value(value), "async") == 0) {
        config->staleness = 0;
        return PARAMD_OK;
    }
    if (!json_is_object(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency: must be an object such as {\"mode\": \"sync\", "
                                 "\"workers\": 4}");
    static const char *const known[] = {"mode", "workers", "backup_workers", "staleness",
                                        "timeout", "staleness_lr", NULL};
    int result = check_keys(value, "consistency", known,
                            "mode, workers, backup_workers, staleness, timeout or staleness_lr",
                            error);
    if (result != PARAMD_OK)
        return result;
    const json_t *mode = json_object_get(value, "mode");
    int found = json_is_string(mode) ? paramd__consistency_mode_find(json_string_value(mode)) : -1;
    if (found < 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.mode: required, \"async\", \"sync\" or \"ssp\"");
    config->mode = (paramd__consistency_mode)found;
    if (config->mode != PARAMD__CONSISTENCY_SSP && json_object_get(value, "staleness"))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.staleness: only for ssp mode");
    if (config->mode == PARAMD__CONSISTENCY_ASYNC &&
        (json_object_get(value, "workers") || json_object_get(value, "timeout")))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency: workers and timeout are for sync and ssp modes");
    if ((result = integer_member(value, "consistency", "workers", &config->workers,
                                 "an integer from 1 to 4096", error)) ||
        (result = integer_member(value, "consistency", "backup_workers", &config->backup_workers,
                                 "an integer >= 0", error)) ||
        (result = integer_member(value, "consistency", "staleness", &config->staleness,
                                 "an integer >= 0", error)) ||
        (result = number_member(value, "consistency", "timeout", &config->timeout_seconds, error)))
        return result;
    const json_t *lr = json_object_get(value, "staleness_lr");
    if (lr) {
        if (!json_is_boolean(lr))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "consistency.staleness_lr: must be true or false");
        config->staleness_lr = json_is_true(lr);
    }
    if (config->mode != PARAMD__CONSISTENCY_SSP && config->staleness < 0)
        config->staleness = 0;
    return paramd__consistency_config_validate(config, error);
}

json_t *paramd__json_consistency(paramd__model *model)
{
    const paramd__consistency_config *config = &model->consistency;
    json_t *object = json_pack("{s:s}", "mode", paramd__consistency_mode_name(config->mode));
    if (object == NULL)
        return NULL;
    if (config->mode != PARAMD__CONSISTENCY_ASYNC) {
        json_object_set_new(object, "workers", json_integer(config->workers));
        json_object_set_new(object, "timeout", json_real(config->timeout_seconds));
    }
    if (config->mode == PARAMD__CONSISTENCY_SYNC)
        json_object_set_new(object, "backup_workers", json_integer(config->backup_workers));
    if (config->mode == PARAMD__CONSISTENCY_SSP)
        json_object_set_new(object, "staleness", json_integer(config->staleness));
    if (config->mode == PARAMD__CONSISTENCY_ASYNC)
        json_object_set_new(object, "staleness_lr", json_boolean(config->staleness_lr));
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    json_t *workers = json_object();
    for (size_t i = 0; workers && i < state->worker_count; i++) {
        const paramd__worker_record *worker = &state->workers[i];
        json_t *record = json_pack("{s:I,s:I}", "pushes", (json_int_t)worker->pushes, "dropped",
                                   (json_int_t)worker->dropped);
        if (record && worker->has_version) {
            json_object_set_new(record, "last_version", json_integer((json_int_t)worker->last_version));
            json_object_set_new(record, "staleness", json_integer((json_int_t)worker->last_staleness));
        }
        json_object_set_new(workers, worker->name, record);
    }
    const paramd__staleness_stats *stats = &state->staleness;
    json_t *staleness = json_pack("{s:I,s:I,s:f}", "observed", (json_int_t)stats->count, "max",
                                  (json_int_t)stats->maximum, "mean",
                                  stats->count ? stats->sum / (double)stats->count : 0.0);
    json_t *waiting = json_integer((json_int_t)(config->mode == PARAMD__CONSISTENCY_SYNC
                                                    ? state->round_workers
                                                    : 0));
    json_int_t timeouts = (json_int_t)state->timeouts;
    pthread_mutex_unlock(&state->lock);
    json_object_set_new(object, "seen_workers", workers);
    json_object_set_new(object, "staleness_observed", staleness);
    if (config->mode == PARAMD__CONSISTENCY_SYNC)
        json_object_set_new(object, "waiting", waiting);
    else
        json_decref(waiting);
    json_object_set_new(object, "timeouts", json_integer(timeouts));
    return object;
}
