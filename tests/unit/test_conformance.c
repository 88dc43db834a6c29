/*
 * test_conformance.c - replay PyTorch's optimizer trajectories through paramd
 * (and, for optimizers torch 1.13 lacks, trajectories from the numpy
 * references in tests/conformance/reference_optimizers.py).
 *
 * Each JSON file in tests/conformance/goldens (written by
 * tests/conformance/generate_goldens.py with torch.optim) holds an optimizer
 * configuration, initial weights, and for every step the gradients pushed
 * (a subset of tensors in some cases) and torch's weights after the step.
 * This test builds the model through the same JSON parser and core push the
 * server uses, replays every step, and requires every weight after every step
 * to match torch within a relative error of 1e-5 (elementwise; an absolute
 * floor of 1e-30 only guards the division).  In fact paramd rounds exactly as
 * torch's CPU kernels do (see server/kernel.h), so the test also counts the
 * weights that are bit-identical to torch's and requires all of them to be:
 * a change in rounding shows up here first, long before 1e-5.  It replays each case twice: with
 * the fast kernels through paramd__core_push, and with the reference kernels.
 * No torch is needed: the golden files are committed.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "base64.h"
#include "core.h"
#include "json_api.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/goldens"
#define RELATIVE_TOLERANCE 1e-5

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

/* Decodes a base64 string of float32 values into a new array. */
static float *decode_b64(const json_t *string, size_t *count)
{
    ck_assert_msg(json_is_string(string), "expected a base64 string");
    size_t length = json_string_length(string);
    size_t capacity = paramd_base64_decoded_length_bound(length);
    float *values = malloc(capacity + sizeof(float));
    ck_assert_ptr_nonnull(values);
    long long bytes = paramd_base64_decode(json_string_value(string), length, values, capacity);
    ck_assert_int_ge(bytes, 0);
    ck_assert_int_eq(bytes % 4, 0);
    *count = (size_t)bytes / sizeof(float);
    return values;
}

typedef struct replay_result {
    bool exact;               /* compared bit for bit (no "tolerance" in the file) */
    double worst_relative_error;
    int steps;
    size_t values;    /* weights compared */
    size_t identical; /* of which bit-identical to torch's */
    size_t state_values; /* final optimizer state values compared (all must match) */
} replay_result;

/* Replays one golden file; with_reference selects the reference kernels.
 * as_optimizer, when not NULL, replaces the optimizer's name and adds
 * "decoupled_weight_decay": true (to replay AdamW's trajectories as Adam). */
