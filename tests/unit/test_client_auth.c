/*
 * test_client_auth.c - the C client library against servers with bearer
 * tokens (paramd --token-file): a token of each role over the binary
 * protocol, the codes and the server's messages when HELLO is refused
 * (unauthorized, although the server closes the connection right after
 * its ERROR) and when a role is too low (forbidden, on a connection that
 * stays usable), nothing changed by a refused request, a token revoked by
 * SIGHUP on a connection already open, and a sharded handle, which must
 * give the token to every shard.
 *
 * One server and one two-shard cluster, all with the same token file,
 * serve the whole suite (an unchecked fixture, in Check's parent process).
 */
#include "client_harness.h"

#include <stdbool.h>
#include <sys/stat.h>

#define READ_TOKEN "read-token-0123456789abcdef"
#define WRITE_TOKEN "write-token-0123456789abcdef"
#define ADMIN_TOKEN "admin-token-0123456789abcdef"
#define REVOKED_TOKEN "revoked-token-0123456789abcdef"

static test_server server;
static test_server shards[2];
static char dir[256];
static char token_file[320];
static char server_map[320];
static char client_map[320];

static void write_file(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    if (file == NULL || fputs(text, file) < 0 || fclose(file) != 0) {
        perror(path);
        abort();
    }
    chmod(path, 0600);
}

static void write_tokens(bool with_revoked)
{
    char text[512];
    snprintf(text, sizeof text, "# roles for test_client_auth\nread %s\nwrite %s\nadmin %s\n%s%s%s",
             READ_TOKEN, WRITE_TOKEN, ADMIN_TOKEN, with_revoked ? "write " : "",
             with_revoked ? REVOKED_TOKEN : "", with_revoked ? "\n" : "");
    write_file(token_file, text);
}

static void write_map(const char *path, const int *ports)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"version\": 1, \"split_threshold\": 100, \"shards\": [{\"id\": 0, \"tcp\": "
             "\"127.0.0.1:%d\"}, {\"id\": 1, \"tcp\": \"127.0.0.1:%d\"}]}\n",
             ports[0], ports[1]);
    write_file(path, text);
}

static void start_servers(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof dir, "/tmp/paramd-auth-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(token_file, sizeof token_file, "%s/tokens", dir);
    snprintf(server_map, sizeof server_map, "%s/server-map.json", dir);
    snprintf(client_map, sizeof client_map, "%s/shard-map.json", dir);
    write_tokens(true);
    const char *extra[] = {"--token-file", token_file, NULL};
    if (server_start_with(&server, 0, extra) != 0)
        abort();
    int placeholders[2] = {1, 2}, ports[2];
    write_map(server_map, placeholders);
    for (int i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        const char *shard_extra[] = {"--token-file", token_file, "--shard-map", server_map,
                                     "--shard-id", id, NULL};
        if (server_start_with(&shards[i], 0, shard_extra) != 0)
            abort();
        ports[i] = shards[i].tcp_port;
    }
    write_map(client_map, ports);
}

static void stop_servers(void)
{
    test_server *all[3] = {&server, &shards[0], &shards[1]};
    for (int i = 0; i < 3; i++) {
        if (server_stop(all[i]) != 0) {
            fprintf(stderr, "paramd exited uncleanly; see %s\n", all[i]->log);
            abort();
        }
        server_remove_dir(all[i]);
    }
    unlink(token_file);
    unlink(server_map);
    unlink(client_map);
    rmdir(dir);
}

/* A handle of the single server with this token (NULL: none); *error
 * receives the connect's result. */
static paramd_client *connect_with(const char *token, int *error)
{
    paramd_config config = {.host = "127.0.0.1",
                            .port = server.tcp_port,
                            .connect_timeout_ms = HARNESS_TIMEOUT_MS,
                            .timeout_ms = HARNESS_TIMEOUT_MS,
                            .token = token};
    paramd_client *client = paramd_connect_config(&config, error);
    ck_assert_ptr_nonnull(client);
    return client;
}

static paramd_client *connect_ok(const char *token)
{
    int error = -1;
    paramd_client *client = connect_with(token, &error);
    ck_assert_msg(error == PARAMD_OK, "connect with %s: %s", token, paramd_client_errstr(client));
    return client;
}

