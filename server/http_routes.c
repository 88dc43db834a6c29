/*
 * http_routes.c - the REST API: a route table and one handler per route.
 *
 * Handlers parse and validate the request's syntax (with json_api), call the
 * core, and turn the result into a status and a JSON body.  They hold no
 * state and change nothing themselves.
 *
 *   GET    /livez                         liveness
 *   GET    /readyz                        readiness (503 while shutting down)
 *   GET    /v1/models                     list models
 *   PUT    /v1/models/{model}             create a model
 *   GET    /v1/models/{model}             describe a model
 *   PATCH  /v1/models/{model}             change hyperparameters and training options
 *   DELETE /v1/models/{model}             delete a model
 *   POST   /v1/models/{model}/push        apply gradients, return fresh weights
 *   GET    /v1/models/{model}/weights     read weights
 *   GET    /v1/models/{model}/state       read one optimizer state array (?slot=)
 *
 * Issue 8 (observability and checkpoints; handlers at the end of the file):
 *   GET    /                              the dashboard (dashboard.c)
 *   GET    /metrics                       Prometheus text exposition (metrics.c)
 *   GET    /v1/models/{model}/stats       norms and state summaries (stats.c)
 *   GET    /v1/models/{model}/history     the dashboard's time series (?since=)
 *   POST   /v1/models/{model}/checkpoint  checkpoint one model now (checkpoint.c)
 *   POST   /v1/checkpoint                 checkpoint every model now
 */
#define _DEFAULT_SOURCE
#include "http.h"

#include "checkpoint.h"
#include "dashboard.h"
#include "json_api.h"
#include "log.h"
#include "metrics.h"
#include "stats.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static void respond_error(paramd__http_response *response, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void respond_error(paramd__http_response *response, int code, const char *format, ...)
{
    paramd__error error = {.code = code};
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error.message, sizeof error.message, format, arguments);
    va_end(arguments);
    paramd__http_error_response(response, &error);
}

static void respond_json(paramd__http_response *response, unsigned status, json_t *body)
{
    if (body == NULL) {
        respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while building the response");
        return;
    }
    response->status = status;
    response->body = body;
}

/* Parses the request body as a JSON object. */
static json_t *parse_body(const paramd__http_request *request, paramd__http_response *response)
{
    paramd__error error = {0};
    json_t *body = paramd__json_parse_body(request->body, request->body_length, &error);
    if (body == NULL)
        paramd__http_error_response(response, &error);
    return body;
}

static paramd__model *find_model(const paramd__http_request *request, const char *name,
                                 paramd__http_response *response)
{
    paramd__error error = {0};
    paramd__model *model;
    if (paramd__core_find_model(request->http->server, name, &model, &error) != PARAMD_OK) {
        paramd__http_error_response(response, &error);
        return NULL;
    }
    return model;
}

/* ---------------------------------------------------------------------------
 * Handlers
 * ------------------------------------------------------------------------- */

static void handle_livez(const paramd__http_request *request, const char *model_name,
                         paramd__http_response *response)
{
    (void)request;
    (void)model_name;
    respond_json(response, 200, json_pack("{s:s}", "status", "ok"));
}

static void handle_readyz(const paramd__http_request *request, const char *model_name,
                          paramd__http_response *response)
{
    (void)model_name;
    if (atomic_load(&request->http->shutting_down))
        respond_error(response, PARAMD_E_UNAVAILABLE, "shutting down");
    else
        respond_json(response, 200, json_pack("{s:s}", "status", "ready"));
}

static void handle_list_models(const paramd__http_request *request, const char *model_name,
                               paramd__http_response *response)
{
    (void)model_name;
    respond_json(response, 200, paramd__json_list_models(request->http->server));
}

static void handle_create_model(const paramd__http_request *request, const char *model_name,
                                paramd__http_response *response)
{
    json_t *body = parse_body(request, response);
    if (body == NULL)
        return;
    paramd__error error = {0};
    json_t *description =
        paramd__json_create_model(request->http->server, model_name, body, &error);
    json_decref(body);
    if (description == NULL) {
        paramd__http_error_response(response, &error);
        return;
    }
    respond_json(response, 201, description);
}

