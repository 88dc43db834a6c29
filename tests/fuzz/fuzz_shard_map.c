/*
 * fuzz_shard_map.c - libFuzzer target for the shard-map parser
 * (proto/shard_map.c), which servers (--shard-map) and the client library
 * both use.
 *
 * The input is the map's JSON text, parsed from memory with
 * paramd_shard_map_parse (the text is not NUL-terminated: the parser must
 * honour the length).  A map that parses is checked against its contract
 * (shards sorted by id, each with an address) and used for placement:
 * owners of a few tensor names and the ranges of split tensors.
 *
 *   make fuzz                    every target for FUZZ_SECONDS each
 *   make test                    replays tests/fuzz/corpus/shard_map/ and
 *                                tests/fuzz/crashes/shard_map/
 */
#include "shard_map.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: ASan sees any read past the text. */
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    paramd_shard_map map;
    char why[256];
    if (paramd_shard_map_parse(text, size, &map, why, sizeof why) == 0) {
        if (map.shard_count == 0 || map.shard_count > PARAMD_SHARD_MAX_SHARDS ||
            map.version < 1 || map.split_threshold < 1)
            abort();
        for (uint32_t i = 0; i < map.shard_count; i++)
            if (map.shards[i].id != i ||
                (map.shards[i].http_port == 0 && map.shards[i].tcp_port == 0) ||
                strnlen(map.shards[i].http_host, sizeof map.shards[i].http_host) ==
                    sizeof map.shards[i].http_host ||
                strnlen(map.shards[i].tcp_host, sizeof map.shards[i].tcp_host) ==
                    sizeof map.shards[i].tcp_host)
                abort();
        static const char *const names[] = {"w", "layers.0.weight", "b"};
        for (size_t n = 0; n < sizeof names / sizeof names[0]; n++)
            if (paramd_shard_owner(&map, "model", names[n]) >= map.shard_count)
                abort();
        /* Split tensors of up to 2^40 elements (the largest tensor). */
        static const uint64_t counts[] = {1, 7, 4194305, UINT64_C(1) << 40};
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            if (!paramd_shard_splits(&map, counts[c]))
                continue;
            uint64_t next = 0;
            for (uint32_t k = 0; k < map.shard_count; k++) {
                uint64_t offset, length;
                paramd_shard_range(counts[c], map.shard_count, k, &offset, &length);
                if (offset != next)
                    abort();
                next = offset + length;
            }
            if (next != counts[c])
                abort();
        }
        paramd_shard_map_free(&map);
    } else if (map.shards != NULL) {
        abort(); /* a refused map must hold nothing */
    }
    free(text);
    return 0;
}
