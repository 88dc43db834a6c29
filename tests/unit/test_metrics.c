/*
 * test_metrics.c - the Prometheus text exposition (format 0.0.4) checked
 * line by line by a validator written from the format's specification, the
 * request counters, histograms, and the statistics a push records: the
 * sampled gradient and update norms against values computed here, the
 * loss and its moving average, staleness, and the /stats summaries.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "json_api.h"
#include "metrics.h"
#include "stats.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * A validator of the text format
 * ------------------------------------------------------------------------- */

static bool metric_name_valid(const char *name, size_t length)
{
    if (length == 0 || !(isalpha((unsigned char)name[0]) || name[0] == '_' || name[0] == ':'))
        return false;
    for (size_t i = 1; i < length; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == ':'))
            return false;
    return true;
}

static bool value_valid(const char *text)
{
    if (!strcmp(text, "NaN") || !strcmp(text, "+Inf") || !strcmp(text, "-Inf"))
        return true;
    char *end;
    strtod(text, &end);
    return end != text && *end == '\0';
}

typedef struct family_state {
    char name[128];
    char type[16];
    bool has_help, has_type;
    double last_bucket_count;
    char last_bucket_labels[256]; /* the labels except le, of the bucket series in progress */
    double last_infinity_count;
} family_state;

/* Parses `labels` (inside the braces); fills `other` with every label but
 * le and *le with le's value (or ""). */
static bool parse_labels(const char *labels, char *other, size_t other_size, char *le,
                         size_t le_size)
{
    other[0] = le[0] = '\0';
    const char *at = labels;
    while (*at) {
        const char *equals = strchr(at, '=');
        if (equals == NULL || !metric_name_valid(at, (size_t)(equals - at)) || equals[1] != '"')
            return false;
        const char *value = equals + 2, *end = value;
        while (*end && *end != '"') {
            if (*end == '\\') {
                if (end[1] != '\\' && end[1] != '"' && end[1] != 'n')
                    return false;
                end++;
            }
            end++;
        }
        if (*end != '"')
            return false;
        if (equals - at == 2 && strncmp(at, "le", 2) == 0)
            snprintf(le, le_size, "%.*s", (int)(end - value), value);
        else
            snprintf(other + strlen(other), other_size - strlen(other), "%.*s,",
                     (int)(end + 1 - at), at);
        at = end + 1;
        if (*at == ',')
            at++;
        else if (*at != '\0')
            return false;
    }
    return true;
}

