/*
 * kernel.h - helpers shared by the optimizer kernel files.
 *
 * PARAMD__FAST_KERNEL marks a fused kernel: gcc builds one clone per
 * instruction set (x86-64-v4 with AVX-512, x86-64-v3 with AVX2 and FMA, and
 * the baseline) and picks the best at load time, so one binary runs
 * everywhere and still uses the widest vectors the CPU has.
 *
 * Rounding is explicit.  The build uses -std=c11, which makes gcc round every
 * multiply and add separately (-ffp-contract=off), and the kernels call
 * fmaf() exactly where PyTorch's CPU kernels fuse a multiply-add: torch's
 * `add_(x, alpha=a)` computes fma(x, a, self) and `addcmul_(t1, t2, value=c)`
 * computes fma(c * t1, t2, self).  fmaf is correctly rounded on every CPU (a
 * vfmadd instruction in the v3/v4 clones), so paramd reproduces torch.optim's
 * float32 results bit for bit, and the fast and reference kernels agree bit
 * for bit.  -fno-math-errno lets gcc vectorise sqrtf.
 */
#ifndef PARAMD_SERVER_KERNEL_H
#define PARAMD_SERVER_KERNEL_H

#include "optimizer.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PARAMD_NO_TARGET_CLONES)
#define PARAMD__FAST_KERNEL \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PARAMD__FAST_KERNEL
#endif

/* Reference kernels must stay scalar so they test something different.
 * clang (the fuzz targets' compiler) has no such function attribute; its
 * builds do not compare the kernels. */
#if defined(__clang__)
#define PARAMD__REFERENCE_KERNEL
#else
#define PARAMD__REFERENCE_KERNEL __attribute__((optimize("no-tree-vectorize")))
#endif

#define PARAMD__ALWAYS_INLINE inline __attribute__((always_inline))

/* The step torch 1.13 reads from a float32 state["step"] tensor (Adagrad,
 * Adamax, ASGD, NAdam, RAdam): adding 1 to a float32 stops changing it at
 * 2^24. */
static inline double paramd__torch_float_step(uint64_t step)
{
    return step < (UINT64_C(1) << 24) ? (double)step : 16777216.0;
}

/* torch's lerp(start, end, weight) on CPU, rounded as its scalar kernel:
 * start + weight * (end - start) for |weight| < 0.5, else
 * end - (end - start) * (1 - weight), with (1 - weight) in float32. */
static inline float paramd__lerp(float start, float end, float weight)
{
    return fabsf(weight) < 0.5f ? start + weight * (end - start)
                                : end - (end - start) * (1.0f - weight);
}

/* Schema entries shared by many optimizers, as their torch classes share
 * these keywords. */
#define PARAMD__SPEC_MAXIMIZE(slot)                                                       \
    {"maximize", PARAMD__HYPERPARAMETER_BOOLEAN, slot, {0}, 0, 1, 0,                      \
     "maximize the objective instead of minimizing"}
#define PARAMD__SPEC_WEIGHT_DECAY(slot)                                                   \
    {"weight_decay", PARAMD__HYPERPARAMETER_REAL, slot, {0}, 0, INFINITY, 0,              \
     "L2 penalty added to the gradient"}
/* torch implementation switches (foreach, fused, capturable, differentiable):
 * accepted so torch arguments can be copied as they are, and ignored. */
#define PARAMD__SPEC_NO_EFFECT(name, slot)                                                \
    {name, PARAMD__HYPERPARAMETER_BOOLEAN, slot, {0}, 0, 1, PARAMD__HYPERPARAMETER_NO_EFFECT, \
     "accepted for torch compatibility; no effect"}

#define PARAMD__SCALARS(type, scalars)                                                    \
    ((const type *)(const void *)(scalars)->bytes)

#endif
