/*
 * test_protocol.c - the binary protocol's encoders and decoders
 * (proto/frame.c): round trips of every message, the worked examples of
 * proto/PROTOCOL.md byte for byte, every truncation of valid frames, and
 * malformed fields.
 *
 * Every decoder runs on a heap copy of exactly the bytes it is given, so
 * under AddressSanitizer (make test SANITIZE=1) a read one byte too far is
 * a crash, not a silent pass.
 */
#include "test_util.h"

#include "frame.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An encoded frame in a buffer of its own. */
typedef struct frame {
    uint8_t *bytes;
    size_t size;
} frame;

/* Runs an encoder twice: once to size the frame, once into a buffer of
 * exactly that size. */
#define ENCODE(out, call)                                                                  \
    do {                                                                                   \
        paramd__writer writer_;                                                            \
        paramd__writer *w = &writer_;                                                      \
        paramd__writer_init(w, NULL, 0);                                                   \
        call;                                                                              \
        (out).size = writer_.size;                                                         \
        (out).bytes = malloc((out).size);                                                  \
        ck_assert_ptr_nonnull((out).bytes);                                                \
        paramd__writer_init(w, (out).bytes, (out).size);                                   \
        call;                                                                              \
        ck_assert_uint_eq(writer_.size, (out).size);                                       \
    } while (0)

/* Parses a whole frame; returns a heap copy of its payload (exact size). */
static uint8_t *payload_of(const frame *f, paramd__frame_header *header)
{
    char why[160] = "";
    long long total = paramd__frame_parse(f->bytes, f->size, UINT32_MAX, header, why, sizeof why);
    ck_assert_msg(total == (long long)f->size, "frame_parse: %lld (%s)", total, why);
    ck_assert_uint_eq(header->length % 8, 0);
    uint8_t *payload = malloc(header->length ? header->length : 1);
    memcpy(payload, f->bytes + PARAMD_FRAME_HEADER_SIZE, header->length);
    return payload;
}

static void assert_string(paramd__wire_string s, const char *expected)
{
    ck_assert_uint_eq(s.length, strlen(expected));
    ck_assert(memcmp(s.data, expected, s.length) == 0);
}

/* ---------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------- */

