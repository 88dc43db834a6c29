/*
 * tcp.c - the binary protocol's transport on libuv: listener, connections,
 * framing, flow control and timeouts.  See tcp.h for the threading model.
 *
 * A connection's input buffer holds the bytes read and not yet handled.
 * Frames are cut off its front with paramd__frame_parse; a payload is
 * handed to the handler in place (no copy), which is why the buffer never
 * moves while a request runs: the connection stops reading while a worker
 * thread has it, and compacts the buffer only between requests.  Once a
 * frame's header has arrived, the buffer is grown to hold the whole frame,
 * so a large push is read straight into its final place.
 *
 * Replies of requests handled on the loop thread are collected and written
 * with one write per batch of input; a worker's reply is written when it
 * completes.  libuv writes in order, so replies leave in request order.  A
 * client that does not read its replies stops being read from once
 * PARAMD__TCP_MAX_PENDING_WRITE bytes are queued for it.
 *
 * A push that waits for other workers (tcp.h) holds its connection like a
 * request on a worker thread does - its input buffer in place, no request
 * handled after it - with a timer for its deadline.  The core completes it from whichever
 * thread finished the step; that thread puts the connection on the
 * server's ready list and wakes the loop, which writes the reply and goes
 * on with the connection's next request.
 */
#define _DEFAULT_SOURCE
#include "tcp.h"

#include "log.h"

#include <arpa/inet.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK (64u * 1024u)              /* least free space offered to a read */
#define PARAMD__TCP_MAX_PENDING_WRITE (64u << 20) /* queued reply bytes before reading pauses */

typedef struct connection {
    uv_tcp_t handle;               /* first: the handle's address is the connection's */
    uv_timer_t idle_timer;
    uv_timer_t deadline_timer;     /* the waiting push's deadline */
    uv_timer_t request_timer;      /* issue 9: a partly read frame's deadline */
    char address[46];              /* the peer's address, for the per-address count */
    paramd__tcp_server *tcp;
    paramd__tcp_session session;
    uint8_t *input;                /* input_capacity bytes; [0, input_size) read */
    size_t input_size, input_capacity;
    size_t frame_needed;           /* bytes the frame at the front needs, once known */
    /* Replies of loop-thread requests, written once a batch is handled. */
    uint8_t *batch;
    size_t batch_size, batch_capacity;
    size_t pending_write_bytes;    /* queued with uv_write, not yet written */
    size_t last_frame_size;        /* of the frame handled last, to size the input buffer */
    uint8_t *spare;                /* a written reply's buffer, kept for the next large reply */
    size_t spare_capacity;
    bool reading;
    bool busy;                     /* a worker thread is handling a request */
    bool closing;
    bool close_after_write;        /* a frame could not be delimited: close once replied */
    /* Closing after a last reply (close_after_write): our side is shut
     * down and what the client still sends is read and dropped until it
     * closes or LINGER_MS pass, so that the kernel does not answer unread
     * data with a reset that could destroy the reply in flight. */
    bool lingering;
    uv_shutdown_t shutdown_request;
    int open_handles;              /* handle and timers; freed when all are closed */
    /* The request on a worker thread. */
    uv_work_t work;
    paramd__frame_header work_header;
    const uint8_t *work_payload;
    size_t work_frame_size;
    paramd__tcp_reply work_reply;
    bool work_ok;
    /* A push waiting for other workers (loop thread only). */
    paramd__tcp_waiting *waiting;
    size_t waiting_bytes;          /* input bytes to drop once it is finished */
    bool ready_early;              /* completed before after_work saw it wait */
    /* On tcp->ready (guarded by tcp->ready_lock). */
    bool ready;
    struct connection *ready_next;
} connection;

typedef struct write_request {
    uv_write_t request;
    connection *owner;
    uint8_t *data;
    size_t size, capacity;
} write_request;

/* Reply buffers this large are kept for reuse (see paramd__tcp_session.spare). */
#define SPARE_MINIMUM (1u << 20)

static void process_input(connection *c);
static void close_connection(connection *c);
static void forget_address(paramd__tcp_server *tcp, const char *address);
static void discard_waiting(connection *c);

/* ---------------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------------- */

static void free_connection(connection *c)
{
    free(c->input);
    free(c->batch);
    free(c->spare);
    free(c->session.spare);
    explicit_bzero(c->session.token, sizeof c->session.token); /* issue 9: a secret */
    free(c);
}

