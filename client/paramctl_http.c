/*
 * paramctl_http.c - paramctl over the HTTP API (docs/API.md), with libcurl
 * (one easy handle, so requests share a keep-alive connection) and
 * jansson.  Tensors travel as {"dtype": "float32", "b64": ...}.
 *
 * A reply with a 4xx or 5xx status is the server's refusal
 * (PARAMCTL_SERVER_ERROR), printed from its {"error": {"code", "message"}}
 * body; a transfer that fails is PARAMCTL_CONNECT.
 *
 * The token (--token-file or PARAMD_TOKEN) goes in every request's
 * "Authorization: Bearer" header.  https:// addresses verify the server's
 * certificate and host name, always (CURLOPT_SSL_VERIFYPEER and
 * _VERIFYHOST), against --cacert (CURLOPT_CAINFO) or the system's trust
 * store; paramctl has no option to turn that off.
 */
#define _DEFAULT_SOURCE
#include "paramctl.h"

#include "base64.h"
#include "paramd/paramd.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_backend {
    CURL *curl;
    char base[300]; /* "http://HOST:PORT" or "https://HOST:PORT" */
    long timeout_ms;
    const paramctl_target *target;
    char authorization[300]; /* "Authorization: Bearer TOKEN", or "" */
} http_backend;

typedef struct body {
    char *data;
    size_t size;
} body;

static size_t collect(char *data, size_t size, size_t count, void *context)
{
    body *b = context;
    size_t n = size * count;
    char *grown = realloc(b->data, b->size + n + 1);
    if (grown == NULL)
        return 0; /* curl fails the transfer */
    memcpy(grown + b->size, data, n);
    b->size += n;
    grown[b->size] = '\0';
    b->data = grown;
    return n;
}

/* A path segment or query value, percent-encoded (curl_free it). */
static char *escape(http_backend *h, const char *text)
{
    return curl_easy_escape(h->curl, text, 0);
}

/* One request.  On success (2xx) *out receives the body (NUL-terminated,
 * malloc'ed; "" when empty) when out is not NULL. */
static int request(http_backend *h, const char *method, const char *path, const char *payload,
                   char **out)
{
    char url[4096];
    snprintf(url, sizeof url, "%s%s", h->base, path);
    body reply = {calloc(1, 1), 0};
    if (reply.data == NULL)
        return paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory");
    curl_easy_reset(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "paramctl");
    /* Only the scheme of the base URL; never follow a redirect elsewhere. */
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, h->target->tls ? "https" : "http");
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, why);
    if (h->target->tls) {
        curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(h->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        if (h->target->cacert)
            curl_easy_setopt(h->curl, CURLOPT_CAINFO, h->target->cacert);
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (h->authorization[0])
        headers = curl_slist_append(headers, h->authorization);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    if (payload) {
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
    }
    CURLcode result = curl_easy_perform(h->curl);
    curl_slist_free_all(headers);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, NULL); /* why goes out of scope */
    if (result != CURLE_OK) {
        free(reply.data);
        if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE)
            return paramctl_fail(PARAMCTL_CONNECT,
                                 "%s %s: the server's TLS certificate did not verify: %s (%s)",
                                 method, url, why[0] ? why : curl_easy_strerror(result),
                                 h->target->cacert
                                     ? "is --cacert the certificate that signed it?"
                                     : "give its CA or self-signed certificate with --cacert FILE");
        return paramctl_fail(PARAMCTL_CONNECT, "%s %s: %s%s", method, url,
                             why[0] ? why : curl_easy_strerror(result),
                             result == CURLE_GOT_NOTHING && !h->target->tls
                                 ? " (does the server speak HTTPS? then --http https://HOST:PORT)"
                                 : "");
    }
    long status = 0;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        if (out)
            *out = reply.data;
        else
            free(reply.data);
        return PARAMCTL_OK;
    }
    /* {"error": {"code": ..., "message": ...}} */
    json_t *document = json_loads(reply.data, 0, NULL);
    json_t *error = json_object_get(document, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    int exit_code;
    int numeric = status == 401   ? PARAMD_E_UNAUTHORIZED
                  : status == 403 ? PARAMD_E_FORBIDDEN
                                  : PARAMD_OK;
    if (code && message)
        exit_code = paramctl_fail(PARAMCTL_SERVER_ERROR, "%s: %s%s", code, message,
                                  paramctl_auth_hint(numeric, h->target));
    else
        exit_code = paramctl_fail(PARAMCTL_SERVER_ERROR, "%s %s: HTTP %ld: %.200s%s", method, url,
                                  status, reply.data, paramctl_auth_hint(numeric, h->target));
    json_decref(document);
    free(reply.data);
    return exit_code;
}

