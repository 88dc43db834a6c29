/*
 * test_fuzz_corpus.c - replays the fuzz corpus through the libFuzzer target
 * of the binary protocol (tests/fuzz/fuzz_frame.c) without libFuzzer: the
 * committed seeds (tests/fuzz/corpus/frame/) and every input that ever
 * crashed a decoder (tests/fuzz/crashes/, where `make fuzz` writes them).
 * Each input is handed over in a buffer of exactly its size, so under
 * `make test SANITIZE=1` an out-of-bounds read is an ASan error.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "../fuzz/fuzz_frame.c"

#include <dirent.h>
#include <stdio.h>

/* Replays every file of a directory; returns how many (0 if none). */
static int replay_directory(const char *directory)
{
    DIR *dir = opendir(directory);
    if (dir == NULL)
        return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", directory, entry->d_name);
        FILE *file = fopen(path, "rb");
        ck_assert_msg(file != NULL, "cannot open %s", path);
        fseek(file, 0, SEEK_END);
        long size = ftell(file);
        fseek(file, 0, SEEK_SET);
        uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
        ck_assert_uint_eq(fread(data, 1, (size_t)size, file), (size_t)size);
        fclose(file);
        LLVMFuzzerTestOneInput(data, (size_t)size);
        free(data);
        count++;
    }
    closedir(dir);
    return count;
}

START_TEST(test_replay_corpus)
{
    int seeds = replay_directory(PARAMD_TEST_DATA_DIR "/fuzz/corpus/frame");
    ck_assert_int_ge(seeds, 6); /* the seeds of tests/fuzz/make_corpus.c */
    int crashes = replay_directory(PARAMD_TEST_DATA_DIR "/fuzz/crashes");
    printf("fuzz corpus: %d inputs and %d former crashes replayed\n", seeds, crashes);
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
