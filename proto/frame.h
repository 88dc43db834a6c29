/*
 * frame.h - encoders and decoders of the binary protocol (proto/PROTOCOL.md).
 *
 * Pure functions: no sockets, no allocation, no global state.  The server,
 * the C client library and the fuzz target all use them.
 *
 * Decoding.  paramd__frame_parse finds one frame at the start of a buffer
 * and says how long it is (or that more bytes are needed, or that the bytes
 * are not a frame).  The payload decoders then check a whole payload in one
 * pass - every length, count and range against the bytes actually there -
 * and fill a struct whose strings and arrays point into the caller's buffer
 * (nothing is copied).  Items of a push or pull are read afterwards with a
 * cursor (paramd__*_next_*), which cannot fail once the payload decoded.
 * No decoder reads a byte outside the buffer it was given, whatever the
 * bytes are; tests/unit/test_protocol.c feeds every truncation of valid
 * frames under AddressSanitizer and tests/fuzz/ fuzzes them.
 *
 * Encoding.  A paramd__writer appends to a caller's buffer.  When the buffer
 * is too small the writer keeps counting without writing; the caller then
 * grows the buffer to paramd__writer_size() and encodes again (or sizes the
 * buffer up front with the *_size helpers).  Encoders write the padding.
 *
 * Errors are negative PARAMD_E_* codes (include/paramd/paramd.h); decoders
 * that fail also write a sentence naming the field to `why` (when not NULL).
 *
 * The protocol is little-endian and float data is used in place, so paramd
 * builds only for little-endian hosts (checked at compile time in frame.c).
 */
#ifndef PARAMD_PROTO_FRAME_H
#define PARAMD_PROTO_FRAME_H

#include "paramd/paramd.h"
#include "paramd/protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A byte string inside a buffer (not NUL-terminated). */
typedef struct paramd__wire_string {
    const char *data;
    uint16_t length;
} paramd__wire_string;

/* ---------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------- */

typedef struct paramd__frame_header {
    uint8_t version;
    uint8_t opcode;
    uint32_t length; /* payload bytes */
    uint64_t request_id;
} paramd__frame_header;

/* Looks for one frame at the start of buffer[0, size).  Returns the frame's
 * size (PARAMD_FRAME_HEADER_SIZE + length) when the whole frame is there; 0
 * when more bytes are needed (*header is filled as soon as the 16 header
 * bytes are there); PARAMD_E_BAD_FRAME for a wrong magic, a version other
 * than 1 or a length that is not a multiple of 8; PARAMD_E_PAYLOAD_TOO_LARGE
 * for a length above max_payload (as soon as the header is there, before
 * any payload arrives). */
long long paramd__frame_parse(const uint8_t *buffer, size_t size, uint64_t max_payload,
                              paramd__frame_header *header, char *why, size_t why_size);

/* Bytes per element of a dtype code, 0 for an unknown code. */
size_t paramd__dtype_size(uint8_t dtype);

/* The name of a dtype code ("float32"), or NULL. */
const char *paramd__dtype_name(uint8_t dtype);

/* n rounded up to a multiple of PARAMD_FRAME_ALIGNMENT. */
static inline size_t paramd__padded(size_t n)
{
    return (n + PARAMD_FRAME_ALIGNMENT - 1) & ~(size_t)(PARAMD_FRAME_ALIGNMENT - 1);
}

/* ---------------------------------------------------------------------------
 * Items: one tensor (or range) of a push, a pull or their replies
 * ------------------------------------------------------------------------- */

#define PARAMD__ITEM_HEADER_SIZE 24

typedef struct paramd__wire_item {
    uint32_t tensor_id;
    uint8_t dtype;
    uint64_t offset;
    uint64_t count;
    const uint8_t *data; /* count * dtype size bytes; NULL in a PULL request */
} paramd__wire_item;

/* Reads items one by one from a decoded payload.  `position` starts where
 * the decoder left it. */
typedef struct paramd__item_cursor {
    const uint8_t *items;  /* the first item */
    size_t size;           /* bytes of all items */
    size_t position;
    uint32_t remaining;
    bool with_data;
} paramd__item_cursor;

/* The next item, or false after the last. */
bool paramd__next_item(paramd__item_cursor *cursor, paramd__wire_item *item);

/* Bytes one item with data takes on the wire. */
static inline size_t paramd__item_size(uint8_t dtype, uint64_t count)
{
    return PARAMD__ITEM_HEADER_SIZE + paramd__padded((size_t)count * paramd__dtype_size(dtype));
}

/* ---------------------------------------------------------------------------
 * Requests (decoded by the server)
 * ------------------------------------------------------------------------- */

typedef struct paramd__hello_request {
    uint8_t min_version, max_version;
    paramd__wire_string token, client;
} paramd__hello_request;

