/*
 * sharded_models.c - the control plane of a sharded handle: create,
 * delete, describe, list and stats go to every shard at once, and their
 * answers are merged into one JSON document (jansson) that keeps every
 * shard's own document inside, under "shards".
 *
 * Every operation first connects every shard and refuses, naming the
 * shard, when one cannot be reached: a model created or deleted on some
 * shards only would be worse than an error.  A create that a shard
 * refuses is undone: the model is deleted again from the shards that
 * created it.
 */
#define _DEFAULT_SOURCE
#include "sharded.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9)) /* as the servers write */

/* One control request to each shard flagged in `which` (NULL: every
 * shard), all at once; pending[s] gets shard s's answer and status[s] its
 * transport error or the server's code.  Fails (before sending anything)
 * when a shard cannot be connected. */
static int control_all(paramd_client *parent, uint8_t opcode, const char *model,
                       const char *body, const bool *which, int64_t deadline,
                       paramd__pending *pending, int *status)
{
    paramd__sharded *sharded = parent->sharded;
    uint32_t n = sharded->map.shard_count, count = 0;
    for (uint32_t s = 0; s < n; s++) {
        paramd__pending_init(&pending[s], opcode, 0);
        status[s] = PARAMD_OK;
    }
    for (uint32_t s = 0; s < n; s++) {
        if (which && !which[s])
            continue;
        int result = paramd__shard_ensure(parent, s, deadline);
        if (result != PARAMD_OK)
            return result;
    }
    paramd__exchange *exchanges = calloc(n, sizeof *exchanges);
    if (exchanges == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    for (uint32_t s = 0; s < n; s++) {
        if (which && !which[s])
            continue;
        paramd_client *shard = sharded->shards[s];
        shard->scratch.size = 0;
        pending[s].request_id = paramd__take_id(shard);
        paramd__control_request request = {opcode, pending[s].request_id, model, body,
                                           body ? strlen(body) : 0};
        int result = paramd__buffer_encode(shard, &shard->scratch, paramd__encode_control,
                                           &request);
        if (result != PARAMD_OK) {
            free(exchanges);
            return paramd__shard_fail(parent, s, result, shard->message);
        }
        exchanges[count++] = (paramd__exchange){.client = shard,
                                                .out = shard->scratch.data,
                                                .size = shard->scratch.size,
                                                .pending = &pending[s],
                                                .count = 1};
    }
    paramd__wire_exchange_many(exchanges, count, deadline);
    for (uint32_t s = 0, k = 0; s < n; s++) {
        if (which && !which[s])
            continue;
        status[s] = exchanges[k].result != PARAMD_OK ? exchanges[k].result : pending[s].status;
        k++;
    }
    free(exchanges);
    return PARAMD_OK;
}

static void clear_all(paramd__pending *pending, uint32_t n)
{
    for (uint32_t s = 0; s < n; s++)
        paramd__pending_clear(&pending[s]);
}

/* The first shard whose status is not OK (and not `tolerated`), or n. */
static uint32_t first_failure(const int *status, uint32_t n, int tolerated)
{
    for (uint32_t s = 0; s < n; s++)
        if (status[s] != PARAMD_OK && status[s] != tolerated)
            return s;
    return n;
}

/* The shard's failure: the server's message, or the handle's for a
 * transport error. */
static int fail_shard(paramd_client *parent, uint32_t s, int status, const paramd__pending *p)
{
    return paramd__shard_fail(parent, s, status,
                              p->message ? p->message : parent->sharded->shards[s]->message);
}

/* "127.0.0.1:8471", shard s's address. */
static json_t *address_of(const paramd_client *parent, uint32_t s)
{
    const paramd_client *shard = parent->sharded->shards[s];
    char text[128];
    snprintf(text, sizeof text, "%s:%d", shard->host, shard->port);
    return json_string(text);
}

/* Dumps the document into *json (consumes it). */
static int give_document(paramd_client *parent, json_t *document, char **json)
{
    char *text = document ? json_dumps(document, DUMP_FLAGS) : NULL;
    json_decref(document);
    if (text == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for a merged document");
    if (json)
        *json = text;
    else
        free(text);
    return paramd__succeed(parent);
}

/* ---------------------------------------------------------------------------
 * Merged documents
 * ------------------------------------------------------------------------- */

static json_int_t integer_of(const json_t *object, const char *key)
{
    return json_integer_value(json_object_get(object, key));
}

/* {"name", "shard_map_version", "step" (the smallest), "parameters" and
 * "memory_bytes" (the sums), "shards": [{"id", "tcp", "description"}]}
 * from every shard's description of the model. */
static json_t *merge_descriptions(const paramd_client *parent, const char *model,
                                  const paramd__pending *pending)
{
    uint32_t n = parent->sharded->map.shard_count;
    json_t *shards = json_array();
    json_int_t step = -1, parameters = 0, memory = 0;
    for (uint32_t s = 0; shards && s < n; s++) {
        json_t *description = json_loads(pending[s].json ? pending[s].json : "", 0, NULL);
        if (!json_is_object(description)) {
            json_decref(description);
            json_decref(shards);
            return NULL;
        }
        json_int_t shard_step = integer_of(description, "step");
        step = step < 0 || shard_step < step ? shard_step : step;
        parameters += integer_of(description, "parameters");
        memory += integer_of(description, "memory_bytes");
        json_array_append_new(shards, json_pack("{s:I,s:o,s:o}", "id", (json_int_t)s, "tcp",
                                                address_of(parent, s), "description",
                                                description));
    }
    if (shards == NULL)
        return NULL;
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:o}", "name", model, "shard_map_version",
                     (json_int_t)parent->sharded->map.version, "step", step, "parameters",
                     parameters, "memory_bytes", memory, "shards", shards);
}

