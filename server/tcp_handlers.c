/*
 * tcp_handlers.c - what each request of the binary protocol does.
 *
 * Every handler decodes its payload with proto/frame.h, checks what the
 * protocol itself defines (ids, ranges, dtypes), and calls the core - the
 * same paramd__core_* and paramd__json_* functions the HTTP handlers call -
 * for every semantic check and every change.  Replies are encoded into a
 * buffer of their own (paramd__tcp_reply); a request that fails gets one
 * ERROR frame carrying the core's code and message.
 *
 * Data moves without copies where it can: a float32 gradient is read where
 * it lies in the connection's input buffer, and a PUSHPULL's float32 weights
 * are written by the core straight into the reply.  float16 and bfloat16
 * go through a float32 buffer (proto/half.h).
 */
#include "tcp.h"

#include "half.h"
#include "json_api.h"
#include "log.h"
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SERVER_NAME "paramd " PARAMD_VERSION_STRING

/* ---------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------- */

uint8_t *paramd__tcp_reply_buffer(paramd__tcp_session *session, size_t size, size_t *capacity)
{
    if (session->spare && session->spare_capacity >= size) {
        uint8_t *buffer = session->spare;
        *capacity = session->spare_capacity;
        session->spare = NULL;
        session->spare_capacity = 0;
        return buffer;
    }
    *capacity = size;
    return malloc(size ? size : 1);
}

/* A reply buffer a failed request did not use goes back to the session. */
static void give_back(paramd__tcp_session *session, uint8_t *buffer, size_t capacity)
{
    if (buffer && session->spare == NULL) {
        session->spare = buffer;
        session->spare_capacity = capacity;
    } else {
        free(buffer);
    }
}

void paramd__tcp_error_reply(uint64_t request_id, int code, const char *message,
                             paramd__tcp_reply *reply)
{
    paramd__writer writer;
    paramd__writer_init(&writer, NULL, 0);
    paramd__encode_error(&writer, request_id, code, 0, message);
    reply->size = reply->capacity = writer.size;
    reply->data = malloc(writer.size);
    if (reply->data) {
        paramd__writer_init(&writer, reply->data, reply->size);
        paramd__encode_error(&writer, request_id, code, 0, message);
    }
}

static bool reply_error(const paramd__frame_header *header, const paramd__error *error,
                        paramd__tcp_reply *reply)
{
    paramd__writer writer;
    paramd__writer_init(&writer, NULL, 0);
    uint32_t version = error->code == PARAMD_E_NOT_OWNER ? (uint32_t)error->shard_map_version : 0;
    paramd__encode_error(&writer, header->request_id, error->code, version, error->message);
    reply->size = reply->capacity = writer.size;
    reply->data = malloc(writer.size);
    if (reply->data) {
        paramd__writer_init(&writer, reply->data, reply->size);
        paramd__encode_error(&writer, header->request_id, error->code, version, error->message);
    }
    return reply->data != NULL;
}

/* A JSON document as the reply to `opcode` (consumes `document`). */
static bool reply_json(const paramd__frame_header *header, json_t *document,
                       paramd__tcp_reply *reply)
{
    char *text = document ? json_dumps(document, PARAMD__JSON_DUMP_FLAGS) : NULL;
    json_decref(document);
    if (text == NULL) {
        paramd__error error;
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "out of memory while building the reply");
        return reply_error(header, &error, reply);
    }
    size_t length = strlen(text);
    paramd__writer writer;
    paramd__writer_init(&writer, NULL, 0);
    uint8_t opcode = header->opcode | PARAMD_OP_REPLY;
    paramd__encode_json_reply(&writer, opcode, header->request_id, text, length);
    reply->size = reply->capacity = writer.size;
    reply->data = malloc(writer.size);
    if (reply->data) {
        paramd__writer_init(&writer, reply->data, reply->size);
        paramd__encode_json_reply(&writer, opcode, header->request_id, text, length);
    }
    free(text);
    return reply->data != NULL;
}

/* A wire string as a C string in `buffer`; false when it is longer than
 * `maximum` or holds a NUL (then it cannot be a valid name). */
static bool wire_name(paramd__wire_string name, char *buffer, size_t maximum)
{
    if (name.length > maximum || memchr(name.data, '\0', name.length))
        return false;
    memcpy(buffer, name.data, name.length);
    buffer[name.length] = '\0';
    return true;
}

static int decode_failed(int code, const char *why, paramd__error *error)
{
    return paramd__error_set(error, code, "%s", why);
}

/* The model a request names by id, referenced; NULL with *error. */
static paramd__model *model_by_id(paramd__tcp_session *session, uint32_t id,
                                  paramd__error *error)
{
    paramd__model *model = paramd__registry_acquire_id(&session->tcp->server->registry, id);
    if (model == NULL)
        paramd__error_set(error, PARAMD_E_MODEL_NOT_FOUND,
                          "model_id %u: no such model (deleted? LOOKUP it again)", (unsigned)id);
    return model;
}

/* ---------------------------------------------------------------------------
 * HELLO, LOOKUP
 * ------------------------------------------------------------------------- */