/* Keeps buffer (capacity bytes, no longer needed) as the spare if it is
 * large and larger than the spare kept so far; frees what is not kept. */
static void keep_spare(connection *c, uint8_t *buffer, size_t capacity)
{
    if (capacity >= SPARE_MINIMUM && !c->closing && capacity > c->spare_capacity) {
        free(c->spare);
        c->spare = buffer;
        c->spare_capacity = capacity;
    } else {
        free(buffer);
    }
}

/* Lends the spare to the session for one request, and takes back what the
 * request left of it. */
static void lend_spare(connection *c)
{
    if (c->session.spare == NULL) {
        c->session.spare = c->spare;
        c->session.spare_capacity = c->spare_capacity;
        c->spare = NULL;
        c->spare_capacity = 0;
    }
}

static void take_back_spare(connection *c)
{
    uint8_t *spare = c->session.spare;
    size_t capacity = c->session.spare_capacity;
    c->session.spare = NULL;
    c->session.spare_capacity = 0;
    if (spare)
        keep_spare(c, spare, capacity);
}

static void on_handle_closed(uv_handle_t *handle)
{
    connection *c = handle->data;
    if (--c->open_handles == 0)
        free_connection(c);
}

static void close_handles(connection *c)
{
    uv_close((uv_handle_t *)&c->idle_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->request_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->handle, on_handle_closed);
}

/* Closes the connection; a request running on a worker thread finishes
 * first (after_work then finds it closing and frees what is left), and a
 * waiting push is withdrawn. */
static void close_connection(connection *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->tcp->connection_count--;
    forget_address(c->tcp, c->address);
    uv_timer_stop(&c->idle_timer);
    uv_timer_stop(&c->request_timer);
    if (c->busy)
        return; /* after_work closes the handles */
    if (c->waiting)
        discard_waiting(c);
    close_handles(c);
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

static void update_reading(connection *c);

#define LINGER_MS 2000

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buffer);

static void on_shutdown(uv_shutdown_t *request, int status)
{
    (void)request;
    (void)status; /* the connection closes on EOF or at the linger timeout */
}

static void on_linger_timeout(uv_timer_t *timer)
{
    close_connection(timer->data);
}

/* The last reply is written: shut our side down and drain (see lingering). */
static void linger_then_close(connection *c)
{
    if (c->closing || c->lingering)
        return;
    c->lingering = true;
    uv_timer_stop(&c->idle_timer);
    uv_timer_start(&c->request_timer, on_linger_timeout, LINGER_MS, 0);
    if (uv_shutdown(&c->shutdown_request, (uv_stream_t *)&c->handle, on_shutdown) != 0) {
        close_connection(c);
        return;
    }
    c->input_size = 0;
    if (!c->reading && uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) == 0)
        c->reading = true;
}

static void on_written(uv_write_t *request, int status)
{
    write_request *w = (write_request *)request;
    connection *c = w->owner;
    c->pending_write_bytes -= w->size;
    keep_spare(c, w->data, w->capacity);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        paramd__log_debug("tcp %s: write failed: %s", c->session.peer, uv_strerror(status));
        close_connection(c);
        return;
    }
    if (c->close_after_write && c->pending_write_bytes == 0) {
        linger_then_close(c);
        return;
    }
    update_reading(c);
}

/* Queues data (malloc'ed, capacity bytes; ownership passes) for writing. */
static void send_bytes(connection *c, uint8_t *data, size_t size, size_t capacity)
{
    if (c->closing || size == 0) {
        free(data);
        return;
    }
    write_request *w = malloc(sizeof *w);
    if (w == NULL) {
        free(data);
        close_connection(c);
        return;
    }
    w->owner = c;
    w->data = data;
    w->size = size;
    w->capacity = capacity;
    uv_buf_t buffer = uv_buf_init((char *)data, (unsigned)size);
    c->pending_write_bytes += size;
    int result = uv_write(&w->request, (uv_stream_t *)&c->handle, &buffer, 1, on_written);
    if (result < 0) {
        c->pending_write_bytes -= size;
        free(data);
        free(w);
        close_connection(c);
    }
}

static void flush_batch(connection *c);

/* Appends a small reply to the batch; sends a large one (or any, when the
 * batch cannot grow) on its own, after what is batched. */
