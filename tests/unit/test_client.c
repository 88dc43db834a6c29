/*
 * test_client.c - the C client library against the real server: every call
 * of include/paramd/client.h, its results compared with what the HTTP API
 * gives for the same requests (bit for bit for weights), errors carrying
 * the server's code and message, float16 and bfloat16, ranges, options,
 * and bad arguments.  Reconnects, timeouts and pipelining are in
 * test_client_resilience.c.
 *
 * One server serves the whole suite (an unchecked fixture, in Check's
 * parent process); each test uses models of its own.
 */
#include "client_harness.h"

#include "half.h"

#include <math.h>

static test_server server;

static void start_server(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (server_start(&server, 0) != 0)
        abort();
}

static void stop_server(void)
{
    int status = server_stop(&server);
    if (status != 0) {
        fprintf(stderr, "paramd exited with status %d; its log, %s:\n", status, server.log);
        FILE *log = fopen(server.log, "r");
        char line[2048];
        while (log && fgets(line, sizeof line, log))
            fputs(line, stderr);
        if (log)
            fclose(log);
        abort();
    }
    server_remove_dir(&server);
}

/* Creates a model over HTTP (checked). */
static void http_create(const char *model, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/models/%s", model);
    json_decref(http_json(server.http_port, "PUT", path, body, 201));
}

/* Parses JSON text (checked). */
static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *document = json_loads(text, 0, &error);
    ck_assert_msg(document != NULL, "not JSON (%s): %s", error.text, text);
    return document;
}

/* The two documents are equal (checked); consumes both. */
static void assert_json_equal(json_t *got, json_t *expected, const char *what)
{
    char *a = json_dumps(got, JSON_SORT_KEYS), *b = json_dumps(expected, JSON_SORT_KEYS);
    ck_assert_msg(json_equal(got, expected), "%s:\n  client %s\n  http   %s", what, a, b);
    free(a);
    free(b);
    json_decref(got);
    json_decref(expected);
}

static const char *sgd_body =
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9},"
    " \"tensors\": [{\"name\": \"w\", \"shape\": [2, 3], \"values\": [1, 2, 3, 4, 5, 6]},"
    "               {\"name\": \"b\", \"shape\": [4], \"init\": {\"name\": \"normal\", \"std\": 0.5, \"seed\": 3}},"
    "               {\"name\": \"s\", \"shape\": []}]}";

/* ---------------------------------------------------------------------------
 * Connecting, models
 * ------------------------------------------------------------------------- */

START_TEST(test_connect_says_hello)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert(paramd_is_connected(c));
    ck_assert_str_eq(paramd_server_name(c), "paramd " PARAMD_VERSION_STRING);
    ck_assert_int_eq(paramd_client_error(c), PARAMD_OK);
    ck_assert_str_eq(paramd_client_errstr(c), "");
    paramd_close(c);

    paramd_config config = {.port = server.tcp_port, .client_name = "test_client",
                            .timeout_ms = 10000};
    int error = -1;
    c = paramd_connect_config(&config, &error);
    ck_assert_int_eq(error, PARAMD_OK);
    ck_assert_int_eq(paramd_reconnect(c), PARAMD_OK);
    ck_assert(paramd_is_connected(c));
    paramd_close(c);
    paramd_close(NULL);
}
END_TEST

