/*
 * paramctl.c - the paramd command-line client: options, subcommands and
 * their help texts.  The transports are in paramctl_tcp.c (the binary
 * protocol, the default) and paramctl_http.c (--http); files in
 * paramctl_npy.c.  docs/CLIENT.md documents every subcommand.
 */
#define _DEFAULT_SOURCE
#include "paramctl.h"

#include "paramd/paramd.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_TCP "127.0.0.1:8471"
/* The server's limit on a token's length (server/auth.h). */
#define TOKEN_MAX_LENGTH 256
#define DEFAULT_TIMEOUT_SECONDS 30

/* ---------------------------------------------------------------------------
 * Help
 * ------------------------------------------------------------------------- */

static const char *global_help =
    "usage: paramctl [--tcp HOST:PORT | --http [https://]HOST:PORT | --shard-map FILE]\n"
    "                [--token-file FILE] [--cacert FILE] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "Talks to a paramd server over its binary protocol (--tcp, the default,\n"
    "" DEFAULT_TCP ") or its HTTP API (--http, e.g. 127.0.0.1:8470, or\n"
    "https://HOST:PORT for a server with --tls-cert), or to every shard of a\n"
    "sharded parameter service (--shard-map, over the binary protocol).\n"
    "\n"
    "commands:\n"
    "  create MODEL FILE.json      create a model from the JSON body of PUT /v1/models/MODEL\n"
    "  list                        list models\n"
    "  describe MODEL              a model's description (optimizer, tensors, steps)\n"
    "  delete MODEL                delete a model\n"
    "  push MODEL TENSOR FILE      push a gradient from a .npy or raw float32 file\n"
    "  pull MODEL TENSOR FILE      write a tensor's weights to FILE (.npy if it ends in .npy,\n"
    "                              else raw little-endian float32)\n"
    "  stats [MODEL]               the server's counters (--tcp, --shard-map), or a model's\n"
    "                              description\n"
    "\n"
    "options:\n"
    "  --tcp HOST:PORT     the binary protocol at HOST:PORT (default " DEFAULT_TCP ")\n"
    "  --http HOST:PORT    the HTTP API at HOST:PORT instead; https://HOST:PORT speaks\n"
    "                      HTTPS and verifies the server's certificate (always)\n"
    "  --shard-map FILE    every shard of the shard map FILE instead: create and delete\n"
    "                      on every shard, push and pull routed to the shards that hold\n"
    "                      each part; list, describe and stats merge the shards' answers\n"
    "  --token-file FILE   the bearer token for a server with --token-file: the first\n"
    "                      line of FILE that is not blank or a # comment, holding the\n"
    "                      token alone (or \"ROLE TOKEN\", as in the server's file).\n"
    "                      Sent in HELLO (--tcp, --shard-map) or as \"Authorization:\n"
    "                      Bearer\" (--http).  Without it, the environment variable\n"
    "                      PARAMD_TOKEN gives the token.  Warns when FILE can be read\n"
    "                      by its group or others\n"
    "  --cacert FILE       with --http https://...: the CA certificate (or the server's\n"
    "                      self-signed certificate) to verify the server against,\n"
    "                      instead of the system's trust store\n"
    "  --timeout SECONDS   limit for connecting and for each request (default 30)\n"
    "  -h, --help          this help; COMMAND --help for a command's\n"
    "  --version           paramctl's version\n"
    "\n"
    "JSON answers are printed on stdout as the server wrote them; errors go to\n"
    "stderr with the server's code and message (unauthorized: no token or an\n"
    "unknown one; forbidden: the token's role, read < write < admin, is too low).\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  the server refused the request (e.g. model_not_found, bad_json,\n"
    "     unauthorized, forbidden)\n"
    "  2  usage error (unknown command or option, wrong arguments)\n"
    "  3  cannot connect to the server, or the connection failed or timed out\n"
    "  4  a local file cannot be read, parsed or written (--token-file too)\n";

typedef struct command {
    const char *name;
    int min_arguments, max_arguments;
    const char *usage;
    const char *help;
} command;

static const command commands[] = {
    {"create", 2, 2, "create MODEL FILE.json",
     "Creates MODEL from FILE.json, the body of PUT /v1/models/MODEL (docs/API.md):\n"
     "optimizer, tensors, and optionally param_groups, clip, schedule and the training\n"
     "options.  Prints the new model's description.\n"},
    {"list", 0, 0, "list", "Prints the models: {\"models\": [{\"name\", \"optimizer\", ...}]}.\n"},
    {"describe", 1, 1, "describe MODEL",
     "Prints MODEL's description: optimizer with every hyperparameter, step counts,\n"
     "tensors with their shapes and optimizer state.\n"},
    {"delete", 1, 1, "delete MODEL", "Deletes MODEL.  Prints nothing.\n"},
    {"push", 3, 3, "push MODEL TENSOR FILE",
     "Pushes the gradient in FILE for TENSOR of MODEL (one optimizer step) and prints\n"
     "{\"step\", \"lr\"} (and grad_norm, loss_scale, skipped, accumulated where they\n"
     "apply).  FILE is a .npy array (float32, float16 or float64, converted to float32;\n"
     "C order; any shape with the tensor's element count) or raw little-endian float32.\n"},
    {"pull", 3, 3, "pull MODEL TENSOR FILE",
     "Writes TENSOR's weights to FILE: a float32 .npy with the tensor's shape when FILE\n"
     "ends in .npy, else raw little-endian float32.\n"},
    {"stats", 0, 1, "stats [MODEL]",
     "Without MODEL: the server's counters (models, pushes, pulls, connections); this\n"
     "needs --tcp or --shard-map (every shard's, and their sums), as the HTTP API has\n"
     "no such route.  With MODEL: its description.\n"},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void print_command_help(const command *c)
{
    printf("usage: paramctl [OPTIONS] %s\n\n%s\nSee paramctl --help for the options and exit "
           "status.\n",
           c->usage, c->help);
}

int paramctl_fail(int exit_code, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fputs("paramctl: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    return exit_code;
}

static int usage_error(const command *c, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const command *c, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fputs("paramctl: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    if (c)
        fprintf(stderr, "usage: paramctl [OPTIONS] %s (paramctl %s --help)\n", c->usage, c->name);
    else
        fprintf(stderr, "usage: paramctl [OPTIONS] COMMAND [ARGS] (paramctl --help)\n");
    return PARAMCTL_USAGE;
}

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* HOST:PORT or [V6HOST]:PORT into host (copied) and port. */
static bool parse_address(const char *text, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text)
        return false;
    const char *start = text, *end = colon;
    if (text[0] == '[') {
        if (colon[-1] != ']')
            return false;
        start = text + 1;
        end = colon - 1;
    }
    size_t length = (size_t)(end - start);
    if (length == 0 || length >= host_size)
        return false;
    memcpy(host, start, length);
    host[length] = '\0';
    char *rest;
    errno = 0;
    long value = strtol(colon + 1, &rest, 10);
    if (errno || *rest || rest == colon + 1 || value < 1 || value > 65535)
        return false;
    *port = (int)value;
    return true;
}

char *paramctl_push_summary(uint64_t step, double lr, double grad_norm, double loss_scale,
                            bool skipped, bool accumulated)
{
    json_t *summary = json_pack("{s:I, s:f}", "step", (json_int_t)step, "lr", lr);
    if (summary == NULL)
        return NULL;
    if (!isnan(grad_norm))
        json_object_set_new(summary, "grad_norm", json_real(grad_norm));
    if (!isnan(loss_scale))
        json_object_set_new(summary, "loss_scale", json_real(loss_scale));
    if (skipped)
        json_object_set_new(summary, "skipped", json_true());
    if (accumulated)
        json_object_set_new(summary, "accumulated", json_true());
    char *text = json_dumps(summary, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(summary);
    return text;
}

/* A whole text file, NUL-terminated (malloc'ed). */
static int read_text(const char *path, char **text)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return paramctl_fail(PARAMCTL_FILE, "%s: %s", path, strerror(errno));
    size_t capacity = 4096, length = 0;
    char *data = malloc(capacity);
    while (data) {
        length += fread(data + length, 1, capacity - length - 1, file);
        if (length < capacity - 1)
            break;
        capacity *= 2;
        char *grown = realloc(data, capacity);
        if (grown == NULL)
            free(data);
        data = grown;
    }
    int failed = ferror(file);
    fclose(file);
    if (data == NULL || failed) {
        free(data);
        return paramctl_fail(PARAMCTL_FILE, "%s: cannot read it", path);
    }
    data[length] = '\0';
    if (strlen(data) != length) {
        free(data);
        return paramctl_fail(PARAMCTL_FILE, "%s: holds a NUL byte; it is not a JSON text", path);
    }
    *text = data;
    return PARAMCTL_OK;
}

/* Prints a JSON document the server sent and frees it. */
static int print_json(char *json)
{
    if (json) {
        size_t length = strlen(json);
        while (length > 0 && (json[length - 1] == '\n' || json[length - 1] == '\r'))
            json[--length] = '\0'; /* the HTTP API ends its bodies with a newline */
        fputs(json, stdout);
        fputc('\n', stdout);
        free(json);
    }
    return PARAMCTL_OK;
}

/* ---------------------------------------------------------------------------
 * Tokens
 * ------------------------------------------------------------------------- */

/* RFC 6750's b64token: A-Z a-z 0-9 - . _ ~ + /, then optional '=' padding. */
static bool is_token(const char *text, size_t length)
{
    size_t i = 0;
    while (i < length && (((text[i] | 0x20) >= 'a' && (text[i] | 0x20) <= 'z') ||
                          (text[i] >= '0' && text[i] <= '9') || strchr("-._~+/", text[i])))
        i++;
    if (i == 0)
        return false;
    while (i < length && text[i] == '=')
        i++;
    return i == length;
}

/* Reads the token of a --token-file: the first line that is neither blank
 * nor a # comment, holding the token alone or "ROLE TOKEN" (a line of the
 * server's token file).  Warns when the file can be read by its group or
 * others.  Returns PARAMCTL_OK or PARAMCTL_FILE, having said why. */
static int read_token_file(const char *path, char *token, size_t size)
{
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return paramctl_fail(PARAMCTL_FILE, "--token-file %s: %s", path, strerror(errno));
    struct stat status;
    if (fstat(fileno(file), &status) == 0 && S_ISREG(status.st_mode) &&
        (status.st_mode & (S_IRWXG | S_IRWXO)))
        fprintf(stderr,
                "paramctl: warning: --token-file %s can be read by %s (mode %03o); a token "
                "file should be private: chmod 600 %s\n",
                path, status.st_mode & S_IRWXO ? "others" : "its group",
                (unsigned)(status.st_mode & 0777), path);
    char line[1024];
    int result = -1;
    for (int number = 1; result < 0 && fgets(line, sizeof line, file); number++) {
        size_t length = strlen(line);
        if (length == sizeof line - 1 && line[length - 1] != '\n') {
            result = paramctl_fail(PARAMCTL_FILE, "--token-file %s: line %d is too long for a token",
                                   path, number);
            break;
        }
        char *words[3] = {NULL, NULL, NULL};
        int count = 0;
        for (char *word = strtok(line, " \t\r\n"); word; word = strtok(NULL, " \t\r\n"))
            if (count < 3)
                words[count++] = word;
            else
                count = 4;
        if (count == 0 || words[0][0] == '#')
            continue;
        const char *found = NULL;
        if (count == 1)
            found = words[0];
        else if (count == 2 && (strcmp(words[0], "read") == 0 || strcmp(words[0], "write") == 0 ||
                                strcmp(words[0], "admin") == 0))
            found = words[1];
        if (found == NULL)
            result = paramctl_fail(PARAMCTL_FILE,
                                   "--token-file %s: line %d: expected the token alone, or "
                                   "\"ROLE TOKEN\" (ROLE read, write or admin)",
                                   path, number);
        else if (strlen(found) > TOKEN_MAX_LENGTH || strlen(found) >= size ||
                 !is_token(found, strlen(found)))
            result = paramctl_fail(PARAMCTL_FILE,
                                   "--token-file %s: line %d: not a bearer token (1 to %d of "
                                   "A-Z a-z 0-9 - . _ ~ + /, then optional =)",
                                   path, number, TOKEN_MAX_LENGTH);
        else {
            memcpy(token, found, strlen(found) + 1);
            result = PARAMCTL_OK;
        }
    }
    explicit_bzero(line, sizeof line);
    if (result < 0 && ferror(file))
        result = paramctl_fail(PARAMCTL_FILE, "--token-file %s: cannot read it", path);
    else if (result < 0)
        result = paramctl_fail(PARAMCTL_FILE, "--token-file %s: holds no token", path);
    fclose(file);
    return result;
}

/* The token of $PARAMD_TOKEN, without surrounding white space; "" when it
 * is unset or empty.  Returns PARAMCTL_OK or PARAMCTL_USAGE. */
static int read_token_environment(char *token, size_t size)
{
    const char *value = getenv("PARAMD_TOKEN");
    token[0] = '\0';
    if (value == NULL)
        return PARAMCTL_OK;
    while (*value == ' ' || *value == '\t' || *value == '\n' || *value == '\r')
        value++;
    size_t length = strlen(value);
    while (length > 0 && strchr(" \t\r\n", value[length - 1]))
        length--;
    if (length == 0)
        return PARAMCTL_OK;
    if (length > TOKEN_MAX_LENGTH || length >= size || !is_token(value, length))
        return usage_error(NULL, "PARAMD_TOKEN is not a bearer token (1 to %d of A-Z a-z 0-9 - . "
                                 "_ ~ + /, then optional =)",
                           TOKEN_MAX_LENGTH);
    memcpy(token, value, length);
    token[length] = '\0';
    return PARAMCTL_OK;
}

const char *paramctl_auth_hint(int code, const paramctl_target *target)
{
    static char hint[512];
    if (code == PARAMD_E_UNAUTHORIZED && target->token == NULL)
        return " (no token was given: use --token-file FILE or set PARAMD_TOKEN)";
    if (code == PARAMD_E_UNAUTHORIZED) {
        snprintf(hint, sizeof hint, " (the server does not accept the token of %s)",
                 target->token_source);
        return hint;
    }
    if (code == PARAMD_E_FORBIDDEN) {
        snprintf(hint, sizeof hint,
                 " (the token of %s is valid, but its role is too low for this command)",
                 target->token_source);
        return hint;
    }
    return "";
}

/* ---------------------------------------------------------------------------
 * Subcommands
 * ------------------------------------------------------------------------- */

static int run(const command *c, paramctl_backend *b, char **arguments, int count)
{
    char *json = NULL;
    int result;
    if (strcmp(c->name, "create") == 0) {
        char *body = NULL;
        result = read_text(arguments[1], &body);
        if (result != PARAMCTL_OK)
            return result;
        result = b->create(b->self, arguments[0], body, &json);
        free(body);
    } else if (strcmp(c->name, "list") == 0) {
        result = b->list(b->self, &json);
    } else if (strcmp(c->name, "describe") == 0) {
        result = b->describe(b->self, arguments[0], &json);
    } else if (strcmp(c->name, "delete") == 0) {
        result = b->delete_model(b->self, arguments[0]);
    } else if (strcmp(c->name, "stats") == 0) {
        result = b->stats(b->self, count ? arguments[0] : NULL, &json);
    } else if (strcmp(c->name, "push") == 0) {
        float *values = NULL;
        size_t n = 0;
        paramctl_shape shape;
        result = paramctl_read_floats(arguments[2], &values, &n, &shape);
        if (result != PARAMCTL_OK)
            return result;
        result = b->push(b->self, arguments[0], arguments[1], values, n, &json);
        free(values);
    } else { /* pull */
        paramctl_shape shape;
        result = b->shape(b->self, arguments[0], arguments[1], &shape);
        if (result != PARAMCTL_OK)
            return result;
        size_t n = (size_t)shape.element_count;
        float *values = malloc(n ? n * sizeof(float) : 1);
        if (values == NULL)
            return paramctl_fail(PARAMCTL_FILE, "out of memory for %zu floats", n);
        result = b->pull(b->self, arguments[0], arguments[1], values, n);
        if (result == PARAMCTL_OK)
            result = paramctl_write_floats(arguments[2], values, n, &shape);
        free(values);
    }
    if (result != PARAMCTL_OK) {
        free(json);
        return result;
    }
    return print_json(json);
}

/* The long options that take a value. */
static const char *const value_options[] = {"--tcp", "--http", "--timeout", "--shard-map",
                                            "--token-file", "--cacert"};
#define VALUE_OPTION_COUNT (sizeof value_options / sizeof value_options[0])

int main(int argc, char **argv)
{
    const char *values[VALUE_OPTION_COUNT] = {NULL};
    const char *tcp = NULL, *http = NULL, *shard_map = NULL, *token_file = NULL, *cacert = NULL;
    double timeout_seconds = DEFAULT_TIMEOUT_SECONDS;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *option = argv[i];
        if (strcmp(option, "-h") == 0 || strcmp(option, "--help") == 0) {
            fputs(global_help, stdout);
            return PARAMCTL_OK;
        }
        if (strcmp(option, "--version") == 0) {
            printf("paramctl %s\n", PARAMD_VERSION_STRING);
            return PARAMCTL_OK;
        }
        const char *value = NULL;
        size_t length = strcspn(option, "=");
        if (option[length] == '=')
            value = option + length + 1;
        size_t which = VALUE_OPTION_COUNT;
        for (size_t k = 0; k < VALUE_OPTION_COUNT; k++)
            if (strlen(value_options[k]) == length && strncmp(option, value_options[k], length) == 0)
                which = k;
        if (which == VALUE_OPTION_COUNT)
            return usage_error(NULL, "unknown option '%s'", option);
        if (value == NULL) {
            if (i + 1 >= argc)
                return usage_error(NULL, "%.*s needs a value", (int)length, option);
            value = argv[++i];
        }
        values[which] = value;
        if (which == 2) {
            char *rest;
            timeout_seconds = strtod(value, &rest);
            if (*rest || rest == value || !(timeout_seconds > 0) || timeout_seconds > 86400)
                return usage_error(NULL, "--timeout '%s': give seconds, more than 0", value);
        }
    }
    tcp = values[0];
    http = values[1];
    shard_map = values[3];
    token_file = values[4];
    cacert = values[5];
    if ((tcp != NULL) + (http != NULL) + (shard_map != NULL) > 1)
        return usage_error(NULL, "give one of --tcp, --http and --shard-map");
    if (i >= argc)
        return usage_error(NULL, "no command given");
    const char *name = argv[i++];
    if (strcmp(name, "help") == 0) {
        if (i >= argc) {
            fputs(global_help, stdout);
            return PARAMCTL_OK;
        }
        name = argv[i];
        for (size_t k = 0; k < COMMAND_COUNT; k++)
            if (strcmp(commands[k].name, name) == 0) {
                print_command_help(&commands[k]);
                return PARAMCTL_OK;
            }
        return usage_error(NULL, "help: unknown command '%s'", name);
    }
    const command *c = NULL;
    for (size_t k = 0; k < COMMAND_COUNT; k++)
        if (strcmp(commands[k].name, name) == 0)
            c = &commands[k];
    if (c == NULL)
        return usage_error(NULL, "unknown command '%s'", name);
    char **arguments = argv + i;
    int count = argc - i;
    for (int k = 0; k < count; k++) {
        if (strcmp(arguments[k], "--help") == 0 || strcmp(arguments[k], "-h") == 0) {
            print_command_help(c);
            return PARAMCTL_OK;
        }
        if (arguments[k][0] == '-' && arguments[k][1] != '\0')
            return usage_error(c, "%s: unknown option '%s' (global options go before the "
                                  "command)",
                               c->name, arguments[k]);
    }
    if (count < c->min_arguments || count > c->max_arguments) {
        const char *expected = c->max_arguments ? c->usage + strlen(c->name) + 1 : "no arguments";
        return usage_error(c, "%s: expected %s, got %d argument%s", c->name, expected, count,
                           count == 1 ? "" : "s");
    }

    /* --http takes an optional scheme: https:// turns TLS on. */
    bool tls = false;
    if (http && strncmp(http, "https://", 8) == 0) {
        tls = true;
        http += 8;
    } else if (http && strncmp(http, "http://", 7) == 0) {
        http += 7;
    } else if (http && strstr(http, "://")) {
        return usage_error(NULL, "--http '%s': the scheme must be http:// or https://", http);
    }
    if (cacert && !tls)
        return usage_error(NULL, "--cacert is for --http https://HOST:PORT (the binary protocol "
                                 "has no TLS)");
    char host[256];
    int port;
    const char *address = http ? http : tcp ? tcp : DEFAULT_TCP;
    char trimmed[512];
    if (http) {
        /* "https://host:port/" is fine too. */
        snprintf(trimmed, sizeof trimmed, "%s", http);
        size_t length = strlen(trimmed);
        if (length > 0 && trimmed[length - 1] == '/')
            trimmed[length - 1] = '\0';
        address = trimmed;
    }
    if (!parse_address(address, host, sizeof host, &port))
        return usage_error(NULL, "%s '%s': expected HOST:PORT (port 1 to 65535)%s",
                           http ? "--http" : "--tcp", address,
                           http ? ", after http:// or https:// if you like" : "");
    int timeout_ms = (int)(timeout_seconds * 1000);
    if (timeout_ms < 1)
        timeout_ms = 1;

    /* The token: --token-file, else $PARAMD_TOKEN, else none. */
    char token[TOKEN_MAX_LENGTH + 1] = "";
    char source[600] = "";
    int result = PARAMCTL_OK;
    if (token_file) {
        result = read_token_file(token_file, token, sizeof token);
        snprintf(source, sizeof source, "--token-file %s", token_file);
    } else {
        result = read_token_environment(token, sizeof token);
        snprintf(source, sizeof source, "PARAMD_TOKEN");
    }
    if (result != PARAMCTL_OK)
        return result;
    paramctl_target target = {.host = host,
                              .port = port,
                              .shard_map = shard_map,
                              .timeout_ms = timeout_ms,
                              .token = token[0] ? token : NULL,
                              .token_source = source,
                              .tls = tls,
                              .cacert = cacert};
    paramctl_backend backend;
    result = http ? paramctl_http_open(&target, &backend) : paramctl_tcp_open(&target, &backend);
    if (result == PARAMCTL_OK) {
        result = run(c, &backend, arguments, count);
        backend.close(backend.self);
    }
    explicit_bzero(token, sizeof token);
    return result;
}
