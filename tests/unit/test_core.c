/*
 * test_core.c - the core operations: model creation checks, push validation
 * that changes nothing on error, per-tensor step counts, the registry's
 * reference counting, pushes from many threads with no lost update, and a
 * 64M-element tensor.
 */
#include "test_util.h"

#include "core.h"
#include "parallel.h"

#include <pthread.h>
#include <math.h>
#include <string.h>

static paramd__optimizer_config sgd_config(double lr, double momentum)
{
    const paramd__optimizer_type *sgd = paramd__optimizer_find("SGD");
    paramd__optimizer_config config;
    paramd__optimizer_config_init(&config, sgd);
    double value[1] = {lr};
    ck_assert_int_eq(paramd__optimizer_config_set(
                         &config, paramd__optimizer_find_hyperparameter(sgd, "lr"), value, "lr", NULL),
                     PARAMD_OK);
    value[0] = momentum;
    ck_assert_int_eq(paramd__optimizer_config_set(&config,
                                                  paramd__optimizer_find_hyperparameter(sgd, "momentum"),
                                                  value, "momentum", NULL),
                     PARAMD_OK);
    return config;
}

/* A model "m" with tensors w [4] = 1, 2, 3, 4 and b [2, 3] = zeros. */
static paramd__model *make_model(paramd__optimizer_config config)
{
    static const float w_values[4] = {1, 2, 3, 4};
    paramd__tensor_spec tensors[2] = {
        {.name = "w", .dimension_count = 1, .shape = {4}, .has_values = true,
         .values = w_values, .value_count = 4},
        {.name = "b", .dimension_count = 2, .shape = {2, 3}},
    };
    paramd__initializer_init(&tensors[1].initializer, paramd__initializer_find("zeros"));
    paramd__model_spec spec = {.name = "m", .optimizer = config, .tensors = tensors,
                               .tensor_count = 2};
    paramd__error error;
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_msg(model != NULL, "%s", error.message);
    return model;
}

/* paramd__core_push without a loss, reporting only the step. */
static int push_items(paramd__server *server, paramd__model *model, paramd__tensor_io *items,
                      size_t count, uint64_t *step, paramd__error *error)
{
    paramd__push_outcome outcome;
    int result = paramd__core_push(server, model, items, count, NAN, NAN, &outcome, error);
    if (result == PARAMD_OK)
        *step = outcome.step;
    return result;
}

START_TEST(test_model_creation_checks)
{
    paramd__optimizer_config config = sgd_config(0.1, 0);
    float values[3] = {1, 2, 3};
    paramd__tensor_spec tensor = {.name = "w", .dimension_count = 1, .shape = {3},
                                  .has_values = true, .values = values, .value_count = 3};
    paramd__model_spec spec = {.name = "ok", .optimizer = config, .tensors = &tensor,
                               .tensor_count = 1};
    paramd__error error;
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_ptr_nonnull(model);
    ck_assert_uint_eq(model->parameter_count, 3);
    ck_assert_ptr_null(model->tensors[0]->state[0]); /* no momentum: no buffer */
    paramd__model_release(model);

    spec.name = "bad/name";
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_int_eq(error.code, PARAMD_E_BAD_NAME);
    spec.name = ".hidden";
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    spec.name = "ok";

    tensor.value_count = 2;
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_int_eq(error.code, PARAMD_E_SHAPE_MISMATCH);
    tensor.value_count = 3;

    values[1] = 1.0f / 0.0f;
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_int_eq(error.code, PARAMD_E_NON_FINITE);
    ck_assert_ptr_nonnull(strstr(error.message, "tensors[0].values[1]"));
    values[1] = 2;

    tensor.shape[0] = 0;
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_int_eq(error.code, PARAMD_E_BAD_REQUEST);
    tensor.shape[0] = 3;

    tensor.name = "has space";
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_int_eq(error.code, PARAMD_E_BAD_NAME);
    tensor.name = "layers.0.attn.q_proj.weight";
    model = paramd__model_create(&spec, &error);
    ck_assert_ptr_nonnull(model);
    paramd__model_release(model);

    paramd__tensor_spec twins[2] = {tensor, tensor};
    spec.tensors = twins;
    spec.tensor_count = 2;
    ck_assert_ptr_null(paramd__model_create(&spec, &error));
    ck_assert_ptr_nonnull(strstr(error.message, "more than once"));

    /* A scalar (0 dimensions) holds one element. */
    paramd__tensor_spec scalar = {.name = "s", .dimension_count = 0, .has_values = true,
                                  .values = values, .value_count = 1};
    spec.tensors = &scalar;
    spec.tensor_count = 1;
    model = paramd__model_create(&spec, &error);
    ck_assert_ptr_nonnull(model);
    ck_assert_uint_eq(model->tensors[0]->count, 1);
    paramd__model_release(model);
}
END_TEST

