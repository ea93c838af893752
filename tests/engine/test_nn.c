/* tests/engine/test_nn.c — the engine's MLP: gradients against central
 * differences of an independent double-precision forward pass (several
 * depths, negative example weights, padding in the windows, batches that
 * exercise every remainder of the kernels), softmax and cross-entropy on
 * a hand-computed case, Adam against its formula (bias correction, weight
 * decay, clipping), the learning-rate schedule, files (bit-exact round
 * trips, half-precision input, every malformed file rejected with the
 * file and tensor named), log-probabilities, determinism (same bits run
 * to run, whatever the work size or the split of a batch), and a tiny
 * task that training must actually learn. */
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
#include "artifacts/safetensors.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "engine/nn.h"
#include "engine/rng.h"

#include "tests/tmpdir.h"

static struct nn_config mkcfg(int window, int vocab, int nlayers, int h0,
			      int h1, int h2)
{
	struct nn_config c = { window, vocab, nlayers, { h0, h1, h2, 0 } };

	return c;
}

/* A model with every parameter (biases too) uniform in +-amp. */
static void random_model(struct nn_model *m, const struct nn_config *c,
			 uint64_t seed, float amp)
{
	struct rng r;
	struct err e;

	rng_seed(&r, seed, 0);
	assert_int_equal(nn_model_init(m, c, &r, &e), 0);
	for (size_t i = 0; i < m->nparams; i++)
		m->params[i] = (2.0f * rng_float(&r) - 1.0f) * amp;
}

/* A batch of n random examples (owned arrays); weights if weighted. */
struct test_batch {
	struct nn_batch b;
	uint8_t *ctx, *target;
	float *weight;
};

static void random_batch(struct test_batch *tb, const struct nn_config *c,
			 size_t n, uint64_t seed, int weighted)
{
	struct rng r;

	rng_seed(&r, seed, 1);
	tb->ctx = malloc(n * (size_t)c->window);
	tb->target = malloc(n);
	tb->weight = weighted ? malloc(n * sizeof(float)) : NULL;
	for (size_t i = 0; i < n * (size_t)c->window; i++)
		/* a third padding, so some rows are shared by many examples */
		tb->ctx[i] = rng_below(&r, 3) ? (uint8_t)rng_below(&r, (uint64_t)c->vocab) : 0;
	for (size_t i = 0; i < n; i++) {
		tb->target[i] = (uint8_t)rng_below(&r, (uint64_t)c->vocab);
		if (weighted)
			tb->weight[i] = (float)(rng_double(&r) * 3.0 - 1.0);
	}
	tb->b.n = n;
	tb->b.ctx = tb->ctx;
	tb->b.target = tb->target;
	tb->b.weight = tb->weight;
}

static void free_batch(struct test_batch *tb)
{
	free(tb->ctx);
	free(tb->target);
	free(tb->weight);
}

/* ---- An independent forward pass in double ---- */

/* sum_i w_i CE_i for m's architecture with parameters p (doubles). */
static double ref_loss(const struct nn_model *m, const double *p,
		       const struct nn_batch *b)
{
	const struct nn_config *c = &m->cfg;
	double a[NN_MAX_HIDDEN], next[NN_MAX_HIDDEN], z[NN_MAX_VOCAB];
	double loss = 0.0;

	for (size_t i = 0; i < b->n; i++) {
		const uint8_t *ctx = b->ctx + i * (size_t)c->window;
		int h = c->hidden[0];
		double mx, s = 0.0;

		for (int j = 0; j < h; j++) {
			double v = p[m->t[1].offset + (size_t)j];

			for (int q = 0; q < c->window; q++)
				v += p[m->t[0].offset +
				       ((size_t)q * (size_t)c->vocab + ctx[q]) *
				       (size_t)h + (size_t)j];
			a[j] = tanh(v);
		}
		for (int l = 1; l <= c->nlayers; l++) {
			const struct nn_tensor_view *w = &m->t[2 * l];
			const struct nn_tensor_view *bb = &m->t[2 * l + 1];

			for (size_t j = 0; j < w->cols; j++) {
				double v = p[bb->offset + j];

				for (size_t k = 0; k < w->rows; k++)
					v += a[k] * p[w->offset + k * w->cols + j];
				next[j] = l < c->nlayers ? tanh(v) : v;
			}
			if (l < c->nlayers)
				memcpy(a, next, w->cols * sizeof(double));
			else
				memcpy(z, next, w->cols * sizeof(double));
		}
		mx = z[0];
		for (int j = 1; j < c->vocab; j++)
			mx = z[j] > mx ? z[j] : mx;
		for (int j = 0; j < c->vocab; j++)
			s += exp(z[j] - mx);
		loss += (b->weight ? b->weight[i] : 1.0) *
			(log(s) + mx - z[b->target[i]]);
	}
	return loss;
}

/* ---- Gradients ---- */

