/*
 * test_json_api.c - unit tests for server/json_api.h (with jansson).
 */
#include "test_util.h"

#include "base64.h"
#include "json_api.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t json_error;
    json_t *value = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &json_error);
    ck_assert_msg(value != NULL, "bad test JSON %s: %s", text, json_error.text);
    return value;
}

static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Asserts that error holds `code` and a message containing `needle`. */
#define ck_assert_error(error, expected_code, needle)                                      \
    do {                                                                                   \
        ck_assert_msg((error).code == (expected_code), "code %d, expected %d (%s)",       \
                      (error).code, (expected_code), (error).message);                     \
        ck_assert_msg(strstr((error).message, (needle)) != NULL,                          \
                      "message \"%s\" does not contain \"%s\"", (error).message, (needle)); \
    } while (0)

static double pair_second(const paramd__optimizer_config *config, const char *name)
{
    const paramd__hyperparameter_spec *spec =
        paramd__optimizer_find_hyperparameter(config->type, name);
    ck_assert_ptr_nonnull(spec);
    ck_assert_int_eq(spec->kind, PARAMD__HYPERPARAMETER_PAIR);
    return config->values[spec->slot + 1];
}

/* Parses an optimizer object; returns the result code. */
static int parse_optimizer_text(const char *text, paramd__optimizer_config *config,
                                paramd__error *error)
{
    json_t *object = parse(text);
    paramd__error_clear(error);
    int result = paramd__json_parse_optimizer(object, config, error);
    ck_assert_int_eq(result, error->code);
    json_decref(object);
    return result;
}

/* Expects the optimizer text to be rejected with code and a message naming needle. */
static void expect_optimizer_error(const char *text, int code, const char *needle)
{
    paramd__optimizer_config config;
    paramd__error error;
    int result = parse_optimizer_text(text, &config, &error);
    ck_assert_msg(result == code, "%s: result %d, expected %d (%s)", text, result, code,
                  error.message);
    ck_assert_error(error, code, needle);
}

/* ---------------------------------------------------------------------------
 * Optimizer configurations
 * ------------------------------------------------------------------------- */

START_TEST(test_optimizer_sgd)
{
    paramd__optimizer_config config;
    paramd__error error;
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9, "
                                          "\"nesterov\": true}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_sgd);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 0.1);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "momentum"), 0.9);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "nesterov"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "dampening"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "maximize"), 0.0);

    /* Integers are numbers too; case does not matter. */
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"SGD\", \"lr\": 1, \"weight_decay\": 0, "
                                          "\"maximize\": true}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_sgd);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "maximize"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "momentum"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "nesterov"), 0.0);

    /* torch compatibility flags are accepted. */
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"Sgd\", \"lr\": 0.5, \"foreach\": true, "
                                          "\"differentiable\": false}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_sgd);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 0.5);
}
END_TEST

START_TEST(test_optimizer_adam_defaults)
{
    paramd__optimizer_config config;
    paramd__error error;
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"ADAM\"}", &config, &error), PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_adam);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(pair_second(&config, "betas"), 0.999);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "amsgrad"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "maximize"), 0.0);

    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"adam\", \"lr\": 0.01, \"betas\": [0.8, "
                                          "0.99], \"eps\": 1e-6, \"amsgrad\": true, "
                                          "\"weight_decay\": 0.5, \"foreach\": true, "
                                          "\"fused\": false, \"capturable\": false}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_adam);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 0.01);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.8);
    ck_assert_double_eq(pair_second(&config, "betas"), 0.99);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-6);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "amsgrad"), 1.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.5);
    /* Boundary values: beta 0 is allowed, lr 0 is allowed. */
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"Adam\", \"lr\": 0, \"betas\": [0, 0]}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 0.0);
    ck_assert_double_eq(pair_second(&config, "betas"), 0.0);
}
END_TEST

START_TEST(test_optimizer_adamw_defaults)
{
    paramd__optimizer_config config;
    paramd__error error;
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"adamw\", \"lr\": 0.002}", &config, &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_adamw);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 0.002);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.01);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "betas"), 0.9);
    ck_assert_double_eq(pair_second(&config, "betas"), 0.999);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "eps"), 1e-8);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "amsgrad"), 0.0);

    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"AdamW\", \"weight_decay\": 0}", &config,
                                          &error),
                     PARAMD_OK);
    ck_assert_ptr_eq(config.type, &paramd__optimizer_adamw);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "weight_decay"), 0.0);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "lr"), 1e-3);
}
END_TEST

