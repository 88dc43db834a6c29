/*
 * test_dictionary.c - unit tests for server/dictionary.h.
 */
#include "test_util.h"

#include "dictionary.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KEY_COUNT 10000
#define KEY_SIZE 32

/* Keys must outlive their entries: they live in this array for the whole test. */
static char keys[KEY_COUNT][KEY_SIZE];
/* Distinct, recognisable values: &values[i]. */
static int values[KEY_COUNT];

static void make_keys(void)
{
    for (int i = 0; i < KEY_COUNT; i++) {
        snprintf(keys[i], KEY_SIZE, "layers.%d.weight", i);
        values[i] = i;
    }
}

/* The index of a value pointer within values[], checked. */
static int value_index(const void *value)
{
    const int *pointer = value;
    ck_assert_ptr_nonnull(pointer);
    ck_assert(pointer >= values && pointer < values + KEY_COUNT);
    return (int)(pointer - values);
}

/* for_each visitor: counts the visits of each value. */
typedef struct visit_counts {
    int counts[KEY_COUNT];
    int total;
} visit_counts;

static void count_visit(void *value, void *context)
{
    visit_counts *visits = context;
    visits->counts[value_index(value)]++;
    visits->total++;
}

/* A key equal to keys[i] but stored elsewhere, to prove lookups compare
 * contents rather than pointers. */
static const char *copy_key(int i, char *buffer)
{
    memcpy(buffer, keys[i], KEY_SIZE);
    return buffer;
}

START_TEST(test_empty)
{
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    ck_assert_uint_eq(dictionary.count, 0);
    ck_assert_uint_eq(dictionary.capacity, 0);
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, "missing"));
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, ""));
    ck_assert_ptr_null(paramd__dictionary_remove(&dictionary, "missing"));
    ck_assert_uint_eq(dictionary.count, 0);
    visit_counts *visits = calloc(1, sizeof *visits);
    ck_assert_ptr_nonnull(visits);
    paramd__dictionary_for_each(&dictionary, count_visit, visits);
    ck_assert_int_eq(visits->total, 0);
    free(visits);
    paramd__dictionary_free(&dictionary);
    ck_assert_uint_eq(dictionary.count, 0);
    ck_assert_ptr_null(dictionary.entries);
}
END_TEST

START_TEST(test_insert_find_remove_many)
{
    make_keys();
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    for (int i = 0; i < KEY_COUNT; i++) {
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
        ck_assert_uint_eq(dictionary.count, (size_t)i + 1);
        /* Capacity stays a power of two with load at most 3/4. */
        ck_assert_uint_eq(dictionary.capacity & (dictionary.capacity - 1), 0);
        ck_assert_uint_le(dictionary.used * 4, dictionary.capacity * 3);
    }
    char buffer[KEY_SIZE];
    for (int i = 0; i < KEY_COUNT; i++) {
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, copy_key(i, buffer)), &values[i]);
    }
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, "layers.10000.weight"));
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, "layers.1.weigh"));
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, ""));

    /* Remove the even keys. */
    for (int i = 0; i < KEY_COUNT; i += 2) {
        ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, copy_key(i, buffer)),
                         &values[i]);
        ck_assert_ptr_null(paramd__dictionary_find(&dictionary, keys[i]));
        ck_assert_ptr_null(paramd__dictionary_remove(&dictionary, keys[i]));
    }
    ck_assert_uint_eq(dictionary.count, KEY_COUNT / 2);
    for (int i = 0; i < KEY_COUNT; i++) {
        if (i % 2 == 0)
            ck_assert_ptr_null(paramd__dictionary_find(&dictionary, keys[i]));
        else
            ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
    }
    /* Remove the rest. */
    for (int i = 1; i < KEY_COUNT; i += 2)
        ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, keys[i]), &values[i]);
    ck_assert_uint_eq(dictionary.count, 0);
    for (int i = 0; i < KEY_COUNT; i++)
        ck_assert_ptr_null(paramd__dictionary_find(&dictionary, keys[i]));
    paramd__dictionary_free(&dictionary);
}
END_TEST

START_TEST(test_duplicate_insert)
{
    make_keys();
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
    char buffer[KEY_SIZE];
    for (int i = 0; i < 100; i++) {
        /* The same pointer and an equal string in another buffer. */
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i + 1]), 1);
        ck_assert_int_eq(
            paramd__dictionary_insert(&dictionary, copy_key(i, buffer), &values[i + 2]), 1);
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
    }
    ck_assert_uint_eq(dictionary.count, 100);
    /* The entry's key is still the original pointer: remove and re-find work
     * after the buffer used for the failed inserts changes. */
    memset(buffer, 0, sizeof buffer);
    for (int i = 0; i < 100; i++)
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
    paramd__dictionary_free(&dictionary);
}
END_TEST

START_TEST(test_reinsert_after_remove)
{
    make_keys();
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
    /* Tombstones in the middle of probe chains must not hide later keys. */
    for (int i = 0; i < 1000; i += 3)
        ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, keys[i]), &values[i]);
    for (int i = 0; i < 1000; i++) {
        if (i % 3 == 0)
            ck_assert_ptr_null(paramd__dictionary_find(&dictionary, keys[i]));
        else
            ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
    }
    /* Re-insert with a new value; a live key may not be inserted twice even
     * when a tombstone precedes it in its chain. */
    for (int i = 0; i < 1000; i += 3)
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i + 5000]), 0);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[9999]), 1);
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]),
                         i % 3 == 0 ? &values[i + 5000] : &values[i]);
    }
    ck_assert_uint_eq(dictionary.count, 1000);
    visit_counts *visits = calloc(1, sizeof *visits);
    ck_assert_ptr_nonnull(visits);
    paramd__dictionary_for_each(&dictionary, count_visit, visits);
    ck_assert_int_eq(visits->total, 1000);
    for (int i = 0; i < 1000; i++) {
        int index = i % 3 == 0 ? i + 5000 : i;
        ck_assert_int_eq(visits->counts[index], 1);
    }
    free(visits);
    paramd__dictionary_free(&dictionary);
}
END_TEST