/* {"models": [{"name", "optimizer", "parameters" (the sum), "step" (the
 * smallest), "shards": [ids that have it]}]}, in the order the shards
 * list them. */
static json_t *merge_lists(const paramd_client *parent, const paramd__pending *pending)
{
    uint32_t n = parent->sharded->map.shard_count;
    json_t *models = json_array(), *by_name = json_object();
    for (uint32_t s = 0; models && by_name && s < n; s++) {
        json_t *list = json_loads(pending[s].json ? pending[s].json : "", 0, NULL);
        size_t i;
        json_t *entry;
        json_array_foreach(json_object_get(list, "models"), i, entry) {
            const char *name = json_string_value(json_object_get(entry, "name"));
            if (name == NULL)
                continue;
            json_t *merged = json_object_get(by_name, name);
            if (merged == NULL) {
                merged = json_pack("{s:s,s:O,s:I,s:I,s:[]}", "name", name, "optimizer",
                                   json_object_get(entry, "optimizer"), "parameters",
                                   integer_of(entry, "parameters"), "step",
                                   integer_of(entry, "step"), "shards");
                if (merged == NULL)
                    continue;
                json_object_set(by_name, name, merged);
                json_array_append_new(models, merged);
            } else {
                json_object_set_new(merged, "parameters",
                                    json_integer(integer_of(merged, "parameters") +
                                                 integer_of(entry, "parameters")));
                if (integer_of(entry, "step") < integer_of(merged, "step"))
                    json_object_set_new(merged, "step", json_integer(integer_of(entry, "step")));
            }
            json_array_append_new(json_object_get(merged, "shards"), json_integer(s));
        }
        json_decref(list);
    }
    json_decref(by_name);
    return models ? json_pack("{s:o}", "models", models) : NULL;
}

/* {"shard_map_version", "models" (distinct), "pushes" and "pulls" (the
 * sums), "shards": [{"id", "tcp", "stats"}]} from every shard's counters. */
