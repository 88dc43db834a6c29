/* frame.c - see frame.h and PROTOCOL.md. */
#include "frame.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "paramd's protocol uses float data in place: build it for a little-endian host"
#endif

/* ---------------------------------------------------------------------------
 * Reading: a bounds-checked cursor over one payload
 * ------------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *data;
    size_t size;
    size_t position;
    const char *failed; /* the first field that did not fit, or NULL */
} reader;

static bool have(reader *r, size_t n, const char *field)
{
    if (r->failed)
        return false;
    if (n > r->size - r->position) {
        r->failed = field;
        return false;
    }
    return true;
}

static uint64_t load_le(const uint8_t *p, int bytes)
{
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--)
        value = (value << 8) | p[i];
    return value;
}

static uint64_t get(reader *r, int bytes, const char *field)
{
    if (!have(r, (size_t)bytes, field))
        return 0;
    uint64_t value = load_le(r->data + r->position, bytes);
    r->position += (size_t)bytes;
    return value;
}

static double get_f64(reader *r, const char *field)
{
    uint64_t bits = get(r, 8, field);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Skips padding after a variable-length field. */
static void skip_padding(reader *r, const char *field)
{
    size_t padded = paramd__padded(r->position);
    if (have(r, padded - r->position, field))
        r->position = padded;
}

static paramd__wire_string get_string(reader *r, const char *field)
{
    paramd__wire_string s = {NULL, 0};
    uint16_t length = (uint16_t)get(r, 2, field);
    if (!have(r, length, field))
        return s;
    s.data = (const char *)r->data + r->position;
    s.length = length;
    r->position += length;
    skip_padding(r, field);
    return s;
}

/* Writes "what: why" to the caller's buffer and returns code. */
static int fail(char *why, size_t why_size, int code, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t why_size, int code, const char *format, ...)
{
    if (why && why_size) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(why, why_size, format, arguments);
        va_end(arguments);
    }
    return code;
}

