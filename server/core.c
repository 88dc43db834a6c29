/* core.c - see core.h. */
#include "core.h"

#include "checkpoint.h"
#include "clip.h"
#include "lbfgs.h"
#include "log.h"
#include "sam.h"
#include "stats.h"
#include "tensor.h"

#include <float.h>
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
    atomic_init(&server->waiting_pushes, 0);
}

void paramd__server_destroy(paramd__server *server)
{
    paramd__registry_destroy(&server->registry);
}

int paramd__core_validate_spec(const paramd__model_spec *spec, paramd__error *error)
{
    int result = paramd__optimizer_config_validate(&spec->optimizer, "optimizer", error);
    if (result == PARAMD_OK)
        result = paramd__clip_config_validate(&spec->clip, error);
    if (result == PARAMD_OK && spec->has_loss_scale)
        result = paramd__loss_scale_config_validate(&spec->loss_scale, error);
    if (result == PARAMD_OK && spec->accumulate.steps != 0)
        result = paramd__accumulate_config_validate(&spec->accumulate, error);
    if (result == PARAMD_OK)
        result = paramd__grad_noise_config_validate(&spec->grad_noise, error);
    if (result == PARAMD_OK && spec->has_loss_scale && spec->nonfinite == PARAMD__NONFINITE_ZERO)
        result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                   "nonfinite: \"zero\" cannot be combined with loss_scale (with "
                                   "a loss scale a non-finite gradient skips the step and backs "
                                   "the scale off)");
    for (size_t g = 0; g < spec->param_group_count && result == PARAMD_OK; g++) {
        char field[48];
        snprintf(field, sizeof field, "param_groups[%zu]", g);
        result = paramd__optimizer_config_validate(&spec->param_groups[g].optimizer, field, error);
    }
    return result;
}

int paramd__core_create_model(paramd__server *server, const paramd__model_spec *spec,
                              paramd__model **model_out, paramd__error *error)
{
    int result = paramd__core_validate_spec(spec, error);
    if (result != PARAMD_OK)
        return result;
    /* Issue 9: a sync round holds up to K - b - 1 waiting pushes, ssp up to
     * K - 1; a model that needs more than --max-waiting-pushes could never
     * take a step.  (Checkpoint restores do not come here: a lowered limit
     * does not stop a server from starting.) */
    const paramd__consistency_config *consistency = &spec->consistency;
    if (server->max_waiting_pushes && consistency->mode != PARAMD__CONSISTENCY_ASYNC) {
        int64_t waiting = consistency->workers - 1 -
                          (consistency->mode == PARAMD__CONSISTENCY_SYNC
                               ? consistency->backup_workers
                               : 0);
        if (waiting > (int64_t)server->max_waiting_pushes)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "consistency.workers: %lld workers in %s mode may need %lld "
                                     "pushes waiting at once, more than this server allows "
                                     "(--max-waiting-pushes %u)",
                                     (long long)consistency->workers,
                                     paramd__consistency_mode_name(consistency->mode),
                                     (long long)waiting, server->max_waiting_pushes);
    }
    /* Refuse a duplicate before allocating what may be gigabytes. */
    paramd__model *existing = paramd__registry_acquire(&server->registry, spec->name);
    if (existing) {
        paramd__model_release(existing);
        return paramd__error_set(error, PARAMD_E_MODEL_EXISTS, "model \"%s\" already exists",
                                 spec->name);
    }
    paramd__model_spec placed = *spec;
    placed.shard_map = server->shard_map;
    placed.shard_id = server->shard_id;
    paramd__model *model = paramd__model_create(&placed, error);
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
    paramd__model *model = NULL;
    int result = paramd__registry_take(&server->registry, name, &model, error);
    if (result == PARAMD_OK) {
        /* Pushes waiting for other workers end now, not at their timeout. */
        paramd__core_push_close(server, model);
        paramd__model_release(model);
        paramd__log_info("model \"%s\" deleted", name);
    }
    /* Issue 8: a deleted model must not come back at the next start. */
    if (result == PARAMD_OK && server->checkpointer)
        paramd__checkpoint_forget(server->checkpointer, name);
    return result;
}

/* Checks the shape of a push (each tensor at most once, lengths) before
 * anything changes.  Finiteness is the non-finite stage's. */