static replay_result replay_as(const char *path, bool with_reference, const char *as_optimizer)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);
    if (as_optimizer) {
        json_t *optimizer = json_object_get(golden, "optimizer");
        json_object_set_new(optimizer, "name", json_string(as_optimizer));
        json_object_set_new(optimizer, "decoupled_weight_decay", json_true());
    }

    paramd__error error = {0};
    paramd__model_spec spec = {.name = "golden"};
    int result = paramd__json_parse_optimizer(json_object_get(golden, "optimizer"),
                                              &spec.optimizer, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: optimizer: %s", path, error.message);

    const json_t *tensors = json_object_get(golden, "tensors");
    spec.tensor_count = json_array_size(tensors);
    spec.tensors = calloc(spec.tensor_count, sizeof *spec.tensors);
    float **initial = calloc(spec.tensor_count, sizeof *initial);
    for (size_t i = 0; i < spec.tensor_count; i++) {
        const json_t *tensor = json_array_get(tensors, i);
        paramd__tensor_spec *tensor_spec = &spec.tensors[i];
        tensor_spec->name = json_string_value(json_object_get(tensor, "name"));
        const json_t *shape = json_object_get(tensor, "shape");
        tensor_spec->dimension_count = (int)json_array_size(shape);
        for (int d = 0; d < tensor_spec->dimension_count; d++)
            tensor_spec->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
        initial[i] = decode_b64(json_object_get(tensor, "initial"), &tensor_spec->value_count);
        tensor_spec->values = initial[i];
        tensor_spec->has_values = true;
    }
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_msg(model != NULL, "%s: %s", path, error.message);

    paramd__server server;
    paramd__server_init(&server);
    replay_result outcome = {.exact = true};
    /* A golden file with a "tolerance" (Muon's, whose matrix products round
     * differently in OpenBLAS and numpy) is compared within it; every other
     * must match bit for bit. */
    const json_t *tolerance = json_object_get(golden, "tolerance");
    double tolerance_relative = 0, tolerance_absolute = 0;
    if (tolerance) {
        outcome.exact = false;
        tolerance_relative = json_number_value(json_object_get(tolerance, "relative"));
        tolerance_absolute = json_number_value(json_object_get(tolerance, "absolute"));
        ck_assert_msg(tolerance_relative > 0 && tolerance_relative <= 1e-4 &&
                          tolerance_absolute >= 0 && tolerance_absolute <= 1e-6,
                      "%s: tolerance too loose to mean anything", path);
    }
    const json_t *steps = json_object_get(golden, "steps");
    for (size_t s = 0; s < json_array_size(steps); s++) {
        const json_t *step = json_array_get(steps, s);
        const json_t *grads = json_object_get(step, "grads");
        paramd__tensor_io items[16];
        size_t item_count = 0;
        const char *name;
        json_t *value;
        json_object_foreach((json_t *)grads, name, value) {
            ck_assert_uint_lt(item_count, 16);
            paramd__tensor_io *item = &items[item_count++];
            memset(item, 0, sizeof *item);
            item->tensor = paramd__model_find_tensor(model, name);
            ck_assert_ptr_nonnull(item->tensor);
            item->grad = decode_b64(value, &item->grad_count);
        }
        if (with_reference) {
            for (size_t i = 0; i < item_count; i++) {
                paramd__tensor *tensor = items[i].tensor;
                paramd__step_arrays arrays = paramd__tensor_step_arrays(tensor, items[i].grad);
                tensor->step++;
                paramd__optimizer_step_reference(tensor->optimizer, tensor->step, &arrays,
                                                 tensor->count);
            }
        } else {
            uint64_t model_step;
            result = push_items(&server, model, items, item_count, &model_step, &error);
            ck_assert_msg(result == PARAMD_OK, "%s step %zu: %s", path, s, error.message);
            ck_assert_uint_eq(model_step, s + 1);
        }
        for (size_t i = 0; i < item_count; i++)
            free((float *)items[i].grad);

        const json_t *expected_weights = json_object_get(step, "weights");
        json_object_foreach((json_t *)expected_weights, name, value) {
            paramd__tensor *tensor = paramd__model_find_tensor(model, name);
            ck_assert_ptr_nonnull(tensor);
            size_t count;
            float *expected = decode_b64(value, &count);
            ck_assert_uint_eq(count, tensor->count);
            for (size_t e = 0; e < count; e++) {
                double difference = fabs((double)tensor->values[e] - (double)expected[e]);
                double relative = difference / fmax(fabs((double)expected[e]), 1e-30);
                if (relative > outcome.worst_relative_error)
                    outcome.worst_relative_error = relative;
                if (outcome.exact)
                    ck_assert_msg(relative <= RELATIVE_TOLERANCE,
                              "%s (%s kernel): step %zu, %s[%zu]: paramd %.9g, torch %.9g "
                              "(relative error %.3g)",
                              path, with_reference ? "reference" : "fast", s + 1, name, e,
                              (double)tensor->values[e], (double)expected[e], relative);
                else
                    ck_assert_msg(difference <= tolerance_relative * fabs((double)expected[e]) +
                                                    tolerance_absolute,
                                  "%s (%s kernel): step %zu, %s[%zu]: paramd %.9g, reference "
                                  "%.9g (difference %.3g, tolerance %g relative + %g)",
                                  path, with_reference ? "reference" : "fast", s + 1, name, e,
                                  (double)tensor->values[e], (double)expected[e], difference,
                                  tolerance_relative, tolerance_absolute);
                outcome.values++;
                outcome.identical += memcmp(&tensor->values[e], &expected[e], sizeof(float)) == 0;
            }
            free(expected);
        }
        outcome.steps++;
    }

    /* torch's optimizer state after the last step (PyTorch goldens): every
     * state tensor torch keeps must exist in paramd under the same name and
     * be bit-identical, including state that never feeds back into the
     * weights, such as ASGD's averaged weights "ax". */
    const json_t *final_state = json_object_get(golden, "final_state");
    const char *slot_name;
    json_t *per_tensor;
    json_object_foreach((json_t *)final_state, slot_name, per_tensor) {
        const char *name;
        json_t *value;
        json_object_foreach(per_tensor, name, value) {
            paramd__tensor *tensor = paramd__model_find_tensor(model, name);
            ck_assert_ptr_nonnull(tensor);
            const paramd__optimizer_type *type = tensor->optimizer->type;
            int slot = -1;
            for (int i = 0; i < type->state_slot_count; i++)
                if (strcmp(type->state_slot_names[i], slot_name) == 0)
                    slot = i;
            ck_assert_msg(slot >= 0 && tensor->state[slot] != NULL,
                          "%s: torch keeps state \"%s\" for %s; paramd does not", path,
                          slot_name, name);
            size_t count;
            float *expected = decode_b64(value, &count);
            ck_assert_uint_eq(count, tensor->state_length[slot]);
            for (size_t e = 0; e < count; e++)
                ck_assert_msg(memcmp(&tensor->state[slot][e], &expected[e], sizeof(float)) == 0,
                              "%s (%s kernel): final state %s of %s[%zu]: paramd %.9g, torch "
                              "%.9g",
                              path, with_reference ? "reference" : "fast", slot_name, name, e,
                              (double)tensor->state[slot][e], (double)expected[e]);
            outcome.state_values += count;
            free(expected);
        }
    }
    paramd__model_release(model);
    paramd__server_destroy(&server);
    for (size_t i = 0; i < spec.tensor_count; i++)
        free(initial[i]);
    free(initial);
    free(spec.tensors);
    json_decref(golden);
    return outcome;
}

