/*
 * main.c - the paramd daemon: options, start-up, signals, shutdown.
 *
 * Options are one table (name, argument, default, help, parser), so --help,
 * parsing and defaults come from the same place.  Start-up order: parse
 * options, lock the data directory, start the update thread pool, start the
 * HTTP front end, log the bound addresses (always the first log line), then
 * wait for SIGINT or SIGTERM, which every other thread has blocked.
 */
#define _DEFAULT_SOURCE
#include "auth.h"
#include "checkpoint.h"
#include "config.h"
#include "core.h"
#include "hostname_ordinal.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "parallel.h"
#include "shard_map.h"
#include "stats.h"
#include "tcp.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------- */

typedef struct address {
    char host[64];
    unsigned short port;
} address;

typedef struct options {
    address http;
    address tcp;
    char data_dir[PATH_MAX];
    size_t max_body_bytes;
    uint64_t max_frame_bytes;
    unsigned max_connections;
    unsigned idle_timeout_seconds;
    int threads;
    int log_level;
    char shard_map[PATH_MAX]; /* empty: not sharded */
    long shard_id;            /* -1: none given */
    double checkpoint_interval_seconds; /* issue 8; 0: no periodic checkpoints */
    unsigned stats_sample_ms;
    /* Issue 9: authentication, TLS and limits (docs/SECURITY.md). */
    char token_file[PATH_MAX];   /* empty: no authentication */
    char tls_certificate[PATH_MAX];
    char tls_key[PATH_MAX];
    int metrics_role;            /* a paramd__role: none or read */
    unsigned per_ip_connection_limit;
    unsigned request_timeout_seconds;
    unsigned max_waiting_pushes;
} options;

typedef int (*option_parser)(options *target, const char *value, char *message, size_t size);

typedef struct option_spec {
    const char *name;          /* without the leading "--" */
    const char *argument;      /* metavariable for --help */
    const char *default_value; /* applied before the command line */
    const char *help;
    option_parser parse;
} option_spec;

/* Parses HOST:PORT or [IPV6]:PORT; "localhost" means 127.0.0.1. */
static int parse_address(address *target, const char *value, char *message, size_t size)
{
    const char *colon = strrchr(value, ':');
    if (colon == NULL || colon == value) {
        snprintf(message, size, "\"%s\" is not HOST:PORT", value);
        return -1;
    }
    const char *host = value;
    size_t host_length = (size_t)(colon - value);
    if (host[0] == '[' && host_length >= 2 && host[host_length - 1] == ']') {
        host++;
        host_length -= 2;
    }
    if (host_length == 0 || host_length >= sizeof target->host) {
        snprintf(message, size, "\"%s\": bad host", value);
        return -1;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535) {
        snprintf(message, size, "\"%s\": port must be a number from 0 to 65535", value);
        return -1;
    }
    memcpy(target->host, host, host_length);
    target->host[host_length] = '\0';
    if (strcmp(target->host, "localhost") == 0)
        strcpy(target->host, "127.0.0.1");
    target->port = (unsigned short)port;
    return 0;
}

static int parse_http(options *target, const char *value, char *message, size_t size)
{
    return parse_address(&target->http, value, message, size);
}

static int parse_tcp(options *target, const char *value, char *message, size_t size)
{
    return parse_address(&target->tcp, value, message, size);
}


static int parse_shard_id(options *target, const char *value, char *message, size_t size)
{
    /* Issue 11: a StatefulSet pod's ordinal (deploy/k8s/). */
    if (strcmp(value, "from-hostname") == 0)
        return paramd__own_hostname_ordinal(PARAMD_SHARD_MAX_SHARDS - 1, &target->shard_id,
                                            message, size);
    char *end;
    long id = strtol(value, &end, 10);
    if (end == value || *end != '\0' || id < -1 || id >= PARAMD_SHARD_MAX_SHARDS) {
        snprintf(message, size, "\"%s\": must be a shard id from 0 to %d", value,
                 PARAMD_SHARD_MAX_SHARDS - 1);
        return -1;
    }
    target->shard_id = id;
    return 0;
}

static int parse_data_dir(options *target, const char *value, char *message, size_t size)
{
    if (value[0] == '\0' || strlen(value) >= sizeof target->data_dir) {
        snprintf(message, size, "must be a non-empty path");
        return -1;
    }
    strcpy(target->data_dir, value);
    return 0;
}

