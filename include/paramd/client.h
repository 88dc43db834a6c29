/*
 * client.h - the paramd C client library (libparamd): a blocking client of
 * the binary protocol (proto/PROTOCOL.md) that works with model and tensor
 * names.
 *
 *     int error;
 *     paramd_client *c = paramd_connect("127.0.0.1", 8471, 5000, &error);
 *     if (error != PARAMD_OK) {
 *         fprintf(stderr, "%s\n", paramd_client_errstr(c));
 *         paramd_close(c);
 *         return 1;
 *     }
 *     float grad[3] = {0.1f, 0.2f, 0.3f}, weights[3];
 *     if (paramd_pushpull_tensor(c, "demo", "w", grad, weights, 3, NULL, NULL) != PARAMD_OK)
 *         fprintf(stderr, "pushpull: %s\n", paramd_client_errstr(c));
 *     paramd_close(c);
 *
 * Build with `pkg-config --cflags --libs paramd`; docs/CLIENT.md is the
 * guide.
 *
 * Handles.  A paramd_client is one TCP connection and its state: the
 * connection, the last error, and a cache of model and tensor ids (a
 * handle opened from a shard map holds one of each per shard: see
 * "Sharded handles" below).  As with
 * hiredis, paramd_connect returns a handle even when the connection failed
 * (NULL only when the handle itself cannot be allocated), so that the error
 * message can be read; every handle is released with paramd_close.  A
 * handle is not thread-safe: use one per thread (connections are cheap, and
 * the server serves them concurrently).
 *
 * Errors.  Every call returns PARAMD_OK (0) or one of the negative codes of
 * PARAMD_ERROR_MAP (include/paramd/paramd.h): the server's code for a
 * request it refused (model_not_found, shape_mismatch, ...), or one of the
 * library's own: connect_failed, connection_error, timeout,
 * invalid_argument, bad_frame (the server's reply is malformed),
 * out_of_memory.  The same code and a message (the server's own message
 * for a refused request, naming the field) stay on the handle until the
 * next call: paramd_client_error and paramd_client_errstr.  A refused
 * request leaves the connection usable, except a refused token
 * (unauthorized), after which the server closes it.
 *
 * Timeouts.  Every call has a deadline, the handle's timeout from the call's
 * start (paramd_set_timeout), that bounds every socket wait of the call; a
 * call that runs out of time fails with PARAMD_E_TIMEOUT.  Host names are
 * resolved by the system resolver before the connect timeout starts; use a
 * numeric address where that matters.
 *
 * Reconnecting.  Automatic.  After a timeout or a broken connection the
 * handle closes its socket, and the next call connects again (HELLO again,
 * id cache dropped) before it sends anything.  Before each call the library
 * also checks, without waiting, whether the server has closed an idle
 * connection (a restarted server, the idle timeout) and reconnects then too,
 * so a call after a server restart simply works.  A request that was sent
 * when its connection broke is not sent again: it may have been applied
 * (a push), so the call fails with PARAMD_E_CONNECTION and the caller
 * decides.  paramd_reconnect reconnects on demand.
 *
 * Names and ids.  The library LOOKUPs a model the first time a call names
 * it and caches its id and its tensors' ids and shapes.  When the server
 * answers model_not_found for a cached id (the model was deleted and
 * created again), the library drops the model from the cache, looks it up
 * again by name and retries the call once.  Pipelined batches do not retry
 * (see below).
 *
 * Float data.  Arrays in and out of the library are float32.  A push may
 * travel as float16 or bfloat16 (paramd_push_options.dtype): the library
 * rounds the gradients (to nearest, ties to even) and widens the weights
 * the server returns, exactly (proto/half.h).
 */
#ifndef PARAMD_CLIENT_H
#define PARAMD_CLIENT_H

#include "paramd/paramd.h"
#include "paramd/protocol.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paramd_client paramd_client;

/* ---------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------- */

#define PARAMD_DEFAULT_HOST "127.0.0.1"
#define PARAMD_DEFAULT_TCP_PORT 8471
#define PARAMD_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define PARAMD_DEFAULT_TIMEOUT_MS 30000

