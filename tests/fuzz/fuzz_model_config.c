/*
 * fuzz_model_config.c - libFuzzer target for the model configuration, the
 * body of PUT /v1/models/{name} (and of the binary protocol's CREATE).
 *
 * The input is the request body.  It goes through the real parsers in the
 * order the server uses them: paramd__json_parse_body, then
 * paramd__json_parse_model_spec (optimizer and its wrappers, tensors,
 * initializers, constraints, param_groups, schedule, clip, nonfinite, loss
 * scaling, accumulation, gradient noise, consistency, averaging), then the
 * core's checks and paramd__core_create_model.  A model that is built is
 * described (GET's JSON), pushed to twice (the optimizer, the schedule and
 * the pipeline run with whatever the input configured) and deleted.
 * Models larger than FUZZ_MAX_MODEL_ELEMENTS are parsed and validated but
 * not built.  Nothing may crash, leak, read out of bounds or trip UBSan.
 *
 *   make fuzz                    every target for FUZZ_SECONDS each
 *   make test                    replays tests/fuzz/corpus/model_config/ and
 *                                tests/fuzz/crashes/model_config/
 */
#include "fuzz_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    paramd__server *server = fuzz_server_get();
    paramd__error error = {0};
    json_t *body = paramd__json_parse_body((const char *)data, size, &error);
    if (body == NULL)
        return 0;
    paramd__model_spec spec;
    int result = paramd__json_parse_model_spec(body, "fuzz", &spec, &error);
    if (result == PARAMD_OK)
        result = paramd__core_validate_spec(&spec, &error);
    size_t elements = 0;
    for (size_t i = 0; result == PARAMD_OK && i < spec.tensor_count; i++) {
        size_t count = 1;
        for (int d = 0; d < spec.tensors[i].dimension_count; d++) {
            int64_t dimension = spec.tensors[i].shape[d];
            if (dimension < 1 || dimension > FUZZ_MAX_MODEL_ELEMENTS) {
                count = FUZZ_MAX_MODEL_ELEMENTS + 1; /* refused or too large */
                break;
            }
            count *= (size_t)dimension;
            if (count > FUZZ_MAX_MODEL_ELEMENTS)
                break;
        }
        elements += count;
        if (elements > FUZZ_MAX_MODEL_ELEMENTS)
            result = PARAMD_E_BAD_REQUEST; /* valid, perhaps, but not built here */
    }
    paramd__model *model = NULL;
    if (result == PARAMD_OK)
        result = paramd__core_create_model(server, &spec, &model, &error);
    paramd__json_model_spec_free(&spec);
    json_decref(body);
    if (result != PARAMD_OK)
        return 0;
    json_t *description = paramd__json_describe_model(model);
    char *text = description ? json_dumps(description, PARAMD__JSON_DUMP_FLAGS) : NULL;
    free(text);
    json_decref(description);
    fuzz_push_all(model, 0.25f, 1.0);
    fuzz_push_all(model, -0.5f, 0.5);
    paramd__model_release(model);
    fuzz_delete_model("fuzz");
    return 0;
}
