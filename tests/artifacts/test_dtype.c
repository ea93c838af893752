/* tests/artifacts/test_dtype.c — dtype names and widths; float conversions
 * checked bit for bit: round to nearest even at ties, NaN kept and made
 * quiet, ±Inf, overflow, subnormals, negative zero; every half-float
 * pattern round-trips; bulk loops agree with the scalar functions over
 * unaligned buffers. */
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
