/* json_api.c - see json_api.h. */
#define _DEFAULT_SOURCE
#include "json_api.h"

#include "lbfgs.h"

#include "base64.h"
#include "half.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "paramd's float32 encodings assume a little-endian host"
#endif

/* ---------------------------------------------------------------------------
 * Float arrays
 * ------------------------------------------------------------------------- */

const char *paramd__encoding_dtype(paramd__float_encoding encoding)
{
    switch (encoding) {
    case PARAMD__ENCODING_BASE64_FLOAT16:
        return "float16";
    case PARAMD__ENCODING_BASE64_BFLOAT16:
        return "bfloat16";
    default:
        return "float32";
    }
}

int paramd__encoding_from_dtype(const char *dtype, paramd__float_encoding *encoding)
{
    static const paramd__float_encoding encodings[] = {
        PARAMD__ENCODING_BASE64, PARAMD__ENCODING_BASE64_FLOAT16,
        PARAMD__ENCODING_BASE64_BFLOAT16};
    for (size_t i = 0; i < sizeof encodings / sizeof encodings[0]; i++)
        if (strcmp(dtype, paramd__encoding_dtype(encodings[i])) == 0) {
            *encoding = encodings[i];
            return PARAMD_OK;
        }
    return PARAMD_E_BAD_ENCODING;
}

/* Bytes per element on the wire. */
static size_t element_size(paramd__float_encoding encoding)
{
    return encoding == PARAMD__ENCODING_BASE64_FLOAT16 ||
                   encoding == PARAMD__ENCODING_BASE64_BFLOAT16
               ? 2
               : sizeof(float);
}

/* Base64 text in chunks of this many characters decodes to (and 16-bit
 * values encode from) chunks of 3/4 as many bytes, with no padding between
 * chunks: a stack buffer per chunk, no tensor-sized temporary. */
#define BASE64_CHUNK_CHARACTERS 4096
#define BASE64_CHUNK_BYTES (BASE64_CHUNK_CHARACTERS / 4 * 3)

/* Decodes base64 of 16-bit values (float16 or bfloat16) into count floats. */
static bool decode_base64_halves(const char *text, size_t length, size_t bytes,
                                 paramd__float_encoding encoding, float *values)
{
    unsigned char chunk[BASE64_CHUNK_BYTES];
    size_t written = 0;
    for (size_t position = 0; position < length; position += BASE64_CHUNK_CHARACTERS) {
        size_t characters = length - position < BASE64_CHUNK_CHARACTERS
                                ? length - position
                                : BASE64_CHUNK_CHARACTERS;
        bool last = position + characters == length;
        long long got = paramd_base64_decode(text + position, characters, chunk, sizeof chunk);
        /* Padding is only allowed at the very end: every other chunk must
         * decode to a full chunk of bytes. */
        if (got < 0 || (size_t)got != (last ? bytes - written : BASE64_CHUNK_BYTES))
            return false;
        if (encoding == PARAMD__ENCODING_BASE64_FLOAT16)
            paramd_float16_decode(chunk, values + written / 2, (size_t)got / 2);
        else
            paramd_bfloat16_decode(chunk, values + written / 2, (size_t)got / 2);
        written += (size_t)got;
    }
    return written == bytes;
}

static int decode_base64_floats(const json_t *object, const char *field, float **values,
                                size_t *count, paramd__float_encoding *encoding,
                                paramd__error *error)
{
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)object, key, member) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "b64") != 0)
            return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                     "%s.%s: unknown field (expected \"dtype\" and \"b64\")",
                                     field, key);
    }
    const json_t *dtype = json_object_get(object, "dtype");
    const json_t *data = json_object_get(object, "b64");
    if (!json_is_string(dtype) ||
        paramd__encoding_from_dtype(json_string_value(dtype), encoding) != PARAMD_OK)
        return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                 "%s.dtype: must be \"float32\", \"float16\" or \"bfloat16\"",
                                 field);
    if (!json_is_string(data))
        return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                 "%s.b64: must be a base64 string", field);
    size_t length = json_string_length(data);
    const char *text = json_string_value(data);
    /* The exact decoded size, so the buffer is allocated once at its size. */
    size_t padding = 0;
    if (length >= 1 && text[length - 1] == '=')
        padding = length >= 2 && text[length - 2] == '=' ? 2 : 1;
    size_t bytes = length % 4 == 0 ? length / 4 * 3 - padding : 1;
    if (length % 4 != 0)
        return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                 "%s.b64: not valid padded base64 (length %zu is not a "
                                 "multiple of 4)",
                                 field, length);
    size_t size = element_size(*encoding);
    if (bytes % size != 0)
        return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                 "%s.b64: %zu bytes is not a whole number of %s values", field,
                                 bytes, paramd__encoding_dtype(*encoding));
    size_t decoded = bytes / size;
    float *buffer = NULL;
    if (decoded > 0) {
        buffer = paramd__float_array_alloc(decoded);
        if (buffer == NULL)
            return paramd__error_set(error, PARAMD_E_NO_MEMORY, "%s: out of memory", field);
        bool valid = size == sizeof(float)
                         ? paramd_base64_decode(text, length, buffer, bytes) == (long long)bytes
                         : decode_base64_halves(text, length, bytes, *encoding, buffer);
        if (!valid) {
            paramd__float_array_free(buffer, decoded);
            return paramd__error_set(error, PARAMD_E_BAD_ENCODING,
                                     "%s.b64: not valid padded base64", field);
        }
    }
    *values = buffer;
    *count = decoded;
    return PARAMD_OK;
}

