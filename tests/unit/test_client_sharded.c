/*
 * test_client_sharded.c - the C client library on a sharded parameter
 * service: three real paramd shards on loopback (a small split_threshold,
 * so that some tensors are split over all three), against one unsharded
 * paramd doing the same pushes.  Every weight and every reported norm must
 * be bit for bit the same (clipping by total norm included, which only the
 * client's global norm makes exact), in float32 and float16; ranges across
 * the shards' boundaries; merged documents; a create that one shard
 * refuses; a stale shard map; per-shard steps and versions in async and
 * sync modes; pipelined batches; and a shard killed with kill -9 and
 * restarted, after which the same handle works again.
 *
 * The shards run with a map whose addresses are placeholders (they bind
 * free ports); the clients read a map with the same version and threshold
 * and the ports the shards really bound.  Placement depends only on the
 * version's shard count and the threshold, never on the addresses.
 */
#include "client_harness.h"

#include "half.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>

#define SHARDS 3
#define MAP_VERSION 2
#define SPLIT_THRESHOLD 1000

typedef struct test_cluster {
    int count;
    test_server shards[4];
    char dir[256];
    char server_map[320];  /* what the shards run with */
    char client_map[320];  /* the same map with the shards' real TCP ports */
    int version;
} test_cluster;

static test_cluster cluster;
static test_server single;

/* Writes a shard map of `count` shards with these TCP ports. */
static void write_map(const char *path, int version, int count, const int *ports)
{
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    fprintf(file, "{\"version\": %d, \"split_threshold\": %d, \"shards\": [", version,
            SPLIT_THRESHOLD);
    for (int i = 0; i < count; i++)
        fprintf(file, "%s{\"id\": %d, \"tcp\": \"127.0.0.1:%d\"}", i ? ", " : "", i, ports[i]);
    fprintf(file, "]}\n");
    ck_assert_int_eq(fclose(file), 0);
}

/* Starts shard i of the cluster on tcp_port (0: a free one). */
static int shard_start(test_cluster *c, int i, int tcp_port)
{
    char id[32];
    snprintf(id, sizeof id, "%d", i);
    const char *extra[] = {"--shard-map", c->server_map, "--shard-id", id, NULL};
    return server_start_with(&c->shards[i], tcp_port, extra);
}

static int cluster_start(test_cluster *c, int count, int version)
{
    memset(c, 0, sizeof *c);
    c->count = count;
    c->version = version;
    snprintf(c->dir, sizeof c->dir, "/tmp/paramd-sharded-test-XXXXXX");
    if (mkdtemp(c->dir) == NULL)
        return -1;
    snprintf(c->server_map, sizeof c->server_map, "%s/server-map.json", c->dir);
    snprintf(c->client_map, sizeof c->client_map, "%s/shard-map.json", c->dir);
    int placeholders[4] = {1, 2, 3, 4}, ports[4];
    write_map(c->server_map, version, count, placeholders);
    for (int i = 0; i < count; i++) {
        if (shard_start(c, i, 0) != 0)
            return -1;
        ports[i] = c->shards[i].tcp_port;
    }
    write_map(c->client_map, version, count, ports);
    return 0;
}

/* Stops every shard (each must exit cleanly) and removes the files. */
static void cluster_stop(test_cluster *c)
{
    for (int i = 0; i < c->count; i++) {
        if (c->shards[i].pid > 0 && server_stop(&c->shards[i]) != 0) {
            fprintf(stderr, "shard %d did not exit cleanly; see %s\n", i, c->shards[i].log);
            abort();
        }
        server_remove_dir(&c->shards[i]);
    }
    unlink(c->server_map);
    unlink(c->client_map);
    rmdir(c->dir);
}

static void start_all(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (cluster_start(&cluster, SHARDS, MAP_VERSION) != 0 || server_start(&single, 0) != 0)
        abort();
}

static void stop_all(void)
{
    cluster_stop(&cluster);
    if (server_stop(&single) != 0)
        abort();
    server_remove_dir(&single);
}

static paramd_client *open_sharded(const char *map)
{
    int error = -1;
    paramd_client *c = paramd_connect_shard_map(map, HARNESS_TIMEOUT_MS, &error);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(error == PARAMD_OK, "connect: %s", paramd_client_errstr(c));
    ck_assert_int_eq(paramd_shard_count(c), SHARDS);
    return c;
}

#define CHECK_OK(client, call)                                                               \
    do {                                                                                     \
        int check_result_ = (call);                                                          \
        ck_assert_msg(check_result_ == PARAMD_OK, "%s: %s: %s", #call,                       \
                      paramd_error_name(check_result_), paramd_client_errstr(client));       \
    } while (0)

/* A deterministic gradient: xorshift64, values in [-scale, scale). */
static void fill_gradient(float *out, size_t count, uint64_t seed, float scale)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < count; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = scale * ((float)(x >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
    }
}

/* ---------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------- */

/* An Adam model: "emb" and "fc" are larger than the threshold and split,
 * the others whole on their rendezvous owners. */
static const char *adam_tensors =
    "\"tensors\": [{\"name\": \"emb\", \"shape\": [50, 40], \"init\": {\"name\": \"normal\", "
    "\"std\": 0.1, \"seed\": 1}},"
    " {\"name\": \"bias\", \"shape\": [10], \"values\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},"
    " {\"name\": \"fc\", \"shape\": [1001], \"init\": {\"name\": \"uniform\", \"a\": -1, \"b\": 1, "
    "\"seed\": 2}},"
    " {\"name\": \"scale\", \"shape\": []},"
    " {\"name\": \"w2\", \"shape\": [7, 9], \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 3}},"
    " {\"name\": \"w3\", \"shape\": [30], \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 4}}]";

#define TENSORS 6
static const char *const names[TENSORS] = {"emb", "bias", "fc", "scale", "w2", "w3"};
static const size_t sizes[TENSORS] = {2000, 10, 1001, 1, 63, 30};

