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

#endif
