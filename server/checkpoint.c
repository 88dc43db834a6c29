/* checkpoint.c - see checkpoint.h. */
#define _DEFAULT_SOURCE
#include "checkpoint.h"

#include "json_api.h"
#include "lbfgs.h"
#include "log.h"
#include "parallel.h"
#include "safetensors.h"
#include "sam.h"
#include "shard_map.h"
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define CHECKPOINT_SUFFIX ".safetensors"
#define PREV_SUFFIX ".safetensors.prev"
#define CORRUPT_SUFFIX ".safetensors.corrupt"
#define FORMAT_NAME "paramd-checkpoint"
#define FORMAT_VERSION "1"

/* ===========================================================================
 * JSON of the configuration and the training state
 * ========================================================================= */

/* A double as JSON, exactly: a number when finite (jansson writes 17
 * significant digits, which read back to the same double), else the
 * strings "nan", "inf" or "-inf". */
static json_t *exact_real(double value)
{
    if (isnan(value))
        return json_string("nan");
    if (isinf(value))
        return json_string(value > 0 ? "inf" : "-inf");
    return json_real(value);
}

static int read_real(const json_t *object, const char *key, double *out)
{
    const json_t *value = json_object_get(object, key);
    if (json_is_number(value)) {
        *out = json_number_value(value);
        return 0;
    }
    const char *text = json_string_value(value);
    if (text && strcmp(text, "nan") == 0)
        *out = NAN;
    else if (text && strcmp(text, "inf") == 0)
        *out = INFINITY;
    else if (text && strcmp(text, "-inf") == 0)
        *out = -INFINITY;
    else
        return -1;
    return 0;
}

static int read_integer(const json_t *object, const char *key, json_int_t *out)
{
    const json_t *value = json_object_get(object, key);
    if (!json_is_integer(value))
        return -1;
    *out = json_integer_value(value);
    return 0;
}

/* The consistency configuration as its parser reads it (no worker records). */
static json_t *consistency_json(const paramd__consistency_config *config)
{
    json_t *object = json_pack("{s:s}", "mode", paramd__consistency_mode_name(config->mode));
    if (object && config->mode != PARAMD__CONSISTENCY_ASYNC) {
        json_object_set_new(object, "workers", json_integer((json_int_t)config->workers));
        json_object_set_new(object, "timeout", exact_real(config->timeout_seconds));
    }
    if (object && config->mode == PARAMD__CONSISTENCY_SYNC)
        json_object_set_new(object, "backup_workers",
                            json_integer((json_int_t)config->backup_workers));
    if (object && config->mode == PARAMD__CONSISTENCY_SSP)
        json_object_set_new(object, "staleness", json_integer((json_int_t)config->staleness));
    if (object && config->mode == PARAMD__CONSISTENCY_ASYNC)
        json_object_set_new(object, "staleness_lr", json_boolean(config->staleness_lr));
    return object;
}

json_t *paramd__checkpoint_config_json(const paramd__model *model)
{
    /* Every tensor of the creation spec, those another shard holds too. */
    json_t *tensors = json_deep_copy(model->created_tensors);
    json_t *body = json_pack("{s:o,s:o,s:s}", "optimizer", paramd__json_model_optimizer(model),
                             "tensors", tensors, "nonfinite",
                             paramd__nonfinite_policy_name(model->nonfinite));
    if (body == NULL)
        return NULL;
    if (model->param_group_count > 0) {
        json_t *groups = json_array();
        for (size_t g = 0; groups && g < model->param_group_count; g++) {
            json_t *group = paramd__json_optimizer(&model->param_groups[g]);
            json_t *names = json_array();
            for (size_t i = 0; names && i < model->tensor_count; i++)
                if (model->tensors[i]->param_group == (int)g)
                    json_array_append_new(names, json_string(model->tensors[i]->name));
            if (group) {
                json_object_del(group, "name");
                json_object_set_new(group, "tensors", names);
                json_array_append_new(groups, group);
            } else {
                json_decref(names);
            }
        }
        json_object_set_new(body, "param_groups", groups);
    }
    if (model->has_schedule)
        json_object_set_new(body, "schedule", paramd__json_schedule(&model->schedule_config));
    if (model->clip.mode != PARAMD__CLIP_NONE)
        json_object_set_new(body, "clip", paramd__json_clip(&model->clip));
    if (model->has_loss_scale)
        json_object_set_new(body, "loss_scale",
                            paramd__json_loss_scale(&model->loss_scale_config, NULL));
    if (model->accumulate.steps > 0)
        json_object_set_new(body, "accumulate", paramd__json_accumulate(&model->accumulate));
    if (model->grad_noise.enabled)
        json_object_set_new(body, "grad_noise", paramd__json_grad_noise(&model->grad_noise));
    if (model->consistency.mode != PARAMD__CONSISTENCY_ASYNC || model->consistency.staleness_lr)
        json_object_set_new(body, "consistency", consistency_json(&model->consistency));
    if (model->averaging.ema || model->averaging.swa)
        json_object_set_new(body, "averaging", paramd__json_averaging(&model->averaging));
    return body;
}

static json_t *schedule_state_json(const paramd__schedule_state *state)
{
    return json_pack("{s:I,s:o,s:I,s:I,s:o,s:o,s:o,s:I,s:I}", "last_epoch",
                     (json_int_t)state->last_epoch, "base_lr", exact_real(state->base_lr), "T_i",
                     (json_int_t)state->T_i, "T_cur", (json_int_t)state->T_cur, "base_momentum",
                     exact_real(state->base_momentum), "max_momentum",
                     exact_real(state->max_momentum), "best", exact_real(state->best),
                     "num_bad_epochs", (json_int_t)state->num_bad_epochs, "cooldown_counter",
                     (json_int_t)state->cooldown_counter);
}

static int read_schedule_state(const json_t *object, paramd__schedule_state *state)
{
    json_int_t last_epoch, T_i, T_cur, bad, cooldown;
    if (!json_is_object(object) || read_integer(object, "last_epoch", &last_epoch) ||
        read_real(object, "base_lr", &state->base_lr) || read_integer(object, "T_i", &T_i) ||
        read_integer(object, "T_cur", &T_cur) ||
        read_real(object, "base_momentum", &state->base_momentum) ||
        read_real(object, "max_momentum", &state->max_momentum) ||
        read_real(object, "best", &state->best) ||
        read_integer(object, "num_bad_epochs", &bad) ||
        read_integer(object, "cooldown_counter", &cooldown))
        return -1;
    state->last_epoch = last_epoch;
    state->T_i = T_i;
    state->T_cur = T_cur;
    state->num_bad_epochs = bad;
    state->cooldown_counter = cooldown;
    return 0;
}

/* A running schedule's state (its configuration is the model's). */
static json_t *schedule_json(const paramd__schedule *schedule)
{
    const paramd__schedule_group *group = &schedule->group;
    json_t *children = json_array();
    for (int i = 0; children && i < schedule->config.child_count; i++)
        json_array_append_new(children, schedule_state_json(&schedule->children[i]));
    return json_pack("{s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:I,s:I,s:o,s:o}", "group", "lr",
                     exact_real(group->lr), "initial_lr", exact_real(group->initial_lr),
                     "momentum", exact_real(group->momentum), "max_lr", exact_real(group->max_lr),
                     "min_lr", exact_real(group->min_lr), "max_momentum",
                     exact_real(group->max_momentum), "base_momentum",
                     exact_real(group->base_momentum), "last_epoch",
                     (json_int_t)schedule->last_epoch, "step_count",
                     (json_int_t)schedule->step_count, "state",
                     schedule_state_json(&schedule->state), "children", children);
}

static int read_schedule(const json_t *object, paramd__schedule *schedule)
{
    const json_t *group = json_object_get(object, "group");
    json_int_t last_epoch, step_count;
    paramd__schedule_group g;
    if (!json_is_object(group) || read_real(group, "lr", &g.lr) ||
        read_real(group, "initial_lr", &g.initial_lr) ||
        read_real(group, "momentum", &g.momentum) || read_real(group, "max_lr", &g.max_lr) ||
        read_real(group, "min_lr", &g.min_lr) ||
        read_real(group, "max_momentum", &g.max_momentum) ||
        read_real(group, "base_momentum", &g.base_momentum) ||
        read_integer(object, "last_epoch", &last_epoch) ||
        read_integer(object, "step_count", &step_count) || step_count < 0)
        return -1;
    paramd__schedule_state state;
    if (read_schedule_state(json_object_get(object, "state"), &state))
        return -1;
    const json_t *children = json_object_get(object, "children");
    if (!json_is_array(children) ||
        json_array_size(children) != (size_t)schedule->config.child_count)
        return -1;
    paramd__schedule_state child_states[PARAMD__MAX_SCHEDULE_CHILDREN];
    for (int i = 0; i < schedule->config.child_count; i++)
        if (read_schedule_state(json_array_get(children, (size_t)i), &child_states[i]))
            return -1;
    schedule->group = g;
    schedule->last_epoch = last_epoch;
    schedule->step_count = (uint64_t)step_count;
    schedule->state = state;
    memcpy(schedule->children, child_states,
           (size_t)schedule->config.child_count * sizeof child_states[0]);
    return 0;
}