START_TEST(test_bad_push_changes_nothing)
{
    paramd__server server;
    paramd__server_init(&server);
    paramd__model *model = make_model(sgd_config(0.5, 0.9));
    paramd__tensor *w = paramd__model_find_tensor(model, "w");
    paramd__tensor *b = paramd__model_find_tensor(model, "b");
    float w_before[4], momentum_before[4];
    memcpy(w_before, w->values, sizeof w_before);
    memcpy(momentum_before, w->state[0], sizeof momentum_before);

    float good[4] = {1, 1, 1, 1};
    float bad_length[5] = {0};
    float non_finite[6] = {0, 0, 0, 0, 0, 0};
    non_finite[4] = 0.0f / 0.0f;
    paramd__error error;
    uint64_t step;
    paramd__tensor_io items[2] = {{.tensor = w, .grad = good, .grad_count = 4},
                                  {.tensor = b, .grad = bad_length, .grad_count = 5}};
    ck_assert_int_eq(push_items(&server, model, items, 2, &step, &error),
                     PARAMD_E_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(error.message, "grads.b"));
    items[1].grad = non_finite;
    items[1].grad_count = 6;
    ck_assert_int_eq(push_items(&server, model, items, 2, &step, &error),
                     PARAMD_E_NON_FINITE);
    ck_assert_ptr_nonnull(strstr(error.message, "grads.b[4]"));
    items[1] = items[0];
    ck_assert_int_eq(push_items(&server, model, items, 2, &step, &error),
                     PARAMD_E_BAD_REQUEST);
    ck_assert_int_eq(push_items(&server, model, items, 0, &step, &error),
                     PARAMD_E_BAD_REQUEST);

    ck_assert(memcmp(w_before, w->values, sizeof w_before) == 0);
    ck_assert(memcmp(momentum_before, w->state[0], sizeof momentum_before) == 0);
    ck_assert_uint_eq(w->step, 0);
    ck_assert_uint_eq(b->step, 0);
    ck_assert_uint_eq(atomic_load(&model->step), 0);

    float out[4];
    items[0].weights = out;
    ck_assert_int_eq(push_items(&server, model, items, 1, &step, &error), PARAMD_OK);
    ck_assert_uint_eq(step, 1);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(w->values[i], w_before[i] - 0.5f);
        ck_assert_float_eq(out[i], w->values[i]);
    }
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

