/* tests/artifacts/test_merge.c — merge methods against hand-derived values,
 * brute-force references and the properties docs/merging.md states. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/merge.h"
#include "base/buf.h"
#include "base/err.h"

/* ---- helpers ---------------------------------------------------------- */

static struct merge_spec *mkspec(enum merge_method m, const char *kvs)
{
	struct merge_spec *s = merge_spec_new(m);
	struct err e;
	char *copy = xstrdup(kvs ? kvs : ""), *save = NULL;
	for (char *kv = strtok_r(copy, " ", &save); kv;
	     kv = strtok_r(NULL, " ", &save)) {
		if (merge_spec_set(s, kv, &e) != 0)
			fail_msg("merge_spec_set(%s): %s", kv, e.msg);
	}
	free(copy);
	return s;
}

/* Runs a float merge that must succeed. */
static void run_f32(const struct merge_spec *s, const char *name,
		    const float *base, const float *const *in,
		    const double *w, size_t nin, size_t n, float *out)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	err_clear(&e);
	if (merge_tensor_f32(s, name, base, in, w, nin, n, out, &sc, &e) != 0)
		fail_msg("merge_tensor_f32: %s", e.msg);
	merge_scratch_free(&sc);
}

/* Runs a float merge that must fail with ERR_INVALID and message msg. */
static void fail_f32(const struct merge_spec *s, const char *name,
		     const float *base, const float *const *in,
		     const double *w, size_t nin, size_t n, const char *msg)
{
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	float *out = calloc(n ? n : 1, sizeof(float));
	err_clear(&e);
	assert_int_equal(merge_tensor_f32(s, name, base, in, w, nin, n, out,
					  &sc, &e), ERR_INVALID);
	assert_string_equal(e.msg, msg);
	merge_scratch_free(&sc);
	free(out);
}

static void assert_close(const float *got, const double *want, size_t n,
			 double tol)
{
	for (size_t j = 0; j < n; j++)
		if (!(fabs((double)got[j] - want[j]) <= tol))
			fail_msg("element %zu: got %.9g, want %.9g", j,
				 (double)got[j], want[j]);
}

static void assert_bits(const float *a, const float *b, size_t n)
{
	for (size_t j = 0; j < n; j++)
		if (memcmp(&a[j], &b[j], sizeof(float)) != 0)
			fail_msg("element %zu: %.9g vs %.9g", j, (double)a[j],
				 (double)b[j]);
}

static uint64_t rng_state = 12345;
static double frand(void)  /* [-1, 1), test data only */
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

static float *frandv(size_t n, double scale)
{
	float *v = malloc(n * sizeof(float));
	for (size_t j = 0; j < n; j++)
		v[j] = (float)(frand() * scale);
	return v;
}

static void expect_set_error(enum merge_method m, const char *kv,
			     const char *msg)
{
	struct merge_spec *s = merge_spec_new(m);
	struct err e;
	err_clear(&e);
	assert_int_equal(merge_spec_set(s, kv, &e), ERR_INVALID);
	assert_string_equal(e.msg, msg);
	merge_spec_free(s);
}

/* ---- linear ------------------------------------------------------------ */

static void test_merge__linear_hand_values(void **state)
{
	const float x0[] = { 1, 2, 3, 4 }, x1[] = { 5, 6, 7, 8 };
	const float *in[] = { x0, x1 };
	const double w[] = { 1, 3 };
	const double norm[] = { 4, 5, 6, 7 }, raw[] = { 16, 20, 24, 28 };
	float out[4];
	struct merge_spec *s = mkspec(MERGE_LINEAR, NULL);  /* normalize */
	(void)state;
	run_f32(s, "w", NULL, in, w, 2, 4, out);
	assert_close(out, norm, 4, 0);
	merge_spec_free(s);
	s = mkspec(MERGE_LINEAR, "normalize=false");
	run_f32(s, "w", NULL, in, w, 2, 4, out);
	assert_close(out, raw, 4, 0);
	merge_spec_free(s);
}

static void test_merge__linear_one_input_is_identity(void **state)
{
	size_t n = 1000;
	float *x = frandv(n, 3), *out = malloc(n * sizeof(float));
	const float *in[] = { x };
	const double w1[] = { 1 }, w2[] = { 2.5 };
	struct merge_spec *s = mkspec(MERGE_LINEAR, NULL);
	(void)state;
	x[7] = NAN;
	x[9] = INFINITY;
	run_f32(s, "w", NULL, in, w1, 1, n, out);
	assert_bits(out, x, n);
	run_f32(s, "w", NULL, in, w2, 1, n, out);  /* normalized: 1 */
	assert_bits(out, x, n);
	merge_spec_free(s);
	free(x);
	free(out);
}

static void test_merge__linear_zero_weight_sum(void **state)
{
	const float x0[] = { 1 }, x1[] = { 2 };
	const float *in[] = { x0, x1 };
	const double w[] = { 1, -1 };
	struct merge_spec *s = mkspec(MERGE_LINEAR, NULL);
	(void)state;
	fail_f32(s, "w", NULL, in, w, 2, 1, "tensor 'w': weights sum to 0; "
		 "cannot normalize (set normalize=false)");
	merge_spec_free(s);
}

static void test_merge__linear_propagates_nonfinite(void **state)
{
	const float x0[] = { 1, INFINITY, 3 }, x1[] = { 1, -INFINITY, NAN };
	const float *in[] = { x0, x1 };
	float out[3];
	struct merge_spec *s = mkspec(MERGE_LINEAR, NULL);
	(void)state;
	run_f32(s, "w", NULL, in, NULL, 2, 3, out);
	assert_true(out[0] == 1.0f);
	assert_true(isnan(out[1]));  /* inf - inf */
	assert_true(isnan(out[2]));
	merge_spec_free(s);
}

/* ---- task arithmetic ---------------------------------------------------- */

static void test_merge__task_arithmetic_hand_values(void **state)
{
	/* tau0 = {1, 2, -1}, tau1 = {0, -2, 3}; sum w tau = {1, 1, 0.5} */
	const float base[] = { 1, 1, 1 }, x0[] = { 2, 3, 0 },
		    x1[] = { 1, -1, 4 };
	const float *in[] = { x0, x1 };
	const double w[] = { 1, 0.5 };
	const double raw[] = { 3, 3, 2 };
	const double norm[] = { 1 + 2.0 / 1.5, 1 + 2.0 / 1.5, 1 + 1.0 / 1.5 };
	float out[3];
	struct merge_spec *s = mkspec(MERGE_TASK_ARITHMETIC, "lambda=2");
	(void)state;
	run_f32(s, "w", base, in, w, 2, 3, out);
	assert_close(out, raw, 3, 0);
	merge_spec_free(s);
	s = mkspec(MERGE_TASK_ARITHMETIC, "lambda=2 normalize=true");
	run_f32(s, "w", base, in, w, 2, 3, out);
	assert_close(out, norm, 3, 1e-6);
	merge_spec_free(s);
}

