/* stats.c - see stats.h. */
#define _DEFAULT_SOURCE
#include "stats.h"

#include "core.h"
#include "log.h"
#include "tensor.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------- */

static atomic_int_fast64_t sample_interval_ns = 500 * 1000 * 1000;

void paramd__stats_set_sample_interval(unsigned milliseconds)
{
    atomic_store(&sample_interval_ns, (int_fast64_t)milliseconds * 1000 * 1000);
}

paramd__model_stats *paramd__model_stats_create(size_t tensor_count)
{
    paramd__model_stats *stats = calloc(1, sizeof *stats);
    if (stats == NULL)
        return NULL;
    stats->tensors = calloc(tensor_count ? tensor_count : 1, sizeof *stats->tensors);
    if (stats->tensors == NULL) {
        free(stats);
        return NULL;
    }
    stats->tensor_count = tensor_count;
    for (size_t i = 0; i < tensor_count; i++)
        stats->tensors[i] = (paramd__tensor_stats){NAN, NAN, NAN, 0};
    pthread_mutex_init(&stats->lock, NULL);
    stats->loss = stats->loss_ema = stats->lr = stats->grad_norm = stats->update_ratio = NAN;
    stats->grad_norm_source = "none";
    stats->history_time = paramd__metrics_now();
    paramd__histogram_init(&stats->staleness, paramd__staleness_bounds,
                           paramd__staleness_bound_count);
    paramd__histogram_init(&stats->checkpoint_duration, paramd__checkpoint_bounds,
                           paramd__checkpoint_bound_count);
    return stats;
}

void paramd__model_stats_destroy(paramd__model_stats *stats)
{
    if (stats == NULL)
        return;
    pthread_mutex_destroy(&stats->lock);
    free(stats->tensors);
    free(stats);
}

/* ---------------------------------------------------------------------------
 * The push path
 * ------------------------------------------------------------------------- */

static int_fast64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int_fast64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

void paramd__stats_sample_begin(paramd__model *model, paramd__stats_sample *sample)
{
    memset(sample, 0, sizeof *sample);
    paramd__model_stats *stats = model->stats;
    int_fast64_t now = monotonic_ns();
    int_fast64_t due = atomic_load_explicit(&stats->next_sample_ns, memory_order_relaxed);
    /* One push per interval wins the compare-and-swap and is sampled. */
    if (now >= due &&
        atomic_compare_exchange_strong(&stats->next_sample_ns, &due,
                                       now + atomic_load(&sample_interval_ns)))
        sample->active = true;
}

static double sum_of_squares(const float *values, size_t count)
{
    /* Four double accumulators: vectorisable, and exact enough for a norm. */
    double a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        a += (double)values[i] * values[i];
        b += (double)values[i + 1] * values[i + 1];
        c += (double)values[i + 2] * values[i + 2];
        d += (double)values[i + 3] * values[i + 3];
    }
    for (; i < count; i++)
        a += (double)values[i] * values[i];
    return (a + b) + (c + d);
}

