/*
 * client.c - the client handle: connecting, errors, time, the control plane
 * (create, describe, list, delete, stats) and tensor info.  See
 * include/paramd/client.h for the contracts and internal.h for the layout
 * of the library.
 */
#define _DEFAULT_SOURCE
#include "internal.h"
#include "sharded.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------
 * Errors, time, ids, buffers
 * ------------------------------------------------------------------------- */

int paramd__fail(paramd_client *client, int code, const char *format, ...)
{
    char message[PARAMD__MESSAGE_SIZE];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    /* Formatting may read client->message (a message built from the last
     * one), hence the copy. */
    memcpy(client->message, message, sizeof message);
    client->error = code;
    return code;
}

int paramd__succeed(paramd_client *client)
{
    client->error = PARAMD_OK;
    client->message[0] = '\0';
    return PARAMD_OK;
}

int paramd__fail_pending(paramd_client *client, const paramd__pending *pending)
{
    if (pending->status == PARAMD_OK)
        return paramd__succeed(client);
    return paramd__fail(client, pending->status, "%s",
                        pending->message ? pending->message : paramd_strerror(pending->status));
}

int64_t paramd__now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t paramd__deadline(int timeout_ms)
{
    return paramd__now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
}

uint64_t paramd__take_id(paramd_client *client)
{
    return client->next_request_id++;
}

void paramd__pending_init(paramd__pending *pending, uint8_t opcode, uint64_t request_id)
{
    memset(pending, 0, sizeof *pending);
    pending->opcode = opcode;
    pending->request_id = request_id;
}

void paramd__pending_clear(paramd__pending *pending)
{
    free(pending->message);
    free(pending->json);
    paramd__cache_entry_free(pending->lookup);
    pending->message = NULL;
    pending->json = NULL;
    pending->lookup = NULL;
}

int paramd__buffer_encode(paramd_client *client, paramd__buffer *buffer, paramd__encode_fn encode,
                          const void *context)
{
    for (int pass = 0; pass < 2; pass++) {
        paramd__writer writer;
        paramd__writer_init(&writer, buffer->data ? buffer->data + buffer->size : NULL,
                            buffer->capacity - buffer->size);
        encode(&writer, context);
        size_t payload = writer.size - PARAMD_FRAME_HEADER_SIZE;
        uint64_t limit = client->server_max_frame ? client->server_max_frame : UINT32_MAX;
        if (payload > UINT32_MAX || payload > limit)
            return paramd__fail(client, PARAMD_E_PAYLOAD_TOO_LARGE,
                                "request of %zu bytes exceeds the server's frame limit of %llu "
                                "bytes",
                                payload, (unsigned long long)limit);
        if (paramd__writer_fits(&writer)) {
            buffer->size += writer.size;
            return PARAMD_OK;
        }
        size_t capacity = buffer->capacity ? buffer->capacity : 4096;
        while (capacity < buffer->size + writer.size)
            capacity *= 2;
        uint8_t *grown = realloc(buffer->data, capacity);
        if (grown == NULL)
            return paramd__fail(client, PARAMD_E_NO_MEMORY,
                                "out of memory for a %zu-byte request", writer.size);
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    return paramd__fail(client, PARAMD_E_INTERNAL, "a request's size changed while encoding");
}

void paramd__buffer_free(paramd__buffer *buffer)
{
    free(buffer->data);
    buffer->data = NULL;
    buffer->size = buffer->capacity = 0;
}

/* ---------------------------------------------------------------------------
 * Handles
 * ------------------------------------------------------------------------- */

static char *copy_or_null(const char *text)
{
    return text ? strdup(text) : NULL;
}

paramd_client *paramd__client_new(const paramd_config *config, bool zero_port_is_default,
                                  int *result)
{
    paramd_config defaults = {0};
    if (config == NULL)
        config = &defaults;
    paramd_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        *result = PARAMD_E_NO_MEMORY;
        return NULL;
    }
    client->fd = -1;
    client->next_request_id = 1;
    client->host = strdup(config->host ? config->host : PARAMD_DEFAULT_HOST);
    client->port = config->port ? config->port : PARAMD_DEFAULT_TCP_PORT;
    client->connect_timeout_ms = config->connect_timeout_ms > 0
                                     ? config->connect_timeout_ms
                                     : PARAMD_DEFAULT_CONNECT_TIMEOUT_MS;
    client->timeout_ms = config->timeout_ms > 0 ? config->timeout_ms : PARAMD_DEFAULT_TIMEOUT_MS;
    client->token = copy_or_null(config->token);
    client->client_name = strdup(config->client_name ? config->client_name : PARAMD__CLIENT_NAME);
    client->max_reply_bytes = config->max_reply_bytes;
    if (client->host == NULL || client->client_name == NULL ||
        (config->token && client->token == NULL))
        *result = paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for the client");
    else if (config->port < 0 || config->port > 65535 || (config->port == 0 && !zero_port_is_default))
        *result = paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                               "port %d: must be 1 to 65535", config->port);
    else
        *result = PARAMD_OK;
    return client;
}

