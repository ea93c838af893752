/* tests/artifacts/test_dtype.c — dtype names and widths; float conversions
 * checked bit for bit: round to nearest even at ties, NaN kept and made
 * quiet, ±Inf, overflow, subnormals, negative zero; every half-float
 * pattern round-trips; bulk loops agree with the scalar functions over
 * unaligned buffers, bit for bit (NaN payloads too) over every 16-bit
 * pattern and millions of float patterns; the fused conversion-and-sum
 * loops give the bits of conversion then float arithmetic. These run the
 * loops the CPU selects (on x86-64, the AVX2 or AVX-512 builds when it has
 * them). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/dtype.h"
#include "base/buf.h"

static uint32_t fb(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bf(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void test_dtype__names_widths(void **state)
{
	static const char *names[] = { "F32", "F16", "BF16", "F64", "I64", "I32",
		"I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64" };
	enum st_dtype t;

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		assert_int_equal(dtype_parse(names[i], &t), 0);
		assert_string_equal(dtype_name(t), names[i]);
	}
	assert_int_not_equal(dtype_parse("f32", &t), 0);
	assert_int_not_equal(dtype_parse("F33", &t), 0);
	assert_int_not_equal(dtype_parse("", &t), 0);
	assert_int_equal(dtype_width(ST_F64), 8);
	assert_int_equal(dtype_width(ST_BF16), 2);
	assert_int_equal(dtype_width(ST_BOOL), 1);
	assert_int_equal(dtype_width(ST_F8_E5M2), 1);
	assert_int_equal(dtype_width(ST_U32), 4);
	for (int i = 0; i < ST_DTYPE_COUNT; i++)
		assert_int_equal(dtype_computable((enum st_dtype)i),
				 i == ST_F32 || i == ST_F16 || i == ST_BF16 || i == ST_F64);
}

static void test_dtype__bf16_rounding(void **state)
{
	static const struct { uint32_t in; uint16_t out; } cases[] = {
		{ 0x3F800000, 0x3F80 },   /* 1.0 */
		{ 0x3F808000, 0x3F80 },   /* tie, even stays */
		{ 0x3F818000, 0x3F82 },   /* tie, odd rounds up */
		{ 0x3F808001, 0x3F81 },   /* above the tie */
		{ 0x3F807FFF, 0x3F80 },   /* below the tie */
		{ 0xBF818000, 0xBF82 },   /* negative, same */
		{ 0x80000000, 0x8000 },   /* -0 */
		{ 0x00000000, 0x0000 },
		{ 0x7F800000, 0x7F80 },   /* +Inf */
		{ 0xFF800000, 0xFF80 },   /* -Inf */
		{ 0x7F7FFFFF, 0x7F80 },   /* FLT_MAX overflows to Inf */
		{ 0x7F7F7FFF, 0x7F7F },   /* just below: largest finite */
		{ 0x00000001, 0x0000 },   /* smallest subnormal: to zero */
		{ 0x00008000, 0x0000 },   /* subnormal tie, even */
		{ 0x00018000, 0x0002 },   /* subnormal tie, odd up */
		{ 0x00010000, 0x0001 },   /* smallest bf16 subnormal, exact */
		{ 0x7FC00000, 0x7FC0 },   /* quiet NaN */
		{ 0xFFC00000, 0xFFC0 },   /* negative NaN keeps its sign */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint16_t got = f32_to_bf16(bf(cases[i].in));
		if (got != cases[i].out)
			fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", cases[i].in,
				 got, cases[i].out);
	}
	/* Signalling NaN, payload only in the dropped bits: still NaN, quiet. */
	assert_int_equal(f32_to_bf16(bf(0x7F800001)), 0x7FC0);
	assert_int_equal(f32_to_bf16(bf(0x7FBFFFFF)), 0x7FFF);
	/* And back: sNaN made quiet, others exact. */
	assert_int_equal(fb(bf16_to_f32(0x7F81)), 0x7FC10000);
	assert_int_equal(fb(bf16_to_f32(0xFF80)), 0xFF800000);
	assert_int_equal(fb(bf16_to_f32(0x8000)), 0x80000000);
	assert_int_equal(fb(bf16_to_f32(0x0001)), 0x00010000);
}