static void gradcheck(const struct nn_config *c, size_t n, uint64_t seed)
{
	struct nn_model m;
	struct test_batch tb;
	struct nn_work *w = nn_work_new(c, n);
	const float scale = 0.37f;
	double *p, gmax = 0.0, lf, ld;
	double *num;
	float *g;

	assert_non_null(w);
	random_model(&m, c, seed, 0.8f);
	random_batch(&tb, c, n, seed, 1);
	p = malloc(m.nparams * sizeof(double));
	num = malloc(m.nparams * sizeof(double));
	g = calloc(m.nparams, sizeof(float));
	for (size_t k = 0; k < m.nparams; k++)
		p[k] = m.params[k];

	lf = nn_train_batch(&m, &tb.b, scale, g, w);
	ld = ref_loss(&m, p, &tb.b);
	assert_true(fabs(lf - ld) <= 1e-5 * (1.0 + fabs(ld)));

	for (size_t k = 0; k < m.nparams; k++) {
		const double h = 1e-5;
		double keep = p[k], up, down;

		p[k] = keep + h;
		up = ref_loss(&m, p, &tb.b);
		p[k] = keep - h;
		down = ref_loss(&m, p, &tb.b);
		p[k] = keep;
		num[k] = (up - down) / (2 * h) * scale;
		gmax = fabs(num[k]) > gmax ? fabs(num[k]) : gmax;
	}
	assert_true(gmax > 1e-3);
	for (size_t k = 0; k < m.nparams; k++) {
		/* float32 arithmetic: relative 2e-5 of the value, and a floor
		 * of 2e-6 of the largest component for values near zero (the
		 * errors seen are under 1/20 of this) */
		double err = fabs((double)g[k] - num[k]);
		double tol = 2e-5 * fabs(num[k]) + 2e-6 * gmax;

		if (err > tol)
			fail_msg("param %zu: analytic %.9g, numeric %.9g", k,
				 (double)g[k], num[k]);
	}

	/* The gradient is added to what grad holds. */
	{
		float *g2 = malloc(m.nparams * sizeof(float));

		for (size_t k = 0; k < m.nparams; k++)
			g2[k] = 0.25f;
		nn_train_batch(&m, &tb.b, scale, g2, w);
		for (size_t k = 0; k < m.nparams; k++)
			assert_true(fabs((double)g2[k] - 0.25 - (double)g[k]) <= 1e-6);
		free(g2);
	}
	free(g);
	free(num);
	free(p);
	free_batch(&tb);
	nn_work_free(w);
	nn_model_free(&m);
}

static void test_nn__gradient_two_layers(void **state)
{
	struct nn_config c = mkcfg(3, 5, 2, 4, 3, 0);

	gradcheck(&c, 7, 1);
	gradcheck(&c, 13, 2);    /* 4-row blocks and a remainder */
}

static void test_nn__gradient_one_layer(void **state)
{
	struct nn_config c = mkcfg(3, 5, 1, 6, 0, 0);

	gradcheck(&c, 9, 3);
}

static void test_nn__gradient_three_layers(void **state)
{
	/* widths past the 4-wide and 8-wide vector bodies, odd sizes */
	struct nn_config c = mkcfg(5, 7, 3, 19, 11, 9);

	gradcheck(&c, 18, 4);
}

/* ---- Softmax and cross-entropy by hand ---- */