/* The handle for a config, connected unless something is wrong with it.
 * A config's port 0 means the default; paramd_connect's port 0 is refused
 * (zero_port_is_default false).  A config with a shard map opens a
 * sharded handle (sharded.c). */
static paramd_client *open_handle(const paramd_config *config, bool zero_port_is_default,
                                  int *error)
{
    if (config && config->shard_map)
        return paramd__sharded_open(config, error);
    int result;
    paramd_client *client = paramd__client_new(config, zero_port_is_default, &result);
    if (client && result == PARAMD_OK)
        result = paramd__wire_connect(client, paramd__deadline(client->connect_timeout_ms));
    if (error)
        *error = result;
    return client;
}

paramd_client *paramd_connect_config(const paramd_config *config, int *error)
{
    return open_handle(config, true, error);
}

paramd_client *paramd_connect(const char *host, int port, int timeout_ms, int *error)
{
    paramd_config config = {.host = host,
                            .port = port,
                            .connect_timeout_ms = timeout_ms,
                            .timeout_ms = timeout_ms};
    return open_handle(&config, false, error);
}

paramd_client *paramd_connect_shard_map(const char *path, int timeout_ms, int *error)
{
    paramd_config config = {.connect_timeout_ms = timeout_ms,
                            .timeout_ms = timeout_ms,
                            .shard_map = path ? path : ""};
    return open_handle(&config, true, error);
}

int paramd_reconnect(paramd_client *client)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (client->sharded)
        return paramd__sharded_reconnect(client);
    return paramd__wire_connect(client, paramd__deadline(client->connect_timeout_ms));
}

void paramd_close(paramd_client *client)
{
    if (client == NULL)
        return;
    if (client->sharded) {
        paramd__sharded_free(client->sharded);
        free(client->sharded);
    }
    paramd__wire_disconnect(client);
    paramd__buffer_free(&client->scratch);
    paramd__buffer_free(&client->request);
    free(client->input);
    free(client->host);
    free(client->token);
    free(client->client_name);
    free(client);
}

int paramd_is_connected(const paramd_client *client)
{
    if (client && client->sharded) {
        for (uint32_t i = 0; i < client->sharded->map.shard_count; i++)
            if (client->sharded->shards[i]->fd < 0)
                return 0;
        return 1;
    }
    return client && client->fd >= 0;
}

int paramd_set_timeout(paramd_client *client, int timeout_ms)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (timeout_ms <= 0)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "timeout %d ms: must be more than 0", timeout_ms);
    client->timeout_ms = timeout_ms;
    client->connect_timeout_ms = timeout_ms < client->connect_timeout_ms
                                     ? timeout_ms
                                     : client->connect_timeout_ms;
    for (uint32_t i = 0; client->sharded && i < client->sharded->map.shard_count; i++)
        paramd_set_timeout(client->sharded->shards[i], timeout_ms);
    return paramd__succeed(client);
}

int paramd_client_error(const paramd_client *client)
{
    return client ? client->error : PARAMD_E_INVALID_ARGUMENT;
}

const char *paramd_client_errstr(const paramd_client *client)
{
    return client ? client->message : "no client (NULL handle)";
}

const char *paramd_server_name(const paramd_client *client)
{
    for (uint32_t i = 0; client && client->sharded && i < client->sharded->map.shard_count; i++)
        if (client->sharded->shards[i]->fd >= 0)
            return client->sharded->shards[i]->server_name;
    return client && client->fd >= 0 ? client->server_name : "";
}

void paramd_free(void *pointer)
{
    free(pointer);
}

/* ---------------------------------------------------------------------------
 * The control plane
 * ------------------------------------------------------------------------- */

void paramd__encode_control(paramd__writer *writer, const void *context)
{
    const paramd__control_request *request = context;
    if (request->opcode == PARAMD_OP_LOOKUP) /* every tensor */
        paramd__encode_lookup(writer, request->request_id, request->model, NULL, 0);
    else if (request->opcode == PARAMD_OP_CREATE)
        paramd__encode_create(writer, request->request_id, request->model, request->json,
                              request->json_length);
    else
        paramd__encode_model_request(writer, request->opcode, request->request_id,
                                     request->model ? request->model : "");
}

/* Checks a model name argument the protocol can carry. */
static int check_name(paramd_client *client, const char *what, const char *name)
{
    if (name == NULL)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "%s: NULL", what);
    if (strlen(name) > UINT16_MAX)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "%s: %zu bytes (a name has at most 65535)", what, strlen(name));
    return PARAMD_OK;
}

/* One control-plane request; *json (when not NULL) receives the reply's
 * document. */