/* Parses a count with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *value, unsigned long long minimum, unsigned long long maximum,
                      unsigned long long *result, char *message, size_t size)
{
    char *end;
    errno = 0;
    unsigned long long number = strtoull(value, &end, 10);
    unsigned long long multiplier = 1;
    if (*end == 'K' || *end == 'k')
        multiplier = 1ULL << 10, end++;
    else if (*end == 'M' || *end == 'm')
        multiplier = 1ULL << 20, end++;
    else if (*end == 'G' || *end == 'g')
        multiplier = 1ULL << 30, end++;
    if (end == value || *end != '\0' || errno != 0 || value[0] == '-' ||
        number > maximum / multiplier || number * multiplier < minimum) {
        snprintf(message, size, "\"%s\": must be a number from %llu to %llu (K, M, G suffixes allowed)",
                 value, minimum, maximum);
        return -1;
    }
    *result = number * multiplier;
    return 0;
}

static int parse_max_body_size(options *target, const char *value, char *message, size_t size)
{
    unsigned long long bytes;
    if (parse_size(value, 1024, 1ULL << 40, &bytes, message, size) != 0)
        return -1;
    target->max_body_bytes = (size_t)bytes;
    return 0;
}

static int parse_max_frame_size(options *target, const char *value, char *message, size_t size)
{
    unsigned long long bytes;
    /* The frame header's length is 32 bits, and a multiple of 8. */
    if (parse_size(value, 1024, 0xfffffff8ULL, &bytes, message, size) != 0)
        return -1;
    target->max_frame_bytes = bytes & ~7ULL;
    return 0;
}

static int parse_max_connections(options *target, const char *value, char *message, size_t size)
{
    unsigned long long count;
    if (parse_size(value, 1, 65536, &count, message, size) != 0)
        return -1;
    target->max_connections = (unsigned)count;
    return 0;
}

static int parse_idle_timeout(options *target, const char *value, char *message, size_t size)
{
    unsigned long long seconds;
    if (parse_size(value, 1, 86400, &seconds, message, size) != 0)
        return -1;
    target->idle_timeout_seconds = (unsigned)seconds;
    return 0;
}

static int parse_threads(options *target, const char *value, char *message, size_t size)
{
    unsigned long long count;
    if (strcmp(value, "0") == 0) {
        target->threads = 0;
        return 0;
    }
    if (parse_size(value, 1, 64, &count, message, size) != 0)
        return -1;
    target->threads = (int)count;
    return 0;
}

static int parse_log_level(options *target, const char *value, char *message, size_t size)
{
    int level = paramd__log_level_from_name(value);
    if (level < 0) {
        snprintf(message, size, "\"%s\": must be debug, info, warn or error", value);
        return -1;
    }
    target->log_level = level;
    return 0;
}

/* Issue 8: checkpoints and statistics. */
static int parse_checkpoint_interval(options *target, const char *value, char *message,
                                     size_t size)
{
    char *end;
    errno = 0;
    double seconds = strtod(value, &end);
    if (end == value || *end != '\0' || errno != 0 || !(seconds == 0 || seconds >= 0.05) ||
        seconds > 86400 * 365.0) {
        snprintf(message, size, "\"%s\": must be 0 (off) or seconds from 0.05 to 31536000",
                 value);
        return -1;
    }
    target->checkpoint_interval_seconds = seconds;
    return 0;
}

static int parse_stats_sample(options *target, const char *value, char *message, size_t size)
{
    unsigned long long milliseconds;
    if (strcmp(value, "0") == 0) {
        target->stats_sample_ms = 0;
        return 0;
    }
    if (parse_size(value, 1, 3600000, &milliseconds, message, size) != 0)
        return -1;
    target->stats_sample_ms = (unsigned)milliseconds;
    return 0;
}

/* Issue 9. */
static int parse_path(char *target, size_t target_size, const char *value, char *message,
                      size_t size)
{
    if (strlen(value) >= target_size) {
        snprintf(message, size, "path too long");
        return -1;
    }
    strcpy(target, value);
    return 0;
}