START_TEST(test_models_match_http)
{
    paramd_client *c = connect_to(server.tcp_port);
    char *description = NULL;
    ck_assert_int_eq(paramd_create_model(c, "cm_models", sgd_body, &description), PARAMD_OK);
    ck_assert_ptr_nonnull(description);
    json_t *created = parse(description);
    paramd_free(description);
    ck_assert_str_eq(json_string_value(json_object_get(created, "name")), "cm_models");
    assert_json_equal(created,
                      http_json(server.http_port, "GET", "/v1/models/cm_models", NULL, 200),
                      "create's description");

    char *json = NULL;
    ck_assert_int_eq(paramd_describe_model(c, "cm_models", &json), PARAMD_OK);
    assert_json_equal(parse(json),
                      http_json(server.http_port, "GET", "/v1/models/cm_models", NULL, 200),
                      "describe");
    paramd_free(json);
    ck_assert_int_eq(paramd_stats(c, "cm_models", &json), PARAMD_OK);
    assert_json_equal(parse(json),
                      http_json(server.http_port, "GET", "/v1/models/cm_models", NULL, 200),
                      "stats of a model");
    paramd_free(json);
    ck_assert_int_eq(paramd_list_models(c, &json), PARAMD_OK);
    assert_json_equal(parse(json), http_json(server.http_port, "GET", "/v1/models", NULL, 200),
                      "list");
    paramd_free(json);

    ck_assert_int_eq(paramd_stats(c, NULL, &json), PARAMD_OK);
    json_t *stats = parse(json);
    paramd_free(json);
    ck_assert_str_eq(json_string_value(json_object_get(stats, "server")),
                     "paramd " PARAMD_VERSION_STRING);
    ck_assert(json_integer_value(json_object_get(stats, "models")) >= 1);
    ck_assert_ptr_nonnull(json_object_get(stats, "pushes"));
    json_decref(stats);

    ck_assert_int_eq(paramd_delete_model(c, "cm_models"), PARAMD_OK);
    free(http_error_message(server.http_port, "GET", "/v1/models/cm_models", NULL,
                            "model_not_found"));
    paramd_close(c);
}
END_TEST