START_TEST(test_optimizer_errors)
{
    /* Unknown optimizer: the message lists every known name. */
    paramd__optimizer_config config;
    paramd__error error;
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"Shampoo\", \"lr\": 0.1}", &config, &error),
                     PARAMD_E_UNKNOWN_OPTIMIZER);
    ck_assert_error(error, PARAMD_E_UNKNOWN_OPTIMIZER, "optimizer.name");
    ck_assert_error(error, PARAMD_E_UNKNOWN_OPTIMIZER, "Shampoo");
    for (int i = 0; i < paramd__optimizer_type_count; i++)
        ck_assert_error(error, PARAMD_E_UNKNOWN_OPTIMIZER, paramd__optimizer_types[i]->name);
    ck_assert_error(error, PARAMD_E_UNKNOWN_OPTIMIZER, "SGD");
    ck_assert_error(error, PARAMD_E_UNKNOWN_OPTIMIZER, "AdamW");
    expect_optimizer_error("{\"name\": \"\"}", PARAMD_E_UNKNOWN_OPTIMIZER, "optimizer.name");
    expect_optimizer_error("{\"name\": \"adam w\"}", PARAMD_E_UNKNOWN_OPTIMIZER,
                           "optimizer.name");

    /* The name. */
    expect_optimizer_error("{\"lr\": 0.1}", PARAMD_E_BAD_REQUEST, "optimizer.name");
    expect_optimizer_error("{\"name\": 5}", PARAMD_E_BAD_REQUEST, "optimizer.name");
    expect_optimizer_error("{\"name\": null}", PARAMD_E_BAD_REQUEST, "optimizer.name");
    expect_optimizer_error("[\"SGD\"]", PARAMD_E_BAD_REQUEST, "optimizer");
    expect_optimizer_error("\"SGD\"", PARAMD_E_BAD_REQUEST, "optimizer");
    paramd__error_clear(&error);
    ck_assert_int_eq(paramd__json_parse_optimizer(NULL, &config, &error), PARAMD_E_BAD_REQUEST);
    ck_assert_error(error, PARAMD_E_BAD_REQUEST, "optimizer");

    /* Hyperparameters: unknown, out of range, wrong type. */
    expect_optimizer_error("{\"name\": \"Adam\", \"lrr\": 0.1}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lrr");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"betas\": [0.9, 0.9]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas");
    expect_optimizer_error("{\"name\": \"Adam\", \"momentum\": 0.9}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.momentum");
    expect_optimizer_error("{\"name\": \"Adam\", \"LR\": 0.1}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.LR");
    expect_optimizer_error("{\"name\": \"Adam\", \"lr\": -1}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": -0.5}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"AdamW\", \"betas\": [0.9, 1.0]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas[1]");
    expect_optimizer_error("{\"name\": \"AdamW\", \"betas\": [1.0, 0.999]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas[0]");
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": [-0.1, 0.999]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas[0]");
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": [0.9, 0.99, 0.999]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas");
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": [0.9]}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.betas");
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": 0.9}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.betas");
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": [0.9, \"0.999\"]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas");
    expect_optimizer_error("{\"name\": \"Adam\", \"lr\": \"x\"}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"Adam\", \"lr\": null}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"Adam\", \"lr\": true}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"Adam\", \"eps\": -1e-8}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.eps");
    expect_optimizer_error("{\"name\": \"Adam\", \"weight_decay\": -0.01}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.weight_decay");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"dampening\": 1.5}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.dampening");
    /* Booleans must be JSON true or false. */
    expect_optimizer_error("{\"name\": \"Adam\", \"amsgrad\": 1}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.amsgrad");
    expect_optimizer_error("{\"name\": \"Adam\", \"amsgrad\": \"true\"}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.amsgrad");
    expect_optimizer_error("{\"name\": \"Adam\", \"foreach\": 0}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.foreach");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"nesterov\": 1}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.nesterov");

    /* Required hyperparameters and cross-field checks. */
    expect_optimizer_error("{\"name\": \"SGD\"}", PARAMD_E_BAD_HYPERPARAMETER, "optimizer.lr");
    expect_optimizer_error("{\"name\": \"SGD\", \"momentum\": 0.9}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"nesterov\": true}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.nesterov");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"nesterov\": true, "
                           "\"momentum\": 0}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.nesterov");
    expect_optimizer_error("{\"name\": \"SGD\", \"lr\": 0.1, \"nesterov\": true, "
                           "\"momentum\": 0.9, \"dampening\": 0.1}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.nesterov");
}
END_TEST

START_TEST(test_optimizer_describe_round_trip)
{
    const char *texts[] = {
        "{\"name\": \"SGD\", \"lr\": 0.25, \"momentum\": 0.5, \"dampening\": 0.125}",
        "{\"name\": \"Adam\", \"lr\": 0.003, \"betas\": [0.5, 0.75], \"amsgrad\": true}",
        "{\"name\": \"AdamW\", \"weight_decay\": 0.1, \"maximize\": true}",
        "{\"name\": \"Muon\", \"ns_coefficients\": [3, -4, 2], \"ns_steps\": 3, "
        "\"adjust_lr_fn\": \"match_rms_adamw\"}",
        "{\"name\": \"Adafactor\", \"eps\": [null, 0.01], \"beta2_decay\": -0.5}",
        "{\"name\": \"LAMB\", \"trust_clip\": true, \"always_adapt\": false}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        paramd__optimizer_config config, again;
        paramd__error error;
        ck_assert_int_eq(parse_optimizer_text(texts[i], &config, &error), PARAMD_OK);
        json_t *described = paramd__json_optimizer(&config);
        ck_assert_ptr_nonnull(described);
        ck_assert_str_eq(json_string_value(json_object_get(described, "name")),
                         config.type->name);
        /* No-effect flags are not described. */
        ck_assert_ptr_null(json_object_get(described, "foreach"));
        paramd__error_clear(&error);
        ck_assert_int_eq(paramd__json_parse_optimizer(described, &again, &error), PARAMD_OK);
        ck_assert_ptr_eq(again.type, config.type);
        for (int h = 0; h < config.type->hyperparameter_count; h++) {
            const paramd__hyperparameter_spec *spec = &config.type->hyperparameters[h];
            int width = paramd__hyperparameter_width(spec->kind);
            for (int k = 0; k < width; k++)
                ck_assert_double_eq(again.values[spec->slot + k], config.values[spec->slot + k]);
        }
        json_decref(described);
    }
}
END_TEST