/* The end of a decode: every field was there and nothing is left over. */
static int finish(reader *r, const char *message, char *why, size_t why_size)
{
    if (r->failed)
        return fail(why, why_size, PARAMD_E_BAD_FRAME, "%s: %s runs past the end of the payload",
                    message, r->failed);
    if (r->position != r->size)
        return fail(why, why_size, PARAMD_E_BAD_FRAME,
                    "%s: %zu bytes after the last field (payload of %zu bytes)", message,
                    r->size - r->position, r->size);
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * Frames and dtypes
 * ------------------------------------------------------------------------- */

long long paramd__frame_parse(const uint8_t *buffer, size_t size, uint64_t max_payload,
                              paramd__frame_header *header, char *why, size_t why_size)
{
    if (size >= 2 && (buffer[0] != PARAMD_FRAME_MAGIC_0 || buffer[1] != PARAMD_FRAME_MAGIC_1))
        return fail(why, why_size, PARAMD_E_BAD_FRAME,
                    "frame: bad magic %02x %02x (expected 50 44, \"PD\")", buffer[0], buffer[1]);
    if (size == 1 && buffer[0] != PARAMD_FRAME_MAGIC_0)
        return fail(why, why_size, PARAMD_E_BAD_FRAME, "frame: bad magic %02x", buffer[0]);
    if (size < PARAMD_FRAME_HEADER_SIZE)
        return 0;
    header->version = buffer[2];
    header->opcode = buffer[3];
    header->length = (uint32_t)load_le(buffer + 4, 4);
    header->request_id = load_le(buffer + 8, 8);
    if (header->version != PARAMD_PROTOCOL_VERSION)
        return fail(why, why_size, PARAMD_E_BAD_FRAME,
                    "frame: protocol version %u (this server speaks %d)", header->version,
                    PARAMD_PROTOCOL_VERSION);
    if (header->length % PARAMD_FRAME_ALIGNMENT != 0)
        return fail(why, why_size, PARAMD_E_BAD_FRAME,
                    "frame: payload length %u is not a multiple of %d", header->length,
                    PARAMD_FRAME_ALIGNMENT);
    if (header->length > max_payload)
        return fail(why, why_size, PARAMD_E_PAYLOAD_TOO_LARGE,
                    "frame: payload of %u bytes exceeds the limit of %llu", header->length,
                    (unsigned long long)max_payload);
    size_t total = PARAMD_FRAME_HEADER_SIZE + (size_t)header->length;
    return size >= total ? (long long)total : 0;
}

size_t paramd__dtype_size(uint8_t dtype)
{
    switch (dtype) {
    case PARAMD_DTYPE_FLOAT32:
        return 4;
    case PARAMD_DTYPE_FLOAT16:
    case PARAMD_DTYPE_BFLOAT16:
        return 2;
    default:
        return 0;
    }
}

const char *paramd__dtype_name(uint8_t dtype)
{
    switch (dtype) {
    case PARAMD_DTYPE_FLOAT32:
        return "float32";
    case PARAMD_DTYPE_FLOAT16:
        return "float16";
    case PARAMD_DTYPE_BFLOAT16:
        return "bfloat16";
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------- */

/* Checks item_count items starting at the reader's position and leaves it
 * after the last; fills the cursor. */
static int check_items(reader *r, uint32_t item_count, bool with_data, const char *message,
                       paramd__item_cursor *cursor, char *why, size_t why_size)
{
    cursor->items = r->data + r->position;
    cursor->position = 0;
    cursor->remaining = item_count;
    cursor->with_data = with_data;
    size_t start = r->position;
    for (uint32_t i = 0; i < item_count; i++) {
        if (!have(r, PARAMD__ITEM_HEADER_SIZE, "an item header"))
            return fail(why, why_size, PARAMD_E_BAD_FRAME,
                        "%s: item %u of %u runs past the end of the payload", message, i,
                        item_count);
        const uint8_t *header = r->data + r->position;
        uint8_t dtype = header[4];
        uint64_t offset = load_le(header + 8, 8), count = load_le(header + 16, 8);
        size_t element_size = paramd__dtype_size(dtype);
        if (element_size == 0)
            return fail(why, why_size, PARAMD_E_BAD_ENCODING,
                        "%s: item %u: unknown dtype %u (1 float32, 2 float16, 3 bfloat16)",
                        message, i, dtype);
        if (offset > UINT64_MAX - count)
            return fail(why, why_size, PARAMD_E_BAD_RANGE,
                        "%s: item %u: offset %llu + count %llu overflows", message, i,
                        (unsigned long long)offset, (unsigned long long)count);
        r->position += PARAMD__ITEM_HEADER_SIZE;
        if (!with_data)
            continue;
        size_t left = r->size - r->position;
        if (count > left / element_size)
            return fail(why, why_size, PARAMD_E_BAD_FRAME,
                        "%s: item %u: %llu %s values need %llu bytes, %zu are left", message, i,
                        (unsigned long long)count, paramd__dtype_name(dtype),
                        (unsigned long long)count * element_size, left);
        r->position += (size_t)count * element_size;
        skip_padding(r, "item data padding");
        if (r->failed)
            return fail(why, why_size, PARAMD_E_BAD_FRAME,
                        "%s: item %u: padding runs past the end of the payload", message, i);
    }
    cursor->size = r->position - start;
    return PARAMD_OK;
}

bool paramd__next_item(paramd__item_cursor *cursor, paramd__wire_item *item)
{
    if (cursor->remaining == 0)
        return false;
    const uint8_t *header = cursor->items + cursor->position;
    item->tensor_id = (uint32_t)load_le(header, 4);
    item->dtype = header[4];
    item->offset = load_le(header + 8, 8);
    item->count = load_le(header + 16, 8);
    cursor->position += PARAMD__ITEM_HEADER_SIZE;
    item->data = NULL;
    if (cursor->with_data) {
        item->data = cursor->items + cursor->position;
        cursor->position += paramd__padded((size_t)item->count * paramd__dtype_size(item->dtype));
    }
    cursor->remaining--;
    return true;
}

/* ---------------------------------------------------------------------------
 * Request decoders
 * ------------------------------------------------------------------------- */

int paramd__decode_hello(const uint8_t *payload, size_t length, paramd__hello_request *request,
                         char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->min_version = (uint8_t)get(&r, 1, "min_version");
    request->max_version = (uint8_t)get(&r, 1, "max_version");
    get(&r, 2, "flags");
    get(&r, 4, "reserved");
    request->token = get_string(&r, "token");
    request->client = get_string(&r, "client");
    return finish(&r, "HELLO", why, why_size);
}

int paramd__decode_lookup(const uint8_t *payload, size_t length,
                          paramd__lookup_request *request, char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->tensor_count = (uint32_t)get(&r, 4, "tensor_count");
    get(&r, 4, "reserved");
    request->model = get_string(&r, "model");
    request->names = r.data + r.position;
    size_t start = r.position;
    for (uint32_t i = 0; i < request->tensor_count && !r.failed; i++)
        get_string(&r, "a tensor name");
    request->names_size = r.position - start;
    return finish(&r, "LOOKUP", why, why_size);
}

paramd__wire_string paramd__lookup_next_name(const paramd__lookup_request *request,
                                             size_t *position)
{
    reader r = {request->names, request->names_size, *position, NULL};
    paramd__wire_string name = get_string(&r, "name");
    *position = r.position;
    return name;
}

int paramd__decode_push(const uint8_t *payload, size_t length, paramd__push_request *request,
                        char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->model_id = (uint32_t)get(&r, 4, "model_id");
    uint32_t item_count = (uint32_t)get(&r, 4, "item_count");
    request->flags = (uint32_t)get(&r, 4, "flags");
    get(&r, 4, "reserved");
    request->loss = get_f64(&r, "loss");
    request->grad_norm = get_f64(&r, "grad_norm");
    request->version = get(&r, 8, "version");
    request->worker = get_string(&r, "worker");
    if (r.failed)
        return finish(&r, "PUSH", why, why_size);
    if (request->flags & ~(uint32_t)(PARAMD_PUSH_HAS_LOSS | PARAMD_PUSH_HAS_GRAD_NORM |
                                     PARAMD_PUSH_HAS_VERSION))
        return fail(why, why_size, PARAMD_E_BAD_FRAME, "PUSH: unknown flags 0x%x",
                    request->flags);
    if (!(request->flags & PARAMD_PUSH_HAS_LOSS))
        request->loss = NAN;
    if (!(request->flags & PARAMD_PUSH_HAS_GRAD_NORM))
        request->grad_norm = NAN;
    int result = check_items(&r, item_count, true, "PUSH", &request->items, why, why_size);
    return result != PARAMD_OK ? result : finish(&r, "PUSH", why, why_size);
}

int paramd__decode_pull(const uint8_t *payload, size_t length, paramd__pull_request *request,
                        char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->model_id = (uint32_t)get(&r, 4, "model_id");
    uint32_t item_count = (uint32_t)get(&r, 4, "item_count");
    if (r.failed)
        return finish(&r, "PULL", why, why_size);
    int result = check_items(&r, item_count, false, "PULL", &request->items, why, why_size);
    return result != PARAMD_OK ? result : finish(&r, "PULL", why, why_size);
}

int paramd__decode_model_name(const uint8_t *payload, size_t length,
                              paramd__model_request *request, char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->model = get_string(&r, "model");
    request->json = NULL;
    request->json_length = 0;
    return finish(&r, "request", why, why_size);
}

int paramd__decode_create(const uint8_t *payload, size_t length, paramd__model_request *request,
                          char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    request->json_length = (uint32_t)get(&r, 4, "json_length");
    get(&r, 4, "reserved");
    request->model = get_string(&r, "model");
    if (have(&r, request->json_length, "the JSON body")) {
        request->json = (const char *)r.data + r.position;
        r.position += request->json_length;
        skip_padding(&r, "the JSON body's padding");
    }
    return finish(&r, "CREATE", why, why_size);
}

/* ---------------------------------------------------------------------------
 * Reply decoders
 * ------------------------------------------------------------------------- */

int paramd__decode_hello_reply(const uint8_t *payload, size_t length, paramd__hello_reply *reply,
                               char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->version = (uint8_t)get(&r, 1, "version");
    get(&r, 1, "reserved");
    get(&r, 2, "reserved");
    get(&r, 4, "reserved");
    reply->max_frame_size = get(&r, 8, "max_frame_size");
    reply->server = get_string(&r, "server");
    return finish(&r, "HELLO reply", why, why_size);
}

/* Reads one LOOKUP entry; used to check and to iterate. */
static void read_lookup_entry(reader *r, paramd__lookup_entry *entry)
{
    entry->tensor_id = (uint32_t)get(r, 4, "tensor_id");
    entry->dtype = (uint8_t)get(r, 1, "dtype");
    entry->dimension_count = (uint8_t)get(r, 1, "dimension_count");
    get(r, 2, "reserved");
    entry->element_count = get(r, 8, "element_count");
    if (entry->dimension_count > 8 && !r->failed)
        r->failed = "dimension_count (at most 8)";
    for (int d = 0; d < entry->dimension_count && !r->failed; d++)
        entry->shape[d] = get(r, 8, "shape");
    entry->name = get_string(r, "name");
}

int paramd__decode_lookup_reply(const uint8_t *payload, size_t length,
                                paramd__lookup_reply *reply, char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->model_id = (uint32_t)get(&r, 4, "model_id");
    reply->tensor_count = (uint32_t)get(&r, 4, "tensor_count");
    reply->step = get(&r, 8, "step");
    reply->entries = r.data + r.position;
    size_t start = r.position;
    for (uint32_t i = 0; i < reply->tensor_count && !r.failed; i++) {
        paramd__lookup_entry entry;
        read_lookup_entry(&r, &entry);
    }
    reply->entries_size = r.position - start;
    return finish(&r, "LOOKUP reply", why, why_size);
}

void paramd__lookup_next_entry(const paramd__lookup_reply *reply, size_t *position,
                               paramd__lookup_entry *entry)
{
    reader r = {reply->entries, reply->entries_size, *position, NULL};
    read_lookup_entry(&r, entry);
    *position = r.position;
}

int paramd__decode_push_reply(const uint8_t *payload, size_t length, paramd__push_reply *reply,
                              char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->step = get(&r, 8, "step");
    reply->lr = get_f64(&r, "lr");
    reply->grad_norm = get_f64(&r, "grad_norm");
    reply->loss_scale = get_f64(&r, "loss_scale");
    reply->flags = (uint32_t)get(&r, 4, "flags");
    uint32_t item_count = (uint32_t)get(&r, 4, "item_count");
    if (r.failed)
        return finish(&r, "PUSH reply", why, why_size);
    int result = check_items(&r, item_count, true, "PUSH reply", &reply->items, why, why_size);
    return result != PARAMD_OK ? result : finish(&r, "PUSH reply", why, why_size);
}

int paramd__decode_pull_reply(const uint8_t *payload, size_t length, paramd__pull_reply *reply,
                              char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->step = get(&r, 8, "step");
    uint32_t item_count = (uint32_t)get(&r, 4, "item_count");
    get(&r, 4, "reserved");
    if (r.failed)
        return finish(&r, "PULL reply", why, why_size);
    int result = check_items(&r, item_count, true, "PULL reply", &reply->items, why, why_size);
    return result != PARAMD_OK ? result : finish(&r, "PULL reply", why, why_size);
}

int paramd__decode_json_reply(const uint8_t *payload, size_t length, paramd__json_reply *reply,
                              char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->length = (uint32_t)get(&r, 4, "json_length");
    get(&r, 4, "reserved");
    reply->json = NULL;
    if (have(&r, reply->length, "the JSON document")) {
        reply->json = (const char *)r.data + r.position;
        r.position += reply->length;
        skip_padding(&r, "the JSON document's padding");
    }
    return finish(&r, "JSON reply", why, why_size);
}

int paramd__decode_error_reply(const uint8_t *payload, size_t length,
                               paramd__error_reply *reply, char *why, size_t why_size)
{
    reader r = {payload, length, 0, NULL};
    reply->code = (int32_t)(uint32_t)get(&r, 4, "code");
    reply->shard_map_version = (uint32_t)get(&r, 4, "shard_map_version");
    reply->message = get_string(&r, "message");
    return finish(&r, "ERROR reply", why, why_size);
}

/* ---------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------- */

void paramd__writer_init(paramd__writer *writer, void *buffer, size_t capacity)
{
    writer->data = buffer;
    writer->capacity = buffer ? capacity : 0;
    writer->size = 0;
}

/* Where to write n bytes, or NULL when they do not fit; counts them either way. */
static uint8_t *advance(paramd__writer *writer, size_t n)
{
    uint8_t *at = NULL;
    if (writer->size <= writer->capacity && n <= writer->capacity - writer->size)
        at = writer->data + writer->size;
    writer->size += n;
    return at;
}

static void put_le(paramd__writer *writer, uint64_t value, int bytes)
{
    uint8_t *at = advance(writer, (size_t)bytes);
    for (int i = 0; at && i < bytes; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

void paramd__put_u8(paramd__writer *writer, uint8_t value)
{
    put_le(writer, value, 1);
}

void paramd__put_u16(paramd__writer *writer, uint16_t value)
{
    put_le(writer, value, 2);
}

void paramd__put_u32(paramd__writer *writer, uint32_t value)
{
    put_le(writer, value, 4);
}

void paramd__put_u64(paramd__writer *writer, uint64_t value)
{
    put_le(writer, value, 8);
}

void paramd__put_f64(paramd__writer *writer, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_le(writer, bits, 8);
}

static void put_padding(paramd__writer *writer)
{
    size_t n = paramd__padded(writer->size) - writer->size;
    uint8_t *at = advance(writer, n);
    if (at)
        memset(at, 0, n);
}

uint8_t *paramd__put_reserve(paramd__writer *writer, size_t length)
{
    uint8_t *at = advance(writer, length);
    put_padding(writer);
    return at;
}

void paramd__put_bytes(paramd__writer *writer, const void *data, size_t length)
{
    uint8_t *at = paramd__put_reserve(writer, length);
    if (at && length)
        memcpy(at, data, length);
}

void paramd__put_string(paramd__writer *writer, const char *data, size_t length)
{
    if (length > UINT16_MAX)
        length = UINT16_MAX;
    paramd__put_u16(writer, (uint16_t)length);
    paramd__put_bytes(writer, data, length);
}

static void put_cstring(paramd__writer *writer, const char *text)
{
    paramd__put_string(writer, text ? text : "", text ? strlen(text) : 0);
}

size_t paramd__frame_begin(paramd__writer *writer, uint8_t opcode, uint64_t request_id)
{
    size_t start = writer->size;
    paramd__put_u8(writer, PARAMD_FRAME_MAGIC_0);
    paramd__put_u8(writer, PARAMD_FRAME_MAGIC_1);
    paramd__put_u8(writer, PARAMD_PROTOCOL_VERSION);
    paramd__put_u8(writer, opcode);
    paramd__put_u32(writer, 0); /* patched by paramd__frame_end */
    paramd__put_u64(writer, request_id);
    return start;
}

void paramd__frame_end(paramd__writer *writer, size_t frame_start)
{
    put_padding(writer);
    size_t length = writer->size - frame_start - PARAMD_FRAME_HEADER_SIZE;
    if (writer->size <= writer->capacity)
        for (int i = 0; i < 4; i++)
            writer->data[frame_start + 4 + (size_t)i] = (uint8_t)(length >> (8 * i));
}

void paramd__frame_set_length(uint8_t *frame, size_t frame_size)
{
    size_t length = frame_size - PARAMD_FRAME_HEADER_SIZE;
    for (int i = 0; i < 4; i++)
        frame[4 + i] = (uint8_t)(length >> (8 * i));
}

void paramd__put_item_header(paramd__writer *writer, uint32_t tensor_id, uint8_t dtype,
                             uint64_t offset, uint64_t count)
{
    paramd__put_u32(writer, tensor_id);
    paramd__put_u8(writer, dtype);
    paramd__put_u8(writer, 0);
    paramd__put_u16(writer, 0);
    paramd__put_u64(writer, offset);
    paramd__put_u64(writer, count);
}

/* ---------------------------------------------------------------------------
 * Message encoders
 * ------------------------------------------------------------------------- */

void paramd__encode_hello(paramd__writer *writer, uint64_t request_id, uint8_t min_version,
                          uint8_t max_version, const char *token, const char *client)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_HELLO, request_id);
    paramd__put_u8(writer, min_version);
    paramd__put_u8(writer, max_version);
    paramd__put_u16(writer, 0);
    paramd__put_u32(writer, 0);
    put_cstring(writer, token);
    put_cstring(writer, client);
    paramd__frame_end(writer, start);
}

void paramd__encode_lookup(paramd__writer *writer, uint64_t request_id, const char *model,
                           const char *const *names, uint32_t name_count)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_LOOKUP, request_id);
    paramd__put_u32(writer, name_count);
    paramd__put_u32(writer, 0);
    put_cstring(writer, model);
    for (uint32_t i = 0; i < name_count; i++)
        put_cstring(writer, names[i]);
    paramd__frame_end(writer, start);
}

size_t paramd__encode_push_begin(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                                 uint32_t model_id, uint32_t item_count, uint32_t flags,
                                 double loss, double grad_norm, uint64_t version,
                                 const char *worker)
{
    size_t start = paramd__frame_begin(writer, opcode, request_id);
    paramd__put_u32(writer, model_id);
    paramd__put_u32(writer, item_count);
    paramd__put_u32(writer, flags);
    paramd__put_u32(writer, 0);
    paramd__put_f64(writer, flags & PARAMD_PUSH_HAS_LOSS ? loss : NAN);
    paramd__put_f64(writer, flags & PARAMD_PUSH_HAS_GRAD_NORM ? grad_norm : NAN);
    paramd__put_u64(writer, flags & PARAMD_PUSH_HAS_VERSION ? version : 0);
    put_cstring(writer, worker);
    return start;
}

size_t paramd__encode_pull_begin(paramd__writer *writer, uint64_t request_id, uint32_t model_id,
                                 uint32_t item_count)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_PULL, request_id);
    paramd__put_u32(writer, model_id);
    paramd__put_u32(writer, item_count);
    return start;
}

