/*
 * internal.h - what the files of the C client library share: the handle,
 * the id cache, requests in flight, and the transport.  Nothing here is
 * public; the names are paramd__ and the shared library hides them
 * (-fvisibility=hidden).
 *
 * The files:
 *   client.c  handles, errors, the control plane (create, describe, list,
 *             delete, stats), tensor info;
 *   wire.c    sockets: connect with a timeout, HELLO, the liveness check and
 *             reconnection, and the exchange engine that writes frames and
 *             reads their replies at the same time, and decodes replies;
 *   cache.c   model and tensor ids from LOOKUP;
 *   data.c    push, pushpull, pull and pipelined batches.
 * Every frame is encoded and decoded by proto/frame.c; this library has no
 * codec of its own.
 */
#ifndef PARAMD_CLIENT_INTERNAL_H
#define PARAMD_CLIENT_INTERNAL_H

#include "paramd/client.h"

#include "frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMD__CLIENT_NAME "libparamd " PARAMD_VERSION_STRING
#define PARAMD__MESSAGE_SIZE 1024

/* ---------------------------------------------------------------------------
 * The id cache
 * ------------------------------------------------------------------------- */

typedef struct paramd__tensor_entry {
    char *name;                 /* owned */
    uint32_t id;
    uint8_t dimension_count;
    uint64_t shape[8];
    uint64_t element_count;
} paramd__tensor_entry;

/* One model as a LOOKUP of all its tensors described it. */
typedef struct paramd__model_entry {
    char *name;                          /* owned */
    uint32_t id;
    uint32_t tensor_count;
    paramd__tensor_entry *tensors;       /* tensor_count, in creation order */
    uint32_t *slots;                     /* open-addressed name hash: index + 1, 0 is empty */
    size_t slot_count;                   /* a power of two, at least twice tensor_count */
    struct paramd__model_entry *next;
} paramd__model_entry;

/* The model's entry from the cache, or a LOOKUP (which caches it).
 * *from_cache says which.  Fails with the LOOKUP's error. */
int paramd__cache_model(paramd_client *client, const char *model, int64_t deadline,
                        paramd__model_entry **entry, bool *from_cache);

/* The tensor of that name, or NULL. */
const paramd__tensor_entry *paramd__cache_tensor(const paramd__model_entry *model,
                                                 const char *name);

/* Builds an entry from a decoded LOOKUP reply (NULL when out of memory). */
paramd__model_entry *paramd__cache_entry_from_lookup(const char *model,
                                                     const paramd__lookup_reply *reply);

void paramd__cache_entry_free(paramd__model_entry *entry);

/* Drops models from the cache: the one with this id, this name, or all. */
void paramd__cache_drop_id(paramd_client *client, uint32_t model_id);
void paramd__cache_drop_name(paramd_client *client, const char *model);
void paramd__cache_clear(paramd_client *client);

/* ---------------------------------------------------------------------------
 * Requests in flight
 * ------------------------------------------------------------------------- */

/* Where one item of a reply goes, and what the reply must say about it. */
typedef struct paramd__sink_item {
    float *weights;             /* count floats; NULL for PUSH */
    uint32_t tensor_id;
    uint8_t dtype;
    uint64_t offset, count;
} paramd__sink_item;

/* One request sent or to be sent, and, once its reply is in, the result.
 * Everything it points to is owned by whoever made it (a call's frame, or
 * a batch); `message`, `json` and `lookup` are filled by the reply and
 * owned by the pending request until taken. */
typedef struct paramd__pending {
    uint8_t opcode;             /* of the request */
    uint64_t request_id;
    uint32_t model_id;          /* PUSH, PUSHPULL, PULL: for dropping a stale id */
    bool model_from_cache;
    const char *model_name;     /* LOOKUP: the name asked for (the caller's) */
    paramd__sink_item *items;
    uint32_t item_count;
    bool answered;
    int status;                 /* PARAMD_OK or the error */
    char *message;              /* the error's message (malloc'ed), NULL on success */
    paramd_push_result push;    /* PUSH, PUSHPULL; PULL: step */
    char *json;                 /* STATS, LIST, CREATE: the document, NUL-terminated */
    paramd__model_entry *lookup; /* LOOKUP: the new entry */
} paramd__pending;

