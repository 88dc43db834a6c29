/*
 * wire.c - the client library's transport: connecting with a timeout,
 * HELLO, noticing a connection the server closed, and the exchange engine
 * that pipelines requests and decodes their replies.
 *
 * The socket is non-blocking once connected, and every wait is a poll()
 * bounded by the call's deadline, so no call can hang.  The exchange writes
 * and reads at the same time: the server stops reading a connection whose
 * replies are not being read (64 MiB queued), so a client that wrote a
 * whole batch before reading could deadlock with it.  Any failure of the
 * transport (a timeout, a reset, a malformed reply) closes the connection,
 * because replies still in flight could no longer be matched to requests;
 * the next call connects again.
 */
#define _DEFAULT_SOURCE
#include "internal.h"

#include "half.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (256u * 1024u)   /* least free space offered to one recv() */
#define LARGE_INPUT (16u << 20)     /* an input buffer above this is freed once empty */

/* ---------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------- */

/* Milliseconds left until the deadline, at least 0. */
static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - paramd__now_ms();
    if (left <= 0)
        return 0;
    return left > 1000000000 ? 1000000000 : (int)left;
}

/* ---------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------- */

void paramd__wire_disconnect(paramd_client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    client->fd = -1;
    client->server_closing = false;
    client->server_name[0] = '\0';
    client->input_start = client->input_end = 0;
    paramd__cache_clear(client);
}

/* One TCP connect to one address, in at most timeout_ms.  Returns the
 * socket, or -1 with errno (ETIMEDOUT when the time ran out). */
static int connect_address(const struct addrinfo *address, int timeout_ms)
{
    int fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    address->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, address->ai_addr, address->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    int64_t deadline = paramd__deadline(timeout_ms);
    for (;;) {
        struct pollfd wait = {.fd = fd, .events = POLLOUT};
        int ready = poll(&wait, 1, remaining_ms(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            int saved = ready == 0 ? ETIMEDOUT : errno;
            close(fd);
            errno = saved;
            return -1;
        }
        int failure = 0;
        socklen_t length = sizeof failure;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) != 0)
            failure = errno;
        if (failure != 0) {
            close(fd);
            errno = failure;
            return -1;
        }
        return fd;
    }
}

static void encode_hello(paramd__writer *writer, const void *context)
{
    const paramd__pending *pending = ((const void *const *)context)[0];
    const paramd_client *client = ((const void *const *)context)[1];
    paramd__encode_hello(writer, pending->request_id, PARAMD_PROTOCOL_VERSION,
                         PARAMD_PROTOCOL_VERSION, client->token, client->client_name);
}

