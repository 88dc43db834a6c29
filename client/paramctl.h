/*
 * paramctl.h - what paramctl's files share: exit codes, error reporting,
 * the two transports behind one interface, and .npy files.
 *
 *   paramctl.c       options, subcommands, help texts;
 *   paramctl_tcp.c   the binary protocol, through libparamd;
 *   paramctl_http.c  the HTTP API, through libcurl and jansson;
 *   paramctl_npy.c   .npy and raw float32 files.
 */
#ifndef PARAMD_PARAMCTL_H
#define PARAMD_PARAMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes (paramctl --help and docs/CLIENT.md list them). */
enum {
    PARAMCTL_OK = 0,
    PARAMCTL_SERVER_ERROR = 1, /* the server refused the request (not found, bad JSON, ...) */
    PARAMCTL_USAGE = 2,        /* bad options or arguments */
    PARAMCTL_CONNECT = 3,      /* cannot connect, or the connection failed or timed out */
    PARAMCTL_FILE = 4,         /* a local file cannot be read, parsed or written */
};

/* Prints "paramctl: MESSAGE" on stderr and returns exit_code. */
int paramctl_fail(int exit_code, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* A tensor's shape, as the server describes it. */
typedef struct paramctl_shape {
    int dimension_count;
    uint64_t shape[8];
    uint64_t element_count;
} paramctl_shape;

/* One transport.  Every operation returns a PARAMCTL_* exit code, having
 * printed why on stderr when it is not PARAMCTL_OK.  JSON documents come
 * back malloc'ed (free them with free()), exactly as the server wrote them
 * (push's summary excepted, which paramctl builds: step, lr, and grad_norm,
 * loss_scale, skipped and accumulated where they apply). */
typedef struct paramctl_backend {
    void *self;
    int (*create)(void *self, const char *model, const char *json, char **out);
    int (*list)(void *self, char **out);
    int (*describe)(void *self, const char *model, char **out);
    int (*delete_model)(void *self, const char *model);
    /* model NULL: the server's counters. */
    int (*stats)(void *self, const char *model, char **out);
    int (*shape)(void *self, const char *model, const char *tensor, paramctl_shape *shape);
    int (*push)(void *self, const char *model, const char *tensor, const float *values,
                size_t count, char **summary);
    int (*pull)(void *self, const char *model, const char *tensor, float *values, size_t count);
    void (*close)(void *self);
} paramctl_backend;

/* Where and how to reach the server. */
typedef struct paramctl_target {
    const char *host;
    int port;
    const char *shard_map;    /* TCP: every shard of this shard map file; else NULL */
    int timeout_ms;           /* bounds connecting and each request */
    const char *token;        /* the bearer token (HELLO, or Authorization: Bearer); NULL: none */
    const char *token_source; /* where it came from, for messages ("--token-file F", ...) */
    bool tls;                 /* HTTP: https:// */
    const char *cacert;       /* HTTPS: the CA file (or self-signed certificate) to trust;
                                 NULL: the system's trust store */
} paramctl_target;

/* Connect (TCP) or prepare (HTTP) a backend for target.  Return a
 * PARAMCTL_* code. */
int paramctl_tcp_open(const paramctl_target *target, paramctl_backend *backend);
int paramctl_http_open(const paramctl_target *target, paramctl_backend *backend);

/* What to add to a refusal of the token (code unauthorized or forbidden,
 * else ""): whether a token was given and where it came from, and what to
 * do. */
const char *paramctl_auth_hint(int code, const paramctl_target *target);

/* The summary JSON of a push, from its outcome (NaN: absent). */
char *paramctl_push_summary(uint64_t step, double lr, double grad_norm, double loss_scale,
                            bool skipped, bool accumulated);

/* ---------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------- */

/* Reads a .npy file (float32, float16 or float64, little- or big-endian,
 * C order; converted to float32) or, when it does not start with the .npy
 * magic, raw little-endian float32.  *values is malloc'ed; *shape is the
 * .npy's shape, or one dimension of *count for a raw file.  Returns
 * PARAMCTL_OK or PARAMCTL_FILE, having said what is wrong. */
int paramctl_read_floats(const char *path, float **values, size_t *count, paramctl_shape *shape);

/* Writes values as a .npy (float32, version 1.0, C order) when path ends
 * in ".npy", else as raw little-endian float32. */
int paramctl_write_floats(const char *path, const float *values, size_t count,
                          const paramctl_shape *shape);

/* Parses a .npy file's bytes; exposed for the tests of bad headers.
 * Returns PARAMCTL_OK or PARAMCTL_FILE with why (a sentence). */
int paramctl_parse_npy(const uint8_t *bytes, size_t size, float **values, size_t *count,
                       paramctl_shape *shape, char *why, size_t why_size);

#endif