int paramd__json_decode_floats(const json_t *value, const char *field, float **values,
                               size_t *count, paramd__float_encoding *encoding,
                               paramd__error *error)
{
    if (json_is_object(value))
        return decode_base64_floats(value, field, values, count, encoding, error);
    if (!json_is_array(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: must be an array of numbers or "
                                 "{\"dtype\": \"float32\" (or \"float16\", \"bfloat16\"), "
                                 "\"b64\": ...}",
                                 field);
    *encoding = PARAMD__ENCODING_JSON;
    size_t length = json_array_size(value);
    *values = NULL;
    *count = 0;
    if (length == 0)
        return PARAMD_OK;
    float *buffer = paramd__float_array_alloc(length);
    if (buffer == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "%s: out of memory", field);
    for (size_t i = 0; i < length; i++) {
        const json_t *element = json_array_get(value, i);
        if (!json_is_number(element)) {
            paramd__float_array_free(buffer, length);
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s[%zu]: must be a number",
                                     field, i);
        }
        double number = json_number_value(element);
        buffer[i] = (float)number;
        if (!isfinite(buffer[i])) {
            paramd__float_array_free(buffer, length);
            return paramd__error_set(error, PARAMD_E_NON_FINITE,
                                     "%s[%zu]: %g is outside the float32 range", field, i,
                                     number);
        }
    }
    *values = buffer;
    *count = length;
    return PARAMD_OK;
}

/* Writes count values as base64 in `encoding` to text (the caller provides
 * base64_length(encoding, count) characters). */
static void encode_base64_values(const float *values, size_t count,
                                 paramd__float_encoding encoding, char *text)
{
    if (element_size(encoding) == sizeof(float)) {
        paramd_base64_encode(values, count * sizeof(float), text);
        return;
    }
    unsigned char chunk[BASE64_CHUNK_BYTES];
    const size_t per_chunk = BASE64_CHUNK_BYTES / 2;
    for (size_t begin = 0; begin < count; begin += per_chunk) {
        size_t n = count - begin < per_chunk ? count - begin : per_chunk;
        if (encoding == PARAMD__ENCODING_BASE64_FLOAT16)
            paramd_float16_encode(values + begin, chunk, n);
        else
            paramd_bfloat16_encode(values + begin, chunk, n);
        paramd_base64_encode(chunk, 2 * n, text);
        text += paramd_base64_encoded_length(2 * n);
    }
}

static size_t base64_length(paramd__float_encoding encoding, size_t count)
{
    return paramd_base64_encoded_length(count * element_size(encoding));
}