static void handle_describe_model(const paramd__http_request *request, const char *model_name,
                                  paramd__http_response *response)
{
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    respond_json(response, 200, paramd__json_describe_model(model));
    paramd__model_release(model);
}

static void handle_patch_model(const paramd__http_request *request, const char *model_name,
                               paramd__http_response *response)
{
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    json_t *body = parse_body(request, response);
    if (body == NULL) {
        paramd__model_release(model);
        return;
    }
    paramd__error error = {0};
    paramd__model_patch patch;
    int result = paramd__json_parse_model_patch(body, model, &patch, &error);
    if (result == PARAMD_OK)
        result = paramd__core_patch_model(request->http->server, model, &patch, &error);
    paramd__json_model_patch_free(&patch);
    json_decref(body);
    if (result == PARAMD_OK)
        respond_json(response, 200, paramd__json_describe_model(model));
    else
        paramd__http_error_response(response, &error);
    paramd__model_release(model);
}

static void handle_delete_model(const paramd__http_request *request, const char *model_name,
                                paramd__http_response *response)
{
    paramd__error error = {0};
    if (paramd__core_delete_model(request->http->server, model_name, &error) != PARAMD_OK) {
        paramd__http_error_response(response, &error);
        return;
    }
    response->status = 204;
    response->body = NULL;
}

/* A push or pull in progress: the tensors, their decoded gradients, the
 * buffers receiving weights, and how each is encoded in the reply. */
typedef struct tensor_batch {
    paramd__tensor_io *items;
    paramd__float_encoding *encodings;
    size_t count;
} tensor_batch;

static void tensor_batch_free(tensor_batch *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        paramd__float_array_free((float *)batch->items[i].grad, batch->items[i].grad_count);
        if (batch->items[i].tensor)
            paramd__float_array_free(batch->items[i].weights,
                                     paramd__tensor_largest_array(batch->items[i].tensor));
    }
    free(batch->items);
    free(batch->encodings);
}

static int tensor_batch_alloc(tensor_batch *batch, size_t count, paramd__error *error)
{
    batch->count = 0;
    batch->items = calloc(count ? count : 1, sizeof *batch->items);
    batch->encodings = calloc(count ? count : 1, sizeof *batch->encodings);
    if (batch->items == NULL || batch->encodings == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "out of memory");
    return PARAMD_OK;
}

/* Adds a tensor to the batch with a buffer for its weights. */
static int tensor_batch_add(tensor_batch *batch, paramd__tensor *tensor,
                            paramd__float_encoding encoding, paramd__error *error)
{
    paramd__tensor_io *item = &batch->items[batch->count];
    item->tensor = tensor;
    /* Room for the weights or any state array (LBFGS's history is longer). */
    item->weights = paramd__float_array_alloc(paramd__tensor_largest_array(tensor));
    batch->encodings[batch->count] = encoding;
    batch->count++;
    if (item->weights == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "weights.%s: out of memory",
                                 tensor->name);
    return PARAMD_OK;
}

/* Answers {"step": N, "weights": {...}} with the batch's weights. */
static void respond_weights(paramd__http_response *response, uint64_t step,
                            const tensor_batch *batch)
{
    size_t length;
    char *text = paramd__json_write_weights(step, batch->items, batch->encodings, batch->count,
                                            &length);
    if (text == NULL) {
        respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while building the response");
        return;
    }
    response->status = 200;
    response->raw_body = text;
    response->raw_length = length;
}

/* A push's wait for other workers (sync and ssp models): this connection's
 * thread sleeps on a condition variable the completing push signals. */
typedef struct push_waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    bool signalled;
} push_waiter;

static void wake_waiter(paramd__push_ticket *ticket)
{
    push_waiter *waiter = ticket->context;
    pthread_mutex_lock(&waiter->lock);
    waiter->signalled = true;
    pthread_cond_signal(&waiter->done);
    pthread_mutex_unlock(&waiter->lock);
}

/* Submits the ticket and, when it has to wait, waits until it is done or
 * its deadline passes (then it is expired, with PARAMD_E_TIMEOUT). */
