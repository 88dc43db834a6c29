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

/* An entry for tensor_count tensors whose names are not set yet (NULL when
 * out of memory); paramd__cache_entry_set fills tensor `index` (every one
 * must be set once before the entry is used) and indexes its name.
 * Returns PARAMD_OK or PARAMD_E_NO_MEMORY. */
paramd__model_entry *paramd__cache_entry_new(const char *model, uint32_t id,
                                             uint32_t tensor_count);
int paramd__cache_entry_set(paramd__model_entry *entry, uint32_t index, const char *name,
                            size_t name_length, uint32_t id, uint8_t dimension_count,
                            const uint64_t *shape, uint64_t element_count);

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
    uint32_t shard_map_version; /* an ERROR's shard-map version (not_owner), else 0 */
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
 * Data requests (data.c): what a PUSH, PUSHPULL or PULL frame says, with
 * the ids and ranges already resolved, so that a single server's call and
 * a shard's part of a sharded call encode the same way.
 * ------------------------------------------------------------------------- */

typedef struct paramd__request_item {
    uint32_t tensor_id;
    uint64_t offset, count;     /* the range, in the whole tensor's elements */
    const float *grad;          /* PUSH, PUSHPULL: count gradients */
    float *weights;             /* PUSHPULL, PULL: receives count weights */
} paramd__request_item;

typedef struct paramd__data_request {
    uint8_t opcode;
    uint64_t request_id;
    uint32_t model_id;
    uint8_t dtype;              /* of the wire: gradients, and the weights asked for */
    uint32_t flags;             /* PARAMD_PUSH_HAS_* */
    double loss, grad_norm;
    uint64_t version;
    const char *worker;
    const paramd__request_item *items;
    size_t count;
} paramd__data_request;

/* The dtype a call asked for: a pull's argument, or a push's option (0:
 * float32, the default). */
static inline int paramd__data_dtype(const paramd_pull_item *pull_items,
                                     const paramd_push_options *options, int pull_dtype)
{
    return pull_items ? pull_dtype : options ? options->dtype : 0;
}

/* "push", "pushpull" or "pull", for messages. */
const char *paramd__data_operation_name(uint8_t opcode);

/* Checks what the server cannot: pointers, counts that would overflow a
 * frame, the dtype.  Records the error on the handle. */
int paramd__data_check_arguments(paramd_client *client, uint8_t opcode, const char *model,
                                 const paramd_push_item *push_items,
                                 const paramd_pull_item *pull_items, size_t count, int dtype);

/* The flags, loss, grad_norm, version and worker of a request from the
 * caller's options (NULL: none). */
void paramd__data_request_options(paramd__data_request *request,
                                  const paramd_push_options *options);

/* Encodes the request at the end of `buffer` (gradients converted to the
 * wire dtype on the way) and fills `pending`, allocating the sinks its
 * reply's weights go to; release them with paramd__data_release. */
int paramd__data_encode(paramd_client *client, const paramd__data_request *request,
                        paramd__buffer *buffer, paramd__pending *pending);
void paramd__data_release(paramd__pending *pending);

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
    /* The connection: fd < 0 when closed.  server_closing: the server
     * answered unauthorized, after which it closes the connection (its FIN
     * may not have arrived yet): the next call must reconnect, not send on
     * it. */
    int fd;
    bool server_closing;
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
    /* Counts the connections made (HELLO done), so that whoever remembers
     * ids learnt on this connection can tell when they went stale. */
    uint64_t connection_generation;
    /* A handle opened from a shard map: its shards and their placement
     * (sharded.h).  NULL for a handle of one server, and in the shards'
     * own handles. */
    struct paramd__sharded *sharded;
};

/* A handle for the config with its settings copied, not connected yet
 * (NULL when out of memory).  *result receives PARAMD_OK, or the config's
 * error, also recorded on the handle.  A port of 0 is the default only
 * with zero_port_is_default. */
paramd_client *paramd__client_new(const paramd_config *config, bool zero_port_is_default,
                                  int *result);

/* A control-plane request (CREATE, DELETE, STATS, LIST, or LOOKUP of
 * every tensor) to encode with paramd__encode_control. */
typedef struct paramd__control_request {
    uint8_t opcode;
    uint64_t request_id;
    const char *model;          /* NULL: none (LIST) */
    const char *json;           /* CREATE: the body */
    size_t json_length;
} paramd__control_request;
void paramd__encode_control(paramd__writer *writer, const void *context);

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

/* One connection's part of a parallel exchange: the caller fills the
 * first five fields; the engine keeps the rest. */
typedef struct paramd__exchange {
    paramd_client *client;
    const uint8_t *out;         /* `count` complete request frames */
    size_t size;
    paramd__pending *pending;   /* count: their replies, in order */
    size_t count;
    size_t written, answered, needed;
    int result;                 /* PARAMD_OK, or this connection's transport error */
    bool done;
} paramd__exchange;

/* paramd__wire_exchange on several connections at once: one poll() waits
 * on every socket, so every connection writes and reads while the others
 * do, and a large request to one shard does not hold the others back.
 * Each exchange ends on its own (a transport error closes only its
 * connection, with the message on its own handle).  Returns PARAMD_OK
 * when every exchange got all its replies, else the first failed
 * exchange's error (in array order). */
int paramd__wire_exchange_many(paramd__exchange *exchanges, size_t count, int64_t deadline);

/* One request: encode it into the client's scratch buffer and exchange. */
int paramd__wire_call(paramd_client *client, paramd__encode_fn encode, const void *context,
                      paramd__pending *pending, int64_t deadline);

#endif
