/*
 * data.c - pushes and pulls by name: single calls and pipelined batches.
 *
 * Both go through prepare(), which checks the arguments, resolves the model
 * and tensor names through the id cache, encodes one frame (gradients
 * converted to the wire dtype on the way into the frame) and fills the
 * pending request with where each reply item's weights go.  A single call
 * then exchanges its one frame and, when the server says a cached model id
 * is gone, drops it, looks the model up again and retries once; a batch
 * appends frames to its own buffer and exchanges them all in paramd_batch_run.
 */
#include "internal.h"
#include "sharded.h"

#include "half.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------- */

static void narrow(const float *values, uint8_t dtype, uint8_t *out, size_t count)
{
    if (dtype == PARAMD_DTYPE_FLOAT16)
        paramd_float16_encode(values, out, count);
    else if (dtype == PARAMD_DTYPE_BFLOAT16)
        paramd_bfloat16_encode(values, out, count);
    else if (count)
        memcpy(out, values, count * sizeof(float));
}

static void encode_data_frame(paramd__writer *writer, const void *context)
{
    const paramd__data_request *f = context;
    size_t start;
    if (f->opcode == PARAMD_OP_PULL) {
        start = paramd__encode_pull_begin(writer, f->request_id, f->model_id, (uint32_t)f->count);
        for (size_t i = 0; i < f->count; i++)
            paramd__put_item_header(writer, f->items[i].tensor_id, f->dtype, f->items[i].offset,
                                    f->items[i].count);
    } else {
        start = paramd__encode_push_begin(writer, f->opcode, f->request_id, f->model_id,
                                          (uint32_t)f->count, f->flags, f->loss, f->grad_norm,
                                          f->version, f->worker);
        size_t element_size = paramd__dtype_size(f->dtype);
        for (size_t i = 0; i < f->count; i++) {
            const paramd__request_item *item = &f->items[i];
            paramd__put_item_header(writer, item->tensor_id, f->dtype, item->offset, item->count);
            uint8_t *at = paramd__put_reserve(writer, (size_t)item->count * element_size);
            if (at) /* NULL while only counting the size */
                narrow(item->grad, f->dtype, at, (size_t)item->count);
        }
    }
    paramd__frame_end(writer, start);
}

int paramd__data_encode(paramd_client *client, const paramd__data_request *request,
                        paramd__buffer *buffer, paramd__pending *pending)
{
    paramd__sink_item *sinks = calloc(request->count ? request->count : 1, sizeof *sinks);
    if (sinks == NULL)
        return paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for %zu items",
                            request->count);
    for (size_t i = 0; i < request->count; i++) {
        sinks[i].tensor_id = request->items[i].tensor_id;
        sinks[i].dtype = request->dtype;
        sinks[i].offset = request->items[i].offset;
        sinks[i].count = request->items[i].count;
        sinks[i].weights = request->opcode == PARAMD_OP_PUSH ? NULL : request->items[i].weights;
    }
    int result = paramd__buffer_encode(client, buffer, encode_data_frame, request);
    if (result != PARAMD_OK) {
        free(sinks);
        return result;
    }
    paramd__pending_init(pending, request->opcode, request->request_id);
    pending->model_id = request->model_id;
    pending->items = sinks;
    pending->item_count = (uint32_t)request->count;
    return PARAMD_OK;
}

void paramd__data_release(paramd__pending *pending)
{
    paramd__pending_clear(pending);
    free(pending->items);
    pending->items = NULL;
}

/* ---------------------------------------------------------------------------
 * Preparing one request
 * ------------------------------------------------------------------------- */

const char *paramd__data_operation_name(uint8_t opcode)
{
    return opcode == PARAMD_OP_PUSH ? "push" : opcode == PARAMD_OP_PUSHPULL ? "pushpull" : "pull";
}

/* Checks what the server cannot: pointers, counts that would overflow, the
 * dtype.  Everything else (ranges, element counts) is the server's to
 * check, so that its code and message come back. */