static replay_result replay(const char *path, bool with_reference)
{
    return replay_as(path, with_reference, NULL);
}

/* Lists the golden files, sorted, into a NULL-terminated array. */
static char **golden_files(size_t *count)
{
    DIR *directory = opendir(GOLDEN_DIRECTORY);
    ck_assert_msg(directory != NULL, "cannot open %s (run tests from the repository root)",
                  GOLDEN_DIRECTORY);
    char **paths = calloc(256, sizeof *paths);
    *count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
            continue;
        ck_assert_uint_lt(*count, 255);
        paths[*count] = malloc(strlen(GOLDEN_DIRECTORY) + length + 2);
        sprintf(paths[*count], "%s/%s", GOLDEN_DIRECTORY, entry->d_name);
        (*count)++;
    }
    closedir(directory);
    return paths;
}

static void replay_all(bool with_reference)
{
    size_t count;
    char **paths = golden_files(&count);
    ck_assert_uint_ge(count, 18); /* the committed SGD, Adam and AdamW cases */
    double worst = 0, worst_within_tolerance = 0;
    size_t values = 0, identical = 0, state_values = 0, tolerant_files = 0, tolerant_values = 0;
    for (size_t i = 0; i < count; i++) {
        replay_result outcome = replay(paths[i], with_reference);
        ck_assert_int_gt(outcome.steps, 0);
        if (outcome.exact) {
            if (outcome.worst_relative_error > worst)
                worst = outcome.worst_relative_error;
            values += outcome.values;
            identical += outcome.identical;
        } else {
            tolerant_files++;
            tolerant_values += outcome.values;
            if (outcome.worst_relative_error > worst_within_tolerance)
                worst_within_tolerance = outcome.worst_relative_error;
        }
        state_values += outcome.state_values;
        free(paths[i]);
    }
    free(paths);
    printf("conformance (%s kernels): %zu golden trajectories (PyTorch, or the numpy "
           "references from the papers for optimizers torch lacks), %zu of %zu weights "
           "bit-identical, worst relative error %.3g; %zu final optimizer-state values "
           "bit-identical; %zu trajectories (Muon) within their tolerance, %zu weights, worst "
           "relative error %.3g\n",
           with_reference ? "reference" : "fast", count - tolerant_files, identical, values,
           worst, state_values, tolerant_files, tolerant_values, worst_within_tolerance);
    ck_assert_uint_gt(state_values, 0);
    ck_assert_uint_eq(identical, values);
}

START_TEST(test_fast_kernels_match_pytorch)
{
    replay_all(false);
}
END_TEST

START_TEST(test_reference_kernels_match_pytorch)
{
    replay_all(true);
}
END_TEST

/* Every optimizer in the table has at least one golden case, so adding an
 * optimizer without PyTorch goldens fails here. */
START_TEST(test_every_optimizer_has_goldens)
{
    size_t count;
    char **paths = golden_files(&count);
    for (int t = 0; t < paramd__optimizer_type_count; t++) {
        const char *name = paramd__optimizer_types[t]->name;
        if (paramd__optimizer_types[t]->flags & PARAMD__OPTIMIZER_WHOLE_MODEL)
            continue; /* LBFGS: tests/conformance/lbfgs, replayed by test_lbfgs.c */
        bool found = false;
        for (size_t i = 0; i < count && !found; i++) {
            json_t *golden = json_load_file(paths[i], 0, NULL);
            const char *optimizer =
                json_string_value(json_object_get(json_object_get(golden, "optimizer"), "name"));
            found = optimizer && strcmp(optimizer, name) == 0;
            json_decref(golden);
        }
        ck_assert_msg(found, "optimizer %s has no golden file in %s", name, GOLDEN_DIRECTORY);
    }
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}
END_TEST

/* Adam with decoupled_weight_decay is AdamW (as in torch 2.x): it must
 * reproduce torch's AdamW trajectories bit for bit, with both kernels. */
START_TEST(test_adam_decoupled_is_adamw)
{
    size_t count, replayed = 0;
    char **paths = golden_files(&count);
    for (size_t i = 0; i < count; i++) {
        if (strstr(paths[i], "/adamw_") != NULL) {
            for (int reference = 0; reference < 2; reference++) {
                replay_result outcome = replay_as(paths[i], reference, "Adam");
                ck_assert_uint_eq(outcome.identical, outcome.values);
                ck_assert_uint_gt(outcome.values, 0);
            }
            replayed++;
        }
        free(paths[i]);
    }
    free(paths);
    ck_assert_uint_ge(replayed, 4);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("conformance");
    TCase *tcase = tcase_create("pytorch");
    tcase_set_timeout(tcase, 600);
    tcase_add_test(tcase, test_fast_kernels_match_pytorch);
    tcase_add_test(tcase, test_reference_kernels_match_pytorch);
    tcase_add_test(tcase, test_every_optimizer_has_goldens);
    tcase_add_test(tcase, test_adam_decoupled_is_adamw);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
