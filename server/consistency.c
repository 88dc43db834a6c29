/*
 * consistency.c - asynchronous, synchronous and bounded-staleness pushes;
 * see consistency.h for the semantics and core.h for the ticket contract.
 *
 * Everything here happens under the model's consistency lock, including the
 * pipeline push that applies a finished sync step or a released ssp push:
 * pushes of one sync or ssp model are applied one at a time, in the order
 * the rules allow.  Lock order: consistency lock, then the model's
 * config_lock (taken by paramd__core_push_ex), then tensor locks.
 *
 * A waiting push's gradients are not copied: they stay in the front end's
 * buffers, which the ticket contract keeps alive.  A sync step sums them in
 * the order of the workers' names, so the average does not depend on the
 * order in which the workers arrived.
 */
#include "core.h"

#include "log.h"
#include "stats.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const mode_names[] = {"async", "sync", "ssp"};

const char *paramd__consistency_mode_name(paramd__consistency_mode mode)
{
    return (unsigned)mode < 3 ? mode_names[mode] : "?";
}

int paramd__consistency_mode_find(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(mode_names[i], name) == 0)
            return i;
    return -1;
}

int paramd__consistency_config_validate(const paramd__consistency_config *config,
                                        paramd__error *error)
{
    if (config->mode == PARAMD__CONSISTENCY_ASYNC)
        return PARAMD_OK;
    if (config->workers < 1 || config->workers > 4096)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.workers: required in %s mode, an integer from 1 to "
                                 "4096",
                                 paramd__consistency_mode_name(config->mode));
    if (config->backup_workers < 0 || config->backup_workers >= config->workers)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.backup_workers: must be from 0 to workers - 1 (%lld), "
                                 "got %lld",
                                 (long long)config->workers - 1, (long long)config->backup_workers);
    if (config->mode == PARAMD__CONSISTENCY_SSP && config->backup_workers != 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.backup_workers: only for sync mode");
    if (config->mode == PARAMD__CONSISTENCY_SSP && config->staleness < 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.staleness: required in ssp mode, an integer >= 0");
    if (!(config->timeout_seconds > 0 && config->timeout_seconds <= 86400))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.timeout: must be a number of seconds in (0, 86400], "
                                 "got %g",
                                 config->timeout_seconds);
    if (config->staleness_lr)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "consistency.staleness_lr: only for async mode");
    return PARAMD_OK;
}

static double monotonic_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------
 * Workers and staleness (under the lock)
 * ------------------------------------------------------------------------- */

static paramd__worker_record *find_worker(paramd__consistency_state *state, const char *name)
{
    for (size_t i = 0; i < state->worker_count; i++)
        if (strcmp(state->workers[i].name, name) == 0)
            return &state->workers[i];
    return NULL;
}

/* Finds or adds a worker; NULL if memory ran out or the name is too long. */
static paramd__worker_record *worker_record(paramd__consistency_state *state, const char *name)
{
    paramd__worker_record *record = find_worker(state, name);
    if (record || strlen(name) >= PARAMD__WORKER_NAME_SIZE)
        return record;
    if (state->worker_count == state->worker_capacity) {
        size_t capacity = state->worker_capacity ? 2 * state->worker_capacity : 8;
        paramd__worker_record *grown = realloc(state->workers, capacity * sizeof *grown);
        if (grown == NULL)
            return NULL;
        state->workers = grown;
        state->worker_capacity = capacity;
    }
    record = &state->workers[state->worker_count++];
    memset(record, 0, sizeof *record);
    strcpy(record->name, name);
    return record;
}

static void record_staleness(paramd__consistency_state *state, paramd__worker_record *worker,
                             uint64_t staleness)
{
    paramd__staleness_stats *stats = &state->staleness;
    stats->count++;
    stats->sum += (double)staleness;
    if (staleness > stats->maximum)
        stats->maximum = staleness;
    int bucket = 0;
    while (bucket < PARAMD__STALENESS_BUCKETS - 1 && staleness > (bucket ? (1u << (bucket - 1)) : 0))
        bucket++;
    stats->buckets[bucket]++;
    if (worker)
        worker->last_staleness = staleness;
}

/* Notes what a push says about its worker and its gradients' age: fills
 * the outcome's staleness, and the worker's record when it has a name. */