typedef struct paramd__lookup_request {
    paramd__wire_string model;
    uint32_t tensor_count;     /* 0: every tensor */
    const uint8_t *names;      /* tensor_count padded strings */
    size_t names_size;
} paramd__lookup_request;

/* The i-th name of a decoded LOOKUP, reading sequentially from *position
 * (start at 0). */
paramd__wire_string paramd__lookup_next_name(const paramd__lookup_request *request,
                                             size_t *position);

typedef struct paramd__push_request {
    uint32_t model_id;
    uint32_t flags;           /* PARAMD_PUSH_HAS_* */
    double loss, grad_norm;   /* NaN without their flags */
    uint64_t version;         /* meaningful only with PARAMD_PUSH_HAS_VERSION */
    paramd__wire_string worker;
    paramd__item_cursor items;
} paramd__push_request;

typedef struct paramd__pull_request {
    uint32_t model_id;
    paramd__item_cursor items; /* ranges: data is NULL */
} paramd__pull_request;

/* A request that names a model (STATS, DELETE) or creates one (CREATE). */
typedef struct paramd__model_request {
    paramd__wire_string model;
    const char *json;          /* CREATE: the body; NULL otherwise */
    uint32_t json_length;
} paramd__model_request;

int paramd__decode_hello(const uint8_t *payload, size_t length, paramd__hello_request *request,
                         char *why, size_t why_size);
int paramd__decode_lookup(const uint8_t *payload, size_t length,
                          paramd__lookup_request *request, char *why, size_t why_size);
/* PUSH and PUSHPULL share a layout. */
int paramd__decode_push(const uint8_t *payload, size_t length, paramd__push_request *request,
                        char *why, size_t why_size);
int paramd__decode_pull(const uint8_t *payload, size_t length, paramd__pull_request *request,
                        char *why, size_t why_size);
/* STATS and DELETE (a model name, possibly empty for STATS). */
int paramd__decode_model_name(const uint8_t *payload, size_t length,
                              paramd__model_request *request, char *why, size_t why_size);
int paramd__decode_create(const uint8_t *payload, size_t length, paramd__model_request *request,
                          char *why, size_t why_size);

/* ---------------------------------------------------------------------------
 * Replies (decoded by clients)
 * ------------------------------------------------------------------------- */

typedef struct paramd__hello_reply {
    uint8_t version;
    uint64_t max_frame_size;
    paramd__wire_string server;
} paramd__hello_reply;

typedef struct paramd__lookup_entry {
    uint32_t tensor_id;
    uint8_t dtype;
    uint8_t dimension_count;
    uint64_t element_count;
    uint64_t shape[8];
    paramd__wire_string name;
} paramd__lookup_entry;

typedef struct paramd__lookup_reply {
    uint32_t model_id;
    uint32_t tensor_count;
    uint64_t step;
    const uint8_t *entries;
    size_t entries_size;
} paramd__lookup_reply;

/* The next entry of a decoded LOOKUP reply, from *position (start at 0). */
void paramd__lookup_next_entry(const paramd__lookup_reply *reply, size_t *position,
                               paramd__lookup_entry *entry);

typedef struct paramd__push_reply {
    uint64_t step;
    double lr, grad_norm, loss_scale; /* NaN: none */
    uint32_t flags;                   /* PARAMD_PUSH_SKIPPED, _ACCUMULATED, _DROPPED */
    paramd__item_cursor items;        /* PUSHPULL: the weights */
} paramd__push_reply;

typedef struct paramd__pull_reply {
    uint64_t step;
    paramd__item_cursor items;
} paramd__pull_reply;

typedef struct paramd__json_reply {
    const char *json;
    uint32_t length;
} paramd__json_reply;

typedef struct paramd__error_reply {
    int32_t code;
    uint32_t shard_map_version;
    paramd__wire_string message;
} paramd__error_reply;

int paramd__decode_hello_reply(const uint8_t *payload, size_t length, paramd__hello_reply *reply,
                               char *why, size_t why_size);
int paramd__decode_lookup_reply(const uint8_t *payload, size_t length,
                                paramd__lookup_reply *reply, char *why, size_t why_size);
int paramd__decode_push_reply(const uint8_t *payload, size_t length, paramd__push_reply *reply,
                              char *why, size_t why_size);
int paramd__decode_pull_reply(const uint8_t *payload, size_t length, paramd__pull_reply *reply,
                              char *why, size_t why_size);
int paramd__decode_json_reply(const uint8_t *payload, size_t length, paramd__json_reply *reply,
                              char *why, size_t why_size);
int paramd__decode_error_reply(const uint8_t *payload, size_t length,
                               paramd__error_reply *reply, char *why, size_t why_size);

/* ---------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------- */

typedef struct paramd__writer {
    uint8_t *data;
    size_t capacity;
    size_t size; /* bytes encoded so far; more than capacity means "grow and retry" */
} paramd__writer;

