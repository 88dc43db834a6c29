/* safetensors.c - see safetensors.h. */
#define _DEFAULT_SOURCE
#include "safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The exact text the checksum is written as, up to its digits. */
static const char crc_prefix[] = "\"" PARAMD__SAFETENSORS_CRC_KEY "\":\"";

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

void paramd__safetensors_crc_digits(uint32_t crc, char digits[8])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++)
        digits[i] = hex[(crc >> (28 - 4 * i)) & 0xf];
}

int paramd__safetensors_header(const paramd__safetensors_entry *entries, size_t count,
                               const json_t *metadata, unsigned char **header,
                               size_t *header_size, size_t *crc_offset, paramd__error *error)
{
    *header = NULL;
    json_t *object = json_object();
    json_t *meta = metadata ? json_deep_copy(metadata) : json_object();
    if (object == NULL || meta == NULL)
        goto out_of_memory;
    if (json_object_get(meta, PARAMD__SAFETENSORS_CRC_KEY)) {
        json_decref(object);
        json_decref(meta);
        return paramd__error_set(error, PARAMD_E_INTERNAL,
                                 "safetensors: metadata may not set %s itself",
                                 PARAMD__SAFETENSORS_CRC_KEY);
    }
    json_object_set_new(meta, PARAMD__SAFETENSORS_CRC_KEY, json_string("00000000"));
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const paramd__safetensors_entry *entry = &entries[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < entry->dimension_count; d++)
            json_array_append_new(shape, json_integer((json_int_t)entry->shape[d]));
        uint64_t end = offset + (uint64_t)entry->count * sizeof(float);
        json_t *description = json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape,
                                        "data_offsets", (json_int_t)offset, (json_int_t)end);
        if (description == NULL || json_object_set_new(object, entry->name, description) != 0)
            goto out_of_memory;
        offset = end;
    }
    if (json_object_set_new(object, "__metadata__", meta) != 0) {
        meta = NULL;
        goto out_of_memory;
    }
    meta = NULL;
    /* Compact and sorted, so the checksum appears exactly as crc_prefix. */
    char *text = json_dumps(object, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(object);
    object = NULL;
    if (text == NULL)
        goto out_of_memory;
    size_t length = strlen(text);
    size_t padded = (length + 7) & ~(size_t)7;
    const char *found = strstr(text, crc_prefix);
    /* Keys and strings are escaped by jansson, so the prefix cannot occur
     * inside another string; check anyway that it is there once. */
    if (found == NULL || strstr(found + 1, crc_prefix) != NULL) {
        free(text);
        return paramd__error_set(error, PARAMD_E_INTERNAL,
                                 "safetensors: the checksum key must appear exactly once");
    }
    unsigned char *bytes = malloc(8 + padded);
    if (bytes == NULL) {
        free(text);
        goto out_of_memory;
    }
    for (int b = 0; b < 8; b++)
        bytes[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(bytes + 8, text, length);
    memset(bytes + 8 + length, ' ', padded - length);
    *crc_offset = 8 + (size_t)(found - text) + strlen(crc_prefix);
    free(text);
    *header = bytes;
    *header_size = 8 + padded;
    return PARAMD_OK;

out_of_memory:
    json_decref(object);
    json_decref(meta);
    return paramd__error_set(error, PARAMD_E_NO_MEMORY, "safetensors: out of memory");
}

/* ---------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------- */

static int corrupt(paramd__error *error, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int corrupt(paramd__error *error, const char *format, ...)
{
    char message[PARAMD__ERROR_MESSAGE_SIZE];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    return paramd__error_set(error, PARAMD_E_CHECKPOINT_CORRUPT, "%s", message);
}

/* Finds needle in haystack[0, size) (both may hold NULs). */
static const unsigned char *find_bytes(const unsigned char *haystack, size_t size,
                                       const char *needle)
{
    size_t length = strlen(needle);
    for (size_t i = 0; i + length <= size; i++)
        if (haystack[i] == (unsigned char)needle[0] && memcmp(haystack + i, needle, length) == 0)
            return haystack + i;
    return NULL;
}

/* CRC-32 of bytes[0, size) in chunks zlib's uInt length can take. */
static uLong crc_update(uLong crc, const unsigned char *bytes, size_t size)
{
    while (size > 0) {
        size_t chunk = size > (1u << 30) ? (1u << 30) : size;
        crc = crc32(crc, bytes, (uInt)chunk);
        bytes += chunk;
        size -= chunk;
    }
    return crc;
}

static int check_checksum(const unsigned char *bytes, size_t size, size_t header_length,
                          paramd__error *error)
{
    const unsigned char *header = bytes + 8;
    const unsigned char *found = find_bytes(header, header_length, crc_prefix);
    if (found == NULL)
        return corrupt(error, "the header has no %s checksum (not a paramd checkpoint?)",
                       PARAMD__SAFETENSORS_CRC_KEY);
    size_t digits = (size_t)(found - bytes) + strlen(crc_prefix);
    if (find_bytes(found + 1, header_length - (size_t)(found + 1 - header), crc_prefix))
        return corrupt(error, "the header has more than one %s", PARAMD__SAFETENSORS_CRC_KEY);
    if (digits + 9 > 8 + header_length || bytes[digits + 8] != '"')
        return corrupt(error, "the %s value is not 8 hex digits", PARAMD__SAFETENSORS_CRC_KEY);
    uint32_t stored = 0;
    for (int i = 0; i < 8; i++) {
        unsigned char c = bytes[digits + (size_t)i];
        int value = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (value < 0)
            return corrupt(error, "the %s value is not 8 lower-case hex digits",
                           PARAMD__SAFETENSORS_CRC_KEY);
        stored = stored << 4 | (uint32_t)value;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc_update(crc, bytes, digits);
    crc = crc_update(crc, (const unsigned char *)"00000000", 8);
    crc = crc_update(crc, bytes + digits + 8, size - digits - 8);
    if ((uint32_t)crc != stored)
        return corrupt(error, "checksum mismatch: the file says %08" PRIx32 ", its bytes give %08" PRIx32
                       " (damaged or truncated)",
                       stored, (uint32_t)crc);
    return PARAMD_OK;
}

static int compare_entries(const void *a, const void *b)
{
    const paramd__safetensors_entry *left = a, *right = b;
    return left->data < right->data ? -1 : left->data > right->data;
}

/* Reads one tensor's description into entry; data points into the file. */
static int parse_entry(const char *name, const json_t *description,
                       const unsigned char *data, size_t data_size,
                       paramd__safetensors_entry *entry, paramd__error *error)
{
    if (!json_is_object(description))
        return corrupt(error, "tensor \"%.200s\": its description is not an object", name);
    const json_t *dtype = json_object_get(description, "dtype");
    if (!json_is_string(dtype) || strcmp(json_string_value(dtype), "F32") != 0)
        return corrupt(error, "tensor \"%.200s\": dtype must be \"F32\"", name);
    const json_t *shape = json_object_get(description, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > PARAMD__MAX_DIMENSIONS)
        return corrupt(error, "tensor \"%.200s\": shape must be an array of at most %d integers",
                       name, PARAMD__MAX_DIMENSIONS);
    entry->name = name;
    entry->dimension_count = (int)json_array_size(shape);
    uint64_t count = 1;
    for (int d = 0; d < entry->dimension_count; d++) {
        const json_t *dimension = json_array_get(shape, (size_t)d);
        if (!json_is_integer(dimension) || json_integer_value(dimension) < 0 ||
            (uint64_t)json_integer_value(dimension) > PARAMD__MAX_TENSOR_ELEMENTS)
            return corrupt(error, "tensor \"%.200s\": shape[%d] is not a valid dimension", name,
                           d);
        entry->shape[d] = (int64_t)json_integer_value(dimension);
        count *= (uint64_t)entry->shape[d];
        if (count > PARAMD__MAX_TENSOR_ELEMENTS)
            return corrupt(error, "tensor \"%.200s\": more than 2^40 elements", name);
    }
    const json_t *offsets = json_object_get(description, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        !json_is_integer(json_array_get(offsets, 0)) ||
        !json_is_integer(json_array_get(offsets, 1)))
        return corrupt(error, "tensor \"%.200s\": data_offsets must be [begin, end]", name);
    json_int_t begin = json_integer_value(json_array_get(offsets, 0));
    json_int_t end = json_integer_value(json_array_get(offsets, 1));
    if (begin < 0 || end < begin || (uint64_t)end > data_size)
        return corrupt(error,
                       "tensor \"%.200s\": data_offsets [%lld, %lld] leave the %zu bytes of data",
                       name, (long long)begin, (long long)end, data_size);
    if ((uint64_t)(end - begin) != count * sizeof(float))
        return corrupt(error,
                       "tensor \"%.200s\": %lld bytes of data for %llu float32 elements", name,
                       (long long)(end - begin), (unsigned long long)count);
    if (begin % (json_int_t)sizeof(float) != 0)
        return corrupt(error, "tensor \"%.200s\": data_offsets are not float32-aligned", name);
    entry->count = (size_t)count;
    entry->data = (const float *)(const void *)(data + begin);
    return PARAMD_OK;
}

int paramd__safetensors_parse(const unsigned char *bytes, size_t size,
                              paramd__safetensors_file *file, paramd__error *error)
{
    memset(file, 0, sizeof *file);
    if (size < 8)
        return corrupt(error, "%zu bytes: shorter than the 8-byte header length (truncated)",
                       size);
    uint64_t header_length = 0;
    for (int b = 7; b >= 0; b--)
        header_length = header_length << 8 | bytes[b];
    if (header_length < 2 || header_length > PARAMD__SAFETENSORS_MAX_HEADER ||
        header_length > size - 8)
        return corrupt(error,
                       "header length %" PRIu64 " does not fit the file's %zu bytes (truncated?)",
                       header_length, size);
    if (header_length % 8 != 0)
        return corrupt(error, "header length %" PRIu64 " is not a multiple of 8",
                       header_length);
    if (bytes[8] != '{')
        return corrupt(error, "the header does not start with '{'");
    int result = check_checksum(bytes, size, (size_t)header_length, error);
    if (result != PARAMD_OK)
        return result;
    json_error_t json_error;
    json_t *header = json_loadb((const char *)bytes + 8, (size_t)header_length,
                                JSON_REJECT_DUPLICATES, &json_error);
    if (header == NULL || !json_is_object(header)) {
        json_decref(header);
        return corrupt(error, "the header is not a JSON object: %s", json_error.text);
    }
    file->bytes = bytes;
    file->size = size;
    file->header = header;
    const unsigned char *data = bytes + 8 + header_length;
    size_t data_size = size - 8 - (size_t)header_length;
    const json_t *metadata = json_object_get(header, "__metadata__");
    if (metadata && !json_is_object(metadata)) {
        paramd__safetensors_close(file);
        return corrupt(error, "__metadata__ must be an object of strings");
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)metadata, key, value) {
        if (!json_is_string(value)) {
            paramd__safetensors_close(file);
            return corrupt(error, "__metadata__.%.200s: must be a string", key);
        }
    }
    file->metadata = metadata;
    size_t count = json_object_size(header) - (metadata != NULL);
    file->entries = calloc(count ? count : 1, sizeof *file->entries);
    if (file->entries == NULL) {
        paramd__safetensors_close(file);
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "safetensors: out of memory");
    }
    json_object_foreach(header, key, value) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        result = parse_entry(key, value, data, data_size, &file->entries[file->entry_count],
                             error);
        if (result != PARAMD_OK) {
            paramd__safetensors_close(file);
            return result;
        }
        file->entry_count++;
    }
    /* The data must be the tensors back to back, nothing else. */
    qsort(file->entries, file->entry_count, sizeof *file->entries, compare_entries);
    const unsigned char *expected = data;
    for (size_t i = 0; i < file->entry_count; i++) {
        const unsigned char *start = (const unsigned char *)file->entries[i].data;
        if (start != expected) {
            const char *name = file->entries[i].name;
            paramd__safetensors_close(file);
            return corrupt(error, "tensor \"%.200s\": its data does not follow the previous "
                                  "tensor's (a gap or an overlap)",
                           name);
        }
        expected += file->entries[i].count * sizeof(float);
    }
    if (expected != data + data_size) {
        size_t extra = (size_t)(data + data_size - expected);
        paramd__safetensors_close(file);
        return corrupt(error, "%zu bytes after the last tensor's data", extra);
    }
    return PARAMD_OK;
}