static int push_and_wait(paramd__server *server, paramd__model *model, paramd__push_ticket *ticket)
{
    push_waiter waiter = {.signalled = false};
    pthread_mutex_init(&waiter.lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&waiter.done, &attributes);
    pthread_condattr_destroy(&attributes);
    ticket->notify = wake_waiter;
    ticket->context = &waiter;
    int result = paramd__core_push_submit(server, model, ticket);
    if (result == PARAMD__PUSH_WAITING) {
        struct timespec deadline = {(time_t)ticket->deadline,
                                    (long)((ticket->deadline - floor(ticket->deadline)) * 1e9)};
        pthread_mutex_lock(&waiter.lock);
        while (!waiter.signalled &&
               pthread_cond_timedwait(&waiter.done, &waiter.lock, &deadline) != ETIMEDOUT) {
        }
        bool signalled = waiter.signalled;
        pthread_mutex_unlock(&waiter.lock);
        if (!signalled)
            paramd__core_push_expire(server, model, ticket);
        /* Once done, a late signal may still be on its way: take the lock
         * once more so it has finished with the waiter before it goes. */
        pthread_mutex_lock(&waiter.lock);
        pthread_mutex_unlock(&waiter.lock);
        result = ticket->result;
    }
    pthread_cond_destroy(&waiter.done);
    pthread_mutex_destroy(&waiter.lock);
    return result;
}

static void handle_push(const paramd__http_request *request, const char *model_name,
                        paramd__http_response *response)
{
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    json_t *body = parse_body(request, response);
    if (body == NULL) {
        paramd__model_release(model);
        return;
    }
    paramd__error error = {0};
    tensor_batch batch = {0};
    int result = PARAMD_OK;
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        if (strcmp(key, "grads") != 0 && strcmp(key, "worker") != 0 &&
            strcmp(key, "loss") != 0 && strcmp(key, "grad_norm") != 0 &&
            strcmp(key, "loss_scale") != 0 && strcmp(key, "version") != 0) {
            result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                       "%.100s: unknown field (expected grads, worker, version, "
                                       "loss, grad_norm and loss_scale)",
                                       key);
            goto done;
        }
    }
    /* Optional numbers: loss, grad_norm, loss_scale (NAN when absent). */
    paramd__push_options options = {NAN, NAN, NAN};
    static const char *const number_keys[] = {"loss", "grad_norm", "loss_scale"};
    double *numbers[] = {&options.loss, &options.grad_norm, &options.loss_scale};
    for (size_t k = 0; k < sizeof number_keys / sizeof number_keys[0]; k++) {
        const json_t *number = json_object_get(body, number_keys[k]);
        if (number == NULL || json_is_null(number))
            continue;
        if (!json_is_number(number)) {
            result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST, "%s: must be a number",
                                       number_keys[k]);
            goto done;
        }
        *numbers[k] = json_number_value(number);
    }
    const json_t *version = json_object_get(body, "version");
    if (version && !json_is_null(version) &&
        (!json_is_integer(version) || json_integer_value(version) < 0)) {
        result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                   "version: must be an integer >= 0: the model step the "
                                   "gradients were computed at");
        goto done;
    }
    const json_t *worker = json_object_get(body, "worker");
    /* The worker's name outlives the body (freed below): the ticket keeps a copy. */
    char worker_name[PARAMD__WORKER_NAME_SIZE] = "";
    if (worker && (!json_is_string(worker) || !paramd__model_name_valid(json_string_value(worker)))) {
        result = paramd__error_set(&error, PARAMD_E_BAD_NAME,
                                   "worker: must be a string of 1 to 128 characters from "
                                   "A-Z a-z 0-9 . _ -");
        goto done;
    }
    const json_t *grads = json_object_get(body, "grads");
    if (!json_is_object(grads) || json_object_size(grads) == 0) {
        result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                   "grads: required non-empty object of tensor name -> gradient");
        goto done;
    }
    result = tensor_batch_alloc(&batch, json_object_size(grads), &error);
    if (result != PARAMD_OK)
        goto done;
    json_object_foreach((json_t *)grads, key, value) {
        paramd__tensor *tensor = paramd__model_find_tensor(model, key);
        if (tensor == NULL) {
            char field[256];
            snprintf(field, sizeof field, "grads.%.200s", key);
            result = paramd__model_missing_tensor(model, field, key, &error);
            goto done;
        }
        paramd__float_encoding encoding;
        float *grad = NULL;
        size_t grad_count = 0;
        char field[300];
        snprintf(field, sizeof field, "grads.%s", key);
        result = paramd__json_decode_floats(value, field, &grad, &grad_count, &encoding, &error);
        if (result != PARAMD_OK)
            goto done;
        result = tensor_batch_add(&batch, tensor, encoding, &error);
        batch.items[batch.count - 1].grad = grad;
        batch.items[batch.count - 1].grad_count = grad_count;
        /* The decoded gradient is the batch's own: the core may work in it. */
        batch.items[batch.count - 1].grad_writable = true;
        if (result != PARAMD_OK)
            goto done;
    }
    if (worker)
        snprintf(worker_name, sizeof worker_name, "%s", json_string_value(worker));
    paramd__push_ticket ticket = {.items = batch.items,
                                  .item_count = batch.count,
                                  .options = options,
                                  .worker = worker_name,
                                  .has_version = version && !json_is_null(version),
                                  .version = version && json_is_integer(version)
                                                 ? (uint64_t)json_integer_value(version)
                                                 : 0};
    /* The gradients are decoded; the JSON text is no longer needed. */
    json_decref(body);
    body = NULL;
    result = push_and_wait(request->http->server, model, &ticket);
    if (result != PARAMD_OK)
        error = ticket.error;
    if (result == PARAMD_OK) {
        size_t length;
        char *text = paramd__json_write_push_reply(&ticket.outcome, batch.items, batch.encodings,
                                                   batch.count, &length);
        if (text == NULL) {
            respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while building the response");
        } else {
            response->status = 200;
            response->raw_body = text;
            response->raw_length = length;
        }
    }