/* Integers, triples, choices (with JSON null as torch's None) and a null
 * inside a pair (Adafactor's eps1 = None). */
START_TEST(test_optimizer_new_kinds)
{
    paramd__optimizer_config config;
    paramd__error error;
    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"Muon\", \"ns_steps\": 7.0, "
                                          "\"adjust_lr_fn\": null, \"ns_coefficients\": [1, 2, 3]}",
                                          &config, &error),
                     PARAMD_OK);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "ns_steps"), 7);
    ck_assert_double_eq(paramd__optimizer_config_get(&config, "adjust_lr_fn"), 0);
    int slot = paramd__optimizer_find_hyperparameter(config.type, "ns_coefficients")->slot;
    ck_assert_double_eq(config.values[slot + 2], 3);
    json_t *described = paramd__json_optimizer(&config);
    ck_assert_str_eq(json_string_value(json_object_get(described, "adjust_lr_fn")), "original");
    ck_assert(json_is_integer(json_object_get(described, "ns_steps")));
    ck_assert_int_eq(json_array_size(json_object_get(described, "ns_coefficients")), 3);
    json_decref(described);

    ck_assert_int_eq(parse_optimizer_text("{\"name\": \"Adafactor\", \"eps\": [null, 0.01]}",
                                          &config, &error),
                     PARAMD_OK);
    slot = paramd__optimizer_find_hyperparameter(config.type, "eps")->slot;
    ck_assert_double_eq(config.values[slot], FLT_EPSILON);
    ck_assert_double_eq(config.values[slot + 1], 0.01);

    expect_optimizer_error("{\"name\": \"Muon\", \"ns_steps\": 2.5}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.ns_steps: must be an integer");
    expect_optimizer_error("{\"name\": \"Muon\", \"ns_steps\": \"5\"}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.ns_steps: must be an integer");
    expect_optimizer_error("{\"name\": \"Muon\", \"adjust_lr_fn\": \"cubic\"}",
                           PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.adjust_lr_fn: must be one of null, \"original\", "
                           "\"match_rms_adamw\"");
    expect_optimizer_error("{\"name\": \"Muon\", \"adjust_lr_fn\": 1}",
                           PARAMD_E_BAD_HYPERPARAMETER, "must be a string or null");
    expect_optimizer_error("{\"name\": \"Muon\", \"ns_coefficients\": [1, 2]}",
                           PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.ns_coefficients: must be an array of three numbers");
    /* null only where the schema allows it. */
    expect_optimizer_error("{\"name\": \"Adam\", \"betas\": [null, 0.9]}",
                           PARAMD_E_BAD_HYPERPARAMETER, "optimizer.betas: must be an array of two");
    expect_optimizer_error("{\"name\": \"Adafactor\", \"d\": 0.5}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.d: must be in [1, inf)");
    expect_optimizer_error("{\"name\": \"LARS\"}", PARAMD_E_BAD_HYPERPARAMETER,
                           "optimizer.lr: required by LARS");
}
END_TEST

/* ---------------------------------------------------------------------------
 * Float arrays
 * ------------------------------------------------------------------------- */

/* Decodes `text` as field "grad"; returns the result. */
static int decode_text(const char *text, float **values, size_t *count,
                       paramd__float_encoding *encoding, paramd__error *error)
{
    json_t *value = parse(text);
    paramd__error_clear(error);
    *values = (float *)(uintptr_t)1; /* must be overwritten on success */
    *count = 12345;
    int result = paramd__json_decode_floats(value, "grad", values, count, encoding, error);
    json_decref(value);
    return result;
}

static void expect_decode_error(const char *text, int code, const char *needle)
{
    float *values = NULL;
    size_t count = 0;
    paramd__float_encoding encoding;
    paramd__error error;
    json_t *value = parse(text);
    paramd__error_clear(&error);
    int result = paramd__json_decode_floats(value, "grad", &values, &count, &encoding, &error);
    json_decref(value);
    ck_assert_msg(result == code, "%s: result %d, expected %d (%s)", text, result, code,
                  error.message);
    ck_assert_error(error, code, needle);
    ck_assert_ptr_null(values); /* nothing handed out on error */
}

/* {"dtype": "float32", "b64": base64 of `count` floats}. */
static json_t *base64_object(const float *values, size_t count)
{
    size_t length = paramd_base64_encoded_length(count * sizeof(float));
    char *text = malloc(length + 1);
    ck_assert_ptr_nonnull(text);
    paramd_base64_encode(values, count * sizeof(float), text);
    text[length] = '\0';
    json_t *object = json_pack("{s:s,s:s}", "dtype", "float32", "b64", text);
    ck_assert_ptr_nonnull(object);
    free(text);
    return object;
}

