/*
 * http.c - libmicrohttpd plumbing: the daemon, request bodies, limits,
 * responses.  See http.h.
 *
 * Request lifecycle (libmicrohttpd calls the access handler several times):
 *   1. headers only: allocate a request_state; refuse a Content-Length over
 *      the limit with 413 right away, before any body byte is read.
 *   2. body chunks: append to the state's buffer (chunked bodies are capped
 *      at the same limit).
 *   3. *upload_data_size == 0: the body is complete; dispatch and queue the
 *      response.  Queuing only now (not in step 1) keeps connections alive.
 */
#define _DEFAULT_SOURCE
#include "http.h"

#include "json_api.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct request_state {
    double started;  /* monotonic seconds at the first call, for /metrics */
    char *body;
    size_t length;
    size_t capacity;
    bool too_large;
    bool counted;    /* a refusal already counted in /metrics */
} request_state;

/* ---------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------- */

unsigned paramd__http_status_for(int code)
{
    switch (code) {
    case PARAMD_OK:
        return 200;
    case PARAMD_E_MODEL_NOT_FOUND:
    case PARAMD_E_TENSOR_NOT_FOUND:
    case PARAMD_E_NOT_FOUND:
        return 404;
    case PARAMD_E_MODEL_EXISTS:
        return 409;
    case PARAMD_E_PAYLOAD_TOO_LARGE:
        return 413;
    case PARAMD_E_NOT_OWNER:
        return 421; /* Misdirected Request: ask the shard that owns it */
    case PARAMD_E_TIMEOUT:
        return 504;
    case PARAMD_E_METHOD_NOT_ALLOWED:
        return 405;
    case PARAMD_E_NO_MEMORY:
    case PARAMD_E_UNAVAILABLE:
        return 503;
    case PARAMD_E_INTERNAL:
    case PARAMD_E_CHECKPOINT_FAILED:
    case PARAMD_E_CHECKPOINT_CORRUPT:
        return 500;
    default:
        return 400;
    }
}

void paramd__http_error_response(paramd__http_response *response, const paramd__error *error)
{
    response->status = paramd__http_status_for(error->code);
    response->body = paramd__json_error(error);
    response->code = error->code;
}

/* ---------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------- */

static enum MHD_Result queue_counted(struct MHD_Connection *connection,
                                     const paramd__http_response *response, uint64_t *bytes_out);

static enum MHD_Result queue(struct MHD_Connection *connection,
                             const paramd__http_response *response)
{
    uint64_t ignored;
    return queue_counted(connection, response, &ignored);
}