void paramd__writer_init(paramd__writer *writer, void *buffer, size_t capacity);

/* True when everything encoded so far fit in the buffer. */
static inline bool paramd__writer_fits(const paramd__writer *writer)
{
    return writer->size <= writer->capacity;
}

void paramd__put_u8(paramd__writer *writer, uint8_t value);
void paramd__put_u16(paramd__writer *writer, uint16_t value);
void paramd__put_u32(paramd__writer *writer, uint32_t value);
void paramd__put_u64(paramd__writer *writer, uint64_t value);
void paramd__put_f64(paramd__writer *writer, double value);
/* A string (u16 length, bytes, padding); strings longer than 65535 bytes
 * are cut there (callers validate names before they get here). */
void paramd__put_string(paramd__writer *writer, const char *data, size_t length);
/* Bytes, then padding to a multiple of 8 (counted from the frame's start). */
void paramd__put_bytes(paramd__writer *writer, const void *data, size_t length);
/* Reserves `length` bytes plus padding and returns where to write them, or
 * NULL when they do not fit (the writer still counts them). */
uint8_t *paramd__put_reserve(paramd__writer *writer, size_t length);

/* Starts a frame (writes its header with length 0) and returns its offset
 * in the writer, for paramd__frame_end to patch the length. */
size_t paramd__frame_begin(paramd__writer *writer, uint8_t opcode, uint64_t request_id);
void paramd__frame_end(paramd__writer *writer, size_t frame_start);

/* Sets the length field of the frame at `frame` (frame_size bytes in all,
 * header included): for a reply whose leading fields are written again once
 * known, after its items. */
void paramd__frame_set_length(uint8_t *frame, size_t frame_size);

/* Item header (tensor, dtype, range); the caller writes the data after it
 * with paramd__put_bytes or paramd__put_reserve. */
void paramd__put_item_header(paramd__writer *writer, uint32_t tensor_id, uint8_t dtype,
                             uint64_t offset, uint64_t count);

/* Whole messages.  Each writes one complete frame. */
void paramd__encode_hello(paramd__writer *writer, uint64_t request_id, uint8_t min_version,
                          uint8_t max_version, const char *token, const char *client);
void paramd__encode_lookup(paramd__writer *writer, uint64_t request_id, const char *model,
                           const char *const *names, uint32_t name_count);
/* Starts a PUSH or PUSHPULL (opcode) frame up to its items; append items
 * with paramd__put_item_header + data, then paramd__frame_end. */
size_t paramd__encode_push_begin(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                                 uint32_t model_id, uint32_t item_count, uint32_t flags,
                                 double loss, double grad_norm, uint64_t version,
                                 const char *worker);
/* Starts a PULL frame; append item_count ranges with paramd__put_item_header
 * (no data), then paramd__frame_end. */
size_t paramd__encode_pull_begin(paramd__writer *writer, uint64_t request_id, uint32_t model_id,
                                 uint32_t item_count);
/* STATS or DELETE of a model ("" for STATS of the server), LIST (model
 * ignored), CREATE (with its JSON body). */
void paramd__encode_model_request(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                                  const char *model);
void paramd__encode_create(paramd__writer *writer, uint64_t request_id, const char *model,
                           const char *json, size_t json_length);
void paramd__encode_echo(paramd__writer *writer, uint64_t request_id, const void *payload,
                         size_t length);

void paramd__encode_hello_reply(paramd__writer *writer, uint64_t request_id,
                                uint64_t max_frame_size, const char *server);
void paramd__encode_error(paramd__writer *writer, uint64_t request_id, int32_t code,
                          uint32_t shard_map_version, const char *message);
void paramd__encode_json_reply(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                               const char *json, size_t length);
/* Starts a LOOKUP reply; append entries with paramd__put_lookup_entry. */
size_t paramd__encode_lookup_reply_begin(paramd__writer *writer, uint64_t request_id,
                                         uint32_t model_id, uint32_t tensor_count,
                                         uint64_t step);
void paramd__put_lookup_entry(paramd__writer *writer, uint32_t tensor_id, uint8_t dtype,
                              uint8_t dimension_count, const int64_t *shape,
                              uint64_t element_count, const char *name);
/* Starts a PUSH or PUSHPULL reply up to its items. */
size_t paramd__encode_push_reply_begin(paramd__writer *writer, uint8_t opcode,
                                       uint64_t request_id, uint64_t step, double lr,
                                       double grad_norm, double loss_scale, uint32_t flags,
                                       uint32_t item_count);
size_t paramd__encode_pull_reply_begin(paramd__writer *writer, uint64_t request_id,
                                       uint64_t step, uint32_t item_count);

/* Bytes of whole frames, for sizing buffers before encoding. */
size_t paramd__push_reply_size(size_t items_bytes);
size_t paramd__pull_reply_size(size_t items_bytes);

#endif
