/* tests/artifacts/test_merge_stream.c — merge_tensor_stream (ties,
 * dare_linear and dare_ties over tensors as stored: F32, F16, BF16)
 * against the kernel it must equal bit for bit: merge_tensor_f32 on the
 * inputs converted with dtype_to_f32, its result rounded back with
 * dtype_from_f32. Random tensors of every size class (below and above the
 * sampled selection, a step and a partial one), data with many exact ties
 * at the threshold (quantized task vectors, bf16-like ones, all equal, all
 * zero), data built so that the sampled bracket misses above or below or
 * holds too much (the histogram passes), density 0, a few elements, and 1,
 * every consensus, rescale and normalize, weights of both signs and 0, 1
 * to 6 inputs; NaN, Inf and overflowing task vectors refused with the
 * kernel's message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/dtype.h"
#include "artifacts/merge.h"
#include "base/err.h"
#include "base/buf.h"

/* The strided sample merge.c brackets TIES' threshold with (SAMPLE): the
 * elements at multiples of n / 16384 when n is a multiple of it. */
#define SAMPLED 16384

static uint64_t rng = 0x5eed;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static double frand(void)  /* [-1, 1) */
{
	return (double)(next() >> 11) * 0x1p-52 - 1.0;
}

static size_t pick(size_t n)
{
	return (size_t)(next() % n);
}

enum kind {
	K_SMOOTH,      /* continuous task vectors */
	K_QUANT,       /* multiples of 1/64 in [-7/64, 7/64]: many ties */
	K_BF16LIKE,    /* small deltas of small weights, as a fine-tune's */
	K_EQUAL,       /* |tau| the same everywhere */
	K_ZERO,        /* x = base */
	K_MOSTLY_ZERO, /* 90% of tau 0: a threshold of 0 */
	K_MISS_BELOW,  /* sampled |tau| far larger: the bracket is too high */
	K_MISS_ABOVE,  /* sampled |tau| far smaller: too low */
	K_CROWDED,     /* the unsampled |tau| crowd into a narrow range of
			  distinct values: the bracket holds too many */
	NKINDS
};

static const char *const kind_names[NKINDS] = {
	"smooth", "quant", "bf16like", "equal", "zero", "mostly_zero",
	"miss_below", "miss_above", "crowded",
};

enum fault { F_NONE, F_NAN_INPUT, F_INF_BASE, F_NEGINF_INPUT, F_OVERFLOW,
	     NFAULTS };

struct tcase {
	enum merge_method m;
	char params[160];
	enum st_dtype dt;
	size_t n, nin;
	enum kind kind;
	int weights;        /* 0: NULL (all 1); 1: all 1 given; 2: mixed */
	enum fault fault;
};

/* Tensors as stored, for the case. */
struct data {
	unsigned char *base;
	unsigned char *in[8];
	double w[8];
};