/* sum((a[i] - b[i])^2) with the same four accumulators. */
static double sum_of_squared_differences(const float *a, const float *b, size_t count)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        double d0 = (double)a[i] - b[i], d1 = (double)a[i + 1] - b[i + 1];
        double d2 = (double)a[i + 2] - b[i + 2], d3 = (double)a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < count; i++) {
        double d = (double)a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

void paramd__stats_sample_gradient(paramd__stats_sample *sample, const float *grad, size_t count)
{
    double started = paramd__metrics_now();
    double squares = sum_of_squares(grad, count);
    sample->seconds += paramd__metrics_now() - started;
    sample->tensor_grad_norm = sqrt(squares);
    sample->grad_squares += squares;
}

void paramd__stats_sample_before_step(paramd__stats_sample *sample, const paramd__tensor *tensor)
{
    double started = paramd__metrics_now();
    if (sample->before_count < tensor->count) {
        /* Large buffers come from mmap with huge pages (tensor.h), which
         * fault in far faster than malloc's. */
        paramd__float_array_free(sample->before, sample->before_count);
        sample->before = paramd__float_array_alloc(tensor->count);
        sample->before_count = sample->before ? tensor->count : 0;
    }
    if (sample->before)
        memcpy(sample->before, tensor->values, tensor->count * sizeof(float));
    sample->seconds += paramd__metrics_now() - started;
}

void paramd__stats_sample_after_step(paramd__stats_sample *sample, paramd__model *model,
                                     const paramd__tensor *tensor)
{
    if (sample->before == NULL || sample->before_count < tensor->count)
        return;
    double started = paramd__metrics_now();
    double weights = sum_of_squares(tensor->values, tensor->count);
    double update = sum_of_squared_differences(tensor->values, sample->before, tensor->count);
    sample->update_squares += update;
    sample->weight_squares += weights;
    paramd__tensor_stats *record = &model->stats->tensors[tensor->position];
    record->grad_norm = sample->tensor_grad_norm;
    record->update_norm = sqrt(update);
    record->weight_norm = sqrt(weights);
    record->sampled_step = tensor->step;
    sample->seconds += paramd__metrics_now() - started;
}

void paramd__stats_after_push(paramd__model *model, paramd__stats_sample *sample, int result,
                              double loss, const paramd__push_outcome *outcome,
                              const paramd__tensor_io *items, size_t item_count)
{
    paramd__float_array_free(sample->before, sample->before_count);
    sample->before = NULL;
    sample->before_count = 0;
    paramd__model_stats *stats = model->stats;
    if (sample->active && atomic_load(&sample_interval_ns) > 0) {
        /* Hold the next sample back in proportion to what this one cost
         * (an interval of 0 asks for every push, whatever it costs). */
        int_fast64_t later = monotonic_ns() +
                             (int_fast64_t)(sample->seconds * PARAMD__STATS_SAMPLE_DUTY * 1e9);
        int_fast64_t due = atomic_load(&stats->next_sample_ns);
        while (later > due &&
               !atomic_compare_exchange_weak(&stats->next_sample_ns, &due, later)) {
        }
    }
    if (result != PARAMD_OK) {
        /* Non-finite refusals have their own counter (nonfinite_counts). */
        if (result != PARAMD_E_NON_FINITE)
            atomic_fetch_add_explicit(&stats->invalid, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&stats->pushes, 1, memory_order_relaxed);
    bool stepped = !outcome->skipped;
    if (stepped && outcome->accumulate_steps > 0) {
        stepped = false;
        for (size_t i = 0; i < item_count; i++)
            stepped |= items[i].accumulated == outcome->accumulate_steps;
    }
    if (stepped)
        atomic_fetch_add_explicit(&stats->updates, 1, memory_order_relaxed);
    pthread_mutex_lock(&stats->lock);
    if (!isnan(loss)) {
        stats->loss = loss;
        stats->loss_ema = isnan(stats->loss_ema) ? loss
                                                 : (1 - PARAMD__LOSS_EMA_WEIGHT) * stats->loss_ema +
                                                       PARAMD__LOSS_EMA_WEIGHT * loss;
    }
    if (!outcome->skipped)
        stats->lr = outcome->lr;
    if (!isnan(outcome->grad_norm)) {
        stats->grad_norm = outcome->grad_norm;
        stats->grad_norm_source = "clip";
    } else if (sample->active) {
        stats->grad_norm = sqrt(sample->grad_squares);
        stats->grad_norm_source = "sampled";
    }
    if (sample->active && stepped && sample->weight_squares > 0) {
        stats->update_ratio = sqrt(sample->update_squares) / sqrt(sample->weight_squares);
        stats->sampled_step = outcome->step;
    }
    pthread_mutex_unlock(&stats->lock);
}

void paramd__stats_observe_staleness(paramd__model *model, uint64_t staleness)
{
    paramd__histogram_observe(&model->stats->staleness, (double)staleness);
}

/* ---------------------------------------------------------------------------
 * History
 * ------------------------------------------------------------------------- */

/* The lr the next push would use (the schedule's, else the optimizer's). */
static double current_lr(paramd__model *model)
{
    pthread_rwlock_rdlock(&model->config_lock);
    double lr;
    if (model->has_schedule) {
        pthread_mutex_lock(&model->schedule_lock);
        lr = paramd__schedule_lr(&model->schedules[0]);
        pthread_mutex_unlock(&model->schedule_lock);
    } else {
        lr = paramd__optimizer_config_get(&model->optimizer, "lr");
    }
    pthread_rwlock_unlock(&model->config_lock);
    return lr;
}

static void record_point(paramd__model *model, double unix_time, double now)
{
    paramd__model_stats *stats = model->stats;
    double lr = current_lr(model);
    uint64_t pushes = atomic_load(&stats->pushes);
    uint64_t staleness_count = atomic_load(&stats->staleness.count);
    double staleness_sum = paramd__histogram_sum(&stats->staleness);
    pthread_mutex_lock(&stats->lock);
    double elapsed = now - stats->history_time;
    paramd__history_point point = {
        .time = unix_time,
        .step = atomic_load(&model->step),
        .lr = lr,
        .loss = stats->loss,
        .loss_ema = stats->loss_ema,
        .grad_norm = stats->grad_norm,
        .update_ratio = stats->update_ratio,
        .pushes_per_second =
            elapsed > 0 ? (double)(pushes - stats->history_pushes) / elapsed : 0.0,
        .staleness = staleness_count > stats->history_staleness_count
                         ? (staleness_sum - stats->history_staleness_sum) /
                               (double)(staleness_count - stats->history_staleness_count)
                         : NAN,
    };
    size_t index = (stats->history_start + stats->history_count) % PARAMD__HISTORY_LENGTH;
    stats->history[index] = point;
    if (stats->history_count < PARAMD__HISTORY_LENGTH)
        stats->history_count++;
    else
        stats->history_start = (stats->history_start + 1) % PARAMD__HISTORY_LENGTH;
    stats->history_pushes = pushes;
    stats->history_staleness_count = staleness_count;
    stats->history_staleness_sum = staleness_sum;
    stats->history_time = now;
    pthread_mutex_unlock(&stats->lock);
}

void paramd__stats_record_history(paramd__server *server)
{
    size_t count = 0;
    paramd__model **models = paramd__registry_list(&server->registry, &count);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    double unix_time = (double)wall.tv_sec + wall.tv_nsec * 1e-9;
    double now = paramd__metrics_now();
    for (size_t i = 0; i < count; i++) {
        record_point(models[i], unix_time, now);
        paramd__model_release(models[i]);
    }
    free(models);
}

/* A number, or null for NaN and infinities (JSON has neither). */
static json_t *number(double value)
{
    return isfinite(value) ? json_real(value) : json_null();
}

json_t *paramd__stats_history_json(paramd__model *model, double since)
{
    paramd__model_stats *stats = model->stats;
    json_t *time = json_array(), *step = json_array(), *lr = json_array(), *loss = json_array(),
           *loss_ema = json_array(), *grad_norm = json_array(), *ratio = json_array(),
           *throughput = json_array(), *staleness = json_array();
    pthread_mutex_lock(&stats->lock);
    for (size_t k = 0; k < stats->history_count; k++) {
        const paramd__history_point *point =
            &stats->history[(stats->history_start + k) % PARAMD__HISTORY_LENGTH];
        json_int_t milliseconds = (json_int_t)(point->time * 1000.0);
        if ((double)milliseconds <= since)
            continue;
        json_array_append_new(time, json_integer(milliseconds));
        json_array_append_new(step, json_integer((json_int_t)point->step));
        json_array_append_new(lr, number(point->lr));
        json_array_append_new(loss, number(point->loss));
        json_array_append_new(loss_ema, number(point->loss_ema));
        json_array_append_new(grad_norm, number(point->grad_norm));
        json_array_append_new(ratio, number(point->update_ratio));
        json_array_append_new(throughput, number(point->pushes_per_second));
        json_array_append_new(staleness, number(point->staleness));
    }
    pthread_mutex_unlock(&stats->lock);
    /* Columns, one array per series, as plotting code wants them. */
    return json_pack("{s:s,s:f,s:I,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}}", "model",
                     model->name, "interval_seconds", 1.0, "length",
                     (json_int_t)PARAMD__HISTORY_LENGTH, "points", "time_ms", time, "step", step,
                     "lr", lr, "loss", loss, "loss_ema", loss_ema, "grad_norm", grad_norm,
                     "update_ratio", ratio, "pushes_per_second", throughput, "staleness",
                     staleness);
}

/* ---------------------------------------------------------------------------
 * GET /stats
 * ------------------------------------------------------------------------- */

/* min, max, mean and L2 norm of an array, in one pass. */
static json_t *summary(const float *values, size_t count)
{
    double minimum = INFINITY, maximum = -INFINITY, sum = 0, squares = 0;
    for (size_t i = 0; i < count; i++) {
        double value = values[i];
        minimum = value < minimum ? value : minimum;
        maximum = value > maximum ? value : maximum;
        sum += value;
        squares += value * value;
    }
    return json_pack("{s:I,s:o,s:o,s:o,s:o}", "length", (json_int_t)count, "min",
                     number(minimum), "max", number(maximum), "mean",
                     number(count ? sum / (double)count : NAN), "norm", number(sqrt(squares)));
}

/* The largest singular value of a rows x cols matrix by power iteration on
 * W^T W (OpenBLAS sgemv), from a fixed pseudo-random start, until the
 * estimate changes by less than 1e-6 of itself (at most 200 iterations).
 * Returns NAN when memory ran out; *iterations gets the count. */
static double spectral_norm(const float *matrix, size_t rows, size_t cols, int *iterations)
{
    float *v = malloc(cols * sizeof *v), *u = malloc(rows * sizeof *u);
    double estimate = NAN;
    *iterations = 0;
    if (v && u) {
        uint64_t x = 0x9E3779B97F4A7C15ULL;
        for (size_t j = 0; j < cols; j++) {
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27; /* xorshift64 */
            v[j] = (float)((x * 0x2545F4914F6CDD1DULL) >> 40) / (float)(1 << 24) + 0.5f;
        }
        double previous = 0;
        for (int k = 0; k < 200; k++) {
            float nv = cblas_snrm2((int)cols, v, 1);
            if (!(nv > 0)) {
                estimate = 0;
                break;
            }
            cblas_sscal((int)cols, 1.0f / nv, v, 1);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, matrix,
                        (int)cols, v, 1, 0.0f, u, 1); /* u = W v */
            estimate = cblas_snrm2((int)rows, u, 1);    /* ||W v||, v a unit vector */
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)rows, (int)cols, 1.0f, matrix, (int)cols,
                        u, 1, 0.0f, v, 1); /* v = W^T u */
            *iterations = k + 1;
            if (fabs(estimate - previous) <= 1e-6 * estimate)
                break;
            previous = estimate;
        }
    }
    free(v);
    free(u);
    return estimate;
}

