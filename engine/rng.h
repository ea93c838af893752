/* engine/rng.h — the reference engine's random numbers: xoshiro256** seeded
 * through splitmix64, with its whole state (32 bytes) saved in checkpoints,
 * so a resumed step draws exactly what the uninterrupted one would have.
 *
 * Streams: rng_seed(r, seed, stream) gives independent sequences for one
 * seed (weights init, batch sampling, teacher sampling, ...), so adding a
 * draw in one place never shifts the numbers of another. */
#ifndef ANNEAL_ENGINE_RNG_H
#define ANNEAL_ENGINE_RNG_H

#include <stdint.h>

struct rng {
	uint64_t s[4];
};

/* State from (seed, stream) via splitmix64; never all zero. */
void rng_seed(struct rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, 1) with 24 random bits (float) / 53 bits (double). */
float rng_float(struct rng *r);
double rng_double(struct rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire). */
uint64_t rng_below(struct rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value: the state is
 * all there is). */
double rng_normal(struct rng *r);

/* A stateless hash of (seed, a, b) to 64 bits (splitmix64 rounds): for
 * "the i-th problem of dataset D" style draws that need no state. */
uint64_t rng_hash(uint64_t seed, uint64_t a, uint64_t b);

#endif
