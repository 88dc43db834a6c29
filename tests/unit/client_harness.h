/*
 * client_harness.h - what the client library's tests share: the real
 * paramd as a child process, a small HTTP client (libcurl) to compare with
 * the HTTP API, and float helpers.  Header-only (static functions), since
 * the Makefile builds every tests/unit/test_*.c on its own.
 *
 * The server is $PARAMD_BINARY (tests/run-tests.sh sets it; default
 * build/paramd), started as
 *     paramd --http 127.0.0.1:0 --tcp 127.0.0.1:PORT --data-dir DIR
 * with its stderr in DIR/paramd.log, which is read until the "listening"
 * line gives the bound ports (as tests/integration/harness.py does).
 */
#ifndef PARAMD_TESTS_CLIENT_HARNESS_H
#define PARAMD_TESTS_CLIENT_HARNESS_H

#define _DEFAULT_SOURCE
#include "test_util.h"

#include "base64.h"
#include "paramd/client.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Generous: the suite also runs under AddressSanitizer on a busy machine. */
#define HARNESS_START_SECONDS 60
#define HARNESS_TIMEOUT_MS 60000

/* ---------------------------------------------------------------------------
 * The server process
 * ------------------------------------------------------------------------- */

typedef struct test_server {
    pid_t pid;
    int http_port, tcp_port;
    char dir[256];
    char log[300];
} test_server;

static __attribute__((unused)) double harness_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

static __attribute__((unused)) void harness_sleep_ms(int ms)
{
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Starts paramd on tcp_port (0: a free port) in server->dir (made on the
 * first start and kept across restarts), with the options in `extra`
 * (NULL-terminated; NULL for none) after the usual ones.  Returns 0, or -1
 * with a message on stderr. */
static __attribute__((unused)) int server_start_with(test_server *server, int tcp_port,
                                                     const char *const *extra)
{
    if (server->dir[0] == '\0') {
        snprintf(server->dir, sizeof server->dir, "/tmp/paramd-client-test-XXXXXX");
        if (mkdtemp(server->dir) == NULL) {
            perror("mkdtemp");
            return -1;
        }
    }
    snprintf(server->log, sizeof server->log, "%s/paramd.log", server->dir);
    const char *binary = getenv("PARAMD_BINARY");
    if (binary == NULL || binary[0] == '\0')
        binary = "build/paramd";
    char tcp[64];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%d", tcp_port);
    /* A restart must not find the last run's "listening" line. */
    unlink(server->log);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int log = open(server->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (log >= 0) {
            dup2(log, STDERR_FILENO);
            close(log);
        }
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            close(null);
        }
        const char *arguments[32] = {binary, "--http", "127.0.0.1:0", "--tcp", tcp, "--data-dir",
                                     server->dir};
        for (int i = 0; extra && extra[i] && i < 24; i++)
            arguments[7 + i] = extra[i];
        execv(binary, (char *const *)arguments);
        _exit(127);
    }
    server->pid = pid;
    double deadline = harness_now() + HARNESS_START_SECONDS;
    while (harness_now() < deadline) {
        FILE *log = fopen(server->log, "r");
        char line[1024];
        while (log && fgets(line, sizeof line, log)) {
            const char *http = strstr(line, " listening: http=127.0.0.1:");
            const char *tcp_at = strstr(line, " tcp=127.0.0.1:");
            if (http && tcp_at) {
                server->http_port = atoi(http + strlen(" listening: http=127.0.0.1:"));
                server->tcp_port = atoi(tcp_at + strlen(" tcp=127.0.0.1:"));
                fclose(log);
                return 0;
            }
        }
        if (log)
            fclose(log);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "paramd (%s) exited before listening; see %s\n", binary, server->log);
            server->pid = 0;
            return -1;
        }
        harness_sleep_ms(20);
    }
    fprintf(stderr, "paramd did not say it was listening within %d s\n", HARNESS_START_SECONDS);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    server->pid = 0;
    return -1;
}

/* Starts paramd on tcp_port (0: a free port); see server_start_with. */
static __attribute__((unused)) int server_start(test_server *server, int tcp_port)
{
    return server_start_with(server, tcp_port, NULL);
}

/* SIGSTOP, and wait until every thread of the process has stopped (kill
 * returns before they do). */
static __attribute__((unused)) void server_freeze(test_server *server)
{
    kill(server->pid, SIGSTOP);
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server->pid);
    for (int tries = 0; tries < 5000; tries++) {
        FILE *file = fopen(path, "r");
        size_t n = file ? fread(stat, 1, sizeof stat - 1, file) : 0;
        if (file)
            fclose(file);
        stat[n] = '\0';
        const char *state = strrchr(stat, ')'); /* "pid (name) S ..." */
        if (state && state[1] == ' ' && state[2] == 'T')
            return;
        harness_sleep_ms(1);
    }
}

/* kill -9, and wait for the process to be gone. */
static __attribute__((unused)) void server_kill(test_server *server)
{
    if (server->pid > 0) {
        kill(server->pid, SIGKILL);
        waitpid(server->pid, NULL, 0);
    }
    server->pid = 0;
}

/* SIGTERM; returns the exit status (0 is a clean shutdown, which under the
 * sanitizers also means no report), or -1 when it had to be killed. */