static void test_nn__softmax_ce_by_hand(void **state)
{
	/* in.weight and in.bias 0: the hidden layer is tanh(0) = 0, so the
	 * logits are out.bias = [1, 2, 3]. Target 2, weight 2, scale 0.5:
	 *   CE = log(e + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
	 *   softmax = [0.0900306, 0.2447285, 0.6652410]
	 *   d out.bias = 0.5 * 2 * (softmax - [0, 0, 1])
	 * out.weight = [[1, 0, -1], [0.5, 0.5, 0.5]], so back at the hidden
	 * layer d = [dz0 - dz2, 0.5 * sum dz] = [0.4247896, 0], which goes
	 * to in.bias and to row (position 0, character 0) of in.weight. */
	struct nn_config c = mkcfg(1, 3, 1, 2, 0, 0);
	const double sm[3] = { 0.09003057317038046, 0.24472847105479767,
			       0.6652409557748219 };
	const double ce = 0.40760596444438013;
	const float wo[6] = { 1, 0, -1, 0.5f, 0.5f, 0.5f };
	uint8_t ctx = 0, target = 2;
	float weight = 2.0f, lp[3], *g;
	struct nn_batch b = { 1, &ctx, &target, &weight };
	struct nn_model m;
	struct nn_work *w = nn_work_new(&c, 4);
	double loss;

	random_model(&m, &c, 9, 0.5f);
	memset(m.params, 0, m.nparams * sizeof(float));
	assert_int_equal(m.ntensors, 4);   /* in.*, out.* */
	memcpy(m.params + m.t[2].offset, wo, sizeof(wo));
	for (int j = 0; j < 3; j++)
		m.params[m.t[3].offset + (size_t)j] = (float)(j + 1);
	g = calloc(m.nparams, sizeof(float));

	loss = nn_train_batch(&m, &b, 0.5f, g, w);
	assert_true(fabs(loss - 2 * ce) < 1e-6);
	for (int j = 0; j < 3; j++)
		assert_true(fabs(g[m.t[3].offset + (size_t)j] -
				 (sm[j] - (j == 2))) < 1e-6);
	for (int k = 0; k < 6; k++)
		assert_true(g[m.t[2].offset + (size_t)k] == 0.0f);
	assert_true(fabs(g[m.t[1].offset] - (sm[0] - (sm[2] - 1))) < 1e-6);
	assert_true(fabs(g[m.t[1].offset + 1]) < 1e-6);
	assert_true(fabs(g[m.t[0].offset] - (sm[0] - (sm[2] - 1))) < 1e-6);
	assert_true(fabs(g[m.t[0].offset + 1]) < 1e-6);
	for (size_t k = 2; k < 6; k++)   /* rows of characters 1, 2 */
		assert_true(g[m.t[0].offset + k] == 0.0f);

	nn_logprobs(&m, 1, &ctx, lp, w);
	for (int j = 0; j < 3; j++)
		assert_true(fabs(lp[j] - log(sm[j])) < 1e-6);

	/* weight 0 contributes nothing; n = 0 is a no-op */
	memset(g, 0, m.nparams * sizeof(float));
	weight = 0.0f;
	assert_true(nn_train_batch(&m, &b, 1.0f, g, w) == 0.0);
	for (size_t k = 0; k < m.nparams; k++)
		assert_true(g[k] == 0.0f);
	b.n = 0;
	assert_true(nn_train_batch(&m, &b, 1.0f, g, w) == 0.0);

	free(g);
	nn_work_free(w);
	nn_model_free(&m);
}

static void test_nn__logprobs_normalised_and_match_loss(void **state)
{
	struct nn_config c = mkcfg(6, 11, 2, 24, 17, 0);
	struct nn_model m;
	struct test_batch tb;
	struct nn_work *w = nn_work_new(&c, 40);
	float *lp = malloc(37 * 11 * sizeof(float)), *g;
	double loss, sum = 0.0;

	random_model(&m, &c, 5, 1.0f);
	random_batch(&tb, &c, 37, 5, 0);
	g = calloc(m.nparams, sizeof(float));
	nn_logprobs(&m, 37, tb.ctx, lp, w);
	for (size_t i = 0; i < 37; i++) {
		double p = 0.0;

		for (size_t j = 0; j < 11; j++) {
			assert_true(lp[i * 11 + j] <= 0.0f);
			p += exp((double)lp[i * 11 + j]);
		}
		assert_true(fabs(p - 1.0) < 1e-5);
		sum -= lp[i * 11 + tb.target[i]];
	}
	loss = nn_train_batch(&m, &tb.b, 1.0f, g, w);
	assert_true(fabs(loss - sum) < 1e-5 * sum);

	free(g);
	free(lp);
	free_batch(&tb);
	nn_work_free(w);
	nn_model_free(&m);
}

/* ---- Model basics ---- */