void paramd__pending_init(paramd__pending *pending, uint8_t opcode, uint64_t request_id);
/* Frees what the reply left in the pending request (not its items). */
void paramd__pending_clear(paramd__pending *pending);

/* ---------------------------------------------------------------------------
 * Growable output buffers
 * ------------------------------------------------------------------------- */

typedef struct paramd__buffer {
    uint8_t *data;
    size_t size, capacity;
} paramd__buffer;

/* Encodes one frame at the end of the buffer: `encode` writes it to the
 * writer it is given, and is called a second time when the first did not
 * fit (after the buffer grew).  Fails with out_of_memory, or
 * payload_too_large when the frame exceeds what the server accepts. */
typedef void (*paramd__encode_fn)(paramd__writer *writer, const void *context);
int paramd__buffer_encode(paramd_client *client, paramd__buffer *buffer, paramd__encode_fn encode,
                          const void *context);
void paramd__buffer_free(paramd__buffer *buffer);

/* ---------------------------------------------------------------------------
 * The handle
 * ------------------------------------------------------------------------- */

struct paramd_client {
    /* Settings (strings owned). */
    char *host;
    int port;
    int connect_timeout_ms;
    int timeout_ms;
    char *token;
    char *client_name;
    uint32_t max_reply_bytes;
    /* The connection: fd < 0 when closed. */
    int fd;
    char server_name[128];
    uint64_t server_max_frame;
    uint64_t next_request_id;
    /* Reply bytes read and not yet handled: [input_start, input_end). */
    uint8_t *input;
    size_t input_start, input_end, input_capacity;
    /* The last call's outcome. */
    int error;
    char message[PARAMD__MESSAGE_SIZE];
    /* Frames of single calls: `scratch` for HELLO, LOOKUP and the control
     * plane (paramd__wire_call), `request` for pushes and pulls, which may
     * LOOKUP while they are being prepared. */
    paramd__buffer scratch;
    paramd__buffer request;
    paramd__model_entry *models;
};

/* Records an error on the handle and returns code. */
int paramd__fail(paramd_client *client, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a success and returns PARAMD_OK. */
int paramd__succeed(paramd_client *client);
/* Records a finished request's outcome (its message, or the code's default)
 * and returns its status. */
int paramd__fail_pending(paramd_client *client, const paramd__pending *pending);

/* Milliseconds on the monotonic clock; a deadline `timeout_ms` from now. */
int64_t paramd__now_ms(void);
int64_t paramd__deadline(int timeout_ms);

/* The next request id. */
uint64_t paramd__take_id(paramd_client *client);

/* ---------------------------------------------------------------------------
 * The transport (wire.c)
 * ------------------------------------------------------------------------- */

/* Connects and says HELLO (closing any open connection first, and dropping
 * the id cache).  The TCP connect is bounded by the connect timeout and by
 * `deadline`. */
int paramd__wire_connect(paramd_client *client, int64_t deadline);

/* Closes the connection, forgets unread input and drops the id cache. */
void paramd__wire_disconnect(paramd_client *client);

/* Makes sure the handle has a connection before a call sends anything:
 * checks, without waiting, that an open one has not been closed by the
 * server, and connects when there is none. */
int paramd__wire_ensure(paramd_client *client, int64_t deadline);

/* Writes out[0, size), `count` complete request frames, and reads their
 * replies into pending[0, count), in order, while it writes.  Returns
 * PARAMD_OK when every request got its reply (each pending's status says
 * whether the server refused it), or the transport's error (timeout, a
 * broken connection, a malformed reply): then the connection is closed and
 * every request without a reply has that status and message. */
int paramd__wire_exchange(paramd_client *client, const uint8_t *out, size_t size,
                          paramd__pending *pending, size_t count, int64_t deadline);

/* One request: encode it into the client's scratch buffer and exchange. */
int paramd__wire_call(paramd_client *client, paramd__encode_fn encode, const void *context,
                      paramd__pending *pending, int64_t deadline);

#endif