/* Everything paramd_connect_config takes.  Zero-initialise it and set what
 * differs from the defaults; the strings are copied. */
typedef struct paramd_config {
    const char *host;         /* name or address; NULL: PARAMD_DEFAULT_HOST */
    int port;                 /* 0: PARAMD_DEFAULT_TCP_PORT */
    int connect_timeout_ms;   /* connect and HELLO; 0: PARAMD_DEFAULT_CONNECT_TIMEOUT_MS */
    int timeout_ms;           /* every other call; 0: PARAMD_DEFAULT_TIMEOUT_MS */
    const char *token;        /* HELLO's bearer token, for a server with --token-file; sent
                                 in every HELLO (reconnects too) and, for a shard map, to
                                 every shard.  A missing or unknown token fails with
                                 PARAMD_E_UNAUTHORIZED, a role too low for a request with
                                 PARAMD_E_FORBIDDEN, each with the server's message
                                 (docs/CLIENT.md, "Tokens").  NULL: none */
    const char *client_name;  /* HELLO's client name, for the server's logs; NULL: "libparamd VERSION" */
    uint32_t max_reply_bytes; /* largest reply payload accepted; 0: any (up to 4 GiB) */
    const char *shard_map;    /* a shard map file: one handle for every shard in it (see
                                 "Sharded handles" below); host and port must then be unset */
} paramd_config;

/* Connects to host:port and says HELLO, in at most timeout_ms (which is
 * also the handle's timeout for every later call; 0 or less: the defaults).
 * Returns the handle, connected or not; *error (when not NULL) receives
 * PARAMD_OK or the error, which the handle also holds.  NULL (with
 * PARAMD_E_NO_MEMORY) only when the handle cannot be allocated. */
PARAMD_EXPORT paramd_client *paramd_connect(const char *host, int port, int timeout_ms,
                                            int *error);

/* The same, with every setting.  config may be NULL (all defaults). */
PARAMD_EXPORT paramd_client *paramd_connect_config(const paramd_config *config, int *error);

/* Closes the connection (if open) and connects again: HELLO, and an empty
 * id cache.  Returns PARAMD_OK or the error. */
PARAMD_EXPORT int paramd_reconnect(paramd_client *client);

/* Closes the connection and frees the handle (NULL is ignored). */
PARAMD_EXPORT void paramd_close(paramd_client *client);

/* 1 while the handle has an open connection, 0 when the next call has to
 * connect first. */
PARAMD_EXPORT int paramd_is_connected(const paramd_client *client);

/* The per-call timeout, in milliseconds (more than 0). */
PARAMD_EXPORT int paramd_set_timeout(paramd_client *client, int timeout_ms);

/* The last call's result: PARAMD_OK or its error code, and a message (""
 * after a success; never NULL).  Valid until the next call on the handle. */
PARAMD_EXPORT int paramd_client_error(const paramd_client *client);
PARAMD_EXPORT const char *paramd_client_errstr(const paramd_client *client);

/* The server's name from HELLO ("paramd 0.1.0"), "" when not connected. */
PARAMD_EXPORT const char *paramd_server_name(const paramd_client *client);

/* Frees memory the library returned (JSON documents). */
PARAMD_EXPORT void paramd_free(void *pointer);

