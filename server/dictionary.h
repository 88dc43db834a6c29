/*
 * dictionary.h - a small open-addressing hash table from strings to pointers.
 *
 * Used for the model registry (name -> model) and for each model's tensor
 * index (name -> tensor).  The dictionary copies nothing: keys must stay alive
 * as long as their entry (callers use the name stored in the value itself).
 * Not thread-safe; callers hold their own lock.
 */
#ifndef PARAMD_SERVER_DICTIONARY_H
#define PARAMD_SERVER_DICTIONARY_H

#include <stddef.h>

typedef struct paramd__dictionary_entry {
    const char *key; /* NULL: empty slot; PARAMD__DICTIONARY_TOMBSTONE: deleted */
    void *value;
} paramd__dictionary_entry;

typedef struct paramd__dictionary {
    paramd__dictionary_entry *entries;
    size_t capacity; /* a power of two, or 0 before the first insert */
    size_t count;    /* live entries */
    size_t used;     /* live entries plus tombstones */
} paramd__dictionary;

void paramd__dictionary_init(paramd__dictionary *dictionary);
void paramd__dictionary_free(paramd__dictionary *dictionary);

/* Returns the value stored under key, or NULL. */
void *paramd__dictionary_find(const paramd__dictionary *dictionary, const char *key);

/* Inserts key -> value.  Returns 0, 1 if the key already exists (nothing is
 * changed), or -1 if memory ran out (nothing is changed). */
int paramd__dictionary_insert(paramd__dictionary *dictionary, const char *key, void *value);

/* Removes key and returns its value, or NULL if it was absent. */
void *paramd__dictionary_remove(paramd__dictionary *dictionary, const char *key);

/* Calls visit(value, context) for every live entry, in no particular order. */
void paramd__dictionary_for_each(const paramd__dictionary *dictionary,
                                 void (*visit)(void *value, void *context), void *context);

#endif