json_t *paramd__json_encode_floats(const float *values, size_t count,
                                   paramd__float_encoding encoding)
{
    if (encoding != PARAMD__ENCODING_JSON) {
        size_t length = base64_length(encoding, count);
        char *text = malloc(length + 1);
        if (text == NULL)
            return NULL;
        encode_base64_values(values, count, encoding, text);
        text[length] = '\0';
        json_t *string = json_stringn_nocheck(text, length);
        free(text);
        if (string == NULL)
            return NULL;
        json_t *object =
            json_pack("{s:s,s:o}", "dtype", paramd__encoding_dtype(encoding), "b64", string);
        return object;
    }
    json_t *array = json_array();
    if (array == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (json_array_append_new(array, json_real(values[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

/* Writes {"step": N, <header>"<key>": {"name": floats, ...}} (see
 * paramd__json_write_weights). */
static char *write_tensor_reply(uint64_t step, const char *header, const char *key,
                                const paramd__tensor_io *items,
                                const paramd__float_encoding *encodings, size_t count,
                                size_t *length)
{
    static const char base64_open[] = "{\"dtype\":\"bfloat16\",\"b64\":\"";
    char **arrays = calloc(count ? count : 1, sizeof *arrays);
    if (arrays == NULL)
        return NULL;
    /* First pass: format JSON arrays and add up the size. */
    size_t total = 64 + strlen(header) + strlen(key);
    char *text = NULL;
    for (size_t i = 0; i < count; i++) {
        total += strlen(items[i].tensor->name) + 4;
        if (encodings[i] != PARAMD__ENCODING_JSON) {
            total += sizeof base64_open + 2 + base64_length(encodings[i], paramd__tensor_io_count(&items[i]));
        } else {
            json_t *array = paramd__json_encode_floats(items[i].weights, paramd__tensor_io_count(&items[i]),
                                                       PARAMD__ENCODING_JSON);
            arrays[i] = array ? json_dumps(array, PARAMD__JSON_DUMP_FLAGS) : NULL;
            json_decref(array);
            if (arrays[i] == NULL)
                goto done;
            total += strlen(arrays[i]);
        }
    }
    text = malloc(total);
    if (text == NULL)
        goto done;
    /* Second pass: write. */
    size_t n = (size_t)snprintf(text, total, "{\"step\":%llu,%s\"%s\":{",
                                (unsigned long long)step, header, key);
    for (size_t i = 0; i < count; i++) {
        n += (size_t)snprintf(text + n, total - n, "%s\"%s\":", i ? "," : "",
                              items[i].tensor->name);
        if (encodings[i] != PARAMD__ENCODING_JSON) {
            n += (size_t)snprintf(text + n, total - n, "{\"dtype\":\"%s\",\"b64\":\"",
                                  paramd__encoding_dtype(encodings[i]));
            encode_base64_values(items[i].weights, paramd__tensor_io_count(&items[i]), encodings[i],
                                 text + n);
            n += base64_length(encodings[i], paramd__tensor_io_count(&items[i]));
            memcpy(text + n, "\"}", 2);
            n += 2;
        } else {
            size_t array_length = strlen(arrays[i]);
            memcpy(text + n, arrays[i], array_length);
            n += array_length;
        }
    }
    memcpy(text + n, "}}\n", 4);
    *length = n + 3;
done:
    for (size_t i = 0; i < count; i++)
        free(arrays[i]);
    free(arrays);
    return text;
}

char *paramd__json_write_weights(uint64_t step, const paramd__tensor_io *items,
                                 const paramd__float_encoding *encodings, size_t count,
                                 size_t *length)
{
    return write_tensor_reply(step, "", "weights", items, encodings, count, length);
}

/* Writes a finite double with the fewest digits that read back exactly. */
static void format_double(char *buffer, size_t size, double value)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buffer, size, "%.*g", digits, value);
        if (strtod(buffer, NULL) == value)
            return;
    }
}

/* A growing text buffer for reply headers. */
typedef struct text_buffer {
    char *text;
    size_t length, capacity;
    bool failed;
} text_buffer;

static void text_append(text_buffer *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void text_append(text_buffer *buffer, const char *format, ...)
{
    if (buffer->failed)
        return;
    for (;;) {
        va_list arguments;
        va_start(arguments, format);
        size_t room = buffer->capacity - buffer->length;
        int n = vsnprintf(buffer->text ? buffer->text + buffer->length : NULL, room, format,
                          arguments);
        va_end(arguments);
        if (n < 0) {
            buffer->failed = true;
            return;
        }
        if ((size_t)n < room) {
            buffer->length += (size_t)n;
            return;
        }
        size_t capacity = 2 * buffer->capacity + (size_t)n + 64;
        char *text = realloc(buffer->text, capacity);
        if (text == NULL) {
            buffer->failed = true;
            return;
        }
        buffer->text = text;
        buffer->capacity = capacity;
    }
}

char *paramd__json_write_push_reply(const paramd__push_outcome *outcome,
                                    const paramd__tensor_io *items,
                                    const paramd__float_encoding *encodings, size_t count,
                                    size_t *length)
{
    text_buffer header = {0};
    char number[40];
    format_double(number, sizeof number, outcome->lr);
    text_append(&header, "\"lr\":%s,", number);
    if (!isnan(outcome->grad_norm)) {
        /* An overflowing norm (possible for large norm_type) is not JSON. */
        if (isfinite(outcome->grad_norm))
            format_double(number, sizeof number, outcome->grad_norm);
        else
            strcpy(number, "null");
        text_append(&header, "\"grad_norm\":%s,", number);
    }
    if (outcome->has_loss_scale) {
        /* The float32 scale, exactly ("%.9g" round-trips every float32). */
        text_append(&header, "\"loss_scale\":%.9g,", (double)outcome->loss_scale);
    }
    if (outcome->skipped)
        text_append(&header, "\"skipped\":true,\"reason\":\"%s\",", outcome->skip_reason);
    if (outcome->dropped)
        text_append(&header, "\"dropped\":true,");
    if (outcome->has_staleness)
        text_append(&header, "\"staleness\":%llu,", (unsigned long long)outcome->staleness);
    if (outcome->zeroed > 0)
        text_append(&header, "\"zeroed\":%zu,", outcome->zeroed);
    if (outcome->has_sam)
        text_append(&header, "\"sam\":{\"phase\":\"%s\"},",
                    outcome->sam_ascent ? "ascent" : "step");
    if (outcome->has_lbfgs)
        text_append(&header, "\"lbfgs\":{\"step_done\":%s,\"n_iter\":%llu,\"func_evals\":%llu},",
                    outcome->lbfgs_step_done ? "true" : "false",
                    (unsigned long long)outcome->lbfgs_iterations,
                    (unsigned long long)outcome->lbfgs_evaluations);
    if (outcome->accumulate_steps > 0) {
        /* Tensor names need no escaping (model.h restricts their characters). */
        text_append(&header, "\"accumulated\":{");
        for (size_t i = 0; i < count; i++)
            text_append(&header, "%s\"%s\":%u", i ? "," : "", items[i].tensor->name,
                        (unsigned)items[i].accumulated);
        text_append(&header, "},\"of\":%u,", (unsigned)outcome->accumulate_steps);
    }
    char *text = NULL;
    if (!header.failed)
        text = write_tensor_reply(outcome->step, header.text ? header.text : "", "weights",
                                  items, encodings, count, length);
    free(header.text);
    return text;
}

char *paramd__json_write_state(uint64_t step, const char *slot, const paramd__tensor_io *items,
                               const paramd__float_encoding *encodings, size_t count,
                               size_t *length)
{
    char header[160];
    snprintf(header, sizeof header, "\"slot\":\"%.100s\",", slot);
    return write_tensor_reply(step, header, "state", items, encodings, count, length);
}

/* ---------------------------------------------------------------------------
 * Optimizer configuration
 * ------------------------------------------------------------------------- */

/* Reads the JSON value of one hyperparameter into numbers (as many as its
 * kind holds); only the JSON type is checked here, the range by the table. */
static int json_hyperparameter_numbers(const paramd__hyperparameter_spec *spec,
                                       const json_t *value, const char *field, double *numbers,
                                       paramd__error *error)
{
    int width = paramd__hyperparameter_width(spec->kind);
    switch (spec->kind) {
    case PARAMD__HYPERPARAMETER_REAL:
        if (!json_is_number(value))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER, "%s: must be a number",
                                     field);
        numbers[0] = json_number_value(value);
        return PARAMD_OK;
    case PARAMD__HYPERPARAMETER_INTEGER:
        /* 5.0 is accepted as 5; 5.5 gets the range check's message. */
        if (json_is_null(value) && (spec->flags & PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT)) {
            numbers[0] = spec->default_value[0];
            return PARAMD_OK;
        }
        if (!json_is_number(value))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be an integer", field);
        numbers[0] = json_number_value(value);
        return PARAMD_OK;
    case PARAMD__HYPERPARAMETER_BOOLEAN:
        if (!json_is_boolean(value))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be true or false", field);
        numbers[0] = json_is_true(value) ? 1.0 : 0.0;
        return PARAMD_OK;
    case PARAMD__HYPERPARAMETER_CHOICE:
        /* JSON null is the first choice, as torch's None is its default. */
        numbers[0] = -1;
        if (json_is_null(value)) {
            numbers[0] = 0;
        } else if (json_is_string(value)) {
            for (int i = 0; spec->choices[i]; i++)
                if (strcmp(spec->choices[i], json_string_value(value)) == 0)
                    numbers[0] = i;
        } else {
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be a string or null", field);
        }
        return PARAMD_OK; /* an unknown name fails the range check, which lists them */
    case PARAMD__HYPERPARAMETER_PAIR:
    case PARAMD__HYPERPARAMETER_TRIPLE:
        if (!json_is_array(value) || json_array_size(value) != (size_t)width)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be an array of %s numbers", field,
                                     width == 2 ? "two" : "three");
        for (int i = 0; i < width; i++) {
            const json_t *item = json_array_get(value, (size_t)i);
            if (json_is_null(item) && (spec->flags & PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT)) {
                numbers[i] = spec->default_value[i];
                continue;
            }
            if (!json_is_number(item))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be an array of %s numbers", field,
                                         width == 2 ? "two" : "three");
            numbers[i] = json_number_value(item);
        }
        return PARAMD_OK;
    }
    return paramd__error_set(error, PARAMD_E_INTERNAL, "%s: unknown hyperparameter kind", field);
}

/* Applies every member of `object` except `skip_key` as a hyperparameter of
 * config's optimizer; `prefix` names the object in errors ("optimizer",
 * "param_groups[0]").  Stops at the first bad member. */
static int set_hyperparameters(const json_t *object, const char *prefix, const char *skip_key,
                               paramd__optimizer_config *config, paramd__error *error)
{
    const paramd__optimizer_type *type = config->type;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, skip_key) == 0)
            continue;
        char field[200];
        snprintf(field, sizeof field, "%s.%.120s", prefix, key);
        const paramd__hyperparameter_spec *spec = paramd__optimizer_find_hyperparameter(type, key);
        if (spec == NULL)
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: %s has no hyperparameter named \"%.100s\"", field,
                                     type->name, key);
        double numbers[3];
        int parsed = paramd__json_hyperparameter_value(value, spec, field, numbers, error);
        if (parsed != PARAMD_OK)
            return parsed;
        int result = paramd__optimizer_config_set(config, spec, numbers, field, error);
        if (result != PARAMD_OK)
            return result;
    }
    return PARAMD_OK;
}