static json_t *tensor_json(paramd__model *model, paramd__tensor *tensor)
{
    json_t *shape = json_array();
    for (int d = 0; shape && d < tensor->dimension_count; d++)
        json_array_append_new(shape, json_integer((json_int_t)tensor->shape[d]));
    json_t *state = json_object();
    const paramd__optimizer_type *type = tensor->optimizer->type;
    pthread_mutex_lock(&tensor->lock);
    double weight_norm = sqrt(sum_of_squares(tensor->values, tensor->count));
    for (int s = 0; state && s < type->state_slot_count; s++)
        if (tensor->state[s])
            json_object_set_new(state, type->state_slot_names[s],
                                summary(tensor->state[s], tensor->state_length[s]));
    paramd__tensor_stats record = model->stats->tensors[tensor->position];
    uint64_t step = tensor->step;
    /* A 2-D tensor held whole: a copy for the power iteration, which then
     * runs without holding the tensor's lock. */
    bool matrix = tensor->dimension_count == 2 && tensor->count == tensor->full_count &&
                  tensor->count > 0;
    float *copy = matrix ? malloc(tensor->count * sizeof *copy) : NULL;
    if (copy)
        memcpy(copy, tensor->values, tensor->count * sizeof *copy);
    pthread_mutex_unlock(&tensor->lock);
    double spectral = NAN;
    int iterations = 0;
    if (copy)
        spectral = spectral_norm(copy, (size_t)tensor->shape[0], (size_t)tensor->shape[1],
                                 &iterations);
    free(copy);
    double ratio = record.weight_norm > 0 ? record.update_norm / record.weight_norm : NAN;
    json_t *entry = json_pack(
        "{s:s,s:o,s:I,s:I,s:o,s:o,s:o,s:o,s:I,s:o}", "name", tensor->name, "shape", shape,
        "numel", (json_int_t)tensor->count, "step", (json_int_t)step, "weight_norm",
        number(weight_norm), "grad_norm", number(record.grad_norm), "update_norm",
        number(record.update_norm), "update_ratio", number(ratio), "sampled_step",
        (json_int_t)record.sampled_step, "state", state);
    if (entry && matrix) {
        json_object_set_new(entry, "spectral_norm", number(spectral));
        json_object_set_new(entry, "spectral_norm_iterations", json_integer(iterations));
    }
    return entry;
}

