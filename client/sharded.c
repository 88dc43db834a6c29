/*
 * sharded.c - a handle opened from a shard map: the shards' own handles,
 * reloading the map, errors that name a shard, and the paramd_shard_*
 * accessors.  See sharded.h for how the sharded client is laid out and
 * include/paramd/client.h ("Sharded handles") for the contracts.
 */
#define _DEFAULT_SOURCE
#include "sharded.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The settings the shards' handles take from the parent's config. */
typedef struct shard_settings {
    int connect_timeout_ms, timeout_ms;
    const char *token, *client_name;
    uint32_t max_reply_bytes;
} shard_settings;

static void close_shards(paramd__sharded *sharded)
{
    for (uint32_t i = 0; sharded->shards && i < sharded->map.shard_count; i++)
        paramd_close(sharded->shards[i]);
    free(sharded->shards);
    sharded->shards = NULL;
}

/* Makes one handle per shard of `map` (not connected).  A shard without a
 * TCP address cannot be reached by this library: that is the map's error. */
static int make_shards(paramd_client *parent, const paramd_shard_map *map,
                       const shard_settings *settings, paramd_client ***shards)
{
    paramd_client **list = calloc(map->shard_count, sizeof *list);
    if (list == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for %u shards",
                            map->shard_count);
    int result = PARAMD_OK;
    for (uint32_t i = 0; i < map->shard_count && result == PARAMD_OK; i++) {
        const paramd_shard *shard = &map->shards[i];
        if (shard->tcp_port == 0) {
            result = paramd__fail(parent, PARAMD_E_INVALID_ARGUMENT,
                                  "shard map %s: shard %u has no \"tcp\" address, which the C "
                                  "client needs",
                                  parent->sharded->path, i);
            break;
        }
        paramd_config config = {.host = shard->tcp_host,
                                .port = shard->tcp_port,
                                .connect_timeout_ms = settings->connect_timeout_ms,
                                .timeout_ms = settings->timeout_ms,
                                .token = settings->token,
                                .client_name = settings->client_name,
                                .max_reply_bytes = settings->max_reply_bytes};
        int made;
        list[i] = paramd__client_new(&config, false, &made);
        if (list[i] == NULL || made != PARAMD_OK)
            result = paramd__fail(parent, list[i] ? made : PARAMD_E_NO_MEMORY,
                                  "shard map %s: shard %u: %s", parent->sharded->path, i,
                                  list[i] ? list[i]->message : "out of memory");
    }
    if (result != PARAMD_OK) {
        for (uint32_t i = 0; i < map->shard_count; i++)
            paramd_close(list[i]);
        free(list);
        return result;
    }
    *shards = list;
    return PARAMD_OK;
}

/* Connects every shard; the first failure (naming its shard) is the
 * result, and the other shards are connected all the same. */
static int connect_all(paramd_client *parent)
{
    paramd__sharded *sharded = parent->sharded;
    int first = PARAMD_OK;
    char message[PARAMD__MESSAGE_SIZE] = "";
    for (uint32_t i = 0; i < sharded->map.shard_count; i++) {
        paramd_client *shard = sharded->shards[i];
        int result = paramd__wire_connect(shard, paramd__deadline(shard->connect_timeout_ms));
        if (result != PARAMD_OK && first == PARAMD_OK) {
            first = paramd__shard_fail(parent, i, result, shard->message);
            memcpy(message, parent->message, sizeof message);
        }
    }
    if (first == PARAMD_OK)
        return paramd__succeed(parent);
    memcpy(parent->message, message, sizeof message);
    parent->error = first;
    return first;
}

