/*
 * net_bench.c - `paramd-bench net`: the binary protocol against the
 * physical limit of a round trip on this machine, in one run.
 *
 * Between the same two processes (paramd-bench and a paramd it starts, or
 * one given with --tcp), over the same kind of connections, it measures:
 *   echo      ECHO frames of the same size as the PUSHPULL requests, which
 *             the server's event loop returns untouched: the cost of moving
 *             the bytes through TCP and the server's framing, with no update;
 *   pushpull  PUSHPULL of N float32 gradients per request into an AdamW
 *             model (one N-element tensor per client, so clients do not
 *             queue on one tensor's lock), the fresh weights coming back.
 * Each client is a thread with one connection that keeps --pipeline
 * requests in flight (poll()-driven, so large frames never deadlock on full
 * socket buffers).  Throughput counts request and reply bytes; latency is
 * from a request's first byte sent to its reply's last byte received.
 * The last line of output is one JSON object.
 */
#define _GNU_SOURCE
#include "net_bench.h"

#include "frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------------------
 * A connection with blocking request/reply (setup) and a pipelined run
 * ------------------------------------------------------------------------- */

typedef struct wire_link {
    int socket;
    uint8_t *input;
    size_t input_size, input_capacity;
} wire_link;

static int link_open(wire_link *l, const char *host, int port)
{
    memset(l, 0, sizeof *l);
    l->socket = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (l->socket < 0 || inet_pton(AF_INET, host, &address.sin_addr) != 1 ||
        connect(l->socket, (struct sockaddr *)&address, sizeof address) != 0)
        return -1;
    int one = 1;
    setsockopt(l->socket, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static void link_close(wire_link *l)
{
    if (l->socket >= 0)
        close(l->socket);
    free(l->input);
}

static int write_all(int socket, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(socket, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Reads until one whole frame is at the front of the input; returns its
 * size (the caller drops it with link_consume), or -1. */
static long long link_read_frame(wire_link *l, paramd__frame_header *header)
{
    for (;;) {
        long long frame = paramd__frame_parse(l->input, l->input_size, UINT32_MAX, header, NULL, 0);
        if (frame != 0)
            return frame;
        size_t wanted = l->input_size + (1u << 16);
        if (l->input_size >= PARAMD_FRAME_HEADER_SIZE &&
            PARAMD_FRAME_HEADER_SIZE + (size_t)header->length > wanted)
            wanted = PARAMD_FRAME_HEADER_SIZE + (size_t)header->length;
        if (wanted > l->input_capacity) {
            uint8_t *grown = realloc(l->input, wanted);
            if (grown == NULL)
                return -1;
            l->input = grown;
            l->input_capacity = wanted;
        }
        ssize_t n = read(l->socket, l->input + l->input_size, l->input_capacity - l->input_size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        l->input_size += (size_t)n;
    }
}

static void link_consume(wire_link *l, size_t size)
{
    memmove(l->input, l->input + size, l->input_size - size);
    l->input_size -= size;
}

/* Sends one frame and waits for its reply; fails on an ERROR reply (its
 * message printed). */
static int call(wire_link *l, const uint8_t *frame, size_t size, uint8_t expected_opcode,
                paramd__frame_header *header)
{
    if (write_all(l->socket, frame, size) != 0)
        return -1;
    long long reply = link_read_frame(l, header);
    if (reply < 0)
        return -1;
    if (header->opcode == PARAMD_OP_ERROR) {
        paramd__error_reply error;
        if (paramd__decode_error_reply(l->input + PARAMD_FRAME_HEADER_SIZE, header->length, &error,
                                       NULL, 0) == PARAMD_OK)
            fprintf(stderr, "paramd-bench net: server error %d: %.*s\n", error.code,
                    (int)error.message.length, error.message.data);
        return -1;
    }
    return header->opcode == expected_opcode ? 0 : -1;
}

/* ---------------------------------------------------------------------------
 * Starting a server of our own
 * ------------------------------------------------------------------------- */

typedef struct spawned {
    pid_t pid;
    char data_dir[64];
    int port;
} spawned;

/* Starts the paramd next to this executable on free loopback ports and
 * reads its TCP port from the "listening" line. */
static int spawn_server(spawned *s, int threads)
{
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 16);
    if (length <= 0)
        return -1;
    self[length] = '\0';
    char *slash = strrchr(self, '/');
    strcpy(slash ? slash + 1 : self, "paramd");
    snprintf(s->data_dir, sizeof s->data_dir, "/tmp/paramd-bench-net-XXXXXX");
    if (mkdtemp(s->data_dir) == NULL)
        return -1;
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0)
        return -1;
    char threads_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    s->pid = fork();
    if (s->pid == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        execl(self, self, "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir",
              s->data_dir, "--log-level", "warn", "--threads", threads_text, (char *)NULL);
        _exit(127);
    }
    close(pipe_fds[1]);
    FILE *log = fdopen(pipe_fds[0], "r");
    char line[1024];
    s->port = 0;
    while (log && fgets(line, sizeof line, log)) {
        const char *tcp = strstr(line, "tcp=127.0.0.1:");
        if (tcp) {
            s->port = atoi(tcp + strlen("tcp=127.0.0.1:"));
            break;
        }
    }
    /* The server's later log lines go nowhere: keep reading them on a
     * detached thread would be overkill; closing the pipe would give it
     * SIGPIPE-free EPIPE on write, which paramd ignores. */
    if (log)
        fclose(log);
    return s->port > 0 ? 0 : -1;
}

static void stop_server(spawned *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", s->data_dir);
    if (system(command) != 0)
        fprintf(stderr, "paramd-bench net: could not remove %s\n", s->data_dir);
}

/* ---------------------------------------------------------------------------
 * The pipelined run of one client
 * ------------------------------------------------------------------------- */

typedef struct client_job {
    const char *host;
    int port;
    const uint8_t *request; /* one frame, sent again and again */
    size_t request_size;
    uint8_t reply_opcode;
    int pipeline;
    double seconds;
    /* out */
    double *latencies;       /* seconds, one per reply */
    size_t latency_count, latency_capacity;
    double bytes;            /* request + reply bytes moved */
    double elapsed;
    int failed;
} client_job;

static void record(client_job *job, double latency)
{
    if (job->latency_count == job->latency_capacity) {
        size_t capacity = job->latency_capacity ? 2 * job->latency_capacity : 4096;
        double *grown = realloc(job->latencies, capacity * sizeof *grown);
        if (grown == NULL)
            return;
        job->latencies = grown;
        job->latency_capacity = capacity;
    }
    job->latencies[job->latency_count++] = latency;
}

static void *run_client(void *argument)
{
    client_job *job = argument;
    wire_link l;
    paramd__frame_header header;
    uint8_t hello[64];
    paramd__writer writer;
    paramd__writer_init(&writer, hello, sizeof hello);
    paramd__encode_hello(&writer, 0, 1, 1, "", "paramd-bench");
    if (link_open(&l, job->host, job->port) != 0 ||
        call(&l, hello, writer.size, PARAMD_OP_HELLO | PARAMD_OP_REPLY, &header) != 0) {
        job->failed = 1;
        link_close(&l);
        return NULL;
    }
    link_consume(&l, PARAMD_FRAME_HEADER_SIZE + header.length);
    fcntl(l.socket, F_SETFL, fcntl(l.socket, F_GETFL) | O_NONBLOCK);
    /* The requests form one stream: `pipeline` copies of the frame back to
     * back, cycled through, so that whatever room the window allows goes
     * out in one write. */
    size_t window = (size_t)job->pipeline, size = job->request_size;
    uint8_t *stream = malloc(window * size);
    double *sent_at = calloc(window, sizeof *sent_at);
    if (stream == NULL || sent_at == NULL) {
        job->failed = 1;
        free(stream);
        free(sent_at);
        link_close(&l);
        return NULL;
    }
    for (size_t k = 0; k < window; k++)
        memcpy(stream + k * size, job->request, size);
    uint64_t bytes_sent = 0, received = 0, limit = UINT64_MAX; /* limit: frames to send */
    double start = now_seconds(), deadline = start + job->seconds;
    while (!job->failed) {
        double now = now_seconds();
        if (now >= deadline && limit == UINT64_MAX)
            limit = (bytes_sent + size - 1) / size; /* finish the frame being written */
        uint64_t frames_started = (bytes_sent + size - 1) / size;
        if (limit != UINT64_MAX && received == limit)
            break;
        uint64_t allowed_end = (received + window) * size;
        if (limit != UINT64_MAX && limit * size < allowed_end)
            allowed_end = limit * size;
        bool want_write = bytes_sent < allowed_end;
        struct pollfd poll_fd = {l.socket, (short)(POLLIN | (want_write ? POLLOUT : 0)), 0};
        if (poll(&poll_fd, 1, 1000) < 0 && errno != EINTR) {
            job->failed = 1;
            break;
        }
        if ((poll_fd.revents & POLLOUT) && want_write) {
            size_t offset = (size_t)(bytes_sent % (window * size));
            size_t length = window * size - offset;
            if (length > allowed_end - bytes_sent)
                length = (size_t)(allowed_end - bytes_sent);
            ssize_t n = write(l.socket, stream + offset, length);
            if (n > 0) {
                double at = now_seconds();
                bytes_sent += (uint64_t)n;
                for (uint64_t f = frames_started; f < (bytes_sent + size - 1) / size; f++)
                    sent_at[f % window] = at;
                job->bytes += (double)n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                job->failed = 1;
            }
        }
        if (poll_fd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (l.input_capacity - l.input_size < (1u << 16)) {
                size_t capacity = l.input_capacity * 2 + (1u << 16);
                uint8_t *grown = realloc(l.input, capacity);
                if (grown == NULL) {
                    job->failed = 1;
                    break;
                }
                l.input = grown;
                l.input_capacity = capacity;
            }
            ssize_t n = read(l.socket, l.input + l.input_size, l.input_capacity - l.input_size);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                job->failed = 1;
                break;
            }
            if (n > 0)
                l.input_size += (size_t)n;
            long long frame;
            size_t parsed = 0;
            double at = now_seconds();
            while ((frame = paramd__frame_parse(l.input + parsed, l.input_size - parsed,
                                                UINT32_MAX, &header, NULL, 0)) > 0) {
                if (header.opcode != job->reply_opcode) {
                    fprintf(stderr, "paramd-bench net: unexpected reply opcode 0x%02x\n",
                            header.opcode);
                    job->failed = 1;
                    break;
                }
                record(job, at - sent_at[received % window]);
                received++;
                job->bytes += (double)frame;
                parsed += (size_t)frame;
            }
            if (frame < 0)
                job->failed = 1;
            link_consume(&l, parsed);
        }
    }
    free(stream);
    free(sent_at);
    job->elapsed = now_seconds() - start;
    link_close(&l);
    return NULL;
}

typedef struct phase {
    double bytes_per_s, ops_per_s, p50_us, p99_us;
    int failed;
} phase;

static phase run_phase(const char *host, int port, uint8_t **requests, const size_t *sizes,
                       uint8_t reply_opcode, int clients, int pipeline, double seconds)
{
    client_job *jobs = calloc((size_t)clients, sizeof *jobs);
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    for (int c = 0; c < clients; c++) {
        jobs[c] = (client_job){.host = host, .port = port, .request = requests[c],
                               .request_size = sizes[c], .reply_opcode = reply_opcode,
                               .pipeline = pipeline, .seconds = seconds};
        pthread_create(&threads[c], NULL, run_client, &jobs[c]);
    }
    phase result = {0};
    double bytes = 0, elapsed = 0;
    size_t total = 0;
    for (int c = 0; c < clients; c++) {
        pthread_join(threads[c], NULL);
        result.failed |= jobs[c].failed;
        bytes += jobs[c].bytes;
        elapsed = jobs[c].elapsed > elapsed ? jobs[c].elapsed : elapsed;
        total += jobs[c].latency_count;
    }
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t n = 0;
    for (int c = 0; c < clients; c++) {
        memcpy(all + n, jobs[c].latencies, jobs[c].latency_count * sizeof *all);
        n += jobs[c].latency_count;
        free(jobs[c].latencies);
    }
    qsort(all, n, sizeof *all, compare_doubles);
    if (n > 0 && elapsed > 0) {
        result.bytes_per_s = bytes / elapsed;
        result.ops_per_s = (double)n / elapsed;
        result.p50_us = all[n / 2] * 1e6;
        result.p99_us = all[(size_t)((double)(n - 1) * 0.99)] * 1e6;
    } else {
        result.failed = 1;
    }
    free(all);
    free(jobs);
    free(threads);
    return result;
}

/* ---------------------------------------------------------------------------
 * The benchmark
 * ------------------------------------------------------------------------- */

int paramd__net_bench(const paramd__net_bench_options *options)
{
    spawned server = {0};
    char host[64] = "127.0.0.1";
    int port = 0;
    if (options->address) {
        const char *colon = strrchr(options->address, ':');
        if (colon == NULL || (size_t)(colon - options->address) >= sizeof host) {
            fprintf(stderr, "paramd-bench net: --tcp wants HOST:PORT\n");
            return 2;
        }
        memcpy(host, options->address, (size_t)(colon - options->address));
        host[colon - options->address] = '\0';
        port = atoi(colon + 1);
    } else if (spawn_server(&server, options->server_threads) != 0) {
        fprintf(stderr, "paramd-bench net: could not start build/paramd\n");
        stop_server(&server);
        return 1;
    } else {
        port = server.port;
    }
    int clients = options->clients, status = 1;
    size_t n = options->elements;
    char model[64];
    snprintf(model, sizeof model, "bench-net-%ld", (long)getpid());

    /* The model: AdamW, one n-element tensor per client. */
    size_t json_capacity = 256 + (size_t)clients * 64;
    char *json = malloc(json_capacity);
    size_t used = (size_t)snprintf(json, json_capacity,
                                   "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.001}, "
                                   "\"tensors\": [");
    for (int c = 0; c < clients; c++)
        used += (size_t)snprintf(json + used, json_capacity - used,
                                 "%s{\"name\": \"t%d\", \"shape\": [%zu]}", c ? ", " : "", c, n);
    snprintf(json + used, json_capacity - used, "]}");
    wire_link control;
    paramd__frame_header header;
    uint8_t *frame = malloc(4096 + json_capacity);
    paramd__writer writer;
    uint32_t model_id = 0;
    uint8_t **echo = calloc((size_t)clients, sizeof *echo);
    uint8_t **pushpull = calloc((size_t)clients, sizeof *pushpull);
    size_t *sizes = calloc((size_t)clients, sizeof *sizes);
    if (link_open(&control, host, port) != 0) {
        fprintf(stderr, "paramd-bench net: cannot connect to %s:%d\n", host, port);
        goto done;
    }
    paramd__writer_init(&writer, frame, 4096 + json_capacity);
    paramd__encode_hello(&writer, 1, 1, 1, "", "paramd-bench");
    if (call(&control, frame, writer.size, PARAMD_OP_HELLO | PARAMD_OP_REPLY, &header) != 0)
        goto done;
    link_consume(&control, PARAMD_FRAME_HEADER_SIZE + header.length);
    paramd__writer_init(&writer, frame, 4096 + json_capacity);
    paramd__encode_create(&writer, 2, model, json, strlen(json));
    if (call(&control, frame, writer.size, PARAMD_OP_CREATE | PARAMD_OP_REPLY, &header) != 0)
        goto done;
    link_consume(&control, PARAMD_FRAME_HEADER_SIZE + header.length);
    paramd__writer_init(&writer, frame, 4096 + json_capacity);
    paramd__encode_lookup(&writer, 3, model, NULL, 0);
    if (call(&control, frame, writer.size, PARAMD_OP_LOOKUP | PARAMD_OP_REPLY, &header) != 0)
        goto done;
    paramd__lookup_reply lookup;
    if (paramd__decode_lookup_reply(control.input + PARAMD_FRAME_HEADER_SIZE, header.length,
                                    &lookup, NULL, 0) != PARAMD_OK)
        goto done;
    model_id = lookup.model_id;
    link_consume(&control, PARAMD_FRAME_HEADER_SIZE + header.length);

    /* One PUSHPULL frame per client (its own tensor), and an ECHO frame of
     * the same size. */
    float *grad = malloc(n * sizeof *grad);
    for (size_t i = 0; i < n; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;
    for (int c = 0; c < clients; c++) {
        paramd__writer_init(&writer, NULL, 0);
        size_t start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSHPULL, 100, model_id, 1, 0,
                                                 0, 0, 0, "bench");
        paramd__put_item_header(&writer, (uint32_t)c, PARAMD_DTYPE_FLOAT32, 0, n);
        paramd__put_bytes(&writer, NULL, n * sizeof(float));
        paramd__frame_end(&writer, start);
        sizes[c] = writer.size;
        pushpull[c] = malloc(sizes[c]);
        paramd__writer_init(&writer, pushpull[c], sizes[c]);
        start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSHPULL, 100, model_id, 1, 0, 0, 0,
                                          0, "bench");
        paramd__put_item_header(&writer, (uint32_t)c, PARAMD_DTYPE_FLOAT32, 0, n);
        paramd__put_bytes(&writer, grad, n * sizeof(float));
        paramd__frame_end(&writer, start);
        echo[c] = malloc(sizes[c]);
        paramd__writer_init(&writer, echo[c], sizes[c]);
        start = paramd__frame_begin(&writer, PARAMD_OP_ECHO, 200);
        paramd__put_reserve(&writer, sizes[c] - PARAMD_FRAME_HEADER_SIZE);
        paramd__frame_end(&writer, start);
        memset(echo[c] + PARAMD_FRAME_HEADER_SIZE, 0x3c, sizes[c] - PARAMD_FRAME_HEADER_SIZE);
    }
    free(grad);

    phase echo_phase = run_phase(host, port, echo, sizes, PARAMD_OP_ECHO | PARAMD_OP_REPLY,
                                 clients, options->pipeline, options->seconds);
    phase push_phase = run_phase(host, port, pushpull, sizes, PARAMD_OP_PUSHPULL | PARAMD_OP_REPLY,
                                 clients, options->pipeline, options->seconds);
    if (echo_phase.failed || push_phase.failed) {
        fprintf(stderr, "paramd-bench net: a client failed\n");
        goto done;
    }
    printf("net: %zu float32 per request (%zu-byte frames), %d client%s, %d in flight each\n", n,
           sizes[0], clients, clients == 1 ? "" : "s", options->pipeline);
    printf("  echo      %9.1f MB/s  %9.0f ops/s  p50 %8.1f us  p99 %8.1f us\n",
           echo_phase.bytes_per_s / 1e6, echo_phase.ops_per_s, echo_phase.p50_us,
           echo_phase.p99_us);
    printf("  pushpull  %9.1f MB/s  %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  (%.0f%% of echo)\n",
           push_phase.bytes_per_s / 1e6, push_phase.ops_per_s, push_phase.p50_us,
           push_phase.p99_us, 100.0 * push_phase.bytes_per_s / echo_phase.bytes_per_s);
    printf("{\"n\": %zu, \"clients\": %d, \"pipeline\": %d, \"echo_bytes_per_s\": %.0f, "
           "\"pushpull_bytes_per_s\": %.0f, \"ratio_to_echo\": %.3f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"ops_per_s\": %.0f, \"echo_p50_us\": %.1f, \"echo_p99_us\": %.1f}\n",
           n, clients, options->pipeline, echo_phase.bytes_per_s, push_phase.bytes_per_s,
           push_phase.bytes_per_s / echo_phase.bytes_per_s, push_phase.p50_us, push_phase.p99_us,
           push_phase.ops_per_s, echo_phase.p50_us, echo_phase.p99_us);
    status = 0;
done:
    if (model_id) {
        paramd__writer_init(&writer, frame, 4096 + json_capacity);
        paramd__encode_model_request(&writer, PARAMD_OP_DELETE, 4, model);
        if (call(&control, frame, writer.size, PARAMD_OP_DELETE | PARAMD_OP_REPLY, &header) != 0)
            fprintf(stderr, "paramd-bench net: could not delete model %s\n", model);
    }
    link_close(&control);
    for (int c = 0; c < clients; c++) {
        free(echo[c]);
        free(pushpull[c]);
    }
    free(echo);
    free(pushpull);
    free(sizes);
    free(frame);
    free(json);
    if (!options->address)
        stop_server(&server);
    return status;
}