static const char *model_body =
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.5}, \"tensors\": [{\"name\": \"w\", "
    "\"shape\": [4], \"values\": [1, 2, 3, 4]}]}";

/* Creates `model` with an admin handle. */
static void create_model(const char *model)
{
    paramd_client *admin = connect_ok(ADMIN_TOKEN);
    ck_assert_msg(paramd_create_model(admin, model, model_body, NULL) == PARAMD_OK, "create: %s",
                  paramd_client_errstr(admin));
    paramd_close(admin);
}

/* The model's weights and step, read with a read token (checked). */
static uint64_t read_weights(const char *model, float weights[4])
{
    paramd_client *reader = connect_ok(READ_TOKEN);
    uint64_t step = 0;
    ck_assert_msg(paramd_pull_tensor(reader, model, "w", weights, 4, &step) == PARAMD_OK,
                  "pull: %s", paramd_client_errstr(reader));
    paramd_close(reader);
    return step;
}

static void assert_error(paramd_client *client, int result, int code, const char *text)
{
    ck_assert_msg(result == code, "expected %s (%d), got %d: %s", paramd_strerror(code), code,
                  result, paramd_client_errstr(client));
    ck_assert_int_eq(paramd_client_error(client), code);
    ck_assert_msg(strstr(paramd_client_errstr(client), text) != NULL,
                  "message \"%s\" lacks \"%s\"", paramd_client_errstr(client), text);
}

START_TEST(test_each_role_does_what_it_may)
{
    create_model("auth_roles");
    float before[4], after[4], grad[4] = {1, 1, 1, 1};
    uint64_t step = read_weights("auth_roles", before);
    ck_assert_uint_eq(step, 0);

    paramd_client *writer = connect_ok(WRITE_TOKEN);
    paramd_push_result result;
    ck_assert_msg(paramd_push_tensor(writer, "auth_roles", "w", grad, 4, NULL, &result) ==
                      PARAMD_OK,
                  "push: %s", paramd_client_errstr(writer));
    ck_assert_uint_eq(result.step, 1);
    ck_assert_uint_eq(read_weights("auth_roles", after), 1);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(after[i], before[i] - 0.5f);

    /* A write token may not delete (admin): forbidden, and the same
     * connection goes on working. */
    assert_error(writer, paramd_delete_model(writer, "auth_roles"), PARAMD_E_FORBIDDEN,
                 "needs a token with the admin role");
    ck_assert(paramd_is_connected(writer));
    float weights[4];
    ck_assert_int_eq(paramd_pull_tensor(writer, "auth_roles", "w", weights, 4, NULL), PARAMD_OK);
    paramd_close(writer);

    paramd_client *admin = connect_ok(ADMIN_TOKEN);
    ck_assert_int_eq(paramd_delete_model(admin, "auth_roles"), PARAMD_OK);
    paramd_close(admin);
}
END_TEST

START_TEST(test_read_token_cannot_change_anything)
{
    create_model("auth_read");
    float before[4], after[4], grad[4] = {1, 2, 3, 4};
    read_weights("auth_read", before);
    paramd_client *reader = connect_ok(READ_TOKEN);
    assert_error(reader, paramd_push_tensor(reader, "auth_read", "w", grad, 4, NULL, NULL),
                 PARAMD_E_FORBIDDEN, "needs a token with the write role");
    float weights[4];
    assert_error(reader, paramd_pushpull_tensor(reader, "auth_read", "w", grad, weights, 4, NULL,
                                                NULL),
                 PARAMD_E_FORBIDDEN, "write role");
    assert_error(reader, paramd_create_model(reader, "auth_read_new", model_body, NULL),
                 PARAMD_E_FORBIDDEN, "write role");
    assert_error(reader, paramd_delete_model(reader, "auth_read"), PARAMD_E_FORBIDDEN,
                 "admin role");
    /* Reading is what it may do, on the same connection. */
    uint64_t step = 99;
    ck_assert_int_eq(paramd_pull_tensor(reader, "auth_read", "w", weights, 4, &step), PARAMD_OK);
    ck_assert_uint_eq(step, 0);
    paramd_close(reader);
    ck_assert_uint_eq(read_weights("auth_read", after), 0);
    assert_floats_identical(after, before, 4, "weights after refused pushes");
    paramd_client *admin = connect_ok(ADMIN_TOKEN);
    char *json = NULL;
    ck_assert_int_eq(paramd_describe_model(admin, "auth_read_new", &json), PARAMD_E_MODEL_NOT_FOUND);
    paramd_free(json);
    ck_assert_int_eq(paramd_delete_model(admin, "auth_read"), PARAMD_OK);
    paramd_close(admin);
}
END_TEST