static paramd__worker_record *observe(paramd__model *model, paramd__push_ticket *ticket)
{
    paramd__consistency_state *state = &model->consistency_state;
    paramd__worker_record *worker =
        ticket->worker && ticket->worker[0] ? worker_record(state, ticket->worker) : NULL;
    uint64_t step = atomic_load(&model->step);
    if (ticket->has_version && ticket->version <= step) {
        ticket->outcome.has_staleness = true;
        ticket->outcome.staleness = step - ticket->version;
        record_staleness(state, worker, ticket->outcome.staleness);
        paramd__stats_observe_staleness(model, ticket->outcome.staleness); /* issue 8: /metrics */
    }
    if (worker && ticket->has_version) {
        worker->has_version = true;
        worker->last_version = ticket->version;
    }
    return worker;
}

/* Ends a ticket with a result (and, for a waiting one, tells its owner). */
static void complete(paramd__push_ticket *ticket, int result, const paramd__error *error,
                     bool waited)
{
    ticket->result = result;
    if (result != PARAMD_OK && error)
        ticket->error = *error;
    if (ticket->counted_in) {
        atomic_fetch_sub(ticket->counted_in, 1);
        ticket->counted_in = NULL;
    }
    ticket->done = true;
    if (waited && ticket->notify)
        ticket->notify(ticket);
}

/* Applies one push through the pipeline and completes its ticket. */
static void apply(paramd__server *server, paramd__model *model, paramd__push_ticket *ticket,
                  bool waited)
{
    paramd__push_outcome outcome;
    paramd__error error = {0};
    int result = paramd__core_push_ex(server, model, ticket->items, ticket->item_count,
                                      &ticket->options, &outcome, &error);
    bool has_staleness = ticket->outcome.has_staleness;
    uint64_t staleness = ticket->outcome.staleness;
    if (result == PARAMD_OK) {
        ticket->outcome = outcome;
        ticket->outcome.has_staleness = has_staleness;
        ticket->outcome.staleness = staleness;
    }
    complete(ticket, result, &error, waited);
}

/* A worker's new push takes the place of its push still waiting, if any:
 * that one ends with PARAMD_E_UNAVAILABLE (notified).  This is how a worker
 * that crashed or lost its connection after pushing, and pushes again once
 * it is back, rejoins the step instead of being refused (its connection's
 * end is not always seen: an HTTP server does not watch idle sockets).
 * Returns whether a push was replaced. */
static bool supersede(paramd__model *model, paramd__push_ticket *ticket)
{
    paramd__consistency_state *state = &model->consistency_state;
    for (paramd__push_ticket **link = &state->waiting; *link; link = &(*link)->next) {
        paramd__push_ticket *old = *link;
        if (strcmp(old->worker, ticket->worker) != 0)
            continue;
        *link = old->next;
        paramd__error error = {0};
        paramd__error_set(&error, PARAMD_E_UNAVAILABLE,
                          "worker \"%s\" of model \"%s\" pushed again before this push was "
                          "applied; the newer push took its place",
                          ticket->worker, model->name);
        paramd__log_info("%s", error.message);
        complete(old, PARAMD_E_UNAVAILABLE, &error, true);
        return true;
    }
    return false;
}

/* Counts a push that is about to wait in the server's waiting_pushes, and
 * refuses it (PARAMD_E_OVERLOADED, ticket done, nothing changed) when
 * --max-waiting-pushes pushes already wait.  A push that replaces its
 * worker's waiting push (replaced) takes that one's place and is never
 * refused.  Returns PARAMD_OK or the refusal. */
