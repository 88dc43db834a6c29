/*
 * test_checkpoint.c - safetensors files and model checkpoints: the header
 * layout and checksum, refusal of every damaged byte and every truncation,
 * and, for every optimizer in the table (with schedules, parameter groups,
 * loss scaling, accumulation and gradient noise), a checkpoint that
 * rebuilds a model identical to the original: same configuration, same
 * arrays to the bit, and the same weights after further identical pushes.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "checkpoint.h"
#include "json_api.h"
#include "safetensors.h"
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char directory[64];

static void make_directory(void)
{
    snprintf(directory, sizeof directory, "/tmp/paramd-checkpoint-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(directory));
}

static void remove_directory(void)
{
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    ck_assert_int_eq(system(command), 0);
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    ck_assert_ptr_nonnull(file);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    fseek(file, 0, SEEK_SET);
    unsigned char *bytes = malloc(*size ? *size : 1);
    ck_assert_uint_eq(fread(bytes, 1, *size, file), *size);
    fclose(file);
    return bytes;
}

/* ---------------------------------------------------------------------------
 * Models for the tests
 * ------------------------------------------------------------------------- */

static paramd__model *create(paramd__server *server, const char *name, const char *body_text)
{
    json_error_t json_error;
    json_t *body = json_loads(body_text, 0, &json_error);
    ck_assert_msg(body != NULL, "%s", json_error.text);
    paramd__error error = {0};
    json_t *description = paramd__json_create_model(server, name, body, &error);
    ck_assert_msg(description != NULL, "%s: %s", name, error.message);
    json_decref(description);
    json_decref(body);
    paramd__model *model = paramd__registry_acquire(&server->registry, name);
    ck_assert_ptr_nonnull(model);
    return model;
}