static void test_merge__task_arithmetic_lambda_zero_is_base(void **state)
{
	size_t n = 777;
	float *b = frandv(n, 1), *x0 = frandv(n, 1), *x1 = frandv(n, 1);
	float *out = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 };
	struct merge_spec *s = mkspec(MERGE_TASK_ARITHMETIC, "lambda=0");
	(void)state;
	for (size_t j = 0; j < n; j++)
		if (b[j] == 0)
			b[j] = 0.5f;  /* -0 + 0 is +0: keep zeros out */
	run_f32(s, "w", b, in, NULL, 2, n, out);
	assert_bits(out, b, n);
	merge_spec_free(s);
	free(b);
	free(x0);
	free(x1);
	free(out);
}

static void test_merge__task_arithmetic_propagates_nan(void **state)
{
	const float base[] = { 1, NAN, 1 }, x0[] = { 2, 2, INFINITY };
	const float *in[] = { x0 };
	float out[3];
	struct merge_spec *s = mkspec(MERGE_TASK_ARITHMETIC, NULL);
	(void)state;
	run_f32(s, "w", base, in, NULL, 1, 3, out);
	assert_true(out[0] == 2.0f);
	assert_true(isnan(out[1]));
	assert_true(isinf(out[2]) && out[2] > 0);
	merge_spec_free(s);
}

/* ---- ties ------------------------------------------------------------ */

/* Three inputs of six elements, base 10, density 0.5 (k = 3):
 *   tau0 = { 3, -1,  2, -4, 0.5, 1}   top-3 |.|: 4, 3, 2   -> { 3, 0, 2,-4, 0, 0}
 *   tau1 = {-2,  5, -1, -3, 1, .25}   top-3 |.|: 5, 3, 2   -> {-2, 5, 0,-3, 0, 0}
 *   tau2 = { 1, -2,  3,  1,-6, 2}     top-3 |.|: 6, 3, then 2 at index 1 and
 *                                     index 5: the lower index wins
 *                                                          -> { 0,-2, 3, 0,-6, 0}
 * Elected signs (sum): 1 +, 3 +, 5 +, -7 -, -6 -, 0 +.
 * Disjoint mean: {3/1, 5/1, (2+3)/2, (-4-3)/2, -6/1, 0 (no agreeing)}. */
static const float ties_tau[3][6] = {
	{ 3, -1, 2, -4, 0.5f, 1 },
	{ -2, 5, -1, -3, 1, 0.25f },
	{ 1, -2, 3, 1, -6, 2 },
};

static void ties_inputs(float x[3][6], float base[6])
{
	for (int j = 0; j < 6; j++)
		base[j] = 10;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 6; j++)
			x[i][j] = 10 + ties_tau[i][j];
}

static void test_merge__ties_hand_values(void **state)
{
	float x[3][6], base[6], out[6];
	const float *in[] = { x[0], x[1], x[2] };
	const double want[] = { 13, 15, 12.5, 6.5, 4, 10 };
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.5");
	(void)state;
	ties_inputs(x, base);
	run_f32(s, "w", base, in, NULL, 3, 6, out);
	assert_close(out, want, 6, 0);
	merge_spec_free(s);

	/* consensus=count elects the same signs here: + + + - - + */
	s = mkspec(MERGE_TIES, "density=0.5 consensus=count");
	run_f32(s, "w", base, in, NULL, 3, 6, out);
	assert_close(out, want, 6, 0);
	merge_spec_free(s);
}

static void test_merge__ties_weights_and_lambda(void **state)
{
	/* weights {2, 1, 1}: weighted trimmed tau0 = {6, 0, 4, -8, 0, 0}.
	 * Sums: 4 +, 3 +, 7 +, -11 -, -6 -, 0 +.
	 * normalize=false: {6, 5, 4+3, -8-3, -6, 0}, times lambda 0.5. */
	float x[3][6], base[6], out[6];
	const float *in[] = { x[0], x[1], x[2] };
	const double w[] = { 2, 1, 1 };
	const double raw[] = { 13, 12.5, 13.5, 4.5, 7, 10 };
	/* normalize=true: divide by the agreeing weights: 6/2, 5/1, 7/3,
	 * -11/3, -6/1, 0 */
	const double norm[] = { 13, 15, 10 + 7.0 / 3, 10 - 11.0 / 3, 4, 10 };
	struct merge_spec *s = mkspec(MERGE_TIES,
				      "density=0.5 normalize=false lambda=0.5");
	(void)state;
	ties_inputs(x, base);
	run_f32(s, "w", base, in, w, 3, 6, out);
	assert_close(out, raw, 6, 0);
	merge_spec_free(s);
	s = mkspec(MERGE_TIES, "density=0.5");
	run_f32(s, "w", base, in, w, 3, 6, out);
	assert_close(out, norm, 6, 1e-6);
	merge_spec_free(s);
}

static void test_merge__ties_sum_and_count_differ(void **state)
{
	/* One element: tau = {5, -1, -1}. sum: 3 -> + -> 5/1.
	 * count: +1 -1 -1 = -1 -> - -> (-1 - 1)/2 = -1. */
	const float base[] = { 0 }, a[] = { 5 }, b[] = { -1 }, c[] = { -1 };
	const float *in[] = { a, b, c };
	float out[1];
	struct merge_spec *s = mkspec(MERGE_TIES, NULL);
	(void)state;
	run_f32(s, "w", base, in, NULL, 3, 1, out);
	assert_true(out[0] == 5.0f);
	merge_spec_free(s);
	s = mkspec(MERGE_TIES, "consensus=count");
	run_f32(s, "w", base, in, NULL, 3, 1, out);
	assert_true(out[0] == -1.0f);
	merge_spec_free(s);
}

static void test_merge__ties_l1_rescale(void **state)
{
	/* tau = {4, -1, 2, 1}, density 0.5: keep 4 and 2; L1 8 -> 6, so
	 * kept values scale by 8/6. */
	const float base[] = { 0, 0, 0, 0 }, x[] = { 4, -1, 2, 1 };
	const float *in[] = { x };
	const double want[] = { 16.0 / 3, 0, 8.0 / 3, 0 };
	const double want_d[] = { 8, 0, 4, 0 };  /* rescale=density: / 0.5 */
	float out[4];
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.5 rescale=l1");
	(void)state;
	run_f32(s, "w", base, in, NULL, 1, 4, out);
	assert_close(out, want, 4, 1e-6);
	merge_spec_free(s);
	s = mkspec(MERGE_TIES, "density=0.5 rescale=density");
	run_f32(s, "w", base, in, NULL, 1, 4, out);
	assert_close(out, want_d, 4, 0);
	merge_spec_free(s);
}