/* ---------------------------------------------------------------------------
 * Sharded handles
 *
 * A parameter service of several paramd shards (paramd --shard-map FILE
 * --shard-id I; deploy/local-cluster.sh) is described by a shard map file
 * (proto/shard_map.h).  A handle opened from that file connects to every
 * shard and takes the same calls as a handle of one server: it routes
 * each tensor, or each shard's range of a split tensor, to the shard that
 * holds it, sends to all the shards a call concerns at once and waits for
 * them together (one poll over every socket), and puts their replies back
 * together in the caller's arrays.  docs/CLIENT.md, "Sharded clients", is
 * the guide; in short:
 *
 *   - Placement is learnt, not computed: the first call that names a model
 *     asks every shard what it holds (LOOKUP) and how it is configured
 *     (its description: shard-map version, clipping, nonfinite policy).  A
 *     tensor listed by several shards is split, in the ranges of
 *     proto/shard_map.h.  The model is learnt again after any shard
 *     reconnects.
 *   - paramd_create_model creates the model on every shard (each keeps its
 *     part); when one refuses, the model is deleted again from the shards
 *     that created it, and the error names the shard.  paramd_delete_model
 *     deletes it wherever it is.  Describe and stats return merged
 *     documents with every shard's own inside ("shards"); list merges the
 *     shards' lists.
 *   - Pushes carry the global gradient norm: when a model held by several
 *     shards clips by total norm and the caller gives no grad_norm, the
 *     library computes the norm of all the push's gradients, exactly as one
 *     server would, and sends it to every shard.
 *   - Steps: each shard counts its own.  result->step (and a pull's *step)
 *     is the smallest step among the shards the call reached.  With
 *     options->has_version, each shard is sent the step it reported with
 *     the weights it last returned to this handle for the model (options->
 *     version only where none is known yet): paramd_shard_steps shows them.
 *   - Errors name the shard and its address ("shard 1 (127.0.0.1:8481):
 *     ...").  A push that some shards applied and one refused says which
 *     applied it.  A shard whose shard-map version differs from the file's
 *     makes the library read the file again once; if the versions still
 *     differ, calls fail with not_owner and a message naming both versions.
 *     A shard that is down fails the calls that need it with
 *     connect_failed, and the first call after it is back reconnects.
 * ------------------------------------------------------------------------- */

/* Opens a handle for every shard of the shard map file at `path`, with
 * timeout_ms as paramd_connect takes it.  Returns the handle, connected or
 * not (as paramd_connect); *error receives the first shard's failure, or
 * PARAMD_OK. */
PARAMD_EXPORT paramd_client *paramd_connect_shard_map(const char *path, int timeout_ms,
                                                      int *error);

/* The number of shards of a sharded handle; 0 for a handle of one server. */
PARAMD_EXPORT int paramd_shard_count(const paramd_client *client);

/* The version of the shard map a sharded handle uses (0 for one server). */
PARAMD_EXPORT uint64_t paramd_shard_map_version(const paramd_client *client);

/* The handle a sharded handle uses for shard `shard` (0 to count - 1), an
 * ordinary handle of that one server: for what concerns one shard only,
 * such as creating a model again on a shard that was restarted empty.  It
 * belongs to the sharded handle: never close it; it is valid until the
 * sharded handle is closed or its map is reloaded.  NULL for a bad
 * argument. */
PARAMD_EXPORT paramd_client *paramd_shard_client(paramd_client *client, int shard);

/* steps[i], for each shard i (count at least paramd_shard_count): the step
 * shard i reported with the weights this handle last received from it for
 * the model, or PARAMD_STEP_UNKNOWN. */
#define PARAMD_STEP_UNKNOWN UINT64_MAX
PARAMD_EXPORT int paramd_shard_steps(paramd_client *client, const char *model, uint64_t *steps,
                                     size_t count);

/* Reads the handle's shard map file again; when its version changed, the
 * handle reconnects to the new map's shards and forgets every placement.
 * PARAMD_OK, or the file's error. */
PARAMD_EXPORT int paramd_reload_shard_map(paramd_client *client);

/* ---------------------------------------------------------------------------
 * Models (JSON documents, as the HTTP API has them: docs/API.md)
 * ------------------------------------------------------------------------- */

/* Creates a model from the body of `PUT /v1/models/{model}`.  *description
 * (when not NULL) receives the new model's description, NUL-terminated;
 * free it with paramd_free. */
PARAMD_EXPORT int paramd_create_model(paramd_client *client, const char *model, const char *json,
                                      char **description);

/* What `GET /v1/models/{model}` answers. */
PARAMD_EXPORT int paramd_describe_model(paramd_client *client, const char *model, char **json);

/* What `GET /v1/models` answers. */
PARAMD_EXPORT int paramd_list_models(paramd_client *client, char **json);

/* Deletes a model (and drops it from the id cache). */
PARAMD_EXPORT int paramd_delete_model(paramd_client *client, const char *model);

/* The server's counters (model NULL or ""), or the model's description. */
PARAMD_EXPORT int paramd_stats(paramd_client *client, const char *model, char **json);

