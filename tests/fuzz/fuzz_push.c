/*
 * fuzz_push.c - libFuzzer target for push bodies, POST
 * /v1/models/{model}/push, through the real route table.
 *
 * The first input byte chooses one of the models below (each exercising a
 * different part of the push pipeline); the rest is the request body.  The
 * model is created afresh, the body goes to paramd__http_dispatch exactly
 * as http.c hands over a complete request (the handler parses the JSON,
 * the fields, each gradient in every encoding, then pushes through the
 * consistency layer and the core), and the answer is serialised.  Then a
 * second, valid push checks that whatever the first did left the model
 * usable.  Nothing may crash, leak, read out of bounds or trip UBSan.
 *
 *   make fuzz                    every target for FUZZ_SECONDS each
 *   make test                    replays tests/fuzz/corpus/push/ and
 *                                tests/fuzz/crashes/push/
 */
#include "fuzz_server.h"

/* Tensors "w" [3] and "b" [2, 2] in every model. */
#define FUZZ_TENSORS                                                                            \
    "\"tensors\": [{\"name\": \"w\", \"shape\": [3], \"values\": [1, 2, 3]},"                  \
    "{\"name\": \"b\", \"shape\": [2, 2], \"init\": {\"name\": \"normal\", \"seed\": 7}}]"

static const char *const fuzz_push_models[] = {
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"AdamW\", \"lr\": 0.01}, \"clip\": {\"max_norm\": 1.0},"
    " \"nonfinite\": \"zero\", \"schedule\": {\"name\": \"StepLR\", \"step_size\": 2},"
    " \"grad_noise\": {\"eta\": 0.01, \"seed\": 1}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"Adam\", \"lr\": 0.01}, \"loss_scale\": \"dynamic\","
    " \"accumulate\": {\"steps\": 2, \"mode\": \"sum\"}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"SAM\", \"rho\": 0.05, \"base\": {\"name\": \"SGD\", \"lr\": 0.1}},"
    " \"averaging\": {\"ema\": {\"decay\": 0.9}}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"LBFGS\", \"lr\": 1}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"Lookahead\", \"k\": 2, \"base\": {\"name\": \"Muon\", \"lr\": 0.02}},"
    " \"nonfinite\": \"skip\", \"schedule\": {\"name\": \"ReduceLROnPlateau\", \"patience\": 0}, "
    FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"Adafactor\"}, " FUZZ_TENSORS "}",
    "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"consistency\": {\"mode\": \"sync\","
    " \"workers\": 1}, " FUZZ_TENSORS "}",
};

#define FUZZ_PUSH_MODEL_COUNT (sizeof fuzz_push_models / sizeof fuzz_push_models[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fuzz_create_model("m", fuzz_push_models[data[0] % FUZZ_PUSH_MODEL_COUNT]);
    fuzz_dispatch("POST", "/v1/models/m/push", data + 1, size - 1);
    static const char valid[] =
        "{\"grads\": {\"w\": [0.5, -1, 2], \"b\": [1, 1, 1, 1]}, \"worker\": \"a\", \"loss\": 1}";
    fuzz_dispatch("POST", "/v1/models/m/push", (const uint8_t *)valid, sizeof valid - 1);
    fuzz_delete_model("m");
    return 0;
}