static void queue_reply(connection *c, paramd__tcp_reply *reply)
{
    if (reply->size < READ_CHUNK && c->batch_size + reply->size > c->batch_capacity) {
        size_t capacity = 2 * c->batch_capacity;
        if (capacity < c->batch_size + reply->size)
            capacity = c->batch_size + reply->size;
        if (capacity < READ_CHUNK)
            capacity = READ_CHUNK;
        uint8_t *grown = realloc(c->batch, capacity);
        if (grown) {
            c->batch = grown;
            c->batch_capacity = capacity;
        }
    }
    if (reply->size >= READ_CHUNK || c->batch_size + reply->size > c->batch_capacity) {
        flush_batch(c);
        send_bytes(c, reply->data, reply->size, reply->capacity);
        reply->data = NULL;
        return;
    }
    memcpy(c->batch + c->batch_size, reply->data, reply->size);
    c->batch_size += reply->size;
    keep_spare(c, reply->data, reply->capacity);
    reply->data = NULL;
}

static void flush_batch(connection *c)
{
    if (c->batch_size == 0)
        return;
    send_bytes(c, c->batch, c->batch_size, c->batch_capacity);
    c->batch = NULL;
    c->batch_size = c->batch_capacity = 0;
}

/* An ERROR reply, then closing once it is written: for bytes that are not a
 * frame, after which the stream cannot be re-synchronised. */
static void fail_stream(connection *c, uint64_t request_id, int code, const char *why)
{
    paramd__log_info("tcp %s: %s; closing the connection", c->session.peer, why);
    paramd__tcp_reply reply;
    paramd__tcp_error_reply(request_id, code, why, &reply);
    c->close_after_write = true;
    if (reply.data) {
        queue_reply(c, &reply);
        flush_batch(c);
    }
    if (c->pending_write_bytes == 0)
        close_connection(c);
}

/* ---------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer)
{
    (void)suggested;
    connection *c = handle->data;
    if (c->waiting) {
        /* The buffer must not move: only the room it already has. */
        size_t room = c->input_capacity - c->input_size;
        *buffer = uv_buf_init((char *)c->input + c->input_size,
                              room > UINT32_MAX ? UINT32_MAX : (unsigned)room);
        return;
    }
    size_t wanted = c->input_size + READ_CHUNK;
    if (c->frame_needed > wanted)
        wanted = c->frame_needed; /* a large frame: read it in place */
    if (wanted > c->input_capacity) {
        uint8_t *grown = realloc(c->input, wanted);
        if (grown == NULL) {
            *buffer = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->input = grown;
        c->input_capacity = wanted;
    }
    size_t room = c->input_capacity - c->input_size;
    *buffer = uv_buf_init((char *)c->input + c->input_size, room > UINT32_MAX ? UINT32_MAX
                                                                             : (unsigned)room);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buffer)
{
    (void)buffer;
    connection *c = stream->data;
    if (c->lingering) {
        if (nread < 0)
            close_connection(c); /* the client closed too */
        else
            c->input_size = 0; /* dropped unread */
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF)
            paramd__log_debug("tcp %s: read failed: %s", c->session.peer, uv_strerror((int)nread));
        close_connection(c);
        return;
    }
    if (nread == 0)
        return;
    c->input_size += (size_t)nread;
    if (c->tcp->options.idle_timeout_seconds)
        uv_timer_again(&c->idle_timer);
    if (c->waiting) {
        update_reading(c); /* stops once the room is used up */
        return;
    }
    process_input(c);
}

/* Reads when the connection can take more: not closing, no request on a
 * worker thread, and not too many replies waiting to be written.  While a
 * push waits, reading goes on into the room left in the input buffer (it
 * must not move), so that a worker that goes away is noticed and its push
 * withdrawn; frames read then are handled once the push is finished. */
static void update_reading(connection *c)
{
    if (c->lingering)
        return; /* reads and drops until the end (linger_then_close) */
    bool want = !c->closing && !c->busy && !c->close_after_write &&
                c->pending_write_bytes < PARAMD__TCP_MAX_PENDING_WRITE &&
                (!c->waiting || c->input_size < c->input_capacity);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) == 0)
            c->reading = true;
        if (!c->waiting)
            process_input(c); /* frames may be waiting from before the pause */
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->handle);
        c->reading = false;
    }
}

/* ---------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------- */

static void run_work(uv_work_t *work)
{
    connection *c = work->data;
    c->work_ok = paramd__tcp_handle(&c->session, &c->work_header, c->work_payload,
                                    &c->work_reply);
}

