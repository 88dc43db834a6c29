/* shard_map.c - see shard_map.h. */
#include "shard_map.h"

#include "paramd/paramd.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Parses "HOST:PORT" (IPv4 or [IPv6]) into host and port. */
static bool parse_address(const char *text, char *host, size_t host_size, unsigned short *port)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text)
        return false;
    const char *start = text, *stop = colon;
    if (text[0] == '[') {
        if (colon[-1] != ']')
            return false;
        start = text + 1;
        stop = colon - 1;
    }
    size_t length = (size_t)(stop - start);
    if (length == 0 || length >= host_size)
        return false;
    char *end;
    long value = strtol(colon + 1, &end, 10);
    if (*end != '\0' || value < 1 || value > 65535 || colon[1] == '\0')
        return false;
    memcpy(host, start, length);
    host[length] = '\0';
    *port = (unsigned short)value;
    return true;
}

int paramd_shard_map_parse(const char *text, size_t length, paramd_shard_map *map, char *why,
                           size_t why_size)
{
    memset(map, 0, sizeof *map);
    json_error_t json_error;
    json_t *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL)
        return fail(why, why_size, PARAMD_E_BAD_JSON, "shard map: %s at line %d, column %d",
                    json_error.text, json_error.line, json_error.column);
    int result = PARAMD_OK;
    const char *key;
    json_t *value;
    if (!json_is_object(root)) {
        result = fail(why, why_size, PARAMD_E_BAD_REQUEST, "shard map: must be a JSON object");
        goto done;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "version") && strcmp(key, "shards") && strcmp(key, "split_threshold")) {
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: unknown field \"%.100s\" (expected version, shards, "
                          "split_threshold)",
                          key);
            goto done;
        }
    }
    const json_t *version = json_object_get(root, "version");
    if (!json_is_integer(version) || json_integer_value(version) < 1) {
        result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                      "shard map: version: required, an integer of at least 1");
        goto done;
    }
    map->version = (uint64_t)json_integer_value(version);
    map->split_threshold = PARAMD_SHARD_DEFAULT_SPLIT_THRESHOLD;
    const json_t *threshold = json_object_get(root, "split_threshold");
    if (threshold) {
        if (!json_is_integer(threshold) || json_integer_value(threshold) < 1) {
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: split_threshold: must be an integer of at least 1 "
                          "(elements)");
            goto done;
        }
        map->split_threshold = (uint64_t)json_integer_value(threshold);
    }
    const json_t *shards = json_object_get(root, "shards");
    size_t count = json_array_size(shards);
    if (!json_is_array(shards) || count == 0 || count > PARAMD_SHARD_MAX_SHARDS) {
        result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                      "shard map: shards: required, an array of 1 to %d shards",
                      PARAMD_SHARD_MAX_SHARDS);
        goto done;
    }
    map->shards = calloc(count, sizeof *map->shards);
    if (map->shards == NULL) {
        result = fail(why, why_size, PARAMD_E_NO_MEMORY, "shard map: out of memory");
        goto done;
    }
    map->shard_count = (uint32_t)count;
    bool *seen = calloc(count, sizeof *seen);
    if (seen == NULL)
        result = fail(why, why_size, PARAMD_E_NO_MEMORY, "shard map: out of memory");
    for (size_t i = 0; i < count && result == PARAMD_OK; i++) {
        const json_t *shard = json_array_get(shards, i);
        if (!json_is_object(shard)) {
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: shards[%zu]: must be an object", i);
            break;
        }
        json_object_foreach((json_t *)shard, key, value) {
            if (strcmp(key, "id") && strcmp(key, "http") && strcmp(key, "tcp")) {
                result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                              "shard map: shards[%zu]: unknown field \"%.100s\" (expected id, "
                              "http, tcp)",
                              i, key);
                break;
            }
        }
        if (result != PARAMD_OK)
            break;
        const json_t *id = json_object_get(shard, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (json_int_t)count) {
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: shards[%zu].id: must be an integer from 0 to %zu", i,
                          count - 1);
            break;
        }
        size_t index = (size_t)json_integer_value(id);
        if (seen[index]) {
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: shards[%zu].id: %zu appears twice", i, index);
            break;
        }
        seen[index] = true;
        paramd_shard *entry = &map->shards[index];
        entry->id = (uint32_t)index;
        const char *names[2] = {"http", "tcp"};
        for (int a = 0; a < 2 && result == PARAMD_OK; a++) {
            const json_t *address = json_object_get(shard, names[a]);
            char *host = a ? entry->tcp_host : entry->http_host;
            unsigned short *port = a ? &entry->tcp_port : &entry->http_port;
            if (address == NULL)
                continue;
            if (!json_is_string(address) ||
                !parse_address(json_string_value(address), host, sizeof entry->http_host, port))
                result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                              "shard map: shards[%zu].%s: must be \"HOST:PORT\"", i, names[a]);
        }
        if (result == PARAMD_OK && entry->http_port == 0 && entry->tcp_port == 0)
            result = fail(why, why_size, PARAMD_E_BAD_REQUEST,
                          "shard map: shards[%zu]: needs an http or a tcp address", i);
    }
    free(seen);