static void test_merge__ties_density_one_same_signs_is_mean(void **state)
{
	size_t n = 5000;
	float *b = frandv(n, 1), *x[3], *o1 = malloc(n * sizeof(float)),
	      *o2 = malloc(n * sizeof(float));
	const double w[] = { 1, 2, 0.5 };
	struct merge_spec *ties = mkspec(MERGE_TIES, "density=1"),
			  *ta = mkspec(MERGE_TASK_ARITHMETIC, "normalize=true");
	(void)state;
	for (int i = 0; i < 3; i++) {
		x[i] = frandv(n, 1);
		for (size_t j = 0; j < n; j++)  /* every tau positive */
			x[i][j] = b[j] + fabsf(x[i][j]) + 0.01f;
	}
	run_f32(ties, "w", b, (const float *const *)x, w, 3, n, o1);
	run_f32(ta, "w", b, (const float *const *)x, w, 3, n, o2);
	assert_bits(o1, o2, n);
	for (int i = 0; i < 3; i++)
		free(x[i]);
	free(b);
	free(o1);
	free(o2);
	merge_spec_free(ties);
	merge_spec_free(ta);
}

static void test_merge__density_zero_and_zero_task_vectors_give_base(
	void **state)
{
	size_t n = 3000;
	float *b = frandv(n, 1), *x0 = frandv(n, 1), *x1 = frandv(n, 1);
	float *out = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 }, *same[] = { b, b };
	const enum merge_method ms[] = { MERGE_TIES, MERGE_DARE_LINEAR,
					 MERGE_DARE_TIES };
	(void)state;
	for (size_t j = 0; j < n; j++)
		if (b[j] == 0)
			b[j] = 0.25f;
	for (size_t k = 0; k < 3; k++) {
		struct merge_spec *s = mkspec(ms[k], "density=0");
		run_f32(s, "w", b, in, NULL, 2, n, out);
		assert_bits(out, b, n);
		merge_spec_free(s);
		s = mkspec(ms[k], "density=0.4");
		run_f32(s, "w", b, same, NULL, 2, n, out);
		assert_bits(out, b, n);
		merge_spec_free(s);
	}
	free(b);
	free(x0);
	free(x1);
	free(out);
}

/* Brute-force TIES: top-k by sorting indices on (|tau| desc, index asc),
 * then the same float arithmetic in the same order as docs/merging.md. */
static const float *ref_tau;
static int by_mag_desc(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
	float ma = fabsf(ref_tau[a]), mb = fabsf(ref_tau[b]);
	if (ma != mb)
		return ma > mb ? -1 : 1;
	return (a > b) - (a < b);
}

static void ties_reference(const float *base, float *const *x, size_t nin,
			   const double *w, size_t n, double density,
			   float *out)
{
	size_t k = (size_t)(density * (double)n);
	float **row = malloc(nin * sizeof(*row));
	size_t *idx = malloc(n * sizeof(size_t));
	float *tau = malloc(n * sizeof(float));
	for (size_t i = 0; i < nin; i++) {
		row[i] = calloc(n, sizeof(float));
		for (size_t j = 0; j < n; j++) {
			tau[j] = x[i][j] - base[j];
			idx[j] = j;
		}
		ref_tau = tau;
		qsort(idx, n, sizeof(size_t), by_mag_desc);
		for (size_t r = 0; r < k; r++)
			row[i][idx[r]] = tau[idx[r]] * (float)w[i];
	}
	for (size_t j = 0; j < n; j++) {
		float s = 0, m = 0, d = 0;
		for (size_t i = 0; i < nin; i++)
			s += row[i][j];
		for (size_t i = 0; i < nin; i++) {
			int agree = s >= 0 ? row[i][j] > 0 : row[i][j] < 0;
			if (agree) {
				m += row[i][j];
				d += (float)w[i];
			}
		}
		out[j] = base[j] + m / (d == 0 ? 1 : d);
	}
	for (size_t i = 0; i < nin; i++)
		free(row[i]);
	free(row);
	free(idx);
	free(tau);
}

enum data { DATA_SMOOTH, DATA_QUANTIZED, DATA_DEFEATS_SAMPLE };

static void ties_against_reference(size_t n, enum data kind, double density)
{
	float *b = frandv(n, 1), *x[3], *got = malloc(n * sizeof(float)),
	      *want = malloc(n * sizeof(float));
	const double w[] = { 1, 0.5, 2 };
	char kv[64];
	struct merge_spec *s;
	snprintf(kv, sizeof(kv), "density=%g", density);
	s = mkspec(MERGE_TIES, kv);
	for (int i = 0; i < 3; i++) {
		x[i] = frandv(n, 1);
		/* quantized: integer task vectors in [-7, 7], so that many
		 * magnitudes tie at the threshold. defeats_sample: the
		 * elements the strided sample reads (merge.c samples 16384,
		 * every n/16384-th when n = 16384 m) are far larger than the
		 * rest, so the bracket misses the threshold and the full
		 * quickselect runs. */
		for (size_t j = 0; j < n; j++) {
			float t = x[i][j];
			if (kind == DATA_QUANTIZED)
				t = (float)(int)(t * 8);
			if (kind == DATA_DEFEATS_SAMPLE && j % (n / 16384) == 0)
				t = t < 0 ? t - 100 : t + 100;
			x[i][j] = b[j] + t;
		}
	}
	ties_reference(b, x, 3, w, n, density, want);
	run_f32(s, "w", b, (const float *const *)x, w, 3, n, got);
	assert_bits(got, want, n);
	for (int i = 0; i < 3; i++)
		free(x[i]);
	free(b);
	free(got);
	free(want);
	merge_spec_free(s);
}

static void test_merge__ties_matches_brute_force(void **state)
{
	(void)state;
	/* below 131072 elements: quickselect over all magnitudes */
	ties_against_reference(1000, DATA_SMOOTH, 0.3);
	ties_against_reference(1000, DATA_QUANTIZED, 0.3);
	ties_against_reference(100000, DATA_QUANTIZED, 0.5);
	/* above: a sampled bracket, then the selection inside it (ties at
	 * the threshold cut counting from the start, 0.3, or from the end,
	 * 0.35) */
	ties_against_reference(200003, DATA_SMOOTH, 0.2);
	ties_against_reference(200003, DATA_QUANTIZED, 0.3);
	ties_against_reference(200003, DATA_QUANTIZED, 0.35);
	ties_against_reference(300000, DATA_SMOOTH, 0.999);
	ties_against_reference(300000, DATA_SMOOTH, 0.00002);
	ties_against_reference(16384 * 10, DATA_DEFEATS_SAMPLE, 0.5);
}

