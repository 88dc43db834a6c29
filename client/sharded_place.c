/*
 * sharded_place.c - where a model's tensors live, learnt from the shards.
 *
 * The first call that names a model sends every shard, in one parallel
 * exchange, a LOOKUP of all its tensors and a STATS of the model (its
 * description).  A sharded server lists only the tensors it holds, each
 * with its whole element count and shape, so the union of the lists is
 * the model: a tensor one shard lists lives whole there; a tensor every
 * shard lists is split, shard k holding paramd_shard_range's range k.
 * This is the servers' own placement, whatever optimizer rule produced it,
 * so the client never has to recompute it.  The descriptions say which
 * shard each server is and which shard-map version it runs (a stale map
 * is noticed before anything is pushed), and how the model clips and
 * treats non-finite gradients (for the global norm, sharded_data.c).
 *
 * A placement is kept until a shard it uses reconnects (its ids may be
 * gone), the model is deleted or created through the handle, or a call
 * finds it stale; then the next call learns it again.
 */
#define _DEFAULT_SOURCE
#include "sharded.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void placement_free(paramd__placement *placement)
{
    if (placement == NULL)
        return;
    paramd__cache_entry_free(placement->tensors);
    free(placement->owners);
    free(placement->ids);
    free(placement->model_ids);
    free(placement->generations);
    free(placement->steps);
    free(placement->model);
    free(placement);
}

void paramd__placement_drop(paramd_client *parent, const char *model)
{
    for (paramd__placement **link = &parent->sharded->models; *link; link = &(*link)->next) {
        if (strcmp((*link)->model, model) == 0) {
            paramd__placement *dropped = *link;
            *link = dropped->next;
            placement_free(dropped);
            return;
        }
    }
}

void paramd__placement_invalidate(paramd_client *parent, const char *model)
{
    for (paramd__placement *p = parent->sharded->models; p; p = p->next)
        if (strcmp(p->model, model) == 0)
            p->stale = true;
}

/* Puts a newly learnt placement in the list, in place of a stale one of
 * the same model, whose steps it keeps where they still apply. */
static void replace_placement(paramd__sharded *sharded, paramd__placement *placement)
{
    for (paramd__placement **link = &sharded->models; *link; link = &(*link)->next) {
        paramd__placement *old = *link;
        if (strcmp(old->model, placement->model) != 0)
            continue;
        for (uint32_t s = 0; s < sharded->map.shard_count; s++)
            if (old->generations[s] == placement->generations[s] &&
                old->model_ids[s] == placement->model_ids[s])
                placement->steps[s] = old->steps[s];
        *link = old->next;
        placement_free(old);
        break;
    }
    placement->next = sharded->models;
    sharded->models = placement;
}

void paramd__placement_clear(paramd__sharded *sharded)
{
    while (sharded->models) {
        paramd__placement *next = sharded->models->next;
        placement_free(sharded->models);
        sharded->models = next;
    }
}

/* ---------------------------------------------------------------------------
 * What the descriptions say
 * ------------------------------------------------------------------------- */

typedef struct description_facts {
    bool sharded;
    uint64_t shard_id, map_version;
    bool clip_norm;
    double norm_type;
    bool nonfinite_error;
} description_facts;

static int read_description(const char *text, description_facts *facts)
{
    memset(facts, 0, sizeof *facts);
    facts->norm_type = 2;
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return PARAMD_E_BAD_FRAME;
    }
    const json_t *shard = json_object_get(root, "shard");
    if (json_is_object(shard)) {
        facts->sharded = true;
        facts->shard_id = (uint64_t)json_integer_value(json_object_get(shard, "id"));
        facts->map_version =
            (uint64_t)json_integer_value(json_object_get(shard, "shard_map_version"));
    }
    const json_t *clip = json_object_get(root, "clip");
    if (json_is_object(clip) && json_object_get(clip, "max_norm")) {
        facts->clip_norm = !json_is_true(json_object_get(clip, "per_tensor"));
        const json_t *norm_type = json_object_get(clip, "norm_type");
        if (json_is_string(norm_type))
            facts->norm_type = INFINITY; /* "inf" */
        else if (json_is_number(norm_type))
            facts->norm_type = json_number_value(norm_type);
    }
    const char *nonfinite = json_string_value(json_object_get(root, "nonfinite"));
    facts->nonfinite_error = nonfinite && strcmp(nonfinite, "error") == 0;
    json_decref(root);
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * The union of the shards' tensors
 * ------------------------------------------------------------------------- */

/* One tensor of the union while it is built: which shards listed it, and
 * its place in the order (see order_tensors). */
