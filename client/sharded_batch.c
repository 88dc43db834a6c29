/*
 * sharded_batch.c - pipelined batches on a sharded handle.
 *
 * Queuing a request plans it as a single call is planned
 * (paramd__routed_plan) and appends each involved shard's part to that
 * shard's own frame buffer, so that running the batch is one parallel
 * exchange in which every shard receives all its frames pipelined while
 * the others receive theirs.  Each request's parts are then merged as a
 * single call's are (paramd__routed_merge), into the batch's result for
 * that request.  As with a batch on one server, nothing is retried: a part
 * a shard refuses fails its request, and a shard that reconnected between
 * queuing and running (its ids may be stale) fails its parts unsent.
 */
#include "sharded.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_PART SIZE_MAX

typedef struct batch_request {
    uint8_t opcode;
    bool has_norm;
    double norm;
    char *model;
    size_t *part;                  /* per shard: the index of its part, or NO_PART */
} batch_request;

struct paramd__sharded_batch {
    uint32_t n;                    /* the shard count when the batch began */
    paramd__buffer *frames;        /* per shard: its parts' frames, in order */
    paramd__pending **parts;       /* per shard: counts[s] parts */
    size_t *counts, *capacities;
    uint64_t *generations;         /* per shard: the connection its parts' ids belong to */
    batch_request *requests;
    size_t request_count, request_capacity;
};

void paramd__sharded_batch_free(paramd__sharded_batch *batch)
{
    if (batch == NULL)
        return;
    for (uint32_t s = 0; s < batch->n; s++) {
        for (size_t k = 0; batch->parts && batch->parts[s] && k < batch->counts[s]; k++)
            paramd__data_release(&batch->parts[s][k]);
        if (batch->parts)
            free(batch->parts[s]);
        if (batch->frames)
            paramd__buffer_free(&batch->frames[s]);
    }
    for (size_t i = 0; i < batch->request_count; i++) {
        free(batch->requests[i].model);
        free(batch->requests[i].part);
    }
    free(batch->requests);
    free(batch->frames);
    free(batch->parts);
    free(batch->counts);
    free(batch->capacities);
    free(batch->generations);
    free(batch);
}

static paramd__sharded_batch *batch_new(uint32_t n)
{
    paramd__sharded_batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL)
        return NULL;
    batch->n = n;
    batch->frames = calloc(n, sizeof *batch->frames);
    batch->parts = calloc(n, sizeof *batch->parts);
    batch->counts = calloc(n, sizeof *batch->counts);
    batch->capacities = calloc(n, sizeof *batch->capacities);
    batch->generations = calloc(n, sizeof *batch->generations);
    if (batch->frames == NULL || batch->parts == NULL || batch->counts == NULL ||
        batch->capacities == NULL || batch->generations == NULL) {
        paramd__sharded_batch_free(batch);
        return NULL;
    }
    return batch;
}

/* Room for one more part on shard s. */
static bool room_for_part(paramd__sharded_batch *batch, uint32_t s)
{
    if (batch->counts[s] < batch->capacities[s])
        return true;
    size_t capacity = batch->capacities[s] ? 2 * batch->capacities[s] : 64;
    paramd__pending *grown = realloc(batch->parts[s], capacity * sizeof *grown);
    if (grown == NULL)
        return false;
    batch->parts[s] = grown;
    batch->capacities[s] = capacity;
    return true;
}

/* Room for one more request. */
static bool room_for_request(paramd__sharded_batch *batch)
{
    if (batch->request_count < batch->request_capacity)
        return true;
    size_t capacity = batch->request_capacity ? 2 * batch->request_capacity : 64;
    batch_request *grown = realloc(batch->requests, capacity * sizeof *grown);
    if (grown == NULL)
        return false;
    batch->requests = grown;
    batch->request_capacity = capacity;
    return true;
}