static void test_nn__config_and_layout(void **state)
{
	struct nn_config c = mkcfg(48, 20, 2, 256, 128, 0), bad;
	struct nn_model m, m2;
	struct rng r;
	struct err e;
	size_t off = 0;
	static const char *names[] = { "in.weight", "in.bias", "hidden.1.weight",
				       "hidden.1.bias", "out.weight", "out.bias" };

	assert_int_equal(nn_config_check(&c, &e), 0);
	bad = c;
	bad.window = 0;
	assert_int_equal(nn_config_check(&bad, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "window"));
	bad = c;
	bad.vocab = NN_MAX_VOCAB + 1;
	assert_int_equal(nn_config_check(&bad, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "vocab"));
	bad = c;
	bad.nlayers = NN_MAX_LAYERS + 1;
	assert_int_equal(nn_config_check(&bad, &e), ERR_INVALID);
	bad = c;
	bad.hidden[1] = 0;
	assert_int_equal(nn_config_check(&bad, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "hidden[1]"));
	assert_null(nn_work_new(&bad, 10));
	assert_int_equal(nn_model_init(&m, &bad, &r, &e), ERR_INVALID);

	rng_seed(&r, 1, 0);
	assert_int_equal(nn_model_init(&m, &c, &r, &e), 0);
	assert_int_equal(m.ntensors, 6);
	for (size_t k = 0; k < 6; k++) {
		assert_string_equal(m.t[k].name, names[k]);
		assert_int_equal(m.t[k].offset, off);
		off += m.t[k].rows * (m.t[k].cols ? m.t[k].cols : 1);
	}
	assert_int_equal(m.nparams, off);
	assert_int_equal(m.t[0].rows, 48 * 20);
	assert_int_equal(m.t[0].cols, 256);
	assert_int_equal(m.t[3].cols, 0);
	assert_int_equal(m.t[4].rows, 128);
	assert_int_equal(m.t[4].cols, 20);

	/* weights within +-1/sqrt(fan_in), fan_in of in.weight the window;
	 * biases 0; not all alike */
	for (size_t k = 0; k < 6; k += 2) {
		double bound = 1.0 / sqrt(k == 0 ? 48.0 : (double)m.t[k].rows);
		const float *p = m.params + m.t[k].offset;
		size_t cnt = m.t[k].rows * m.t[k].cols;
		double mx = 0.0;

		for (size_t i = 0; i < cnt; i++)
			mx = fabs(p[i]) > mx ? fabs(p[i]) : mx;
		assert_true(mx <= bound && mx > 0.9 * bound);
		for (size_t i = 0; i < m.t[k + 1].rows; i++)
			assert_true(m.params[m.t[k + 1].offset + i] == 0.0f);
	}

	assert_int_equal(nn_model_copy(&m2, &m, &e), 0);
	assert_int_equal(m2.nparams, m.nparams);
	assert_memory_equal(m2.params, m.params, m.nparams * sizeof(float));
	assert_memory_equal(&m2.cfg, &m.cfg, sizeof(m.cfg));
	nn_model_free(&m2);
	nn_model_free(&m);
	assert_null(m.params);
	nn_model_free(NULL);
	nn_work_free(NULL);
}

/* ---- Adam ---- */

static void test_nn__adam_by_hand(void **state)
{
	/* lr 0.1, weight decay 0.01, gradient norm 0.5 under clip 1. Step 1:
	 * m = 0.1 g, v = 0.001 g^2, corrected m^ = g, v^ = g^2, so
	 *   p1 = p0 (1 - 0.001) - 0.1 g / (|g| + 1e-8).
	 * Step 2 (same g): m = 0.19 g, v = 0.001999 g^2, corrections
	 * 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999: the same ratio. */
	struct nn_adam a;
	struct err e;
	float p[3] = { 1.0f, -2.0f, 0.5f };
	const float g[3] = { 0.3f, -0.4f, 0.0f };
	double want[3] = { 1.0, -2.0, 0.5 };

	assert_int_equal(nn_adam_init(&a, 3, &e), 0);
	assert_true(a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f);
	assert_true(a.clip == 1.0f && a.weight_decay == 0.0f && a.t == 0);
	a.weight_decay = 0.01f;
	for (int step = 1; step <= 2; step++) {
		double norm = nn_adam_step(&a, p, g, 0.1f);

		assert_true(fabs(norm - 0.5) < 1e-7);
		assert_int_equal(a.t, step);
		for (int i = 0; i < 3; i++) {
			double gi = g[i];

			want[i] = want[i] * (1.0 - 0.1 * 0.01) -
				  0.1 * gi / (fabs(gi) + 1e-8);
			assert_true(fabs(p[i] - want[i]) < 1e-6 * (1 + fabs(want[i])));
		}
	}
	/* moments: (1 - b1) (1 + b1) g with b1, b2 as floats (0.9f is not
	 * 0.9: 1 - 0.999f is 0.00099998713) */
	assert_true(fabs(a.m[0] - (1 - (double)0.9f) * (1 + (double)0.9f) * 0.3) < 1e-8);
	assert_true(fabs(a.v[1] - (1 - (double)0.999f) * (1 + (double)0.999f) *
			 0.16) < 1e-10);
	assert_true(a.m[2] == 0.0f && a.v[2] == 0.0f);
	/* grad untouched */
	assert_true(g[0] == 0.3f && g[1] == -0.4f);
	nn_adam_free(&a);
	nn_adam_free(NULL);
}

/* 1 - beta as the step computes them, in float */
#define C1 (double)(1.0f - 0.9f)
#define C2 (double)(1.0f - 0.999f)