static int parse_shard_map(options *target, const char *value, char *message, size_t size)
{
    return parse_path(target->shard_map, sizeof target->shard_map, value, message, size);
}

static int parse_token_file(options *target, const char *value, char *message, size_t size)
{
    return parse_path(target->token_file, sizeof target->token_file, value, message, size);
}

static int parse_tls_certificate(options *target, const char *value, char *message, size_t size)
{
    return parse_path(target->tls_certificate, sizeof target->tls_certificate, value, message,
                      size);
}

static int parse_tls_key(options *target, const char *value, char *message, size_t size)
{
    return parse_path(target->tls_key, sizeof target->tls_key, value, message, size);
}

static int parse_metrics_auth(options *target, const char *value, char *message, size_t size)
{
    if (strcmp(value, "none") == 0)
        target->metrics_role = PARAMD__ROLE_NONE;
    else if (strcmp(value, "read") == 0)
        target->metrics_role = PARAMD__ROLE_READ;
    else {
        snprintf(message, size, "\"%s\": must be none (open) or read (a read token)", value);
        return -1;
    }
    return 0;
}

/* A count from 0 (no limit) to maximum. */
static int parse_limit(unsigned *target, const char *value, unsigned long long maximum,
                       char *message, size_t size)
{
    unsigned long long count;
    if (strcmp(value, "0") == 0) {
        *target = 0;
        return 0;
    }
    if (parse_size(value, 1, maximum, &count, message, size) != 0)
        return -1;
    *target = (unsigned)count;
    return 0;
}

static int parse_per_ip_limit(options *target, const char *value, char *message, size_t size)
{
    return parse_limit(&target->per_ip_connection_limit, value, 65536, message, size);
}

static int parse_request_timeout(options *target, const char *value, char *message, size_t size)
{
    return parse_limit(&target->request_timeout_seconds, value, 86400, message, size);
}

static int parse_max_waiting_pushes(options *target, const char *value, char *message,
                                    size_t size)
{
    return parse_limit(&target->max_waiting_pushes, value, 1000000, message, size);
}

static const option_spec option_table[] = {
    {"http", "HOST:PORT", "127.0.0.1:8470", "HTTP/JSON API address (port 0: any free port)",
     parse_http},
    {"tcp", "HOST:PORT", "127.0.0.1:8471",
     "binary protocol address (proto/PROTOCOL.md; port 0: any free port)", parse_tcp},
    {"data-dir", "DIR", "./var", "directory for checkpoints; created if missing, locked while "
                                 "paramd runs",
     parse_data_dir},
    {"max-body-size", "BYTES", "512M", "largest request body; larger ones get 413 unread",
     parse_max_body_size},
    {"max-frame-size", "BYTES", "1G", "largest binary-protocol frame payload; larger ones "
                                      "close the connection", parse_max_frame_size},
    {"max-connections", "N", "256", "simultaneous connections, for HTTP and for the binary "
                                    "protocol each", parse_max_connections},
    {"idle-timeout", "SECONDS", "300", "close connections (HTTP or binary) idle this long",
     parse_idle_timeout},
    {"threads", "N", "0", "threads per large-tensor update (0: one per core)", parse_threads},
    {"shard-map", "FILE", "", "be one shard of the parameter service this shard map describes "
                              "(docs/SHARDING.md); needs --shard-id", parse_shard_map},
    {"shard-id", "I", "-1", "this server's id in the shard map, or from-hostname: the trailing "
                            "-N of the host name (a StatefulSet pod's ordinal)", parse_shard_id},
    {"log-level", "LEVEL", "info", "debug, info, warn or error", parse_log_level},
    {"checkpoint-interval", "SECONDS", "300",
     "checkpoint every model this often (decimals allowed; 0: only on demand and at shutdown)",
     parse_checkpoint_interval},
    {"stats-sample-ms", "MS", "500",
     "measure gradient and update norms on at most one push per model this often (0: every push)",
     parse_stats_sample},
    /* Issue 9 (docs/SECURITY.md). */
    {"token-file", "FILE", "",
     "bearer tokens, one \"ROLE TOKEN\" per line (roles read, write, admin); SIGHUP reloads "
     "it (empty: no authentication)",
     parse_token_file},
    {"tls-cert", "FILE", "", "PEM certificate (chain) for HTTPS on --http; needs --tls-key",
     parse_tls_certificate},
    {"tls-key", "FILE", "", "PEM private key of --tls-cert", parse_tls_key},
    {"metrics-auth", "none|read", "read",
     "what GET /metrics needs when there are tokens: nothing, or a read token",
     parse_metrics_auth},
    {"max-connections-per-ip", "N", "128",
     "simultaneous connections from one address, for HTTP and for the binary protocol each "
     "(0: no limit)",
     parse_per_ip_limit},
    {"request-timeout", "SECONDS", "120",
     "a request (HTTP headers and body, or a binary frame) must arrive whole within this long "
     "of its first byte (0: no limit)",
     parse_request_timeout},
    {"max-waiting-pushes", "N", "1024",
     "pushes that may wait for other workers (sync and ssp models) at once; more get 503 "
     "overloaded (0: no limit)",
     parse_max_waiting_pushes},
};

