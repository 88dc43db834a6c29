/*
 * test_schedule.c - learning-rate schedules against torch.optim.lr_scheduler.
 *
 * Each JSON file in tests/conformance/schedules (written by
 * tests/conformance/generate_schedule_goldens.py with torch 1.13) holds an
 * optimizer, a schedule, and the lr (and the momentum or beta1, where the
 * schedule cycles it) of every optimizer step, plus the losses fed to
 * ReduceLROnPlateau.  This test parses both through the JSON parsers the
 * server uses, replays the steps, and requires every number to be exactly
 * torch's double: the schedules repeat torch's Python float arithmetic
 * operation by operation, so nothing less is expected.  No torch is needed.
 *
 * It also checks validation (every error names its field), the errors torch
 * raises mid-run, the JSON description, and that every schedule in the table
 * has a golden case.
 */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include "json_api.h"
#include "schedule.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SCHEDULE_DIRECTORY PARAMD_TEST_DATA_DIR "/conformance/schedules"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* Lists the golden files, sorted, into a NULL-terminated array. */
static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **golden_files(size_t *count)
{
    DIR *directory = opendir(SCHEDULE_DIRECTORY);
    ck_assert_msg(directory != NULL, "cannot open %s (run tests from the repository root)",
                  SCHEDULE_DIRECTORY);
    size_t capacity = 256;
    char **paths = calloc(capacity, sizeof *paths);
    ck_assert_ptr_nonnull(paths);
    *count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
            continue;
        ck_assert_uint_lt(*count, capacity - 1);
        paths[*count] = malloc(strlen(SCHEDULE_DIRECTORY) + length + 2);
        ck_assert_ptr_nonnull(paths[*count]);
        sprintf(paths[*count], "%s/%s", SCHEDULE_DIRECTORY, entry->d_name);
        (*count)++;
    }
    closedir(directory);
    qsort(paths, *count, sizeof *paths, compare_strings);
    return paths;
}

static void free_files(char **paths, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}

/* Parses a schedule from JSON text; returns the result code. */
static int parse_text(const char *text, paramd__schedule_config *config, paramd__error *error)
{
    json_error_t json_error;
    json_t *object = json_loads(text, JSON_DECODE_ANY, &json_error);
    ck_assert_msg(object != NULL, "bad test JSON %s: %s", text, json_error.text);
    paramd__error_clear(error);
    int result = paramd__json_parse_schedule(object, config, error);
    json_decref(object);
    return result;
}