/* A deterministic pseudo-random gradient for push k of tensor t. */
static void fill_gradient(float *grad, size_t count, unsigned k, unsigned t)
{
    uint32_t state = 2654435761u * (k + 1) ^ (t + 7) * 40503u;
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        grad[i] = ((float)(state >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
}

/* Pushes every tensor once with gradients for push number k. */
static void push_all(paramd__server *server, paramd__model *model, unsigned k)
{
    paramd__tensor_io *items = calloc(model->tensor_count, sizeof *items);
    for (size_t t = 0; t < model->tensor_count; t++) {
        paramd__tensor *tensor = model->tensors[t];
        float *grad = malloc(tensor->count * sizeof(float));
        fill_gradient(grad, tensor->count, k, (unsigned)t);
        items[t] = (paramd__tensor_io){.tensor = tensor, .grad = grad, .grad_count = tensor->count};
    }
    paramd__push_options options = {1.0 / (k + 1), NAN, NAN};
    paramd__push_outcome outcome;
    paramd__error error = {0};
    int result = paramd__core_push_ex(server, model, items, model->tensor_count, &options,
                                      &outcome, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", model->name, error.message);
    for (size_t t = 0; t < model->tensor_count; t++)
        free((float *)items[t].grad);
    free(items);
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static void assert_same_schedule_state(const paramd__schedule_state *a,
                                       const paramd__schedule_state *b)
{
    ck_assert(a->last_epoch == b->last_epoch && same_double(a->base_lr, b->base_lr) &&
              a->T_i == b->T_i && a->T_cur == b->T_cur &&
              same_double(a->base_momentum, b->base_momentum) &&
              same_double(a->max_momentum, b->max_momentum) && same_double(a->best, b->best) &&
              a->num_bad_epochs == b->num_bad_epochs && a->cooldown_counter == b->cooldown_counter);
}

/* Everything a checkpoint must carry is equal in both models. */
static void assert_same_model(paramd__model *a, paramd__model *b)
{
    json_t *da = paramd__json_describe_model(a), *db = paramd__json_describe_model(b);
    char *ta = json_dumps(da, JSON_SORT_KEYS), *tb = json_dumps(db, JSON_SORT_KEYS);
    ck_assert_str_eq(ta, tb);
    free(ta);
    free(tb);
    json_decref(da);
    json_decref(db);
    ck_assert_uint_eq(atomic_load(&a->step), atomic_load(&b->step));
    ck_assert_uint_eq(a->tensor_count, b->tensor_count);
    for (size_t t = 0; t < a->tensor_count; t++) {
        paramd__tensor *x = a->tensors[t], *y = b->tensors[t];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_uint_eq(x->step, y->step);
        ck_assert_int_eq(memcmp(x->values, y->values, x->count * sizeof(float)), 0);
        for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++) {
            ck_assert_uint_eq(x->state_length[s], y->state_length[s]);
            if (x->state[s])
                ck_assert_msg(memcmp(x->state[s], y->state[s], x->state_length[s] * sizeof(float)) == 0,
                              "%s: state %d differs", x->name, s);
        }
        ck_assert_uint_eq(a->extras[t].accumulated_count, b->extras[t].accumulated_count);
        ck_assert_uint_eq(a->extras[t].noise_draws, b->extras[t].noise_draws);
        if (a->extras[t].accumulated)
            ck_assert_int_eq(memcmp(a->extras[t].accumulated, b->extras[t].accumulated,
                                    x->count * sizeof(float)),
                             0);
        /* After the step: the constraint, Lookahead's slow weights, the averages. */
        ck_assert_int_eq(a->extras[t].constraint.kind, b->extras[t].constraint.kind);
        ck_assert(a->extras[t].constraint.max_norm == b->extras[t].constraint.max_norm);
        ck_assert_uint_eq(a->extras[t].ema_count, b->extras[t].ema_count);
        ck_assert_uint_eq(a->extras[t].swa_count, b->extras[t].swa_count);
        const float *arrays_a[3] = {a->extras[t].slow, a->extras[t].ema, a->extras[t].swa};
        const float *arrays_b[3] = {b->extras[t].slow, b->extras[t].ema, b->extras[t].swa};
        for (int k = 0; k < 3; k++) {
            ck_assert((arrays_a[k] == NULL) == (arrays_b[k] == NULL));
            if (arrays_a[k])
                ck_assert_msg(memcmp(arrays_a[k], arrays_b[k], x->count * sizeof(float)) == 0,
                              "%s: after-step array %d differs", x->name, k);
        }
    }
    ck_assert(a->lookahead.enabled == b->lookahead.enabled && a->lookahead.k == b->lookahead.k &&
              a->lookahead.alpha == b->lookahead.alpha);
    ck_assert(memcmp(&a->averaging, &b->averaging, sizeof a->averaging) == 0);
    ck_assert((a->sam_state == NULL) == (b->sam_state == NULL));
    if (a->sam_state)
        ck_assert_uint_eq(a->sam_state->pending.count, b->sam_state->pending.count);
    ck_assert_int_eq(a->has_schedule, b->has_schedule);
    for (size_t k = 0; a->has_schedule && k < 1 + a->param_group_count; k++) {
        const paramd__schedule *x = &a->schedules[k], *y = &b->schedules[k];
        ck_assert(same_double(x->group.lr, y->group.lr));
        ck_assert(same_double(x->group.initial_lr, y->group.initial_lr));
        ck_assert(same_double(x->group.momentum, y->group.momentum));
        ck_assert(same_double(x->group.max_lr, y->group.max_lr));
        ck_assert(same_double(x->group.min_lr, y->group.min_lr));
        ck_assert_int_eq(x->last_epoch, y->last_epoch);
        ck_assert_uint_eq(x->step_count, y->step_count);
        assert_same_schedule_state(&x->state, &y->state);
        for (int c = 0; c < x->config.child_count; c++)
            assert_same_schedule_state(&x->children[c], &y->children[c]);
    }
    if (a->has_loss_scale) {
        ck_assert(a->loss_scale.scale == b->loss_scale.scale);
        ck_assert_int_eq(a->loss_scale.growth_tracker, b->loss_scale.growth_tracker);
    }
}

/* Creates `body` as model "m", pushes, checkpoints, restores into a second
 * server, compares, then pushes both identically and compares again. */
static void round_trip(const char *body, unsigned pushes)
{
    paramd__server first, second;
    paramd__server_init(&first);
    paramd__server_init(&second);
    make_directory();
    paramd__model *model = create(&first, "m", body);
    for (unsigned k = 0; k < pushes; k++)
        push_all(&first, model, k);
    char path[128], prev[128];
    snprintf(path, sizeof path, "%s/m.safetensors", directory);
    snprintf(prev, sizeof prev, "%s/m.safetensors.prev", directory);
    paramd__error error = {0};
    json_t *info = NULL;
    ck_assert_msg(paramd__checkpoint_write_file(model, path, prev, &info, &error) == PARAMD_OK,
                  "%s", error.message);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "step")),
                     (json_int_t)atomic_load(&model->step));
    json_decref(info);
    paramd__model *restored = NULL;
    ck_assert_msg(paramd__checkpoint_load_file(NULL, path, &restored, &error) == PARAMD_OK, "%s: %s",
                  body, error.message);
    ck_assert_int_eq(paramd__registry_add(&second.registry, restored, &error), PARAMD_OK);
    assert_same_model(model, restored);
    for (unsigned k = pushes; k < pushes + 3; k++) {
        push_all(&first, model, k);
        push_all(&second, restored, k);
    }
    assert_same_model(model, restored);
    paramd__model_release(model);
    paramd__model_release(restored);
    paramd__server_destroy(&first);
    paramd__server_destroy(&second);
    remove_directory();
}