/* Queues the response; *bytes_out receives the body's length. */
static enum MHD_Result queue_counted(struct MHD_Connection *connection,
                                     const paramd__http_response *response, uint64_t *bytes_out)
{
    *bytes_out = 0;
    struct MHD_Response *reply;
    if (response->raw_body) {
        /* libmicrohttpd takes ownership and frees the buffer once sent. */
        *bytes_out = response->raw_length;
        reply = MHD_create_response_from_buffer(response->raw_length, response->raw_body,
                                                MHD_RESPMEM_MUST_FREE);
        if (reply == NULL) {
            free(response->raw_body);
            return MHD_NO;
        }
        MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE,
                                response->content_type ? response->content_type
                                                       : "application/json");
    } else if (response->body) {
        char *text = json_dumps(response->body, PARAMD__JSON_DUMP_FLAGS);
        if (text == NULL) {
            static const char fallback[] =
                "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"cannot encode response\"}}";
            reply = MHD_create_response_from_buffer(sizeof fallback - 1, (void *)fallback,
                                                    MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
            enum MHD_Result result = MHD_queue_response(connection, 503, reply);
            MHD_destroy_response(reply);
            return result;
        }
        size_t length = strlen(text);
        text[length] = '\n'; /* replace the NUL: curl output ends with a newline */
        *bytes_out = length + 1;
        reply = MHD_create_response_from_buffer(length + 1, text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    } else {
        reply = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (reply == NULL)
        return MHD_NO;
    if (response->allow[0])
        MHD_add_response_header(reply, MHD_HTTP_HEADER_ALLOW, response->allow);
    enum MHD_Result result = MHD_queue_response(connection, response->status, reply);
    MHD_destroy_response(reply);
    return result;
}

static enum MHD_Result queue_error(struct MHD_Connection *connection, int code,
                                   const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result queue_error(struct MHD_Connection *connection, int code,
                                   const char *format, ...)
{
    paramd__error error = {.code = code};
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error.message, sizeof error.message, format, arguments);
    va_end(arguments);
    paramd__http_response response = {0};
    paramd__http_error_response(&response, &error);

    enum MHD_Result result = queue(connection, &response);
    json_decref(response.body);
    return result;
}

/* ---------------------------------------------------------------------------
 * The access handler
 * ------------------------------------------------------------------------- */

static bool append_body(request_state *state, const char *data, size_t size, size_t limit)
{
    if (state->length + size > limit) {
        state->too_large = true;
        return false;
    }
    if (state->length + size + 1 > state->capacity) {
        size_t capacity = state->capacity ? state->capacity : 4096;
        while (capacity < state->length + size + 1)
            capacity *= 2;
        char *body = realloc(state->body, capacity);
        if (body == NULL) {
            state->too_large = true;
            return false;
        }
        state->body = body;
        state->capacity = capacity;
    }
    memcpy(state->body + state->length, data, size);
    state->length += size;
    state->body[state->length] = '\0';
    return true;
}

static enum MHD_Result access_handler(void *context, struct MHD_Connection *connection,
                                      const char *url, const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **request_context)
{
    (void)version;
    paramd__http_server *http = context;
    request_state *state = *request_context;
    size_t limit = http->options.max_body_bytes;

    if (state == NULL) {
        state = calloc(1, sizeof *state);
        if (state == NULL)
            return MHD_NO;
        *request_context = state;
        state->started = paramd__metrics_now();
        const char *length_header =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length_header) {
            char *end;
            errno = 0;
            unsigned long long declared = strtoull(length_header, &end, 10);
            if (errno != 0 || declared > limit) {
                state->too_large = true;
                paramd__log_warn("%s %s: refused Content-Length %s over the %zu-byte limit",
                                 method, url, length_header, limit);
                paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_OTHER,
                                              PARAMD_E_PAYLOAD_TOO_LARGE,
                                              paramd__metrics_now() - state->started, 0, 0);
                state->counted = true;
                return queue_error(connection, PARAMD_E_PAYLOAD_TOO_LARGE,
                                   "request body of %s bytes exceeds the limit of %zu bytes "
                                   "(--max-body-size)",
                                   length_header, limit);
            }
            if (declared > 0) {
                state->body = malloc((size_t)declared + 1);
                if (state->body)
                    state->capacity = (size_t)declared + 1;
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (!state->too_large)
            append_body(state, upload_data, *upload_data_size, limit);
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (state->too_large) {
        if (!state->counted)
            paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_OTHER,
                                      PARAMD_E_PAYLOAD_TOO_LARGE,
                                      paramd__metrics_now() - state->started, state->length, 0);
        return queue_error(connection, PARAMD_E_PAYLOAD_TOO_LARGE,
                           "request body exceeds the limit of %zu bytes (--max-body-size)",
                           limit);
    }

    paramd__http_request request = {
        .http = http,
        .connection = connection,
        .method = method,
        .path = url,
        .body = state->body ? state->body : "",
        .body_length = state->length,
    };
    paramd__http_response response = {0};
    paramd__http_dispatch(&request, &response);
    if (response.status >= 500)
        paramd__log_error("%s %s: %u", method, url, response.status);
    else
        paramd__log_debug("%s %s: %u", method, url, response.status);
    /* Issue 8: count the request by operation and status (metrics.h). */
    uint64_t bytes_out = 0;
    enum MHD_Result result = queue_counted(connection, &response, &bytes_out);
    paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, (paramd__operation)response.operation,
                                  response.status < 400 ? PARAMD_OK
                                  : response.code     ? response.code
                                                      : PARAMD_E_INTERNAL,
                                  paramd__metrics_now() - state->started, state->length,
                                  bytes_out);
    json_decref(response.body);
    return result;
}

static void request_completed(void *context, struct MHD_Connection *connection,
                              void **request_context, enum MHD_RequestTerminationCode code)
{
    (void)context;
    (void)connection;
    (void)code;
    request_state *state = *request_context;
    if (state) {
        free(state->body);
        free(state);
        *request_context = NULL;
    }
}

static void log_from_microhttpd(void *context, const char *format, va_list arguments)
{
    (void)context;
    char message[512];
    vsnprintf(message, sizeof message, format, arguments);
    size_t length = strlen(message);
    while (length > 0 && message[length - 1] == '\n')
        message[--length] = '\0';
    paramd__log_warn("http: %s", message);
}

/* ---------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------- */

int paramd__http_start(paramd__http_server *http, paramd__server *server,
                       const paramd__http_options *options, paramd__error *error)
{
    memset(http, 0, sizeof *http);
    http->server = server;
    http->options = *options;
    atomic_init(&http->shutting_down, false);

    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *ipv4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)&address;
    if (inet_pton(AF_INET, options->host, &ipv4->sin_addr) == 1) {
        ipv4->sin_family = AF_INET;
        ipv4->sin_port = htons(options->port);
    } else if (inet_pton(AF_INET6, options->host, &ipv6->sin6_addr) == 1) {
        ipv6->sin6_family = AF_INET6;
        ipv6->sin6_port = htons(options->port);
        flags |= MHD_USE_IPv6;
    } else {
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "--http: \"%s\" is not a numeric IPv4 or IPv6 address",
                                 options->host);
    }

    http->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, http,
        MHD_OPTION_EXTERNAL_LOGGER, log_from_microhttpd, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, options->connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, options->idle_timeout_seconds,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_END);
    if (http->daemon == NULL)
        return paramd__error_set(error, PARAMD_E_UNAVAILABLE,
                                 "--http: cannot listen on %s:%u (address in use or not local?)",
                                 options->host, options->port);

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof bound;
    http->bound_port = options->port;
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &bound_length) == 0)
        http->bound_port = ntohs(bound.ss_family == AF_INET6
                                     ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                     : ((struct sockaddr_in *)&bound)->sin_port);
    return PARAMD_OK;
}

void paramd__http_stop(paramd__http_server *http)
{
    atomic_store(&http->shutting_down, true);
    if (http->daemon) {
        MHD_stop_daemon(http->daemon);
        http->daemon = NULL;
    }
}
