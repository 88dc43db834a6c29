/* error.c - see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int paramd__error_set(paramd__error *error, int code, const char *format, ...)
{
    if (error == NULL)
        return code;
    error->code = code;
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
}