static void begin_waiting(connection *c, paramd__tcp_waiting *waiting, size_t bytes);

static void after_work(uv_work_t *work, int status)
{
    (void)status;
    connection *c = work->data;
    c->busy = false;
    take_back_spare(c);
    c->last_frame_size = c->work_frame_size;
    if (c->work_reply.waiting) {
        begin_waiting(c, c->work_reply.waiting, c->work_frame_size);
        if (c->closing) {
            discard_waiting(c);
            close_handles(c);
        }
        return;
    }
    atomic_fetch_add(&c->tcp->requests, 1);
    if (c->closing) {
        free(c->work_reply.data);
        close_handles(c);
        return;
    }
    /* The frame is done with: drop it from the front of the input. */
    memmove(c->input, c->input + c->work_frame_size, c->input_size - c->work_frame_size);
    c->input_size -= c->work_frame_size;
    if (!c->work_ok || c->work_reply.data == NULL) {
        close_connection(c);
        return;
    }
    queue_reply(c, &c->work_reply);
    if (c->session.close_after_reply)
        c->close_after_write = true;
    flush_batch(c);
    if (c->close_after_write && c->pending_write_bytes == 0) {
        close_connection(c);
        return;
    }
    update_reading(c); /* resumes reading, and handles frames already read */
}

/* Issue 9: a frame must arrive whole within --request-timeout of its first
 * byte, so that a client sending a byte now and then (which the idle timer
 * never sees as idle) cannot hold a connection for ever. */
static void on_request_timeout(uv_timer_t *timer)
{
    connection *c = timer->data;
    if (c->busy || c->waiting || c->closing || !c->reading || c->input_size == 0)
        return;
    atomic_fetch_add(&c->tcp->cut_off, 1);
    paramd__log_info("tcp %s: a frame did not arrive whole within %u s (--request-timeout); "
                     "closing the connection",
                     c->session.peer, c->tcp->options.request_timeout_seconds);
    close_connection(c);
}

/* Starts the request timer when a partial frame waits at the front of the
 * input, and stops it when none does.  progressed: a frame was handled, so
 * the partial one, if any, is a new frame with a deadline of its own (a
 * client streaming pipelined frames always leaves part of the next one). */
static void watch_partial_frame(connection *c, bool progressed)
{
    if (c->closing || c->lingering || c->tcp->options.request_timeout_seconds == 0)
        return;
    /* While reading is paused (the client does not read its replies) the
     * client cannot finish the frame: no deadline then, a fresh one when
     * reading resumes (update_reading goes through process_input). */
    bool partial = !c->busy && !c->waiting && c->reading && c->input_size > 0;
    if (!partial || progressed)
        uv_timer_stop(&c->request_timer);
    if (partial && !uv_is_active((uv_handle_t *)&c->request_timer))
        uv_timer_start(&c->request_timer, on_request_timeout,
                       (uint64_t)c->tcp->options.request_timeout_seconds * 1000, 0);
}

/* Handles every complete frame at the front of the input, in order, until
 * one goes to a worker thread or the input runs out. */