paramd_client *paramd__sharded_open(const paramd_config *config, int *error)
{
    int result;
    paramd_config parent_config = *config;
    parent_config.shard_map = NULL;
    paramd_client *parent = paramd__client_new(&parent_config, true, &result);
    if (parent == NULL) {
        if (error)
            *error = PARAMD_E_NO_MEMORY;
        return NULL;
    }
    /* Without its sharded state the handle would be one of the default
     * server: out of memory is NULL here. */
    paramd__sharded *sharded = calloc(1, sizeof *sharded);
    if (sharded == NULL || (sharded->path = strdup(config->shard_map)) == NULL) {
        free(sharded);
        paramd_close(parent);
        if (error)
            *error = PARAMD_E_NO_MEMORY;
        return NULL;
    }
    parent->sharded = sharded;
    if (result != PARAMD_OK)
        goto done;
    if (config->host || config->port) {
        result = paramd__fail(parent, PARAMD_E_INVALID_ARGUMENT,
                              "a config with a shard map takes its addresses from the map: leave "
                              "host and port unset");
        goto done;
    }
    char why[PARAMD__MESSAGE_SIZE - 64];
    result = paramd_shard_map_load(sharded->path, &sharded->map, why, sizeof why);
    if (result != PARAMD_OK) {
        result = paramd__fail(parent, result, "%s", why);
        goto done;
    }
    shard_settings settings = {parent->connect_timeout_ms, parent->timeout_ms, parent->token,
                               parent->client_name, parent->max_reply_bytes};
    result = make_shards(parent, &sharded->map, &settings, &sharded->shards);
    if (result == PARAMD_OK)
        result = connect_all(parent);
done:
    if (error)
        *error = result;
    return parent;
}

void paramd__sharded_free(paramd__sharded *sharded)
{
    paramd__placement_clear(sharded);
    close_shards(sharded);
    paramd_shard_map_free(&sharded->map);
    free(sharded->path);
    sharded->path = NULL;
}

int paramd__sharded_reconnect(paramd_client *parent)
{
    if (paramd__sharded_check(parent) != PARAMD_OK)
        return parent->error;
    paramd__placement_clear(parent->sharded);
    return connect_all(parent);
}

int paramd__sharded_reload(paramd_client *parent, bool *changed)
{
    paramd__sharded *sharded = parent->sharded;
    *changed = false;
    paramd_shard_map map;
    char why[PARAMD__MESSAGE_SIZE - 64];
    int result = paramd_shard_map_load(sharded->path, &map, why, sizeof why);
    if (result != PARAMD_OK)
        return paramd__fail(parent, result, "reloading the shard map: %s", why);
    if (sharded->shards && map.version == sharded->map.version) {
        paramd_shard_map_free(&map);
        return paramd__succeed(parent);
    }
    shard_settings settings = {parent->connect_timeout_ms, parent->timeout_ms, parent->token,
                               parent->client_name, parent->max_reply_bytes};
    paramd_client **shards;
    /* make_shards names the file, which is the same. */
    result = make_shards(parent, &map, &settings, &shards);
    if (result != PARAMD_OK) {
        paramd_shard_map_free(&map);
        return result;
    }
    paramd__placement_clear(sharded);
    close_shards(sharded);
    paramd_shard_map_free(&sharded->map);
    sharded->map = map;
    sharded->shards = shards;
    *changed = true;
    connect_all(parent); /* a shard that is down is connected by the call that needs it */
    return paramd__succeed(parent);
}

int paramd__shard_fail(paramd_client *parent, uint32_t shard, int code, const char *message)
{
    const paramd_client *handle = parent->sharded->shards[shard];
    return paramd__fail(parent, code, "shard %u (%s:%d): %s", shard, handle->host, handle->port,
                        message && message[0] ? message : paramd_strerror(code));
}

int paramd__shard_ensure(paramd_client *parent, uint32_t shard, int64_t deadline)
{
    paramd_client *handle = parent->sharded->shards[shard];
    int result = paramd__wire_ensure(handle, deadline);
    if (result != PARAMD_OK)
        return paramd__shard_fail(parent, shard, result, handle->message);
    return PARAMD_OK;
}

void paramd__shard_list_text(const bool *which, uint32_t shard_count, char *text, size_t size)
{
    uint32_t total = 0, written = 0;
    for (uint32_t i = 0; i < shard_count; i++)
        total += which[i];
    size_t used = 0;
    text[0] = '\0';
    for (uint32_t i = 0; i < shard_count && used < size; i++) {
        if (!which[i])
            continue;
        const char *separator = written == 0 ? "" : written + 1 == total ? " and " : ", ";
        int n = snprintf(text + used, size - used, "%s%u", separator, i);
        used += n > 0 ? (size_t)n : 0;
        written++;
    }
}

