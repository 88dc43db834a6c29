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
 *
 * With --shards S it starts S paramd shards with a generated shard map
 * (docs/SHARDING.md) and a split threshold below N, so that every client's
 * tensor is split into S ranges: each client then keeps one connection to
 * every shard, pushing that shard's range (and echoing frames of the same
 * size), and the figures are the aggregate over all shards - the
 * throughput a sharded service gives the same C workers.
 *
 * The last line of output is one JSON object.
 */
#define _GNU_SOURCE
#include "net_bench.h"

#include "frame.h"
#include "shard_map.h"

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
#include <sys/stat.h>
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
    int port;
} spawned;

/* The paramd next to this executable. */
static int server_binary(char *path, size_t size)
{
    ssize_t length = readlink("/proc/self/exe", path, size - 16);
    if (length <= 0)
        return -1;
    path[length] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "paramd");
    return 0;
}

/* Starts a paramd with its data in data_dir, listening on http and tcp
 * (port 0: any), with the given extra arguments (NULL-terminated, at most
 * 4), and reads its TCP port from the "listening" line. */
static int spawn_server(spawned *s, int threads, const char *data_dir, const char *http,
                        const char *tcp, const char *const *extra)
{
    char self[PATH_MAX];
    if (server_binary(self, sizeof self) != 0)
        return -1;
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0)
        return -1;
    char threads_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    const char *arguments[24] = {self, "--http", http, "--tcp", tcp, "--data-dir", data_dir,
                                 "--log-level", "warn", "--threads", threads_text};
    int count = 11;
    for (int i = 0; extra && extra[i] && i < 4; i++)
        arguments[count++] = extra[i];
    arguments[count] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        execv(self, (char *const *)arguments);
        _exit(127);
    }
    close(pipe_fds[1]);
    FILE *log = fdopen(pipe_fds[0], "r");
    char line[1024];
    s->port = 0;
    while (log && fgets(line, sizeof line, log)) {
        const char *at = strstr(line, "tcp=127.0.0.1:");
        if (at) {
            s->port = atoi(at + strlen("tcp=127.0.0.1:"));
            break;
        }
    }
    /* The server's later log lines (warnings only) go nowhere: with the
     * pipe closed its writes fail with EPIPE, which paramd ignores. */
    if (log)
        fclose(log);
    return s->port > 0 ? 0 : -1;
}

