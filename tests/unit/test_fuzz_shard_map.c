/*
 * test_fuzz_shard_map.c - replays tests/fuzz/corpus/shard_map/ and
 * tests/fuzz/crashes/shard_map/ through the libFuzzer target
 * tests/fuzz/fuzz_shard_map.c, built with gcc and without libFuzzer (see
 * fuzz_replay.h): every committed seed and every input that ever crashed
 * the target must now pass cleanly, under ASan too.
 */
#define _DEFAULT_SOURCE
#include "../fuzz/fuzz_shard_map.c"

#include "fuzz_replay.h"

START_TEST(test_replay_corpus)
{
    paramd_fuzz_replay("shard_map", 6);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("fuzz_shard_map");
    TCase *tcase = tcase_create("replay");
    tcase_add_test(tcase, test_replay_corpus);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
