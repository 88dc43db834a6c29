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

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PARAMD_NO_TARGET_CLONES)
#define PARAMD__FAST_KERNEL \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PARAMD__FAST_KERNEL
#endif

/* Reference kernels must stay scalar so they test something different. */
#define PARAMD__REFERENCE_KERNEL __attribute__((optimize("no-tree-vectorize")))

#define PARAMD__ALWAYS_INLINE inline __attribute__((always_inline))

/* The step torch 1.13 reads from a float32 state["step"] tensor (Adagrad,
 * Adamax, ASGD, NAdam, RAdam): adding 1 to a float32 stops changing it at
 * 2^24. */
static inline double paramd__torch_float_step(uint64_t step)
{
    return step < (UINT64_C(1) << 24) ? (double)step : 16777216.0;
}

#define PARAMD__SCALARS(type, scalars)                                                    \
    ((const type *)(const void *)(scalars)->bytes)

#endif