done:
    if (result != PARAMD_OK)
        paramd__http_error_response(response, &error);
    tensor_batch_free(&batch);
    json_decref(body);
    paramd__model_release(model);
}

/* GET .../weights and GET .../state: reads the weights (slot NULL) or one
 * optimizer state array of the tensors the query selects; as_weights
 * answers an array (an average) in the shape of the weights. */
static void read_tensors(const paramd__http_request *request, const char *model_name,
                         const char *slot, bool as_weights, paramd__http_response *response)
{
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    paramd__error error = {0};
    tensor_batch batch = {0};
    char *names = NULL;
    int result = PARAMD_OK;
    paramd__float_encoding encoding = PARAMD__ENCODING_JSON;
    const char *encoding_name =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "encoding");
    const char *dtype =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "dtype");
    if (encoding_name && strcmp(encoding_name, "b64") == 0) {
        encoding = PARAMD__ENCODING_BASE64;
    } else if (encoding_name && strcmp(encoding_name, "json") != 0) {
        result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                   "encoding: must be \"json\" or \"b64\", got \"%.100s\"",
                                   encoding_name);
        goto done;
    }
    /* dtype=float16|bfloat16|float32 chooses the base64 element type (and
     * implies encoding=b64). */
    if (dtype) {
        if (encoding_name && encoding == PARAMD__ENCODING_JSON) {
            result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                       "dtype: only with encoding=b64 (JSON numbers are "
                                       "float32)");
            goto done;
        }
        if (paramd__encoding_from_dtype(dtype, &encoding) != PARAMD_OK) {
            result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                       "dtype: must be \"float32\", \"float16\" or "
                                       "\"bfloat16\", got \"%.100s\"",
                                       dtype);
            goto done;
        }
    }
    const char *selection =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "tensors");
    result = tensor_batch_alloc(&batch, model->tensor_count, &error);
    if (result != PARAMD_OK)
        goto done;
    if (selection == NULL) {
        for (size_t i = 0; i < model->tensor_count && result == PARAMD_OK; i++)
            result = tensor_batch_add(&batch, model->tensors[i], encoding, &error);
    } else {
        names = strdup(selection);
        if (names == NULL) {
            result = paramd__error_set(&error, PARAMD_E_NO_MEMORY, "out of memory");
            goto done;
        }
        char *saved = NULL;
        for (char *name = strtok_r(names, ",", &saved); name && result == PARAMD_OK;
             name = strtok_r(NULL, ",", &saved)) {
            paramd__tensor *tensor = paramd__model_find_tensor(model, name);
            if (tensor == NULL) {
                result = paramd__model_missing_tensor(model, "tensors", name, &error);
                goto done;
            }
            bool duplicate = false;
            for (size_t i = 0; i < batch.count; i++)
                duplicate |= batch.items[i].tensor == tensor;
            if (duplicate)
                continue;
            if (batch.count == model->tensor_count)
                break;
            result = tensor_batch_add(&batch, tensor, encoding, &error);
        }
        if (result == PARAMD_OK && batch.count == 0)
            result = paramd__error_set(&error, PARAMD_E_BAD_REQUEST,
                                       "tensors: name at least one tensor");
    }
    if (result != PARAMD_OK)
        goto done;
    uint64_t step;
    if (slot == NULL)
        result = paramd__core_pull(request->http->server, model, batch.items, batch.count, &step,
                                   &error);
    else
        result = paramd__core_pull_state(request->http->server, model, slot, batch.items,
                                         batch.count, &step, &error);
    if (result == PARAMD_OK && (slot == NULL || as_weights)) {
        respond_weights(response, step, &batch);
    } else if (result == PARAMD_OK) {
        size_t length;
        char *text = paramd__json_write_state(step, slot, batch.items, batch.encodings,
                                              batch.count, &length);
        if (text == NULL) {
            respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while building the response");
        } else {
            response->status = 200;
            response->raw_body = text;
            response->raw_length = length;
        }
    }