/* Checks the whole exposition; fails the test at the first bad line. */
static void validate_exposition(const char *text)
{
    family_state family = {0};
    char seen[256][128];
    size_t seen_count = 0;
    const char *line = text;
    int number = 0;
    ck_assert_msg(text[strlen(text) - 1] == '\n', "the exposition must end with a newline");
    while (*line) {
        number++;
        const char *newline = strchr(line, '\n');
        ck_assert_ptr_nonnull(newline);
        char buffer[1024];
        snprintf(buffer, sizeof buffer, "%.*s", (int)(newline - line), line);
        line = newline + 1;
        if (strncmp(buffer, "# HELP ", 7) == 0) {
            char *name = buffer + 7, *space = strchr(name, ' ');
            ck_assert_msg(space && metric_name_valid(name, (size_t)(space - name)), "line %d: %s",
                          number, buffer);
            *space = '\0';
            for (size_t i = 0; i < seen_count; i++)
                ck_assert_msg(strcmp(seen[i], name) != 0, "family %s appears twice", name);
            snprintf(seen[seen_count++], sizeof seen[0], "%.127s", name);
            memset(&family, 0, sizeof family);
            snprintf(family.name, sizeof family.name, "%.127s", name);
            family.has_help = true;
            continue;
        }
        if (strncmp(buffer, "# TYPE ", 7) == 0) {
            char *name = buffer + 7, *space = strchr(name, ' ');
            ck_assert_msg(space != NULL, "line %d", number);
            *space = '\0';
            ck_assert_msg(strcmp(name, family.name) == 0 && !family.has_type,
                          "line %d: TYPE %s without its HELP just before", number, name);
            const char *type = space + 1;
            ck_assert_msg(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                              !strcmp(type, "histogram"),
                          "line %d: type %s", number, type);
            snprintf(family.type, sizeof family.type, "%s", type);
            family.has_type = true;
            if (!strcmp(type, "counter"))
                ck_assert_msg(strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total"),
                              "counter %s must end in _total", name);
            continue;
        }
        ck_assert_msg(buffer[0] != '#', "line %d: unknown comment %s", number, buffer);
        ck_assert_msg(family.has_type, "line %d: a sample before any TYPE", number);
        /* name{labels} value */
        char *brace = strchr(buffer, '{'), *space = strrchr(buffer, ' ');
        ck_assert_msg(space != NULL, "line %d: no value", number);
        size_t name_length = brace && brace < space ? (size_t)(brace - buffer)
                                                    : (size_t)(space - buffer);
        ck_assert_msg(metric_name_valid(buffer, name_length), "line %d: bad name", number);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)name_length, buffer);
        char labels[512] = "";
        if (brace && brace < space) {
            char *close = strrchr(buffer, '}');
            ck_assert_msg(close && close + 1 == space, "line %d: bad labels", number);
            snprintf(labels, sizeof labels, "%.*s", (int)(close - brace - 1), brace + 1);
        }
        ck_assert_msg(value_valid(space + 1), "line %d: bad value %s", number, space + 1);
        char other[512], le[64];
        ck_assert_msg(parse_labels(labels, other, sizeof other, le, sizeof le),
                      "line %d: bad labels %s", number, labels);
        double value = !strcmp(space + 1, "+Inf") ? INFINITY : strtod(space + 1, NULL);
        if (!strcmp(family.type, "histogram")) {
            char bucket[160], sum[160], count[160];
            snprintf(bucket, sizeof bucket, "%s_bucket", family.name);
            snprintf(sum, sizeof sum, "%s_sum", family.name);
            snprintf(count, sizeof count, "%s_count", family.name);
            if (!strcmp(name, bucket)) {
                ck_assert_msg(le[0] != '\0', "line %d: a bucket without le", number);
                if (strcmp(other, family.last_bucket_labels) != 0) {
                    snprintf(family.last_bucket_labels, sizeof family.last_bucket_labels, "%.255s",
                             other);
                    family.last_bucket_count = 0;
                }
                ck_assert_msg(value >= family.last_bucket_count,
                              "line %d: buckets must be cumulative", number);
                family.last_bucket_count = value;
                if (!strcmp(le, "+Inf"))
                    family.last_infinity_count = value;
            } else if (!strcmp(name, count)) {
                ck_assert_msg(value == family.last_infinity_count,
                              "line %d: _count must equal the +Inf bucket", number);
            } else {
                ck_assert_msg(!strcmp(name, sum), "line %d: %s in histogram %s", number, name,
                              family.name);
            }
        } else {
            ck_assert_msg(!strcmp(name, family.name), "line %d: %s in family %s", number, name,
                          family.name);
            ck_assert_msg(le[0] == '\0', "line %d: le outside a histogram", number);
        }
    }
}

/* The value of the sample whose line starts with `prefix` (name{labels}). */
static double sample_value(const char *text, const char *prefix)
{
    const char *at = text;
    size_t length = strlen(prefix);
    while ((at = strstr(at, prefix)) != NULL) {
        if ((at == text || at[-1] == '\n') && at[length] == ' ')
            return strtod(at + length + 1, NULL);
        at += length;
    }
    ck_abort_msg("no sample %s", prefix);
    return NAN;
}

/* ---------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------- */

static paramd__model *create_sgd(paramd__server *server)
{
    json_t *body = json_loads("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.5},"
                              " \"tensors\": [{\"name\": \"w\", \"shape\": [4], \"values\": [1, 2, 3, 4]},"
                              "  {\"name\": \"b\", \"shape\": [2], \"values\": [0.5, -0.5]}]}",
                              0, NULL);
    paramd__error error = {0};
    json_t *description = paramd__json_create_model(server, "m", body, &error);
    ck_assert_msg(description != NULL, "%s", error.message);
    json_decref(description);
    json_decref(body);
    return paramd__registry_acquire(&server->registry, "m");
}