static int model_call(paramd_client *client, uint8_t opcode, const char *model, const char *body,
                      char **json)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (json)
        *json = NULL;
    if (body && strlen(body) > UINT32_MAX)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "model JSON of %zu bytes is too long",
                            strlen(body));
    if (client->sharded) {
        if (opcode == PARAMD_OP_CREATE)
            return paramd__sharded_create(client, model, body, json);
        if (opcode == PARAMD_OP_DELETE)
            return paramd__sharded_delete(client, model);
        return paramd__sharded_document(client, opcode, model, json);
    }
    int64_t deadline = paramd__deadline(client->timeout_ms);
    int result = paramd__wire_ensure(client, deadline);
    if (result != PARAMD_OK)
        return result;
    paramd__pending pending;
    paramd__pending_init(&pending, opcode, paramd__take_id(client));
    paramd__control_request request = {opcode, pending.request_id, model, body,
                                       body ? strlen(body) : 0};
    result = paramd__wire_call(client, paramd__encode_control, &request, &pending, deadline);
    if (result == PARAMD_OK) {
        result = paramd__fail_pending(client, &pending);
        if (result == PARAMD_OK && json) {
            *json = pending.json;
            pending.json = NULL;
        }
    }
    paramd__pending_clear(&pending);
    return result;
}

int paramd_create_model(paramd_client *client, const char *model, const char *json,
                        char **description)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (check_name(client, "model", model) != PARAMD_OK)
        return client->error;
    if (json == NULL)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "create %s: the JSON body is NULL",
                            model);
    paramd__cache_drop_name(client, model);
    return model_call(client, PARAMD_OP_CREATE, model, json, description);
}

int paramd_describe_model(paramd_client *client, const char *model, char **json)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (check_name(client, "model", model) != PARAMD_OK)
        return client->error;
    if (model[0] == '\0')
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "describe: the model name is empty");
    return model_call(client, PARAMD_OP_STATS, model, NULL, json);
}

int paramd_list_models(paramd_client *client, char **json)
{
    return model_call(client, PARAMD_OP_LIST, NULL, NULL, json);
}

int paramd_delete_model(paramd_client *client, const char *model)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (check_name(client, "model", model) != PARAMD_OK)
        return client->error;
    paramd__cache_drop_name(client, model);
    return model_call(client, PARAMD_OP_DELETE, model, NULL, NULL);
}

int paramd_stats(paramd_client *client, const char *model, char **json)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (model && check_name(client, "model", model) != PARAMD_OK)
        return client->error;
    return model_call(client, PARAMD_OP_STATS, model ? model : "", NULL, json);
}

/* ---------------------------------------------------------------------------
 * Tensor info
 * ------------------------------------------------------------------------- */

static void fill_info(paramd_tensor_info *info, const paramd__tensor_entry *tensor)
{
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", tensor->name);
    info->id = tensor->id;
    info->dimension_count = tensor->dimension_count;
    memcpy(info->shape, tensor->shape, sizeof info->shape);
    info->element_count = tensor->element_count;
}

/* The model's cache entry, connecting first when needed; for a sharded
 * handle, the union of its shards' tensors. */
static int cached_model(paramd_client *client, const char *model, paramd__model_entry **entry)
{
    if (check_name(client, "model", model) != PARAMD_OK)
        return client->error;
    int64_t deadline = paramd__deadline(client->timeout_ms);
    bool from_cache;
    if (client->sharded) {
        paramd__placement *placement;
        int result = paramd__placement_get(client, model, deadline, &placement, &from_cache);
        if (result == PARAMD_OK)
            *entry = placement->tensors;
        return result;
    }
    int result = paramd__wire_ensure(client, deadline);
    if (result == PARAMD_OK)
        result = paramd__cache_model(client, model, deadline, entry, &from_cache);
    return result;
}

int paramd_tensor_info_get(paramd_client *client, const char *model, const char *tensor,
                           paramd_tensor_info *info)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (tensor == NULL || info == NULL)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT,
                            "tensor info: the tensor name or the info is NULL");
    paramd__model_entry *entry;
    int result = cached_model(client, model, &entry);
    if (result != PARAMD_OK)
        return result;
    const paramd__tensor_entry *found = paramd__cache_tensor(entry, tensor);
    if (found == NULL)
        return paramd__fail(client, PARAMD_E_TENSOR_NOT_FOUND, "model \"%s\" has no tensor \"%s\"",
                            model, tensor);
    fill_info(info, found);
    return paramd__succeed(client);
}

int paramd_model_tensors(paramd_client *client, const char *model, paramd_tensor_info **infos,
                         size_t *count)
{
    if (client == NULL)
        return PARAMD_E_INVALID_ARGUMENT;
    if (infos == NULL || count == NULL)
        return paramd__fail(client, PARAMD_E_INVALID_ARGUMENT, "model tensors: NULL output");
    *infos = NULL;
    *count = 0;
    paramd__model_entry *entry;
    int result = cached_model(client, model, &entry);
    if (result != PARAMD_OK)
        return result;
    paramd_tensor_info *list = calloc(entry->tensor_count ? entry->tensor_count : 1, sizeof *list);
    if (list == NULL)
        return paramd__fail(client, PARAMD_E_NO_MEMORY, "out of memory for %u tensor infos",
                            entry->tensor_count);
    for (uint32_t i = 0; i < entry->tensor_count; i++)
        fill_info(&list[i], &entry->tensors[i]);
    *infos = list;
    *count = entry->tensor_count;
    return paramd__succeed(client);
}