static bool handle_hello(paramd__tcp_session *session, const paramd__frame_header *header,
                         const uint8_t *payload, paramd__tcp_reply *reply)
{
    paramd__error error = {0};
    char why[200];
    paramd__hello_request hello;
    int result = paramd__decode_hello(payload, header->length, &hello, why, sizeof why);
    if (result != PARAMD_OK)
        return decode_failed(result, why, &error), reply_error(header, &error, reply);
    if (hello.min_version > PARAMD_PROTOCOL_VERSION || hello.max_version < PARAMD_PROTOCOL_VERSION) {
        paramd__error_set(&error, PARAMD_E_UNSUPPORTED_VERSION,
                          "HELLO: the client speaks versions %u to %u, this server only %d",
                          hello.min_version, hello.max_version, PARAMD_PROTOCOL_VERSION);
        return reply_error(header, &error, reply);
    }
    size_t length = hello.client.length < sizeof session->client - 1 ? hello.client.length
                                                                       : sizeof session->client - 1;
    for (size_t i = 0; i < length; i++) {
        char c = hello.client.data[i];
        session->client[i] = c >= ' ' && c <= '~' ? c : '?';
    }
    session->client[length] = '\0';
    /* Issue 9: on a server with tokens, HELLO must bring a valid one; a
     * connection that fails is closed after the ERROR (one guess each). */
    paramd__auth *auth = session->tcp->server->auth;
    /* The generation before the lookup: a reload in between then makes
     * the next request look the token up again (allowed()). */
    uint64_t generation = paramd__auth_generation(auth);
    paramd__role role = paramd__auth_role(auth, (const char *)hello.token.data, hello.token.length);
    if (role == PARAMD__ROLE_NONE) {
        paramd__error_set(&error, PARAMD_E_UNAUTHORIZED,
                          hello.token.length ? "HELLO: the token is not valid"
                                             : "HELLO: this server needs a bearer token");
        paramd__log_warn("tcp %s: HELLO from \"%s\" refused: %s", session->peer, session->client,
                         hello.token.length ? "unknown token" : "no token");
        session->hello_done = false;
        session->close_after_reply = true;
        return reply_error(header, &error, reply);
    }
    session->role = role;
    session->auth_generation = generation;
    session->token_length = auth ? hello.token.length : 0;
    if (auth)
        memcpy(session->token, hello.token.data, hello.token.length);
    session->hello_done = true;
    paramd__log_debug("tcp %s: HELLO from \"%s\"", session->peer, session->client);
    paramd__writer writer;
    uint8_t buffer[128];
    paramd__writer_init(&writer, buffer, sizeof buffer);
    paramd__encode_hello_reply(&writer, header->request_id, session->tcp->options.max_frame_bytes,
                               SERVER_NAME);
    reply->data = malloc(writer.size);
    reply->size = reply->capacity = writer.size;
    if (reply->data)
        memcpy(reply->data, buffer, writer.size);
    return reply->data != NULL;
}

static void encode_lookup(paramd__writer *writer, uint64_t request_id, paramd__model *model,
                          paramd__tensor **tensors, uint32_t count)
{
    size_t start = paramd__encode_lookup_reply_begin(writer, request_id, model->id, count,
                                                     atomic_load(&model->step));
    for (uint32_t i = 0; i < count; i++)
        paramd__put_lookup_entry(writer, (uint32_t)tensors[i]->position, PARAMD_DTYPE_FLOAT32,
                                 (uint8_t)tensors[i]->dimension_count, tensors[i]->shape,
                                 tensors[i]->full_count, tensors[i]->name);
    paramd__frame_end(writer, start);
}

static bool handle_lookup(paramd__tcp_session *session, const paramd__frame_header *header,
                          const uint8_t *payload, paramd__tcp_reply *reply)
{
    paramd__error error = {0};
    char why[200], name[PARAMD__MAX_NAME_LENGTH + 1];
    paramd__lookup_request lookup;
    int result = paramd__decode_lookup(payload, header->length, &lookup, why, sizeof why);
    if (result != PARAMD_OK)
        return decode_failed(result, why, &error), reply_error(header, &error, reply);
    paramd__model *model = NULL;
    if (!wire_name(lookup.model, name, 128)) {
        paramd__error_set(&error, PARAMD_E_MODEL_NOT_FOUND,
                          "LOOKUP: model \"%.*s\" not found", (int)lookup.model.length,
                          lookup.model.data);
        return reply_error(header, &error, reply);
    }
    if (paramd__core_find_model(session->tcp->server, name, &model, &error) != PARAMD_OK)
        return reply_error(header, &error, reply);
    uint32_t count = lookup.tensor_count ? lookup.tensor_count : (uint32_t)model->tensor_count;
    paramd__tensor **tensors = lookup.tensor_count ? calloc(count, sizeof *tensors) : model->tensors;
    bool ok = false;
    if (tensors == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "LOOKUP: out of memory");
        goto done;
    }
    size_t position = 0;
    for (uint32_t i = 0; i < lookup.tensor_count; i++) {
        paramd__wire_string wire = paramd__lookup_next_name(&lookup, &position);
        bool valid = wire_name(wire, name, PARAMD__MAX_NAME_LENGTH);
        tensors[i] = valid ? paramd__model_find_tensor(model, name) : NULL;
        if (tensors[i] == NULL) {
            if (valid)
                paramd__model_missing_tensor(model, "LOOKUP", name, &error);
            else
                paramd__error_set(&error, PARAMD_E_TENSOR_NOT_FOUND,
                                  "LOOKUP: model \"%s\" has no tensor \"%.*s\"", model->name,
                                  (int)(wire.length > 255 ? 255 : wire.length), wire.data);
            goto done;
        }
    }
    paramd__writer writer;
    paramd__writer_init(&writer, NULL, 0);
    encode_lookup(&writer, header->request_id, model, tensors, count);
    reply->size = reply->capacity = writer.size;
    reply->data = malloc(writer.size);
    if (reply->data == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "LOOKUP: out of memory for the reply");
        goto done;
    }
    paramd__writer_init(&writer, reply->data, reply->size);
    encode_lookup(&writer, header->request_id, model, tensors, count);
    ok = true;