START_TEST(test_decode_json_array)
{
    float *values;
    size_t count;
    paramd__float_encoding encoding = PARAMD__ENCODING_BASE64;
    paramd__error error;
    ck_assert_int_eq(decode_text("[1, 2.5, -3, 0.1, 1e-3, -0.0, 3.4028235e38]", &values, &count,
                                 &encoding, &error),
                     PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_JSON);
    ck_assert_uint_eq(count, 7);
    ck_assert_ptr_nonnull(values);
    ck_assert_float_eq(values[0], 1.0f);
    ck_assert_float_eq(values[1], 2.5f);
    ck_assert_float_eq(values[2], -3.0f);
    ck_assert_uint_eq(float_bits(values[3]), float_bits(0.1f));
    ck_assert_uint_eq(float_bits(values[4]), float_bits(1e-3f));
    ck_assert_uint_eq(float_bits(values[5]), 0x80000000u);
    ck_assert_float_eq(values[6], FLT_MAX);
    paramd__float_array_free(values, count);

    /* Empty array: count 0, no buffer. */
    encoding = PARAMD__ENCODING_BASE64;
    ck_assert_int_eq(decode_text("[]", &values, &count, &encoding, &error), PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_JSON);
    ck_assert_uint_eq(count, 0);
    ck_assert_ptr_null(values);

    /* A large array. */
    json_t *array = json_array();
    for (int i = 0; i < 5000; i++)
        json_array_append_new(array, json_real(i * 0.5 - 1000));
    paramd__error_clear(&error);
    ck_assert_int_eq(paramd__json_decode_floats(array, "grad", &values, &count, &encoding, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(count, 5000);
    for (int i = 0; i < 5000; i++)
        ck_assert_float_eq(values[i], (float)(i * 0.5 - 1000));
    paramd__float_array_free(values, count);
    json_decref(array);
}
END_TEST

START_TEST(test_decode_json_array_errors)
{
    expect_decode_error("[1, 2, \"x\"]", PARAMD_E_BAD_REQUEST, "grad[2]");
    expect_decode_error("[null]", PARAMD_E_BAD_REQUEST, "grad[0]");
    expect_decode_error("[1, [2]]", PARAMD_E_BAD_REQUEST, "grad[1]");
    expect_decode_error("[1, true]", PARAMD_E_BAD_REQUEST, "grad[1]");
    expect_decode_error("[0, 1e39]", PARAMD_E_NON_FINITE, "grad[1]");
    expect_decode_error("[-1e39]", PARAMD_E_NON_FINITE, "grad[0]");
    expect_decode_error("[1, 2, 3, 1e300]", PARAMD_E_NON_FINITE, "grad[3]");
    /* Just above the largest float32 (rounds to infinity). */
    expect_decode_error("[3.40282357e38]", PARAMD_E_NON_FINITE, "grad[0]");
    /* Neither an array nor an object. */
    expect_decode_error("5", PARAMD_E_BAD_REQUEST, "grad");
    expect_decode_error("\"AAAA\"", PARAMD_E_BAD_REQUEST, "grad");
    expect_decode_error("null", PARAMD_E_BAD_REQUEST, "grad");
}
END_TEST

START_TEST(test_decode_base64)
{
    const float expected[] = {1.0f, -2.5f, 3.25e-5f, bits_float(0x00000001u),
                              bits_float(0x807FFFFFu), -0.0f, FLT_MAX, -FLT_MIN, 0.1f};
    size_t n = sizeof expected / sizeof expected[0];
    json_t *object = base64_object(expected, n);
    float *values = NULL;
    size_t count = 0;
    paramd__float_encoding encoding = PARAMD__ENCODING_JSON;
    paramd__error error;
    paramd__error_clear(&error);
    ck_assert_int_eq(
        paramd__json_decode_floats(object, "grad", &values, &count, &encoding, &error), PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_BASE64);
    ck_assert_uint_eq(count, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(float_bits(values[i]), float_bits(expected[i]));
    paramd__float_array_free(values, count);
    json_decref(object);

    /* Known text: 1.0f is 00 00 80 3f, "AACAPw==". */
    ck_assert_int_eq(decode_text("{\"dtype\": \"float32\", \"b64\": \"AACAPw==\"}", &values, &count,
                                 &encoding, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_float_eq(values[0], 1.0f);
    paramd__float_array_free(values, count);
    /* Two floats (8 bytes, one '='): 1.0f, 2.0f. */
    ck_assert_int_eq(decode_text("{\"b64\": \"AACAPwAAAEA=\", \"dtype\": \"float32\"}", &values,
                                 &count, &encoding, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_float_eq(values[0], 1.0f);
    ck_assert_float_eq(values[1], 2.0f);
    paramd__float_array_free(values, count);
    /* Three floats: 12 bytes, no padding. */
    ck_assert_int_eq(decode_text("{\"dtype\": \"float32\", \"b64\": \"AACAPwAAAEAAAEBA\"}",
                                 &values, &count, &encoding, &error),
                     PARAMD_OK);
    ck_assert_uint_eq(count, 3);
    ck_assert_float_eq(values[2], 3.0f);
    paramd__float_array_free(values, count);

    /* Empty: count 0. */
    encoding = PARAMD__ENCODING_JSON;
    ck_assert_int_eq(decode_text("{\"dtype\": \"float32\", \"b64\": \"\"}", &values, &count,
                                 &encoding, &error),
                     PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_BASE64);
    ck_assert_uint_eq(count, 0);
    ck_assert_ptr_null(values);

    /* Every length 1..64 floats. */
    float many[64];
    for (size_t i = 0; i < 64; i++)
        many[i] = (float)i * -1.75f + 0.3f;
    for (size_t length = 1; length <= 64; length++) {
        object = base64_object(many, length);
        paramd__error_clear(&error);
        ck_assert_int_eq(
            paramd__json_decode_floats(object, "w", &values, &count, &encoding, &error),
            PARAMD_OK);
        ck_assert_uint_eq(count, length);
        ck_assert_mem_eq(values, many, length * sizeof(float));
        paramd__float_array_free(values, count);
        json_decref(object);
    }
}
END_TEST

START_TEST(test_decode_base64_errors)
{
    expect_decode_error("{\"dtype\": \"float64\", \"b64\": \"AACAPw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.dtype");
    /* 3 bytes: not whole float16 or bfloat16 values. */
    expect_decode_error("{\"dtype\": \"float16\", \"b64\": \"AQID\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"bfloat16\", \"b64\": \"AQ==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"FLOAT32\", \"b64\": \"AACAPw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.dtype");
    expect_decode_error("{\"b64\": \"AACAPw==\"}", PARAMD_E_BAD_ENCODING, "grad.dtype");
    expect_decode_error("{\"dtype\": 32, \"b64\": \"AACAPw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.dtype");
    expect_decode_error("{\"dtype\": \"float32\"}", PARAMD_E_BAD_ENCODING, "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": [0]}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    /* Bad base64: characters, length, padding, non-canonical bits. */
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AAC!Pw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AACAPw=\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AACAPw\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AACAPx==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AA-APw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AACA Pw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AAAAA===\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"====\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AA==AAAA\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AAAA\\u0000AAAAAAA\"}",
                        PARAMD_E_BAD_ENCODING, "grad.b64");
    /* 6 bytes and 1 byte: not whole float32 values. */
    const unsigned char six[6] = {1, 2, 3, 4, 5, 6};
    char text[16] = {0};
    paramd_base64_encode(six, sizeof six, text);
    ck_assert_str_eq(text, "AQIDBAUG");
    char body[96];
    snprintf(body, sizeof body, "{\"dtype\": \"float32\", \"b64\": \"%s\"}", text);
    expect_decode_error(body, PARAMD_E_BAD_ENCODING, "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AQ==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AQID\"}", PARAMD_E_BAD_ENCODING,
                        "grad.b64");
    /* Extra keys. */
    expect_decode_error("{\"dtype\": \"float32\", \"b64\": \"AACAPw==\", \"shape\": [1]}",
                        PARAMD_E_BAD_ENCODING, "grad.shape");
    expect_decode_error("{\"dtype\": \"float32\", \"data\": \"AACAPw==\"}", PARAMD_E_BAD_ENCODING,
                        "grad.data");
    expect_decode_error("{}", PARAMD_E_BAD_ENCODING, "grad");
}
END_TEST

START_TEST(test_encode_round_trip)
{
    const float special[] = {0.0f,
                             -0.0f,
                             1.0f,
                             -1.0f,
                             0.1f,
                             1.0f / 3.0f,
                             bits_float(0x00000001u), /* smallest denormal */
                             bits_float(0x80000001u),
                             bits_float(0x007FFFFFu), /* largest denormal */
                             FLT_MIN,
                             FLT_MAX,
                             -FLT_MAX,
                             16777217.0f,
                             3.14159265f,
                             1e-30f,
                             -7.5e20f};
    size_t n = sizeof special / sizeof special[0];
    float values[256];
    memcpy(values, special, sizeof special);
    uint32_t state = 2463534242u;
    for (size_t i = n; i < 256; i++) {
        /* Random finite bit patterns. */
        uint32_t bits;
        do {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            bits = state;
        } while ((bits & 0x7F800000u) == 0x7F800000u);
        values[i] = bits_float(bits);
    }
    n = 256;

    /* Base64: bit-exact, and the text is the base64 of the bytes. */
    json_t *object = paramd__json_encode_floats(values, n, PARAMD__ENCODING_BASE64);
    ck_assert_ptr_nonnull(object);
    ck_assert(json_is_object(object));
    ck_assert_uint_eq(json_object_size(object), 2);
    ck_assert_str_eq(json_string_value(json_object_get(object, "dtype")), "float32");
    json_t *expected_object = base64_object(values, n);
    ck_assert_str_eq(json_string_value(json_object_get(object, "b64")),
                     json_string_value(json_object_get(expected_object, "b64")));
    json_decref(expected_object);
    float *decoded = NULL;
    size_t count = 0;
    paramd__float_encoding encoding = PARAMD__ENCODING_JSON;
    paramd__error error;
    paramd__error_clear(&error);
    ck_assert_int_eq(
        paramd__json_decode_floats(object, "w", &decoded, &count, &encoding, &error), PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_BASE64);
    ck_assert_uint_eq(count, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(float_bits(decoded[i]) == float_bits(values[i]), "b64 element %zu", i);
    paramd__float_array_free(decoded, count);
    json_decref(object);

    /* JSON array: each element is a real that casts back to the float. */
    json_t *array = paramd__json_encode_floats(values, n, PARAMD__ENCODING_JSON);
    ck_assert_ptr_nonnull(array);
    ck_assert(json_is_array(array));
    ck_assert_uint_eq(json_array_size(array), n);
    for (size_t i = 0; i < n; i++) {
        json_t *element = json_array_get(array, i);
        ck_assert(json_is_real(element));
        ck_assert_msg(float_bits((float)json_real_value(element)) == float_bits(values[i]),
                      "json element %zu", i);
    }
    /* Through text with the dump flags (9 significant digits) and back. */
    char *text = json_dumps(array, PARAMD__JSON_DUMP_FLAGS);
    ck_assert_ptr_nonnull(text);
    json_t *reloaded = parse(text);
    free(text);
    paramd__error_clear(&error);
    ck_assert_int_eq(
        paramd__json_decode_floats(reloaded, "w", &decoded, &count, &encoding, &error), PARAMD_OK);
    ck_assert_int_eq(encoding, PARAMD__ENCODING_JSON);
    ck_assert_uint_eq(count, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(float_bits(decoded[i]) == float_bits(values[i]),
                      "text element %zu: %a != %a", i, (double)decoded[i], (double)values[i]);
    paramd__float_array_free(decoded, count);
    json_decref(reloaded);
    json_decref(array);

    /* Empty in both encodings. */
    object = paramd__json_encode_floats(NULL, 0, PARAMD__ENCODING_BASE64);
    ck_assert_ptr_nonnull(object);
    ck_assert_str_eq(json_string_value(json_object_get(object, "b64")), "");
    paramd__error_clear(&error);
    ck_assert_int_eq(
        paramd__json_decode_floats(object, "w", &decoded, &count, &encoding, &error), PARAMD_OK);
    ck_assert_uint_eq(count, 0);
    json_decref(object);
    array = paramd__json_encode_floats(NULL, 0, PARAMD__ENCODING_JSON);
    ck_assert_ptr_nonnull(array);
    ck_assert_uint_eq(json_array_size(array), 0);
    json_decref(array);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Model specs
 * ------------------------------------------------------------------------- */

static const char valid_body[] =
    "{\"optimizer\": {\"name\": \"adamw\", \"lr\": 0.001},"
    " \"tensors\": ["
    "  {\"name\": \"fc1.weight\", \"shape\": [2, 3], \"values\": [1, 2, 3, 4, 5, 6]},"
    "  {\"name\": \"fc1.bias\", \"shape\": [3], \"init\": {\"name\": \"Normal\", \"std\": 0.02,"
    "   \"seed\": 7}},"
    "  {\"name\": \"scale\", \"shape\": [], \"values\": {\"dtype\": \"float32\","
    "   \"b64\": \"AACAPw==\"}},"
    "  {\"name\": \"fc2.weight\", \"shape\": [4, 1, 2]},"
    "  {\"name\": \"u\", \"shape\": [5], \"init\": {\"name\": \"uniform\", \"a\": -1, \"b\": 1}},"
    "  {\"name\": \"c\", \"shape\": [2], \"init\": {\"name\": \"constant\", \"val\": 2.5}}"
    " ]}";

START_TEST(test_model_spec_valid)
{
    json_t *body = parse(valid_body);
    paramd__model_spec spec;
    paramd__error error;
    paramd__error_clear(&error);
    ck_assert_int_eq(paramd__json_parse_model_spec(body, "mnist", &spec, &error), PARAMD_OK);
    ck_assert_str_eq(spec.name, "mnist");
    ck_assert_ptr_eq(spec.optimizer.type, &paramd__optimizer_adamw);
    ck_assert_double_eq(paramd__optimizer_config_get(&spec.optimizer, "lr"), 0.001);
    ck_assert_double_eq(paramd__optimizer_config_get(&spec.optimizer, "weight_decay"), 0.01);
    ck_assert_uint_eq(spec.tensor_count, 6);

    const paramd__tensor_spec *t = &spec.tensors[0];
    ck_assert_str_eq(t->name, "fc1.weight");
    ck_assert_int_eq(t->dimension_count, 2);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert(t->has_values);
    ck_assert_uint_eq(t->value_count, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(t->values[i], (float)(i + 1));

    t = &spec.tensors[1];
    ck_assert_str_eq(t->name, "fc1.bias");
    ck_assert_int_eq(t->dimension_count, 1);
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert(!t->has_values);
    ck_assert_ptr_null(t->values);
    ck_assert_ptr_eq(t->initializer.type, paramd__initializer_find("normal"));
    ck_assert_double_eq(t->initializer.parameters[0], 0.0);  /* mean default */
    ck_assert_double_eq(t->initializer.parameters[1], 0.02); /* std */
    ck_assert_uint_eq(t->initializer.seed, 7);

    t = &spec.tensors[2];
    ck_assert_str_eq(t->name, "scale");
    ck_assert_int_eq(t->dimension_count, 0);
    ck_assert(t->has_values);
    ck_assert_uint_eq(t->value_count, 1);
    ck_assert_float_eq(t->values[0], 1.0f);

    t = &spec.tensors[3];
    ck_assert_str_eq(t->name, "fc2.weight");
    ck_assert_int_eq(t->dimension_count, 3);
    ck_assert_int_eq(t->shape[0], 4);
    ck_assert_int_eq(t->shape[1], 1);
    ck_assert_int_eq(t->shape[2], 2);
    ck_assert(!t->has_values);
    ck_assert_ptr_eq(t->initializer.type, paramd__initializer_find("zeros"));
    ck_assert_uint_eq(t->initializer.seed, 0);

    t = &spec.tensors[4];
    ck_assert_ptr_eq(t->initializer.type, paramd__initializer_find("uniform"));
    ck_assert_double_eq(t->initializer.parameters[0], -1.0);
    ck_assert_double_eq(t->initializer.parameters[1], 1.0);

    t = &spec.tensors[5];
    ck_assert_ptr_eq(t->initializer.type, paramd__initializer_find("constant"));
    ck_assert_double_eq(t->initializer.parameters[0], 2.5);

    /* The spec builds a model with those contents. */
    paramd__model *model = paramd__model_create(&spec, &error);
    ck_assert_msg(model != NULL, "%s", error.message);
    ck_assert_uint_eq(model->tensor_count, 6);
    ck_assert_uint_eq(model->parameter_count, 6 + 3 + 1 + 8 + 5 + 2);
    paramd__tensor *tensor = paramd__model_find_tensor(model, "fc1.weight");
    ck_assert_ptr_nonnull(tensor);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(tensor->values[i], (float)(i + 1));
    tensor = paramd__model_find_tensor(model, "c");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_float_eq(tensor->values[0], 2.5f);
    ck_assert_float_eq(tensor->values[1], 2.5f);
    tensor = paramd__model_find_tensor(model, "scale");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_uint_eq(tensor->count, 1);
    ck_assert_float_eq(tensor->values[0], 1.0f);
    paramd__model_release(model);

    paramd__json_model_spec_free(&spec);
    ck_assert_uint_eq(spec.tensor_count, 0);
    ck_assert_ptr_null(spec.tensors);
    json_decref(body);
}
END_TEST

/* Parses body (a first valid tensor with values, so that error paths must
 * free decoded buffers, then `second` as tensors[1]) and expects an error. */
static void expect_tensor_error(const char *second, int code, const char *needle)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": ["
             "{\"name\": \"a\", \"shape\": [2], \"values\": [1, 2]}, %s]}",
             second);
    json_t *body = parse(text);
    paramd__model_spec spec;
    paramd__error error;
    paramd__error_clear(&error);
    int result = paramd__json_parse_model_spec(body, "m", &spec, &error);
    ck_assert_msg(result == code, "%s: result %d, expected %d (%s)", second, result, code,
                  error.message);
    ck_assert_error(error, code, needle);
    /* The spec records what it holds, so free releases the first tensor's values. */
    ck_assert_uint_eq(spec.tensor_count, 2);
    ck_assert(spec.tensors[0].has_values);
    ck_assert_ptr_nonnull(spec.tensors[0].values);
    paramd__json_model_spec_free(&spec);
    ck_assert_uint_eq(spec.tensor_count, 0);
    ck_assert_ptr_null(spec.tensors);
    json_decref(body);
}

/* A shape that is well-formed JSON but semantically invalid: rejected by the
 * parser or else by model creation, either way naming the dimension. */
static void expect_shape_rejected(const char *second, const char *needle)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": ["
             "{\"name\": \"a\", \"shape\": [2], \"values\": [1, 2]}, %s]}",
             second);
    json_t *body = parse(text);
    paramd__model_spec spec;
    paramd__error error;
    paramd__error_clear(&error);
    int result = paramd__json_parse_model_spec(body, "m", &spec, &error);
    if (result == PARAMD_OK) {
        paramd__model *model = paramd__model_create(&spec, &error);
        ck_assert_ptr_null(model);
        result = error.code;
    }
    ck_assert_msg(result == PARAMD_E_BAD_REQUEST, "%s: result %d (%s)", second, result,
                  error.message);
    ck_assert_error(error, PARAMD_E_BAD_REQUEST, needle);
    paramd__json_model_spec_free(&spec);
    json_decref(body);
}

START_TEST(test_model_spec_tensor_errors)
{
    /* Shapes. */
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1]}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].shape");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [2.5]}", PARAMD_E_BAD_REQUEST,
                        "tensors[1].shape[0]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [3, \"4\"]}", PARAMD_E_BAD_REQUEST,
                        "tensors[1].shape[1]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [3, null]}", PARAMD_E_BAD_REQUEST,
                        "tensors[1].shape[1]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": 3}", PARAMD_E_BAD_REQUEST,
                        "tensors[1].shape");
    expect_tensor_error("{\"name\": \"b\"}", PARAMD_E_BAD_REQUEST, "tensors[1].shape");
    expect_shape_rejected("{\"name\": \"b\", \"shape\": [0, 3]}", "tensors[1].shape[0]");
    expect_shape_rejected("{\"name\": \"b\", \"shape\": [3, -2]}", "tensors[1].shape[1]");
    /* Names and fields. */
    expect_tensor_error("{\"shape\": [1]}", PARAMD_E_BAD_REQUEST, "tensors[1].name");
    expect_tensor_error("{\"name\": 7, \"shape\": [1]}", PARAMD_E_BAD_REQUEST, "tensors[1].name");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"dtype\": \"float32\"}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].dtype");
    expect_tensor_error("[1]", PARAMD_E_BAD_REQUEST, "tensors[1]");
    /* Values. */
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"values\": [1], \"init\": "
                        "{\"name\": \"zeros\"}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [3], \"values\": [1, 2, \"x\"]}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].values[2]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [2], \"values\": [1, 1e39]}",
                        PARAMD_E_NON_FINITE, "tensors[1].values[1]");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"values\": {\"dtype\": \"float64\", "
                        "\"b64\": \"AACAPw==\"}}",
                        PARAMD_E_BAD_ENCODING, "tensors[1].values.dtype");
    /* Initializers. */
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"xavier\"}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.name");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"std\": 1}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.name");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": \"zeros\"}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"constant\"}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.val");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"normal\", "
                        "\"seed\": -1}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.seed");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"normal\", "
                        "\"seed\": 1.5}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.seed");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"normal\", "
                        "\"sd\": 1}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.sd");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"normal\", "
                        "\"std\": -1}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.std");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"normal\", "
                        "\"mean\": \"0\"}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.mean");
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"zeros\", "
                        "\"val\": 1}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init.val");
}
END_TEST

