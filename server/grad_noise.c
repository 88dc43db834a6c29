/* grad_noise.c - see grad_noise.h. */
#include "grad_noise.h"

#include "parallel.h"

#include <math.h>

/* The element count above which the noise is split across the pool: it
 * costs a log, a square root and a cosine per element. */
#define PARAMD__GRAD_NOISE_PARALLEL_MINIMUM (1u << 14)

/* SplitMix64's output function (as the initializers use). */
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

int paramd__grad_noise_config_validate(const paramd__grad_noise_config *config,
                                       paramd__error *error)
{
    if (!config->enabled)
        return PARAMD_OK;
    if (!(config->eta > 0) || !isfinite(config->eta))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_noise.eta: must be > 0 and finite, got %.17g",
                                 config->eta);
    if (!(config->gamma >= 0) || !isfinite(config->gamma))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "grad_noise.gamma: must be >= 0 and finite, got %.17g",
                                 config->gamma);
    return PARAMD_OK;
}

double paramd__grad_noise_stddev(const paramd__grad_noise_config *config, uint64_t t)
{
    return sqrt(config->eta / pow(1.0 + (double)t, config->gamma));
}

uint64_t paramd__grad_noise_stream(uint64_t seed, uint64_t tensor_position, uint64_t draw)
{
    return splitmix64(splitmix64(splitmix64(seed) ^ tensor_position) ^ draw);
}

/* The two deviates of pair `pair` (elements 2 pair and 2 pair + 1): Box-Muller
 * from two uniforms with 53 random bits; u1 in (0, 1] so the log is finite. */
static inline void normal_pair(uint64_t stream, uint64_t pair, double *even, double *odd)
{
    double u1 = (double)((splitmix64(stream ^ (2 * pair)) >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(splitmix64(stream ^ (2 * pair + 1)) >> 11) * 0x1.0p-53;
    double radius = sqrt(-2.0 * log(u1));
    double angle = 6.283185307179586476925 * u2;
    *even = radius * cos(angle);
    *odd = radius * sin(angle);
}

double paramd__grad_noise_normal(uint64_t stream, uint64_t index)
{
    double even, odd;
    normal_pair(stream, index / 2, &even, &odd);
    return index % 2 ? odd : even;
}

typedef struct noise_job {
    const float *in;
    float *out;
    double stddev;
    uint64_t stream;
} noise_job;

static void noise_range(void *context, size_t begin, size_t end)
{
    const noise_job *job = context;
    const double stddev = job->stddev;
    size_t i = begin;
    if (i % 2 && i < end) { /* a range starting at an odd element */
        job->out[i] = job->in[i] + (float)(stddev * paramd__grad_noise_normal(job->stream, i));
        i++;
    }
    for (; i + 1 < end; i += 2) {
        double even, odd;
        normal_pair(job->stream, i / 2, &even, &odd);
        job->out[i] = job->in[i] + (float)(stddev * even);
        job->out[i + 1] = job->in[i + 1] + (float)(stddev * odd);
    }
    if (i < end)
        job->out[i] = job->in[i] + (float)(stddev * paramd__grad_noise_normal(job->stream, i));
}

void paramd__grad_noise_add(const float *in, float *out, size_t count, double stddev,
                            uint64_t stream)
{
    noise_job job = {in, out, stddev, stream};
    paramd__parallel_for(count, 16, PARAMD__GRAD_NOISE_PARALLEL_MINIMUM, noise_range, &job);
}
