/* http_bench.h - end-to-end HTTP push measurements for paramd-bench. */
#ifndef PARAMD_BENCH_HTTP_BENCH_H
#define PARAMD_BENCH_HTTP_BENCH_H

#include <stdbool.h>
#include <stddef.h>

/* Measures pushes against the paramd at address ("HOST:PORT").  The large
 * pushes use a tensor of large_elements floats (JSON: a sixteenth of it). */
int paramd__http_bench(const char *address, int connections, size_t large_elements);

#endif
