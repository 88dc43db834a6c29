/*
 * test_auth.c - token files, roles, Bearer headers and reloads (issue 9;
 * server/auth.h).
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_TOKEN "read-token-0123456789"
#define WRITE_TOKEN "write.token_0123456789"
#define ADMIN_TOKEN "admin~token+0123456789/=="

static int parse(const char *text, paramd__token_table *table, paramd__error *error)
{
    return paramd__token_table_parse(text, strlen(text), "tokens", table, error);
}

START_TEST(test_parse_roles_comments_and_blank_lines)
{
    paramd__token_table table;
    paramd__error error = {0};
    ck_assert_int_eq(parse("# paramd tokens\n\n"
                           "read  " READ_TOKEN "   # the dashboard\n"
                           "\twrite\t" WRITE_TOKEN "\r\n"
                           "admin " ADMIN_TOKEN,
                           &table, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(table.count, 3);
    ck_assert_int_eq(table.tokens[0].role, PARAMD__ROLE_READ);
    ck_assert_str_eq(table.tokens[0].text, READ_TOKEN);
    ck_assert_int_eq(table.tokens[1].role, PARAMD__ROLE_WRITE);
    ck_assert_str_eq(table.tokens[1].text, WRITE_TOKEN);
    ck_assert_int_eq(table.tokens[2].role, PARAMD__ROLE_ADMIN);
    ck_assert_str_eq(table.tokens[2].text, ADMIN_TOKEN);
    paramd__token_table_free(&table);
}
END_TEST

/* Every bad line is refused with its line number, and never echoes the token. */
START_TEST(test_parse_errors_name_the_line)
{
    static const struct {
        const char *text;
        const char *expected;
    } cases[] = {
        {"read " READ_TOKEN "\nreader " WRITE_TOKEN "\n", "line 2: unknown role \"reader\""},
        {"read\n", "line 1: expected \"ROLE TOKEN\" (two fields), found 1"},
        {"read " READ_TOKEN " extra\n", "found 3"},
        {"write short\n", "line 1: the token is shorter than 16 characters"},
        {"write " READ_TOKEN "\nadmin " READ_TOKEN "\n", "line 2: the same token"},
        {"write abc\"defghijklmnopqrstu\n", "outside RFC 6750's b64token set"},
        {"write ==abcdefghijklmnopqrstu\n", "must start with"},
        {"write abcdefghijklmnop=qrstu\n", "outside RFC 6750"},
        {"# only a comment\n\n", "no tokens"},
        {READ_TOKEN " read\n", "line 1: the first field (21 characters, not shown)"},
        {"", "no tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paramd__token_table table;
        paramd__error error = {0};
        ck_assert_int_eq(parse(cases[i].text, &table, &error), PARAMD_E_BAD_REQUEST);
        ck_assert_msg(strstr(error.message, cases[i].expected) != NULL, "case %zu: \"%s\"", i,
                      error.message);
        ck_assert_ptr_null(strstr(error.message, "defghijklmnop"));
        ck_assert_ptr_null(strstr(error.message, READ_TOKEN));
        ck_assert_uint_eq(table.count, 0);
        ck_assert_ptr_null(table.tokens);
    }
    /* 256 characters is the longest token; 257 is refused. */
    char text[300];
    memset(text, 0, sizeof text);
    strcpy(text, "read ");
    memset(text + 5, 'x', 256);
    paramd__token_table table;
    paramd__error error = {0};
    ck_assert_int_eq(parse(text, &table, &error), PARAMD_OK);
    paramd__token_table_free(&table);
    text[5 + 256] = 'x';
    ck_assert_int_eq(parse(text, &table, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "longer than 256"));
}
END_TEST

START_TEST(test_bearer_header)
{
    const char *token;
    size_t length;
    ck_assert(paramd__auth_parse_bearer("Bearer abc", &token, &length));
    ck_assert_uint_eq(length, 3);
    ck_assert(strncmp(token, "abc", 3) == 0);
    ck_assert(paramd__auth_parse_bearer("bearer   abc  ", &token, &length)); /* RFC 7235 */
    ck_assert_uint_eq(length, 3);
    ck_assert(!paramd__auth_parse_bearer(NULL, &token, &length));
    ck_assert(!paramd__auth_parse_bearer("Basic dXNlcjpwYXNz", &token, &length));
    ck_assert(!paramd__auth_parse_bearer("Bearer", &token, &length));
    ck_assert(!paramd__auth_parse_bearer("Bearer   ", &token, &length));
    ck_assert(!paramd__auth_parse_bearer("Bearerabc", &token, &length));
}
END_TEST

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    fputs(text, file);
    fclose(file);
    chmod(path, mode);
}

