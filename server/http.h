/*
 * http.h - the HTTP/JSON front end on libmicrohttpd.
 *
 * http.c owns the daemon, request bodies, limits and responses; http_routes.c
 * owns the route table and the handlers, which parse with json_api and call
 * the core.  Each connection gets its own thread, so a large update never
 * blocks other workers' requests.
 */
#ifndef PARAMD_SERVER_HTTP_H
#define PARAMD_SERVER_HTTP_H

#include "core.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct paramd__http_options {
    const char *host;            /* numeric IPv4 or IPv6 address */
    unsigned short port;         /* 0: any free port */
    size_t max_body_bytes;       /* larger bodies get 413 before they are read */
    unsigned connection_limit;   /* simultaneous connections */
    unsigned idle_timeout_seconds;
} paramd__http_options;

typedef struct paramd__http_server {
    struct MHD_Daemon *daemon;
    paramd__server *server;
    paramd__http_options options;
    unsigned short bound_port;
    atomic_bool shutting_down;   /* /readyz answers 503 once set */
} paramd__http_server;

/* Starts serving.  Returns PARAMD_OK or fills *error (e.g. address in use). */
int paramd__http_start(paramd__http_server *http, paramd__server *server,
                       const paramd__http_options *options, paramd__error *error);

/* Stops accepting, waits for requests in flight, and frees the daemon. */
void paramd__http_stop(paramd__http_server *http);

/* ---------------------------------------------------------------------------
 * Interface between http.c and http_routes.c
 * ------------------------------------------------------------------------- */

/* A request as the handlers see it: method, path, complete body. */
typedef struct paramd__http_request {
    paramd__http_server *http;
    struct MHD_Connection *connection;
    const char *method;
    const char *path;
    const char *body;   /* NUL-terminated, body_length bytes (may hold NULs) */
    size_t body_length;
} paramd__http_request;

/* What a handler answers: a status and a JSON body (owned; NULL for none),
 * or instead JSON text already written (raw_body: owned, malloc'ed), plus an
 * Allow header for 405. */
typedef struct paramd__http_response {
    unsigned status;
    json_t *body;
    char *raw_body;
    size_t raw_length;
    char allow[64];     /* Allow header value for 405, else empty */
    /* Issue 8: the Content-Type of raw_body when it is not JSON (the
     * dashboard, /metrics; static strings), else NULL; the request's
     * operation and its PARAMD_E* code, for /metrics. */
    const char *content_type;
    int operation;      /* a paramd__operation */
    int code;           /* PARAMD_OK unless an error was answered */
} paramd__http_response;

/* Routes a complete request to its handler. */
void paramd__http_dispatch(const paramd__http_request *request, paramd__http_response *response);

/* Fills *response with the error's status and JSON error body. */
void paramd__http_error_response(paramd__http_response *response, const paramd__error *error);

/* The HTTP status for a PARAMD_E* code. */
unsigned paramd__http_status_for(int code);

#endif
