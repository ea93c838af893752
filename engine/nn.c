/* engine/nn.c — the reference engine's MLP: forward, backward, Adam, files.
 *
 * Workload: batches of a few hundred windows of ~48 characters, hidden
 * layers of 256..1024, a vocabulary of ~20, on one or two cores for a few
 * minutes. Per example the one-hot first layer costs window*hidden adds
 * (a gather of rows forward, a scatter into the same rows of the gradient
 * backward) and the dense layers hidden*hidden (or hidden*vocab) multiply-
 * adds each way.
 *
 * Determinism is kept by construction, not by luck:
 *  - every dense product goes through mm(), which computes each output as
 *    c + a[0]*b[0] + a[1]*b[1] + ... in that order, whatever the blocking
 *    and the vector width (vectors run across independent outputs, never
 *    along a sum); products with a transposed operand transpose a copy
 *    first, so no reduction is ever vectorised or reassociated;
 *  - -ffp-contract=off (the Makefile) forbids fused multiply-adds, so a
 *    CPU with FMA computes the same roundings as one without;
 *  - exp, tanh and log are our own (fexp, ftanh, flog below: Cephes
 *    polynomials in plain float operations), not libm's, whose x86-64
 *    versions differ by CPU (glibc picks FMA variants at load time) and
 *    do not vectorise;
 *  - the sums that must be accurate (the loss, the gradient norm) are in
 *    double, in a fixed order; other sums are plain loops in index order.
 * libm remains only for the reported loss (log) and the schedule (cos,
 * in double, then rounded to float).
 *
 * The work struct owns all scratch: a training step allocates nothing. */
#include "engine/nn.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/dtype.h"
#include "artifacts/safetensors.h"
#include "base/err.h"
#include "base/util.h"
#include "engine/rng.h"

/* The hot loops are compiled twice on x86-64 with gcc, for the baseline
 * (SSE2) and for AVX2, and the loader picks one for the CPU (gcc's
 * target_clones). The two do the same operations on the same elements in
 * the same order, only more of them at once (no FMA: -ffp-contract=off),
 * so they give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(NN_NO_CLONES)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* ---- Layout ---- */

_Static_assert(NN_MAX_LAYERS == 4, "names below list hidden.1 .. hidden.3");

static const char *const weight_names[NN_MAX_LAYERS] = {
	"in.weight", "hidden.1.weight", "hidden.2.weight", "hidden.3.weight",
};
static const char *const bias_names[NN_MAX_LAYERS] = {
	"in.bias", "hidden.1.bias", "hidden.2.bias", "hidden.3.bias",
};

/* Layer l in 0..nlayers: its inputs and outputs (layer nlayers is the
 * output layer; layer 0's inputs are the window*vocab one-hot rows). */
static size_t layer_in(const struct nn_config *c, int l)
{
	return l == 0 ? (size_t)c->window * (size_t)c->vocab
		      : (size_t)c->hidden[l - 1];
}

static size_t layer_out(const struct nn_config *c, int l)
{
	return l == c->nlayers ? (size_t)c->vocab : (size_t)c->hidden[l];
}

/* Tensor views and nparams from m->cfg (already checked). */
static void layout(struct nn_model *m)
{
	const struct nn_config *c = &m->cfg;
	size_t off = 0, k = 0;

	for (int l = 0; l <= c->nlayers; l++) {
		size_t in = layer_in(c, l), out = layer_out(c, l);
		int last = l == c->nlayers;

		m->t[k++] = (struct nn_tensor_view){
			last ? "out.weight" : weight_names[l], in, out, off };
		off += in * out;
		m->t[k++] = (struct nn_tensor_view){
			last ? "out.bias" : bias_names[l], out, 0, off };
		off += out;
	}
	m->ntensors = k;
	m->nparams = off;
}

static const float *weight(const struct nn_model *m, int l)
{
	return m->params + m->t[2 * l].offset;
}

static const float *bias(const struct nn_model *m, int l)
{
	return m->params + m->t[2 * l + 1].offset;
}

int nn_config_check(const struct nn_config *cfg, struct err *err)
{
	if (cfg->window < 1 || cfg->window > NN_MAX_WINDOW)
		return err_set(err, ERR_INVALID, "window: %d is out of range 1..%d",
			       cfg->window, NN_MAX_WINDOW);
	if (cfg->vocab < 2 || cfg->vocab > NN_MAX_VOCAB)
		return err_set(err, ERR_INVALID, "vocab: %d is out of range 2..%d",
			       cfg->vocab, NN_MAX_VOCAB);
	if (cfg->nlayers < 1 || cfg->nlayers > NN_MAX_LAYERS)
		return err_set(err, ERR_INVALID, "hidden: %d layers, expected 1..%d",
			       cfg->nlayers, NN_MAX_LAYERS);
	for (int l = 0; l < cfg->nlayers; l++)
		if (cfg->hidden[l] < 1 || cfg->hidden[l] > NN_MAX_HIDDEN)
			return err_set(err, ERR_INVALID,
				       "hidden[%d]: %d is out of range 1..%d",
				       l, cfg->hidden[l], NN_MAX_HIDDEN);
	return 0;
}

/* Sets m's config (unused hidden slots zeroed) and layout, allocates
 * params (uninitialised). */
static int model_alloc(struct nn_model *m, const struct nn_config *cfg,
		       struct err *err)
{
	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	for (int l = cfg->nlayers; l < NN_MAX_LAYERS; l++)
		m->cfg.hidden[l] = 0;
	layout(m);
	m->params = malloc(m->nparams * sizeof(float));
	if (!m->params) {
		memset(m, 0, sizeof(*m));
		return err_set(err, ERR_NOMEM, "model: out of memory for %zu parameters",
			       m->nparams);
	}
	return 0;
}