/* ---------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------- */

START_TEST(test_every_optimizer_round_trips)
{
    for (int i = 0; i < paramd__optimizer_type_count; i++) {
        const paramd__optimizer_type *type = paramd__optimizer_types[i];
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"optimizer\": {\"name\": \"%s\", \"lr\": 0.01},"
                 " \"tensors\": [{\"name\": \"fc.weight\", \"shape\": [6, 5],"
                 "   \"init\": {\"name\": \"normal\", \"std\": 0.1, \"seed\": %d}},"
                 "  {\"name\": \"fc.bias\", \"shape\": [5], \"init\": {\"name\": \"uniform\", \"seed\": 3}},"
                 "  {\"name\": \"scale\", \"shape\": [], \"values\": [0.5]}]}",
                 type->name, i + 1);
        round_trip(body, 4);
    }
}
END_TEST

START_TEST(test_training_state_round_trips)
{
    /* Groups with their own schedule state, a composite schedule, loss
     * scaling, accumulation in the middle of a window, noise, clipping. */
    round_trip("{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.01, \"amsgrad\": true},"
               " \"param_groups\": [{\"tensors\": [\"b\"], \"weight_decay\": 0, \"lr\": 0.02}],"
               " \"schedule\": {\"name\": \"SequentialLR\", \"milestones\": [2],"
               "   \"schedulers\": [{\"name\": \"LinearLR\", \"total_iters\": 2},"
               "                    {\"name\": \"CosineAnnealingLR\", \"T_max\": 10}]},"
               " \"loss_scale\": {\"init_scale\": 1024, \"growth_interval\": 2},"
               " \"accumulate\": 3, \"grad_noise\": {\"eta\": 0.01, \"seed\": 5},"
               " \"clip\": {\"max_norm\": 0.5},"
               " \"tensors\": [{\"name\": \"w\", \"shape\": [4, 3], \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 1}},"
               "   {\"name\": \"b\", \"shape\": [3]}]}",
               7);
    round_trip("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9, \"nesterov\": true},"
               " \"schedule\": {\"name\": \"OneCycleLR\", \"max_lr\": 0.5, \"total_steps\": 100},"
               " \"tensors\": [{\"name\": \"w\", \"shape\": [7], \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 2}}]}",
               5);
    /* Lookahead between synchronisations, both averages, every constraint. */
    round_trip("{\"optimizer\": {\"name\": \"Lookahead\", \"k\": 3, \"alpha\": 0.6,"
               "   \"base\": {\"name\": \"Adam\", \"lr\": 0.05}},"
               " \"averaging\": {\"ema\": {\"decay\": 0.9}, \"swa\": {\"start\": 2, \"frequency\": 2}},"
               " \"tensors\": [{\"name\": \"w\", \"shape\": [4, 3], \"constraint\": \"orthogonal\","
               "   \"init\": {\"name\": \"normal\", \"std\": 1, \"seed\": 4}},"
               "   {\"name\": \"m\", \"shape\": [3, 2], \"values\": [1, 2, 3, 4, 5, 6],"
               "    \"constraint\": {\"name\": \"max_norm\", \"max_norm\": 2}},"
               "   {\"name\": \"b\", \"shape\": [3], \"constraint\": \"nonneg\"}]}",
               4);
    /* SAM between a worker's ascent and descent pushes (5 pushes). */
    round_trip("{\"optimizer\": {\"name\": \"SAM\", \"rho\": 0.1, \"adaptive\": true,"
               "   \"base\": {\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9}},"
               " \"tensors\": [{\"name\": \"w\", \"shape\": [3, 2], \"values\": [1, 2, 3, 4, 5, 6]}]}",
               5);
    /* L-BFGS suspended in the middle of a strong Wolfe line search. */
    round_trip("{\"optimizer\": {\"name\": \"LBFGS\", \"lr\": 1, \"history_size\": 4,"
               "   \"line_search_fn\": \"strong_wolfe\"},"
               " \"tensors\": [{\"name\": \"x\", \"shape\": [5], \"values\": [1, -2, 3, 0.5, 2]}]}",
               5);
    round_trip("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1},"
               " \"schedule\": {\"name\": \"ReduceLROnPlateau\", \"patience\": 0},"
               " \"nonfinite\": \"skip\","
               " \"tensors\": [{\"name\": \"w\", \"shape\": [2, 2], \"values\": [1, 2, 3, 4]}]}",
               6);
}
END_TEST

