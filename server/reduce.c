/* reduce.c - see reduce.h. */
#include "reduce.h"

#include "kernel.h"
#include "parallel.h"

#include <stdlib.h>
#include <string.h>

/* Blocks summed on the stack before the partial sums need the heap. */
#define STACK_BLOCKS 64

typedef struct block_job {
    paramd__block_sum_function function;
    void *context;
    size_t count;
    int width;
    double *partials; /* width sums per block */
} block_job;

static void run_blocks(void *context, size_t first_block, size_t end_block)
{
    const block_job *job = context;
    for (size_t b = first_block; b < end_block; b++) {
        size_t begin = b * PARAMD__REDUCE_BLOCK;
        size_t end = begin + PARAMD__REDUCE_BLOCK < job->count ? begin + PARAMD__REDUCE_BLOCK
                                                               : job->count;
        double *sums = job->partials + b * (size_t)job->width;
        memset(sums, 0, (size_t)job->width * sizeof *sums);
        job->function(job->context, begin, end, sums);
    }
}

void paramd__block_sums(size_t count, int width, paramd__block_sum_function function,
                        void *context, bool parallel, double *totals)
{
    size_t blocks = (count + PARAMD__REDUCE_BLOCK - 1) / PARAMD__REDUCE_BLOCK;
    for (int k = 0; k < width; k++)
        totals[k] = 0;
    double stack[STACK_BLOCKS * PARAMD__REDUCE_MAX_WIDTH];
    double *partials = NULL;
    size_t minimum_blocks = PARAMD__PARALLEL_STEP_MINIMUM / PARAMD__REDUCE_BLOCK;
    if (parallel && blocks >= minimum_blocks && paramd__parallel_width() > 1)
        partials = blocks <= STACK_BLOCKS ? stack
                                          : malloc(blocks * (size_t)width * sizeof *partials);
    if (partials == NULL) {
        /* Serial (or out of memory for the partial sums): the same order. */
        for (size_t b = 0; b < blocks; b++) {
            size_t begin = b * PARAMD__REDUCE_BLOCK;
            size_t end = begin + PARAMD__REDUCE_BLOCK < count ? begin + PARAMD__REDUCE_BLOCK
                                                              : count;
            double sums[PARAMD__REDUCE_MAX_WIDTH] = {0};
            function(context, begin, end, sums);
            for (int k = 0; k < width; k++)
                totals[k] += sums[k];
        }
        return;
    }
    block_job job = {function, context, count, width, partials};
    paramd__parallel_for(blocks, 1, minimum_blocks, run_blocks, &job);
    for (size_t b = 0; b < blocks; b++)
        for (int k = 0; k < width; k++)
            totals[k] += partials[b * (size_t)width + (size_t)k];
    if (partials != stack)
        free(partials);
}

/* ---------------------------------------------------------------------------
 * Sum of squares
 * ------------------------------------------------------------------------- */

PARAMD__FAST_KERNEL
static void squares_block(void *context, size_t begin, size_t end, double *sums)
{
    const float *restrict values = context;
    double lanes[PARAMD__REDUCE_LANES] = {0};
    size_t i = begin;
    for (; i + PARAMD__REDUCE_LANES <= end; i += PARAMD__REDUCE_LANES)
        for (int j = 0; j < PARAMD__REDUCE_LANES; j++) {
            double x = values[i + (size_t)j];
            lanes[j] += x * x;
        }
    for (; i < end; i++) {
        double x = values[i];
        lanes[i % PARAMD__REDUCE_LANES] += x * x;
    }
    sums[0] += paramd__lanes_total(lanes);
}

PARAMD__REFERENCE_KERNEL
static void squares_block_reference(void *context, size_t begin, size_t end, double *sums)
{
    const float *values = context;
    double lanes[PARAMD__REDUCE_LANES] = {0};
    for (size_t i = begin; i < end; i++)
        lanes[i % PARAMD__REDUCE_LANES] += (double)values[i] * (double)values[i];
    sums[0] += paramd__lanes_total(lanes);
}

double paramd__sum_of_squares(const float *values, size_t count, bool parallel)
{
    double total;
    paramd__block_sums(count, 1, squares_block, (void *)values, parallel, &total);
    return total;
}

double paramd__sum_of_squares_reference(const float *values, size_t count)
{
    double total;
    paramd__block_sums(count, 1, squares_block_reference, (void *)values, false, &total);
    return total;
}
