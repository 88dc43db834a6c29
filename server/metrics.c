/* metrics.c - see metrics.h. */
#define _DEFAULT_SOURCE
#include "metrics.h"

#include "core.h"
#include "stats.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------
 * Histograms
 * ------------------------------------------------------------------------- */

const double paramd__latency_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                         0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                         0.5,     1,      2.5,     5,      10};
const size_t paramd__latency_bound_count =
    sizeof paramd__latency_bounds / sizeof paramd__latency_bounds[0];
const double paramd__staleness_bounds[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
const size_t paramd__staleness_bound_count =
    sizeof paramd__staleness_bounds / sizeof paramd__staleness_bounds[0];
const double paramd__checkpoint_bounds[] = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                            2.5,   5,    10,   30,  60,   300};
const size_t paramd__checkpoint_bound_count =
    sizeof paramd__checkpoint_bounds / sizeof paramd__checkpoint_bounds[0];

void paramd__histogram_init(paramd__histogram *histogram, const double *bounds,
                            size_t bound_count)
{
    memset(histogram, 0, sizeof *histogram);
    histogram->bounds = bounds;
    histogram->bound_count =
        bound_count > PARAMD__HISTOGRAM_MAX_BOUNDS ? PARAMD__HISTOGRAM_MAX_BOUNDS : bound_count;
    for (size_t i = 0; i <= PARAMD__HISTOGRAM_MAX_BOUNDS; i++)
        atomic_init(&histogram->buckets[i], 0);
    atomic_init(&histogram->count, 0);
    double zero = 0.0;
    uint64_t bits;
    memcpy(&bits, &zero, sizeof bits);
    atomic_init(&histogram->sum_bits, bits);
}

