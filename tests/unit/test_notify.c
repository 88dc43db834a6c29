/*
 * test_notify.c - the sd_notify datagrams of server/notify.c, received on
 * real AF_UNIX datagram sockets bound by the test: a path and an abstract
 * name, as systemd passes them in NOTIFY_SOCKET.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "notify.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* Binds a datagram socket at `name` ('@' first: abstract) and returns it. */
static int bind_socket(const char *name)
{
    int descriptor = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(descriptor, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    size_t length = strlen(name);
    memcpy(address.sun_path, name, length);
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    if (name[0] == '@')
        address.sun_path[0] = '\0';
    else
        address_length++;
    ck_assert_int_eq(bind(descriptor, (struct sockaddr *)&address, address_length), 0);
    struct timeval timeout = {.tv_sec = 10};
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return descriptor;
}

static void receive(int descriptor, char *buffer, size_t size)
{
    ssize_t length = recv(descriptor, buffer, size - 1, 0);
    ck_assert_int_gt(length, 0);
    buffer[length] = '\0';
}

START_TEST(test_unset_sends_nothing)
{
    char error[256];
    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), 0);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_path_socket)
{
    char directory[] = "/tmp/paramd-notify-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(directory));
    char path[128];
    snprintf(path, sizeof path, "%s/notify", directory);
    int descriptor = bind_socket(path);
    setenv("NOTIFY_SOCKET", path, 1);
    char error[256] = "", buffer[512];
    ck_assert_int_eq(paramd__notify("READY=1\nSTATUS=listening", error, sizeof error), 1);
    receive(descriptor, buffer, sizeof buffer);
    ck_assert_str_eq(buffer, "READY=1\nSTATUS=listening");
    ck_assert_int_eq(paramd__notify("STOPPING=1", error, sizeof error), 1);
    receive(descriptor, buffer, sizeof buffer);
    ck_assert_str_eq(buffer, "STOPPING=1");
    close(descriptor);
    unlink(path);
    /* Nobody listens there any more: an error that names the socket. */
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), -1);
    ck_assert_ptr_nonnull(strstr(error, path));
    rmdir(directory);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_abstract_socket)
{
    char name[64];
    snprintf(name, sizeof name, "@paramd-test-notify-%ld", (long)getpid());
    int descriptor = bind_socket(name);
    setenv("NOTIFY_SOCKET", name, 1);
    char error[256] = "", buffer[512];
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), 1);
    receive(descriptor, buffer, sizeof buffer);
    ck_assert_str_eq(buffer, "READY=1");
    close(descriptor);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_bad_names_refused)
{
    char error[256] = "";
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), -1);
    ck_assert_ptr_nonnull(strstr(error, "relative/path"));
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[0] = '/';
    long_name[sizeof long_name - 1] = '\0';
    setenv("NOTIFY_SOCKET", long_name, 1);
    ck_assert_int_eq(paramd__notify("READY=1", error, sizeof error), -1);
    unsetenv("NOTIFY_SOCKET");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("notify");
    TCase *tc = tcase_create("notify");
    tcase_add_test(tc, test_unset_sends_nothing);
    tcase_add_test(tc, test_path_socket);
    tcase_add_test(tc, test_abstract_socket);
    tcase_add_test(tc, test_bad_names_refused);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