int paramd__json_hyperparameter_value(const json_t *value,
                                      const paramd__hyperparameter_spec *spec,
                                      const char *field, double values[3], paramd__error *error)
{
    return json_hyperparameter_numbers(spec, value, field, values, error);
}

int paramd__json_parse_optimizer(const json_t *object, paramd__optimizer_config *config,
                                 paramd__error *error)
{
    if (object == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer: required, e.g. {\"name\": \"SGD\", \"lr\": 0.1}");
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "optimizer: must be an object");
    const json_t *name = json_object_get(object, "name");
    if (!json_is_string(name))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "optimizer.name: required string, e.g. \"AdamW\"");
    const paramd__optimizer_type *type = paramd__optimizer_find(json_string_value(name));
    if (type == NULL) {
        char known[256] = "";
        for (int i = 0; i < paramd__optimizer_type_count; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, paramd__optimizer_types[i]->name, sizeof known - strlen(known) - 1);
        }
        return paramd__error_set(error, PARAMD_E_UNKNOWN_OPTIMIZER,
                                 "optimizer.name: unknown optimizer \"%.100s\" (known: %s)",
                                 json_string_value(name), known);
    }
    paramd__optimizer_config_init(config, type);
    int result = set_hyperparameters(object, "optimizer", "name", config, error);
    if (result != PARAMD_OK)
        return result;
    return paramd__optimizer_config_validate(config, "optimizer", error);
}

json_t *paramd__json_hyperparameter(const paramd__hyperparameter_spec *spec, const double *v)
{
    switch (spec->kind) {
    case PARAMD__HYPERPARAMETER_REAL:
        return json_real(v[0]);
    case PARAMD__HYPERPARAMETER_INTEGER:
        /* A default that stands for torch's None (LBFGS's max_eval) shows as null. */
        if ((spec->flags & PARAMD__HYPERPARAMETER_NULL_IS_DEFAULT) && v[0] == spec->default_value[0])
            return json_null();
        return json_integer((json_int_t)v[0]);
    case PARAMD__HYPERPARAMETER_BOOLEAN:
        return json_boolean(v[0] != 0);
    case PARAMD__HYPERPARAMETER_CHOICE:
        return json_string(spec->choices[(int)v[0]]);
    case PARAMD__HYPERPARAMETER_PAIR:
        return json_pack("[ff]", v[0], v[1]);
    case PARAMD__HYPERPARAMETER_TRIPLE:
        return json_pack("[fff]", v[0], v[1], v[2]);
    }
    return json_null();
}

json_t *paramd__json_optimizer(const paramd__optimizer_config *config)
{
    const paramd__optimizer_type *type = config->type;
    json_t *object = json_pack("{s:s}", "name", type->name);
    for (int i = 0; object && i < type->hyperparameter_count; i++) {
        const paramd__hyperparameter_spec *spec = &type->hyperparameters[i];
        if (spec->flags & PARAMD__HYPERPARAMETER_NO_EFFECT)
            continue;
        const double *v = &config->values[spec->slot];
        json_object_set_new(object, spec->name, paramd__json_hyperparameter(spec, v));
    }
    const paramd__hyperparameter_spec *common;
    for (int i = 0; object && (common = paramd__optimizer_common_hyperparameter(type, i)); i++) {
        json_object_set_new(object, common->name,
                            paramd__json_hyperparameter(common, &config->values[common->slot]));
    }
    return object;
}

/* ---------------------------------------------------------------------------
 * Model creation
 * ------------------------------------------------------------------------- */

/* "zeros, ones, constant, ..." for error messages. */
static void initializer_names(char *buffer, size_t size)
{
    size_t used = 0;
    buffer[0] = '\0';
    for (int i = 0; i < paramd__initializer_type_count && used < size; i++)
        used += (size_t)snprintf(buffer + used, size - used, "%s%s", i ? ", " : "",
                                 paramd__initializer_types[i]->name);
}

/* An "init" object for a tensor of the given shape (which the fan-based
 * initializers need). */
