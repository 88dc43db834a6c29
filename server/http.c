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
#include <time.h>

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
    case PARAMD_E_UNAUTHORIZED:
        return 401;
    case PARAMD_E_FORBIDDEN:
        return 403;
    case PARAMD_E_NO_MEMORY:
    case PARAMD_E_UNAVAILABLE:
    case PARAMD_E_OVERLOADED:
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
    if (error->code == PARAMD_E_OVERLOADED)
        response->retry_after = 1;
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
    if (response->www_authenticate[0])
        MHD_add_response_header(reply, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                response->www_authenticate);
    if (response->retry_after) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%u", response->retry_after);
        MHD_add_response_header(reply, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
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
 * Slow clients (issue 9)
 *
 * libmicrohttpd's connection timeout counts inactivity only, so a client
 * that sends one header byte a second would hold its connection (and, in
 * thread-per-connection mode, a thread) for ever.  Every connection is
 * therefore watched: between requests it may stay at most the idle timeout
 * (from its start or the end of its last response), and from the first line
 * of a request to the last byte of its body at most the request timeout.
 * While a handler runs or a response is sent, the watchdog leaves it alone.
 * The watchdog cuts a late connection off with shutdown(2): the
 * connection's own thread then sees the socket end and closes it.
 *
 * The list is guarded by watch_lock.  libmicrohttpd reports a connection's
 * end (MHD_CONNECTION_NOTIFY_CLOSED) before it closes the socket, and the
 * entry leaves the list then, under the lock, so the watchdog never shuts
 * down a descriptor that was closed and reused.
 * ------------------------------------------------------------------------- */

typedef enum watch_phase {
    WATCH_BETWEEN_REQUESTS, /* waiting for a request's first line */
    WATCH_RECEIVING,        /* first line seen; headers and body arriving */
    WATCH_HANDLING,         /* complete: the handler or the response runs */
} watch_phase;

struct paramd__http_watched {
    int descriptor;
    watch_phase phase;
    double since;            /* monotonic seconds the phase began */
    bool cut;                /* shut down already */
    paramd__http_watched *previous, *next;
};

static void watch_set_phase(paramd__http_server *http, struct MHD_Connection *connection,
                            watch_phase phase)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    paramd__http_watched *watched = info ? info->socket_context : NULL;
    if (watched == NULL)
        return;
    pthread_mutex_lock(&http->watch_lock);
    watched->phase = phase;
    watched->since = paramd__metrics_now();
    pthread_mutex_unlock(&http->watch_lock);
}

static void notify_connection(void *context, struct MHD_Connection *connection,
                              void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    paramd__http_server *http = context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        paramd__http_watched *watched = calloc(1, sizeof *watched);
        if (watched == NULL || info == NULL) {
            free(watched);
            return; /* not watched: only the inactivity timeout applies */
        }
        watched->descriptor = info->connect_fd;
        watched->phase = WATCH_BETWEEN_REQUESTS;
        watched->since = paramd__metrics_now();
        pthread_mutex_lock(&http->watch_lock);
        watched->next = http->watched;
        if (http->watched)
            http->watched->previous = watched;
        http->watched = watched;
        pthread_mutex_unlock(&http->watch_lock);
        *socket_context = watched;
        return;
    }
    paramd__http_watched *watched = *socket_context;
    if (watched == NULL)
        return;
    pthread_mutex_lock(&http->watch_lock);
    if (watched->previous)
        watched->previous->next = watched->next;
    else
        http->watched = watched->next;
    if (watched->next)
        watched->next->previous = watched->previous;
    pthread_mutex_unlock(&http->watch_lock);
    free(watched);
    *socket_context = NULL;
}

/* libmicrohttpd calls this once a request's first line has arrived. */
static void *request_line_arrived(void *context, const char *uri,
                                  struct MHD_Connection *connection)
{
    (void)uri;
    watch_set_phase(context, connection, WATCH_RECEIVING);
    return NULL;
}