static void stop_server(spawned *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* A loopback port free right now (for a shard map, which must name every
 * shard's address before the shards start). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &length) == 0)
        port = ntohs(address.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The servers of one run: one plain paramd, or `count` shards with a shard
 * map; all in one temporary directory. */
typedef struct fleet {
    char directory[64];
    int count;
    spawned servers[PARAMD__NET_BENCH_MAX_SHARDS];
} fleet;

static void stop_fleet(fleet *f)
{
    for (int i = 0; i < f->count; i++)
        stop_server(&f->servers[i]);
    if (f->directory[0]) {
        char command[128];
        snprintf(command, sizeof command, "rm -rf %s", f->directory);
        if (system(command) != 0)
            fprintf(stderr, "paramd-bench net: could not remove %s\n", f->directory);
    }
}

static int start_fleet(fleet *f, int shards, int threads, size_t split_threshold)
{
    memset(f, 0, sizeof *f);
    snprintf(f->directory, sizeof f->directory, "/tmp/paramd-bench-net-XXXXXX");
    if (mkdtemp(f->directory) == NULL) {
        f->directory[0] = '\0';
        return -1;
    }
    char data_dir[128];
    if (shards == 0) {
        snprintf(data_dir, sizeof data_dir, "%s/data", f->directory);
        mkdir(data_dir, 0700);
        f->count = 1;
        return spawn_server(&f->servers[0], threads, data_dir, "127.0.0.1:0", "127.0.0.1:0", NULL);
    }
    char map_path[128];
    snprintf(map_path, sizeof map_path, "%s/shard-map.json", f->directory);
    FILE *map = fopen(map_path, "w");
    if (map == NULL)
        return -1;
    char http[PARAMD__NET_BENCH_MAX_SHARDS][32], tcp[PARAMD__NET_BENCH_MAX_SHARDS][32];
    fprintf(map, "{\"version\": 1, \"split_threshold\": %zu, \"shards\": [", split_threshold);
    for (int i = 0; i < shards; i++) {
        snprintf(http[i], sizeof http[i], "127.0.0.1:%d", free_port());
        snprintf(tcp[i], sizeof tcp[i], "127.0.0.1:%d", free_port());
        fprintf(map, "%s{\"id\": %d, \"http\": \"%s\", \"tcp\": \"%s\"}", i ? ", " : "", i,
                http[i], tcp[i]);
    }
    fprintf(map, "]}\n");
    fclose(map);
    for (int i = 0; i < shards; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        snprintf(data_dir, sizeof data_dir, "%s/shard-%d", f->directory, i);
        mkdir(data_dir, 0700);
        const char *extra[] = {"--shard-map", map_path, "--shard-id", id, NULL};
        f->count = i + 1;
        if (spawn_server(&f->servers[i], threads, data_dir, http[i], tcp[i], extra) != 0)
            return -1;
    }
    return 0;
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

/* Runs `clients` connections at once, connection c to ports[c] sending
 * requests[c] again and again. */
static phase run_phase(const char *host, const int *ports, uint8_t **requests, const size_t *sizes,
                       uint8_t reply_opcode, int clients, int pipeline, double seconds)
{
    client_job *jobs = calloc((size_t)clients, sizeof *jobs);
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    for (int c = 0; c < clients; c++) {
        jobs[c] = (client_job){.host = host, .port = ports[c], .request = requests[c],
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

/* A control connection to one server: HELLO, then blocking calls. */
static int control_call(wire_link *l, uint8_t *frame, size_t size, uint8_t opcode,
                        paramd__frame_header *header)
{
    if (call(l, frame, size, opcode | PARAMD_OP_REPLY, header) != 0)
        return -1;
    return 0;
}

int paramd__net_bench(const paramd__net_bench_options *options)
{
    fleet servers = {0};
    char host[64] = "127.0.0.1";
    int shards = options->shards, shard_count = shards ? shards : 1;
    int ports[PARAMD__NET_BENCH_MAX_SHARDS] = {0};
    size_t n = options->elements;
    if (shards < 0 || shards > PARAMD__NET_BENCH_MAX_SHARDS ||
        (shards > 0 && options->address)) {
        fprintf(stderr, "paramd-bench net: --shards takes 1 to %d and starts its own servers "
                        "(not with --tcp)\n", PARAMD__NET_BENCH_MAX_SHARDS);
        return 2;
    }
    if (shards > 1 && n < 2) {
        fprintf(stderr, "paramd-bench net: --shards %d needs --n of at least 2 to split a "
                        "tensor\n", shards);
        return 2;
    }
    if (options->address) {
        const char *colon = strrchr(options->address, ':');
        if (colon == NULL || (size_t)(colon - options->address) >= sizeof host) {
            fprintf(stderr, "paramd-bench net: --tcp wants HOST:PORT\n");
            return 2;
        }
        memcpy(host, options->address, (size_t)(colon - options->address));
        host[colon - options->address] = '\0';
        ports[0] = atoi(colon + 1);
    } else if (start_fleet(&servers, shards, options->server_threads, n > 1 ? n - 1 : 1) != 0) {
        fprintf(stderr, "paramd-bench net: could not start build/paramd\n");
        stop_fleet(&servers);
        return 1;
    } else {
        for (int k = 0; k < shard_count; k++)
            ports[k] = servers.servers[k].port;
    }
    int clients = options->clients, status = 1;
    int links = clients * shard_count; /* one connection per client and shard */
    char model[64];
    snprintf(model, sizeof model, "bench-net-%ld", (long)getpid());

    /* The model: AdamW, one n-element tensor per client (split over the
     * shards, if any). */
    size_t json_capacity = 256 + (size_t)clients * 64;
    char *json = malloc(json_capacity);
    size_t used = (size_t)snprintf(json, json_capacity,
                                   "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.001}, "
                                   "\"tensors\": [");
    for (int c = 0; c < clients; c++)
        used += (size_t)snprintf(json + used, json_capacity - used,
                                 "%s{\"name\": \"t%d\", \"shape\": [%zu]}", c ? ", " : "", c, n);
    snprintf(json + used, json_capacity - used, "]}");
    wire_link control[PARAMD__NET_BENCH_MAX_SHARDS];
    int opened = 0;
    paramd__frame_header header;
    size_t frame_capacity = 4096 + json_capacity;
    uint8_t *frame = malloc(frame_capacity);
    paramd__writer writer;
    uint32_t model_ids[PARAMD__NET_BENCH_MAX_SHARDS] = {0};
    uint32_t *tensor_ids = calloc((size_t)links, sizeof *tensor_ids);
    uint8_t **echo = calloc((size_t)links, sizeof *echo);
    uint8_t **pushpull = calloc((size_t)links, sizeof *pushpull);
    size_t *sizes = calloc((size_t)links, sizeof *sizes);
    int *link_ports = calloc((size_t)links, sizeof *link_ports);
    float *grad = NULL;
    for (int k = 0; k < shard_count; k++) {
        if (link_open(&control[k], host, ports[k]) != 0) {
            fprintf(stderr, "paramd-bench net: cannot connect to %s:%d\n", host, ports[k]);
            goto done;
        }
        opened = k + 1;
        paramd__writer_init(&writer, frame, frame_capacity);
        paramd__encode_hello(&writer, 1, 1, 1, "", "paramd-bench");
        if (control_call(&control[k], frame, writer.size, PARAMD_OP_HELLO, &header) != 0)
            goto done;
        link_consume(&control[k], PARAMD_FRAME_HEADER_SIZE + header.length);
        paramd__writer_init(&writer, frame, frame_capacity);
        paramd__encode_create(&writer, 2, model, json, strlen(json));
        if (control_call(&control[k], frame, writer.size, PARAMD_OP_CREATE, &header) != 0)
            goto done;
        link_consume(&control[k], PARAMD_FRAME_HEADER_SIZE + header.length);
        model_ids[k] = 1; /* created: delete it at the end */
        /* Tensor ids are each server's own: look them up by name. */
        paramd__writer_init(&writer, frame, frame_capacity);
        paramd__encode_lookup(&writer, 3, model, NULL, 0);
        if (control_call(&control[k], frame, writer.size, PARAMD_OP_LOOKUP, &header) != 0)
            goto done;
        paramd__lookup_reply lookup;
        if (paramd__decode_lookup_reply(control[k].input + PARAMD_FRAME_HEADER_SIZE,
                                        header.length, &lookup, NULL, 0) != PARAMD_OK)
            goto done;
        model_ids[k] = lookup.model_id;
        paramd__lookup_entry entry;
        int found = 0;
        size_t position = 0;
        for (uint32_t e = 0; e < lookup.tensor_count; e++) {
            paramd__lookup_next_entry(&lookup, &position, &entry);
            int c = -1; /* "t<c>" */
            for (uint32_t i = 1; entry.name.length >= 2 && entry.name.data[0] == 't' &&
                                 i < entry.name.length && entry.name.data[i] >= '0' &&
                                 entry.name.data[i] <= '9';
                 i++)
                c = (c < 0 ? 0 : 10 * c) + (entry.name.data[i] - '0');
            if (c >= 0 && c < clients) {
                tensor_ids[c * shard_count + k] = entry.tensor_id;
                found++;
            }
        }
        link_consume(&control[k], PARAMD_FRAME_HEADER_SIZE + header.length);
        if (found != clients) {
            fprintf(stderr, "paramd-bench net: shard %d holds %d of the %d tensors (not split?)\n",
                    k, found, clients);
            goto done;
        }
    }

    /* Per client and shard: a PUSHPULL frame of that shard's range of the
     * client's tensor, and an ECHO frame of the same size. */
    grad = malloc(n * sizeof *grad);
    for (size_t i = 0; i < n; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;
    for (int c = 0; c < clients; c++)
        for (int k = 0; k < shard_count; k++) {
            int j = c * shard_count + k;
            uint64_t offset = 0, length = n;
            if (shard_count > 1)
                paramd_shard_range(n, (uint32_t)shard_count, (uint32_t)k, &offset, &length);
            link_ports[j] = ports[k];
            paramd__writer_init(&writer, NULL, 0);
            size_t start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSHPULL, 100,
                                                     model_ids[k], 1, 0, 0, 0, 0, "bench");
            paramd__put_item_header(&writer, tensor_ids[j], PARAMD_DTYPE_FLOAT32, offset, length);
            paramd__put_bytes(&writer, NULL, length * sizeof(float));
            paramd__frame_end(&writer, start);
            sizes[j] = writer.size;
            pushpull[j] = malloc(sizes[j]);
            paramd__writer_init(&writer, pushpull[j], sizes[j]);
            start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSHPULL, 100, model_ids[k], 1,
                                              0, 0, 0, 0, "bench");
            paramd__put_item_header(&writer, tensor_ids[j], PARAMD_DTYPE_FLOAT32, offset, length);
            paramd__put_bytes(&writer, grad + offset, length * sizeof(float));
            paramd__frame_end(&writer, start);
            echo[j] = malloc(sizes[j]);
            paramd__writer_init(&writer, echo[j], sizes[j]);
            start = paramd__frame_begin(&writer, PARAMD_OP_ECHO, 200);
            paramd__put_reserve(&writer, sizes[j] - PARAMD_FRAME_HEADER_SIZE);
            paramd__frame_end(&writer, start);
            memset(echo[j] + PARAMD_FRAME_HEADER_SIZE, 0x3c, sizes[j] - PARAMD_FRAME_HEADER_SIZE);
        }

    phase echo_phase = run_phase(host, link_ports, echo, sizes, PARAMD_OP_ECHO | PARAMD_OP_REPLY,
                                 links, options->pipeline, options->seconds);
    phase push_phase = run_phase(host, link_ports, pushpull, sizes,
                                 PARAMD_OP_PUSHPULL | PARAMD_OP_REPLY, links, options->pipeline,
                                 options->seconds);
    if (echo_phase.failed || push_phase.failed) {
        fprintf(stderr, "paramd-bench net: a client failed\n");
        goto done;
    }
    /* A worker step pushes the whole tensor: one request to every shard. */
    double steps_per_s = push_phase.ops_per_s / shard_count;
    if (shards > 0)
        printf("net: %zu float32 per worker step split over %d shard%s (%zu-byte frames), %d "
               "client%s x %d shard%s, %d in flight each\n",
               n, shards, shards == 1 ? "" : "s", sizes[0], clients, clients == 1 ? "" : "s",
               shard_count, shard_count == 1 ? "" : "s", options->pipeline);
    else
        printf("net: %zu float32 per request (%zu-byte frames), %d client%s, %d in flight each\n",
               n, sizes[0], clients, clients == 1 ? "" : "s", options->pipeline);
    printf("  echo      %9.1f MB/s  %9.0f ops/s  p50 %8.1f us  p99 %8.1f us\n",
           echo_phase.bytes_per_s / 1e6, echo_phase.ops_per_s, echo_phase.p50_us,
           echo_phase.p99_us);
    printf("  pushpull  %9.1f MB/s  %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  (%.0f%% of echo)\n",
           push_phase.bytes_per_s / 1e6, push_phase.ops_per_s, push_phase.p50_us,
           push_phase.p99_us, 100.0 * push_phase.bytes_per_s / echo_phase.bytes_per_s);
    if (shards > 0)
        printf("  aggregate %9.0f worker steps/s (%.1f M parameters updated per second)\n",
               steps_per_s, steps_per_s * (double)n / 1e6);
    printf("{\"n\": %zu, \"clients\": %d, \"pipeline\": %d, \"shards\": %d, "
           "\"echo_bytes_per_s\": %.0f, \"pushpull_bytes_per_s\": %.0f, \"ratio_to_echo\": %.3f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"ops_per_s\": %.0f, \"steps_per_s\": %.0f, "
           "\"echo_p50_us\": %.1f, \"echo_p99_us\": %.1f}\n",
           n, clients, options->pipeline, shards, echo_phase.bytes_per_s, push_phase.bytes_per_s,
           push_phase.bytes_per_s / echo_phase.bytes_per_s, push_phase.p50_us, push_phase.p99_us,
           push_phase.ops_per_s, steps_per_s, echo_phase.p50_us, echo_phase.p99_us);
    status = 0;
done:
    for (int k = 0; k < opened; k++) {
        if (model_ids[k]) {
            paramd__writer_init(&writer, frame, frame_capacity);
            paramd__encode_model_request(&writer, PARAMD_OP_DELETE, 4, model);
            if (control_call(&control[k], frame, writer.size, PARAMD_OP_DELETE, &header) != 0)
                fprintf(stderr, "paramd-bench net: could not delete model %s\n", model);
        }
        link_close(&control[k]);
    }
    for (int j = 0; j < links; j++) {
        free(echo[j]);
        free(pushpull[j]);
    }
    free(grad);
    free(echo);
    free(pushpull);
    free(sizes);
    free(link_ports);
    free(tensor_ids);
    free(frame);
    free(json);
    if (!options->address)
        stop_fleet(&servers);
    return status;
}
