/*
 * error.h - an error code plus a message that names what is wrong.
 *
 * Core functions report failure by filling a caller-owned paramd__error and
 * returning its (negative) code.  Messages are full sentences fragments that
 * name the offending field, e.g. "optimizer.betas[1]: must be in [0, 1), got 1.5".
 */
#ifndef PARAMD_SERVER_ERROR_H
#define PARAMD_SERVER_ERROR_H

#include "paramd/paramd.h"

#include <stdint.h>

#define PARAMD__ERROR_MESSAGE_SIZE 512

typedef struct paramd__error {
    int code;                                  /* PARAMD_OK or a PARAMD_E* code */
    char message[PARAMD__ERROR_MESSAGE_SIZE];  /* NUL-terminated, may be empty */
    /* PARAMD_E_NOT_OWNER only: the server's shard-map version and the
     * shard that owns what was asked for (else 0 and -1). */
    uint64_t shard_map_version;
    int owner;
} paramd__error;

/* Records code and a printf-style message in *error (if error is not NULL)
 * and returns code, so that callers can write `return paramd__error_set(...)`. */
int paramd__error_set(paramd__error *error, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets *error to PARAMD_OK with an empty message. */
void paramd__error_clear(paramd__error *error);

#endif