static void test_merge__ties_in_place(void **state)
{
	size_t n = 50000;
	float *b = frandv(n, 1), *x0 = frandv(n, 1), *x1 = frandv(n, 1);
	float *want = malloc(n * sizeof(float)), *copy = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 };
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.3");
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	(void)state;
	run_f32(s, "w", b, in, NULL, 2, n, want);
	memcpy(copy, b, n * sizeof(float));
	assert_int_equal(merge_tensor_f32(s, "w", copy, in, NULL, 2, n, copy,
					  &sc, &e), 0);
	assert_bits(copy, want, n);
	assert_int_equal(merge_tensor_f32(s, "w", b, in, NULL, 2, n, x0, &sc,
					  &e), 0);
	assert_bits(x0, want, n);
	merge_scratch_free(&sc);
	merge_spec_free(s);
	free(b);
	free(x0);
	free(x1);
	free(want);
	free(copy);
}

/* ---- dare ---------------------------------------------------------------- */

static void test_merge__dare_prng_known_answers(void **state)
{
	/* Computed independently (Python: hashlib + splitmix64). */
	(void)state;
	assert_true(merge_dare_uniform(0, "w", 0, 0) == 0.4523550550763722);
	assert_true(merge_dare_uniform(42, "model.layers.0.mlp.up_proj.weight",
				       1, 12345) == 0.1836382468917902);
	assert_true(merge_dare_uniform(7, "", 2, 0) == 0.8469577884048348);
}

static void test_merge__dare_keeps_what_the_prng_says(void **state)
{
	size_t n = 20000, kept = 0;
	float *b = calloc(n, sizeof(float)), *x = malloc(n * sizeof(float)),
	      *out = malloc(n * sizeof(float));
	const float *in[] = { x };
	struct merge_spec *s;
	(void)state;
	for (size_t j = 0; j < n; j++)
		x[j] = 1;
	s = mkspec(MERGE_DARE_LINEAR, "density=0.3 rescale=none");
	merge_spec_set_seed(s, 99);
	run_f32(s, "t.w", b, in, NULL, 1, n, out);
	for (size_t j = 0; j < n; j++) {
		int k = merge_dare_uniform(99, "t.w", 0, j) < 0.3;
		assert_true(out[j] == (k ? 1.0f : 0.0f));
		kept += (size_t)k;
	}
	/* Binomial(20000, 0.3): mean 6000, sd 65 */
	assert_true(kept > 5700 && kept < 6300);
	merge_spec_free(s);

	s = mkspec(MERGE_DARE_LINEAR, "density=0.3 rescale=density");
	merge_spec_set_seed(s, 99);
	run_f32(s, "t.w", b, in, NULL, 1, n, out);
	for (size_t j = 0; j < n; j++)
		assert_true(out[j] == (merge_dare_uniform(99, "t.w", 0, j) < 0.3
				       ? (float)(1.0 / 0.3) : 0.0f));
	merge_spec_free(s);

	/* l1 (the default): kept values scale by n / kept */
	s = mkspec(MERGE_DARE_LINEAR, "density=0.3");
	merge_spec_set_seed(s, 99);
	run_f32(s, "t.w", b, in, NULL, 1, n, out);
	for (size_t j = 0; j < n; j++)
		if (out[j] != 0)
			assert_true(out[j] == (float)((double)n / (double)kept));
	merge_spec_free(s);
	free(b);
	free(x);
	free(out);
}

static void test_merge__dare_density_one_equals_plain(void **state)
{
	size_t n = 4000;
	float *b = frandv(n, 1), *x0 = frandv(n, 1), *x1 = frandv(n, 1);
	float *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 };
	const double w[] = { 0.75, 1.5 };
	struct merge_spec *a = mkspec(MERGE_DARE_LINEAR, "density=1 lambda=0.8"),
			  *b2 = mkspec(MERGE_TASK_ARITHMETIC, "lambda=0.8"),
			  *c = mkspec(MERGE_DARE_TIES, "density=1 normalize=true"),
			  *d = mkspec(MERGE_TIES, "density=1");
	(void)state;
	run_f32(a, "w", b, in, w, 2, n, o1);
	run_f32(b2, "w", b, in, w, 2, n, o2);
	assert_bits(o1, o2, n);
	run_f32(c, "w", b, in, w, 2, n, o1);
	run_f32(d, "w", b, in, w, 2, n, o2);
	assert_bits(o1, o2, n);
	merge_spec_free(a);
	merge_spec_free(b2);
	merge_spec_free(c);
	merge_spec_free(d);
	free(b);
	free(x0);
	free(x1);
	free(o1);
	free(o2);
}

static void test_merge__dare_ties_hand_values(void **state)
{
	/* density 0.5, rescale=density: kept values double. Which are kept
	 * comes from the PRNG; the expectation is derived element by
	 * element from merge_dare_uniform and the TIES rules. */
	size_t n = 64;
	float *b = calloc(n, sizeof(float)), *x0 = malloc(n * sizeof(float)),
	      *x1 = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 };
	struct merge_spec *s = mkspec(MERGE_DARE_TIES,
				      "density=0.5 rescale=density");
	(void)state;
	merge_spec_set_seed(s, 5);
	for (size_t j = 0; j < n; j++) {
		x0[j] = 1;             /* +1 */
		x1[j] = -0.5f;         /* -0.5 */
	}
	run_f32(s, "n", b, in, NULL, 2, n, out);
	for (size_t j = 0; j < n; j++) {
		int k0 = merge_dare_uniform(5, "n", 0, j) < 0.5;
		int k1 = merge_dare_uniform(5, "n", 1, j) < 0.5;
		/* kept: 2 and -1; sum elects + if tau0 kept, else - if tau1
		 * kept; normalize=false (dare_ties' default) */
		float want = k0 ? 2.0f : (k1 ? -1.0f : 0.0f);
		assert_true(out[j] == want);
	}
	merge_spec_free(s);
	free(b);
	free(x0);
	free(x1);
	free(out);
}