START_TEST(test_missing_or_unknown_token_is_unauthorized)
{
    create_model("auth_none");
    float before[4], after[4], grad[4] = {1, 1, 1, 1};
    read_weights("auth_none", before);
    const char *tokens[2] = {NULL, "not-a-known-token-0123456789"};
    const char *messages[2] = {"this server needs a bearer token", "the token is not valid"};
    for (int i = 0; i < 2; i++) {
        int error = 0;
        paramd_client *client = connect_with(tokens[i], &error);
        /* The server closes the connection after its ERROR: the code must
         * still be unauthorized with the server's message, not a
         * connection error. */
        assert_error(client, error, PARAMD_E_UNAUTHORIZED, messages[i]);
        ck_assert_msg(strstr(paramd_client_errstr(client), "HELLO") != NULL, "%s",
                      paramd_client_errstr(client));
        ck_assert(!paramd_is_connected(client));
        /* Every later call connects again and is refused again. */
        assert_error(client, paramd_push_tensor(client, "auth_none", "w", grad, 4, NULL, NULL),
                     PARAMD_E_UNAUTHORIZED, messages[i]);
        float weights[4];
        assert_error(client, paramd_pull_tensor(client, "auth_none", "w", weights, 4, NULL),
                     PARAMD_E_UNAUTHORIZED, messages[i]);
        assert_error(client, paramd_reconnect(client), PARAMD_E_UNAUTHORIZED, messages[i]);
        paramd_close(client);
    }
    ck_assert_uint_eq(read_weights("auth_none", after), 0);
    assert_floats_identical(after, before, 4, "weights after refused connections");
}
END_TEST

/* Waits until the server's log has `count` lines with `text`. */
static bool wait_for_log(const test_server *s, const char *text, int count)
{
    double deadline = harness_now() + 30;
    while (harness_now() < deadline) {
        FILE *log = fopen(s->log, "r");
        char line[2048];
        int seen = 0;
        while (log && fgets(line, sizeof line, log))
            seen += strstr(line, text) != NULL;
        if (log)
            fclose(log);
        if (seen >= count)
            return true;
        harness_sleep_ms(20);
    }
    return false;
}

START_TEST(test_token_revoked_on_an_open_connection)
{
    create_model("auth_revoked");
    paramd_client *client = connect_ok(REVOKED_TOKEN);
    float grad[4] = {1, 1, 1, 1}, weights[4];
    ck_assert_int_eq(paramd_push_tensor(client, "auth_revoked", "w", grad, 4, NULL, NULL),
                     PARAMD_OK);
    write_tokens(false);
    kill(server.pid, SIGHUP);
    ck_assert_msg(wait_for_log(&server, "reloaded", 1), "no reload in %s", server.log);
    /* The server answers unauthorized and closes the connection. */
    assert_error(client, paramd_push_tensor(client, "auth_revoked", "w", grad, 4, NULL, NULL),
                 PARAMD_E_UNAUTHORIZED, "no longer valid");
    /* The next call reconnects (the library knows the server closes after
     * unauthorized, even before its FIN arrives), and HELLO is refused. */
    assert_error(client, paramd_pull_tensor(client, "auth_revoked", "w", weights, 4, NULL),
                 PARAMD_E_UNAUTHORIZED, "the token is not valid");
    paramd_close(client);
    ck_assert_uint_eq(read_weights("auth_revoked", weights), 1);
    /* Put the token back for the other tests (and reload once more). */
    write_tokens(true);
    kill(server.pid, SIGHUP);
    ck_assert(wait_for_log(&server, "reloaded", 2));
}
END_TEST