int paramd__sharded_check(paramd_client *parent)
{
    if (parent->sharded->shards == NULL)
        return paramd__fail(parent, PARAMD_E_INVALID_ARGUMENT,
                            "shard map %s: the handle has no shards, as opening it failed "
                            "(paramd_reload_shard_map tries again)",
                            parent->sharded->path);
    return PARAMD_OK;
}

int paramd__sharded_missing(paramd_client *parent, const char *model, const bool *missing)
{
    uint32_t n = parent->sharded->map.shard_count, first = 0, missing_count = 0;
    for (uint32_t s = 0; s < n; s++)
        missing_count += missing[s];
    if (missing_count == n)
        return paramd__fail(parent, PARAMD_E_MODEL_NOT_FOUND,
                            "no model \"%s\" on any of the %u shards of %s", model, n,
                            parent->sharded->path);
    bool *present = calloc(n, sizeof *present);
    if (present == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    for (uint32_t s = n; s-- > 0;) {
        present[s] = !missing[s];
        if (missing[s])
            first = s;
    }
    char lacking[256], having[256], message[PARAMD__MESSAGE_SIZE];
    paramd__shard_list_text(missing, n, lacking, sizeof lacking);
    paramd__shard_list_text(present, n, having, sizeof having);
    free(present);
    snprintf(message, sizeof message,
             "no model \"%s\" here, though shard%s %s %s it: shard%s %s lost it (restarted?); "
             "create it there again (paramd_shard_client) or delete it and create it anew",
             model, n - missing_count > 1 ? "s" : "", having,
             n - missing_count > 1 ? "have" : "has", missing_count > 1 ? "s" : "", lacking);
    return paramd__shard_fail(parent, first, PARAMD_E_MODEL_NOT_FOUND, message);
}

/* ---------------------------------------------------------------------------
 * The public accessors
 * ------------------------------------------------------------------------- */

/* The sharded state of a handle with shards, or NULL (the error recorded). */
static paramd__sharded *sharded_of(paramd_client *client, const char *what)
{
    if (client->sharded == NULL) {
        paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                     "%s: the handle was not opened from a shard map", what);
        return NULL;
    }
    return paramd__sharded_check(client) == PARAMD_OK ? client->sharded : NULL;
}

int paramd_shard_count(const paramd_client *client)
{
    if (client == NULL || client->sharded == NULL || client->sharded->shards == NULL)
        return 0;
    return (int)client->sharded->map.shard_count;
}

uint64_t paramd_shard_map_version(const paramd_client *client)
{
    if (client == NULL || client->sharded == NULL)
        return 0;
    return client->sharded->map.version;
}

paramd_client *paramd_shard_client(paramd_client *client, int shard)
{
    if (client == NULL)
        return NULL;
    paramd__sharded *sharded = sharded_of(client, "shard client");
    if (sharded == NULL)
        return NULL;
    if (shard < 0 || (uint32_t)shard >= sharded->map.shard_count) {
        paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "shard %d: the map has shards 0 to %u",
                     shard, sharded->map.shard_count - 1);
        return NULL;
    }
    paramd__succeed(client);
    return sharded->shards[shard];
}

int paramd_shard_steps(paramd_client *client, const char *model, uint64_t *steps, size_t count)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    paramd__sharded *sharded = sharded_of(client, "shard steps");
    if (sharded == NULL)
        return client->error;
    if (model == NULL || steps == NULL || count < sharded->map.shard_count)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "shard steps: give a model and room for %u steps",
                            sharded->map.shard_count);
    paramd__placement *placement;
    bool from_cache;
    int result = paramd__placement_get(client, model, paramd__deadline(client->timeout_ms),
                                       &placement, &from_cache);
    if (result != PARAMD_OK)
        return result;
    memcpy(steps, placement->steps, sharded->map.shard_count * sizeof *steps);
    return paramd__succeed(client);
}

int paramd_reload_shard_map(paramd_client *client)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (client->sharded == NULL)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "reload shard map: the handle was not opened from a shard map");
    bool changed;
    return paramd__sharded_reload(client, &changed);
}