/* One tensor's id and shape, from the cache (a LOOKUP the first time). */
typedef struct paramd_tensor_info {
    char name[256];
    uint32_t id;                /* the tensor's index in its model */
    int dimension_count;        /* 0 to 8 */
    uint64_t shape[8];
    uint64_t element_count;     /* product of the shape */
} paramd_tensor_info;

PARAMD_EXPORT int paramd_tensor_info_get(paramd_client *client, const char *model,
                                         const char *tensor, paramd_tensor_info *info);

/* The model's tensors in creation order: *count entries in *infos (free
 * with paramd_free). */
PARAMD_EXPORT int paramd_model_tensors(paramd_client *client, const char *model,
                                       paramd_tensor_info **infos, size_t *count);

/* ---------------------------------------------------------------------------
 * Pushes and pulls
 * ------------------------------------------------------------------------- */

/* One tensor of a push.  count must be the tensor's element count (a push
 * updates whole tensors); the server refuses anything else (bad_range). */
typedef struct paramd_push_item {
    const char *tensor;
    const float *grad;          /* count gradients */
    float *weights;             /* PUSHPULL: receives count fresh weights; PUSH: ignored */
    size_t count;
} paramd_push_item;

/* Everything about a push but its gradients.  NULL means all defaults. */
typedef struct paramd_push_options {
    int dtype;                  /* on the wire: 0 or PARAMD_DTYPE_FLOAT32, _FLOAT16, _BFLOAT16 */
    int has_loss;               /* send `loss` (for ReduceLROnPlateau) */
    double loss;
    int has_grad_norm;          /* send `grad_norm` (the global norm, for clipping) */
    double grad_norm;
    const char *worker;         /* the worker's name (required by sync and ssp models); NULL: none */
    int has_version;            /* send `version` */
    uint64_t version;           /* the model step the gradients were computed at: the `step`
                                   of the reply that gave the weights (sync, ssp, staleness) */
} paramd_push_options;

/* What the server says about a push (PROTOCOL.md, the PUSH reply). */
typedef struct paramd_push_result {
    uint64_t step;              /* the model's step count after the push */
    double lr;                  /* the learning rate the push used */
    double grad_norm;           /* the norm before clipping; NaN when the model does not clip by norm */
    double loss_scale;          /* the loss scale; NaN when the model has none */
    uint32_t flags;             /* PARAMD_PUSH_SKIPPED, PARAMD_PUSH_ACCUMULATED, PARAMD_PUSH_DROPPED */
} paramd_push_result;

/* One range of a pull: count weights from element `offset` of the tensor. */
typedef struct paramd_pull_item {
    const char *tensor;
    uint64_t offset;
    size_t count;
    float *weights;             /* receives count weights */
} paramd_pull_item;

/* Pushes gradients of item_count tensors of one model in one request
 * (applied atomically per tensor, as the HTTP API's push).  options and
 * result may be NULL. */
PARAMD_EXPORT int paramd_push(paramd_client *client, const char *model,
                              const paramd_push_item *items, size_t item_count,
                              const paramd_push_options *options, paramd_push_result *result);

/* The same, and each item's fresh weights into its `weights`. */
PARAMD_EXPORT int paramd_pushpull(paramd_client *client, const char *model,
                                  const paramd_push_item *items, size_t item_count,
                                  const paramd_push_options *options, paramd_push_result *result);

/* Reads item_count ranges in one request.  dtype is the wire type (0 means
 * float32; 16-bit types halve the bytes and round the weights); *step
 * (when not NULL) receives the model's step count, read before the copies. */
PARAMD_EXPORT int paramd_pull(paramd_client *client, const char *model,
                              const paramd_pull_item *items, size_t item_count, int dtype,
                              uint64_t *step);

/* One tensor: shorthands of the three above. */
PARAMD_EXPORT int paramd_push_tensor(paramd_client *client, const char *model, const char *tensor,
                                     const float *grad, size_t count,
                                     const paramd_push_options *options,
                                     paramd_push_result *result);
PARAMD_EXPORT int paramd_pushpull_tensor(paramd_client *client, const char *model,
                                         const char *tensor, const float *grad, float *weights,
                                         size_t count, const paramd_push_options *options,
                                         paramd_push_result *result);
