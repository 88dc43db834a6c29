/*
 * fuzz_patch.c - libFuzzer target for PATCH /v1/models/{model} bodies
 * (hyperparameters, param_groups, clip, schedule, nonfinite, grad_noise,
 * loss_scale), through the real route table.
 *
 * The first input byte chooses one of the models below; the rest is the
 * request body.  The model is created afresh, the body goes to
 * paramd__http_dispatch (paramd__json_parse_model_patch, then
 * paramd__core_patch_model's validation and commit, then the description),
 * and a valid push follows, so that an accepted patch runs the optimizer,
 * schedule and pipeline it configured.  Nothing may crash, leak, read out
 * of bounds or trip UBSan.
 *
 *   make fuzz                    every target for FUZZ_SECONDS each
 *   make test                    replays tests/fuzz/corpus/patch/ and
 *                                tests/fuzz/crashes/patch/
 */
#include "fuzz_server.h"

#define FUZZ_TENSORS                                                                            \
    "\"tensors\": [{\"name\": \"w\", \"shape\": [3], \"values\": [1, 2, 3]},"                  \
    "{\"name\": \"b\", \"shape\": [2, 2]}]"

static const char *const fuzz_patch_models[] = {
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9},"
    " \"param_groups\": [{\"tensors\": [\"b\"], \"weight_decay\": 0.1}], " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.01}, \"clip\": {\"value\": 1.0},"
    " \"schedule\": {\"name\": \"CosineAnnealingLR\", \"T_max\": 10}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"Adam\", \"lr\": 0.01}, \"loss_scale\": \"dynamic\","
    " \"grad_noise\": {\"eta\": 0.01}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"RMSprop\", \"lr\": 0.01, \"centered\": true},"
    " \"nonfinite\": \"skip\", " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"Lion\", \"lr\": 0.001}, \"accumulate\": 2, " FUZZ_TENSORS "}",
};

#define FUZZ_PATCH_MODEL_COUNT (sizeof fuzz_patch_models / sizeof fuzz_patch_models[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fuzz_create_model("m", fuzz_patch_models[data[0] % FUZZ_PATCH_MODEL_COUNT]);
    fuzz_dispatch("PATCH", "/v1/models/m", data + 1, size - 1);
    static const char valid[] =
        "{\"grads\": {\"w\": [0.5, -1, 2], \"b\": [1, 1, 1, 1]}, \"loss\": 1}";
    fuzz_dispatch("POST", "/v1/models/m/push", (const uint8_t *)valid, sizeof valid - 1);
    fuzz_dispatch("POST", "/v1/models/m/push", (const uint8_t *)valid, sizeof valid - 1);
    fuzz_dispatch("GET", "/v1/models/m", (const uint8_t *)"", 0);
    fuzz_delete_model("m");
    return 0;
}