done:
    if (result != PARAMD_OK)
        paramd__http_error_response(response, &error);
    free(names);
    tensor_batch_free(&batch);
    paramd__model_release(model);
}

static void handle_weights(const paramd__http_request *request, const char *model_name,
                           paramd__http_response *response)
{
    /* ?average=ema|swa: the model's averaged weights (after_step.h). */
    const char *average =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "average");
    if (average && strcmp(average, "ema") != 0 && strcmp(average, "swa") != 0) {
        respond_error(response, PARAMD_E_BAD_REQUEST,
                      "average: must be \"ema\" or \"swa\" (the averages the model's "
                      "\"averaging\" keeps)");
        return;
    }
    read_tensors(request, model_name, average, true, response);
}

/* Optimizer state, e.g. ?slot=exp_avg, or ASGD's averaged weights ?slot=ax. */
static void handle_state(const paramd__http_request *request, const char *model_name,
                         paramd__http_response *response)
{
    const char *slot =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "slot");
    if (slot == NULL || slot[0] == '\0') {
        respond_error(response, PARAMD_E_BAD_REQUEST,
                      "slot: required, the name of an optimizer state (e.g. exp_avg; the model "
                      "description lists each tensor's)");
        return;
    }
    read_tensors(request, model_name, slot, false, response);
}

/* ---------------------------------------------------------------------------
 * Issue 8: dashboard, metrics, stats, history, checkpoints
 * ------------------------------------------------------------------------- */

static void respond_text(paramd__http_response *response, const char *content_type,
                         const char *data, size_t length, bool copy)
{
    char *body = copy ? malloc(length ? length : 1) : (char *)data;
    if (body == NULL) {
        respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while building the response");
        return;
    }
    if (copy)
        memcpy(body, data, length);
    response->status = 200;
    response->raw_body = body;
    response->raw_length = length;
    response->content_type = content_type;
}

static void handle_dashboard(const paramd__http_request *request, const char *model_name,
                             paramd__http_response *response)
{
    (void)request;
    (void)model_name;
    respond_text(response, "text/html; charset=utf-8", paramd__dashboard_html,
                 paramd__dashboard_html_length(), true);
}

static void handle_metrics(const paramd__http_request *request, const char *model_name,
                           paramd__http_response *response)
{
    (void)model_name;
    size_t length = 0;
    char *text = paramd__metrics_render(request->http->server, &length);
    if (text == NULL) {
        respond_error(response, PARAMD_E_NO_MEMORY, "out of memory while rendering metrics");
        return;
    }
    respond_text(response, PARAMD__METRICS_CONTENT_TYPE, text, length, false);
}

static void handle_stats(const paramd__http_request *request, const char *model_name,
                         paramd__http_response *response)
{
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    respond_json(response, 200, paramd__stats_json(model));
    paramd__model_release(model);
}