static void test_nn__adam_clipping(void **state)
{
	/* norm 5 over clip 1: g scaled by 0.2 before the moments; the
	 * returned norm is the one before clipping. */
	struct nn_adam a;
	struct err e;
	float p[3] = { 0, 0, 0 };
	const float g[3] = { 3.0f, -4.0f, 0.0f };

	assert_int_equal(nn_adam_init(&a, 3, &e), 0);
	assert_true(fabs(nn_adam_step(&a, p, g, 0.01f) - 5.0) < 1e-9);
	assert_true(fabs(a.m[0] - C1 * 0.6) < 1e-8);
	assert_true(fabs(a.m[1] + C1 * 0.8) < 1e-8);
	assert_true(fabs(a.v[0] - C2 * 0.36) < 1e-10);
	assert_true(fabs(a.v[1] - C2 * 0.64) < 1e-10);
	/* first step of Adam: lr * sign(g), clipped or not */
	assert_true(fabs(p[0] + 0.01) < 1e-8 && fabs(p[1] - 0.01) < 1e-8);
	assert_true(p[2] == 0.0f);
	nn_adam_free(&a);

	/* clip <= 0: no clipping */
	assert_int_equal(nn_adam_init(&a, 3, &e), 0);
	a.clip = 0.0f;
	nn_adam_step(&a, p, g, 0.01f);
	assert_true(fabs(a.m[0] - C1 * 3) < 1e-7 && fabs(a.v[1] - C2 * 16) < 1e-9);
	nn_adam_free(&a);

	/* a norm under the clip: untouched */
	assert_int_equal(nn_adam_init(&a, 3, &e), 0);
	a.clip = 6.0f;
	nn_adam_step(&a, p, g, 0.01f);
	assert_true(fabs(a.m[0] - C1 * 3) < 1e-7);
	nn_adam_free(&a);
}