START_TEST(test_hello_round_trip)
{
    frame f;
    ENCODE(f, paramd__encode_hello(w, 42, 1, 3, "secret-token", "paramctl 0.1.0"));
    paramd__frame_header header;
    uint8_t *payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.opcode, PARAMD_OP_HELLO);
    ck_assert_uint_eq(header.request_id, 42);
    paramd__hello_request request;
    ck_assert_int_eq(paramd__decode_hello(payload, header.length, &request, NULL, 0), PARAMD_OK);
    ck_assert_uint_eq(request.min_version, 1);
    ck_assert_uint_eq(request.max_version, 3);
    assert_string(request.token, "secret-token");
    assert_string(request.client, "paramctl 0.1.0");
    free(payload);
    free(f.bytes);

    ENCODE(f, paramd__encode_hello_reply(w, 42, UINT64_C(1) << 30, "paramd 0.1.0"));
    payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.opcode, PARAMD_OP_HELLO | PARAMD_OP_REPLY);
    paramd__hello_reply reply;
    ck_assert_int_eq(paramd__decode_hello_reply(payload, header.length, &reply, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(reply.version, 1);
    ck_assert_uint_eq(reply.max_frame_size, UINT64_C(1) << 30);
    assert_string(reply.server, "paramd 0.1.0");
    free(payload);
    free(f.bytes);
}
END_TEST

START_TEST(test_lookup_round_trip)
{
    const char *names[] = {"fc1.weight", "fc1.bias", "layers.0.attn.q_proj.weight"};
    frame f;
    ENCODE(f, paramd__encode_lookup(w, 7, "mnist", names, 3));
    paramd__frame_header header;
    uint8_t *payload = payload_of(&f, &header);
    paramd__lookup_request request;
    ck_assert_int_eq(paramd__decode_lookup(payload, header.length, &request, NULL, 0), PARAMD_OK);
    assert_string(request.model, "mnist");
    ck_assert_uint_eq(request.tensor_count, 3);
    size_t position = 0;
    for (int i = 0; i < 3; i++)
        assert_string(paramd__lookup_next_name(&request, &position), names[i]);
    free(payload);
    free(f.bytes);

    const int64_t shape_a[2] = {128, 784}, shape_b[1] = {128}, scalar[1] = {0};
    ENCODE(f, {
        size_t start = paramd__encode_lookup_reply_begin(w, 7, 12, 3, 99);
        paramd__put_lookup_entry(w, 0, PARAMD_DTYPE_FLOAT32, 2, shape_a, 128 * 784, "fc1.weight");
        paramd__put_lookup_entry(w, 1, PARAMD_DTYPE_FLOAT32, 1, shape_b, 128, "fc1.bias");
        paramd__put_lookup_entry(w, 2, PARAMD_DTYPE_FLOAT32, 0, scalar, 1, "scale");
        paramd__frame_end(w, start);
    });
    payload = payload_of(&f, &header);
    paramd__lookup_reply reply;
    ck_assert_int_eq(paramd__decode_lookup_reply(payload, header.length, &reply, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(reply.model_id, 12);
    ck_assert_uint_eq(reply.tensor_count, 3);
    ck_assert_uint_eq(reply.step, 99);
    paramd__lookup_entry entry;
    position = 0;
    paramd__lookup_next_entry(&reply, &position, &entry);
    ck_assert_uint_eq(entry.tensor_id, 0);
    ck_assert_uint_eq(entry.dimension_count, 2);
    ck_assert_uint_eq(entry.shape[1], 784);
    ck_assert_uint_eq(entry.element_count, 128 * 784);
    assert_string(entry.name, "fc1.weight");
    paramd__lookup_next_entry(&reply, &position, &entry);
    assert_string(entry.name, "fc1.bias");
    paramd__lookup_next_entry(&reply, &position, &entry);
    ck_assert_uint_eq(entry.dimension_count, 0);
    assert_string(entry.name, "scale");
    ck_assert_uint_eq(position, reply.entries_size);
    free(payload);
    free(f.bytes);
}
END_TEST

/* A PUSHPULL with items of every dtype and odd lengths (padding). */
static void encode_push(paramd__writer *w, uint8_t opcode)
{
    static const float grad[5] = {0.5f, -1.0f, 2.0f, 3.0f, -4.0f};
    static const uint16_t half[3] = {0x3c00, 0xc000, 0x0001};
    size_t start = paramd__encode_push_begin(w, opcode, 9, 3, 3,
                                             PARAMD_PUSH_HAS_LOSS | PARAMD_PUSH_HAS_VERSION, 0.25,
                                             0, 41, "worker-7");
    paramd__put_item_header(w, 0, PARAMD_DTYPE_FLOAT32, 0, 5);
    paramd__put_bytes(w, grad, sizeof grad);
    paramd__put_item_header(w, 4, PARAMD_DTYPE_FLOAT16, 0, 3);
    paramd__put_bytes(w, half, sizeof half);
    paramd__put_item_header(w, 5, PARAMD_DTYPE_BFLOAT16, 0, 0);
    paramd__frame_end(w, start);
}

START_TEST(test_push_round_trip)
{
    frame f;
    ENCODE(f, encode_push(w, PARAMD_OP_PUSHPULL));
    ck_assert_uint_eq(f.size % 8, 0);
    paramd__frame_header header;
    uint8_t *payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.opcode, PARAMD_OP_PUSHPULL);
    paramd__push_request request;
    char why[160] = "";
    ck_assert_msg(paramd__decode_push(payload, header.length, &request, why, sizeof why) ==
                      PARAMD_OK,
                  "%s", why);
    ck_assert_uint_eq(request.model_id, 3);
    ck_assert_double_eq(request.loss, 0.25);
    ck_assert(isnan(request.grad_norm)); /* flag not set */
    ck_assert_uint_eq(request.version, 41);
    assert_string(request.worker, "worker-7");
    paramd__wire_item item;
    ck_assert(paramd__next_item(&request.items, &item));
    ck_assert_uint_eq(item.tensor_id, 0);
    ck_assert_uint_eq(item.count, 5);
    ck_assert_uint_eq((uintptr_t)(item.data - payload) % 8, 0); /* aligned in place */
    float values[5];
    memcpy(values, item.data, sizeof values);
    ck_assert(values[4] == -4.0f);
    ck_assert(paramd__next_item(&request.items, &item));
    ck_assert_uint_eq(item.dtype, PARAMD_DTYPE_FLOAT16);
    ck_assert_uint_eq(item.data[0], 0x00);
    ck_assert_uint_eq(item.data[1], 0x3c);
    ck_assert(paramd__next_item(&request.items, &item));
    ck_assert_uint_eq(item.tensor_id, 5);
    ck_assert_uint_eq(item.count, 0);
    ck_assert(!paramd__next_item(&request.items, &item));
    free(payload);
    free(f.bytes);

    /* The reply carries the flags, NaNs and items back. */
    static const float weights[3] = {1, 2, 3};
    ENCODE(f, {
        size_t start = paramd__encode_push_reply_begin(w, PARAMD_OP_PUSHPULL, 9, 17, 0.001, NAN,
                                                       65536, PARAMD_PUSH_ACCUMULATED, 1);
        paramd__put_item_header(w, 2, PARAMD_DTYPE_FLOAT32, 0, 3);
        paramd__put_bytes(w, weights, sizeof weights);
        paramd__frame_end(w, start);
    });
    ck_assert_uint_eq(f.size, paramd__push_reply_size(paramd__item_size(PARAMD_DTYPE_FLOAT32, 3)));
    payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.opcode, PARAMD_OP_PUSHPULL | PARAMD_OP_REPLY);
    paramd__push_reply reply;
    ck_assert_int_eq(paramd__decode_push_reply(payload, header.length, &reply, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(reply.step, 17);
    ck_assert_double_eq(reply.lr, 0.001);
    ck_assert(isnan(reply.grad_norm));
    ck_assert_double_eq(reply.loss_scale, 65536);
    ck_assert_uint_eq(reply.flags, PARAMD_PUSH_ACCUMULATED);
    ck_assert(paramd__next_item(&reply.items, &item));
    memcpy(values, item.data, 3 * sizeof(float));
    ck_assert(values[2] == 3.0f);
    free(payload);
    free(f.bytes);
}
END_TEST

START_TEST(test_pull_round_trip)
{
    frame f;
    ENCODE(f, {
        size_t start = paramd__encode_pull_begin(w, 11, 2, 2);
        paramd__put_item_header(w, 0, PARAMD_DTYPE_FLOAT32, 10, 20);
        paramd__put_item_header(w, 1, PARAMD_DTYPE_BFLOAT16, 0, 7);
        paramd__frame_end(w, start);
    });
    paramd__frame_header header;
    uint8_t *payload = payload_of(&f, &header);
    paramd__pull_request request;
    ck_assert_int_eq(paramd__decode_pull(payload, header.length, &request, NULL, 0), PARAMD_OK);
    paramd__wire_item item;
    ck_assert(paramd__next_item(&request.items, &item));
    ck_assert_uint_eq(item.offset, 10);
    ck_assert_uint_eq(item.count, 20);
    ck_assert_ptr_null(item.data);
    ck_assert(paramd__next_item(&request.items, &item));
    ck_assert_uint_eq(item.dtype, PARAMD_DTYPE_BFLOAT16);
    ck_assert(!paramd__next_item(&request.items, &item));
    free(payload);
    free(f.bytes);

    static const uint16_t values[7] = {1, 2, 3, 4, 5, 6, 7};
    ENCODE(f, {
        size_t start = paramd__encode_pull_reply_begin(w, 11, 5, 1);
        paramd__put_item_header(w, 1, PARAMD_DTYPE_BFLOAT16, 0, 7);
        uint8_t *at = paramd__put_reserve(w, sizeof values);
        if (at)
            memcpy(at, values, sizeof values);
        paramd__frame_end(w, start);
    });
    payload = payload_of(&f, &header);
    paramd__pull_reply reply;
    ck_assert_int_eq(paramd__decode_pull_reply(payload, header.length, &reply, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(reply.step, 5);
    ck_assert(paramd__next_item(&reply.items, &item));
    ck_assert(memcmp(item.data, values, sizeof values) == 0);
    free(payload);
    free(f.bytes);
}
END_TEST

START_TEST(test_control_round_trips)
{
    const char *body = "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": []}";
    frame f;
    ENCODE(f, paramd__encode_create(w, 3, "demo", body, strlen(body)));
    paramd__frame_header header;
    uint8_t *payload = payload_of(&f, &header);
    paramd__model_request request;
    ck_assert_int_eq(paramd__decode_create(payload, header.length, &request, NULL, 0), PARAMD_OK);
    assert_string(request.model, "demo");
    ck_assert_uint_eq(request.json_length, strlen(body));
    ck_assert(memcmp(request.json, body, strlen(body)) == 0);
    free(payload);
    free(f.bytes);

    ENCODE(f, paramd__encode_model_request(w, PARAMD_OP_STATS, 4, ""));
    payload = payload_of(&f, &header);
    ck_assert_int_eq(paramd__decode_model_name(payload, header.length, &request, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(request.model.length, 0);
    free(payload);
    free(f.bytes);

    ENCODE(f, paramd__encode_model_request(w, PARAMD_OP_LIST, 5, NULL));
    ck_assert_uint_eq(f.size, PARAMD_FRAME_HEADER_SIZE);
    free(f.bytes);

    ENCODE(f, paramd__encode_json_reply(w, PARAMD_OP_LIST | PARAMD_OP_REPLY, 5, "[1,2,3]", 7));
    payload = payload_of(&f, &header);
    paramd__json_reply json;
    ck_assert_int_eq(paramd__decode_json_reply(payload, header.length, &json, NULL, 0),
                     PARAMD_OK);
    ck_assert_uint_eq(json.length, 7);
    ck_assert(memcmp(json.json, "[1,2,3]", 7) == 0);
    free(payload);
    free(f.bytes);

    ENCODE(f, paramd__encode_error(w, 6, PARAMD_E_TENSOR_NOT_FOUND, 3, "no tensor \"x\""));
    payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.opcode, PARAMD_OP_ERROR);
    paramd__error_reply error;
    ck_assert_int_eq(paramd__decode_error_reply(payload, header.length, &error, NULL, 0),
                     PARAMD_OK);
    ck_assert_int_eq(error.code, PARAMD_E_TENSOR_NOT_FOUND);
    ck_assert_uint_eq(error.shard_map_version, 3);
    assert_string(error.message, "no tensor \"x\"");
    free(payload);
    free(f.bytes);

    static const uint8_t probe[16] = {1, 2, 3};
    ENCODE(f, paramd__encode_echo(w, 8, probe, sizeof probe));
    payload = payload_of(&f, &header);
    ck_assert_uint_eq(header.length, 16);
    ck_assert(memcmp(payload, probe, 16) == 0);
    free(payload);
    free(f.bytes);
}
END_TEST

/* ---------------------------------------------------------------------------
 * The worked examples of PROTOCOL.md, byte for byte
 * ------------------------------------------------------------------------- */

START_TEST(test_worked_examples)
{
    static const uint8_t hello[] = {
        0x50, 0x44, 0x01, 0x01, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x03, 0x00, 0x63, 0x6c, 0x69, 0x00, 0x00, 0x00,
    };
    frame f;
    ENCODE(f, paramd__encode_hello(w, 1, 1, 1, "", "cli"));
    ck_assert_uint_eq(f.size, sizeof hello);
    ck_assert(memcmp(f.bytes, hello, sizeof hello) == 0);
    free(f.bytes);

    static const uint8_t pushpull[] = {
        0x50, 0x44, 0x01, 0x05, 0x58, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x7f,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x77, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
    };
    static const float grad[3] = {0.5f, -1.0f, 2.0f};
    ENCODE(f, {
        size_t start = paramd__encode_push_begin(w, PARAMD_OP_PUSHPULL, 7, 1, 1, 0, 0, 0, 0, "w0");
        paramd__put_item_header(w, 0, PARAMD_DTYPE_FLOAT32, 0, 3);
        paramd__put_bytes(w, grad, sizeof grad);
        paramd__frame_end(w, start);
    });
    ck_assert_uint_eq(f.size, sizeof pushpull);
    ck_assert(memcmp(f.bytes, pushpull, sizeof pushpull) == 0);
    free(f.bytes);

    static const uint8_t error[] = {
        0x50, 0x44, 0x01, 0xff, 0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xfd, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x6e, 0x6f, 0x20, 0x6d, 0x6f, 0x64,
        0x65, 0x6c, 0x20, 0x39, 0x00, 0x00, 0x00, 0x00,
    };
    ENCODE(f, paramd__encode_error(w, 7, PARAMD_E_MODEL_NOT_FOUND, 0, "no model 9"));
    ck_assert_uint_eq(f.size, sizeof error);
    ck_assert(memcmp(f.bytes, error, sizeof error) == 0);
    free(f.bytes);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Truncation at every split point, and malformed fields
 * ------------------------------------------------------------------------- */

/* Every decoder, applied to a payload whatever its opcode says. */
static void decode_everything(const uint8_t *payload, size_t length)
{
    union {
        paramd__hello_request hello;
        paramd__lookup_request lookup;
        paramd__push_request push;
        paramd__pull_request pull;
        paramd__model_request model;
        paramd__hello_reply hello_reply;
        paramd__lookup_reply lookup_reply;
        paramd__push_reply push_reply;
        paramd__pull_reply pull_reply;
        paramd__json_reply json;
        paramd__error_reply error;
    } out;
    char why[160];
    paramd__wire_item item;
    paramd__decode_hello(payload, length, &out.hello, why, sizeof why);
    if (paramd__decode_lookup(payload, length, &out.lookup, why, sizeof why) == PARAMD_OK) {
        size_t position = 0;
        for (uint32_t i = 0; i < out.lookup.tensor_count; i++)
            paramd__lookup_next_name(&out.lookup, &position);
    }
    if (paramd__decode_push(payload, length, &out.push, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&out.push.items, &item))
            ;
    if (paramd__decode_pull(payload, length, &out.pull, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&out.pull.items, &item))
            ;
    paramd__decode_model_name(payload, length, &out.model, why, sizeof why);
    paramd__decode_create(payload, length, &out.model, why, sizeof why);
    paramd__decode_hello_reply(payload, length, &out.hello_reply, why, sizeof why);
    if (paramd__decode_lookup_reply(payload, length, &out.lookup_reply, why, sizeof why) ==
        PARAMD_OK) {
        size_t position = 0;
        paramd__lookup_entry entry;
        for (uint32_t i = 0; i < out.lookup_reply.tensor_count; i++)
            paramd__lookup_next_entry(&out.lookup_reply, &position, &entry);
    }
    if (paramd__decode_push_reply(payload, length, &out.push_reply, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&out.push_reply.items, &item))
            ;
    if (paramd__decode_pull_reply(payload, length, &out.pull_reply, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&out.pull_reply.items, &item))
            ;
    paramd__decode_json_reply(payload, length, &out.json, why, sizeof why);
    paramd__decode_error_reply(payload, length, &out.error, why, sizeof why);
}

/* For each prefix of the frame: frame_parse asks for more bytes (never
 * reads past the prefix), and every decoder refuses or accepts the
 * truncated payload without reading past it. */
static void check_every_split(const frame *f, int (*decode)(const uint8_t *, size_t))
{
    for (size_t cut = 0; cut < f->size; cut++) {
        uint8_t *prefix = malloc(cut ? cut : 1);
        memcpy(prefix, f->bytes, cut);
        paramd__frame_header header;
        ck_assert_int_eq(paramd__frame_parse(prefix, cut, UINT32_MAX, &header, NULL, 0), 0);
        free(prefix);
        if (cut < PARAMD_FRAME_HEADER_SIZE)
            continue;
        size_t length = cut - PARAMD_FRAME_HEADER_SIZE;
        uint8_t *payload = malloc(length ? length : 1);
        memcpy(payload, f->bytes + PARAMD_FRAME_HEADER_SIZE, length);
        /* The frame's own decoder refuses every truncation. */
        ck_assert_msg(decode(payload, length) != PARAMD_OK, "a payload cut at %zu bytes decoded",
                      length);
        decode_everything(payload, length);
        free(payload);
    }
}

static int decode_hello_only(const uint8_t *p, size_t n)
{
    paramd__hello_request r;
    return paramd__decode_hello(p, n, &r, NULL, 0);
}

static int decode_push_only(const uint8_t *p, size_t n)
{
    paramd__push_request r;
    return paramd__decode_push(p, n, &r, NULL, 0);
}

static int decode_lookup_reply_only(const uint8_t *p, size_t n)
{
    paramd__lookup_reply r;
    return paramd__decode_lookup_reply(p, n, &r, NULL, 0);
}

static int decode_pull_reply_only(const uint8_t *p, size_t n)
{
    paramd__pull_reply r;
    return paramd__decode_pull_reply(p, n, &r, NULL, 0);
}

START_TEST(test_every_split_point)
{
    frame f;
    ENCODE(f, paramd__encode_hello(w, 1, 1, 1, "token", "client"));
    check_every_split(&f, decode_hello_only);
    free(f.bytes);
    ENCODE(f, encode_push(w, PARAMD_OP_PUSH));
    check_every_split(&f, decode_push_only);
    free(f.bytes);
    const int64_t shape[3] = {2, 3, 4};
    ENCODE(f, {
        size_t start = paramd__encode_lookup_reply_begin(w, 1, 1, 2, 0);
        paramd__put_lookup_entry(w, 0, PARAMD_DTYPE_FLOAT32, 3, shape, 24, "a");
        paramd__put_lookup_entry(w, 1, PARAMD_DTYPE_FLOAT32, 1, shape, 2, "bb");
        paramd__frame_end(w, start);
    });
    check_every_split(&f, decode_lookup_reply_only);
    free(f.bytes);
    static const float values[3] = {1, 2, 3};
    ENCODE(f, {
        size_t start = paramd__encode_pull_reply_begin(w, 1, 1, 1);
        paramd__put_item_header(w, 0, PARAMD_DTYPE_FLOAT32, 0, 3);
        paramd__put_bytes(w, values, sizeof values);
        paramd__frame_end(w, start);
    });
    check_every_split(&f, decode_pull_reply_only);
    free(f.bytes);
}
END_TEST

START_TEST(test_bad_headers)
{
    uint8_t bytes[24] = {0x50, 0x44, 0x01, 0x01, 0x08, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    paramd__frame_header header;
    char why[160];
    ck_assert_int_eq(paramd__frame_parse(bytes, 24, 1024, &header, why, sizeof why), 24);
    bytes[0] = 'G'; /* "GET / HTTP/1.1" on the TCP port */
    ck_assert_int_eq(paramd__frame_parse(bytes, 1, 1024, &header, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "magic"));
    bytes[0] = 0x50;
    bytes[2] = 2;
    ck_assert_int_eq(paramd__frame_parse(bytes, 16, 1024, &header, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "version 2"));
    bytes[2] = 1;
    bytes[4] = 5; /* not a multiple of 8 */
    ck_assert_int_eq(paramd__frame_parse(bytes, 16, 1024, &header, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "multiple of 8"));
    /* Too large is known from the header alone, before the payload. */
    bytes[4] = 0;
    bytes[5] = 0x10; /* 4096 */
    ck_assert_int_eq(paramd__frame_parse(bytes, 16, 1024, &header, why, sizeof why),
                     PARAMD_E_PAYLOAD_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(why, "4096"));
}
END_TEST

START_TEST(test_bad_items)
{
    /* An unknown dtype, a count larger than the payload, an overflowing
     * range and trailing bytes are refused with messages naming the item. */
    char why[160];
    paramd__push_request request;
    uint8_t buffer[256];
    paramd__writer writer;

    paramd__writer_init(&writer, buffer, sizeof buffer);
    size_t start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSH, 1, 1, 1, 0, 0, 0, 0, "");
    paramd__put_item_header(&writer, 0, 9, 0, 1);
    paramd__put_bytes(&writer, "abcd", 4);
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_push(buffer + 16, writer.size - 16, &request, why, sizeof why),
                     PARAMD_E_BAD_ENCODING);
    ck_assert_ptr_nonnull(strstr(why, "item 0: unknown dtype 9"));

    paramd__writer_init(&writer, buffer, sizeof buffer);
    start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSH, 1, 1, 1, 0, 0, 0, 0, "");
    paramd__put_item_header(&writer, 0, PARAMD_DTYPE_FLOAT32, 0, UINT64_C(1) << 62);
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_push(buffer + 16, writer.size - 16, &request, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "item 0"));

    paramd__pull_request pull;
    paramd__writer_init(&writer, buffer, sizeof buffer);
    start = paramd__encode_pull_begin(&writer, 1, 1, 1);
    paramd__put_item_header(&writer, 0, PARAMD_DTYPE_FLOAT32, UINT64_MAX, 2);
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_pull(buffer + 16, writer.size - 16, &pull, why, sizeof why),
                     PARAMD_E_BAD_RANGE);

    /* Claims 2 items, carries 1. */
    paramd__writer_init(&writer, buffer, sizeof buffer);
    start = paramd__encode_pull_begin(&writer, 1, 1, 2);
    paramd__put_item_header(&writer, 0, PARAMD_DTYPE_FLOAT32, 0, 2);
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_pull(buffer + 16, writer.size - 16, &pull, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "item 1 of 2"));

    /* Carries 1 item more than it claims. */
    paramd__writer_init(&writer, buffer, sizeof buffer);
    start = paramd__encode_pull_begin(&writer, 1, 1, 1);
    paramd__put_item_header(&writer, 0, PARAMD_DTYPE_FLOAT32, 0, 2);
    paramd__put_item_header(&writer, 1, PARAMD_DTYPE_FLOAT32, 0, 2);
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_pull(buffer + 16, writer.size - 16, &pull, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "after the last field"));

    /* Unknown push flags. */
    paramd__writer_init(&writer, buffer, sizeof buffer);
    start = paramd__encode_push_begin(&writer, PARAMD_OP_PUSH, 1, 1, 0, 0x80, 0, 0, 0, "");
    paramd__frame_end(&writer, start);
    ck_assert_int_eq(paramd__decode_push(buffer + 16, writer.size - 16, &request, why, sizeof why),
                     PARAMD_E_BAD_FRAME);
    ck_assert_ptr_nonnull(strstr(why, "flags"));
}
END_TEST