static char *model_body(const char *optimizer, const char *extra)
{
    char *body = malloc(4096);
    snprintf(body, 4096, "{\"optimizer\": %s, %s%s%s}", optimizer, adam_tensors,
             extra[0] ? ", " : "", extra);
    return body;
}

/* Creates the model on the cluster and on the single server (checked). */
static void create_both(paramd_client *sharded, paramd_client *one, const char *model,
                        const char *body)
{
    char *description = NULL;
    CHECK_OK(sharded, paramd_create_model(sharded, model, body, &description));
    ck_assert_ptr_nonnull(description);
    paramd_free(description);
    CHECK_OK(one, paramd_create_model(one, model, body, NULL));
}

/* A sharded handle and a handle of the single server, with the model
 * created on both from model_body(optimizer, extra). */
static void open_both(const char *model, const char *optimizer, const char *extra,
                      paramd_client **sharded, paramd_client **one)
{
    *sharded = open_sharded(cluster.client_map);
    *one = connect_to(single.tcp_port);
    char *body = model_body(optimizer, extra);
    create_both(*sharded, *one, model, body);
    free(body);
}

/* Gradients of every tensor (seed + t for tensor t) and a push of all of
 * them, the weights of a pushpull going to `weights` (NULL: none). */
static void gradient_items(float grads[][2000], float weights[][2000], uint64_t seed,
                           float scale, paramd_push_item *items)
{
    for (int t = 0; t < TENSORS; t++) {
        fill_gradient(grads[t], sizes[t], seed + (uint64_t)t, scale);
        items[t] = (paramd_push_item){names[t], grads[t], weights ? weights[t] : NULL, sizes[t]};
    }
}

/* Every tensor's weights from both, bitwise equal (checked). */
static void assert_same_weights(paramd_client *sharded, paramd_client *one, const char *model)
{
    for (int t = 0; t < TENSORS; t++) {
        float a[2000], b[2000];
        uint64_t step_a, step_b;
        CHECK_OK(sharded, paramd_pull_tensor(sharded, model, names[t], a, sizes[t], &step_a));
        CHECK_OK(one, paramd_pull_tensor(one, model, names[t], b, sizes[t], &step_b));
        assert_floats_identical(a, b, sizes[t], names[t]);
        ck_assert_uint_eq(step_a, step_b);
    }
}

/* `steps` rounds of pushes of every tensor from three workers, each on
 * both services, compared after every push: the weights returned, the
 * step and the reported norm. */
static void train_both(const char *model, const char *body, int dtype, int steps)
{
    paramd_client *workers[3], *references[3];
    for (int k = 0; k < 3; k++) {
        workers[k] = open_sharded(cluster.client_map);
        references[k] = connect_to(single.tcp_port);
    }
    create_both(workers[0], references[0], model, body);
    assert_same_weights(workers[0], references[0], model);
    static float grads[TENSORS][2000], got[TENSORS][2000], expected[TENSORS][2000];
    for (int step = 0; step < steps; step++) {
        for (int k = 0; k < 3; k++) {
            char worker[32];
            snprintf(worker, sizeof worker, "worker-%d", k);
            /* Large enough that the clipping models clip. */
            paramd_push_item a[TENSORS], b[TENSORS];
            gradient_items(grads, got, (uint64_t)(step * 100 + k * 10), 2.0f, a);
            gradient_items(grads, expected, (uint64_t)(step * 100 + k * 10), 2.0f, b);
            paramd_push_options options = {.dtype = dtype, .worker = worker};
            paramd_push_result ra, rb;
            CHECK_OK(workers[k], paramd_pushpull(workers[k], model, a, TENSORS, &options, &ra));
            CHECK_OK(references[k],
                     paramd_pushpull(references[k], model, b, TENSORS, &options, &rb));
            for (int t = 0; t < TENSORS; t++)
                assert_floats_identical(got[t], expected[t], sizes[t], names[t]);
            ck_assert_uint_eq(ra.step, rb.step);
            ck_assert_msg(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(double)) == 0,
                          "grad_norm %.17g, single server %.17g", ra.grad_norm, rb.grad_norm);
            ck_assert(ra.lr == rb.lr);
            ck_assert_uint_eq(ra.flags, rb.flags);
        }
    }
    assert_same_weights(workers[0], references[0], model);
    for (int k = 0; k < 3; k++) {
        paramd_close(workers[k]);
        paramd_close(references[k]);
    }
}

/* ---------------------------------------------------------------------------
 * Placement, pushes and pulls
 * ------------------------------------------------------------------------- */