static void test_merge__dare_is_deterministic_and_seeded(void **state)
{
	size_t n = 10000;
	float *b = frandv(n, 1), *x0 = frandv(n, 1), *x1 = frandv(n, 1);
	float *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float)),
	      *o3 = malloc(n * sizeof(float));
	const float *in[] = { x0, x1 };
	struct merge_spec *s = mkspec(MERGE_DARE_TIES, "density=0.4");
	(void)state;
	merge_spec_set_seed(s, 1);
	run_f32(s, "a.w", b, in, NULL, 2, n, o1);
	run_f32(s, "a.w", b, in, NULL, 2, n, o2);
	assert_bits(o1, o2, n);
	merge_spec_set_seed(s, 2);
	run_f32(s, "a.w", b, in, NULL, 2, n, o3);
	assert_true(memcmp(o1, o3, n * sizeof(float)) != 0);
	merge_spec_set_seed(s, 1);
	run_f32(s, "b.w", b, in, NULL, 2, n, o3);  /* other tensor name */
	assert_true(memcmp(o1, o3, n * sizeof(float)) != 0);
	merge_spec_free(s);
	free(b);
	free(x0);
	free(x1);
	free(o1);
	free(o2);
	free(o3);
}

/* ---- slerp ------------------------------------------------------------------ */

static void test_merge__slerp_endpoints(void **state)
{
	size_t n = 999;
	float *a = frandv(n, 1), *b = frandv(n, 1), *out = malloc(n * sizeof(float));
	const float *in[] = { b };
	struct merge_spec *s = mkspec(MERGE_SLERP, "t=0");
	(void)state;
	for (size_t j = 0; j < n; j++)
		if (a[j] == 0)
			a[j] = 0.5f;
	for (size_t j = 0; j < n; j++)
		if (b[j] == 0)
			b[j] = 0.5f;
	run_f32(s, "w", a, in, NULL, 1, n, out);
	assert_bits(out, a, n);
	merge_spec_free(s);
	s = mkspec(MERGE_SLERP, "t=1");
	run_f32(s, "w", a, in, NULL, 1, n, out);
	assert_bits(out, b, n);
	merge_spec_free(s);
	free(a);
	free(b);
	free(out);
}

static void test_merge__slerp_hand_values(void **state)
{
	/* Orthogonal, unnormalized: theta = pi/2, t = 0.5:
	 * s0 = s1 = sin(pi/4) / 1; out = s0 * (2, 0) + s1 * (0, 4). */
	const float a[] = { 2, 0 }, b[] = { 0, 4 };
	const float *in[] = { b };
	const double want[] = { sqrt(2.0), 2 * sqrt(2.0) };
	/* t = 1/3 on (1,0),(0,1): (cos(pi/6), sin(pi/6)) */
	const float u[] = { 1, 0 }, v[] = { 0, 1 };
	const float *in2[] = { v };
	const double want2[] = { sqrt(3.0) / 2, 0.5 };
	/* a zero vector is left unnormalized (mergekit): dot 0, theta pi/2,
	 * out = sin(pi t / 2) * b */
	const float z[] = { 0, 0 }, one[] = { 1, 1 };
	const float *in3[] = { one };
	const double want3[] = { sin(M_PI / 4), sin(M_PI / 4) };
	float out[2];
	struct merge_spec *s = mkspec(MERGE_SLERP, "t=0.5");
	(void)state;
	run_f32(s, "w", a, in, NULL, 1, 2, out);
	assert_close(out, want, 2, 1e-6);
	run_f32(s, "w", z, in3, NULL, 1, 2, out);
	assert_close(out, want3, 2, 1e-6);
	merge_spec_free(s);
	s = mkspec(MERGE_SLERP, "t=0.3333333333333333");
	run_f32(s, "w", u, in2, NULL, 1, 2, out);
	assert_close(out, want2, 2, 1e-6);
	merge_spec_free(s);
}

static void test_merge__slerp_parallel_falls_back_to_lerp(void **state)
{
	const float a[] = { 1, 2, 3 }, b[] = { 2, 4, 6 }, c[] = { -1, -2, -3 };
	const float *in[] = { b }, *in2[] = { c };
	const double want[] = { 1.25, 2.5, 3.75 };   /* 0.75 a + 0.25 b */
	const double want2[] = { 0.5, 1, 1.5 };      /* 0.75 a + 0.25 c */
	float out[3];
	struct merge_spec *s = mkspec(MERGE_SLERP, "t=0.25");
	(void)state;
	run_f32(s, "w", a, in, NULL, 1, 3, out);
	assert_close(out, want, 3, 1e-6);
	run_f32(s, "w", a, in2, NULL, 1, 3, out);  /* anti-parallel too */
	assert_close(out, want2, 3, 1e-6);
	merge_spec_free(s);
}

/* ---- model stock ------------------------------------------------------------ */

static void test_merge__model_stock_hand_values(void **state)
{
	/* offsets (1,0) and (1,1): cos = 1/sqrt2, t = 2c / (1 + c)
	 * = 2 (sqrt2 - 1); out = t * avg + (1 - t) * base with
	 * avg = (2, 1.5), base = (1, 1). */
	const float base[] = { 1, 1 }, x0[] = { 2, 1 }, x1[] = { 2, 2 };
	const float *in[] = { x0, x1 };
	double t = 2 * (sqrt(2.0) - 1);
	const double want[] = { 1 + t, 1 + 0.5 * t };
	/* three models: offsets e1, e2, e1+e2: cosines 0, 1/sqrt2, 1/sqrt2;
	 * mean c = sqrt2/3; t = 3c / (1 + 2c); avg = (2/3, 2/3, 0) */
	const float z[] = { 0, 0, 0 }, e1[] = { 1, 0, 0 }, e2[] = { 0, 1, 0 },
		    e12[] = { 1, 1, 0 };
	const float *in3[] = { e1, e2, e12 };
	double c = sqrt(2.0) / 3, t3 = 3 * c / (1 + 2 * c);
	const double want3[] = { t3 * 2 / 3, t3 * 2 / 3, 0 };
	float out[3];
	struct merge_spec *s = mkspec(MERGE_MODEL_STOCK, NULL);
	(void)state;
	run_f32(s, "w", base, in, NULL, 2, 2, out);
	assert_close(out, want, 2, 1e-6);
	run_f32(s, "w", z, in3, NULL, 3, 3, out);
	assert_close(out, want3, 3, 1e-6);
	merge_spec_free(s);
}

static void test_merge__model_stock_identical_and_zero(void **state)
{
	size_t n = 2048;
	float *b = frandv(n, 1), *x = frandv(n, 1), *out = malloc(n * sizeof(float));
	const float *same[] = { x, x, x }, *zero[] = { b, b };
	struct merge_spec *s = mkspec(MERGE_MODEL_STOCK, NULL);
	(void)state;
	run_f32(s, "w", b, same, NULL, 3, n, out);  /* cos 1, t 1 */
	assert_bits(out, x, n);
	run_f32(s, "w", b, zero, NULL, 2, n, out);  /* cos 0, t 0 */
	assert_bits(out, b, n);
	fail_f32(s, "w", b, same, NULL, 1, n, "tensor 'w': method "
		 "'model_stock' needs at least two models besides the base "
		 "(got 1)");
	merge_spec_free(s);
	free(b);
	free(x);
	free(out);
}

