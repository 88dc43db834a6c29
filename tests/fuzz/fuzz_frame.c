/*
 * fuzz_frame.c - libFuzzer target for the binary protocol's decoders
 * (proto/frame.c).
 *
 * The input is treated as a byte stream from a client: frames are cut off
 * it one after another with paramd__frame_parse, exactly as the server's
 * connection does, and every payload goes through every request and reply
 * decoder (whatever its opcode says) and every item and entry iterator.
 * Nothing may read outside the input, hang, or trip UBSan.
 *
 *   make fuzz                     build with clang and fuzz for FUZZ_SECONDS
 *   make test                     replays tests/fuzz/corpus/ (test_fuzz_corpus)
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

/* Decodes one payload in every way it could be read. */
static void decode_payload(const uint8_t *payload, size_t length)
{
    char why[200];
    paramd__wire_item item;
    paramd__hello_request hello;
    paramd__decode_hello(payload, length, &hello, why, sizeof why);
    paramd__lookup_request lookup;
    if (paramd__decode_lookup(payload, length, &lookup, why, sizeof why) == PARAMD_OK) {
        size_t position = 0;
        for (uint32_t i = 0; i < lookup.tensor_count; i++)
            paramd__lookup_next_name(&lookup, &position);
    }
    paramd__push_request push;
    if (paramd__decode_push(payload, length, &push, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&push.items, &item))
            if (item.count)
                (void)item.data[item.count * paramd__dtype_size(item.dtype) - 1];
    paramd__pull_request pull;
    if (paramd__decode_pull(payload, length, &pull, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&pull.items, &item))
            ;
    paramd__model_request model;
    paramd__decode_model_name(payload, length, &model, why, sizeof why);
    if (paramd__decode_create(payload, length, &model, why, sizeof why) == PARAMD_OK &&
        model.json_length)
        (void)model.json[model.json_length - 1];
    paramd__hello_reply hello_reply;
    paramd__decode_hello_reply(payload, length, &hello_reply, why, sizeof why);
    paramd__lookup_reply lookup_reply;
    if (paramd__decode_lookup_reply(payload, length, &lookup_reply, why, sizeof why) ==
        PARAMD_OK) {
        size_t position = 0;
        paramd__lookup_entry entry;
        for (uint32_t i = 0; i < lookup_reply.tensor_count; i++)
            paramd__lookup_next_entry(&lookup_reply, &position, &entry);
    }
    paramd__push_reply push_reply;
    if (paramd__decode_push_reply(payload, length, &push_reply, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&push_reply.items, &item))
            ;
    paramd__pull_reply pull_reply;
    if (paramd__decode_pull_reply(payload, length, &pull_reply, why, sizeof why) == PARAMD_OK)
        while (paramd__next_item(&pull_reply.items, &item))
            ;
    paramd__json_reply json;
    paramd__decode_json_reply(payload, length, &json, why, sizeof why);
    paramd__error_reply error;
    paramd__decode_error_reply(payload, length, &error, why, sizeof why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t position = 0;
    while (position < size) {
        paramd__frame_header header;
        char why[200];
        long long frame = paramd__frame_parse(data + position, size - position, 1u << 24, &header,
                                              why, sizeof why);
        if (frame <= 0)
            break; /* need more (the stream ended) or not a frame: the server closes */
        /* Payloads are decoded from an exact-size copy, so that ASan sees a
         * read past the payload even where the input continues. */
        uint8_t *payload = malloc(header.length ? header.length : 1);
        if (payload == NULL)
            return 0;
        memcpy(payload, data + position + PARAMD_FRAME_HEADER_SIZE, header.length);
        decode_payload(payload, header.length);
        free(payload);
        position += (size_t)frame;
    }
    return 0;
}