START_TEST(test_tensors_are_spread_over_the_shards)
{
    paramd_client *c = open_sharded(cluster.client_map);
    char *body = model_body("{\"name\": \"Adam\", \"lr\": 0.01}", "");
    CHECK_OK(c, paramd_create_model(c, "spread", body, NULL));
    free(body);
    paramd_tensor_info *infos;
    size_t count;
    CHECK_OK(c, paramd_model_tensors(c, "spread", &infos, &count));
    ck_assert_uint_eq(count, TENSORS);
    /* Whole sizes.  The split tensors anchor the order: emb, bias and fc
     * in creation order, then the three whole tensors after fc, which
     * lie on different shards, shard by shard. */
    int seen[TENSORS] = {0};
    for (size_t i = 0; i < count; i++) {
        int t = 0;
        while (t < TENSORS && strcmp(infos[i].name, names[t]) != 0)
            t++;
        ck_assert_int_lt(t, TENSORS);
        ck_assert_int_eq(seen[t]++, 0);
        if (i < 3)
            ck_assert_str_eq(infos[i].name, names[i]);
        ck_assert_uint_eq(infos[i].element_count, sizes[t]);
        ck_assert_uint_eq(infos[i].id, i);
    }
    ck_assert_int_eq(infos[0].dimension_count, 2);
    ck_assert_uint_eq(infos[0].shape[1], 40);
    paramd_free(infos);

    /* Each shard's own view: the split tensors' ranges, the whole ones on
     * one shard each, and every shard holding something. */
    int holders[TENSORS] = {0}, whole_on[SHARDS] = {0};
    for (int s = 0; s < SHARDS; s++) {
        paramd_client *shard = paramd_shard_client(c, s);
        ck_assert_ptr_nonnull(shard);
        paramd_tensor_info *held;
        size_t held_count;
        CHECK_OK(shard, paramd_model_tensors(shard, "spread", &held, &held_count));
        ck_assert_uint_ge(held_count, 2);
        for (size_t i = 0; i < held_count; i++)
            for (int t = 0; t < TENSORS; t++)
                if (strcmp(held[i].name, names[t]) == 0) {
                    holders[t]++;
                    whole_on[s] += t != 0 && t != 2;
                    ck_assert_uint_eq(held[i].element_count, sizes[t]);
                }
        paramd_free(held);
        char *json;
        CHECK_OK(shard, paramd_describe_model(shard, "spread", &json));
        json_t *description = json_loads(json, 0, NULL);
        paramd_free(json);
        json_t *emb = json_array_get(json_object_get(description, "tensors"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(emb, "name")), "emb");
        json_t *range = json_object_get(emb, "range");
        ck_assert_int_eq(json_integer_value(json_object_get(range, "offset")), 2000 * s / 3);
        json_decref(description);
    }
    ck_assert_msg((whole_on[0] > 0) + (whole_on[1] > 0) + (whole_on[2] > 0) >= 2,
                  "the whole tensors should lie on more than one shard");
    ck_assert_int_eq(holders[0], SHARDS);
    ck_assert_int_eq(holders[2], SHARDS);
    for (int t = 0; t < TENSORS; t++)
        if (t != 0 && t != 2)
            ck_assert_int_eq(holders[t], 1);
    ck_assert_ptr_null(paramd_shard_client(c, SHARDS));
    ck_assert_int_eq(paramd_client_error(c), PARAMD_E_INVALID_ARGUMENT);
    paramd_close(c);
}
END_TEST

START_TEST(test_adam_matches_one_server)
{
    char *body = model_body("{\"name\": \"Adam\", \"lr\": 0.01, \"weight_decay\": 0.01}", "");
    train_both("adam_plain", body, 0, 4);
    free(body);
}
END_TEST

START_TEST(test_global_norm_clipping_matches_one_server)
{
    /* Every push clips (gradients of norm ~60 against max_norm 1): only
     * the client's global norm, sent to every shard, gives each shard the
     * coefficient one server computes. */
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9}",
                            "\"clip\": {\"max_norm\": 1.0}");
    train_both("clip_sgd", body, 0, 4);
    free(body);
    body = model_body("{\"name\": \"AdamW\", \"lr\": 0.01}",
                      "\"clip\": {\"max_norm\": 3.0, \"norm_type\": 1}");
    train_both("clip_l1", body, 0, 3);
    free(body);
    body = model_body("{\"name\": \"AdamW\", \"lr\": 0.01}",
                      "\"clip\": {\"max_norm\": 0.5, \"norm_type\": \"inf\"}");
    train_both("clip_inf", body, 0, 3);
    free(body);
}
END_TEST

START_TEST(test_float16_pushes_match_one_server)
{
    char *body = model_body("{\"name\": \"Adam\", \"lr\": 0.01}", "\"clip\": {\"max_norm\": 2.0}");
    train_both("half", body, PARAMD_DTYPE_FLOAT16, 3);
    free(body);
    body = model_body("{\"name\": \"SGD\", \"lr\": 0.05}", "");
    train_both("bhalf", body, PARAMD_DTYPE_BFLOAT16, 2);
    free(body);
}
END_TEST

START_TEST(test_clipping_turned_on_while_running)
{
    /* The handle learnt a model that did not clip; then clipping is PATCHed
     * on, on every shard.  The shards refuse the next push (no grad_norm),
     * the library learns the model again and sends the push once more, with
     * the norm: the same result as one server's. */
    paramd_client *c, *one;
    open_both("patched", "{\"name\": \"SGD\", \"lr\": 0.1}", "", &c, &one);
    static float grads[TENSORS][2000];
    paramd_push_item items[TENSORS];
    gradient_items(grads, NULL, 40, 2.0f, items);
    paramd_push_result ra, rb;
    CHECK_OK(c, paramd_push(c, "patched", items, TENSORS, NULL, &ra));
    CHECK_OK(one, paramd_push(one, "patched", items, TENSORS, NULL, &rb));
    ck_assert(isnan(ra.grad_norm));
    const char *patch = "{\"clip\": {\"max_norm\": 1.0}}";
    for (int s = 0; s < SHARDS; s++)
        json_decref(http_json(cluster.shards[s].http_port, "PATCH", "/v1/models/patched", patch,
                              200));
    json_decref(http_json(single.http_port, "PATCH", "/v1/models/patched", patch, 200));
    CHECK_OK(c, paramd_push(c, "patched", items, TENSORS, NULL, &ra));
    CHECK_OK(one, paramd_push(one, "patched", items, TENSORS, NULL, &rb));
    ck_assert(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(double)) == 0);
    ck_assert_uint_eq(ra.step, 2);
    assert_same_weights(c, one, "patched");
    paramd_close(c);
    paramd_close(one);
}
END_TEST

START_TEST(test_lamb_keeps_large_tensors_whole)
{
    /* LAMB needs a whole tensor's norms: emb and fc stay whole although
     * they are above the threshold, and the results match one server. */
    char *body = model_body("{\"name\": \"LAMB\", \"lr\": 0.01}", "\"clip\": {\"max_norm\": 1.0}");
    paramd_client *c = open_sharded(cluster.client_map);
    CHECK_OK(c, paramd_create_model(c, "lamb_whole", body, NULL));
    int holders = 0;
    for (int s = 0; s < SHARDS; s++) {
        paramd_tensor_info info;
        holders += paramd_tensor_info_get(paramd_shard_client(c, s), "lamb_whole", "emb", &info) ==
                   PARAMD_OK;
    }
    ck_assert_int_eq(holders, 1);
    CHECK_OK(c, paramd_delete_model(c, "lamb_whole"));
    paramd_close(c);
    train_both("lamb_whole", body, 0, 3);
    free(body);
}
END_TEST

