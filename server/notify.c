/*
 * notify.c - sd_notify's datagram protocol (notify.h), about thirty lines of
 * systemd's documented, stable interface.
 */
#define _DEFAULT_SOURCE
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int paramd__notify(const char *state, char *error, size_t error_size)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || name[0] == '\0')
        return 0;
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t length = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || length >= sizeof address.sun_path) {
        snprintf(error, error_size,
                 "NOTIFY_SOCKET=\"%s\" is neither an absolute path nor an abstract '@' name "
                 "of at most %zu bytes",
                 name, sizeof address.sun_path - 1);
        return -1;
    }
    memcpy(address.sun_path, name, length);
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    if (name[0] == '@')
        address.sun_path[0] = '\0'; /* abstract: no terminating NUL counts */
    else
        address_length++; /* a path's length includes its NUL */
    int descriptor = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (descriptor < 0) {
        snprintf(error, error_size, "cannot open a socket for NOTIFY_SOCKET: %s",
                 strerror(errno));
        return -1;
    }
    size_t state_length = strlen(state);
    ssize_t sent;
    do
        sent = sendto(descriptor, state, state_length, MSG_NOSIGNAL,
                      (const struct sockaddr *)&address, address_length);
    while (sent < 0 && errno == EINTR);
    int saved_errno = errno;
    close(descriptor);
    if (sent != (ssize_t)state_length) {
        snprintf(error, error_size, "cannot notify %s: %s", name,
                 sent < 0 ? strerror(saved_errno) : "short datagram");
        return -1;
    }
    return 1;
}