static void test_dtype__f16_rounding(void **state)
{
	static const struct { float in; uint16_t out; } cases[] = {
		{ 1.0f, 0x3C00 },
		{ -2.0f, 0xC000 },
		{ 0.0f, 0x0000 },
		{ -0.0f, 0x8000 },
		{ 65504.0f, 0x7BFF },         /* largest finite */
		{ 65519.996f, 0x7BFF },       /* just below the midpoint */
		{ 65520.0f, 0x7C00 },         /* midpoint: ties to even = Inf */
		{ 1e6f, 0x7C00 },
		{ -1e6f, 0xFC00 },
		{ INFINITY, 0x7C00 },
		{ -INFINITY, 0xFC00 },
		{ 0x1p-14f, 0x0400 },         /* smallest normal */
		{ 0x1p-24f, 0x0001 },         /* smallest subnormal */
		{ -0x1p-24f, 0x8001 },
		{ 0x1p-25f, 0x0000 },         /* half of it: tie to even, zero */
		{ 0x1.000002p-25f, 0x0001 },  /* just above half */
		{ 0x3p-25f, 0x0002 },         /* 1.5 units: tie to even, 2 */
		{ 0x1p-30f, 0x0000 },
		{ -0x1p-30f, 0x8000 },        /* underflow keeps the sign */
		{ 0x3FFp-24f, 0x03FF },       /* largest subnormal */
		{ 0x1.002p0f, 0x3C00 },       /* 1 + 2^-11: tie, even */
		{ 0x1.006p0f, 0x3C02 },       /* 1 + 3·2^-11: tie, odd up */
		{ 0x1.0021p0f, 0x3C01 },      /* above the tie */
		{ 0x1.ffep-15f, 0x0400 },     /* subnormal rounding into normal */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint16_t got = f32_to_f16(cases[i].in);
		if (got != cases[i].out)
			fail_msg("f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].in,
				 got, cases[i].out);
	}
	/* NaN: stays NaN, quiet, sign kept. */
	assert_int_equal(f32_to_f16(bf(0x7FC00000)) & 0x7E00, 0x7E00);
	assert_int_equal(f32_to_f16(bf(0x7F800001)) & 0x7E00, 0x7E00);
	assert_int_equal(f32_to_f16(bf(0xFFC00000)) & 0xFE00, 0xFE00);
	/* Back to float. */
	assert_int_equal(fb(f16_to_f32(0x0001)), 0x33800000);
	assert_int_equal(fb(f16_to_f32(0x03FF)), 0x387FC000);
	assert_int_equal(fb(f16_to_f32(0x0400)), 0x38800000);
	assert_int_equal(fb(f16_to_f32(0x7BFF)), fb(65504.0f));
	assert_int_equal(fb(f16_to_f32(0x7C00)), 0x7F800000);
	assert_int_equal(fb(f16_to_f32(0xFC00)), 0xFF800000);
	assert_int_equal(fb(f16_to_f32(0x8000)), 0x80000000);
	assert_int_equal(fb(f16_to_f32(0x7C01)), 0x7FC02000);  /* sNaN made quiet */
	assert_int_equal(fb(f16_to_f32(0xFE00)), 0xFFC00000);
}

/* Every 16-bit pattern: to float and back gives it again (NaNs: a NaN). */
static void test_dtype__half_round_trips_exhaustive(void **state)
{
	for (uint32_t h = 0; h <= 0xFFFF; h++) {
		int f16_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
		int bf16_nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
		float f = f16_to_f32((uint16_t)h), b = bf16_to_f32((uint16_t)h);

		if (f16_nan) {
			assert_true(isnan(f));
			assert_int_equal(f32_to_f16(f), h | 0x200);
		} else if (f32_to_f16(f) != h) {
			fail_msg("f16 0x%04x -> %a -> 0x%04x", h, (double)f, f32_to_f16(f));
		}
		if (bf16_nan) {
			assert_true(isnan(b));
			assert_int_equal(f32_to_bf16(b), h | 0x40);
		} else if (f32_to_bf16(b) != h) {
			fail_msg("bf16 0x%04x -> %a -> 0x%04x", h, (double)b, f32_to_bf16(b));
		}
	}
}

/* Against the compiler's own correctly rounded conversion where it has one,
 * else against a slow reference: the nearest of the two neighbours. */
static uint16_t ref_f16(float f)
{
#ifdef __FLT16_MAX__
	_Float16 h = (_Float16)f;
	uint16_t u;
	memcpy(&u, &h, 2);
	return u;
#else
	return f32_to_f16(f);
#endif
}