/* ---------------------------------------------------------------------------
 * L-BFGS's scalar state (lbfgs.h): every field, by a table, so that a
 * suspended step (mid line search included) resumes exactly.
 * ------------------------------------------------------------------------- */

typedef enum lbfgs_field_kind { FIELD_DOUBLE, FIELD_U64, FIELD_SIZE, FIELD_INT, FIELD_BOOL } lbfgs_field_kind;

typedef struct lbfgs_field {
    const char *name;
    lbfgs_field_kind kind;
    size_t offset;
    int count; /* elements, for the small fixed arrays */
} lbfgs_field;

#define LBFGS_FIELD(name, kind) {#name, kind, offsetof(paramd__lbfgs_state, name), 1}
#define LBFGS_ARRAY(name, kind, n) {#name, kind, offsetof(paramd__lbfgs_state, name), n}
static const lbfgs_field lbfgs_fields[] = {
    LBFGS_FIELD(history_size, FIELD_SIZE),   LBFGS_FIELD(func_evals, FIELD_U64),
    LBFGS_FIELD(n_iter, FIELD_U64),          LBFGS_FIELD(history_count, FIELD_SIZE),
    LBFGS_FIELD(history_head, FIELD_SIZE),   LBFGS_FIELD(t, FIELD_DOUBLE),
    LBFGS_FIELD(H_diag, FIELD_DOUBLE),       LBFGS_FIELD(loss, FIELD_DOUBLE),
    LBFGS_FIELD(prev_loss, FIELD_DOUBLE),    LBFGS_FIELD(step_iterations, FIELD_U64),
    LBFGS_FIELD(current_evals, FIELD_U64),   LBFGS_FIELD(opt_cond, FIELD_BOOL),
    LBFGS_FIELD(gtd, FIELD_DOUBLE),          LBFGS_FIELD(f, FIELD_DOUBLE),
    LBFGS_FIELD(d_norm, FIELD_DOUBLE),       LBFGS_FIELD(t_prev, FIELD_DOUBLE),
    LBFGS_FIELD(f_prev, FIELD_DOUBLE),       LBFGS_FIELD(gtd_prev, FIELD_DOUBLE),
    LBFGS_FIELD(f_new, FIELD_DOUBLE),        LBFGS_FIELD(gtd_new, FIELD_DOUBLE),
    LBFGS_FIELD(ls_iter, FIELD_INT),         LBFGS_FIELD(ls_func_evals, FIELD_INT),
    LBFGS_FIELD(done, FIELD_BOOL),           LBFGS_FIELD(insuf_progress, FIELD_BOOL),
    LBFGS_ARRAY(bracket, FIELD_DOUBLE, 2),   LBFGS_ARRAY(bracket_f, FIELD_DOUBLE, 2),
    LBFGS_ARRAY(bracket_gtd, FIELD_DOUBLE, 2), LBFGS_FIELD(bracket_size, FIELD_INT),
    LBFGS_FIELD(low_pos, FIELD_INT),         LBFGS_FIELD(high_pos, FIELD_INT),
    LBFGS_FIELD(eval_at_offset, FIELD_BOOL), LBFGS_FIELD(eval_t, FIELD_DOUBLE),
    LBFGS_FIELD(steps_done, FIELD_U64),
};

static json_t *lbfgs_value(const lbfgs_field *field, const void *at)
{
    switch (field->kind) {
    case FIELD_DOUBLE: {
        double value;
        memcpy(&value, at, sizeof value);
        return exact_real(value);
    }
    case FIELD_U64: {
        uint64_t value;
        memcpy(&value, at, sizeof value);
        return json_integer((json_int_t)value);
    }
    case FIELD_SIZE: {
        size_t value;
        memcpy(&value, at, sizeof value);
        return json_integer((json_int_t)value);
    }
    case FIELD_INT: {
        int value;
        memcpy(&value, at, sizeof value);
        return json_integer(value);
    }
    case FIELD_BOOL: {
        bool value;
        memcpy(&value, at, sizeof value);
        return json_boolean(value);
    }
    }
    return json_null();
}

static void append_name(void *value, void *context)
{
    json_array_append_new(context, json_string(value));
}

static json_t *lbfgs_json(const paramd__lbfgs_state *state)
{
    json_t *object = json_pack("{s:i}", "phase", (int)state->phase);
    for (size_t i = 0; object && i < sizeof lbfgs_fields / sizeof lbfgs_fields[0]; i++) {
        const lbfgs_field *field = &lbfgs_fields[i];
        const char *at = (const char *)state + field->offset;
        if (field->count == 1) {
            json_object_set_new(object, field->name, lbfgs_value(field, at));
        } else {
            json_t *array = json_array();
            for (int k = 0; array && k < field->count; k++)
                json_array_append_new(array, lbfgs_value(field, at + (size_t)k * sizeof(double)));
            json_object_set_new(object, field->name, array);
        }
    }
    json_t *ro = json_array(), *al = json_array();
    for (size_t k = 0; ro && al && k <= state->history_size; k++) {
        json_array_append_new(ro, exact_real(state->ro[k]));
        json_array_append_new(al, exact_real(state->al[k]));
    }
    json_object_set_new(object, "ro", ro);
    json_object_set_new(object, "al", al);
    return object;
}

/* Reads one value of a field from `value` into `at`. */
static int read_lbfgs_value(const lbfgs_field *field, const json_t *value, void *at)
{
    json_t *holder = json_pack("{s:O}", "v", value);
    int result = 0;
    switch (field->kind) {
    case FIELD_DOUBLE: {
        double number;
        result = read_real(holder, "v", &number);
        memcpy(at, &number, sizeof number);
        break;
    }
    case FIELD_U64:
    case FIELD_SIZE:
    case FIELD_INT: {
        json_int_t number = 0;
        result = read_integer(holder, "v", &number);
        if (result == 0 && number < 0)
            result = -1;
        if (field->kind == FIELD_U64) {
            uint64_t v = (uint64_t)number;
            memcpy(at, &v, sizeof v);
        } else if (field->kind == FIELD_SIZE) {
            size_t v = (size_t)number;
            memcpy(at, &v, sizeof v);
        } else {
            int v = (int)number;
            memcpy(at, &v, sizeof v);
        }
        break;
    }
    case FIELD_BOOL: {
        bool v = json_is_true(value);
        result = json_is_boolean(value) ? 0 : -1;
        memcpy(at, &v, sizeof v);
        break;
    }
    }
    json_decref(holder);
    return result;
}

/* Restores the state into `state` (allocated for the config's history size). */
static int read_lbfgs(const json_t *object, paramd__lbfgs_state *state)
{
    json_int_t phase;
    if (!json_is_object(object) || read_integer(object, "phase", &phase) || phase < 0 ||
        phase > PARAMD__LBFGS_SEARCH_ZOOM)
        return -1;
    paramd__lbfgs_state copy = *state;
    for (size_t i = 0; i < sizeof lbfgs_fields / sizeof lbfgs_fields[0]; i++) {
        const lbfgs_field *field = &lbfgs_fields[i];
        const json_t *value = json_object_get(object, field->name);
        char *at = (char *)&copy + field->offset;
        if (field->count == 1) {
            if (value == NULL || read_lbfgs_value(field, value, at) != 0)
                return -1;
        } else {
            if (!json_is_array(value) || json_array_size(value) != (size_t)field->count)
                return -1;
            for (int k = 0; k < field->count; k++)
                if (read_lbfgs_value(field, json_array_get(value, (size_t)k),
                                     at + (size_t)k * sizeof(double)) != 0)
                    return -1;
        }
    }
    const json_t *ro = json_object_get(object, "ro"), *al = json_object_get(object, "al");
    if (copy.history_size != state->history_size || copy.history_count > copy.history_size ||
        copy.history_head > copy.history_size || json_array_size(ro) != state->history_size + 1 ||
        json_array_size(al) != state->history_size + 1)
        return -1;
    for (size_t k = 0; k <= state->history_size; k++) {
        json_t *holder = json_pack("{s:O,s:O}", "ro", json_array_get(ro, k), "al",
                                   json_array_get(al, k));
        int bad = read_real(holder, "ro", &state->ro[k]) || read_real(holder, "al", &state->al[k]);
        json_decref(holder);
        if (bad)
            return -1;
    }
    /* Everything but the lock and the arrays, which stay the state's own. */
    pthread_mutex_t lock = state->lock;
    double *ro_array = state->ro, *al_array = state->al;
    *state = copy;
    state->lock = lock;
    state->ro = ro_array;
    state->al = al_array;
    state->phase = (paramd__lbfgs_phase)phase;
    return 0;
}

