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

#include "auth.h"
#include "core.h"

#include <jansson.h>
#include <pthread.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct paramd__http_options {
    const char *host;            /* numeric IPv4 or IPv6 address */
    unsigned short port;         /* 0: any free port */
    size_t max_body_bytes;       /* larger bodies get 413 before they are read */
    unsigned connection_limit;   /* simultaneous connections */
    unsigned idle_timeout_seconds;
    /* Issue 9. */
    unsigned per_ip_connection_limit; /* simultaneous connections from one address; 0: none */
    unsigned request_timeout_seconds; /* a request's headers and body must arrive within
                                         this long of its first line; 0: no limit */
    paramd__role metrics_role;   /* what GET /metrics needs when the server has tokens */
    const char *tls_certificate; /* PEM text (the chain), or NULL: plain HTTP */
    const char *tls_key;         /* PEM text of the private key, with tls_certificate */
} paramd__http_options;

/* A connection the watchdog keeps an eye on (http.c). */
typedef struct paramd__http_watched paramd__http_watched;

typedef struct paramd__http_server {
    struct MHD_Daemon *daemon;
    paramd__server *server;
    paramd__http_options options;
    unsigned short bound_port;
    atomic_bool shutting_down;   /* /readyz answers 503 once set */
    /* Issue 9: the watchdog that cuts off connections whose request does
     * not arrive in time (slow clients); watch_lock guards the list. */
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_wake;
    paramd__http_watched *watched;
    pthread_t watchdog;
    bool watchdog_running;
    bool watchdog_stop;
    atomic_uint_fast64_t cut_off;  /* connections cut off for being too slow */
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
    /* Issue 9: a WWW-Authenticate header for 401 and 403, and Retry-After
     * seconds for 503 overloaded (0: none). */
    char www_authenticate[160];
    unsigned retry_after;
} paramd__http_response;

/* The role a request needs (PARAMD__ROLE_NONE: none, e.g. /livez), from
 * the route table; a path no route matches needs read, so that a client
 * without a token learns nothing about which paths exist. */
paramd__role paramd__http_route_role(const paramd__http_server *http, const char *method,
                                     const char *path);

/* Routes a complete request to its handler. */
void paramd__http_dispatch(const paramd__http_request *request, paramd__http_response *response);

/* Fills *response with the error's status and JSON error body. */
void paramd__http_error_response(paramd__http_response *response, const paramd__error *error);

/* The HTTP status for a PARAMD_E* code. */
unsigned paramd__http_status_for(int code);

#endif