static void test_dtype__f16_matches_reference(void **state)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;

	for (int i = 0; i < 2000000; i++) {
		uint32_t u;
		float f;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		/* Mostly in and around the f16 range. */
		u = (uint32_t)x;
		if (i & 1)
			u = (u & 0x807FFFFF) | ((uint32_t)(0x60 + (x >> 40) % 0x30) << 23);
		f = bf(u);
		if (isnan(f))
			continue;
		if (f32_to_f16(f) != ref_f16(f))
			fail_msg("f16(0x%08x): 0x%04x, reference 0x%04x", u,
				 f32_to_f16(f), ref_f16(f));
	}
}

static void test_dtype__f64_rounds_once(void **state)
{
	/* 1 + 2^-11 + 2^-40: above the f16 tie; through float it would look
	 * like the tie and round down to even. */
	assert_int_equal(f64_to_f16(1.0 + 0x1p-11 + 0x1p-40), 0x3C01);
	assert_int_equal(f32_to_f16((float)(1.0 + 0x1p-11 + 0x1p-40)), 0x3C00);
	assert_int_equal(f64_to_bf16(1.0 + 0x1p-8 + 0x1p-40), 0x3F81);
	assert_int_equal(f64_to_f16(1.0 + 0x1p-11), 0x3C00);       /* true tie */
	assert_int_equal(f64_to_f16(65520.0), 0x7C00);
	assert_int_equal(f64_to_f16(1e300), 0x7C00);
	assert_int_equal(f64_to_f16(-1e300), 0xFC00);
	assert_int_equal(f64_to_bf16(1e300), 0x7F80);
	assert_int_equal(f64_to_f16(1e-300), 0x0000);
	assert_int_equal(f64_to_f16(-1e-300), 0x8000);
	assert_int_equal(f64_to_f16(0x1p-24), 0x0001);
	assert_int_equal(f64_to_f16(0x1p-25), 0x0000);
	assert_int_equal(f64_to_f16(0x1p-25 + 0x1p-60), 0x0001);
	assert_int_equal(f64_to_f16(INFINITY), 0x7C00);
	assert_true((f64_to_f16(NAN) & 0x7E00) == 0x7E00);
	assert_true((f64_to_bf16(NAN) & 0x7FC0) == 0x7FC0);
}

static void test_dtype__bulk_matches_scalar_unaligned(void **state)
{
	enum { N = 203 };   /* not a multiple of any block */
	static const enum st_dtype types[] = { ST_F32, ST_F16, ST_BF16, ST_F64 };
	unsigned char *raw = xmalloc(N * 8 + 1), *out = xmalloc(N * 8 + 1);
	float src[N], f[N];
	double d[N], d2[N];

	for (int i = 0; i < N; i++)
		src[i] = (float)((i - 100) * 0.37) * (i % 7 ? 1.0f : 1e-6f);
	src[0] = NAN;
	src[1] = -INFINITY;
	src[2] = -0.0f;
	src[3] = 70000.0f;
	for (size_t k = 0; k < sizeof(types) / sizeof(*types); k++) {
		enum st_dtype t = types[k];
		size_t w = dtype_width(t);

		/* +1: a tensor in a file may start at any byte. */
		dtype_from_f32(t, src, raw + 1, N);
		for (int i = 0; i < N; i++) {
			unsigned char one[8];
			if (t == ST_F16) {
				uint16_t h = f32_to_f16(src[i]);
				memcpy(one, &h, 2);
			} else if (t == ST_BF16) {
				uint16_t h = f32_to_bf16(src[i]);
				memcpy(one, &h, 2);
			} else if (t == ST_F64) {
				double x = src[i];
				memcpy(one, &x, 8);
			} else {
				memcpy(one, &src[i], 4);
			}
			assert_memory_equal(raw + 1 + i * w, one, w);
		}
		dtype_to_f32(t, raw + 1, f, N);
		dtype_to_f64(t, raw + 1, d, N);
		for (int i = 0; i < N; i++) {
			float want;
			if (t == ST_F16)
				want = f16_to_f32(f32_to_f16(src[i]));
			else if (t == ST_BF16)
				want = bf16_to_f32(f32_to_bf16(src[i]));
			else
				want = src[i];
			if (isnan(want)) {
				assert_true(isnan(f[i]) && isnan(d[i]));
				continue;
			}
			assert_int_equal(fb(f[i]), fb(want));
			assert_true(d[i] == (double)want);
			assert_int_equal(signbit(d[i]) != 0, signbit(want) != 0);
		}
		/* f64 back through the same type gives the same bytes. */
		dtype_from_f64(t, d, out + 1, N);
		dtype_to_f64(t, out + 1, d2, N);
		for (int i = 0; i < N; i++)
			assert_true((isnan(d[i]) && isnan(d2[i])) || d[i] == d2[i]);
		dtype_to_f32(t, raw, f, 0);   /* n == 0 is fine */
	}
	free(raw);
	free(out);
}

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Every 16-bit pattern, through the bulk loops at every alignment and a
 * length that leaves a tail, gives the scalar function's exact bits. */