int nn_model_init(struct nn_model *m, const struct nn_config *cfg,
		  struct rng *r, struct err *err)
{
	int rc;

	memset(m, 0, sizeof(*m));
	rc = nn_config_check(cfg, err);
	if (rc)
		return rc;
	rc = model_alloc(m, cfg, err);
	if (rc)
		return rc;
	for (int l = 0; l <= m->cfg.nlayers; l++) {
		const struct nn_tensor_view *w = &m->t[2 * l], *b = &m->t[2 * l + 1];
		/* One row of in.weight per position is active: fan_in is the
		 * window, not its rows. */
		size_t fan_in = l == 0 ? (size_t)m->cfg.window : w->rows;
		float bound = (float)(1.0 / sqrt((double)fan_in));
		float *p = m->params + w->offset;

		for (size_t i = 0; i < w->rows * w->cols; i++)
			p[i] = (2.0f * rng_float(r) - 1.0f) * bound;
		memset(m->params + b->offset, 0, b->rows * sizeof(float));
	}
	return 0;
}

int nn_model_copy(struct nn_model *dst, const struct nn_model *src,
		  struct err *err)
{
	int rc = model_alloc(dst, &src->cfg, err);

	if (!rc)
		memcpy(dst->params, src->params, src->nparams * sizeof(float));
	return rc;
}

void nn_model_free(struct nn_model *m)
{
	if (!m)
		return;
	free(m->params);
	memset(m, 0, sizeof(*m));
}

/* ---- Elementwise functions ----
 *
 * Written so that gcc vectorises the loops that call them: both sides of
 * every choice are computed and one is picked by pick(), on the bit
 * patterns. A plain `c ? x : y` on floats does not do: gcc moves the
 * float operations feeding one side into a branch, and under the default
 * -ftrapping-math it may not turn a branch with float operations back
 * into a vector select. */

static inline float pick(int c, float x, float y)
{
	uint32_t ux, uy, mask = -(uint32_t)c, u;
	float r;

	memcpy(&ux, &x, sizeof(ux));
	memcpy(&uy, &y, sizeof(uy));
	u = (ux & mask) | (uy & ~mask);
	memcpy(&r, &u, sizeof(r));
	return r;
}

/* e^x within 1 ulp for x in [-87, 88] (checked over every float there),
 * clamped outside: Cephes expf. x = n ln2 + r with |r| <= ln2/2, e^r by
 * a polynomial, 2^n put into the exponent bits. A NaN is clamped too (a
 * float to int conversion of NaN is undefined); it stays visible in the
 * logits that made it. */