static paramd_client *open_sharded(const char *token, int *error)
{
    paramd_config config = {.shard_map = client_map,
                            .connect_timeout_ms = HARNESS_TIMEOUT_MS,
                            .timeout_ms = HARNESS_TIMEOUT_MS,
                            .token = token};
    paramd_client *client = paramd_connect_config(&config, error);
    ck_assert_ptr_nonnull(client);
    return client;
}

START_TEST(test_sharded_handle_gives_every_shard_the_token)
{
    int error = -1;
    paramd_client *admin = open_sharded(ADMIN_TOKEN, &error);
    ck_assert_msg(error == PARAMD_OK, "%s", paramd_client_errstr(admin));
    /* 400 elements over a split threshold of 100: both shards hold a part. */
    const char *body = "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 1}, \"tensors\": [{\"name\": "
                       "\"w\", \"shape\": [400]}]}";
    ck_assert_msg(paramd_create_model(admin, "auth_sharded", body, NULL) == PARAMD_OK, "%s",
                  paramd_client_errstr(admin));
    for (int i = 0; i < 2; i++) {
        char *json = NULL;
        paramd_client *shard = paramd_shard_client(admin, i);
        ck_assert_int_eq(paramd_describe_model(shard, "auth_sharded", &json), PARAMD_OK);
        paramd_free(json);
    }
    static float grad[400], weights[400], before[400];
    for (int i = 0; i < 400; i++)
        grad[i] = 1.0f;
    ck_assert_int_eq(paramd_pull_tensor(admin, "auth_sharded", "w", before, 400, NULL), PARAMD_OK);

    paramd_client *writer = open_sharded(WRITE_TOKEN, &error);
    ck_assert_int_eq(error, PARAMD_OK);
    ck_assert_msg(paramd_pushpull_tensor(writer, "auth_sharded", "w", grad, weights, 400, NULL,
                                         NULL) == PARAMD_OK,
                  "%s", paramd_client_errstr(writer));
    for (int i = 0; i < 400; i++)
        ck_assert_float_eq(weights[i], before[i] - 1.0f);
    ck_assert_int_eq(paramd_pull_tensor(writer, "auth_sharded", "w", before, 400, NULL), PARAMD_OK);
    assert_error(writer, paramd_delete_model(writer, "auth_sharded"), PARAMD_E_FORBIDDEN,
                 "admin role");
    ck_assert_msg(strstr(paramd_client_errstr(writer), "shard ") != NULL, "%s",
                  paramd_client_errstr(writer));
    paramd_close(writer);

    paramd_client *reader = open_sharded(READ_TOKEN, &error);
    ck_assert_int_eq(error, PARAMD_OK);
    assert_error(reader, paramd_push_tensor(reader, "auth_sharded", "w", grad, 400, NULL, NULL),
                 PARAMD_E_FORBIDDEN, "write role");
    paramd_close(reader);

    paramd_client *nobody = open_sharded(NULL, &error);
    assert_error(nobody, error, PARAMD_E_UNAUTHORIZED, "needs a bearer token");
    ck_assert_msg(strstr(paramd_client_errstr(nobody), "shard 0") != NULL, "%s",
                  paramd_client_errstr(nobody));
    paramd_close(nobody);

    ck_assert_int_eq(paramd_pull_tensor(admin, "auth_sharded", "w", weights, 400, NULL), PARAMD_OK);
    assert_floats_identical(weights, before, 400, "weights after refused requests");
    ck_assert_int_eq(paramd_delete_model(admin, "auth_sharded"), PARAMD_OK);
    paramd_close(admin);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("client with tokens");
    TCase *tokens = tcase_create("tokens");
    tcase_add_unchecked_fixture(tokens, start_servers, stop_servers);
    tcase_set_timeout(tokens, 300);
    tcase_add_test(tokens, test_each_role_does_what_it_may);
    tcase_add_test(tokens, test_read_token_cannot_change_anything);
    tcase_add_test(tokens, test_missing_or_unknown_token_is_unauthorized);
    tcase_add_test(tokens, test_token_revoked_on_an_open_connection);
    tcase_add_test(tokens, test_sharded_handle_gives_every_shard_the_token);
    suite_add_tcase(suite, tokens);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