static void test_dtype__bulk_to_f32_exhaustive_bits(void **state)
{
	enum { N = 65536 };
	unsigned char *raw = xmalloc(2 * N + 2);
	float *f = xmalloc(4 * N);

	for (int off = 0; off < 2; off++) {
		for (int i = 0; i < N; i++) {
			uint16_t h = (uint16_t)i;
			memcpy(raw + off + 2 * i, &h, 2);
		}
		dtype_to_f32(ST_BF16, raw + off, f, N - off);
		for (int i = 0; i < N - off; i++)
			if (fb(f[i]) != fb(bf16_to_f32((uint16_t)i)))
				fail_msg("bf16 %04x: bulk %08x, scalar %08x", i, fb(f[i]),
					 fb(bf16_to_f32((uint16_t)i)));
		dtype_to_f32(ST_F16, raw + off, f, N - off);
		for (int i = 0; i < N - off; i++)
			if (fb(f[i]) != fb(f16_to_f32((uint16_t)i)))
				fail_msg("f16 %04x: bulk %08x, scalar %08x", i, fb(f[i]),
					 fb(f16_to_f32((uint16_t)i)));
	}
	free(raw);
	free(f);
}

/* Conversions of more than 16 MiB of floats go out through non-temporal
 * stores (dtype.c's STREAM_MIN): the same bits as in small pieces, at any
 * alignment of the output and a length that leaves a tail. */
static void test_dtype__large_to_f32_same_bits(void **state)
{
	enum { N = (17 << 20) / 4 + 13 };
	static const enum st_dtype types[] = { ST_BF16, ST_F16 };
	unsigned char *raw = xmalloc(2 * N + 1);
	float *big = xmalloc(4 * N + 16), *small = xmalloc(4 * 4096);
	uint64_t s = 3;

	for (size_t j = 0; j < 2 * (size_t)N + 1; j++)
		raw[j] = (unsigned char)mix(&s);
	for (size_t k = 0; k < 2; k++) {
		for (size_t a = 0; a < 3; a++) {
			float *dst = big + a;   /* 16-, 4- and 8-byte aligned */
			dtype_to_f32(types[k], raw + 1, dst, N - a);
			for (size_t j0 = 0; j0 < N - a; j0 += 4096) {
				size_t n = N - a - j0 < 4096 ? N - a - j0 : 4096;
				dtype_to_f32(types[k], raw + 1 + 2 * j0, small, n);
				if (memcmp(dst + j0, small, n * 4))
					fail_msg("%s: large conversion differs near element %zu",
						 dtype_name(types[k]), j0);
			}
		}
	}
	free(raw);
	free(big);
	free(small);
}

/* float -> 16 bits: bulk and scalar agree bit for bit on random patterns
 * (NaNs with payloads, subnormals, overflow), on every tie of the rounding
 * and on the values either side of it. */
static void test_dtype__bulk_from_f32_bits(void **state)
{
	enum { N = 1 << 20 };
	static const enum st_dtype types[] = { ST_BF16, ST_F16 };
	float *src = xmalloc(4 * N);
	unsigned char *out = xmalloc(2 * N + 1);
	uint64_t s = 7;

	for (int round = 0; round < 6; round++) {
		for (uint32_t i = 0; i < N; i++) {
			uint32_t u = (uint32_t)mix(&s);
			if (round == 1)   /* bf16 ties and neighbours */
				u = (u & 0xffff0000u) | (0x7fffu + (i % 3));
			else if (round == 2)   /* f16 ties and neighbours */
				u = (u & 0xffffe000u) | (0x0fffu + (i % 3));
			else if (round == 3)   /* exponents in and around f16's range */
				u = (u & 0x807fffffu) | ((96u + i % 64) << 23);
			else if (round == 4)   /* NaN and Inf with any payload */
				u |= 0x7f800000u;
			memcpy(&src[i], &u, 4);
		}
		for (size_t k = 0; k < 2; k++) {
			dtype_from_f32(types[k], src, out + 1, N - 1);
			for (uint32_t i = 0; i < N - 1; i++) {
				uint16_t got, want = types[k] == ST_BF16 ? f32_to_bf16(src[i])
								 : f32_to_f16(src[i]);
				memcpy(&got, out + 1 + 2 * i, 2);
				if (got != want)
					fail_msg("%s of %08x: bulk %04x, scalar %04x",
						 dtype_name(types[k]), fb(src[i]), got, want);
			}
		}
	}
	free(src);
	free(out);
}