/* The training state; the caller holds config_lock for writing, so no push
 * runs.  Tensor fields are read under each tensor's lock. */
static json_t *training_json(paramd__model *model)
{
    json_t *tensors = json_array();
    for (size_t i = 0; tensors && i < model->tensor_count; i++) {
        paramd__tensor *tensor = model->tensors[i];
        const paramd__tensor_extra *extra = &model->extras[i];
        json_t *slots = json_array();
        for (int s = 0; slots && s < tensor->optimizer->type->state_slot_count; s++)
            if (tensor->state[s])
                json_array_append_new(slots,
                                      json_string(tensor->optimizer->type->state_slot_names[s]));
        pthread_mutex_lock(&tensor->lock);
        json_array_append_new(tensors,
                              json_pack("{s:s,s:I,s:I,s:I,s:o,s:I,s:I}", "name", tensor->name,
                                        "step", (json_int_t)tensor->step, "accumulated_count",
                                        (json_int_t)extra->accumulated_count, "noise_draws",
                                        (json_int_t)extra->noise_draws, "state", slots,
                                        "ema_count", (json_int_t)extra->ema_count, "swa_count",
                                        (json_int_t)extra->swa_count));
        pthread_mutex_unlock(&tensor->lock);
    }
    json_t *training =
        json_pack("{s:I,s:I,s:o,s:o}", "step", (json_int_t)atomic_load(&model->step), "created",
                  (json_int_t)model->created, "nonfinite_counts",
                  paramd__json_nonfinite_counts(&model->nonfinite_counts), "tensors", tensors);
    if (training == NULL)
        return NULL;
    if (model->lbfgs) {
        pthread_mutex_lock(&model->lbfgs->lock);
        json_object_set_new(training, "lbfgs", lbfgs_json(model->lbfgs));
        pthread_mutex_unlock(&model->lbfgs->lock);
    }
    if (model->sam_state) {
        /* The workers between their SAM ascent and descent pushes. */
        json_t *pending = json_array();
        pthread_mutex_lock(&model->sam_state->lock);
        paramd__dictionary_for_each(&model->sam_state->pending, append_name, pending);
        pthread_mutex_unlock(&model->sam_state->lock);
        json_object_set_new(training, "sam_pending", pending);
    }
    if (model->sharded)
        json_object_set_new(training, "shard",
                            json_pack("{s:I,s:I}", "id", (json_int_t)model->shard_id,
                                      "shard_map_version", (json_int_t)model->shard_map_version));
    if (model->has_schedule) {
        json_t *schedules = json_array();
        pthread_mutex_lock(&model->schedule_lock);
        for (size_t k = 0; schedules && k < 1 + model->param_group_count; k++)
            json_array_append_new(schedules, schedule_json(&model->schedules[k]));
        if (model->schedule_error.code != PARAMD_OK)
            json_object_set_new(training, "schedule_error",
                                json_pack("{s:s,s:s}", "code",
                                          paramd_error_name(model->schedule_error.code),
                                          "message", model->schedule_error.message));
        pthread_mutex_unlock(&model->schedule_lock);
        json_object_set_new(training, "schedules", schedules);
    }
    if (model->has_loss_scale) {
        pthread_mutex_lock(&model->loss_scale_lock);
        json_object_set_new(training, "loss_scale",
                            json_pack("{s:o,s:I}", "scale", exact_real(model->loss_scale.scale),
                                      "growth_tracker",
                                      (json_int_t)model->loss_scale.growth_tracker));
        pthread_mutex_unlock(&model->loss_scale_lock);
    }
    return training;
}

/* ===========================================================================
 * Snapshots
 * ========================================================================= */

/* One array of a snapshot: its key and a private copy of its floats. */
typedef struct snapshot_array {
    char *key;
    size_t tensor_index;  /* the tensor it belongs to */
    const float *source;  /* the model's array (read under the locks) */
    paramd__safetensors_entry entry; /* entry.data: the copy */
    float *copy;
} snapshot_array;

typedef struct snapshot {
    snapshot_array *arrays;
    size_t count;
    json_t *metadata;
    uint64_t step;
    double snapshot_seconds;
} snapshot;

static void snapshot_free(snapshot *shot)
{
    for (size_t i = 0; i < shot->count; i++) {
        free(shot->arrays[i].key);
        paramd__float_array_free(shot->arrays[i].copy, shot->arrays[i].entry.count);
    }
    free(shot->arrays);
    json_decref(shot->metadata);
    memset(shot, 0, sizeof *shot);
}

static int add_array(snapshot *shot, const paramd__tensor *tensor, const char *suffix,
                     const float *source, size_t count)
{
    snapshot_array *array = &shot->arrays[shot->count];
    array->tensor_index = tensor->position;
    size_t length = strlen(tensor->name) + (suffix ? strlen(suffix) + 1 : 0) + 1;
    array->key = malloc(length);
    if (array->key == NULL)
        return -1;
    snprintf(array->key, length, "%s%s%s", tensor->name, suffix ? "@" : "", suffix ? suffix : "");
    array->source = source;
    array->entry.name = array->key;
    array->entry.count = count;
    /* The tensor's shape for arrays of all its elements; 1-D otherwise (a
     * shard's range of a split tensor, tensor-wise state of its own length). */
    if (count == tensor->full_count) {
        array->entry.dimension_count = tensor->dimension_count;
        memcpy(array->entry.shape, tensor->shape, sizeof tensor->shape);
    } else {
        array->entry.dimension_count = 1;
        array->entry.shape[0] = (int64_t)count;
    }
    shot->count++;
    array->copy = paramd__float_array_alloc(count);
    if (array->copy == NULL)
        return -1;
    /* Fault the pages in now, outside the locks, so the copy under them
     * runs at memory speed. */
    volatile float *touch = array->copy;
    for (size_t i = 0; i < count; i += 1024)
        touch[i] = 0.0f;
    array->entry.data = array->copy;
    return 0;
}

typedef struct copy_context {
    float *destination;
    const float *source;
} copy_context;

static void copy_range(void *context, size_t begin, size_t end)
{
    copy_context *copy = context;
    memcpy(copy->destination + begin, copy->source + begin, (end - begin) * sizeof(float));
}

static void copy_floats(float *destination, const float *source, size_t count)
{
    copy_context context = {destination, source};
    paramd__parallel_for(count, 16, 1u << 20, copy_range, &context);
}

