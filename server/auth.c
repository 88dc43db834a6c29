/*
 * auth.c - token files, roles and constant-time token lookup.  See auth.h.
 */
#define _DEFAULT_SOURCE
#include "auth.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * Roles
 * ------------------------------------------------------------------------- */

static const char *const role_names[] = {"none", "read", "write", "admin"};
_Static_assert(sizeof role_names / sizeof role_names[0] == PARAMD__ROLE_ADMIN + 1,
               "one name per role");

const char *paramd__role_name(paramd__role role)
{
    return (unsigned)role <= PARAMD__ROLE_ADMIN ? role_names[role] : "none";
}

paramd__role paramd__role_find(const char *name)
{
    for (int role = PARAMD__ROLE_READ; role <= PARAMD__ROLE_ADMIN; role++)
        if (strcmp(name, role_names[role]) == 0)
            return (paramd__role)role;
    return PARAMD__ROLE_NONE;
}

/* ---------------------------------------------------------------------------
 * Parsing a token file
 * ------------------------------------------------------------------------- */

/* RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" /
 * "~" / "+" / "/" ) *"=". */
static bool is_token_character(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* Checks a token's syntax; returns NULL or what is wrong with it. */
static const char *token_problem(const char *token, size_t length)
{
    if (length < PARAMD__TOKEN_MIN_LENGTH)
        return "is shorter than 16 characters (use e.g. `openssl rand -hex 32`)";
    if (length > PARAMD__TOKEN_MAX_LENGTH)
        return "is longer than 256 characters";
    size_t i = 0;
    while (i < length && is_token_character(token[i]))
        i++;
    if (i == 0)
        return "must start with a letter, digit or one of - . _ ~ + /";
    while (i < length && token[i] == '=')
        i++;
    if (i != length)
        return "has a character outside RFC 6750's b64token set (A-Z a-z 0-9 - . _ ~ + / "
               "and trailing =)";
    return NULL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int paramd__token_table_parse(const char *text, size_t length, const char *source,
                              paramd__token_table *table, paramd__error *error)
{
    table->tokens = NULL;
    table->count = 0;
    size_t capacity = 0;
    size_t line_number = 0;
    size_t position = 0;
    while (position < length) {
        line_number++;
        const char *line = text + position;
        const char *newline = memchr(line, '\n', length - position);
        size_t line_length = newline ? (size_t)(newline - line) : length - position;
        position += line_length + (newline ? 1 : 0);

        /* Fields: ROLE, TOKEN; '#' outside them starts a comment. */
        const char *fields[3];
        size_t field_lengths[3];
        size_t field_count = 0;
        size_t i = 0;
        while (i < line_length) {
            while (i < line_length && is_blank(line[i]))
                i++;
            if (i == line_length || line[i] == '#')
                break;
            size_t start = i;
            while (i < line_length && !is_blank(line[i]))
                i++;
            if (field_count < 3) {
                fields[field_count] = line + start;
                field_lengths[field_count] = i - start;
            }
            field_count++;
        }
        if (field_count == 0)
            continue;
        if (memchr(line, '\0', line_length) != NULL) {
            paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s: line %zu: has a NUL byte",
                              source, line_number);
            goto fail;
        }
        if (field_count != 2) {
            paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                              "%s: line %zu: expected \"ROLE TOKEN\" (two fields), found %zu",
                              source, line_number, field_count);
            goto fail;
        }
        char role_name[16];
        paramd__role role = PARAMD__ROLE_NONE;
        if (field_lengths[0] < sizeof role_name) {
            memcpy(role_name, fields[0], field_lengths[0]);
            role_name[field_lengths[0]] = '\0';
            role = paramd__role_find(role_name);
        }
        if (role == PARAMD__ROLE_NONE) {
            /* Quoted only when it looks like a word: a line written TOKEN
             * ROLE must not put the token in the log. */
            bool word = field_lengths[0] <= 12;
            for (size_t j = 0; word && j < field_lengths[0]; j++)
                word = fields[0][j] >= 'a' && fields[0][j] <= 'z';
            if (word)
                paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                  "%s: line %zu: unknown role \"%.*s\" (use read, write or "
                                  "admin)",
                                  source, line_number, (int)field_lengths[0], fields[0]);
            else
                paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                  "%s: line %zu: the first field (%zu characters, not shown) is "
                                  "not a role: lines are \"ROLE TOKEN\", ROLE read, write or "
                                  "admin",
                                  source, line_number, field_lengths[0]);
            goto fail;
        }
        /* The message never quotes the token: it is a secret, and logs are not. */
        const char *problem = token_problem(fields[1], field_lengths[1]);
        if (problem) {
            paramd__error_set(error, PARAMD_E_BAD_REQUEST, "%s: line %zu: the token %s", source,
                              line_number, problem);
            goto fail;
        }
        for (size_t j = 0; j < table->count; j++)
            if (table->tokens[j].length == field_lengths[1] &&
                memcmp(table->tokens[j].text, fields[1], field_lengths[1]) == 0) {
                paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                  "%s: line %zu: the same token is already given a role", source,
                                  line_number);
                goto fail;
            }
        if (table->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            paramd__token *tokens = realloc(table->tokens, grown * sizeof *tokens);
            if (tokens == NULL) {
                paramd__error_set(error, PARAMD_E_NO_MEMORY, "%s: out of memory", source);
                goto fail;
            }
            table->tokens = tokens;
            capacity = grown;
        }
        paramd__token *token = &table->tokens[table->count++];
        memset(token, 0, sizeof *token);
        token->role = role;
        token->length = field_lengths[1];
        memcpy(token->text, fields[1], field_lengths[1]);
    }
    if (table->count == 0) {
        paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                          "%s: no tokens (expected lines \"ROLE TOKEN\", ROLE read, write or "
                          "admin)",
                          source);
        goto fail;
    }
    return PARAMD_OK;
