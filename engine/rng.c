/* engine/rng.c — xoshiro256** (Blackman & Vigna) seeded through
 * splitmix64, and the draws the engine makes from it.
 *
 * Everything here is integer arithmetic except the conversions to float
 * and rng_normal's log/cos, so a stream gives the same numbers on every
 * machine. The generator's whole state is struct rng: no hidden caches
 * (Box-Muller's second value is thrown away), so saving the 32 bytes
 * saves the stream. */
#include "engine/rng.h"

#include <math.h>

/* splitmix64's output function: a bijection of 64-bit words. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

static uint64_t splitmix64(uint64_t *x)
{
	*x += GOLDEN;
	return mix64(*x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	/* The stream number goes through a full mix before it meets the
	 * seed, so nearby (seed, stream) pairs start far apart. */
	uint64_t x = seed ^ mix64(stream + 0x632be59bd9b4e019ULL);

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	/* Four consecutive splitmix64 outputs are distinct (mix64 is a
	 * bijection of distinct counters), so at most one is zero and the
	 * state is never all zero; kept as a guard all the same. */
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = GOLDEN;
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

float rng_float(struct rng *r)
{
	return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

double rng_double(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Lemire, "Fast random integer generation in an interval" (2019): the high
 * word of x*n is uniform once the low words below 2^64 mod n are thrown
 * back. */
uint64_t rng_below(struct rng *r, uint64_t n)
{
	unsigned __int128 m;
	uint64_t lo;

	m = (unsigned __int128)rng_next(r) * n;
	lo = (uint64_t)m;
	if (lo < n) {
		uint64_t threshold = -n % n;

		while (lo < threshold) {
			m = (unsigned __int128)rng_next(r) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

double rng_normal(struct rng *r)
{
	/* 1 - u is in (0, 1]: log never sees 0. */
	double u1 = 1.0 - rng_double(r);
	double u2 = rng_double(r);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t rng_hash(uint64_t seed, uint64_t a, uint64_t b)
{
	/* Each round is a bijection of its input for fixed earlier words, so
	 * distinct (a, b) for one seed collide only as 64-bit hashes do. */
	uint64_t h = mix64(seed + GOLDEN);

	h = mix64(h ^ (a + 2 * GOLDEN));
	h = mix64(h ^ (b + 3 * GOLDEN));
	return h;
}