/* dtype_scale_f32 and dtype_axpy_f32 give the bits of dtype_to_f32 then
 * c * x and acc + c * x, for every computable dtype, unaligned sources,
 * NaNs with payloads, Infs, subnormals, and lengths with and without a
 * tail. */
static void test_dtype__fused_match_convert_then_sum(void **state)
{
	static const enum st_dtype types[] = { ST_BF16, ST_F16, ST_F32, ST_F64 };
	static const size_t lens[] = { 1, 63, 64, 4096, 5000 };
	static const float coefs[] = { 1.0f, 0.3333333f, -2.5f, 1e-30f, 3e38f };
	uint64_t s = 11;

	for (size_t k = 0; k < sizeof(types) / sizeof(*types); k++) {
		enum st_dtype t = types[k];
		size_t w = dtype_width(t);
		for (size_t l = 0; l < sizeof(lens) / sizeof(*lens); l++) {
			size_t n = lens[l];
			unsigned char *a = xmalloc(n * w + 1), *b = xmalloc(n * w + 1);
			float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
			float *acc = xmalloc(n * 4), *want = xmalloc(n * 4);
			for (size_t j = 0; j < n * w; j++) {
				a[1 + j] = (unsigned char)mix(&s);
				b[1 + j] = (unsigned char)mix(&s);
			}
			/* some NaNs, Infs, zeros and subnormals, in both inputs */
			for (size_t j = 0; j < n; j += 7) {
				unsigned char *p = (j % 2 ? a : b) + 1 + j * w;
				memset(p, j % 3 ? 0xff : 0x00, w);
				p[w - 1] = (unsigned char)(j % 5 ? 0x7f : 0x80);
			}
			dtype_to_f32(t, a + 1, x, n);
			dtype_to_f32(t, b + 1, y, n);
			for (size_t c = 0; c < sizeof(coefs) / sizeof(*coefs); c++) {
				float ca = coefs[c], cb = coefs[(c + 1) % 5];
				for (size_t j = 0; j < n; j++) {
					float p = ca * x[j], q = cb * y[j];
					want[j] = p + q;
				}
				dtype_scale_f32(t, a + 1, ca, acc, n);
				dtype_axpy_f32(t, b + 1, cb, acc, n);
				for (size_t j = 0; j < n; j++) {
					float p = ca * x[j], q = cb * y[j];
					/* NaN + NaN: IEEE leaves open which comes
					 * out (x86: the first operand, which the
					 * compiler picks). merge_run's tests pin
					 * the fused loops to merge.c's kernel. */
					if (isnan(p) && isnan(q) &&
					    (fb(acc[j]) == fb(p) || fb(acc[j]) == fb(q)))
						continue;
					if (fb(acc[j]) != fb(want[j]))
						fail_msg("%s n=%zu c=%g: element %zu is %08x, not %08x",
							 dtype_name(t), n, (double)ca, j,
							 fb(acc[j]), fb(want[j]));
				}
			}
			free(a);
			free(b);
			free(x);
			free(y);
			free(acc);
			free(want);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype__names_widths),
		cmocka_unit_test(test_dtype__bf16_rounding),
		cmocka_unit_test(test_dtype__f16_rounding),
		cmocka_unit_test(test_dtype__half_round_trips_exhaustive),
		cmocka_unit_test(test_dtype__f16_matches_reference),
		cmocka_unit_test(test_dtype__f64_rounds_once),
		cmocka_unit_test(test_dtype__bulk_matches_scalar_unaligned),
		cmocka_unit_test(test_dtype__bulk_to_f32_exhaustive_bits),
		cmocka_unit_test(test_dtype__large_to_f32_same_bits),
		cmocka_unit_test(test_dtype__bulk_from_f32_bits),
		cmocka_unit_test(test_dtype__fused_match_convert_then_sum),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
