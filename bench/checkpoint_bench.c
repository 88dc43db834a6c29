/*
 * checkpoint_bench.c - how long a checkpoint of a large model takes, how
 * long pushes wait for its copy, how long a restore takes, and what the
 * statistics and metrics hooks add to each push (docs/PERFORMANCE.md).
 *
 *   build/checkpoint-bench [DIR] [ELEMENTS]
 *
 * DIR (default build/bench-checkpoints) receives the file, which is removed
 * at the end; ELEMENTS defaults to 64M (2^26) parameters of AdamW.
 */
#define _DEFAULT_SOURCE
#include "checkpoint.h"
#include "json_api.h"
#include "metrics.h"
#include "parallel.h"
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double now(void)
{
    return paramd__metrics_now();
}

static paramd__model *create(paramd__server *server, const char *name, const char *body_text)
{
    json_t *body = json_loads(body_text, 0, NULL);
    paramd__error error = {0};
    json_t *description = paramd__json_create_model(server, name, body, &error);
    json_decref(body);
    if (description == NULL) {
        fprintf(stderr, "create %s: %s\n", name, error.message);
        exit(1);
    }
    json_decref(description);
    return paramd__registry_acquire(&server->registry, name);
}

static void push(paramd__server *server, paramd__model *model, float *grad, size_t count)
{
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = grad, .grad_count = count};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    if (paramd__core_push(server, model, &item, 1, NAN, NAN, &outcome, &error) != PARAMD_OK) {
        fprintf(stderr, "push: %s\n", error.message);
        exit(1);
    }
}

/* Median of n doubles (sorts them). */
static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, compare);
    return values[n / 2];
}

int main(int argc, char **argv)
{
    const char *directory = argc > 1 ? argv[1] : "build/bench-checkpoints";
    size_t elements = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : (size_t)1 << 26;
    mkdir(directory, 0750);
    paramd__parallel_start(0);
    paramd__server server;
    paramd__server_init(&server);

    /* 1. A checkpoint of a large AdamW model, after a push so that the
     * moments are real memory, not zero pages. */
    char body[512];
    snprintf(body, sizeof body,
             "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.001}, \"tensors\": [{\"name\": \"w\","
             " \"shape\": [%zu], \"init\": {\"name\": \"normal\", \"std\": 0.02, \"seed\": 1}}]}",
             elements);
    paramd__model *model = create(&server, "large", body);
    float *grad = malloc(elements * sizeof(float));
    for (size_t i = 0; i < elements; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;
    push(&server, model, grad, elements);
    double push_seconds[5], sampled_seconds[5];
    paramd__stats_set_sample_interval(3600000); /* no sample */
    atomic_store(&model->stats->next_sample_ns, INT64_MAX);
    for (int r = 0; r < 5; r++) {
        double started = now();
        push(&server, model, grad, elements);
        push_seconds[r] = now() - started;
    }
    for (int r = 0; r < 5; r++) {
        atomic_store(&model->stats->next_sample_ns, 0); /* this push is sampled */
        double started = now();
        push(&server, model, grad, elements);
        sampled_seconds[r] = now() - started;
    }
    char path[512], prev[512];
    snprintf(path, sizeof path, "%s/large.safetensors", directory);
    snprintf(prev, sizeof prev, "%s/large.prev.safetensors", directory);
    double total[3], snapshot[3], restore[3];
    long long bytes = 0;
    for (int r = 0; r < 3; r++) {
        json_t *info = NULL;
        paramd__error error = {0};
        if (paramd__checkpoint_write_file(model, path, prev, &info, &error) != PARAMD_OK) {
            fprintf(stderr, "checkpoint: %s\n", error.message);
            return 1;
        }
        total[r] = json_real_value(json_object_get(info, "seconds"));
        snapshot[r] = json_real_value(json_object_get(info, "snapshot_seconds"));
        bytes = json_integer_value(json_object_get(info, "bytes"));
        json_decref(info);
        double started = now();
        paramd__model *restored = NULL;
        if (paramd__checkpoint_load_file(NULL, path, &restored, &error) != PARAMD_OK) {
            fprintf(stderr, "restore: %s\n", error.message);
            return 1;
        }
        restore[r] = now() - started;
        paramd__model_release(restored);
    }
    printf("checkpoint of %zu AdamW parameters: %.1f MiB file; write %.3f s (pushes wait %.3f s "
           "for the copy); restore %.3f s; one push of the model %.3f s, %.3f s when sampled "
           "(medians)\n",
           elements, (double)bytes / (1 << 20), median(total, 3), median(snapshot, 3),
           median(restore, 3), median(push_seconds, 5), median(sampled_seconds, 5));
    unlink(path);
    unlink(prev);
    rmdir(directory);
    paramd__model_release(model);
    free(grad);

    /* 2. The statistics and metrics hooks on the push path: each hook on
     * its own, per call, and a small push with them. */
    paramd__model *small = create(&server, "small",
                                  "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.01},"
                                  " \"tensors\": [{\"name\": \"w\", \"shape\": [1024]}]}");
    float small_grad[1024];
    for (int i = 0; i < 1024; i++)
        small_grad[i] = 0.001f * (float)(i % 7);
    const int calls = 2000000;
    paramd__stats_set_sample_interval(1000000); /* never sampled */
    double started = now();
    for (int i = 0; i < calls; i++) {
        paramd__stats_sample sample;
        paramd__stats_sample_begin(small, &sample);
        paramd__push_outcome outcome = {.step = 1, .lr = 0.01, .grad_norm = NAN};
        paramd__stats_after_push(small, &sample, PARAMD_OK, 1.0, &outcome, NULL, 0);
    }
    double stats_ns = (now() - started) / calls * 1e9;
    started = now();
    for (int i = 0; i < calls; i++)
        paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_PUSH, PARAMD_OK,
                                      1e-4, 4096, 4096);
    double metrics_ns = (now() - started) / calls * 1e9 + 2 * 20; /* + its two clock reads */
    const int pushes = 200000;
    started = now();
    for (int i = 0; i < pushes; i++)
        push(&server, small, small_grad, 1024);
    double push_us = (now() - started) / pushes * 1e6;
    paramd__stats_set_sample_interval(0); /* every push sampled */
    started = now();
    for (int i = 0; i < pushes; i++)
        push(&server, small, small_grad, 1024);
    double sampled_us = (now() - started) / pushes * 1e6;
    printf("per push: statistics hooks %.0f ns, request metrics %.0f ns; a 1024-element SGD push "
           "(core only) %.2f us, %.2f us when every push is sampled\n",
           stats_ns, metrics_ns, push_us, sampled_us);
    paramd__model_release(small);
    paramd__server_destroy(&server);
    paramd__parallel_stop();
    return 0;
}