static void handle_history(const paramd__http_request *request, const char *model_name,
                           paramd__http_response *response)
{
    const char *since_text =
        MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, "since");
    double since = 0;
    if (since_text) {
        char *end;
        since = strtod(since_text, &end);
        if (since_text[0] == '\0' || *end != '\0' || !isfinite(since)) {
            respond_error(response, PARAMD_E_BAD_REQUEST,
                          "since: must be a Unix time in milliseconds, got \"%.100s\"", since_text);
            return;
        }
    }
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    respond_json(response, 200, paramd__stats_history_json(model, since));
    paramd__model_release(model);
}

static paramd__checkpointer *checkpointer_of(const paramd__http_request *request,
                                             paramd__http_response *response)
{
    paramd__checkpointer *checkpointer = request->http->server->checkpointer;
    if (checkpointer == NULL)
        respond_error(response, PARAMD_E_UNAVAILABLE, "this server writes no checkpoints");
    return checkpointer;
}

static void handle_checkpoint_model(const paramd__http_request *request, const char *model_name,
                                    paramd__http_response *response)
{
    paramd__checkpointer *checkpointer = checkpointer_of(request, response);
    if (checkpointer == NULL)
        return;
    paramd__model *model = find_model(request, model_name, response);
    if (model == NULL)
        return;
    paramd__error error = {0};
    json_t *info = NULL;
    if (paramd__checkpoint_model(checkpointer, model, &info, &error) == PARAMD_OK)
        respond_json(response, 200, info);
    else
        paramd__http_error_response(response, &error);
    paramd__model_release(model);
}

static void handle_checkpoint_all(const paramd__http_request *request, const char *model_name,
                                  paramd__http_response *response)
{
    (void)model_name;
    paramd__checkpointer *checkpointer = checkpointer_of(request, response);
    if (checkpointer == NULL)
        return;
    paramd__error error = {0};
    json_t *info = NULL;
    int result = paramd__checkpoint_all(checkpointer, &info, &error);
    if (result == PARAMD_OK) {
        respond_json(response, 200, info);
    } else {
        json_decref(info);
        paramd__http_error_response(response, &error);
    }
}

/* ---------------------------------------------------------------------------
 * The route table
 * ------------------------------------------------------------------------- */

typedef void (*route_handler)(const paramd__http_request *request, const char *model_name,
                              paramd__http_response *response);

typedef enum route_shape {
    ROUTE_EXACT,       /* the path equals `path` */
    ROUTE_MODEL,       /* `path` + "{model}" */
    ROUTE_MODEL_SUFFIX /* "/v1/models/" + "{model}" + `suffix` */
} route_shape;

/* Issue 9: the role a route needs when the server has tokens; METRICS is
 * what --metrics-auth says. */
#define ROLE_METRICS ((paramd__role)-1)
#define NONE PARAMD__ROLE_NONE
#define READ PARAMD__ROLE_READ
#define WRITE PARAMD__ROLE_WRITE
#define ADMIN PARAMD__ROLE_ADMIN

typedef struct route {
    route_shape shape;
    const char *path;
    const char *suffix;
    const char *method;
    route_handler handler;
    paramd__operation operation; /* for /metrics */
    paramd__role role;           /* docs/SECURITY.md lists these */
} route;

/* Roles: read observes, write trains (pushes, creates models, changes their
 * hyperparameters), admin deletes models and runs checkpoints. */