static void test_merge__model_stock_opposed_is_undefined(void **state)
{
	const float base[] = { 0, 0 }, x0[] = { 1, 0 }, x1[] = { -1, 0 };
	const float *in[] = { x0, x1 };
	struct merge_spec *s = mkspec(MERGE_MODEL_STOCK, NULL);
	(void)state;
	fail_f32(s, "w", base, in, NULL, 2, 2, "tensor 'w': model_stock is "
		 "undefined: the task vectors' mean cosine -1 makes "
		 "1 + (N-1) cos zero");
	merge_spec_free(s);
}

/* ---- non-finite values ---------------------------------------------------- */

static void test_merge__nonfinite_refused_where_global(void **state)
{
	float x[3][6], base[6];
	const float *in[] = { x[0], x[1], x[2] };
	struct merge_spec *s;
	(void)state;
	ties_inputs(x, base);
	x[1][2] = NAN;
	s = mkspec(MERGE_TIES, "density=0.5");
	fail_f32(s, "w", base, in, NULL, 3, 6, "tensor 'w': input 1 has NaN "
		 "at element 2; method 'ties' needs finite values");
	merge_spec_free(s);
	s = mkspec(MERGE_DARE_LINEAR, "density=0.5");
	fail_f32(s, "w", base, in, NULL, 3, 6, "tensor 'w': input 1 has NaN "
		 "at element 2; method 'dare_linear' needs finite values");
	merge_spec_free(s);
	s = mkspec(MERGE_DARE_TIES, "density=0.5 rescale=density");
	fail_f32(s, "w", base, in, NULL, 3, 6, "tensor 'w': input 1 has NaN "
		 "at element 2; method 'dare_ties' needs finite values");
	merge_spec_free(s);
	s = mkspec(MERGE_TIES, "density=0");  /* even when all is dropped */
	fail_f32(s, "w", base, in, NULL, 3, 6, "tensor 'w': input 1 has NaN "
		 "at element 2; method 'ties' needs finite values");
	merge_spec_free(s);
	s = mkspec(MERGE_MODEL_STOCK, NULL);
	fail_f32(s, "w", base, in, NULL, 3, 6, "tensor 'w': input 1 has NaN "
		 "at element 2; method 'model_stock' needs finite values");
	merge_spec_free(s);
	base[4] = -INFINITY;
	s = mkspec(MERGE_SLERP, "t=0.5");
	fail_f32(s, "w", base, in, NULL, 1, 6, "tensor 'w': base has Inf at "
		 "element 4; method 'slerp' needs finite values");
	merge_spec_free(s);
}

static void test_merge__nonfinite_in_large_ties(void **state)
{
	size_t n = 200000;
	float *b = frandv(n, 1), *x0 = frandv(n, 1);
	const float *in[] = { x0 };
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.1");
	(void)state;
	x0[77777] = INFINITY;
	fail_f32(s, "big", b, in, NULL, 1, n, "tensor 'big': input 0 has Inf "
		 "at element 77777; method 'ties' needs finite values");
	x0[77777] = 3e38f;
	b[77777] = -3e38f;
	fail_f32(s, "big", b, in, NULL, 1, n, "tensor 'big': input 0 minus "
		 "base overflows at element 77777; method 'ties' needs finite "
		 "task vectors");
	merge_spec_free(s);
	free(b);
	free(x0);
}

/* ---- parameters and rules ------------------------------------------------- */

static void test_merge__parse_errors(void **state)
{
	enum merge_method m;
	struct err e;
	(void)state;
	expect_set_error(MERGE_TIES, "densty=0.5", "unknown parameter 'densty' "
			 "for method 'ties' (did you mean 'density'?)");
	expect_set_error(MERGE_TIES, "xyz=1", "unknown parameter 'xyz' for "
			 "method 'ties' (it takes: lambda, density, normalize, "
			 "rescale, consensus)");
	expect_set_error(MERGE_TIES, "t=0.5", "parameter 't' does not apply to "
			 "method 'ties' (it takes: lambda, density, normalize, "
			 "rescale, consensus)");
	expect_set_error(MERGE_TIES, "density=1.5", "parameter 'density' for "
			 "method 'ties': '1.5' is not in [0, 1]");
	expect_set_error(MERGE_TIES, "density=-0.1", "parameter 'density' for "
			 "method 'ties': '-0.1' is not in [0, 1]");
	expect_set_error(MERGE_TIES, "density=abc", "parameter 'density' for "
			 "method 'ties': 'abc' is not a number");
	expect_set_error(MERGE_TIES, "lambda=nan", "parameter 'lambda' for "
			 "method 'ties': 'nan' is not a number");
	expect_set_error(MERGE_TIES, "density=", "parameter 'density' for "
			 "method 'ties': '' is not a number");
	expect_set_error(MERGE_TIES, "density", "parameter for method 'ties': "
			 "expected k=v, got 'density'");
	expect_set_error(MERGE_TIES, "normalize=maybe", "parameter 'normalize' "
			 "for method 'ties': 'maybe' is not a boolean (true or "
			 "false)");
	expect_set_error(MERGE_DARE_TIES, "rescale=l2", "parameter 'rescale' "
			 "for method 'dare_ties': 'l2' is not one of none, "
			 "density, l1");
	expect_set_error(MERGE_TIES, "consensus=vote", "parameter 'consensus' "
			 "for method 'ties': 'vote' is not one of sum, count");
	expect_set_error(MERGE_SLERP, "t=2", "parameter 't' for method "
			 "'slerp': '2' is not in [0, 1]");
	expect_set_error(MERGE_MODEL_STOCK, "x=1", "method 'model_stock' takes "
			 "no parameters (got 'x')");
	expect_set_error(MERGE_LINEAR, "density=0.5", "parameter 'density' does "
			 "not apply to method 'linear' (it takes: normalize)");
	assert_int_equal(merge_method_parse("tie", &m, &e), ERR_INVALID);
	assert_string_equal(e.msg, "unknown merge method 'tie' (did you mean "
			    "'ties'?)");
	assert_int_equal(merge_method_parse("frankenmerge", &m, &e),
			 ERR_INVALID);
	assert_string_equal(e.msg, "unknown merge method 'frankenmerge' "
			    "(known: linear, task_arithmetic, ties, dare_linear, "
			    "dare_ties, slerp, model_stock)");
	assert_int_equal(merge_method_parse("dare_ties", &m, &e), 0);
	assert_int_equal(m, MERGE_DARE_TIES);
	assert_string_equal(merge_method_name(m), "dare_ties");
}

