/*
 * sharded_data.c - push, pushpull and pull on a sharded handle.
 *
 * A call is planned (paramd__routed_plan): every item goes to the shard
 * that holds its tensor whole, or is cut into the shards' ranges of a
 * split tensor (a push into exactly each shard's range, a pull into the
 * parts of the range asked for that each shard holds), pointing into the
 * caller's arrays so that each shard's reply writes its weights straight
 * where they belong.  Each involved shard gets one frame, encoded as a
 * single server's would be (paramd__data_encode), and the frames go out
 * in one parallel exchange.  The replies are then merged
 * (paramd__routed_merge): the smallest step, the flags of any shard, the
 * per-shard steps remembered, and an error that names the shard.
 *
 * What the library checks before anything is sent, so that a call a shard
 * would refuse for its shape is refused whole and no shard applies part
 * of it: tensor names, a push's element counts, a pull's ranges, and, for
 * a model that clips by total norm under the nonfinite policy "error",
 * non-finite gradients.
 */
#define _DEFAULT_SOURCE
#include "sharded.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void paramd__routed_free(paramd__routed *routed)
{
    free(routed->items);
    free(routed->counts);
    routed->items = NULL;
    routed->counts = NULL;
}

static void add_item(paramd__routed *routed, uint32_t shard, paramd__request_item item)
{
    routed->items[shard * routed->capacity + routed->counts[shard]++] = item;
}

/* Cuts the items into the shards' parts. */
static int route(paramd_client *parent, const paramd__placement *placement, uint8_t opcode,
                 const char *model, const paramd_push_item *push_items,
                 const paramd_pull_item *pull_items, size_t count, paramd__routed *routed)
{
    uint32_t n = parent->sharded->map.shard_count;
    const char *operation = paramd__data_operation_name(opcode);
    for (size_t i = 0; i < count; i++) {
        const char *name = push_items ? push_items[i].tensor : pull_items[i].tensor;
        const paramd__tensor_entry *tensor = paramd__cache_tensor(placement->tensors, name);
        if (tensor == NULL)
            return paramd__fail(parent, PARAMD_E_TENSOR_NOT_FOUND,
                                "%s %s: model \"%s\" has no tensor \"%s\"", operation, model,
                                model, name);
        uint64_t whole = tensor->element_count, offset = 0, length;
        const float *grad = NULL;
        float *weights;
        if (push_items) {
            length = push_items[i].count;
            if (length != whole)
                return paramd__fail(parent, PARAMD_E_BAD_RANGE,
                                    "%s item %zu (%s): a push covers the whole tensor, offset 0 "
                                    "and count %llu; got count %llu (nothing was sent)",
                                    operation, i, name, (unsigned long long)whole,
                                    (unsigned long long)length);
            grad = push_items[i].grad;
            weights = opcode == PARAMD_OP_PUSHPULL ? push_items[i].weights : NULL;
        } else {
            offset = pull_items[i].offset;
            length = pull_items[i].count;
            weights = pull_items[i].weights;
            if (length == 0)
                return paramd__fail(parent, PARAMD_E_BAD_RANGE,
                                    "%s item %zu (%s): count 0: a range has at least one "
                                    "element",
                                    operation, i, name);
            if (offset > whole || length > whole - offset)
                return paramd__fail(parent, PARAMD_E_BAD_RANGE,
                                    "%s item %zu (%s): range [%llu, %llu) is outside the "
                                    "tensor's %llu elements",
                                    operation, i, name, (unsigned long long)offset,
                                    (unsigned long long)(offset + length),
                                    (unsigned long long)whole);
        }
        const uint32_t *ids = &placement->ids[(size_t)tensor->id * n];
        int32_t owner = placement->owners[tensor->id];
        if (owner >= 0) {
            add_item(routed, (uint32_t)owner,
                     (paramd__request_item){ids[owner], offset, length, grad, weights});
            continue;
        }
        for (uint32_t s = 0; s < n; s++) {
            uint64_t first, held;
            paramd_shard_range(whole, n, s, &first, &held);
            uint64_t begin = offset > first ? offset : first;
            uint64_t end = offset + length < first + held ? offset + length : first + held;
            if (begin >= end)
                continue; /* nothing of this shard's range (or an empty range) */
            add_item(routed, s,
                     (paramd__request_item){ids[s], begin, end - begin,
                                            grad ? grad + (begin - offset) : NULL,
                                            weights ? weights + (begin - offset) : NULL});
        }
    }
    return PARAMD_OK;
}