typedef struct seen_tensor {
    const paramd__tensor_entry *entry; /* as the first shard listing it has it */
    uint32_t listed;
    uint32_t shard, local;             /* the first shard listing it, and where in its list */
    uint32_t group;
    uint32_t index;                    /* its position in `seen` */
} seen_tensor;

/* The order of paramd_model_tensors.  Each shard lists its tensors in
 * creation order, and split tensors appear in every list, so they anchor
 * the lists to each other: whole tensors come in groups between the split
 * tensors (group g: after g of them), shard by shard inside a group.  That
 * is the creation order whenever the whole tensors between two split ones
 * sit on one shard. */
static int compare_seen(const void *a, const void *b)
{
    const seen_tensor *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    bool x_split = x->listed > 1, y_split = y->listed > 1;
    if (x_split != y_split)
        return x_split ? 1 : -1;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return x->local < y->local ? -1 : x->local > y->local;
}

static bool same_shape(const paramd__tensor_entry *a, const paramd__tensor_entry *b)
{
    return a->element_count == b->element_count && a->dimension_count == b->dimension_count &&
           memcmp(a->shape, b->shape, a->dimension_count * sizeof a->shape[0]) == 0;
}

/* Builds the placement from every shard's LOOKUP entry (lookups[s]). */
static int build_placement(paramd_client *parent, const char *model,
                           paramd__model_entry *const *lookups, paramd__placement **out)
{
    paramd__sharded *sharded = parent->sharded;
    uint32_t n = sharded->map.shard_count;
    uint32_t total = 0;
    for (uint32_t s = 0; s < n; s++)
        total += lookups[s]->tensor_count;
    /* `names` indexes the distinct tensors by name, in the order met. */
    paramd__model_entry *names = paramd__cache_entry_new(model, 0, total);
    seen_tensor *seen = calloc(total ? total : 1, sizeof *seen);
    paramd__placement *placement = calloc(1, sizeof *placement);
    int result = PARAMD_OK;
    if (names == NULL || seen == NULL || placement == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for model \"%s\"",
                              model);
        goto done;
    }
    uint32_t distinct = 0;
    for (uint32_t s = 0; s < n && result == PARAMD_OK; s++) {
        for (uint32_t j = 0; j < lookups[s]->tensor_count; j++) {
            const paramd__tensor_entry *tensor = &lookups[s]->tensors[j];
            const paramd__tensor_entry *known = paramd__cache_tensor(names, tensor->name);
            if (known) {
                seen_tensor *entry = &seen[known->id];
                if (!same_shape(entry->entry, tensor)) {
                    result = paramd__fail(parent, PARAMD_E_NOT_OWNER,
                                          "model \"%s\": shards %u and %u disagree about tensor "
                                          "\"%s\" (%llu and %llu elements)",
                                          model, entry->shard, s, tensor->name,
                                          (unsigned long long)entry->entry->element_count,
                                          (unsigned long long)tensor->element_count);
                    break;
                }
                entry->listed++;
                continue;
            }
            if (paramd__cache_entry_set(names, distinct, tensor->name, strlen(tensor->name),
                                        distinct, tensor->dimension_count, tensor->shape,
                                        tensor->element_count) != PARAMD_OK) {
                result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for model \"%s\"",
                                      model);
                break;
            }
            seen[distinct] = (seen_tensor){tensor, 1, s, j, 0, distinct};
            distinct++;
        }
    }
    for (uint32_t t = 0; t < distinct && result == PARAMD_OK; t++) {
        if (seen[t].listed != 1 && seen[t].listed != n)
            result = paramd__fail(parent, PARAMD_E_NOT_OWNER,
                                  "model \"%s\": tensor \"%s\" is on %u of the %u shards: a "
                                  "tensor is whole on one shard or split over all of them (do "
                                  "the shards run the same shard map?)",
                                  model, seen[t].entry->name, seen[t].listed, n);
    }
    if (result != PARAMD_OK)
        goto done;
    /* Groups: how many split tensors each shard listed before each whole
     * one; a split tensor's rank among them in shard 0's list. */
    for (uint32_t s = 0; s < n; s++) {
        uint32_t splits = 0;
        for (uint32_t j = 0; j < lookups[s]->tensor_count; j++) {
            seen_tensor *entry = &seen[paramd__cache_tensor(names, lookups[s]->tensors[j].name)->id];
            if (entry->listed > 1) {
                if (s == 0)
                    entry->group = splits;
                splits++;
            } else {
                entry->group = splits;
            }
        }
    }
    qsort(seen, distinct, sizeof *seen, compare_seen);

    placement->model = strdup(model);
    placement->tensors = paramd__cache_entry_new(model, 0, distinct);
    placement->owners = calloc(distinct ? distinct : 1, sizeof *placement->owners);
    placement->ids = calloc((size_t)(distinct ? distinct : 1) * n, sizeof *placement->ids);
    placement->model_ids = calloc(n, sizeof *placement->model_ids);
    placement->generations = calloc(n, sizeof *placement->generations);
    placement->steps = calloc(n, sizeof *placement->steps);
    if (placement->model == NULL || placement->tensors == NULL || placement->owners == NULL ||
        placement->ids == NULL || placement->model_ids == NULL ||
        placement->generations == NULL || placement->steps == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for model \"%s\"",
                              model);
        goto done;
    }
    bool *holds = calloc(n, sizeof *holds);
    if (holds == NULL)
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for model \"%s\"",
                              model);
    for (uint32_t t = 0; t < distinct && result == PARAMD_OK; t++) {
        const paramd__tensor_entry *tensor = seen[t].entry;
        if (paramd__cache_entry_set(placement->tensors, t, tensor->name, strlen(tensor->name), t,
                                    tensor->dimension_count, tensor->shape,
                                    tensor->element_count) != PARAMD_OK) {
            result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory for model \"%s\"",
                                  model);
            break;
        }
        bool split = seen[t].listed > 1;
        placement->owners[t] = split ? -1 : (int32_t)seen[t].shard;
        for (uint32_t s = 0; s < n; s++) {
            const paramd__tensor_entry *there = paramd__cache_tensor(lookups[s], tensor->name);
            if (there) {
                placement->ids[(size_t)t * n + s] = there->id;
                holds[s] = true;
            }
        }
    }
    uint32_t holding = 0;
    for (uint32_t s = 0; holds && s < n; s++)
        holding += holds[s];
    free(holds);
    if (result != PARAMD_OK)
        goto done;
    for (uint32_t s = 0; s < n; s++) {
        placement->model_ids[s] = lookups[s]->id;
        placement->generations[s] = sharded->shards[s]->connection_generation;
        placement->steps[s] = PARAMD__STEP_UNKNOWN;
    }
    placement->spans = holding > 1;
    *out = placement;
    placement = NULL;