START_TEST(test_model_spec_uniform_bounds_error)
{
    /* a > b is refused, and the message names the tensor's init field. */
    expect_tensor_error("{\"name\": \"b\", \"shape\": [1], \"init\": {\"name\": \"uniform\", "
                        "\"a\": 1, \"b\": 0}}",
                        PARAMD_E_BAD_REQUEST, "tensors[1].init");
}
END_TEST

/* Top-level errors: whatever the function leaves in spec, free releases it. */
static void expect_body_error(const char *text, int code, const char *needle)
{
    json_t *body = parse(text);
    paramd__model_spec spec;
    paramd__error error;
    paramd__error_clear(&error);
    int result = paramd__json_parse_model_spec(body, "m", &spec, &error);
    ck_assert_msg(result == code, "%s: result %d, expected %d (%s)", text, result, code,
                  error.message);
    ck_assert_error(error, code, needle);
    paramd__json_model_spec_free(&spec);
    ck_assert_uint_eq(spec.tensor_count, 0);
    ck_assert_ptr_null(spec.tensors);
    json_decref(body);
}

START_TEST(test_model_spec_body_errors)
{
    expect_body_error("[]", PARAMD_E_BAD_REQUEST, "request body");
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": "
                      "[{\"name\": \"a\", \"shape\": [1]}], \"model\": \"x\"}",
                      PARAMD_E_BAD_REQUEST, "model");
    expect_body_error("{\"tensors\": [{\"name\": \"a\", \"shape\": [1]}]}", PARAMD_E_BAD_REQUEST,
                      "optimizer");
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\"}, \"tensors\": "
                      "[{\"name\": \"a\", \"shape\": [1]}]}",
                      PARAMD_E_BAD_HYPERPARAMETER, "optimizer.lr");
    expect_body_error("{\"optimizer\": {\"name\": \"NoSuchOptimizer\"}, \"tensors\": "
                      "[{\"name\": \"a\", \"shape\": [1]}]}",
                      PARAMD_E_UNKNOWN_OPTIMIZER, "optimizer.name");
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}}", PARAMD_E_BAD_REQUEST,
                      "tensors");
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": []}",
                      PARAMD_E_BAD_REQUEST, "tensors");
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": {}}",
                      PARAMD_E_BAD_REQUEST, "tensors");
    /* The first tensor bad: nothing decoded to leak. */
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": "
                      "[{\"name\": \"a\", \"shape\": [1], \"values\": [\"1\"]}]}",
                      PARAMD_E_BAD_REQUEST, "tensors[0].values[0]");
    /* A later tensor bad after several decoded ones (b64 and arrays). */
    expect_body_error("{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.1}, \"tensors\": ["
                      "{\"name\": \"a\", \"shape\": [1], \"values\": [1]},"
                      "{\"name\": \"b\", \"shape\": [1], \"values\": {\"dtype\": \"float32\", "
                      "\"b64\": \"AACAPw==\"}},"
                      "{\"name\": \"c\", \"shape\": [1], \"init\": {\"name\": \"normal\"}},"
                      "{\"name\": \"d\", \"shape\": [1], \"values\": {\"dtype\": \"float32\", "
                      "\"b64\": \"AACAP===\"}}]}",
                      PARAMD_E_BAD_ENCODING, "tensors[3].values.b64");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("json_api");
    TCase *optimizer = tcase_create("optimizer");
    tcase_add_test(optimizer, test_optimizer_sgd);
    tcase_add_test(optimizer, test_optimizer_adam_defaults);
    tcase_add_test(optimizer, test_optimizer_adamw_defaults);
    tcase_add_test(optimizer, test_optimizer_errors);
    tcase_add_test(optimizer, test_optimizer_describe_round_trip);
    tcase_add_test(optimizer, test_optimizer_new_kinds);
    suite_add_tcase(suite, optimizer);
    TCase *floats = tcase_create("floats");
    tcase_add_test(floats, test_decode_json_array);
    tcase_add_test(floats, test_decode_json_array_errors);
    tcase_add_test(floats, test_decode_base64);
    tcase_add_test(floats, test_decode_base64_errors);
    tcase_add_test(floats, test_encode_round_trip);
    suite_add_tcase(suite, floats);
    TCase *model = tcase_create("model_spec");
    tcase_add_test(model, test_model_spec_valid);
    tcase_add_test(model, test_model_spec_tensor_errors);
    tcase_add_test(model, test_model_spec_uniform_bounds_error);
    tcase_add_test(model, test_model_spec_body_errors);
    suite_add_tcase(suite, model);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