static int model_request(http_backend *h, const char *method, const char *model,
                         const char *suffix, const char *payload, char **out)
{
    char *name = escape(h, model);
    if (name == NULL)
        return paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory");
    char path[2048];
    snprintf(path, sizeof path, "/v1/models/%s%s", name, suffix);
    curl_free(name);
    return request(h, method, path, payload, out);
}

static int http_create(void *self, const char *model, const char *json, char **out)
{
    return model_request(self, "PUT", model, "", json, out);
}

static int http_list(void *self, char **out)
{
    return request(self, "GET", "/v1/models", NULL, out);
}

static int http_describe(void *self, const char *model, char **out)
{
    return model_request(self, "GET", model, "", NULL, out);
}

static int http_delete(void *self, const char *model)
{
    return model_request(self, "DELETE", model, "", NULL, NULL);
}

static int http_stats(void *self, const char *model, char **out)
{
    if (model == NULL)
        return paramctl_fail(PARAMCTL_USAGE,
                             "stats: the HTTP API has no server-wide statistics; name a model, "
                             "or use --tcp");
    return http_describe(self, model, out);
}

/* Parses a reply body (checked). */
static json_t *parse_reply(const char *text, const char *what)
{
    json_t *document = json_loads(text, 0, NULL);
    if (document == NULL)
        paramctl_fail(PARAMCTL_SERVER_ERROR, "%s: the reply is not JSON: %.200s", what, text);
    return document;
}

static int http_shape(void *self, const char *model, const char *tensor, paramctl_shape *shape)
{
    char *text;
    int result = http_describe(self, model, &text);
    if (result != PARAMCTL_OK)
        return result;
    json_t *document = parse_reply(text, "describe");
    free(text);
    if (document == NULL)
        return PARAMCTL_SERVER_ERROR;
    json_t *tensors = json_object_get(document, "tensors"), *entry;
    size_t index;
    bool found = false;
    json_array_foreach(tensors, index, entry) {
        const char *name = json_string_value(json_object_get(entry, "name"));
        if (name == NULL || strcmp(name, tensor) != 0)
            continue;
        json_t *dimensions = json_object_get(entry, "shape"), *size;
        size_t d;
        memset(shape, 0, sizeof *shape);
        shape->element_count = 1;
        json_array_foreach(dimensions, d, size) {
            if (d < 8) {
                shape->shape[d] = (uint64_t)json_integer_value(size);
                shape->element_count *= shape->shape[d];
            }
        }
        shape->dimension_count = (int)(json_array_size(dimensions) < 8 ? json_array_size(dimensions) : 8);
        found = true;
        break;
    }
    json_decref(document);
    if (!found)
        return paramctl_fail(PARAMCTL_SERVER_ERROR,
                             "tensor_not_found: model \"%s\" has no tensor \"%s\"", model, tensor);
    return PARAMCTL_OK;
}

/* {"dtype": "float32", "b64": "..."} (malloc'ed). */
static char *b64_floats(const float *values, size_t count)
{
    size_t length = paramd_base64_encoded_length(count * sizeof(float));
    char *text = malloc(length + 32);
    if (text == NULL)
        return NULL;
    int prefix = sprintf(text, "{\"dtype\":\"float32\",\"b64\":\"");
    paramd_base64_encode(values, count * sizeof(float), text + prefix);
    strcpy(text + prefix + length, "\"}");
    return text;
}

