/*
 * tcp.h - the binary protocol front end on libuv (proto/PROTOCOL.md).
 *
 * tcp.c owns the listener, the connections, their buffers, limits and
 * timers; tcp_handlers.c owns what each request does: it decodes the
 * payload with proto/frame.h, validates it, calls the same core functions
 * as the HTTP front end, and encodes the reply.
 *
 * One event-loop thread serves every connection.  A connection's requests
 * run one at a time, in order, so replies leave in request order; a request
 * that moves a lot of data (a large push, pull or model creation) runs on
 * libuv's worker threads while the loop goes on serving the other
 * connections, and its connection stops reading until it is done.  Small
 * requests run on the loop thread, which keeps round trips short.
 */
#ifndef PARAMD_SERVER_TCP_H
#define PARAMD_SERVER_TCP_H

#include "auth.h"
#include "core.h"
#include "frame.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct paramd__tcp_options {
    const char *host;              /* numeric IPv4 or IPv6 address */
    unsigned short port;           /* 0: any free port */
    uint64_t max_frame_bytes;      /* largest payload accepted */
    unsigned connection_limit;     /* simultaneous connections; more are refused */
    unsigned idle_timeout_seconds; /* a connection silent this long is closed; 0: never */
    /* Issue 9. */
    unsigned per_ip_connection_limit; /* connections from one address; 0: no limit */
    unsigned request_timeout_seconds; /* a frame must arrive whole within this long of its
                                         first byte; 0: no limit */
} paramd__tcp_options;

/* Connections from one address (loop thread only). */
typedef struct paramd__tcp_address_count {
    char address[46]; /* INET6_ADDRSTRLEN */
    unsigned count;
} paramd__tcp_address_count;

typedef struct paramd__tcp_server {
    paramd__server *server;
    paramd__tcp_options options;
    unsigned short bound_port;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_signal;
    pthread_t thread;
    bool running;
    unsigned connection_count;        /* loop thread only */
    /* Connections whose waiting push the core completed, for the loop to
     * finish (ready_lock guards the list and ready_open). */
    uv_async_t ready_signal;
    pthread_mutex_t ready_lock;
    struct connection *ready;
    bool ready_open;
    atomic_uint_fast64_t requests;    /* frames answered */
    atomic_uint_fast64_t refused_connections;
    /* Issue 9: connections per address, for --max-connections-per-ip
     * (loop thread only; a few hundred distinct addresses at most are
     * expected, so a linear array), and frames cut off for arriving too
     * slowly. */
    paramd__tcp_address_count *addresses;
    size_t address_count, address_capacity;
    atomic_uint_fast64_t cut_off;
} paramd__tcp_server;

/* Binds and listens on the caller's thread (so that an address in use is
 * reported here), then serves on a thread of its own.  Returns PARAMD_OK or
 * fills *error. */
int paramd__tcp_start(paramd__tcp_server *tcp, paramd__server *server,
                      const paramd__tcp_options *options, paramd__error *error);

/* Stops accepting, closes every connection once its request in flight (if
 * any) has finished, and joins the thread. */
void paramd__tcp_stop(paramd__tcp_server *tcp);

/* ---------------------------------------------------------------------------
 * Interface between tcp.c and tcp_handlers.c
 * ------------------------------------------------------------------------- */

/* Per-connection protocol state, touched by one request at a time. */
typedef struct paramd__tcp_session {
    paramd__tcp_server *tcp;
    bool hello_done;
    char peer[64];   /* "address:port", for logs */
    char client[64]; /* the name HELLO gave, for logs */
    /* Issue 9: the token HELLO presented, the role it had when the tokens
     * had auth_generation, and whether tcp.c must close the connection
     * once this request's reply is written (a HELLO without a valid token). */
    paramd__role role;
    uint64_t auth_generation;
    char token[PARAMD__TOKEN_MAX_LENGTH + 1];
    size_t token_length;
    bool close_after_reply;
    /* A large reply buffer kept from an earlier reply, lent to the handler
     * for one request (tcp.c hands it over and takes it back): a client that
     * pushes a 64M-element tensor again and again reuses the same memory
     * instead of faulting in 256 MB of fresh pages for every reply. */
    uint8_t *spare;
    size_t spare_capacity;
} paramd__tcp_session;