done:
    if (tensors != model->tensors)
        free(tensors);
    paramd__model_release(model);
    return ok ? true : reply_error(header, &error, reply);
}

/* ---------------------------------------------------------------------------
 * PUSH, PUSHPULL
 * ------------------------------------------------------------------------- */

/* Decodes a 16-bit gradient into floats (malloc'ed). */
static float *widen(const paramd__wire_item *item)
{
    float *values = malloc(item->count ? item->count * sizeof(float) : sizeof(float));
    if (values == NULL)
        return NULL;
    if (item->dtype == PARAMD_DTYPE_FLOAT16)
        paramd_float16_decode(item->data, values, item->count);
    else
        paramd_bfloat16_decode(item->data, values, item->count);
    return values;
}

/* Writes float32 weights as `dtype` at `out`. */
static void narrow(const float *weights, uint8_t dtype, uint8_t *out, size_t count)
{
    if (dtype == PARAMD_DTYPE_FLOAT16)
        paramd_float16_encode(weights, out, count);
    else if (dtype == PARAMD_DTYPE_BFLOAT16)
        paramd_bfloat16_encode(weights, out, count);
    else
        memcpy(out, weights, count * sizeof(float));
}

/* A tensor of a request, by id, with a range check: a push must cover the
 * whole tensor; a pull any part of it. */
static paramd__tensor *item_tensor(paramd__model *model, const paramd__wire_item *item,
                                   uint32_t index, bool whole, const char *operation,
                                   paramd__error *error)
{
    if (item->tensor_id >= model->tensor_count) {
        paramd__error_set(error, PARAMD_E_TENSOR_NOT_FOUND,
                          "%s item %u: tensor_id %u: model \"%s\" has %zu tensors", operation,
                          (unsigned)index, (unsigned)item->tensor_id, model->name,
                          model->tensor_count);
        return NULL;
    }
    /* Ranges are in the whole tensor's elements; a shard holds
     * [range_offset, range_offset + count) of it (all of it, unsharded). */
    paramd__tensor *tensor = model->tensors[item->tensor_id];
    uint64_t first = tensor->range_offset, last = tensor->range_offset + tensor->count;
    if (whole && (item->offset != first || item->count != tensor->count)) {
        if (tensor->count == tensor->full_count)
            paramd__error_set(error, PARAMD_E_BAD_RANGE,
                              "%s item %u (%s): a push covers the whole tensor, offset 0 and "
                              "count %zu; got offset %llu, count %llu",
                              operation, (unsigned)index, tensor->name, tensor->count,
                              (unsigned long long)item->offset, (unsigned long long)item->count);
        else
            paramd__error_set(error, PARAMD_E_NOT_OWNER,
                              "%s item %u (%s): this shard holds elements [%llu, %llu) of the "
                              "split tensor, and a push covers exactly them; got offset %llu, "
                              "count %llu (shard map version %llu)",
                              operation, (unsigned)index, tensor->name,
                              (unsigned long long)first, (unsigned long long)last,
                              (unsigned long long)item->offset, (unsigned long long)item->count,
                              (unsigned long long)model->shard_map_version);
        error->shard_map_version = model->shard_map_version;
        return NULL;
    }
    /* core_pull reads a count of 0 as "the whole tensor", which would
     * overrun the 0-element slot of the reply: an empty range is refused. */
    if (!whole && item->count == 0) {
        paramd__error_set(error, PARAMD_E_BAD_RANGE,
                          "%s item %u (%s): count 0: a range has at least one element",
                          operation, (unsigned)index, tensor->name);
        return NULL;
    }
    if (!whole && (item->offset < first || item->offset > last || item->count > last - item->offset)) {
        int code = item->offset + item->count <= tensor->full_count ? PARAMD_E_NOT_OWNER
                                                                     : PARAMD_E_BAD_RANGE;
        paramd__error_set(error, code,
                          "%s item %u (%s): range [%llu, %llu) is outside the elements [%llu, "
                          "%llu) held here (the tensor has %zu)",
                          operation, (unsigned)index, tensor->name,
                          (unsigned long long)item->offset,
                          (unsigned long long)(item->offset + item->count),
                          (unsigned long long)first, (unsigned long long)last, tensor->full_count);
        error->shard_map_version = model->shard_map_version;
        return NULL;
    }
    return tensor;
}

