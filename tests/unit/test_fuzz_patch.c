/*
 * test_fuzz_patch.c - replays tests/fuzz/corpus/patch/ and
 * tests/fuzz/crashes/patch/ through the libFuzzer target
 * tests/fuzz/fuzz_patch.c, built with gcc and without libFuzzer (see
 * fuzz_replay.h): every committed seed and every input that ever crashed
 * the target must now pass cleanly, under ASan too.
 */
#define _DEFAULT_SOURCE
#include "../fuzz/fuzz_patch.c"

#include "fuzz_replay.h"

START_TEST(test_replay_corpus)
{
    paramd_fuzz_replay("patch", 8);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("fuzz_patch");
    TCase *tcase = tcase_create("replay");
    tcase_add_test(tcase, test_replay_corpus);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