static __attribute__((unused)) int server_stop(test_server *server)
{
    if (server->pid <= 0)
        return -1;
    kill(server->pid, SIGTERM);
    double deadline = harness_now() + 60;
    int status = 0;
    while (waitpid(server->pid, &status, WNOHANG) == 0) {
        if (harness_now() > deadline) {
            server_kill(server);
            return -1;
        }
        harness_sleep_ms(10);
    }
    server->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Removes the data directory (its files are flat). */
static __attribute__((unused)) void server_remove_dir(test_server *server)
{
    DIR *directory = opendir(server->dir);
    struct dirent *entry;
    char path[600];
    while (directory && (entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", server->dir, entry->d_name);
        unlink(path);
    }
    if (directory)
        closedir(directory);
    rmdir(server->dir);
    server->dir[0] = '\0';
}

/* A client connected to the server, checked. */
static __attribute__((unused)) paramd_client *connect_to(int port)
{
    int error = -1;
    paramd_client *client = paramd_connect("127.0.0.1", port, HARNESS_TIMEOUT_MS, &error);
    ck_assert_ptr_nonnull(client);
    ck_assert_msg(error == PARAMD_OK, "connect: %s", paramd_client_errstr(client));
    return client;
}

/* ---------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------- */

typedef struct http_reply {
    long status;
    char *body; /* NUL-terminated, malloc'ed */
    size_t size;
} http_reply;

static __attribute__((unused)) size_t http_collect(char *data, size_t size, size_t count, void *context)
{
    http_reply *reply = context;
    size_t n = size * count;
    char *grown = realloc(reply->body, reply->size + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + reply->size, data, n);
    reply->size += n;
    grown[reply->size] = '\0';
    reply->body = grown;
    return n;
}

/* One HTTP request to the server; body may be NULL.  Free reply.body. */
static __attribute__((unused)) http_reply http_request(int port, const char *method, const char *path, const char *body)
{
    http_reply reply = {0, calloc(1, 1), 0};
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *curl = curl_easy_init();
    ck_assert_ptr_nonnull(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)HARNESS_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode result = curl_easy_perform(curl);
    ck_assert_msg(result == CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(result));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return reply;
}

/* The JSON of an HTTP reply with the expected status (checked). */
static __attribute__((unused)) json_t *http_json(int port, const char *method, const char *path, const char *body,
                         long expected_status)
{
    http_reply reply = http_request(port, method, path, body);
    ck_assert_msg(reply.status == expected_status, "%s %s: status %ld, expected %ld: %s", method,
                  path, reply.status, expected_status, reply.body);
    json_error_t error;
    json_t *document = reply.size ? json_loads(reply.body, 0, &error) : json_null();
    ck_assert_msg(document != NULL, "%s %s: not JSON: %s", method, path, reply.body);
    free(reply.body);
    return document;
}

/* The HTTP error {"error": {"code", "message"}}: checks the code and
 * returns the message (malloc'ed). */
static __attribute__((unused)) char *http_error_message(int port, const char *method, const char *path,
                                const char *body, const char *code)
{
    http_reply reply = http_request(port, method, path, body);
    ck_assert_msg(reply.status >= 400, "%s %s: expected an error, got %ld", method, path,
                  reply.status);
    json_t *document = json_loads(reply.body, 0, NULL);
    ck_assert_ptr_nonnull(document);
    const char *got_code = json_string_value(json_object_get(json_object_get(document, "error"), "code"));
    const char *message = json_string_value(json_object_get(json_object_get(document, "error"), "message"));
    ck_assert_ptr_nonnull(got_code);
    ck_assert_ptr_nonnull(message);
    ck_assert_str_eq(got_code, code);
    char *copy = strdup(message);
    json_decref(document);
    free(reply.body);
    return copy;
}

/* ---------------------------------------------------------------------------
 * Floats
 * ------------------------------------------------------------------------- */

/* {"dtype": "float32", "b64": "..."} of count floats, as JSON text (malloc'ed). */
static __attribute__((unused)) char *b64_object(const float *values, size_t count)
{
    size_t length = paramd_base64_encoded_length(count * sizeof(float));
    char *text = malloc(length + 40);
    ck_assert_ptr_nonnull(text);
    int prefix = sprintf(text, "{\"dtype\":\"float32\",\"b64\":\"");
    paramd_base64_encode(values, count * sizeof(float), text + prefix);
    strcpy(text + prefix + length, "\"}");
    return text;
}

/* The floats of a {"dtype": "float32", "b64"} object into out (count, checked). */
static __attribute__((unused)) void b64_floats(json_t *object, float *out, size_t count)
{
    const char *dtype = json_string_value(json_object_get(object, "dtype"));
    const char *b64 = json_string_value(json_object_get(object, "b64"));
    ck_assert_msg(dtype && b64 && strcmp(dtype, "float32") == 0, "not a float32 b64 object");
    long long n = paramd_base64_decode(b64, strlen(b64), out, count * sizeof(float));
    ck_assert_int_eq(n, (long long)(count * sizeof(float)));
}

/* A tensor's weights over HTTP, as float32 (checked). */
static __attribute__((unused)) void http_weights(int port, const char *model, const char *tensor, float *out,
                         size_t count)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/models/%s/weights?tensors=%s&encoding=b64", model, tensor);
    json_t *reply = http_json(port, "GET", path, NULL, 200);
    b64_floats(json_object_get(json_object_get(reply, "weights"), tensor), out, count);
    json_decref(reply);
}

/* Bitwise equality of float arrays, naming the first difference. */
static __attribute__((unused)) void assert_floats_identical(const float *got, const float *expected, size_t count,
                                    const char *what)
{
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(memcmp(&got[i], &expected[i], sizeof(float)) == 0,
                      "%s[%zu]: %.9g, expected %.9g", what, i, (double)got[i],
                      (double)expected[i]);
}

#endif