int paramd__routed_plan(paramd_client *parent, const paramd__placement *placement,
                        uint8_t opcode, const char *model, const paramd_push_item *push_items,
                        const paramd_pull_item *pull_items, size_t count,
                        const paramd_push_options *options, int pull_dtype,
                        paramd__routed *routed)
{
    uint32_t n = parent->sharded->map.shard_count;
    int dtype = paramd__data_dtype(pull_items, options, pull_dtype);
    memset(routed, 0, sizeof *routed);
    routed->opcode = opcode;
    routed->dtype = (uint8_t)(dtype ? dtype : PARAMD_DTYPE_FLOAT32);
    routed->capacity = count;
    routed->items = malloc((size_t)n * count * sizeof *routed->items);
    routed->counts = calloc(n, sizeof *routed->counts);
    if (routed->items == NULL || routed->counts == NULL) {
        paramd__routed_free(routed);
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for %zu items", count);
    }
    int result = route(parent, placement, opcode, model, push_items, pull_items, count, routed);
    if (result == PARAMD_OK && push_items && placement->spans && placement->clip_norm &&
        !(options && options->has_grad_norm)) {
        /* No shard sees the whole push: the library gives them its norm. */
        size_t bad_item, bad_index;
        routed->norm = paramd__push_grad_norm(push_items, count, routed->dtype,
                                              placement->norm_type, &bad_item, &bad_index);
        routed->has_norm = true;
        if (bad_item < count && placement->nonfinite_error)
            result = paramd__fail(parent, PARAMD_E_NON_FINITE,
                                  "grads.%s[%zu]: gradient is %g; nothing was sent to any shard "
                                  "(nonfinite policy \"error\")",
                                  push_items[bad_item].tensor, bad_index,
                                  (double)push_items[bad_item].grad[bad_index]);
    }
    if (result != PARAMD_OK)
        paramd__routed_free(routed);
    return result;
}

int paramd__routed_encode(paramd_client *parent, const paramd__placement *placement,
                          const paramd__routed *routed, const paramd_push_options *options,
                          uint32_t shard, paramd__buffer *buffer, paramd__pending *pending)
{
    paramd_client *handle = parent->sharded->shards[shard];
    paramd__data_request request = {
        .opcode = routed->opcode,
        .request_id = paramd__take_id(handle),
        .model_id = placement->model_ids[shard],
        .dtype = routed->dtype,
        .items = &routed->items[shard * routed->capacity],
        .count = routed->counts[shard],
    };
    paramd__data_request_options(&request, routed->opcode == PARAMD_OP_PULL ? NULL : options);
    if (routed->has_norm) {
        request.flags |= PARAMD_PUSH_HAS_GRAD_NORM;
        request.grad_norm = routed->norm;
    }
    /* Each shard's own step: see "Steps" in client.h. */
    if ((request.flags & PARAMD_PUSH_HAS_VERSION) && placement->steps[shard] != PARAMD__STEP_UNKNOWN)
        request.version = placement->steps[shard];
    int result = paramd__data_encode(handle, &request, buffer, pending);
    if (result != PARAMD_OK)
        return paramd__shard_fail(parent, shard, result, handle->message);
    return PARAMD_OK;
}

/* The error of a call that failed on some shards: the first failed
 * shard's, naming it, with what the other shards did. */
