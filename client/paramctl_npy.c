/*
 * paramctl_npy.c - .npy and raw float32 files for paramctl.
 *
 * The .npy format (numpy's format.py, NEP 1): the magic "\x93NUMPY", a
 * major and minor version, a little-endian header length (u16 in version
 * 1.0, u32 in 2.0 and 3.0), then the header, a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the data.  The header is parsed
 * as the grammar it is (keys and values of exactly those three kinds), not
 * searched for substrings, and every size is checked against the file.
 * Writing produces version 1.0 with the data aligned to 64 bytes, as numpy
 * does.
 */
#define _DEFAULT_SOURCE
#include "paramctl.h"

#include "half.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_SIZE 6

/* ---------------------------------------------------------------------------
 * Parsing the header dict
 * ------------------------------------------------------------------------- */

typedef struct header_parser {
    const char *text;
    size_t size, position;
    char *why;
    size_t why_size;
} header_parser;

static int header_fail(header_parser *p, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int header_fail(header_parser *p, const char *format, ...)
{
    char message[256];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    snprintf(p->why, p->why_size, ".npy header, at character %zu: %s", p->position, message);
    return PARAMCTL_FILE;
}

static void skip_space(header_parser *p)
{
    while (p->position < p->size &&
           (p->text[p->position] == ' ' || p->text[p->position] == '\t' ||
            p->text[p->position] == '\n' || p->text[p->position] == '\r'))
        p->position++;
}

static bool take(header_parser *p, char c)
{
    skip_space(p);
    if (p->position < p->size && p->text[p->position] == c) {
        p->position++;
        return true;
    }
    return false;
}

/* A quoted Python string ('...' or "...", no escapes) into out. */
static int parse_string(header_parser *p, char *out, size_t out_size)
{
    skip_space(p);
    if (p->position >= p->size || (p->text[p->position] != '\'' && p->text[p->position] != '"'))
        return header_fail(p, "expected a quoted string");
    char quote = p->text[p->position++];
    size_t start = p->position;
    while (p->position < p->size && p->text[p->position] != quote) {
        if (p->text[p->position] == '\\')
            return header_fail(p, "escapes in strings are not supported");
        p->position++;
    }
    if (p->position >= p->size)
        return header_fail(p, "unterminated string");
    size_t length = p->position - start;
    p->position++;
    if (length >= out_size)
        return header_fail(p, "string of %zu characters is too long", length);
    memcpy(out, p->text + start, length);
    out[length] = '\0';
    return PARAMCTL_OK;
}

static int parse_bool(header_parser *p, bool *value)
{
    skip_space(p);
    if (p->size - p->position >= 4 && memcmp(p->text + p->position, "True", 4) == 0) {
        p->position += 4;
        *value = true;
        return PARAMCTL_OK;
    }
    if (p->size - p->position >= 5 && memcmp(p->text + p->position, "False", 5) == 0) {
        p->position += 5;
        *value = false;
        return PARAMCTL_OK;
    }
    return header_fail(p, "expected True or False");
}

/* A tuple of non-negative integers: (), (3,), (2, 3). */
static int parse_shape(header_parser *p, paramctl_shape *shape)
{
    memset(shape, 0, sizeof *shape);
    if (!take(p, '('))
        return header_fail(p, "shape: expected a tuple");
    shape->element_count = 1;
    for (;;) {
        if (take(p, ')'))
            return PARAMCTL_OK;
        skip_space(p);
        if (p->position >= p->size || p->text[p->position] < '0' || p->text[p->position] > '9')
            return header_fail(p, "shape: expected a dimension (a non-negative integer)");
        uint64_t size = 0;
        while (p->position < p->size && p->text[p->position] >= '0' &&
               p->text[p->position] <= '9') {
            unsigned digit = (unsigned)(p->text[p->position++] - '0');
            if (size > (UINT64_MAX - digit) / 10)
                return header_fail(p, "shape: a dimension is too large");
            size = size * 10 + digit;
        }
        if (p->size - p->position >= 1 && p->text[p->position] == 'L')
            p->position++; /* Python 2 longs */
        if (shape->dimension_count == 8)
            return header_fail(p, "shape: more than 8 dimensions (paramd's limit)");
        shape->shape[shape->dimension_count++] = size;
        if (size != 0 && shape->element_count > UINT64_MAX / size)
            return header_fail(p, "shape: the element count overflows");
        shape->element_count *= size;
        if (!take(p, ',')) {
            if (take(p, ')'))
                return PARAMCTL_OK;
            return header_fail(p, "shape: expected ',' or ')'");
        }
    }
}

/* The header dict: descr, fortran_order, shape, each once. */
static int parse_header(header_parser *p, char *descr, size_t descr_size, bool *fortran,
                        paramctl_shape *shape)
{
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!take(p, '{'))
        return header_fail(p, "expected '{'");
    for (;;) {
        if (take(p, '}'))
            break;
        char key[32];
        int result = parse_string(p, key, sizeof key);
        if (result != PARAMCTL_OK)
            return result;
        if (!take(p, ':'))
            return header_fail(p, "expected ':' after '%s'", key);
        bool *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &have_descr;
            result = parse_string(p, descr, descr_size);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &have_fortran;
            result = parse_bool(p, fortran);
        } else if (strcmp(key, "shape") == 0) {
            seen = &have_shape;
            result = parse_shape(p, shape);
        } else {
            return header_fail(p, "unknown key '%s' (expected descr, fortran_order, shape)", key);
        }
        if (result != PARAMCTL_OK)
            return result;
        if (*seen)
            return header_fail(p, "key '%s' appears twice", key);
        *seen = true;
        if (!take(p, ',')) {
            if (take(p, '}'))
                break;
            return header_fail(p, "expected ',' or '}'");
        }
    }
    skip_space(p);
    if (p->position != p->size)
        return header_fail(p, "unexpected text after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return header_fail(p, "missing key '%s'",
                           !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    return PARAMCTL_OK;
}