static void process_input(connection *c)
{
    size_t consumed = 0;
    while (!c->busy && !c->waiting && !c->closing && !c->close_after_write) {
        paramd__frame_header header;
        char why[200] = "";
        long long frame = paramd__frame_parse(c->input + consumed, c->input_size - consumed,
                                              c->tcp->options.max_frame_bytes, &header, why,
                                              sizeof why);
        if (frame < 0) {
            bool have_header = c->input_size - consumed >= PARAMD_FRAME_HEADER_SIZE;
            fail_stream(c, have_header ? header.request_id : 0, (int)frame, why);
            break;
        }
        if (frame == 0) {
            c->frame_needed = c->input_size - consumed >= PARAMD_FRAME_HEADER_SIZE
                                  ? PARAMD_FRAME_HEADER_SIZE + (size_t)header.length
                                  : 0;
            break;
        }
        c->frame_needed = 0;
        const uint8_t *payload = c->input + consumed + PARAMD_FRAME_HEADER_SIZE;
        if (paramd__tcp_request_cost(&header, payload) >= PARAMD__TCP_HEAVY_BYTES) {
            /* Drop the frames handled so far, so that this one starts the
             * buffer and stays put while the worker reads it. */
            memmove(c->input, c->input + consumed, c->input_size - consumed);
            c->input_size -= consumed;
            consumed = 0;
            c->busy = true;
            uv_timer_stop(&c->request_timer); /* this frame is whole */
            c->work.data = c;
            c->work_header = header;
            c->work_payload = c->input + PARAMD_FRAME_HEADER_SIZE;
            c->work_frame_size = (size_t)frame;
            c->work_reply = (paramd__tcp_reply){NULL, 0, 0, NULL};
            flush_batch(c);
            update_reading(c);
            lend_spare(c);
            if (uv_queue_work(&c->tcp->loop, &c->work, run_work, after_work) != 0) {
                c->busy = false;
                close_connection(c);
            }
            return;
        }
        paramd__tcp_reply reply = {NULL, 0, 0, NULL};
        lend_spare(c);
        bool ok = paramd__tcp_handle(&c->session, &header, payload, &reply);
        take_back_spare(c);
        consumed += (size_t)frame;
        c->last_frame_size = (size_t)frame;
        if (reply.waiting) {
            /* This frame, and those before it, stay at the front of the
             * input until the push is finished. */
            begin_waiting(c, reply.waiting, consumed);
            return;
        }
        atomic_fetch_add(&c->tcp->requests, 1);
        if (!ok || reply.data == NULL) {
            free(reply.data);
            close_connection(c);
            break;
        }
        queue_reply(c, &reply);
        if (c->session.close_after_reply) {
            /* Issue 9: refused credentials end the connection. */
            c->close_after_write = true;
            flush_batch(c);
            if (c->pending_write_bytes == 0)
                close_connection(c);
            break;
        }
    }
    if (c->closing)
        return;
    if (consumed > 0) {
        memmove(c->input, c->input + consumed, c->input_size - consumed);
        c->input_size -= consumed;
    }
    /* A large input buffer is kept while large frames keep coming, and
     * given back once they stop. */
    if (c->input_size == 0 && c->input_capacity > 4 * READ_CHUNK &&
        c->last_frame_size < c->input_capacity / 4) {
        free(c->input);
        c->input = NULL;
        c->input_capacity = 0;
    }
    flush_batch(c);
    update_reading(c);
    watch_partial_frame(c, consumed > 0);
}

/* ---------------------------------------------------------------------------
 * Pushes that wait for other workers
 * ------------------------------------------------------------------------- */

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Called by the core, from any thread, with the model's consistency lock
 * held: only queues the connection and wakes the loop. */
void paramd__tcp_waiting_notify(paramd__push_ticket *ticket)
{
    paramd__tcp_session *session = ticket->context;
    connection *c = (connection *)(void *)((char *)session - offsetof(connection, session));
    paramd__tcp_server *tcp = c->tcp;
    pthread_mutex_lock(&tcp->ready_lock);
    if (!c->ready) {
        c->ready = true;
        c->ready_next = tcp->ready;
        tcp->ready = c;
    }
    if (tcp->ready_open)
        uv_async_send(&tcp->ready_signal);
    pthread_mutex_unlock(&tcp->ready_lock);
}

/* Takes the connection off the ready list, if it is on it. */
static void unready(connection *c)
{
    paramd__tcp_server *tcp = c->tcp;
    pthread_mutex_lock(&tcp->ready_lock);
    if (c->ready) {
        for (connection **link = &tcp->ready; *link; link = &(*link)->ready_next)
            if (*link == c) {
                *link = c->ready_next;
                break;
            }
        c->ready = false;
    }
    pthread_mutex_unlock(&tcp->ready_lock);
}

/* Drops the first `bytes` of the input (handled frames). */
static void drop_input(connection *c, size_t bytes)
{
    memmove(c->input, c->input + bytes, c->input_size - bytes);
    c->input_size -= bytes;
}

/* Replies to the done waiting push and goes on with the connection. */
static void finish_waiting(connection *c)
{
    paramd__tcp_waiting *waiting = c->waiting;
    c->waiting = NULL;
    c->ready_early = false;
    uv_timer_stop(&c->deadline_timer);
    paramd__tcp_reply reply = {NULL, 0, 0, NULL};
    lend_spare(c);
    bool ok = paramd__tcp_waiting_finish(&c->session, waiting, &reply);
    take_back_spare(c);
    atomic_fetch_add(&c->tcp->requests, 1);
    drop_input(c, c->waiting_bytes);
    if (!ok || reply.data == NULL) {
        free(reply.data);
        close_connection(c);
        return;
    }
    queue_reply(c, &reply);
    /* Frames read while it waited come next (process_input also resumes
     * reading and writes the replies). */
    process_input(c);
}