/* Every single flipped byte and every truncation of a small checkpoint is
 * refused, and the intact file loads. */
START_TEST(test_damaged_files_are_refused)
{
    paramd__server server;
    paramd__server_init(&server);
    make_directory();
    paramd__model *model = create(&server, "m",
                                  "{\"optimizer\": {\"name\": \"Adam\", \"lr\": 0.01},"
                                  " \"tensors\": [{\"name\": \"w\", \"shape\": [3], \"values\": [1, 2, 3]}]}");
    push_all(&server, model, 0);
    char path[128], damaged[128];
    snprintf(path, sizeof path, "%s/m.safetensors", directory);
    snprintf(damaged, sizeof damaged, "%s/damaged.safetensors", directory);
    paramd__error error = {0};
    ck_assert_int_eq(paramd__checkpoint_write_file(model, path, NULL, NULL, &error), PARAMD_OK);
    size_t size;
    unsigned char *bytes = read_file(path, &size);
    paramd__safetensors_file file;
    ck_assert_int_eq(paramd__safetensors_parse(bytes, size, &file, &error), PARAMD_OK);
    ck_assert_uint_eq(file.entry_count, 3);
    ck_assert_ptr_nonnull(paramd__safetensors_find(&file, "w@exp_avg_sq"));
    paramd__safetensors_close(&file);
    for (size_t at = 0; at < size; at++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, bytes, size);
        copy[at] ^= 0x10;
        int result = paramd__safetensors_parse(copy, size, &file, &error);
        ck_assert_msg(result == PARAMD_E_CHECKPOINT_CORRUPT, "byte %zu flipped was accepted", at);
        free(copy);
    }
    for (size_t length = 0; length < size; length++) {
        int result = paramd__safetensors_parse(bytes, length, &file, &error);
        ck_assert_msg(result == PARAMD_E_CHECKPOINT_CORRUPT, "truncated to %zu was accepted",
                      length);
    }
    /* Through the file loader too, with a message that says why. */
    FILE *out = fopen(damaged, "wb");
    fwrite(bytes, 1, size - 5, out);
    fclose(out);
    paramd__model *loaded = NULL;
    ck_assert_int_eq(paramd__checkpoint_load_file(NULL, damaged, &loaded, &error),
                     PARAMD_E_CHECKPOINT_CORRUPT);
    ck_assert_ptr_null(loaded);
    ck_assert_msg(strstr(error.message, "checksum") || strstr(error.message, "truncated") ||
                      strstr(error.message, "offsets"),
                  "%s", error.message);
    free(bytes);
    paramd__model_release(model);
    paramd__server_destroy(&server);
    remove_directory();
}
END_TEST

/* The header is what the safetensors format specifies. */
START_TEST(test_header_layout)
{
    float data[6] = {1, 2, 3, 4, 5, 6};
    paramd__safetensors_entry entries[2] = {
        {.name = "a", .dimension_count = 2, .shape = {2, 2}, .count = 4, .data = data},
        {.name = "b@exp_avg", .dimension_count = 1, .shape = {2}, .count = 2, .data = data + 4},
    };
    json_t *metadata = json_pack("{s:s}", "format", "test");
    unsigned char *header;
    size_t header_size, crc_offset;
    paramd__error error = {0};
    ck_assert_int_eq(paramd__safetensors_header(entries, 2, metadata, &header, &header_size,
                                                &crc_offset, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(header_size % 8, 0);
    uint64_t length = 0;
    for (int b = 7; b >= 0; b--)
        length = length << 8 | header[b];
    ck_assert_uint_eq(length, header_size - 8);
    ck_assert_int_eq(memcmp(header + crc_offset, "00000000", 8), 0);
    json_t *parsed = json_loadb((const char *)header + 8, header_size - 8, 0, NULL);
    ck_assert_ptr_nonnull(parsed);
    json_t *b = json_object_get(parsed, "b@exp_avg");
    ck_assert_str_eq(json_string_value(json_object_get(b, "dtype")), "F32");
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(b, "data_offsets"), 0)), 16);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(b, "data_offsets"), 1)), 24);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(parsed, "__metadata__"),
                                                       "format")),
                     "test");
    json_decref(parsed);
    /* A file made of it: header, data, checksum filled in, reads back. */
    size_t size = header_size + sizeof data;
    unsigned char *file_bytes = malloc(size);
    memcpy(file_bytes, header, header_size);
    memcpy(file_bytes + header_size, data, sizeof data);
    uLong crc = crc32(0L, file_bytes, (uInt)size);
    char digits[8];
    paramd__safetensors_crc_digits((uint32_t)crc, digits);
    memcpy(file_bytes + crc_offset, digits, 8);
    paramd__safetensors_file file;
    ck_assert_msg(paramd__safetensors_parse(file_bytes, size, &file, &error) == PARAMD_OK, "%s",
                  error.message);
    const paramd__safetensors_entry *a = paramd__safetensors_find(&file, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert(a->count == 4 && a->data[3] == 4.0f && a->shape[1] == 2);
    ck_assert_str_eq(paramd__safetensors_metadata(&file, "format"), "test");
    paramd__safetensors_close(&file);
    free(file_bytes);
    free(header);
    json_decref(metadata);
}
END_TEST