static void fill(const struct tcase *c, struct data *d)
{
	const size_t n = c->n, wd = dtype_width(c->dt);
	const size_t stride = n >= SAMPLED ? n / SAMPLED : 1;
	float *b = xmalloc((n + 1) * sizeof(float)), *x = xmalloc((n + 1) * sizeof(float));

	for (size_t j = 0; j < n; j++) {
		switch (c->kind) {
		case K_EQUAL:
		case K_QUANT:
			b[j] = (float)(int)(frand() * 100) / 64;
			break;
		case K_BF16LIKE:
			b[j] = (float)(frand() * 0.04);
			break;
		case K_CROWDED:
			b[j] = 0;
			break;
		default:
			b[j] = (float)frand();
		}
	}
	d->base = xmalloc(n * wd + 1);
	dtype_from_f32(c->dt, b, d->base, n);
	for (size_t i = 0; i < c->nin; i++) {
		for (size_t j = 0; j < n; j++) {
			double t = frand() * 0.1;
			int sampled = j % stride == 0;
			switch (c->kind) {
			case K_SMOOTH: break;
			case K_QUANT: t = (double)(int)(frand() * 8) / 64; break;
			case K_BF16LIKE: t = frand() * 0.002; break;
			case K_EQUAL: t = frand() < 0 ? -0.25 : 0.25; break;
			case K_ZERO: t = 0; break;
			case K_MOSTLY_ZERO: t = frand() < 0.8 ? 0 : t; break;
			case K_MISS_BELOW: t = sampled ? t * 1000 : t; break;
			case K_MISS_ABOVE: t = sampled ? t * 1e-3 : t; break;
			case K_CROWDED:
				/* 0.5 plus up to 20000 float ulps; the sample
				 * spread over [0, 1] */
				t = sampled ? frand() : 0.5 + (double)(j % 20000) * 0x1p-24;
				break;
			default: break;
			}
			x[j] = (float)((double)b[j] + t);
		}
		d->in[i] = xmalloc(n * wd + 1);
		dtype_from_f32(c->dt, x, d->in[i], n);
		d->w[i] = c->weights == 2 ? (i % 3 == 1 ? -0.5 : (i % 3 == 2 ? 0 : 1.25 + (double)i))
			: 1.0;
	}
	if (c->fault != F_NONE && n > 0) {
		size_t j = pick(n), i = c->nin ? pick(c->nin) : 0;
		float v = c->fault == F_NAN_INPUT ? NAN
			: c->fault == F_NEGINF_INPUT ? -INFINITY : INFINITY;
		if (c->fault == F_INF_BASE || c->nin == 0) {
			dtype_from_f32(c->dt, &v, d->base + j * wd, 1);
		} else if (c->fault == F_OVERFLOW) {
			float big = 3e38f, nbig = -3e38f;
			dtype_from_f32(c->dt, &big, d->in[i] + j * wd, 1);
			dtype_from_f32(c->dt, &nbig, d->base + j * wd, 1);
		} else {
			dtype_from_f32(c->dt, &v, d->in[i] + j * wd, 1);
		}
	}
	free(b);
	free(x);
}

static void data_free(const struct tcase *c, struct data *d)
{
	free(d->base);
	for (size_t i = 0; i < c->nin; i++)
		free(d->in[i]);
}

/* What emit receives: in order, at most MERGE_STREAM_STEP a call. */
struct sink {
	enum st_dtype dt;
	unsigned char *out;
	size_t n, got;
	int fail_at;   /* >= 0: the call that returns an error */
	int calls;
};

static int collect(void *ctx, const float *vals, size_t n, struct err *err)
{
	struct sink *s = ctx;

	if (s->calls++ == s->fail_at)
		return err_set(err, ERR_SYSTEM, "emit failed");
	assert_true(n >= 1 && n <= MERGE_STREAM_STEP);
	assert_true(s->got + n <= s->n);
	dtype_from_f32(s->dt, vals, s->out + s->got * dtype_width(s->dt), n);
	s->got += n;
	return 0;
}

static void describe(const struct tcase *c, char *buf, size_t size)
{
	snprintf(buf, size, "%s %s, %s, n=%zu, %zu inputs, %s, weights %d, fault %d",
		 merge_method_name(c->m), c->params, dtype_name(c->dt), c->n, c->nin,
		 kind_names[c->kind], c->weights, (int)c->fault);
}