int paramd__wire_connect(paramd_client *client, int64_t deadline)
{
    paramd__wire_disconnect(client);
    char port[16];
    snprintf(port, sizeof port, "%d", client->port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *addresses = NULL;
    int resolved = getaddrinfo(client->host, port, &hints, &addresses);
    if (resolved != 0)
        return paramd__fail(client, PARAMD_E_CONNECT, "connect to %s:%d: cannot resolve %s: %s",
                            client->host, client->port, client->host, gai_strerror(resolved));
    int64_t connect_deadline = paramd__deadline(client->connect_timeout_ms);
    if (connect_deadline > deadline)
        connect_deadline = deadline;
    int fd = -1, failure = ETIMEDOUT;
    for (const struct addrinfo *a = addresses; a && fd < 0; a = a->ai_next) {
        int left = remaining_ms(connect_deadline);
        if (left == 0)
            break;
        fd = connect_address(a, left);
        if (fd < 0)
            failure = errno;
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        if (failure == ETIMEDOUT)
            return paramd__fail(client, PARAMD_E_CONNECT,
                                "connect to %s:%d: no answer within %d ms", client->host,
                                client->port, client->connect_timeout_ms);
        return paramd__fail(client, PARAMD_E_CONNECT, "connect to %s:%d: %s", client->host,
                            client->port, strerror(failure));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client->fd = fd;
    client->connection_generation++;

    paramd__pending hello;
    paramd__pending_init(&hello, PARAMD_OP_HELLO, paramd__take_id(client));
    const void *context[2] = {&hello, client};
    int64_t hello_deadline = paramd__deadline(client->connect_timeout_ms);
    if (hello_deadline > deadline)
        hello_deadline = deadline;
    int result = paramd__wire_call(client, encode_hello, context, &hello, hello_deadline);
    if (result == PARAMD_OK && hello.status != PARAMD_OK)
        result = paramd__fail(client, hello.status, "HELLO to %s:%d: %s", client->host,
                              client->port, hello.message ? hello.message : "refused");
    else if (result != PARAMD_OK)
        result = paramd__fail(client, result, "HELLO to %s:%d: %s", client->host, client->port,
                              hello.message ? hello.message : paramd_strerror(result));
    paramd__pending_clear(&hello);
    if (result != PARAMD_OK) {
        paramd__wire_disconnect(client);
        return result;
    }
    return paramd__succeed(client);
}

/* True when the server has closed (or reset) an idle connection, or sent
 * bytes nobody asked for: either way the connection cannot be used. */
static bool connection_dead(int fd)
{
    struct pollfd check = {.fd = fd, .events = POLLIN};
    if (poll(&check, 1, 0) <= 0)
        return false;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    return true; /* end of stream, an error, or stray bytes */
}

int paramd__wire_ensure(paramd_client *client, int64_t deadline)
{
    if (client->fd >= 0 && (client->server_closing || connection_dead(client->fd)))
        paramd__wire_disconnect(client);
    if (client->fd >= 0)
        return PARAMD_OK;
    return paramd__wire_connect(client, deadline);
}

/* ---------------------------------------------------------------------------
 * Decoding replies into their pending requests
 * ------------------------------------------------------------------------- */

static char *copy_text(const char *data, size_t length)
{
    char *text = malloc(length + 1);
    if (text) {
        if (length)
            memcpy(text, data, length);
        text[length] = '\0';
    }
    return text;
}

/* Widens a reply item's data (count values of dtype) into float32. */
static void widen_into(float *out, const uint8_t *data, uint8_t dtype, uint64_t count)
{
    if (dtype == PARAMD_DTYPE_FLOAT16)
        paramd_float16_decode(data, out, (size_t)count);
    else if (dtype == PARAMD_DTYPE_BFLOAT16)
        paramd_bfloat16_decode(data, out, (size_t)count);
    else if (count)
        memcpy(out, data, (size_t)count * sizeof(float));
}

/* Checks the items of a PUSHPULL or PULL reply against what the request
 * asked for, then writes their data where the request said.  Every item is
 * checked before any is written. */
static int take_items(paramd__pending *pending, paramd__item_cursor items, char *why,
                      size_t why_size)
{
    if (items.remaining != pending->item_count) {
        snprintf(why, why_size, "reply: %u items for a request of %u", items.remaining,
                 pending->item_count);
        return PARAMD_E_BAD_FRAME;
    }
    paramd__item_cursor check = items;
    paramd__wire_item item;
    for (uint32_t i = 0; paramd__next_item(&check, &item); i++) {
        const paramd__sink_item *sink = &pending->items[i];
        if (item.tensor_id != sink->tensor_id || item.dtype != sink->dtype ||
            item.offset != sink->offset || item.count != sink->count) {
            snprintf(why, why_size,
                     "reply item %u: tensor %u, dtype %u, range %llu+%llu; the request asked "
                     "for tensor %u, dtype %u, range %llu+%llu",
                     i, item.tensor_id, item.dtype, (unsigned long long)item.offset,
                     (unsigned long long)item.count, sink->tensor_id, sink->dtype,
                     (unsigned long long)sink->offset, (unsigned long long)sink->count);
            return PARAMD_E_BAD_FRAME;
        }
    }
    for (uint32_t i = 0; paramd__next_item(&items, &item); i++)
        if (pending->items[i].weights)
            widen_into(pending->items[i].weights, item.data, item.dtype, item.count);
    return PARAMD_OK;
}

/* Handles one reply frame.  Returns PARAMD_OK when the frame answered the
 * request (successfully or with an ERROR), or a transport error (with why)
 * when the frame is not a valid reply to it. */
static int take_reply(paramd_client *client, paramd__pending *pending,
                      const paramd__frame_header *header, const uint8_t *payload, char *why,
                      size_t why_size)
{
    if (header->opcode == PARAMD_OP_ERROR) {
        paramd__error_reply error;
        if (paramd__decode_error_reply(payload, header->length, &error, why, why_size) !=
            PARAMD_OK)
            return PARAMD_E_BAD_FRAME;
        if (header->request_id != pending->request_id) {
            /* The server could not delimit a frame and closes the connection. */
            snprintf(why, why_size, "the server refused the connection: %.*s",
                     (int)error.message.length, error.message.data);
            return PARAMD_E_CONNECTION;
        }
        pending->status = error.code < 0 ? error.code : PARAMD_E_INTERNAL;
        if (pending->status == PARAMD_E_UNAUTHORIZED)
            client->server_closing = true; /* PROTOCOL.md: the server closes after it */
        pending->shard_map_version = error.shard_map_version;
        pending->message = copy_text(error.message.data, error.message.length);
        pending->answered = true;
        return PARAMD_OK;
    }
    if (header->request_id != pending->request_id ||
        header->opcode != (pending->opcode | PARAMD_OP_REPLY)) {
        snprintf(why, why_size,
                 "reply: opcode 0x%02x for request %llu; expected 0x%02x for request %llu",
                 header->opcode, (unsigned long long)header->request_id,
                 pending->opcode | PARAMD_OP_REPLY, (unsigned long long)pending->request_id);
        return PARAMD_E_BAD_FRAME;
    }
    int result = PARAMD_OK;
    switch (pending->opcode) {
    case PARAMD_OP_HELLO: {
        paramd__hello_reply hello;
        result = paramd__decode_hello_reply(payload, header->length, &hello, why, why_size);
        if (result == PARAMD_OK) {
            size_t length = hello.server.length < sizeof client->server_name - 1
                                ? hello.server.length
                                : sizeof client->server_name - 1;
            memcpy(client->server_name, hello.server.data, length);
            client->server_name[length] = '\0';
            client->server_max_frame = hello.max_frame_size;
        }
        break;
    }
    case PARAMD_OP_LOOKUP: {
        paramd__lookup_reply lookup;
        result = paramd__decode_lookup_reply(payload, header->length, &lookup, why, why_size);
        if (result == PARAMD_OK) {
            pending->lookup = paramd__cache_entry_from_lookup(pending->model_name, &lookup);
            if (pending->lookup == NULL) {
                snprintf(why, why_size, "out of memory for a LOOKUP reply");
                return PARAMD_E_NO_MEMORY;
            }
        }
        break;
    }
    case PARAMD_OP_PUSH:
    case PARAMD_OP_PUSHPULL: {
        paramd__push_reply push;
        result = paramd__decode_push_reply(payload, header->length, &push, why, why_size);
        if (result != PARAMD_OK)
            break;
        pending->push.step = push.step;
        pending->push.lr = push.lr;
        pending->push.grad_norm = push.grad_norm;
        pending->push.loss_scale = push.loss_scale;
        pending->push.flags = push.flags;
        if (pending->opcode == PARAMD_OP_PUSHPULL)
            result = take_items(pending, push.items, why, why_size);
        else if (push.items.remaining != 0) {
            snprintf(why, why_size, "PUSH reply: %u items, expected none", push.items.remaining);
            result = PARAMD_E_BAD_FRAME;
        }
        break;
    }
    case PARAMD_OP_PULL: {
        paramd__pull_reply pull;
        result = paramd__decode_pull_reply(payload, header->length, &pull, why, why_size);
        if (result == PARAMD_OK) {
            pending->push.step = pull.step;
            result = take_items(pending, pull.items, why, why_size);
        }
        break;
    }
    case PARAMD_OP_DELETE:
        if (header->length != 0) {
            snprintf(why, why_size, "DELETE reply: %u payload bytes, expected none",
                     header->length);
            result = PARAMD_E_BAD_FRAME;
        }
        break;
    default: { /* STATS, LIST, CREATE: a JSON document */
        paramd__json_reply json;
        result = paramd__decode_json_reply(payload, header->length, &json, why, why_size);
        if (result == PARAMD_OK) {
            free(pending->json);
            pending->json = copy_text(json.json, json.length);
            if (pending->json == NULL) {
                snprintf(why, why_size, "out of memory for a %u-byte JSON reply", json.length);
                return PARAMD_E_NO_MEMORY;
            }
        }
        break;
    }
    }
    if (result != PARAMD_OK)
        return result;
    pending->status = PARAMD_OK;
    pending->answered = true;
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * The exchange engine
 * ------------------------------------------------------------------------- */

/* Room in the input buffer for `needed` bytes from input_start on (the
 * whole frame at the front, once its header is in), or, when `needed` is
 * 0, for READ_CHUNK more bytes.  Compacts before it grows. */
static bool make_room(paramd_client *client, size_t needed)
{
    size_t unread = client->input_end - client->input_start;
    size_t want = needed > unread ? needed : unread + READ_CHUNK;
    if (client->input_capacity - client->input_start >= want)
        return true;
    if (client->input_start > 0) {
        memmove(client->input, client->input + client->input_start, unread);
        client->input_start = 0;
        client->input_end = unread;
        if (client->input_capacity >= want)
            return true;
    }
    size_t capacity = client->input_capacity ? client->input_capacity : READ_CHUNK;
    while (capacity < want)
        capacity *= 2;
    uint8_t *grown = realloc(client->input, capacity);
    if (grown == NULL)
        return false;
    client->input = grown;
    client->input_capacity = capacity;
    return true;
}

/* Fails the exchange: closes the connection and gives every request without
 * a reply the error. */
static int exchange_failed(paramd_client *client, paramd__pending *pending, size_t count,
                           int code, const char *why)
{
    for (size_t i = 0; i < count; i++) {
        if (pending[i].answered)
            continue;
        pending[i].answered = true;
        pending[i].status = code;
        free(pending[i].message);
        pending[i].message = copy_text(why, strlen(why));
    }
    paramd__wire_disconnect(client);
    return paramd__fail(client, code, "%s", why);
}

/* Handles every complete frame in the input buffer.  Returns PARAMD_OK or
 * a transport error (with why); *answered counts the replies so far. */
static int take_frames(paramd_client *client, paramd__pending *pending, size_t count,
                       size_t *answered, size_t *needed, char *why, size_t why_size)
{
    uint64_t limit = client->max_reply_bytes ? client->max_reply_bytes : UINT32_MAX;
    *needed = 0;
    while (*answered < count) {
        paramd__frame_header header;
        const uint8_t *start = client->input + client->input_start;
        size_t available = client->input_end - client->input_start;
        long long size = paramd__frame_parse(start, available, limit, &header, why, why_size);
        if (size < 0)
            return (int)size;
        if (size == 0) {
            if (available >= PARAMD_FRAME_HEADER_SIZE)
                *needed = PARAMD_FRAME_HEADER_SIZE + (size_t)header.length;
            return PARAMD_OK;
        }
        int result = take_reply(client, &pending[*answered], &header,
                                start + PARAMD_FRAME_HEADER_SIZE, why, why_size);
        if (result != PARAMD_OK)
            return result;
        client->input_start += (size_t)size;
        (*answered)++;
    }
    if (client->input_start == client->input_end) {
        client->input_start = client->input_end = 0;
        if (client->input_capacity > LARGE_INPUT) { /* after a large reply: give it back */
            free(client->input);
            client->input = NULL;
            client->input_capacity = 0;
        }
    }
    return PARAMD_OK;
}

/* Advances one exchange after poll said its socket is ready: writes what
 * the socket takes and reads what has arrived.  Returns PARAMD_OK, or a
 * transport error with why. */
static int exchange_io(paramd__exchange *e, short revents, char *why, size_t why_size)
{
    paramd_client *client = e->client;
    if ((revents & POLLOUT) && e->written < e->size) {
        ssize_t n = send(client->fd, e->out + e->written, e->size - e->written, MSG_NOSIGNAL);
        if (n > 0) {
            e->written += (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(why, why_size, "send to %s:%d: %s (%zu of %zu requests answered)",
                     client->host, client->port, strerror(errno), e->answered, e->count);
            return PARAMD_E_CONNECTION;
        }
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!make_room(client, e->needed)) {
            snprintf(why, why_size, "out of memory for a reply");
            return PARAMD_E_NO_MEMORY;
        }
        ssize_t n = recv(client->fd, client->input + client->input_end,
                         client->input_capacity - client->input_end, 0);
        if (n > 0) {
            client->input_end += (size_t)n;
        } else if (n == 0) {
            snprintf(why, why_size, "%s:%d closed the connection (%zu of %zu requests answered)",
                     client->host, client->port, e->answered, e->count);
            return PARAMD_E_CONNECTION;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(why, why_size, "recv from %s:%d: %s (%zu of %zu requests answered)",
                     client->host, client->port, strerror(errno), e->answered, e->count);
            return PARAMD_E_CONNECTION;
        }
    }
    return PARAMD_OK;
}

/* Ends one exchange with a transport error (see exchange_failed). */
static void exchange_end(paramd__exchange *e, int code, const char *why)
{
    e->result = exchange_failed(e->client, e->pending, e->count, code, why);
    e->done = true;
}

int paramd__wire_exchange_many(paramd__exchange *exchanges, size_t count, int64_t deadline)
{
    char why[PARAMD__MESSAGE_SIZE];
    struct pollfd small[8], *events = count <= 8 ? small : malloc(count * sizeof *events);
    size_t *active = malloc((count ? count : 1) * sizeof *active);
    for (size_t i = 0; i < count; i++) {
        paramd__exchange *e = &exchanges[i];
        e->written = e->answered = e->needed = 0;
        e->result = PARAMD_OK;
        e->done = false;
        if (events == NULL || active == NULL)
            exchange_end(e, PARAMD_E_NO_MEMORY, "out of memory for an exchange");
        else if (e->client->fd < 0)
            exchange_end(e, PARAMD_E_CONNECTION, "not connected");
    }
    for (;;) {
        size_t waiting = 0;
        for (size_t i = 0; i < count; i++) {
            paramd__exchange *e = &exchanges[i];
            if (e->done)
                continue;
            int result = take_frames(e->client, e->pending, e->count, &e->answered, &e->needed,
                                     why, sizeof why);
            if (result != PARAMD_OK) {
                exchange_end(e, result, why);
            } else if (e->answered == e->count) {
                if (e->written < e->size) /* replies without their requests: a confused server */
                    exchange_end(e, PARAMD_E_BAD_FRAME,
                                 "the server answered requests it was not sent yet");
                e->done = true;
            } else {
                active[waiting++] = i;
            }
        }
        if (waiting == 0)
            break;
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            for (size_t k = 0; k < waiting; k++) {
                paramd__exchange *e = &exchanges[active[k]];
                snprintf(why, sizeof why,
                         "no reply from %s:%d in time (%zu of %zu requests answered, timeout "
                         "%d ms)",
                         e->client->host, e->client->port, e->answered, e->count,
                         e->client->timeout_ms);
                exchange_end(e, PARAMD_E_TIMEOUT, why);
            }
            break;
        }
        for (size_t k = 0; k < waiting; k++) {
            const paramd__exchange *e = &exchanges[active[k]];
            events[k] = (struct pollfd){.fd = e->client->fd, .events = POLLIN};
            if (e->written < e->size)
                events[k].events |= POLLOUT;
        }
        int ready = poll(events, (nfds_t)waiting, wait);
        if (ready < 0 && errno != EINTR) {
            snprintf(why, sizeof why, "poll: %s", strerror(errno));
            for (size_t k = 0; k < waiting; k++)
                exchange_end(&exchanges[active[k]], PARAMD_E_CONNECTION, why);
            break;
        }
        for (size_t k = 0; ready > 0 && k < waiting; k++) {
            if (events[k].revents == 0)
                continue;
            paramd__exchange *e = &exchanges[active[k]];
            int result = exchange_io(e, events[k].revents, why, sizeof why);
            if (result != PARAMD_OK)
                exchange_end(e, result, why);
        }
    }
    if (events != small)
        free(events);
    free(active);
    for (size_t i = 0; i < count; i++)
        if (exchanges[i].result != PARAMD_OK)
            return exchanges[i].result;
    return PARAMD_OK;
}

int paramd__wire_exchange(paramd_client *client, const uint8_t *out, size_t size,
                          paramd__pending *pending, size_t count, int64_t deadline)
{
    paramd__exchange exchange = {.client = client, .out = out, .size = size, .pending = pending,
                                 .count = count};
    return paramd__wire_exchange_many(&exchange, 1, deadline);
}

int paramd__wire_call(paramd_client *client, paramd__encode_fn encode, const void *context,
                      paramd__pending *pending, int64_t deadline)
{
    client->scratch.size = 0;
    int result = paramd__buffer_encode(client, &client->scratch, encode, context);
    if (result != PARAMD_OK)
        return result;
    return paramd__wire_exchange(client, client->scratch.data, client->scratch.size, pending, 1,
                                 deadline);
}
