/*
 * paramd-bench - how fast are paramd's optimizer updates?
 *
 * For each optimizer, tensor size and thread count it measures, in one run:
 *   probe   a loop with exactly the optimizer's memory streams (read the
 *           weights, the gradient and each state array; write the weights and
 *           each state array) and almost no arithmetic: the speed the memory
 *           system allows for this access pattern;
 *   paramd  paramd's fused kernel through paramd__optimizer_step, as a push
 *           runs it (threaded above PARAMD__PARALLEL_STEP_MINIMUM elements);
 *   torch   torch.optim.<Optimizer>(foreach=True).step() on one tensor of the
 *           same size with the same thread count (bench/torch_step.py, run
 *           with /usr/bin/python3), when python3-torch is installed.
 * Each figure is the median of --steps timed steps after two warm-up steps.
 * With --http HOST:PORT it measures a running server's push round trips
 * instead (bench/http_bench.c); bench/run-bench.sh does both.
 *
 * Probe and kernel steps alternate so that drift in the machine hits both.
 *
 * Usage: paramd-bench [--elements N[,N...]] [--threads T[,T...]] [--steps K]
 *                     [--optimizers NAME[,NAME...]] [--no-torch]
 *        paramd-bench optim --optimizer NAME --n N --threads T [--steps K] [--rows R]
 *                           [--no-torch]
 *        paramd-bench --http HOST:PORT [--connections N] [--large-elements N]
 *          (a server with tokens: the admin token in $PARAMD_TOKEN)
 *        paramd-bench net [--n N] [--clients C] [--pipeline P] [--seconds S]
 *                         [--tcp HOST:PORT] [--server-threads T] [--shards S]
 *                                                                   (see net_bench.c)
 */
#define _DEFAULT_SOURCE
#include "http_bench.h"
#include "net_bench.h"
#include "kernel.h"
#include "optimizer.h"
#include "parallel.h"
#include "tensor.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The configurations timed; bench/torch_step.py uses the same. */
typedef struct bench_config {
    const char *optimizer;
    const char *hyperparameters; /* "name=value,..." */
} bench_config;

