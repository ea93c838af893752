/* tests/engine/test_rng.c — the engine's random numbers: xoshiro256**
 * against the reference outputs, seeding and hashing pinned to fixed
 * values (datasets and checkpoints are reproduced from them: a change
 * here must be deliberate), the ranges of the conversions, rng_below's
 * range and uniformity, and rng_normal's moments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/rng.h"

static void test_rng__xoshiro_reference(void **state)
{
	/* xoshiro256** from state {1, 2, 3, 4}: the reference
	 * implementation's first outputs. */
	struct rng r = { { 1, 2, 3, 4 } };

	assert_true(rng_next(&r) == 11520ULL);
	assert_true(rng_next(&r) == 0ULL);
	assert_true(rng_next(&r) == 1509978240ULL);
	assert_true(rng_next(&r) == 1215971899390074240ULL);
}

static void test_rng__seeding_pinned(void **state)
{
	struct rng r, r2;

	rng_seed(&r, 42, 0);
	assert_true(r.s[0] == 0x0441c7e5fce3de09ULL);
	assert_true(r.s[1] == 0xe9d180da14adc392ULL);
	assert_true(r.s[2] == 0xc95fb7292f42db12ULL);
	assert_true(r.s[3] == 0xc0be86fe425df3acULL);
	assert_true(rng_next(&r) == 0xe9d32ad145b05788ULL);
	assert_true(rng_next(&r) == 0x469a007e9f730dbcULL);
	assert_true(rng_next(&r) == 0x20a9a5100d030455ULL);

	rng_seed(&r2, 42, 1);
	assert_true(rng_next(&r2) == 0x432b66067bc82f60ULL);

	assert_true(rng_hash(1, 2, 3) == 0xcead1f2fa8f8a720ULL);
	assert_true(rng_hash(0, 0, 0) == 0x1e35cdb4bf4f6f16ULL);
}

static void test_rng__reproducible_and_streams_differ(void **state)
{
	struct rng a, b, c, d;
	int same_stream = 0, same_seed = 0;

	rng_seed(&a, 7, 3);
	rng_seed(&b, 7, 3);
	rng_seed(&c, 7, 4);
	rng_seed(&d, 8, 3);
	for (int i = 0; i < 1000; i++) {
		uint64_t x = rng_next(&a);

		assert_true(x == rng_next(&b));
		same_stream += x == rng_next(&c);
		same_seed += x == rng_next(&d);
	}
	assert_int_equal(same_stream, 0);
	assert_int_equal(same_seed, 0);

	/* The state is all there is: a copy continues identically. */
	b = a;
	for (int i = 0; i < 10; i++)
		assert_true(rng_normal(&a) == rng_normal(&b));
}

static void test_rng__state_never_zero(void **state)
{
	struct rng r;

	for (uint64_t seed = 0; seed < 64; seed++)
		for (uint64_t stream = 0; stream < 16; stream++) {
			rng_seed(&r, seed, stream);
			assert_true(r.s[0] | r.s[1] | r.s[2] | r.s[3]);
		}
	rng_seed(&r, UINT64_MAX, UINT64_MAX);
	assert_true(r.s[0] | r.s[1] | r.s[2] | r.s[3]);
}

static void test_rng__float_double_ranges(void **state)
{
	struct rng r;
	float fmin = 1.0f, fmax = 0.0f;
	double dsum = 0.0;

	rng_seed(&r, 1, 0);
	for (int i = 0; i < 100000; i++) {
		float f = rng_float(&r);
		double d = rng_double(&r);

		assert_true(f >= 0.0f && f < 1.0f);
		assert_true(d >= 0.0 && d < 1.0);
		/* 24 bits: f * 2^24 is an integer */
		assert_true(ldexpf(f, 24) == floorf(ldexpf(f, 24)));
		assert_true(ldexp(d, 53) == floor(ldexp(d, 53)));
		fmin = f < fmin ? f : fmin;
		fmax = f > fmax ? f : fmax;
		dsum += d;
	}
	assert_true(fmin < 0.001f && fmax > 0.999f);
	assert_true(fabs(dsum / 100000 - 0.5) < 0.01);
}