json_t *paramd__stats_json(paramd__model *model)
{
    paramd__model_stats *stats = model->stats;
    json_t *tensors = json_array();
    for (size_t i = 0; tensors && i < model->tensor_count; i++)
        json_array_append_new(tensors, tensor_json(model, model->tensors[i]));
    double lr = current_lr(model);
    pthread_mutex_lock(&stats->lock);
    json_t *checkpoint = json_pack(
        "{s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o}", "last_seconds",
        stats->checkpoint_time > 0 ? number(stats->checkpoint_seconds) : json_null(),
        "last_snapshot_seconds",
        stats->checkpoint_time > 0 ? number(stats->checkpoint_snapshot_seconds) : json_null(),
        "last_time", stats->checkpoint_time > 0 ? number(stats->checkpoint_time) : json_null(),
        "last_bytes", (json_int_t)stats->checkpoint_bytes, "last_step",
        (json_int_t)stats->checkpoint_step, "written", (json_int_t)atomic_load(&stats->checkpoints_ok),
        "failed", (json_int_t)atomic_load(&stats->checkpoints_failed), "last_error",
        stats->checkpoint_error[0] ? json_string(stats->checkpoint_error) : json_null());
    json_t *result = json_pack(
        "{s:s,s:I,s:o,s:o,s:o,s:o,s:s,s:o,s:I,s:I,s:I,s:I,s:f,s:o,s:o}", "model", model->name,
        "step", (json_int_t)atomic_load(&model->step), "lr", number(lr), "loss",
        number(stats->loss), "loss_ema", number(stats->loss_ema), "grad_norm",
        number(stats->grad_norm), "grad_norm_source", stats->grad_norm_source, "update_ratio",
        number(stats->update_ratio), "sampled_step", (json_int_t)stats->sampled_step, "pushes",
        (json_int_t)atomic_load(&stats->pushes), "updates",
        (json_int_t)atomic_load(&stats->updates), "invalid_pushes",
        (json_int_t)atomic_load(&stats->invalid), "sample_interval_seconds",
        (double)atomic_load(&sample_interval_ns) * 1e-9, "checkpoint", checkpoint, "tensors",
        tensors);
    pthread_mutex_unlock(&stats->lock);
    return result;
}