START_TEST(test_model_errors_carry_the_server_message)
{
    paramd_client *c = connect_to(server.tcp_port);
    /* Each refusal: the same code and the same message as over HTTP. */
    struct {
        const char *body;
        int code;
        const char *name;
    } cases[] = {
        {"{\"optimizer\": {\"name\": \"SGD\"", PARAMD_E_BAD_JSON, "bad_json"},
        {"{\"optimizer\": {\"name\": \"Nope\"}, \"tensors\": []}", PARAMD_E_UNKNOWN_OPTIMIZER,
         "unknown_optimizer"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": -1}, \"tensors\": []}",
         PARAMD_E_BAD_HYPERPARAMETER, "bad_hyperparameter"},
        {"{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": [{\"name\": \"w\", \"shape\": [2], "
         "\"values\": [1]}]}",
         PARAMD_E_SHAPE_MISMATCH, "shape_mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *description = (char *)"untouched";
        ck_assert_int_eq(paramd_create_model(c, "cm_bad", cases[i].body, &description),
                         cases[i].code);
        ck_assert_ptr_null(description);
        ck_assert_int_eq(paramd_client_error(c), cases[i].code);
        ck_assert_str_eq(paramd_error_name(paramd_client_error(c)), cases[i].name);
        char *message = http_error_message(server.http_port, "PUT", "/v1/models/cm_bad",
                                           cases[i].body, cases[i].name);
        ck_assert_str_eq(paramd_client_errstr(c), message);
        free(message);
    }
    /* The connection stays usable after refusals. */
    ck_assert(paramd_is_connected(c));
    ck_assert_int_eq(paramd_create_model(c, "cm_bad", sgd_body, NULL), PARAMD_OK);
    ck_assert_int_eq(paramd_create_model(c, "cm_bad", sgd_body, NULL), PARAMD_E_MODEL_EXISTS);
    char *message = http_error_message(server.http_port, "PUT", "/v1/models/cm_bad", sgd_body,
                                       "model_exists");
    ck_assert_str_eq(paramd_client_errstr(c), message);
    free(message);
    ck_assert_int_eq(paramd_delete_model(c, "cm_bad"), PARAMD_OK);
    ck_assert_int_eq(paramd_delete_model(c, "cm_bad"), PARAMD_E_MODEL_NOT_FOUND);
    message = http_error_message(server.http_port, "DELETE", "/v1/models/cm_bad", NULL,
                                 "model_not_found");
    ck_assert_str_eq(paramd_client_errstr(c), message);
    free(message);
    char *json = NULL;
    ck_assert_int_eq(paramd_describe_model(c, "cm_bad", &json), PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_null(json);
    ck_assert_int_eq(paramd_create_model(c, "bad/name", sgd_body, NULL), PARAMD_E_BAD_NAME);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "bad/name"));
    paramd_close(c);
}
END_TEST

START_TEST(test_tensor_info)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_info", sgd_body, NULL), PARAMD_OK);
    paramd_tensor_info info;
    ck_assert_int_eq(paramd_tensor_info_get(c, "cm_info", "w", &info), PARAMD_OK);
    ck_assert_str_eq(info.name, "w");
    ck_assert_uint_eq(info.id, 0);
    ck_assert_int_eq(info.dimension_count, 2);
    ck_assert_uint_eq(info.shape[0], 2);
    ck_assert_uint_eq(info.shape[1], 3);
    ck_assert_uint_eq(info.element_count, 6);
    ck_assert_int_eq(paramd_tensor_info_get(c, "cm_info", "s", &info), PARAMD_OK);
    ck_assert_int_eq(info.dimension_count, 0);
    ck_assert_uint_eq(info.element_count, 1);
    ck_assert_int_eq(paramd_tensor_info_get(c, "cm_info", "zz", &info), PARAMD_E_TENSOR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "\"zz\""));
    ck_assert_int_eq(paramd_tensor_info_get(c, "cm_nope", "w", &info), PARAMD_E_MODEL_NOT_FOUND);

    paramd_tensor_info *infos = NULL;
    size_t count = 0;
    ck_assert_int_eq(paramd_model_tensors(c, "cm_info", &infos, &count), PARAMD_OK);
    ck_assert_uint_eq(count, 3);
    ck_assert_str_eq(infos[0].name, "w");
    ck_assert_str_eq(infos[1].name, "b");
    ck_assert_uint_eq(infos[1].shape[0], 4);
    ck_assert_str_eq(infos[2].name, "s");
    paramd_free(infos);
    ck_assert_int_eq(paramd_delete_model(c, "cm_info"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Pushes and pulls against the HTTP API
 * ------------------------------------------------------------------------- */

/* An HTTP push of w and b (float32 base64), with optional loss and
 * grad_norm; returns the reply. */
static json_t *http_push(const char *model, const float *gw, const float *gb, const char *extra)
{
    char *w = b64_object(gw, 6), *b = b64_object(gb, 4);
    char body[2048], path[256];
    snprintf(body, sizeof body, "{\"grads\": {\"w\": %s, \"b\": %s}%s}", w, b, extra ? extra : "");
    snprintf(path, sizeof path, "/v1/models/%s/push", model);
    free(w);
    free(b);
    return http_json(server.http_port, "POST", path, body, 200);
}

START_TEST(test_pushpull_matches_http)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_pp_tcp", sgd_body, NULL), PARAMD_OK);
    http_create("cm_pp_http", sgd_body);
    float gw[6], gb[4], w[6], b[4], hw[6], hb[4];
    for (int step = 1; step <= 5; step++) {
        for (int i = 0; i < 6; i++)
            gw[i] = 0.1f * (float)(i + step) - 0.3f;
        for (int i = 0; i < 4; i++)
            gb[i] = 0.05f * (float)(i * step);
        paramd_push_item items[2] = {{"w", gw, w, 6}, {"b", gb, b, 4}};
        paramd_push_result result;
        paramd_push_options options = {.worker = "w0"};
        ck_assert_int_eq(paramd_pushpull(c, "cm_pp_tcp", items, 2, &options, &result), PARAMD_OK);
        json_t *reply = http_push("cm_pp_http", gw, gb, NULL);
        ck_assert_uint_eq(result.step, (uint64_t)step);
        ck_assert_int_eq((int)json_integer_value(json_object_get(reply, "step")), step);
        ck_assert(result.lr == json_number_value(json_object_get(reply, "lr")));
        ck_assert(isnan(result.grad_norm));
        ck_assert(isnan(result.loss_scale));
        ck_assert_uint_eq(result.flags, 0);
        b64_floats(json_object_get(json_object_get(reply, "weights"), "w"), hw, 6);
        b64_floats(json_object_get(json_object_get(reply, "weights"), "b"), hb, 4);
        json_decref(reply);
        assert_floats_identical(w, hw, 6, "w");
        assert_floats_identical(b, hb, 4, "b");
    }
    /* A push without weights, then a pull of everything, same as HTTP. */
    paramd_push_result result;
    ck_assert_int_eq(paramd_push_tensor(c, "cm_pp_tcp", "w", gw, 6, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 6);
    char *one = b64_object(gw, 6), body[512];
    snprintf(body, sizeof body, "{\"grads\": {\"w\": %s}}", one);
    free(one);
    json_decref(http_json(server.http_port, "POST", "/v1/models/cm_pp_http/push", body, 200));
    float s = -1;
    paramd_pull_item pulls[3] = {{"w", 0, 6, w}, {"b", 0, 4, b}, {"s", 0, 1, &s}};
    uint64_t step = 0;
    ck_assert_int_eq(paramd_pull(c, "cm_pp_tcp", pulls, 3, 0, &step), PARAMD_OK);
    ck_assert_uint_eq(step, 6);
    http_weights(server.http_port, "cm_pp_http", "w", hw, 6);
    http_weights(server.http_port, "cm_pp_http", "b", hb, 4);
    assert_floats_identical(w, hw, 6, "pulled w");
    assert_floats_identical(b, hb, 4, "pulled b");
    ck_assert(s == 0.0f);
    float w2[6];
    ck_assert_int_eq(paramd_pull_tensor(c, "cm_pp_tcp", "w", w2, 6, &step), PARAMD_OK);
    assert_floats_identical(w2, hw, 6, "paramd_pull_tensor");
    ck_assert_int_eq(paramd_pushpull_tensor(c, "cm_pp_tcp", "s", &s, &s, 1, NULL, NULL), PARAMD_OK);
    ck_assert_int_eq(paramd_delete_model(c, "cm_pp_tcp"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

START_TEST(test_loss_and_grad_norm_match_http)
{
    const char *body =
        "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1},"
        " \"clip\": {\"max_norm\": 1.0},"
        " \"schedule\": {\"name\": \"ReduceLROnPlateau\", \"patience\": 0, \"factor\": 0.5},"
        " \"tensors\": [{\"name\": \"w\", \"shape\": [6], \"values\": [1, 2, 3, 4, 5, 6]},"
        "               {\"name\": \"b\", \"shape\": [4]}]}";
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_opt_tcp", body, NULL), PARAMD_OK);
    http_create("cm_opt_http", body);
    float gw[6] = {1, 1, 1, 1, 1, 1}, gb[4] = {0.5f, 0, 0, 0}, w[6], b[4], hw[6];
    double losses[4] = {1.0, 2.0, 3.0, 0.5};
    for (int i = 0; i < 4; i++) {
        paramd_push_item items[2] = {{"w", gw, w, 6}, {"b", gb, b, 4}};
        paramd_push_options options = {.has_loss = 1, .loss = losses[i], .has_grad_norm = 1,
                                       .grad_norm = 4.0 + i, .worker = "worker-1"};
        paramd_push_result result;
        ck_assert_int_eq(paramd_pushpull(c, "cm_opt_tcp", items, 2, &options, &result), PARAMD_OK);
        char extra[128];
        snprintf(extra, sizeof extra, ", \"loss\": %g, \"grad_norm\": %g, \"worker\": \"worker-1\"",
                 losses[i], 4.0 + i);
        json_t *reply = http_push("cm_opt_http", gw, gb, extra);
        ck_assert(result.lr == json_number_value(json_object_get(reply, "lr")));
        ck_assert(result.grad_norm == json_number_value(json_object_get(reply, "grad_norm")));
        ck_assert(result.grad_norm == 4.0 + i);
        b64_floats(json_object_get(json_object_get(reply, "weights"), "w"), hw, 6);
        json_decref(reply);
        assert_floats_identical(w, hw, 6, "w");
    }
    /* The plateau halved the lr: the options reached the server. */
    ck_assert_int_eq(paramd_delete_model(c, "cm_opt_tcp"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

/* The float16 (or bfloat16) value nearest to v, as a float. */
static float rounded(float v, int dtype)
{
    return dtype == PARAMD_DTYPE_FLOAT16 ? paramd_float16_to_float32(paramd_float32_to_float16(v))
                                         : paramd_bfloat16_to_float32(paramd_float32_to_bfloat16(v));
}

static void check_half(int dtype, const char *tcp_model, const char *http_model)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, tcp_model, sgd_body, NULL), PARAMD_OK);
    http_create(http_model, sgd_body);
    float gw[6] = {0.1f, -0.2f, 0.3333333f, 1e-3f, 7.77f, -1e-5f}, gb[4] = {0.01f, 0.02f, 0.03f, 0.04f};
    float w[6], b[4], hw[6], hb[4], rw[6], rb[4];
    for (int step = 0; step < 3; step++) {
        paramd_push_item items[2] = {{"w", gw, w, 6}, {"b", gb, b, 4}};
        paramd_push_options options = {.dtype = dtype};
        ck_assert_int_eq(paramd_pushpull(c, tcp_model, items, 2, &options, NULL), PARAMD_OK);
        /* HTTP gets the gradients the library rounded, as float32. */
        for (int i = 0; i < 6; i++)
            rw[i] = rounded(gw[i], dtype);
        for (int i = 0; i < 4; i++)
            rb[i] = rounded(gb[i], dtype);
        json_t *reply = http_push(http_model, rw, rb, NULL);
        b64_floats(json_object_get(json_object_get(reply, "weights"), "w"), hw, 6);
        b64_floats(json_object_get(json_object_get(reply, "weights"), "b"), hb, 4);
        json_decref(reply);
        for (int i = 0; i < 6; i++)
            hw[i] = rounded(hw[i], dtype);
        for (int i = 0; i < 4; i++)
            hb[i] = rounded(hb[i], dtype);
        assert_floats_identical(w, hw, 6, "16-bit w");
        assert_floats_identical(b, hb, 4, "16-bit b");
    }
    /* A 16-bit pull of a range is the rounded float32 weights. */
    float part[3], full[6];
    paramd_pull_item range = {"w", 2, 3, part};
    ck_assert_int_eq(paramd_pull(c, tcp_model, &range, 1, dtype, NULL), PARAMD_OK);
    http_weights(server.http_port, http_model, "w", full, 6);
    for (int i = 0; i < 3; i++)
        ck_assert(part[i] == rounded(full[2 + i], dtype));
    ck_assert_int_eq(paramd_delete_model(c, tcp_model), PARAMD_OK);
    paramd_close(c);
}

START_TEST(test_float16)
{
    check_half(PARAMD_DTYPE_FLOAT16, "cm_f16_tcp", "cm_f16_http");
}
END_TEST

START_TEST(test_bfloat16)
{
    check_half(PARAMD_DTYPE_BFLOAT16, "cm_bf16_tcp", "cm_bf16_http");
}
END_TEST

START_TEST(test_ranges)
{
    const char *body = "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1},"
                       " \"tensors\": [{\"name\": \"v\", \"shape\": [10],"
                       " \"values\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}]}";
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_range", body, NULL), PARAMD_OK);
    float out[10];
    for (uint64_t offset = 0; offset < 10; offset++) {
        for (size_t count = 1; offset + count <= 10; count++) {
            memset(out, 0xff, sizeof out);
            ck_assert_int_eq(paramd_pull_range(c, "cm_range", "v", offset, count, out, NULL),
                             PARAMD_OK);
            for (size_t i = 0; i < count; i++)
                ck_assert(out[i] == (float)(offset + i));
        }
    }
    /* Several ranges of one tensor in one request. */
    float a[2], b[3];
    paramd_pull_item items[2] = {{"v", 8, 2, a}, {"v", 0, 3, b}};
    ck_assert_int_eq(paramd_pull(c, "cm_range", items, 2, PARAMD_DTYPE_FLOAT32, NULL), PARAMD_OK);
    ck_assert(a[0] == 8 && a[1] == 9 && b[0] == 0 && b[2] == 2);
    /* Outside the tensor: the server's bad_range and message. */
    ck_assert_int_eq(paramd_pull_range(c, "cm_range", "v", 8, 3, out, NULL), PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "range [8, 11) is outside"));
    ck_assert_int_eq(paramd_pull_range(c, "cm_range", "v", 11, 1, out, NULL), PARAMD_E_BAD_RANGE);
    /* An empty range is refused (the server used to read count 0 as the
     * whole tensor and overrun its reply buffer). */
    ck_assert_int_eq(paramd_pull_range(c, "cm_range", "v", 3, 0, out, NULL), PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "at least one element"));
    ck_assert(paramd_is_connected(c));
    ck_assert_int_eq(paramd_delete_model(c, "cm_range"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

START_TEST(test_push_errors)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_perr", sgd_body, NULL), PARAMD_OK);
    float g[6] = {0}, w[6];
    /* Unknown model: the server's LOOKUP message. */
    ck_assert_int_eq(paramd_pushpull_tensor(c, "cm_none", "w", g, w, 6, NULL, NULL),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "cm_none"));
    /* Unknown tensor (from the cached shapes). */
    ck_assert_int_eq(paramd_pushpull_tensor(c, "cm_perr", "nope", g, w, 6, NULL, NULL),
                     PARAMD_E_TENSOR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "\"nope\""));
    /* Wrong element count: the server's bad_range. */
    ck_assert_int_eq(paramd_pushpull_tensor(c, "cm_perr", "w", g, w, 5, NULL, NULL),
                     PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "whole tensor"));
    /* A non-finite gradient: refused whole, nothing changed. */
    float gb[4] = {0, NAN, 0, 0}, b[4];
    paramd_push_item items[2] = {{"w", g, w, 6}, {"b", gb, b, 4}};
    ck_assert_int_eq(paramd_pushpull(c, "cm_perr", items, 2, NULL, NULL), PARAMD_E_NON_FINITE);
    ck_assert_str_eq(paramd_error_name(paramd_client_error(c)), "non_finite");
    ck_assert(strlen(paramd_client_errstr(c)) > 0);
    /* None of this closed the connection, and a good push works. */
    ck_assert(paramd_is_connected(c));
    paramd_push_result result;
    ck_assert_int_eq(paramd_pushpull(c, "cm_perr", items, 1, NULL, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 1);
    ck_assert_int_eq(paramd_client_error(c), PARAMD_OK);
    ck_assert_str_eq(paramd_client_errstr(c), "");
    ck_assert_int_eq(paramd_delete_model(c, "cm_perr"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

START_TEST(test_bad_arguments)
{
    int error = 0;
    paramd_client *bad = paramd_connect("127.0.0.1", 0, 1000, &error);
    ck_assert_ptr_nonnull(bad);
    ck_assert_int_eq(error, PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(bad), "port 0"));
    ck_assert(!paramd_is_connected(bad));
    paramd_close(bad);
    bad = paramd_connect("127.0.0.1", 70000, 1000, &error);
    ck_assert_int_eq(error, PARAMD_E_INVALID_ARGUMENT);
    paramd_close(bad);
    bad = paramd_connect("no-such-host.invalid", 8471, 1000, &error);
    ck_assert_int_eq(error, PARAMD_E_CONNECT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(bad), "no-such-host.invalid"));
    paramd_close(bad);

    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_args", sgd_body, NULL), PARAMD_OK);
    float g[6] = {0}, w[6];
    paramd_push_item item = {"w", g, w, 6};
    ck_assert_int_eq(paramd_pushpull(c, NULL, &item, 1, NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "model name is NULL"));
    ck_assert_int_eq(paramd_pushpull(c, "cm_args", NULL, 1, NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_pushpull(c, "cm_args", &item, 0, NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "at least one tensor"));
    paramd_push_options options = {.dtype = 7};
    ck_assert_int_eq(paramd_pushpull(c, "cm_args", &item, 1, &options, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "dtype 7"));
    paramd_push_item no_grad = {"w", NULL, w, 6}, no_weights = {"w", g, NULL, 6},
                     no_name = {NULL, g, w, 6};
    ck_assert_int_eq(paramd_pushpull(c, "cm_args", &no_grad, 1, NULL, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "gradient array is NULL"));
    ck_assert_int_eq(paramd_pushpull(c, "cm_args", &no_weights, 1, NULL, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "weights array is NULL"));
    ck_assert_int_eq(paramd_push(c, "cm_args", &no_weights, 1, NULL, NULL), PARAMD_OK);
    ck_assert_int_eq(paramd_push(c, "cm_args", &no_name, 1, NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_pull_range(c, "cm_args", "w", 0, 6, NULL, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_pull(c, "cm_args", NULL, 0, 0, NULL), PARAMD_E_INVALID_ARGUMENT);
    paramd_pull_item pull = {"w", 0, 6, w};
    ck_assert_int_eq(paramd_pull(c, "cm_args", &pull, 1, 9, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_create_model(c, "cm_args2", NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_create_model(c, NULL, sgd_body, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_describe_model(c, "", NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_set_timeout(c, 0), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_tensor_info_get(c, "cm_args", "w", NULL), PARAMD_E_INVALID_ARGUMENT);
    /* A NULL handle. */
    ck_assert_int_eq(paramd_pushpull(NULL, "cm_args", &item, 1, NULL, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_list_models(NULL, NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_client_error(NULL), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(paramd_client_errstr(NULL));
    ck_assert_ptr_null(paramd_batch_begin(NULL));
    ck_assert_int_eq(paramd_batch_run(NULL), PARAMD_E_INVALID_ARGUMENT);
    /* Every argument error left the connection alone. */
    ck_assert(paramd_is_connected(c));
    ck_assert_int_eq(paramd_delete_model(c, "cm_args"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

START_TEST(test_error_names_and_messages)
{
    ck_assert_str_eq(paramd_error_name(PARAMD_E_CONNECT), "connect_failed");
    ck_assert_str_eq(paramd_error_name(PARAMD_E_CONNECTION), "connection_error");
    ck_assert_str_eq(paramd_error_name(PARAMD_E_TIMEOUT), "timeout");
    ck_assert_str_eq(paramd_error_name(PARAMD_E_INVALID_ARGUMENT), "invalid_argument");
    ck_assert_ptr_nonnull(strstr(paramd_strerror(PARAMD_E_TIMEOUT), "did not answer in time"));
    /* Codes are part of the wire contract: these numbers never change. */
    ck_assert_int_eq(PARAMD_E_BAD_RANGE, -21);
    ck_assert_int_eq(PARAMD_E_NOT_OWNER, -22);
    ck_assert_int_eq(PARAMD_E_TIMEOUT, -23);
    ck_assert_int_eq(PARAMD_E_CONNECT, -24);
    ck_assert_int_eq(PARAMD_E_INVALID_ARGUMENT, -26);
}
END_TEST

START_TEST(test_batch_results_and_errors)
{
    paramd_client *c = connect_to(server.tcp_port);
    ck_assert_int_eq(paramd_create_model(c, "cm_batch", sgd_body, NULL), PARAMD_OK);
    http_create("cm_batch_http", sgd_body);
    paramd_batch *batch = paramd_batch_begin(c);
    ck_assert_ptr_nonnull(batch);
    float gw[6] = {1, 2, 3, 4, 5, 6}, w[3][6], gb[4] = {1, 1, 1, 1}, b16[4], pulled[6];
    paramd_push_item item = {"w", gw, NULL, 6};
    ck_assert_int_eq(paramd_batch_push(batch, "cm_batch", &item, 1, NULL), 0);
    for (int i = 0; i < 3; i++) {
        item.weights = w[i];
        ck_assert_int_eq(paramd_batch_pushpull(batch, "cm_batch", &item, 1, NULL), 1 + i);
    }
    /* The gradients were copied: changing them now changes nothing. */
    gw[0] = 1000;
    paramd_push_item bad = {"w", gw, w[0], 5};
    ck_assert_int_eq(paramd_batch_pushpull(batch, "cm_batch", &bad, 1, NULL), 4);
    paramd_push_item half = {"b", gb, b16, 4};
    paramd_push_options f16 = {.dtype = PARAMD_DTYPE_FLOAT16};
    ck_assert_int_eq(paramd_batch_pushpull(batch, "cm_batch", &half, 1, &f16), 5);
    paramd_pull_item pull = {"w", 0, 6, pulled};
    ck_assert_int_eq(paramd_batch_pull(batch, "cm_batch", &pull, 1, 0), 6);
    /* Queuing fails at once for what the client can tell. */
    ck_assert_int_eq(paramd_batch_pull(batch, "cm_batch_none", &pull, 1, 0),
                     PARAMD_E_MODEL_NOT_FOUND);
    paramd_pull_item ghost = {"ghost", 0, 1, pulled};
    ck_assert_int_eq(paramd_batch_pull(batch, "cm_batch", &ghost, 1, 0), PARAMD_E_TENSOR_NOT_FOUND);
    ck_assert_uint_eq(paramd_batch_size(batch), 7);
    ck_assert_int_eq(paramd_batch_status(batch, 0), PARAMD_E_INVALID_ARGUMENT); /* not run */

    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "batch request 4"));
    paramd_push_result result;
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(paramd_batch_result(batch, i, &result), PARAMD_OK);
        ck_assert_uint_eq(result.step, i + 1);
        ck_assert_str_eq(paramd_batch_errstr(batch, i), "");
    }
    ck_assert_int_eq(paramd_batch_status(batch, 4), PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_batch_errstr(batch, 4), "whole tensor"));
    ck_assert_int_eq(paramd_batch_result(batch, 5, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 5);
    ck_assert_int_eq(paramd_batch_result(batch, 6, &result), PARAMD_OK);
    ck_assert_uint_eq(result.step, 5);
    ck_assert_int_eq(paramd_batch_status(batch, 7), PARAMD_E_INVALID_ARGUMENT);
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_E_INVALID_ARGUMENT); /* runs once */
    paramd_batch_free(batch);

    /* The same pushes over HTTP give the same weights, step by step. */
    float hw[6], hb[4], original[6] = {1, 2, 3, 4, 5, 6};
    char *g = b64_object(original, 6), body[512];
    snprintf(body, sizeof body, "{\"grads\": {\"w\": %s}}", g);
    free(g);
    for (int i = 0; i < 4; i++) {
        json_t *reply = http_json(server.http_port, "POST", "/v1/models/cm_batch_http/push", body, 200);
        if (i > 0) {
            b64_floats(json_object_get(json_object_get(reply, "weights"), "w"), hw, 6);
            assert_floats_identical(w[i - 1], hw, 6, "batched pushpull");
        }
        json_decref(reply);
    }
    assert_floats_identical(pulled, hw, 6, "batched pull");
    float ones[4] = {1, 1, 1, 1};
    json_decref(http_push("cm_batch_http", original, ones, NULL)); /* b's step, and w's 5th */
    http_weights(server.http_port, "cm_batch_http", "b", hb, 4);
    for (int i = 0; i < 4; i++)
        ck_assert(b16[i] == rounded(hb[i], PARAMD_DTYPE_FLOAT16));

    /* An empty batch runs without a word on the wire. */
    batch = paramd_batch_begin(c);
    ck_assert_int_eq(paramd_batch_run(batch), PARAMD_OK);
    paramd_batch_free(batch);
    paramd_batch_free(NULL);
    ck_assert_int_eq(paramd_delete_model(c, "cm_batch"), PARAMD_OK);
    paramd_close(c);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("client");
    TCase *tcase = tcase_create("against the server");
    tcase_add_unchecked_fixture(tcase, start_server, stop_server);
    tcase_set_timeout(tcase, 120);
    tcase_add_test(tcase, test_connect_says_hello);
    tcase_add_test(tcase, test_models_match_http);
    tcase_add_test(tcase, test_model_errors_carry_the_server_message);
    tcase_add_test(tcase, test_tensor_info);
    tcase_add_test(tcase, test_pushpull_matches_http);
    tcase_add_test(tcase, test_loss_and_grad_norm_match_http);
    tcase_add_test(tcase, test_float16);
    tcase_add_test(tcase, test_bfloat16);
    tcase_add_test(tcase, test_ranges);
    tcase_add_test(tcase, test_push_errors);
    tcase_add_test(tcase, test_bad_arguments);
    tcase_add_test(tcase, test_error_names_and_messages);
    tcase_add_test(tcase, test_batch_results_and_errors);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