static int http_push(void *self, const char *model, const char *tensor, const float *values,
                     size_t count, char **summary)
{
    char *data = b64_floats(values, count);
    json_t *name = json_string(tensor);
    char *quoted = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    json_decref(name);
    size_t size = (data ? strlen(data) : 0) + (quoted ? strlen(quoted) : 0) + 64;
    char *payload = data && quoted ? malloc(size) : NULL;
    if (payload)
        snprintf(payload, size, "{\"grads\": {%s: %s}, \"worker\": \"paramctl\"}", quoted, data);
    free(data);
    free(quoted);
    if (payload == NULL)
        return paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory for a push of %zu floats", count);
    char *text;
    int result = model_request(self, "POST", model, "/push", payload, &text);
    free(payload);
    if (result != PARAMCTL_OK)
        return result;
    json_t *reply = parse_reply(text, "push");
    free(text);
    if (reply == NULL)
        return PARAMCTL_SERVER_ERROR;
    json_t *grad_norm = json_object_get(reply, "grad_norm"), *loss_scale = json_object_get(reply, "loss_scale");
    *summary = paramctl_push_summary(
        (uint64_t)json_integer_value(json_object_get(reply, "step")),
        json_number_value(json_object_get(reply, "lr")),
        grad_norm ? json_number_value(grad_norm) : NAN,
        loss_scale ? json_number_value(loss_scale) : NAN,
        json_is_true(json_object_get(reply, "skipped")),
        json_object_get(reply, "accumulated") != NULL);
    json_decref(reply);
    return *summary ? PARAMCTL_OK : paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory");
}

static int http_pull(void *self, const char *model, const char *tensor, float *values, size_t count)
{
    http_backend *h = self;
    char *name = escape(h, tensor);
    if (name == NULL)
        return paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory");
    char suffix[1024];
    snprintf(suffix, sizeof suffix, "/weights?tensors=%s&encoding=b64", name);
    curl_free(name);
    char *text;
    int result = model_request(h, "GET", model, suffix, NULL, &text);
    if (result != PARAMCTL_OK)
        return result;
    json_t *reply = parse_reply(text, "pull");
    free(text);
    if (reply == NULL)
        return PARAMCTL_SERVER_ERROR;
    const char *b64 = json_string_value(
        json_object_get(json_object_get(json_object_get(reply, "weights"), tensor), "b64"));
    long long n = b64 ? paramd_base64_decode(b64, strlen(b64), values, count * sizeof(float)) : -1;
    json_decref(reply);
    if (n != (long long)(count * sizeof(float)))
        return paramctl_fail(PARAMCTL_SERVER_ERROR,
                             "pull: the reply does not hold %zu float32 weights of \"%s\"", count,
                             tensor);
    return PARAMCTL_OK;
}

static void http_close(void *self)
{
    http_backend *h = self;
    curl_easy_cleanup(h->curl);
    explicit_bzero(h->authorization, sizeof h->authorization);
    free(h);
    curl_global_cleanup();
}

int paramctl_http_open(const paramctl_target *target, paramctl_backend *backend)
{
    const char *host = target->host;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return paramctl_fail(PARAMCTL_CONNECT, "libcurl could not start");
    http_backend *h = calloc(1, sizeof *h);
    if (h)
        h->curl = curl_easy_init();
    if (h == NULL || h->curl == NULL) {
        free(h);
        curl_global_cleanup();
        return paramctl_fail(PARAMCTL_CONNECT, "libcurl could not start");
    }
    curl_version_info_data *version = curl_version_info(CURLVERSION_NOW);
    if (target->tls && !(version->features & CURL_VERSION_SSL)) {
        curl_easy_cleanup(h->curl);
        free(h);
        curl_global_cleanup();
        return paramctl_fail(PARAMCTL_CONNECT, "this libcurl has no TLS: https:// cannot work");
    }
    bool ipv6 = strchr(host, ':') != NULL;
    snprintf(h->base, sizeof h->base, "%s://%s%s%s:%d", target->tls ? "https" : "http",
             ipv6 ? "[" : "", host, ipv6 ? "]" : "", target->port);
    h->timeout_ms = target->timeout_ms;
    h->target = target;
    if (target->token)
        snprintf(h->authorization, sizeof h->authorization, "Authorization: Bearer %s",
                 target->token);
    *backend = (paramctl_backend){h,          http_create, http_list, http_describe, http_delete,
                                  http_stats, http_shape,  http_push, http_pull,     http_close};
    return PARAMCTL_OK;
}