/* Runs the case both ways and compares. */
static void check_case(const struct tcase *c, struct merge_scratch *sc)
{
	struct merge_spec *spec = merge_spec_new(c->m);
	struct merge_scratch ksc = MERGE_SCRATCH_INIT;
	const size_t n = c->n, wd = dtype_width(c->dt);
	struct data d;
	float *fb = xmalloc((n + 1) * sizeof(float)), *fx[8], *fo = xmalloc((n + 1) * sizeof(float));
	unsigned char *want = xmalloc(n * wd + 1);
	struct sink s = { c->dt, xmalloc(n * wd + 1), n, 0, -1, 0 };
	const double *w;
	struct err e1, e2;
	char what[256], *copy, *save = NULL;
	int rc1, rc2;

	describe(c, what, sizeof(what));
	merge_spec_set_seed(spec, 7);
	copy = xstrdup(c->params);
	for (char *kv = strtok_r(copy, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
		if (merge_spec_set(spec, kv, &e1))
			fail_msg("%s: %s", what, e1.msg);
	free(copy);
	assert_true(merge_stream_covers(spec, c->dt));
	fill(c, &d);
	w = c->weights ? d.w : NULL;

	dtype_to_f32(c->dt, d.base, fb, n);
	for (size_t i = 0; i < c->nin; i++) {
		fx[i] = xmalloc((n + 1) * sizeof(float));
		dtype_to_f32(c->dt, d.in[i], fx[i], n);
	}
	err_clear(&e1);
	rc1 = merge_tensor_f32(spec, "t.w", fb, (const float *const *)fx, w, c->nin, n, fo,
			       &ksc, &e1);
	if (!rc1)
		dtype_from_f32(c->dt, fo, want, n);

	err_clear(&e2);
	rc2 = merge_tensor_stream(spec, "t.w", c->dt, d.base, (const void *const *)d.in, w,
				  c->nin, n, collect, &s, sc, &e2);
	if (rc1 != rc2)
		fail_msg("%s: kernel returned %d (%s), stream %d (%s)", what, rc1, e1.msg,
			 rc2, e2.msg);
	if (rc1) {
		if (strcmp(e1.msg, e2.msg))
			fail_msg("%s: messages differ:\n  kernel: %s\n  stream: %s", what,
				 e1.msg, e2.msg);
	} else {
		if (s.got != n)
			fail_msg("%s: emitted %zu of %zu values", what, s.got, n);
		for (size_t j = 0; j < n; j++)
			if (memcmp(s.out + j * wd, want + j * wd, wd)) {
				float a, b;
				dtype_to_f32(c->dt, s.out + j * wd, &a, 1);
				dtype_to_f32(c->dt, want + j * wd, &b, 1);
				fail_msg("%s: element %zu: stream %.9g, kernel %.9g", what, j,
					 (double)a, (double)b);
			}
	}
	for (size_t i = 0; i < c->nin; i++)
		free(fx[i]);
	data_free(c, &d);
	merge_scratch_free(&ksc);
	merge_spec_free(spec);
	free(fb);
	free(fo);
	free(want);
	free(s.out);
}

/* ---- tests --------------------------------------------------------------- */

static const enum st_dtype dts[] = { ST_BF16, ST_F16, ST_F32 };

/* The bench's shape of problem: large bf16 tensors, 2 models, ties
 * density 0.5 and the other defaults; and its neighbours. */
static void test_merge_stream__ties_defaults_large(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	static const enum kind kinds[] = { K_BF16LIKE, K_SMOOTH, K_QUANT, K_EQUAL,
					   K_MOSTLY_ZERO };
	(void)state;
	for (size_t d = 0; d < 3; d++) {
		for (size_t k = 0; k < sizeof(kinds) / sizeof(*kinds); k++) {
			struct tcase c = { MERGE_TIES, "density=0.5", dts[d], 300007, 2,
					   kinds[k], 0, F_NONE };
			check_case(&c, &sc);
		}
	}
	merge_scratch_free(&sc);
}

/* Ties at the threshold, cut anywhere: every density from a single kept
 * element to all but one, on quantized data, at sizes around a step. */
static void test_merge_stream__ties_at_the_threshold(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	static const size_t sizes[] = { 1, 2, 3, 1023, 1024, 1025, 5000, 131072, 140001 };
	(void)state;
	for (size_t z = 0; z < sizeof(sizes) / sizeof(*sizes); z++) {
		size_t n = sizes[z];
		const double ds[] = { 0, 1.0 / (double)n, 1.5 / (double)n, 0.1, 0.25, 0.5,
				      0.77, 1 - 1.0 / (double)n, 1 - 0.5 / (double)n, 1 };
		for (size_t k = 0; k < sizeof(ds) / sizeof(*ds); k++) {
			if (ds[k] > 1)
				continue;
			struct tcase c = { MERGE_TIES, "", dts[(z + k) % 3], n, 1 + (z + k) % 4,
					   (z + k) % 2 ? K_QUANT : K_EQUAL, (int)(k % 3), F_NONE };
			snprintf(c.params, sizeof(c.params), "density=%.17g%s", ds[k],
				 k % 2 ? " consensus=count" : "");
			check_case(&c, &sc);
		}
	}
	merge_scratch_free(&sc);
}

/* The sampled bracket defeated: misses above and below, a crowded inside
 * (histogram passes, down to single values), on every dtype. */
static void test_merge_stream__bracket_misses(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	static const enum kind kinds[] = { K_MISS_BELOW, K_MISS_ABOVE, K_CROWDED };
	static const char *const params[] = { "density=0.5", "density=0.05",
					       "density=0.95 consensus=count",
					       "density=0.3 rescale=l1" };
	(void)state;
	for (size_t d = 0; d < 3; d++)
		for (size_t k = 0; k < 3; k++)
			for (size_t p = 0; p < 4; p++) {
				struct tcase c = { MERGE_TIES, "", dts[d], SAMPLED * 10, 1 + p % 3,
						   kinds[k], (int)(p % 3), F_NONE };
				snprintf(c.params, sizeof(c.params), "%s", params[p]);
				check_case(&c, &sc);
			}
	merge_scratch_free(&sc);
}

/* Non-finite values: refused with the kernel's message (the first culprit
 * in its order), whatever the density, also under dare_*. */
static void test_merge_stream__nonfinite_refused(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	static const enum merge_method ms[] = { MERGE_TIES, MERGE_DARE_TIES, MERGE_DARE_LINEAR };
	static const char *const params[] = { "density=0.5", "density=0", "density=1",
					       "density=0.2 rescale=l1" };
	static const size_t sizes[] = { 1, 700, 200000 };
	(void)state;
	for (size_t f = F_NAN_INPUT; f < NFAULTS; f++)
		for (size_t m = 0; m < 3; m++)
			for (size_t p = 0; p < 4; p++)
				for (size_t z = 0; z < 3; z++) {
					struct tcase c = { ms[m], "", f == F_OVERFLOW ? ST_F32 : dts[(p + z) % 3],
							   sizes[z], 1 + (m + p) % 3, K_SMOOTH, 0,
							   (enum fault)f };
					snprintf(c.params, sizeof(c.params), "%s", params[p]);
					check_case(&c, &sc);
				}
	merge_scratch_free(&sc);
}

/* Random cases over the whole parameter space. */
static void test_merge_stream__random_cases(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	static const size_t sizes[] = { 1, 5, 512, 1000, 1024, 3000, 4097, 20000,
					131071, 131072, 150001 };
	static const char *const dens[] = { "0", "0.001", "0.1", "0.3", "0.5", "0.5",
					    "0.8", "0.999", "1" };
	static const char *const extra[] = { "", "consensus=count", "rescale=density",
					     "rescale=l1", "normalize=false", "lambda=0.7",
					     "normalize=true lambda=-1.5",
					     "rescale=l1 consensus=count normalize=false" };
	static const enum merge_method ms[] = { MERGE_TIES, MERGE_TIES, MERGE_TIES,
						MERGE_DARE_TIES, MERGE_DARE_LINEAR };
	(void)state;
	for (int r = 0; r < 240; r++) {
		struct tcase c;
		const char *x;
		memset(&c, 0, sizeof(c));
		c.m = ms[pick(5)];
		c.dt = dts[pick(3)];
		c.n = sizes[pick(sizeof(sizes) / sizeof(*sizes))];
		c.nin = 1 + pick(6);
		c.kind = (enum kind)pick(K_MISS_BELOW);
		c.weights = (int)pick(3);
		c.fault = pick(12) == 0 ? (enum fault)(1 + pick(3)) : F_NONE;
		x = extra[pick(sizeof(extra) / sizeof(*extra))];
		if (c.m == MERGE_DARE_LINEAR && strstr(x, "consensus"))
			x = "rescale=none";  /* it has no sign election */
		snprintf(c.params, sizeof(c.params), "density=%s %s",
			 dens[pick(sizeof(dens) / sizeof(*dens))], x);
		check_case(&c, &sc);
	}
	merge_scratch_free(&sc);
}

/* No models: the base, through float. An empty tensor: nothing. */
static void test_merge_stream__edges(void **state)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	(void)state;
	for (size_t d = 0; d < 3; d++) {
		struct tcase c = { MERGE_TIES, "density=0.5", dts[d], 3000, 0, K_SMOOTH, 0,
				   F_NONE };
		check_case(&c, &sc);
		c.n = 0;
		c.nin = 2;
		check_case(&c, &sc);
		c.m = MERGE_DARE_LINEAR;
		c.n = 2048;
		check_case(&c, &sc);
	}
	merge_scratch_free(&sc);
}

/* What the stream path covers; its argument errors are the kernel's; an
 * error from emit stops it and is returned. */
static void test_merge_stream__covers_and_errors(void **state)
{
	struct merge_spec *ties = merge_spec_new(MERGE_TIES);
	struct merge_spec *lin = merge_spec_new(MERGE_LINEAR);
	struct merge_spec *ta = merge_spec_new(MERGE_TASK_ARITHMETIC);
	struct merge_spec *dl = merge_spec_new(MERGE_DARE_LINEAR);
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	unsigned char base[4096 * 2], x[4096 * 2], out[4096 * 2];
	const void *in[] = { x };
	const double bad_w[] = { NAN };
	struct sink s = { ST_BF16, out, 4096, 0, 1, 0 };
	struct err e;
	(void)state;
	assert_true(merge_stream_covers(ties, ST_BF16));
	assert_true(merge_stream_covers(ties, ST_F16));
	assert_true(merge_stream_covers(ties, ST_F32));
	assert_false(merge_stream_covers(ties, ST_F64));
	assert_false(merge_stream_covers(ties, ST_I64));
	assert_true(merge_stream_covers(dl, ST_BF16));
	assert_false(merge_stream_covers(lin, ST_BF16));
	assert_false(merge_stream_covers(ta, ST_BF16));

	for (size_t j = 0; j < sizeof(base); j++) {
		base[j] = (unsigned char)(j * 7);
		x[j] = (unsigned char)(j * 13);
	}
	for (size_t j = 1; j < sizeof(base); j += 2) {
		base[j] = 0x3f;  /* bf16 values in [0.5, 2) */
		x[j] = 0x3f;
	}
	assert_int_equal(merge_tensor_stream(ties, "w", ST_BF16, NULL, in, NULL, 1, 4096,
					     collect, &s, &sc, &e), ERR_INVALID);
	assert_string_equal(e.msg, "tensor 'w': method 'ties' needs a base model");
	assert_int_equal(merge_tensor_stream(ties, "w", ST_BF16, base, in, bad_w, 1, 4096,
					     collect, &s, &sc, &e), ERR_INVALID);
	assert_string_equal(e.msg, "tensor 'w': the weight of input 0 is not finite");
	/* the second emit fails */
	assert_int_equal(merge_tensor_stream(ties, "w", ST_BF16, base, in, NULL, 1, 4096,
					     collect, &s, &sc, &e), ERR_SYSTEM);
	assert_string_equal(e.msg, "emit failed");
	assert_int_equal(s.calls, 2);
	merge_scratch_free(&sc);
	merge_spec_free(ties);
	merge_spec_free(lin);
	merge_spec_free(ta);
	merge_spec_free(dl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_stream__ties_defaults_large),
		cmocka_unit_test(test_merge_stream__ties_at_the_threshold),
		cmocka_unit_test(test_merge_stream__bracket_misses),
		cmocka_unit_test(test_merge_stream__nonfinite_refused),
		cmocka_unit_test(test_merge_stream__random_cases),
		cmocka_unit_test(test_merge_stream__edges),
		cmocka_unit_test(test_merge_stream__covers_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