START_TEST(test_pull_ranges_across_shard_boundaries)
{
    paramd_client *c, *one;
    open_both("ranges", "{\"name\": \"SGD\", \"lr\": 0.1}", "", &c, &one);
    /* emb's 2000 elements lie on shards 0 [0, 666), 1 [666, 1333), 2 [1333, 2000). */
    static const struct { uint64_t offset; size_t count; } ranges[] = {
        {660, 10}, {0, 2000}, {665, 2}, {1332, 2}, {600, 1000}, {1999, 1}, {0, 666}, {666, 667},
    };
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        float a[2000], b[2000];
        uint64_t step;
        CHECK_OK(c, paramd_pull_range(c, "ranges", "emb", ranges[r].offset, ranges[r].count, a,
                                      &step));
        CHECK_OK(one, paramd_pull_range(one, "ranges", "emb", ranges[r].offset, ranges[r].count,
                                        b, NULL));
        assert_floats_identical(a, b, ranges[r].count, "emb range");
    }
    /* Several ranges and tensors in one pull, float16 on the wire. */
    float a[3][700], b[3][700];
    paramd_pull_item items_a[3] = {{"emb", 300, 700, a[0]}, {"fc", 330, 340, a[1]},
                                   {"w3", 5, 20, a[2]}};
    paramd_pull_item items_b[3] = {{"emb", 300, 700, b[0]}, {"fc", 330, 340, b[1]},
                                   {"w3", 5, 20, b[2]}};
    CHECK_OK(c, paramd_pull(c, "ranges", items_a, 3, PARAMD_DTYPE_FLOAT16, NULL));
    CHECK_OK(one, paramd_pull(one, "ranges", items_b, 3, PARAMD_DTYPE_FLOAT16, NULL));
    for (int i = 0; i < 3; i++)
        assert_floats_identical(a[i], b[i], items_a[i].count, items_a[i].tensor);
    /* Outside the tensor, or empty: refused before anything is sent. */
    float w[4];
    ck_assert_int_eq(paramd_pull_range(c, "ranges", "emb", 1999, 2, w, NULL), PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "[1999, 2001)"));
    ck_assert_int_eq(paramd_pull_range(c, "ranges", "emb", 5, 0, w, NULL), PARAMD_E_BAD_RANGE);
    ck_assert_int_eq(paramd_pull_range(c, "ranges", "nope", 0, 1, w, NULL),
                     PARAMD_E_TENSOR_NOT_FOUND);
    /* A push must cover whole tensors. */
    ck_assert_int_eq(paramd_push_tensor(c, "ranges", "emb", a[0], 700, NULL, NULL),
                     PARAMD_E_BAD_RANGE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "nothing was sent"));
    paramd_close(c);
    paramd_close(one);
}
END_TEST

START_TEST(test_non_finite_gradient_is_refused_before_sending)
{
    paramd_client *c, *one;
    open_both("nan_error", "{\"name\": \"SGD\", \"lr\": 0.1}", "\"clip\": {\"max_norm\": 1.0}",
              &c, &one);
    static float grads[TENSORS][2000];
    paramd_push_item items[TENSORS];
    gradient_items(grads, NULL, 0, 1.0f, items);
    grads[2][900] = NAN;
    /* One server refuses the whole push; the shards all do, too: the
     * library refuses it before sending anything. */
    ck_assert_int_eq(paramd_push(one, "nan_error", items, TENSORS, NULL, NULL),
                     PARAMD_E_NON_FINITE);
    ck_assert_int_eq(paramd_push(c, "nan_error", items, TENSORS, NULL, NULL), PARAMD_E_NON_FINITE);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "grads.fc[900]"));
    assert_same_weights(c, one, "nan_error");

    /* Under "zero" the non-finite values count as zero in the norm. */
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}",
                            "\"clip\": {\"max_norm\": 1.0}, \"nonfinite\": \"zero\"");
    create_both(c, one, "nan_zero", body);
    free(body);
    paramd_push_result ra, rb;
    CHECK_OK(c, paramd_push(c, "nan_zero", items, TENSORS, NULL, &ra));
    CHECK_OK(one, paramd_push(one, "nan_zero", items, TENSORS, NULL, &rb));
    ck_assert(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(double)) == 0);
    assert_same_weights(c, one, "nan_zero");
    paramd_close(c);
    paramd_close(one);
}
END_TEST