static const route routes[] = {
    {ROUTE_EXACT, "/livez", NULL, "GET", handle_livez, PARAMD__OPERATION_HEALTH, NONE},
    {ROUTE_EXACT, "/readyz", NULL, "GET", handle_readyz, PARAMD__OPERATION_HEALTH, NONE},
    {ROUTE_EXACT, "/v1/models", NULL, "GET", handle_list_models, PARAMD__OPERATION_LIST, READ},
    {ROUTE_MODEL, "/v1/models/", NULL, "PUT", handle_create_model, PARAMD__OPERATION_CREATE,
     WRITE},
    {ROUTE_MODEL, "/v1/models/", NULL, "GET", handle_describe_model, PARAMD__OPERATION_DESCRIBE,
     READ},
    {ROUTE_MODEL, "/v1/models/", NULL, "PATCH", handle_patch_model, PARAMD__OPERATION_PATCH,
     WRITE},
    {ROUTE_MODEL, "/v1/models/", NULL, "DELETE", handle_delete_model, PARAMD__OPERATION_DELETE,
     ADMIN},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/push", "POST", handle_push, PARAMD__OPERATION_PUSH,
     WRITE},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/weights", "GET", handle_weights, PARAMD__OPERATION_PULL,
     READ},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/state", "GET", handle_state, PARAMD__OPERATION_STATE,
     READ},
    /* Issue 8.  The dashboard page is static: the data it shows comes from
     * the read routes, with the token the page asks for. */
    {ROUTE_EXACT, "/", NULL, "GET", handle_dashboard, PARAMD__OPERATION_DASHBOARD, NONE},
    {ROUTE_EXACT, "/metrics", NULL, "GET", handle_metrics, PARAMD__OPERATION_METRICS,
     ROLE_METRICS},
    {ROUTE_EXACT, "/v1/checkpoint", NULL, "POST", handle_checkpoint_all,
     PARAMD__OPERATION_CHECKPOINT, ADMIN},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/stats", "GET", handle_stats, PARAMD__OPERATION_STATS,
     READ},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/history", "GET", handle_history,
     PARAMD__OPERATION_HISTORY, READ},
    {ROUTE_MODEL_SUFFIX, "/v1/models/", "/checkpoint", "POST", handle_checkpoint_model,
     PARAMD__OPERATION_CHECKPOINT, ADMIN},
};

#undef NONE
#undef READ
#undef WRITE
#undef ADMIN

#define ROUTE_COUNT (sizeof routes / sizeof routes[0])

/* Matches path against a route; on success copies the model segment (if the
 * route has one) into model_name. */
static bool route_matches(const route *candidate, const char *path, char *model_name,
                          size_t model_name_size)
{
    if (candidate->shape == ROUTE_EXACT)
        return strcmp(path, candidate->path) == 0;
    size_t prefix = strlen(candidate->path);
    if (strncmp(path, candidate->path, prefix) != 0)
        return false;
    const char *segment = path + prefix;
    const char *slash = strchr(segment, '/');
    size_t length = slash ? (size_t)(slash - segment) : strlen(segment);
    if (length == 0 || length >= model_name_size)
        return false;
    const char *rest = segment + length;
    if (candidate->shape == ROUTE_MODEL ? *rest != '\0' : strcmp(rest, candidate->suffix) != 0)
        return false;
    memcpy(model_name, segment, length);
    model_name[length] = '\0';
    return true;
}

paramd__role paramd__http_route_role(const paramd__http_server *http, const char *method,
                                     const char *path)
{
    char model_name[256];
    for (size_t i = 0; i < ROUTE_COUNT; i++)
        if (strcmp(routes[i].method, method) == 0 &&
            route_matches(&routes[i], path, model_name, sizeof model_name))
            return routes[i].role == ROLE_METRICS ? http->options.metrics_role : routes[i].role;
    return PARAMD__ROLE_READ;
}

void paramd__http_dispatch(const paramd__http_request *request, paramd__http_response *response)
{
    char model_name[256];
    char allow[64] = "";
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (!route_matches(&routes[i], request->path, model_name, sizeof model_name))
            continue;
        if (strcmp(routes[i].method, request->method) == 0) {
            response->operation = (int)routes[i].operation;
            if (routes[i].shape != ROUTE_EXACT && !paramd__model_name_valid(model_name)) {
                respond_error(response, PARAMD_E_BAD_NAME,
                              "model name \"%.200s\": use 1 to 128 characters from "
                              "A-Z a-z 0-9 . _ -, not starting with '.'",
                              model_name);
                return;
            }
            routes[i].handler(request, routes[i].shape == ROUTE_EXACT ? NULL : model_name,
                              response);
            return;
        }
        if (allow[0])
            strncat(allow, ", ", sizeof allow - strlen(allow) - 1);
        strncat(allow, routes[i].method, sizeof allow - strlen(allow) - 1);
    }
    if (allow[0]) {
        respond_error(response, PARAMD_E_METHOD_NOT_ALLOWED, "%s %s: allowed methods are %s",
                      request->method, request->path, allow);
        memcpy(response->allow, allow, sizeof response->allow);
        return;
    }
    respond_error(response, PARAMD_E_NOT_FOUND, "%s %s: no such resource (see docs/API.md)",
                  request->method, request->path);
}