/* One tensor of a push or pull as it travels: where its gradient came from
 * and where its weights go. */
typedef struct wire_slot {
    uint8_t dtype;
    float *owned_grad;     /* widened 16-bit gradient, or NULL */
    float *owned_weights;  /* float32 weights to narrow into the reply, or NULL */
    uint8_t *reply_data;   /* the item's data in the reply */
} wire_slot;

/* A push under way: everything its reply needs.  A push that waits for
 * other workers (sync and ssp models) lives on in this form, owned by its
 * connection (tcp.h), until the core completes its ticket. */
struct paramd__tcp_waiting {
    paramd__push_ticket ticket;
    paramd__frame_header header;
    paramd__model *model;          /* a reference, released when finished */
    bool with_weights;
    uint32_t count;
    paramd__tensor_io *items;
    wire_slot *slots;
    uint8_t *buffer;               /* the reply, with placeholders in its header */
    size_t reply_size, capacity;
    char worker[PARAMD__WORKER_NAME_SIZE];
};

static void free_push(paramd__tcp_session *session, paramd__tcp_waiting *push)
{
    for (uint32_t i = 0; push->slots && i < push->count; i++) {
        free(push->slots[i].owned_grad);
        free(push->slots[i].owned_weights);
    }
    give_back(session, push->buffer, push->capacity);
    free(push->slots);
    free(push->items);
    paramd__model_release(push->model);
    free(push);
}

/* Turns a done push into its reply (the weights, or an ERROR frame), and
 * frees it. */
static bool finish_push(paramd__tcp_session *session, paramd__tcp_waiting *push,
                        paramd__tcp_reply *reply)
{
    paramd__push_ticket *ticket = &push->ticket;
    if (ticket->result != PARAMD_OK) {
        paramd__error error = ticket->error;
        paramd__frame_header header = push->header;
        free_push(session, push);
        return reply_error(&header, &error, reply);
    }
    const paramd__push_outcome *outcome = &ticket->outcome;
    for (uint32_t i = 0; push->with_weights && i < push->count; i++)
        if (push->slots[i].owned_weights)
            narrow(push->slots[i].owned_weights, push->slots[i].dtype, push->slots[i].reply_data,
                   push->items[i].tensor->count);
    uint32_t flags = outcome->skipped ? PARAMD_PUSH_SKIPPED : 0;
    if (outcome->dropped)
        flags |= PARAMD_PUSH_DROPPED;
    if ((outcome->has_lbfgs && !outcome->lbfgs_step_done) || outcome->sam_ascent)
        flags |= PARAMD_PUSH_EVALUATE;
    for (uint32_t i = 0; i < push->count && outcome->accumulate_steps; i++)
        if (push->items[i].accumulated < outcome->accumulate_steps)
            flags |= PARAMD_PUSH_ACCUMULATED;
    /* The header fields, now known, over the placeholders. */
    paramd__writer head;
    paramd__writer_init(&head, push->buffer, push->reply_size);
    paramd__encode_push_reply_begin(&head, push->header.opcode, push->header.request_id,
                                    outcome->step, outcome->lr, outcome->grad_norm,
                                    outcome->has_loss_scale ? (double)outcome->loss_scale : NAN,
                                    flags, push->with_weights ? push->count : 0);
    paramd__frame_set_length(push->buffer, push->reply_size);
    reply->data = push->buffer;
    reply->size = push->reply_size;
    reply->capacity = push->capacity;
    push->buffer = NULL;
    free_push(session, push);
    return true;
}

