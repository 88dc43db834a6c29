/*
 * test_shard_map.c - the shard map parser and the placement rule
 * (proto/shard_map.h, docs/SHARDING.md).
 *
 * The placement vectors were computed by client/python/paramd/sharding.py,
 * an independent implementation of the documented rule: C and Python
 * clients and the servers must agree on every owner.
 */
#include "test_util.h"

#include "paramd/paramd.h"
#include "shard_map.h"

#include <stdio.h>
#include <string.h>

static int parse(const char *text, paramd_shard_map *map, char *why)
{
    return paramd_shard_map_parse(text, strlen(text), map, why, 256);
}

START_TEST(test_parse_a_map)
{
    paramd_shard_map map;
    char why[256] = "";
    ck_assert_int_eq(parse("{\"version\": 3, \"split_threshold\": 100, \"shards\": ["
                           "{\"id\": 1, \"http\": \"10.0.0.2:8480\", \"tcp\": \"10.0.0.2:8481\"},"
                           "{\"id\": 0, \"tcp\": \"[::1]:8471\"}]}",
                           &map, why),
                     PARAMD_OK);
    ck_assert_uint_eq(map.version, 3);
    ck_assert_uint_eq(map.split_threshold, 100);
    ck_assert_uint_eq(map.shard_count, 2);
    /* Sorted by id, whatever the order in the file. */
    ck_assert_uint_eq(map.shards[0].id, 0);
    ck_assert_uint_eq(map.shards[0].http_port, 0);
    ck_assert_uint_eq(map.shards[0].tcp_port, 8471);
    ck_assert_str_eq(map.shards[1].http_host, "10.0.0.2");
    ck_assert_uint_eq(map.shards[1].http_port, 8480);
    ck_assert_uint_eq(map.shards[1].tcp_port, 8481);
    paramd_shard_map_free(&map);
    ck_assert_int_eq(parse("{\"version\": 1, \"shards\": [{\"id\": 0, \"http\": \"h:1\"}]}", &map,
                           why),
                     PARAMD_OK);
    ck_assert_uint_eq(map.split_threshold, PARAMD_SHARD_DEFAULT_SPLIT_THRESHOLD);
    paramd_shard_map_free(&map);
}
END_TEST