int paramd__core_validate_push(const paramd__model *model, const paramd__tensor_io *items,
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
        if (seen[tensor->position]++)
            result = paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                       "grads.%s: tensor appears more than once in one push",
                                       tensor->name);
        else if (items[i].grad_count != tensor->count)
            result = paramd__error_set(error, PARAMD_E_SHAPE_MISMATCH,
                                       "grads.%s: tensor has %zu elements, got %zu values",
                                       tensor->name, tensor->count, items[i].grad_count);
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

/* Advances every schedule once, as torch calls scheduler.step() after
 * optimizer.step(), under schedule_lock (held by the caller).  All or
 * nothing: the schedules advance in copies, committed only when each step
 * succeeded.  A schedule that cannot advance does not undo the push that
 * just used it (torch's optimizer step before the raising scheduler.step()
 * stands); it refuses every later push. */
static void step_schedules_locked(paramd__model *model, double loss, paramd__schedule *next)
{
    size_t count = 1 + model->param_group_count;
    if (!isnan(loss) || !paramd__schedule_needs_loss(&model->schedule_config)) {
        paramd__error step_error = {0};
        int result = PARAMD_OK;
        for (size_t k = 0; k < count && result == PARAMD_OK; k++) {
            next[k] = model->schedules[k];
            result = paramd__schedule_step(&next[k], loss, &step_error);
        }
        if (result == PARAMD_OK) {
            memcpy(model->schedules, next, count * sizeof *next);
        } else {
            model->schedule_error = step_error;
            paramd__log_warn("model \"%s\": %s; later pushes are refused", model->name,
                             step_error.message);
        }
    }
}

/* Reads the scheduled configurations for this push into configs (1 + group
 * count entries) and, when `advance`, advances the schedules in the same
 * critical section, so concurrent pushes each get their own lr in order.
 * Refuses (changing nothing) once a schedule could not advance. */
static int read_schedules(paramd__model *model, double loss, bool advance,
                          paramd__optimizer_config *configs, paramd__error *error)
{
    size_t count = 1 + model->param_group_count;
    paramd__schedule *next = malloc(count * sizeof *next);
    if (next == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    pthread_mutex_lock(&model->schedule_lock);
    int result = PARAMD_OK;
    if (model->schedule_error.code != PARAMD_OK) {
        *error = model->schedule_error;
        result = error->code;
    } else {
        for (size_t k = 0; k < count; k++) {
            configs[k] = k == 0 ? model->optimizer : model->param_groups[k - 1];
            apply_schedule(&configs[k], &model->schedules[k]);
        }
        if (advance)
            step_schedules_locked(model, loss, next);
    }
    pthread_mutex_unlock(&model->schedule_lock);
    free(next);
    return result;
}

/* Advances the schedules after an accumulating push stepped some tensor. */
static void step_schedules(paramd__model *model, double loss)
{
    size_t count = 1 + model->param_group_count;
    paramd__schedule *next = malloc(count * sizeof *next);
    pthread_mutex_lock(&model->schedule_lock);
    if (next == NULL) {
        paramd__error_set(&model->schedule_error, PARAMD_E_NO_MEMORY,
                          "schedule: out of memory while advancing");
        paramd__log_error("model \"%s\": out of memory advancing its schedule; later pushes "
                          "are refused",
                          model->name);
    } else if (model->schedule_error.code == PARAMD_OK) {
        step_schedules_locked(model, loss, next);
    }
    pthread_mutex_unlock(&model->schedule_lock);
    free(next);
}

/* The gradient of one push item on its way through the pipeline: `values`
 * is what the next stage reads; `writable`, when not NULL, may be written in
 * place (the caller's own buffer when it allowed that, or `owned`, a buffer
 * this push allocated and frees). */
typedef struct push_gradient {
    const float *values;
    float *writable;
    float *owned;
} push_gradient;

/* A buffer the next whole-push stage (unscale, zero) may write item i's
 * gradient into; NULL when memory ran out. */
static float *stage_output(push_gradient *gradient, const paramd__tensor_io *item)
{
    if (gradient->writable == NULL) {
        if (item->grad_writable) {
            gradient->writable = (float *)item->grad; /* the caller's, to overwrite */
        } else {
            gradient->owned = paramd__float_array_alloc(item->tensor->count);
            gradient->writable = gradient->owned;
        }
    }
    return gradient->writable;
}

/* The clipping a push applies to every tensor: the norm coefficient when
 * clipping by total norm, and the reported norm.  Reads only gradients. */
static int prepare_clip(const paramd__model *model, const push_gradient *gradients,
                        const paramd__tensor_io *items, size_t item_count,
                        double client_grad_norm, float *coefficient, double *reported_norm,
                        paramd__error *error)
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
            norms[i] = paramd__clip_norm(gradients[i].values, items[i].grad_count,
                                         clip->norm_type);
        *reported_norm = paramd__clip_total_norm(norms, item_count, clip->norm_type);
        free(norms);
    }
    if (!clip->per_tensor)
        *coefficient = paramd__clip_coefficient(clip->max_norm, *reported_norm);
    return PARAMD_OK;
}