static bool handle_push(paramd__tcp_session *session, const paramd__frame_header *header,
                        const uint8_t *payload, paramd__tcp_reply *reply)
{
    bool with_weights = header->opcode == PARAMD_OP_PUSHPULL;
    const char *operation = with_weights ? "PUSHPULL" : "PUSH";
    paramd__error error = {0};
    char why[200];
    paramd__push_request request;
    int result = paramd__decode_push(payload, header->length, &request, why, sizeof why);
    if (result != PARAMD_OK)
        return decode_failed(result, why, &error), reply_error(header, &error, reply);
    char worker[PARAMD__WORKER_NAME_SIZE];
    if (!wire_name(request.worker, worker, sizeof worker - 1) ||
        (worker[0] && !paramd__model_name_valid(worker))) {
        paramd__error_set(&error, PARAMD_E_BAD_NAME,
                          "%s: worker: must be 1 to 128 characters from A-Z a-z 0-9 . _ -",
                          operation);
        return reply_error(header, &error, reply);
    }
    paramd__model *model = model_by_id(session, request.model_id, &error);
    if (model == NULL)
        return reply_error(header, &error, reply);
    uint32_t count = request.items.remaining;
    paramd__tcp_waiting *push = calloc(1, sizeof *push);
    if (push == NULL) {
        paramd__model_release(model);
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "%s: out of memory", operation);
        return reply_error(header, &error, reply);
    }
    push->header = *header;
    push->model = model;
    push->with_weights = with_weights;
    push->count = count;
    push->items = calloc(count ? count : 1, sizeof *push->items);
    push->slots = calloc(count ? count : 1, sizeof *push->slots);
    paramd__tensor_io *items = push->items;
    wire_slot *slots = push->slots;
    if (items == NULL || slots == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "%s: out of memory", operation);
        goto failed;
    }
    /* Gradients, and the reply's size. */
    size_t items_bytes = 0;
    paramd__item_cursor cursor = request.items;
    paramd__wire_item item;
    for (uint32_t i = 0; paramd__next_item(&cursor, &item); i++) {
        paramd__tensor *tensor = item_tensor(model, &item, i, true, operation, &error);
        if (tensor == NULL)
            goto failed;
        items[i].tensor = tensor;
        items[i].grad_count = (size_t)item.count;
        slots[i].dtype = item.dtype;
        if (item.dtype == PARAMD_DTYPE_FLOAT32) {
            /* In place: the input buffer is this request's and is dropped
             * after it (not before the push is done, if it waits), so the
             * core may also work in it. */
            items[i].grad = (const float *)(const void *)item.data;
            items[i].grad_writable = true;
        } else {
            slots[i].owned_grad = widen(&item);
            if (slots[i].owned_grad == NULL) {
                paramd__error_set(&error, PARAMD_E_NO_MEMORY, "%s: out of memory", operation);
                goto failed;
            }
            items[i].grad = slots[i].owned_grad;
            items[i].grad_writable = true;
        }
        if (with_weights)
            items_bytes += paramd__item_size(item.dtype, item.count);
    }
    /* The reply, allocated before anything changes; float32 weights are
     * written by the core into it directly. */
    push->reply_size = paramd__push_reply_size(with_weights ? items_bytes : 0);
    push->buffer = paramd__tcp_reply_buffer(session, push->reply_size, &push->capacity);
    if (push->buffer == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "%s: out of memory for a %zu-byte reply",
                          operation, push->reply_size);
        goto failed;
    }
    paramd__writer writer;
    paramd__writer_init(&writer, push->buffer, push->reply_size);
    size_t start = paramd__encode_push_reply_begin(&writer, header->opcode, header->request_id, 0,
                                                   0, 0, 0, 0, with_weights ? count : 0);
    for (uint32_t i = 0; with_weights && i < count; i++) {
        paramd__put_item_header(&writer, (uint32_t)items[i].tensor->position, slots[i].dtype,
                                items[i].tensor->range_offset, items[i].tensor->count);
        slots[i].reply_data = paramd__put_reserve(
            &writer, items[i].tensor->count * paramd__dtype_size(slots[i].dtype));
        if (slots[i].dtype == PARAMD_DTYPE_FLOAT32) {
            items[i].weights = (float *)(void *)slots[i].reply_data;
        } else {
            slots[i].owned_weights = malloc(items[i].tensor->count * sizeof(float) + sizeof(float));
            if (slots[i].owned_weights == NULL) {
                paramd__error_set(&error, PARAMD_E_NO_MEMORY, "%s: out of memory", operation);
                goto failed;
            }
            items[i].weights = slots[i].owned_weights;
        }
    }
    paramd__frame_end(&writer, start);
    memcpy(push->worker, worker, sizeof worker);
    push->ticket = (paramd__push_ticket){
        .items = items,
        .item_count = count,
        .options = {request.loss, request.grad_norm, NAN, 0},
        .worker = push->worker,
        .has_version = (request.flags & PARAMD_PUSH_HAS_VERSION) != 0,
        .version = request.version,
        .notify = paramd__tcp_waiting_notify,
        .context = session,
    };
    result = paramd__core_push_submit(session->tcp->server, model, &push->ticket);
    if (result == PARAMD__PUSH_WAITING) {
        /* The connection holds on to the push (and to this frame) until
         * the core calls notify: see tcp.c. */
        reply->waiting = push;
        return true;
    }
    return finish_push(session, push, reply);
failed:
    free_push(session, push);
    return reply_error(header, &error, reply);
}

double paramd__tcp_waiting_deadline(const paramd__tcp_waiting *push)
{
    return push->ticket.deadline;
}

void paramd__tcp_waiting_expire(paramd__tcp_session *session, paramd__tcp_waiting *push)
{
    paramd__core_push_expire(session->tcp->server, push->model, &push->ticket);
}

void paramd__tcp_waiting_withdraw(paramd__tcp_session *session, paramd__tcp_waiting *push)
{
    paramd__core_push_withdraw(session->tcp->server, push->model, &push->ticket);
}

bool paramd__tcp_waiting_finish(paramd__tcp_session *session, paramd__tcp_waiting *push,
                                paramd__tcp_reply *reply)
{
    reply->data = NULL;
    reply->size = reply->capacity = 0;
    reply->waiting = NULL;
    return finish_push(session, push, reply);
}

/* ---------------------------------------------------------------------------
 * PULL
 * ------------------------------------------------------------------------- */