done:
    paramd__cache_entry_free(names);
    free(seen);
    placement_free(placement);
    return result;
}

/* ---------------------------------------------------------------------------
 * Asking the shards
 * ------------------------------------------------------------------------- */

/* Checks what shard s's description says of the cluster.  *stale is set
 * when it runs another version of the shard map. */
static int check_shard(paramd_client *parent, uint32_t s, const description_facts *facts,
                       bool *stale)
{
    const paramd__sharded *sharded = parent->sharded;
    char message[PARAMD__MESSAGE_SIZE];
    if (!facts->sharded) {
        snprintf(message, sizeof message,
                 "the server is not a shard (it runs without --shard-map), but shard map %s "
                 "lists it as shard %u",
                 sharded->path, s);
        return paramd__shard_fail(parent, s, PARAMD_E_NOT_OWNER, message);
    }
    if (facts->map_version != sharded->map.version) {
        *stale = true;
        snprintf(message, sizeof message,
                 "stale shard map: this client's map %s is version %llu, but the shard runs "
                 "version %llu",
                 sharded->path, (unsigned long long)sharded->map.version,
                 (unsigned long long)facts->map_version);
        return paramd__shard_fail(parent, s, PARAMD_E_NOT_OWNER, message);
    }
    if (facts->shard_id != s) {
        snprintf(message, sizeof message,
                 "the server is shard %llu, but shard map %s (version %llu) gives its address "
                 "to shard %u",
                 (unsigned long long)facts->shard_id, sharded->path,
                 (unsigned long long)sharded->map.version, s);
        return paramd__shard_fail(parent, s, PARAMD_E_NOT_OWNER, message);
    }
    return PARAMD_OK;
}

/* One round of LOOKUP and STATS on every shard, and the placement from
 * their answers.  *stale says the failure is a shard-map version. */
