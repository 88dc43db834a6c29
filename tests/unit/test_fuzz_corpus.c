/*
 * test_fuzz_corpus.c - replays the fuzz corpus through the libFuzzer target
 * of the binary protocol (tests/fuzz/fuzz_frame.c) without libFuzzer: the
 * committed seeds (tests/fuzz/corpus/frame/) and every input that ever
 * crashed a decoder (tests/fuzz/crashes/frame/, where `make fuzz` writes
 * them); see fuzz_replay.h.  The other targets have their own replay tests
 * (test_fuzz_model_config.c, test_fuzz_push.c, test_fuzz_patch.c,
 * test_fuzz_shard_map.c).
 */
#define _DEFAULT_SOURCE
#include "../fuzz/fuzz_frame.c"

#include "fuzz_replay.h"

START_TEST(test_replay_corpus)
{
    paramd_fuzz_replay("frame", 6); /* at least the seeds of tests/fuzz/make_corpus.c */
}
END_TEST

/* The target itself survives arbitrary bytes: a deterministic sweep of
 * pseudo-random inputs, some starting with a valid header. */
START_TEST(test_random_inputs)
{
    uint64_t state = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t size = (size_t)(state % 300);
        uint8_t *data = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            data[i] = (uint8_t)(state >> 56);
        }
        if (size >= 16 && round % 2 == 0) {
            data[0] = 0x50, data[1] = 0x44, data[2] = 1;
            uint32_t length = (uint32_t)((size - 16) & ~(size_t)7);
            memcpy(data + 4, &length, 4);
        }
        LLVMFuzzerTestOneInput(data, size);
        free(data);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("fuzz_corpus");
    TCase *tcase = tcase_create("frame");
    tcase_add_test(tcase, test_replay_corpus);
    tcase_add_test(tcase, test_random_inputs);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
