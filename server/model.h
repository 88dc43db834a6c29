/*
 * model.h - models (named sets of tensors sharing one optimizer) and the
 * registry that names them.
 *
 * Ownership: the registry holds one reference to each model it lists.  A
 * front end takes its own reference with paramd__registry_acquire for the
 * duration of a request and drops it with paramd__model_release, so a model
 * deleted while a push is running is freed only when that push finishes.
 *
 * A model's name, tensor list, optimizer type, parameter-group membership
 * and accumulation never change after creation.  Its other configuration
 * (hyperparameters, clip, schedule, nonfinite, grad_noise, loss_scale) may
 * change at run time through paramd__core_patch_model, which holds
 * config_lock for writing; everything that reads that configuration (a push,
 * a description) holds config_lock for reading for as long as it uses it, so
 * it sees one consistent configuration.  The lock prefers writers, so a
 * stream of pushes cannot starve a change; a reader must never take it
 * twice.  Running state has locks of its own, always taken after
 * config_lock: tensor contents (values, optimizer state, step, and the
 * tensor's paramd__tensor_extra) by each tensor's lock, schedules by
 * schedule_lock, the loss scale by loss_scale_lock.  The one lock taken
 * before config_lock is the consistency state's (consistency.h).
 */
#ifndef PARAMD_SERVER_MODEL_H
#define PARAMD_SERVER_MODEL_H

#include "accumulate.h"
#include "after_step.h"
#include "sam.h"
#include "consistency.h"
#include "clip.h"
#include "dictionary.h"
#include "grad_noise.h"
#include "initializer.h"
#include "loss_scale.h"
#include "nonfinite.h"
#include "optimizer.h"
#include "schedule.h"
#include "tensor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

/* What a model keeps per tensor for the push pipeline besides the tensor
 * itself (indexed by tensor->position), guarded by the tensor's lock. */
typedef struct paramd__tensor_extra {
    float *accumulated;         /* the window's sum (tensor->count floats) when the
                                   model accumulates, else NULL */
    uint32_t accumulated_count; /* gradients in the current window */
    uint64_t noise_draws;       /* pushes that drew gradient noise for the tensor */
    /* After the step (after_step.h): the tensor's constraint, Lookahead's
     * slow weights, and the averages with their update counts; NULL arrays
     * for what the model does not keep.  Guarded by the tensor's lock. */
    paramd__constraint constraint;
    float *slow;
    float *ema, *swa;
    uint64_t ema_count, swa_count;
} paramd__tensor_extra;

/* How many pushes met non-finite gradients, by what happened to them. */
typedef struct paramd__nonfinite_counters {
    atomic_uint_fast64_t refused;       /* policy "error" */
    atomic_uint_fast64_t skipped;       /* policy "skip" */
    atomic_uint_fast64_t zeroed;        /* policy "zero": pushes ... */
    atomic_uint_fast64_t zeroed_values; /* ... and the entries they zeroed */
    atomic_uint_fast64_t loss_scale_skipped; /* loss-scale overflows */
} paramd__nonfinite_counters;

/* A tensor of a sharded model that another shard holds. */
typedef struct paramd__remote_tensor {
    uint32_t owner;
    char name[]; /* the dictionary's key */
} paramd__remote_tensor;