START_TEST(test_batches_match_one_server)
{
    /* 40 pipelined pushpulls of every tensor and range pulls, against the
     * same batch on one server. */
    paramd_client *c, *one;
    open_both("batched", "{\"name\": \"Adam\", \"lr\": 0.01}", "\"clip\": {\"max_norm\": 1.0}", &c,
              &one);
    enum { REQUESTS = 40 };
    static float grads[REQUESTS][TENSORS][2000], got[REQUESTS][TENSORS][2000],
        expected[REQUESTS][TENSORS][2000], range_got[REQUESTS][500], range_expected[REQUESTS][500];
    paramd_batch *a = paramd_batch_begin(c), *b = paramd_batch_begin(one);
    for (int r = 0; r < REQUESTS; r++) {
        paramd_push_item ia[TENSORS], ib[TENSORS];
        gradient_items(grads[r], got[r], (uint64_t)(r * 13), 1.0f, ia);
        gradient_items(grads[r], expected[r], (uint64_t)(r * 13), 1.0f, ib);
        ck_assert_int_eq(paramd_batch_pushpull(a, "batched", ia, TENSORS, NULL), 2 * r);
        ck_assert_int_eq(paramd_batch_pushpull(b, "batched", ib, TENSORS, NULL), 2 * r);
        paramd_pull_item pa = {"emb", (uint64_t)(r * 37), 500, range_got[r]};
        paramd_pull_item pb = {"emb", (uint64_t)(r * 37), 500, range_expected[r]};
        ck_assert_int_eq(paramd_batch_pull(a, "batched", &pa, 1, 0), 2 * r + 1);
        ck_assert_int_eq(paramd_batch_pull(b, "batched", &pb, 1, 0), 2 * r + 1);
    }
    /* A request that cannot be queued changes nothing in the batch. */
    paramd_push_item wrong = {"emb", grads[0][0], got[0][0], 3};
    ck_assert_int_eq(paramd_batch_pushpull(a, "batched", &wrong, 1, NULL), PARAMD_E_BAD_RANGE);
    ck_assert_uint_eq(paramd_batch_size(a), 2 * REQUESTS);
    CHECK_OK(c, paramd_batch_run(a));
    CHECK_OK(one, paramd_batch_run(b));
    for (int r = 0; r < REQUESTS; r++) {
        paramd_push_result ra, rb;
        ck_assert_int_eq(paramd_batch_result(a, 2 * r, &ra), PARAMD_OK);
        ck_assert_int_eq(paramd_batch_result(b, 2 * r, &rb), PARAMD_OK);
        ck_assert_uint_eq(ra.step, rb.step);
        ck_assert(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(double)) == 0);
        for (int t = 0; t < TENSORS; t++)
            assert_floats_identical(got[r][t], expected[r][t], sizes[t], names[t]);
        assert_floats_identical(range_got[r], range_expected[r], 500, "emb range");
        ck_assert_int_eq(paramd_batch_result(a, 2 * r + 1, &ra), PARAMD_OK);
        ck_assert_uint_eq(ra.step, r + 1);
    }
    paramd_batch_free(a);
    paramd_batch_free(b);
    assert_same_weights(c, one, "batched");

    /* A request the shards refuse fails alone, its message naming the
     * shard; the others succeed. */
    paramd_batch *mixed = paramd_batch_begin(c);
    float w[10];
    paramd_pull_item fine = {"bias", 0, 10, w};
    ck_assert_int_eq(paramd_batch_pull(mixed, "batched", &fine, 1, 0), 0);
    CHECK_OK(c, paramd_delete_model(paramd_shard_client(c, 1), "batched"));
    paramd_pull_item spread = {"emb", 0, 2000, got[0][0]};
    ck_assert_int_eq(paramd_batch_pull(mixed, "batched", &spread, 1, 0), 1);
    int result = paramd_batch_run(mixed);
    ck_assert_int_eq(result, PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_batch_errstr(mixed, 1), "shard 1 ("));
    ck_assert_ptr_nonnull(strstr(paramd_batch_errstr(mixed, 1), "answered"));
    paramd_batch_free(mixed);
    paramd_close(c);
    paramd_close(one);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Steps and versions
 * ------------------------------------------------------------------------- */

START_TEST(test_per_shard_steps_and_versions)
{
    paramd_client *c = open_sharded(cluster.client_map);
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}", "");
    CHECK_OK(c, paramd_create_model(c, "steps", body, NULL));
    free(body);
    uint64_t steps[SHARDS];
    CHECK_OK(c, paramd_shard_steps(c, "steps", steps, SHARDS));
    for (int s = 0; s < SHARDS; s++)
        ck_assert_uint_eq(steps[s], PARAMD_STEP_UNKNOWN);
    /* Push "bias" alone three times: only its shard steps. */
    int owner = -1;
    for (int s = 0; s < SHARDS; s++) {
        paramd_tensor_info info;
        if (paramd_tensor_info_get(paramd_shard_client(c, s), "steps", "bias", &info) == PARAMD_OK)
            owner = s;
    }
    ck_assert_int_ge(owner, 0);
    float g[2000] = {0}, w[2000];
    paramd_push_result result;
    for (int i = 0; i < 3; i++)
        CHECK_OK(c, paramd_pushpull_tensor(c, "steps", "bias", g, w, 10, NULL, &result));
    ck_assert_uint_eq(result.step, 3);
    CHECK_OK(c, paramd_shard_steps(c, "steps", steps, SHARDS));
    for (int s = 0; s < SHARDS; s++)
        ck_assert_uint_eq(steps[s], s == owner ? 3 : PARAMD_STEP_UNKNOWN);
    /* A pull of a split tensor reads every shard: the smallest step, and
     * every shard's own remembered. */
    uint64_t step;
    CHECK_OK(c, paramd_pull_tensor(c, "steps", "emb", w, 2000, &step));
    ck_assert_uint_eq(step, 0);
    CHECK_OK(c, paramd_shard_steps(c, "steps", steps, SHARDS));
    for (int s = 0; s < SHARDS; s++)
        ck_assert_uint_eq(steps[s], s == owner ? 3 : 0);
    /* A push with a version: each shard gets its own step (3 for the
     * owner, 0 elsewhere), so no shard sees a version from the future;
     * the descriptions record the versions per worker. */
    paramd_push_options options = {.worker = "versioned", .has_version = 1, .version = 999};
    paramd_push_item items[2] = {{"emb", g, w, 2000}, {"bias", g, w + 100, 10}};
    CHECK_OK(c, paramd_pushpull(c, "steps", items, 2, &options, &result));
    ck_assert_uint_eq(result.step, 1);
    CHECK_OK(c, paramd_shard_steps(c, "steps", steps, SHARDS));
    for (int s = 0; s < SHARDS; s++)
        ck_assert_uint_eq(steps[s], s == owner ? 4 : 1);
    char *json;
    CHECK_OK(c, paramd_describe_model(c, "steps", &json));
    json_t *merged = json_loads(json, 0, NULL);
    paramd_free(json);
    ck_assert_int_eq(json_integer_value(json_object_get(merged, "step")), 1);
    json_t *shards = json_object_get(merged, "shards");
    ck_assert_uint_eq(json_array_size(shards), SHARDS);
    json_t *owner_description = json_object_get(json_array_get(shards, owner), "description");
    ck_assert_int_eq(json_integer_value(json_object_get(owner_description, "step")), 4);
    /* The versions each shard was sent: its own step. */
    for (int s = 0; s < SHARDS; s++) {
        json_t *description = json_object_get(json_array_get(shards, s), "description");
        json_t *worker = json_object_get(
            json_object_get(json_object_get(description, "consistency"), "seen_workers"),
            "versioned");
        ck_assert_ptr_nonnull(worker);
        ck_assert_int_eq(json_integer_value(json_object_get(worker, "last_version")),
                         s == owner ? 3 : 0);
    }
    json_decref(merged);
    paramd_close(c);
}
END_TEST