static void test_merge__defaults_and_aliases(void **state)
{
	struct merge_params p;
	struct merge_spec *s = merge_spec_new(MERGE_DARE_TIES);
	struct err e;
	(void)state;
	merge_spec_params(s, "x", &p);
	assert_int_equal(p.normalize, 0);
	assert_int_equal(p.rescale, MERGE_RESCALE_L1);
	assert_true(p.lambda == 1 && p.density == 1);
	assert_int_equal(merge_spec_set(s, "rescale=false", &e), 0);
	merge_spec_params(s, "x", &p);
	assert_int_equal(p.rescale, MERGE_RESCALE_NONE);
	assert_int_equal(merge_spec_set(s, "rescale=true", &e), 0);
	merge_spec_params(s, "x", &p);
	assert_int_equal(p.rescale, MERGE_RESCALE_L1);
	merge_spec_free(s);
	s = merge_spec_new(MERGE_TIES);
	merge_spec_params(s, "x", &p);
	assert_int_equal(p.normalize, 1);
	assert_int_equal(p.rescale, MERGE_RESCALE_NONE);
	merge_spec_free(s);
	s = merge_spec_new(MERGE_LINEAR);
	merge_spec_params(s, "x", &p);
	assert_int_equal(p.normalize, 1);
	assert_int_equal(merge_method_needs_base(MERGE_LINEAR), 0);
	assert_int_equal(merge_method_needs_base(MERGE_SLERP), 1);
	merge_spec_free(s);
}

static void test_merge__per_tensor_rules(void **state)
{
	const float a[] = { 1, 2, 3 }, b[] = { 5, 7, 11 };
	const float *in[] = { b };
	float out[3];
	struct merge_params p;
	struct merge_spec *s = mkspec(MERGE_SLERP, "t=0.5");
	struct err e;
	(void)state;
	assert_int_equal(merge_spec_add_rule(s, "model.layers.0.*", "t=1", &e), 0);
	assert_int_equal(merge_spec_add_rule(s, "*.self_attn.*", "t=0", &e), 0);
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*", " t=0.7 ,", &e), 0);
	merge_spec_params(s, "model.layers.3.self_attn.q_proj.weight", &p);
	assert_true(p.t == 0);
	merge_spec_params(s, "model.layers.3.mlp.up_proj.weight", &p);
	assert_true(p.t == 0.7);
	merge_spec_params(s, "model.layers.0.mlp.up_proj.weight", &p);
	assert_true(p.t == 1);  /* first match wins */
	merge_spec_params(s, "lm_head.weight", &p);
	assert_true(p.t == 0.5);
	run_f32(s, "model.layers.1.self_attn.o_proj.weight", a, in, NULL, 1, 3,
		out);
	assert_bits(out, a, 3);
	run_f32(s, "model.layers.0.self_attn.o_proj.weight", a, in, NULL, 1, 3,
		out);
	assert_bits(out, b, 3);
	merge_spec_free(s);
}

static void test_merge__rule_overrides_only_what_it_sets(void **state)
{
	struct merge_params p;
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.4 lambda=2");
	struct err e;
	(void)state;
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*",
					     "density=0.1, consensus=count", &e), 0);
	merge_spec_params(s, "l.mlp.w", &p);
	assert_true(p.density == 0.1 && p.lambda == 2);
	assert_int_equal(p.consensus, MERGE_CONSENSUS_COUNT);
	merge_spec_params(s, "l.attn.w", &p);
	assert_true(p.density == 0.4);
	assert_int_equal(p.consensus, MERGE_CONSENSUS_SUM);
	merge_spec_free(s);
}

static void test_merge__rule_errors(void **state)
{
	struct merge_spec *s = merge_spec_new(MERGE_SLERP);
	struct err e;
	const float a[] = { 1 }, b[] = { 2 };
	const float *in[] = { b };
	(void)state;
	assert_int_equal(merge_spec_check(s, &e), ERR_INVALID);
	assert_string_equal(e.msg, "method 'slerp' needs parameter 't' (t=0 "
			    "gives the base, t=1 the other model)");
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*", "tt=0.3", &e),
			 ERR_INVALID);
	assert_string_equal(e.msg, "rule '*.mlp.*': unknown parameter 'tt' for "
			    "method 'slerp' (did you mean 't'?)");
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*", " , ", &e),
			 ERR_INVALID);
	assert_string_equal(e.msg, "rule '*.mlp.*': no parameters");
	assert_int_equal(merge_spec_add_rule(s, "", "t=1", &e), ERR_INVALID);
	assert_string_equal(e.msg, "rule: empty tensor pattern");
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*", "t=0.3", &e), 0);
	assert_int_equal(merge_spec_check(s, &e), 0);
	fail_f32(s, "l.attn.w", a, in, NULL, 1, 1, "tensor 'l.attn.w': method "
		 "'slerp' needs parameter 't' (no rule sets it for this "
		 "tensor)");
	merge_spec_free(s);
}

static void test_merge__describe_is_canonical(void **state)
{
	struct buf b = BUF_INIT;
	struct merge_spec *s = mkspec(MERGE_DARE_TIES, "density=0.3 lambda=1.5");
	struct err e;
	(void)state;
	merge_spec_set_seed(s, 42);
	assert_int_equal(merge_spec_add_rule(s, "*.mlp.*", "density=0.1", &e), 0);
	buf_init(&b);
	merge_spec_describe(s, &b);
	assert_string_equal(buf_str(&b), "dare_ties lambda=1.5 density=0.3 "
			    "normalize=false rescale=l1 consensus=sum seed=42 "
			    "[rule '*.mlp.*': density=0.1]");
	buf_free(&b);
	merge_spec_free(s);
	s = mkspec(MERGE_MODEL_STOCK, NULL);
	merge_spec_describe(s, &b);
	assert_string_equal(buf_str(&b), "model_stock");
	buf_free(&b);
	merge_spec_free(s);
}

static void test_merge__argument_errors(void **state)
{
	const float a[] = { 1 }, b[] = { 2 };
	const float *in[] = { a, b };
	const double w[] = { 1, INFINITY };
	struct merge_spec *s = mkspec(MERGE_TIES, NULL);
	(void)state;
	fail_f32(s, "w", NULL, in, NULL, 2, 1, "tensor 'w': method 'ties' "
		 "needs a base model");
	fail_f32(s, "w", a, in, w, 2, 1, "tensor 'w': the weight of input 1 "
		 "is not finite");
	merge_spec_free(s);
	s = mkspec(MERGE_SLERP, "t=0.5");
	fail_f32(s, "w", a, in, NULL, 2, 1, "tensor 'w': method 'slerp' takes "
		 "exactly one model besides the base (got 2)");
	merge_spec_free(s);
	s = mkspec(MERGE_LINEAR, NULL);
	fail_f32(s, "w", NULL, in, NULL, 0, 1, "tensor 'w': method 'linear' "
		 "needs at least one model");
	merge_spec_free(s);
}

