/*
 * test_fuzz_model_config.c - replays tests/fuzz/corpus/model_config/ and
 * tests/fuzz/crashes/model_config/ through the libFuzzer target
 * tests/fuzz/fuzz_model_config.c, built with gcc and without libFuzzer (see
 * fuzz_replay.h): every committed seed and every input that ever crashed
 * the target must now pass cleanly, under ASan too.
 */
#define _DEFAULT_SOURCE
#include "../fuzz/fuzz_model_config.c"

#include "fuzz_replay.h"

START_TEST(test_replay_corpus)
{
    paramd_fuzz_replay("model_config", 10);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("fuzz_model_config");
    TCase *tcase = tcase_create("replay");
    tcase_add_test(tcase, test_replay_corpus);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