/* A closing connection's waiting push: withdrawn, and its reply dropped. */
static void discard_waiting(connection *c)
{
    paramd__tcp_waiting *waiting = c->waiting;
    c->waiting = NULL;
    uv_timer_stop(&c->deadline_timer);
    paramd__tcp_waiting_withdraw(&c->session, waiting);
    unready(c);
    paramd__tcp_reply reply = {NULL, 0, 0, NULL};
    paramd__tcp_waiting_finish(&c->session, waiting, &reply);
    free(reply.data);
}

static void on_deadline(uv_timer_t *timer)
{
    connection *c = timer->data;
    if (c->waiting == NULL)
        return;
    /* Done already if the core completed it just now (then it is on the
     * ready list, and the reply is its result); else a timeout. */
    paramd__tcp_waiting_expire(&c->session, c->waiting);
    unready(c);
    finish_waiting(c);
}

/* The connection's request is a push that waits: hold the connection
 * until the core completes it or its deadline passes. */
static void begin_waiting(connection *c, paramd__tcp_waiting *waiting, size_t bytes)
{
    c->waiting = waiting;
    c->waiting_bytes = bytes;
    if (c->closing)
        return; /* the caller discards it */
    uv_timer_stop(&c->request_timer); /* its frame is whole */
    flush_batch(c);   /* the replies before it go out now */
    update_reading(c); /* reads on only into the room the input buffer has */
    if (c->ready_early) {
        finish_waiting(c);
        return;
    }
    double remaining = paramd__tcp_waiting_deadline(waiting) - monotonic_seconds();
    uint64_t milliseconds = remaining > 0 ? (uint64_t)ceil(remaining * 1000.0) : 0;
    uv_timer_start(&c->deadline_timer, on_deadline, milliseconds, 0);
}

/* The loop's side of paramd__tcp_waiting_notify. */
static void on_ready(uv_async_t *async)
{
    paramd__tcp_server *tcp = async->data;
    for (;;) {
        pthread_mutex_lock(&tcp->ready_lock);
        connection *c = tcp->ready;
        if (c) {
            tcp->ready = c->ready_next;
            c->ready = false;
        }
        pthread_mutex_unlock(&tcp->ready_lock);
        if (c == NULL)
            break;
        if (c->waiting)
            finish_waiting(c);
        else
            c->ready_early = true; /* its handler is still on a worker thread */
    }
}

/* ---------------------------------------------------------------------------
 * Accepting
 * ------------------------------------------------------------------------- */

static void on_idle_timeout(uv_timer_t *timer)
{
    connection *c = timer->data;
    if (c->busy || c->waiting)
        return; /* a request is running: the connection is not idle */
    paramd__log_debug("tcp %s: idle for %u s, closing", c->session.peer,
                      c->tcp->options.idle_timeout_seconds);
    close_connection(c);
}

/* The peer's address without its port into address ("" if unknown; the
 * per-address count's key) and, unless peer is NULL, "address:port" for
 * logs into peer ("?" if unknown). */
static void describe_peer(uv_tcp_t *handle, char *address, size_t address_size, char *peer,
                          size_t peer_size)
{
    struct sockaddr_storage name;
    int length = sizeof name;
    address[0] = '\0';
    int port = 0;
    if (uv_tcp_getpeername(handle, (struct sockaddr *)&name, &length) == 0) {
        if (name.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&name, address, address_size);
            port = ntohs(((struct sockaddr_in *)&name)->sin_port);
        } else if (name.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&name, address, address_size);
            port = ntohs(((struct sockaddr_in6 *)&name)->sin6_port);
        }
    }
    if (peer)
        snprintf(peer, peer_size, address[0] ? "%s:%d" : "?", address, port);
}

static void on_refused_closed(uv_handle_t *handle)
{
    free(handle);
}

static paramd__tcp_address_count *find_address(paramd__tcp_server *tcp, const char *address)
{
    for (size_t i = 0; i < tcp->address_count; i++)
        if (strcmp(tcp->addresses[i].address, address) == 0)
            return &tcp->addresses[i];
    return NULL;
}

/* Counts one more connection from address; false when that would pass
 * --max-connections-per-ip (or memory ran out). */