static inline float fexp(float x)
{
	const float shift = 0x1.8p23f;   /* adding it rounds to an integer */
	float t, n, r, r2, p, scale;
	int32_t bits;

	x = pick(x < -87.0f, -87.0f, x);
	x = pick(!(x <= 88.0f), 88.0f, x);
	t = x * 1.44269504088896341f + shift;
	n = t - shift;
	r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	r2 = r * r;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r2 + r + 1.0f;
	bits = ((int32_t)n + 127) << 23;  /* n in -126..127: a normal 2^n */
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

/* tanh within 1.5 ulp (checked over every float in [-20, 20]): Cephes
 * tanhf. An odd polynomial below 0.625 (where 1 - 2/(e^2x + 1) would
 * cancel), the exponential form above. */
static inline float ftanh(float x)
{
	float ax = fabsf(x);
	float z = x * x;
	float small, big;

	small = -5.70498872745e-3f;
	small = small * z + 2.06390887954e-2f;
	small = small * z - 5.37397155531e-2f;
	small = small * z + 1.33314422036e-1f;
	small = small * z - 3.33332819422e-1f;
	small = small * z * x + x;
	big = 1.0f - 2.0f / (fexp(2.0f * ax) + 1.0f);
	big = pick(x < 0.0f, -big, big);
	return pick(ax < 0.625f, small, big);
}

HOT static void vtanh(float *restrict x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = ftanh(x[i]);
}

HOT static void vexp(const float *restrict x, float *restrict y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = fexp(x[i]);
}

/* log x within 1 ulp for positive normal x (here a softmax sum, in
 * [1, vocab]): Cephes logf. x = 2^e (1 + f) with 1 + f in [sqrt(1/2),
 * sqrt(2)), log(1 + f) by a polynomial. */
static float flog(float x)
{
	uint32_t u;
	float f, z, y, fe;
	int e;

	memcpy(&u, &x, sizeof(u));
	e = (int)(u >> 23) - 126;                 /* x = 2^e m, m in [0.5, 1) */
	u = (u & 0x007fffffu) | 0x3f000000u;
	memcpy(&f, &u, sizeof(f));
	if (f < 0.707106781186547524f) {
		e -= 1;
		f = f + f - 1.0f;
	} else {
		f = f - 1.0f;
	}
	fe = (float)e;
	z = f * f;
	y = 7.0376836292e-2f;
	y = y * f - 1.1514610310e-1f;
	y = y * f + 1.1676998740e-1f;
	y = y * f - 1.2420140846e-1f;
	y = y * f + 1.4249322787e-1f;
	y = y * f - 1.6668057665e-1f;
	y = y * f + 2.0000714765e-1f;
	y = y * f - 2.4999993993e-1f;
	y = y * f + 3.3333331174e-1f;
	y = y * f * z;
	y += -2.12194440e-4f * fe;
	y += -0.5f * z;
	f = f + y;
	return f + 0.693359375f * fe;
}

/* ---- Matrix kernels ----
 *
 * Row-major throughout. mm() is the only dense product. Its loops have the
 * form C[i][:] += A[i][p] * B[p][:], vectorised along rows of B and C, so
 * each element of C sees its k products added one at a time in order
 * p = 0..k-1: the blocking below changes the speed, never the bits. */

/* One row of C: c = c + a[0] b[0] + a[1] b[1] + ..., four rows of B at a
 * time. `c + x0 + x1 + x2 + x3` is evaluated left to right, so that is
 * the same additions in the same order as four single steps, with a
 * quarter of the loads and stores of c. */
static inline __attribute__((always_inline)) void
mm_row(size_t n, size_t k, const float *restrict a,
       const float *restrict b, size_t ldb, float *restrict c)
{
	size_t p = 0;

	for (; p + 4 <= k; p += 4) {
		const float *restrict b0 = b + p * ldb, *restrict b1 = b0 + ldb;
		const float *restrict b2 = b1 + ldb, *restrict b3 = b2 + ldb;
		float a0 = a[p], a1 = a[p + 1], a2 = a[p + 2], a3 = a[p + 3];

		for (size_t j = 0; j < n; j++)
			c[j] = c[j] + a0 * b0[j] + a1 * b1[j] + a2 * b2[j] +
			       a3 * b3[j];
	}
	for (; p < k; p++) {
		const float *restrict bp = b + p * ldb;
		float ap = a[p];

		for (size_t j = 0; j < n; j++)
			c[j] += ap * bp[j];
	}
}

/* Four rows of C at once, the same way: each row of B loaded serves four
 * rows of C. */
static inline __attribute__((always_inline)) void
mm_rows4(size_t n, size_t k, const float *restrict a, size_t lda,
	 const float *restrict b, size_t ldb, float *restrict c, size_t ldc)
{
	const float *x = a, *y = a + lda, *z = a + 2 * lda, *u = a + 3 * lda;
	float *restrict c0 = c, *restrict c1 = c + ldc;
	float *restrict c2 = c + 2 * ldc, *restrict c3 = c + 3 * ldc;
	size_t p = 0;

	for (; p + 4 <= k; p += 4) {
		const float *restrict b0 = b + p * ldb, *restrict b1 = b0 + ldb;
		const float *restrict b2 = b1 + ldb, *restrict b3 = b2 + ldb;
		float x0 = x[p], x1 = x[p + 1], x2 = x[p + 2], x3 = x[p + 3];
		float y0 = y[p], y1 = y[p + 1], y2 = y[p + 2], y3 = y[p + 3];
		float z0 = z[p], z1 = z[p + 1], z2 = z[p + 2], z3 = z[p + 3];
		float u0 = u[p], u1 = u[p + 1], u2 = u[p + 2], u3 = u[p + 3];

		for (size_t j = 0; j < n; j++) {
			c0[j] = c0[j] + x0 * b0[j] + x1 * b1[j] + x2 * b2[j] +
				x3 * b3[j];
			c1[j] = c1[j] + y0 * b0[j] + y1 * b1[j] + y2 * b2[j] +
				y3 * b3[j];
			c2[j] = c2[j] + z0 * b0[j] + z1 * b1[j] + z2 * b2[j] +
				z3 * b3[j];
			c3[j] = c3[j] + u0 * b0[j] + u1 * b1[j] + u2 * b2[j] +
				u3 * b3[j];
		}
	}
	for (; p < k; p++) {
		const float *restrict bp = b + p * ldb;
		float x0 = x[p], y0 = y[p], z0 = z[p], u0 = u[p];

		for (size_t j = 0; j < n; j++) {
			c0[j] += x0 * bp[j];
			c1[j] += y0 * bp[j];
			c2[j] += z0 * bp[j];
			c3[j] += u0 * bp[j];
		}
	}
}

/* C (m x n) = C + A B, or A B when !acc; A is m x k, B is k x n, each
 * with its row stride. */
HOT static void mm(size_t m, size_t n, size_t k,
		   const float *restrict a, size_t lda,
		   const float *restrict b, size_t ldb,
		   float *restrict c, size_t ldc, int acc)
{
	size_t i = 0;

	if (!acc)
		for (size_t r = 0; r < m; r++)
			memset(c + r * ldc, 0, n * sizeof(float));
	for (; i + 4 <= m; i += 4)
		mm_rows4(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
	for (; i < m; i++)
		mm_row(n, k, a + i * lda, b, ldb, c + i * ldc);
}

/* dst (cols x rows) = src (rows x cols) transposed, in blocks that fit
 * the cache on both sides. */
static void transpose(size_t rows, size_t cols, const float *restrict src,
		      float *restrict dst)
{
	const size_t B = 32;

	for (size_t i0 = 0; i0 < rows; i0 += B) {
		size_t i1 = i0 + B < rows ? i0 + B : rows;

		for (size_t j0 = 0; j0 < cols; j0 += B) {
			size_t j1 = j0 + B < cols ? j0 + B : cols;

			for (size_t j = j0; j < j1; j++)
				for (size_t i = i0; i < i1; i++)
					dst[j * rows + i] = src[i * cols + j];
		}
	}
}

/* Each of the n rows (width w) of x = bias. */
static void set_rows(size_t n, size_t w, const float *restrict bias,
		     float *restrict x)
{
	for (size_t i = 0; i < n; i++)
		memcpy(x + i * w, bias, w * sizeof(float));
}

/* s[:] += the n rows (width w) of x, in row order. */
HOT static void add_rows(size_t n, size_t w, const float *restrict x,
		     float *restrict s)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < w; j++)
			s[j] += x[i * w + j];
}

/* d = d * (1 - y^2): back through tanh, given its output y. */
HOT static void tanh_back(size_t n, const float *restrict y, float *restrict d)
{
	for (size_t i = 0; i < n; i++)
		d[i] = d[i] * (1.0f - y[i] * y[i]);
}

/* ---- Work space ---- */