int paramd__data_check_arguments(paramd_client *client, uint8_t opcode, const char *model,
                                 const paramd_push_item *push_items,
                                 const paramd_pull_item *pull_items, size_t count, int dtype)
{
    const char *operation = paramd__data_operation_name(opcode);
    if (model == NULL || strlen(model) > UINT16_MAX)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "%s: the model name is %s",
                            operation, model ? "longer than 65535 bytes" : "NULL");
    if (count == 0 || (push_items == NULL && pull_items == NULL))
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "%s %s: name at least one tensor", operation, model);
    if (count > UINT32_MAX)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "%s %s: %zu tensors is too many",
                            operation, model, count);
    if (dtype != 0 && paramd__dtype_size((uint8_t)dtype) == 0)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "%s %s: dtype %d is not PARAMD_DTYPE_FLOAT32, _FLOAT16 or _BFLOAT16",
                            operation, model, dtype);
    size_t element_size = paramd__dtype_size((uint8_t)(dtype ? dtype : PARAMD_DTYPE_FLOAT32));
    uint64_t frame_bytes = 64; /* the fixed fields, the worker name aside */
    for (size_t i = 0; i < count; i++) {
        const char *tensor = push_items ? push_items[i].tensor : pull_items[i].tensor;
        size_t n = push_items ? push_items[i].count : pull_items[i].count;
        if (tensor == NULL)
            return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                                "%s %s: item %zu: the tensor name is NULL", operation, model, i);
        if (strlen(tensor) > UINT16_MAX)
            return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                                "%s %s: item %zu: the tensor name is longer than 65535 bytes",
                                operation, model, i);
        bool no_grad = push_items && push_items[i].grad == NULL && n > 0;
        bool no_weights = (opcode != PARAMD_OP_PUSH) &&
                          (push_items ? push_items[i].weights : pull_items[i].weights) == NULL &&
                          n > 0;
        if (no_grad || no_weights)
            return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                                "%s %s: tensor %s: the %s array is NULL", operation, model,
                                tensor, no_grad ? "gradient" : "weights");
        /* A frame's payload length is a u32: refuse what cannot fit before
         * any size computation can overflow. */
        if (n > UINT32_MAX)
            return paramd__fail(client, PARAMD_E_PAYLOAD_TOO_LARGE,
                                "%s %s: tensor %s: %zu elements do not fit in one frame",
                                operation, model, tensor, n);
        frame_bytes += PARAMD__ITEM_HEADER_SIZE + (push_items ? paramd__padded(n * element_size) : 0);
        if (frame_bytes > UINT32_MAX)
            return paramd__fail(client, PARAMD_E_PAYLOAD_TOO_LARGE,
                                "%s %s: the request exceeds 4 GiB, the most one frame carries",
                                operation, model);
    }
    return PARAMD_OK;
}

/* Resolves every tensor name of the request in the model's entry (looked
 * up again once when a name is missing from a cached entry: the model may
 * have been created again with other tensors).  *entry ends as the entry
 * used. */
static int resolve(paramd_client *client, uint8_t opcode, const char *model,
                   const paramd_push_item *push_items, const paramd_pull_item *pull_items,
                   size_t count, const paramd__tensor_entry **tensors, int64_t deadline,
                   paramd__model_entry **entry, bool *from_cache)
{
    for (int attempt = 0;; attempt++) {
        int result = paramd__cache_model(client, model, deadline, entry, from_cache);
        if (result != PARAMD_OK)
            return result;
        size_t i = 0;
        for (; i < count; i++) {
            const char *name = push_items ? push_items[i].tensor : pull_items[i].tensor;
            tensors[i] = paramd__cache_tensor(*entry, name);
            if (tensors[i] == NULL)
                break;
        }
        if (i == count)
            return PARAMD_OK;
        if (*from_cache && attempt == 0) {
            paramd__cache_drop_id(client, (*entry)->id);
            continue;
        }
        const char *name = push_items ? push_items[i].tensor : pull_items[i].tensor;
        return paramd__fail(client, PARAMD_E_TENSOR_NOT_FOUND,
                            "%s %s: model \"%s\" has no tensor \"%s\"", paramd__data_operation_name(opcode),
                            model, model, name);
    }
}