/* ---------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------- */

static uint64_t load_le(const uint8_t *p, int bytes)
{
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--)
        value = (value << 8) | p[i];
    return value;
}

static uint64_t load_be(const uint8_t *p, int bytes)
{
    uint64_t value = 0;
    for (int i = 0; i < bytes; i++)
        value = (value << 8) | p[i];
    return value;
}

/* Converts count elements of one of the accepted descrs to float32. */
static void convert(const uint8_t *data, char order, int item_size, size_t count, float *out)
{
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = data + i * (size_t)item_size;
        uint64_t bits = order == '>' ? load_be(p, item_size) : load_le(p, item_size);
        if (item_size == 2) {
            out[i] = paramd_float16_to_float32((uint16_t)bits);
        } else if (item_size == 4) {
            uint32_t word = (uint32_t)bits;
            memcpy(&out[i], &word, sizeof word);
        } else {
            double wide;
            memcpy(&wide, &bits, sizeof wide);
            out[i] = (float)wide; /* to nearest; beyond float32's range: infinity */
        }
    }
}

int paramctl_parse_npy(const uint8_t *bytes, size_t size, float **values, size_t *count,
                       paramctl_shape *shape, char *why, size_t why_size)
{
    *values = NULL;
    if (size < NPY_MAGIC_SIZE + 4 || memcmp(bytes, NPY_MAGIC, NPY_MAGIC_SIZE) != 0) {
        snprintf(why, why_size, "not a .npy file (no \\x93NUMPY magic)");
        return PARAMCTL_FILE;
    }
    unsigned major = bytes[6], minor = bytes[7];
    size_t header_length, header_start;
    if (major == 1) {
        header_length = (size_t)load_le(bytes + 8, 2);
        header_start = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) {
            snprintf(why, why_size, ".npy version %u.%u: truncated before the header length",
                     major, minor);
            return PARAMCTL_FILE;
        }
        header_length = (size_t)load_le(bytes + 8, 4);
        header_start = 12;
    } else {
        snprintf(why, why_size, ".npy version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                 major, minor);
        return PARAMCTL_FILE;
    }
    if (header_length > size - header_start) {
        snprintf(why, why_size, ".npy header of %zu bytes runs past the end of the file (%zu bytes)",
                 header_length, size);
        return PARAMCTL_FILE;
    }
    header_parser parser = {(const char *)bytes + header_start, header_length, 0, why, why_size};
    char descr[16] = {0};
    bool fortran = false;
    int result = parse_header(&parser, descr, sizeof descr, &fortran, shape);
    if (result != PARAMCTL_OK)
        return result;
    char order = descr[0];
    int item_size = 0;
    if ((order == '<' || order == '>' || order == '=') && descr[1] == 'f' && descr[3] == '\0')
        item_size = descr[2] == '2' ? 2 : descr[2] == '4' ? 4 : descr[2] == '8' ? 8 : 0;
    if (item_size == 0) {
        snprintf(why, why_size,
                 ".npy descr '%s': paramctl reads float32, float16 and float64 arrays "
                 "('<f4', '<f2', '<f8')",
                 descr);
        return PARAMCTL_FILE;
    }
    if (order == '=')
        order = '<'; /* paramd builds only for little-endian hosts */
    if (fortran && shape->dimension_count > 1) {
        snprintf(why, why_size,
                 ".npy has fortran_order True: save it in C order "
                 "(numpy.ascontiguousarray) first");
        return PARAMCTL_FILE;
    }
    size_t data_start = header_start + header_length, data_size = size - data_start;
    if (shape->element_count > data_size / (size_t)item_size ||
        shape->element_count * (size_t)item_size != data_size) {
        snprintf(why, why_size,
                 ".npy data is %zu bytes; shape of %llu elements of %d bytes needs %llu",
                 data_size, (unsigned long long)shape->element_count, item_size,
                 (unsigned long long)(shape->element_count * (uint64_t)item_size));
        return PARAMCTL_FILE;
    }
    *count = (size_t)shape->element_count;
    *values = malloc(*count ? *count * sizeof(float) : 1);
    if (*values == NULL) {
        snprintf(why, why_size, "out of memory for %zu floats", *count);
        return PARAMCTL_FILE;
    }
    convert(bytes + data_start, order, item_size, *count, *values);
    return PARAMCTL_OK;
}