typedef struct sync_worker {
    const char *map;          /* NULL: the single server */
    const char *model;
    int index, steps;
    float weights[TENSORS][2000];
    float grads[TENSORS][2000];
    uint64_t final_step;
    int failures;
    char error[512];
} sync_worker;

/* A sync worker: pull, then pushpull with the version of its weights. */
static void *run_sync_worker(void *context)
{
    sync_worker *w = context;
    int error;
    paramd_client *c = w->map ? paramd_connect_shard_map(w->map, HARNESS_TIMEOUT_MS, &error)
                              : paramd_connect("127.0.0.1", single.tcp_port, HARNESS_TIMEOUT_MS,
                                               &error);
    char name[32];
    snprintf(name, sizeof name, "sync-%d", w->index);
    uint64_t version = 0;
    paramd_pull_item pulls[TENSORS];
    for (int t = 0; t < TENSORS; t++)
        pulls[t] = (paramd_pull_item){names[t], 0, sizes[t], w->weights[t]};
    if (error != PARAMD_OK || paramd_pull(c, w->model, pulls, TENSORS, 0, &version) != PARAMD_OK)
        w->failures++;
    for (int step = 0; step < w->steps && w->failures == 0; step++) {
        paramd_push_item items[TENSORS];
        gradient_items(w->grads, w->weights, (uint64_t)(step * 31 + w->index * 7), 1.0f, items);
        paramd_push_options options = {.worker = name, .has_version = 1, .version = version};
        paramd_push_result result;
        if (paramd_pushpull(c, w->model, items, TENSORS, &options, &result) != PARAMD_OK) {
            snprintf(w->error, sizeof w->error, "%s", paramd_client_errstr(c));
            w->failures++;
            break;
        }
        if (result.flags & PARAMD_PUSH_DROPPED)
            w->failures++;
        version = result.step;
        if (w->map) { /* every shard steps with the others */
            uint64_t steps[SHARDS];
            if (paramd_shard_steps(c, w->model, steps, SHARDS) != PARAMD_OK ||
                steps[0] != result.step || steps[1] != result.step || steps[2] != result.step)
                w->failures++;
        }
    }
    w->final_step = version;
    paramd_close(c);
    return NULL;
}

START_TEST(test_sync_mode_steps_every_shard_together)
{
    /* Two workers in sync mode: each step averages both workers'
     * gradients, on every shard as on one server. */
    paramd_client *c, *one;
    open_both("sync", "{\"name\": \"Adam\", \"lr\": 0.01}",
              "\"consistency\": {\"mode\": \"sync\", \"workers\": 2}", &c, &one);
    static sync_worker workers[4];
    pthread_t threads[4];
    for (int k = 0; k < 4; k++) {
        workers[k] = (sync_worker){k < 2 ? cluster.client_map : NULL, "sync", k % 2, 5};
        pthread_create(&threads[k], NULL, run_sync_worker, &workers[k]);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < 4; k++) {
        ck_assert_msg(workers[k].failures == 0, "worker %d: %s", k, workers[k].error);
        ck_assert_uint_eq(workers[k].final_step, 5);
    }
    for (int t = 0; t < TENSORS; t++) {
        assert_floats_identical(workers[0].weights[t], workers[2].weights[t], sizes[t], names[t]);
        assert_floats_identical(workers[1].weights[t], workers[3].weights[t], sizes[t], names[t]);
    }
    assert_same_weights(c, one, "sync");
    paramd_close(c);
    paramd_close(one);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Models across the shards
 * ------------------------------------------------------------------------- */

START_TEST(test_merged_documents)
{
    paramd_client *c = open_sharded(cluster.client_map);
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}", "");
    char *json;
    CHECK_OK(c, paramd_create_model(c, "merged", body, &json));
    free(body);
    json_t *created = json_loads(json, 0, NULL);
    paramd_free(json);
    ck_assert_str_eq(json_string_value(json_object_get(created, "name")), "merged");
    ck_assert_int_eq(json_integer_value(json_object_get(created, "shard_map_version")),
                     MAP_VERSION);
    ck_assert_int_eq(json_integer_value(json_object_get(created, "parameters")), 2000 + 10 + 1001 + 1 + 63 + 30);
    json_t *shards = json_object_get(created, "shards");
    ck_assert_uint_eq(json_array_size(shards), SHARDS);
    for (int s = 0; s < SHARDS; s++) {
        json_t *entry = json_array_get(shards, s);
        ck_assert_int_eq(json_integer_value(json_object_get(entry, "id")), s);
        char address[64];
        snprintf(address, sizeof address, "127.0.0.1:%d", cluster.shards[s].tcp_port);
        ck_assert_str_eq(json_string_value(json_object_get(entry, "tcp")), address);
        json_t *shard = json_object_get(json_object_get(entry, "description"), "shard");
        ck_assert_int_eq(json_integer_value(json_object_get(shard, "id")), s);
    }
    json_decref(created);

    CHECK_OK(c, paramd_list_models(c, &json));
    json_t *list = json_loads(json, 0, NULL);
    paramd_free(json);
    size_t i;
    json_t *entry;
    bool found = false;
    json_array_foreach(json_object_get(list, "models"), i, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "name")), "merged") != 0)
            continue;
        found = true;
        ck_assert_uint_eq(json_array_size(json_object_get(entry, "shards")), SHARDS);
        ck_assert_int_eq(json_integer_value(json_object_get(entry, "parameters")), 3105);
        ck_assert_str_eq(json_string_value(json_object_get(entry, "optimizer")), "SGD");
    }
    ck_assert(found);
    json_decref(list);

    CHECK_OK(c, paramd_stats(c, NULL, &json));
    json_t *stats = json_loads(json, 0, NULL);
    paramd_free(json);
    ck_assert_uint_eq(json_array_size(json_object_get(stats, "shards")), SHARDS);
    ck_assert_ptr_nonnull(json_object_get(stats, "pushes"));
    json_decref(stats);

    CHECK_OK(c, paramd_delete_model(c, "merged"));
    ck_assert_int_eq(paramd_describe_model(c, "merged", &json), PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "any of the 3 shards"));
    ck_assert_int_eq(paramd_delete_model(c, "merged"), PARAMD_E_MODEL_NOT_FOUND);
    float w[10];
    ck_assert_int_eq(paramd_pull_tensor(c, "merged", "bias", w, 10, NULL),
                     PARAMD_E_MODEL_NOT_FOUND);
    paramd_close(c);
}
END_TEST