void paramd__data_request_options(paramd__data_request *request,
                                  const paramd_push_options *options)
{
    request->loss = request->grad_norm = 0;
    request->flags = 0;
    request->version = 0;
    request->worker = NULL;
    if (options == NULL)
        return;
    request->flags = (options->has_loss ? PARAMD_PUSH_HAS_LOSS : 0) |
                     (options->has_grad_norm ? PARAMD_PUSH_HAS_GRAD_NORM : 0) |
                     (options->has_version ? PARAMD_PUSH_HAS_VERSION : 0);
    request->version = options->version;
    request->loss = options->loss;
    request->grad_norm = options->grad_norm;
    request->worker = options->worker;
}

/* Prepares one request: checks, resolves, encodes it at the end of `buffer`
 * and fills `pending` (whose items it allocates; free them with
 * paramd__data_release). */
static int prepare(paramd_client *client, uint8_t opcode, const char *model,
                   const paramd_push_item *push_items, const paramd_pull_item *pull_items,
                   size_t count, const paramd_push_options *options, int pull_dtype,
                   int64_t deadline, paramd__buffer *buffer, paramd__pending *pending)
{
    int dtype = paramd__data_dtype(pull_items, options, pull_dtype);
    int result =
        paramd__data_check_arguments(client, opcode, model, push_items, pull_items, count, dtype);
    if (result != PARAMD_OK)
        return result;
    const paramd__tensor_entry **tensors = malloc(count * sizeof *tensors);
    paramd__request_item *items = calloc(count, sizeof *items);
    if (tensors == NULL || items == NULL) {
        free(tensors);
        free(items);
        return paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for %zu items", count);
    }
    paramd__model_entry *entry;
    bool from_cache;
    result = resolve(client, opcode, model, push_items, pull_items, count, tensors, deadline,
                     &entry, &from_cache);
    if (result == PARAMD_OK) {
        for (size_t i = 0; i < count; i++) {
            items[i].tensor_id = tensors[i]->id;
            if (push_items) {
                items[i].count = push_items[i].count;
                items[i].grad = push_items[i].grad;
                items[i].weights = push_items[i].weights;
            } else {
                items[i].offset = pull_items[i].offset;
                items[i].count = pull_items[i].count;
                items[i].weights = pull_items[i].weights;
            }
        }
        paramd__data_request request = {
            .opcode = opcode,
            .request_id = paramd__take_id(client),
            .model_id = entry->id,
            .dtype = (uint8_t)(dtype ? dtype : PARAMD_DTYPE_FLOAT32),
            .items = items,
            .count = count,
        };
        paramd__data_request_options(&request, options);
        result = paramd__data_encode(client, &request, buffer, pending);
        if (result == PARAMD_OK)
            pending->model_from_cache = from_cache;
    }
    free(tensors);
    free(items);
    return result;
}

/* ---------------------------------------------------------------------------
 * Single calls
 * ------------------------------------------------------------------------- */

static int data_call(paramd_client *client, uint8_t opcode, const char *model,
                     const paramd_push_item *push_items, const paramd_pull_item *pull_items,
                     size_t count, const paramd_push_options *options, int pull_dtype,
                     paramd_push_result *outcome)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (client->sharded)
        return paramd__sharded_data_call(client, opcode, model, push_items, pull_items, count,
                                         options, pull_dtype, outcome);
    int64_t deadline = paramd__deadline(client->timeout_ms);
    int result = paramd__wire_ensure(client, deadline);
    if (result != PARAMD_OK)
        return result;
    for (int attempt = 0;; attempt++) {
        paramd__pending pending;
        client->request.size = 0;
        result = prepare(client, opcode, model, push_items, pull_items, count, options,
                         pull_dtype, deadline, &client->request, &pending);
        if (result != PARAMD_OK)
            return result;
        result = paramd__wire_exchange(client, client->request.data, client->request.size,
                                       &pending, 1, deadline);
        if (result == PARAMD_OK && pending.status == PARAMD_E_MODEL_NOT_FOUND &&
            pending.model_from_cache && attempt == 0) {
            /* The model was deleted (and perhaps created again): its id is
             * stale.  Look it up by name once more. */
            paramd__cache_drop_id(client, pending.model_id);
            paramd__data_release(&pending);
            continue;
        }
        if (result == PARAMD_OK)
            result = paramd__fail_pending(client, &pending);
        if (result == PARAMD_OK && outcome)
            *outcome = pending.push;
        paramd__data_release(&pending);
        return result;
    }
}