/* A writer too small encodes nothing past its end and reports the size
 * needed; a second pass with that size gives the same bytes. */
START_TEST(test_writer_overflow)
{
    frame full;
    ENCODE(full, encode_push(w, PARAMD_OP_PUSHPULL));
    for (size_t capacity = 0; capacity < full.size; capacity += 7) {
        uint8_t *small = malloc(capacity ? capacity : 1);
        paramd__writer writer;
        paramd__writer_init(&writer, small, capacity);
        encode_push(&writer, PARAMD_OP_PUSHPULL);
        ck_assert(!paramd__writer_fits(&writer));
        ck_assert_uint_eq(writer.size, full.size);
        free(small);
    }
    free(full.bytes);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("protocol");
    TCase *tcase = tcase_create("frames");
    tcase_add_test(tcase, test_hello_round_trip);
    tcase_add_test(tcase, test_lookup_round_trip);
    tcase_add_test(tcase, test_push_round_trip);
    tcase_add_test(tcase, test_pull_round_trip);
    tcase_add_test(tcase, test_control_round_trips);
    tcase_add_test(tcase, test_worked_examples);
    tcase_add_test(tcase, test_every_split_point);
    tcase_add_test(tcase, test_bad_headers);
    tcase_add_test(tcase, test_bad_items);
    tcase_add_test(tcase, test_writer_overflow);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
