/*
 * sharded.h - what the files of the sharded client share.  A handle opened
 * from a shard map (paramd_connect_shard_map, or paramd_config.shard_map)
 * is a parent that owns one ordinary handle per shard: each shard's handle
 * keeps its own connection, buffers, request ids and reconnection, exactly
 * as a handle of one server does, and the parent routes every call to the
 * shards it concerns, runs their exchanges in parallel (one poll over every
 * socket, paramd__wire_exchange_many) and reassembles the replies.
 * docs/CLIENT.md ("Sharded clients") is the user's account of it.
 *
 * The files:
 *   sharded.c         opening from a map, the shards' handles, reloading
 *                     the map, errors that name a shard, paramd_shard_*;
 *   sharded_place.c   a model's placement, learnt from the shards: LOOKUP
 *                     and STATS on every shard, the union of what they hold;
 *   sharded_data.c    push, pushpull and pull: split, fan out, reassemble,
 *                     the global gradient norm, per-shard steps;
 *   sharded_batch.c   pipelined batches over every shard;
 *   sharded_models.c  create, delete, describe, list and stats on every
 *                     shard, their JSON merged (jansson);
 *   grad_norm.c       the global norm of a push, as one server computes it.
 *
 * Ownership: the parent owns the map, the shards' handles and the
 * placements; a placement owns its arrays.  Nothing here is thread-safe,
 * as no handle is.
 */
#ifndef PARAMD_CLIENT_SHARDED_H
#define PARAMD_CLIENT_SHARDED_H

#include "internal.h"
#include "shard_map.h"

/* A step not known yet (no reply with weights from that shard). */
#define PARAMD__STEP_UNKNOWN UINT64_MAX

/* Where a model's tensors live, as the shards said when the parent last
 * looked (paramd__placement_get).  Valid while every shard it names is on
 * the connection it was learnt on (generations): a shard that reconnected
 * may have restarted and lost or renumbered the model. */
typedef struct paramd__placement {
    char *model;                   /* owned */
    /* The union of every shard's tensors: names, shapes and whole element
     * counts; a tensor's index in it is its id in paramd_tensor_info. */
    paramd__model_entry *tensors;
    int32_t *owners;               /* per tensor: the shard holding it whole, or -1: split */
    uint32_t *ids;                 /* [tensor * shard_count + shard]: its id on that shard */
    uint32_t *model_ids;           /* per shard: the model's id there */
    uint64_t *generations;         /* per shard: the connection the ids belong to */
    uint64_t *steps;               /* per shard: the step it reported with the weights it
                                      last returned to this handle, or PARAMD__STEP_UNKNOWN */
    bool spans;                    /* held by more than one shard: the servers want the
                                      global gradient norm when they clip by total norm */
    bool clip_norm;                /* the model clips by total norm (not per tensor) */
    double norm_type;              /* its clip.norm_type (INFINITY for "inf") */
    bool nonfinite_error;          /* its nonfinite policy is "error" */
    bool stale;                    /* to be learnt again (keeping the steps of the shards
                                      that still hold the same model on the same connection) */
    struct paramd__placement *next;
} paramd__placement;

typedef struct paramd__sharded {
    char *path;                    /* the map's file, for reloading and messages */
    paramd_shard_map map;
    paramd_client **shards;        /* map.shard_count handles, shards[i] for shard id i */
    paramd__placement *models;
} paramd__sharded;

/* ---------------------------------------------------------------------------
 * sharded.c
 * ------------------------------------------------------------------------- */

/* Opens a parent for config->shard_map: loads the map and connects to
 * every shard (their errors are recorded, naming the shard; the handle is
 * returned anyway, as paramd_connect returns one).  NULL only when out of
 * memory. */
paramd_client *paramd__sharded_open(const paramd_config *config, int *error);

/* Closes every shard's handle and frees the parent's state (not the
 * parent itself). */
void paramd__sharded_free(paramd__sharded *sharded);

/* Reconnects every shard; the first failure is the result. */
int paramd__sharded_reconnect(paramd_client *parent);

/* Records on the parent "shard I (HOST:PORT): message" with code. */
int paramd__shard_fail(paramd_client *parent, uint32_t shard, int code, const char *message);

/* Connects shard `shard` if it has no live connection.  Fails naming it. */
int paramd__shard_ensure(paramd_client *parent, uint32_t shard, int64_t deadline);

/* Loads the map file again.  When it holds a map of another version, the
 * shards' handles are replaced by handles of the new map's shards
 * (connected at once; failures are not an error here) and every
 * placement is dropped; *changed says whether that happened. */
int paramd__sharded_reload(paramd_client *parent, bool *changed);

/* PARAMD_OK when the handle has shards (its map loaded), else the error. */
int paramd__sharded_check(paramd_client *parent);

/* The model_not_found of a model missing on the shards flagged in
 * `missing`: on every shard, or on some only (then the message says which
 * have it and that the others lost it). */
int paramd__sharded_missing(paramd_client *parent, const char *model, const bool *missing);

/* "0, 2 and 5": the ids of the shards flagged in `which` (shard_count of
 * them), written to text. */
void paramd__shard_list_text(const bool *which, uint32_t shard_count, char *text, size_t size);

/* ---------------------------------------------------------------------------
 * sharded_place.c
 * ------------------------------------------------------------------------- */

/* The model's placement from the parent's list, or learnt from every shard
 * (which needs all of them).  *from_cache says which. */
