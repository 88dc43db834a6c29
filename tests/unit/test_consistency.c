/*
 * test_consistency.c - the consistency modes (issue 6, item 3) through the
 * core's ticket interface: sync rounds (average in worker-name order, one
 * optimizer step, backup workers and dropped pushes, timeouts, withdrawn
 * workers), ssp's staleness bound, async staleness and staleness-aware lr,
 * and many threads pushing sync rounds at once with nothing lost.
 *
 * Models use SGD with lr 1 and zero weights, so the weights after a step
 * are exactly minus the gradient that reached the optimizer.
 */
#include "test_util.h"

#include "core.h"
#include "json_api.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static paramd__server server;

static void setup(void)
{
    paramd__server_init(&server);
}

static void teardown(void)
{
    paramd__server_destroy(&server);
}

/* Creates model `name`: one tensor w of 3 zeros, SGD lr 1, the given
 * consistency.  Returns the result; *model_out gets a reference. */
static int try_make_named_model(const char *name, paramd__consistency_config consistency,
                                paramd__model **model_out, paramd__error *error)
{
    static paramd__tensor_spec tensors[1] = {{.name = "w", .dimension_count = 1, .shape = {3}}};
    paramd__initializer_init(&tensors[0].initializer, paramd__initializer_find("zeros"));
    paramd__model_spec spec = {.name = name, .tensors = tensors, .tensor_count = 1,
                               .consistency = consistency};
    paramd__optimizer_config_init(&spec.optimizer, paramd__optimizer_find("SGD"));
    spec.optimizer.values[paramd__optimizer_find_hyperparameter(spec.optimizer.type, "lr")->slot] =
        1.0;
    return paramd__core_create_model(&server, &spec, model_out, error);
}

static paramd__model *make_named_model(const char *name, paramd__consistency_config consistency)
{
    paramd__error error = {0};
    paramd__model *model = NULL;
    ck_assert_msg(try_make_named_model(name, consistency, &model, &error) == PARAMD_OK, "%s",
                  error.message);
    return model;
}

/* Model "m". */
static paramd__model *make_model(paramd__consistency_config consistency)
{
    return make_named_model("m", consistency);
}

static void drop(paramd__model *model)
{
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    paramd__model_release(model);
}

/* One worker's push: its gradient, weights buffer and ticket. */
typedef struct push {
    float grad[3];
    float weights[3];
    paramd__tensor_io item;
    paramd__push_ticket ticket;
    int notified;
} push;

static void count_notify(paramd__push_ticket *ticket)
{
    ((push *)ticket->context)->notified++;
}

static int submit(paramd__model *model, push *p, const char *worker, float g0, float g1, float g2,
                  long version)
{
    memset(p, 0, sizeof *p);
    p->grad[0] = g0;
    p->grad[1] = g1;
    p->grad[2] = g2;
    p->item = (paramd__tensor_io){.tensor = model->tensors[0], .grad = p->grad, .grad_count = 3,
                                  .weights = p->weights};
    p->ticket = (paramd__push_ticket){.items = &p->item, .item_count = 1,
                                      .options = {NAN, NAN, NAN, 0}, .worker = worker,
                                      .has_version = version >= 0,
                                      .version = version >= 0 ? (uint64_t)version : 0,
                                      .notify = count_notify, .context = p};
    return paramd__core_push_submit(&server, model, &p->ticket);
}

static void weights(paramd__model *model, float out[3])
{
    paramd__tensor_io item = {.tensor = model->tensors[0], .weights = out};
    uint64_t step;
    ck_assert_int_eq(paramd__core_pull(&server, model, &item, 1, &step, NULL), PARAMD_OK);
}

static paramd__consistency_config sync_config(int workers, int backup)
{
    return (paramd__consistency_config){.mode = PARAMD__CONSISTENCY_SYNC, .workers = workers,
                                        .backup_workers = backup, .timeout_seconds = 60};
}

/* ---------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------- */

