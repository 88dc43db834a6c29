/*
 * test_initializer.c - unit tests for server/initializer.h.
 */
#include "test_util.h"

#include "initializer.h"
#include "parallel.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MILLION 1000000u

static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float *alloc_filled(size_t count, float fill)
{
    float *values = malloc((count ? count : 1) * sizeof *values);
    ck_assert_ptr_nonnull(values);
    for (size_t i = 0; i < count; i++)
        values[i] = fill;
    return values;
}

static paramd__initializer make_initializer(const char *name, double p0, double p1,
                                            uint64_t seed)
{
    const paramd__initializer_type *type = paramd__initializer_find(name);
    ck_assert_ptr_nonnull(type);
    paramd__initializer initializer;
    paramd__initializer_init(&initializer, type);
    if (type->parameter_count > 0)
        initializer.parameters[type->parameters[0].slot] = p0;
    if (type->parameter_count > 1)
        initializer.parameters[type->parameters[1].slot] = p1;
    initializer.seed = seed;
    return initializer;
}

/* Index of the first element whose bits are not `bits`, or count. */
static size_t first_not_bits(const float *values, size_t count, uint32_t bits)
{
    for (size_t i = 0; i < count; i++)
        if (float_bits(values[i]) != bits)
            return i;
    return count;
}

/* Index of the first element whose bits differ, or count. */
static size_t first_difference(const float *a, const float *b, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (float_bits(a[i]) != float_bits(b[i]))
            return i;
    return count;
}

START_TEST(test_find_and_defaults)
{
    ck_assert_int_eq(paramd__initializer_type_count, 11);
    ck_assert_ptr_eq(paramd__initializer_find("zeros"), paramd__initializer_types[0]);
    ck_assert_ptr_eq(paramd__initializer_find("ZEROS"), paramd__initializer_types[0]);
    ck_assert_ptr_eq(paramd__initializer_find("Constant"), paramd__initializer_types[1]);
    ck_assert_ptr_eq(paramd__initializer_find("uniform"), paramd__initializer_types[2]);
    ck_assert_ptr_eq(paramd__initializer_find("Normal"), paramd__initializer_types[3]);
    ck_assert_ptr_null(paramd__initializer_find("xavier"));
    ck_assert_ptr_null(paramd__initializer_find(""));
    ck_assert_ptr_null(paramd__initializer_find("zero"));
    for (int i = 0; i < paramd__initializer_type_count; i++)
        ck_assert_ptr_eq(paramd__initializer_find(paramd__initializer_types[i]->name),
                         paramd__initializer_types[i]);

    paramd__initializer initializer;
    memset(&initializer, 0xFF, sizeof initializer);
    paramd__initializer_init(&initializer, paramd__initializer_find("uniform"));
    ck_assert_uint_eq(initializer.seed, 0);
    ck_assert_double_eq(initializer.parameters[0], 0.0);
    ck_assert_double_eq(initializer.parameters[1], 1.0);
    paramd__initializer_init(&initializer, paramd__initializer_find("normal"));
    ck_assert_double_eq(initializer.parameters[0], 0.0);
    ck_assert_double_eq(initializer.parameters[1], 1.0);
    ck_assert_uint_eq(initializer.seed, 0);
    /* constant's val is required: unset until given. */
    paramd__initializer_init(&initializer, paramd__initializer_find("constant"));
    ck_assert(isnan(initializer.parameters[0]));
    paramd__initializer_init(&initializer, paramd__initializer_find("zeros"));
    ck_assert_ptr_eq(initializer.type, paramd__initializer_find("zeros"));
    ck_assert_uint_eq(initializer.seed, 0);
}
END_TEST

START_TEST(test_uniform_validate)
{
    const paramd__initializer_type *type = paramd__initializer_find("uniform");
    ck_assert_ptr_nonnull(type->validate);
    paramd__error error;
    paramd__initializer initializer = make_initializer("uniform", 1.0, 0.0, 0);
    paramd__error_clear(&error);
    ck_assert_int_eq(type->validate(&initializer, "tensors[0].init", &error), PARAMD_E_BAD_REQUEST);
    ck_assert_int_eq(error.code, PARAMD_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(error.message, "a <= b"));
    ck_assert_ptr_nonnull(strstr(error.message, "tensors[0].init"));
    initializer = make_initializer("uniform", -1.0, 1.0, 0);
    paramd__error_clear(&error);
    ck_assert_int_eq(type->validate(&initializer, "tensors[0].init", &error), PARAMD_OK);
    initializer = make_initializer("uniform", 2.0, 2.0, 0);
    ck_assert_int_eq(type->validate(&initializer, "tensors[0].init", &error), PARAMD_OK);
}
END_TEST

