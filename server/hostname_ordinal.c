/*
 * hostname_ordinal.c - the trailing "-N" of a host name as a shard id
 * (hostname_ordinal.h).
 */
#define _DEFAULT_SOURCE
#include "hostname_ordinal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int paramd__hostname_ordinal(const char *hostname, long maximum, long *ordinal, char *message,
                             size_t size)
{
    size_t label = strcspn(hostname, ".");
    size_t dash = label;
    while (dash > 0 && hostname[dash - 1] != '-')
        dash--;
    size_t digits = label - dash;
    int valid = dash > 1 && digits >= 1 && digits <= 9 &&
                !(digits > 1 && hostname[dash] == '0');
    long value = 0;
    for (size_t i = dash; valid && i < label; i++) {
        if (hostname[i] < '0' || hostname[i] > '9')
            valid = 0;
        else
            value = value * 10 + (hostname[i] - '0');
    }
    if (!valid) {
        snprintf(message, size,
                 "from-hostname: the host name \"%s\" does not end in -N (a StatefulSet pod's "
                 "ordinal, as in paramd-0)",
                 hostname);
        return -1;
    }
    if (value > maximum) {
        snprintf(message, size, "from-hostname: the host name \"%s\" gives %ld, more than %ld",
                 hostname, value, maximum);
        return -1;
    }
    *ordinal = value;
    return 0;
}

int paramd__own_hostname_ordinal(long maximum, long *ordinal, char *message, size_t size)
{
    char hostname[HOST_NAME_MAX + 1];
    if (gethostname(hostname, sizeof hostname) != 0) {
        snprintf(message, size, "from-hostname: cannot read the host name: %s", strerror(errno));
        return -1;
    }
    hostname[HOST_NAME_MAX] = '\0';
    return paramd__hostname_ordinal(hostname, maximum, ordinal, message, size);
}