static void test_merge__no_inputs_gives_base(void **state)
{
	const float base[] = { 1, 2, 3 };
	float out[3];
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.5");
	(void)state;
	run_f32(s, "w", base, NULL, NULL, 0, 3, out);
	assert_bits(out, base, 3);
	merge_spec_free(s);
}

/* ---- double precision ----------------------------------------------------- */

static void test_merge__f64_ties_and_policy(void **state)
{
	double x[3][6], base[6], out[6];
	const double *in[] = { x[0], x[1], x[2] };
	const double want[] = { 13, 15, 12.5, 6.5, 4, 10 };
	struct merge_spec *s = mkspec(MERGE_TIES, "density=0.5");
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	(void)state;
	for (int j = 0; j < 6; j++) {
		base[j] = 10;
		for (int i = 0; i < 3; i++)
			x[i][j] = 10 + (double)ties_tau[i][j];
	}
	assert_int_equal(merge_tensor_f64(s, "w", base, in, NULL, 3, 6, out,
					  &sc, &e), 0);
	for (int j = 0; j < 6; j++)
		assert_true(out[j] == want[j]);
	x[2][5] = NAN;
	assert_int_equal(merge_tensor_f64(s, "w", base, in, NULL, 3, 6, out,
					  &sc, &e), ERR_INVALID);
	assert_string_equal(e.msg, "tensor 'w': input 2 has NaN at element 5; "
			    "method 'ties' needs finite values");
	merge_scratch_free(&sc);
	merge_spec_free(s);
}

static void test_merge__f64_slerp_and_linear(void **state)
{
	const double a[] = { 2, 0 }, b[] = { 0, 4 };
	const double *in[] = { b }, *in2[] = { a, b };
	const double w[] = { 1, 3 };
	double out[2];
	struct merge_spec *s = mkspec(MERGE_SLERP, "t=0.5");
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	(void)state;
	assert_int_equal(merge_tensor_f64(s, "w", a, in, NULL, 1, 2, out, &sc,
					  &e), 0);
	assert_true(fabs(out[0] - sqrt(2.0)) < 1e-12);
	assert_true(fabs(out[1] - 2 * sqrt(2.0)) < 1e-12);
	merge_spec_free(s);
	s = mkspec(MERGE_LINEAR, NULL);
	assert_int_equal(merge_tensor_f64(s, "w", NULL, in2, w, 2, 2, out, &sc,
					  &e), 0);
	assert_true(out[0] == 0.5 && out[1] == 3);
	merge_spec_free(s);
	merge_scratch_free(&sc);
}

static void test_merge__deterministic_across_scratch_reuse(void **state)
{
	size_t n = 140000;
	float *b = frandv(n, 1), *x[3], *o1 = malloc(n * sizeof(float)),
	      *o2 = malloc(n * sizeof(float));
	const enum merge_method ms[] = { MERGE_TIES, MERGE_DARE_TIES,
					 MERGE_MODEL_STOCK, MERGE_LINEAR };
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;
	(void)state;
	for (int i = 0; i < 3; i++)
		x[i] = frandv(n, 1);
	for (size_t k = 0; k < 4; k++) {
		struct merge_spec *s = mkspec(ms[k], k < 2 ? "density=0.3" : NULL);
		assert_int_equal(merge_tensor_f32(s, "w", b,
			(const float *const *)x, NULL, 3, n, o1, &sc, &e), 0);
		run_f32(s, "w", b, (const float *const *)x, NULL, 3, n, o2);
		assert_bits(o1, o2, n);
		merge_spec_free(s);
	}
	merge_scratch_free(&sc);
	for (int i = 0; i < 3; i++)
		free(x[i]);
	free(b);
	free(o1);
	free(o2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge__linear_hand_values),
		cmocka_unit_test(test_merge__linear_one_input_is_identity),
		cmocka_unit_test(test_merge__linear_zero_weight_sum),
		cmocka_unit_test(test_merge__linear_propagates_nonfinite),
		cmocka_unit_test(test_merge__task_arithmetic_hand_values),
		cmocka_unit_test(test_merge__task_arithmetic_lambda_zero_is_base),
		cmocka_unit_test(test_merge__task_arithmetic_propagates_nan),
		cmocka_unit_test(test_merge__ties_hand_values),
		cmocka_unit_test(test_merge__ties_weights_and_lambda),
		cmocka_unit_test(test_merge__ties_sum_and_count_differ),
		cmocka_unit_test(test_merge__ties_l1_rescale),
		cmocka_unit_test(test_merge__ties_density_one_same_signs_is_mean),
		cmocka_unit_test(test_merge__density_zero_and_zero_task_vectors_give_base),
		cmocka_unit_test(test_merge__ties_matches_brute_force),
		cmocka_unit_test(test_merge__ties_in_place),
		cmocka_unit_test(test_merge__dare_prng_known_answers),
		cmocka_unit_test(test_merge__dare_keeps_what_the_prng_says),
		cmocka_unit_test(test_merge__dare_density_one_equals_plain),
		cmocka_unit_test(test_merge__dare_ties_hand_values),
		cmocka_unit_test(test_merge__dare_is_deterministic_and_seeded),
		cmocka_unit_test(test_merge__slerp_endpoints),
		cmocka_unit_test(test_merge__slerp_hand_values),
		cmocka_unit_test(test_merge__slerp_parallel_falls_back_to_lerp),
		cmocka_unit_test(test_merge__model_stock_hand_values),
		cmocka_unit_test(test_merge__model_stock_identical_and_zero),
		cmocka_unit_test(test_merge__model_stock_opposed_is_undefined),
		cmocka_unit_test(test_merge__nonfinite_refused_where_global),
		cmocka_unit_test(test_merge__nonfinite_in_large_ties),
		cmocka_unit_test(test_merge__parse_errors),
		cmocka_unit_test(test_merge__defaults_and_aliases),
		cmocka_unit_test(test_merge__per_tensor_rules),
		cmocka_unit_test(test_merge__rule_overrides_only_what_it_sets),
		cmocka_unit_test(test_merge__rule_errors),
		cmocka_unit_test(test_merge__describe_is_canonical),
		cmocka_unit_test(test_merge__argument_errors),
		cmocka_unit_test(test_merge__no_inputs_gives_base),
		cmocka_unit_test(test_merge__f64_ties_and_policy),
		cmocka_unit_test(test_merge__f64_slerp_and_linear),
		cmocka_unit_test(test_merge__deterministic_across_scratch_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