START_TEST(test_zeros)
{
    const size_t counts[] = {0, 1, 17, 1000, MILLION + 3};
    paramd__initializer initializer = make_initializer("zeros", 0, 0, 99);
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t count = counts[c];
        float *values = alloc_filled(count + 1, 7.0f);
        paramd__initializer_fill(&initializer, values, count);
        size_t bad = first_not_bits(values, count, 0);
        ck_assert_msg(bad == count, "zeros[%zu] = %g", bad, (double)values[bad]);
        ck_assert_float_eq(values[count], 7.0f); /* nothing past count */
        free(values);
    }
}
END_TEST

START_TEST(test_constant)
{
    const size_t counts[] = {1, 33, MILLION + 7};
    const double constants[] = {2.5, -0.0, -1e-3, 3.0e38};
    for (size_t k = 0; k < sizeof constants / sizeof constants[0]; k++) {
        paramd__initializer initializer = make_initializer("constant", constants[k], 0, 5);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            size_t count = counts[c];
            float *values = alloc_filled(count + 1, 7.0f);
            paramd__initializer_fill(&initializer, values, count);
            float expected = (float)constants[k];
            size_t bad = first_not_bits(values, count, float_bits(expected));
            ck_assert_msg(bad == count, "constant[%zu] = %g, expected %g", bad,
                          (double)values[bad], (double)expected);
            ck_assert_float_eq(values[count], 7.0f);
            free(values);
        }
    }
}
END_TEST

static void check_uniform_statistics(double a, double b, uint64_t seed)
{
    paramd__initializer initializer = make_initializer("uniform", a, b, seed);
    float *values = alloc_filled(MILLION, NAN);
    paramd__initializer_fill(&initializer, values, MILLION);
    double sum = 0, sum_squares = 0;
    float low = (float)a, high = (float)b;
    size_t below_middle = 0, outside = 0, first_outside = 0;
    for (size_t i = 0; i < MILLION; i++) {
        float v = values[i];
        /* Within [a, b]; that b itself never occurs is test_uniform_never_reaches_b. */
        if (!(v >= low && v <= high) && outside++ == 0)
            first_outside = i;
        sum += v;
        sum_squares += (double)v * v;
        below_middle += v < (a + b) / 2;
    }
    double mean = sum / MILLION;
    double variance = sum_squares / MILLION - mean * mean;
    double width = b - a;
    ck_assert_msg(outside == 0, "uniform(%g, %g)[%zu] = %.9g outside [a, b]", a, b,
                  first_outside, (double)values[first_outside]);
    ck_assert_msg(fabs(mean - (a + b) / 2) <= 0.005 * width, "uniform(%g, %g) mean %g", a, b,
                  mean);
    ck_assert_msg(fabs(variance - width * width / 12) <= 0.01 * width * width / 12,
                  "uniform(%g, %g) variance %g", a, b, variance);
    ck_assert_msg(fabs((double)below_middle / MILLION - 0.5) < 0.005,
                  "uniform(%g, %g): %zu below the middle", a, b, below_middle);
    free(values);
}

START_TEST(test_uniform)
{
    check_uniform_statistics(0.0, 1.0, 0);
    check_uniform_statistics(-2.0, 3.0, 42);
    check_uniform_statistics(-0.05, 0.05, 123456789);
    check_uniform_statistics(100.0, 101.0, 7);
}
END_TEST

/* (float)(a + (b - a) * u) must not round up to b.  With a = 0, b = 1 that
 * happens for u >= 1 - 2^-25; these seeds each have such a u among their
 * first 1024 elements (seed 74326 at index 26) under the documented
 * SplitMix64-over-index generator.  With a narrow range far from zero it is
 * common: uniform(100, 101) rounds to 101 whenever u >= 1 - 2^-18, about
 * 4 times per million elements. */
