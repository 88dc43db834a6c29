/*
 * test_client_resilience.c - the client library when things go wrong or
 * get busy, against the real server: pipelining (proven on the wire by a
 * relay that withholds replies), reconnecting after the server is killed
 * with SIGKILL and restarted on the same port, stale ids after a model is
 * created again, connect timeouts to closed and silent ports, call
 * timeouts against a stopped server.
 *
 * Tests that kill or stop a server start their own; the others share one.
 */
#include "client_harness.h"

#include "frame.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

static test_server shared;

static void start_shared(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (server_start(&shared, 0) != 0)
        abort();
}

static void stop_shared(void)
{
    int status = server_stop(&shared);
    if (status != 0) {
        fprintf(stderr, "paramd exited with status %d; its log is %s\n", status, shared.log);
        abort();
    }
    server_remove_dir(&shared);
}

static const char *small_model =
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.5},"
    " \"tensors\": [{\"name\": \"w\", \"shape\": [4], \"values\": [0, 0, 0, 0]}]}";

/* A listening socket on a free loopback port; *port receives it. */
static int listen_on_free_port(int *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&address, sizeof address), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    socklen_t length = sizeof address;
    getsockname(fd, (struct sockaddr *)&address, &length);
    *port = ntohs(address.sin_port);
    return fd;
}

/* ---------------------------------------------------------------------------
 * A relay between one client and the server that can hold the server's
 * replies back until the client has sent a number of frames: if the
 * client waited for each reply before sending the next request, it would
 * never get there.  It forwards bytes untouched; it only counts frames.
 * ------------------------------------------------------------------------- */

typedef struct relay {
    int listener, port, upstream_port;
    pthread_t thread;
    atomic_int hold;                /* 1: hold replies until `expected` more frames arrive */
    size_t expected;
    atomic_size_t frames_at_release; /* client frames counted when the held replies went out */
    atomic_int released;
    atomic_int holding;             /* the relay thread has seen `hold` and is counting */
} relay;

static void send_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        size -= (size_t)n;
    }
}

static void *relay_main(void *argument)
{
    relay *r = argument;
    int client = accept(r->listener, NULL, NULL);
    int server = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->upstream_port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (client < 0 || connect(server, (struct sockaddr *)&address, sizeof address) != 0)
        return NULL;
    uint8_t buffer[65536];
    uint8_t *held = NULL;
    size_t held_size = 0;
    /* Frame counting across reads: bytes of the current frame still to skip,
     * and a partial header. */
    uint8_t header[PARAMD_FRAME_HEADER_SIZE];
    size_t header_have = 0, skip = 0, frames = 0, frames_at_hold = 0;
    bool holding = false;
    double hold_deadline = 0;
    for (;;) {
        if (!holding && atomic_load(&r->hold)) {
            holding = true;
            frames_at_hold = frames;
            hold_deadline = harness_now() + 10;
            atomic_store(&r->holding, 1);
        }
        if (holding && (frames - frames_at_hold >= r->expected || harness_now() > hold_deadline)) {
            atomic_store(&r->frames_at_release, frames - frames_at_hold);
            atomic_store(&r->released, 1);
            send_all(client, held, held_size);
            free(held);
            held = NULL;
            held_size = 0;
            holding = false;
            atomic_store(&r->hold, 0);
        }
        struct pollfd fds[2] = {{.fd = client, .events = POLLIN}, {.fd = server, .events = POLLIN}};
        if (poll(fds, 2, 20) < 0)
            break;
        if (fds[0].revents) {
            ssize_t n = recv(client, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            for (ssize_t i = 0; i < n;) {
                if (skip > 0) {
                    size_t take = (size_t)(n - i) < skip ? (size_t)(n - i) : skip;
                    skip -= take;
                    i += (ssize_t)take;
                    continue;
                }
                header[header_have++] = buffer[i++];
                if (header_have == PARAMD_FRAME_HEADER_SIZE) {
                    skip = (size_t)header[4] | (size_t)header[5] << 8 | (size_t)header[6] << 16 |
                           (size_t)header[7] << 24;
                    header_have = 0;
                    frames++;
                }
            }
            send_all(server, buffer, (size_t)n);
        }
        if (fds[1].revents) {
            ssize_t n = recv(server, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            if (holding) {
                held = realloc(held, held_size + (size_t)n);
                memcpy(held + held_size, buffer, (size_t)n);
                held_size += (size_t)n;
            } else {
                send_all(client, buffer, (size_t)n);
            }
        }
    }
    free(held);
    close(client);
    close(server);
    return NULL;
}

static void relay_start(relay *r, int upstream_port)
{
    memset(r, 0, sizeof *r);
    r->upstream_port = upstream_port;
    r->listener = listen_on_free_port(&r->port, 1);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, relay_main, r), 0);
}