static int parse_initializer(const json_t *object, const char *field, int dimension_count,
                             const int64_t *shape, paramd__initializer *initializer,
                             paramd__error *error)
{
    char known[400];
    initializer_names(known, sizeof known);
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: must be an object such as {\"name\": \"normal\", "
                                 "\"std\": 0.02, \"seed\": 7}",
                                 field);
    const json_t *name = json_object_get(object, "name");
    if (!json_is_string(name))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s.name: required: one of %s",
                                 field, known);
    const paramd__initializer_type *type = paramd__initializer_find(json_string_value(name));
    if (type == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s.name: unknown initializer \"%.100s\" (known: %s)", field,
                                 json_string_value(name), known);
    paramd__initializer_init(initializer, type);
    paramd__initializer_set_shape(initializer, dimension_count, shape);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, "name") == 0)
            continue;
        if (strcmp(key, "seed") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 0)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "%s.seed: must be a non-negative integer", field);
            initializer->seed = (uint64_t)json_integer_value(value);
            continue;
        }
        const paramd__hyperparameter_spec *spec = NULL;
        for (int i = 0; i < type->parameter_count; i++)
            if (strcmp(type->parameters[i].name, key) == 0)
                spec = &type->parameters[i];
        if (spec == NULL)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.%.100s: initializer %s has no such parameter", field,
                                     key, type->name);
        /* The optimizer schema's rules: numbers in range, choices by name. */
        char parameter_field[200];
        snprintf(parameter_field, sizeof parameter_field, "%s.%s", field, key);
        double number[3];
        int result = json_hyperparameter_numbers(spec, value, parameter_field, number, error);
        if (result == PARAMD_OK)
            result = paramd__hyperparameter_check(spec, number, parameter_field, error);
        if (result != PARAMD_OK) {
            error->code = PARAMD_E_BAD_REQUEST; /* an initializer is not a hyperparameter */
            return PARAMD_E_BAD_REQUEST;
        }
        initializer->parameters[spec->slot] = number[0];
    }
    for (int i = 0; i < type->parameter_count; i++)
        if (isnan(initializer->parameters[type->parameters[i].slot]))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.%s: required by the %s initializer", field,
                                     type->parameters[i].name, type->name);
    return paramd__initializer_validate(initializer, field, error);
}

static int parse_tensor_spec(const json_t *object, size_t index, paramd__tensor_spec *spec,
                             paramd__error *error)
{
    char field[64];
    snprintf(field, sizeof field, "tensors[%zu]", index);
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s: must be an object", field);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, "name") && strcmp(key, "shape") && strcmp(key, "values") &&
            strcmp(key, "init") && strcmp(key, "constraint"))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.%.100s: unknown field (expected name, shape, values, "
                                     "init or constraint)",
                                     field, key);
    }
    const json_t *name = json_object_get(object, "name");
    if (!json_is_string(name))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s.name: required string", field);
    spec->name = json_string_value(name);
    const json_t *shape = json_object_get(object, "shape");
    if (!json_is_array(shape))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s.shape: required array of dimensions, e.g. [784, 128]",
                                 field);
    if (json_array_size(shape) > PARAMD__MAX_DIMENSIONS)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s.shape: a tensor has at most %d dimensions, got %zu", field,
                                 PARAMD__MAX_DIMENSIONS, json_array_size(shape));
    spec->dimension_count = (int)json_array_size(shape);
    for (int i = 0; i < spec->dimension_count; i++) {
        const json_t *dimension = json_array_get(shape, (size_t)i);
        if (!json_is_integer(dimension))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.shape[%d]: must be an integer", field, i);
        spec->shape[i] = (int64_t)json_integer_value(dimension);
    }
    const json_t *constraint = json_object_get(object, "constraint");
    if (constraint && !json_is_null(constraint)) {
        char constraint_field[80];
        snprintf(constraint_field, sizeof constraint_field, "%s.constraint", field);
        int result = paramd__json_parse_constraint(constraint, constraint_field,
                                                   &spec->constraint, error);
        if (result != PARAMD_OK)
            return result;
    }
    const json_t *values = json_object_get(object, "values");
    const json_t *init = json_object_get(object, "init");
    if (values && init)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: give either values or init, not both", field);
    if (values) {
        char values_field[80];
        snprintf(values_field, sizeof values_field, "%s.values", field);
        paramd__float_encoding encoding;
        float *buffer = NULL;
        int result = paramd__json_decode_floats(values, values_field, &buffer,
                                                &spec->value_count, &encoding, error);
        if (result != PARAMD_OK)
            return result;
        spec->values = buffer;
        spec->has_values = true;
        return PARAMD_OK;
    }
    paramd__initializer_init(&spec->initializer, paramd__initializer_find("zeros"));
    if (init) {
        char init_field[80];
        snprintf(init_field, sizeof init_field, "%s.init", field);
        return parse_initializer(init, init_field, spec->dimension_count, spec->shape,
                                 &spec->initializer, error);
    }
    return PARAMD_OK;
}

/* "param_groups": [{"tensors": ["fc1.bias"], "weight_decay": 0}, ...]: each
 * group starts from the model's configuration and overrides some of its
 * hyperparameters (torch's param_groups).  Membership (names exist, no tensor
 * in two groups) is checked by paramd__model_create. */
static int parse_param_groups(const json_t *groups, paramd__model_spec *spec,
                              paramd__error *error)
{
    if (groups == NULL)
        return PARAMD_OK;
    if (!json_is_array(groups))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "param_groups: must be an array of {\"tensors\": [...], "
                                 "hyperparameter: value, ...}");
    size_t count = json_array_size(groups);
    if (count == 0)
        return PARAMD_OK;
    spec->param_groups = calloc(count, sizeof *spec->param_groups);
    if (spec->param_groups == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "param_groups: out of memory");
    for (size_t g = 0; g < count; g++) {
        char field[48];
        snprintf(field, sizeof field, "param_groups[%zu]", g);
        const json_t *group = json_array_get(groups, g);
        paramd__param_group_spec *group_spec = &spec->param_groups[g];
        spec->param_group_count = g + 1;
        if (!json_is_object(group))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s: must be an object",
                                     field);
        const json_t *names = json_object_get(group, "tensors");
        if (!json_is_array(names) || json_array_size(names) == 0)
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%s.tensors: required non-empty array of tensor names",
                                     field);
        group_spec->tensor_names = calloc(json_array_size(names), sizeof(char *));
        if (group_spec->tensor_names == NULL)
            return paramd__error_set(error, PARAMD_E_NO_MEMORY, "%s: out of memory", field);
        for (size_t n = 0; n < json_array_size(names); n++) {
            const json_t *name = json_array_get(names, n);
            if (!json_is_string(name))
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "%s.tensors[%zu]: must be a tensor name", field, n);
            group_spec->tensor_names[n] = json_string_value(name);
            group_spec->tensor_count = n + 1;
        }
        group_spec->optimizer = spec->optimizer;
        int result = set_hyperparameters(group, field, "tensors", &group_spec->optimizer, error);
        if (result != PARAMD_OK)
            return result;
        result = paramd__optimizer_config_validate(&group_spec->optimizer, field, error);
        if (result != PARAMD_OK)
            return result;
    }
    return PARAMD_OK;
}

