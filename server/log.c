/* log.c - see log.h. */
#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int minimum_level = PARAMD__LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void paramd__log_set_level(paramd__log_level level)
{
    atomic_store(&minimum_level, (int)level);
}

int paramd__log_level_from_name(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    return -1;
}

static void log_line(paramd__log_level level, const char *format, va_list arguments)
    __attribute__((format(printf, 2, 0)));

void paramd__log(paramd__log_level level, const char *format, ...)
{
    if ((int)level < atomic_load(&minimum_level))
        return;
    va_list arguments;
    va_start(arguments, format);
    log_line(level, format, arguments);
    va_end(arguments);
}

void paramd__log_always(paramd__log_level level, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    log_line(level, format, arguments);
    va_end(arguments);
}

static void log_line(paramd__log_level level, const char *format, va_list arguments)
{
    char line[2048];
    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    size_t length = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc);
    length += (size_t)snprintf(line + length, sizeof line - length, ".%03ldZ %s ",
                               now.tv_nsec / 1000000L, level_names[level]);
    int written = vsnprintf(line + length, sizeof line - length - 1, format, arguments);
    if (written < 0)
        written = 0;
    size_t message_start = length;
    length += (size_t)written;
    if (length > sizeof line - 2)
        length = sizeof line - 2; /* truncated message: still end the line */
    /* One event, one line: control characters a client put into what is
     * logged (a URL with %0a, a client name) cannot forge further lines. */
    for (size_t i = message_start; i < length; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[length++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, length);
    (void)ignored;
}
