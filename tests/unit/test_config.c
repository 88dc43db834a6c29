/*
 * test_config.c - the configuration file parser (server/config.h): which
 * lines become settings, in what order, and the FILE:LINE of every error.
 * The setter here plays the option table: it knows "threads" (a number)
 * and "data-dir" (a non-empty string) and records what it was given.
 */
#include "test_util.h"

#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct recorder {
    char applied[16][128]; /* "name=value" in call order */
    int count;
} recorder;

static int record(void *context, const char *name, const char *value, char *message,
                  size_t size)
{
    recorder *r = context;
    if (strcmp(name, "threads") == 0) {
        char *end;
        long n = strtol(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || n < 0 || n > 64) {
            snprintf(message, size, "\"%s\": must be a number from 0 to 64", value);
            return PARAMD__CONFIG_BAD_VALUE;
        }
    } else if (strcmp(name, "data-dir") == 0) {
        if (value[0] == '\0') {
            snprintf(message, size, "must be a non-empty path");
            return PARAMD__CONFIG_BAD_VALUE;
        }
    } else {
        return PARAMD__CONFIG_UNKNOWN;
    }
    ck_assert_int_lt(r->count, 16);
    snprintf(r->applied[r->count++], sizeof r->applied[0], "%s=%s", name, value);
    return PARAMD__CONFIG_APPLIED;
}

static int parse(const char *text, recorder *r, char *error)
{
    memset(r, 0, sizeof *r);
    error[0] = '\0';
    return paramd__config_parse(text, strlen(text), "test.conf", record, r, error, 512);
}

START_TEST(test_settings_comments_and_blanks)
{
    recorder r;
    char error[512];
    ck_assert_int_eq(parse("# a comment\n"
                           "\n"
                           "   \t\n"
                           "threads = 4\n"
                           "  # an indented comment = not a setting\n"
                           "data-dir=/var/lib/paramd # not a comment\r\n"
                           "\t  \n",
                           &r, error),
                     0);
    ck_assert_int_eq(r.count, 2);
    ck_assert_str_eq(r.applied[0], "threads=4");
    /* '#' after a value is part of it; the CR of a CRLF line end is not. */
    ck_assert_str_eq(r.applied[1], "data-dir=/var/lib/paramd # not a comment");
}
END_TEST

START_TEST(test_last_line_without_newline_and_bom)
{
    recorder r;
    char error[512];
    ck_assert_int_eq(parse("\xef\xbb\xbfthreads=7", &r, error), 0);
    ck_assert_int_eq(r.count, 1);
    ck_assert_str_eq(r.applied[0], "threads=7");
    ck_assert_int_eq(parse("", &r, error), 0);
    ck_assert_int_eq(r.count, 0);
    /* The value may hold '=' (only the first one splits the line). */
    ck_assert_int_eq(parse("data-dir = /a=b\n", &r, error), 0);
    ck_assert_str_eq(r.applied[0], "data-dir=/a=b");
}
END_TEST