START_TEST(test_create_refused_by_one_shard_is_undone)
{
    paramd_client *c = open_sharded(cluster.client_map);
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}", "");
    /* The model already exists on shard 2 only. */
    CHECK_OK(c, paramd_create_model(paramd_shard_client(c, 2), "taken", body, NULL));
    ck_assert_int_eq(paramd_create_model(c, "taken", body, NULL), PARAMD_E_MODEL_EXISTS);
    const char *message = paramd_client_errstr(c);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "shard 2 (127.0.0.1:%d): ", cluster.shards[2].tcp_port);
    ck_assert_msg(strncmp(message, prefix, strlen(prefix)) == 0, "%s", message);
    ck_assert_ptr_nonnull(strstr(message, "deleted again from shards 0 and 1"));
    /* Shards 0 and 1 do not have it; shard 2 still has its own. */
    char *json;
    ck_assert_int_eq(paramd_describe_model(paramd_shard_client(c, 0), "taken", &json),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_int_eq(paramd_describe_model(paramd_shard_client(c, 1), "taken", &json),
                     PARAMD_E_MODEL_NOT_FOUND);
    CHECK_OK(c, paramd_describe_model(paramd_shard_client(c, 2), "taken", &json));
    paramd_free(json);
    /* A model on some shards only is reported as such. */
    float w[10];
    ck_assert_int_eq(paramd_pull_tensor(c, "taken", "bias", w, 10, NULL),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "shards 0 and 1 lost it"));
    /* Deleting removes it wherever it is. */
    CHECK_OK(c, paramd_delete_model(c, "taken"));
    CHECK_OK(c, paramd_create_model(c, "taken", body, NULL));
    CHECK_OK(c, paramd_pull_tensor(c, "taken", "bias", w, 10, NULL));
    ck_assert(w[9] == 10.0f);
    /* A body every shard refuses fails with the server's message. */
    ck_assert_int_eq(paramd_create_model(c, "bad_body", "{\"optimizer\": {\"name\": \"Nope\"}, "
                                                        "\"tensors\": [{\"name\": \"a\", \"shape\": [1]}]}",
                                         NULL),
                     PARAMD_E_UNKNOWN_OPTIMIZER);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "shard 0 ("));
    free(body);
    paramd_close(c);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Stale maps
 * ------------------------------------------------------------------------- */

START_TEST(test_stale_shard_map_names_both_versions)
{
    /* Version 1 with two shards, where the servers run version 2 with three. */
    char stale[400];
    snprintf(stale, sizeof stale, "%s/stale-map.json", cluster.dir);
    int ports[3] = {cluster.shards[0].tcp_port, cluster.shards[1].tcp_port,
                    cluster.shards[2].tcp_port};
    write_map(stale, 1, 2, ports);
    int error;
    paramd_client *c = paramd_connect_shard_map(stale, HARNESS_TIMEOUT_MS, &error);
    CHECK_OK(c, error); /* connecting does not need a model */
    ck_assert_int_eq(paramd_shard_count(c), 2);
    paramd_client *setup = open_sharded(cluster.client_map);
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}", "");
    CHECK_OK(setup, paramd_create_model(setup, "stale", body, NULL));
    free(body);
    float w[2000];
    ck_assert_int_eq(paramd_pull_tensor(c, "stale", "emb", w, 2000, NULL), PARAMD_E_NOT_OWNER);
    const char *message = paramd_client_errstr(c);
    ck_assert_msg(strstr(message, "is version 1, but the shard runs version 2") != NULL, "%s",
                  message);
    ck_assert_ptr_nonnull(strstr(message, stale));
    ck_assert_ptr_nonnull(strstr(message, "shard 0 ("));
    /* Nothing reached the model. */
    float g[2000] = {0};
    ck_assert_int_eq(paramd_push_tensor(c, "stale", "emb", g, 2000, NULL, NULL),
                     PARAMD_E_NOT_OWNER);
    /* Once the file holds the servers' map, the next call reads it again
     * and works, on the same handle. */
    write_map(stale, MAP_VERSION, SHARDS, ports);
    CHECK_OK(c, paramd_pull_tensor(c, "stale", "emb", w, 2000, NULL));
    ck_assert_int_eq(paramd_shard_count(c), SHARDS);
    ck_assert_uint_eq(paramd_shard_map_version(c), MAP_VERSION);
    float expected[2000];
    CHECK_OK(setup, paramd_pull_tensor(setup, "stale", "emb", expected, 2000, NULL));
    assert_floats_identical(w, expected, 2000, "emb");
    /* A map file that does not load is an error of its own. */
    int bad_error;
    paramd_client *bad = paramd_connect_shard_map("/nonexistent/map.json", 1000, &bad_error);
    ck_assert_ptr_nonnull(bad);
    ck_assert_int_eq(bad_error, PARAMD_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(bad), "/nonexistent/map.json"));
    ck_assert_int_eq(paramd_pull_tensor(bad, "stale", "emb", w, 2000, NULL),
                     PARAMD_E_INVALID_ARGUMENT);
    paramd_close(bad);
    unlink(stale);
    paramd_close(setup);
    paramd_close(c);
}
END_TEST

