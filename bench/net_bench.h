/* net_bench.h - `paramd-bench net`: binary-protocol round trips against an echo. */
#ifndef PARAMD_BENCH_NET_BENCH_H
#define PARAMD_BENCH_NET_BENCH_H

#include <stddef.h>

#define PARAMD__NET_BENCH_MAX_SHARDS 16

typedef struct paramd__net_bench_options {
    const char *address;  /* "HOST:PORT" of a running paramd's --tcp; NULL: start one */
    size_t elements;      /* float32 gradients per PUSHPULL */
    int clients;          /* connections, one thread each */
    int pipeline;         /* requests in flight per connection */
    double seconds;       /* per measurement */
    int server_threads;   /* --threads of a server it starts (0: all cores) */
    int shards;           /* 0: one plain server; S: S shards with a shard map */
} paramd__net_bench_options;

/* Measures ECHO and PUSHPULL round trips; prints a line each and a final
 * JSON object.  Returns 0, 1 on failure, 2 on bad options. */
int paramd__net_bench(const paramd__net_bench_options *options);

#endif
