/*
 * auth.h - bearer tokens and roles (RFC 6750; docs/SECURITY.md).
 *
 * A token file holds one `ROLE TOKEN` pair per line (`#` starts a comment,
 * blank lines are skipped).  Roles are ordered: read < write < admin, and a
 * token allows everything its role and the roles below it allow.  A server
 * without a token file has no authentication: every request is allowed, as
 * if it carried an admin token (and main.c warns when such a server listens
 * beyond the loopback interface).
 *
 * The table is shared by the HTTP threads, the binary protocol's loop and
 * SIGHUP reloads: lookups take a read lock, a reload builds the new table
 * off to the side and swaps it in under the write lock, so a reload that
 * fails (a bad line) leaves the old tokens in force.  Each successful load
 * bumps a generation number, which lets a binary-protocol connection, whose
 * token is checked once at HELLO, see that it must check it again.
 *
 * Lookups compare the candidate against every token in constant time (no
 * early exit on the first differing byte, and no early exit on a match), so
 * the time taken says nothing about how much of a token was right.
 */
#ifndef PARAMD_SERVER_AUTH_H
#define PARAMD_SERVER_AUTH_H

#include "error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum paramd__role {
    PARAMD__ROLE_NONE = 0, /* no token, or one that is not in the table */
    PARAMD__ROLE_READ,
    PARAMD__ROLE_WRITE,
    PARAMD__ROLE_ADMIN,
} paramd__role;

/* "none", "read", "write", "admin". */
const char *paramd__role_name(paramd__role role);

/* The role named name (read, write or admin), or PARAMD__ROLE_NONE. */
paramd__role paramd__role_find(const char *name);

/* Tokens are RFC 6750 b64token characters (A-Z a-z 0-9 - . _ ~ + /, then
 * optional '=' padding), PARAMD__TOKEN_MIN_LENGTH to PARAMD__TOKEN_MAX_LENGTH
 * of them.  The minimum keeps guessable tokens out: 16 random characters of
 * that alphabet are 96 bits. */
#define PARAMD__TOKEN_MIN_LENGTH 16
#define PARAMD__TOKEN_MAX_LENGTH 256

typedef struct paramd__token {
    paramd__role role;
    size_t length;
    char text[PARAMD__TOKEN_MAX_LENGTH + 1];
} paramd__token;

/* A parsed token file. */
typedef struct paramd__token_table {
    paramd__token *tokens;
    size_t count;
} paramd__token_table;

/* Parses a token file's text (length bytes; need not be NUL-terminated)
 * into *table (owned by the caller: paramd__token_table_free).  Errors name
 * the line ("line 3: unknown role \"writer\"...") and leave *table empty.
 * source names the file in messages.  An empty file (no tokens) is an
 * error: it would lock every client out. */
int paramd__token_table_parse(const char *text, size_t length, const char *source,
                              paramd__token_table *table, paramd__error *error);
void paramd__token_table_free(paramd__token_table *table);

/* The server's authentication: a token file, reloadable. */
typedef struct paramd__auth {
    char path[4096];
    pthread_rwlock_t lock;
    paramd__token_table table;       /* guarded by lock */
    atomic_uint_fast64_t generation; /* bumped by every successful load */
} paramd__auth;

/* Loads path into a new *auth.  Warns (does not fail) when the file can be
 * read by its group or others.  Returns PARAMD_OK or fills *error. */
int paramd__auth_open(paramd__auth *auth, const char *path, paramd__error *error);

/* Reads the file again and, if it parses, replaces the tokens (SIGHUP).  On
 * error the old tokens stay and *error says why. */
int paramd__auth_reload(paramd__auth *auth, paramd__error *error);

void paramd__auth_close(paramd__auth *auth);

/* The role of a presented token (length bytes, not NUL-terminated), or
 * PARAMD__ROLE_NONE.  auth NULL (no token file) gives PARAMD__ROLE_ADMIN. */
paramd__role paramd__auth_role(paramd__auth *auth, const char *token, size_t length);

/* The generation of the current tokens (0 when auth is NULL). */
uint64_t paramd__auth_generation(paramd__auth *auth);

/* How many tokens of each role are loaded (counts[PARAMD__ROLE_READ] ...). */
void paramd__auth_counts(paramd__auth *auth, size_t counts[4]);

/* Finds the token of an HTTP Authorization header value ("Bearer TOKEN";
 * the scheme is case-insensitive, RFC 7235).  Returns false when the value
 * is not a Bearer credential. */
bool paramd__auth_parse_bearer(const char *header, const char **token, size_t *length);

#endif
