/*
 * checkpoint.h - crash-safe checkpoints of every model under --data-dir.
 *
 * Files.  Model M lives in DIR/M.safetensors (see safetensors.h for the
 * format): every tensor's weights under its own name, each optimizer state
 * array as "NAME@SLOT" (e.g. "fc1.weight@exp_avg"; '@' never occurs in a
 * tensor name), accumulation buffers as "NAME@accumulated", and in the
 * metadata "config" (the model's creation body as JSON, enough to rebuild
 * it) and "training" (JSON: the model's step, every schedule's running
 * state, the loss scale, non-finite counters, and per tensor its step,
 * accumulation count, gradient-noise draws and the slots it holds).
 *
 * Writing.  A checkpoint copies the model under its config_lock held for
 * writing, which waits for pushes in flight and holds new ones back only
 * for that memory copy, so the copy is one consistent state of the whole
 * model (weights, state, steps, schedules, loss scale agree); then it
 * writes DIR/.M.safetensors.tmp outside every lock (pushes go on), fsyncs
 * it, keeps the current file as DIR/M.safetensors.prev (a hard link, then a
 * rename, so M.safetensors never disappears), renames the new file over
 * M.safetensors and fsyncs the directory.  One checkpoint is written at a
 * time.  The copy needs as much memory as the model while it is written.
 *
 * Restoring.  At start every DIR/M.safetensors is checked (length, checksum,
 * header, offsets, the config and training state, every tensor present with
 * the right shape) and loaded.  Policy for a damaged file: the server logs
 * an error naming the file and what is wrong, moves it aside to
 * M.safetensors.corrupt, and loads M.safetensors.prev instead with a
 * warning naming the step it goes back to; when that is damaged or missing
 * too, paramd refuses to start, naming both files.  Leftover temporary files
 * (a crash during a write) are removed.  DELETE of a model removes its
 * files.
 */
#ifndef PARAMD_SERVER_CHECKPOINT_H
#define PARAMD_SERVER_CHECKPOINT_H

#include "core.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>

typedef struct paramd__checkpointer {
    paramd__server *server;
    char directory[PATH_MAX];
    double interval_seconds;      /* 0: no periodic checkpoints */
    pthread_mutex_t write_lock;   /* one checkpoint write at a time */
    pthread_mutex_t files_lock;   /* renames and deletions of checkpoint files */
    pthread_mutex_t thread_lock;  /* guards stopping, with wake */
    pthread_cond_t wake;
    bool stopping;
    bool thread_running;
    pthread_t thread;
    json_t *restore_notes;        /* restore's log lines, until logged */
} paramd__checkpointer;

/* Sets up a checkpointer for `directory` (which exists and is locked) and
 * hooks it into the server, so deletions remove files. */
void paramd__checkpointer_init(paramd__checkpointer *checkpointer, paramd__server *server,
                               const char *directory, double interval_seconds);
void paramd__checkpointer_destroy(paramd__checkpointer *checkpointer);

/* Loads every model checkpointed in the directory into the server, applying
 * the policy above.  PARAMD_OK, or an error (a model that cannot be
 * restored from either file): the caller refuses to start. */
int paramd__checkpoint_restore_all(paramd__checkpointer *checkpointer, paramd__error *error);

/* Logs what paramd__checkpoint_restore_all did (models restored, damaged
 * files, fallbacks), which it keeps back so that it can be printed after
 * the server's first log line, the one with its addresses. */
void paramd__checkpoint_log_restore(paramd__checkpointer *checkpointer);

/* Checkpoints one model now.  On success *info_out (may be NULL) receives
 * {"model", "file", "step", "bytes", "seconds", "snapshot_seconds"}. */
int paramd__checkpoint_model(paramd__checkpointer *checkpointer, paramd__model *model,
                             json_t **info_out, paramd__error *error);

/* Checkpoints every model; returns the first error but tries them all.
 * *info_out (may be NULL) receives {"checkpoints": [info, ...], "errors": [...]}. */
int paramd__checkpoint_all(paramd__checkpointer *checkpointer, json_t **info_out,
                           paramd__error *error);

/* Removes a deleted model's files (called by paramd__core_delete_model). */
void paramd__checkpoint_forget(paramd__checkpointer *checkpointer, const char *model_name);

/* Starts the thread writing periodic checkpoints (nothing when the interval
 * is 0); stop joins it (a checkpoint in progress finishes first). */
int paramd__checkpointer_start(paramd__checkpointer *checkpointer);
void paramd__checkpointer_stop(paramd__checkpointer *checkpointer);

/* ---------------------------------------------------------------------------
 * Lower level, for tests
 * ------------------------------------------------------------------------- */

/* Writes a consistent snapshot of `model` to `path` atomically (temporary
 * name in the same directory, fsync, rename, fsync of the directory),
 * keeping the previous file as `prev_path` when prev_path is not NULL. */
int paramd__checkpoint_write_file(paramd__model *model, const char *path, const char *prev_path,
                                  json_t **info_out, paramd__error *error);

/* Rebuilds a model from a checkpoint file (not registered anywhere), placed
 * by `server`'s shard map when it has one (server may be NULL: none).  A
 * sharded model's checkpoint loads only on the same shard of the same shard
 * map version. */
int paramd__checkpoint_load_file(const paramd__server *server, const char *path,
                                 paramd__model **model_out, paramd__error *error);

/* The creation body that rebuilds model's configuration (read under its
 * config_lock by the caller or not at all). */
json_t *paramd__checkpoint_config_json(const paramd__model *model);

#endif
