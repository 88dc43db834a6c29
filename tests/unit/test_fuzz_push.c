/*
 * test_fuzz_push.c - replays tests/fuzz/corpus/push/ and
 * tests/fuzz/crashes/push/ through the libFuzzer target
 * tests/fuzz/fuzz_push.c, built with gcc and without libFuzzer (see
 * fuzz_replay.h): every committed seed and every input that ever crashed
 * the target must now pass cleanly, under ASan too.
 */
#define _DEFAULT_SOURCE
#include "../fuzz/fuzz_push.c"

#include "fuzz_replay.h"

START_TEST(test_replay_corpus)
{
    paramd_fuzz_replay("push", 10);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("fuzz_push");
    TCase *tcase = tcase_create("replay");
    tcase_add_test(tcase, test_replay_corpus);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