START_TEST(test_roles_lookup_and_reload)
{
    char directory[] = "/tmp/paramd-auth-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(directory));
    char path[128];
    snprintf(path, sizeof path, "%s/tokens", directory);
    write_file(path, "read " READ_TOKEN "\nwrite " WRITE_TOKEN "\nadmin " ADMIN_TOKEN "\n", 0600);

    paramd__auth auth;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__auth_open(&auth, path, &error), PARAMD_OK);
    ck_assert_int_eq(paramd__auth_role(&auth, READ_TOKEN, strlen(READ_TOKEN)), PARAMD__ROLE_READ);
    ck_assert_int_eq(paramd__auth_role(&auth, WRITE_TOKEN, strlen(WRITE_TOKEN)),
                     PARAMD__ROLE_WRITE);
    ck_assert_int_eq(paramd__auth_role(&auth, ADMIN_TOKEN, strlen(ADMIN_TOKEN)),
                     PARAMD__ROLE_ADMIN);
    /* A prefix, an extension and one changed character are all unknown. */
    ck_assert_int_eq(paramd__auth_role(&auth, READ_TOKEN, strlen(READ_TOKEN) - 1),
                     PARAMD__ROLE_NONE);
    ck_assert_int_eq(paramd__auth_role(&auth, READ_TOKEN "0", strlen(READ_TOKEN) + 1),
                     PARAMD__ROLE_NONE);
    char changed[] = READ_TOKEN;
    changed[5] ^= 1;
    ck_assert_int_eq(paramd__auth_role(&auth, changed, strlen(changed)), PARAMD__ROLE_NONE);
    ck_assert_int_eq(paramd__auth_role(&auth, "", 0), PARAMD__ROLE_NONE);
    ck_assert_int_eq(paramd__auth_role(NULL, "", 0), PARAMD__ROLE_ADMIN); /* no token file */
    size_t counts[4];
    paramd__auth_counts(&auth, counts);
    ck_assert(counts[1] == 1 && counts[2] == 1 && counts[3] == 1);
    uint64_t generation = paramd__auth_generation(&auth);

    /* A bad file keeps the old tokens and the generation. */
    write_file(path, "read " READ_TOKEN "\nroot " WRITE_TOKEN "\n", 0600);
    ck_assert_int_eq(paramd__auth_reload(&auth, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "line 2"));
    ck_assert_int_eq(paramd__auth_role(&auth, ADMIN_TOKEN, strlen(ADMIN_TOKEN)),
                     PARAMD__ROLE_ADMIN);
    ck_assert_uint_eq(paramd__auth_generation(&auth), generation);

    /* A good one replaces them: the write token is revoked, read promoted. */
    write_file(path, "admin " READ_TOKEN "\n", 0600);
    ck_assert_int_eq(paramd__auth_reload(&auth, &error), PARAMD_OK);
    ck_assert_uint_eq(paramd__auth_generation(&auth), generation + 1);
    ck_assert_int_eq(paramd__auth_role(&auth, READ_TOKEN, strlen(READ_TOKEN)),
                     PARAMD__ROLE_ADMIN);
    ck_assert_int_eq(paramd__auth_role(&auth, WRITE_TOKEN, strlen(WRITE_TOKEN)),
                     PARAMD__ROLE_NONE);
    paramd__auth_close(&auth);

    /* A missing file is an error naming it. */
    unlink(path);
    ck_assert_int_eq(paramd__auth_open(&auth, path, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, path));
    rmdir(directory);
}
END_TEST

START_TEST(test_role_names)
{
    ck_assert_int_eq(paramd__role_find("read"), PARAMD__ROLE_READ);
    ck_assert_int_eq(paramd__role_find("write"), PARAMD__ROLE_WRITE);
    ck_assert_int_eq(paramd__role_find("admin"), PARAMD__ROLE_ADMIN);
    ck_assert_int_eq(paramd__role_find("none"), PARAMD__ROLE_NONE);
    ck_assert_int_eq(paramd__role_find("Admin"), PARAMD__ROLE_NONE);
    ck_assert_str_eq(paramd__role_name(PARAMD__ROLE_WRITE), "write");
    ck_assert(PARAMD__ROLE_READ < PARAMD__ROLE_WRITE && PARAMD__ROLE_WRITE < PARAMD__ROLE_ADMIN);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("auth");
    TCase *tc = tcase_create("tokens");
    tcase_add_test(tc, test_parse_roles_comments_and_blank_lines);
    tcase_add_test(tc, test_parse_errors_name_the_line);
    tcase_add_test(tc, test_bearer_header);
    tcase_add_test(tc, test_roles_lookup_and_reload);
    tcase_add_test(tc, test_role_names);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