START_TEST(test_config_validation)
{
    paramd__error error = {0};
    paramd__consistency_config config = sync_config(0, 0);
    ck_assert_int_eq(paramd__consistency_config_validate(&config, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "consistency.workers"));
    config = sync_config(3, 3);
    ck_assert_int_eq(paramd__consistency_config_validate(&config, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "consistency.backup_workers"));
    config = sync_config(3, 1);
    config.timeout_seconds = 0;
    ck_assert_int_eq(paramd__consistency_config_validate(&config, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "consistency.timeout"));
    config = (paramd__consistency_config){.mode = PARAMD__CONSISTENCY_SSP, .workers = 2,
                                          .staleness = -1, .timeout_seconds = 1};
    ck_assert_int_eq(paramd__consistency_config_validate(&config, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "consistency.staleness"));
    config.staleness = 2;
    ck_assert_int_eq(paramd__consistency_config_validate(&config, &error), PARAMD_OK);
}
END_TEST

/* ---------------------------------------------------------------------------
 * sync
 * ------------------------------------------------------------------------- */

START_TEST(test_sync_averages_in_worker_name_order)
{
    paramd__model *model = make_model(sync_config(3, 0));
    push a, b, c;
    /* Values whose float32 sum depends on the order: 1e8 + 1 - 1e8. */
    ck_assert_int_eq(submit(model, &c, "w2", -1e8f, 3, 0.1f, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &a, "w0", 1e8f, 6, 0.2f, 0), PARAMD__PUSH_WAITING);
    float before[3];
    weights(model, before);
    ck_assert(before[0] == 0 && before[1] == 0 && before[2] == 0); /* nothing applied yet */
    ck_assert_int_eq(atomic_load(&model->step), 0);
    ck_assert_int_eq(submit(model, &b, "w1", 1, 9, 0.3f, 0), PARAMD_OK);
    /* The two waiting pushes were notified, the last one answered at once. */
    ck_assert_int_eq(a.notified, 1);
    ck_assert_int_eq(c.notified, 1);
    ck_assert_int_eq(b.notified, 0);
    ck_assert(a.ticket.done && c.ticket.done && b.ticket.done);
    ck_assert_int_eq(a.ticket.result, PARAMD_OK);
    ck_assert_int_eq(c.ticket.result, PARAMD_OK);
    ck_assert_int_eq(atomic_load(&model->step), 1); /* one optimizer step for the round */
    ck_assert_uint_eq(a.ticket.outcome.step, 1);
    /* Sum in name order w0, w1, w2, then divided by 3. */
    float expected[3];
    volatile float s0 = 1e8f;
    s0 += 1.0f;
    s0 += -1e8f;
    expected[0] = -(s0 / 3.0f);
    volatile float s1 = 6.0f;
    s1 += 9.0f;
    s1 += 3.0f;
    expected[1] = -(s1 / 3.0f);
    volatile float s2 = 0.2f;
    s2 += 0.3f;
    s2 += 0.1f;
    expected[2] = -(s2 / 3.0f);
    float after[3];
    weights(model, after);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(after[i] == expected[i], "w[%d] = %.9g, expected %.9g", i, after[i],
                      expected[i]);
        /* Every push of the round got the fresh weights. */
        ck_assert(a.weights[i] == expected[i] && b.weights[i] == expected[i] &&
                  c.weights[i] == expected[i]);
    }
    drop(model);
}
END_TEST

START_TEST(test_sync_newer_push_replaces_and_future_versions_are_refused)
{
    paramd__model *model = make_model(sync_config(2, 0));
    push a, again, future, anonymous, other;
    ck_assert_int_eq(submit(model, &a, "w0", 100, 100, 100, 0), PARAMD__PUSH_WAITING);
    /* The same worker again (say, back after a crash): it replaces the first. */
    ck_assert_int_eq(submit(model, &again, "w0", 2, 2, 2, 0), PARAMD__PUSH_WAITING);
    ck_assert(a.ticket.done);
    ck_assert_int_eq(a.ticket.result, PARAMD_E_UNAVAILABLE);
    ck_assert_int_eq(a.notified, 1);
    ck_assert_ptr_nonnull(strstr(a.ticket.error.message, "took its place"));
    ck_assert_uint_eq(model->consistency_state.round_workers, 1);
    ck_assert_int_eq(submit(model, &future, "w1", 1, 1, 1, 5), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(future.ticket.error.message, "ahead"));
    ck_assert_int_eq(submit(model, &anonymous, "", 1, 1, 1, -1), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(anonymous.ticket.error.message, "worker: required"));
    ck_assert(!again.ticket.done); /* none of them completed the round */
    ck_assert_int_eq(submit(model, &other, "w1", 4, 4, 4, 0), PARAMD_OK);
    ck_assert(again.ticket.done);
    float after[3];
    weights(model, after);
    ck_assert(after[0] == -3 && after[1] == -3 && after[2] == -3); /* (2 + 4) / 2 */
    drop(model);
}
END_TEST