static bool count_address(paramd__tcp_server *tcp, const char *address)
{
    if (tcp->options.per_ip_connection_limit == 0 || address[0] == '\0')
        return true;
    paramd__tcp_address_count *entry = find_address(tcp, address);
    if (entry && entry->count >= tcp->options.per_ip_connection_limit)
        return false;
    if (entry == NULL) {
        if (tcp->address_count == tcp->address_capacity) {
            size_t grown = tcp->address_capacity ? 2 * tcp->address_capacity : 16;
            paramd__tcp_address_count *addresses =
                realloc(tcp->addresses, grown * sizeof *addresses);
            if (addresses == NULL)
                return false;
            tcp->addresses = addresses;
            tcp->address_capacity = grown;
        }
        entry = &tcp->addresses[tcp->address_count++];
        snprintf(entry->address, sizeof entry->address, "%s", address);
        entry->count = 0;
    }
    entry->count++;
    return true;
}

static void forget_address(paramd__tcp_server *tcp, const char *address)
{
    if (tcp->options.per_ip_connection_limit == 0 || address[0] == '\0')
        return;
    paramd__tcp_address_count *entry = find_address(tcp, address);
    if (entry && --entry->count == 0)
        *entry = tcp->addresses[--tcp->address_count];
}

/* Accepts a connection only to close it at once, so that the client sees a
 * clear end rather than a hanging connect. */
