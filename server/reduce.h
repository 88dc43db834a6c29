/*
 * reduce.h - sums over large float arrays in one fixed order, for the
 * tensor-wise optimizers (LAMB, LARS, Adafactor, Muon) and clipping.
 *
 * A sum over [0, count) is always taken the same way, whatever the thread
 * count, the instruction set or the kernel (fast or reference):
 *   - the range is cut into blocks of PARAMD__REDUCE_BLOCK elements;
 *   - inside a block, element i is added to lane i % 16 of 16 accumulators
 *     (double precision), in index order;
 *   - the 16 lanes are combined by the fixed pairwise tree of
 *     paramd__lanes_total, giving the block's sum;
 *   - the block sums are added in block order.
 * Sixteen independent lanes are what lets gcc vectorise the loops without
 * reassociating anything (-std=c11 forbids it), and threads take whole
 * blocks, so a threaded sum is bit-identical to a serial one and the scalar
 * reference kernels can reproduce the fast ones exactly.  Accumulating in
 * double keeps a 2^30-element sum of squares accurate to far better than
 * float32's precision.
 *
 * A block function (paramd__block_sum_function) computes up to
 * PARAMD__REDUCE_MAX_WIDTH such sums over one block at once, and may write
 * arrays as it goes (LAMB's moments): it must touch only elements of its own
 * block, so blocks can run on different threads.
 */
#ifndef PARAMD_SERVER_REDUCE_H
#define PARAMD_SERVER_REDUCE_H

#include <stdbool.h>
#include <stddef.h>

#define PARAMD__REDUCE_LANES 16
#define PARAMD__REDUCE_BLOCK 16384 /* elements; a multiple of PARAMD__REDUCE_LANES */
#define PARAMD__REDUCE_MAX_WIDTH 4 /* sums one pass may take at once */

/* Adds the sums of elements [begin, end) (one block, begin a multiple of
 * PARAMD__REDUCE_BLOCK) into sums[0 .. width), which start at zero, each
 * taken in the lane order above. */
typedef void (*paramd__block_sum_function)(void *context, size_t begin, size_t end,
                                           double *sums);

/* Runs function over every block of [0, count) and writes to totals[0 ..
 * width) the sums of all blocks, added in block order.  With `parallel`,
 * blocks of a large range are spread over the thread pool (see parallel.h);
 * the result is the same either way. */
void paramd__block_sums(size_t count, int width, paramd__block_sum_function function,
                        void *context, bool parallel, double *totals);

/* The sum of 16 lanes by a fixed pairwise tree. */
static inline double paramd__lanes_total(const double *lanes)
{
    double quarter[4];
    for (int q = 0; q < 4; q++)
        quarter[q] = (lanes[4 * q] + lanes[4 * q + 1]) + (lanes[4 * q + 2] + lanes[4 * q + 3]);
    return (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
}

/* The sum of squares of values[0, count) in the order above (fast
 * vectorised loops with `parallel` threads, or a scalar reference loop). */
double paramd__sum_of_squares(const float *values, size_t count, bool parallel);
double paramd__sum_of_squares_reference(const float *values, size_t count);

#endif