static json_t *merge_stats(const paramd_client *parent, const paramd__pending *pending)
{
    uint32_t n = parent->sharded->map.shard_count;
    json_t *shards = json_array();
    json_int_t pushes = 0, pulls = 0;
    for (uint32_t s = 0; shards && s < n; s++) {
        json_t *stats = json_loads(pending[s].json ? pending[s].json : "", 0, NULL);
        if (!json_is_object(stats)) {
            json_decref(stats);
            json_decref(shards);
            return NULL;
        }
        pushes += integer_of(stats, "pushes");
        pulls += integer_of(stats, "pulls");
        json_array_append_new(shards, json_pack("{s:I,s:o,s:o}", "id", (json_int_t)s, "tcp",
                                                address_of(parent, s), "stats", stats));
    }
    if (shards == NULL)
        return NULL;
    return json_pack("{s:I,s:I,s:I,s:o}", "shard_map_version",
                     (json_int_t)parent->sharded->map.version, "pushes", pushes, "pulls", pulls,
                     "shards", shards);
}

/* ---------------------------------------------------------------------------
 * The operations
 * ------------------------------------------------------------------------- */

int paramd__sharded_create(paramd_client *parent, const char *model, const char *json,
                           char **description)
{
    if (paramd__sharded_check(parent) != PARAMD_OK)
        return parent->error;
    uint32_t n = parent->sharded->map.shard_count;
    int64_t deadline = paramd__deadline(parent->timeout_ms);
    paramd__placement_drop(parent, model);
    paramd__pending *pending = calloc(n, sizeof *pending);
    int *status = calloc(n, sizeof *status);
    bool *created = calloc(n, sizeof *created);
    int result;
    if (pending == NULL || status == NULL || created == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
        goto done;
    }
    result = control_all(parent, PARAMD_OP_CREATE, model, json, NULL, deadline, pending, status);
    if (result != PARAMD_OK)
        goto done;
    uint32_t failed = first_failure(status, n, PARAMD_OK), created_count = 0;
    if (failed == n) {
        result = give_document(parent, merge_descriptions(parent, model, pending), description);
        goto done;
    }
    /* Undo: delete the model from the shards that created it. */
    for (uint32_t s = 0; s < n; s++) {
        created[s] = status[s] == PARAMD_OK;
        created_count += created[s];
    }
    char why[PARAMD__MESSAGE_SIZE], list[256];
    snprintf(why, sizeof why, "%s",
             pending[failed].message ? pending[failed].message
                                     : parent->sharded->shards[failed]->message);
    int code = status[failed];
    size_t used = strlen(why);
    if (created_count > 0) {
        paramd__pending *undo = calloc(n, sizeof *undo);
        int *undone = calloc(n, sizeof *undone);
        paramd__shard_list_text(created, n, list, sizeof list);
        if (undo && undone &&
            control_all(parent, PARAMD_OP_DELETE, model, NULL, created, deadline, undo, undone) ==
                PARAMD_OK &&
            first_failure(undone, n, PARAMD_OK) == n)
            snprintf(why + used, sizeof why - used,
                     "; nothing was created (the model was deleted again from shard%s %s)",
                     created_count > 1 ? "s" : "", list);
        else
            snprintf(why + used, sizeof why - used,
                     "; the model was created on shard%s %s and could not be deleted again "
                     "from all of them: delete it",
                     created_count > 1 ? "s" : "", list);
        if (undo)
            clear_all(undo, n);
        free(undo);
        free(undone);
    }
    used = strlen(why);
    if (code == PARAMD_E_CONNECTION || code == PARAMD_E_TIMEOUT)
        snprintf(why + used, sizeof why - used,
                 "; shard %u may have created it before its connection failed", failed);
    result = paramd__shard_fail(parent, failed, code, why);
done:
    if (pending)
        clear_all(pending, n);
    free(pending);
    free(status);
    free(created);
    return result;
}

