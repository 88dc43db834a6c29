/*
 * kernel.h - helpers shared by the optimizer kernel files.
 *
 * PARAMD__FAST_KERNEL marks a fused kernel: gcc builds one clone per
 * instruction set (AVX-512, AVX2, baseline) and picks the best at load time,
 * so one binary runs everywhere and still uses the widest vectors the CPU has.
 * The build uses -std=c11, which makes gcc keep every multiply and add
 * separately rounded (-ffp-contract=off), and -fno-math-errno, which lets it
 * vectorise sqrtf.  The same operations in the same order therefore give
 * bit-identical results in the fast and the reference kernels.
 */
#ifndef PARAMD_SERVER_KERNEL_H
#define PARAMD_SERVER_KERNEL_H

#include "optimizer.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PARAMD_NO_TARGET_CLONES)
#define PARAMD__FAST_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PARAMD__FAST_KERNEL
#endif

/* Reference kernels must stay scalar so they test something different. */
#define PARAMD__REFERENCE_KERNEL __attribute__((optimize("no-tree-vectorize")))

#define PARAMD__ALWAYS_INLINE inline __attribute__((always_inline))

#define PARAMD__SCALARS(type, scalars)                                                    \
    ((const type *)(const void *)(scalars)->bytes)

#endif