/* Appends the request's part for every involved shard, or none: a
 * failure takes back the frames and parts already added. */
static int add_parts(paramd_client *parent, paramd__sharded_batch *batch,
                     const paramd__placement *placement, const paramd__routed *routed,
                     const paramd_push_options *options, size_t *part)
{
    uint32_t n = batch->n;
    size_t *sizes = malloc(n * sizeof *sizes);
    if (sizes == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for a batch");
    int result = PARAMD_OK;
    for (uint32_t s = 0; s < n; s++) {
        part[s] = NO_PART;
        sizes[s] = batch->frames[s].size;
    }
    for (uint32_t s = 0; s < n && result == PARAMD_OK; s++) {
        if (routed->counts[s] == 0)
            continue;
        if (batch->counts[s] > 0 && batch->generations[s] != placement->generations[s])
            result = paramd__fail(parent, PARAMD_E_CONNECTION,
                                  "batch: shard %u reconnected since the batch began; run it, "
                                  "or begin a new one",
                                  s);
        else if (!room_for_part(batch, s))
            result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for a batch");
        else
            result = paramd__routed_encode(parent, placement, routed, options, s,
                                           &batch->frames[s], &batch->parts[s][batch->counts[s]]);
        if (result == PARAMD_OK) {
            batch->generations[s] = placement->generations[s];
            part[s] = batch->counts[s]++;
        }
    }
    for (uint32_t s = 0; result != PARAMD_OK && s < n; s++) {
        if (part[s] == NO_PART)
            continue;
        paramd__data_release(&batch->parts[s][--batch->counts[s]]);
        batch->frames[s].size = sizes[s];
    }
    free(sizes);
    return result;
}

int paramd__sharded_batch_queue(paramd_client *parent, paramd__sharded_batch **state,
                                uint8_t opcode, const char *model,
                                const paramd_push_item *push_items,
                                const paramd_pull_item *pull_items, size_t count,
                                const paramd_push_options *options, int pull_dtype,
                                paramd__pending *merged)
{
    int result = paramd__data_check_arguments(parent, opcode, model, push_items, pull_items, count,
                                              paramd__data_dtype(pull_items, options, pull_dtype));
    if (result != PARAMD_OK)
        return result;
    paramd__placement *placement;
    bool from_cache;
    result = paramd__placement_get(parent, model, paramd__deadline(parent->timeout_ms),
                                   &placement, &from_cache);
    if (result != PARAMD_OK)
        return result;
    uint32_t n = parent->sharded->map.shard_count;
    if (*state == NULL && (*state = batch_new(n)) == NULL)
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for a batch");
    paramd__sharded_batch *batch = *state;
    if (batch->n != n)
        return paramd__fail(parent, PARAMD_E_INVALID_ARGUMENT,
                            "batch: the shard map was reloaded since the batch began (%u shards, "
                            "now %u); begin a new batch",
                            batch->n, n);
    batch_request request = {opcode, false, 0, strdup(model), malloc(n * sizeof(size_t))};
    if (request.model == NULL || request.part == NULL || !room_for_request(batch)) {
        free(request.model);
        free(request.part);
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for a batch");
    }
    paramd__routed routed;
    result = paramd__routed_plan(parent, placement, opcode, model, push_items, pull_items, count,
                                 options, pull_dtype, &routed);
    if (result == PARAMD_OK) {
        request.has_norm = routed.has_norm;
        request.norm = routed.norm;
        result = add_parts(parent, batch, placement, &routed, options, request.part);
        paramd__routed_free(&routed);
    }
    if (result != PARAMD_OK) {
        free(request.model);
        free(request.part);
        return result;
    }
    batch->requests[batch->request_count++] = request;
    paramd__pending_init(merged, opcode, 0);
    return PARAMD_OK;
}

/* Gives every part of shard s the error, unsent. */
static void fail_parts(paramd__sharded_batch *batch, uint32_t s, int code, const char *message)
{
    for (size_t k = 0; k < batch->counts[s]; k++) {
        paramd__pending *part = &batch->parts[s][k];
        part->answered = true;
        part->status = code;
        free(part->message);
        part->message = strdup(message);
    }
}

int paramd__sharded_batch_run(paramd_client *parent, paramd__sharded_batch *batch,
                              paramd__pending *merged, size_t count)
{
    paramd__sharded *sharded = parent->sharded;
    if (batch == NULL || count == 0)
        return PARAMD_OK;
    uint32_t n = batch->n;
    if (sharded->map.shard_count != n) {
        for (uint32_t s = 0; s < n; s++)
            fail_parts(batch, s, PARAMD_E_INVALID_ARGUMENT,
                       "the shard map was reloaded since the batch was queued");
        n = 0;
    }
    int64_t deadline = paramd__deadline(parent->timeout_ms);
    paramd__exchange *exchanges = calloc(n ? n : 1, sizeof *exchanges);
    paramd__pending **pending = calloc(n ? n : 1, sizeof *pending);
    int *status = calloc(n ? n : 1, sizeof *status);
    if (exchanges == NULL || pending == NULL || status == NULL) {
        free(exchanges);
        free(pending);
        free(status);
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    }
    uint32_t involved = 0;
    for (uint32_t s = 0; s < n; s++) {
        if (batch->counts[s] == 0)
            continue;
        paramd_client *shard = sharded->shards[s];
        int result = paramd__shard_ensure(parent, s, deadline);
        if (result == PARAMD_OK && shard->connection_generation != batch->generations[s])
            result = paramd__shard_fail(parent, s, PARAMD_E_CONNECTION,
                                        "the shard reconnected after these requests were "
                                        "queued (their ids may be stale); nothing was sent to it");
        if (result != PARAMD_OK) {
            fail_parts(batch, s, result, parent->message);
            continue;
        }
        exchanges[involved++] = (paramd__exchange){.client = shard,
                                                   .out = batch->frames[s].data,
                                                   .size = batch->frames[s].size,
                                                   .pending = batch->parts[s],
                                                   .count = batch->counts[s]};
    }
    paramd__wire_exchange_many(exchanges, involved, deadline);
    /* Each request's parts, merged as a single call's. */
    for (size_t i = 0; i < count && i < batch->request_count; i++) {
        const batch_request *request = &batch->requests[i];
        for (uint32_t s = 0; s < n; s++) {
            pending[s] = request->part[s] == NO_PART ? NULL : &batch->parts[s][request->part[s]];
            status[s] = pending[s] ? pending[s]->status : PARAMD_OK;
        }
        paramd__placement *placement = NULL;
        for (paramd__placement *p = sharded->models; p; p = p->next)
            if (strcmp(p->model, request->model) == 0)
                placement = p;
        for (uint32_t s = 0; placement && s < n; s++)
            if (pending[s] && placement->generations[s] != batch->generations[s])
                placement = NULL; /* learnt again since: its steps are not these */
        paramd__routed routed = {.opcode = request->opcode,
                                 .has_norm = request->has_norm,
                                 .norm = request->norm};
        paramd__pending *out = &merged[i];
        int result = n ? paramd__routed_merge(parent, placement, &routed, pending, status,
                                              &out->push)
                       : paramd__fail(parent, PARAMD_E_INVALID_ARGUMENT,
                                      "the shard map was reloaded since the batch was queued");
        out->answered = true;
        out->status = result;
        if (result != PARAMD_OK) {
            out->message = strdup(parent->message);
            for (uint32_t s = 0; s < n; s++)
                if (status[s] == PARAMD_E_MODEL_NOT_FOUND || status[s] == PARAMD_E_NOT_OWNER)
                    paramd__placement_invalidate(parent, request->model);
        }
    }
    free(exchanges);
    free(pending);
    free(status);
    return PARAMD_OK;
}