/* ---------------------------------------------------------------------------
 * Gradient clipping
 * ------------------------------------------------------------------------- */

static int clip_number(const json_t *object, const char *key, double *out, paramd__error *error)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL)
        return PARAMD_OK;
    if (!json_is_number(value))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "clip.%s: must be a number", key);
    *out = json_number_value(value);
    return PARAMD_OK;
}

int paramd__json_parse_clip(const json_t *object, paramd__clip_config *config,
                            paramd__error *error)
{
    memset(config, 0, sizeof *config);
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip: must be an object, e.g. {\"max_norm\": 1.0}");
    static const char *const known[] = {"value", "max_norm", "norm_type", "per_tensor", "agc",
                                        "eps"};
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(key, known[k]) != 0)
            k++;
        if (k == sizeof known / sizeof known[0])
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.%.100s: unknown field (expected value, max_norm, "
                                     "norm_type, per_tensor, agc or eps)",
                                     key);
    }
    int modes = (json_object_get(object, "value") != NULL) +
                (json_object_get(object, "max_norm") != NULL) +
                (json_object_get(object, "agc") != NULL);
    if (modes != 1)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "clip: give exactly one of value, max_norm and agc");
    int result = PARAMD_OK;
    if (json_object_get(object, "value")) {
        config->mode = PARAMD__CLIP_VALUE;
        result = clip_number(object, "value", &config->value, error);
    } else if (json_object_get(object, "max_norm")) {
        config->mode = PARAMD__CLIP_NORM;
        config->norm_type = PARAMD__CLIP_DEFAULT_NORM_TYPE;
        result = clip_number(object, "max_norm", &config->max_norm, error);
        const json_t *norm_type = json_object_get(object, "norm_type");
        if (result == PARAMD_OK && json_is_string(norm_type)) {
            if (strcmp(json_string_value(norm_type), "inf") != 0)
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "clip.norm_type: must be a number > 0 or \"inf\"");
            config->norm_type = INFINITY;
        } else if (result == PARAMD_OK && norm_type) {
            if (!json_is_number(norm_type))
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "clip.norm_type: must be a number > 0 or \"inf\"");
            config->norm_type = json_number_value(norm_type);
        }
        const json_t *per_tensor = json_object_get(object, "per_tensor");
        if (result == PARAMD_OK && per_tensor) {
            if (!json_is_boolean(per_tensor))
                return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                         "clip.per_tensor: must be true or false");
            config->per_tensor = json_is_true(per_tensor);
        }
    } else {
        config->mode = PARAMD__CLIP_AGC;
        config->eps = PARAMD__CLIP_DEFAULT_AGC_EPS;
        result = clip_number(object, "agc", &config->agc, error);
        if (result == PARAMD_OK)
            result = clip_number(object, "eps", &config->eps, error);
    }
    if (result != PARAMD_OK)
        return result;
    /* Options of another mode are refused rather than ignored. */
    if (config->mode != PARAMD__CLIP_NORM) {
        if (json_object_get(object, "norm_type"))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.norm_type: only with max_norm");
        if (json_object_get(object, "per_tensor"))
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "clip.per_tensor: only with max_norm");
    }
    if (config->mode != PARAMD__CLIP_AGC && json_object_get(object, "eps"))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "clip.eps: only with agc");
    return paramd__clip_config_validate(config, error);
}

json_t *paramd__json_clip(const paramd__clip_config *config)
{
    switch (config->mode) {
    case PARAMD__CLIP_VALUE:
        return json_pack("{s:f}", "value", config->value);
    case PARAMD__CLIP_NORM:
        return json_pack("{s:f,s:o,s:b}", "max_norm", config->max_norm, "norm_type",
                         isinf(config->norm_type) ? json_string("inf")
                                                  : json_real(config->norm_type),
                         "per_tensor", config->per_tensor);
    case PARAMD__CLIP_AGC:
        return json_pack("{s:f,s:f}", "agc", config->agc, "eps", config->eps);
    case PARAMD__CLIP_NONE:
        break;
    }
    return json_null();
}