START_TEST(test_exposition_format)
{
    paramd__server server;
    paramd__server_init(&server);
    paramd__model *model = create_sgd(&server);
    paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_PUSH, PARAMD_OK,
                                  0.0003, 100, 200);
    paramd__metrics_count_request(PARAMD__TRANSPORT_TCP, PARAMD__OPERATION_PUSH,
                                  PARAMD_E_SHAPE_MISMATCH, 2.0, 50, 40);
    paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_OTHER, -99, 0, 0, 0);
    paramd__stats_observe_staleness(model, 3);
    paramd__stats_observe_staleness(model, 0);
    size_t length = 0;
    char *text = paramd__metrics_render(&server, &length);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), length);
    validate_exposition(text);
    ck_assert_double_eq(
        sample_value(text, "paramd_requests_total{transport=\"http\",operation=\"push\",status=\"ok\"}"), 1);
    ck_assert_double_eq(sample_value(text, "paramd_requests_total{transport=\"tcp\",operation="
                                           "\"push\",status=\"shape_mismatch\"}"),
                        1);
    ck_assert_double_eq(sample_value(text, "paramd_requests_total{transport=\"http\",operation="
                                           "\"other\",status=\"internal\"}"),
                        1);
    ck_assert_double_eq(
        sample_value(text, "paramd_push_duration_seconds_bucket{transport=\"http\",le=\"0.0005\"}"), 1);
    ck_assert_double_eq(
        sample_value(text, "paramd_push_duration_seconds_bucket{transport=\"tcp\",le=\"1\"}"), 0);
    ck_assert_double_eq(
        sample_value(text, "paramd_push_duration_seconds_bucket{transport=\"tcp\",le=\"2.5\"}"), 1);
    ck_assert_double_eq(sample_value(text, "paramd_received_bytes_total{transport=\"http\"}"), 100);
    ck_assert_double_eq(sample_value(text, "paramd_sent_bytes_total{transport=\"tcp\"}"), 40);
    ck_assert_double_eq(sample_value(text, "paramd_push_staleness_steps_bucket{model=\"m\",le=\"0\"}"), 1);
    ck_assert_double_eq(sample_value(text, "paramd_push_staleness_steps_bucket{model=\"m\",le=\"4\"}"), 2);
    ck_assert_double_eq(sample_value(text, "paramd_push_staleness_steps_sum{model=\"m\"}"), 3);
    ck_assert_double_eq(sample_value(text, "paramd_model_parameters{model=\"m\"}"), 6);
    ck_assert(isnan(sample_value(text, "paramd_model_loss{model=\"m\"}")));
    ck_assert_ptr_nonnull(strstr(text, "paramd_build_info{version=\"" PARAMD_VERSION_STRING "\""));
    free(text);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