/* Parses an optimizer from JSON text, which must be valid. */
static void parse_optimizer(const char *text, paramd__optimizer_config *optimizer)
{
    json_t *object = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(object);
    paramd__error error = {0};
    int result = paramd__json_parse_optimizer(object, optimizer, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", text, error.message);
    json_decref(object);
}

/* Parses a schedule that must be valid and starts it for `optimizer_text`. */
static void start(const char *text, const char *optimizer_text, paramd__schedule *schedule)
{
    paramd__schedule_config config;
    paramd__error error = {0};
    int result = parse_text(text, &config, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", text, error.message);
    paramd__optimizer_config optimizer;
    parse_optimizer(optimizer_text, &optimizer);
    result = paramd__schedule_init_for_optimizer(schedule, &config, &optimizer, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", text, error.message);
}

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ---------------------------------------------------------------------------
 * Golden replay
 * ------------------------------------------------------------------------- */

typedef struct replay_result {
    size_t values;    /* lrs and momenta compared */
    size_t identical; /* of which exactly torch's double */
    char first_difference[400];
} replay_result;

static void compare(replay_result *outcome, const char *path, const char *what, size_t step,
                    double paramd, double torch)
{
    outcome->values++;
    if (same_double(paramd, torch)) {
        outcome->identical++;
    } else if (outcome->first_difference[0] == '\0') {
        snprintf(outcome->first_difference, sizeof outcome->first_difference,
                 "%s: step %zu %s: paramd %.17g, torch %.17g (relative difference %.3g)", path,
                 step + 1, what, paramd, torch, fabs(paramd - torch) / fabs(torch));
    }
}

static replay_result replay(const char *path)
{
    json_error_t json_error;
    json_t *golden = json_load_file(path, 0, &json_error);
    ck_assert_msg(golden != NULL, "%s: %s", path, json_error.text);

    paramd__error error = {0};
    paramd__optimizer_config optimizer;
    int result = paramd__json_parse_optimizer(json_object_get(golden, "optimizer"), &optimizer,
                                              &error);
    ck_assert_msg(result == PARAMD_OK, "%s: optimizer: %s", path, error.message);
    paramd__schedule_config config;
    result = paramd__json_parse_schedule(json_object_get(golden, "schedule"), &config, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", path, error.message);
    paramd__schedule schedule;
    result = paramd__schedule_init_for_optimizer(&schedule, &config, &optimizer, &error);
    ck_assert_msg(result == PARAMD_OK, "%s: %s", path, error.message);

    const json_t *lrs = json_object_get(golden, "lr");
    const json_t *momenta = json_object_get(golden, "momentum");
    const json_t *losses = json_object_get(golden, "losses");
    size_t steps = json_array_size(lrs);
    ck_assert_uint_gt(steps, 0);
    ck_assert(json_is_null(momenta) || json_array_size(momenta) == steps);
    ck_assert(json_is_null(losses) || json_array_size(losses) == steps);
    ck_assert_int_eq(json_is_null(losses), !paramd__schedule_needs_loss(&config));
    ck_assert_int_eq(json_is_null(momenta), !paramd__schedule_cycles_momentum(&schedule));
    if (json_is_null(momenta))
        ck_assert(isnan(paramd__schedule_momentum(&schedule)));

    replay_result outcome = {0};
    for (size_t s = 0; s < steps; s++) {
        compare(&outcome, path, "lr", s, paramd__schedule_lr(&schedule),
                json_number_value(json_array_get(lrs, s)));
        if (!json_is_null(momenta))
            compare(&outcome, path, "momentum", s, paramd__schedule_momentum(&schedule),
                    json_number_value(json_array_get(momenta, s)));
        if (s + 1 == steps)
            break; /* the generator takes no scheduler step after the last */
        double loss = json_is_null(losses) ? NAN : json_number_value(json_array_get(losses, s));
        result = paramd__schedule_step(&schedule, loss, &error);
        ck_assert_msg(result == PARAMD_OK, "%s: step %zu: %s", path, s + 1, error.message);
    }
    ck_assert_uint_eq(schedule.step_count, steps - 1);
    json_decref(golden);
    return outcome;
}

START_TEST(test_schedules_match_pytorch_exactly)
{
    size_t count;
    char **paths = golden_files(&count);
    ck_assert_uint_ge(count, 13);
    size_t values = 0, identical = 0, exact_files = 0;
    char first_difference[400] = "";
    for (size_t i = 0; i < count; i++) {
        replay_result outcome = replay(paths[i]);
        values += outcome.values;
        identical += outcome.identical;
        exact_files += outcome.identical == outcome.values;
        if (outcome.identical != outcome.values) {
            printf("schedule %s: %zu of %zu values exactly torch's\n", paths[i],
                   outcome.identical, outcome.values);
            if (first_difference[0] == '\0')
                memcpy(first_difference, outcome.first_difference, sizeof first_difference);
        }
    }
    printf("schedules: %zu PyTorch cases (%zu exact), %zu of %zu lrs and momenta exactly "
           "torch's doubles\n",
           count, exact_files, identical, values);
    fflush(stdout);
    free_files(paths, count);
    ck_assert_msg(identical == values, "%zu of %zu values differ from torch's; the first: %s",
                  values - identical, values, first_difference);
}
END_TEST

/* Describing a golden's schedule and parsing the description back gives
 * the same configuration. */
START_TEST(test_description_round_trips)
{
    size_t count;
    char **paths = golden_files(&count);
    for (size_t i = 0; i < count; i++) {
        json_t *golden = json_load_file(paths[i], 0, NULL);
        ck_assert_ptr_nonnull(golden);
        paramd__schedule_config config, again;
        paramd__error error = {0};
        ck_assert_int_eq(
            paramd__json_parse_schedule(json_object_get(golden, "schedule"), &config, &error),
            PARAMD_OK);
        json_t *description = paramd__json_schedule(&config);
        ck_assert_ptr_nonnull(description);
        int result = paramd__json_parse_schedule(description, &again, &error);
        ck_assert_msg(result == PARAMD_OK, "%s: description does not parse: %s", paths[i],
                      error.message);
        /* memcmp, not ==: None slots hold the same NaN bits in both. */
        ck_assert_int_eq(memcmp(&config, &again, sizeof config), 0);
        json_decref(description);
        json_decref(golden);
    }
    free_files(paths, count);
}
END_TEST

/* Every schedule in the table has at least one golden case of its own, so
 * adding a schedule without PyTorch goldens fails here. */
START_TEST(test_every_schedule_has_goldens)
{
    size_t count;
    char **paths = golden_files(&count);
    for (int t = 0; t < paramd__schedule_type_count; t++) {
        const char *name = paramd__schedule_types[t]->name;
        bool found = false;
        for (size_t i = 0; i < count && !found; i++) {
            json_t *golden = json_load_file(paths[i], 0, NULL);
            const char *schedule =
                json_string_value(json_object_get(json_object_get(golden, "schedule"), "name"));
            found = schedule && strcmp(schedule, name) == 0;
            json_decref(golden);
        }
        ck_assert_msg(found, "schedule %s has no golden file in %s", name, SCHEDULE_DIRECTORY);
    }
    free_files(paths, count);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *json;
    const char *message; /* the error must start with this */
} bad_case;

static const bad_case bad_cases[] = {
    {"[]", "schedule: must be an object"},
    {"{\"name\": 5}", "schedule.name: required string"},
    {"{\"name\": \"StepLR\"}", "schedule.step_size: required by StepLR"},
    {"{\"name\": \"StepLR\", \"step_size\": 0}", "schedule.step_size: must be an integer in [1, "},
    {"{\"name\": \"StepLR\", \"step_size\": 2.5}", "schedule.step_size: must be an integer"},
    {"{\"name\": \"StepLR\", \"step_size\": 3, \"gamma\": -1}", "schedule.gamma: must be [0, inf)"},
    {"{\"name\": \"StepLR\", \"step_size\": 3, \"gamma\": \"big\"}", "schedule.gamma: must be a number"},
    {"{\"name\": \"StepLR\", \"step_size\": 3, \"foo\": 1}",
     "schedule.foo: StepLR has no parameter named \"foo\" (known: step_size, gamma, verbose)"},
    {"{\"name\": \"StepLR\", \"step_size\": 3, \"verbose\": 1}", "schedule.verbose: must be true or false"},
    {"{\"name\": \"MultiStepLR\"}", "schedule.milestones: required"},
    {"{\"name\": \"MultiStepLR\", \"milestones\": 3}", "schedule.milestones: must be an array"},
    {"{\"name\": \"MultiStepLR\", \"milestones\": [1, 2.5]}", "schedule.milestones[1]: must be an integer"},
    {"{\"name\": \"MultiStepLR\", \"milestones\": [1, -2]}", "schedule.milestones[1]: must be an integer in [0, "},
    {"{\"name\": \"ConstantLR\", \"factor\": 1.5}", "schedule.factor: must be [0, 1]"},
    {"{\"name\": \"ConstantLR\", \"factor\": 0}", "schedule.factor: must be > 0 when total_iters > 0"},
    {"{\"name\": \"ConstantLR\", \"total_iters\": -1}", "schedule.total_iters: must be an integer in [0, "},
    {"{\"name\": \"LinearLR\", \"start_factor\": 0}", "schedule.start_factor: must be (0, 1]"},
    {"{\"name\": \"LinearLR\", \"end_factor\": 1.5}", "schedule.end_factor: must be [0, 1]"},
    {"{\"name\": \"LinearLR\", \"total_iters\": 0}", "schedule.total_iters: must be an integer in [1, "},
    {"{\"name\": \"ExponentialLR\"}", "schedule.gamma: required by ExponentialLR"},
    {"{\"name\": \"PolynomialLR\", \"power\": -1}", "schedule.power: must be [0, inf)"},
    {"{\"name\": \"CosineAnnealingLR\", \"T_max\": 0}", "schedule.T_max: must be an integer in [1, "},
    {"{\"name\": \"CosineAnnealingLR\", \"T_max\": 10, \"eta_min\": -1}", "schedule.eta_min: must be [0, inf)"},
    {"{\"name\": \"CosineAnnealingWarmRestarts\", \"T_0\": 10, \"T_mult\": 0}", "schedule.T_mult: must be an integer in [1, "},
    {"{\"name\": \"CosineAnnealingWarmRestarts\", \"T_0\": 10.0}", "schedule.T_0: must be an integer"},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1}", "schedule.max_lr: required by CyclicLR"},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1, \"mode\": \"sine\"}",
     "schedule.mode: must be one of \"triangular\", \"triangular2\", \"exp_range\", got \"sine\""},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1, \"mode\": 1}", "schedule.mode: must be one of the strings"},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1, \"step_size_up\": 0}", "schedule.step_size_up: must be an integer in [1, "},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1, \"step_size_down\": 1.5}", "schedule.step_size_down: must be an integer or null"},
    {"{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1, \"scale_fn\": \"x\"}", "schedule.scale_fn: CyclicLR has no parameter"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1}", "schedule.total_steps: OneCycleLR needs total_steps, or epochs and steps_per_epoch"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"epochs\": 3}", "schedule.steps_per_epoch: required"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"steps_per_epoch\": 3}", "schedule.epochs: required"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 0}", "schedule.total_steps: must be an integer in [1, "},
    /* torch accepts the next three but raises ZeroDivisionError building the
     * scheduler, in its step total_steps, and in its step total_steps
     * (checked with torch 1.13). */
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 10, \"pct_start\": 0.1}",
     "schedule.pct_start: pct_start * total_steps must not be 1"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 10, \"pct_start\": 1.0}",
     "schedule.pct_start: leaves the last phase empty"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 5, \"pct_start\": 0.6, \"three_phase\": true}",
     "schedule.pct_start: leaves the last phase empty"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 10, \"pct_start\": 1.5}", "schedule.pct_start: must be [0, 1]"},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 10, \"anneal_strategy\": \"exp\"}",
     "schedule.anneal_strategy: must be one of \"cos\", \"linear\""},
    {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 10, \"div_factor\": 0}", "schedule.div_factor: must be (0, inf)"},
    {"{\"name\": \"ReduceLROnPlateau\", \"factor\": 1.0}", "schedule.factor: must be [0, 1)"},
    {"{\"name\": \"ReduceLROnPlateau\", \"mode\": \"avg\"}", "schedule.mode: must be one of \"min\", \"max\""},
    {"{\"name\": \"ReduceLROnPlateau\", \"threshold_mode\": \"pct\"}", "schedule.threshold_mode: must be one of \"rel\", \"abs\""},
    {"{\"name\": \"ReduceLROnPlateau\", \"patience\": -1}", "schedule.patience: must be an integer in [0, "},
    {"{\"name\": \"ReduceLROnPlateau\", \"min_lr\": [0.1]}", "schedule.min_lr: must be a number"},
    {"{\"name\": \"SequentialLR\", \"milestones\": []}", "schedule.schedulers: required by SequentialLR"},
    {"{\"name\": \"SequentialLR\", \"schedulers\": [{\"name\": \"LinearLR\"}, {\"name\": \"ExponentialLR\", \"gamma\": 0.9}], \"milestones\": []}",
     "schedule.milestones: SequentialLR needs one milestone fewer than schedulers, got 0 milestones for 2 schedulers"},
    {"{\"name\": \"SequentialLR\", \"schedulers\": [{\"name\": \"LinearLR\"}, {\"name\": \"ExponentialLR\"}], \"milestones\": [5]}",
     "schedule.schedulers[1].gamma: required by ExponentialLR"},
    {"{\"name\": \"SequentialLR\", \"schedulers\": [{\"name\": \"LinearLR\"}, {\"name\": \"LinearLR\"}, {\"name\": \"LinearLR\"}], \"milestones\": [5, 3]}",
     "schedule.milestones[1]: must not be less than the milestone before it"},
    {"{\"name\": \"SequentialLR\", \"schedulers\": {\"name\": \"LinearLR\"}, \"milestones\": []}", "schedule.schedulers: must be an array of schedules"},
    {"{\"name\": \"ChainedScheduler\"}", "schedule.schedulers: required by ChainedScheduler"},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": []}", "schedule.schedulers: must list 1 to 8 schedules, got 0"},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": [{\"name\": \"ReduceLROnPlateau\"}]}",
     "schedule.schedulers[0].name: ReduceLROnPlateau cannot be a child schedule"},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": [{\"name\": \"ChainedScheduler\", \"schedulers\": [{\"name\": \"LinearLR\"}]}]}",
     "schedule.schedulers[0].name: ChainedScheduler cannot be nested"},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": [{\"name\": \"LinearLR\"}, {\"name\": \"StepLR\", \"step_size\": 2, \"bogus\": 1}]}",
     "schedule.schedulers[1].bogus: StepLR has no parameter named \"bogus\""},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": [{\"name\": \"LinearLR\"}], \"milestones\": [1]}",
     "schedule.milestones: ChainedScheduler has no parameter named \"milestones\""},
    {"{\"name\": \"ChainedScheduler\", \"schedulers\": [5]}", "schedule.schedulers[0]: must be an object"},
};