int paramd_push(paramd_client *client, const char *model, const paramd_push_item *items,
                size_t item_count, const paramd_push_options *options, paramd_push_result *result)
{
    return data_call(client, PARAMD_OP_PUSH, model, items, NULL, item_count, options, 0, result);
}

int paramd_pushpull(paramd_client *client, const char *model, const paramd_push_item *items,
                    size_t item_count, const paramd_push_options *options,
                    paramd_push_result *result)
{
    return data_call(client, PARAMD_OP_PUSHPULL, model, items, NULL, item_count, options, 0,
                     result);
}

int paramd_pull(paramd_client *client, const char *model, const paramd_pull_item *items,
                size_t item_count, int dtype, uint64_t *step)
{
    paramd_push_result outcome = {0};
    int result = data_call(client, PARAMD_OP_PULL, model, NULL, items, item_count, NULL, dtype,
                           &outcome);
    if (result == PARAMD_OK && step)
        *step = outcome.step;
    return result;
}

int paramd_push_tensor(paramd_client *client, const char *model, const char *tensor,
                       const float *grad, size_t count, const paramd_push_options *options,
                       paramd_push_result *result)
{
    paramd_push_item item = {tensor, grad, NULL, count};
    return paramd_push(client, model, &item, 1, options, result);
}

int paramd_pushpull_tensor(paramd_client *client, const char *model, const char *tensor,
                           const float *grad, float *weights, size_t count,
                           const paramd_push_options *options, paramd_push_result *result)
{
    paramd_push_item item = {tensor, grad, weights, count};
    return paramd_pushpull(client, model, &item, 1, options, result);
}

int paramd_pull_tensor(paramd_client *client, const char *model, const char *tensor,
                       float *weights, size_t count, uint64_t *step)
{
    return paramd_pull_range(client, model, tensor, 0, count, weights, step);
}

int paramd_pull_range(paramd_client *client, const char *model, const char *tensor,
                      uint64_t offset, size_t count, float *weights, uint64_t *step)
{
    paramd_pull_item item = {tensor, offset, count, weights};
    return paramd_pull(client, model, &item, 1, 0, step);
}

/* ---------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------- */

struct paramd_batch {
    paramd_client *client;
    paramd__buffer frames;         /* every queued frame, in order */
    paramd__pending *pending;      /* count requests, capacity allocated (on a sharded
                                      handle: each request's merged outcome) */
    size_t count, capacity;
    bool ran;
    paramd__sharded_batch *sharded; /* on a sharded handle: the shards' frames and parts */
};

paramd_batch *paramd_batch_begin(paramd_client *client)
{
    if (client == NULL)
        return NULL;
    paramd_batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL) {
        paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for a batch");
        return NULL;
    }
    batch->client = client;
    return batch;
}

static long batch_queue(paramd_batch *batch, uint8_t opcode, const char *model,
                        const paramd_push_item *push_items, const paramd_pull_item *pull_items,
                        size_t count, const paramd_push_options *options, int pull_dtype)
{
    if (batch == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    paramd_client *client = batch->client;
    if (batch->ran)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "batch: already run; begin a new one");
    if (batch->count == batch->capacity) {
        size_t capacity = batch->capacity ? 2 * batch->capacity : 64;
        paramd__pending *grown = realloc(batch->pending, capacity * sizeof *grown);
        if (grown == NULL)
            return paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for a batch of %zu",
                                capacity);
        batch->pending = grown;
        batch->capacity = capacity;
    }
    int result;
    if (client->sharded) {
        result = paramd__sharded_batch_queue(client, &batch->sharded, opcode, model, push_items,
                                             pull_items, count, options, pull_dtype,
                                             &batch->pending[batch->count]);
    } else {
        int64_t deadline = paramd__deadline(client->timeout_ms);
        result = paramd__wire_ensure(client, deadline);
        if (result == PARAMD_OK)
            result = prepare(client, opcode, model, push_items, pull_items, count, options,
                             pull_dtype, deadline, &batch->frames, &batch->pending[batch->count]);
    }
    if (result != PARAMD_OK)
        return result;
    paramd__succeed(client);
    return (long)batch->count++;
}

