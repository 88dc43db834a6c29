/*
 * grad_noise.h - annealed Gaussian gradient noise (issue 4, item 6;
 * Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very
 * Deep Networks"): g += N(0, sigma_t^2) with sigma_t^2 = eta / (1 + t)^gamma,
 * where t is the model's step (optimizer steps before this push, from 0).
 *
 * The noise is a pure function of (seed, tensor, draw, element): each tensor
 * counts the pushes that drew noise for it (its `draw` number, guarded by
 * the tensor's lock), and elements 2j and 2j + 1 of draw d of tensor p take
 * the two normal deviates that Box-Muller makes of two uniforms from a
 * SplitMix64 hash of (seed, p, d, j).  Results therefore never depend on the thread count
 * or on other tensors, and the same seed and push sequence reproduce them.
 * The deviate is computed in double; the noise added is
 * (float)(sigma_t * z), one float32 addition per element.
 */
#ifndef PARAMD_SERVER_GRAD_NOISE_H
#define PARAMD_SERVER_GRAD_NOISE_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMD__GRAD_NOISE_DEFAULT_GAMMA 0.55

typedef struct paramd__grad_noise_config {
    bool enabled;
    double eta;    /* > 0: the variance at t = 0 */
    double gamma;  /* >= 0: the annealing exponent (the paper's 0.55 by default) */
    uint64_t seed; /* 0 by default */
} paramd__grad_noise_config;

/* Range checks; errors name the field ("grad_noise.eta: ..."). */
int paramd__grad_noise_config_validate(const paramd__grad_noise_config *config,
                                       paramd__error *error);

/* sigma_t = sqrt(eta / (1 + t)^gamma). */
double paramd__grad_noise_stddev(const paramd__grad_noise_config *config, uint64_t t);

/* The stream of one draw of one tensor. */
uint64_t paramd__grad_noise_stream(uint64_t seed, uint64_t tensor_position, uint64_t draw);

/* The standard normal deviate of element `index` of a stream. */
double paramd__grad_noise_normal(uint64_t stream, uint64_t index);

/* out[i] = in[i] + (float)(stddev * normal(stream, i)) (in and out may be
 * the same array); large tensors are split across the thread pool. */
void paramd__grad_noise_add(const float *in, float *out, size_t count, double stddev,
                            uint64_t stream);

#endif