PARAMD_EXPORT int paramd_pull_tensor(paramd_client *client, const char *model,
                                     const char *tensor, float *weights, size_t count,
                                     uint64_t *step);
/* count weights from element offset. */
PARAMD_EXPORT int paramd_pull_range(paramd_client *client, const char *model, const char *tensor,
                                    uint64_t offset, size_t count, float *weights,
                                    uint64_t *step);

/* ---------------------------------------------------------------------------
 * Pipelined batches
 *
 *     paramd_batch *b = paramd_batch_begin(c);
 *     for (int i = 0; i < 1000; i++)
 *         paramd_batch_pushpull(b, "demo", &item, 1, NULL);
 *     int error = paramd_batch_run(b);          // every frame goes out, then every reply
 *     for (size_t i = 0; i < paramd_batch_size(b); i++)
 *         if (paramd_batch_status(b, i) != PARAMD_OK) ...paramd_batch_errstr(b, i)...
 *     paramd_batch_free(b);
 *
 * Queuing encodes the request at once (gradients are copied, so their
 * buffers may be reused right away; a name not in the cache is looked up
 * now, which is the only network traffic before run).  paramd_batch_run
 * then writes every queued frame and reads the replies while it writes, so
 * the server never waits on a client that does not read; replies are
 * matched in order, and each writes its weights where its request's items
 * said.  Requests keep their order on the server.  The whole run has one
 * deadline, the handle's timeout.
 *
 * A request the server refuses fails alone; its status and message are
 * per request.  A batch does not retry model_not_found for a cached id: the
 * request fails with it, and the model is dropped from the cache, so the
 * next call or batch looks it up again.  A batch runs once; its memory (the
 * encoded requests) is held until paramd_batch_free.
 * ------------------------------------------------------------------------- */

typedef struct paramd_batch paramd_batch;

/* A new, empty batch on the client (NULL when out of memory).  Nothing is
 * sent before paramd_batch_run, so other calls on the client (and other
 * batches) may run while a batch is being filled. */
PARAMD_EXPORT paramd_batch *paramd_batch_begin(paramd_client *client);

/* Queue one request.  Each returns the request's index in the batch (0, 1,
 * ...), or a negative error code when the request could not be queued (an
 * unknown model or tensor, a bad argument, no memory): then nothing was
 * queued, and the client's error says why. */
PARAMD_EXPORT long paramd_batch_push(paramd_batch *batch, const char *model,
                                     const paramd_push_item *items, size_t item_count,
                                     const paramd_push_options *options);
PARAMD_EXPORT long paramd_batch_pushpull(paramd_batch *batch, const char *model,
                                         const paramd_push_item *items, size_t item_count,
                                         const paramd_push_options *options);
PARAMD_EXPORT long paramd_batch_pull(paramd_batch *batch, const char *model,
                                     const paramd_pull_item *items, size_t item_count, int dtype);

/* Sends every queued request and collects every reply.  Returns PARAMD_OK
 * when every request succeeded; otherwise the first failure's code (and
 * the client's error holds its message).  After a transport failure
 * (timeout, broken connection) the requests without a reply have that
 * status. */
PARAMD_EXPORT int paramd_batch_run(paramd_batch *batch);

/* Requests queued. */
PARAMD_EXPORT size_t paramd_batch_size(const paramd_batch *batch);

/* After run: request i's code and message ("" on success). */
PARAMD_EXPORT int paramd_batch_status(const paramd_batch *batch, size_t index);
PARAMD_EXPORT const char *paramd_batch_errstr(const paramd_batch *batch, size_t index);

/* After run: request i's push outcome (PUSH, PUSHPULL) or step (PULL:
 * step only).  PARAMD_OK, or the request's error. */
PARAMD_EXPORT int paramd_batch_result(const paramd_batch *batch, size_t index,
                                      paramd_push_result *result);

/* Frees the batch (NULL is ignored). */
PARAMD_EXPORT void paramd_batch_free(paramd_batch *batch);

#ifdef __cplusplus
}
#endif
#endif /* PARAMD_CLIENT_H */
