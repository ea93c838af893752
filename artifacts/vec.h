/* artifacts/vec.h — how the tensor loops (dtype.c, merge.c) are compiled
 * to give the same bits on every x86-64.
 *
 * NO_CONTRACT: a product then a sum, each rounded, never contracted into
 * a fused multiply-add, whatever the language mode (-std=gnu* turns
 * contraction on in gcc) or the ISA of a clone (AVX2 and AVX-512 have
 * FMA). clang is told by the pragma, for the rest of the including file.
 *
 * CLONES: on x86-64 with gcc the function is also compiled for x86-64-v3
 * (AVX2) and v4 (AVX-512), picked once at load time by what the CPU has:
 * the same operations in the same order on wider vectors, so the same
 * bits (tests compare with reference results). ANNEAL_NO_CLONES turns it
 * off. Include this only from .c files. */
#ifndef ANNEAL_VEC_H
#define ANNEAL_VEC_H

#if defined(__GNUC__) && !defined(__clang__)
#define NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define NO_CONTRACT
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
	defined(__has_attribute) && !defined(ANNEAL_NO_CLONES)
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif

#endif