int paramd__sharded_delete(paramd_client *parent, const char *model)
{
    if (paramd__sharded_check(parent) != PARAMD_OK)
        return parent->error;
    uint32_t n = parent->sharded->map.shard_count;
    paramd__placement_drop(parent, model);
    paramd__pending *pending = calloc(n, sizeof *pending);
    int *status = calloc(n, sizeof *status);
    int result;
    if (pending == NULL || status == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    } else {
        result = control_all(parent, PARAMD_OP_DELETE, model, NULL, NULL,
                             paramd__deadline(parent->timeout_ms), pending, status);
        uint32_t failed = first_failure(status, n, PARAMD_E_MODEL_NOT_FOUND);
        bool found = false; /* some shard had the model */
        for (uint32_t s = 0; s < n; s++)
            found |= status[s] == PARAMD_OK;
        if (result == PARAMD_OK && failed < n) {
            bool *deleted = calloc(n, sizeof *deleted);
            char why[PARAMD__MESSAGE_SIZE], list[256] = "";
            uint32_t deleted_count = 0;
            for (uint32_t s = 0; deleted && s < n; s++) {
                deleted[s] = status[s] == PARAMD_OK;
                deleted_count += deleted[s];
            }
            if (deleted && found)
                paramd__shard_list_text(deleted, n, list, sizeof list);
            size_t used = (size_t)snprintf(why, sizeof why, "%s",
                                           pending[failed].message
                                               ? pending[failed].message
                                               : parent->sharded->shards[failed]->message);
            if (list[0] && used < sizeof why)
                snprintf(why + used, sizeof why - used, "; shard%s %s deleted it",
                         deleted_count > 1 ? "s" : "", list);
            free(deleted);
            result = paramd__shard_fail(parent, failed, status[failed], why);
        } else if (result == PARAMD_OK && !found)
            result = paramd__fail(parent, PARAMD_E_MODEL_NOT_FOUND,
                                  "no model \"%s\" on any of the %u shards of %s", model, n,
                                  parent->sharded->path);
        else if (result == PARAMD_OK)
            result = paramd__succeed(parent);
        clear_all(pending, n);
    }
    free(pending);
    free(status);
    return result;
}

int paramd__sharded_document(paramd_client *parent, uint8_t opcode, const char *model,
                             char **json)
{
    if (paramd__sharded_check(parent) != PARAMD_OK)
        return parent->error;
    uint32_t n = parent->sharded->map.shard_count;
    bool describe = opcode == PARAMD_OP_STATS && model && model[0];
    paramd__pending *pending = calloc(n, sizeof *pending);
    int *status = calloc(n, sizeof *status);
    int result;
    if (pending == NULL || status == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
        goto done;
    }
    result = control_all(parent, opcode, model, NULL, NULL, paramd__deadline(parent->timeout_ms),
                         pending, status);
    if (result != PARAMD_OK)
        goto done;
    uint32_t failed = first_failure(status, n, describe ? PARAMD_E_MODEL_NOT_FOUND : PARAMD_OK);
    if (failed < n) {
        result = fail_shard(parent, failed, status[failed], &pending[failed]);
        goto done;
    }
    if (describe && first_failure(status, n, PARAMD_OK) < n) {
        bool *missing = calloc(n, sizeof *missing);
        for (uint32_t s = 0; missing && s < n; s++)
            missing[s] = status[s] == PARAMD_E_MODEL_NOT_FOUND;
        result = missing ? paramd__sharded_missing(parent, model, missing)
                         : paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
        free(missing);
        goto done;
    }
    json_t *merged = describe ? merge_descriptions(parent, model, pending)
                     : opcode == PARAMD_OP_LIST ? merge_lists(parent, pending)
                                                : merge_stats(parent, pending);
    result = give_document(parent, merged, json);
done:
    if (pending)
        clear_all(pending, n);
    free(pending);
    free(status);
    return result;
}
