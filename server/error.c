/* error.c - see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int paramd__error_set(paramd__error *error, int code, const char *format, ...)
{
    if (error == NULL)
        return code;
    error->code = code;
    error->shard_map_version = 0;
    error->owner = -1;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error->message, sizeof error->message, format, arguments);
    va_end(arguments);
    return code;
}

void paramd__error_clear(paramd__error *error)
{
    error->code = PARAMD_OK;
    error->message[0] = '\0';
    error->shard_map_version = 0;
    error->owner = -1;
}