done:
    json_decref(root);
    if (result != PARAMD_OK)
        paramd_shard_map_free(map);
    return result;
}

int paramd_shard_map_load(const char *path, paramd_shard_map *map, char *why, size_t why_size)
{
    memset(map, 0, sizeof *map);
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return fail(why, why_size, PARAMD_E_NOT_FOUND, "shard map %s: cannot open it", path);
    char *text = NULL;
    size_t size = 0, capacity = 0;
    for (;;) {
        if (size == capacity) {
            capacity = capacity ? 2 * capacity : 4096;
            if (capacity > (64u << 20)) {
                free(text);
                fclose(file);
                return fail(why, why_size, PARAMD_E_PAYLOAD_TOO_LARGE,
                            "shard map %s: larger than 64 MiB", path);
            }
            char *grown = realloc(text, capacity);
            if (grown == NULL) {
                free(text);
                fclose(file);
                return fail(why, why_size, PARAMD_E_NO_MEMORY, "shard map %s: out of memory",
                            path);
            }
            text = grown;
        }
        size_t n = fread(text + size, 1, capacity - size, file);
        size += n;
        if (n == 0)
            break;
    }
    fclose(file);
    char inner[256] = "";
    int result = paramd_shard_map_parse(text, size, map, inner, sizeof inner);
    free(text);
    if (result != 0)
        fail(why, why_size, result, "%s: %s", path, inner);
    return result;
}

void paramd_shard_map_free(paramd_shard_map *map)
{
    free(map->shards);
    memset(map, 0, sizeof *map);
}

/* ---------------------------------------------------------------------------
 * Placement
 * ------------------------------------------------------------------------- */

uint64_t paramd_shard_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t fnv1a(uint64_t hash, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        hash ^= *p;
        hash *= UINT64_C(0x100000001b3);
    }
    return hash;
}

uint64_t paramd_shard_hash(const char *model, const char *tensor)
{
    uint64_t hash = fnv1a(UINT64_C(0xcbf29ce484222325), model);
    hash = fnv1a(hash, "/");
    return fnv1a(hash, tensor);
}

uint32_t paramd_shard_owner(const paramd_shard_map *map, const char *model, const char *tensor)
{
    uint64_t hash = paramd_shard_hash(model, tensor), best = 0;
    uint32_t owner = 0;
    for (uint32_t id = 0; id < map->shard_count; id++) {
        uint64_t score = paramd_shard_mix(hash ^ paramd_shard_mix((uint64_t)id + 1));
        if (id == 0 || score > best) {
            best = score;
            owner = id;
        }
    }
    return owner;
}

void paramd_shard_range(uint64_t count, uint32_t shard_count, uint32_t index, uint64_t *offset,
                        uint64_t *length)
{
    /* count is at most 2^40 and shard_count at most 1024, so the products
     * fit in 64 bits. */
    uint64_t begin = count * index / shard_count;
    uint64_t end = count * (index + 1) / shard_count;
    *offset = begin;
    *length = end - begin;
}
