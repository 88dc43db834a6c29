/*
 * initializer.h - seeded, reproducible tensor initializers.
 *
 * Each initializer is a row of a table (initializer.c), with its parameters
 * described by the same schema type as optimizer hyperparameters.  Values are
 * a pure function of (seed, element index): the generator is SplitMix64 over
 * the index, so a tensor fills identically whatever the thread count, on
 * every machine and in every paramd version.  (It is not torch's generator:
 * paramd cannot reproduce torch.manual_seed streams, and does not try.)
 *
 * The names, parameters and scales are torch.nn.init's: xavier_* and
 * kaiming_* take their fans from the tensor's shape as torch does (fan_in =
 * shape[1] x receptive field, fan_out = shape[0] x receptive field), and
 * orthogonal orthogonalises a seeded Gaussian matrix with LAPACK's QR, signs
 * corrected as torch.nn.init.orthogonal_ corrects them.  Orthogonal is the
 * one initializer that needs the whole tensor at once (fill_whole); every
 * other one computes each element from its index alone.
 */
#ifndef PARAMD_SERVER_INITIALIZER_H
#define PARAMD_SERVER_INITIALIZER_H

#include "optimizer.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

#define PARAMD__MAX_INITIALIZER_PARAMETERS 4

struct paramd__initializer;

typedef struct paramd__initializer_type {
    const char *name; /* torch.nn.init's name without the trailing "_": "xavier_uniform" */
    const paramd__hyperparameter_spec *parameters;
    int parameter_count;
    /* Cross-parameter and shape checks (uniform: a <= b; xavier: at least
     * two dimensions); `field` prefixes error messages ("tensors[1].init").
     * May be NULL. */
    int (*validate)(const struct paramd__initializer *initializer, const char *field,
                    paramd__error *error);
    /* Writes `count` elements of the tensor, from element index `first`
     * (row-major), to out[0 .. count).  Each element is a function of its
     * index alone, so any range can be generated on its own (a shard's). */
    void (*fill)(const struct paramd__initializer *initializer, float *out, uint64_t first,
                 size_t count);
    /* Instead of fill, for an initializer whose values depend on each other
     * (orthogonal): writes all the tensor's elements to out.  Returns
     * PARAMD_OK or PARAMD_E_NO_MEMORY. */
    int (*fill_whole)(const struct paramd__initializer *initializer, float *out);
} paramd__initializer_type;

typedef struct paramd__initializer {
    const paramd__initializer_type *type;
    double parameters[PARAMD__MAX_INITIALIZER_PARAMETERS];
    uint64_t seed;
    /* The tensor's shape (paramd__initializer_set_shape): the fans of
     * xavier and kaiming, the matrix of orthogonal. */
    int dimension_count;
    int64_t shape[PARAMD__MAX_DIMENSIONS];
} paramd__initializer;

extern const paramd__initializer_type *const paramd__initializer_types[];
extern const int paramd__initializer_type_count;

/* Finds an initializer by name (case-insensitive). */
const paramd__initializer_type *paramd__initializer_find(const char *name);

/* Sets the type and its default parameters, seed 0, no shape. */
void paramd__initializer_init(paramd__initializer *initializer,
                              const paramd__initializer_type *type);

/* Sets the shape of the tensor the initializer fills. */
void paramd__initializer_set_shape(paramd__initializer *initializer, int dimension_count,
                                   const int64_t *shape);

/* The type's checks of the parameters against each other and the shape;
 * errors name `field`. */
int paramd__initializer_validate(const paramd__initializer *initializer, const char *field,
                                 paramd__error *error);

/* torch.nn.init._calculate_fan_in_and_fan_out of the initializer's shape
 * (at least two dimensions). */
void paramd__initializer_fans(const paramd__initializer *initializer, double *fan_in,
                              double *fan_out);

/* What xavier_* and kaiming_* draw from: the bound b of uniform(-b, b),
 * or the standard deviation of normal(0, std); NAN for other types. */
double paramd__initializer_scale(const paramd__initializer *initializer);

/* torch.nn.init.calculate_gain: nonlinearity one of paramd__nonlinearities
 * (by index), negative_slope for leaky_relu. */
double paramd__initializer_gain(int nonlinearity, double negative_slope);
extern const char *const paramd__nonlinearities[];

/* The orthogonal initializer's core: writes to out the rows x cols matrix
 * torch.nn.init.orthogonal_ makes of the Gaussian matrix `gaussian` (rows x
 * cols, row-major): Q of the QR factorisation (of its transpose when rows <
 * cols), each column times the sign of R's diagonal, times gain.  Returns
 * PARAMD_OK or PARAMD_E_NO_MEMORY. */
int paramd__orthogonalize(const double *gaussian, size_t rows, size_t cols, double gain,
                          float *out);

/* Fills `count` values (the whole tensor), in parallel for large tensors. */
int paramd__initializer_fill(const paramd__initializer *initializer, float *values,
                             size_t count);

/* Fills values[0 .. count) with elements [offset, offset + count) of the
 * tensor the initializer describes (of its shape's element count): exactly
 * the values a whole-tensor fill puts there.  Returns PARAMD_OK, or
 * PARAMD_E_NO_MEMORY when an initializer that needs the whole tensor could
 * not allocate it. */
int paramd__initializer_fill_range(const paramd__initializer *initializer, float *values,
                                   uint64_t offset, size_t count);

#endif