int paramd__json_parse_model_spec(const json_t *body, const char *name,
                                  paramd__model_spec *spec, paramd__error *error)
{
    memset(spec, 0, sizeof *spec);
    spec->name = name;
    if (!json_is_object(body))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "request body: must be a JSON object with \"optimizer\" and "
                                 "\"tensors\"");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)body, key, value) {
        static const char *const known[] = {"optimizer", "tensors",    "param_groups",
                                            "schedule",  "clip",       "nonfinite",
                                            "loss_scale", "accumulate", "grad_noise",
                                            "consistency", "averaging"};
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(key, known[k]) != 0)
            k++;
        if (k == sizeof known / sizeof known[0])
            return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                     "%.100s: unknown field (expected optimizer, tensors, "
                                     "param_groups, schedule, clip, nonfinite, loss_scale, "
                                     "accumulate, grad_noise, consistency and averaging)",
                                     key);
    }
    int result = paramd__json_parse_model_optimizer(json_object_get(body, "optimizer"), spec,
                                                    error);
    if (result != PARAMD_OK)
        return result;
    const json_t *schedule = json_object_get(body, "schedule");
    if (schedule && !json_is_null(schedule)) {
        result = paramd__json_parse_schedule(schedule, &spec->schedule, error);
        if (result != PARAMD_OK)
            return result;
        spec->has_schedule = true;
    }
    const json_t *clip = json_object_get(body, "clip");
    if (clip && !json_is_null(clip)) {
        result = paramd__json_parse_clip(clip, &spec->clip, error);
        if (result != PARAMD_OK)
            return result;
    }
    const json_t *member = json_object_get(body, "nonfinite");
    if (member && (result = paramd__json_parse_nonfinite(member, &spec->nonfinite, error)))
        return result;
    member = json_object_get(body, "loss_scale");
    if (member && !json_is_null(member)) {
        bool init_scale_given;
        result = paramd__json_parse_loss_scale(member, &spec->loss_scale, &init_scale_given,
                                               error);
        if (result != PARAMD_OK)
            return result;
        spec->has_loss_scale = true;
    }
    member = json_object_get(body, "accumulate");
    if (member && !json_is_null(member) &&
        (result = paramd__json_parse_accumulate(member, &spec->accumulate, error)))
        return result;
    member = json_object_get(body, "grad_noise");
    if (member && !json_is_null(member) &&
        (result = paramd__json_parse_grad_noise(member, &spec->grad_noise, error)))
        return result;
    member = json_object_get(body, "consistency");
    if (member && !json_is_null(member) &&
        (result = paramd__json_parse_consistency(member, &spec->consistency, error)))
        return result;
    member = json_object_get(body, "averaging");
    if (member && !json_is_null(member) &&
        (result = paramd__json_parse_averaging(member, &spec->averaging, error)))
        return result;
    const json_t *tensors = json_object_get(body, "tensors");
    if (!json_is_array(tensors) || json_array_size(tensors) == 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "tensors: required non-empty array of {\"name\", \"shape\", "
                                 "\"values\" or \"init\"}");
    spec->tensors = calloc(json_array_size(tensors), sizeof *spec->tensors);
    if (spec->tensors == NULL)
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "tensors: out of memory");
    for (size_t i = 0; i < json_array_size(tensors); i++) {
        spec->tensor_count = i + 1;
        result = parse_tensor_spec(json_array_get(tensors, i), i, &spec->tensors[i], error);
        if (result != PARAMD_OK)
            return result;
    }
    return parse_param_groups(json_object_get(body, "param_groups"), spec, error);
}

void paramd__json_model_spec_free(paramd__model_spec *spec)
{
    for (size_t i = 0; i < spec->tensor_count; i++) {
        paramd__tensor_spec *tensor = &spec->tensors[i];
        if (tensor->values)
            paramd__float_array_free((float *)tensor->values, tensor->value_count);
    }
    free(spec->tensors);
    for (size_t g = 0; g < spec->param_group_count; g++)
        free(spec->param_groups[g].tensor_names);
    free(spec->param_groups);
    memset(spec, 0, sizeof *spec);
}

/* ---------------------------------------------------------------------------
 * Descriptions
 * ------------------------------------------------------------------------- */

static json_t *shape_json(const paramd__tensor *tensor)
{
    json_t *shape = json_array();
    for (int i = 0; shape && i < tensor->dimension_count; i++)
        json_array_append_new(shape, json_integer((json_int_t)tensor->shape[i]));
    return shape;
}

/* paramd__json_describe_model under the model's config_lock (read);
 * `consistency` is the model's consistency section (owned, may be NULL),
 * built before the lock was taken. */
static json_t *describe_model_locked(paramd__model *model, json_t *consistency)
{
    char created[32];
    struct tm utc;
    gmtime_r(&model->created, &utc);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &utc);
    json_t *tensors = json_array();
    for (size_t i = 0; tensors && i < model->tensor_count; i++) {
        paramd__tensor *tensor = model->tensors[i];
        pthread_mutex_lock(&tensor->lock);
        uint64_t step = tensor->step;
        pthread_mutex_unlock(&tensor->lock);
        const paramd__optimizer_type *type = tensor->optimizer->type;
        json_t *state = json_array();
        for (int slot = 0; state && slot < type->state_slot_count; slot++)
            if (tensor->state[slot])
                json_array_append_new(state, json_string(type->state_slot_names[slot]));
        json_t *description = json_pack("{s:s,s:o,s:I,s:I,s:o}", "name", tensor->name, "shape",
                                        shape_json(tensor), "numel", (json_int_t)tensor->count,
                                        "step", (json_int_t)step, "state", state);
        if (description && tensor->param_group >= 0)
            json_object_set_new(description, "param_group", json_integer(tensor->param_group));
        if (description && tensor->count != tensor->full_count)
            /* A shard's part of a split tensor: elements [offset, offset + numel). */
            json_object_set_new(description, "range",
                                json_pack("{s:I,s:I,s:I}", "offset",
                                          (json_int_t)tensor->range_offset, "count",
                                          (json_int_t)tensor->count, "of",
                                          (json_int_t)tensor->full_count));
        json_array_append_new(tensors, description);
    }
    json_t *description = json_pack(
        "{s:s,s:o,s:I,s:I,s:I,s:s,s:o}", "name", model->name, "optimizer",
        paramd__json_model_optimizer(model), "step", (json_int_t)atomic_load(&model->step),
        "parameters", (json_int_t)model->parameter_count, "memory_bytes",
        (json_int_t)model->memory_bytes, "created", created, "tensors", tensors);
    if (description && model->has_schedule) {
        pthread_mutex_lock(&model->schedule_lock);
        double lr = paramd__schedule_lr(&model->schedules[0]);
        pthread_mutex_unlock(&model->schedule_lock);
        json_object_set_new(description, "schedule", paramd__json_schedule(&model->schedule_config));
        json_object_set_new(description, "lr", json_real(lr));
    } else if (description) {
        json_object_set_new(description, "lr",
                            json_real(paramd__optimizer_config_get(&model->optimizer, "lr")));
    }
    if (description && model->sharded)
        json_object_set_new(description, "shard",
                            json_pack("{s:I,s:I,s:I}", "id", (json_int_t)model->shard_id,
                                      "shard_map_version", (json_int_t)model->shard_map_version,
                                      "remote_tensors", (json_int_t)model->remote.count));
    if (description && model->clip.mode != PARAMD__CLIP_NONE)
        json_object_set_new(description, "clip", paramd__json_clip(&model->clip));
    if (description) {
        json_object_set_new(description, "nonfinite",
                            json_string(paramd__nonfinite_policy_name(model->nonfinite)));
        json_object_set_new(description, "nonfinite_counts",
                            paramd__json_nonfinite_counts(&model->nonfinite_counts));
    }
    if (description && model->has_loss_scale) {
        pthread_mutex_lock(&model->loss_scale_lock);
        paramd__loss_scale state = model->loss_scale;
        pthread_mutex_unlock(&model->loss_scale_lock);
        json_object_set_new(description, "loss_scale",
                            paramd__json_loss_scale(&model->loss_scale_config, &state));
    }
    if (description && model->accumulate.steps > 0)
        json_object_set_new(description, "accumulate", paramd__json_accumulate(&model->accumulate));
    if (description && model->grad_noise.enabled)
        json_object_set_new(description, "grad_noise", paramd__json_grad_noise(&model->grad_noise));
    if (description)
        json_object_set_new(description, "consistency", consistency);
    else
        json_decref(consistency);
    if (description && (model->averaging.ema || model->averaging.swa))
        json_object_set_new(description, "averaging", paramd__json_averaging(&model->averaging));
    if (description && model->lbfgs) {
        /* torch's LBFGS state counters and where the step stands. */
        static const char *const phases[] = {"step_start", "fixed_step", "line_search",
                                             "line_search", "line_search"};
        paramd__lbfgs_state *lbfgs = model->lbfgs;
        pthread_mutex_lock(&lbfgs->lock);
        json_object_set_new(description, "lbfgs",
                            json_pack("{s:I,s:I,s:I,s:s,s:f}", "n_iter",
                                      (json_int_t)lbfgs->n_iter, "func_evals",
                                      (json_int_t)lbfgs->func_evals, "history",
                                      (json_int_t)lbfgs->history_count, "waiting_for",
                                      phases[lbfgs->phase], "t", lbfgs->t));
        pthread_mutex_unlock(&lbfgs->lock);
    }
    if (description && model->param_group_count > 0) {
        /* Like torch's state_dict()["param_groups"]: every hyperparameter of
         * each group, and its tensors. */
        json_t *groups = json_array();
        for (size_t g = 0; groups && g < model->param_group_count; g++) {
            json_t *group = paramd__json_optimizer(&model->param_groups[g]);
            json_t *names = json_array();
            for (size_t i = 0; names && i < model->tensor_count; i++)
                if (model->tensors[i]->param_group == (int)g)
                    json_array_append_new(names, json_string(model->tensors[i]->name));
            if (group) {
                json_object_del(group, "name");
                json_object_set_new(group, "tensors", names);
                json_array_append_new(groups, group);
            }
        }
        json_object_set_new(description, "param_groups", groups);
    }
    return description;
}