static int merge_failure(paramd_client *parent, const paramd__routed *routed,
                         paramd__pending *const *pending, const int *status, uint32_t n)
{
    bool *applied = calloc(n, sizeof *applied), *failed = calloc(n, sizeof *failed);
    if (applied == NULL || failed == NULL) {
        free(applied);
        free(failed);
        return paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    }
    uint32_t first = n, applied_count = 0, failed_count = 0;
    for (uint32_t s = 0; s < n; s++) {
        if (pending[s] == NULL)
            continue;
        if (status[s] == PARAMD_OK) {
            applied[s] = true;
            applied_count++;
        } else {
            failed[s] = first < n;
            failed_count++;
            if (first == n)
                first = s;
        }
    }
    const paramd__pending *p = pending[first];
    const char *message = p->message ? p->message : paramd_strerror(status[first]);
    char text[PARAMD__MESSAGE_SIZE], list[256];
    size_t used = (size_t)snprintf(text, sizeof text, "%s", message);
    if (status[first] == PARAMD_E_NOT_OWNER && used < sizeof text)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "; this client's shard map %s is version %llu",
                                 parent->sharded->path,
                                 (unsigned long long)parent->sharded->map.version);
    if (failed_count > 1 && used < sizeof text) {
        paramd__shard_list_text(failed, n, list, sizeof list);
        used += (size_t)snprintf(text + used, sizeof text - used, "; shard%s %s failed too",
                                 failed_count > 2 ? "s" : "", list);
    }
    if (applied_count > 0 && used < sizeof text) {
        paramd__shard_list_text(applied, n, list, sizeof list);
        snprintf(text + used, sizeof text - used, "; shard%s %s %s", applied_count > 1 ? "s" : "",
                 list,
                 routed->opcode == PARAMD_OP_PULL ? "answered (their weights were written)"
                                                  : "applied the push");
    }
    free(applied);
    free(failed);
    return paramd__shard_fail(parent, first, status[first], text);
}

int paramd__routed_merge(paramd_client *parent, paramd__placement *placement,
                         const paramd__routed *routed, paramd__pending *const *pending,
                         const int *status, paramd_push_result *outcome)
{
    uint32_t n = parent->sharded->map.shard_count;
    bool all_ok = true;
    for (uint32_t s = 0; s < n; s++) {
        if (pending[s] == NULL)
            continue;
        all_ok &= status[s] == PARAMD_OK;
        /* Weights that came back carry their shard's step: the version of
         * this handle's next push to that shard. */
        if (placement && status[s] == PARAMD_OK && routed->opcode != PARAMD_OP_PUSH)
            placement->steps[s] = pending[s]->push.step;
    }
    if (!all_ok)
        return merge_failure(parent, routed, pending, status, n);
    paramd_push_result merged = {.step = UINT64_MAX,
                                 .lr = NAN,
                                 .grad_norm = routed->has_norm ? routed->norm : NAN,
                                 .loss_scale = NAN};
    for (uint32_t s = 0; s < n; s++) {
        if (pending[s] == NULL)
            continue;
        const paramd_push_result *r = &pending[s]->push;
        merged.step = r->step < merged.step ? r->step : merged.step;
        if (isnan(merged.lr))
            merged.lr = r->lr;
        if (isnan(merged.grad_norm))
            merged.grad_norm = r->grad_norm;
        if (isnan(merged.loss_scale))
            merged.loss_scale = r->loss_scale;
        merged.flags |= r->flags;
    }
    if (merged.step == UINT64_MAX)
        merged.step = 0;
    if (outcome)
        *outcome = merged;
    return paramd__succeed(parent);
}

/* ---------------------------------------------------------------------------
 * One call
 * ------------------------------------------------------------------------- */

/* Whether every involved shard refused with `code` (then none applied
 * anything), or whether any did. */
static bool all_refused(paramd__pending *const *pending, const int *status, uint32_t n, int code)
{
    bool any = false;
    for (uint32_t s = 0; s < n; s++) {
        if (pending[s] == NULL)
            continue;
        if (status[s] != code)
            return false;
        any = true;
    }
    return any;
}

static bool any_refused(paramd__pending *const *pending, const int *status, uint32_t n, int code)
{
    for (uint32_t s = 0; s < n; s++)
        if (pending[s] && status[s] == code)
            return true;
    return false;
}

/* The call's working memory, one of each per shard. */
typedef struct call_state {
    paramd__pending *slots;
    paramd__pending **pending;     /* &slots[s] for an involved shard, else NULL */
    paramd__exchange *exchanges;
    int *status;
} call_state;

