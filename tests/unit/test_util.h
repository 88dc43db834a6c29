/*
 * test_util.h - shared helpers for paramd's Check unit tests.
 *
 * Each tests/unit/test_*.c file defines `static Suite *make_suite(void)` and
 * ends with PARAMD_TEST_MAIN(make_suite).  The Makefile builds each file into
 * its own binary linked against build/libparamd-server.a.
 */
#ifndef PARAMD_TESTS_TEST_UTIL_H
#define PARAMD_TESTS_TEST_UTIL_H

#include <check.h>
#include <stdlib.h>

#define PARAMD_TEST_MAIN(make_suite)                                                   \
    int main(void)                                                                     \
    {                                                                                  \
        SRunner *runner = srunner_create(make_suite());                                \
        srunner_run_all(runner, CK_NORMAL);                                            \
        int failed = srunner_ntests_failed(runner);                                    \
        srunner_free(runner);                                                          \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                              \
    }

/* Directory of the repository's tests/ (the Makefile runs tests from the
 * repository root). */
#define PARAMD_TEST_DATA_DIR "tests"

/* Calls replay(path) for every .json file of `directory` (a golden
 * directory under tests/conformance) and returns how many there were; fails
 * the test when the directory is missing, naming the script that writes it. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

static inline int paramd_test_for_each_golden(const char *directory, const char *generator,
                                              void (*replay)(const char *path))
{
    DIR *listing = opendir(directory);
    ck_assert_msg(listing != NULL, "%s missing (run %s)", directory, generator);
    int cases = 0;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", directory, entry->d_name);
        replay(path);
        cases++;
    }
    closedir(listing);
    return cases;
}

#endif