void paramd__encode_model_request(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                                  const char *model)
{
    size_t start = paramd__frame_begin(writer, opcode, request_id);
    if (opcode != PARAMD_OP_LIST)
        put_cstring(writer, model);
    paramd__frame_end(writer, start);
}

void paramd__encode_create(paramd__writer *writer, uint64_t request_id, const char *model,
                           const char *json, size_t json_length)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_CREATE, request_id);
    paramd__put_u32(writer, (uint32_t)json_length);
    paramd__put_u32(writer, 0);
    put_cstring(writer, model);
    paramd__put_bytes(writer, json, json_length);
    paramd__frame_end(writer, start);
}

void paramd__encode_echo(paramd__writer *writer, uint64_t request_id, const void *payload,
                         size_t length)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_ECHO, request_id);
    paramd__put_bytes(writer, payload, length);
    paramd__frame_end(writer, start);
}

void paramd__encode_hello_reply(paramd__writer *writer, uint64_t request_id,
                                uint64_t max_frame_size, const char *server)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_HELLO | PARAMD_OP_REPLY, request_id);
    paramd__put_u8(writer, PARAMD_PROTOCOL_VERSION);
    paramd__put_u8(writer, 0);
    paramd__put_u16(writer, 0);
    paramd__put_u32(writer, 0);
    paramd__put_u64(writer, max_frame_size);
    put_cstring(writer, server);
    paramd__frame_end(writer, start);
}

