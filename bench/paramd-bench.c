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
 *        paramd-bench optim --optimizer NAME --n N --threads T [--steps K] [--no-torch]
 *        paramd-bench --http HOST:PORT [--connections N] [--large-elements N]
 */
#define _DEFAULT_SOURCE
#include "http_bench.h"
#include "kernel.h"
#include "optimizer.h"
#include "parallel.h"
#include "tensor.h"

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
 * ------------------------------------------------------------------------- */

typedef struct probe_job {
    paramd__step_arrays arrays;
    int slots;
} probe_job;

PARAMD__FAST_KERNEL
static void probe_range(void *context, size_t begin, size_t end)
{
    const probe_job *job = context;
    float *restrict param = job->arrays.param;
    const float *restrict grad = job->arrays.grad;
    float *restrict s0 = job->arrays.state[0], *restrict s1 = job->arrays.state[1];
    float *restrict s2 = job->arrays.state[2];
    switch (job->slots) {
    case 0:
        for (size_t i = begin; i < end; i++)
            param[i] += grad[i];
        break;
    case 1:
        for (size_t i = begin; i < end; i++) {
            param[i] += grad[i];
            s0[i] += grad[i];
        }
        break;
    case 2:
        for (size_t i = begin; i < end; i++) {
            param[i] += grad[i];
            s0[i] += grad[i];
            s1[i] += grad[i];
        }
        break;
    default:
        for (size_t i = begin; i < end; i++) {
            param[i] += grad[i];
            s0[i] += grad[i];
            s1[i] += grad[i];
            s2[i] += grad[i];
        }
        break;
    }
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
    int bytes_per_param;
} measurement;

static measurement measure(const bench_config *bench, size_t elements, int threads, int steps,
                           bool with_torch)
{
    paramd__optimizer_config config;
    configure(bench, &config);
    paramd__parallel_stop();
    if (threads > 1)
        paramd__parallel_start(threads - 1);

    paramd__step_arrays arrays = {0};
    arrays.param = paramd__float_array_alloc(elements);
    float *grad = paramd__float_array_alloc(elements);
    arrays.grad = grad;
    int slots = 0;
    for (int s = 0; s < config.type->state_slot_count; s++)
        if (config.type->uses_state_slot(&config, s)) {
            arrays.state[s] = paramd__float_array_alloc(elements);
            slots++;
        }
    if (arrays.param == NULL || grad == NULL) {
        fprintf(stderr, "paramd-bench: out of memory for %zu elements\n", elements);
        exit(1);
    }
    for (size_t i = 0; i < elements; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-6f - 5e-4f;

    measurement result = {.torch_mparams = -1};
    result.bytes_per_param = (int)sizeof(float) * (2 + 2 * slots + 1);
    double *times = malloc((size_t)steps * sizeof *times);

    /* Probe and kernel steps alternate, so that drift in the machine (other
     * tenants, frequency changes) affects both alike. */
    double *probe_times = malloc((size_t)steps * sizeof *probe_times);
    probe_job probe = {arrays, slots};
    for (int i = -2; i < steps; i++) {
        double start = now_seconds();
        paramd__parallel_for(elements, 16, PARAMD__PARALLEL_STEP_MINIMUM, probe_range, &probe);
        double middle = now_seconds();
        paramd__optimizer_step(&config, (uint64_t)(i + 3), &arrays, elements);
        double end = now_seconds();
        if (i >= 0) {
            probe_times[i] = middle - start;
            times[i] = end - middle;
        }
    }
    result.probe_mparams = (double)elements / median(probe_times, steps) / 1e6;
    result.paramd_mparams = (double)elements / median(times, steps) / 1e6;
    free(probe_times);

    free(times);
    paramd__float_array_free(arrays.param, elements);
    paramd__float_array_free(grad, elements);
    for (int s = 0; s < PARAMD__MAX_STATE_SLOTS; s++)
        paramd__float_array_free(arrays.state[s], elements);

    if (with_torch) {
        char command[512];
        snprintf(command, sizeof command,
                 "/usr/bin/python3 bench/torch_step.py %s %zu %d %d 2>/dev/null", bench->optimizer,
                 elements, threads, steps);
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
 * [--no-torch]`: one measurement, printed as a line for people and, last, one
 * JSON object for scripts. */
static int optim_command(int argc, char **argv)
{
    const char *name = "AdamW";
    size_t n = 64 << 20, threads = 0;
    int steps = 20;
    bool with_torch = true;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--optimizer") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            parse_list(argv[++i], &n, 1);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            parse_list(argv[++i], &threads, 1);
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-torch") == 0)
            with_torch = false;
        else {
            fprintf(stderr, "Usage: paramd-bench optim [--optimizer NAME] [--n N] [--threads T] "
                            "[--steps K] [--no-torch]\n"
                            "Defaults: AdamW, 64M elements, all cores, 20 steps.\n");
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
    bench_config bench = {type->name, "lr=0.001"};
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
        if (strcmp(configs[c].optimizer, type->name) == 0)
            bench = configs[c];
    if (with_torch && access("/usr/bin/python3", X_OK) != 0)
        with_torch = false;
    measurement m = measure(&bench, n, (int)threads, steps < 1 ? 1 : steps, with_torch);
    printf("%s, %zu elements, %zu threads: paramd %.0f Mparams/s, probe %.0f Mparams/s "
           "(%.0f%%), torch ",
           type->name, n, threads, m.paramd_mparams, m.probe_mparams,
           100.0 * m.paramd_mparams / m.probe_mparams);
    if (m.torch_mparams > 0)
        printf("%.0f Mparams/s (paramd %.1fx)\n", m.torch_mparams,
               m.paramd_mparams / m.torch_mparams);
    else
        printf("n/a\n");
    char torch[64] = "null", ratio[64] = "null";
    if (m.torch_mparams > 0) {
        snprintf(torch, sizeof torch, "%.0f", m.torch_mparams * 1e6);
        snprintf(ratio, sizeof ratio, "%.3f", m.paramd_mparams / m.torch_mparams);
    }
    printf("{\"optimizer\": \"%s\", \"n\": %zu, \"threads\": %zu, \"params_per_s\": %.0f, "
           "\"probe_params_per_s\": %.0f, \"ratio_to_probe\": %.3f, \"torch_params_per_s\": %s, "
           "\"ratio_to_torch\": %s}\n",
           type->name, n, threads, m.paramd_mparams * 1e6, m.probe_mparams * 1e6,
           m.paramd_mparams / m.probe_mparams, torch, ratio);
    paramd__parallel_stop();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "optim") == 0)
        return optim_command(argc, argv);
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
                    measure(&configs[c], sizes[s], (int)thread_counts[t], steps, with_torch);
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