START_TEST(test_bad_values_name_the_field)
{
    int count = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    for (int i = 0; i < count; i++) {
        paramd__schedule_config config;
        paramd__error error = {0};
        int result = parse_text(bad_cases[i].json, &config, &error);
        ck_assert_msg(result == PARAMD_E_BAD_HYPERPARAMETER, "%s: accepted (%d)",
                      bad_cases[i].json, result);
        ck_assert_int_eq(error.code, PARAMD_E_BAD_HYPERPARAMETER);
        ck_assert_msg(strncmp(error.message, bad_cases[i].message,
                              strlen(bad_cases[i].message)) == 0,
                      "%s: message \"%s\", expected it to start with \"%s\"", bad_cases[i].json,
                      error.message, bad_cases[i].message);
    }
    printf("schedule validation: %d bad configurations refused, each naming its field\n", count);
    fflush(stdout);
}
END_TEST

START_TEST(test_unknown_schedule_lists_known_ones)
{
    paramd__schedule_config config;
    paramd__error error = {0};
    ck_assert_int_eq(parse_text("{\"name\": \"WarmupLR\"}", &config, &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_msg(strncmp(error.message, "schedule.name: unknown schedule \"WarmupLR\" (known: ",
                          50) == 0,
                  "%s", error.message);
    for (int t = 0; t < paramd__schedule_type_count; t++)
        ck_assert_msg(strstr(error.message, paramd__schedule_types[t]->name) != NULL,
                      "%s does not list %s", error.message, paramd__schedule_types[t]->name);
    /* In a child too. */
    ck_assert_int_eq(parse_text("{\"name\": \"ChainedScheduler\", \"schedulers\": "
                                "[{\"name\": \"LinearLR\"}, {\"name\": \"Nope\"}]}",
                                &config, &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_msg(strstr(error.message, "schedule.schedulers[1].name: unknown schedule") ==
                      error.message,
                  "%s", error.message);
    ck_assert_int_eq(paramd__json_parse_schedule(NULL, &config, &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
    ck_assert_msg(strncmp(error.message, "schedule: required", 18) == 0, "%s", error.message);
}
END_TEST

START_TEST(test_names_are_case_insensitive)
{
    paramd__schedule_config config;
    paramd__error error = {0};
    ck_assert_int_eq(parse_text("{\"name\": \"cosineannealinglr\", \"T_max\": 10}", &config,
                                &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.schedule.type, &paramd__schedule_cosine_annealing_lr);
    ck_assert_int_eq(parse_text("{\"name\": \"SEQUENTIALLR\", \"schedulers\": [{\"name\": "
                                "\"linearlr\"}, {\"name\": \"steplr\", \"step_size\": 3}], "
                                "\"milestones\": [4]}",
                                &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.schedule.type, &paramd__schedule_sequential_lr);
    ck_assert_int_eq(config.child_count, 2);
    ck_assert_ptr_eq(config.children[1].type, &paramd__schedule_step_lr);
    /* Keyword names are exact, as in Python. */
    ck_assert_int_eq(parse_text("{\"name\": \"CosineAnnealingLR\", \"t_max\": 10}", &config,
                                &error),
                     PARAMD_E_BAD_HYPERPARAMETER);
}
END_TEST

/* The checks that depend on the optimizer. */
START_TEST(test_momentum_needs_a_momentum_optimizer)
{
    static const struct {
        const char *schedule, *optimizer, *message;
    } cases[] = {
        {"{\"name\": \"CyclicLR\", \"base_lr\": 0.001, \"max_lr\": 0.01}",
         "{\"name\": \"Adam\", \"lr\": 0.001}", "schedule.cycle_momentum: CyclicLR cycles a"},
        {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.01, \"total_steps\": 100}",
         "{\"name\": \"Adagrad\", \"lr\": 0.01}", "schedule.cycle_momentum: OneCycleLR cycles"},
        {"{\"name\": \"SequentialLR\", \"milestones\": [5], \"schedulers\": [{\"name\": "
         "\"LinearLR\"}, {\"name\": \"CyclicLR\", \"base_lr\": 0.001, \"max_lr\": 0.01}]}",
         "{\"name\": \"Adam\", \"lr\": 0.001}",
         "schedule.schedulers[1].cycle_momentum: CyclicLR cycles a"},
        {"{\"name\": \"OneCycleLR\", \"max_lr\": 0.01, \"total_steps\": 100, "
         "\"max_momentum\": 1.0}",
         "{\"name\": \"Adam\", \"lr\": 0.001}", "schedule.max_momentum: becomes the optimizer's beta1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paramd__schedule_config config;
        paramd__error error = {0};
        ck_assert_int_eq(parse_text(cases[i].schedule, &config, &error), PARAMD_OK);
        paramd__optimizer_config optimizer;
        parse_optimizer(cases[i].optimizer, &optimizer);
        paramd__schedule schedule;
        ck_assert_int_eq(
            paramd__schedule_init_for_optimizer(&schedule, &config, &optimizer, &error),
            PARAMD_E_BAD_HYPERPARAMETER);
        ck_assert_msg(strncmp(error.message, cases[i].message, strlen(cases[i].message)) == 0,
                      "%s: \"%s\", expected \"%s...\"", cases[i].schedule, error.message,
                      cases[i].message);
    }
    /* Without cycle_momentum both work with any optimizer. */
    paramd__schedule schedule;
    start("{\"name\": \"CyclicLR\", \"base_lr\": 0.001, \"max_lr\": 0.01, \"cycle_momentum\": "
          "false}",
          "{\"name\": \"Adam\", \"lr\": 0.001}", &schedule);
    ck_assert(!paramd__schedule_cycles_momentum(&schedule));
    ck_assert(isnan(paramd__schedule_momentum(&schedule)));
    start("{\"name\": \"OneCycleLR\", \"max_lr\": 0.01, \"total_steps\": 100}",
          "{\"name\": \"Adam\", \"lr\": 0.001, \"betas\": [0.9, 0.99]}", &schedule);
    ck_assert(paramd__schedule_cycles_momentum(&schedule));
    ck_assert(paramd__schedule_momentum(&schedule) == 0.95);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Where torch raises mid-run
 * ------------------------------------------------------------------------- */

/* OneCycleLR allows total_steps + 1 optimizer steps; the scheduler step
 * after that raises in torch and fails here, changing nothing. */
START_TEST(test_one_cycle_stops_after_total_steps)
{
    paramd__schedule schedule;
    start("{\"name\": \"OneCycleLR\", \"max_lr\": 0.1, \"total_steps\": 5}",
          "{\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9}", &schedule);
    paramd__error error = {0};
    for (int s = 0; s < 5; s++)
        ck_assert_int_eq(paramd__schedule_step(&schedule, NAN, &error), PARAMD_OK);
    paramd__schedule before = schedule;
    ck_assert_int_eq(paramd__schedule_step(&schedule, NAN, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "past its total_steps of 5") != NULL, "%s",
                  error.message);
    ck_assert_int_eq(memcmp(&before, &schedule, sizeof schedule), 0);
}
END_TEST

START_TEST(test_plateau_needs_a_loss)
{
    paramd__schedule schedule;
    start("{\"name\": \"ReduceLROnPlateau\", \"patience\": 0}", "{\"name\": \"SGD\", \"lr\": 0.5}",
          &schedule);
    ck_assert(paramd__schedule_needs_loss(&schedule.config));
    paramd__error error = {0};
    ck_assert_int_eq(paramd__schedule_step(&schedule, NAN, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "needs the loss") != NULL, "%s", error.message);
    ck_assert_uint_eq(schedule.step_count, 0);
    ck_assert_int_eq(paramd__schedule_step(&schedule, 1.0, &error), PARAMD_OK);
    ck_assert(paramd__schedule_lr(&schedule) == 0.5);
    ck_assert_int_eq(paramd__schedule_step(&schedule, 1.0, &error), PARAMD_OK);
    ck_assert(paramd__schedule_lr(&schedule) == 0.05);
}
END_TEST

/* torch computes 2. ** (cycle - 1), which overflows in cycle 1025: with
 * cycles of 2 steps, torch 1.13 raises OverflowError in the 2048th
 * scheduler step (checked with torch). */
START_TEST(test_cyclic_triangular2_overflows_as_torch)
{
    paramd__schedule schedule;
    start("{\"name\": \"CyclicLR\", \"base_lr\": 0.01, \"max_lr\": 0.1, \"step_size_up\": 1, "
          "\"step_size_down\": 1, \"mode\": \"triangular2\"}",
          "{\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9}", &schedule);
    paramd__error error = {0};
    for (int s = 0; s < 2047; s++)
        ck_assert_int_eq(paramd__schedule_step(&schedule, NAN, &error), PARAMD_OK);
    ck_assert(paramd__schedule_lr(&schedule) == 0.01);
    ck_assert_int_eq(paramd__schedule_step(&schedule, NAN, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_msg(strstr(error.message, "OverflowError") != NULL, "%s", error.message);
    ck_assert_uint_eq(schedule.step_count, 2047);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Description
 * ------------------------------------------------------------------------- */

START_TEST(test_description_fills_in_defaults)
{
    paramd__schedule_config config;
    paramd__error error = {0};
    ck_assert_int_eq(parse_text("{\"name\": \"sequentiallr\", \"milestones\": [10], "
                                "\"verbose\": true, \"schedulers\": [{\"name\": \"LinearLR\"}, "
                                "{\"name\": \"CyclicLR\", \"base_lr\": 0.1, \"max_lr\": 1}]}",
                                &config, &error),
                     PARAMD_OK);
    json_t *description = paramd__json_schedule(&config);
    ck_assert_ptr_nonnull(description);
    char *text = json_dumps(description, JSON_COMPACT | JSON_REAL_PRECISION(17));
    ck_assert_str_eq(
        text,
        "{\"name\":\"SequentialLR\",\"schedulers\":["
        "{\"name\":\"LinearLR\",\"start_factor\":0.33333333333333331,\"end_factor\":1.0,"
        "\"total_iters\":5},"
        "{\"name\":\"CyclicLR\",\"base_lr\":0.10000000000000001,\"max_lr\":1.0,"
        "\"step_size_up\":2000,\"step_size_down\":null,\"mode\":\"triangular\",\"gamma\":1.0,"
        "\"cycle_momentum\":true,\"base_momentum\":0.80000000000000004,"
        "\"max_momentum\":0.90000000000000002}],"
        "\"milestones\":[10]}");
    free(text);
    json_decref(description);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("schedule");
    TCase *golden = tcase_create("pytorch");
    tcase_add_test(golden, test_schedules_match_pytorch_exactly);
    tcase_add_test(golden, test_description_round_trips);
    tcase_add_test(golden, test_every_schedule_has_goldens);
    suite_add_tcase(suite, golden);
    TCase *validation = tcase_create("validation");
    tcase_add_test(validation, test_bad_values_name_the_field);
    tcase_add_test(validation, test_unknown_schedule_lists_known_ones);
    tcase_add_test(validation, test_names_are_case_insensitive);
    tcase_add_test(validation, test_momentum_needs_a_momentum_optimizer);
    tcase_add_test(validation, test_description_fills_in_defaults);
    suite_add_tcase(suite, validation);
    TCase *runtime = tcase_create("runtime");
    tcase_add_test(runtime, test_one_cycle_stops_after_total_steps);
    tcase_add_test(runtime, test_plateau_needs_a_loss);
    tcase_add_test(runtime, test_cyclic_triangular2_overflows_as_torch);
    suite_add_tcase(suite, runtime);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