START_TEST(test_subset_pushes_count_steps_per_tensor)
{
    paramd__server server;
    paramd__server_init(&server);
    paramd__model *model = make_model(sgd_config(1, 0));
    paramd__tensor *w = paramd__model_find_tensor(model, "w");
    paramd__tensor *b = paramd__model_find_tensor(model, "b");
    float grad_w[4] = {1, 1, 1, 1}, grad_b[6] = {1, 2, 3, 4, 5, 6};
    paramd__error error;
    uint64_t step;
    for (int i = 0; i < 3; i++) {
        paramd__tensor_io item = {.tensor = w, .grad = grad_w, .grad_count = 4};
        ck_assert_int_eq(push_items(&server, model, &item, 1, &step, &error), PARAMD_OK);
    }
    paramd__tensor_io both[2] = {{.tensor = b, .grad = grad_b, .grad_count = 6},
                                 {.tensor = w, .grad = grad_w, .grad_count = 4}};
    ck_assert_int_eq(push_items(&server, model, both, 2, &step, &error), PARAMD_OK);
    ck_assert_uint_eq(step, 4);
    ck_assert_uint_eq(w->step, 4);
    ck_assert_uint_eq(b->step, 1);
    ck_assert_float_eq(w->values[0], 1 - 4);
    ck_assert_float_eq(b->values[5], -6);

    float pulled[6];
    paramd__tensor_io pull = {.tensor = b, .weights = pulled};
    ck_assert_int_eq(paramd__core_pull(&server, model, &pull, 1, &step, &error), PARAMD_OK);
    ck_assert_uint_eq(step, 4);
    ck_assert(memcmp(pulled, b->values, sizeof pulled) == 0);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

START_TEST(test_registry_lifetime)
{
    paramd__server server;
    paramd__server_init(&server);
    paramd__model *model = make_model(sgd_config(1, 0));
    paramd__error error;
    ck_assert_int_eq(paramd__registry_add(&server.registry, model, &error), PARAMD_OK);
    ck_assert_int_eq(paramd__registry_add(&server.registry, model, &error), PARAMD_E_MODEL_EXISTS);
    paramd__model *held = paramd__registry_acquire(&server.registry, "m");
    ck_assert_ptr_eq(held, model);
    paramd__model_release(model); /* the creator's reference */
    ck_assert_int_eq(paramd__core_delete_model(&server, "m", &error), PARAMD_OK);
    ck_assert_ptr_null(paramd__registry_acquire(&server.registry, "m"));
    ck_assert_int_eq(paramd__core_delete_model(&server, "m", &error), PARAMD_E_MODEL_NOT_FOUND);
    /* Still usable by a request that held it across the delete (ASan would
     * report a use after free otherwise). */
    float grad[4] = {1, 1, 1, 1};
    paramd__tensor_io item = {.tensor = paramd__model_find_tensor(held, "w"), .grad = grad,
                              .grad_count = 4};
    uint64_t step;
    ck_assert_int_eq(push_items(&server, held, &item, 1, &step, &error), PARAMD_OK);
    paramd__model_release(held);
    paramd__server_destroy(&server);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Concurrency: 8 threads x 200 pushes, SGD lr = 1, exact serial sum.
 * ------------------------------------------------------------------------- */

#define PUSH_THREADS 8
#define PUSHES_PER_THREAD 200
#define CONCURRENT_ELEMENTS 1000

typedef struct push_worker {
    paramd__server *server;
    paramd__model *model;
    int index;
} push_worker;

/* Small integers keep every float32 sum exact, whatever the order. */
static float gradient_value(int worker, int push, int element)
{
    return (float)((worker * 7 + push + element) % 5 - 2);
}

static void *push_worker_main(void *argument)
{
    push_worker *worker = argument;
    paramd__tensor *w = paramd__model_find_tensor(worker->model, "big");
    float grad[CONCURRENT_ELEMENTS];
    for (int push = 0; push < PUSHES_PER_THREAD; push++) {
        for (int e = 0; e < CONCURRENT_ELEMENTS; e++)
            grad[e] = gradient_value(worker->index, push, e);
        paramd__tensor_io item = {.tensor = w, .grad = grad, .grad_count = CONCURRENT_ELEMENTS};
        paramd__error error;
        uint64_t step;
        ck_assert_int_eq(push_items(worker->server, worker->model, &item, 1, &step, &error),
                         PARAMD_OK);
    }
    return NULL;
}

START_TEST(test_concurrent_pushes_lose_nothing)
{
    paramd__server server;
    paramd__server_init(&server);
    paramd__tensor_spec tensor = {.name = "big", .dimension_count = 1,
                                  .shape = {CONCURRENT_ELEMENTS}};
    paramd__initializer_init(&tensor.initializer, paramd__initializer_find("zeros"));
    paramd__model_spec spec = {.name = "c", .optimizer = sgd_config(1, 0), .tensors = &tensor,
                               .tensor_count = 1};
    paramd__error error;
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_ptr_nonnull(model);
    pthread_t threads[PUSH_THREADS];
    push_worker workers[PUSH_THREADS];
    for (int i = 0; i < PUSH_THREADS; i++) {
        workers[i] = (push_worker){&server, model, i};
        pthread_create(&threads[i], NULL, push_worker_main, &workers[i]);
    }
    for (int i = 0; i < PUSH_THREADS; i++)
        pthread_join(threads[i], NULL);
    paramd__tensor *w = model->tensors[0];
    for (int e = 0; e < CONCURRENT_ELEMENTS; e++) {
        float expected = 0;
        for (int worker = 0; worker < PUSH_THREADS; worker++)
            for (int push = 0; push < PUSHES_PER_THREAD; push++)
                expected -= gradient_value(worker, push, e);
        ck_assert_float_eq(w->values[e], expected);
    }
    ck_assert_uint_eq(w->step, PUSH_THREADS * PUSHES_PER_THREAD);
    ck_assert_uint_eq(atomic_load(&model->step), PUSH_THREADS * PUSHES_PER_THREAD);
    paramd__model_release(model);
    paramd__server_destroy(&server);
}
END_TEST

/* ---------------------------------------------------------------------------
 * A 64M-element tensor (256 MiB of weights), updated on the thread pool.
 * ------------------------------------------------------------------------- */

START_TEST(test_64m_element_tensor)
{
    ck_assert_int_eq(paramd__parallel_start(0), PARAMD_OK);
    const size_t count = (size_t)64 << 20;
    paramd__server server;
    paramd__server_init(&server);
    paramd__tensor_spec tensor = {.name = "huge", .dimension_count = 2, .shape = {8192, 8192}};
    paramd__initializer_init(&tensor.initializer, paramd__initializer_find("constant"));
    tensor.initializer.parameters[0] = 1.0;
    paramd__model_spec spec = {.name = "huge", .optimizer = sgd_config(0.5, 0.9),
                               .tensors = &tensor, .tensor_count = 1};
    paramd__error error;
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_msg(model != NULL, "%s", error.message);
    ck_assert_uint_eq(model->parameter_count, count);
    float *grad = paramd__float_array_alloc(count);
    float *out = paramd__float_array_alloc(count);
    ck_assert_ptr_nonnull(grad);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < count; i++)
        grad[i] = (float)(i % 3); /* 0, 1, 2 */
    paramd__tensor_io item = {.tensor = model->tensors[0], .grad = grad, .grad_count = count,
                              .weights = out};
    uint64_t step;
    for (int s = 0; s < 2; s++)
        ck_assert_int_eq(push_items(&server, model, &item, 1, &step, &error), PARAMD_OK);
    /* Momentum 0.9: buffer g, then 0.9 g + g; weights 1 - 0.5 g - 0.5 (1.9 g). */
    for (size_t i = 0; i < count; i += 4093) {
        float g = (float)(i % 3);
        float buffer = fmaf(g, 1.0f, g * 0.9f);
        float expected = fmaf(buffer, -0.5f, fmaf(g, -0.5f, 1.0f));
        ck_assert_float_eq(out[i], expected);
    }
    ck_assert_float_eq(out[count - 1], model->tensors[0]->values[count - 1]);
    paramd__float_array_free(grad, count);
    paramd__float_array_free(out, count);
    paramd__model_release(model);
    paramd__server_destroy(&server);
    paramd__parallel_stop();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("core");
    TCase *tcase = tcase_create("core");
    tcase_set_timeout(tcase, 300);
    tcase_add_test(tcase, test_model_creation_checks);
    tcase_add_test(tcase, test_bad_push_changes_nothing);
    tcase_add_test(tcase, test_subset_pushes_count_steps_per_tensor);
    tcase_add_test(tcase, test_registry_lifetime);
    tcase_add_test(tcase, test_concurrent_pushes_lose_nothing);
    tcase_add_test(tcase, test_64m_element_tensor);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