void paramd__encode_error(paramd__writer *writer, uint64_t request_id, int32_t code,
                          uint32_t shard_map_version, const char *message)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_ERROR, request_id);
    paramd__put_u32(writer, (uint32_t)code);
    paramd__put_u32(writer, shard_map_version);
    put_cstring(writer, message);
    paramd__frame_end(writer, start);
}

void paramd__encode_json_reply(paramd__writer *writer, uint8_t opcode, uint64_t request_id,
                               const char *json, size_t length)
{
    size_t start = paramd__frame_begin(writer, opcode, request_id);
    paramd__put_u32(writer, (uint32_t)length);
    paramd__put_u32(writer, 0);
    paramd__put_bytes(writer, json, length);
    paramd__frame_end(writer, start);
}

size_t paramd__encode_lookup_reply_begin(paramd__writer *writer, uint64_t request_id,
                                         uint32_t model_id, uint32_t tensor_count,
                                         uint64_t step)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_LOOKUP | PARAMD_OP_REPLY, request_id);
    paramd__put_u32(writer, model_id);
    paramd__put_u32(writer, tensor_count);
    paramd__put_u64(writer, step);
    return start;
}

void paramd__put_lookup_entry(paramd__writer *writer, uint32_t tensor_id, uint8_t dtype,
                              uint8_t dimension_count, const int64_t *shape,
                              uint64_t element_count, const char *name)
{
    paramd__put_u32(writer, tensor_id);
    paramd__put_u8(writer, dtype);
    paramd__put_u8(writer, dimension_count);
    paramd__put_u16(writer, 0);
    paramd__put_u64(writer, element_count);
    for (int d = 0; d < dimension_count; d++)
        paramd__put_u64(writer, (uint64_t)shape[d]);
    put_cstring(writer, name);
}