static void *watchdog_main(void *argument)
{
    paramd__http_server *http = argument;
    const double idle = http->options.idle_timeout_seconds;
    const double request = http->options.request_timeout_seconds;
    pthread_mutex_lock(&http->watch_lock);
    while (!http->watchdog_stop) {
        struct timespec wake;
        clock_gettime(CLOCK_REALTIME, &wake);
        wake.tv_nsec += 250 * 1000 * 1000;
        if (wake.tv_nsec >= 1000000000L) {
            wake.tv_sec++;
            wake.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&http->watch_wake, &http->watch_lock, &wake);
        double now = paramd__metrics_now();
        for (paramd__http_watched *w = http->watched; w; w = w->next) {
            if (w->cut || w->phase == WATCH_HANDLING)
                continue;
            double limit = w->phase == WATCH_RECEIVING ? request : idle;
            if (limit <= 0 || now - w->since <= limit)
                continue;
            w->cut = true;
            shutdown(w->descriptor, SHUT_RDWR);
            atomic_fetch_add(&http->cut_off, 1);
            paramd__log_info("http: cut off a connection %s",
                             w->phase == WATCH_RECEIVING
                                 ? "whose request did not arrive within --request-timeout"
                                 : "that stayed between requests longer than --idle-timeout");
        }
    }
    pthread_mutex_unlock(&http->watch_lock);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Authorization (issue 9; auth.h)
 * ------------------------------------------------------------------------- */

/* Checks the request's bearer token against the role its route needs.
 * Returns true when it may go on; else fills *response with 401 or 403. */
static bool authorized(paramd__http_server *http, struct MHD_Connection *connection,
                       const char *method, const char *url, paramd__http_response *response)
{
    paramd__auth *auth = http->server->auth;
    if (auth == NULL)
        return true;
    paramd__role needed = paramd__http_route_role(http, method, url);
    if (needed == PARAMD__ROLE_NONE)
        return true;
    const char *header = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_AUTHORIZATION);
    const char *token = NULL;
    size_t length = 0;
    bool presented = paramd__auth_parse_bearer(header, &token, &length);
    paramd__role role = presented ? paramd__auth_role(auth, token, length) : PARAMD__ROLE_NONE;
    if (role >= needed)
        return true;
    paramd__error error = {0};
    if (role == PARAMD__ROLE_NONE) {
        /* RFC 6750 section 3: no error code when no credentials came. */
        paramd__error_set(&error, PARAMD_E_UNAUTHORIZED,
                          presented ? "%s %s: the bearer token is not valid"
                                    : "%s %s needs a bearer token (Authorization: Bearer TOKEN)",
                          method, url);
        snprintf(response->www_authenticate, sizeof response->www_authenticate,
                 presented ? "Bearer realm=\"paramd\", error=\"invalid_token\""
                           : "Bearer realm=\"paramd\"");
    } else {
        paramd__error_set(&error, PARAMD_E_FORBIDDEN,
                          "%s %s needs a token with the %s role; this one has %s", method, url,
                          paramd__role_name(needed), paramd__role_name(role));
        snprintf(response->www_authenticate, sizeof response->www_authenticate,
                 "Bearer realm=\"paramd\", error=\"insufficient_scope\", scope=\"%s\"",
                 paramd__role_name(needed));
    }
    paramd__http_error_response(response, &error);
    if (presented)
        paramd__log_warn("%s %s: refused a token (%s)", method, url,
                         role == PARAMD__ROLE_NONE ? "unknown token" : "role too low");
    return false;
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
        /* Issue 9: the token first, before anything is read or revealed. */
        paramd__http_response refusal = {0};
        if (!authorized(http, connection, method, url, &refusal)) {
            watch_set_phase(http, connection, WATCH_HANDLING);
            state->too_large = true; /* ignore any body that follows */
            paramd__metrics_count_request(PARAMD__TRANSPORT_HTTP, PARAMD__OPERATION_OTHER,
                                          refusal.code, paramd__metrics_now() - state->started,
                                          0, 0);
            state->counted = true;
            enum MHD_Result result = queue(connection, &refusal);
            json_decref(refusal.body);
            return result;
        }
        const char *length_header =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length_header) {
            char *end;
            errno = 0;
            unsigned long long declared = strtoull(length_header, &end, 10);
            if (errno != 0 || declared > limit) {
                state->too_large = true;
                watch_set_phase(http, connection, WATCH_HANDLING);
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

    watch_set_phase(http, connection, WATCH_HANDLING);
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
    (void)code;
    /* Issue 9: the connection now waits for its next request. */
    watch_set_phase(context, connection, WATCH_BETWEEN_REQUESTS);
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

    /* Issue 9: TLS through libmicrohttpd's GnuTLS, TLS 1.2 and 1.3 only. */
    struct MHD_OptionItem tls_options[4] = {{MHD_OPTION_END, 0, NULL}};
    if (options->tls_certificate) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
            return paramd__error_set(error, PARAMD_E_UNAVAILABLE,
                                     "--tls-cert: this libmicrohttpd was built without TLS");
        flags |= MHD_USE_TLS;
        tls_options[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                                 (void *)options->tls_certificate};
        tls_options[1] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)options->tls_key};
        tls_options[2] = (struct MHD_OptionItem){
            MHD_OPTION_HTTPS_PRIORITIES, 0,
            (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SAFE_RENEGOTIATION"};
        tls_options[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    pthread_mutex_init(&http->watch_lock, NULL);
    pthread_cond_init(&http->watch_wake, NULL);
    atomic_init(&http->cut_off, 0);

    http->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, http,
        MHD_OPTION_EXTERNAL_LOGGER, log_from_microhttpd, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, http,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, http,
        MHD_OPTION_URI_LOG_CALLBACK, request_line_arrived, http,
        MHD_OPTION_CONNECTION_LIMIT, options->connection_limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, options->per_ip_connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, options->idle_timeout_seconds,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_ARRAY, tls_options,
        MHD_OPTION_END);
    if (http->daemon == NULL) {
        pthread_cond_destroy(&http->watch_wake);
        pthread_mutex_destroy(&http->watch_lock);
        if (options->tls_certificate)
            return paramd__error_set(error, PARAMD_E_UNAVAILABLE,
                                     "--http: cannot listen on %s:%u with TLS (address in use, "
                                     "or --tls-cert and --tls-key are not a matching PEM "
                                     "certificate and key?)",
                                     options->host, options->port);
        return paramd__error_set(error, PARAMD_E_UNAVAILABLE,
                                 "--http: cannot listen on %s:%u (address in use or not local?)",
                                 options->host, options->port);
    }
    http->watchdog_stop = false;
    http->watchdog_running = pthread_create(&http->watchdog, NULL, watchdog_main, http) == 0;
    if (!http->watchdog_running)
        paramd__log_warn("http: could not start the slow-client watchdog");

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
        if (http->watchdog_running) {
            pthread_mutex_lock(&http->watch_lock);
            http->watchdog_stop = true;
            pthread_cond_signal(&http->watch_wake);
            pthread_mutex_unlock(&http->watch_lock);
            pthread_join(http->watchdog, NULL);
            http->watchdog_running = false;
        }
        pthread_cond_destroy(&http->watch_wake);
        pthread_mutex_destroy(&http->watch_lock);
    }
}