#define OPTION_COUNT (sizeof option_table / sizeof option_table[0])

static void print_usage(FILE *stream)
{
    fprintf(stream,
            "Usage: paramd [OPTION]...\n"
            "paramd " PARAMD_VERSION_STRING " - a parameter server: holds model parameters and\n"
            "optimizer state, applies pushed gradients, returns fresh weights.\n\n"
            "Options:\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char left[48];
        snprintf(left, sizeof left, "--%s %s", option_table[i].name, option_table[i].argument);
        fprintf(stream, "  %-26s %s\n  %-26s (default: %s)\n", left, option_table[i].help, "",
                option_table[i].default_value);
    }
    fprintf(stream, "  %-26s %s\n  %-26s %s\n", "--config FILE",
            "read options from FILE (\"name = value\" lines; flags override it)", "",
            "(default: none)");
    fprintf(stream, "  %-26s %s\n  %-26s %s\n", "--help", "show this help and exit", "--version",
            "show the version and exit");
    fprintf(stream, "\nSIGINT or SIGTERM shuts paramd down cleanly, writing a final checkpoint of every\n"
                    "model.  Dashboard: http://HOST:PORT/.  API: docs/API.md\n");
}

/* The option called `name` (length bytes, without "--"), or NULL. */
static const option_spec *find_option(const char *name, size_t length)
{
    for (size_t j = 0; j < OPTION_COUNT; j++)
        if (strlen(option_table[j].name) == length &&
            strncmp(option_table[j].name, name, length) == 0)
            return &option_table[j];
    return NULL;
}

/* Applies one "name = value" line of the --config file with the option's
 * own parser (config.h), so the file takes every option of the table. */
static int apply_config_setting(void *context, const char *name, const char *value,
                                char *message, size_t size)
{
    const option_spec *spec = find_option(name, strlen(name));
    if (spec == NULL)
        return PARAMD__CONFIG_UNKNOWN;
    return spec->parse(context, value, message, size) == 0 ? PARAMD__CONFIG_APPLIED
                                                           : PARAMD__CONFIG_BAD_VALUE;
}

/* Returns 0 to run, 1 to exit successfully (--help, --version), 2 on error.
 * Settings apply in three layers: the table's defaults, then the --config
 * file (wherever --config is on the command line), then the other flags. */
