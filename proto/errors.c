/*
 * errors.c - names and messages of paramd's error codes.
 *
 * Shared by the server and the client library; the table comes from the
 * PARAMD_ERROR_MAP X-macro in include/paramd/paramd.h.
 */
#include "paramd/paramd.h"

const char *paramd_strerror(int code)
{
    switch (code) {
    case PARAMD_OK:
        return "success";
#define PARAMD__ERROR_MESSAGE(suffix, value, name, message) \
    case PARAMD_E_##suffix:                                  \
        return message;
        PARAMD_ERROR_MAP(PARAMD__ERROR_MESSAGE)
#undef PARAMD__ERROR_MESSAGE
    default:
        return "unknown error";
    }
}

const char *paramd_error_name(int code)
{
    switch (code) {
    case PARAMD_OK:
        return "ok";
#define PARAMD__ERROR_NAME(suffix, value, name, message) \
    case PARAMD_E_##suffix:                               \
        return name;
        PARAMD_ERROR_MAP(PARAMD__ERROR_NAME)
#undef PARAMD__ERROR_NAME
    default:
        return "unknown";
    }
}