/* The whole file, malloc'ed. */
static int read_file(const char *path, uint8_t **bytes, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return paramctl_fail(PARAMCTL_FILE, "%s: %s", path, strerror(errno));
    size_t capacity = 1 << 16, length = 0;
    uint8_t *data = malloc(capacity);
    for (;;) {
        if (data == NULL) {
            fclose(file);
            return paramctl_fail(PARAMCTL_FILE, "%s: out of memory", path);
        }
        length += fread(data + length, 1, capacity - length, file);
        if (length < capacity)
            break;
        capacity *= 2;
        uint8_t *grown = realloc(data, capacity);
        if (grown == NULL)
            free(data);
        data = grown;
    }
    int failed = ferror(file);
    fclose(file);
    if (failed) {
        free(data);
        return paramctl_fail(PARAMCTL_FILE, "%s: read error", path);
    }
    *bytes = data;
    *size = length;
    return PARAMCTL_OK;
}

int paramctl_read_floats(const char *path, float **values, size_t *count, paramctl_shape *shape)
{
    uint8_t *bytes = NULL;
    size_t size = 0;
    int result = read_file(path, &bytes, &size);
    if (result != PARAMCTL_OK)
        return result;
    if (size >= NPY_MAGIC_SIZE && memcmp(bytes, NPY_MAGIC, NPY_MAGIC_SIZE) == 0) {
        char why[512];
        result = paramctl_parse_npy(bytes, size, values, count, shape, why, sizeof why);
        free(bytes);
        return result == PARAMCTL_OK ? result : paramctl_fail(result, "%s: %s", path, why);
    }
    if (size % sizeof(float) != 0) {
        free(bytes);
        return paramctl_fail(PARAMCTL_FILE,
                             "%s: %zu bytes is not a whole number of float32 values (raw files "
                             "hold little-endian float32; or give a .npy file)",
                             path, size);
    }
    *count = size / sizeof(float);
    memset(shape, 0, sizeof *shape);
    shape->dimension_count = 1;
    shape->shape[0] = *count;
    shape->element_count = *count;
    *values = (float *)(void *)bytes; /* raw float32 in place (malloc'ed, so aligned) */
    return PARAMCTL_OK;
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

static bool ends_with(const char *text, const char *suffix)
{
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

int paramctl_write_floats(const char *path, const float *values, size_t count,
                          const paramctl_shape *shape)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL)
        return paramctl_fail(PARAMCTL_FILE, "%s: %s", path, strerror(errno));
    bool ok = true;
    if (ends_with(path, ".npy")) {
        char header[512];
        int length = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
        for (int d = 0; d < shape->dimension_count; d++)
            length += snprintf(header + length, sizeof header - (size_t)length, "%s%llu",
                               d ? ", " : "", (unsigned long long)shape->shape[d]);
        length += snprintf(header + length, sizeof header - (size_t)length, "%s), }",
                           shape->dimension_count == 1 ? "," : "");
        /* Spaces, then a newline, so that the data starts at a multiple of 64. */
        size_t total = NPY_MAGIC_SIZE + 4 + (size_t)length + 1;
        size_t padding = (64 - total % 64) % 64;
        memset(header + length, ' ', padding);
        header[(size_t)length + padding] = '\n';
        size_t header_length = (size_t)length + padding + 1;
        uint8_t preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                (uint8_t)(header_length & 0xff), (uint8_t)(header_length >> 8)};
        ok = fwrite(preamble, 1, sizeof preamble, file) == sizeof preamble &&
             fwrite(header, 1, header_length, file) == header_length;
    }
    if (ok && count)
        ok = fwrite(values, sizeof(float), count, file) == count;
    if (fclose(file) != 0)
        ok = false;
    return ok ? PARAMCTL_OK : paramctl_fail(PARAMCTL_FILE, "%s: write error: %s", path, strerror(errno));
}