/* Writes tensor's clipped gradient to out (tensor->count floats; may be
 * grad itself) and returns it, or returns grad unchanged when the model does
 * not clip.  Called under the tensor's lock: AGC reads the weights. */
static const float *clip_tensor(const paramd__clip_config *clip, const paramd__tensor *tensor,
                                const float *grad, float coefficient, float *out)
{
    switch (clip->mode) {
    case PARAMD__CLIP_NONE:
        return grad;
    case PARAMD__CLIP_VALUE:
        paramd__clip_value(grad, out, tensor->count, (float)clip->value);
        return out;
    case PARAMD__CLIP_NORM:
        if (clip->per_tensor) {
            double norm = paramd__clip_norm(grad, tensor->count, clip->norm_type);
            coefficient = paramd__clip_coefficient(clip->max_norm, norm);
        }
        paramd__clip_scale(grad, out, tensor->count, coefficient);
        return out;
    case PARAMD__CLIP_AGC:
        paramd__clip_agc(grad, out, tensor->values, tensor->count, tensor->dimension_count,
                         tensor->shape, clip->agc, clip->eps);
        return out;
    }
    return grad;
}

/* The lr a push reports: the scheduled one (configs[0]) or the model's. */
static double push_lr(const paramd__model *model, const paramd__optimizer_config *scheduled)
{
    return paramd__optimizer_config_get(scheduled ? &scheduled[0] : &model->optimizer, "lr");
}

/* Answers a skipped push: the current weights, the current step and lr;
 * no tensor, step or schedule changes. */
static int reply_skipped(paramd__model *model, paramd__tensor_io *items, size_t item_count,
                         const char *reason, paramd__push_outcome *outcome,
                         paramd__error *error)
{
    paramd__optimizer_config *scheduled = NULL;
    if (model->has_schedule) {
        scheduled = malloc((1 + model->param_group_count) * sizeof *scheduled);
        if (scheduled == NULL)
            return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
        int result = read_schedules(model, NAN, false, scheduled, error);
        if (result != PARAMD_OK) {
            free(scheduled);
            return result;
        }
    }
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        pthread_mutex_lock(&tensor->lock);
        if (items[i].weights)
            memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        items[i].accumulated = model->extras[tensor->position].accumulated_count;
        pthread_mutex_unlock(&tensor->lock);
    }
    outcome->skipped = true;
    outcome->skip_reason = reason;
    outcome->step = atomic_load(&model->step);
    outcome->lr = push_lr(model, scheduled);
    free(scheduled);
    return PARAMD_OK;
}

int paramd__core_push(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, double loss, double grad_norm,
                      paramd__push_outcome *outcome, paramd__error *error)
{
    paramd__push_options options = {loss, grad_norm, NAN};
    return paramd__core_push_ex(server, model, items, item_count, &options, outcome, error);
}