int paramd__placement_get(paramd_client *parent, const char *model, int64_t deadline,
                          paramd__placement **placement, bool *from_cache);

/* Forgets a model's placement, steps included (the model was created or
 * deleted through the handle). */
void paramd__placement_drop(paramd_client *parent, const char *model);

/* Marks a model's placement stale: the next call learns it again, and the
 * steps of the shards whose connection and model id are unchanged carry
 * over to the new placement. */
void paramd__placement_invalidate(paramd_client *parent, const char *model);
void paramd__placement_clear(paramd__sharded *sharded);

/* ---------------------------------------------------------------------------
 * sharded_data.c, sharded_batch.c
 * ------------------------------------------------------------------------- */

/* What one push, pushpull or pull sends each shard: items[s * capacity]
 * onwards, counts[s] of them (none: the shard is not involved), pointing
 * into the caller's arrays. */
typedef struct paramd__routed {
    uint8_t opcode;
    uint8_t dtype;                 /* of the wire */
    size_t capacity;               /* the call's item count: no shard gets more */
    paramd__request_item *items;
    size_t *counts;
    bool has_norm;                 /* the library computed the global norm */
    double norm;
} paramd__routed;

/* Plans a call against the placement: checks names, counts and ranges,
 * cuts the items into the shards' parts, and computes the global norm
 * when the shards need it.  Free with paramd__routed_free. */
int paramd__routed_plan(paramd_client *parent, const paramd__placement *placement,
                        uint8_t opcode, const char *model, const paramd_push_item *push_items,
                        const paramd_pull_item *pull_items, size_t count,
                        const paramd_push_options *options, int pull_dtype,
                        paramd__routed *routed);
void paramd__routed_free(paramd__routed *routed);

/* Encodes shard `shard`'s part as one frame at the end of `buffer`, with
 * the options, the global norm and the shard's own version. */
int paramd__routed_encode(paramd_client *parent, const paramd__placement *placement,
                          const paramd__routed *routed, const paramd_push_options *options,
                          uint32_t shard, paramd__buffer *buffer, paramd__pending *pending);

/* Merges the replies: pending[s] (NULL for a shard not involved) with
 * status[s], its transport error or the server's answer.  On success the
 * outcome gets the smallest step, the first shard's lr and loss scale, the
 * norm sent (or the shard's), and every shard's flags; the shards that
 * returned weights have their steps remembered in the placement (when not
 * NULL).  Otherwise the error names the first failed shard and says what
 * the others did.  Only opcode, has_norm and norm of `routed` are read. */
int paramd__routed_merge(paramd_client *parent, paramd__placement *placement,
                         const paramd__routed *routed, paramd__pending *const *pending,
                         const int *status, paramd_push_result *outcome);

/* A push, pushpull or pull on a parent: routed, fanned out, reassembled. */
int paramd__sharded_data_call(paramd_client *parent, uint8_t opcode, const char *model,
                              const paramd_push_item *push_items,
                              const paramd_pull_item *pull_items, size_t count,
                              const paramd_push_options *options, int pull_dtype,
                              paramd_push_result *outcome);

/* A batch's shards' frames and the parts of its requests (created by the
 * first request queued; NULL before). */
typedef struct paramd__sharded_batch paramd__sharded_batch;

/* Queues a request: planned, and each involved shard's part appended to
 * that shard's frames.  `merged` is the batch's pending entry for it,
 * initialised here and filled by run. */
int paramd__sharded_batch_queue(paramd_client *parent, paramd__sharded_batch **batch,
                                uint8_t opcode, const char *model,
                                const paramd_push_item *push_items,
                                const paramd_pull_item *pull_items, size_t count,
                                const paramd_push_options *options, int pull_dtype,
                                paramd__pending *merged);

/* Runs every shard's frames in one parallel exchange and merges each
 * request's parts into merged[i] (answered, status, message, push).
 * Returns PARAMD_OK, or out_of_memory. */
int paramd__sharded_batch_run(paramd_client *parent, paramd__sharded_batch *batch,
                              paramd__pending *merged, size_t count);
void paramd__sharded_batch_free(paramd__sharded_batch *batch);


/* ---------------------------------------------------------------------------
 * sharded_models.c
 * ------------------------------------------------------------------------- */

int paramd__sharded_create(paramd_client *parent, const char *model, const char *json,
                           char **description);
int paramd__sharded_delete(paramd_client *parent, const char *model);
/* opcode PARAMD_OP_STATS with a model (a description), with "" (the
 * servers' counters), or PARAMD_OP_LIST. */
int paramd__sharded_document(paramd_client *parent, uint8_t opcode, const char *model,
                             char **json);

/* ---------------------------------------------------------------------------
 * grad_norm.c
 * ------------------------------------------------------------------------- */

/* The total norm_type-norm of a push's gradients exactly as one paramd
 * computes it for clipping (server/clip.c): each tensor's norm accumulated
 * in double in element order, then the norm of those norms in item order;
 * over the values as the wire carries them (rounded to `dtype`), with
 * non-finite values counted as zero (the nonfinite policy "zero" zeroes
 * them before clipping).  When a value is not finite, *bad_item and
 * *bad_index (else count) say where the first one is. */
double paramd__push_grad_norm(const paramd_push_item *items, size_t count, uint8_t dtype,
                              double norm_type, size_t *bad_item, size_t *bad_index);

#endif