START_TEST(test_uniform_never_reaches_b)
{
    paramd__initializer narrow = make_initializer("uniform", 100.0, 101.0, 7);
    float *many = alloc_filled(MILLION, NAN);
    paramd__initializer_fill(&narrow, many, MILLION);
    size_t at_b = 0, first_at_b = 0;
    for (size_t i = 0; i < MILLION; i++)
        if (!(many[i] >= 100.0f && many[i] < 101.0f) && at_b++ == 0)
            first_at_b = i;
    ck_assert_msg(at_b == 0, "uniform(100, 101), seed 7: %zu values outside [a, b), first [%zu] = %.9g",
                  at_b, first_at_b, (double)many[first_at_b]);
    free(many);

    const uint64_t seeds[] = {62800, 74326, 124710, 131381, 134638};
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        paramd__initializer initializer = make_initializer("uniform", 0.0, 1.0, seeds[s]);
        float values[1024];
        paramd__initializer_fill(&initializer, values, 1024);
        float largest = 0;
        for (size_t i = 0; i < 1024; i++) {
            ck_assert_msg(values[i] >= 0.0f, "seed %llu: uniform(0, 1)[%zu] = %.9g",
                          (unsigned long long)seeds[s], i, (double)values[i]);
            ck_assert_msg(values[i] < 1.0f, "seed %llu: uniform(0, 1)[%zu] = %.9g, equal to b",
                          (unsigned long long)seeds[s], i, (double)values[i]);
            if (values[i] > largest)
                largest = values[i];
        }
        /* The sample does come close to b. */
        ck_assert_float_ge(largest, 0.9999f);
    }
}
END_TEST

static void check_normal_statistics(double mean, double std, uint64_t seed)
{
    paramd__initializer initializer = make_initializer("normal", mean, std, seed);
    float *values = alloc_filled(MILLION, NAN);
    paramd__initializer_fill(&initializer, values, MILLION);
    double sum = 0, sum_squares = 0;
    size_t within_one = 0, within_two = 0, non_finite = 0;
    for (size_t i = 0; i < MILLION; i++) {
        float v = values[i];
        non_finite += !isfinite(v);
        sum += v;
        sum_squares += (double)v * v;
        within_one += fabs(v - mean) < std;
        within_two += fabs(v - mean) < 2 * std;
    }
    ck_assert_uint_eq(non_finite, 0);
    double sample_mean = sum / MILLION;
    double sample_std = sqrt(sum_squares / MILLION - sample_mean * sample_mean);
    /* 1% of std for the mean (its standard error is std / 1000). */
    ck_assert_msg(fabs(sample_mean - mean) <= 0.01 * std, "normal(%g, %g): mean %g", mean, std,
                  sample_mean);
    ck_assert_msg(fabs(sample_std - std) <= 0.01 * std, "normal(%g, %g): std %g", mean, std,
                  sample_std);
    ck_assert_msg(fabs((double)within_one / MILLION - 0.682689) < 0.005,
                  "normal(%g, %g): %zu within one std", mean, std, within_one);
    ck_assert_msg(fabs((double)within_two / MILLION - 0.954500) < 0.003,
                  "normal(%g, %g): %zu within two std", mean, std, within_two);
    free(values);
}

START_TEST(test_normal)
{
    check_normal_statistics(0.0, 1.0, 0);
    check_normal_statistics(1.5, 2.0, 7);
    check_normal_statistics(-3.0, 0.02, 987654321);
    /* Mean 1.5 within 1% of itself too. */
    paramd__initializer initializer = make_initializer("normal", 1.5, 0.5, 11);
    float *values = alloc_filled(MILLION, NAN);
    paramd__initializer_fill(&initializer, values, MILLION);
    double sum = 0;
    for (size_t i = 0; i < MILLION; i++)
        sum += values[i];
    ck_assert_double_eq_tol(sum / MILLION, 1.5, 0.015);
    free(values);
    /* std 0 gives exactly the mean. */
    initializer = make_initializer("normal", 0.25, 0.0, 3);
    float small[100];
    paramd__initializer_fill(&initializer, small, 100);
    for (size_t i = 0; i < 100; i++)
        ck_assert_float_eq(small[i], 0.25f);
}
END_TEST

START_TEST(test_seed_determinism)
{
    const char *names[] = {"uniform", "normal"};
    for (size_t n = 0; n < 2; n++) {
        paramd__initializer first = make_initializer(names[n], 0.0, 1.0, 1234);
        paramd__initializer second = make_initializer(names[n], 0.0, 1.0, 1234);
        paramd__initializer other = make_initializer(names[n], 0.0, 1.0, 1235);
        float *a = alloc_filled(MILLION, 0);
        float *b = alloc_filled(MILLION, 1);
        float *c = alloc_filled(MILLION, 2);
        paramd__initializer_fill(&first, a, MILLION);
        paramd__initializer_fill(&second, b, MILLION);
        paramd__initializer_fill(&other, c, MILLION);
        ck_assert_uint_eq(first_difference(a, b, MILLION), MILLION);
        /* Filling again with the same initializer repeats itself. */
        paramd__initializer_fill(&first, b, MILLION);
        ck_assert_uint_eq(first_difference(a, b, MILLION), MILLION);
        /* Another seed: (nearly) every element differs. */
        size_t equal = 0;
        for (size_t i = 0; i < MILLION; i++)
            equal += float_bits(a[i]) == float_bits(c[i]);
        ck_assert_msg(equal < MILLION / 1000, "%s: %zu equal elements across seeds", names[n],
                      equal);
        /* Neighbouring elements differ too (not a constant stream). */
        size_t repeats = 0;
        for (size_t i = 1; i < MILLION; i++)
            repeats += float_bits(a[i]) == float_bits(a[i - 1]);
        ck_assert_uint_lt(repeats, MILLION / 1000);
        free(a);
        free(b);
        free(c);
    }
    /* Seeds far apart, including the largest. */
    paramd__initializer high = make_initializer("uniform", 0.0, 1.0, UINT64_MAX);
    paramd__initializer zero = make_initializer("uniform", 0.0, 1.0, 0);
    float x[64], y[64];
    paramd__initializer_fill(&high, x, 64);
    paramd__initializer_fill(&zero, y, 64);
    size_t equal = 0;
    for (size_t i = 0; i < 64; i++)
        equal += float_bits(x[i]) == float_bits(y[i]);
    ck_assert_uint_eq(equal, 0);
}
END_TEST