static bool handle_pull(paramd__tcp_session *session, const paramd__frame_header *header,
                        const uint8_t *payload, paramd__tcp_reply *reply)
{
    paramd__error error = {0};
    char why[200];
    paramd__pull_request pull;
    int result = paramd__decode_pull(payload, header->length, &pull, why, sizeof why);
    if (result != PARAMD_OK)
        return decode_failed(result, why, &error), reply_error(header, &error, reply);
    if (pull.items.remaining == 0) {
        paramd__error_set(&error, PARAMD_E_BAD_REQUEST, "PULL: name at least one range");
        return reply_error(header, &error, reply);
    }
    paramd__model *model = model_by_id(session, pull.model_id, &error);
    if (model == NULL)
        return reply_error(header, &error, reply);
    uint32_t count = pull.items.remaining;
    paramd__tensor_io *items = calloc(count, sizeof *items);
    wire_slot *slots = calloc(count, sizeof *slots);
    uint8_t *buffer = NULL;
    size_t capacity = 0;
    bool ok = false;
    if (items == NULL || slots == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "PULL: out of memory");
        goto done;
    }
    size_t items_bytes = 0;
    paramd__item_cursor cursor = pull.items;
    paramd__wire_item item;
    for (uint32_t i = 0; paramd__next_item(&cursor, &item); i++) {
        paramd__tensor *tensor = item_tensor(model, &item, i, false, "PULL", &error);
        if (tensor == NULL)
            goto done;
        items[i].tensor = tensor;
        items[i].range_offset = (size_t)(item.offset - tensor->range_offset);
        items[i].weights_count = (size_t)item.count;
        slots[i].dtype = item.dtype;
        items_bytes += paramd__item_size(item.dtype, item.count);
    }
    size_t reply_size = paramd__pull_reply_size(items_bytes);
    buffer = paramd__tcp_reply_buffer(session, reply_size, &capacity);
    if (buffer == NULL) {
        paramd__error_set(&error, PARAMD_E_NO_MEMORY, "PULL: out of memory for a %zu-byte reply",
                          reply_size);
        goto done;
    }
    paramd__writer writer;
    paramd__writer_init(&writer, buffer, reply_size);
    size_t start = paramd__encode_pull_reply_begin(&writer, header->request_id, 0, count);
    for (uint32_t i = 0; i < count; i++) {
        paramd__put_item_header(&writer, (uint32_t)items[i].tensor->position, slots[i].dtype,
                                items[i].tensor->range_offset + items[i].range_offset,
                                items[i].weights_count);
        slots[i].reply_data =
            paramd__put_reserve(&writer, items[i].weights_count * paramd__dtype_size(slots[i].dtype));
        if (slots[i].dtype == PARAMD_DTYPE_FLOAT32) {
            items[i].weights = (float *)(void *)slots[i].reply_data;
        } else {
            slots[i].owned_weights = malloc(items[i].weights_count * sizeof(float) + sizeof(float));
            if (slots[i].owned_weights == NULL) {
                paramd__error_set(&error, PARAMD_E_NO_MEMORY, "PULL: out of memory");
                goto done;
            }
            items[i].weights = slots[i].owned_weights;
        }
    }
    paramd__frame_end(&writer, start);
    uint64_t step;
    result = paramd__core_pull(session->tcp->server, model, items, count, &step, &error);
    if (result != PARAMD_OK)
        goto done;
    for (uint32_t i = 0; i < count; i++)
        if (slots[i].owned_weights)
            narrow(slots[i].owned_weights, slots[i].dtype, slots[i].reply_data,
                   items[i].weights_count);
    paramd__writer head;
    paramd__writer_init(&head, buffer, reply_size);
    paramd__encode_pull_reply_begin(&head, header->request_id, step, count);
    paramd__frame_set_length(buffer, reply_size);
    reply->data = buffer;
    reply->size = reply_size;
    reply->capacity = capacity;
    buffer = NULL;
    ok = true;
done:
    for (uint32_t i = 0; slots && i < count; i++)
        free(slots[i].owned_weights);
    give_back(session, buffer, capacity);
    free(slots);
    free(items);
    paramd__model_release(model);
    return ok ? true : reply_error(header, &error, reply);
}

/* ---------------------------------------------------------------------------
 * Control plane: STATS, LIST, CREATE, DELETE, ECHO
 * ------------------------------------------------------------------------- */

static json_t *server_stats(paramd__tcp_session *session)
{
    paramd__server *server = session->tcp->server;
    size_t models;
    paramd__model **list = paramd__registry_list(&server->registry, &models);
    for (size_t i = 0; i < models; i++)
        paramd__model_release(list[i]);
    free(list);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}}", "server", SERVER_NAME,
                     "uptime_seconds", (json_int_t)(time(NULL) - server->started), "models",
                     (json_int_t)models, "pushes", (json_int_t)atomic_load(&server->pushes),
                     "pulls", (json_int_t)atomic_load(&server->pulls), "tcp", "requests",
                     (json_int_t)atomic_load(&session->tcp->requests), "connections",
                     (json_int_t)session->tcp->connection_count, "refused_connections",
                     (json_int_t)atomic_load(&session->tcp->refused_connections));
}