/* Copies the whole model, consistently (see the top of checkpoint.h). */
static int take_snapshot(paramd__model *model, snapshot *shot, paramd__error *error)
{
    memset(shot, 0, sizeof *shot);
    size_t most = 0;
    for (size_t i = 0; i < model->tensor_count; i++)
        most += 2 + PARAMD__MAX_STATE_SLOTS;
    shot->arrays = calloc(most, sizeof *shot->arrays);
    if (shot->arrays == NULL)
        goto out_of_memory;
    /* The tensor list and the slots each holds never change, so the layout
     * and the buffers can be prepared before taking any lock. */
    bool accumulating = paramd__accumulate_enabled(&model->accumulate);
    for (size_t i = 0; i < model->tensor_count; i++) {
        const paramd__tensor *tensor = model->tensors[i];
        if (add_array(shot, tensor, NULL, tensor->values, tensor->count) != 0)
            goto out_of_memory;
        for (int s = 0; s < tensor->optimizer->type->state_slot_count; s++)
            if (tensor->state[s] &&
                add_array(shot, tensor, tensor->optimizer->type->state_slot_names[s],
                          tensor->state[s], tensor->state_length[s]) != 0)
                goto out_of_memory;
        if (accumulating &&
            add_array(shot, tensor, "accumulated", model->extras[i].accumulated, tensor->count) != 0)
            goto out_of_memory;
        /* After the step (after_step.h): Lookahead's slow weights, the averages. */
        const paramd__tensor_extra *extra = &model->extras[i];
        if ((extra->slow && add_array(shot, tensor, "slow", extra->slow, tensor->count) != 0) ||
            (extra->ema && add_array(shot, tensor, "ema", extra->ema, tensor->count) != 0) ||
            (extra->swa && add_array(shot, tensor, "swa", extra->swa, tensor->count) != 0))
            goto out_of_memory;
    }
    double started = paramd__metrics_now();
    pthread_rwlock_wrlock(&model->config_lock);
    size_t next = 0;
    for (size_t i = 0; i < model->tensor_count; i++) {
        paramd__tensor *tensor = model->tensors[i];
        pthread_mutex_lock(&tensor->lock);
        for (; next < shot->count && shot->arrays[next].tensor_index == i; next++)
            copy_floats(shot->arrays[next].copy, shot->arrays[next].source,
                        shot->arrays[next].entry.count);
        pthread_mutex_unlock(&tensor->lock);
    }
    json_t *config = paramd__checkpoint_config_json(model);
    json_t *training = training_json(model);
    shot->step = atomic_load(&model->step);
    pthread_rwlock_unlock(&model->config_lock);
    shot->snapshot_seconds = paramd__metrics_now() - started;
    if (next != shot->count) {
        json_decref(config);
        json_decref(training);
        snapshot_free(shot);
        return paramd__error_set(error, PARAMD_E_INTERNAL,
                                 "checkpoint of \"%s\": snapshot layout mismatch", model->name);
    }
    char *config_text = config ? json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *training_text = training ? json_dumps(training, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(config);
    json_decref(training);
    char written[32];
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(written, sizeof written, "%Y-%m-%dT%H:%M:%SZ", &utc);
    if (config_text && training_text)
        shot->metadata = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "format", FORMAT_NAME,
                                   "format_version", FORMAT_VERSION, "paramd_version",
                                   PARAMD_VERSION_STRING, "model", model->name, "written_at",
                                   written, "config", config_text, "training", training_text);
    free(config_text);
    free(training_text);
    if (shot->metadata == NULL)
        goto out_of_memory;
    return PARAMD_OK;

out_of_memory:
    snapshot_free(shot);
    return paramd__error_set(error, PARAMD_E_NO_MEMORY,
                             "checkpoint of \"%s\": out of memory for a copy of the model (%.1f "
                             "MiB)",
                             model->name, (double)model->memory_bytes / (1 << 20));
}

/* ===========================================================================
 * Files
 * ========================================================================= */

static int io_error(paramd__error *error, const char *what, const char *path)
{
    return paramd__error_set(error, PARAMD_E_CHECKPOINT_FAILED, "%s %s: %s", what, path,
                             strerror(errno));
}

static int write_all(int descriptor, const void *data, size_t size, uLong *crc)
{
    const unsigned char *bytes = data;
    while (size > 0) {
        size_t chunk = size > (64u << 20) ? (64u << 20) : size;
        ssize_t written = write(descriptor, bytes, chunk);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        *crc = crc32(*crc, bytes, (uInt)written);
        bytes += written;
        size -= (size_t)written;
    }
    return 0;
}

/* The directory part of path ("." when there is none). */
static void directory_of(const char *path, char *directory, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(directory, size, ".");
    else if (slash == path)
        snprintf(directory, size, "/");
    else
        snprintf(directory, size, "%.*s", (int)(slash - path), path);
}

static int fsync_directory(const char *path, paramd__error *error)
{
    char directory[PATH_MAX];
    directory_of(path, directory, sizeof directory);
    int descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (descriptor < 0)
        return io_error(error, "cannot open the directory", directory);
    int result = fsync(descriptor);
    int saved = errno;
    close(descriptor);
    errno = saved;
    return result == 0 ? PARAMD_OK : io_error(error, "cannot fsync the directory", directory);
}

/* Writes the snapshot to temporary_path and fsyncs it; *bytes_out = size. */
static int write_snapshot(const snapshot *shot, const char *temporary_path, uint64_t *bytes_out,
                          paramd__error *error)
{
    paramd__safetensors_entry *entries = calloc(shot->count ? shot->count : 1, sizeof *entries);
    if (entries == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "checkpoint: out of memory");
    for (size_t i = 0; i < shot->count; i++)
        entries[i] = shot->arrays[i].entry;
    unsigned char *header = NULL;
    size_t header_size = 0, crc_offset = 0;
    int result = paramd__safetensors_header(entries, shot->count, shot->metadata, &header,
                                            &header_size, &crc_offset, error);
    free(entries);
    if (result != PARAMD_OK)
        return result;
    int descriptor = open(temporary_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (descriptor < 0) {
        free(header);
        return io_error(error, "cannot create", temporary_path);
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t bytes = header_size;
    bool failed = write_all(descriptor, header, header_size, &crc) != 0;
    for (size_t i = 0; !failed && i < shot->count; i++) {
        size_t size = shot->arrays[i].entry.count * sizeof(float);
        failed = write_all(descriptor, shot->arrays[i].copy, size, &crc) != 0;
        bytes += size;
    }
    char digits[8];
    paramd__safetensors_crc_digits((uint32_t)crc, digits);
    if (!failed)
        failed = pwrite(descriptor, digits, 8, (off_t)crc_offset) != 8;
    if (!failed)
        failed = fsync(descriptor) != 0;
    int saved = errno;
    free(header);
    if (close(descriptor) != 0 && !failed) {
        failed = true;
        saved = errno;
    }
    if (failed) {
        errno = saved;
        io_error(error, "cannot write", temporary_path);
        unlink(temporary_path);
        return error->code;
    }
    *bytes_out = bytes;
    return PARAMD_OK;
}

/* Moves temporary_path over path, keeping the old file as prev_path (when
 * not NULL), so that path always exists once it did; fsyncs the directory. */
static int install(const char *temporary_path, const char *path, const char *prev_path,
                   paramd__error *error)
{
    if (prev_path && access(path, F_OK) == 0) {
        char link_path[PATH_MAX + 16];
        snprintf(link_path, sizeof link_path, "%s.link", prev_path);
        unlink(link_path);
        if (link(path, link_path) != 0 || rename(link_path, prev_path) != 0) {
            io_error(error, "cannot keep the previous checkpoint as", prev_path);
            unlink(link_path);
            unlink(temporary_path);
            return error->code;
        }
    }
    if (rename(temporary_path, path) != 0) {
        io_error(error, "cannot rename the new checkpoint to", path);
        unlink(temporary_path);
        return error->code;
    }
    return fsync_directory(path, error);
}

static void temporary_name(const char *path, char *buffer, size_t size)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    snprintf(buffer, size, "%.*s.%s.tmp", (int)(base - path), path, base);
}

static json_t *info_json(const paramd__model *model, const char *path, const snapshot *shot,
                         uint64_t bytes, double seconds)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:f,s:f}", "model", model->name, "file", path, "step",
                     (json_int_t)shot->step, "bytes", (json_int_t)bytes, "seconds", seconds,
                     "snapshot_seconds", shot->snapshot_seconds);
}

static void record_outcome(paramd__model *model, int result, const paramd__error *error,
                           const snapshot *shot, uint64_t bytes, double seconds)
{
    paramd__model_stats *stats = model->stats;
    if (stats == NULL)
        return;
    pthread_mutex_lock(&stats->lock);
    if (result == PARAMD_OK) {
        stats->checkpoint_seconds = seconds;
        stats->checkpoint_snapshot_seconds = shot->snapshot_seconds;
        stats->checkpoint_time = (double)time(NULL);
        stats->checkpoint_bytes = bytes;
        stats->checkpoint_step = shot->step;
        stats->checkpoint_error[0] = '\0';
    } else {
        snprintf(stats->checkpoint_error, sizeof stats->checkpoint_error, "%s", error->message);
    }
    pthread_mutex_unlock(&stats->lock);
    if (result == PARAMD_OK) {
        atomic_fetch_add(&stats->checkpoints_ok, 1);
        paramd__histogram_observe(&stats->checkpoint_duration, seconds);
    } else {
        atomic_fetch_add(&stats->checkpoints_failed, 1);
    }
}

