/*
 * config.h - paramd's configuration file (--config FILE).
 *
 * The file holds the same settings as the command line, one per line:
 *
 *     # comment lines start with '#'
 *     http = 0.0.0.0:8470
 *     data-dir = /var/lib/paramd
 *
 * A name is a long option's name without "--"; the value is the rest of the
 * line after '=', with the surrounding blanks removed (no quoting; '#' after
 * a value is part of the value).  Blank lines and lines whose first non-blank
 * character is '#' are ignored; CRLF line ends and a UTF-8 byte order mark
 * are accepted.  Each name may appear once.
 *
 * This file knows nothing of the options themselves: the caller passes a
 * setter that looks a name up in its option table and applies the value
 * with that option's own parser, so every option of the command line is a
 * setting of the file, and a new option is one automatically.
 */
#ifndef PARAMD_SERVER_CONFIG_H
#define PARAMD_SERVER_CONFIG_H

#include <stddef.h>

/* What a setter returns for one "name = value" line. */
enum {
    PARAMD__CONFIG_APPLIED = 0,   /* the value was valid and is now in effect */
    PARAMD__CONFIG_UNKNOWN = 1,   /* no option has that name */
    PARAMD__CONFIG_BAD_VALUE = 2, /* the option refused the value; message says why */
};

/* Applies one setting.  `name` and `value` are NUL-terminated and trimmed;
 * on PARAMD__CONFIG_BAD_VALUE the setter writes the reason into message
 * (size bytes). */
typedef int (*paramd__config_setter)(void *context, const char *name, const char *value,
                                     char *message, size_t size);

/* The largest configuration file accepted, in bytes. */
#define PARAMD__CONFIG_MAX_BYTES (1u << 20)

/* Parses `length` bytes of `text` (need not be NUL-terminated) and calls
 * `set` for each setting, in file order.  Stops at the first problem and
 * returns -1 with "FILE:LINE: problem" in error (error_size bytes), FILE
 * being `file_name`; returns 0 when every line was applied.  Settings
 * applied before the problem stay applied (the caller refuses to start). */
int paramd__config_parse(const char *text, size_t length, const char *file_name,
                         paramd__config_setter set, void *context, char *error,
                         size_t error_size);

/* Reads the file at `path` (at most PARAMD__CONFIG_MAX_BYTES) and parses it
 * as paramd__config_parse does; a file that cannot be read is an error
 * naming the path and the system's reason. */
int paramd__config_load(const char *path, paramd__config_setter set, void *context, char *error,
                        size_t error_size);

/* Finds "--config FILE" or "--config=FILE" in a paramd command line, whose
 * other long options all take a value ("--name VALUE" or "--name=VALUE");
 * -h, --help and --version take none.  Returns 1 and sets *path when there is
 * one, 0 when there is none or when the command line asks for --help or
 * --version (which never read the file), -1 with a message in error when
 * --config has no value or appears twice. */
int paramd__config_find_argument(int argc, char **argv, const char **path, char *error,
                                 size_t error_size);

#endif
