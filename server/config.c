/*
 * config.c - paramd's configuration file: "name = value" lines applied
 * through the caller's option table (config.h has the format).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest name or value kept; longer ones are refused, not cut. */
#define NAME_MAX_BYTES 64
#define VALUE_MAX_BYTES 4096

/* A name already set, and on which line, to refuse a second setting. */
typedef struct seen_name {
    char name[NAME_MAX_BYTES];
    unsigned line;
} seen_name;

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Shrinks [*start, *end) past blanks at both ends. */
static void trim(const char **start, const char **end)
{
    while (*start < *end && is_blank(**start))
        (*start)++;
    while (*end > *start && is_blank((*end)[-1]))
        (*end)--;
}

static int valid_name(const char *name, size_t length)
{
    if (length == 0)
        return 0;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              (c >= 'A' && c <= 'Z') || c == '_'))
            return 0;
    }
    return 1;
}

/* Parses one line [start, end) (without its '\n'); returns 0 when it is
 * applied or has nothing to apply, -1 with error set otherwise. */
static int parse_line(const char *start, const char *end, const char *file_name, unsigned line,
                      seen_name **seen, size_t *seen_count, paramd__config_setter set,
                      void *context, char *error, size_t error_size)
{
    if (memchr(start, '\0', (size_t)(end - start)) != NULL) {
        snprintf(error, error_size, "%s:%u: the line holds a NUL byte", file_name, line);
        return -1;
    }
    trim(&start, &end);
    if (start == end || *start == '#')
        return 0;
    const char *equals = memchr(start, '=', (size_t)(end - start));
    if (equals == NULL) {
        snprintf(error, error_size, "%s:%u: expected \"name = value\", got \"%.*s\"", file_name,
                 line, (int)(end - start > 80 ? 80 : end - start), start);
        return -1;
    }
    const char *name_start = start, *name_end = equals;
    const char *value_start = equals + 1, *value_end = end;
    trim(&name_start, &name_end);
    trim(&value_start, &value_end);
    size_t name_length = (size_t)(name_end - name_start);
    size_t value_length = (size_t)(value_end - value_start);
    if (name_length >= 2 && name_start[0] == '-' && name_start[1] == '-') {
        snprintf(error, error_size, "%s:%u: write the name without \"--\": \"%.*s = ...\"",
                 file_name, line, (int)(name_length > 66 ? 64 : name_length - 2), name_start + 2);
        return -1;
    }
    if (!valid_name(name_start, name_length) || name_length >= NAME_MAX_BYTES) {
        snprintf(error, error_size, "%s:%u: \"%.*s\" is not an option name", file_name, line,
                 (int)(name_length > 64 ? 64 : name_length), name_start);
        return -1;
    }
    if (value_length >= VALUE_MAX_BYTES) {
        snprintf(error, error_size, "%s:%u: %.*s: the value is longer than %d bytes", file_name,
                 line, (int)name_length, name_start, VALUE_MAX_BYTES - 1);
        return -1;
    }
    char name[NAME_MAX_BYTES];
    memcpy(name, name_start, name_length);
    name[name_length] = '\0';
    for (size_t i = 0; i < *seen_count; i++)
        if (strcmp((*seen)[i].name, name) == 0) {
            snprintf(error, error_size, "%s:%u: \"%s\" is already set on line %u", file_name,
                     line, name, (*seen)[i].line);
            return -1;
        }
    if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0 ||
        strcmp(name, "version") == 0) {
        snprintf(error, error_size, "%s:%u: \"%s\" is a command-line option only", file_name,
                 line, name);
        return -1;
    }
    char *value = malloc(value_length + 1);
    seen_name *grown = realloc(*seen, (*seen_count + 1) * sizeof **seen);
    if (value == NULL || grown == NULL) {
        free(value);
        if (grown != NULL)
            *seen = grown;
        snprintf(error, error_size, "%s:%u: out of memory", file_name, line);
        return -1;
    }
    *seen = grown;
    memcpy(value, value_start, value_length);
    value[value_length] = '\0';
    char message[512] = "";
    int outcome = set(context, name, value, message, sizeof message);
    int result = 0;
    if (outcome == PARAMD__CONFIG_UNKNOWN) {
        snprintf(error, error_size,
                 "%s:%u: unknown option \"%s\" (names are paramd --help's long options "
                 "without \"--\")",
                 file_name, line, name);
        result = -1;
    } else if (outcome != PARAMD__CONFIG_APPLIED) {
        snprintf(error, error_size, "%s:%u: %s: %s%s", file_name, line, name,
                 message[0] ? message : "bad value",
                 strchr(value, '#') ? " (a comment must be on a line of its own)" : "");
        result = -1;
    } else {
        strcpy((*seen)[*seen_count].name, name);
        (*seen)[*seen_count].line = line;
        (*seen_count)++;
    }
    free(value);
    return result;
}

int paramd__config_parse(const char *text, size_t length, const char *file_name,
                         paramd__config_setter set, void *context, char *error,
                         size_t error_size)
{
    const char *cursor = text, *end = text + length;
    /* A UTF-8 byte order mark, which some editors write, is not a name. */
    if (length >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        cursor += 3;
    seen_name *seen = NULL;
    size_t seen_count = 0;
    unsigned line = 0;
    int result = 0;
    while (cursor < end && result == 0) {
        line++;
        const char *newline = memchr(cursor, '\n', (size_t)(end - cursor));
        const char *line_end = newline ? newline : end;
        result = parse_line(cursor, line_end, file_name, line, &seen, &seen_count, set, context,
                            error, error_size);
        cursor = newline ? newline + 1 : end;
    }
    free(seen);
    return result;
}

int paramd__config_load(const char *path, paramd__config_setter set, void *context, char *error,
                        size_t error_size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(error, error_size, "%s: cannot open it: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(PARAMD__CONFIG_MAX_BYTES + 1);
    if (text == NULL) {
        fclose(file);
        snprintf(error, error_size, "%s: out of memory", path);
        return -1;
    }
    size_t length = fread(text, 1, PARAMD__CONFIG_MAX_BYTES + 1, file);
    int failed = ferror(file);
    int saved_errno = errno;
    fclose(file);
    int result = -1;
    if (failed)
        snprintf(error, error_size, "%s: cannot read it: %s", path, strerror(saved_errno));
    else if (length > PARAMD__CONFIG_MAX_BYTES)
        snprintf(error, error_size, "%s: larger than %u bytes", path, PARAMD__CONFIG_MAX_BYTES);
    else
        result = paramd__config_parse(text, length, path, set, context, error, error_size);
    free(text);
    return result;
}

int paramd__config_find_argument(int argc, char **argv, const char **path, char *error,
                                 size_t error_size)
{
    const char *found = NULL;
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0 ||
            strcmp(argument, "--version") == 0)
            return 0;
        if (strncmp(argument, "--", 2) != 0)
            continue; /* the option parser reports it */
        const char *value = NULL;
        if (strchr(argument, '=') != NULL)
            value = strchr(argument, '=') + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        int is_config = strncmp(argument, "--config", 8) == 0 &&
                        (argument[8] == '\0' || argument[8] == '=');
        if (!is_config)
            continue;
        if (value == NULL || value[0] == '\0') {
            snprintf(error, error_size, "--config needs a value (FILE)");
            return -1;
        }
        if (found != NULL) {
            snprintf(error, error_size, "--config is given twice (\"%s\" and \"%s\")", found,
                     value);
            return -1;
        }
        found = value;
    }
    if (found == NULL)
        return 0;
    *path = found;
    return 1;
}