/* A push that waits for other workers (sync and ssp models); see below. */
typedef struct paramd__tcp_waiting paramd__tcp_waiting;

/* A reply to send: a malloc'ed buffer of whole frames; or, for a push that
 * has to wait for other workers, no data yet and `waiting` set. */
typedef struct paramd__tcp_reply {
    uint8_t *data;
    size_t size;
    size_t capacity; /* bytes allocated (at least size) */
    paramd__tcp_waiting *waiting;
} paramd__tcp_reply;

/* A buffer of at least `size` bytes for a reply: the session's spare when
 * it is large enough, else a new one.  NULL if memory ran out. */
uint8_t *paramd__tcp_reply_buffer(paramd__tcp_session *session, size_t size, size_t *capacity);

/* Requests moving at least this many bytes run on a worker thread. */
#define PARAMD__TCP_HEAVY_BYTES (256u * 1024u)

/* Roughly how many bytes a request moves (its payload, or for a PULL the
 * weights it asks for): tcp.c runs it on a worker thread from
 * PARAMD__TCP_HEAVY_BYTES on.  Model creation always counts as heavy (it
 * may allocate and initialise gigabytes). */
uint64_t paramd__tcp_request_cost(const paramd__frame_header *header, const uint8_t *payload);

/* Handles one complete frame and fills *reply (never empty: a failed
 * request gets an ERROR frame).  Safe to call from any thread, for one
 * request of a session at a time.  Returns false only when memory for the
 * reply itself ran out (tcp.c then closes the connection). */
bool paramd__tcp_handle(paramd__tcp_session *session, const paramd__frame_header *header,
                        const uint8_t *payload, paramd__tcp_reply *reply);

/* ---------------------------------------------------------------------------
 * Pushes that wait (sync and ssp models; consistency.h)
 *
 * paramd__tcp_handle answers such a push with reply->waiting instead of
 * data.  The waiting push refers to its frame in the connection's input
 * buffer, so tcp.c keeps that buffer where it is and stops reading the
 * connection (later requests wait their turn: replies stay in order) until
 * one of these happens, each on the loop thread:
 *   - the core completes the push and calls paramd__tcp_waiting_notify
 *     (from any thread, with the model's consistency lock held): tcp.c
 *     wakes its loop, which calls paramd__tcp_waiting_finish;
 *   - its deadline passes: tcp.c calls paramd__tcp_waiting_expire, then
 *     finish (the reply is a timeout ERROR, or the result if the core
 *     completed it just before);
 *   - its connection closes: tcp.c calls paramd__tcp_waiting_withdraw, then
 *     finish, and frees the reply.
 * ------------------------------------------------------------------------- */

/* The ticket's notify: the ticket's context is the session. */
void paramd__tcp_waiting_notify(paramd__push_ticket *ticket);

/* When the push stops waiting at the latest (CLOCK_MONOTONIC seconds). */
double paramd__tcp_waiting_deadline(const paramd__tcp_waiting *push);

void paramd__tcp_waiting_expire(paramd__tcp_session *session, paramd__tcp_waiting *push);
void paramd__tcp_waiting_withdraw(paramd__tcp_session *session, paramd__tcp_waiting *push);

/* Fills *reply with a done push's reply and frees the push; returns false
 * only when memory for the reply ran out. */
bool paramd__tcp_waiting_finish(paramd__tcp_session *session, paramd__tcp_waiting *push,
                                paramd__tcp_reply *reply);

/* An ERROR frame for request_id (reply->data NULL if memory ran out). */
void paramd__tcp_error_reply(uint64_t request_id, int code, const char *message,
                             paramd__tcp_reply *reply);

#endif