static bool handle_model_request(paramd__tcp_session *session, const paramd__frame_header *header,
                                 const uint8_t *payload, paramd__tcp_reply *reply)
{
    paramd__error error = {0};
    char why[200], name[129];
    paramd__model_request request;
    int result = header->opcode == PARAMD_OP_CREATE
                     ? paramd__decode_create(payload, header->length, &request, why, sizeof why)
                     : paramd__decode_model_name(payload, header->length, &request, why,
                                                 sizeof why);
    if (result != PARAMD_OK)
        return decode_failed(result, why, &error), reply_error(header, &error, reply);
    if (!wire_name(request.model, name, 128) ||
        (request.model.length > 0 && !paramd__model_name_valid(name)) ||
        (request.model.length == 0 && header->opcode != PARAMD_OP_STATS)) {
        paramd__error_set(&error, PARAMD_E_BAD_NAME,
                          "model: \"%.*s\" is not a model name (1 to 128 characters from "
                          "A-Z a-z 0-9 . _ -, not starting with .)",
                          (int)(request.model.length > 128 ? 128 : request.model.length),
                          request.model.data ? request.model.data : "");
        return reply_error(header, &error, reply);
    }
    switch (header->opcode) {
    case PARAMD_OP_STATS: {
        if (request.model.length == 0)
            return reply_json(header, server_stats(session), reply);
        paramd__model *model;
        if (paramd__core_find_model(session->tcp->server, name, &model, &error) != PARAMD_OK)
            return reply_error(header, &error, reply);
        json_t *description = paramd__json_describe_model(model);
        paramd__model_release(model);
        return reply_json(header, description, reply);
    }
    case PARAMD_OP_CREATE: {
        json_t *body = paramd__json_parse_body(request.json, request.json_length, &error);
        json_t *description =
            body ? paramd__json_create_model(session->tcp->server, name, body, &error) : NULL;
        json_decref(body);
        return description ? reply_json(header, description, reply)
                           : reply_error(header, &error, reply);
    }
    default: /* DELETE */
        if (paramd__core_delete_model(session->tcp->server, name, &error) != PARAMD_OK)
            return reply_error(header, &error, reply);
        reply->size = reply->capacity = PARAMD_FRAME_HEADER_SIZE;
        reply->data = malloc(reply->size);
        if (reply->data) {
            paramd__writer writer;
            paramd__writer_init(&writer, reply->data, reply->size);
            size_t start = paramd__frame_begin(&writer, PARAMD_OP_DELETE | PARAMD_OP_REPLY,
                                               header->request_id);
            paramd__frame_end(&writer, start);
        }
        return reply->data != NULL;
    }
}

static bool handle_echo(paramd__tcp_session *session, const paramd__frame_header *header,
                        const uint8_t *payload, paramd__tcp_reply *reply)
{
    reply->size = PARAMD_FRAME_HEADER_SIZE + header->length;
    reply->data = paramd__tcp_reply_buffer(session, reply->size, &reply->capacity);
    if (reply->data == NULL)
        return false;
    paramd__writer writer;
    paramd__writer_init(&writer, reply->data, reply->size);
    size_t start = paramd__frame_begin(&writer, PARAMD_OP_ECHO | PARAMD_OP_REPLY,
                                       header->request_id);
    paramd__put_bytes(&writer, payload, header->length);
    paramd__frame_end(&writer, start);
    return true;
}

/* ---------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------- */

uint64_t paramd__tcp_request_cost(const paramd__frame_header *header, const uint8_t *payload)
{
    switch (header->opcode) {
    case PARAMD_OP_CREATE:
    case PARAMD_OP_DELETE:
        return PARAMD__TCP_HEAVY_BYTES; /* allocates, initialises or frees a whole model */
    case PARAMD_OP_PULL: {
        paramd__pull_request pull;
        if (paramd__decode_pull(payload, header->length, &pull, NULL, 0) != PARAMD_OK)
            return 0;
        uint64_t bytes = 0;
        paramd__wire_item item;
        while (paramd__next_item(&pull.items, &item))
            bytes += item.count * paramd__dtype_size(item.dtype);
        return bytes;
    }
    default:
        return header->length;
    }
}

/* Issue 9: the role each request needs (docs/SECURITY.md): read observes,
 * write trains, admin deletes.  HELLO needs none. */
static paramd__role role_needed(uint8_t opcode)
{
    switch (opcode) {
    case PARAMD_OP_HELLO:
        return PARAMD__ROLE_NONE;
    case PARAMD_OP_PUSH:
    case PARAMD_OP_PUSHPULL:
    case PARAMD_OP_CREATE:
        return PARAMD__ROLE_WRITE;
    case PARAMD_OP_DELETE:
        return PARAMD__ROLE_ADMIN;
    default:
        return PARAMD__ROLE_READ;
    }
}

/* Checks the connection's role against the request's; the role is looked
 * up again when the tokens were reloaded since HELLO (SIGHUP), so a revoked
 * token stops working on connections already open. */