static void test_rng__below_range(void **state)
{
	static const uint64_t ns[] = {
		1, 2, 3, 7, 10, 1000, (1ULL << 32) + 1, (1ULL << 63) + 1,
		UINT64_MAX,
	};
	struct rng r;
	int high = 0;

	rng_seed(&r, 2, 0);
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
		for (int i = 0; i < 2000; i++) {
			uint64_t x = rng_below(&r, ns[k]);

			assert_true(x < ns[k]);
			if (ns[k] == (1ULL << 63) + 1)
				high += x >= (1ULL << 62);
		}
	assert_true(rng_below(&r, 1) == 0);
	/* n just above 2^63 rejects about half the draws; what is kept
	 * must still spread over the range */
	assert_true(high > 900 && high < 1100);
}

static void test_rng__below_uniform(void **state)
{
	/* Chi-square over 10 buckets, 100000 draws, fixed seed: the 99.9%
	 * critical value with 9 degrees of freedom is 27.88. */
	enum { N = 10, DRAWS = 100000 };
	long count[N] = { 0 };
	double chi2 = 0.0, expect = (double)DRAWS / N;
	struct rng r;

	rng_seed(&r, 3, 0);
	for (int i = 0; i < DRAWS; i++)
		count[rng_below(&r, N)]++;
	for (int k = 0; k < N; k++)
		chi2 += (count[k] - expect) * (count[k] - expect) / expect;
	assert_true(chi2 < 27.88);

	/* n = 3 exercises the rejection threshold's arithmetic */
	memset(count, 0, sizeof(count));
	for (int i = 0; i < 30000; i++)
		count[rng_below(&r, 3)]++;
	for (int k = 0; k < 3; k++)
		assert_true(count[k] > 9500 && count[k] < 10500);
}

static void test_rng__normal_moments(void **state)
{
	enum { N = 200000 };
	struct rng r;
	double s = 0.0, s2 = 0.0;
	int tails = 0;

	rng_seed(&r, 4, 0);
	for (int i = 0; i < N; i++) {
		double x = rng_normal(&r);

		assert_true(isfinite(x));
		s += x;
		s2 += x * x;
		tails += fabs(x) > 1.959964;
	}
	assert_true(fabs(s / N) < 0.01);
	assert_true(fabs(s2 / N - 1.0) < 0.02);
	/* 5% outside +-1.96 */
	assert_true(fabs((double)tails / N - 0.05) < 0.003);
}

static void test_rng__hash_spreads(void **state)
{
	/* Deterministic, sensitive to each argument, about half the bits
	 * flip for a neighbouring input. */
	long flips = 0;

	assert_true(rng_hash(5, 6, 7) == rng_hash(5, 6, 7));
	assert_true(rng_hash(5, 6, 7) != rng_hash(6, 6, 7));
	assert_true(rng_hash(5, 6, 7) != rng_hash(5, 7, 7));
	assert_true(rng_hash(5, 6, 7) != rng_hash(5, 6, 8));
	assert_true(rng_hash(5, 6, 7) != rng_hash(5, 7, 6));
	for (uint64_t i = 0; i < 1000; i++)
		flips += __builtin_popcountll(rng_hash(9, i, 0) ^
					      rng_hash(9, i + 1, 0));
	assert_true(flips > 30000 && flips < 34000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng__xoshiro_reference),
		cmocka_unit_test(test_rng__seeding_pinned),
		cmocka_unit_test(test_rng__reproducible_and_streams_differ),
		cmocka_unit_test(test_rng__state_never_zero),
		cmocka_unit_test(test_rng__float_double_ranges),
		cmocka_unit_test(test_rng__below_range),
		cmocka_unit_test(test_rng__below_uniform),
		cmocka_unit_test(test_rng__normal_moments),
		cmocka_unit_test(test_rng__hash_spreads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