/* A model whose checkpoint is damaged comes back from .prev; with both
 * damaged, restore refuses and names both files. */
START_TEST(test_restore_policy)
{
    paramd__server server;
    paramd__server_init(&server);
    make_directory();
    paramd__checkpointer checkpointer;
    paramd__checkpointer_init(&checkpointer, &server, directory, 0);
    paramd__model *model = create(&server, "m",
                                  "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1},"
                                  " \"tensors\": [{\"name\": \"w\", \"shape\": [3], \"values\": [1, 2, 3]}]}");
    paramd__error error = {0};
    push_all(&server, model, 0);
    ck_assert_int_eq(paramd__checkpoint_model(&checkpointer, model, NULL, &error), PARAMD_OK);
    push_all(&server, model, 1);
    ck_assert_int_eq(paramd__checkpoint_model(&checkpointer, model, NULL, &error), PARAMD_OK);
    paramd__model_release(model);
    paramd__checkpointer_destroy(&checkpointer);
    paramd__server_destroy(&server);

    char path[128], prev[128];
    snprintf(path, sizeof path, "%s/m.safetensors", directory);
    snprintf(prev, sizeof prev, "%s/m.safetensors.prev", directory);
    ck_assert_int_eq(truncate(path, 100), 0);
    paramd__server_init(&server);
    paramd__checkpointer_init(&checkpointer, &server, directory, 0);
    ck_assert_msg(paramd__checkpoint_restore_all(&checkpointer, &error) == PARAMD_OK, "%s",
                  error.message);
    model = paramd__registry_acquire(&server.registry, "m");
    ck_assert_ptr_nonnull(model);
    ck_assert_uint_eq(atomic_load(&model->step), 1); /* the previous checkpoint's */
    paramd__model_release(model);
    paramd__checkpointer_destroy(&checkpointer);
    paramd__server_destroy(&server);

    /* The damaged file was moved aside; now damage the previous one too. */
    char aside[160];
    snprintf(aside, sizeof aside, "%s/m.safetensors.corrupt", directory);
    ck_assert_int_eq(access(aside, F_OK), 0);
    ck_assert_int_eq(rename(aside, path), 0);
    ck_assert_int_eq(truncate(prev, 50), 0);
    paramd__server_init(&server);
    paramd__checkpointer_init(&checkpointer, &server, directory, 0);
    ck_assert_int_eq(paramd__checkpoint_restore_all(&checkpointer, &error),
                     PARAMD_E_CHECKPOINT_CORRUPT);
    ck_assert_ptr_nonnull(strstr(error.message, path));
    ck_assert_ptr_nonnull(strstr(error.message, prev));
    ck_assert_ptr_null(paramd__registry_acquire(&server.registry, "m"));
    paramd__checkpointer_destroy(&checkpointer);
    paramd__server_destroy(&server);
    remove_directory();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("checkpoint");
    TCase *tcase = tcase_create("checkpoint");
    tcase_set_timeout(tcase, 600);
    tcase_add_test(tcase, test_header_layout);
    tcase_add_test(tcase, test_damaged_files_are_refused);
    tcase_add_test(tcase, test_every_optimizer_round_trips);
    tcase_add_test(tcase, test_training_state_round_trips);
    tcase_add_test(tcase, test_restore_policy);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