/* ---------------------------------------------------------------------------
 * A shard that dies
 * ------------------------------------------------------------------------- */

START_TEST(test_killed_shard_is_named_and_the_handle_recovers)
{
    test_cluster own;
    ck_assert_int_eq(cluster_start(&own, SHARDS, MAP_VERSION), 0);
    paramd_client *c = open_sharded(own.client_map);
    char *body = model_body("{\"name\": \"SGD\", \"lr\": 0.1}", "");
    CHECK_OK(c, paramd_create_model(c, "phoenix", body, NULL));
    static float g[TENSORS][2000], w[TENSORS][2000];
    paramd_push_item items[TENSORS];
    for (int t = 0; t < TENSORS; t++)
        items[t] = (paramd_push_item){names[t], g[t], w[t], sizes[t]};
    CHECK_OK(c, paramd_pushpull(c, "phoenix", items, TENSORS, NULL, NULL));

    /* Shard 1 stops answering in the middle of a push: the other shards
     * apply it, and the error names the shard and says so.  Then kill -9. */
    int port = own.shards[1].tcp_port;
    char name[64];
    snprintf(name, sizeof name, "shard 1 (127.0.0.1:%d): ", port);
    server_freeze(&own.shards[1]);
    CHECK_OK(c, paramd_set_timeout(c, 1000));
    ck_assert_int_eq(paramd_pushpull(c, "phoenix", items, TENSORS, NULL, NULL), PARAMD_E_TIMEOUT);
    ck_assert_msg(strncmp(paramd_client_errstr(c), name, strlen(name)) == 0, "%s",
                  paramd_client_errstr(c));
    ck_assert_msg(strstr(paramd_client_errstr(c), "; shards 0 and 2 applied the push") != NULL,
                  "%s", paramd_client_errstr(c));
    CHECK_OK(c, paramd_set_timeout(c, HARNESS_TIMEOUT_MS));
    server_kill(&own.shards[1]);
    /* While it is down every call that needs it fails fast, naming it. */
    double start = harness_now();
    ck_assert_int_eq(paramd_pushpull(c, "phoenix", items, TENSORS, NULL, NULL), PARAMD_E_CONNECT);
    ck_assert(harness_now() - start < 5);
    ck_assert_msg(strncmp(paramd_client_errstr(c), name, strlen(name)) == 0, "%s",
                  paramd_client_errstr(c));
    ck_assert_ptr_nonnull(strstr(paramd_client_errstr(c), "refused"));
    ck_assert(!paramd_is_connected(c));

    /* Restarted on its port, empty: the handle reconnects by itself and
     * says the shard lost the model; created again there, all works. */
    ck_assert_int_eq(shard_start(&own, 1, port), 0);
    ck_assert_int_eq(paramd_pushpull(c, "phoenix", items, TENSORS, NULL, NULL),
                     PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_msg(strstr(paramd_client_errstr(c), "shard 1 lost it") != NULL, "%s",
                  paramd_client_errstr(c));
    CHECK_OK(c, paramd_create_model(paramd_shard_client(c, 1), "phoenix", body, NULL));
    /* Learnt again, the model keeps the steps of the shards that did not
     * change (0 and 2 applied the push that timed out on shard 1). */
    uint64_t steps[SHARDS];
    CHECK_OK(c, paramd_shard_steps(c, "phoenix", steps, SHARDS));
    ck_assert_uint_eq(steps[0], 2);
    ck_assert_uint_eq(steps[1], PARAMD_STEP_UNKNOWN);
    ck_assert_uint_eq(steps[2], 2);
    paramd_push_result pushed;
    paramd_push_options versioned = {.worker = "w", .has_version = 1, .version = 0};
    CHECK_OK(c, paramd_pushpull(c, "phoenix", items, TENSORS, &versioned, &pushed));
    ck_assert(paramd_is_connected(c));
    CHECK_OK(c, paramd_shard_steps(c, "phoenix", steps, SHARDS));
    ck_assert_uint_eq(steps[1], 1); /* the new model's first step */
    ck_assert_uint_eq(steps[0], 3);
    ck_assert_uint_eq(pushed.step, 1);
    free(body);
    paramd_close(c);
    cluster_stop(&own);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("sharded client");
    TCase *shared = tcase_create("shared cluster");
    tcase_add_unchecked_fixture(shared, start_all, stop_all);
    tcase_set_timeout(shared, 600);
    tcase_add_test(shared, test_tensors_are_spread_over_the_shards);
    tcase_add_test(shared, test_adam_matches_one_server);
    tcase_add_test(shared, test_global_norm_clipping_matches_one_server);
    tcase_add_test(shared, test_float16_pushes_match_one_server);
    tcase_add_test(shared, test_clipping_turned_on_while_running);
    tcase_add_test(shared, test_lamb_keeps_large_tensors_whole);
    tcase_add_test(shared, test_pull_ranges_across_shard_boundaries);
    tcase_add_test(shared, test_non_finite_gradient_is_refused_before_sending);
    tcase_add_test(shared, test_batches_match_one_server);
    tcase_add_test(shared, test_per_shard_steps_and_versions);
    tcase_add_test(shared, test_sync_mode_steps_every_shard_together);
    tcase_add_test(shared, test_merged_documents);
    tcase_add_test(shared, test_create_refused_by_one_shard_is_undone);
    tcase_add_test(shared, test_stale_shard_map_names_both_versions);
    suite_add_tcase(suite, shared);
    TCase *own = tcase_create("own cluster");
    tcase_set_timeout(own, 600);
    tcase_add_test(own, test_killed_shard_is_named_and_the_handle_recovers);
    suite_add_tcase(suite, own);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