static const bench_config configs[] = {
    {"SGD", "lr=0.01,momentum=0.9,nesterov=1"},
    {"Adam", "lr=0.001"},
    {"AdamW", "lr=0.001,weight_decay=0.01"},
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int count)
{
    qsort(values, (size_t)count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

/* ---------------------------------------------------------------------------
 * The bandwidth probe: the optimizer's streams, one add per stream.
 *
 * An optimizer describes its step as passes over memory (optimizer.h,
 * paramd__optimizer_memory_passes): one for element-wise optimizers (read
 * the weights, the gradient and each state array; write the weights and each
 * state array), two or three for the tensor-wise ones (LAMB: moments and
 * norms, then the weights).  The probe makes the same passes, each reading
 * `reads` arrays and writing back `writes` of them, with one add per array.
 * A pass that writes nothing keeps its loads alive with 16 independent sums
 * (reduce.h's lanes), which gcc vectorises.
 * ------------------------------------------------------------------------- */

#define PROBE_ARRAYS 6

typedef struct probe_job {
    float *arrays[PROBE_ARRAYS];
    paramd__memory_pass pass;
    double sink; /* sums of passes that write nothing, so they are not optimised away */
} probe_job;

/* A pass that only reads (a norm): the arrays summed into PROBE_BLOCK
 * lanes, block by block, so every inner loop is a plain vectorised stream. */
#define PROBE_BLOCK 64

static void probe_read_only(probe_job *job, size_t begin, size_t end, double *sink)
{
    const int reads = job->pass.reads;
    float lanes[PROBE_BLOCK] = {0};
    for (size_t i = begin; i < end; i += PROBE_BLOCK) {
        size_t n = end - i < PROBE_BLOCK ? end - i : PROBE_BLOCK;
        for (int a = 0; a < reads; a++) {
            const float *restrict source = job->arrays[a] + i;
            for (size_t j = 0; j < n; j++)
                lanes[j] += source[j];
        }
    }
    for (int j = 0; j < PROBE_BLOCK; j++)
        *sink += lanes[j];
}

/* Reads arrays [0, reads), writes [0, writes): a[k] += x, x the sum of the
 * read-only ones (or of a[0] when every array read is written). */
static PARAMD__ALWAYS_INLINE void probe_loop(float *const *arrays, int reads, int writes,
                                             size_t begin, size_t end, double *sink)
{
    float *restrict a0 = arrays[0], *restrict a1 = arrays[1], *restrict a2 = arrays[2];
    float *restrict a3 = arrays[3], *restrict a4 = arrays[4], *restrict a5 = arrays[5];
    for (size_t i = begin; i < end; i++) {
        float x = 0;
        if (writes == 0 || writes == reads)
            x = a0[i];
        if (reads > 1 && writes < 2)
            x += a1[i];
        if (reads > 2 && writes < 3)
            x += a2[i];
        if (reads > 3 && writes < 4)
            x += a3[i];
        if (reads > 4 && writes < 5)
            x += a4[i];
        if (reads > 5 && writes < 6)
            x += a5[i];
        if (writes > 0)
            a0[i] += x;
        if (writes > 1)
            a1[i] += x;
        if (writes > 2)
            a2[i] += x;
        if (writes > 3)
            a3[i] += x;
        if (writes > 4)
            a4[i] += x;
    }
    (void)sink;
}

PARAMD__FAST_KERNEL
static void probe_range(void *context, size_t begin, size_t end)
{
    probe_job *job = context;
    double sink = 0;
    int r = job->pass.reads, w = job->pass.writes;
    if (w == 0) {
        probe_read_only(job, begin, end, &sink);
        goto done;
    }
#define PROBE_CASE(reads, writes)                                                              \
    if (r == reads && w == writes) {                                                           \
        probe_loop(job->arrays, reads, writes, begin, end, &sink);                             \
        goto done;                                                                             \
    }
    PROBE_CASE(1, 1) PROBE_CASE(2, 1) PROBE_CASE(3, 1) PROBE_CASE(4, 1) PROBE_CASE(2, 2)
    PROBE_CASE(3, 2) PROBE_CASE(4, 2) PROBE_CASE(4, 3) PROBE_CASE(5, 3) PROBE_CASE(5, 4)
    PROBE_CASE(6, 4) PROBE_CASE(6, 5)
#undef PROBE_CASE
    fprintf(stderr, "paramd-bench: no probe for a pass reading %d and writing %d arrays\n", r, w);
    exit(1);
done:
    job->sink += sink; /* a race between threads is harmless: only kept alive */
}

/* ---------------------------------------------------------------------------
 * Configuration and measurement
 * ------------------------------------------------------------------------- */

static void configure(const bench_config *bench, paramd__optimizer_config *config)
{
    const paramd__optimizer_type *type = paramd__optimizer_find(bench->optimizer);
    if (type == NULL) {
        fprintf(stderr, "paramd-bench: unknown optimizer %s\n", bench->optimizer);
        exit(2);
    }
    paramd__optimizer_config_init(config, type);
    char *list = strdup(bench->hyperparameters), *saved = NULL;
    for (char *item = strtok_r(list, ",", &saved); item; item = strtok_r(NULL, ",", &saved)) {
        char *equals = strchr(item, '=');
        *equals = '\0';
        double value[2] = {atof(equals + 1), 0};
        const paramd__hyperparameter_spec *spec =
            paramd__optimizer_find_hyperparameter(type, item);
        if (spec == NULL || paramd__optimizer_config_set(config, spec, value, item, NULL) != 0) {
            fprintf(stderr, "paramd-bench: bad hyperparameter %s\n", item);
            exit(2);
        }
    }
    free(list);
}

typedef struct measurement {
    double probe_mparams, paramd_mparams, torch_mparams; /* torch < 0: not measured */
    int bytes_per_param;                                 /* all passes' traffic */
    double matmul_gflops;                                /* Muon: sgemm GFLOP/s; else 0 */
} measurement;

/* The shape a benchmark tensor has: flat for element-wise optimizers; a
 * matrix for tensor-wise ones (Adafactor factors it, Muon orthogonalises
 * it), rows x columns as given or as square as the count allows. */
typedef struct bench_shape {
    int dimension_count;
    int64_t shape[2];
} bench_shape;

static bench_shape shape_for(const paramd__optimizer_type *type, size_t elements, size_t rows)
{
    bench_shape s = {0, {0, 0}};
    if (type->tensor_step == NULL && rows == 0)
        return s;
    if (rows == 0) {
        rows = 1;
        while (rows * rows * 4 <= elements && elements % (rows * 2) == 0)
            rows *= 2;
    }
    s.dimension_count = 2;
    s.shape[0] = (int64_t)rows;
    s.shape[1] = (int64_t)(elements / rows);
    return s;
}

/* Floating-point operations of one Muon step's Newton-Schulz iteration. */
static double muon_flops(const paramd__optimizer_config *config, const bench_shape *shape)
{
    if (strcmp(config->type->name, "Muon") != 0 || shape->dimension_count != 2 ||
        paramd__optimizer_config_get(config, "use_muon") == 0)
        return 0;
    double k = (double)(shape->shape[0] < shape->shape[1] ? shape->shape[0] : shape->shape[1]);
    double l = (double)(shape->shape[0] < shape->shape[1] ? shape->shape[1] : shape->shape[0]);
    return paramd__optimizer_config_get(config, "ns_steps") * (4 * k * k * l + 2 * k * k * k);
}

static measurement measure(const bench_config *bench, size_t elements, size_t rows, int threads,
                           int steps, bool with_torch)
{
    paramd__optimizer_config config;
    configure(bench, &config);
    paramd__parallel_stop();
    if (threads > 1)
        paramd__parallel_start(threads - 1);
    openblas_set_num_threads(threads > 0 ? threads : 1);
    bench_shape shape = shape_for(config.type, elements, rows);
    paramd__step_arrays arrays = {.dimension_count = shape.dimension_count,
                                  .shape = shape.shape};
    size_t state_lengths[PARAMD__MAX_STATE_SLOTS] = {0};
    arrays.param = paramd__float_array_alloc(elements);
    float *grad = paramd__float_array_alloc(elements);
    arrays.grad = grad;
    bool out_of_memory = arrays.param == NULL || grad == NULL;
    for (int s = 0; s < config.type->state_slot_count; s++) {
        state_lengths[s] = paramd__optimizer_state_length(&config, s, shape.dimension_count,
                                                          shape.shape, elements);
        if (state_lengths[s] > 0) {
            arrays.state[s] = paramd__float_array_alloc(state_lengths[s]);
            out_of_memory |= arrays.state[s] == NULL;
        }
    }
    if (config.type->init_state)
        config.type->init_state(&config, arrays.state, elements);
    paramd__memory_pass passes[PARAMD__MAX_MEMORY_PASSES];
    int pass_count = paramd__optimizer_memory_passes(&config, shape.dimension_count, shape.shape,
                                                     passes);
    probe_job probe = {.sink = 0};
    /* The probe's passes run over the optimizer's own arrays, named by each
     * pass ('p' weights, 'g' gradient, '0'-'7' state, 'x' and 'y' working
     * arrays of the tensor's size, allocated here), so that both see the
     * same placement in memory: fresh arrays can be 25% faster or slower on
     * a VM, which would make the comparison meaningless. */
    float *working[2] = {NULL, NULL};
    for (int p = 0; p < pass_count; p++)
        for (const char *a = passes[p].arrays; *a; a++)
            if ((*a == 'x' || *a == 'y') && working[*a - 'x'] == NULL) {
                working[*a - 'x'] = paramd__float_array_alloc(elements);
                out_of_memory |= working[*a - 'x'] == NULL;
            }
    if (out_of_memory) {
        fprintf(stderr, "paramd-bench: out of memory for %zu elements\n", elements);
        exit(1);
    }
    for (size_t i = 0; i < elements; i++) {
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;
        arrays.param[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    }
    measurement result = {.torch_mparams = -1};
    for (int p = 0; p < pass_count; p++)
        result.bytes_per_param += (int)sizeof(float) * (passes[p].reads + passes[p].writes);
    double *times = malloc((size_t)steps * sizeof *times);
    /* Probe and kernel steps alternate, so that drift in the machine (other
     * tenants, frequency changes) affects both alike. */
    double *probe_times = malloc((size_t)steps * sizeof *probe_times);
    for (int i = -2; i < steps; i++) {
        double start = now_seconds();
        for (int p = 0; p < pass_count; p++) {
            probe.pass = passes[p];
            for (int a = 0; a < passes[p].reads && a < PROBE_ARRAYS; a++) {
                char code = passes[p].arrays[a];
                probe.arrays[a] = code == 'p'   ? arrays.param
                                  : code == 'g' ? grad
                                  : code == 'x' ? working[0]
                                  : code == 'y' ? working[1]
                                                : arrays.state[code - '0'];
            }
            paramd__parallel_for(elements, 16, PARAMD__PARALLEL_STEP_MINIMUM, probe_range, &probe);
        }
        double middle = now_seconds();
        paramd__optimizer_step(&config, (uint64_t)(i + 3), &arrays, elements);
        double end = now_seconds();
        if (i >= 0) {
            probe_times[i] = middle - start;
            times[i] = end - middle;
        }
    }
    result.probe_mparams = (double)elements / median(probe_times, steps) / 1e6;
    double step_seconds = median(times, steps);
    result.paramd_mparams = (double)elements / step_seconds / 1e6;
    result.matmul_gflops = muon_flops(&config, &shape) / step_seconds / 1e9;
    free(probe_times);
    free(times);
    paramd__float_array_free(arrays.param, elements);
    paramd__float_array_free(grad, elements);
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        paramd__float_array_free(arrays.state[s], state_lengths[s]);
    for (int w = 0; w < 2; w++)
        paramd__float_array_free(working[w], elements);
    if (with_torch) {
        char command[512];
        snprintf(command, sizeof command,
                 "/usr/bin/python3 bench/torch_step.py %s %zu %d %d %lld 2>/dev/null",
                 bench->optimizer, elements, threads, steps,
                 (long long)(shape.dimension_count == 2 ? shape.shape[0] : 0));
        FILE *pipe = popen(command, "r");
        char line[1024] = "";
        if (pipe && fgets(line, sizeof line, pipe)) {
            const char *field = strstr(line, "\"mparams_per_second\": ");
            if (field)
                result.torch_mparams = atof(field + strlen("\"mparams_per_second\": "));
        }
        if (pipe)
            pclose(pipe);
    }
    return result;
}

/* Parses "a,b,c" into values (K/M suffixes: 2^10, 2^20). */
static int parse_list(const char *text, size_t *values, int capacity)
{
    int count = 0;
    char *copy = strdup(text), *saved = NULL;
    for (char *item = strtok_r(copy, ",", &saved); item && count < capacity;
         item = strtok_r(NULL, ",", &saved)) {
        char *end;
        size_t value = strtoull(item, &end, 10);
        if (*end == 'K' || *end == 'k')
            value <<= 10;
        else if (*end == 'M' || *end == 'm')
            value <<= 20;
        values[count++] = value;
    }
    free(copy);
    return count;
}

/* True when the comma-separated list holds name exactly. */
static bool list_contains(const char *list, const char *name)
{
    size_t length = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, name, length) == 0 && (p[length] == ',' || p[length] == '\0'))
            return true;
    return false;
}

/* `paramd-bench optim --optimizer NAME --n N --threads T [--steps K]
 * [--rows R] [--no-torch]`: one measurement, printed as a line for people
 * and, last, one JSON object for scripts.  Tensor-wise optimizers get a
 * matrix of N elements (R rows, or as square as N allows). */
static int optim_command(int argc, char **argv)
{
    const char *name = "AdamW";
    size_t n = 64 << 20, threads = 0, rows = 0;
    int steps = 20;
    bool with_torch = true;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--optimizer") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            parse_list(argv[++i], &n, 1);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            parse_list(argv[++i], &threads, 1);
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            parse_list(argv[++i], &rows, 1);
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-torch") == 0)
            with_torch = false;
        else {
            fprintf(stderr, "Usage: paramd-bench optim [--optimizer NAME] [--n N] [--threads T] "
                            "[--steps K] [--rows R] [--no-torch]\n"
                            "Defaults: AdamW, 64M elements, all cores, 20 steps; LAMB, LARS, "
                            "Adafactor and Muon\nget a matrix of N elements with R rows (default: "
                            "as square as N allows).\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (size_t)(cores > 0 ? cores : 1);
    }
    const paramd__optimizer_type *type = paramd__optimizer_find(name);
    if (type == NULL) {
        fprintf(stderr, "paramd-bench: unknown optimizer \"%s\"\n", name);
        return 2;
    }
    if (rows > 0 && (n % rows != 0)) {
        fprintf(stderr, "paramd-bench: --rows %zu does not divide --n %zu\n", rows, n);
        return 2;
    }
    bench_config bench = {type->name, "lr=0.001"};
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
        if (strcmp(configs[c].optimizer, type->name) == 0)
            bench = configs[c];
    if (with_torch && access("/usr/bin/python3", X_OK) != 0)
        with_torch = false;
    measurement m = measure(&bench, n, rows, (int)threads, steps < 1 ? 1 : steps, with_torch);
    bench_shape shape = shape_for(type, n, rows);
    char shape_text[64] = "flat";
    if (shape.dimension_count == 2)
        snprintf(shape_text, sizeof shape_text, "%lld x %lld", (long long)shape.shape[0],
                 (long long)shape.shape[1]);
    printf("%s, %zu elements (%s), %zu threads: paramd %.0f Mparams/s, probe %.0f Mparams/s "
           "(%.0f%%), ",
           type->name, n, shape_text, threads, m.paramd_mparams, m.probe_mparams,
           100.0 * m.paramd_mparams / m.probe_mparams);
    if (m.matmul_gflops > 0)
        printf("Newton-Schulz %.1f GFLOP/s, ", m.matmul_gflops);
    printf("torch ");
    if (m.torch_mparams > 0)
        printf("%.0f Mparams/s (paramd %.1fx)\n", m.torch_mparams,
               m.paramd_mparams / m.torch_mparams);
    else
        printf("n/a\n");
    char torch[64] = "null", ratio[64] = "null", extra[128] = "";
    if (m.torch_mparams > 0) {
        snprintf(torch, sizeof torch, "%.0f", m.torch_mparams * 1e6);
        snprintf(ratio, sizeof ratio, "%.3f", m.paramd_mparams / m.torch_mparams);
    }
    if (shape.dimension_count == 2)
        snprintf(extra, sizeof extra, ", \"shape\": [%lld, %lld]", (long long)shape.shape[0],
                 (long long)shape.shape[1]);
    if (m.matmul_gflops > 0)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra),
                 ", \"matmul_gflops_per_s\": %.2f", m.matmul_gflops);
    printf("{\"optimizer\": \"%s\", \"n\": %zu, \"threads\": %zu, \"params_per_s\": %.0f, "
           "\"probe_params_per_s\": %.0f, \"ratio_to_probe\": %.3f, \"torch_params_per_s\": %s, "
           "\"ratio_to_torch\": %s%s}\n",
           type->name, n, threads, m.paramd_mparams * 1e6, m.probe_mparams * 1e6,
           m.paramd_mparams / m.probe_mparams, torch, ratio, extra);
    paramd__parallel_stop();
    return 0;
}