/* Sends each involved shard its part in one parallel exchange and fills
 * state->status: each shard's transport error or the server's answer. */
static int exchange_parts(paramd_client *parent, const paramd__placement *placement,
                          const paramd__routed *routed, const paramd_push_options *options,
                          int64_t deadline, call_state *state)
{
    paramd__sharded *sharded = parent->sharded;
    uint32_t n = sharded->map.shard_count, involved = 0;
    int result = PARAMD_OK;
    for (uint32_t s = 0; s < n; s++) {
        state->pending[s] = NULL;
        if (routed->counts[s] == 0 || result != PARAMD_OK)
            continue;
        paramd_client *shard = sharded->shards[s];
        shard->request.size = 0;
        result = paramd__routed_encode(parent, placement, routed, options, s, &shard->request,
                                       &state->slots[s]);
        if (result != PARAMD_OK)
            break;
        state->pending[s] = &state->slots[s];
        state->exchanges[involved++] = (paramd__exchange){.client = shard,
                                                          .out = shard->request.data,
                                                          .size = shard->request.size,
                                                          .pending = &state->slots[s],
                                                          .count = 1};
    }
    if (result != PARAMD_OK)
        return result;
    paramd__wire_exchange_many(state->exchanges, involved, deadline);
    for (uint32_t s = 0, k = 0; s < n; s++) {
        if (state->pending[s] == NULL)
            continue;
        state->status[s] = state->exchanges[k].result != PARAMD_OK ? state->exchanges[k].result
                                                                    : state->slots[s].status;
        k++;
    }
    return PARAMD_OK;
}

static void release_parts(call_state *state, uint32_t n)
{
    for (uint32_t s = 0; s < n; s++) {
        if (state->pending[s])
            paramd__data_release(&state->slots[s]);
        state->pending[s] = NULL;
    }
}

/* Connects the shards a plan needs.  *reconnected says that one of them
 * connected anew since the placement was learnt (it may have restarted
 * and lost or renumbered the model). */
static int connect_parts(paramd_client *parent, const paramd__placement *placement,
                         const paramd__routed *routed, int64_t deadline, bool *reconnected)
{
    *reconnected = false;
    for (uint32_t s = 0; s < parent->sharded->map.shard_count; s++) {
        if (routed->counts[s] == 0)
            continue;
        int result = paramd__shard_ensure(parent, s, deadline);
        if (result != PARAMD_OK)
            return result;
        *reconnected |=
            parent->sharded->shards[s]->connection_generation != placement->generations[s];
    }
    return PARAMD_OK;
}

/* One attempt of a call, once the placement (and so the shard count,
 * which reloading the map may change) is known.  *retry asks for another,
 * with the placement learnt again, when nothing was applied anywhere and a
 * fresh placement may change the request. */