/* Snapshot, write, and (when `still_wanted` says so under files_lock) install. */
static int checkpoint_to(paramd__model *model, const char *path, const char *prev_path,
                         paramd__checkpointer *checkpointer, json_t **info_out,
                         paramd__error *error)
{
    double started = paramd__metrics_now();
    snapshot shot;
    uint64_t bytes = 0;
    char temporary[PATH_MAX + 32];
    temporary_name(path, temporary, sizeof temporary);
    int result = take_snapshot(model, &shot, error);
    if (result == PARAMD_OK)
        result = write_snapshot(&shot, temporary, &bytes, error);
    if (result == PARAMD_OK) {
        if (checkpointer)
            pthread_mutex_lock(&checkpointer->files_lock);
        /* A model deleted (or replaced) while it was written stays deleted. */
        paramd__model *current =
            checkpointer ? paramd__registry_acquire(&checkpointer->server->registry, model->name)
                         : NULL;
        if (checkpointer && current != model) {
            unlink(temporary);
            result = paramd__error_set(error, PARAMD_E_MODEL_NOT_FOUND,
                                       "model \"%s\" was deleted during its checkpoint",
                                       model->name);
        } else {
            result = install(temporary, path, prev_path, error);
        }
        paramd__model_release(current);
        if (checkpointer)
            pthread_mutex_unlock(&checkpointer->files_lock);
    }
    double seconds = paramd__metrics_now() - started;
    if (result != PARAMD_E_MODEL_NOT_FOUND)
        record_outcome(model, result, error, &shot, bytes, seconds);
    if (result == PARAMD_OK) {
        paramd__log_info("checkpoint of model \"%s\" written: %s, step %llu, %.1f MiB in %.3f s "
                         "(pushes waited %.3f s for the copy)",
                         model->name, path, (unsigned long long)shot.step,
                         (double)bytes / (1 << 20), seconds, shot.snapshot_seconds);
        if (info_out)
            *info_out = info_json(model, path, &shot, bytes, seconds);
    } else if (result != PARAMD_E_MODEL_NOT_FOUND) {
        paramd__log_error("checkpoint of model \"%s\" failed: %s", model->name, error->message);
    }
    snapshot_free(&shot);
    return result;
}

/* ===========================================================================
 * Loading
 * ========================================================================= */

