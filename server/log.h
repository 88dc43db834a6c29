/*
 * log.h - one line per event on stderr, with UTC time and level.
 *
 *   2026-11-22T05:31:02.123Z INFO  model "mnist" created: optimizer AdamW, 4 tensors
 *
 * Each line is formatted into a local buffer and written with a single
 * write(2), so lines from concurrent threads never interleave.
 */
#ifndef PARAMD_SERVER_LOG_H
#define PARAMD_SERVER_LOG_H

typedef enum paramd__log_level {
    PARAMD__LOG_DEBUG = 0,
    PARAMD__LOG_INFO = 1,
    PARAMD__LOG_WARN = 2,
    PARAMD__LOG_ERROR = 3,
} paramd__log_level;

/* Lines below this level are dropped.  Default: PARAMD__LOG_INFO. */
void paramd__log_set_level(paramd__log_level level);

/* Parses "debug", "info", "warn" or "error"; returns -1 if unknown. */
int paramd__log_level_from_name(const char *name);

void paramd__log(paramd__log_level level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Logs whatever the level filter says: for the start-up line with the bound
 * addresses, which scripts and operators rely on. */
void paramd__log_always(paramd__log_level level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#define paramd__log_debug(...) paramd__log(PARAMD__LOG_DEBUG, __VA_ARGS__)
#define paramd__log_info(...) paramd__log(PARAMD__LOG_INFO, __VA_ARGS__)
#define paramd__log_warn(...) paramd__log(PARAMD__LOG_WARN, __VA_ARGS__)
#define paramd__log_error(...) paramd__log(PARAMD__LOG_ERROR, __VA_ARGS__)

#endif