void paramd__histogram_observe(paramd__histogram *histogram, double value)
{
    size_t bucket = 0;
    while (bucket < histogram->bound_count && value > histogram->bounds[bucket])
        bucket++;
    atomic_fetch_add_explicit(&histogram->buckets[bucket], 1, memory_order_relaxed);
    uint_fast64_t old_bits = atomic_load_explicit(&histogram->sum_bits, memory_order_relaxed);
    for (;;) {
        double sum;
        uint64_t old64 = old_bits, new_bits;
        memcpy(&sum, &old64, sizeof sum);
        sum += value;
        memcpy(&new_bits, &sum, sizeof new_bits);
        if (atomic_compare_exchange_weak_explicit(&histogram->sum_bits, &old_bits, new_bits,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
    atomic_fetch_add_explicit(&histogram->count, 1, memory_order_relaxed);
}

double paramd__histogram_sum(const paramd__histogram *histogram)
{
    uint64_t bits = atomic_load_explicit(&histogram->sum_bits, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof sum);
    return sum;
}

/* ---------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------- */

static const char *const operation_names[PARAMD__OPERATION_COUNT] = {
    [PARAMD__OPERATION_OTHER] = "other",         [PARAMD__OPERATION_PUSH] = "push",
    [PARAMD__OPERATION_PULL] = "pull",           [PARAMD__OPERATION_STATE] = "state",
    [PARAMD__OPERATION_CREATE] = "create",       [PARAMD__OPERATION_DESCRIBE] = "describe",
    [PARAMD__OPERATION_LIST] = "list",           [PARAMD__OPERATION_PATCH] = "patch",
    [PARAMD__OPERATION_DELETE] = "delete",       [PARAMD__OPERATION_CHECKPOINT] = "checkpoint",
    [PARAMD__OPERATION_STATS] = "stats",         [PARAMD__OPERATION_HISTORY] = "history",
    [PARAMD__OPERATION_METRICS] = "metrics",     [PARAMD__OPERATION_DASHBOARD] = "dashboard",
    [PARAMD__OPERATION_HEALTH] = "health",       [PARAMD__OPERATION_HELLO] = "hello",
    [PARAMD__OPERATION_LOOKUP] = "lookup",       [PARAMD__OPERATION_ECHO] = "echo",
};

static const char *const transport_names[PARAMD__TRANSPORT_COUNT] = {"http", "tcp"};

const char *paramd__operation_name(paramd__operation operation)
{
    return operation < PARAMD__OPERATION_COUNT ? operation_names[operation] : "other";
}

/* Process-wide: zero-initialised statics, atomics from the first request. */
static atomic_uint_fast64_t request_counts[PARAMD__TRANSPORT_COUNT][PARAMD__OPERATION_COUNT]
                                          [PARAMD__METRICS_STATUS_COUNT];
static atomic_uint_fast64_t bytes_received[PARAMD__TRANSPORT_COUNT];
static atomic_uint_fast64_t bytes_sent[PARAMD__TRANSPORT_COUNT];
static paramd__histogram push_latency[PARAMD__TRANSPORT_COUNT];
static pthread_once_t push_latency_once = PTHREAD_ONCE_INIT;

static void push_latency_init(void)
{
    for (int t = 0; t < PARAMD__TRANSPORT_COUNT; t++)
        paramd__histogram_init(&push_latency[t], paramd__latency_bounds,
                               paramd__latency_bound_count);
}

static size_t status_index(int status)
{
    if (status > 0 || -status >= PARAMD__METRICS_STATUS_COUNT)
        return (size_t)-PARAMD_E_INTERNAL;
    return (size_t)-status;
}

void paramd__metrics_count_request(paramd__transport transport, paramd__operation operation,
                                   int status, double seconds, uint64_t bytes_in,
                                   uint64_t bytes_out)
{
    if (transport >= PARAMD__TRANSPORT_COUNT)
        return;
    if (operation >= PARAMD__OPERATION_COUNT)
        operation = PARAMD__OPERATION_OTHER;
    atomic_fetch_add_explicit(&request_counts[transport][operation][status_index(status)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_received[transport], bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_sent[transport], bytes_out, memory_order_relaxed);
    if (operation == PARAMD__OPERATION_PUSH) {
        pthread_once(&push_latency_once, push_latency_init);
        paramd__histogram_observe(&push_latency[transport], seconds);
    }
}

uint64_t paramd__metrics_requests(paramd__transport transport, paramd__operation operation,
                                  int status)
{
    return atomic_load(&request_counts[transport][operation][status_index(status)]);
}

double paramd__metrics_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------
 * Exposition
 * ------------------------------------------------------------------------- */

typedef struct text {
    char *data;
    size_t length, capacity;
    bool failed;
} text;

static void append(text *out, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void append(text *out, const char *format, ...)
{
    if (out->failed)
        return;
    for (;;) {
        va_list arguments;
        va_start(arguments, format);
        int needed = vsnprintf(out->data + out->length, out->capacity - out->length, format,
                               arguments);
        va_end(arguments);
        if (needed < 0) {
            out->failed = true;
            return;
        }
        if ((size_t)needed < out->capacity - out->length) {
            out->length += (size_t)needed;
            return;
        }
        size_t capacity = out->capacity * 2 + (size_t)needed + 1;
        char *grown = realloc(out->data, capacity);
        if (grown == NULL) {
            out->failed = true;
            return;
        }
        out->data = grown;
        out->capacity = capacity;
    }
}

/* A sample value: Prometheus spells the special values NaN, +Inf and -Inf. */
static void format_value(char *buffer, size_t size, double value)
{
    if (isnan(value))
        snprintf(buffer, size, "NaN");
    else if (isinf(value))
        snprintf(buffer, size, value > 0 ? "+Inf" : "-Inf");
    else {
        /* The shortest text that reads back as the same double. */
        for (int precision = 1; precision <= 17; precision++) {
            snprintf(buffer, size, "%.*g", precision, value);
            if (strtod(buffer, NULL) == value)
                break;
        }
    }
}

/* A label value with \, " and newline escaped, as the text format wants. */
static void escape_label(char *buffer, size_t size, const char *value)
{
    size_t at = 0;
    for (const char *c = value; *c && at + 3 < size; c++) {
        if (*c == '\\' || *c == '"') {
            buffer[at++] = '\\';
            buffer[at++] = *c;
        } else if (*c == '\n') {
            buffer[at++] = '\\';
            buffer[at++] = 'n';
        } else {
            buffer[at++] = *c;
        }
    }
    buffer[at] = '\0';
}

static void family(text *out, const char *name, const char *type, const char *help)
{
    append(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(text *out, const char *name, const char *labels, double value)
{
    char number[40];
    format_value(number, sizeof number, value);
    append(out, "%s%s%s%s %s\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
           number);
}

/* The samples of one histogram; labels are its other labels ("" for none). */
static void histogram_samples(text *out, const char *name, const char *labels,
                              const paramd__histogram *histogram)
{
    /* Read the count first: buckets and sum then cover at least as many
     * observations, so the cumulative +Inf bucket is never below it. */
    uint64_t cumulative = 0;
    char line_labels[512];
    for (size_t i = 0; i <= histogram->bound_count; i++) {
        cumulative += atomic_load_explicit(&histogram->buckets[i], memory_order_relaxed);
        char bound[40];
        if (i < histogram->bound_count)
            format_value(bound, sizeof bound, histogram->bounds[i]);
        else
            snprintf(bound, sizeof bound, "+Inf");
        snprintf(line_labels, sizeof line_labels, "%s%sle=\"%s\"", labels, labels[0] ? "," : "",
                 bound);
        append(out, "%s_bucket{%s} %llu\n", name, line_labels, (unsigned long long)cumulative);
    }
    char sum_name[128], count_name[128];
    snprintf(sum_name, sizeof sum_name, "%s_sum", name);
    snprintf(count_name, sizeof count_name, "%s_count", name);
    sample(out, sum_name, labels, paramd__histogram_sum(histogram));
    /* _count equals the +Inf bucket, as the format requires. */
    append(out, "%s%s%s%s %llu\n", count_name, labels[0] ? "{" : "", labels,
           labels[0] ? "}" : "", (unsigned long long)cumulative);
}

typedef struct model_view {
    paramd__model *model;
    char label[300]; /* model="..." */
} model_view;

/* A per-model gauge whose value a function reads. */
typedef double (*model_reader)(paramd__model *model);

static double read_step(paramd__model *model) { return (double)atomic_load(&model->step); }
static double read_parameters(paramd__model *model) { return (double)model->parameter_count; }
static double read_memory(paramd__model *model) { return (double)model->memory_bytes; }
static double read_updates(paramd__model *model)
{
    return (double)atomic_load(&model->stats->updates);
}
static double read_pushes(paramd__model *model)
{
    return (double)atomic_load(&model->stats->pushes);
}

static double locked_double(paramd__model *model, size_t offset)
{
    pthread_mutex_lock(&model->stats->lock);
    double value;
    memcpy(&value, (const char *)model->stats + offset, sizeof value);
    pthread_mutex_unlock(&model->stats->lock);
    return value;
}

#define STATS_READER(field)                                                                  \
    static double read_##field(paramd__model *model)                                         \
    {                                                                                        \
        return locked_double(model, offsetof(paramd__model_stats, field));                   \
    }
STATS_READER(lr)
STATS_READER(loss)
STATS_READER(loss_ema)
STATS_READER(grad_norm)
STATS_READER(update_ratio)
STATS_READER(checkpoint_seconds)
STATS_READER(checkpoint_snapshot_seconds)
STATS_READER(checkpoint_time)

static double read_checkpoint_bytes(paramd__model *model)
{
    pthread_mutex_lock(&model->stats->lock);
    double value = (double)model->stats->checkpoint_bytes;
    pthread_mutex_unlock(&model->stats->lock);
    return value;
}

typedef struct model_series {
    const char *name, *type, *help;
    model_reader read;
} model_series;

static const model_series model_gauges[] = {
    {"paramd_model_step", "gauge", "Optimizer steps the model has applied (pushes that stepped)",
     read_step},
    {"paramd_model_parameters", "gauge", "Elements in all of the model's tensors",
     read_parameters},
    {"paramd_model_memory_bytes", "gauge", "Bytes of weights and optimizer state the model holds",
     read_memory},
    {"paramd_updates_applied_total", "counter",
     "Pushes that applied an optimizer step, since this process started", read_updates},
    {"paramd_pushes_total", "counter",
     "Pushes accepted (applied, accumulated or skipped), since this process started",
     read_pushes},
    {"paramd_model_lr", "gauge", "The learning rate the last applied push used", read_lr},
    {"paramd_model_loss", "gauge", "The loss the last push carried", read_loss},
    {"paramd_model_loss_ema", "gauge",
     "Exponential moving average of the pushed loss (weight 0.1 on the newest)", read_loss_ema},
    {"paramd_model_grad_norm", "gauge",
     "L2 norm of the last measured gradient (every push when clipping by norm, else sampled)",
     read_grad_norm},
    {"paramd_model_update_ratio", "gauge",
     "||update|| / ||weights|| of the last sampled push", read_update_ratio},
    {"paramd_checkpoint_last_duration_seconds", "gauge",
     "Wall time of the model's last successful checkpoint", read_checkpoint_seconds},
    {"paramd_checkpoint_last_snapshot_seconds", "gauge",
     "Time pushes to the model waited during its last checkpoint (the memory copy)",
     read_checkpoint_snapshot_seconds},
    {"paramd_checkpoint_last_success_timestamp_seconds", "gauge",
     "Unix time of the model's last successful checkpoint (0: none yet)", read_checkpoint_time},
    {"paramd_checkpoint_last_size_bytes", "gauge", "Size of the model's last checkpoint file",
     read_checkpoint_bytes},
};

static void render_models(text *out, model_view *views, size_t count)
{
    for (size_t g = 0; g < sizeof model_gauges / sizeof model_gauges[0]; g++) {
        family(out, model_gauges[g].name, model_gauges[g].type, model_gauges[g].help);
        for (size_t i = 0; i < count; i++)
            sample(out, model_gauges[g].name, views[i].label,
                   model_gauges[g].read(views[i].model));
    }
    family(out, "paramd_model_loss_scale", "gauge",
           "The dynamic loss scale for the next loss (models with loss_scale)");
    for (size_t i = 0; i < count; i++) {
        paramd__model *model = views[i].model;
        pthread_rwlock_rdlock(&model->config_lock);
        bool has = model->has_loss_scale;
        pthread_rwlock_unlock(&model->config_lock);
        if (!has)
            continue;
        pthread_mutex_lock(&model->loss_scale_lock);
        double scale = model->loss_scale.scale;
        pthread_mutex_unlock(&model->loss_scale_lock);
        sample(out, "paramd_model_loss_scale", views[i].label, scale);
    }
    family(out, "paramd_rejected_gradients_total", "counter",
           "Pushes whose gradients were refused, skipped or zeroed, by reason");
    for (size_t i = 0; i < count; i++) {
        paramd__model *model = views[i].model;
        const paramd__nonfinite_counters *counts = &model->nonfinite_counts;
        struct {
            const char *reason;
            uint64_t value;
        } reasons[] = {
            {"nonfinite_refused", atomic_load(&counts->refused)},
            {"nonfinite_skipped", atomic_load(&counts->skipped)},
            {"nonfinite_zeroed", atomic_load(&counts->zeroed)},
            {"loss_scale_overflow", atomic_load(&counts->loss_scale_skipped)},
            {"invalid", atomic_load(&model->stats->invalid)},
        };
        for (size_t r = 0; r < sizeof reasons / sizeof reasons[0]; r++) {
            char labels[400];
            snprintf(labels, sizeof labels, "%s,reason=\"%s\"", views[i].label, reasons[r].reason);
            sample(out, "paramd_rejected_gradients_total", labels, (double)reasons[r].value);
        }
    }
    family(out, "paramd_checkpoints_total", "counter",
           "Checkpoints of the model written or failed, since this process started");
    for (size_t i = 0; i < count; i++) {
        char labels[400];
        snprintf(labels, sizeof labels, "%s,result=\"ok\"", views[i].label);
        sample(out, "paramd_checkpoints_total", labels,
               (double)atomic_load(&views[i].model->stats->checkpoints_ok));
        snprintf(labels, sizeof labels, "%s,result=\"error\"", views[i].label);
        sample(out, "paramd_checkpoints_total", labels,
               (double)atomic_load(&views[i].model->stats->checkpoints_failed));
    }
    family(out, "paramd_checkpoint_duration_seconds", "histogram",
           "Wall time of successful checkpoints (copy, write, fsync, rename)");
    for (size_t i = 0; i < count; i++)
        histogram_samples(out, "paramd_checkpoint_duration_seconds", views[i].label,
                          &views[i].model->stats->checkpoint_duration);
    family(out, "paramd_push_staleness_steps", "histogram",
           "How many model steps old the weights a push was computed from were");
    for (size_t i = 0; i < count; i++)
        histogram_samples(out, "paramd_push_staleness_steps", views[i].label,
                          &views[i].model->stats->staleness);
}

char *paramd__metrics_render(paramd__server *server, size_t *length)
{
    pthread_once(&push_latency_once, push_latency_init);
    text out = {malloc(16384), 0, 16384, false};
    if (out.data == NULL)
        return NULL;
    out.data[0] = '\0';
    family(&out, "paramd_build_info", "gauge", "Always 1; the labels describe this build");
    char labels[256];
#if defined(__clang__)
    const char *compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    const char *compiler = "gcc " __VERSION__;
#else
    const char *compiler = "unknown";
#endif
    char compiler_label[128];
    escape_label(compiler_label, sizeof compiler_label, compiler);
    snprintf(labels, sizeof labels, "version=\"%s\",compiler=\"%s\"", PARAMD_VERSION_STRING,
             compiler_label);
    sample(&out, "paramd_build_info", labels, 1);
    family(&out, "paramd_start_time_seconds", "gauge", "Unix time this process started");
    sample(&out, "paramd_start_time_seconds", "", (double)server->started);

    family(&out, "paramd_requests_total", "counter",
           "Requests answered, by transport, operation and status (ok or the error code)");
    for (int t = 0; t < PARAMD__TRANSPORT_COUNT; t++)
        for (int o = 0; o < PARAMD__OPERATION_COUNT; o++)
            for (int s = 0; s < PARAMD__METRICS_STATUS_COUNT; s++) {
                uint64_t value = atomic_load(&request_counts[t][o][s]);
                if (value == 0)
                    continue;
                snprintf(labels, sizeof labels, "transport=\"%s\",operation=\"%s\",status=\"%s\"",
                         transport_names[t], operation_names[o],
                         s == 0 ? "ok" : paramd_error_name(-s));
                sample(&out, "paramd_requests_total", labels, (double)value);
            }
    family(&out, "paramd_push_duration_seconds", "histogram",
           "Time from a push request's arrival to its reply, by transport");
    for (int t = 0; t < PARAMD__TRANSPORT_COUNT; t++) {
        snprintf(labels, sizeof labels, "transport=\"%s\"", transport_names[t]);
        histogram_samples(&out, "paramd_push_duration_seconds", labels, &push_latency[t]);
    }
    family(&out, "paramd_received_bytes_total", "counter", "Request bytes received, by transport");
    for (int t = 0; t < PARAMD__TRANSPORT_COUNT; t++) {
        snprintf(labels, sizeof labels, "transport=\"%s\"", transport_names[t]);
        sample(&out, "paramd_received_bytes_total", labels, (double)atomic_load(&bytes_received[t]));
    }
    family(&out, "paramd_sent_bytes_total", "counter", "Reply bytes sent, by transport");
    for (int t = 0; t < PARAMD__TRANSPORT_COUNT; t++) {
        snprintf(labels, sizeof labels, "transport=\"%s\"", transport_names[t]);
        sample(&out, "paramd_sent_bytes_total", labels, (double)atomic_load(&bytes_sent[t]));
    }

    size_t count = 0;
    paramd__model **models = paramd__registry_list(&server->registry, &count);
    family(&out, "paramd_models", "gauge", "Models the server holds");
    sample(&out, "paramd_models", "", (double)count);
    model_view *views = calloc(count ? count : 1, sizeof *views);
    if (views == NULL) {
        out.failed = true;
    } else {
        for (size_t i = 0; i < count; i++) {
            char name[280];
            escape_label(name, sizeof name, models[i]->name);
            views[i].model = models[i];
            snprintf(views[i].label, sizeof views[i].label, "model=\"%s\"", name);
        }
        render_models(&out, views, count);
    }
    free(views);
    for (size_t i = 0; i < count; i++)
        paramd__model_release(models[i]);
    free(models);
    if (out.failed) {
        free(out.data);
        return NULL;
    }
    *length = out.length;
    return out.data;
}
