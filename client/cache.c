/*
 * cache.c - the client's cache of model and tensor ids.
 *
 * A model is looked up once, with every tensor (LOOKUP with no names), and
 * kept in a list on the handle; its tensors are found by name through an
 * open-addressed hash, so a push of thousands of tensors costs one probe
 * per tensor.  Entries are dropped when the server says their id is gone
 * (model_not_found), when the model is deleted through this handle, and on
 * every reconnect (ids belong to one server process).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: names are short and the table is private, so a simple hash does. */
static uint64_t hash_name(const char *name)
{
    uint64_t hash = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        hash = (hash ^ *p) * 1099511628211ull;
    return hash;
}

static char *copy_string(const char *data, size_t length)
{
    char *copy = malloc(length + 1);
    if (copy) {
        memcpy(copy, data, length);
        copy[length] = '\0';
    }
    return copy;
}

void paramd__cache_entry_free(paramd__model_entry *entry)
{
    if (entry == NULL)
        return;
    for (uint32_t i = 0; entry->tensors && i < entry->tensor_count; i++)
        free(entry->tensors[i].name);
    free(entry->tensors);
    free(entry->slots);
    free(entry->name);
    free(entry);
}

paramd__model_entry *paramd__cache_entry_new(const char *model, uint32_t id,
                                             uint32_t tensor_count)
{
    paramd__model_entry *entry = calloc(1, sizeof *entry);
    if (entry == NULL)
        return NULL;
    entry->id = id;
    entry->tensor_count = tensor_count;
    entry->name = copy_string(model, strlen(model));
    entry->tensors = calloc(tensor_count ? tensor_count : 1, sizeof *entry->tensors);
    entry->slot_count = 8;
    while (entry->slot_count < 2 * (size_t)tensor_count)
        entry->slot_count *= 2;
    entry->slots = calloc(entry->slot_count, sizeof *entry->slots);
    if (entry->name == NULL || entry->tensors == NULL || entry->slots == NULL) {
        paramd__cache_entry_free(entry);
        return NULL;
    }
    return entry;
}

int paramd__cache_entry_set(paramd__model_entry *entry, uint32_t index, const char *name,
                            size_t name_length, uint32_t id, uint8_t dimension_count,
                            const uint64_t *shape, uint64_t element_count)
{
    paramd__tensor_entry *tensor = &entry->tensors[index];
    tensor->name = copy_string(name, name_length);
    if (tensor->name == NULL)
        return PARAMD_E_NO_MEMORY;
    tensor->id = id;
    tensor->dimension_count = dimension_count;
    memcpy(tensor->shape, shape, sizeof tensor->shape[0] * dimension_count);
    tensor->element_count = element_count;
    size_t mask = entry->slot_count - 1, slot = (size_t)hash_name(tensor->name) & mask;
    while (entry->slots[slot] != 0)
        slot = (slot + 1) & mask;
    entry->slots[slot] = index + 1;
    return PARAMD_OK;
}

paramd__model_entry *paramd__cache_entry_from_lookup(const char *model,
                                                     const paramd__lookup_reply *reply)
{
    paramd__model_entry *entry = paramd__cache_entry_new(model, reply->model_id,
                                                         reply->tensor_count);
    if (entry == NULL)
        return NULL;
    size_t position = 0;
    for (uint32_t i = 0; i < reply->tensor_count; i++) {
        paramd__lookup_entry wire;
        paramd__lookup_next_entry(reply, &position, &wire);
        if (paramd__cache_entry_set(entry, i, wire.name.data, wire.name.length, wire.tensor_id,
                                    wire.dimension_count, wire.shape,
                                    wire.element_count) != PARAMD_OK) {
            paramd__cache_entry_free(entry);
            return NULL;
        }
    }
    return entry;
}

const paramd__tensor_entry *paramd__cache_tensor(const paramd__model_entry *model,
                                                 const char *name)
{
    size_t mask = model->slot_count - 1, slot = (size_t)hash_name(name) & mask;
    for (; model->slots[slot] != 0; slot = (slot + 1) & mask) {
        const paramd__tensor_entry *tensor = &model->tensors[model->slots[slot] - 1];
        if (strcmp(tensor->name, name) == 0)
            return tensor;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------
 * The list on the handle
 * ------------------------------------------------------------------------- */

int paramd__cache_model(paramd_client *client, const char *model, int64_t deadline,
                        paramd__model_entry **entry, bool *from_cache)
{
    for (paramd__model_entry *m = client->models; m; m = m->next) {
        if (strcmp(m->name, model) == 0) {
            *entry = m;
            *from_cache = true;
            return PARAMD_OK;
        }
    }
    *from_cache = false;
    paramd__pending pending;
    paramd__pending_init(&pending, PARAMD_OP_LOOKUP, paramd__take_id(client));
    pending.model_name = model;
    paramd__control_request lookup = {PARAMD_OP_LOOKUP, pending.request_id, model, NULL, 0};
    int result = paramd__wire_call(client, paramd__encode_control, &lookup, &pending, deadline);
    if (result == PARAMD_OK && pending.status != PARAMD_OK)
        result = paramd__fail_pending(client, &pending);
    if (result == PARAMD_OK) {
        pending.lookup->next = client->models;
        client->models = pending.lookup;
        *entry = pending.lookup;
        pending.lookup = NULL;
    }
    paramd__pending_clear(&pending);
    return result;
}

void paramd__cache_drop_id(paramd_client *client, uint32_t model_id)
{
    for (paramd__model_entry **link = &client->models; *link; link = &(*link)->next) {
        if ((*link)->id == model_id) {
            paramd__model_entry *dropped = *link;
            *link = dropped->next;
            paramd__cache_entry_free(dropped);
            return;
        }
    }
}

void paramd__cache_drop_name(paramd_client *client, const char *model)
{
    for (paramd__model_entry **link = &client->models; *link; link = &(*link)->next) {
        if (strcmp((*link)->name, model) == 0) {
            paramd__model_entry *dropped = *link;
            *link = dropped->next;
            paramd__cache_entry_free(dropped);
            return;
        }
    }
}

void paramd__cache_clear(paramd_client *client)
{
    while (client->models) {
        paramd__model_entry *next = client->models->next;
        paramd__cache_entry_free(client->models);
        client->models = next;
    }
}
