/*
 * paramd.h - public constants of paramd: version and error codes.
 *
 * Every error paramd reports, over HTTP, over the binary protocol or from the
 * client library, is one of the negative codes below.  The list is an X-macro
 * so that the enum, the stable string names (the "code" field of an HTTP
 * error body) and the default messages can never drift apart.
 *
 * Codes are part of the wire contract: never renumber an existing entry,
 * only append.  The server never sends connect_failed, connection_error,
 * timeout or invalid_argument: the client library reports them for what
 * happens on its side of the connection (include/paramd/client.h).
 */
#ifndef PARAMD_PARAMD_H
#define PARAMD_PARAMD_H

#ifdef __cplusplus
extern "C" {
#endif

#define PARAMD_VERSION_MAJOR 0
#define PARAMD_VERSION_MINOR 1
#define PARAMD_VERSION_PATCH 0
#define PARAMD_VERSION_STRING "0.1.0"

/* XX(ENUM_SUFFIX, numeric value, "stable_name", "default message") */
#define PARAMD_ERROR_MAP(XX)                                                          \
    XX(BAD_JSON,            -1, "bad_json",            "request body is not valid JSON") \
    XX(BAD_REQUEST,         -2, "bad_request",         "request is malformed")          \
    XX(MODEL_NOT_FOUND,     -3, "model_not_found",     "no such model")                 \
    XX(MODEL_EXISTS,        -4, "model_exists",        "model already exists")          \
    XX(TENSOR_NOT_FOUND,    -5, "tensor_not_found",    "no such tensor in the model")   \
    XX(UNKNOWN_OPTIMIZER,   -6, "unknown_optimizer",   "unknown optimizer name")        \
    XX(BAD_HYPERPARAMETER,  -7, "bad_hyperparameter",  "hyperparameter unknown or out of range") \
    XX(SHAPE_MISMATCH,      -8, "shape_mismatch",      "data length does not match the tensor shape") \
    XX(NON_FINITE,          -9, "non_finite",          "value is NaN or infinite")      \
    XX(PAYLOAD_TOO_LARGE,  -10, "payload_too_large",   "request body exceeds the configured limit") \
    XX(NO_MEMORY,          -11, "out_of_memory",       "not enough memory")             \
    XX(NOT_FOUND,          -12, "not_found",           "no such resource")              \
    XX(METHOD_NOT_ALLOWED, -13, "method_not_allowed",  "method not allowed on this resource") \
    XX(BAD_NAME,           -14, "bad_name",            "name is empty, too long or has invalid characters") \
    XX(BAD_ENCODING,       -15, "bad_encoding",        "data encoding is invalid")      \
    XX(INTERNAL,           -16, "internal",            "internal error")                \
    XX(UNAVAILABLE,        -17, "unavailable",         "server is shutting down")       \
    XX(BAD_FRAME,          -18, "bad_frame",           "binary protocol frame is malformed") \
    XX(HELLO_REQUIRED,     -19, "hello_required",      "the first request must be HELLO") \
    XX(UNSUPPORTED_VERSION,-20, "unsupported_version", "no protocol version in common") \
    XX(BAD_RANGE,          -21, "bad_range",           "range is outside the tensor or does not cover it") \
    XX(NOT_OWNER,          -22, "not_owner",           "this shard does not hold that tensor (stale shard map?)") \
    XX(TIMEOUT,            -23, "timeout",             "timed out: the server did not answer in time, or other workers did not push") \
    XX(CONNECT,            -24, "connect_failed",      "cannot connect to the server")  \
    XX(CONNECTION,         -25, "connection_error",    "the connection to the server failed or was closed") \
    XX(INVALID_ARGUMENT,   -26, "invalid_argument",    "an argument of a client library call is invalid") \
    XX(CHECKPOINT_FAILED,  -27, "checkpoint_failed",   "a checkpoint could not be written or read") \
    XX(CHECKPOINT_CORRUPT, -28, "checkpoint_corrupt",  "a checkpoint file is damaged or inconsistent") \
    XX(UNAUTHORIZED,       -29, "unauthorized",        "a valid bearer token is required")  \
    XX(FORBIDDEN,          -30, "forbidden",           "the token's role does not allow this request") \
    XX(OVERLOADED,         -31, "overloaded",          "the server is at a configured limit; retry later")

/* Marks the functions a shared library of paramd exports; everything else
 * in it is built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define PARAMD_EXPORT __attribute__((visibility("default")))
#else
#define PARAMD_EXPORT
#endif

typedef enum paramd_error_code {
    PARAMD_OK = 0,
#define PARAMD__ERROR_ENUM(suffix, value, name, message) PARAMD_E_##suffix = (value),
    PARAMD_ERROR_MAP(PARAMD__ERROR_ENUM)
#undef PARAMD__ERROR_ENUM
} paramd_error_code;

/* Default human-readable message for an error code ("success" for 0,
 * "unknown error" for a code not in the list).  Never returns NULL. */
PARAMD_EXPORT const char *paramd_strerror(int code);

/* Stable machine-readable name of an error code, e.g. "model_not_found".
 * Never returns NULL. */
PARAMD_EXPORT const char *paramd_error_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* PARAMD_PARAMD_H */
