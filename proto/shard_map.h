/*
 * shard_map.h - the shard map (which paramd instances form one parameter
 * service) and the placement of tensors on them.
 *
 * Servers and clients both use this file, so that they always agree on
 * which shard owns what; docs/SHARDING.md is the specification for clients
 * in other languages.
 *
 * A shard map is a JSON file:
 *   {"version": 3,
 *    "split_threshold": 4194304,
 *    "shards": [{"id": 0, "http": "127.0.0.1:8470", "tcp": "127.0.0.1:8471"},
 *               {"id": 1, "http": "127.0.0.1:8480", "tcp": "127.0.0.1:8481"}]}
 * version: a positive integer the operator increases whenever the map
 * changes; servers put theirs in every not_owner error, so a client with a
 * stale map notices.  split_threshold (optional, default
 * PARAMD_SHARD_DEFAULT_SPLIT_THRESHOLD): tensors with more elements than
 * this are split over all shards.  Shard ids are 0 to count - 1, each once,
 * in any order.
 *
 * Placement of tensor T of model M (with `count` elements):
 *   - whole, when count <= split_threshold, the tensor's optimizer needs
 *     the whole tensor (LAMB, LARS, Adafactor, Muon, LBFGS) or the tensor
 *     has a max_norm or orthogonal constraint: on the shard with the
 *     highest rendezvous score
 *         score(id) = mix(hash("M/T") ^ mix(id + 1)),
 *     hash = 64-bit FNV-1a of the bytes of M, "/", T, and mix = SplitMix64's
 *     finaliser (below); ties go to the lower id.  Adding a shard moves only
 *     the tensors the new shard wins, about 1/count of them.
 *   - split, otherwise: shard id k owns the contiguous range
 *         [floor(k * count / n), floor((k + 1) * count / n))
 *     of the tensor's elements in row-major order, n the number of shards.
 *
 * The parser (jansson) allocates the map's shard list; every error names
 * the field (tests/unit/test_shard_map.c tries each).
 */
#ifndef PARAMD_PROTO_SHARD_MAP_H
#define PARAMD_PROTO_SHARD_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMD_SHARD_DEFAULT_SPLIT_THRESHOLD (UINT64_C(4) << 20)
#define PARAMD_SHARD_MAX_SHARDS 1024

typedef struct paramd_shard {
    uint32_t id;
    char http_host[64];
    unsigned short http_port; /* 0: none given */
    char tcp_host[64];
    unsigned short tcp_port;  /* 0: none given */
} paramd_shard;

typedef struct paramd_shard_map {
    uint64_t version;
    uint64_t split_threshold;
    uint32_t shard_count;
    paramd_shard *shards; /* shard_count entries, sorted by id (so shards[i].id == i) */
} paramd_shard_map;

/* Parses a shard map from JSON text.  Returns 0, or a negative PARAMD_E_*
 * code with a message naming the field in `why`.  On success free the map
 * with paramd_shard_map_free. */
int paramd_shard_map_parse(const char *text, size_t length, paramd_shard_map *map, char *why,
                           size_t why_size);

/* Reads and parses a shard-map file. */
int paramd_shard_map_load(const char *path, paramd_shard_map *map, char *why, size_t why_size);

void paramd_shard_map_free(paramd_shard_map *map);

/* The rendezvous owner of a whole tensor. */
uint32_t paramd_shard_owner(const paramd_shard_map *map, const char *model, const char *tensor);

/* Whether a tensor of `count` elements is split over the shards (callers
 * also keep whole every tensor whose optimizer needs all of it). */
static inline bool paramd_shard_splits(const paramd_shard_map *map, uint64_t count)
{
    return map->shard_count > 1 && count > map->split_threshold;
}

/* The range of a split tensor that shard `index` owns. */
void paramd_shard_range(uint64_t count, uint32_t shard_count, uint32_t index, uint64_t *offset,
                        uint64_t *length);

/* The placement hash's pieces, for tests and other-language clients. */
uint64_t paramd_shard_hash(const char *model, const char *tensor);
uint64_t paramd_shard_mix(uint64_t x);

#endif