fail:
    paramd__token_table_free(table);
    return error->code;
}

void paramd__token_table_free(paramd__token_table *table)
{
    if (table->tokens)
        explicit_bzero(table->tokens, table->count * sizeof *table->tokens);
    free(table->tokens);
    table->tokens = NULL;
    table->count = 0;
}

/* ---------------------------------------------------------------------------
 * Loading and reloading
 * ------------------------------------------------------------------------- */

#define TOKEN_FILE_MAX_BYTES (1u << 20)

static int load_file(const char *path, paramd__token_table *table, paramd__error *error)
{
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "--token-file %s: %s", path,
                                 strerror(errno));
    struct stat status;
    if (fstat(descriptor, &status) != 0 || !S_ISREG(status.st_mode) ||
        status.st_size > (off_t)TOKEN_FILE_MAX_BYTES) {
        close(descriptor);
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "--token-file %s: not a regular file of at most 1 MiB", path);
    }
    if (status.st_mode & (S_IRWXG | S_IRWXO))
        paramd__log_warn("--token-file %s can be read by its group or others (mode %03o); "
                         "chmod 600 it",
                         path, (unsigned)(status.st_mode & 0777));
    char *text = malloc((size_t)status.st_size + 1);
    if (text == NULL) {
        close(descriptor);
        return paramd__error_set(error, PARAMD_E_NO_MEMORY, "--token-file %s: out of memory",
                                 path);
    }
    size_t have = 0;
    while (have < (size_t)status.st_size) {
        ssize_t got = read(descriptor, text + have, (size_t)status.st_size - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    close(descriptor);
    char source[4200];
    snprintf(source, sizeof source, "--token-file %s", path);
    int result = paramd__token_table_parse(text, have, source, table, error);
    explicit_bzero(text, have);
    free(text);
    return result;
}

int paramd__auth_open(paramd__auth *auth, const char *path, paramd__error *error)
{
    memset(auth, 0, sizeof *auth);
    if (strlen(path) >= sizeof auth->path)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST, "--token-file: path too long");
    strcpy(auth->path, path);
    int result = load_file(path, &auth->table, error);
    if (result != PARAMD_OK)
        return result;
    pthread_rwlock_init(&auth->lock, NULL);
    atomic_init(&auth->generation, 1);
    return PARAMD_OK;
}

int paramd__auth_reload(paramd__auth *auth, paramd__error *error)
{
    paramd__token_table fresh;
    int result = load_file(auth->path, &fresh, error);
    if (result != PARAMD_OK)
        return result;
    pthread_rwlock_wrlock(&auth->lock);
    paramd__token_table old = auth->table;
    auth->table = fresh;
    atomic_fetch_add(&auth->generation, 1);
    pthread_rwlock_unlock(&auth->lock);
    paramd__token_table_free(&old);
    return PARAMD_OK;
}

void paramd__auth_close(paramd__auth *auth)
{
    paramd__token_table_free(&auth->table);
    pthread_rwlock_destroy(&auth->lock);
}

/* ---------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------- */

/* 0 when the candidate equals the token, else nonzero; the time depends
 * only on the candidate's length.  (A token's length is not secret enough
 * to hide: 16 to 256 characters is all a timing attacker could learn.) */
static unsigned difference(const paramd__token *token, const char *candidate, size_t length)
{
    /* volatile: keep the compiler from turning the loop into an early exit. */
    volatile unsigned char accumulated = 0;
    for (size_t i = 0; i < length; i++) {
        size_t at = i < token->length ? i : token->length; /* text[length] is NUL */
        accumulated |= (unsigned char)(token->text[at] ^ candidate[i]);
    }
    return accumulated | (unsigned)(token->length != length);
}

paramd__role paramd__auth_role(paramd__auth *auth, const char *token, size_t length)
{
    if (auth == NULL)
        return PARAMD__ROLE_ADMIN;
    if (token == NULL || length == 0 || length > PARAMD__TOKEN_MAX_LENGTH)
        return PARAMD__ROLE_NONE;
    unsigned role = PARAMD__ROLE_NONE;
    pthread_rwlock_rdlock(&auth->lock);
    for (size_t i = 0; i < auth->table.count; i++) {
        /* match is all ones when equal, else 0: no branch on the secret. */
        unsigned match = (unsigned)-(int)(difference(&auth->table.tokens[i], token, length) == 0);
        role |= match & (unsigned)auth->table.tokens[i].role;
    }
    pthread_rwlock_unlock(&auth->lock);
    return (paramd__role)role;
}

uint64_t paramd__auth_generation(paramd__auth *auth)
{
    return auth ? atomic_load(&auth->generation) : 0;
}

void paramd__auth_counts(paramd__auth *auth, size_t counts[4])
{
    memset(counts, 0, 4 * sizeof counts[0]);
    if (auth == NULL)
        return;
    pthread_rwlock_rdlock(&auth->lock);
    for (size_t i = 0; i < auth->table.count; i++)
        counts[auth->table.tokens[i].role]++;
    pthread_rwlock_unlock(&auth->lock);
}

bool paramd__auth_parse_bearer(const char *header, const char **token, size_t *length)
{
    if (header == NULL || strncasecmp(header, "Bearer", 6) != 0 ||
        (header[6] != ' ' && header[6] != '\t'))
        return false;
    const char *start = header + 6;
    while (*start == ' ' || *start == '\t')
        start++;
    size_t size = strlen(start);
    while (size > 0 && (start[size - 1] == ' ' || start[size - 1] == '\t'))
        size--;
    if (size == 0)
        return false;
    *token = start;
    *length = size;
    return true;
}