static int discover(paramd_client *parent, const char *model, int64_t deadline,
                    paramd__placement **out, bool *stale)
{
    paramd__sharded *sharded = parent->sharded;
    uint32_t n = sharded->map.shard_count;
    *stale = false;
    for (uint32_t s = 0; s < n; s++) {
        int result = paramd__shard_ensure(parent, s, deadline);
        if (result != PARAMD_OK)
            return result;
    }
    paramd__pending *pending = calloc(2 * (size_t)n, sizeof *pending);
    paramd__exchange *exchanges = calloc(n, sizeof *exchanges);
    paramd__model_entry **lookups = calloc(n, sizeof *lookups);
    bool *missing = calloc(n, sizeof *missing);
    int result = PARAMD_OK;
    if (pending == NULL || exchanges == NULL || lookups == NULL || missing == NULL) {
        result = paramd__fail(parent, PARAMD_E_NO_MEMORY, "out of memory");
        goto done;
    }
    for (uint32_t s = 0; s < n && result == PARAMD_OK; s++) {
        paramd_client *shard = sharded->shards[s];
        shard->scratch.size = 0;
        for (int k = 0; k < 2 && result == PARAMD_OK; k++) {
            uint8_t opcode = k == 0 ? PARAMD_OP_LOOKUP : PARAMD_OP_STATS;
            paramd__pending *p = &pending[2 * s + k];
            paramd__pending_init(p, opcode, paramd__take_id(shard));
            p->model_name = model;
            paramd__control_request request = {opcode, p->request_id, model, NULL, 0};
            result = paramd__buffer_encode(shard, &shard->scratch, paramd__encode_control,
                                           &request);
            if (result != PARAMD_OK)
                paramd__shard_fail(parent, s, result, shard->message);
        }
        exchanges[s] = (paramd__exchange){.client = shard,
                                          .out = shard->scratch.data,
                                          .size = shard->scratch.size,
                                          .pending = &pending[2 * s],
                                          .count = 2};
    }
    if (result != PARAMD_OK)
        goto done;
    paramd__wire_exchange_many(exchanges, n, deadline);
    uint32_t missing_count = 0;
    for (uint32_t s = 0; s < n; s++) {
        if (exchanges[s].result != PARAMD_OK) {
            result = paramd__shard_fail(parent, s, exchanges[s].result,
                                        sharded->shards[s]->message);
            goto done;
        }
        for (int k = 0; k < 2; k++) {
            const paramd__pending *p = &pending[2 * s + k];
            if (p->status == PARAMD_E_MODEL_NOT_FOUND) {
                missing[s] = true;
            } else if (p->status != PARAMD_OK) {
                result = paramd__shard_fail(parent, s, p->status, p->message);
                goto done;
            }
        }
        missing_count += missing[s];
    }
    if (missing_count > 0) {
        result = paramd__sharded_missing(parent, model, missing);
        goto done;
    }
    description_facts facts = {0}, first = {0};
    for (uint32_t s = 0; s < n && result == PARAMD_OK; s++) {
        if (read_description(pending[2 * s + 1].json, &facts) != PARAMD_OK)
            result = paramd__shard_fail(parent, s, PARAMD_E_BAD_FRAME,
                                        "the model's description is not a JSON object");
        else
            result = check_shard(parent, s, &facts, stale);
        if (s == 0)
            first = facts;
    }
    if (result != PARAMD_OK)
        goto done;
    for (uint32_t s = 0; s < n; s++) {
        lookups[s] = pending[2 * s].lookup;
        pending[2 * s].lookup = NULL;
    }
    paramd__placement *placement = NULL;
    result = build_placement(parent, model, lookups, &placement);
    if (result == PARAMD_OK) {
        placement->clip_norm = first.clip_norm;
        placement->norm_type = first.norm_type;
        placement->nonfinite_error = first.nonfinite_error;
        replace_placement(sharded, placement);
        *out = placement;
    }
done:
    for (uint32_t s = 0; lookups && s < n; s++)
        paramd__cache_entry_free(lookups[s]);
    for (size_t i = 0; pending && i < 2 * (size_t)n; i++)
        paramd__pending_clear(&pending[i]);
    free(pending);
    free(exchanges);
    free(lookups);
    free(missing);
    return result;
}

int paramd__placement_get(paramd_client *parent, const char *model, int64_t deadline,
                          paramd__placement **placement, bool *from_cache)
{
    paramd__sharded *sharded = parent->sharded;
    *from_cache = false;
    if (paramd__sharded_check(parent) != PARAMD_OK)
        return parent->error;
    for (paramd__placement *p = sharded->models; p; p = p->next) {
        if (strcmp(p->model, model) == 0 && !p->stale) {
            *placement = p;
            *from_cache = true;
            return PARAMD_OK;
        }
    }
    bool stale;
    int result = discover(parent, model, deadline, placement, &stale);
    if (result == PARAMD_OK || !stale)
        return result;
    /* A shard runs another map: the file may have been updated since it
     * was read.  Read it once more and, if it changed, try again. */
    char message[PARAMD__MESSAGE_SIZE];
    memcpy(message, parent->message, sizeof message);
    bool changed;
    if (paramd__sharded_reload(parent, &changed) != PARAMD_OK)
        return paramd__fail(parent, result, "%s (%s)", message, parent->message);
    if (changed) {
        result = discover(parent, model, deadline, placement, &stale);
        if (result == PARAMD_OK || !stale)
            return result;
        memcpy(message, parent->message, sizeof message);
    }
    return paramd__fail(parent, result, "%s (after reading the file again%s)", message,
                        changed ? ", which had changed" : "");
}