size_t paramd__encode_push_reply_begin(paramd__writer *writer, uint8_t opcode,
                                       uint64_t request_id, uint64_t step, double lr,
                                       double grad_norm, double loss_scale, uint32_t flags,
                                       uint32_t item_count)
{
    size_t start = paramd__frame_begin(writer, opcode | PARAMD_OP_REPLY, request_id);
    paramd__put_u64(writer, step);
    paramd__put_f64(writer, lr);
    paramd__put_f64(writer, grad_norm);
    paramd__put_f64(writer, loss_scale);
    paramd__put_u32(writer, flags);
    paramd__put_u32(writer, item_count);
    return start;
}

size_t paramd__encode_pull_reply_begin(paramd__writer *writer, uint64_t request_id,
                                       uint64_t step, uint32_t item_count)
{
    size_t start = paramd__frame_begin(writer, PARAMD_OP_PULL | PARAMD_OP_REPLY, request_id);
    paramd__put_u64(writer, step);
    paramd__put_u32(writer, item_count);
    paramd__put_u32(writer, 0);
    return start;
}

size_t paramd__push_reply_size(size_t items_bytes)
{
    return PARAMD_FRAME_HEADER_SIZE + 40 + items_bytes;
}

size_t paramd__pull_reply_size(size_t items_bytes)
{
    return PARAMD_FRAME_HEADER_SIZE + 16 + items_bytes;
}