static void refuse(paramd__tcp_server *tcp, uv_stream_t *listener, const char *why)
{
    uv_tcp_t *refused = malloc(sizeof *refused);
    if (refused && uv_tcp_init(&tcp->loop, refused) == 0 &&
        uv_accept(listener, (uv_stream_t *)refused) == 0) {
        atomic_fetch_add(&tcp->refused_connections, 1);
        char address[46];
        describe_peer(refused, address, sizeof address, NULL, 0);
        paramd__log_warn("tcp: connection from %s refused: %s", address[0] ? address : "?",
                         why);
        uv_close((uv_handle_t *)refused, on_refused_closed);
    } else {
        free(refused);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    paramd__tcp_server *tcp = listener->data;
    if (status < 0)
        return;
    if (tcp->connection_count >= tcp->options.connection_limit) {
        char why[96];
        snprintf(why, sizeof why, "the limit of %u connections is reached (--max-connections)",
                 tcp->options.connection_limit);
        refuse(tcp, listener, why);
        return;
    }
    connection *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->tcp = tcp;
    c->session.tcp = tcp;
    if (uv_tcp_init(&tcp->loop, &c->handle) != 0) {
        free(c);
        return;
    }
    c->handle.data = c;
    c->open_handles = 1;
    if (uv_accept(listener, (uv_stream_t *)&c->handle) != 0) {
        uv_close((uv_handle_t *)&c->handle, on_handle_closed);
        return;
    }
    uv_timer_init(&tcp->loop, &c->idle_timer);
    c->idle_timer.data = c;
    uv_timer_init(&tcp->loop, &c->deadline_timer);
    c->deadline_timer.data = c;
    uv_timer_init(&tcp->loop, &c->request_timer);
    c->request_timer.data = c;
    c->open_handles = 4;
    describe_peer(&c->handle, c->address, sizeof c->address, c->session.peer,
                  sizeof c->session.peer);
    if (!count_address(tcp, c->address)) {
        /* Issue 9: --max-connections-per-ip.  Closed before it counts. */
        atomic_fetch_add(&tcp->refused_connections, 1);
        paramd__log_warn("tcp: connection from %s refused: it has %u connections already "
                         "(--max-connections-per-ip)",
                         c->address, tcp->options.per_ip_connection_limit);
        c->closing = true;
        close_handles(c);
        return;
    }
    tcp->connection_count++;
    uv_tcp_nodelay(&c->handle, 1);
    if (tcp->options.idle_timeout_seconds) {
        uint64_t timeout = (uint64_t)tcp->options.idle_timeout_seconds * 1000;
        uv_timer_start(&c->idle_timer, on_idle_timeout, timeout, timeout);
    }
    paramd__log_debug("tcp %s: connected", c->session.peer);
    update_reading(c);
}

/* ---------------------------------------------------------------------------
 * Server thread
 * ------------------------------------------------------------------------- */

static void close_every_handle(uv_handle_t *handle, void *argument)
{
    (void)argument;
    if (uv_is_closing(handle))
        return;
    if (handle->type == UV_TCP && handle->data && handle->data != handle->loop->data) {
        close_connection(handle->data); /* a connection: closes its timer too */
        return;
    }
    if (handle->type == UV_TIMER)
        return; /* a connection's timer, closed with it */
    uv_close(handle, NULL);
}

static void on_stop(uv_async_t *async)
{
    paramd__tcp_server *tcp = async->data;
    pthread_mutex_lock(&tcp->ready_lock);
    tcp->ready_open = false; /* ready_signal is closed below */
    pthread_mutex_unlock(&tcp->ready_lock);
    uv_walk(&tcp->loop, close_every_handle, NULL);
}

static void *serve(void *argument)
{
    paramd__tcp_server *tcp = argument;
    uv_run(&tcp->loop, UV_RUN_DEFAULT);
    return NULL;
}

int paramd__tcp_start(paramd__tcp_server *tcp, paramd__server *server,
                      const paramd__tcp_options *options, paramd__error *error)
{
    memset(tcp, 0, sizeof *tcp);
    tcp->server = server;
    tcp->options = *options;
    if (tcp->options.max_frame_bytes == 0)
        tcp->options.max_frame_bytes = UINT32_MAX;
    atomic_init(&tcp->requests, 0);
    atomic_init(&tcp->refused_connections, 0);
    atomic_init(&tcp->cut_off, 0);
    if (uv_loop_init(&tcp->loop) != 0)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "--tcp: cannot start an event loop");
    tcp->loop.data = tcp;
    struct sockaddr_storage address;
    if (uv_ip4_addr(options->host, options->port, (struct sockaddr_in *)&address) != 0 &&
        uv_ip6_addr(options->host, options->port, (struct sockaddr_in6 *)&address) != 0) {
        uv_loop_close(&tcp->loop);
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "--tcp: \"%s\" is not a numeric IPv4 or IPv6 address",
                                 options->host);
    }
    uv_tcp_init(&tcp->loop, &tcp->listener);
    tcp->listener.data = tcp;
    int result = uv_tcp_bind(&tcp->listener, (const struct sockaddr *)&address, 0);
    if (result == 0)
        result = uv_listen((uv_stream_t *)&tcp->listener, 511, on_connection);
    if (result != 0) {
        uv_close((uv_handle_t *)&tcp->listener, NULL);
        uv_run(&tcp->loop, UV_RUN_DEFAULT);
        uv_loop_close(&tcp->loop);
        return paramd__error_set(error, PARAMD_E_UNAVAILABLE, "--tcp: cannot listen on %s:%u: %s",
                                 options->host, options->port, uv_strerror(result));
    }
    struct sockaddr_storage bound;
    int length = sizeof bound;
    tcp->bound_port = options->port;
    if (uv_tcp_getsockname(&tcp->listener, (struct sockaddr *)&bound, &length) == 0)
        tcp->bound_port = ntohs(bound.ss_family == AF_INET6
                                    ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                    : ((struct sockaddr_in *)&bound)->sin_port);
    uv_async_init(&tcp->loop, &tcp->stop_signal, on_stop);
    tcp->stop_signal.data = tcp;
    pthread_mutex_init(&tcp->ready_lock, NULL);
    uv_async_init(&tcp->loop, &tcp->ready_signal, on_ready);
    tcp->ready_signal.data = tcp;
    tcp->ready_open = true;
    if (pthread_create(&tcp->thread, NULL, serve, tcp) != 0) {
        uv_close((uv_handle_t *)&tcp->listener, NULL);
        uv_close((uv_handle_t *)&tcp->stop_signal, NULL);
        uv_close((uv_handle_t *)&tcp->ready_signal, NULL);
        pthread_mutex_destroy(&tcp->ready_lock);
        uv_run(&tcp->loop, UV_RUN_DEFAULT);
        uv_loop_close(&tcp->loop);
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "--tcp: cannot start its thread");
    }
    tcp->running = true;
    return PARAMD_OK;
}

void paramd__tcp_stop(paramd__tcp_server *tcp)
{
    if (!tcp->running)
        return;
    uv_async_send(&tcp->stop_signal);
    pthread_join(tcp->thread, NULL);
    uv_loop_close(&tcp->loop);
    pthread_mutex_destroy(&tcp->ready_lock);
    free(tcp->addresses);
    tcp->addresses = NULL;
    tcp->running = false;
}
