/*
 * test_hostname_ordinal.c - `--shard-id from-hostname`: the StatefulSet
 * ordinal at the end of a host name (server/hostname_ordinal.h).
 */
#include "test_util.h"

#include "hostname_ordinal.h"

#include <string.h>

START_TEST(test_ordinals)
{
    static const struct {
        const char *hostname;
        long ordinal;
    } cases[] = {
        {"paramd-0", 0},
        {"paramd-7", 7},
        {"paramd-1023", 1023},
        {"my-param-server-12", 12},
        {"paramd-3.paramd.ml.svc.cluster.local", 3},
        {"a-5", 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long ordinal = -1;
        char message[256] = "";
        ck_assert_msg(paramd__hostname_ordinal(cases[i].hostname, 1023, &ordinal, message,
                                               sizeof message) == 0,
                      "%s: %s", cases[i].hostname, message);
        ck_assert_int_eq(ordinal, cases[i].ordinal);
    }
}
END_TEST

START_TEST(test_refused)
{
    static const char *const refused[] = {
        "vm", "paramd", "paramd-", "-3", "paramd-x", "paramd-3x", "paramd-03", "paramd3",
        "paramd-1_5", "", "paramd-1024", "paramd-99999999999",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        long ordinal = -7;
        char message[256] = "";
        ck_assert_msg(paramd__hostname_ordinal(refused[i], 1023, &ordinal, message,
                                               sizeof message) == -1,
                      "accepted \"%s\"", refused[i]);
        ck_assert_int_eq(ordinal, -7);
        ck_assert_ptr_nonnull(strstr(message, "from-hostname"));
        ck_assert_ptr_nonnull(strstr(message, refused[i]));
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("hostname_ordinal");
    TCase *tc = tcase_create("hostname_ordinal");
    tcase_add_test(tc, test_ordinals);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