START_TEST(test_errors_name_file_and_line)
{
    static const struct {
        const char *text;
        const char *expected; /* the whole message */
        int applied_before;
    } cases[] = {
        {"threads = 2\nbogus = 1\n",
         "test.conf:2: unknown option \"bogus\" (names are paramd --help's long options without "
         "\"--\")",
         1},
        {"\n\n\nthreads = many\n", "test.conf:4: threads: \"many\": must be a number from 0 to 64",
         0},
        {"# x\nthreads = 4 # four\n",
         "test.conf:2: threads: \"4 # four\": must be a number from 0 to 64 (a comment must be "
         "on a line of its own)",
         0},
        {"data-dir =\n", "test.conf:1: data-dir: must be a non-empty path", 0},
        {"threads 4\n", "test.conf:1: expected \"name = value\", got \"threads 4\"", 0},
        {"--threads = 4\n", "test.conf:1: write the name without \"--\": \"threads = ...\"", 0},
        {" = 4\n", "test.conf:1: \"\" is not an option name", 0},
        {"two words = 4\n", "test.conf:1: \"two words\" is not an option name", 0},
        {"threads = 1\n\nthreads = 2\n", "test.conf:3: \"threads\" is already set on line 1", 1},
        {"config = other.conf\n", "test.conf:1: \"config\" is a command-line option only", 0},
        {"help = yes\n", "test.conf:1: \"help\" is a command-line option only", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        recorder r;
        char error[512];
        ck_assert_int_eq(parse(cases[i].text, &r, error), -1);
        ck_assert_str_eq(error, cases[i].expected);
        ck_assert_int_eq(r.count, cases[i].applied_before);
    }
}
END_TEST

START_TEST(test_nul_byte_refused)
{
    recorder r;
    memset(&r, 0, sizeof r);
    char error[512];
    static const char text[] = "threads = 1\nthreads\0 = 2\n";
    ck_assert_int_eq(paramd__config_parse(text, sizeof text - 1, "f", record, &r, error,
                                          sizeof error),
                     -1);
    ck_assert_str_eq(error, "f:2: the line holds a NUL byte");
}
END_TEST

START_TEST(test_load_reads_a_file_and_names_a_missing_one)
{
    char path[] = "/tmp/paramd-test-config-XXXXXX";
    int descriptor = mkstemp(path);
    ck_assert_int_ge(descriptor, 0);
    const char *text = "threads = 3\ndata-dir = /srv/paramd\n";
    ck_assert_int_eq(write(descriptor, text, strlen(text)), (ssize_t)strlen(text));
    close(descriptor);
    recorder r;
    memset(&r, 0, sizeof r);
    char error[512] = "";
    ck_assert_int_eq(paramd__config_load(path, record, &r, error, sizeof error), 0);
    ck_assert_int_eq(r.count, 2);
    ck_assert_str_eq(r.applied[1], "data-dir=/srv/paramd");
    unlink(path);
    ck_assert_int_eq(paramd__config_load(path, record, &r, error, sizeof error), -1);
    char expected[600];
    snprintf(expected, sizeof expected, "%s: cannot open it: No such file or directory", path);
    ck_assert_str_eq(error, expected);
}
END_TEST

START_TEST(test_find_argument)
{
    const char *path = NULL;
    char error[256];
    char *none[] = {"paramd", "--http", "127.0.0.1:0", "--threads=2", NULL};
    ck_assert_int_eq(paramd__config_find_argument(4, none, &path, error, sizeof error), 0);
    char *separate[] = {"paramd", "--threads", "2", "--config", "a.conf", "--log-level", "debug"};
    ck_assert_int_eq(paramd__config_find_argument(7, separate, &path, error, sizeof error), 1);
    ck_assert_str_eq(path, "a.conf");
    char *joined[] = {"paramd", "--config=b.conf"};
    ck_assert_int_eq(paramd__config_find_argument(2, joined, &path, error, sizeof error), 1);
    ck_assert_str_eq(path, "b.conf");
    /* "--config" as another option's value is that option's value. */
    char *as_value[] = {"paramd", "--data-dir", "--config", "--threads", "1"};
    ck_assert_int_eq(paramd__config_find_argument(5, as_value, &path, error, sizeof error), 0);
    char *twice[] = {"paramd", "--config", "a", "--config=b"};
    ck_assert_int_eq(paramd__config_find_argument(4, twice, &path, error, sizeof error), -1);
    ck_assert_str_eq(error, "--config is given twice (\"a\" and \"b\")");
    char *missing[] = {"paramd", "--config"};
    ck_assert_int_eq(paramd__config_find_argument(2, missing, &path, error, sizeof error), -1);
    ck_assert_str_eq(error, "--config needs a value (FILE)");
    char *help[] = {"paramd", "--config", "missing.conf", "--help"};
    ck_assert_int_eq(paramd__config_find_argument(4, help, &path, error, sizeof error), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_settings_comments_and_blanks);
    tcase_add_test(tc, test_last_line_without_newline_and_bom);
    tcase_add_test(tc, test_errors_name_file_and_line);
    tcase_add_test(tc, test_nul_byte_refused);
    tcase_add_test(tc, test_load_reads_a_file_and_names_a_missing_one);
    tcase_add_test(tc, test_find_argument);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