static void relay_stop(relay *r)
{
    pthread_join(r->thread, NULL);
    close(r->listener);
}

/* ---------------------------------------------------------------------------
 * Pipelining
 * ------------------------------------------------------------------------- */

#define PIPELINED 1000

START_TEST(test_pipelining_puts_every_frame_on_the_wire_first)
{
    relay r;
    relay_start(&r, shared.tcp_port);
    paramd_client *c = connect_to(r.port);
    ck_assert_int_eq(paramd_create_model(c, "pipe_relay", small_model, NULL), PARAMD_OK);
    float g[4] = {1, 2, 3, 4}, (*w)[4] = calloc(PIPELINED, sizeof *w);
    paramd_batch *batch = paramd_batch_begin(c);
    for (int i = 0; i < PIPELINED; i++) {
        paramd_push_item item = {"w", g, w[i], 4};
        ck_assert_int_eq(paramd_batch_pushpull(batch, "pipe_relay", &item, 1, NULL), i);
    }
    r.expected = PIPELINED;
    atomic_store(&r.hold, 1);
    while (!atomic_load(&r.holding)) /* the relay counts from here on */
        harness_sleep_ms(1);
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_OK);
    /* The relay let the first reply through only once all 1000 requests
     * had arrived. */
    ck_assert(atomic_load(&r.released));
    ck_assert_uint_eq(atomic_load(&r.frames_at_release), PIPELINED);
    for (size_t i = 0; i < PIPELINED; i++) {
        paramd_push_result result;
        ck_assert_int_eq(paramd_batch_result(batch, i, &result), PARAMD_OK);
        ck_assert_uint_eq(result.step, i + 1); /* in order */
        ck_assert(w[i][3] == -0.5f * 4.0f * (float)(i + 1));
    }
    paramd_batch_free(batch);
    free(w);
    ck_assert_int_eq(paramd_delete_model(c, "pipe_relay"), PARAMD_OK);
    paramd_close(c);
    relay_stop(&r);
}
END_TEST