/* paramd__core_push_ex under the model's config_lock (read). */
static int push_locked(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                       size_t item_count, const paramd__push_options *options,
                       push_gradient *gradients, paramd__stats_sample *sample,
                       paramd__push_outcome *outcome, paramd__error *error)
{
    if (!isnan(options->loss_scale) && !model->has_loss_scale)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale: model \"%s\" has no loss scale", model->name);
    bool accumulating = paramd__accumulate_enabled(&model->accumulate);
    outcome->accumulate_steps = accumulating ? (uint32_t)model->accumulate.steps : 0;

    /* 1 and 2: unscale, and look for non-finite values. */
    float inv_scale = 1.0f;
    if (model->has_loss_scale) {
        pthread_mutex_lock(&model->loss_scale_lock);
        float scale = isnan(options->loss_scale) ? model->loss_scale.scale
                                                 : (float)options->loss_scale;
        pthread_mutex_unlock(&model->loss_scale_lock);
        inv_scale = paramd__loss_scale_inverse(scale);
    }
    size_t bad_item = item_count, bad_index = 0;
    bool keep_looking = !model->has_loss_scale && model->nonfinite == PARAMD__NONFINITE_ZERO;
    size_t *bad_at = NULL; /* policy zero: each item's first non-finite index */
    if (keep_looking && (bad_at = malloc(item_count * sizeof *bad_at)) == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    for (size_t i = 0; i < item_count; i++) {
        size_t count = items[i].grad_count, bad;
        if (model->has_loss_scale) {
            float *out = stage_output(&gradients[i], &items[i]);
            if (out == NULL) {
                free(bad_at);
                return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
            }
            bad = paramd__loss_scale_unscale(gradients[i].values, out, count, inv_scale);
            gradients[i].values = out;
        } else {
            bad = paramd__find_non_finite(gradients[i].values, count);
        }
        if (bad_at)
            bad_at[i] = bad;
        if (bad < count && bad_item == item_count) {
            bad_item = i;
            bad_index = bad;
        }
        if (bad < count && !keep_looking)
            break;
    }
    if (bad_item < item_count) {
        const paramd__tensor *tensor = items[bad_item].tensor;
        double value = (double)items[bad_item].grad[bad_index];
        if (model->has_loss_scale) {
            pthread_mutex_lock(&model->loss_scale_lock);
            paramd__loss_scale_update(&model->loss_scale, &model->loss_scale_config, true);
            outcome->has_loss_scale = true;
            outcome->loss_scale = model->loss_scale.scale;
            pthread_mutex_unlock(&model->loss_scale_lock);
            atomic_fetch_add(&model->nonfinite_counts.loss_scale_skipped, 1);
            paramd__log_debug("model \"%s\": grads.%s[%zu] is %g after unscaling; step skipped, "
                              "loss scale backed off to %g",
                              model->name, tensor->name, bad_index,
                              (double)gradients[bad_item].values[bad_index],
                              (double)outcome->loss_scale);
            return reply_skipped(model, items, item_count, "loss_scale", outcome, error);
        }
        switch (model->nonfinite) {
        case PARAMD__NONFINITE_ERROR:
            atomic_fetch_add(&model->nonfinite_counts.refused, 1);
            return paramd__error_set(error, PARAMD_E_NON_FINITE,
                                     "grads.%s[%zu]: gradient is %g; nothing was applied "
                                     "(nonfinite policy \"error\")",
                                     tensor->name, bad_index, value);
        case PARAMD__NONFINITE_SKIP:
            atomic_fetch_add(&model->nonfinite_counts.skipped, 1);
            return reply_skipped(model, items, item_count, "nonfinite", outcome, error);
        case PARAMD__NONFINITE_ZERO:
            for (size_t i = 0; i < item_count; i++) {
                if (bad_at[i] == items[i].grad_count)
                    continue;
                float *out = stage_output(&gradients[i], &items[i]);
                if (out == NULL) {
                    free(bad_at);
                    return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
                }
                outcome->zeroed +=
                    paramd__nonfinite_zero(gradients[i].values, out, items[i].grad_count);
                gradients[i].values = out;
            }
            atomic_fetch_add(&model->nonfinite_counts.zeroed, 1);
            atomic_fetch_add(&model->nonfinite_counts.zeroed_values, outcome->zeroed);
            break;
        }
    }
    free(bad_at);

    /* 3: the clipping coefficient, over the whole push. */
    float coefficient;
    double reported_norm;
    int result = prepare_clip(model, gradients, items, item_count, options->grad_norm,
                              &coefficient, &reported_norm, error);
    if (result != PARAMD_OK)
        return result;
    /* Per-tensor stages (clip, noise) write into the gradient's own buffer
     * where it may be written, else into one scratch buffer as large as the
     * largest such tensor, reused tensor by tensor: the callers' gradients
     * stay untouched and nothing is copied for models without those stages. */
    bool transforms = model->clip.mode != PARAMD__CLIP_NONE || model->grad_noise.enabled;
    size_t largest = 0;
    for (size_t i = 0; transforms && i < item_count; i++)
        if (gradients[i].writable == NULL && items[i].tensor->count > largest)
            largest = items[i].tensor->count;
    float *scratch = NULL;
    if (largest > 0 && (scratch = paramd__float_array_alloc(largest)) == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
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
    /* 6 (prepared): the configurations with the scheduled lr.  A push that
     * steps every tensor advances the schedules now; an accumulating one
     * only after it knows that it stepped some tensor. */
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
    bool scaled = options->lr_scale > 0 && options->lr_scale != 1.0;
    if (model->has_schedule || scaled) {
        size_t count = 1 + model->param_group_count;
        scheduled = malloc(count * sizeof *scheduled);
        if (scheduled == NULL) {
            result = paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
            goto done;
        }
        if (model->has_schedule) {
            result = read_schedules(model, options->loss, !accumulating, scheduled, error);
            if (result != PARAMD_OK)
                goto done;
        } else {
            for (size_t k = 0; k < count; k++)
                scheduled[k] = k == 0 ? model->optimizer : model->param_groups[k - 1];
        }
        /* Staleness-aware lr: every configuration's lr times the scale. */
        for (size_t k = 0; scaled && k < count; k++) {
            const paramd__hyperparameter_spec *lr =
                paramd__optimizer_find_hyperparameter(scheduled[k].type, "lr");
            if (lr)
                scheduled[k].values[lr->slot] *= options->lr_scale;
        }
    }
    /* Nothing can fail from here on: the push happens. */
    if (model->has_loss_scale) {
        pthread_mutex_lock(&model->loss_scale_lock);
        paramd__loss_scale_update(&model->loss_scale, &model->loss_scale_config, false);
        outcome->has_loss_scale = true;
        outcome->loss_scale = model->loss_scale.scale;
        pthread_mutex_unlock(&model->loss_scale_lock);
    }
    double noise_stddev = model->grad_noise.enabled
                              ? paramd__grad_noise_stddev(&model->grad_noise,
                                                          atomic_load(&model->step))
                              : 0.0;
    bool stepped = false;
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        paramd__tensor_extra *extra = &model->extras[tensor->position];
        const paramd__optimizer_config *config =
            scheduled ? &scheduled[tensor->param_group + 1] : tensor->optimizer;
        float *out = gradients[i].writable ? gradients[i].writable : scratch;
        pthread_mutex_lock(&tensor->lock);
        if (sample->active) /* issue 8: a sampled push measures norms (stats.h) */
            paramd__stats_sample_gradient(sample, gradients[i].values, tensor->count);
        /* 3 and 4: clip, then noise. */
        const float *grad =
            clip_tensor(&model->clip, tensor, gradients[i].values, coefficient, out);
        if (model->grad_noise.enabled) {
            uint64_t stream = paramd__grad_noise_stream(model->grad_noise.seed, tensor->position,
                                                        extra->noise_draws++);
            paramd__grad_noise_add(grad, out, tensor->count, noise_stddev, stream);
            grad = out;
        }
        /* 5: accumulate; only a full window goes on to the optimizer. */
        bool step = true;
        if (accumulating) {
            paramd__accumulate_add(extra->accumulated, grad, tensor->count,
                                   extra->accumulated_count == 0);
            items[i].accumulated = ++extra->accumulated_count;
            step = extra->accumulated_count == (uint32_t)model->accumulate.steps;
            if (step) {
                paramd__accumulate_finish(extra->accumulated, tensor->count, &model->accumulate);
                grad = extra->accumulated;
                extra->accumulated_count = 0;
            }
        }
        /* 6: the optimizer step, which also writes the reply's weights as
         * it goes (while they are in cache; see paramd__step_arrays).  A
         * stage that changes the weights after the step must copy them
         * itself instead. */
        bool copied = false;
        if (step) {
            bool changes = paramd__after_step_changes_weights(&model->lookahead, &extra->constraint);
            paramd__step_arrays arrays = paramd__tensor_step_arrays(tensor, grad);
            arrays.scratch = step_scratch;
            arrays.weights_out = changes ? NULL : items[i].weights;
            if (sample->active)
                paramd__stats_sample_before_step(sample, tensor);
            tensor->step++;
            paramd__optimizer_step(config, tensor->step, &arrays, tensor->count);
            /* 7 to 9: Lookahead, the tensor's constraint, the averages. */
            paramd__lookahead_apply(&model->lookahead, tensor->step, tensor->values, extra->slow,
                                    tensor->count);
            if (extra->constraint.kind != PARAMD__CONSTRAINT_NONE &&
                paramd__constraint_apply(&extra->constraint, tensor->values, tensor->count,
                                         tensor->dimension_count, tensor->shape) != PARAMD_OK)
                paramd__log_warn("model \"%s\": tensor \"%s\": out of memory for its %s "
                                 "constraint; this step's weights are unconstrained",
                                 model->name, tensor->name,
                                 paramd__constraint_name(extra->constraint.kind));
            paramd__averaging_apply(&model->averaging, tensor->step, tensor->values, extra->ema,
                                    &extra->ema_count, extra->swa, &extra->swa_count,
                                    tensor->count);
            if (sample->active)
                paramd__stats_sample_after_step(sample, model, tensor);
            stepped = true;
            copied = arrays.weights_out != NULL;
        }
        if (items[i].weights && !copied)
            memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
    if (stepped) {
        if (accumulating && model->has_schedule)
            step_schedules(model, options->loss);
        outcome->step = atomic_fetch_add(&model->step, 1) + 1;
    } else {
        outcome->step = atomic_load(&model->step);
    }
    outcome->lr = push_lr(model, scheduled);
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

static int push_ex(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                   size_t item_count, const paramd__push_options *options,
                   paramd__stats_sample *sample, paramd__push_outcome *outcome,
                   paramd__error *error)
{
    memset(outcome, 0, sizeof *outcome);
    outcome->grad_norm = NAN;
    int result = paramd__core_validate_push(model, items, item_count, error);
    if (result != PARAMD_OK)
        return result;
    if (!isnan(options->loss) && !isfinite(options->loss))
        return paramd__error_set(error, PARAMD_E_NON_FINITE, "loss: must be a finite number");
    if (model->spans_shards && model->clip.mode == PARAMD__CLIP_NORM && !model->clip.per_tensor &&
        isnan(options->grad_norm))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_norm: required: model \"%s\" is spread over several "
                                 "shards, so clipping by the total norm needs the norm over all "
                                 "of them, which the client computes (the C and Python clients "
                                 "send it)",
                                 model->name);
    if (!isnan(options->grad_norm) && !(isfinite(options->grad_norm) && options->grad_norm >= 0))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_norm: must be a finite number >= 0");
    if (!isnan(options->loss_scale) &&
        !(options->loss_scale > 0 && options->loss_scale <= FLT_MAX))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale: must be a number > 0 that fits in float32");
    if (model->lbfgs) /* a closure evaluation, not a step: lbfgs.h */
        return paramd__lbfgs_push(model, items, item_count, options->loss, outcome, error);
    bool sam_two_step = model->sam.enabled && !model->sam.momentum;
    if (sam_two_step) { /* an ascent push makes no step: sam.h */
        bool handled;
        int sam_result =
            paramd__sam_ascent(model, items, item_count, options, outcome, &handled, error);
        if (sam_result != PARAMD_OK || handled)
            return sam_result;
    }
    push_gradient *gradients = calloc(item_count, sizeof *gradients);
    if (gradients == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "push: out of memory");
    for (size_t i = 0; i < item_count; i++) {
        gradients[i].values = items[i].grad;
        items[i].accumulated = 0;
    }
    pthread_rwlock_rdlock(&model->config_lock);
    result = push_locked(server, model, items, item_count, options, gradients, sample, outcome,
                         error);
    pthread_rwlock_unlock(&model->config_lock);
    if (result == PARAMD_OK && model->sam.enabled) {
        if (model->sam.momentum)
            paramd__sam_perturb_reply(model, items, item_count);
        outcome->has_sam = true;
        outcome->sam_ascent = false;
    } else if (result != PARAMD_OK && sam_two_step) {
        /* A refused descent changes nothing: the worker still owes it. */
        paramd__sam_set_pending(model, options->worker);
    }
    for (size_t i = 0; i < item_count; i++)
        paramd__float_array_free(gradients[i].owned, items[i].tensor->count);
    free(gradients);
    return result;
}

int paramd__core_push_ex(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                         size_t item_count, const paramd__push_options *options,
                         paramd__push_outcome *outcome, paramd__error *error)
{
    /* Issue 8: statistics of the push (stats.h); norms only on a sampled push. */
    paramd__stats_sample sample;
    paramd__stats_sample_begin(model, &sample);
    int result = push_ex(server, model, items, item_count, options, &sample, outcome, error);
    paramd__stats_after_push(model, &sample, result, options->loss, outcome, items, item_count);
    return result;
}

int paramd__core_pull(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t item_count, uint64_t *step_out, paramd__error *error)
{
    for (size_t i = 0; i < item_count; i++) {
        const paramd__tensor *tensor = items[i].tensor;
        size_t offset = items[i].range_offset, count = paramd__tensor_io_count(&items[i]);
        if (offset > tensor->count || count > tensor->count - offset)
            return paramd__error_set(error, PARAMD_E_BAD_RANGE,
                                     "%s: range [%zu, %zu) is outside the tensor's %zu elements",
                                     tensor->name, offset, offset + count, tensor->count);
    }
    *step_out = atomic_load(&model->step);
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        pthread_mutex_lock(&tensor->lock);
        memcpy(items[i].weights, tensor->values + items[i].range_offset,
               paramd__tensor_io_count(&items[i]) * sizeof(float));
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

/* The after-step arrays by name (after_step.h), or NULL. */
static const float *after_step_array(const paramd__model *model, const paramd__tensor *tensor,
                                     const char *slot)
{
    const paramd__tensor_extra *extra = &model->extras[tensor->position];
    if (strcmp(slot, "ema") == 0)
        return extra->ema;
    if (strcmp(slot, "swa") == 0)
        return extra->swa;
    if (strcmp(slot, "slow") == 0)
        return extra->slow;
    return NULL;
}

int paramd__core_pull_state(paramd__server *server, paramd__model *model, const char *slot,
                            paramd__tensor_io *items, size_t item_count, uint64_t *step_out,
                            paramd__error *error)
{
    for (size_t i = 0; i < item_count; i++) {
        const paramd__tensor *tensor = items[i].tensor;
        if (held_state_slot(tensor, slot) < 0 && after_step_array(model, tensor, slot) == NULL) {
            const paramd__optimizer_type *type = tensor->optimizer->type;
            char held[256] = "";
            for (int s = 0; s < type->state_slot_count; s++)
                if (tensor->state[s]) {
                    strncat(held, held[0] ? ", " : "", sizeof held - strlen(held) - 1);
                    strncat(held, type->state_slot_names[s], sizeof held - strlen(held) - 1);
                }
            static const char *const extras[] = {"ema", "swa", "slow"};
            for (int e = 0; e < 3; e++)
                if (after_step_array(model, tensor, extras[e])) {
                    strncat(held, held[0] ? ", " : "", sizeof held - strlen(held) - 1);
                    strncat(held, extras[e], sizeof held - strlen(held) - 1);
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
        const float *extra = after_step_array(model, tensor, slot);
        int held = extra ? -1 : held_state_slot(tensor, slot);
        size_t length = extra ? tensor->count : tensor->state_length[held];
        memcpy(items[i].weights, extra ? extra : tensor->state[held], length * sizeof(float));
        items[i].weights_count = length;
        pthread_mutex_unlock(&tensor->lock);
    }
    atomic_fetch_add(&server->pulls, 1);
    return PARAMD_OK;
}

void paramd__core_copy_weights(paramd__tensor_io *items, size_t item_count)
{
    for (size_t i = 0; i < item_count; i++) {
        paramd__tensor *tensor = items[i].tensor;
        if (items[i].weights == NULL)
            continue;
        pthread_mutex_lock(&tensor->lock);
        memcpy(items[i].weights, tensor->values, tensor->count * sizeof(float));
        pthread_mutex_unlock(&tensor->lock);
    }
}