/* `paramd-bench net ...`: see net_bench.c. */
static int net_command(int argc, char **argv)
{
    paramd__net_bench_options options = {
        .address = NULL, .elements = 1024, .clients = 1, .pipeline = 1, .seconds = 3.0,
        .server_threads = 0};
    for (int i = 2; i < argc; i++) {
        size_t value = 0;
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            parse_list(argv[++i], &options.elements, 1);
        } else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc) {
            parse_list(argv[++i], &value, 1);
            options.clients = value > 0 && value <= 256 ? (int)value : 1;
        } else if (strcmp(argv[i], "--pipeline") == 0 && i + 1 < argc) {
            parse_list(argv[++i], &value, 1);
            options.pipeline = value > 0 && value <= 4096 ? (int)value : 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            options.seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--tcp") == 0 && i + 1 < argc) {
            options.address = argv[++i];
        } else if (strcmp(argv[i], "--server-threads") == 0 && i + 1 < argc) {
            parse_list(argv[++i], &value, 1);
            options.server_threads = (int)value;
        } else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
            parse_list(argv[++i], &value, 1);
            options.shards = value >= 1 && value <= PARAMD__NET_BENCH_MAX_SHARDS ? (int)value : -1;
        } else {
            fprintf(stderr,
                    "Usage: paramd-bench net [--n N] [--clients C] [--pipeline P] [--seconds S]\n"
                    "                        [--tcp HOST:PORT] [--server-threads T] [--shards S]\n"
                    "Measures ECHO and PUSHPULL (AdamW, N float32 per request) round trips over "
                    "the binary\nprotocol, C connections with P requests in flight each, S seconds "
                    "each (default: N 1024,\nC 1, P 1, S 3).  Without --tcp it starts build/paramd "
                    "on free ports.  Sizes take K and M.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (options.elements == 0 || options.seconds <= 0) {
        fprintf(stderr, "paramd-bench net: --n and --seconds must be positive\n");
        return 2;
    }
    return paramd__net_bench(&options);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "optim") == 0)
        return optim_command(argc, argv);
    if (argc > 1 && strcmp(argv[1], "net") == 0)
        return net_command(argc, argv);
    size_t sizes[8] = {1 << 20, 16 << 20, 64 << 20};
    int size_count = 3;
    size_t thread_counts[8] = {1, 0};
    int thread_count_count = 2;
    int steps = 10;
    bool with_torch = true;
    const char *only = NULL;
    const char *http_address = NULL;
    size_t connections = 2, large_elements = 16 << 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--elements") == 0 && i + 1 < argc)
            size_count = parse_list(argv[++i], sizes, 8);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            thread_count_count = parse_list(argv[++i], thread_counts, 8);
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--optimizers") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--no-torch") == 0)
            with_torch = false;
        else if (strcmp(argv[i], "--http") == 0 && i + 1 < argc)
            http_address = argv[++i];
        else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc)
            parse_list(argv[++i], &connections, 1);
        else if (strcmp(argv[i], "--large-elements") == 0 && i + 1 < argc)
            parse_list(argv[++i], &large_elements, 1);
        else {
            fprintf(stderr,
                    "Usage: paramd-bench [--elements N[,N...]] [--threads T[,T...]] [--steps K]\n"
                    "                    [--optimizers NAME[,NAME...]] [--no-torch]\n"
                    "       paramd-bench --http HOST:PORT [--connections N] [--large-elements N]\n"
                    "Sizes take K and M suffixes (2^10, 2^20); thread count 0 means all cores.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (steps < 1)
        steps = 1;
    if (http_address)
        return paramd__http_bench(http_address, connections > 16 ? 16 : (int)connections,
                                  large_elements);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < thread_count_count; i++)
        if (thread_counts[i] == 0)
            thread_counts[i] = (size_t)(cores > 0 ? cores : 1);
    if (with_torch && access("/usr/bin/python3", X_OK) != 0)
        with_torch = false;

    printf("paramd-bench: %ld cores, median of %d steps; Mparams/s (GB/s of the optimizer's "
           "memory traffic)\n",
           cores, steps);
    printf("%-6s %11s %3s %20s %20s %6s %20s %8s\n", "optim", "elements", "thr", "probe",
           "paramd", "%probe", "torch foreach", "vs torch");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        if (only && !list_contains(only, configs[c].optimizer))
            continue;
        for (int s = 0; s < size_count; s++)
            for (int t = 0; t < thread_count_count; t++) {
                measurement m =
                    measure(&configs[c], sizes[s], 0, (int)thread_counts[t], steps, with_torch);
                char probe[32], paramd[32], torch[32] = "n/a", ratio[16] = "n/a";
                snprintf(probe, sizeof probe, "%7.0f (%5.1f)", m.probe_mparams,
                         m.probe_mparams * m.bytes_per_param / 1e3);
                snprintf(paramd, sizeof paramd, "%7.0f (%5.1f)", m.paramd_mparams,
                         m.paramd_mparams * m.bytes_per_param / 1e3);
                if (m.torch_mparams > 0) {
                    snprintf(torch, sizeof torch, "%7.0f (%5.1f)", m.torch_mparams,
                             m.torch_mparams * m.bytes_per_param / 1e3);
                    snprintf(ratio, sizeof ratio, "%.1fx", m.paramd_mparams / m.torch_mparams);
                }
                printf("%-6s %11zu %3zu %20s %20s %5.0f%% %20s %8s\n", configs[c].optimizer,
                       sizes[s], thread_counts[t], probe, paramd,
                       100.0 * m.paramd_mparams / m.probe_mparams, torch, ratio);
                fflush(stdout);
            }
    }
    paramd__parallel_stop();
    return 0;
}
