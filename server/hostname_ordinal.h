/*
 * hostname_ordinal.h - a shard id from the host name, for
 * `--shard-id from-hostname`: a Kubernetes StatefulSet names its pods
 * NAME-0, NAME-1, ... and makes each pod's host name its pod name, so the
 * trailing "-N" is the pod's ordinal and the shard's id (deploy/k8s/).
 */
#ifndef PARAMD_SERVER_HOSTNAME_ORDINAL_H
#define PARAMD_SERVER_HOSTNAME_ORDINAL_H

#include <stddef.h>

/* Parses the ordinal of `hostname`: the decimal number after the last '-'
 * of its first label (the part before any '.'), written without leading
 * zeros, and at most `maximum`.  Returns 0 with *ordinal set, or -1 with a
 * message naming the host name in message (size bytes). */
int paramd__hostname_ordinal(const char *hostname, long maximum, long *ordinal, char *message,
                             size_t size);

/* The same for this machine's host name (gethostname). */
int paramd__own_hostname_ordinal(long maximum, long *ordinal, char *message, size_t size);

#endif