/* ---------------------------------------------------------------------------
 * The sampler thread
 * ------------------------------------------------------------------------- */

static pthread_t sampler_thread;
static pthread_mutex_t sampler_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sampler_wake = PTHREAD_COND_INITIALIZER;
static bool sampler_running, sampler_stopping;

static void *sampler_main(void *argument)
{
    paramd__server *server = argument;
    pthread_mutex_lock(&sampler_lock);
    while (!sampler_stopping) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
        int waited = 0;
        while (!sampler_stopping && waited != ETIMEDOUT)
            waited = pthread_cond_timedwait(&sampler_wake, &sampler_lock, &deadline);
        if (sampler_stopping)
            break;
        pthread_mutex_unlock(&sampler_lock);
        paramd__stats_record_history(server);
        pthread_mutex_lock(&sampler_lock);
    }
    pthread_mutex_unlock(&sampler_lock);
    return NULL;
}

int paramd__stats_sampler_start(paramd__server *server)
{
    pthread_mutex_lock(&sampler_lock);
    int result = PARAMD_OK;
    if (!sampler_running) {
        sampler_stopping = false;
        if (pthread_create(&sampler_thread, NULL, sampler_main, server) == 0)
            sampler_running = true;
        else
            result = PARAMD_E_NO_MEMORY;
    }
    pthread_mutex_unlock(&sampler_lock);
    return result;
}

void paramd__stats_sampler_stop(void)
{
    pthread_mutex_lock(&sampler_lock);
    bool running = sampler_running;
    sampler_stopping = true;
    pthread_cond_signal(&sampler_wake);
    pthread_mutex_unlock(&sampler_lock);
    if (running)
        pthread_join(sampler_thread, NULL);
    sampler_running = false;
}