typedef struct paramd__model {
    char *name;
    uint32_t id;                       /* the registry's number for it (binary protocol) */
    char id_key[12];                   /* id in decimal: its key in the registry's id index */
    paramd__optimizer_config optimizer;        /* the defaults, for tensors in no group */
    paramd__optimizer_config *param_groups;    /* one resolved configuration per group */
    size_t param_group_count;
    paramd__tensor **tensors;          /* in creation order */
    size_t tensor_count;
    paramd__dictionary tensor_index;   /* name -> tensor */
    size_t parameter_count;            /* total elements of all tensors (held here) */
    /* Sharding (issue 6): on a server started with --shard-map, the model
     * holds only the tensors (or, for split tensors, the ranges) this shard
     * owns; `remote` maps every other tensor of the model to its owner (a
     * paramd__remote_tensor, owned), for not_owner errors. */
    bool sharded;
    bool spans_shards;                 /* some of its tensors (or ranges) are elsewhere */
    uint32_t shard_id;
    uint64_t shard_map_version;
    paramd__dictionary remote;         /* name -> paramd__remote_tensor */
    size_t memory_bytes;               /* values and optimizer state */
    time_t created;
    atomic_uint_fast64_t step;         /* pushes applied to the model */
    atomic_int references;
    /* Learning-rate schedule (issue 4), or none.  One running schedule per
     * configuration, as torch keeps base_lrs per param group: [0] for the
     * model's optimizer, [1 + g] for param_groups[g].  schedule_lock guards
     * them; a push reads the lrs and advances every schedule under it. */
    bool has_schedule;
    paramd__schedule_config schedule_config;
    paramd__schedule *schedules;
    pthread_mutex_t schedule_lock;
    /* Set when a schedule could not advance after a push (OneCycleLR past
     * total_steps: torch raises in scheduler.step() after that optimizer
     * step).  That push was applied; every later push is refused with it. */
    paramd__error schedule_error;
    /* Gradient clipping (issue 4, item 2); mode PARAMD__CLIP_NONE for none. */
    paramd__clip_config clip;
    /* Guards the configuration (see the top of this file). */
    pthread_rwlock_t config_lock;
    paramd__nonfinite_policy nonfinite;      /* issue 4, item 3 */
    paramd__grad_noise_config grad_noise;    /* item 6; enabled false for none */
    paramd__accumulate_config accumulate;    /* item 5; fixed at creation */
    /* How the pushes of many workers combine (issue 6; consistency.h):
     * the configuration is fixed at creation, the state has its own lock. */
    paramd__consistency_config consistency;
    paramd__consistency_state consistency_state;
    /* After each tensor's step (issue 7; after_step.h): fixed at creation. */
    paramd__lookahead_config lookahead;
    paramd__averaging_config averaging;
    /* SAM around the optimizer (sam.h); sam_state NULL without it. */
    paramd__sam_config sam;
    struct paramd__sam_state *sam_state;
    /* Dynamic loss scaling (item 4): the configuration (under config_lock)
     * and the running scale (under loss_scale_lock). */
    bool has_loss_scale;
    paramd__loss_scale_config loss_scale_config;
    paramd__loss_scale loss_scale;
    pthread_mutex_t loss_scale_lock;
    paramd__tensor_extra *extras;            /* tensor_count entries */
    /* LBFGS models (issue 7): the algorithm's scalar state (lbfgs.h); its
     * vectors are the tensors' state slots.  NULL for other optimizers. */
    struct paramd__lbfgs_state *lbfgs;
    paramd__nonfinite_counters nonfinite_counts;
    /* Issue 8: training statistics, history and checkpoint outcomes
     * (stats.h), owned by the model; never NULL once created. */
    struct paramd__model_stats *stats;
    /* Issue 8: [{"name", "shape"}, ...] of every tensor of the creation
     * spec, in order, the ones another shard holds included, so that a
     * checkpoint can rebuild the model (and its placement) exactly. */
    json_t *created_tensors;
} paramd__model;

/* How one tensor of a new model gets its initial values: `values` when
 * has_values (exactly the tensor's element count), else `initializer`. */
typedef struct paramd__tensor_spec {
    const char *name;
    int dimension_count;
    int64_t shape[PARAMD__MAX_DIMENSIONS];
    bool has_values;
    const float *values;              /* borrowed; value_count floats */
    size_t value_count;
    paramd__initializer initializer;
    paramd__constraint constraint;    /* kind NONE: none */
} paramd__tensor_spec;

/* A parameter group, as torch's param_groups: tensors whose hyperparameters
 * override the model's.  `optimizer` is the model's configuration with the
 * group's overrides applied. */
typedef struct paramd__param_group_spec {
    const char **tensor_names;        /* borrowed */
    size_t tensor_count;
    paramd__optimizer_config optimizer;
} paramd__param_group_spec;