START_TEST(test_sync_backup_workers_drop_late_pushes)
{
    paramd__model *model = make_model(sync_config(3, 1));
    push a, b, late;
    ck_assert_int_eq(submit(model, &a, "w0", 2, 4, 6, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 4, 8, 2, 0), PARAMD_OK); /* K - b = 2 arrived */
    ck_assert_int_eq(atomic_load(&model->step), 1);
    float after[3];
    weights(model, after);
    ck_assert(after[0] == -3 && after[1] == -6 && after[2] == -4);
    /* The third worker's push, computed at step 0, is too late. */
    ck_assert_int_eq(submit(model, &late, "w2", 100, 100, 100, 0), PARAMD_OK);
    ck_assert(late.ticket.outcome.dropped);
    ck_assert_uint_eq(late.ticket.outcome.step, 1);
    for (int i = 0; i < 3; i++)
        ck_assert(late.weights[i] == after[i]); /* the current weights */
    float unchanged[3];
    weights(model, unchanged);
    ck_assert(memcmp(unchanged, after, sizeof after) == 0);
    ck_assert_int_eq(atomic_load(&model->step), 1);
    ck_assert_uint_eq(model->consistency_state.workers[2].dropped, 1);
    drop(model);
}
END_TEST

START_TEST(test_sync_expire_abandons_the_round)
{
    paramd__model *model = make_model(sync_config(3, 0));
    push a, b, c;
    ck_assert_int_eq(submit(model, &a, "w0", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert(a.ticket.deadline > 0);
    paramd__core_push_expire(&server, model, &a.ticket);
    ck_assert(a.ticket.done && b.ticket.done);
    ck_assert_int_eq(a.ticket.result, PARAMD_E_TIMEOUT);
    ck_assert_int_eq(b.ticket.result, PARAMD_E_TIMEOUT);
    ck_assert_int_eq(a.notified, 0); /* the expired ticket's owner knows */
    ck_assert_int_eq(b.notified, 1);
    ck_assert_ptr_nonnull(strstr(b.ticket.error.message, "2 of the 3 workers"));
    ck_assert_ptr_nonnull(strstr(b.ticket.error.message, "w0, w1"));
    float after[3];
    weights(model, after);
    ck_assert(after[0] == 0 && after[1] == 0 && after[2] == 0);
    ck_assert_int_eq(atomic_load(&model->step), 0);
    ck_assert_uint_eq(model->consistency_state.timeouts, 2);
    /* Expiring a done ticket does nothing; a new round starts afresh. */
    paramd__core_push_expire(&server, model, &a.ticket);
    ck_assert_int_eq(submit(model, &a, "w0", 3, 3, 3, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 3, 3, 3, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &c, "w2", 3, 3, 3, 0), PARAMD_OK);
    weights(model, after);
    ck_assert(after[0] == -3);
    drop(model);
}
END_TEST

START_TEST(test_sync_withdrawn_worker_leaves_the_round)
{
    paramd__model *model = make_model(sync_config(3, 0));
    push a, b, c, again;
    ck_assert_int_eq(submit(model, &a, "w0", 30, 30, 30, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 3, 3, 3, 0), PARAMD__PUSH_WAITING);
    paramd__core_push_withdraw(&server, model, &a.ticket);
    ck_assert(a.ticket.done);
    ck_assert_int_eq(a.ticket.result, PARAMD_E_UNAVAILABLE);
    ck_assert(!b.ticket.done); /* the others go on waiting */
    ck_assert_int_eq(submit(model, &c, "w2", 3, 3, 3, 0), PARAMD__PUSH_WAITING);
    /* The worker comes back and pushes again: the round completes without
     * its withdrawn gradient. */
    ck_assert_int_eq(submit(model, &again, "w0", 6, 6, 6, 0), PARAMD_OK);
    ck_assert(b.ticket.done && c.ticket.done);
    float after[3];
    weights(model, after);
    ck_assert(after[0] == -4 && after[1] == -4 && after[2] == -4);
    drop(model);
}
END_TEST

/* ---------------------------------------------------------------------------
 * ssp
 * ------------------------------------------------------------------------- */

START_TEST(test_ssp_bounds_staleness)
{
    paramd__model *model = make_model((paramd__consistency_config){
        .mode = PARAMD__CONSISTENCY_SSP, .workers = 2, .staleness = 1, .timeout_seconds = 60});
    push a1, a2, a3, a4, b1, extra;
    /* Worker a, at clock c (pushes applied), may push while c <= slowest +
     * s: b has not pushed (clock 0), so a's clocks 0 and 1 may push. */
    ck_assert_int_eq(submit(model, &a1, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(model, &a2, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(model, &a3, "a", 1, 0, 0, -1), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(atomic_load(&model->step), 2);
    /* A newer push of a takes the waiting one's place. */
    ck_assert_int_eq(submit(model, &a4, "a", 1, 0, 0, -1), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(a3.ticket.result, PARAMD_E_UNAVAILABLE);
    ck_assert_int_eq(a3.notified, 1);
    /* b's push lets a's waiting push through. */
    ck_assert_int_eq(submit(model, &b1, "b", 0, 1, 0, -1), PARAMD_OK);
    /* Both of the K = 2 workers are known now: a third is refused. */
    ck_assert_int_eq(submit(model, &extra, "c", 1, 0, 0, -1), PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(extra.ticket.error.message, "2 workers"));
    ck_assert(a4.ticket.done);
    ck_assert_int_eq(a4.ticket.result, PARAMD_OK);
    ck_assert_int_eq(a4.notified, 1);
    ck_assert_int_eq(atomic_load(&model->step), 4);
    float after[3];
    weights(model, after);
    ck_assert(after[0] == -3 && after[1] == -1);
    ck_assert(a4.weights[0] == -3); /* its reply: the weights after its own step */
    drop(model);
}
END_TEST

START_TEST(test_ssp_expire)
{
    paramd__model *model = make_model((paramd__consistency_config){
        .mode = PARAMD__CONSISTENCY_SSP, .workers = 2, .staleness = 0, .timeout_seconds = 60});
    push a1, a2;
    ck_assert_int_eq(submit(model, &a1, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(model, &a2, "a", 1, 0, 0, -1), PARAMD__PUSH_WAITING);
    paramd__core_push_expire(&server, model, &a2.ticket);
    ck_assert_int_eq(a2.ticket.result, PARAMD_E_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(a2.ticket.error.message, "slowest worker"));
    ck_assert_int_eq(atomic_load(&model->step), 1); /* not applied */
    drop(model);
}
END_TEST

/* Issue 9: --max-waiting-pushes bounds the pushes waiting over all models;
 * a refused push changes nothing, a push that completes a round or replaces
 * its worker's waiting push is never refused, and slots come back. */
START_TEST(test_waiting_pushes_are_limited)
{
    server.max_waiting_pushes = 2;
    paramd__model *model = make_model(sync_config(3, 0)); /* up to 2 wait: allowed */
    push a, b, c, again, d;
    ck_assert_int_eq(submit(model, &a, "w0", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert_uint_eq(atomic_load(&server.waiting_pushes), 2);
    /* Another model's push that would wait finds the budget spent. */
    paramd__model *other = make_named_model("other", sync_config(2, 0));
    ck_assert_int_eq(submit(other, &c, "x0", 9, 9, 9, 0), PARAMD_E_OVERLOADED);
    ck_assert(c.ticket.done);
    ck_assert_ptr_nonnull(strstr(c.ticket.error.message, "--max-waiting-pushes"));
    ck_assert_uint_eq(other->consistency_state.round_workers, 0); /* nothing changed */
    /* w1 again replaces its own waiting push: allowed at the limit. */
    ck_assert_int_eq(submit(model, &again, "w1", 3, 3, 3, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(b.ticket.result, PARAMD_E_UNAVAILABLE);
    ck_assert_uint_eq(atomic_load(&server.waiting_pushes), 2);
    /* The push that completes the round does not wait: never refused. */
    ck_assert_int_eq(submit(model, &d, "w2", 2, 2, 2, 0), PARAMD_OK);
    ck_assert_uint_eq(atomic_load(&server.waiting_pushes), 0);
    ck_assert(a.ticket.done && a.ticket.result == PARAMD_OK);
    float after[3];
    weights(model, after);
    ck_assert(after[0] == -2); /* (1 + 3 + 2) / 3 */
    drop(model);
    drop(other);

    /* A model that could never fill a round under the limit is refused. */
    server.max_waiting_pushes = 1;
    paramd__error error = {0};
    ck_assert_int_eq(try_make_named_model("big", sync_config(3, 0), NULL, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "--max-waiting-pushes 1"));
    /* One backup worker: only 1 waits. */
    ck_assert_int_eq(try_make_named_model("big", sync_config(3, 1), NULL, &error), PARAMD_OK);
    ck_assert_int_eq(paramd__core_delete_model(&server, "big", NULL), PARAMD_OK);
    paramd__consistency_config ssp = {.mode = PARAMD__CONSISTENCY_SSP, .workers = 3,
                                      .staleness = 0, .timeout_seconds = 60};
    ck_assert_int_eq(try_make_named_model("big", ssp, NULL, &error), PARAMD_E_BAD_REQUEST);

    /* ssp: a push that must wait is refused once the budget is spent. */
    ssp.workers = 2;
    model = make_model(ssp);
    other = make_named_model("other", ssp);
    push s1, s2, o1, o2;
    ck_assert_int_eq(submit(model, &s1, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(model, &s2, "a", 1, 0, 0, -1), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(other, &o1, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(other, &o2, "a", 1, 0, 0, -1), PARAMD_E_OVERLOADED);
    ck_assert_int_eq(atomic_load(&other->step), 1);
    paramd__core_push_expire(&server, model, &s2.ticket);
    ck_assert_uint_eq(atomic_load(&server.waiting_pushes), 0);
    drop(model);
    drop(other);
    server.max_waiting_pushes = 0;
}
END_TEST

/* Deleting a model ends the pushes waiting in it at once (not at their
 * timeout), and a push that found the model before it was deleted fails. */
START_TEST(test_delete_releases_waiting_pushes)
{
    paramd__model *model = make_model(sync_config(3, 0));
    push a, b, late;
    ck_assert_int_eq(submit(model, &a, "w0", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(submit(model, &b, "w1", 1, 1, 1, 0), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    ck_assert(a.ticket.done && b.ticket.done);
    ck_assert_int_eq(a.ticket.result, PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_int_eq(a.notified, 1);
    ck_assert_int_eq(b.notified, 1);
    ck_assert_ptr_nonnull(strstr(b.ticket.error.message, "was deleted while this push waited"));
    ck_assert_uint_eq(atomic_load(&server.waiting_pushes), 0);
    ck_assert_int_eq(submit(model, &late, "w2", 1, 1, 1, 0), PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_int_eq(atomic_load(&model->step), 0);
    paramd__model_release(model);

    model = make_model((paramd__consistency_config){
        .mode = PARAMD__CONSISTENCY_SSP, .workers = 2, .staleness = 0, .timeout_seconds = 60});
    push s1, s2;
    ck_assert_int_eq(submit(model, &s1, "a", 1, 0, 0, -1), PARAMD_OK);
    ck_assert_int_eq(submit(model, &s2, "a", 1, 0, 0, -1), PARAMD__PUSH_WAITING);
    ck_assert_int_eq(paramd__core_delete_model(&server, model->name, NULL), PARAMD_OK);
    ck_assert_int_eq(s2.ticket.result, PARAMD_E_MODEL_NOT_FOUND);
    ck_assert_int_eq(s2.notified, 1);
    paramd__model_release(model);
}
END_TEST

/* ---------------------------------------------------------------------------
 * async: staleness
 * ------------------------------------------------------------------------- */

START_TEST(test_async_staleness_and_staleness_lr)
{
    paramd__model *model = make_model(
        (paramd__consistency_config){.mode = PARAMD__CONSISTENCY_ASYNC, .staleness_lr = true});
    push p;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(submit(model, &p, "fast", 1, 0, 0, i), PARAMD_OK);
    ck_assert(p.ticket.outcome.has_staleness);
    ck_assert_uint_eq(p.ticket.outcome.staleness, 0);
    float before[3];
    weights(model, before);
    ck_assert(before[0] == -4);
    /* Computed at step 0, arriving at step 4: staleness 4, lr 1/4. */
    ck_assert_int_eq(submit(model, &p, "slow", 0, 8, 0, 0), PARAMD_OK);
    ck_assert_uint_eq(p.ticket.outcome.staleness, 4);
    float after[3];
    weights(model, after);
    ck_assert_msg(after[1] == -2, "w[1] = %g: lr 1 / staleness 4 moves it by 8 / 4", after[1]);
    const paramd__staleness_stats *stats = &model->consistency_state.staleness;
    ck_assert_uint_eq(stats->count, 5);
    ck_assert_uint_eq(stats->maximum, 4);
    ck_assert_uint_eq(stats->buckets[0], 4); /* staleness 0 */
    ck_assert_uint_eq(stats->buckets[3], 1); /* (2, 4] */
    /* Without a version there is no staleness. */
    ck_assert_int_eq(submit(model, &p, "slow", 0, 0, 1, -1), PARAMD_OK);
    ck_assert(!p.ticket.outcome.has_staleness);
    ck_assert_uint_eq(stats->count, 5);
    drop(model);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Many threads
 * ------------------------------------------------------------------------- */

#define THREAD_WORKERS 4
#define THREAD_ROUNDS 200

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    bool signalled;
} waiter;

static void wake(paramd__push_ticket *ticket)
{
    waiter *w = ticket->context;
    pthread_mutex_lock(&w->lock);
    w->signalled = true;
    pthread_cond_signal(&w->done);
    pthread_mutex_unlock(&w->lock);
}

/* Worker threads that have finished (a watchdog's count). */
static atomic_int workers_done;

typedef struct worker_thread {
    paramd__model *model;
    int index;
    int failures;
    uint64_t last_step;
} worker_thread;

/* Worker i pushes gradient i + 1 in every element, THREAD_ROUNDS times,
 * each time with the version its previous reply gave. */
static void *run_worker(void *argument)
{
    worker_thread *self = argument;
    char name[16];
    snprintf(name, sizeof name, "worker-%d", self->index);
    uint64_t version = 0;
    for (int round = 0; round < THREAD_ROUNDS; round++) {
        float grad[3], out[3];
        for (int e = 0; e < 3; e++)
            grad[e] = (float)(self->index + 1);
        paramd__tensor_io item = {.tensor = self->model->tensors[0], .grad = grad,
                                  .grad_count = 3, .weights = out};
        waiter w = {.signalled = false};
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.done, NULL);
        paramd__push_ticket ticket = {.items = &item, .item_count = 1,
                                      .options = {NAN, NAN, NAN, 0}, .worker = name,
                                      .has_version = true, .version = version,
                                      .notify = wake, .context = &w};
        int result = paramd__core_push_submit(&server, self->model, &ticket);
        if (result == PARAMD__PUSH_WAITING) {
            pthread_mutex_lock(&w.lock);
            while (!w.signalled)
                pthread_cond_wait(&w.done, &w.lock);
            pthread_mutex_unlock(&w.lock);
            result = ticket.result;
        }
        pthread_cond_destroy(&w.done);
        pthread_mutex_destroy(&w.lock);
        if (result != PARAMD_OK || ticket.outcome.dropped) {
            self->failures++;
            break;
        }
        version = ticket.outcome.step;
    }
    self->last_step = version;
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

START_TEST(test_sync_many_threads_lose_nothing)
{
    paramd__model *model = make_model(sync_config(THREAD_WORKERS, 0));
    pthread_t threads[THREAD_WORKERS];
    worker_thread workers[THREAD_WORKERS];
    for (int i = 0; i < THREAD_WORKERS; i++) {
        workers[i] = (worker_thread){.model = model, .index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_worker, &workers[i]), 0);
    }
    for (int i = 0; i < THREAD_WORKERS; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_int_eq(workers[i].failures, 0);
        ck_assert_uint_eq(workers[i].last_step, THREAD_ROUNDS);
    }
    ck_assert_int_eq(atomic_load(&model->step), THREAD_ROUNDS);
    /* Each round's average is (1 + 2 + 3 + 4) / 4 = 2.5, exact in float32. */
    float after[3];
    weights(model, after);
    ck_assert_msg(after[0] == -2.5f * THREAD_ROUNDS, "w = %g", after[0]);
    drop(model);
}
END_TEST

/* Describes the model (the consistency section takes the consistency lock)
 * and patches it (config_lock for writing) until told to stop. */
typedef struct bystander {
    paramd__model *model;
    atomic_bool stop;
    bool patch;
    atomic_int rounds;
} bystander;

static void *run_bystander(void *argument)
{
    bystander *self = argument;
    const paramd__hyperparameter_spec *lr =
        paramd__optimizer_find_hyperparameter(self->model->optimizer.type, "lr");
    while (!atomic_load(&self->stop)) {
        if (self->patch) {
            /* lr stays 1, so the weights still count exactly. */
            paramd__hyperparameter_change change = {.spec = lr, .values = {1.0}};
            paramd__model_patch patch = {.optimizer = {.changes = &change, .count = 1}};
            paramd__error error = {0};
            if (paramd__core_patch_model(&server, self->model, &patch, &error) != PARAMD_OK)
                break;
        } else {
            json_t *description = paramd__json_describe_model(self->model);
            if (description == NULL)
                break;
            json_decref(description);
        }
        atomic_fetch_add(&self->rounds, 1);
    }
    return NULL;
}

/* A description used to take the consistency lock under config_lock, while
 * a sync push applying its round holds the consistency lock and takes
 * config_lock: with a PATCH waiting for config_lock (which prefers
 * writers), the three deadlocked.  Sync rounds, descriptions and patches
 * all run at once here; a deadlock hangs the test (Check's timeout fails
 * it), and ThreadSanitizer reports the inverted order even when the timing
 * spares it (make test-tsan). */
START_TEST(test_describe_and_patch_during_sync_rounds_do_not_deadlock)
{
    paramd__model *model = make_model(sync_config(THREAD_WORKERS, 0));
    bystander describer = {.model = model, .patch = false};
    bystander patcher = {.model = model, .patch = true};
    pthread_t describe_thread, patch_thread;
    ck_assert_int_eq(pthread_create(&describe_thread, NULL, run_bystander, &describer), 0);
    ck_assert_int_eq(pthread_create(&patch_thread, NULL, run_bystander, &patcher), 0);
    while (atomic_load(&describer.rounds) == 0 || atomic_load(&patcher.rounds) == 0)
        sched_yield();
    pthread_t threads[THREAD_WORKERS];
    worker_thread workers[THREAD_WORKERS];
    atomic_store(&workers_done, 0);
    for (int i = 0; i < THREAD_WORKERS; i++) {
        workers[i] = (worker_thread){.model = model, .index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_worker, &workers[i]), 0);
    }
    /* A watchdog: 200 rounds take milliseconds; two minutes is a deadlock. */
    for (int tick = 0; atomic_load(&workers_done) < THREAD_WORKERS; tick++) {
        ck_assert_msg(tick < 12000, "deadlock: %d of %d workers finished in 120 s",
                      atomic_load(&workers_done), THREAD_WORKERS);
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    for (int i = 0; i < THREAD_WORKERS; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_int_eq(workers[i].failures, 0);
    }
    atomic_store(&describer.stop, true);
    atomic_store(&patcher.stop, true);
    pthread_join(describe_thread, NULL);
    pthread_join(patch_thread, NULL);
    float after[3];
    weights(model, after);
    ck_assert_msg(after[0] == -2.5f * THREAD_ROUNDS, "w = %g", after[0]);
    drop(model);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("consistency");
    TCase *tc = tcase_create("modes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_config_validation);
    tcase_add_test(tc, test_sync_averages_in_worker_name_order);
    tcase_add_test(tc, test_sync_newer_push_replaces_and_future_versions_are_refused);
    tcase_add_test(tc, test_sync_backup_workers_drop_late_pushes);
    tcase_add_test(tc, test_sync_expire_abandons_the_round);
    tcase_add_test(tc, test_sync_withdrawn_worker_leaves_the_round);
    tcase_add_test(tc, test_ssp_bounds_staleness);
    tcase_add_test(tc, test_ssp_expire);
    tcase_add_test(tc, test_waiting_pushes_are_limited);
    tcase_add_test(tc, test_delete_releases_waiting_pushes);
    tcase_add_test(tc, test_async_staleness_and_staleness_lr);
    tcase_add_test(tc, test_sync_many_threads_lose_nothing);
    tcase_add_test(tc, test_describe_and_patch_during_sync_rounds_do_not_deadlock);
    suite_add_tcase(suite, tc);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