static int corrupt(paramd__error *error, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int corrupt(paramd__error *error, const char *format, ...)
{
    char message[PARAMD__ERROR_MESSAGE_SIZE];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    return paramd__error_set(error, PARAMD_E_CHECKPOINT_CORRUPT, "%s", message);
}

static int error_code_named(const char *name)
{
    for (int code = -1; code > -100; code--)
        if (strcmp(paramd_error_name(code), name) == 0)
            return code;
    return PARAMD_E_INTERNAL;
}

static bool same_shape(const paramd__safetensors_entry *entry, const paramd__tensor *tensor)
{
    if (tensor->count != tensor->full_count) /* a range: written 1-D */
        return entry->dimension_count == 1 && entry->count == tensor->count;
    if (entry->dimension_count != tensor->dimension_count)
        return false;
    for (int d = 0; d < tensor->dimension_count; d++)
        if (entry->shape[d] != tensor->shape[d])
            return false;
    return true;
}

static int slot_named(const paramd__optimizer_type *type, const char *name)
{
    for (int s = 0; s < type->state_slot_count; s++)
        if (strcmp(type->state_slot_names[s], name) == 0)
            return s;
    return -1;
}

/* Restores one tensor's arrays and counters; returns the file entries used. */
static int load_tensor(paramd__model *model, paramd__tensor *tensor, const json_t *record,
                       const paramd__safetensors_file *file, size_t *used, paramd__error *error)
{
    const json_t *name = json_object_get(record, "name");
    json_int_t step, accumulated_count, noise_draws;
    const json_t *slots = json_object_get(record, "state");
    if (!json_is_string(name) || strcmp(json_string_value(name), tensor->name) != 0 ||
        read_integer(record, "step", &step) || step < 0 ||
        read_integer(record, "accumulated_count", &accumulated_count) ||
        accumulated_count < 0 || read_integer(record, "noise_draws", &noise_draws) ||
        !json_is_array(slots))
        return corrupt(error, "training.tensors[%zu]: not the record of tensor \"%s\"",
                       tensor->position, tensor->name);
    const paramd__safetensors_entry *weights = paramd__safetensors_find(file, tensor->name);
    if (weights == NULL || !same_shape(weights, tensor))
        return corrupt(error, "tensor \"%s\": %s", tensor->name,
                       weights ? "its weights have another shape than the config says"
                               : "no weights in the file");
    memcpy(tensor->values, weights->data, tensor->count * sizeof(float));
    (*used)++;
    const paramd__optimizer_type *type = tensor->optimizer->type;
    bool listed[PARAMD__MAX_STATE_SLOTS] = {false};
    for (size_t k = 0; k < json_array_size(slots); k++) {
        const char *slot_name = json_string_value(json_array_get(slots, k));
        int s = slot_name ? slot_named(type, slot_name) : -1;
        if (s < 0 || listed[s])
            return corrupt(error, "tensor \"%s\": state \"%s\" is not a state of %s (or listed "
                                  "twice)",
                           tensor->name, slot_name ? slot_name : "?", type->name);
        listed[s] = true;
        char key[PARAMD__MAX_NAME_LENGTH + 64];
        snprintf(key, sizeof key, "%s@%s", tensor->name, slot_name);
        const paramd__safetensors_entry *entry = paramd__safetensors_find(file, key);
        if (entry == NULL)
            return corrupt(error, "tensor \"%s\": state \"%s\" is listed but not in the file",
                           tensor->name, slot_name);
        if (tensor->state[s] == NULL) {
            /* A slot kept from an earlier configuration (a schedule that
             * cycled momentum, since removed): hold it again. */
            if (type->state_slot_length == NULL && entry->count != tensor->count)
                return corrupt(error, "tensor \"%s\": state \"%s\" has %zu elements, not %zu",
                               tensor->name, slot_name, entry->count, tensor->count);
            tensor->state[s] = paramd__float_array_alloc(entry->count);
            if (tensor->state[s] == NULL)
                return paramd__error_set(error, PARAMD_E_NO_MEMORY,
                                         "tensor \"%s\": out of memory for state \"%s\"",
                                         tensor->name, slot_name);
            tensor->state_length[s] = entry->count;
            model->memory_bytes += entry->count * sizeof(float);
        }
        if (entry->count != tensor->state_length[s])
            return corrupt(error, "tensor \"%s\": state \"%s\" has %zu elements, the tensor %zu",
                           tensor->name, slot_name, entry->count, tensor->state_length[s]);
        memcpy(tensor->state[s], entry->data, entry->count * sizeof(float));
        (*used)++;
    }
    for (int s = 0; s < type->state_slot_count; s++)
        if (tensor->state[s] && !listed[s])
            return corrupt(error, "tensor \"%s\": the checkpoint lacks its state \"%s\"",
                           tensor->name, type->state_slot_names[s]);
    paramd__tensor_extra *extra = &model->extras[tensor->position];
    if (extra->accumulated) {
        char key[PARAMD__MAX_NAME_LENGTH + 64];
        snprintf(key, sizeof key, "%s@accumulated", tensor->name);
        const paramd__safetensors_entry *entry = paramd__safetensors_find(file, key);
        if (entry == NULL || entry->count != tensor->count)
            return corrupt(error, "tensor \"%s\": no accumulation buffer of %zu elements",
                           tensor->name, tensor->count);
        if (accumulated_count >= model->accumulate.steps)
            return corrupt(error, "tensor \"%s\": %lld gradients in a window of %lld",
                           tensor->name, (long long)accumulated_count,
                           (long long)model->accumulate.steps);
        memcpy(extra->accumulated, entry->data, tensor->count * sizeof(float));
        (*used)++;
    } else if (accumulated_count != 0) {
        return corrupt(error, "tensor \"%s\": accumulated gradients in a model that does not "
                              "accumulate",
                       tensor->name);
    }
    /* Lookahead's slow weights and the averages, with their counts (0 in
     * checkpoints older than them). */
    float *arrays[3] = {extra->slow, extra->ema, extra->swa};
    static const char *const array_names[3] = {"slow", "ema", "swa"};
    for (int a = 0; a < 3; a++) {
        if (arrays[a] == NULL)
            continue;
        char key[PARAMD__MAX_NAME_LENGTH + 64];
        snprintf(key, sizeof key, "%s@%s", tensor->name, array_names[a]);
        const paramd__safetensors_entry *entry = paramd__safetensors_find(file, key);
        if (entry == NULL || entry->count != tensor->count)
            return corrupt(error, "tensor \"%s\": no %s array of %zu elements", tensor->name,
                           array_names[a], tensor->count);
        memcpy(arrays[a], entry->data, tensor->count * sizeof(float));
        (*used)++;
    }
    json_int_t ema_count = 0, swa_count = 0;
    if ((json_object_get(record, "ema_count") && read_integer(record, "ema_count", &ema_count)) ||
        (json_object_get(record, "swa_count") && read_integer(record, "swa_count", &swa_count)) ||
        ema_count < 0 || swa_count < 0)
        return corrupt(error, "tensor \"%s\": bad averaging counts", tensor->name);
    tensor->step = (uint64_t)step;
    extra->accumulated_count = (uint32_t)accumulated_count;
    extra->noise_draws = (uint64_t)noise_draws;
    extra->ema_count = (uint64_t)ema_count;
    extra->swa_count = (uint64_t)swa_count;
    return PARAMD_OK;
}

static int load_training(paramd__model *model, const json_t *training,
                         const paramd__safetensors_file *file, paramd__error *error)
{
    json_int_t step, created;
    const json_t *tensors = json_object_get(training, "tensors");
    if (!json_is_object(training) || read_integer(training, "step", &step) || step < 0 ||
        read_integer(training, "created", &created) || !json_is_array(tensors) ||
        json_array_size(tensors) != model->tensor_count)
        return corrupt(error, "training: needs step, created and one record per tensor");
    size_t used = 0;
    for (size_t i = 0; i < model->tensor_count; i++) {
        int result = load_tensor(model, model->tensors[i], json_array_get(tensors, i), file,
                                 &used, error);
        if (result != PARAMD_OK)
            return result;
    }
    if (used != file->entry_count)
        return corrupt(error, "%zu tensors in the file that the model does not hold",
                       file->entry_count - used);
    const json_t *schedules = json_object_get(training, "schedules");
    if (model->has_schedule) {
        if (!json_is_array(schedules) ||
            json_array_size(schedules) != 1 + model->param_group_count)
            return corrupt(error, "training.schedules: needs %zu running schedules",
                           1 + model->param_group_count);
        for (size_t k = 0; k < 1 + model->param_group_count; k++)
            if (read_schedule(json_array_get(schedules, k), &model->schedules[k]) != 0)
                return corrupt(error, "training.schedules[%zu]: malformed", k);
    } else if (schedules) {
        return corrupt(error, "training.schedules: the config has no schedule");
    }
    const json_t *sam_pending = json_object_get(training, "sam_pending");
    if (model->sam_state && json_is_array(sam_pending)) {
        for (size_t k = 0; k < json_array_size(sam_pending); k++) {
            const char *worker = json_string_value(json_array_get(sam_pending, k));
            if (worker == NULL)
                return corrupt(error, "training.sam_pending[%zu]: not a worker name", k);
            paramd__sam_set_pending(model, worker);
        }
    } else if (sam_pending && !model->sam_state) {
        return corrupt(error, "training.sam_pending: the config's optimizer is not SAM");
    }
    const json_t *lbfgs = json_object_get(training, "lbfgs");
    if (model->lbfgs) {
        if (read_lbfgs(lbfgs, model->lbfgs) != 0)
            return corrupt(error, "training.lbfgs: missing or malformed L-BFGS state");
    } else if (lbfgs) {
        return corrupt(error, "training.lbfgs: the config's optimizer is not LBFGS");
    }
    const json_t *schedule_error = json_object_get(training, "schedule_error");
    if (schedule_error) {
        const char *code = json_string_value(json_object_get(schedule_error, "code"));
        const char *message = json_string_value(json_object_get(schedule_error, "message"));
        if (code == NULL || message == NULL)
            return corrupt(error, "training.schedule_error: needs code and message");
        paramd__error_set(&model->schedule_error, error_code_named(code), "%s", message);
    }
    const json_t *loss_scale = json_object_get(training, "loss_scale");
    if (model->has_loss_scale) {
        double scale;
        json_int_t tracker;
        if (read_real(loss_scale, "scale", &scale) ||
            read_integer(loss_scale, "growth_tracker", &tracker) || !(scale > 0))
            return corrupt(error, "training.loss_scale: needs scale and growth_tracker");
        model->loss_scale.scale = (float)scale;
        model->loss_scale.growth_tracker = (int32_t)tracker;
    } else if (loss_scale) {
        return corrupt(error, "training.loss_scale: the config has no loss scale");
    }
    const json_t *counts = json_object_get(training, "nonfinite_counts");
    json_int_t value;
    if (read_integer(counts, "refused", &value) == 0)
        atomic_store(&model->nonfinite_counts.refused, (uint64_t)value);
    if (read_integer(counts, "skipped", &value) == 0)
        atomic_store(&model->nonfinite_counts.skipped, (uint64_t)value);
    if (read_integer(counts, "zeroed", &value) == 0)
        atomic_store(&model->nonfinite_counts.zeroed, (uint64_t)value);
    if (read_integer(counts, "zeroed_values", &value) == 0)
        atomic_store(&model->nonfinite_counts.zeroed_values, (uint64_t)value);
    if (read_integer(counts, "loss_scale_skipped", &value) == 0)
        atomic_store(&model->nonfinite_counts.loss_scale_skipped, (uint64_t)value);
    atomic_store(&model->step, (uint64_t)step);
    model->created = (time_t)created;
    return PARAMD_OK;
}

static json_t *metadata_json(const paramd__safetensors_file *file, const char *key,
                             paramd__error *error)
{
    const char *text = paramd__safetensors_metadata(file, key);
    if (text == NULL) {
        corrupt(error, "__metadata__ has no \"%s\"", key);
        return NULL;
    }
    json_error_t json_error;
    json_t *value = json_loads(text, JSON_REJECT_DUPLICATES, &json_error);
    if (value == NULL)
        corrupt(error, "__metadata__.%s is not JSON: %s", key, json_error.text);
    return value;
}

/* A checkpoint of a sharded model loads only on the shard that wrote it. */
static int check_shard(const json_t *training, const paramd__server *server, const char *path,
                       paramd__error *error)
{
    const json_t *shard = json_object_get(training, "shard");
    bool sharded_here = server && server->shard_map;
    if (shard == NULL && !sharded_here)
        return PARAMD_OK;
    json_int_t id = -1, version = -1;
    if (shard && (read_integer(shard, "id", &id) || read_integer(shard, "shard_map_version", &version)))
        return corrupt(error, "training.shard: needs id and shard_map_version");
    if (shard && sharded_here && (uint32_t)id == server->shard_id &&
        (uint64_t)version == server->shard_map->version)
        return PARAMD_OK;
    char written[96], here[96];
    if (shard)
        snprintf(written, sizeof written, "shard %lld of shard map version %lld", (long long)id,
                 (long long)version);
    else
        snprintf(written, sizeof written, "a server without a shard map");
    if (sharded_here)
        snprintf(here, sizeof here, "shard %u of shard map version %llu", (unsigned)server->shard_id,
                 (unsigned long long)server->shard_map->version);
    else
        snprintf(here, sizeof here, "a server without a shard map");
    return paramd__error_set(error, PARAMD_E_CHECKPOINT_CORRUPT,
                             "%s was written by %s, and this is %s: start with the same "
                             "--shard-map and --shard-id, or move the file away",
                             path, written, here);
}

int paramd__checkpoint_load_file(const paramd__server *server, const char *path,
                                 paramd__model **model_out, paramd__error *error)
{
    *model_out = NULL;
    paramd__safetensors_file file;
    int result = paramd__safetensors_open(path, &file, error);
    if (result != PARAMD_OK)
        return result;
    json_t *config = NULL, *training = NULL;
    paramd__model *model = NULL;
    const char *format = paramd__safetensors_metadata(&file, "format");
    const char *version = paramd__safetensors_metadata(&file, "format_version");
    const char *name = paramd__safetensors_metadata(&file, "model");
    if (format == NULL || strcmp(format, FORMAT_NAME) != 0 || version == NULL) {
        result = corrupt(error, "not a paramd checkpoint (__metadata__.format is not \"%s\")",
                         FORMAT_NAME);
        goto done;
    }
    if (strcmp(version, FORMAT_VERSION) != 0) {
        result = corrupt(error, "checkpoint format version %.20s; this paramd reads version %s",
                         version, FORMAT_VERSION);
        goto done;
    }
    if (name == NULL || !paramd__model_name_valid(name)) {
        result = corrupt(error, "__metadata__.model is not a valid model name");
        goto done;
    }
    config = metadata_json(&file, "config", error);
    training = config ? metadata_json(&file, "training", error) : NULL;
    if (training == NULL) {
        result = error->code;
        goto done;
    }
    result = check_shard(training, server, path, error);
    if (result != PARAMD_OK)
        goto done;
    paramd__model_spec spec;
    paramd__error spec_error = {0};
    result = paramd__json_parse_model_spec(config, name, &spec, &spec_error);
    if (result == PARAMD_OK && server && server->shard_map) {
        spec.shard_map = server->shard_map;
        spec.shard_id = server->shard_id;
    }
    if (result == PARAMD_OK)
        result = paramd__core_validate_spec(&spec, &spec_error);
    if (result == PARAMD_OK) {
        model = paramd__model_create(&spec, &spec_error);
        if (model == NULL)
            result = spec_error.code;
    }
    paramd__json_model_spec_free(&spec);
    if (result != PARAMD_OK) {
        if (result == PARAMD_E_NO_MEMORY)
            *error = spec_error;
        else
            corrupt(error, "__metadata__.config does not rebuild the model: %s",
                    spec_error.message);
        result = error->code;
        goto done;
    }
    result = load_training(model, training, &file, error);
done:
    json_decref(config);
    json_decref(training);
    paramd__safetensors_close(&file);
    if (result != PARAMD_OK) {
        paramd__model_release(model);
        return result;
    }
    *model_out = model;
    return PARAMD_OK;
}

int paramd__checkpoint_write_file(paramd__model *model, const char *path, const char *prev_path,
                                  json_t **info_out, paramd__error *error)
{
    return checkpoint_to(model, path, prev_path, NULL, info_out, error);
}

/* ===========================================================================
 * The checkpointer
 * ========================================================================= */

static void model_path(const paramd__checkpointer *checkpointer, const char *name,
                       const char *suffix, char *buffer, size_t size)
{
    snprintf(buffer, size, "%s/%s%s", checkpointer->directory, name, suffix);
}

void paramd__checkpointer_init(paramd__checkpointer *checkpointer, paramd__server *server,
                               const char *directory, double interval_seconds)
{
    memset(checkpointer, 0, sizeof *checkpointer);
    checkpointer->server = server;
    snprintf(checkpointer->directory, sizeof checkpointer->directory, "%s", directory);
    checkpointer->interval_seconds = interval_seconds;
    pthread_mutex_init(&checkpointer->write_lock, NULL);
    pthread_mutex_init(&checkpointer->files_lock, NULL);
    pthread_mutex_init(&checkpointer->thread_lock, NULL);
    pthread_cond_init(&checkpointer->wake, NULL);
    server->checkpointer = checkpointer;
}

void paramd__checkpointer_destroy(paramd__checkpointer *checkpointer)
{
    paramd__checkpointer_stop(checkpointer);
    if (checkpointer->server && checkpointer->server->checkpointer == checkpointer)
        checkpointer->server->checkpointer = NULL;
    json_decref(checkpointer->restore_notes);
    checkpointer->restore_notes = NULL;
    pthread_mutex_destroy(&checkpointer->write_lock);
    pthread_mutex_destroy(&checkpointer->files_lock);
    pthread_mutex_destroy(&checkpointer->thread_lock);
    pthread_cond_destroy(&checkpointer->wake);
}

int paramd__checkpoint_model(paramd__checkpointer *checkpointer, paramd__model *model,
                             json_t **info_out, paramd__error *error)
{
    char path[PATH_MAX + 300], prev[PATH_MAX + 300];
    model_path(checkpointer, model->name, CHECKPOINT_SUFFIX, path, sizeof path);
    model_path(checkpointer, model->name, PREV_SUFFIX, prev, sizeof prev);
    pthread_mutex_lock(&checkpointer->write_lock);
    int result = checkpoint_to(model, path, prev, checkpointer, info_out, error);
    pthread_mutex_unlock(&checkpointer->write_lock);
    return result;
}

static bool checkpointer_unchanged(paramd__model *model, uint64_t print)
{
    pthread_mutex_lock(&model->stats->lock);
    bool unchanged = model->stats->checkpoint_time > 0 && model->stats->checkpoint_fingerprint == print;
    pthread_mutex_unlock(&model->stats->lock);
    return unchanged;
}

/* What a model's checkpoint depends on, cheaply: pushes accepted (every
 * change of weights, state, steps, schedules or loss scale comes from one),
 * non-finite refusals (they change counters) and the configuration's JSON
 * (PATCH).  Equal fingerprints mean nothing to write. */
static uint64_t fingerprint(paramd__model *model)
{
    pthread_rwlock_rdlock(&model->config_lock);
    json_t *config = paramd__checkpoint_config_json(model);
    pthread_rwlock_unlock(&model->config_lock);
    char *text = config ? json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(config);
    /* Without the text (out of memory), a fingerprint that never matches. */
    uint64_t crc = text ? crc32(0L, (const Bytef *)text, (uInt)strlen(text))
                        : (uint64_t)atomic_load(&model->stats->checkpoints_ok) + 0x5bd1e995u;
    free(text);
    return crc << 32 ^ (atomic_load(&model->stats->pushes) * 0x9e3779b97f4a7c15ull) ^
           atomic_load(&model->nonfinite_counts.refused);
}

static int checkpoint_models(paramd__checkpointer *checkpointer, bool only_changed,
                             json_t **info_out, paramd__error *error);

int paramd__checkpoint_all(paramd__checkpointer *checkpointer, json_t **info_out,
                           paramd__error *error)
{
    return checkpoint_models(checkpointer, false, info_out, error);
}

static int checkpoint_models(paramd__checkpointer *checkpointer, bool only_changed,
                             json_t **info_out, paramd__error *error)
{
    size_t count = 0;
    paramd__model **models = paramd__registry_list(&checkpointer->server->registry, &count);
    json_t *written = json_array(), *errors = json_array();
    int first = PARAMD_OK;
    for (size_t i = 0; i < count; i++) {
        json_t *info = NULL;
        paramd__error model_error = {0};
        uint64_t print = fingerprint(models[i]);
        if (only_changed && checkpointer_unchanged(models[i], print)) {
            paramd__model_release(models[i]);
            continue;
        }
        int result = paramd__checkpoint_model(checkpointer, models[i], &info, &model_error);
        if (result == PARAMD_OK) {
            pthread_mutex_lock(&models[i]->stats->lock);
            models[i]->stats->checkpoint_fingerprint = print;
            pthread_mutex_unlock(&models[i]->stats->lock);
        }
        if (result == PARAMD_OK) {
            json_array_append_new(written, info);
        } else if (result != PARAMD_E_MODEL_NOT_FOUND) {
            json_array_append_new(errors, json_pack("{s:s,s:s,s:s}", "model", models[i]->name,
                                                    "code", paramd_error_name(result), "message",
                                                    model_error.message));
            if (first == PARAMD_OK) {
                first = result;
                *error = model_error;
            }
        }
        paramd__model_release(models[i]);
    }
    free(models);
    if (info_out)
        *info_out = json_pack("{s:o,s:o}", "checkpoints", written, "errors", errors);
    else {
        json_decref(written);
        json_decref(errors);
    }
    return first;
}

void paramd__checkpoint_forget(paramd__checkpointer *checkpointer, const char *model_name)
{
    char path[PATH_MAX + 300];
    pthread_mutex_lock(&checkpointer->files_lock);
    model_path(checkpointer, model_name, CHECKPOINT_SUFFIX, path, sizeof path);
    bool removed = unlink(path) == 0;
    model_path(checkpointer, model_name, PREV_SUFFIX, path, sizeof path);
    removed |= unlink(path) == 0;
    paramd__error ignored;
    if (removed && fsync_directory(path, &ignored) == PARAMD_OK)
        paramd__log_info("checkpoints of deleted model \"%s\" removed", model_name);
    pthread_mutex_unlock(&checkpointer->files_lock);
}

/* Restore messages wait in checkpointer->restore_notes until
 * paramd__checkpoint_log_restore prints them, so that the server's first log
 * line stays the one with its addresses. */
static void restore_note(paramd__checkpointer *checkpointer, paramd__log_level level,
                         const char *format, ...) __attribute__((format(printf, 3, 4)));

static void restore_note(paramd__checkpointer *checkpointer, paramd__log_level level,
                         const char *format, ...)
{
    char message[2 * PARAMD__ERROR_MESSAGE_SIZE];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    if (checkpointer->restore_notes == NULL)
        checkpointer->restore_notes = json_array();
    if (json_array_append_new(checkpointer->restore_notes,
                              json_pack("[i,s]", (int)level, message)) != 0)
        paramd__log(level, "%s", message); /* out of memory: print it now */
}

void paramd__checkpoint_log_restore(paramd__checkpointer *checkpointer)
{
    size_t index;
    json_t *note;
    json_array_foreach(checkpointer->restore_notes, index, note)
        paramd__log((paramd__log_level)json_integer_value(json_array_get(note, 0)), "%s",
                    json_string_value(json_array_get(note, 1)));
    json_decref(checkpointer->restore_notes);
    checkpointer->restore_notes = NULL;
}

/* Loads M from its checkpoint, or from M.prev by the policy in checkpoint.h. */
static int restore_model(paramd__checkpointer *checkpointer, const char *name,
                         paramd__error *error)
{
    char path[PATH_MAX + 300], prev[PATH_MAX + 300], aside[PATH_MAX + 300];
    model_path(checkpointer, name, CHECKPOINT_SUFFIX, path, sizeof path);
    model_path(checkpointer, name, PREV_SUFFIX, prev, sizeof prev);
    model_path(checkpointer, name, CORRUPT_SUFFIX, aside, sizeof aside);
    double started = paramd__metrics_now();
    paramd__model *model = NULL;
    paramd__error current_error = {0}, prev_error = {0};
    const char *loaded = path;
    bool has_current = access(path, F_OK) == 0;
    const paramd__server *server = checkpointer->server;
    int result = has_current ? paramd__checkpoint_load_file(server, path, &model, &current_error)
                             : PARAMD_E_CHECKPOINT_FAILED;
    if (has_current && result != PARAMD_OK)
        restore_note(checkpointer, PARAMD__LOG_ERROR, "checkpoint %s is damaged and will not be loaded: %s", path,
                          current_error.message);
    if (result != PARAMD_OK && access(prev, F_OK) == 0) {
        result = paramd__checkpoint_load_file(server, prev, &model, &prev_error);
        if (result == PARAMD_OK) {
            loaded = prev;
            if (has_current && rename(path, aside) == 0)
                restore_note(checkpointer, PARAMD__LOG_WARN, "moved the damaged %s aside to %s", path, aside);
            restore_note(checkpointer, PARAMD__LOG_WARN, "model \"%s\" restored from the PREVIOUS checkpoint %s (step %llu): "
                             "%s",
                             name, prev, (unsigned long long)atomic_load(&model->step),
                             has_current ? "the newer one is damaged" : "the newer one is missing");
        } else {
            restore_note(checkpointer, PARAMD__LOG_ERROR, "checkpoint %s is damaged too: %s", prev, prev_error.message);
        }
    } else if (result != PARAMD_OK && has_current) {
        paramd__error_set(&prev_error, PARAMD_E_CHECKPOINT_FAILED, "missing");
    }
    if (result != PARAMD_OK)
        return paramd__error_set(error, result == PARAMD_E_NO_MEMORY ? result
                                                                     : PARAMD_E_CHECKPOINT_CORRUPT,
                                 "cannot restore model \"%s\": %s: %s; %s: %s. Move these files "
                                 "out of the data directory to start without the model",
                                 name, path, has_current ? current_error.message : "missing", prev,
                                 prev_error.message[0] ? prev_error.message : "missing");
    if (strcmp(model->name, name) != 0) {
        paramd__error_set(error, PARAMD_E_CHECKPOINT_CORRUPT,
                          "%s holds model \"%.200s\", not \"%s\"", loaded, model->name, name);
        paramd__model_release(model);
        return error->code;
    }
    result = paramd__registry_add(&checkpointer->server->registry, model, error);
    if (result == PARAMD_OK)
        restore_note(checkpointer, PARAMD__LOG_INFO, "model \"%s\" restored from %s: step %llu, %zu tensors, %zu parameters, "
                         "%.1f MiB in %.3f s",
                         name, loaded, (unsigned long long)atomic_load(&model->step),
                         model->tensor_count, model->parameter_count,
                         (double)model->memory_bytes / (1 << 20), paramd__metrics_now() - started);
    paramd__model_release(model);
    return result;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t length = strlen(text), suffix_length = strlen(suffix);
    return length > suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

int paramd__checkpoint_restore_all(paramd__checkpointer *checkpointer, paramd__error *error)
{
    DIR *directory = opendir(checkpointer->directory);
    if (directory == NULL)
        return paramd__error_set(error, PARAMD_E_CHECKPOINT_FAILED, "--data-dir %s: %s",
                                 checkpointer->directory, strerror(errno));
    char **names = NULL;
    size_t count = 0, capacity = 0;
    int result = PARAMD_OK;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        const char *file = entry->d_name;
        char path[PATH_MAX + 300];
        if ((file[0] == '.' && ends_with(file, ".tmp")) || ends_with(file, PREV_SUFFIX ".link")) {
            snprintf(path, sizeof path, "%s/%s", checkpointer->directory, file);
            if (unlink(path) == 0)
                restore_note(checkpointer, PARAMD__LOG_WARN, "removed %s, a checkpoint left incomplete by a crash", path);
            continue;
        }
        /* M.safetensors and M.safetensors.prev name model M (a model named
         * "x.prev" has x.prev.safetensors, which no other model's files can be). */
        const char *suffix = ends_with(file, CHECKPOINT_SUFFIX) ? CHECKPOINT_SUFFIX
                             : ends_with(file, PREV_SUFFIX)     ? PREV_SUFFIX
                                                                : NULL;
        if (file[0] == '.' || suffix == NULL)
            continue;
        size_t length = strlen(file) - strlen(suffix);
        char name[256];
        if (length == 0 || length >= sizeof name)
            continue;
        memcpy(name, file, length);
        name[length] = '\0';
        if (!paramd__model_name_valid(name))
            continue;
        bool seen = false;
        for (size_t i = 0; i < count && !seen; i++)
            seen = strcmp(names[i], name) == 0;
        if (seen)
            continue;
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 16;
            char **grown = realloc(names, capacity * sizeof *names);
            if (grown == NULL) {
                result = paramd__error_set(error, PARAMD_E_NO_MEMORY, "restore: out of memory");
                break;
            }
            names = grown;
        }
        if ((names[count] = strdup(name)) == NULL) {
            result = paramd__error_set(error, PARAMD_E_NO_MEMORY, "restore: out of memory");
            break;
        }
        count++;
    }
    closedir(directory);
    if (count > 1)
        qsort(names, count, sizeof *names, compare_strings);
    for (size_t i = 0; i < count && result == PARAMD_OK; i++)
        result = restore_model(checkpointer, names[i], error);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return result;
}