START_TEST(test_every_error_names_its_field)
{
    static const struct {
        const char *text;
        int code;
        const char *names;
    } cases[] = {
        {"{\"version\": 1, \"shards\": [", PARAMD_E_BAD_JSON, "line 1"},
        {"[1]", PARAMD_E_BAD_REQUEST, "must be a JSON object"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0, \"http\": \"h:1\"}], \"extra\": 1}",
         PARAMD_E_BAD_REQUEST, "unknown field \"extra\""},
        {"{\"shards\": [{\"id\": 0, \"http\": \"h:1\"}]}", PARAMD_E_BAD_REQUEST, "version"},
        {"{\"version\": 0, \"shards\": [{\"id\": 0, \"http\": \"h:1\"}]}", PARAMD_E_BAD_REQUEST,
         "version"},
        {"{\"version\": 1, \"split_threshold\": 0, \"shards\": [{\"id\": 0, \"http\": \"h:1\"}]}",
         PARAMD_E_BAD_REQUEST, "split_threshold"},
        {"{\"version\": 1, \"shards\": []}", PARAMD_E_BAD_REQUEST, "shards: required"},
        {"{\"version\": 1, \"shards\": [7]}", PARAMD_E_BAD_REQUEST, "shards[0]: must be an object"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0, \"http\": \"h:1\", \"udp\": \"h:2\"}]}",
         PARAMD_E_BAD_REQUEST, "shards[0]: unknown field \"udp\""},
        {"{\"version\": 1, \"shards\": [{\"id\": 1, \"http\": \"h:1\"}]}", PARAMD_E_BAD_REQUEST,
         "shards[0].id"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0, \"http\": \"h:1\"}, {\"id\": 0, \"http\": "
         "\"h:2\"}]}",
         PARAMD_E_BAD_REQUEST, "shards[1].id: 0 appears twice"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0, \"http\": \"no-port\"}]}",
         PARAMD_E_BAD_REQUEST, "shards[0].http"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0, \"tcp\": \"h:99999\"}]}", PARAMD_E_BAD_REQUEST,
         "shards[0].tcp"},
        {"{\"version\": 1, \"shards\": [{\"id\": 0}]}", PARAMD_E_BAD_REQUEST,
         "needs an http or a tcp address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paramd_shard_map map;
        char why[256] = "";
        ck_assert_int_eq(parse(cases[i].text, &map, why), cases[i].code);
        ck_assert_msg(strstr(why, cases[i].names) != NULL, "case %zu: \"%s\" does not name %s", i,
                      why, cases[i].names);
        ck_assert_ptr_null(map.shards); /* nothing left to free */
    }
}
END_TEST

START_TEST(test_load_names_the_file)
{
    paramd_shard_map map;
    char why[256] = "";
    ck_assert_int_eq(paramd_shard_map_load("/nonexistent/shard-map.json", &map, why, sizeof why),
                     PARAMD_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(why, "/nonexistent/shard-map.json"));
}
END_TEST

static paramd_shard_map map_of(uint32_t count)
{
    char text[4096];
    int length = snprintf(text, sizeof text, "{\"version\": 1, \"shards\": [");
    for (uint32_t i = 0; i < count; i++)
        length += snprintf(text + length, sizeof text - (size_t)length,
                           "%s{\"id\": %u, \"tcp\": \"127.0.0.1:%u\"}", i ? ", " : "", i,
                           9000 + i);
    snprintf(text + length, sizeof text - (size_t)length, "]}");
    paramd_shard_map map;
    char why[256] = "";
    ck_assert_msg(paramd_shard_map_parse(text, strlen(text), &map, why, sizeof why) == 0, "%s",
                  why);
    return map;
}

START_TEST(test_placement_vectors)
{
    /* The hash's pieces, as docs/SHARDING.md gives them. */
    ck_assert_uint_eq(paramd_shard_hash("mlp", "fc1.weight"), UINT64_C(0x21d2dfd3b5d72439));
    ck_assert_uint_eq(paramd_shard_mix(1), UINT64_C(0x5692161d100b05e5));
    ck_assert_uint_eq(paramd_shard_mix(paramd_shard_hash("mlp", "fc1.weight") ^
                                       paramd_shard_mix(2)),
                      UINT64_C(0x619c79b1d6ded65c));
    paramd_shard_map map = map_of(3);
    ck_assert_uint_eq(paramd_shard_owner(&map, "mlp", "fc1.weight"), 0);
    ck_assert_uint_eq(paramd_shard_owner(&map, "mlp", "fc1.bias"), 2);
    ck_assert_uint_eq(paramd_shard_owner(&map, "mlp", "fc2.weight"), 0);
    uint64_t offset, length;
    paramd_shard_range(10000000, 3, 2, &offset, &length);
    ck_assert_uint_eq(offset, 6666666);
    ck_assert_uint_eq(length, 3333334);
    ck_assert(paramd_shard_splits(&map, map.split_threshold + 1));
    ck_assert(!paramd_shard_splits(&map, map.split_threshold));
    paramd_shard_map_free(&map);
    map = map_of(1);
    ck_assert(!paramd_shard_splits(&map, UINT64_C(1) << 40)); /* one shard never splits */
    paramd_shard_map_free(&map);
}
END_TEST

START_TEST(test_ranges_cover_a_tensor_exactly)
{
    static const uint64_t counts[] = {1, 2, 3, 7, 1000, 4194305, UINT64_C(1) << 40};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
        for (uint32_t shards = 1; shards <= 1024; shards = shards * 3 + 1) {
            uint64_t next = 0, smallest = UINT64_MAX, largest = 0;
            for (uint32_t k = 0; k < shards; k++) {
                uint64_t offset, length;
                paramd_shard_range(counts[c], shards, k, &offset, &length);
                ck_assert_uint_eq(offset, next);
                next = offset + length;
                smallest = length < smallest ? length : smallest;
                largest = length > largest ? length : largest;
            }
            ck_assert_uint_eq(next, counts[c]);
            ck_assert_uint_le(largest - smallest, 1); /* balanced */
        }
}
END_TEST

START_TEST(test_adding_a_shard_moves_only_what_it_wins)
{
    paramd_shard_map three = map_of(3), four = map_of(4);
    int moved = 0, per_shard[4] = {0};
    for (int i = 0; i < 3000; i++) {
        char tensor[32];
        snprintf(tensor, sizeof tensor, "layers.%d.weight", i);
        uint32_t before = paramd_shard_owner(&three, "model", tensor);
        uint32_t after = paramd_shard_owner(&four, "model", tensor);
        per_shard[after]++;
        if (before != after) {
            ck_assert_uint_eq(after, 3); /* only to the new shard */
            moved++;
        }
    }
    /* About a quarter move, and the load is even (within 10%). */
    ck_assert_msg(moved > 600 && moved < 900, "%d of 3000 moved", moved);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(per_shard[k] > 675 && per_shard[k] < 825, "shard %d holds %d", k,
                      per_shard[k]);
    paramd_shard_map_free(&three);
    paramd_shard_map_free(&four);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("shard_map");
    TCase *tc = tcase_create("shard_map");
    tcase_add_test(tc, test_parse_a_map);
    tcase_add_test(tc, test_every_error_names_its_field);
    tcase_add_test(tc, test_load_names_the_file);
    tcase_add_test(tc, test_placement_vectors);
    tcase_add_test(tc, test_ranges_cover_a_tensor_exactly);
    tcase_add_test(tc, test_adding_a_shard_moves_only_what_it_wins);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