struct nn_work {
	struct nn_config cfg;
	size_t max_n;
	float *act[NN_MAX_LAYERS];  /* max_n x hidden[l]: tanh outputs */
	float *z;                   /* max_n x vocab: logits, then their gradient */
	float *d[2];                /* max_n x hmax: gradients going back */
	float *tr;                  /* max_n x max(hmax, vocab): transposes */
	float *wt;                  /* a weight matrix's size: transposes */
	uint32_t *rows;             /* max_n x window: active rows of in.weight */
	uint32_t *order;            /* window x max_n: examples by character */
	uint32_t *start;            /* window x (vocab + 1): where each starts */
	void *mem;
};

#define ALIGN 64   /* a cache line; also enough for any vector load */

static size_t round_up(size_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

struct nn_work *nn_work_new(const struct nn_config *cfg, size_t max_n)
{
	struct nn_work *w;
	size_t hmax = 0, v = (size_t)cfg->vocab, wide, wts, total = 0, ns = 0;
	size_t win;
	size_t sizes[NN_MAX_LAYERS + 6];
	float **bufs[NN_MAX_LAYERS + 6];
	char *p;

	if (nn_config_check(cfg, NULL) || max_n > UINT32_MAX)
		return NULL;
	if (max_n < 1)
		max_n = 1;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	for (int l = 0; l < cfg->nlayers; l++)
		if ((size_t)cfg->hidden[l] > hmax)
			hmax = (size_t)cfg->hidden[l];
	wide = hmax > v ? hmax : v;
	wts = hmax * wide;

	for (int l = 0; l < cfg->nlayers; l++) {
		bufs[ns] = &w->act[l];
		sizes[ns++] = max_n * (size_t)cfg->hidden[l];
	}
	bufs[ns] = &w->z;
	sizes[ns++] = max_n * v;
	bufs[ns] = &w->d[0];
	sizes[ns++] = max_n * hmax;
	bufs[ns] = &w->d[1];
	sizes[ns++] = max_n * hmax;
	bufs[ns] = &w->tr;
	sizes[ns++] = max_n * wide;
	bufs[ns] = &w->wt;
	sizes[ns++] = wts;
	for (size_t i = 0; i < ns; i++)
		total += round_up(sizes[i] * sizeof(float));
	win = (size_t)cfg->window;
	total += 2 * round_up(max_n * win * sizeof(uint32_t));
	total += round_up(win * (v + 1) * sizeof(uint32_t));

	w->mem = aligned_alloc(ALIGN, total);
	if (!w->mem) {
		free(w);
		return NULL;
	}
	w->cfg = *cfg;
	w->max_n = max_n;
	p = w->mem;
	for (size_t i = 0; i < ns; i++) {
		*bufs[i] = (float *)p;
		p += round_up(sizes[i] * sizeof(float));
	}
	w->rows = (uint32_t *)p;
	p += round_up(max_n * win * sizeof(uint32_t));
	w->order = (uint32_t *)p;
	p += round_up(max_n * win * sizeof(uint32_t));
	w->start = (uint32_t *)p;
	return w;
}

void nn_work_free(struct nn_work *w)
{
	if (!w)
		return;
	free(w->mem);
	free(w);
}

static void check_work(const struct nn_model *m, size_t n,
		       const struct nn_work *w)
{
	assert(n <= w->max_n);
	assert(w->cfg.window == m->cfg.window && w->cfg.vocab == m->cfg.vocab &&
	       w->cfg.nlayers == m->cfg.nlayers);
	for (int l = 0; l < m->cfg.nlayers; l++)
		assert(w->cfg.hidden[l] == m->cfg.hidden[l]);
	(void)m;
	(void)n;
	(void)w;
}

/* ---- Layer 0: one-hot rows ---- */

/* out += rows idx[0..n) of src (rows of h), added in that order, four
 * rows per pass over out (left to right, as in mm_row): each element gets
 * the same additions in the same order as one row at a time. */
static inline __attribute__((always_inline)) void
gather_add(size_t h, const float *restrict src, const uint32_t *idx, size_t n,
	 float *restrict out)
{
	size_t k = 0;

	for (; k + 4 <= n; k += 4) {
		const float *restrict r0 = src + idx[k] * h;
		const float *restrict r1 = src + idx[k + 1] * h;
		const float *restrict r2 = src + idx[k + 2] * h;
		const float *restrict r3 = src + idx[k + 3] * h;

		for (size_t j = 0; j < h; j++)
			out[j] = out[j] + r0[j] + r1[j] + r2[j] + r3[j];
	}
	for (; k < n; k++) {
		const float *restrict r = src + idx[k] * h;

		for (size_t j = 0; j < h; j++)
			out[j] += r[j];
	}
}

/* One example: out = tanh(bias + the active rows of win (rows of h), in
 * position order), four rows per pass over out (left to right, as in
 * mm_row). */
HOT static void embed(size_t h, const float *restrict win,
		      const float *restrict b, const uint32_t *rows,
		      size_t nrows, float *restrict out)
{
	memcpy(out, b, h * sizeof(float));
	gather_add(h, win, rows, nrows, out);
	for (size_t j = 0; j < h; j++)
		out[j] = ftanh(out[j]);
}

/* in.weight's gradient at one position (gw: its first row; rows of h):
 * row c += the d rows of the examples with character c there, which
 * order[start[c] .. start[c+1]) lists in example order. Row by row rather
 * than example by example: an example has one row per position, so each
 * element gets the same additions in the same order as in the plain loop
 * over examples, while a row is loaded and stored once per four
 * examples. */
HOT static void embed_back(size_t h, const uint32_t *order,
			   const uint32_t *start, size_t v,
			   const float *restrict d, float *restrict gw)
{
	for (size_t ch = 0; ch < v; ch++)
		gather_add(h, d, order + start[ch], start[ch + 1] - start[ch], gw + ch * h);
}

/* act[0] for n windows. */
static void layer0_forward(const struct nn_model *m, size_t n,
			   const uint8_t *ctx, struct nn_work *w)
{
	size_t win = (size_t)m->cfg.window, v = (size_t)m->cfg.vocab;
	size_t h = (size_t)m->cfg.hidden[0];
	const float *wt = weight(m, 0), *b = bias(m, 0);

	/* rows[i][p]: the active row of example i at position p */
	for (size_t i = 0; i < n * win; i++) {
		assert(ctx[i] < v);
		w->rows[i] = (uint32_t)((i % win) * v + ctx[i]);
	}
	for (size_t i = 0; i < n; i++)
		embed(h, wt, b, w->rows + i * win, win, w->act[0] + i * h);
}

/* in.weight's gradient from d (n x hidden[0], through tanh already). */
static void layer0_backward(const struct nn_model *m, size_t n,
			    const uint8_t *ctx, const float *d, float *gw,
			    struct nn_work *w)
{
	size_t win = (size_t)m->cfg.window, v = (size_t)m->cfg.vocab;
	size_t h = (size_t)m->cfg.hidden[0];

	/* For each position, the examples by their character there: a
	 * stable counting sort, so each character's list is in example
	 * order. */
	for (size_t p = 0; p < win; p++) {
		uint32_t *start = w->start + p * (v + 1), *order = w->order + p * n;

		memset(start, 0, (v + 1) * sizeof(*start));
		for (size_t i = 0; i < n; i++)
			start[ctx[i * win + p] + 1]++;
		for (size_t ch = 0; ch < v; ch++)
			start[ch + 1] += start[ch];
		for (size_t i = 0; i < n; i++)
			order[start[ctx[i * win + p]]++] = (uint32_t)i;
		/* each start[ch] has moved to the end of ch's list */
		memmove(start + 1, start, v * sizeof(*start));
		start[0] = 0;
	}
	for (size_t p = 0; p < win; p++)
		embed_back(h, w->order + p * n, w->start + p * (v + 1), v, d,
			   gw + p * v * h);
}

/* ---- Forward and backward ---- */

/* Activations of every layer and the logits (w->z) for n windows. */
static void forward(const struct nn_model *m, size_t n, const uint8_t *ctx,
		    struct nn_work *w)
{
	const struct nn_config *c = &m->cfg;
	size_t v = (size_t)c->vocab;
	size_t hl = (size_t)c->hidden[c->nlayers - 1];
	int nl = c->nlayers;

	layer0_forward(m, n, ctx, w);
	for (int l = 1; l < nl; l++) {
		size_t in = layer_in(c, l), out = layer_out(c, l);

		set_rows(n, out, bias(m, l), w->act[l]);
		mm(n, out, in, w->act[l - 1], in, weight(m, l), out,
		   w->act[l], out, 1);
		vtanh(w->act[l], n * out);
	}
	set_rows(n, v, bias(m, nl), w->z);
	mm(n, v, hl, w->act[nl - 1], hl, weight(m, nl), v, w->z, v, 1);
}

/* Each row of z (n x v) minus its maximum, in place, and e = exp(z)
 * (in (0, 1], one 1 per row); s[i] = the sum of row i of e, in order. */
static void softmax_rows(size_t n, size_t v, float *restrict z,
			 float *restrict e, float *restrict s)
{
	for (size_t i = 0; i < n; i++) {
		float *row = z + i * v, m = row[0];

		for (size_t j = 1; j < v; j++)
			m = row[j] > m ? row[j] : m;
		for (size_t j = 0; j < v; j++)
			row[j] -= m;
	}
	vexp(z, e, n * v);
	for (size_t i = 0; i < n; i++) {
		float sum = 0.0f;

		for (size_t j = 0; j < v; j++)
			sum += e[i * v + j];
		s[i] = sum;
	}
}

double nn_train_batch(const struct nn_model *m, const struct nn_batch *b,
		      float scale, float *grad, struct nn_work *w)
{
	const struct nn_config *c = &m->cfg;
	size_t n = b->n, v = (size_t)c->vocab;
	int nl = c->nlayers;
	double loss = 0.0;
	float *d, *dnext, *e = w->tr, *s = w->d[0];

	if (n == 0)
		return 0.0;
	check_work(m, n, w);
	forward(m, n, b->ctx, w);

	/* Loss, and its gradient wrt the logits into z:
	 *   CE = log sum exp(z - max) - (z_t - max)
	 *   dz = scale * weight * (softmax - onehot(target))
	 * (e borrows tr and s borrows d[0]: both free until below.) */
	softmax_rows(n, v, w->z, e, s);
	for (size_t i = 0; i < n; i++) {
		float *zi = w->z + i * v, *ei = e + i * v;
		float wi = b->weight ? b->weight[i] : 1.0f;
		float g = scale * wi, inv = 1.0f / s[i];
		size_t t = b->target[i];

		assert(t < v);
		loss += (double)wi * (log((double)s[i]) - (double)zi[t]);
		for (size_t j = 0; j < v; j++)
			zi[j] = g * (ei[j] * inv);
		zi[t] -= g;
	}

	/* Output layer: out.weight += act^T dz, computed transposed (rows
	 * hidden long, not vocab long: faster) on a transposed copy of its
	 * gradient; out.bias += sum dz; d = dz out.weight^T. */
	{
		size_t h = (size_t)c->hidden[nl - 1];
		float *gw = grad + m->t[2 * nl].offset;
		float *gb = grad + m->t[2 * nl + 1].offset;

		transpose(n, v, w->z, w->tr);
		transpose(h, v, gw, w->wt);
		mm(v, h, n, w->tr, n, w->act[nl - 1], h, w->wt, h, 1);
		transpose(v, h, w->wt, gw);
		add_rows(n, v, w->z, gb);
		transpose(h, v, weight(m, nl), w->wt);
		d = w->d[0];
		mm(n, h, v, w->z, v, w->wt, h, d, h, 0);
	}

	/* Hidden layers, last to first: back through tanh, then the same
	 * three products. */
	dnext = w->d[1];
	for (int l = nl - 1; l >= 1; l--) {
		size_t in = layer_in(c, l), out = layer_out(c, l);
		float *gw = grad + m->t[2 * l].offset;
		float *gb = grad + m->t[2 * l + 1].offset;
		float *tmp;

		tanh_back(n * out, w->act[l], d);
		transpose(n, in, w->act[l - 1], w->tr);
		mm(in, out, n, w->tr, n, d, out, gw, out, 1);
		add_rows(n, out, d, gb);
		transpose(in, out, weight(m, l), w->wt);
		mm(n, in, out, d, out, w->wt, in, dnext, in, 0);
		tmp = d;
		d = dnext;
		dnext = tmp;
	}

	/* Layer 0: in.bias += sum d, in.weight's rows by scatter. */
	tanh_back(n * (size_t)c->hidden[0], w->act[0], d);
	add_rows(n, (size_t)c->hidden[0], d, grad + m->t[1].offset);
	layer0_backward(m, n, b->ctx, d, grad + m->t[0].offset, w);
	return loss;
}

void nn_logprobs(const struct nn_model *m, size_t n, const uint8_t *ctx,
		 float *out, struct nn_work *w)
{
	size_t v = (size_t)m->cfg.vocab;
	float *e = w->tr, *s = w->d[0];

	if (n == 0)
		return;
	check_work(m, n, w);
	forward(m, n, ctx, w);
	/* z - max - log sum exp(z - max) */
	softmax_rows(n, v, w->z, e, s);
	for (size_t i = 0; i < n; i++) {
		float lse = flog(s[i]);

		for (size_t j = 0; j < v; j++)
			out[i * v + j] = w->z[i * v + j] - lse;
	}
}

/* ---- Adam ---- */

int nn_adam_init(struct nn_adam *a, size_t nparams, struct err *err)
{
	memset(a, 0, sizeof(*a));
	a->beta1 = 0.9f;
	a->beta2 = 0.999f;
	a->eps = 1e-8f;
	a->weight_decay = 0.0f;
	a->clip = 1.0f;
	a->m = calloc(nparams ? nparams : 1, sizeof(float));
	a->v = calloc(nparams ? nparams : 1, sizeof(float));
	if (!a->m || !a->v) {
		nn_adam_free(a);
		return err_set(err, ERR_NOMEM, "adam: out of memory for %zu parameters",
			       nparams);
	}
	a->n = nparams;
	return 0;
}

void nn_adam_free(struct nn_adam *a)
{
	if (!a)
		return;
	free(a->m);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

/* x^t by squaring, in plain multiplications (libm's pow differs by CPU). */
static double powi(double x, long long t)
{
	double r = 1.0;

	while (t > 0) {
		if (t & 1)
			r *= x;
		x *= x;
		t >>= 1;
	}
	return r;
}

/* The squared L2 norm of g in double: eight lane sums (g[i] goes to lane
 * i % 8, which vectorises) added lane 0 to 7 at the end. Fixed order. */
HOT static double sumsq(const float *restrict g, size_t n)
{
	double lane[8] = { 0 }, s = 0.0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			lane[l] += (double)g[i + l] * (double)g[i + l];
	for (int l = 0; i < n; i++, l++)
		lane[l] += (double)g[i] * (double)g[i];
	for (int l = 0; l < 8; l++)
		s += lane[l];
	return s;
}

/* The per-parameter update of nn_adam_step, with its scalars worked out.
 * (sqrtf vectorises only where the compiler may ignore errno: with
 * -fno-math-errno, which changes no result.) */
struct adam_coefs {
	float coef, b1, b2, c1, c2, step, rbc2, eps, decay;
};

HOT static void adam_update(size_t n, float *restrict p,
			    const float *restrict grad, float *restrict m,
			    float *restrict v, struct adam_coefs k)
{
	for (size_t i = 0; i < n; i++) {
		float g = grad[i] * k.coef;

		m[i] = k.b1 * m[i] + k.c1 * g;
		v[i] = k.b2 * v[i] + k.c2 * (g * g);
		p[i] = p[i] * k.decay -
		       k.step * (m[i] / (sqrtf(v[i]) * k.rbc2 + k.eps));
	}
}

/* The update, as PyTorch's AdamW writes it:
 *   g = grad * clip_coef
 *   p = p * (1 - lr * wd)
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * with clip_coef = clip / norm when norm > clip > 0, else 1. Weight decay
 * applies to every parameter, biases included. */
double nn_adam_step(struct nn_adam *a, float *params, const float *grad,
		    float lr)
{
	double norm = sqrt(sumsq(grad, a->n));
	struct adam_coefs k;

	a->t++;
	k.coef = 1.0f;
	if (a->clip > 0.0f && norm > (double)a->clip)
		k.coef = (float)((double)a->clip / norm);
	k.b1 = a->beta1;
	k.b2 = a->beta2;
	k.c1 = 1.0f - a->beta1;
	k.c2 = 1.0f - a->beta2;
	k.step = (float)((double)lr / (1.0 - powi((double)a->beta1, a->t)));
	k.rbc2 = (float)(1.0 / sqrt(1.0 - powi((double)a->beta2, a->t)));
	k.eps = a->eps;
	k.decay = 1.0f - lr * a->weight_decay;
	adam_update(a->n, params, grad, a->m, a->v, k);
	return norm;
}

float nn_lr_at(long long step, long long total, long long warmup, float lr,
	       float lr_min)
{
	double progress;

	if (step < warmup)
		return (float)((double)lr * (double)(step + 1) / (double)warmup);
	if (total <= warmup)
		return lr_min;
	progress = (double)(step - warmup) / (double)(total - warmup);
	if (progress > 1.0)
		progress = 1.0;
	return (float)((double)lr_min + 0.5 * ((double)lr - (double)lr_min) *
		       (1.0 + cos(3.141592653589793 * progress)));
}

/* ---- Files ---- */

static void shape_of(const struct nn_tensor_view *t, size_t shape[2],
		     size_t *ndim)
{
	shape[0] = t->rows;
	shape[1] = t->cols;
	*ndim = t->cols ? 2 : 1;
}

/* "[a, b]" into buf. */
static void show_shape(const size_t *shape, size_t ndim, char *buf,
		       size_t size)
{
	size_t len = 0;

	len += (size_t)snprintf(buf, size, "[");
	for (size_t i = 0; i < ndim && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%zu",
					i ? ", " : "", shape[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* Tensors to write: PREFIX+NAME for each of the model's tensors, their
 * data at the same offsets in data as in params. */
struct tensor_set {
	const char *prefix;
	const float *data;
};

static int write_file(const struct nn_model *m, const struct tensor_set *sets,
		      size_t nsets, const char *const *meta, size_t nmeta,
		      const char *path, struct err *err)
{
	struct st_writer *wr = NULL;
	char name[64];
	size_t shape[2], ndim;
	int rc;

	rc = st_writer_new(path, &wr, err);
	for (size_t s = 0; !rc && s < nsets; s++)
		for (size_t k = 0; !rc && k < m->ntensors; k++) {
			snprintf(name, sizeof(name), "%s%s", sets[s].prefix,
				 m->t[k].name);
			shape_of(&m->t[k], shape, &ndim);
			rc = st_writer_add(wr, name, ST_F32, shape, ndim, err);
		}
	for (size_t i = 0; !rc && i < nmeta; i++)
		rc = st_writer_set_metadata(wr, meta[2 * i], meta[2 * i + 1], err);
	if (!rc)
		rc = st_writer_begin(wr, err);
	for (size_t s = 0; !rc && s < nsets; s++)
		for (size_t k = 0; !rc && k < m->ntensors; k++) {
			const struct nn_tensor_view *t = &m->t[k];
			size_t numel = t->rows * (t->cols ? t->cols : 1);

			snprintf(name, sizeof(name), "%s%s", sets[s].prefix, t->name);
			rc = st_writer_write(wr, name, 0, sets[s].data + t->offset,
					     numel * sizeof(float), err);
		}
	if (!rc)
		rc = st_writer_commit(wr, err);
	st_writer_free(wr);
	return rc;
}

int nn_model_save(const struct nn_model *m, const char *path, struct err *err)
{
	char window[16], vocab[16], hidden[NN_MAX_LAYERS * 12] = "";
	const char *meta[8] = { "format", "anneal-mlp", "window", window,
				"vocab", vocab, "hidden", hidden };
	struct tensor_set set = { "", m->params };
	size_t len = 0;

	/* For people only: nn_model_load reads the shapes. */
	snprintf(window, sizeof(window), "%d", m->cfg.window);
	snprintf(vocab, sizeof(vocab), "%d", m->cfg.vocab);
	for (int l = 0; l < m->cfg.nlayers; l++)
		len += (size_t)snprintf(hidden + len, sizeof(hidden) - len, "%s%d",
					l ? "," : "", m->cfg.hidden[l]);
	return write_file(m, &set, 1, meta, 4, path, err);
}

/* Checks that f holds exactly the tensors of m's layout once for each
 * prefix (tensor PREFIX+NAME), with m's shapes and a dtype in allowed (a
 * bit set of 1 << dtype). */
static int check_tensors(const struct st_file *f, const struct nn_model *m,
			 const char *const *prefixes, size_t nprefixes,
			 unsigned allowed, struct err *err)
{
	const char *path = st_path(f);
	char name[64], got[64], want[64];
	size_t shape[2], ndim;

	for (size_t i = 0; i < st_count(f); i++) {
		const char *fname = st_tensor(f, i)->name;
		int known = 0;

		for (size_t s = 0; !known && s < nprefixes; s++) {
			size_t plen = strlen(prefixes[s]);

			if (strncmp(fname, prefixes[s], plen))
				continue;
			for (size_t k = 0; !known && k < m->ntensors; k++)
				known = !strcmp(fname + plen, m->t[k].name);
		}
		if (!known)
			return err_set(err, ERR_INVALID,
				       "'%s': tensor '%s': unexpected name", path,
				       fname);
	}
	for (size_t s = 0; s < nprefixes; s++)
		for (size_t k = 0; k < m->ntensors; k++) {
			const struct st_tensor *t;

			snprintf(name, sizeof(name), "%s%s", prefixes[s],
				 m->t[k].name);
			t = st_find(f, name);
			if (!t)
				return err_set(err, ERR_INVALID,
					       "'%s': tensor '%s' is missing",
					       path, name);
			shape_of(&m->t[k], shape, &ndim);
			if (t->ndim != ndim || t->shape[0] != shape[0] ||
			    (ndim == 2 && t->shape[1] != shape[1])) {
				show_shape(t->shape, t->ndim, got, sizeof(got));
				show_shape(shape, ndim, want, sizeof(want));
				return err_set(err, ERR_INVALID,
					       "'%s': tensor '%s': shape %s, "
					       "expected %s", path, name, got,
					       want);
			}
			if (!(allowed & (1u << t->dtype)))
				return err_set(err, ERR_INVALID,
					       "'%s': tensor '%s': dtype %s, "
					       "expected %s", path, name,
					       dtype_name(t->dtype),
					       allowed == (1u << ST_F32) ?
					       "F32" : "F32, BF16 or F16");
		}
	return 0;
}

/* A matrix dimension of tensor name from f, within 1..max: 0, or
 * ERR_INVALID. */
static int dim_of(const struct st_file *f, const char *name, size_t ndim,
		  size_t i, size_t max, size_t *out, struct err *err)
{
	const struct st_tensor *t = st_find(f, name);
	char got[64];

	if (!t)
		return err_set(err, ERR_INVALID, "'%s': tensor '%s' is missing",
			       st_path(f), name);
	if (t->ndim != ndim) {
		show_shape(t->shape, t->ndim, got, sizeof(got));
		return err_set(err, ERR_INVALID,
			       "'%s': tensor '%s': shape %s, expected %zu dimensions",
			       st_path(f), name, got, ndim);
	}
	if (t->shape[i] < 1 || t->shape[i] > max)
		return err_set(err, ERR_INVALID,
			       "'%s': tensor '%s': dimension %zu is %zu, expected 1..%zu",
			       st_path(f), name, i, t->shape[i], max);
	*out = t->shape[i];
	return 0;
}

/* The architecture from the names and shapes: vocab = columns of
 * out.weight, window = rows of in.weight / vocab, hidden sizes = columns
 * of in.weight and hidden.L.weight for L = 1, 2, ... while present. The
 * rest (bias shapes, chained sizes) is checked against the layout. */
static int infer_config(const struct st_file *f, struct nn_config *cfg,
			struct err *err)
{
	size_t vocab, rows, h;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	rc = dim_of(f, "out.weight", 2, 1, NN_MAX_VOCAB, &vocab, err);
	if (!rc)
		rc = dim_of(f, "in.weight", 2, 0, (size_t)NN_MAX_WINDOW * vocab,
			    &rows, err);
	if (!rc)
		rc = dim_of(f, "in.weight", 2, 1, NN_MAX_HIDDEN, &h, err);
	if (rc)
		return rc;
	if (rows % vocab)
		return err_set(err, ERR_INVALID,
			       "'%s': tensor 'in.weight': %zu rows is not a "
			       "multiple of the vocabulary (%zu, columns of "
			       "out.weight)", st_path(f), rows, vocab);
	cfg->vocab = (int)vocab;
	cfg->window = (int)(rows / vocab);
	cfg->hidden[0] = (int)h;
	cfg->nlayers = 1;
	for (int l = 1; l < NN_MAX_LAYERS && st_find(f, weight_names[l]); l++) {
		rc = dim_of(f, weight_names[l], 2, 1, NN_MAX_HIDDEN, &h, err);
		if (rc)
			return rc;
		cfg->hidden[l] = (int)h;
		cfg->nlayers++;
	}
	if (nn_config_check(cfg, err))
		return err_prefix(err, "'%s'", st_path(f));
	return 0;
}

/* params[k's range] = tensor k converted to float. */
static void read_tensors(const struct st_file *f, const struct nn_model *m,
			 const char *prefix, float *dst)
{
	char name[64];

	for (size_t k = 0; k < m->ntensors; k++) {
		const struct st_tensor *t;

		snprintf(name, sizeof(name), "%s%s", prefix, m->t[k].name);
		t = st_find(f, name);
		dtype_to_f32(t->dtype, t->data, dst + m->t[k].offset, t->numel);
	}
}

int nn_model_load(struct nn_model *m, const char *path, struct err *err)
{
	static const char *const plain[] = { "" };
	unsigned allowed = 1u << ST_F32 | 1u << ST_BF16 | 1u << ST_F16;
	struct st_file *f = NULL;
	struct nn_config cfg;
	int rc;

	memset(m, 0, sizeof(*m));
	rc = st_open(path, &f, err);
	if (rc)
		goto done;
	rc = infer_config(f, &cfg, err);
	if (rc)
		goto done;
	rc = model_alloc(m, &cfg, err);
	if (rc)
		goto done;
	rc = check_tensors(f, m, plain, 1, allowed, err);
	if (rc) {
		nn_model_free(m);
		goto done;
	}
	read_tensors(f, m, "", m->params);
done:
	st_close(f);
	return rc;
}

int nn_adam_save(const struct nn_adam *a, const struct nn_model *m,
		 const char *path, struct err *err)
{
	char t[32];
	const char *meta[4] = { "format", "anneal-adam", "t", t };
	struct tensor_set sets[2] = { { "m.", a->m }, { "v.", a->v } };

	assert(a->n == m->nparams);
	snprintf(t, sizeof(t), "%lld", a->t);
	return write_file(m, sets, 2, meta, 2, path, err);
}

int nn_adam_load(struct nn_adam *a, const struct nn_model *m,
		 const char *path, struct err *err)
{
	static const char *const prefixes[] = { "m.", "v." };
	struct st_file *f = NULL;
	const char *ts;
	long long t = 0;
	int rc;

	rc = st_open(path, &f, err);
	if (rc)
		goto done;
	ts = st_metadata_get(f, "t");
	if (!ts || parse_int(ts, 0, LLONG_MAX, &t)) {
		rc = err_set(err, ERR_INVALID,
			     "'%s': metadata 't' is %s, expected a step count",
			     path, ts ? ts : "missing");
		goto done;
	}
	rc = check_tensors(f, m, prefixes, 2, 1u << ST_F32, err);
	if (rc)
		goto done;
	if (!a->m) {
		rc = nn_adam_init(a, m->nparams, err);
		if (rc)
			goto done;
	}
	assert(a->n == m->nparams);
	read_tensors(f, m, "m.", a->m);
	read_tensors(f, m, "v.", a->v);
	a->t = t;
done:
	st_close(f);
	return rc;
}
