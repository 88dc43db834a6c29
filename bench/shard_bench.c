/*
 * shard_bench.c - paramd-shard-bench: PUSHPULL throughput of the C client
 * library against one paramd or a sharded service, as a user's worker sees
 * it (build/paramd-shard-bench; bench/shard-bench.sh runs it over 1, 2 and
 * 3 shards and one unsharded server).
 *
 *   paramd-shard-bench (--shard-map FILE | --tcp HOST:PORT) [--tensors N]
 *                      [--elements E] [--rounds R] [--optimizer NAME]
 *                      [--clip MAX_NORM] [--dtype float32|float16]
 *
 * It creates a model of N tensors of E float32 elements (default 4 of
 * 4194304) with the optimizer (default SGD with momentum), runs R rounds
 * (default 20, after 2 unmeasured) of one pushpull of every tensor, and
 * prints one JSON line: rounds per second, the gradient and weight bytes
 * moved per second, and the median round's time.  The model is deleted at
 * the end.  Only the public API is used.
 */
#define _POSIX_C_SOURCE 200809L
#include <paramd/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int usage(void)
{
    fprintf(stderr, "usage: paramd-shard-bench (--shard-map FILE | --tcp HOST:PORT) "
                    "[--tensors N] [--elements E] [--rounds R] [--optimizer NAME] "
                    "[--clip MAX_NORM] [--dtype float32|float16]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *map = NULL, *tcp = NULL, *optimizer = "SGD", *clip = NULL;
    long tensors = 4, elements = 4194304, rounds = 20;
    int dtype = PARAMD_DTYPE_FLOAT32;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            return usage();
        i++;
        if (strcmp(option, "--shard-map") == 0)
            map = value;
        else if (strcmp(option, "--tcp") == 0)
            tcp = value;
        else if (strcmp(option, "--tensors") == 0)
            tensors = atol(value);
        else if (strcmp(option, "--elements") == 0)
            elements = atol(value);
        else if (strcmp(option, "--rounds") == 0)
            rounds = atol(value);
        else if (strcmp(option, "--optimizer") == 0)
            optimizer = value;
        else if (strcmp(option, "--clip") == 0)
            clip = value;
        else if (strcmp(option, "--dtype") == 0)
            dtype = strcmp(value, "float16") == 0 ? PARAMD_DTYPE_FLOAT16 : PARAMD_DTYPE_FLOAT32;
        else
            return usage();
    }
    if ((map == NULL) == (tcp == NULL) || tensors < 1 || tensors > 64 || elements < 1 ||
        rounds < 1)
        return usage();
    int error;
    paramd_client *c;
    if (map) {
        c = paramd_connect_shard_map(map, 120000, &error);
    } else {
        char host[256];
        const char *colon = strrchr(tcp, ':');
        if (colon == NULL || (size_t)(colon - tcp) >= sizeof host)
            return usage();
        memcpy(host, tcp, (size_t)(colon - tcp));
        host[colon - tcp] = '\0';
        c = paramd_connect(host, atoi(colon + 1), 120000, &error);
    }
    if (error != PARAMD_OK) {
        fprintf(stderr, "paramd-shard-bench: %s\n", paramd_client_errstr(c));
        return 1;
    }
    /* The model: tensors t0..tN-1, zero weights. */
    size_t body_size = 256 + 64 * (size_t)tensors;
    char *body = malloc(body_size);
    int used = snprintf(body, body_size, "{\"optimizer\": {\"name\": \"%s\", \"lr\": 0.001%s}, ",
                        optimizer, strcmp(optimizer, "SGD") == 0 ? ", \"momentum\": 0.9" : "");
    if (clip)
        used += snprintf(body + used, body_size - used, "\"clip\": {\"max_norm\": %s}, ", clip);
    used += snprintf(body + used, body_size - used, "\"tensors\": [");
    for (long t = 0; t < tensors; t++)
        used += snprintf(body + used, body_size - used, "%s{\"name\": \"t%ld\", \"shape\": [%ld]}",
                         t ? ", " : "", t, elements);
    snprintf(body + used, body_size - used, "]}");
    paramd_delete_model(c, "shard_bench");
    if (paramd_create_model(c, "shard_bench", body, NULL) != PARAMD_OK) {
        fprintf(stderr, "paramd-shard-bench: create: %s\n", paramd_client_errstr(c));
        return 1;
    }
    free(body);
    float *grads = malloc((size_t)tensors * (size_t)elements * sizeof(float));
    float *weights = malloc((size_t)tensors * (size_t)elements * sizeof(float));
    paramd_push_item *items = calloc((size_t)tensors, sizeof *items);
    char (*names)[32] = calloc((size_t)tensors, sizeof *names);
    if (grads == NULL || weights == NULL || items == NULL || names == NULL)
        return 1;
    for (size_t i = 0; i < (size_t)tensors * (size_t)elements; i++)
        grads[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;
    for (long t = 0; t < tensors; t++) {
        snprintf(names[t], sizeof names[t], "t%ld", t);
        items[t] = (paramd_push_item){names[t], grads + t * elements, weights + t * elements,
                                      (size_t)elements};
    }
    paramd_push_options options = {.dtype = dtype, .worker = "bench"};
    double *times = malloc((size_t)rounds * sizeof *times), total = 0;
    for (long r = -2; r < rounds; r++) {
        double start = now();
        if (paramd_pushpull(c, "shard_bench", items, (size_t)tensors, &options, NULL) !=
            PARAMD_OK) {
            fprintf(stderr, "paramd-shard-bench: pushpull: %s\n", paramd_client_errstr(c));
            return 1;
        }
        double took = now() - start;
        if (r >= 0) {
            times[r] = took;
            total += took;
        }
    }
    qsort(times, (size_t)rounds, sizeof *times, compare_doubles);
    double bytes = 2.0 * (double)tensors * (double)elements *
                   (dtype == PARAMD_DTYPE_FLOAT16 ? 2 : 4) * (double)rounds;
    printf("{\"shards\": %d, \"tensors\": %ld, \"elements\": %ld, \"optimizer\": \"%s\", "
           "\"clip\": %s, \"dtype\": \"%s\", \"rounds\": %ld, \"rounds_per_second\": %.2f, "
           "\"gb_per_second\": %.2f, \"median_ms\": %.1f, \"fastest_ms\": %.1f}\n",
           paramd_shard_count(c), tensors, elements, optimizer, clip ? clip : "null",
           dtype == PARAMD_DTYPE_FLOAT16 ? "float16" : "float32", rounds,
           (double)rounds / total, bytes / total / 1e9, times[rounds / 2] * 1e3,
           times[0] * 1e3);
    paramd_delete_model(c, "shard_bench");
    paramd_close(c);
    free(grads);
    free(weights);
    free(items);
    free(names);
    free(times);
    return 0;
}