static int parse_options(int argc, char **argv, options *target)
{
    char message[256];
    memset(target, 0, sizeof *target);
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (option_table[i].parse(target, option_table[i].default_value, message, sizeof message)) {
            fprintf(stderr, "paramd: bad built-in default for --%s: %s\n", option_table[i].name,
                    message);
            return 2;
        }
    const char *config_path = NULL;
    char config_error[1024];
    int has_config = paramd__config_find_argument(argc, argv, &config_path, config_error,
                                                  sizeof config_error);
    if (has_config < 0 ||
        (has_config > 0 && paramd__config_load(config_path, apply_config_setting, target,
                                               config_error, sizeof config_error) != 0)) {
        fprintf(stderr, "paramd: --config: %s\n", config_error);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            print_usage(stdout);
            return 1;
        }
        if (strcmp(argument, "--version") == 0) {
            printf("paramd %s\n", PARAMD_VERSION_STRING);
            return 1;
        }
        if (strncmp(argument, "--", 2) != 0) {
            fprintf(stderr, "paramd: unexpected argument \"%s\" (see --help)\n", argument);
            return 2;
        }
        const char *name = argument + 2;
        const char *equals = strchr(name, '=');
        size_t name_length = equals ? (size_t)(equals - name) : strlen(name);
        if (name_length == 6 && strncmp(name, "config", 6) == 0) {
            i += equals ? 0 : 1; /* read above, before the other flags */
            continue;
        }
        const option_spec *spec = find_option(name, name_length);
        if (spec == NULL) {
            fprintf(stderr, "paramd: unknown option \"%s\" (see --help)\n", argument);
            return 2;
        }
        const char *value = equals ? equals + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (value == NULL) {
            fprintf(stderr, "paramd: --%s needs a value (%s)\n", spec->name, spec->argument);
            return 2;
        }
        if (spec->parse(target, value, message, sizeof message) != 0) {
            fprintf(stderr, "paramd: --%s: %s\n", spec->name, message);
            return 2;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Data directory
 * ------------------------------------------------------------------------- */

/* Creates the directory (and parents) if needed, and takes an exclusive lock
 * on DIR/paramd.lock so that two servers never share one data directory.
 * Returns the lock's file descriptor, or -1 after logging why. */
static int lock_data_dir(const char *directory)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s", directory);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST) {
            paramd__log_error("--data-dir %s: cannot create %s: %s", directory, path,
                              strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        paramd__log_error("--data-dir %s: cannot create it: %s", directory, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/paramd.lock", directory);
    int descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (descriptor < 0) {
        paramd__log_error("--data-dir %s: cannot open %s: %s", directory, path, strerror(errno));
        return -1;
    }
    if (flock(descriptor, LOCK_EX | LOCK_NB) != 0) {
        char owner[32] = "";
        ssize_t length = pread(descriptor, owner, sizeof owner - 1, 0);
        owner[length > 0 ? length : 0] = '\0';
        owner[strcspn(owner, "\n")] = '\0';
        paramd__log_error("--data-dir %s is in use by another paramd (pid %s)", directory,
                          owner[0] ? owner : "unknown");
        close(descriptor);
        return -1;
    }
    char pid[32];
    int length = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(descriptor, 0) != 0 || pwrite(descriptor, pid, (size_t)length, 0) != length)
        paramd__log_warn("--data-dir %s: cannot record the pid in paramd.lock", directory);
    return descriptor;
}

/* ---------------------------------------------------------------------------
 * TLS files (issue 9)
 * ------------------------------------------------------------------------- */

/* Reads a PEM file into a NUL-terminated malloc'ed string (at most 1 MiB),
 * or logs why not and returns NULL. */
static char *read_pem(const char *option, const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        paramd__log_error("--%s %s: %s", option, path, strerror(errno));
        return NULL;
    }
    size_t capacity = 1u << 20, length = 0;
    char *text = malloc(capacity + 1);
    if (text)
        length = fread(text, 1, capacity + 1, file);
    fclose(file);
    if (text == NULL || length > capacity || length == 0 ||
        strstr((text[length] = '\0', text), "-----BEGIN ") == NULL) {
        paramd__log_error("--%s %s: not a PEM file of at most 1 MiB", option, path);
        free(text);
        return NULL;
    }
    return text;
}

/* ---------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------- */

static pthread_t main_thread;

/* Whether a listening address stays on this machine. */
static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

/* Runs only on a thread that does not block SIGINT and SIGTERM (see main). */
static void forward_to_main_thread(int signal_number)
{
    pthread_kill(main_thread, signal_number);
}

int main(int argc, char **argv)
{
    options settings;
    int parsed = parse_options(argc, argv, &settings);
    if (parsed != 0)
        return parsed == 1 ? 0 : 2;
    paramd__log_set_level((paramd__log_level)settings.log_level);

    /* Block the shutdown signals before any thread starts, so that every
     * thread inherits the mask and only sigwait() below receives them. */
    sigset_t shutdown_signals;
    sigemptyset(&shutdown_signals);
    sigaddset(&shutdown_signals, SIGINT);
    sigaddset(&shutdown_signals, SIGTERM);
    sigaddset(&shutdown_signals, SIGHUP); /* issue 9: reloads --token-file */
    pthread_sigmask(SIG_BLOCK, &shutdown_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Threads that libraries start before main (OpenBLAS starts its pool in
     * a constructor) do not block them, and the kernel hands a SIGTERM that
     * arrives while this thread is not in sigwait() to such a thread, whose
     * default action would kill the process without its final checkpoint.
     * The handler sends it on to this thread, where sigwait() takes it. */
    main_thread = pthread_self();
    struct sigaction forward = {.sa_handler = forward_to_main_thread};
    sigemptyset(&forward.sa_mask);
    sigaction(SIGINT, &forward, NULL);
    sigaction(SIGTERM, &forward, NULL);
    sigaction(SIGHUP, &forward, NULL);

    /* Issue 9: tokens and TLS files are read before anything starts, so a
     * mistake in them stops paramd with a clear message. */
    paramd__auth auth;
    bool has_auth = settings.token_file[0] != '\0';
    if (has_auth) {
        paramd__error auth_error = {0};
        if (paramd__auth_open(&auth, settings.token_file, &auth_error) != PARAMD_OK) {
            paramd__log_error("%s", auth_error.message);
            return 2;
        }
    }
    if (!settings.tls_certificate[0] != !settings.tls_key[0]) {
        paramd__log_error("--tls-cert and --tls-key go together");
        return 2;
    }
    char *tls_certificate = NULL, *tls_key = NULL;
    if (settings.tls_certificate[0]) {
        tls_certificate = read_pem("tls-cert", settings.tls_certificate);
        tls_key = tls_certificate ? read_pem("tls-key", settings.tls_key) : NULL;
        if (tls_key == NULL) {
            free(tls_certificate);
            return 2;
        }
    }

    int lock = lock_data_dir(settings.data_dir);
    if (lock < 0)
        return 1;
    if (paramd__parallel_start(settings.threads ? settings.threads - 1 : 0) != PARAMD_OK)
        paramd__log_warn("could not start every update thread; large updates run narrower");
    /* Matrix products (Muon's Newton-Schulz iteration) run on OpenBLAS's own
     * threads: as many as the update pool, so --threads bounds both. */
    openblas_set_num_threads(paramd__parallel_width());

    paramd__server server;
    paramd__server_init(&server);
    server.auth = has_auth ? &auth : NULL;
    server.max_waiting_pushes = settings.max_waiting_pushes;
    paramd_shard_map shard_map = {0};
    if (settings.shard_map[0] || settings.shard_id >= 0) {
        char why[512];
        if (!settings.shard_map[0] || settings.shard_id < 0) {
            paramd__log_error("--shard-map and --shard-id go together");
            return 2;
        }
        if (paramd_shard_map_load(settings.shard_map, &shard_map, why, sizeof why) != 0) {
            paramd__log_error("--shard-map: %s", why);
            return 2;
        }
        if ((uint32_t)settings.shard_id >= shard_map.shard_count) {
            paramd__log_error("--shard-id %ld: the shard map %s has shards 0 to %u",
                              settings.shard_id, settings.shard_map, shard_map.shard_count - 1);
            paramd_shard_map_free(&shard_map);
            return 2;
        }
        server.shard_map = &shard_map;
        server.shard_id = (uint32_t)settings.shard_id;
    }
    /* Issue 8: restore every checkpointed model before serving anything. */
    paramd__stats_set_sample_interval(settings.stats_sample_ms);
    paramd__checkpointer checkpointer;
    paramd__checkpointer_init(&checkpointer, &server, settings.data_dir,
                              settings.checkpoint_interval_seconds);
    paramd__error restore_error = {0};
    if (paramd__checkpoint_restore_all(&checkpointer, &restore_error) != PARAMD_OK) {
        paramd__checkpoint_log_restore(&checkpointer);
        paramd__log_error("refusing to start: %s", restore_error.message);
        paramd__checkpointer_destroy(&checkpointer);
        paramd__parallel_stop();
        paramd__server_destroy(&server);
        close(lock);
        return 1;
    }
    paramd__http_server http;
    paramd__http_options http_options = {
        .host = settings.http.host,
        .port = settings.http.port,
        .max_body_bytes = settings.max_body_bytes,
        .connection_limit = settings.max_connections,
        .idle_timeout_seconds = settings.idle_timeout_seconds,
        .per_ip_connection_limit = settings.per_ip_connection_limit,
        .request_timeout_seconds = settings.request_timeout_seconds,
        .metrics_role = (paramd__role)settings.metrics_role,
        .tls_certificate = tls_certificate,
        .tls_key = tls_key,
    };
    paramd__error error = {0};
    if (paramd__http_start(&http, &server, &http_options, &error) != PARAMD_OK) {
        paramd__log_error("%s", error.message);
        paramd__checkpointer_destroy(&checkpointer);
        paramd__parallel_stop();
        paramd__server_destroy(&server);
        close(lock);
        return 1;
    }
    paramd__tcp_server tcp;
    paramd__tcp_options tcp_options = {
        .host = settings.tcp.host,
        .port = settings.tcp.port,
        .max_frame_bytes = settings.max_frame_bytes,
        .connection_limit = settings.max_connections,
        .idle_timeout_seconds = settings.idle_timeout_seconds,
        .per_ip_connection_limit = settings.per_ip_connection_limit,
        .request_timeout_seconds = settings.request_timeout_seconds,
    };
    if (paramd__tcp_start(&tcp, &server, &tcp_options, &error) != PARAMD_OK) {
        paramd__log_error("%s", error.message);
        paramd__http_stop(&http);
        paramd__checkpointer_destroy(&checkpointer);
        paramd__parallel_stop();
        paramd__server_destroy(&server);
        close(lock);
        return 1;
    }
    /* Issue 8: periodic checkpoints and the statistics history. */
    if (paramd__checkpointer_start(&checkpointer) != PARAMD_OK ||
        paramd__stats_sampler_start(&server) != PARAMD_OK)
        paramd__log_warn("could not start the checkpoint or statistics thread");
    const char *bracket_open = strchr(settings.http.host, ':') ? "[" : "";
    const char *bracket_close = strchr(settings.http.host, ':') ? "]" : "";
    const char *tcp_open = strchr(settings.tcp.host, ':') ? "[" : "";
    const char *tcp_close = strchr(settings.tcp.host, ':') ? "]" : "";
    char shard_text[96] = "";
    if (server.shard_map)
        snprintf(shard_text, sizeof shard_text, " shard=%u/%u shard_map_version=%llu",
                 server.shard_id, shard_map.shard_count,
                 (unsigned long long)shard_map.version);
    paramd__log_always(PARAMD__LOG_INFO,
                       "paramd %s listening: http%s=%s%s%s:%u tcp=%s%s%s:%u data_dir=%s pid=%ld "
                       "update_threads=%d%s",
                       PARAMD_VERSION_STRING, tls_certificate ? "s" : "", bracket_open,
                       settings.http.host, bracket_close,
                       http.bound_port, tcp_open, settings.tcp.host, tcp_close, tcp.bound_port,
                       settings.data_dir, (long)getpid(), paramd__parallel_width(), shard_text);
    /* Issue 11: tell a service manager (systemd Type=notify) that both
     * listeners are bound and every checkpoint is restored. */
    char notify_state[256], notify_error[256];
    snprintf(notify_state, sizeof notify_state,
             "READY=1\nSTATUS=listening: http%s=%s%s%s:%u tcp=%s%s%s:%u",
             tls_certificate ? "s" : "", bracket_open, settings.http.host, bracket_close,
             http.bound_port, tcp_open, settings.tcp.host, tcp_close, tcp.bound_port);
    if (paramd__notify(notify_state, notify_error, sizeof notify_error) < 0)
        paramd__log_warn("%s", notify_error);
    if (server.shard_map) {
        const paramd_shard *me = &shard_map.shards[server.shard_id];
        if ((me->http_port && me->http_port != http.bound_port) ||
            (me->tcp_port && me->tcp_port != tcp.bound_port))
            paramd__log_warn("the shard map gives shard %u the ports http %u, tcp %u, but this "
                             "server listens on %u and %u: clients will not find it",
                             server.shard_id, me->http_port, me->tcp_port, http.bound_port,
                             tcp.bound_port);
    }
    paramd__checkpoint_log_restore(&checkpointer); /* issue 8: after the first line */
    if (settings.checkpoint_interval_seconds > 0)
        paramd__log_info("checkpoints every %g s to %s", settings.checkpoint_interval_seconds,
                         settings.data_dir);
    /* Issue 9: safe defaults are loopback addresses; anything wider
     * without tokens is said out loud. */
    bool http_loopback = is_loopback(settings.http.host);
    bool tcp_loopback = is_loopback(settings.tcp.host);
    if (has_auth) {
        size_t counts[4];
        paramd__auth_counts(&auth, counts);
        paramd__log_info("authentication: %zu read, %zu write and %zu admin tokens from %s; "
                         "/metrics %s",
                         counts[PARAMD__ROLE_READ], counts[PARAMD__ROLE_WRITE],
                         counts[PARAMD__ROLE_ADMIN], settings.token_file,
                         settings.metrics_role == PARAMD__ROLE_NONE ? "open" : "needs a read token");
    }
    if (!http_loopback && !has_auth)
        paramd__log_warn("WARNING: the HTTP API listens on %s, beyond this machine, with no "
                         "--token-file: anyone who can reach it can read and change models",
                         settings.http.host);
    if (!http_loopback && has_auth && !tls_certificate)
        paramd__log_warn("the HTTP API listens on %s without TLS: tokens and weights cross the "
                         "network in clear text (--tls-cert, --tls-key)",
                         settings.http.host);
    if (!tcp_loopback && !has_auth)
        paramd__log_warn("WARNING: the binary protocol listens on %s, beyond this machine, with "
                         "no --token-file: anyone who can reach it can read and change models",
                         settings.tcp.host);
    if (!tcp_loopback)
        paramd__log_warn("the binary protocol on %s is not encrypted: keep it on a private "
                         "network (docs/SECURITY.md)",
                         settings.tcp.host);

    int received = 0;
    for (;;) {
        if (sigwait(&shutdown_signals, &received) != 0)
            continue;
        if (received != SIGHUP)
            break;
        /* Issue 9: SIGHUP reloads the tokens; a bad file keeps the old ones. */
        if (!has_auth) {
            paramd__log_info("received SIGHUP; there is no --token-file to reload");
            continue;
        }
        paramd__error reload_error = {0};
        if (paramd__auth_reload(&auth, &reload_error) == PARAMD_OK) {
            size_t counts[4];
            paramd__auth_counts(&auth, counts);
            paramd__log_info("received SIGHUP; reloaded %s: %zu read, %zu write and %zu admin "
                             "tokens",
                             settings.token_file, counts[PARAMD__ROLE_READ],
                             counts[PARAMD__ROLE_WRITE], counts[PARAMD__ROLE_ADMIN]);
        } else {
            paramd__log_error("received SIGHUP; kept the old tokens: %s", reload_error.message);
        }
    }
    paramd__log_info("received %s, shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
    if (paramd__notify("STOPPING=1\nSTATUS=shutting down: final checkpoints", notify_error,
                       sizeof notify_error) < 0)
        paramd__log_warn("%s", notify_error);
    paramd__tcp_stop(&tcp);
    paramd__http_stop(&http);
    /* Issue 8: no request runs any more; write the final checkpoints. */
    paramd__stats_sampler_stop();
    paramd__checkpointer_stop(&checkpointer);
    paramd__error checkpoint_error = {0};
    int checkpointed = paramd__checkpoint_all(&checkpointer, NULL, &checkpoint_error);
    if (checkpointed != PARAMD_OK)
        paramd__log_error("final checkpoint failed: %s", checkpoint_error.message);
    paramd__checkpointer_destroy(&checkpointer);
    paramd__parallel_stop();
    size_t model_count = 0;
    paramd__model **models = paramd__registry_list(&server.registry, &model_count);
    for (size_t i = 0; i < model_count; i++)
        paramd__model_release(models[i]);
    free(models);
    paramd__server_destroy(&server);
    paramd_shard_map_free(&shard_map);
    if (has_auth)
        paramd__auth_close(&auth);
    free(tls_certificate);
    if (tls_key)
        explicit_bzero(tls_key, strlen(tls_key));
    free(tls_key);
    close(lock);
    paramd__log_info("stopped %s (%zu models released)",
                     checkpointed == PARAMD_OK ? "cleanly" : "after a failed checkpoint",
                     model_count);
    return checkpointed == PARAMD_OK ? 0 : 1;
}