static int attempt_placed(paramd_client *parent, paramd__placement *placement, bool from_cache,
                          uint8_t opcode, const char *model, const paramd_push_item *push_items,
                          const paramd_pull_item *pull_items, size_t count,
                          const paramd_push_options *options, int pull_dtype,
                          paramd_push_result *outcome, bool first, int64_t deadline,
                          call_state *state, bool *retry)
{
    uint32_t n = parent->sharded->map.shard_count;
    int result;
    paramd__routed routed;
    result = paramd__routed_plan(parent, placement, opcode, model, push_items, pull_items, count,
                                 options, pull_dtype, &routed);
    if (result == PARAMD_E_TENSOR_NOT_FOUND && from_cache && first) {
        /* The model may have been created again with other tensors. */
        paramd__placement_invalidate(parent, model);
        *retry = true;
        return result;
    }
    if (result != PARAMD_OK)
        return result;
    bool reconnected;
    result = connect_parts(parent, placement, &routed, deadline, &reconnected);
    if (result == PARAMD_OK && reconnected) {
        paramd__routed_free(&routed);
        paramd__placement_invalidate(parent, model);
        *retry = first;
        return first ? PARAMD_OK
                     : paramd__fail(parent, PARAMD_E_CONNECTION,
                                    "%s %s: a shard reconnected again during the call",
                                    paramd__data_operation_name(opcode), model);
    }
    if (result == PARAMD_OK)
        result = exchange_parts(parent, placement, &routed, options, deadline, state);
    if (result != PARAMD_OK) {
        release_parts(state, n);
        paramd__routed_free(&routed);
        return result;
    }
    bool gave_norm = routed.has_norm || (options && options->has_grad_norm);
    if (first && from_cache && all_refused(state->pending, state->status, n,
                                           PARAMD_E_MODEL_NOT_FOUND)) {
        /* Stale ids: the model was deleted and created again. */
        *retry = true;
    } else {
        result = paramd__routed_merge(parent, placement, &routed, state->pending, state->status,
                                      outcome);
        if (result != PARAMD_OK &&
            (any_refused(state->pending, state->status, n, PARAMD_E_NOT_OWNER) ||
             any_refused(state->pending, state->status, n, PARAMD_E_MODEL_NOT_FOUND))) {
            paramd__placement_invalidate(parent, model);
        } else if (first && push_items && !gave_norm && placement->spans &&
                   all_refused(state->pending, state->status, n, PARAMD_E_BAD_REQUEST)) {
            /* Perhaps clipping by total norm was turned on (PATCH) since the
             * placement was learnt, and the shards want the norm.  Nothing
             * was applied anywhere: learn the model again and, if it now
             * clips, send the push again with the norm. */
            int code = parent->error;
            char message[PARAMD__MESSAGE_SIZE];
            memcpy(message, parent->message, sizeof message);
            paramd__placement_invalidate(parent, model);
            bool cached;
            *retry = paramd__placement_get(parent, model, deadline, &placement, &cached) ==
                         PARAMD_OK &&
                     placement->clip_norm;
            if (!*retry)
                result = paramd__fail(parent, code, "%s", message);
            release_parts(state, n);
            paramd__routed_free(&routed);
            return result; /* the placement is fresh: the retry uses it */
        }
    }
    release_parts(state, n);
    paramd__routed_free(&routed);
    if (*retry)
        paramd__placement_invalidate(parent, model);
    return result;
}

static int attempt_call(paramd_client *parent, uint8_t opcode, const char *model,
                        const paramd_push_item *push_items, const paramd_pull_item *pull_items,
                        size_t count, const paramd_push_options *options, int pull_dtype,
                        paramd_push_result *outcome, bool first, int64_t deadline, bool *retry)
{
    *retry = false;
    paramd__placement *placement;
    bool from_cache;
    int result = paramd__placement_get(parent, model, deadline, &placement, &from_cache);
    if (result != PARAMD_OK)
        return result;
    uint32_t n = parent->sharded->map.shard_count;
    call_state state = {calloc(n, sizeof *state.slots), calloc(n, sizeof *state.pending),
                        calloc(n, sizeof *state.exchanges), calloc(n, sizeof *state.status)};
    if (state.slots == NULL || state.pending == NULL || state.exchanges == NULL ||
        state.status == NULL)
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
    else
        result = attempt_placed(parent, placement, from_cache, opcode, model, push_items,
                                pull_items, count, options, pull_dtype, outcome, first, deadline,
                                &state, retry);
    free(state.slots);
    free(state.pending);
    free(state.exchanges);
    free(state.status);
    return result;
}

int paramd__sharded_data_call(paramd_client *parent, uint8_t opcode, const char *model,
                              const paramd_push_item *push_items,
                              const paramd_pull_item *pull_items, size_t count,
                              const paramd_push_options *options, int pull_dtype,
                              paramd_push_result *outcome)
{
    int result = paramd__data_check_arguments(parent, opcode, model, push_items, pull_items, count,
                                              paramd__data_dtype(pull_items, options, pull_dtype));
    if (result != PARAMD_OK)
        return result;
    int64_t deadline = paramd__deadline(parent->timeout_ms);
    bool retry = true;
    for (int attempt = 0; retry && attempt < 2; attempt++)
        result = attempt_call(parent, opcode, model, push_items, pull_items, count, options,
                              pull_dtype, outcome, attempt == 0, deadline, &retry);
    return result;
}