START_TEST(test_for_each_visits_live_values_once)
{
    make_keys();
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    for (int i = 0; i < KEY_COUNT; i++)
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
    for (int i = 0; i < KEY_COUNT; i += 7)
        ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, keys[i]), &values[i]);
    visit_counts *visits = calloc(1, sizeof *visits);
    ck_assert_ptr_nonnull(visits);
    paramd__dictionary_for_each(&dictionary, count_visit, visits);
    int expected_total = 0;
    for (int i = 0; i < KEY_COUNT; i++) {
        int expected = i % 7 == 0 ? 0 : 1;
        ck_assert_msg(visits->counts[i] == expected, "value %d visited %d times", i,
                      visits->counts[i]);
        expected_total += expected;
    }
    ck_assert_int_eq(visits->total, expected_total);
    ck_assert_uint_eq(dictionary.count, (size_t)expected_total);
    free(visits);
    paramd__dictionary_free(&dictionary);
}
END_TEST

START_TEST(test_insert_remove_cycles)
{
    make_keys();
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    /* A fixed resident set, and a churning window of other keys: tombstones
     * accumulate and must be cleaned by rehashing, not fill the table. */
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
    size_t largest_capacity = dictionary.capacity;
    for (int cycle = 0; cycle < 200; cycle++) {
        int first = 50 + (cycle * 37) % (KEY_COUNT - 150);
        for (int i = first; i < first + 100; i++)
            ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[i], &values[i]), 0);
        ck_assert_uint_eq(dictionary.count, 150);
        for (int i = first; i < first + 100; i++)
            ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
        for (int i = first; i < first + 100; i++)
            ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, keys[i]), &values[i]);
        ck_assert_uint_eq(dictionary.count, 50);
        ck_assert_uint_le(dictionary.used * 4, dictionary.capacity * 3);
        ck_assert_uint_ge(dictionary.used, dictionary.count);
        if (dictionary.capacity > largest_capacity)
            largest_capacity = dictionary.capacity;
    }
    /* Churn does not grow the table without bound (150 live keys at most). */
    ck_assert_uint_le(largest_capacity, 1024);
    for (int i = 0; i < 50; i++)
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, keys[i]), &values[i]);
    for (int i = 50; i < KEY_COUNT; i++)
        ck_assert_ptr_null(paramd__dictionary_find(&dictionary, keys[i]));
    visit_counts *visits = calloc(1, sizeof *visits);
    ck_assert_ptr_nonnull(visits);
    paramd__dictionary_for_each(&dictionary, count_visit, visits);
    ck_assert_int_eq(visits->total, 50);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(visits->counts[i], 1);
    free(visits);

    /* The same key inserted and removed many times in a row. */
    for (int round = 0; round < 10000; round++) {
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, keys[9999], &values[round % 100]),
                         0);
        ck_assert_uint_eq(dictionary.count, 51);
        ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, keys[9999]), &values[round % 100]);
        ck_assert_uint_eq(dictionary.count, 50);
    }
    ck_assert_uint_le(dictionary.capacity, 1024);
    paramd__dictionary_free(&dictionary);
}
END_TEST

START_TEST(test_colliding_prefixes)
{
    /* Keys that differ only in their last character or in length. */
    static char short_keys[200][8];
    paramd__dictionary dictionary;
    paramd__dictionary_init(&dictionary);
    make_keys();
    for (int i = 0; i < 200; i++) {
        int length = 1 + i / 64;
        memset(short_keys[i], 'a', sizeof short_keys[i]);
        short_keys[i][length - 1] = (char)(' ' + i % 64 + 1);
        short_keys[i][length] = '\0';
        ck_assert_int_eq(paramd__dictionary_insert(&dictionary, short_keys[i], &values[i]), 0);
    }
    ck_assert_int_eq(paramd__dictionary_insert(&dictionary, "", &values[500]), 0);
    ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, ""), &values[500]);
    for (int i = 0; i < 200; i++)
        ck_assert_ptr_eq(paramd__dictionary_find(&dictionary, short_keys[i]), &values[i]);
    ck_assert_uint_eq(dictionary.count, 201);
    ck_assert_ptr_eq(paramd__dictionary_remove(&dictionary, ""), &values[500]);
    ck_assert_ptr_null(paramd__dictionary_find(&dictionary, ""));
    paramd__dictionary_free(&dictionary);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("dictionary");
    TCase *tcase = tcase_create("dictionary");
    tcase_add_test(tcase, test_empty);
    tcase_add_test(tcase, test_insert_find_remove_many);
    tcase_add_test(tcase, test_duplicate_insert);
    tcase_add_test(tcase, test_reinsert_after_remove);
    tcase_add_test(tcase, test_for_each_visits_live_values_once);
    tcase_add_test(tcase, test_insert_remove_cycles);
    tcase_add_test(tcase, test_colliding_prefixes);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