/* Values depend only on (seed, index): a fill of N elements equals the first
 * N of a fill of N + 100, however each was split across threads. */
static void check_prefix(const char *name, double p0, double p1, uint64_t seed, size_t count)
{
    paramd__initializer initializer = make_initializer(name, p0, p1, seed);
    float *shorter = alloc_filled(count, NAN);
    float *longer = alloc_filled(count + 100, NAN);
    paramd__initializer_fill(&initializer, shorter, count);
    paramd__initializer_fill(&initializer, longer, count + 100);
    size_t difference = first_difference(shorter, longer, count);
    ck_assert_msg(difference == count, "%s, %zu elements: differs at %zu", name, count,
                  difference);
    size_t unfilled = 0;
    for (size_t i = count; i < count + 100; i++)
        unfilled += isnan(longer[i]);
    ck_assert_uint_eq(unfilled, 0);
    free(shorter);
    free(longer);
}

START_TEST(test_values_depend_on_index_only)
{
    ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
    const size_t counts[] = {1, 15, 1000, 65535, 65536, MILLION, MILLION + 13};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        check_prefix("uniform", -1.0, 1.0, 77, counts[c]);
        check_prefix("normal", 0.0, 0.02, 78, counts[c]);
    }
    /* A small serial fill agrees with the start of a large parallel one. */
    paramd__initializer initializer = make_initializer("normal", 0.0, 1.0, 5);
    float small[1000];
    float *large = alloc_filled(MILLION, NAN);
    paramd__initializer_fill(&initializer, small, 1000);
    paramd__initializer_fill(&initializer, large, MILLION);
    ck_assert_uint_eq(first_difference(small, large, 1000), 1000);
    free(large);
    paramd__parallel_stop();
}
END_TEST

START_TEST(test_same_values_with_and_without_pool)
{
    const size_t count = MILLION + 5;
    const char *names[] = {"uniform", "normal", "constant", "zeros"};
    for (size_t n = 0; n < 4; n++) {
        paramd__initializer initializer = make_initializer(names[n], -0.5, 0.5, 2024);
        paramd__parallel_stop();
        ck_assert_int_eq(paramd__parallel_width(), 1);
        float *serial = alloc_filled(count, NAN);
        paramd__initializer_fill(&initializer, serial, count);

        ck_assert_int_eq(paramd__parallel_start(3), PARAMD_OK);
        ck_assert_int_eq(paramd__parallel_width(), 4);
        float *threaded = alloc_filled(count, NAN);
        paramd__initializer_fill(&initializer, threaded, count);
        size_t difference = first_difference(serial, threaded, count);
        ck_assert_msg(difference == count, "%s: serial and threaded fills differ at %zu",
                      names[n], difference);
        paramd__parallel_stop();
        free(serial);
        free(threaded);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *suite = suite_create("initializer");
    TCase *tcase = tcase_create("initializer");
    tcase_set_timeout(tcase, 60);
    tcase_add_test(tcase, test_find_and_defaults);
    tcase_add_test(tcase, test_uniform_validate);
    tcase_add_test(tcase, test_zeros);
    tcase_add_test(tcase, test_constant);
    tcase_add_test(tcase, test_uniform);
    tcase_add_test(tcase, test_uniform_never_reaches_b);
    tcase_add_test(tcase, test_normal);
    tcase_add_test(tcase, test_seed_determinism);
    tcase_add_test(tcase, test_values_depend_on_index_only);
    tcase_add_test(tcase, test_same_values_with_and_without_pool);
    suite_add_tcase(suite, tcase);
    return suite;
}

PARAMD_TEST_MAIN(make_suite)