json_t *paramd__json_describe_model(paramd__model *model)
{
    /* The consistency section takes the consistency lock, which sync and
     * ssp pushes hold while they take config_lock (to apply a step): taking
     * it under config_lock would invert that order and deadlock with a
     * waiting PATCH (config_lock prefers writers: the push's read lock
     * waits for the PATCH, which waits for this read lock).  Its
     * configuration never changes, so it needs no config_lock. */
    json_t *consistency = paramd__json_consistency(model);
    pthread_rwlock_rdlock(&model->config_lock);
    json_t *description = describe_model_locked(model, consistency);
    pthread_rwlock_unlock(&model->config_lock);
    return description;
}

json_t *paramd__json_model_summary(paramd__model *model)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:I}", "name", model->name, "optimizer",
                     model->optimizer.type->name, "tensors", (json_int_t)model->tensor_count,
                     "parameters", (json_int_t)model->parameter_count, "step",
                     (json_int_t)atomic_load(&model->step));
}

json_t *paramd__json_error(const paramd__error *error)
{
    const char *message = error->message[0] ? error->message : paramd_strerror(error->code);
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", paramd_error_name(error->code),
                             "message", message);
    if (body && error->code == PARAMD_E_NOT_OWNER) {
        /* What a client with a stale shard map needs to notice it. */
        json_t *inner = json_object_get(body, "error");
        json_object_set_new(inner, "shard_map_version", json_integer((json_int_t)error->shard_map_version));
        json_object_set_new(inner, "owner", json_integer(error->owner));
    }
    return body;
}

/* ---------------------------------------------------------------------------
 * Whole operations shared by the HTTP and binary front ends
 * ------------------------------------------------------------------------- */

json_t *paramd__json_parse_body(const char *text, size_t length, paramd__error *error)
{
    if (length == 0) {
        paramd__error_set(error, PARAMD_E_BAD_JSON, "request body: empty, expected a JSON object");
        return NULL;
    }
    json_error_t json_error;
    /* JSON_DECODE_ANY: a bare scalar is valid JSON, and deserves the clearer
     * "must be a JSON object" below rather than a parse error. */
    json_t *body = json_loadb(text, length, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &json_error);
    if (body == NULL) {
        paramd__error_set(error, PARAMD_E_BAD_JSON, "request body: %s at line %d, column %d",
                          json_error.text, json_error.line, json_error.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        paramd__error_set(error, PARAMD_E_BAD_REQUEST, "request body: must be a JSON object");
        return NULL;
    }
    return body;
}

json_t *paramd__json_create_model(paramd__server *server, const char *name, const json_t *body,
                                  paramd__error *error)
{
    paramd__model_spec spec;
    paramd__model *model = NULL;
    int result = paramd__json_parse_model_spec(body, name, &spec, error);
    if (result == PARAMD_OK)
        result = paramd__core_create_model(server, &spec, &model, error);
    paramd__json_model_spec_free(&spec);
    if (result != PARAMD_OK)
        return NULL;
    json_t *description = paramd__json_describe_model(model);
    paramd__model_release(model);
    if (description == NULL)
        paramd__error_set(error, PARAMD_E_NO_MEMORY, "out of memory while describing the model");
    return description;
}

json_t *paramd__json_list_models(paramd__server *server)
{
    size_t count;
    paramd__model **models = paramd__registry_list(&server->registry, &count);
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) {
        if (list)
            json_array_append_new(list, paramd__json_model_summary(models[i]));
        paramd__model_release(models[i]);
    }
    free(models);
    return list ? json_pack("{s:o}", "models", list) : NULL;
}