START_TEST(test_push_statistics)
{
    paramd__stats_set_sample_interval(0); /* every push is sampled */
    paramd__server server;
    paramd__server_init(&server);
    paramd__model *model = create_sgd(&server);
    float gw[4] = {0.1f, 0.2f, -0.2f, 0.4f}, gb[2] = {1, 1};
    paramd__tensor_io items[2] = {
        {.tensor = model->tensors[0], .grad = gw, .grad_count = 4},
        {.tensor = model->tensors[1], .grad = gb, .grad_count = 2},
    };
    float before[6] = {1, 2, 3, 4, 0.5f, -0.5f};
    paramd__push_options options = {2.0, NAN, NAN};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 2, &options, &outcome, &error),
                     PARAMD_OK);
    options.loss = 1.0;
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 1, &options, &outcome, &error),
                     PARAMD_OK);
    /* Expected from the first tensor's second push: update = -0.5 * g. */
    double update = 0, weights = 0, grad = 0;
    for (int i = 0; i < 4; i++) {
        float after = model->tensors[0]->values[i];
        float previous = before[i] - 0.5f * gw[i];
        update += ((double)after - previous) * ((double)after - previous);
        weights += (double)after * after;
        grad += (double)gw[i] * gw[i];
    }
    paramd__model_stats *stats = model->stats;
    ck_assert_double_eq_tol(stats->grad_norm, sqrt(grad), 1e-12);
    ck_assert_str_eq(stats->grad_norm_source, "sampled");
    ck_assert_double_eq_tol(stats->update_ratio, sqrt(update) / sqrt(weights), 1e-12);
    ck_assert_double_eq_tol(stats->tensors[0].update_norm, sqrt(update), 1e-12);
    ck_assert_uint_eq(stats->tensors[0].sampled_step, 2);
    ck_assert_uint_eq(stats->tensors[1].sampled_step, 1);
    ck_assert_double_eq(stats->loss, 1.0);
    ck_assert_double_eq_tol(stats->loss_ema, 0.9 * 2.0 + 0.1 * 1.0, 1e-15);
    ck_assert_double_eq(stats->lr, 0.5);
    ck_assert_uint_eq(atomic_load(&stats->updates), 2);
    /* A refused push counts as invalid and changes no statistic. */
    items[0].grad_count = 3;
    ck_assert_int_eq(paramd__core_push_ex(&server, model, items, 1, &options, &outcome, &error),
                     PARAMD_E_SHAPE_MISMATCH);
    ck_assert_uint_eq(atomic_load(&stats->invalid), 1);
    ck_assert_uint_eq(atomic_load(&stats->pushes), 2);
    /* /stats: weight norms now, summaries of state (SGD holds none). */
    json_t *json = paramd__stats_json(model);
    json_t *tensor = json_array_get(json_object_get(json, "tensors"), 1);
    double b0 = model->tensors[1]->values[0], b1 = model->tensors[1]->values[1];
    ck_assert_double_eq_tol(json_real_value(json_object_get(tensor, "weight_norm")),
                            sqrt(b0 * b0 + b1 * b1), 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(json, "step")), 2);
    json_decref(json);
    /* History: one point per call, with the series filled in. */
    paramd__stats_record_history(&server);
    paramd__stats_record_history(&server);
    json_t *history = paramd__stats_history_json(model, 0);
    json_t *points = json_object_get(history, "points");
    ck_assert_uint_eq(json_array_size(json_object_get(points, "time_ms")), 2);
    ck_assert_double_eq(json_real_value(json_array_get(json_object_get(points, "loss"), 1)), 1.0);
    ck_assert(json_is_null(json_array_get(json_object_get(points, "staleness"), 0)));
    json_decref(history);
    paramd__stats_set_sample_interval(500);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

/* The state summaries of an optimizer with state, Adafactor's factored
 * arrays (lengths other than the tensor's) included. */
START_TEST(test_state_summaries)
{
    paramd__server server;
    paramd__server_init(&server);
    json_t *body = json_loads("{\"optimizer\": {\"name\": \"Adafactor\", \"lr\": 0.01},"
                              " \"tensors\": [{\"name\": \"w\", \"shape\": [3, 4], \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 1}}]}",
                              0, NULL);
    paramd__error error = {0};
    json_t *description = paramd__json_create_model(&server, "a", body, &error);
    ck_assert_msg(description != NULL, "%s", error.message);
    json_decref(description);
    json_decref(body);
    paramd__model *model = paramd__registry_acquire(&server.registry, "a");
    paramd__tensor *tensor = model->tensors[0];
    float grad[12];
    for (int i = 0; i < 12; i++)
        grad[i] = 0.1f * (float)(i - 5);
    paramd__tensor_io item = {.tensor = tensor, .grad = grad, .grad_count = 12};
    paramd__push_outcome outcome;
    ck_assert_int_eq(paramd__core_push(&server, model, &item, 1, NAN, NAN, &outcome, &error),
                     PARAMD_OK);
    json_t *json = paramd__stats_json(model);
    json_t *state = json_object_get(json_array_get(json_object_get(json, "tensors"), 0), "state");
    ck_assert_uint_gt(json_object_size(state), 0);
    const char *key;
    json_t *summary;
    json_object_foreach(state, key, summary) {
        int s = 0;
        while (strcmp(tensor->optimizer->type->state_slot_names[s], key) != 0)
            s++;
        ck_assert_int_eq(json_integer_value(json_object_get(summary, "length")),
                         (json_int_t)tensor->state_length[s]);
        double maximum = -INFINITY;
        for (size_t i = 0; i < tensor->state_length[s]; i++)
            maximum = fmax(maximum, tensor->state[s][i]);
        ck_assert_double_eq(json_real_value(json_object_get(summary, "max")), maximum);
    }
    json_decref(json);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("metrics");
    TCase *tcase = tcase_create("metrics");
    tcase_add_test(tcase, test_exposition_format);
    tcase_add_test(tcase, test_push_statistics);
    tcase_add_test(tcase, test_state_summaries);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