START_TEST(test_pipelining_many_large_requests)
{
    /* 24 pushpulls of 1M floats: 96 MiB each way, more than the server
     * queues for a client that does not read (64 MiB), so this passes only
     * if the batch reads replies while it writes. */
    const char *body = "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 1},"
                       " \"tensors\": [{\"name\": \"big\", \"shape\": [1048576]}]}";
    paramd_client *c = connect_to(shared.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "pipe_large", body, NULL), PARAMD_OK);
    size_t n = 1u << 20;
    float *g = malloc(n * sizeof *g), *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++)
        g[i] = (float)(i % 7);
    paramd_batch *batch = paramd_batch_begin(c);
    for (int i = 0; i < 24; i++) {
        paramd_push_item item = {"big", g, w, n};
        ck_assert_int_ge(paramd_batch_pushpull(batch, "pipe_large", &item, 1, NULL), 0);
    }
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_OK);
    paramd_batch_free(batch);
    for (size_t i = 0; i < n; i += 4099)
        ck_assert(w[i] == -24.0f * (float)(i % 7));
    free(g);
    free(w);
    ck_assert_int_eq(paramd_delete_model(c, "pipe_large"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

START_TEST(test_pipelined_rate)
{
    /* Not a benchmark (bench/ has those); a figure for the log. */
    const char *body = "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.001},"
                       " \"tensors\": [{\"name\": \"w\", \"shape\": [1024]}]}";
    paramd_client *c = connect_to(shared.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "pipe_rate", body, NULL), PARAMD_OK);
    float g[1024], w[1024];
    for (int i = 0; i < 1024; i++)
        g[i] = 0.001f * (float)i;
    paramd_push_item item = {"w", g, w, 1024};
    double start = harness_now();
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(paramd_pushpull(c, "pipe_rate", &item, 1, NULL, NULL), PARAMD_OK);
    double sequential = harness_now() - start;
    start = harness_now();
    for (int round = 0; round < 10; round++) {
        paramd_batch *batch = paramd_batch_begin(c);
        for (int i = 0; i < 1000; i++)
            ck_assert_int_ge(paramd_batch_pushpull(batch, "pipe_rate", &item, 1, NULL), 0);
        ck_assert_int_eq(paramd_batch_run(batch), PARAMD_OK);
        paramd_batch_free(batch);
    }
    double pipelined = harness_now() - start;
    fprintf(stderr,
            "client: PUSHPULL of 1024 floats (AdamW): %.0f/s one at a time, %.0f/s in batches "
            "of 1000\n",
            2000 / sequential, 10000 / pipelined);
    uint64_t step;
    ck_assert_int_eq(paramd_pull_tensor(c, "pipe_rate", "w", w, 1024, &step), PARAMD_OK);
    ck_assert_uint_eq(step, 12000);
    ck_assert_int_eq(paramd_delete_model(c, "pipe_rate"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Stale ids, reconnecting
 * ------------------------------------------------------------------------- */

START_TEST(test_stale_id_is_looked_up_again)
{
    paramd_client *c = connect_to(shared.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "stale", small_model, NULL), PARAMD_OK);
    float g[4] = {1, 1, 1, 1}, w[4];
    paramd_push_result result;
    ck_assert_int_eq(paramd_pushpull_tensor(c, "stale", "w", g, w, 4, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 1);
    /* Another client deletes and creates the model: a new id. */
    json_decref(http_json(shared.http_port, "DELETE", "/v1/models/stale", NULL, 204));
    json_decref(http_json(shared.http_port, "PUT", "/v1/models/stale", small_model, 201));
    ck_assert_int_eq(paramd_pushpull_tensor(c, "stale", "w", g, w, 4, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 1); /* the new model's first step */
    ck_assert(w[0] == -0.5f);

    /* A batch does not retry: the request fails, and the next call works. */
    json_decref(http_json(shared.http_port, "DELETE", "/v1/models/stale", NULL, 204));
    json_decref(http_json(shared.http_port, "PUT", "/v1/models/stale", small_model, 201));
    paramd_batch *batch = paramd_batch_begin(c);
    paramd_push_item item = {"w", g, w, 4};
    ck_assert_int_eq(paramd_batch_pushpull(batch, "stale", &item, 1, NULL), 0);
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_batch_errstr(batch, 0), "LOOKUP it again"));
    paramd_batch_free(batch);
    ck_assert_int_eq(paramd_pushpull_tensor(c, "stale", "w", g, w, 4, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 1);

    /* Deleted for good: the retry's LOOKUP says so. */
    json_decref(http_json(shared.http_port, "DELETE", "/v1/models/stale", NULL, 204));
    ck_assert_int_eq(paramd_pushpull_tensor(c, "stale", "w", g, w, 4, NULL, &result),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert(paramd_is_connected(c));
    paramd_close(c);
}
END_TEST

START_TEST(test_reconnect_after_kill_and_restart)
{
    test_server own = {0};
    ck_assert_int_eq(server_start(&own, 0), 0);
    int port = own.tcp_port;
    paramd_client *c = connect_to(port);
    ck_assert_int_eq(paramd_create_model(c, "phoenix", small_model, NULL), PARAMD_OK);
    float g[4] = {1, 1, 1, 1}, w[4];
    ck_assert_int_eq(paramd_pushpull_tensor(c, "phoenix", "w", g, w, 4, NULL, NULL), PARAMD_OK);

    /* kill -9: the next call cannot connect, and says so quickly. */
    server_kill(&own);
    double start = harness_now();
    ck_assert_int_eq(paramd_pushpull_tensor(c, "phoenix", "w", g, w, 4, NULL, NULL),
                     PARAMD_E_CONNECT);
    ck_assert(harness_now() - start < 5);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "refused"));
    ck_assert(!paramd_is_connected(c));

    /* Restarted on the same port (empty: models are not persisted yet):
     * the next call reconnects by itself, and the id cache starts over. */
    ck_assert_int_eq(server_start(&own, port), 0);
    ck_assert_int_eq(own.tcp_port, port);
    ck_assert_int_eq(paramd_pushpull_tensor(c, "phoenix", "w", g, w, 4, NULL, NULL),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert(paramd_is_connected(c));
    ck_assert_int_eq(paramd_create_model(c, "phoenix", small_model, NULL), PARAMD_OK);
    paramd_push_result result;
    ck_assert_int_eq(paramd_pushpull_tensor(c, "phoenix", "w", g, w, 4, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 1);

    /* Killed while idle and restarted before the next call: that call
     * notices the dead connection before sending, and just works. */
    server_kill(&own);
    ck_assert_int_eq(server_start(&own, port), 0);
    char *json = NULL;
    ck_assert_int_eq(paramd_list_models(c, &json), PARAMD_OK);
    json_t *list = json_loads(json, 0, NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "models")), 0);
    json_decref(list);
    paramd_free(json);

    /* paramd_reconnect on demand. */
    ck_assert_int_eq(paramd_reconnect(c), PARAMD_OK);
    ck_assert(paramd_is_connected(c));
    ck_assert_int_eq(server_stop(&own), 0);
    ck_assert_int_eq(paramd_reconnect(c), PARAMD_E_CONNECT);
    ck_assert(!paramd_is_connected(c));
    paramd_close(c);
    server_remove_dir(&own);
}
END_TEST

START_TEST(test_broken_connection_during_a_call)
{
    /* The server dies while a batch is in flight: the batch fails with
     * connection_error (its pushes are not sent again), every request
     * without a reply says so, and nothing hangs. */
    test_server own = {0};
    ck_assert_int_eq(server_start(&own, 0), 0);
    paramd_client *c = connect_to(own.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "doomed", small_model, NULL), PARAMD_OK);
    ck_assert_int_eq(paramd_set_timeout(c, 20000), PARAMD_OK);
    float g[4] = {1, 1, 1, 1}, w[4];
    paramd_batch *batch = paramd_batch_begin(c);
    paramd_push_item item = {"w", g, w, 4};
    ck_assert_int_ge(paramd_batch_pushpull(batch, "doomed", &item, 1, NULL), 0);
    server_freeze(&own);
    pid_t killer = fork();
    if (killer == 0) {
        harness_sleep_ms(300);
        kill(own.pid, SIGKILL);
        _exit(0);
    }
    double start = harness_now();
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_E_CONNECTION);
    ck_assert(harness_now() - start < 15);
    ck_assert_int_eq(paramd_batch_status(batch, 0), PARAMD_E_CONNECTION);
    ck_assert_ptr_nonnull(strstr(paramd_batch_errstr(batch, 0), "0 of 1 requests answered"));
    paramd_batch_free(batch);
    waitpid(killer, NULL, 0);
    waitpid(own.pid, NULL, 0);
    own.pid = 0;
    ck_assert(!paramd_is_connected(c));
    paramd_close(c);
    server_remove_dir(&own);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Timeouts
 * ------------------------------------------------------------------------- */

START_TEST(test_connect_to_a_closed_port)
{
    int port;
    close(listen_on_free_port(&port, 1));
    int error = 0;
    double start = harness_now();
    paramd_client *c = paramd_connect("127.0.0.1", port, 2000, &error);
    ck_assert_int_eq(error, PARAMD_E_CONNECT);
    ck_assert(harness_now() - start < 2);
    ck_assert_int_eq(paramd_client_error(c), PARAMD_E_CONNECT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "Connection refused"));
    /* Later calls try again, and fail the same way. */
    ck_assert_int_eq(paramd_list_models(c, NULL), PARAMD_E_CONNECT);
    paramd_close(c);
}
END_TEST

START_TEST(test_connect_to_a_silent_server_times_out)
{
    /* A socket that listens but never answers: TCP connects (the kernel
     * accepts), and HELLO gets no reply. */
    int port, listener = listen_on_free_port(&port, 8);
    int error = 0;
    double start = harness_now();
    paramd_client *c = paramd_connect("127.0.0.1", port, 300, &error);
    double elapsed = harness_now() - start;
    ck_assert_int_eq(error, PARAMD_E_TIMEOUT);
    ck_assert_msg(elapsed >= 0.25 && elapsed < 3, "took %.3f s", elapsed);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "HELLO"));
    ck_assert(!paramd_is_connected(c));
    paramd_close(c);
    close(listener);
}
END_TEST