static void test_nn__lr_schedule(void **state)
{
	assert_true(fabsf(nn_lr_at(0, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-7f);
	assert_true(fabsf(nn_lr_at(4, 100, 10, 1.0f, 0.1f) - 0.5f) < 1e-7f);
	assert_true(nn_lr_at(9, 100, 10, 1.0f, 0.1f) == 1.0f);
	assert_true(nn_lr_at(10, 100, 10, 1.0f, 0.1f) == 1.0f);
	/* halfway through the decay: the middle of lr and lr_min */
	assert_true(fabsf(nn_lr_at(55, 100, 10, 1.0f, 0.1f) - 0.55f) < 1e-6f);
	/* a quarter: lr_min + (lr - lr_min) (1 + cos(pi/4)) / 2 */
	assert_true(fabsf(nn_lr_at(10 + 90 / 4, 100, 10, 1.0f, 0.0f) -
			  (float)(0.5 * (1 + cos(M_PI * 22 / 90)))) < 1e-6f);
	assert_true(fabsf(nn_lr_at(100, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-7f);
	assert_true(fabsf(nn_lr_at(500, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-7f);
	/* decreasing after the warmup */
	for (long long s = 10; s < 100; s++)
		assert_true(nn_lr_at(s + 1, 100, 10, 1.0f, 0.1f) <=
			    nn_lr_at(s, 100, 10, 1.0f, 0.1f));
	/* no warmup */
	assert_true(nn_lr_at(0, 100, 0, 2.0f, 0.0f) == 2.0f);
	assert_true(fabsf(nn_lr_at(50, 100, 0, 2.0f, 0.0f) - 1.0f) < 1e-6f);
	/* warmup as long as the run */
	assert_true(fabsf(nn_lr_at(0, 10, 10, 1.0f, 0.0f) - 0.1f) < 1e-7f);
	assert_true(nn_lr_at(10, 10, 10, 1.0f, 0.0f) == 0.0f);
}

/* ---- Files ---- */

static void test_nn__save_load_round_trip(void **state)
{
	struct nn_config c = mkcfg(3, 5, 2, 4, 3, 0);
	char *path = fs_join(tmpdir, "model.safetensors");
	struct nn_model m, m2;
	struct st_file *f;
	struct err e;

	random_model(&m, &c, 11, 1.0f);
	assert_int_equal(nn_model_save(&m, path, &e), 0);
	assert_int_equal(nn_model_load(&m2, path, &e), 0);
	assert_memory_equal(&m2.cfg, &m.cfg, sizeof(c));
	assert_int_equal(m2.nparams, m.nparams);
	assert_int_equal(m2.ntensors, m.ntensors);
	assert_memory_equal(m2.params, m.params, m.nparams * sizeof(float));

	assert_int_equal(st_open(path, &f, &e), 0);
	assert_string_equal(st_metadata_get(f, "format"), "anneal-mlp");
	assert_string_equal(st_metadata_get(f, "window"), "3");
	assert_string_equal(st_metadata_get(f, "vocab"), "5");
	assert_string_equal(st_metadata_get(f, "hidden"), "4,3");
	assert_int_equal(st_count(f), 6);
	for (size_t k = 0; k < 6; k++)
		assert_int_equal(st_find(f, m.t[k].name)->dtype, ST_F32);
	st_close(f);

	/* a save replaces the file whole */
	m.params[0] = 42.0f;
	assert_int_equal(nn_model_save(&m, path, &e), 0);
	nn_model_free(&m2);
	assert_int_equal(nn_model_load(&m2, path, &e), 0);
	assert_true(m2.params[0] == 42.0f);

	nn_model_free(&m2);
	nn_model_free(&m);
	free(path);
}

/* A tensor for write_tensors: name, dtype and shape; data is
 * deterministic filler converted to dtype. */
struct spec {
	const char *name;
	enum st_dtype dtype;
	size_t ndim;
	size_t shape[2];
};

static void write_tensors(const char *path, const struct spec *s, size_t n)
{
	struct st_writer *w;
	struct err e;

	assert_int_equal(st_writer_new(path, &w, &e), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(st_writer_add(w, s[i].name, s[i].dtype,
					       s[i].shape, s[i].ndim, &e), 0);
	assert_int_equal(st_writer_begin(w, &e), 0);
	for (size_t i = 0; i < n; i++) {
		size_t numel = s[i].ndim ? s[i].shape[0] : 1;
		size_t width = dtype_width(s[i].dtype);
		unsigned char *buf;
		float *f;

		if (s[i].ndim == 2)
			numel *= s[i].shape[1];
		f = malloc((numel ? numel : 1) * sizeof(float));
		buf = calloc(numel ? numel : 1, width);
		for (size_t k = 0; k < numel; k++)
			f[k] = (float)((int)((k * 7 + i) % 13) - 6) / 8.0f;
		if (dtype_computable(s[i].dtype))
			dtype_from_f32(s[i].dtype, f, buf, numel);
		assert_int_equal(st_writer_write(w, s[i].name, 0, buf,
						 numel * width, &e), 0);
		free(buf);
		free(f);
	}
	assert_int_equal(st_writer_commit(w, &e), 0);
	st_writer_free(w);
}

/* window 3, vocab 5, hidden [4, 3] */
static const struct spec good[] = {
	{ "in.weight", ST_F32, 2, { 15, 4 } },
	{ "in.bias", ST_F32, 1, { 4, 0 } },
	{ "hidden.1.weight", ST_F32, 2, { 4, 3 } },
	{ "hidden.1.bias", ST_F32, 1, { 3, 0 } },
	{ "out.weight", ST_F32, 2, { 3, 5 } },
	{ "out.bias", ST_F32, 1, { 5, 0 } },
};

static void test_nn__load_infers_and_converts(void **state)
{
	char *path = fs_join(tmpdir, "half.safetensors");
	struct spec s[6];
	struct nn_model m;
	struct err e;

	/* BF16 and F16 mixed with F32, as a merge might leave them */
	memcpy(s, good, sizeof(good));
	s[0].dtype = ST_BF16;
	s[2].dtype = ST_F16;
	s[4].dtype = ST_BF16;
	write_tensors(path, s, 6);
	assert_int_equal(nn_model_load(&m, path, &e), 0);
	assert_int_equal(m.cfg.window, 3);
	assert_int_equal(m.cfg.vocab, 5);
	assert_int_equal(m.cfg.nlayers, 2);
	assert_int_equal(m.cfg.hidden[0], 4);
	assert_int_equal(m.cfg.hidden[1], 3);
	for (size_t i = 0; i < 6; i++) {
		size_t numel = s[i].shape[0] * (s[i].ndim == 2 ? s[i].shape[1] : 1);

		for (size_t k = 0; k < numel; k++)
			assert_true(m.params[m.t[i].offset + k] ==
				    (float)((int)((k * 7 + i) % 13) - 6) / 8.0f);
	}
	nn_model_free(&m);
	free(path);
}

/* Loading the file of these tensors fails with ERR_INVALID, a message
 * naming the file and mentioning want. */
static void rejects(const char *name, const struct spec *s, size_t n,
		    const char *want)
{
	char *path = fs_join(tmpdir, name);
	struct nn_model m;
	struct err e;

	write_tensors(path, s, n);
	err_clear(&e);
	assert_int_equal(nn_model_load(&m, path, &e), ERR_INVALID);
	if (!strstr(e.msg, path) || !strstr(e.msg, want))
		fail_msg("%s: message '%s' lacks '%s'", name, e.msg, want);
	assert_null(m.params);
	nn_model_free(&m);
	free(path);
}

static void test_nn__load_rejects_bad_files(void **state)
{
	struct spec s[7];
	struct nn_model m;
	struct err e;
	char *path;

	/* an unexpected tensor */
	memcpy(s, good, sizeof(good));
	s[6] = (struct spec){ "hidden.9.weight", ST_F32, 2, { 3, 3 } };
	rejects("extra.safetensors", s, 7, "'hidden.9.weight'");

	/* a misspelt name: unexpected, and out.weight missing */
	memcpy(s, good, sizeof(good));
	s[4].name = "out.weights";
	rejects("misspelt.safetensors", s, 6, "'out.weight");

	/* a missing bias */
	memcpy(s, good, sizeof(good));
	rejects("missing.safetensors", s, 5, "'out.bias' is missing");
	s[1] = good[5];
	rejects("missing2.safetensors", s, 5, "'in.bias' is missing");

	/* shapes that disagree */
	memcpy(s, good, sizeof(good));
	s[2].shape[0] = 5;
	rejects("chain.safetensors", s, 6, "'hidden.1.weight': shape [5, 3], expected [4, 3]");
	memcpy(s, good, sizeof(good));
	s[1].shape[0] = 5;
	rejects("bias.safetensors", s, 6, "'in.bias'");
	memcpy(s, good, sizeof(good));
	s[5].ndim = 2;
	s[5].shape[1] = 1;
	rejects("bias2d.safetensors", s, 6, "'out.bias'");
	memcpy(s, good, sizeof(good));
	s[0].shape[0] = 16;
	rejects("rows.safetensors", s, 6, "'in.weight'");
	memcpy(s, good, sizeof(good));
	s[4].ndim = 1;
	rejects("out1d.safetensors", s, 6, "'out.weight'");
	memcpy(s, good, sizeof(good));
	s[4].shape[1] = NN_MAX_VOCAB + 1;
	s[5].shape[0] = NN_MAX_VOCAB + 1;
	rejects("vocab.safetensors", s, 6, "'out.weight'");

	/* a dtype it cannot compute with */
	memcpy(s, good, sizeof(good));
	s[5].dtype = ST_I32;
	rejects("dtype.safetensors", s, 6, "'out.bias': dtype I32");
	s[5].dtype = ST_F64;
	rejects("dtype64.safetensors", s, 6, "'out.bias': dtype F64");

	/* not a file at all */
	path = fs_join(tmpdir, "absent.safetensors");
	assert_int_not_equal(nn_model_load(&m, path, &e), 0);
	assert_null(m.params);
	free(path);
}

static void test_nn__adam_save_load(void **state)
{
	struct nn_config c = mkcfg(3, 5, 2, 4, 3, 0), c2 = mkcfg(3, 5, 1, 4, 0, 0);
	char *path = fs_join(tmpdir, "adam.safetensors");
	struct nn_model m, other;
	struct nn_adam a, b, d;
	struct st_file *f;
	struct err e;
	float *g;

	random_model(&m, &c, 12, 0.5f);
	random_model(&other, &c2, 12, 0.5f);
	assert_int_equal(nn_adam_init(&a, m.nparams, &e), 0);
	g = malloc(m.nparams * sizeof(float));
	for (size_t k = 0; k < m.nparams; k++)
		g[k] = (float)k / 100.0f - 0.3f;
	for (int i = 0; i < 3; i++)
		nn_adam_step(&a, m.params, g, 0.01f);
	assert_int_equal(nn_adam_save(&a, &m, path, &e), 0);

	/* into a zeroed struct: initialised with defaults */
	memset(&b, 0, sizeof(b));
	assert_int_equal(nn_adam_load(&b, &m, path, &e), 0);
	assert_int_equal(b.t, 3);
	assert_int_equal(b.n, m.nparams);
	assert_memory_equal(b.m, a.m, m.nparams * sizeof(float));
	assert_memory_equal(b.v, a.v, m.nparams * sizeof(float));

	/* into an initialised one: its hyperparameters are kept */
	assert_int_equal(nn_adam_init(&d, m.nparams, &e), 0);
	d.weight_decay = 0.5f;
	assert_int_equal(nn_adam_load(&d, &m, path, &e), 0);
	assert_true(d.weight_decay == 0.5f);
	assert_memory_equal(d.v, a.v, m.nparams * sizeof(float));

	assert_int_equal(st_open(path, &f, &e), 0);
	assert_string_equal(st_metadata_get(f, "t"), "3");
	assert_non_null(st_find(f, "m.hidden.1.weight"));
	assert_non_null(st_find(f, "v.out.bias"));
	st_close(f);

	/* for another architecture: rejected, naming the tensor */
	err_clear(&e);
	assert_int_equal(nn_adam_load(&d, &other, path, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "hidden.1"));
	assert_int_equal(d.t, 3);   /* untouched */

	/* a model file is not Adam state */
	assert_int_equal(nn_model_save(&m, path, &e), 0);
	assert_int_equal(nn_adam_load(&d, &m, path, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "'t'"));

	nn_adam_free(&a);
	nn_adam_free(&b);
	nn_adam_free(&d);
	nn_model_free(&m);
	nn_model_free(&other);
	free(g);
	free(path);
}

/* ---- Determinism ---- */

/* Params after `steps` Adam steps on random batches of 13 with a work
 * for max_n windows, batches passed in pieces of `piece`. */
static float *train_run(const struct nn_config *c, size_t max_n,
			size_t piece, int steps, size_t *np)
{
	struct nn_model m;
	struct nn_adam a;
	struct nn_work *w = nn_work_new(c, max_n);
	struct err e;
	float *g, *out;

	random_model(&m, c, 21, 0.3f);
	assert_int_equal(nn_adam_init(&a, m.nparams, &e), 0);
	a.weight_decay = 0.01f;
	a.clip = 0.5f;
	g = malloc(m.nparams * sizeof(float));
	for (int s = 0; s < steps; s++) {
		struct test_batch tb;

		random_batch(&tb, c, 13, 100 + (uint64_t)s, 1);
		memset(g, 0, m.nparams * sizeof(float));
		for (size_t i = 0; i < 13; i += piece) {
			struct nn_batch part = tb.b;

			part.n = 13 - i < piece ? 13 - i : piece;
			part.ctx += i * (size_t)c->window;
			part.target += i;
			part.weight += i;
			nn_train_batch(&m, &part, 1.0f / 13, g, w);
		}
		nn_adam_step(&a, m.params, g, nn_lr_at(s, steps, 3, 0.01f, 0.001f));
		free_batch(&tb);
	}
	out = malloc(m.nparams * sizeof(float));
	memcpy(out, m.params, m.nparams * sizeof(float));
	*np = m.nparams;
	free(g);
	nn_adam_free(&a);
	nn_work_free(w);
	nn_model_free(&m);
	return out;
}

static void test_nn__deterministic(void **state)
{
	struct nn_config c = mkcfg(7, 9, 2, 37, 21, 0);
	size_t n1, n2, n3, n4;
	float *a = train_run(&c, 13, 13, 20, &n1);
	float *b = train_run(&c, 13, 13, 20, &n2);
	float *d = train_run(&c, 200, 13, 20, &n3);   /* a bigger work */
	float *s = train_run(&c, 13, 5, 20, &n4);     /* batches in pieces */
	struct nn_model m0;

	random_model(&m0, &c, 21, 0.3f);
	assert_int_equal(n1, n2);
	assert_memory_equal(a, b, n1 * sizeof(float));
	assert_memory_equal(a, d, n1 * sizeof(float));
	assert_memory_equal(a, s, n1 * sizeof(float));
	/* and it did move */
	assert_memory_not_equal(a, m0.params, n1 * sizeof(float));
	nn_model_free(&m0);
	free(a);
	free(b);
	free(d);
	free(s);
}

/* ---- Learning ---- */

static void test_nn__learns_a_sequence(void **state)
{
	/* A periodic text going up and down 1..7: with 6 characters of
	 * context (0-padded at the start) the next one is determined. Full
	 * batch Adam; the loss must fall from about log 8 to near 0. */
	enum { LEN = 60, WIN = 6, V = 8 };
	static const uint8_t period[12] = { 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2 };
	struct nn_config c = mkcfg(WIN, V, 1, 32, 0, 0);
	uint8_t ctx[LEN * WIN], target[LEN];
	struct nn_batch b = { LEN, ctx, target, NULL };
	struct nn_model m;
	struct nn_adam a;
	struct nn_work *w = nn_work_new(&c, LEN);
	struct rng r;
	struct err e;
	double first = 0.0, last = 0.0;
	float *g;

	for (int t = 0; t < LEN; t++) {
		target[t] = period[t % 12];
		for (int q = 0; q < WIN; q++) {
			int at = t - WIN + q;

			ctx[t * WIN + q] = at < 0 ? 0 : period[at % 12];
		}
	}
	rng_seed(&r, 77, 0);
	assert_int_equal(nn_model_init(&m, &c, &r, &e), 0);
	assert_int_equal(nn_adam_init(&a, m.nparams, &e), 0);
	g = malloc(m.nparams * sizeof(float));
	for (int s = 0; s < 300; s++) {
		double loss;

		memset(g, 0, m.nparams * sizeof(float));
		loss = nn_train_batch(&m, &b, 1.0f / LEN, g, w) / LEN;
		if (s == 0)
			first = loss;
		last = loss;
		nn_adam_step(&a, m.params, g, nn_lr_at(s, 300, 20, 0.02f, 0.002f));
	}
	assert_true(first > 1.5);
	if (!(last < 0.05 * first))
		fail_msg("loss %.4f -> %.4f", first, last);
	free(g);
	nn_adam_free(&a);
	nn_work_free(w);
	nn_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nn__config_and_layout),
		cmocka_unit_test(test_nn__gradient_two_layers),
		cmocka_unit_test(test_nn__gradient_one_layer),
		cmocka_unit_test(test_nn__gradient_three_layers),
		cmocka_unit_test(test_nn__softmax_ce_by_hand),
		cmocka_unit_test(test_nn__logprobs_normalised_and_match_loss),
		cmocka_unit_test(test_nn__adam_by_hand),
		cmocka_unit_test(test_nn__adam_clipping),
		cmocka_unit_test(test_nn__lr_schedule),
		cmocka_unit_test(test_nn__save_load_round_trip),
		cmocka_unit_test(test_nn__load_infers_and_converts),
		cmocka_unit_test(test_nn__load_rejects_bad_files),
		cmocka_unit_test(test_nn__adam_save_load),
		cmocka_unit_test(test_nn__deterministic),
		cmocka_unit_test(test_nn__learns_a_sequence),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