static void *checkpoint_thread(void *argument)
{
    paramd__checkpointer *checkpointer = argument;
    pthread_mutex_lock(&checkpointer->thread_lock);
    while (!checkpointer->stopping) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        double seconds = checkpointer->interval_seconds;
        deadline.tv_sec += (time_t)seconds;
        deadline.tv_nsec += (long)((seconds - floor(seconds)) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        int waited = 0;
        while (!checkpointer->stopping && waited != ETIMEDOUT)
            waited = pthread_cond_timedwait(&checkpointer->wake, &checkpointer->thread_lock,
                                            &deadline);
        if (checkpointer->stopping)
            break;
        pthread_mutex_unlock(&checkpointer->thread_lock);
        paramd__error error = {0};
        checkpoint_models(checkpointer, true, NULL, &error);
        pthread_mutex_lock(&checkpointer->thread_lock);
    }
    pthread_mutex_unlock(&checkpointer->thread_lock);
    return NULL;
}

int paramd__checkpointer_start(paramd__checkpointer *checkpointer)
{
    if (checkpointer->interval_seconds <= 0 || checkpointer->thread_running)
        return PARAMD_OK;
    checkpointer->stopping = false;
    if (pthread_create(&checkpointer->thread, NULL, checkpoint_thread, checkpointer) != 0)
        return PARAMD_E_NO_MEMORY;
    checkpointer->thread_running = true;
    return PARAMD_OK;
}

void paramd__checkpointer_stop(paramd__checkpointer *checkpointer)
{
    if (!checkpointer->thread_running)
        return;
    pthread_mutex_lock(&checkpointer->thread_lock);
    checkpointer->stopping = true;
    pthread_cond_signal(&checkpointer->wake);
    pthread_mutex_unlock(&checkpointer->thread_lock);
    pthread_join(checkpointer->thread, NULL);
    checkpointer->thread_running = false;
}