START_TEST(test_connect_to_an_unroutable_address)
{
    /* 10.255.255.1 is on no network here: the SYN goes nowhere, or the
     * kernel says the network is unreachable (connect_failed).  Sandboxes
     * may also intercept outgoing connections with a proxy that accepts
     * and then answers HELLO with something that is not a paramd frame
     * (bad_frame, connection_error) or nothing (timeout).  Whatever
     * happens, the connect fails, and within the timeout. */
    int error = 0;
    double start = harness_now();
    paramd_client *c = paramd_connect("10.255.255.1", 8471, 300, &error);
    double elapsed = harness_now() - start;
    ck_assert_msg(error == PARAMD_E_CONNECT || error == PARAMD_E_TIMEOUT ||
                      error == PARAMD_E_BAD_FRAME || error == PARAMD_E_CONNECTION,
                  "error %d: %s", error, paramd_client_errstr(c));
    ck_assert(!paramd_is_connected(c));
    ck_assert_msg(elapsed < 3, "took %.3f s", elapsed);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "10.255.255.1:8471"));
    paramd_close(c);
}
END_TEST

START_TEST(test_call_timeout_against_a_stopped_server)
{
    test_server own = {0};
    ck_assert_int_eq(server_start(&own, 0), 0);
    paramd_client *c = connect_to(own.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "frozen", small_model, NULL), PARAMD_OK);
    ck_assert_int_eq(paramd_set_timeout(c, 300), PARAMD_OK);
    float g[4] = {1, 1, 1, 1}, w[4];
    /* Step 1, and the model's ids in the cache, so that the call below
     * sends its push at once (no LOOKUP first). */
    ck_assert_int_eq(paramd_pushpull_tensor(c, "frozen", "w", g, w, 4, NULL, NULL), PARAMD_OK);
    server_freeze(&own);
    double start = harness_now();
    ck_assert_int_eq(paramd_pushpull_tensor(c, "frozen", "w", g, w, 4, NULL, NULL),
                     PARAMD_E_TIMEOUT);
    double elapsed = harness_now() - start;
    ck_assert_msg(elapsed >= 0.25 && elapsed < 3, "took %.3f s", elapsed);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "no reply"));
    ck_assert(!paramd_is_connected(c)); /* its reply could no longer be matched */
    /* Batches have the same deadline. */
    paramd_batch *batch = paramd_batch_begin(c);
    kill(own.pid, SIGCONT);
    paramd_push_item item = {"w", g, w, 4};
    ck_assert_int_ge(paramd_batch_pushpull(batch, "frozen", &item, 1, NULL), 0);
    server_freeze(&own);
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_E_TIMEOUT);
    ck_assert_int_eq(paramd_batch_status(batch, 0), PARAMD_E_TIMEOUT);
    paramd_batch_free(batch);
    /* Awake again.  The two pushes that timed out did reach the server
     * and run once it woke (which is why the library never sends a
     * request again): wait for both, then the next call reconnects, and
     * its step shows nothing was applied twice. */
    kill(own.pid, SIGCONT);
    double deadline = harness_now() + 30;
    for (;;) {
        json_t *model = http_json(own.http_port, "GET", "/v1/models/frozen", NULL, 200);
        json_int_t step = json_integer_value(json_object_get(model, "step"));
        json_decref(model);
        if (step == 3)
            break;
        ck_assert_msg(step < 3 && harness_now() < deadline, "step %lld", (long long)step);
        harness_sleep_ms(20);
    }
    ck_assert_int_eq(paramd_set_timeout(c, HARNESS_TIMEOUT_MS), PARAMD_OK);
    paramd_push_result result;
    ck_assert_int_eq(paramd_pushpull_tensor(c, "frozen", "w", g, w, 4, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 4);
    ck_assert(paramd_is_connected(c));
    paramd_close(c);
    ck_assert_int_eq(server_stop(&own), 0);
    server_remove_dir(&own);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("client resilience");
    TCase *shared_case = tcase_create("shared server");
    tcase_add_unchecked_fixture(shared_case, start_shared, stop_shared);
    tcase_set_timeout(shared_case, 300);
    tcase_add_test(shared_case, test_pipelining_puts_every_frame_on_the_wire_first);
    tcase_add_test(shared_case, test_pipelining_many_large_requests);
    tcase_add_test(shared_case, test_pipelined_rate);
    tcase_add_test(shared_case, test_stale_id_is_looked_up_again);
    suite_add_tcase(suite, shared_case);
    TCase *own = tcase_create("servers of their own");
    tcase_set_timeout(own, 300);
    tcase_add_test(own, test_reconnect_after_kill_and_restart);
    tcase_add_test(own, test_broken_connection_during_a_call);
    tcase_add_test(own, test_connect_to_a_closed_port);
    tcase_add_test(own, test_connect_to_a_silent_server_times_out);
    tcase_add_test(own, test_connect_to_an_unroutable_address);
    tcase_add_test(own, test_call_timeout_against_a_stopped_server);
    suite_add_tcase(suite, own);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