long paramd_batch_push(paramd_batch *batch, const char *model, const paramd_push_item *items,
                       size_t item_count, const paramd_push_options *options)
{
    return batch_queue(batch, PARAMD_OP_PUSH, model, items, NULL, item_count, options, 0);
}

long paramd_batch_pushpull(paramd_batch *batch, const char *model, const paramd_push_item *items,
                           size_t item_count, const paramd_push_options *options)
{
    return batch_queue(batch, PARAMD_OP_PUSHPULL, model, items, NULL, item_count, options, 0);
}

long paramd_batch_pull(paramd_batch *batch, const char *model, const paramd_pull_item *items,
                       size_t item_count, int dtype)
{
    return batch_queue(batch, PARAMD_OP_PULL, model, NULL, items, item_count, NULL, dtype);
}

int paramd_batch_run(paramd_batch *batch)
{
    if (batch == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    paramd_client *client = batch->client;
    if (batch->ran)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "batch: already run");
    batch->ran = true;
    if (batch->count == 0)
        return paramd__succeed(client);
    int result;
    if (client->sharded) {
        result = paramd__sharded_batch_run(client, batch->sharded, batch->pending, batch->count);
        if (result != PARAMD_OK)
            return result;
    } else {
        int64_t deadline = paramd__deadline(client->timeout_ms);
        result = paramd__wire_ensure(client, deadline);
        if (result != PARAMD_OK) {
            for (size_t i = 0; i < batch->count; i++) {
                batch->pending[i].answered = true;
                batch->pending[i].status = result;
                batch->pending[i].message = strdup(client->message);
            }
            return result;
        }
        result = paramd__wire_exchange(client, batch->frames.data, batch->frames.size,
                                       batch->pending, batch->count, deadline);
        if (result != PARAMD_OK)
            return result;
    }
    /* Stale ids are dropped so that the next call looks the model up. */
    size_t first_failure = batch->count;
    for (size_t i = 0; i < batch->count; i++) {
        const paramd__pending *p = &batch->pending[i];
        if (p->status == PARAMD_E_MODEL_NOT_FOUND && p->model_from_cache)
            paramd__cache_drop_id(client, p->model_id);
        if (p->status != PARAMD_OK && first_failure == batch->count)
            first_failure = i;
    }
    if (first_failure == batch->count)
        return paramd__succeed(client);
    const paramd__pending *p = &batch->pending[first_failure];
    return paramd__fail(client, p->status, "batch request %zu: %s", first_failure,
                        p->message ? p->message : paramd_strerror(p->status));
}

size_t paramd_batch_size(const paramd_batch *batch)
{
    return batch ? batch->count : 0;
}

int paramd_batch_status(const paramd_batch *batch, size_t index)
{
    if (batch == NULL || index >= batch->count)
        return PARAMD_E_INVALID_ARGUMENT;
    if (!batch->pending[index].answered)
        return PARAMD_E_INVALID_ARGUMENT; /* not run yet */
    return batch->pending[index].status;
}

const char *paramd_batch_errstr(const paramd_batch *batch, size_t index)
{
    if (batch == NULL || index >= batch->count)
        return "no such request in the batch";
    const paramd__pending *p = &batch->pending[index];
    if (!p->answered)
        return "the batch has not run";
    if (p->status == PARAMD_OK)
        return "";
    return p->message ? p->message : paramd_strerror(p->status);
}

int paramd_batch_result(const paramd_batch *batch, size_t index, paramd_push_result *result)
{
    int status = paramd_batch_status(batch, index);
    if (status == PARAMD_OK && result)
        *result = batch->pending[index].push;
    return status;
}

void paramd_batch_free(paramd_batch *batch)
{
    if (batch == NULL)
        return;
    for (size_t i = 0; i < batch->count; i++)
        paramd__data_release(&batch->pending[i]);
    free(batch->pending);
    paramd__buffer_free(&batch->frames);
    paramd__sharded_batch_free(batch->sharded);
    free(batch);
}
