/*
 * paramctl_tcp.c - paramctl over the binary protocol, through the client
 * library (include/paramd/client.h).
 *
 * Errors map to exit codes by their origin: the library's connect_failed,
 * connection_error and timeout are PARAMCTL_CONNECT, invalid_argument is a
 * usage error, and everything else is the server's refusal
 * (PARAMCTL_SERVER_ERROR), printed as "NAME: the server's message".  With
 * --shard-map the handle is the library's sharded one (every shard of the
 * map, docs/CLIENT.md "Sharded clients"), and a map that does not load is
 * PARAMCTL_FILE.  The token (--token-file or PARAMD_TOKEN) goes in HELLO, to
 * every shard; unauthorized and forbidden are the server's refusals too,
 * with a hint about where the token came from.
 */
#include "paramctl.h"

#include "paramd/client.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The target of the one backend paramctl opens, for paramctl_auth_hint. */
static const paramctl_target *opened;

static int failed(paramd_client *client)
{
    int code = paramd_client_error(client);
    int exit_code = code == PARAMD_E_CONNECT || code == PARAMD_E_CONNECTION ||
                            code == PARAMD_E_TIMEOUT
                        ? PARAMCTL_CONNECT
                    : code == PARAMD_E_INVALID_ARGUMENT ? PARAMCTL_USAGE
                                                         : PARAMCTL_SERVER_ERROR;
    return paramctl_fail(exit_code, "%s: %s%s", paramd_error_name(code),
                         paramd_client_errstr(client), paramctl_auth_hint(code, opened));
}

static int tcp_create(void *self, const char *model, const char *json, char **out)
{
    return paramd_create_model(self, model, json, out) == PARAMD_OK ? PARAMCTL_OK : failed(self);
}

static int tcp_list(void *self, char **out)
{
    return paramd_list_models(self, out) == PARAMD_OK ? PARAMCTL_OK : failed(self);
}

static int tcp_describe(void *self, const char *model, char **out)
{
    return paramd_describe_model(self, model, out) == PARAMD_OK ? PARAMCTL_OK : failed(self);
}

static int tcp_delete(void *self, const char *model)
{
    return paramd_delete_model(self, model) == PARAMD_OK ? PARAMCTL_OK : failed(self);
}

static int tcp_stats(void *self, const char *model, char **out)
{
    return paramd_stats(self, model, out) == PARAMD_OK ? PARAMCTL_OK : failed(self);
}

static int tcp_shape(void *self, const char *model, const char *tensor, paramctl_shape *shape)
{
    paramd_tensor_info info;
    if (paramd_tensor_info_get(self, model, tensor, &info) != PARAMD_OK)
        return failed(self);
    shape->dimension_count = info.dimension_count;
    memcpy(shape->shape, info.shape, sizeof shape->shape);
    shape->element_count = info.element_count;
    return PARAMCTL_OK;
}

static int tcp_push(void *self, const char *model, const char *tensor, const float *values,
                    size_t count, char **summary)
{
    paramd_push_result result;
    paramd_push_options options = {.worker = "paramctl"};
    if (paramd_push_tensor(self, model, tensor, values, count, &options, &result) != PARAMD_OK)
        return failed(self);
    *summary = paramctl_push_summary(result.step, result.lr, result.grad_norm, result.loss_scale,
                                     result.flags & PARAMD_PUSH_SKIPPED,
                                     result.flags & PARAMD_PUSH_ACCUMULATED);
    return *summary ? PARAMCTL_OK : paramctl_fail(PARAMCTL_SERVER_ERROR, "out of memory");
}

static int tcp_pull(void *self, const char *model, const char *tensor, float *values, size_t count)
{
    return paramd_pull_tensor(self, model, tensor, values, count, NULL) == PARAMD_OK
               ? PARAMCTL_OK
               : failed(self);
}

static void tcp_close(void *self)
{
    paramd_close(self);
}

int paramctl_tcp_open(const paramctl_target *target, paramctl_backend *backend)
{
    const char *shard_map = target->shard_map;
    opened = target;
    paramd_config config = {.host = shard_map ? NULL : target->host,
                            .port = shard_map ? 0 : target->port,
                            .connect_timeout_ms = target->timeout_ms,
                            .timeout_ms = target->timeout_ms,
                            .token = target->token,
                            .client_name = "paramctl " PARAMD_VERSION_STRING,
                            .shard_map = shard_map};
    int error;
    paramd_client *client = paramd_connect_config(&config, &error);
    if (client == NULL)
        return paramctl_fail(PARAMCTL_CONNECT, "out of memory");
    if (error != PARAMD_OK) {
        /* A shard map that does not load is a bad local file; a refused
         * token is the server's refusal, as over HTTP; anything else is a
         * connection that failed. */
        bool bad_map = shard_map && paramd_shard_count(client) == 0;
        bool refused = error == PARAMD_E_UNAUTHORIZED || error == PARAMD_E_FORBIDDEN;
        int code = failed(client);
        paramd_close(client);
        return bad_map                                   ? PARAMCTL_FILE
               : refused                                 ? PARAMCTL_SERVER_ERROR
               : code == PARAMCTL_SERVER_ERROR ? PARAMCTL_CONNECT
                                                         : code;
    }
    *backend = (paramctl_backend){client,     tcp_create, tcp_list, tcp_describe, tcp_delete,
                                  tcp_stats,  tcp_shape,  tcp_push, tcp_pull,     tcp_close};
    return PARAMCTL_OK;
}