typedef struct paramd__model_spec {
    const char *name;
    paramd__optimizer_config optimizer;
    paramd__tensor_spec *tensors;
    size_t tensor_count;
    paramd__param_group_spec *param_groups;
    size_t param_group_count;
    bool has_schedule;
    paramd__schedule_config schedule;
    paramd__clip_config clip;         /* mode PARAMD__CLIP_NONE: no clipping */
    paramd__nonfinite_policy nonfinite;
    bool has_loss_scale;
    paramd__loss_scale_config loss_scale;
    paramd__accumulate_config accumulate; /* steps 0: none */
    paramd__grad_noise_config grad_noise; /* enabled false: none */
    paramd__consistency_config consistency; /* mode async (zeroed): the default */
    paramd__lookahead_config lookahead;     /* enabled false: none */
    paramd__sam_config sam;                 /* enabled false: none */
    paramd__averaging_config averaging;     /* neither ema nor swa: none */
    /* The shard map of a sharded server and this server's id in it; NULL
     * for a server of its own.  Borrowed. */
    const struct paramd_shard_map *shard_map;
    uint32_t shard_id;
} paramd__model_spec;

/* True when `name` is a valid model name: 1 to 128 characters from
 * [A-Za-z0-9._-], not starting with '.'. */
bool paramd__model_name_valid(const char *name);

/* True when `name` is a valid tensor name: 1 to 255 characters from
 * [A-Za-z0-9._:/-] (PyTorch names such as "layers.0.attn.q_proj.weight"). */
bool paramd__tensor_name_valid(const char *name);

/* Builds a model from a spec, fully validated.  Returns NULL and fills *error
 * on failure.  The new model holds one reference (the caller's). */
paramd__model *paramd__model_create(const paramd__model_spec *spec, paramd__error *error);

paramd__tensor *paramd__model_find_tensor(const paramd__model *model, const char *name);

/* For a tensor name the model does not hold: the shard that does, or -1
 * when the model has no such tensor anywhere (or is not sharded). */
int paramd__model_remote_owner(const paramd__model *model, const char *name);

/* Fills *error for a tensor the model does not hold: PARAMD_E_NOT_OWNER
 * naming its owner and the shard map's version when another shard holds
 * it, else PARAMD_E_TENSOR_NOT_FOUND.  `field` prefixes the message
 * ("grads.w").  Returns the code. */
int paramd__model_missing_tensor(const paramd__model *model, const char *field, const char *name,
                                 paramd__error *error);

/* The configuration whose state slots a tensor with optimizer configuration
 * `config` holds: `config` itself, except that a schedule cycling momentum
 * (CyclicLR, OneCycleLR; `schedule` may be NULL) turns momentum on even
 * where it is 0, as torch does, so the tensor needs the momentum buffer from
 * the start. */
paramd__optimizer_config paramd__model_state_config(const paramd__optimizer_config *config,
                                                    const paramd__schedule *schedule);

void paramd__model_retain(paramd__model *model);

/* Drops a reference; the last one frees the model and its tensors. */
void paramd__model_release(paramd__model *model);

/* ---------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------- */

typedef struct paramd__registry {
    pthread_rwlock_t lock;
    paramd__dictionary models; /* name -> model */
    paramd__dictionary by_id;  /* model->id_key -> model */
    uint32_t next_id;          /* ids are never reused: a deleted model's id stays dead */
} paramd__registry;

void paramd__registry_init(paramd__registry *registry);

/* Releases every model. */
void paramd__registry_destroy(paramd__registry *registry);

/* Adds a model (the registry takes its own reference) and gives it the next
 * id.  PARAMD_E_MODEL_EXISTS if the name is taken. */
int paramd__registry_add(paramd__registry *registry, paramd__model *model, paramd__error *error);

/* Returns the model with a new reference, or NULL. */
paramd__model *paramd__registry_acquire(paramd__registry *registry, const char *name);

/* Returns the model with this id and a new reference, or NULL. */
paramd__model *paramd__registry_acquire_id(paramd__registry *registry, uint32_t id);

/* Removes a model from the registry and drops the registry's reference. */
int paramd__registry_remove(paramd__registry *registry, const char *name, paramd__error *error);

/* Removes a model from the registry and hands the registry's reference to
 * the caller (*model_out; NULL and PARAMD_E_MODEL_NOT_FOUND if none). */
int paramd__registry_take(paramd__registry *registry, const char *name, paramd__model **model_out,
                          paramd__error *error);

/* Returns every model, each with a new reference, sorted by name, in a
 * malloc'ed array (free it after releasing each model).  NULL with
 * *count = 0 when there are none or memory ran out. */
paramd__model **paramd__registry_list(paramd__registry *registry, size_t *count);

#endif
