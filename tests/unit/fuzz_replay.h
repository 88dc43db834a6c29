/*
 * fuzz_replay.h - replays a libFuzzer target's corpus without libFuzzer.
 *
 * A replay test includes one target file (tests/fuzz/fuzz_NAME.c, which
 * defines LLVMFuzzerTestOneInput), then this header, and ends with
 * PARAMD_FUZZ_REPLAY_MAIN("NAME", minimum seeds): the test hands every file
 * of tests/fuzz/corpus/NAME/ (the committed seeds and minimised finds) and
 * of tests/fuzz/crashes/NAME/ (every input that ever crashed a target) to
 * the target, each in a malloc'ed buffer of exactly its size, so that under
 * `make test SANITIZE=1` a read past the input is an ASan error.  The
 * normal gcc build replays the same files: no clang is needed.
 */
#ifndef PARAMD_TESTS_FUZZ_REPLAY_H
#define PARAMD_TESTS_FUZZ_REPLAY_H

#include "test_util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Replays every file of a directory (names starting with '.' excepted);
 * returns how many (0 if the directory does not exist). */
static int paramd_fuzz_replay_directory(const char *directory)
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
        ck_assert_msg(size >= 0, "cannot size %s", path);
        uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
        ck_assert_ptr_nonnull(data);
        ck_assert_uint_eq(fread(data, 1, (size_t)size, file), (size_t)size);
        fclose(file);
        LLVMFuzzerTestOneInput(data, (size_t)size);
        free(data);
        count++;
    }
    closedir(dir);
    return count;
}

/* Replays tests/fuzz/corpus/<name>/ (at least `minimum` files: the seeds)
 * and tests/fuzz/crashes/<name>/. */
static void paramd_fuzz_replay(const char *name, int minimum)
{
    char directory[256];
    snprintf(directory, sizeof directory, "%s/fuzz/corpus/%s", PARAMD_TEST_DATA_DIR, name);
    int seeds = paramd_fuzz_replay_directory(directory);
    ck_assert_msg(seeds >= minimum, "%s: %d inputs, expected at least %d", directory, seeds,
                  minimum);
    snprintf(directory, sizeof directory, "%s/fuzz/crashes/%s", PARAMD_TEST_DATA_DIR, name);
    int crashes = paramd_fuzz_replay_directory(directory);
    printf("fuzz corpus %s: %d inputs and %d former crashes replayed\n", name, seeds, crashes);
}

#endif
