/*
 * notify.h - readiness and shutdown notifications to a service manager,
 * by systemd's sd_notify protocol (implemented here, without libsystemd).
 *
 * The protocol: when the environment holds NOTIFY_SOCKET, the service sends
 * datagrams of newline-separated "VARIABLE=value" assignments ("READY=1",
 * "STOPPING=1", "STATUS=free text") to the AF_UNIX socket it names: a file
 * system path, or an abstract socket when it starts with '@' (the '@'
 * standing for the leading NUL byte).  Without NOTIFY_SOCKET nothing is sent.
 * paramd sends READY=1 once both listeners are bound and every checkpoint is
 * restored, and STOPPING=1 when a shutdown signal arrives.
 */
#ifndef PARAMD_SERVER_NOTIFY_H
#define PARAMD_SERVER_NOTIFY_H

#include <stddef.h>

/* Sends `state` (e.g. "READY=1\nSTATUS=listening") as one datagram to
 * $NOTIFY_SOCKET.  Returns 1 when it was sent, 0 when NOTIFY_SOCKET is unset
 * or empty (not run by a service manager), -1 with the reason in error
 * (error_size bytes) when it could not be sent.  Safe from any thread. */
int paramd__notify(const char *state, char *error, size_t error_size);

#endif
