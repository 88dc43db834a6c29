/* dictionary.c - see dictionary.h.  Linear probing, FNV-1a hashing, grows at 3/4 load. */
#include "dictionary.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char tombstone_marker;
#define PARAMD__DICTIONARY_TOMBSTONE (&tombstone_marker)

static uint64_t hash_string(const char *key)
{
    uint64_t hash = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    return hash;
}

void paramd__dictionary_init(paramd__dictionary *dictionary)
{
    memset(dictionary, 0, sizeof *dictionary);
}

void paramd__dictionary_free(paramd__dictionary *dictionary)
{
    free(dictionary->entries);
    paramd__dictionary_init(dictionary);
}

/* Returns the slot holding key, or NULL. */
static paramd__dictionary_entry *find_slot(const paramd__dictionary *dictionary, const char *key)
{
    if (dictionary->capacity == 0)
        return NULL;
    size_t mask = dictionary->capacity - 1;
    for (size_t index = hash_string(key) & mask;; index = (index + 1) & mask) {
        paramd__dictionary_entry *entry = &dictionary->entries[index];
        if (entry->key == NULL)
            return NULL;
        if (entry->key != PARAMD__DICTIONARY_TOMBSTONE && strcmp(entry->key, key) == 0)
            return entry;
    }
}

void *paramd__dictionary_find(const paramd__dictionary *dictionary, const char *key)
{
    paramd__dictionary_entry *entry = find_slot(dictionary, key);
    return entry ? entry->value : NULL;
}

static int resize(paramd__dictionary *dictionary, size_t capacity)
{
    paramd__dictionary_entry *entries = calloc(capacity, sizeof *entries);
    if (entries == NULL)
        return -1;
    size_t mask = capacity - 1;
    for (size_t i = 0; i < dictionary->capacity; i++) {
        paramd__dictionary_entry *old = &dictionary->entries[i];
        if (old->key == NULL || old->key == PARAMD__DICTIONARY_TOMBSTONE)
            continue;
        size_t index = hash_string(old->key) & mask;
        while (entries[index].key != NULL)
            index = (index + 1) & mask;
        entries[index] = *old;
    }
    free(dictionary->entries);
    dictionary->entries = entries;
    dictionary->capacity = capacity;
    dictionary->used = dictionary->count;
    return 0;
}

int paramd__dictionary_insert(paramd__dictionary *dictionary, const char *key, void *value)
{
    if (find_slot(dictionary, key) != NULL)
        return 1;
    if ((dictionary->used + 1) * 4 > dictionary->capacity * 3) {
        size_t capacity = dictionary->capacity ? dictionary->capacity : 8;
        while ((dictionary->count + 1) * 4 > capacity * 3 / 2)
            capacity *= 2;
        if (resize(dictionary, capacity) != 0)
            return -1;
    }
    size_t mask = dictionary->capacity - 1;
    size_t index = hash_string(key) & mask;
    while (dictionary->entries[index].key != NULL &&
           dictionary->entries[index].key != PARAMD__DICTIONARY_TOMBSTONE)
        index = (index + 1) & mask;
    if (dictionary->entries[index].key == NULL)
        dictionary->used++;
    dictionary->entries[index].key = key;
    dictionary->entries[index].value = value;
    dictionary->count++;
    return 0;
}

void *paramd__dictionary_remove(paramd__dictionary *dictionary, const char *key)
{
    paramd__dictionary_entry *entry = find_slot(dictionary, key);
    if (entry == NULL)
        return NULL;
    void *value = entry->value;
    entry->key = PARAMD__DICTIONARY_TOMBSTONE;
    entry->value = NULL;
    dictionary->count--;
    return value;
}

void paramd__dictionary_for_each(const paramd__dictionary *dictionary,
                                 void (*visit)(void *value, void *context), void *context)
{
    for (size_t i = 0; i < dictionary->capacity; i++) {
        const paramd__dictionary_entry *entry = &dictionary->entries[i];
        if (entry->key != NULL && entry->key != PARAMD__DICTIONARY_TOMBSTONE)
            visit(entry->value, context);
    }
}