static bool allowed(paramd__tcp_session *session, const paramd__frame_header *header,
                    paramd__error *error)
{
    paramd__auth *auth = session->tcp->server->auth;
    paramd__role needed = role_needed(header->opcode);
    if (auth == NULL || needed == PARAMD__ROLE_NONE)
        return true;
    uint64_t generation = paramd__auth_generation(auth);
    if (generation != session->auth_generation) {
        session->role = paramd__auth_role(auth, session->token, session->token_length);
        session->auth_generation = generation;
    }
    if (session->role == PARAMD__ROLE_NONE) {
        paramd__error_set(error, PARAMD_E_UNAUTHORIZED,
                          "the connection's token is no longer valid (the tokens were reloaded)");
        session->hello_done = false;
        session->close_after_reply = true;
        return false;
    }
    if (session->role < needed) {
        paramd__error_set(error, PARAMD_E_FORBIDDEN,
                          "opcode 0x%02x needs a token with the %s role; this connection's "
                          "has %s",
                          header->opcode, paramd__role_name(needed),
                          paramd__role_name(session->role));
        return false;
    }
    return true;
}

static bool handle_frame(paramd__tcp_session *session, const paramd__frame_header *header,
                         const uint8_t *payload, paramd__tcp_reply *reply)
{
    reply->data = NULL;
    reply->size = reply->capacity = 0;
    reply->waiting = NULL;
    paramd__error error = {0};
    if (header->opcode != PARAMD_OP_HELLO && !session->hello_done) {
        paramd__error_set(&error, PARAMD_E_HELLO_REQUIRED,
                          "opcode 0x%02x before HELLO: the first request must be HELLO",
                          header->opcode);
        return reply_error(header, &error, reply);
    }
    if (!allowed(session, header, &error))
        return reply_error(header, &error, reply);
    switch (header->opcode) {
    case PARAMD_OP_HELLO:
        return handle_hello(session, header, payload, reply);
    case PARAMD_OP_LOOKUP:
        return handle_lookup(session, header, payload, reply);
    case PARAMD_OP_PUSH:
    case PARAMD_OP_PUSHPULL:
        return handle_push(session, header, payload, reply);
    case PARAMD_OP_PULL:
        return handle_pull(session, header, payload, reply);
    case PARAMD_OP_STATS:
    case PARAMD_OP_CREATE:
    case PARAMD_OP_DELETE:
        return handle_model_request(session, header, payload, reply);
    case PARAMD_OP_LIST:
        if (header->length != 0) {
            paramd__error_set(&error, PARAMD_E_BAD_FRAME, "LIST: has no payload, got %u bytes",
                              header->length);
            return reply_error(header, &error, reply);
        }
        return reply_json(header, paramd__json_list_models(session->tcp->server), reply);
    case PARAMD_OP_ECHO:
        return handle_echo(session, header, payload, reply);
    default:
        paramd__error_set(&error, PARAMD_E_BAD_FRAME,
                          "opcode 0x%02x: not a request (see proto/PROTOCOL.md)", header->opcode);
        return reply_error(header, &error, reply);
    }
}

/* ---------------------------------------------------------------------------
 * Issue 8: every request counted in /metrics (metrics.h)
 * ------------------------------------------------------------------------- */

static paramd__operation operation_of(uint8_t opcode)
{
    switch (opcode) {
    case PARAMD_OP_HELLO:
        return PARAMD__OPERATION_HELLO;
    case PARAMD_OP_LOOKUP:
        return PARAMD__OPERATION_LOOKUP;
    case PARAMD_OP_PUSH:
    case PARAMD_OP_PUSHPULL:
        return PARAMD__OPERATION_PUSH;
    case PARAMD_OP_PULL:
        return PARAMD__OPERATION_PULL;
    case PARAMD_OP_STATS:
        return PARAMD__OPERATION_DESCRIBE;
    case PARAMD_OP_CREATE:
        return PARAMD__OPERATION_CREATE;
    case PARAMD_OP_DELETE:
        return PARAMD__OPERATION_DELETE;
    case PARAMD_OP_LIST:
        return PARAMD__OPERATION_LIST;
    case PARAMD_OP_ECHO:
        return PARAMD__OPERATION_ECHO;
    default:
        return PARAMD__OPERATION_OTHER;
    }
}

bool paramd__tcp_handle(paramd__tcp_session *session, const paramd__frame_header *header,
                        const uint8_t *payload, paramd__tcp_reply *reply)
{
    double started = paramd__metrics_now();
    bool handled = handle_frame(session, header, payload, reply);
    /* An ERROR reply carries the code as an i32 right after the 16-byte header. */
    int status = PARAMD_OK;
    if (reply->data && reply->size >= PARAMD_FRAME_HEADER_SIZE + 4 &&
        reply->data[3] == PARAMD_OP_ERROR) {
        uint32_t bits = (uint32_t)reply->data[16] | (uint32_t)reply->data[17] << 8 |
                        (uint32_t)reply->data[18] << 16 | (uint32_t)reply->data[19] << 24;
        status = (int)(int32_t)bits;
    }
    paramd__metrics_count_request(PARAMD__TRANSPORT_TCP, operation_of(header->opcode), status,
                                  paramd__metrics_now() - started,
                                  PARAMD_FRAME_HEADER_SIZE + (uint64_t)header->length,
                                  reply->data ? reply->size : 0);
    return handled;
}
