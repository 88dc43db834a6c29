/*
 * initializer.h - seeded, reproducible tensor initializers.
 *
 * Each initializer is a row of a table (initializer.c), with its parameters
 * described by the same schema type as optimizer hyperparameters.  Values are
 * a pure function of (seed, element index): the generator is SplitMix64 over
 * the index, so a tensor fills identically whatever the thread count, on
 * every machine and in every paramd version.  (It is not torch's generator:
 * paramd cannot reproduce torch.manual_seed streams, and does not try.)
 */
#ifndef PARAMD_SERVER_INITIALIZER_H
#define PARAMD_SERVER_INITIALIZER_H

#include "optimizer.h"

#include <stddef.h>
#include <stdint.h>

#define PARAMD__MAX_INITIALIZER_PARAMETERS 4

struct paramd__initializer;

typedef struct paramd__initializer_type {
    const char *name; /* "zeros", "constant", "uniform", "normal" */
    const paramd__hyperparameter_spec *parameters;
    int parameter_count;
    /* Cross-parameter checks (uniform: a <= b); `field` prefixes error
     * messages ("tensors[1].init").  May be NULL. */
    int (*validate)(const struct paramd__initializer *initializer, const char *field,
                    paramd__error *error);
    /* Writes `count` elements of the tensor, from element index `first`
     * (row-major), to out[0 .. count).  Each element is a function of its
     * index alone, so any range can be generated on its own (a shard's). */
    void (*fill)(const struct paramd__initializer *initializer, float *out, uint64_t first,
                 size_t count);
} paramd__initializer_type;

typedef struct paramd__initializer {
    const paramd__initializer_type *type;
    double parameters[PARAMD__MAX_INITIALIZER_PARAMETERS];
    uint64_t seed;
} paramd__initializer;

extern const paramd__initializer_type *const paramd__initializer_types[];
extern const int paramd__initializer_type_count;

/* Finds an initializer by name (case-insensitive). */
const paramd__initializer_type *paramd__initializer_find(const char *name);

/* Sets the type and its default parameters, seed 0. */
void paramd__initializer_init(paramd__initializer *initializer,
                              const paramd__initializer_type *type);

/* Fills `count` values, in parallel for large tensors. */
void paramd__initializer_fill(const paramd__initializer *initializer, float *values,
                              size_t count);

/* Fills values[0 .. count) with elements [offset, offset + count) of the
 * tensor the initializer describes: exactly the values a whole-tensor fill
 * puts there. */
void paramd__initializer_fill_range(const paramd__initializer *initializer, float *values,
                                    uint64_t offset, size_t count);

#endif