int paramd__safetensors_open(const char *path, paramd__safetensors_file *file,
                             paramd__error *error)
{
    memset(file, 0, sizeof *file);
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0)
        return paramd__error_set(error, PARAMD_E_CHECKPOINT_FAILED, "cannot open: %s",
                                 strerror(errno));
    struct stat status;
    if (fstat(descriptor, &status) != 0) {
        int saved = errno;
        close(descriptor);
        return paramd__error_set(error, PARAMD_E_CHECKPOINT_FAILED, "cannot stat: %s",
                                 strerror(saved));
    }
    size_t size = (size_t)status.st_size;
    void *mapping = NULL;
    if (size > 0) {
        mapping = mmap(NULL, size, PROT_READ, MAP_PRIVATE, descriptor, 0);
        if (mapping == MAP_FAILED) {
            int saved = errno;
            close(descriptor);
            return paramd__error_set(error, PARAMD_E_CHECKPOINT_FAILED, "cannot map %zu bytes: %s",
                                     size, strerror(saved));
        }
        madvise(mapping, size, MADV_SEQUENTIAL);
    }
    close(descriptor);
    int result = paramd__safetensors_parse(mapping ? mapping : (const void *)"", size, file,
                                           error);
    if (result != PARAMD_OK) {
        if (mapping)
            munmap(mapping, size);
        return result;
    }
    file->mapping = mapping;
    return PARAMD_OK;
}

const paramd__safetensors_entry *paramd__safetensors_find(const paramd__safetensors_file *file,
                                                          const char *name)
{
    for (size_t i = 0; i < file->entry_count; i++)
        if (strcmp(file->entries[i].name, name) == 0)
            return &file->entries[i];
    return NULL;
}

const char *paramd__safetensors_metadata(const paramd__safetensors_file *file, const char *key)
{
    return json_string_value(json_object_get(file->metadata, key));
}

void paramd__safetensors_close(paramd__safetensors_file *file)
{
    free(file->entries);
    json_decref(file->header);
    if (file->mapping)
        munmap(file->mapping, file->size);
    memset(file, 0, sizeof *file);
}
