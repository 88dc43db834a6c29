/*
 * parallel.h - split a loop over a large tensor across worker threads.
 *
 * A process-wide pool of (cores - 1) threads is started once; the calling
 * thread always takes a share of the work itself.  Only one parallel loop
 * uses the pool at a time: a caller that finds it busy (another request is
 * updating a large tensor) simply runs its loop on its own thread, so
 * concurrent requests never wait for each other here.
 */
#ifndef PARAMD_SERVER_PARALLEL_H
#define PARAMD_SERVER_PARALLEL_H

#include <stddef.h>

/* Processes elements [begin, end) of the loop described by context. */
typedef void (*paramd__range_function)(void *context, size_t begin, size_t end);

/* Starts the pool with thread_count workers besides the caller (0: cores - 1).
 * Returns 0 or a PARAMD_E* code.  Safe to call once at startup; later calls
 * are ignored. */
int paramd__parallel_start(int thread_count);

/* Stops and joins the workers.  Loops run serially afterwards. */
void paramd__parallel_stop(void);

/* Number of threads a parallel loop may use, the caller included. */
int paramd__parallel_width(void);

/* Runs function over [0, count) in chunks whose boundaries are multiples of
 * alignment elements (so vector kernels see aligned starts).  Loops shorter
 * than minimum_parallel_count run serially on the caller.  Returns when every
 * chunk is done. */
void paramd__parallel_for(size_t count, size_t alignment, size_t minimum_parallel_count,
                          paramd__range_function function, void *context);

#endif
