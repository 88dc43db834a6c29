/*
 * http_bench.c - end-to-end push costs through a running paramd's HTTP API.
 *
 * Part of paramd-bench (--http HOST:PORT).  A minimal keep-alive HTTP/1.1
 * client on a raw socket (benchmark code only: paramd's own front end is
 * libmicrohttpd) creates a scratch model, then measures
 *   - round trips of a small push (16 floats, JSON) on one connection,
 *     with p50 and p99 latency, and with one connection per core;
 *   - large pushes in base64 and in JSON arrays: seconds per push and
 *     Mparams/s, request and reply included.
 * The model is deleted at the end.
 */
#define _GNU_SOURCE
#include "http_bench.h"

#include "base64.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct connection {
    int socket;
    char *buffer; /* response bytes */
    size_t capacity;
} connection;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int connect_to(connection *c, const char *host, int port)
{
    memset(c, 0, sizeof *c);
    c->socket = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (c->socket < 0 || inet_pton(AF_INET, host, &address.sin_addr) != 1 ||
        connect(c->socket, (struct sockaddr *)&address, sizeof address) != 0)
        return -1;
    int one = 1;
    setsockopt(c->socket, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static void disconnect(connection *c)
{
    close(c->socket);
    free(c->buffer);
}

static int send_all(int socket, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t sent = send(socket, data, length, MSG_NOSIGNAL);
        if (sent <= 0)
            return -1;
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* "Authorization: Bearer $PARAMD_TOKEN\r\n" for a server with tokens
 * (docs/SECURITY.md), or empty; set once before any connection. */
static char authorization[320];

/* Sends one request and reads the whole response; returns the status, or -1.
 * *body points into the connection's buffer. */
static int request(connection *c, const char *method, const char *path, const char *body,
                   size_t body_length, const char **response_body, size_t *response_length)
{
    char head[896];
    int head_length = snprintf(head, sizeof head,
                               "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                               "%sContent-Length: %zu\r\n\r\n",
                               method, path, authorization, body_length);
    if (send_all(c->socket, head, (size_t)head_length) != 0 ||
        send_all(c->socket, body, body_length) != 0)
        return -1;
    size_t received = 0, header_end = 0, content_length = 0;
    for (;;) {
        if (c->capacity - received < 65536) {
            c->capacity = c->capacity ? c->capacity * 2 : 1 << 20;
            c->buffer = realloc(c->buffer, c->capacity);
        }
        ssize_t got = recv(c->socket, c->buffer + received, c->capacity - received - 1, 0);
        if (got <= 0)
            return -1;
        received += (size_t)got;
        c->buffer[received] = '\0';
        if (header_end == 0) {
            char *end = strstr(c->buffer, "\r\n\r\n");
            if (end == NULL)
                continue;
            header_end = (size_t)(end - c->buffer) + 4;
            const char *length = strcasestr(c->buffer, "\r\nContent-Length:");
            content_length = length ? strtoull(length + 17, NULL, 10) : 0;
            if (content_length + header_end + 1 > c->capacity) {
                c->capacity = content_length + header_end + 1;
                c->buffer = realloc(c->buffer, c->capacity);
            }
        }
        if (received >= header_end + content_length)
            break;
    }
    if (response_body) {
        *response_body = c->buffer + header_end;
        *response_length = content_length;
    }
    return atoi(c->buffer + 9);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct small_push_job {
    const char *host;
    int port;
    int count;
    double *latencies;
    int failures;
    bool liveness_only; /* GET /livez: the HTTP floor, no JSON and no update */
} small_push_job;

static const char small_body[] =
    "{\"grads\":{\"small\":[0.001,0.002,0.003,0.004,0.005,0.006,0.007,0.008,"
    "0.009,0.010,0.011,0.012,0.013,0.014,0.015,0.016]},\"worker\":\"bench\"}";

static void *small_pushes(void *argument)
{
    small_push_job *job = argument;
    connection c;
    if (connect_to(&c, job->host, job->port) != 0) {
        job->failures = job->count;
        return NULL;
    }
    for (int i = 0; i < job->count; i++) {
        double start = now_seconds();
        int status = job->liveness_only
                         ? request(&c, "GET", "/livez", "", 0, NULL, NULL)
                         : request(&c, "POST", "/v1/models/paramd-bench/push", small_body,
                                   sizeof small_body - 1, NULL, NULL);
        job->latencies[i] = now_seconds() - start;
        job->failures += status != 200;
    }
    disconnect(&c);
    return NULL;
}

static void measure_small(const char *host, int port, int connections, int count,
                          bool liveness_only)
{
    pthread_t threads[16];
    small_push_job jobs[16];
    double start = now_seconds();
    for (int i = 0; i < connections; i++) {
        jobs[i] = (small_push_job){host, port, count, malloc((size_t)count * sizeof(double)), 0,
                                   liveness_only};
        pthread_create(&threads[i], NULL, small_pushes, &jobs[i]);
    }
    double *all = malloc((size_t)(count * connections) * sizeof(double));
    int failures = 0;
    for (int i = 0; i < connections; i++) {
        pthread_join(threads[i], NULL);
        memcpy(all + i * count, jobs[i].latencies, (size_t)count * sizeof(double));
        failures += jobs[i].failures;
        free(jobs[i].latencies);
    }
    double elapsed = now_seconds() - start;
    int total = count * connections;
    qsort(all, (size_t)total, sizeof *all, compare_doubles);
    printf("%-29s %d connection%s: %8.0f requests/s, p50 %6.1f us, p99 %6.1f us%s\n",
           liveness_only ? "GET /livez (HTTP floor)," : "small push (16 floats, JSON),",
           connections, connections > 1 ? "s" : " ", total / elapsed, all[total / 2] * 1e6,
           all[total * 99 / 100] * 1e6, failures ? " (FAILURES)" : "");
    free(all);
}

/* Builds {"grads":{"<tensor>":<floats>}} in the given encoding. */
static char *large_body(const char *tensor, size_t elements, bool base64, size_t *length)
{
    float *values = malloc(elements * sizeof(float));
    for (size_t i = 0; i < elements; i++)
        values[i] = (float)((i * 2654435761u) % 2001) * 1e-6f - 1e-3f;
    size_t capacity = base64 ? paramd_base64_encoded_length(elements * 4) + 128
                             : elements * 18 + 128;
    char *body = malloc(capacity);
    size_t n = (size_t)sprintf(body, "{\"grads\":{\"%s\":", tensor);
    if (base64) {
        n += (size_t)sprintf(body + n, "{\"dtype\":\"float32\",\"b64\":\"");
        paramd_base64_encode(values, elements * 4, body + n);
        n += paramd_base64_encoded_length(elements * 4);
        n += (size_t)sprintf(body + n, "\"}");
    } else {
        body[n++] = '[';
        for (size_t i = 0; i < elements; i++)
            n += (size_t)sprintf(body + n, i ? ",%.9g" : "%.9g", (double)values[i]);
        body[n++] = ']';
    }
    n += (size_t)sprintf(body + n, "}}");
    free(values);
    *length = n;
    return body;
}

static void measure_large(connection *c, const char *tensor, size_t elements, bool base64,
                          int repeats)
{
    size_t length;
    char *body = large_body(tensor, elements, base64, &length);
    double best = 1e30;
    int status = 0;
    size_t reply_length = 0;
    for (int i = 0; i < repeats; i++) {
        const char *reply;
        double start = now_seconds();
        status = request(c, "POST", "/v1/models/paramd-bench/push", body, length, &reply,
                         &reply_length);
        double elapsed = now_seconds() - start;
        if (elapsed < best)
            best = elapsed;
    }
    printf("large push, %9zu floats, %-6s: %7.3f s per push (request %6.1f MB, reply %6.1f MB), "
           "%6.1f Mparams/s%s\n",
           elements, base64 ? "base64" : "JSON", best, (double)length / 1e6,
           (double)reply_length / 1e6, (double)elements / best / 1e6,
           status == 200 ? "" : " (FAILED)");
    free(body);
}

int paramd__http_bench(const char *address, int connections, size_t large_elements)
{
    char host[64];
    const char *colon = strrchr(address, ':');
    if (colon == NULL || (size_t)(colon - address) >= sizeof host) {
        fprintf(stderr, "paramd-bench: --http wants HOST:PORT\n");
        return 2;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    int port = atoi(colon + 1);
    const char *token = getenv("PARAMD_TOKEN");
    if (token && token[0] && strlen(token) < 256)
        snprintf(authorization, sizeof authorization, "Authorization: Bearer %s\r\n", token);
    connection c;
    if (connect_to(&c, host, port) != 0) {
        fprintf(stderr, "paramd-bench: cannot connect to %s\n", address);
        return 1;
    }
    char create[512];
    int create_length = snprintf(create, sizeof create,
                                 "{\"optimizer\":{\"name\":\"AdamW\"},\"tensors\":["
                                 "{\"name\":\"small\",\"shape\":[16]},"
                                 "{\"name\":\"large\",\"shape\":[%zu]},"
                                 "{\"name\":\"medium\",\"shape\":[%zu]}]}",
                                 large_elements, large_elements / 16);
    request(&c, "DELETE", "/v1/models/paramd-bench", "", 0, NULL, NULL);
    int status = request(&c, "PUT", "/v1/models/paramd-bench", create, (size_t)create_length,
                         NULL, NULL);
    if (status != 201) {
        fprintf(stderr, "paramd-bench: creating the scratch model failed (HTTP %d)\n", status);
        disconnect(&c);
        return 1;
    }
    printf("HTTP against %s (AdamW model; every push returns the updated weights)\n", address);
    measure_small(host, port, 1, 20000, true);
    measure_small(host, port, 1, 20000, false);
    if (connections > 1) {
        measure_small(host, port, connections, 10000, true);
        measure_small(host, port, connections, 10000, false);
    }
    measure_large(&c, "large", large_elements, true, 3);
    measure_large(&c, "medium", large_elements / 16, true, 3);
    measure_large(&c, "medium", large_elements / 16, false, 2);
    request(&c, "DELETE", "/v1/models/paramd-bench", "", 0, NULL, NULL);
    disconnect(&c);
    return 0;
}