static int reserve_wait(paramd__server *server, paramd__model *model,
                        paramd__push_ticket *ticket, bool replaced)
{
    unsigned limit = server->max_waiting_pushes;
    unsigned now = atomic_load(&server->waiting_pushes);
    do {
        if (limit && !replaced && now >= limit) {
            paramd__error error = {0};
            paramd__error_set(&error, PARAMD_E_OVERLOADED,
                              "model \"%s\": %u pushes already wait for other workers, the "
                              "server's limit (--max-waiting-pushes); retry later",
                              model->name, now);
            complete(ticket, PARAMD_E_OVERLOADED, &error, false);
            return PARAMD_E_OVERLOADED;
        }
    } while (!atomic_compare_exchange_weak(&server->waiting_pushes, &now, now + 1));
    ticket->counted_in = &server->waiting_pushes;
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * async
 * ------------------------------------------------------------------------- */

static int submit_async(paramd__server *server, paramd__model *model, paramd__push_ticket *ticket)
{
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    paramd__worker_record *worker = observe(model, ticket);
    if (worker)
        worker->pushes++;
    pthread_mutex_unlock(&state->lock);
    /* Staleness-aware SGD (Zhang et al. 2016): lr / max(1, staleness). */
    if (model->consistency.staleness_lr && ticket->outcome.has_staleness &&
        ticket->outcome.staleness > 1)
        ticket->options.lr_scale = 1.0 / (double)ticket->outcome.staleness;
    apply(server, model, ticket, false);
    return ticket->result;
}

/* ---------------------------------------------------------------------------
 * sync
 * ------------------------------------------------------------------------- */

/* Inserts a ticket into the round, keeping the list sorted by worker name. */
static void insert_by_worker(paramd__push_ticket **list, paramd__push_ticket *ticket)
{
    while (*list && strcmp((*list)->worker, ticket->worker) < 0)
        list = &(*list)->next;
    ticket->next = *list;
    *list = ticket;
}

/* Finishes a full sync round: averages each tensor over the workers that
 * sent it (summed in worker-name order), applies the average once, and
 * completes every ticket of the round (`current` without a notify). */
static void finish_round(paramd__server *server, paramd__model *model,
                         paramd__push_ticket *current)
{
    paramd__consistency_state *state = &model->consistency_state;
    paramd__error error = {0};
    int result = PARAMD_OK;
    size_t tensor_count = model->tensor_count;
    if (state->sums == NULL && (state->sums = calloc(tensor_count, sizeof *state->sums)) == NULL)
        result = paramd__error_set(&error, PARAMD_E_NO_MEMORY, "sync step: out of memory");
    paramd__tensor_io *items = calloc(tensor_count ? tensor_count : 1, sizeof *items);
    uint32_t *counts = calloc(tensor_count ? tensor_count : 1, sizeof *counts);
    if (result == PARAMD_OK && (items == NULL || counts == NULL))
        result = paramd__error_set(&error, PARAMD_E_NO_MEMORY, "sync step: out of memory");
    /* The sums: the first gradient copied, the others added, in order. */
    for (paramd__push_ticket *t = state->waiting; t && result == PARAMD_OK; t = t->next)
        for (size_t i = 0; i < t->item_count && result == PARAMD_OK; i++) {
            paramd__tensor *tensor = t->items[i].tensor;
            size_t p = tensor->position;
            if (state->sums[p] == NULL &&
                (state->sums[p] = paramd__float_array_alloc(tensor->count)) == NULL) {
                result = paramd__error_set(&error, PARAMD_E_NO_MEMORY,
                                           "sync step: out of memory for the sum of \"%s\"",
                                           tensor->name);
                break;
            }
            float *sum = state->sums[p];
            const float *grad = t->items[i].grad;
            if (counts[p]++ == 0)
                memcpy(sum, grad, tensor->count * sizeof(float));
            else
                for (size_t e = 0; e < tensor->count; e++)
                    sum[e] += grad[e];
        }
    size_t pushed = 0;
    double loss_sum = 0;
    size_t losses = 0;
    for (paramd__push_ticket *t = state->waiting; t; t = t->next)
        if (!isnan(t->options.loss)) {
            loss_sum += t->options.loss;
            losses++;
        }
    for (size_t p = 0; p < tensor_count && result == PARAMD_OK; p++) {
        if (counts[p] == 0)
            continue;
        paramd__tensor *tensor = model->tensors[p];
        float *sum = state->sums[p];
        float n = (float)counts[p];
        for (size_t e = 0; counts[p] > 1 && e < tensor->count; e++)
            sum[e] = sum[e] / n;
        items[pushed++] = (paramd__tensor_io){.tensor = tensor,
                                              .grad = sum,
                                              .grad_count = tensor->count,
                                              .grad_writable = true};
    }
    paramd__push_outcome outcome;
    if (result == PARAMD_OK) {
        /* The step's loss is the workers' mean; the client's grad_norm, a
         * per-worker figure, cannot give the average's norm, so the
         * pipeline computes it. */
        paramd__push_options options = {losses ? loss_sum / (double)losses : NAN, NAN, NAN, 0};
        result = paramd__core_push_ex(server, model, items, pushed, &options, &outcome, &error);
    }
    paramd__push_ticket *ticket = state->waiting;
    state->waiting = NULL;
    state->round_workers = 0;
    state->round++;
    while (ticket) {
        paramd__push_ticket *next = ticket->next;
        if (result == PARAMD_OK) {
            bool has_staleness = ticket->outcome.has_staleness;
            uint64_t staleness = ticket->outcome.staleness;
            ticket->outcome = outcome;
            ticket->outcome.has_staleness = has_staleness;
            ticket->outcome.staleness = staleness;
            paramd__core_copy_weights(ticket->items, ticket->item_count);
            paramd__worker_record *worker = find_worker(state, ticket->worker);
            if (worker)
                worker->pushes++;
        }
        complete(ticket, result, &error, ticket != current);
        ticket = next;
    }
    free(items);
    free(counts);
}

/* Ends a round that cannot finish: every waiting push fails with `error`. */
static void abandon_round(paramd__model *model, const paramd__error *error,
                          paramd__push_ticket *current)
{
    paramd__consistency_state *state = &model->consistency_state;
    paramd__push_ticket *ticket = state->waiting;
    state->waiting = NULL;
    state->round_workers = 0;
    state->round++;
    while (ticket) {
        paramd__push_ticket *next = ticket->next;
        if (error->code == PARAMD_E_TIMEOUT)
            state->timeouts++;
        complete(ticket, error->code, error, ticket != current);
        ticket = next;
    }
}

static bool refused_closed(paramd__model *model, paramd__push_ticket *ticket);

static int submit_sync(paramd__server *server, paramd__model *model, paramd__push_ticket *ticket)
{
    paramd__consistency_state *state = &model->consistency_state;
    const paramd__consistency_config *config = &model->consistency;
    int needed = (int)(config->workers - config->backup_workers);
    pthread_mutex_lock(&state->lock);
    if (refused_closed(model, ticket)) {
        pthread_mutex_unlock(&state->lock);
        return PARAMD_E_MODEL_NOT_FOUND;
    }
    paramd__worker_record *worker = observe(model, ticket);
    uint64_t step = atomic_load(&model->step);
    int result = PARAMD_OK;
    bool replaced = false;
    if (worker == NULL) {
        result = paramd__error_set(&ticket->error, PARAMD_E_NO_MEMORY,
                                   "worker: out of memory for its record");
    } else if (ticket->has_version && ticket->version > step) {
        result = paramd__error_set(&ticket->error, PARAMD_E_BAD_REQUEST,
                                   "version: %llu is ahead of model \"%s\", which is at step %llu",
                                   (unsigned long long)ticket->version, model->name,
                                   (unsigned long long)step);
    } else if (ticket->has_version && ticket->version < step) {
        /* Too late: its step was applied without it (backup workers). */
        worker->dropped++;
        ticket->outcome.dropped = true;
        ticket->outcome.step = step;
        ticket->outcome.lr = paramd__optimizer_config_get(&model->optimizer, "lr");
        ticket->outcome.grad_norm = NAN;
        paramd__core_copy_weights(ticket->items, ticket->item_count);
        paramd__log_debug("model \"%s\": worker \"%s\" pushed for step %llu at step %llu; "
                          "dropped",
                          model->name, ticket->worker, (unsigned long long)ticket->version,
                          (unsigned long long)step);
        complete(ticket, PARAMD_OK, NULL, false);
        pthread_mutex_unlock(&state->lock);
        return PARAMD_OK;
    } else if (supersede(model, ticket)) {
        state->round_workers--;
        replaced = true;
    }
    if (result != PARAMD_OK) {
        complete(ticket, result, NULL, false);
        pthread_mutex_unlock(&state->lock);
        return result;
    }
    /* Issue 9: a push that will wait must fit under the server's limit. */
    if ((int)state->round_workers + 1 < needed &&
        (result = reserve_wait(server, model, ticket, replaced)) != PARAMD_OK) {
        pthread_mutex_unlock(&state->lock);
        return result;
    }
    if (state->round_workers == 0)
        state->round_deadline = monotonic_seconds() + config->timeout_seconds;
    ticket->round = state->round;
    ticket->deadline = state->round_deadline;
    insert_by_worker(&state->waiting, ticket);
    int answer = PARAMD__PUSH_WAITING;
    if ((int)++state->round_workers >= needed) {
        finish_round(server, model, ticket);
        answer = ticket->result;
    }
    pthread_mutex_unlock(&state->lock);
    return answer;
}

/* ---------------------------------------------------------------------------
 * ssp
 * ------------------------------------------------------------------------- */

/* The clock of the slowest of the K workers (those not seen yet count 0). */
static uint64_t slowest_clock(const paramd__model *model)
{
    const paramd__consistency_state *state = &model->consistency_state;
    if ((int64_t)state->worker_count < model->consistency.workers)
        return 0;
    uint64_t slowest = UINT64_MAX;
    for (size_t i = 0; i < state->worker_count; i++)
        if (state->workers[i].pushes < slowest)
            slowest = state->workers[i].pushes;
    return slowest;
}

static bool may_proceed(const paramd__model *model, const paramd__worker_record *worker)
{
    return worker->pushes <= slowest_clock(model) + (uint64_t)model->consistency.staleness;
}

/* Applies every waiting push the rules now allow, until none is left. */
static void release_waiting(paramd__server *server, paramd__model *model)
{
    paramd__consistency_state *state = &model->consistency_state;
    bool progress = true;
    while (progress) {
        progress = false;
        for (paramd__push_ticket **link = &state->waiting; *link; link = &(*link)->next) {
            paramd__push_ticket *ticket = *link;
            paramd__worker_record *worker = find_worker(state, ticket->worker);
            if (!may_proceed(model, worker))
                continue;
            *link = ticket->next;
            apply(server, model, ticket, true);
            if (ticket->result == PARAMD_OK)
                worker->pushes++;
            progress = true;
            break;
        }
    }
}

static int submit_ssp(paramd__server *server, paramd__model *model, paramd__push_ticket *ticket)
{
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    if (refused_closed(model, ticket)) {
        pthread_mutex_unlock(&state->lock);
        return PARAMD_E_MODEL_NOT_FOUND;
    }
    int result = PARAMD_OK;
    paramd__worker_record *worker = find_worker(state, ticket->worker);
    if (worker == NULL && (int64_t)state->worker_count >= model->consistency.workers)
        result = paramd__error_set(&ticket->error, PARAMD_E_BAD_REQUEST,
                                   "worker: model \"%s\" trains with %lld workers in ssp mode, and "
                                   "\"%s\" would be one more",
                                   model->name, (long long)model->consistency.workers,
                                   ticket->worker);
    else if ((worker = observe(model, ticket)) == NULL)
        result = paramd__error_set(&ticket->error, PARAMD_E_NO_MEMORY,
                                   "worker: out of memory for its record");
    if (result != PARAMD_OK) {
        complete(ticket, result, NULL, false);
        pthread_mutex_unlock(&state->lock);
        return result;
    }
    bool replaced = supersede(model, ticket);
    int answer = PARAMD__PUSH_WAITING;
    if (may_proceed(model, worker)) {
        apply(server, model, ticket, false);
        answer = ticket->result;
        if (ticket->result == PARAMD_OK) {
            worker->pushes++;
            release_waiting(server, model);
        }
    } else if ((answer = reserve_wait(server, model, ticket, replaced)) == PARAMD_OK) {
        answer = PARAMD__PUSH_WAITING;
        ticket->deadline = monotonic_seconds() + model->consistency.timeout_seconds;
        ticket->next = state->waiting;
        state->waiting = ticket;
    }
    pthread_mutex_unlock(&state->lock);
    return answer;
}

/* ---------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------- */

int paramd__core_push_submit(paramd__server *server, paramd__model *model,
                             paramd__push_ticket *ticket)
{
    ticket->done = false;
    ticket->result = PARAMD_OK;
    ticket->next = NULL;
    ticket->counted_in = NULL;
    memset(&ticket->outcome, 0, sizeof ticket->outcome);
    ticket->outcome.grad_norm = NAN;
    paramd__error_clear(&ticket->error);
    ticket->options.worker = ticket->worker;
    paramd__consistency_mode mode = model->consistency.mode;
    if (mode == PARAMD__CONSISTENCY_ASYNC)
        return submit_async(server, model, ticket);
    int result = paramd__core_validate_push(model, ticket->items, ticket->item_count,
                                            &ticket->error);
    if (result == PARAMD_OK && (ticket->worker == NULL || ticket->worker[0] == '\0'))
        result = paramd__error_set(&ticket->error, PARAMD_E_BAD_REQUEST,
                                   "worker: required: model \"%s\" trains in %s mode, which "
                                   "tells workers apart by name",
                                   model->name, paramd__consistency_mode_name(mode));
    if (result != PARAMD_OK) {
        complete(ticket, result, NULL, false);
        return result;
    }
    return mode == PARAMD__CONSISTENCY_SYNC ? submit_sync(server, model, ticket)
                                            : submit_ssp(server, model, ticket);
}

void paramd__core_push_expire(paramd__server *server, paramd__model *model,
                              paramd__push_ticket *ticket)
{
    (void)server;
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    if (!ticket->done) {
        paramd__error error = {0};
        if (model->consistency.mode == PARAMD__CONSISTENCY_SYNC) {
            char names[512] = "";
            for (paramd__push_ticket *t = state->waiting; t; t = t->next) {
                strncat(names, names[0] ? ", " : "", sizeof names - strlen(names) - 1);
                strncat(names, t->worker, sizeof names - strlen(names) - 1);
            }
            paramd__error_set(&error, PARAMD_E_TIMEOUT,
                              "sync step %llu of model \"%s\": %zu of the %lld workers needed "
                              "pushed within %g s (%s); the step was abandoned and nothing "
                              "changed",
                              (unsigned long long)atomic_load(&model->step), model->name,
                              state->round_workers,
                              (long long)(model->consistency.workers -
                                          model->consistency.backup_workers),
                              model->consistency.timeout_seconds, names);
            paramd__log_warn("%s", error.message);
            abandon_round(model, &error, ticket);
        } else {
            for (paramd__push_ticket **link = &state->waiting; *link; link = &(*link)->next)
                if (*link == ticket) {
                    *link = ticket->next;
                    break;
                }
            paramd__error_set(&error, PARAMD_E_TIMEOUT,
                              "worker \"%s\" of model \"%s\" waited %g s for the slowest worker "
                              "to come within %lld pushes (ssp); the push was not applied",
                              ticket->worker, model->name, model->consistency.timeout_seconds,
                              (long long)model->consistency.staleness);
            state->timeouts++;
            complete(ticket, PARAMD_E_TIMEOUT, &error, false);
        }
    }
    pthread_mutex_unlock(&state->lock);
}

void paramd__core_push_close(paramd__server *server, paramd__model *model)
{
    (void)server;
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    state->closed = true;
    if (state->waiting) {
        paramd__error error = {0};
        paramd__error_set(&error, PARAMD_E_MODEL_NOT_FOUND,
                          "model \"%s\" was deleted while this push waited for other workers; "
                          "it was not applied",
                          model->name);
        abandon_round(model, &error, NULL);
    }
    pthread_mutex_unlock(&state->lock);
}

/* A push to a model deleted since the caller found it fails at once. */
static bool refused_closed(paramd__model *model, paramd__push_ticket *ticket)
{
    if (!model->consistency_state.closed)
        return false;
    paramd__error_set(&ticket->error, PARAMD_E_MODEL_NOT_FOUND, "model \"%s\" was deleted",
                      model->name);
    complete(ticket, PARAMD_E_MODEL_NOT_FOUND, NULL, false);
    return true;
}

void paramd__core_push_withdraw(paramd__server *server, paramd__model *model,
                                paramd__push_ticket *ticket)
{
    (void)server;
    paramd__consistency_state *state = &model->consistency_state;
    pthread_mutex_lock(&state->lock);
    if (!ticket->done) {
        for (paramd__push_ticket **link = &state->waiting; *link; link = &(*link)->next)
            if (*link == ticket) {
                *link = ticket->next;
                break;
            }
        if (model->consistency.mode == PARAMD__CONSISTENCY_SYNC && state->round_workers > 0)
            state->round_workers--;
        paramd__error error = {0};
        paramd__error_set(&error, PARAMD_E_UNAVAILABLE,
                          "worker \"%s\" of model \"%s\" went away before its push was applied; "
                          "the push was withdrawn",
                          ticket->worker, model->name);
        paramd__log_info("%s", error.message);
        complete(ticket, PARAMD_E_UNAVAILABLE, &error, false);
    }
    pthread_mutex_unlock(&state->lock);
}
