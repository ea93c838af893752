/* artifacts/merge.c — mergekit's merge methods over flat float arrays.
 *
 * The workload: one call per tensor, tensors from a few thousand to a few
 * hundred million elements, two to a handful of inputs, called from the
 * streaming merger's worker threads. Linear must run at memory speed, so
 * every elementwise pass works in chunks of CHUNK elements whose partial
 * sums stay in L1 and whose loops the compiler vectorises. TIES needs the
 * k-th largest |tau| of each input: a strided sample brackets it, one pass
 * counts what lies above the bracket and copies what lies inside, and a
 * selection over that small copy finishes (a radix pass narrows it to one
 * bucket, quickselect ends); the same selection over every magnitude is
 * the fallback. Ties at the threshold are cut in index order by a count
 * from the nearer end. So TIES reads each input about twice, linear once.
 * The TIES passes are also compiled for AVX2 and AVX-512 (CLONES).
 *
 * For TIES and DARE over F32, F16 and BF16 tensors the merger calls
 * merge_tensor_stream instead (its own section below): the same bits,
 * from the tensors as the file stores them, in L1-sized steps, without
 * float copies of them: one
 * pass finds every input's threshold, one merges, ties at the threshold
 * cut as that pass goes. The whole-array kernels remain the reference
 * (the tests compare the two) and the path of everything else.
 *
 * The kernels exist in float and double. Rather than a macro a hundred
 * lines long, the second half of this file is a template that the first
 * half includes twice (with T = float, then T = double). */
#ifndef MERGE_T

#include "artifacts/merge.h"

#include <assert.h>
#include <float.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/dtype.h"
#include "artifacts/vec.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"

/* Elements per chunk of an elementwise pass: rows of ninputs x CHUNK
 * values plus three accumulators stay in L1/L2. */
#define CHUNK 512
/* TIES: sample size that brackets the threshold, and the size below which
 * a plain quickselect over every magnitude is as cheap. */
#define SAMPLE 16384
#define SAMPLE_MIN (8 * SAMPLE)
/* Half-width of the bracket, in sample ranks: the rank of the threshold in
 * a sample of 16384 has a standard deviation of at most 64. */
#define SAMPLE_MARGIN 320
/* The bracketing pass copies the values inside the bracket (about 4% of
 * them) by groups of GROUP elements, skipping the empty groups. */
#define GROUP 16
/* TIES's selection: buckets of the first pass, and the size below which a
 * quickselect alone is as cheap. */
#define RADIX 2048
#define RADIX_MIN 4096

/* mergekit's constants. */
#define SLERP_DOT_THRESHOLD 0.9995
#define SLERP_EPS 1e-8
#define STOCK_NORM_MIN 1e-6
#define DIVISOR_EPS 1e-8
#define L1_EPS 1e-7

#define GOLDEN 0x9E3779B97F4A7C15ULL

/* The chunk kernels are inlined twice: once with n = CHUNK, a constant. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The sparsifying methods' kernel (gta) is compiled CLONES and
 * NO_CONTRACT (artifacts/vec.h): the same bits from gcc and clang, on any
 * x86-64. */

/* ---- methods and parameters ---------------------------------------- */

static const char *const method_names[MERGE_NMETHODS] = {
	[MERGE_LINEAR] = "linear",
	[MERGE_TASK_ARITHMETIC] = "task_arithmetic",
	[MERGE_TIES] = "ties",
	[MERGE_DARE_LINEAR] = "dare_linear",
	[MERGE_DARE_TIES] = "dare_ties",
	[MERGE_SLERP] = "slerp",
	[MERGE_MODEL_STOCK] = "model_stock",
};

enum param_id { P_LAMBDA, P_DENSITY, P_T, P_NORMALIZE, P_RESCALE,
		P_CONSENSUS, NPARAMS };

static const char *const param_names[NPARAMS] = {
	"lambda", "density", "t", "normalize", "rescale", "consensus",
};

#define BIT(p) (1u << (p))
#define GTA_PARAMS (BIT(P_LAMBDA) | BIT(P_DENSITY) | BIT(P_NORMALIZE) | \
		    BIT(P_RESCALE))

/* Which parameters each method takes (mergekit's names). */
static const unsigned method_params[MERGE_NMETHODS] = {
	[MERGE_LINEAR] = BIT(P_NORMALIZE),
	[MERGE_TASK_ARITHMETIC] = BIT(P_LAMBDA) | BIT(P_NORMALIZE),
	[MERGE_TIES] = GTA_PARAMS | BIT(P_CONSENSUS),
	[MERGE_DARE_LINEAR] = GTA_PARAMS,
	[MERGE_DARE_TIES] = GTA_PARAMS | BIT(P_CONSENSUS),
	[MERGE_SLERP] = BIT(P_T),
	[MERGE_MODEL_STOCK] = 0,
};

static const char *const rescale_names[] = { "none", "density", "l1" };
static const char *const consensus_names[] = { "sum", "count" };

struct merge_rule {
	char *pattern;
	struct merge_params p;
	unsigned set;  /* BIT(param) for each parameter the rule overrides */
};

struct merge_spec {
	enum merge_method method;
	uint64_t seed;
	struct merge_params p;
	struct merge_rule *rules;
	size_t nrules;
};

int merge_method_parse(const char *name, enum merge_method *out,
		       struct err *err)
{
	const char *hint;
	for (int m = 0; m < MERGE_NMETHODS; m++) {
		if (strcmp(name, method_names[m]) == 0) {
			*out = (enum merge_method)m;
			return 0;
		}
	}
	hint = did_you_mean(name, method_names, MERGE_NMETHODS);
	if (hint)
		return err_set(err, ERR_INVALID,
			       "unknown merge method '%s' (did you mean '%s'?)",
			       name, hint);
	return err_set(err, ERR_INVALID, "unknown merge method '%s' (known: "
		       "linear, task_arithmetic, ties, dare_linear, dare_ties, "
		       "slerp, model_stock)", name);
}

const char *merge_method_name(enum merge_method m)
{
	return (unsigned)m < MERGE_NMETHODS ? method_names[m] : "?";
}

int merge_method_needs_base(enum merge_method m)
{
	return m != MERGE_LINEAR;
}

struct merge_spec *merge_spec_new(enum merge_method m)
{
	struct merge_spec *s = xcalloc(1, sizeof(*s));
	assert((unsigned)m < MERGE_NMETHODS);
	s->method = m;
	s->p.lambda = 1.0;
	s->p.density = 1.0;
	s->p.t = NAN;
	/* mergekit's defaults: linear and ties normalize; dare_* rescale. */
	s->p.normalize = m == MERGE_LINEAR || m == MERGE_TIES;
	s->p.rescale = (m == MERGE_DARE_LINEAR || m == MERGE_DARE_TIES)
		? MERGE_RESCALE_L1 : MERGE_RESCALE_NONE;
	s->p.consensus = MERGE_CONSENSUS_SUM;
	return s;
}

void merge_spec_free(struct merge_spec *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nrules; i++)
		free(s->rules[i].pattern);
	free(s->rules);
	free(s);
}

enum merge_method merge_spec_method(const struct merge_spec *s)
{
	return s->method;
}

void merge_spec_set_seed(struct merge_spec *s, uint64_t seed)
{
	s->seed = seed;
}

static void list_params(struct buf *b, unsigned mask)
{
	int first = 1;
	for (int p = 0; p < NPARAMS; p++) {
		if (!(mask & BIT(p)))
			continue;
		buf_printf(b, "%s%s", first ? "" : ", ", param_names[p]);
		first = 0;
	}
}

static int unknown_param(const struct merge_spec *s, const char *key,
			 struct err *err)
{
	const char *mname = method_names[s->method];
	unsigned mask = method_params[s->method];
	const char *cands[NPARAMS];
	size_t n = 0;
	const char *hint;
	struct buf known = BUF_INIT;
	int rc;

	if (mask == 0)
		return err_set(err, ERR_INVALID, "method '%s' takes no "
			       "parameters (got '%s')", mname, key);
	for (int p = 0; p < NPARAMS; p++)
		if (mask & BIT(p))
			cands[n++] = param_names[p];
	buf_init(&known);
	list_params(&known, mask);
	for (int p = 0; p < NPARAMS; p++) {
		if (strcmp(key, param_names[p]) == 0) {
			rc = err_set(err, ERR_INVALID, "parameter '%s' does not "
				     "apply to method '%s' (it takes: %s)", key,
				     mname, buf_str(&known));
			goto done;
		}
	}
	hint = did_you_mean(key, cands, n);
	if (hint)
		rc = err_set(err, ERR_INVALID, "unknown parameter '%s' for "
			     "method '%s' (did you mean '%s'?)", key, mname,
			     hint);
	else
		rc = err_set(err, ERR_INVALID, "unknown parameter '%s' for "
			     "method '%s' (it takes: %s)", key, mname,
			     buf_str(&known));
done:
	buf_free(&known);
	return rc;
}

static int parse_number(const char *v, double *out)
{
	char *end;
	double d;
	if (!*v)
		return -1;
	d = strtod(v, &end);
	if (*end || !isfinite(d))
		return -1;
	*out = d;
	return 0;
}

static int parse_word(const char *v, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v, words[i]) == 0)
			return (int)i;
	return -1;
}

/* Parses key=value (key and value already split) into *p, marking *set. */
static int set_param(const struct merge_spec *s, const char *key,
		     const char *val, struct merge_params *p, unsigned *set,
		     struct err *err)
{
	const char *mname = method_names[s->method];
	int id = -1, w;
	double d = 0;

	for (int i = 0; i < NPARAMS; i++)
		if (strcmp(key, param_names[i]) == 0 &&
		    (method_params[s->method] & BIT(i)))
			id = i;
	if (id < 0)
		return unknown_param(s, key, err);

	switch (id) {
	case P_LAMBDA:
	case P_DENSITY:
	case P_T:
		if (parse_number(val, &d) < 0)
			return err_set(err, ERR_INVALID, "parameter '%s' for "
				       "method '%s': '%s' is not a number", key,
				       mname, val);
		if (id != P_LAMBDA && !(d >= 0 && d <= 1))
			return err_set(err, ERR_INVALID, "parameter '%s' for "
				       "method '%s': '%s' is not in [0, 1]", key,
				       mname, val);
		if (id == P_LAMBDA)
			p->lambda = d;
		else if (id == P_DENSITY)
			p->density = d;
		else
			p->t = d;
		break;
	case P_NORMALIZE: {
		static const char *const bools[] = { "false", "true", "0", "1" };
		w = parse_word(val, bools, 4);
		if (w < 0)
			return err_set(err, ERR_INVALID, "parameter '%s' for "
				       "method '%s': '%s' is not a boolean (true "
				       "or false)", key, mname, val);
		p->normalize = w & 1;
		break;
	}
	case P_RESCALE:
		w = parse_word(val, rescale_names, 3);
		/* mergekit's rescale is a boolean: true means l1. */
		if (w < 0 && strcmp(val, "true") == 0)
			w = MERGE_RESCALE_L1;
		if (w < 0 && strcmp(val, "false") == 0)
			w = MERGE_RESCALE_NONE;
		if (w < 0)
			return err_set(err, ERR_INVALID, "parameter '%s' for "
				       "method '%s': '%s' is not one of none, "
				       "density, l1", key, mname, val);
		p->rescale = (enum merge_rescale)w;
		break;
	case P_CONSENSUS:
		w = parse_word(val, consensus_names, 2);
		if (w < 0)
			return err_set(err, ERR_INVALID, "parameter '%s' for "
				       "method '%s': '%s' is not one of sum, "
				       "count", key, mname, val);
		p->consensus = (enum merge_consensus)w;
		break;
	}
	*set |= BIT(id);
	return 0;
}

/* Splits "k=v" (len bytes of kv) and sets it. */
static int set_kv(const struct merge_spec *s, const char *kv, size_t len,
		  struct merge_params *p, unsigned *set, struct err *err)
{
	char *copy = xstrndup(kv, len);
	char *eq = strchr(copy, '=');
	int rc;

	if (!eq || eq == copy) {
		rc = err_set(err, ERR_INVALID, "parameter for method '%s': "
			     "expected k=v, got '%s'", method_names[s->method],
			     copy);
		goto done;
	}
	*eq = '\0';
	rc = set_param(s, copy, eq + 1, p, set, err);
done:
	free(copy);
	return rc;
}

int merge_spec_set(struct merge_spec *s, const char *kv, struct err *err)
{
	unsigned set = 0;
	return set_kv(s, kv, strlen(kv), &s->p, &set, err);
}

int merge_spec_add_rule(struct merge_spec *s, const char *pattern,
			const char *kvs, struct err *err)
{
	struct merge_rule r;
	const char *c = kvs;
	int rc = 0;

	memset(&r, 0, sizeof(r));
	if (!*pattern)
		return err_set(err, ERR_INVALID, "rule: empty tensor pattern");
	r.p = s->p;
	for (;;) {
		size_t len;
		c += strspn(c, ", \t\n");
		if (!*c)
			break;
		len = strcspn(c, ", \t\n");
		rc = set_kv(s, c, len, &r.p, &r.set, err);
		if (rc < 0) {
			err_prefix(err, "rule '%s'", pattern);
			goto done;
		}
		c += len;
	}
	if (!r.set) {
		rc = err_set(err, ERR_INVALID, "rule '%s': no parameters",
			     pattern);
		goto done;
	}
	r.pattern = xstrdup(pattern);
	s->rules = xrealloc(s->rules, (s->nrules + 1) * sizeof(*s->rules));
	s->rules[s->nrules++] = r;
done:
	return rc;
}

int merge_spec_check(const struct merge_spec *s, struct err *err)
{
	if (s->method != MERGE_SLERP || !isnan(s->p.t))
		return 0;
	for (size_t i = 0; i < s->nrules; i++)
		if (s->rules[i].set & BIT(P_T))
			return 0;
	return err_set(err, ERR_INVALID, "method 'slerp' needs parameter 't' "
		       "(t=0 gives the base, t=1 the other model)");
}

void merge_spec_params(const struct merge_spec *s, const char *name,
		       struct merge_params *out)
{
	*out = s->p;
	for (size_t i = 0; i < s->nrules; i++) {
		const struct merge_rule *r = &s->rules[i];
		if (fnmatch(r->pattern, name, 0) != 0)
			continue;
		if (r->set & BIT(P_LAMBDA))
			out->lambda = r->p.lambda;
		if (r->set & BIT(P_DENSITY))
			out->density = r->p.density;
		if (r->set & BIT(P_T))
			out->t = r->p.t;
		if (r->set & BIT(P_NORMALIZE))
			out->normalize = r->p.normalize;
		if (r->set & BIT(P_RESCALE))
			out->rescale = r->p.rescale;
		if (r->set & BIT(P_CONSENSUS))
			out->consensus = r->p.consensus;
		return;
	}
}

static void describe_params(struct buf *b, const struct merge_params *p,
			    unsigned mask)
{
	const char *sep = "";
	for (int id = 0; id < NPARAMS; id++) {
		if (!(mask & BIT(id)))
			continue;
		buf_printf(b, "%s%s=", sep, param_names[id]);
		sep = " ";
		switch (id) {
		case P_LAMBDA: buf_add_num(b, p->lambda); break;
		case P_DENSITY: buf_add_num(b, p->density); break;
		case P_T:
			if (isnan(p->t))
				buf_adds(b, "unset");
			else
				buf_add_num(b, p->t);
			break;
		case P_NORMALIZE:
			buf_adds(b, p->normalize ? "true" : "false");
			break;
		case P_RESCALE: buf_adds(b, rescale_names[p->rescale]); break;
		case P_CONSENSUS:
			buf_adds(b, consensus_names[p->consensus]);
			break;
		}
	}
}

void merge_spec_describe(const struct merge_spec *s, struct buf *out)
{
	unsigned mask = method_params[s->method];
	buf_adds(out, method_names[s->method]);
	if (mask) {
		buf_addc(out, ' ');
		describe_params(out, &s->p, mask);
	}
	if (s->method == MERGE_DARE_LINEAR || s->method == MERGE_DARE_TIES)
		buf_printf(out, " seed=%llu", (unsigned long long)s->seed);
	for (size_t i = 0; i < s->nrules; i++) {
		buf_printf(out, " [rule '%s': ", s->rules[i].pattern);
		describe_params(out, &s->rules[i].p, s->rules[i].set);
		buf_addc(out, ']');
	}
}

/* ---- DARE's PRNG ----------------------------------------------------- */

/* splitmix64's output function (Steele, Lea, Flood 2014). */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* The (index+1)-th output of splitmix64 started at key, top 53 bits: a
 * counter-based draw, so any element's draw is computed without the
 * others and chunking cannot change it. */
static inline uint64_t dare_draw53(uint64_t key, uint64_t index)
{
	return mix64(key + (index + 1) * GOLDEN) >> 11;
}

/* key = the first 8 bytes, little-endian, of
 * SHA-256(seed as 8 bytes LE || input as 8 bytes LE || name). */
static uint64_t dare_key(uint64_t seed, const char *name, size_t input)
{
	size_t len = strlen(name);
	unsigned char small[256], *msg = small;
	uint64_t in = input, key = 0;
	struct digest d;

	if (16 + len > sizeof(small))
		msg = xmalloc(16 + len);
	for (int i = 0; i < 8; i++) {
		msg[i] = (unsigned char)(seed >> (8 * i));
		msg[8 + i] = (unsigned char)(in >> (8 * i));
	}
	memcpy(msg + 16, name, len);
	sha256_buf(msg, 16 + len, &d);
	for (int i = 7; i >= 0; i--)
		key = (key << 8) | d.b[i];
	if (msg != small)
		free(msg);
	return key;
}

double merge_dare_uniform(uint64_t seed, const char *name, size_t input,
			  uint64_t index)
{
	return (double)dare_draw53(dare_key(seed, name, input), index) *
		0x1p-53;
}

/* keep iff draw53 < ceil(density * 2^53), i.e. draw53 * 2^-53 < density */
static uint64_t dare_threshold(double density)
{
	return (uint64_t)ceil(density * 0x1p53);
}

/* ---- shared kernel state ---------------------------------------------- */

enum keep_mode {
	KEEP_ALL,   /* density >= 1, or no sparsification */
	KEEP_NONE,  /* density 0 (or k = 0) */
	KEEP_TOPK,  /* ties: |tau| > th, or == th at an index < cut */
	KEEP_DARE,  /* draw53 < thr */
};

struct input_state {
	enum keep_mode mode;
	double th;        /* KEEP_TOPK: the k-th largest magnitude */
	size_t cut;       /* KEEP_TOPK: elements equal to th kept below this */
	uint64_t key;     /* KEEP_DARE */
	uint64_t thr;     /* KEEP_DARE */
	double scale;     /* rescale factor of kept values */
	size_t pending;   /* KEEP_TOPK, streamed: ties at th still to keep
			     before the cut is known (cut is SIZE_MAX until
			     then); 0 when the cut is known or not needed */
};

static int grow(void **p, size_t *cap, size_t need, struct err *err)
{
	void *n;
	if (*cap >= need)
		return 0;
	n = realloc(*p, need);
	if (!n)
		return err_set(err, ERR_NOMEM, "out of memory (merge scratch "
			       "of %zu bytes)", need);
	*p = n;
	*cap = need;
	return 0;
}

void merge_scratch_free(struct merge_scratch *sc)
{
	if (!sc)
		return;
	free(sc->sel);
	free(sc->rows);
	free(sc->inputs);
	memset(sc, 0, sizeof(*sc));
}

static int check_args(const struct merge_spec *spec, const char *name,
		      const void *base, size_t ninputs,
		      const double *weights, const struct merge_params *p,
		      struct err *err)
{
	enum merge_method m = spec->method;
	const char *mn = method_names[m];

	if (m != MERGE_LINEAR && !base)
		return err_set(err, ERR_INVALID, "tensor '%s': method '%s' "
			       "needs a base model", name, mn);
	if (m == MERGE_LINEAR && ninputs < 1)
		return err_set(err, ERR_INVALID, "tensor '%s': method 'linear' "
			       "needs at least one model", name);
	if (m == MERGE_SLERP && ninputs != 1)
		return err_set(err, ERR_INVALID, "tensor '%s': method 'slerp' "
			       "takes exactly one model besides the base "
			       "(got %zu)", name, ninputs);
	if (m == MERGE_MODEL_STOCK && ninputs < 2)
		return err_set(err, ERR_INVALID, "tensor '%s': method "
			       "'model_stock' needs at least two models "
			       "besides the base (got %zu)", name, ninputs);
	if (m == MERGE_SLERP && isnan(p->t))
		return err_set(err, ERR_INVALID, "tensor '%s': method 'slerp' "
			       "needs parameter 't' (no rule sets it for this "
			       "tensor)", name);
	for (size_t i = 0; weights && i < ninputs; i++)
		if (!isfinite(weights[i]))
			return err_set(err, ERR_INVALID, "tensor '%s': the "
				       "weight of input %zu is not finite",
				       name, i);
	return 0;
}

static double weight_of(const double *weights, size_t i)
{
	return weights ? weights[i] : 1.0;
}

/* The refusals of non-finite values (docs/merging.md), shared by the
 * kernels and the streamed path. */
static int refuse_base(struct err *err, const char *name, enum merge_method m,
		       int nan, size_t j)
{
	return err_set(err, ERR_INVALID, "tensor '%s': base has %s at element "
		       "%zu; method '%s' needs finite values", name,
		       nan ? "NaN" : "Inf", j, method_names[m]);
}

static int refuse_input(struct err *err, const char *name,
			enum merge_method m, size_t i, int nan, size_t j)
{
	return err_set(err, ERR_INVALID, "tensor '%s': input %zu has %s at "
		       "element %zu; method '%s' needs finite values", name, i,
		       nan ? "NaN" : "Inf", j, method_names[m]);
}

static int refuse_overflow(struct err *err, const char *name,
			   enum merge_method m, size_t i, size_t j)
{
	return err_set(err, ERR_INVALID, "tensor '%s': input %zu minus base "
		       "overflows at element %zu; method '%s' needs finite "
		       "task vectors", name, i, j, method_names[m]);
}

static int refuse_norm(struct err *err, const char *name, enum merge_method m)
{
	return err_set(err, ERR_INVALID, "tensor '%s': values too large for "
		       "method '%s' (a norm overflows)", name, method_names[m]);
}

/* ---- the kernels, in float and in double ------------------------------ */

/* T: the element type; MASK: an integer of its width (vectorisable
 * flags); KEY: an unsigned integer of its width (its bits, which order
 * non-negative values); T_MAX: its largest finite value. */
#define MERGE_T float
#define MERGE_FN(x) x##_f32
#define MERGE_ABS fabsf
#define MASK int32_t
#define KEY uint32_t
#define T_MAX FLT_MAX
#include "artifacts/merge.c"
#undef MERGE_T
#undef MERGE_FN
#undef MERGE_ABS
#undef MASK
#undef KEY
#undef T_MAX

#define MERGE_T double
#define MERGE_FN(x) x##_f64
#define MERGE_ABS fabs
#define MASK int64_t
#define KEY uint64_t
#define T_MAX DBL_MAX
#include "artifacts/merge.c"
#undef MERGE_T
#undef MERGE_FN
#undef MERGE_ABS
#undef MASK
#undef KEY
#undef T_MAX

/* ---- the sparsifying methods, streamed ---------------------------------- */

/* merge_tensor_stream: ties, dare_linear and dare_ties over tensors as a
 * file stores them (F32, F16, BF16), with the bits of merge_tensor_f32 on
 * the converted tensors but no float copy of them. The passes run in
 * steps of SCHUNK elements. F32 and BF16 are read in place by the hot
 * loops (a bf16 value is its bits << 16 as a float), so that their memory
 * reads overlap the arithmetic; F16 steps are converted into L1 buffers
 * first, as are the steps the generic code (gta_chunk) computes.
 *
 *  1. TIES, per input: the k-th largest |tau| (its value th, and how many
 *     lie above and at it). A strided sample brackets it as topk does;
 *     one pass, for every input at once, counts the magnitudes above hi,
 *     equal to hi, equal to lo, and copies those strictly between (about
 *     4%, at most `cap` of them); a quickselect over the copy finishes.
 *     Counting those equal to lo and hi apart keeps large groups of equal
 *     magnitudes (task vectors of bf16 weights are multiples of a few
 *     ulps) out of the copy. When the bracket misses or the copy would
 *     overflow (a sample that is not representative), passes of a
 *     2048-bucket histogram over the magnitudes' bits narrow the range,
 *     each bucket with its least and greatest key so that a bucket holding
 *     one value settles at once, until it holds one value or fits the copy.
 *  2. rescale=l1 only: l1_scale's sums, in double, in index order.
 *  3. One pass that sparsifies, elects signs, takes the disjoint mean and
 *     hands each step's float results to the caller: TIES' common case in
 *     one fused loop (ties_fused), the rest with gta_chunk. Ties at th are
 *     kept in index order: the step that holds the last one kept is found
 *     by counting them as the pass goes (tie_cut finds the same index with
 *     a pass of its own).
 *
 * A non-finite task vector (hence any NaN or Inf in the inputs) is
 * refused with the kernel's message, the culprit found by a last pass in
 * the kernel's order. */

/* Elements per step: what a step converts, and the rows and output of
 * one, stay in L1. A multiple of CHUNK. */
#define SCHUNK MERGE_STREAM_STEP
/* TIES with up to this many inputs is computed by ties_fused. */
#define TIES_FUSED_MAX 4

struct stream {
	enum merge_method m;
	enum st_dtype dt;
	size_t width;
	int conv;         /* F16: steps are converted to float first */
	int bf16;         /* BF16: read in place, as bits << 16 */
	const unsigned char *base;
	const unsigned char *const *in;
	size_t ninputs, numel;
	const unsigned char **src;  /* ninputs: a step's sources */
	float *bb;        /* SCHUNK: a step of the base, converted */
	float *xb;        /* ninputs x SCHUNK: of each input */
	float *rows;      /* ninputs x CHUNK: gta_chunk's rows */
	float *out;       /* SCHUNK: a step of the result */
	size_t cap;       /* magnitudes a selection copies at most */
};

/* One input's top-k selection. */
struct pick {
	size_t input;
	size_t k;                    /* keep the k largest magnitudes */
	float lo, hi;                /* the bracket of the last pass */
	size_t gt, eqhi, mid, eqlo;  /* its counts: > hi, == hi, inside, == lo */
	float *sel;                  /* cap + CHUNK: the inside magnitudes */
	size_t nc;                   /* how many were copied */
	int full;                    /* the copy overflowed: nc < mid */
	int done;
	float th;                    /* done: the k-th largest magnitude, */
	size_t count_gt, count_eq;   /* and how many are above and equal */
};

/* Element j of a step source: a float (F32 in the file, or converted), or
 * with bf16 a BF16 value (whose NaNs are not made quiet, as the
 * conversion makes them: a NaN is refused whatever its bits). */
static ALWAYS_INLINE float ld(const unsigned char *p, size_t j, int bf16)
{
	if (bf16) {
		uint16_t h;
		memcpy(&h, p + 2 * j, sizeof(h));
		return dtype_bitsf((uint32_t)h << 16);
	}
	{
		float f;
		memcpy(&f, p + 4 * j, sizeof(f));
		return f;
	}
}

/* Elements [j0, j0 + n) of src converted to float into dst. */
static void stream_load(const struct stream *s, const unsigned char *src,
			size_t j0, size_t n, float *dst)
{
	dtype_to_f32(s->dt, src + j0 * s->width, dst, n);
}

/* The source of elements [j0, j0 + n) of src for the loops that read in
 * place: the file's bytes, or (F16) their conversion into buf. */
static const unsigned char *step_src(const struct stream *s,
				     const unsigned char *src, size_t j0,
				     size_t n, float *buf)
{
	if (!s->conv)
		return src + j0 * s->width;
	stream_load(s, src, j0, n, buf);
	return (const unsigned char *)buf;
}

/* One block of a bracketing pass (n = CHUNK but for the last block): the
 * counts (vectorised), then the copy of the magnitudes strictly inside
 * (lo, hi), by groups as in bracket_block, while they fit. Returns
 * nonzero if a magnitude was not finite. */
static ALWAYS_INLINE int32_t stream_block(const unsigned char *x,
					  const unsigned char *b, size_t n,
					  int bf16, float lo, float hi,
					  struct pick *pk, size_t cap)
{
	float blk[CHUNK];
	unsigned char flag[CHUNK];
	int32_t bad = 0, in = 0, gt = 0, eqhi = 0, eqlo = 0;

	for (size_t j = 0; j < n; j++) {
		float m = fabsf(ld(x, j, bf16) - ld(b, j, bf16));
		int32_t f = (int32_t)(m > lo) & (int32_t)(m < hi);
		blk[j] = m;
		flag[j] = (unsigned char)f;
		bad |= (int32_t)!(m <= FLT_MAX);
		in += f;
		gt += (int32_t)(m > hi);
		eqhi += (int32_t)(m == hi);
		eqlo += (int32_t)(m == lo);
	}
	pk->gt += (size_t)gt;
	pk->eqhi += (size_t)eqhi;
	pk->eqlo += (size_t)eqlo;
	pk->mid += (size_t)in;
	if (in == 0 || bad || pk->full)
		return bad;
	if (pk->nc + (size_t)in > cap) {
		pk->full = 1;
		return bad;
	}
	pk->nc = compact_flagged_f32(pk->sel, pk->nc, blk, flag, n);
	return bad;
}

static ALWAYS_INLINE int32_t bracket_step(const struct stream *s,
					  struct pick *const *list, size_t n,
					  size_t j0, size_t len, int bf16)
{
	const size_t w = bf16 ? 2 : 4;
	const unsigned char *b = step_src(s, s->base, j0, len, s->bb);
	int32_t bad = 0;

	for (size_t q = 0; q < n; q++) {
		struct pick *pk = list[q];
		const unsigned char *x = step_src(s, s->in[pk->input], j0, len,
						  s->xb);
		for (size_t o = 0; o < len; o += CHUNK) {
			if (len - o >= CHUNK)
				bad |= stream_block(x + o * w, b + o * w, CHUNK,
						    bf16, pk->lo, pk->hi, pk,
						    s->cap);
			else
				bad |= stream_block(x + o * w, b + o * w,
						    len - o, bf16, pk->lo,
						    pk->hi, pk, s->cap);
		}
	}
	return bad;
}

/* A bracketing pass over the inputs of the n picks, each with its own
 * [lo, hi]. Returns 1 if a magnitude was not finite. */
static CLONES NO_CONTRACT int stream_bracket(const struct stream *s,
					     struct pick *const *list, size_t n)
{
	int32_t bad = 0;

	for (size_t q = 0; q < n; q++) {
		struct pick *pk = list[q];
		pk->gt = pk->eqhi = pk->mid = pk->eqlo = pk->nc = 0;
		pk->full = 0;
	}
	for (size_t j0 = 0; j0 < s->numel && !bad; j0 += SCHUNK) {
		size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
		bad = s->bf16 ? bracket_step(s, list, n, j0, len, 1)
			: bracket_step(s, list, n, j0, len, 0);
	}
	return bad != 0;
}

static void pick_found(struct pick *pk, float th, size_t gt, size_t eq)
{
	pk->th = th;
	pk->count_gt = gt;
	pk->count_eq = eq;
	pk->done = 1;
}

/* After a bracketing pass: settles pk if its threshold is hi, lo, or
 * inside and copied; else sets [*klo, *khi], the keys (bits of the
 * magnitudes, which order them) that hold it, and returns 0. */
static int pick_settle(struct pick *pk, uint32_t *klo, uint32_t *khi)
{
	size_t k = pk->k, a = pk->gt;
	size_t eqlo = pk->lo == pk->hi ? 0 : pk->eqlo;  /* counted as eqhi */
	uint32_t kl = dtype_fbits(pk->lo), kh = dtype_fbits(pk->hi);

	if (k <= a) {
		*klo = kh + 1;
		*khi = dtype_fbits(FLT_MAX);
		return 0;
	}
	if (k <= a + pk->eqhi) {
		pick_found(pk, pk->hi, a, pk->eqhi);
		return 1;
	}
	a += pk->eqhi;
	if (k <= a + pk->mid) {
		if (!pk->full) {
			float th;
			size_t cgt, ceq;
			select_mag_f32(pk->sel, pk->mid, pk->mid - (k - a),
				       pk->lo, pk->hi, &th, &cgt, &ceq);
			pick_found(pk, th, a + cgt, ceq);
			return 1;
		}
		*klo = kl + 1;
		*khi = kh - 1;
		return 0;
	}
	a += pk->mid;
	if (k <= a + eqlo) {
		pick_found(pk, pk->lo, a, eqlo);
		return 1;
	}
	/* Below lo; lo > 0 here, since all numel >= k magnitudes are >= 0. */
	assert(kl > 0);
	*klo = 0;
	*khi = kl - 1;
	return 0;
}

/* The bucket of a histogram pass that holds the k-th largest magnitude. */
struct bucket {
	size_t above;        /* magnitudes above the bucket */
	size_t count;        /* in it */
	uint32_t kmin, kmax; /* the least and greatest key in it */
};

/* A histogram pass over the magnitudes of pk's input whose keys are in
 * [klo, khi] (which holds the k-th largest): RADIX buckets, each with its
 * count and its least and greatest key. */
static void stream_hist(const struct stream *s, const struct pick *pk,
			uint32_t klo, uint32_t khi, struct bucket *out)
{
	size_t hist[RADIX] = { 0 }, gt = 0, a, d;
	uint32_t bmin[RADIX], bmax[RADIX];
	unsigned shift = 0;

	while (((khi - klo) >> shift) >= RADIX)
		shift++;
	for (size_t i = 0; i < RADIX; i++) {
		bmin[i] = UINT32_MAX;
		bmax[i] = 0;
	}
	for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
		size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
		stream_load(s, s->base, j0, len, s->bb);
		stream_load(s, s->in[pk->input], j0, len, s->xb);
		for (size_t j = 0; j < len; j++) {
			uint32_t key = dtype_fbits(fabsf(s->xb[j] - s->bb[j]));
			if (key > khi) {
				gt++;
			} else if (key >= klo) {
				size_t b = (key - klo) >> shift;
				hist[b]++;
				bmin[b] = key < bmin[b] ? key : bmin[b];
				bmax[b] = key > bmax[b] ? key : bmax[b];
			}
		}
	}
	/* From the top bucket down to the one that holds rank k. */
	a = gt;
	for (d = (khi - klo) >> shift; d > 0 && pk->k > a + hist[d]; d--)
		a += hist[d];
	assert(pk->k > a && pk->k <= a + hist[d]);
	out->above = a;
	out->count = hist[d];
	out->kmin = bmin[d];
	out->kmax = bmax[d];
}

/* Element j of src, converted as dtype_to_f32 does (but for the bits of
 * a NaN, which is refused whatever they are). */
static inline float stream_one(const struct stream *s, const unsigned char *src,
			       size_t j)
{
	uint16_t h;

	if (s->dt != ST_F16)
		return ld(src, j, s->bf16);
	memcpy(&h, src + 2 * j, sizeof(h));
	return f16_to_f32(h);
}

/* The elements of the strided sample that brackets TIES' threshold (as
 * topk takes it) of src, into smp. */
static void stream_sampled(const struct stream *s, const unsigned char *src,
			   float *smp)
{
	for (size_t i = 0; i < SAMPLE; i++)
		smp[i] = stream_one(s, src, (size_t)((uint64_t)i * s->numel / SAMPLE));
}

/* Brackets pk's threshold from the sample of its magnitudes, as topk
 * does, given the base's sampled elements bs. Returns 1 if a sampled
 * magnitude was not finite. */
static int stream_sample(const struct stream *s, struct pick *pk,
			 const float *bs, float *smp)
{
	const size_t numel = s->numel;
	size_t qs, lo_i, hi_i, le, he;
	int bad = 0;

	stream_sampled(s, s->in[pk->input], smp);
	for (size_t i = 0; i < SAMPLE; i++) {
		smp[i] = fabsf(smp[i] - bs[i]);
		bad |= !(smp[i] <= FLT_MAX);
	}
	if (bad)
		return 1;
	qs = (size_t)((double)(numel - pk->k) / (double)numel * SAMPLE);
	lo_i = qs > SAMPLE_MARGIN ? qs - SAMPLE_MARGIN : 0;
	hi_i = qs + SAMPLE_MARGIN;
	pk->lo = 0;
	if (lo_i > 0) {
		select_f32(smp, SAMPLE, lo_i, &le, &he);
		pk->lo = smp[lo_i];
	}
	pk->hi = INFINITY;
	if (hi_i < SAMPLE - 1) {
		/* Everything from lo_i on is >= smp[lo_i]. */
		select_f32(smp + lo_i, SAMPLE - lo_i, hi_i - lo_i, &le, &he);
		pk->hi = smp[hi_i];
	}
	return 0;
}

/* The k-th largest magnitude of every pick's input. sample: 2 x SAMPLE
 * floats. Returns 1 if a magnitude was not finite. */
static int stream_select(const struct stream *s, struct pick *pk, size_t n,
			 struct pick **list, float *sample)
{
	if (s->numel >= SAMPLE_MIN)
		stream_sampled(s, s->base, sample + SAMPLE);
	for (size_t q = 0; q < n; q++) {
		list[q] = &pk[q];
		pk[q].done = 0;
		if (s->numel < SAMPLE_MIN) {
			pk[q].lo = 0;
			pk[q].hi = INFINITY;
		} else if (stream_sample(s, &pk[q], sample + SAMPLE, sample)) {
			return 1;
		}
	}
	if (stream_bracket(s, list, n))
		return 1;
	for (size_t q = 0; q < n; q++) {
		struct pick *p = &pk[q];
		uint32_t klo, khi;
		while (!pick_settle(p, &klo, &khi)) {
			struct bucket bk;
			for (;;) {
				stream_hist(s, p, klo, khi, &bk);
				if (bk.kmin == bk.kmax || bk.count <= s->cap)
					break;
				klo = bk.kmin;
				khi = bk.kmax;
			}
			if (bk.kmin == bk.kmax) {
				pick_found(p, dtype_bitsf(bk.kmin), bk.above, bk.count);
				break;
			}
			p->lo = dtype_bitsf(bk.kmin);
			p->hi = dtype_bitsf(bk.kmax);
			if (stream_bracket(s, &p, 1))
				return 1;
		}
	}
	return 0;
}

/* Elements equal to th in magnitude among n of a step (vectorised). */
static ALWAYS_INLINE size_t stream_count_eq(const unsigned char *x,
					    const unsigned char *b, size_t n,
					    int bf16, float th)
{
	int32_t eq = 0;

	for (size_t j = 0; j < n; j++)
		eq += (int32_t)(fabsf(ld(x, j, bf16) - ld(b, j, bf16)) == th);
	return (size_t)eq;
}

/* KEEP_TOPK with ties at th pending: counts them in the step [j0, j0 +
 * n) and fixes the cut in the step that holds the last one kept, where
 * tie_cut fixes it. */
static ALWAYS_INLINE void stream_cut(struct input_state *st,
				     const unsigned char *x,
				     const unsigned char *b, size_t j0,
				     size_t n, int bf16)
{
	float th = (float)st->th;
	size_t c = n == SCHUNK ? stream_count_eq(x, b, SCHUNK, bf16, th)
		: stream_count_eq(x, b, n, bf16, th);

	if (c < st->pending) {
		st->pending -= c;
		return;
	}
	for (size_t j = 0; j < n; j++) {
		if (fabsf(ld(x, j, bf16) - ld(b, j, bf16)) == th &&
		    --st->pending == 0) {
			st->cut = j0 + j + 1;
			return;
		}
	}
}

/* rescale=l1: l1_scale's sums for the inputs that need them, in its
 * order (each input's elements in index order). */
static CLONES NO_CONTRACT void stream_l1(const struct stream *s,
					 struct input_state *st,
					 const int *l1, double *before,
					 double *after)
{
	const unsigned char *b = (const unsigned char *)s->bb;
	const unsigned char *x = (const unsigned char *)s->xb;

	for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
		size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
		stream_load(s, s->base, j0, len, s->bb);
		for (size_t i = 0; i < s->ninputs; i++) {
			double bf = before[i], af = after[i];
			if (!l1[i])
				continue;
			stream_load(s, s->in[i], j0, len, s->xb);
			if (st[i].mode == KEEP_TOPK && st[i].pending)
				stream_cut(&st[i], x, b, j0, len, 0);
			for (size_t j = 0; j < len; j++) {
				float tau = s->xb[j] - s->bb[j];
				double m = fabs((double)tau);
				bf += m;
				if (keep_f32(&st[i], tau, j0 + j))
					af += m;
			}
			before[i] = bf;
			after[i] = af;
		}
	}
}

/* TIES over a whole step that holds no input's cut, in one loop whose
 * values stay in registers (gta_chunk passes rows and sums through L1
 * arrays): the same operations in the same order, so the same bits:
 *   r_i = ((keep_i ? tau_i : 0) * scale_i) * w_i   (fill_row)
 *   s   = 0 + r_0 + r_1 ...  (or their signs), then +-1
 *   m   = 0 + (r_i s > 0 ? r_i : 0) ...,  d = 0 + (r_i s > 0 ? w_i : 0) ...
 *   out = b + (m / (d == 0 ? 1 : d)) * lambda   (without normalize m / 1,
 *         which is m)
 * keep_i is |tau_i| >= t_i: t_i = th before the input's cut (ties at th
 * kept), the next float above th after it (ties dropped), 0 for KEEP_ALL,
 * +Inf for KEEP_NONE. A dropped r_i is +0 here, +0 or -0 in fill_row: a
 * zero never agrees, and adds nothing to s that its sign could change (s
 * is only compared with 0), so the result is the same. Non-finite task
 * vectors are not looked for here: the selection's pass has refused them
 * for KEEP_TOPK inputs, stream_finite does for the others. Selects are
 * written as masks, and 1 and -1 come from memory the compiler cannot
 * see into: knowing them, gcc turns r * s into a branch on s and m / 1
 * into a branch around the division, and then vectorises nothing. */
struct ties_in {
	float t[TIES_FUSED_MAX];   /* keep |tau_i| >= t_i */
	float sc[TIES_FUSED_MAX];
	float w[TIES_FUSED_MAX];
	uint32_t nm;               /* all ones: normalize */
	float lambda;
};

static ALWAYS_INLINE void ties_fused(const unsigned char *b,
				     const unsigned char *const *x,
				     const struct ties_in *ti, size_t nin,
				     int count, int bf16, float *restrict out)
{
	const unsigned char *xp[TIES_FUSED_MAX];
	float t[TIES_FUSED_MAX], sc[TIES_FUSED_MAX], w[TIES_FUSED_MAX];
	const uint32_t nm = ti->nm;
	const float lambda = ti->lambda;
	static volatile const float ones[2] = { 1.0f, -1.0f };
	const float one = ones[0], mone = ones[1];

	for (size_t i = 0; i < nin; i++) {
		xp[i] = x[i];
		t[i] = ti->t[i];
		sc[i] = ti->sc[i];
		w[i] = ti->w[i];
	}
	for (size_t j = 0; j < SCHUNK; j++) {
		float r[TIES_FUSED_MAX], sum = 0, am = 0, ad = 0, sg;
		const float bj = ld(b, j, bf16);
#pragma GCC unroll 4
		for (size_t i = 0; i < nin; i++) {
			float tau = ld(xp[i], j, bf16) - bj, v;
			v = dtype_bitsf(dtype_fbits(tau) & (0u - (uint32_t)(fabsf(tau) >= t[i])));
			v = v * sc[i];
			r[i] = v * w[i];
			if (count)  /* 1, -1 or 0 */
				sum += dtype_bitsf((dtype_fbits(one) & (0u - (uint32_t)(r[i] > 0))) |
					   (dtype_fbits(mone) & (0u - (uint32_t)(r[i] < 0))));
			else
				sum += r[i];
		}
		sg = sum >= 0 ? one : mone;
#pragma GCC unroll 4
		for (size_t i = 0; i < nin; i++) {
			uint32_t agree = 0u - (uint32_t)(r[i] * sg > 0);
			am += dtype_bitsf(dtype_fbits(r[i]) & agree);
			ad += dtype_bitsf(dtype_fbits(w[i]) & agree);
		}
		ad = ad == 0 ? one : ad;
		am /= dtype_bitsf((dtype_fbits(ad) & nm) | (dtype_fbits(one) & ~nm));
		out[j] = bj + am * lambda;
	}
}

/* Whether every task vector of the inputs flagged in check is finite in
 * a step (the KEEP_ALL and KEEP_NONE inputs of ties_fused). */
static ALWAYS_INLINE int32_t stream_finite(const unsigned char *const *x,
					   const unsigned char *b,
					   const int *check, size_t nin,
					   int bf16)
{
	int32_t bad = 0;

	for (size_t i = 0; i < nin; i++) {
		if (!check[i])
			continue;
		for (size_t j = 0; j < SCHUNK; j++)
			bad |= (int32_t)!(fabsf(ld(x[i], j, bf16) - ld(b, j, bf16))
					  <= FLT_MAX);
	}
	return bad;
}

/* The merge pass's state. */
struct merge_pass {
	struct gta_ctx_f32 *c;
	struct input_state *st;
	struct ties_in ti;
	int fusable;    /* TIES with at most TIES_FUSED_MAX inputs */
	int count;      /* consensus=count */
	int check[TIES_FUSED_MAX], anycheck;
};

/* One step [j0, j0 + len) of the merge pass into s->out; nonzero at a
 * non-finite task vector. */
static ALWAYS_INLINE int32_t merge_step(const struct stream *s,
					struct merge_pass *mp, size_t j0,
					size_t len, int bf16)
{
	const unsigned char *b = step_src(s, s->base, j0, len, s->bb);
	const unsigned char **x = s->src;
	struct input_state *st = mp->st;
	int fused = mp->fusable && len == SCHUNK;
	int32_t bad = 0;

	for (size_t i = 0; i < s->ninputs; i++) {
		float th;
		x[i] = step_src(s, s->in[i], j0, len, s->xb + i * SCHUNK);
		if (st[i].mode != KEEP_TOPK)
			continue;
		if (st[i].pending)
			stream_cut(&st[i], x[i], b, j0, len, bf16);
		if (!mp->fusable)
			continue;
		/* ties at th kept, dropped, or cut inside the step */
		th = (float)st[i].th;
		if (st[i].cut >= j0 + len)
			mp->ti.t[i] = th;
		else if (st[i].cut <= j0)
			mp->ti.t[i] = nextafterf(th, INFINITY);
		else
			fused = 0;
	}
	if (fused) {
		if (mp->anycheck)
			bad = stream_finite(x, b, mp->check, s->ninputs, bf16);
		switch (s->ninputs * 2 + (size_t)mp->count) {
		case 2: ties_fused(b, x, &mp->ti, 1, 0, bf16, s->out); break;
		case 3: ties_fused(b, x, &mp->ti, 1, 1, bf16, s->out); break;
		case 4: ties_fused(b, x, &mp->ti, 2, 0, bf16, s->out); break;
		case 5: ties_fused(b, x, &mp->ti, 2, 1, bf16, s->out); break;
		case 6: ties_fused(b, x, &mp->ti, 3, 0, bf16, s->out); break;
		case 7: ties_fused(b, x, &mp->ti, 3, 1, bf16, s->out); break;
		case 8: ties_fused(b, x, &mp->ti, 4, 0, bf16, s->out); break;
		default: ties_fused(b, x, &mp->ti, 4, 1, bf16, s->out); break;
		}
		return bad;
	}
	/* gta_chunk, over float copies of the step */
	if (!s->conv) {
		stream_load(s, s->base, j0, len, s->bb);
		for (size_t i = 0; i < s->ninputs; i++)
			stream_load(s, s->in[i], j0, len, s->xb + i * SCHUNK);
	}
	mp->c->dj = j0;
	for (size_t o = 0; o < len; o += CHUNK) {
		if (len - o >= CHUNK)
			bad |= gta_chunk_f32(mp->c, s->rows, j0 + o, CHUNK, s->out);
		else
			bad |= gta_chunk_f32(mp->c, s->rows, j0 + o, len - o,
					     s->out);
	}
	return bad;
}

/* The merge pass: each step's results handed to emit. Sets *bad, and
 * stops, at a non-finite task vector. */
static CLONES NO_CONTRACT int
stream_merge(const struct stream *s, struct input_state *st,
	     struct gta_ctx_f32 *c, merge_emit_fn emit, void *ctx, int *bad,
	     struct err *err)
{
	struct merge_pass mp;

	memset(&mp, 0, sizeof(mp));
	mp.c = c;
	mp.st = st;
	mp.fusable = s->m == MERGE_TIES && s->ninputs <= TIES_FUSED_MAX;
	mp.count = c->consensus == 1 + MERGE_CONSENSUS_COUNT;
	for (size_t i = 0; mp.fusable && i < s->ninputs; i++) {
		mp.ti.sc[i] = (float)st[i].scale;
		mp.ti.w[i] = (float)weight_of(c->weights, i);
		mp.check[i] = st[i].mode != KEEP_TOPK;
		mp.anycheck |= mp.check[i];
		mp.ti.t[i] = st[i].mode == KEEP_ALL ? 0.0f : INFINITY;
	}
	mp.ti.nm = c->normalize ? ~0u : 0;
	mp.ti.lambda = c->lambda;
	for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
		size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
		int32_t b = s->bf16 ? merge_step(s, &mp, j0, len, 1)
			: merge_step(s, &mp, j0, len, 0);
		int rc;
		if (b) {
			*bad = 1;
			return 0;
		}
		if ((rc = emit(ctx, s->out, len, err)))
			return rc;
	}
	return 0;
}

/* refuse_nonfinite over the stored tensors: the same first culprit. */
static int stream_refuse(const struct stream *s, const char *name,
			 struct err *err)
{
	for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
		size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
		stream_load(s, s->base, j0, len, s->bb);
		for (size_t j = 0; j < len; j++)
			if (!isfinite(s->bb[j]))
				return refuse_base(err, name, s->m,
						   isnan(s->bb[j]), j0 + j);
	}
	for (size_t i = 0; i < s->ninputs; i++) {
		for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
			size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
			stream_load(s, s->in[i], j0, len, s->xb);
			for (size_t j = 0; j < len; j++)
				if (!isfinite(s->xb[j]))
					return refuse_input(err, name, s->m, i,
							    isnan(s->xb[j]),
							    j0 + j);
		}
	}
	for (size_t i = 0; i < s->ninputs; i++) {
		for (size_t j0 = 0; j0 < s->numel; j0 += SCHUNK) {
			size_t len = s->numel - j0 < SCHUNK ? s->numel - j0 : SCHUNK;
			stream_load(s, s->base, j0, len, s->bb);
			stream_load(s, s->in[i], j0, len, s->xb);
			for (size_t j = 0; j < len; j++)
				if (!isfinite(s->xb[j] - s->bb[j]))
					return refuse_overflow(err, name, s->m,
							       i, j0 + j);
		}
	}
	return refuse_norm(err, name, s->m);
}

int merge_stream_covers(const struct merge_spec *spec, enum st_dtype dt)
{
	enum merge_method m = spec->method;

	return (m == MERGE_TIES || m == MERGE_DARE_LINEAR ||
		m == MERGE_DARE_TIES) &&
		(dt == ST_F32 || dt == ST_F16 || dt == ST_BF16);
}

/* Sizes of merge_tensor_stream's scratch: floats of rows (steps, and
 * TIES' sample), and per TIES input the copy of its selection. */
static size_t stream_rows(size_t n)
{
	size_t f = (2 + n) * SCHUNK + n * CHUNK;
	return f > 2 * SAMPLE ? f : 2 * SAMPLE;
}

static size_t stream_cap(size_t numel)
{
	return numel < SAMPLE_MIN ? numel : numel / 16;
}

/* Bytes of per-input state (stream_gta lays it out). */
static size_t stream_state(size_t n)
{
	return n * (sizeof(struct input_state) + sizeof(struct pick) +
		    sizeof(struct pick *) + sizeof(const float *) +
		    sizeof(const unsigned char *) + 2 * sizeof(double) +
		    sizeof(int));
}

uint64_t merge_stream_scratch(const struct merge_spec *spec, size_t ninputs,
			      size_t numel)
{
	uint64_t b = (uint64_t)stream_rows(ninputs) * sizeof(float) +
		stream_state(ninputs);

	if (spec->method == MERGE_TIES)
		b += (uint64_t)ninputs * (stream_cap(numel) + CHUNK) * sizeof(float);
	return b;
}

/* gta's setup, with TIES' selections made together, then the passes. */
static int stream_gta(const struct merge_spec *spec, const char *name,
		      const struct merge_params *p, struct stream *s,
		      const double *weights, merge_emit_fn emit, void *ctx,
		      struct merge_scratch *sc, struct err *err)
{
	const size_t n = s->ninputs, numel = s->numel;
	const enum merge_method m = spec->method;
	struct gta_ctx_f32 c;
	struct input_state *st;
	struct pick *pk, **list;
	const float **xs;
	double *before, *after, wsum = 0;
	int *l1, bad = 0, rc;
	size_t npick = 0, nl1 = 0;
	unsigned char *mem;

	if (n == 0) {
		/* The base, through float as the kernel's copy is. */
		rc = grow(&sc->rows, &sc->rows_cap, SCHUNK * sizeof(float), err);
		for (size_t j0 = 0; !rc && j0 < numel; j0 += SCHUNK) {
			size_t len = numel - j0 < SCHUNK ? numel - j0 : SCHUNK;
			stream_load(s, s->base, j0, len, sc->rows);
			rc = emit(ctx, sc->rows, len, err);
		}
		return rc;
	}
	rc = grow(&sc->inputs, &sc->inputs_cap, stream_state(n), err);
	if (rc < 0)
		return rc;
	mem = sc->inputs;
	st = (struct input_state *)(void *)mem;
	pk = (struct pick *)(void *)(st + n);
	list = (struct pick **)(void *)(pk + n);
	xs = (const float **)(void *)(list + n);
	s->src = (const unsigned char **)(void *)(xs + n);
	before = (double *)(void *)(s->src + n);
	after = before + n;
	l1 = (int *)(void *)(after + n);
	rc = grow(&sc->rows, &sc->rows_cap, stream_rows(n) * sizeof(float), err);
	if (rc < 0)
		return rc;
	s->bb = sc->rows;
	s->xb = s->bb + SCHUNK;
	s->rows = s->xb + n * SCHUNK;
	s->out = s->rows + n * CHUNK;
	s->cap = stream_cap(numel);

	/* Per input: what is kept (as gta decides it). */
	for (size_t i = 0; i < n; i++) {
		struct input_state *si = &st[i];
		memset(si, 0, sizeof(*si));
		si->scale = 1.0;
		si->mode = KEEP_ALL;
		l1[i] = 0;
		before[i] = after[i] = 0;
		if (p->density >= 1)
			continue;
		if (m == MERGE_TIES) {
			size_t k = (size_t)(p->density * (double)numel);
			if (k == 0) {
				si->mode = KEEP_NONE;
			} else if (k < numel) {
				si->mode = KEEP_TOPK;
				memset(&pk[npick], 0, sizeof(*pk));
				pk[npick].input = i;
				pk[npick].k = k;
				npick++;
			}
		} else {
			si->mode = p->density > 0 ? KEEP_DARE : KEEP_NONE;
			si->key = dare_key(spec->seed, name, i);
			si->thr = dare_threshold(p->density);
		}
	}
	if (npick) {
		size_t per = s->cap + CHUNK;
		if (per > SIZE_MAX / sizeof(float) / npick)
			return err_set(err, ERR_NOMEM, "out of memory (merge "
				       "scratch for tensor '%s')", name);
		rc = grow(&sc->sel, &sc->sel_cap, npick * per * sizeof(float),
			  err);
		if (rc < 0)
			return rc;
		for (size_t q = 0; q < npick; q++)
			pk[q].sel = (float *)sc->sel + q * per;
		if (stream_select(s, pk, npick, list, sc->rows)) {
			bad = 1;
			goto refused;
		}
		for (size_t q = 0; q < npick; q++) {
			struct input_state *si = &st[pk[q].input];
			size_t rem = pk[q].k - pk[q].count_gt;
			si->th = pk[q].th;
			si->cut = SIZE_MAX;
			/* As topk: a kept zero adds nothing and never votes. */
			si->pending = rem < pk[q].count_eq && pk[q].th > 0
				? rem : 0;
		}
	}
	/* Rescaling (density < 1 only, as in gta). */
	for (size_t i = 0; i < n && p->density < 1; i++) {
		if (st[i].mode == KEEP_NONE)
			continue;
		if (p->rescale == MERGE_RESCALE_DENSITY)
			st[i].scale = 1.0 / p->density;
		else if (p->rescale == MERGE_RESCALE_L1)
			nl1 += l1[i] = 1;
	}
	if (nl1) {
		stream_l1(s, st, l1, before, after);
		for (size_t i = 0; i < n; i++)
			if (l1[i])
				st[i].scale = before[i] < L1_EPS ||
					after[i] < L1_EPS ? 1.0
					: before[i] / after[i];
	}

	for (size_t i = 0; i < n; i++) {
		wsum += weight_of(weights, i);
		xs[i] = s->xb + i * SCHUNK;
	}
	c.st = st;
	c.base = s->bb;
	c.in = xs;
	c.weights = weights;
	c.ninputs = n;
	c.consensus = (m == MERGE_TIES || m == MERGE_DARE_TIES)
		? 1 + (int)p->consensus : 0;
	c.normalize = p->normalize;
	c.gdiv = (float)(fabs(wsum) < DIVISOR_EPS ? 1.0 : wsum);
	c.lambda = (float)p->lambda;
	c.dj = 0;
	rc = stream_merge(s, st, &c, emit, ctx, &bad, err);
	if (rc || !bad)
		return rc;
refused:
	return stream_refuse(s, name, err);
}

int merge_tensor_stream(const struct merge_spec *spec, const char *name,
			enum st_dtype dtype, const void *base,
			const void *const *inputs, const double *weights,
			size_t ninputs, size_t numel, merge_emit_fn emit,
			void *ctx, struct merge_scratch *scratch,
			struct err *err)
{
	struct merge_params p;
	struct stream s;
	int rc;

	assert(merge_stream_covers(spec, dtype));
	if (!name)
		name = "";
	merge_spec_params(spec, name, &p);
	rc = check_args(spec, name, base, ninputs, weights, &p, err);
	if (rc < 0 || numel == 0)
		return rc;
	memset(&s, 0, sizeof(s));
	s.m = spec->method;
	s.dt = dtype;
	s.width = dtype_width(dtype);
	s.conv = dtype == ST_F16;
	s.bf16 = dtype == ST_BF16;
	s.base = base;
	s.in = (const unsigned char *const *)inputs;
	s.ninputs = ninputs;
	s.numel = numel;
	return stream_gta(spec, name, &p, &s, weights, emit, ctx, scratch, err);
}

#else /* MERGE_T: the kernel template, T = MERGE_T */

#define T MERGE_T

/* Appends to sel[c..] the blk[k] whose flag[k] is 1 (flags are 0 or 1) and
 * returns the new count. Branch-free within a group: the flagged values
 * are few and scattered, so a branch on each would mispredict; but groups
 * of GROUP with none flagged (about half of them) are skipped, GROUP flags
 * tested at once. */
static ALWAYS_INLINE size_t MERGE_FN(compact_flagged)(T *restrict sel, size_t c,
						      const T *restrict blk,
						      const unsigned char *restrict flag,
						      size_t n)
{
	size_t j = 0;

	for (; j + GROUP <= n; j += GROUP) {
		uint64_t any[GROUP / 8], or = 0;
		memcpy(any, flag + j, GROUP);
		for (size_t k = 0; k < GROUP / 8; k++)
			or |= any[k];
		if (!or)
			continue;
		for (size_t k = j; k < j + GROUP; k++) {
			sel[c] = blk[k];
			c += flag[k];
		}
	}
	for (; j < n; j++) {
		sel[c] = blk[j];
		c += flag[j];
	}
	return c;
}

/* Names the first non-finite value for the error: base, then each input,
 * then a task vector that overflows although both sides are finite. */
static int MERGE_FN(refuse_nonfinite)(const char *name, enum merge_method m,
				      const T *base, const T *const *inputs,
				      size_t ninputs, size_t numel,
				      struct err *err)
{
	for (size_t j = 0; base && j < numel; j++)
		if (!isfinite(base[j]))
			return refuse_base(err, name, m, isnan(base[j]), j);
	for (size_t i = 0; i < ninputs; i++)
		for (size_t j = 0; j < numel; j++)
			if (!isfinite(inputs[i][j]))
				return refuse_input(err, name, m, i,
						    isnan(inputs[i][j]), j);
	for (size_t i = 0; base && i < ninputs; i++)
		for (size_t j = 0; j < numel; j++)
			if (!isfinite(inputs[i][j] - base[j]))
				return refuse_overflow(err, name, m, i, j);
	return refuse_norm(err, name, m);
}

/* One chunk of linear: acc = sum_i c_i x_i. Called with n = CHUNK, a
 * constant, for every chunk but the last, so that the loops vectorise
 * whole (gcc's -O2 cost model refuses loops that need a scalar tail). */
static ALWAYS_INLINE void MERGE_FN(linear_chunk)(const T *const *in,
						  const double *weights,
						  size_t ninputs, double div,
						  size_t j0, size_t n, T *out)
{
	T acc[CHUNK];
	T c0 = (T)(weight_of(weights, 0) / div);
	const T *x = in[0] + j0;

	for (size_t j = 0; j < n; j++)
		acc[j] = c0 * x[j];
	for (size_t i = 1; i < ninputs; i++) {
		T ci = (T)(weight_of(weights, i) / div);
		x = in[i] + j0;
		for (size_t j = 0; j < n; j++)
			acc[j] += ci * x[j];
	}
	/* Through acc, so that out may be one of the inputs. */
	memcpy(out + j0, acc, n * sizeof(T));
}

/* out = sum_i c_i x_i, c_i = w_i (/ sum w when normalize). */
static int MERGE_FN(linear)(const char *name, const struct merge_params *p,
			    const T *const *in, const double *weights,
			    size_t ninputs, size_t numel, T *out,
			    struct err *err)
{
	double sum = 0;

	for (size_t i = 0; i < ninputs; i++)
		sum += weight_of(weights, i);
	if (p->normalize && sum == 0)
		return err_set(err, ERR_INVALID, "tensor '%s': weights sum to 0; "
			       "cannot normalize (set normalize=false)", name);
	for (size_t j0 = 0; j0 < numel; j0 += CHUNK) {
		double div = p->normalize ? sum : 1.0;
		if (numel - j0 >= CHUNK)
			MERGE_FN(linear_chunk)(in, weights, ninputs, div, j0,
					       CHUNK, out);
		else
			MERGE_FN(linear_chunk)(in, weights, ninputs, div, j0,
					       numel - j0, out);
	}
	return 0;
}

/* Dutch-flag quickselect: moves a[q] to its sorted place and returns, in
 * [*lo_eq, *hi_eq], the block of elements equal to it — every element of
 * the array equal to a[q], since each round leaves outside the range only
 * values strictly below or strictly above all of it. */
static int MERGE_FN(cmp)(const void *pa, const void *pb)
{
	T a = *(const T *)pa, b = *(const T *)pb;
	return (a > b) - (a < b);
}

static void MERGE_FN(select)(T *a, size_t n, size_t q, size_t *lo_eq,
			     size_t *hi_eq)
{
	size_t lo = 0, hi = n;
	int rounds = 0;

	while (hi - lo > 1) {
		T x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1], piv;
		size_t lt = lo, i = lo, gt = hi;

		if (++rounds > 64) {
			/* Pathological pivots: sort what is left. */
			qsort(a + lo, hi - lo, sizeof(T), MERGE_FN(cmp));
			lt = q;
			gt = q;
			while (lt > lo && a[lt - 1] == a[q])
				lt--;
			while (gt + 1 < hi && a[gt + 1] == a[q])
				gt++;
			*lo_eq = lt;
			*hi_eq = gt;
			return;
		}
		piv = x < y ? (y < z ? y : (x < z ? z : x))
			    : (x < z ? x : (y < z ? z : y));
		while (i < gt) {
			T v = a[i];
			if (v < piv) {
				a[i++] = a[lt];
				a[lt++] = v;
			} else if (v > piv) {
				a[i] = a[--gt];
				a[gt] = v;
			} else {
				i++;
			}
		}
		if (q < lt) {
			hi = lt;
		} else if (q >= gt) {
			lo = gt;
		} else {
			*lo_eq = lt;
			*hi_eq = gt - 1;
			return;
		}
	}
	*lo_eq = lo;
	*hi_eq = lo;
}

/* The q-th smallest (from 0) of n values in [lo, hi], all >= 0 and not
 * NaN (TIES's magnitudes), as *th, with how many are above it and equal
 * to it; a is reordered. Such floats order as their bit patterns do, so a
 * pass counts them by the top bits of (bits - bits of lo) into RADIX
 * buckets, a second keeps only those of the bucket that holds rank q, and
 * quickselect finishes on that (usually tiny) part: two branch-free
 * passes instead of rounds of a partition whose branches mispredict. */
static void MERGE_FN(select_mag)(T *a, size_t n, size_t q, T lo, T hi,
				 T *th, size_t *n_gt, size_t *n_eq)
{
	size_t lo_eq, hi_eq, m = n, below = 0;

	if (n >= RADIX_MIN) {
		size_t hist[RADIX] = { 0 }, c = 0, d = 0;
		KEY klo, khi, span;
		unsigned shift = 0;
		memcpy(&klo, &lo, sizeof(T));
		memcpy(&khi, &hi, sizeof(T));
		span = khi - klo;
		while ((span >> shift) >= RADIX)
			shift++;
		for (size_t j = 0; j < n; j++) {
			KEY k;
			memcpy(&k, &a[j], sizeof(T));
			hist[(k - klo) >> shift]++;
		}
		while (below + hist[d] <= q)
			below += hist[d++];
		for (size_t j = 0; j < n; j++) {
			T v = a[j];
			KEY k;
			memcpy(&k, &v, sizeof(T));
			a[c] = v;
			c += ((k - klo) >> shift) == d;
		}
		m = c;
		q -= below;
	}
	MERGE_FN(select)(a, m, q, &lo_eq, &hi_eq);
	*th = a[q];
	*n_eq = hi_eq - lo_eq + 1;
	/* above the bucket, then above th inside it */
	*n_gt = (n - below - m) + (m - 1 - hi_eq);
}

/* One block of the bracketing pass: magnitudes into blk, counts of those
 * inside [lo, hi] and above hi (vectorised; n = CHUNK but for the last
 * block), then the copy of the inside ones, only where there are any. */
static ALWAYS_INLINE MASK MERGE_FN(bracket_block)(const T *restrict x,
						   const T *restrict b,
						   size_t n, T lo, T hi,
						   T *restrict sel, size_t *nc,
						   size_t *c_hi)
{
	T blk[CHUNK];
	unsigned char flag[CHUNK];
	MASK bad = 0, in = 0, above = 0;

	for (size_t j = 0; j < n; j++) {
		T m = MERGE_ABS(x[j] - b[j]);
		MASK f = (MASK)(m >= lo) & (MASK)(m <= hi);
		blk[j] = m;
		flag[j] = (unsigned char)f;
		bad |= (MASK)!(m <= T_MAX);
		in += f;
		above += (MASK)(m > hi);
	}
	*c_hi += (size_t)above;
	if (in > 0 && !bad)
		*nc = MERGE_FN(compact_flagged)(sel, *nc, blk, flag, n);
	return bad;
}

/* Counts elements with |x - b| == th in one block (vectorised). */
static ALWAYS_INLINE size_t MERGE_FN(count_equal)(const T *restrict x,
						   const T *restrict b,
						   size_t n, T th)
{
	MASK eq = 0;
	for (size_t j = 0; j < n; j++)
		eq += (MASK)(MERGE_ABS(x[j] - b[j]) == th);
	return (size_t)eq;
}

/* The index just past the rem-th element (1 <= rem < ties) with
 * |x - b| == th, of the ties such elements: ties at the threshold are kept
 * in index order. Counts block by block, from whichever end is nearer the
 * cut (the rem-th from the start is the (ties - rem + 1)-th from the end),
 * and steps element by element only in the block holding it. */
static CLONES size_t MERGE_FN(tie_cut)(const T *x, const T *b, size_t numel,
				       T th, size_t rem, size_t ties)
{
	size_t seen = 0, need, j0;

	if (rem <= ties - rem) {
		for (j0 = 0; j0 < numel; j0 += CHUNK) {
			size_t n = numel - j0 < CHUNK ? numel - j0 : CHUNK, c;
			c = n == CHUNK ? MERGE_FN(count_equal)(x + j0, b + j0, CHUNK, th)
				: MERGE_FN(count_equal)(x + j0, b + j0, n, th);
			if (seen + c < rem) {
				seen += c;
				continue;
			}
			for (size_t j = j0; j < j0 + n; j++)
				if (MERGE_ABS(x[j] - b[j]) == th && ++seen == rem)
					return j + 1;
		}
		return SIZE_MAX;  /* not reached: rem <= ties */
	}
	need = ties - rem + 1;
	for (j0 = (numel - 1) / CHUNK * CHUNK;; j0 -= CHUNK) {
		size_t n = numel - j0 < CHUNK ? numel - j0 : CHUNK, c;
		c = n == CHUNK ? MERGE_FN(count_equal)(x + j0, b + j0, CHUNK, th)
			: MERGE_FN(count_equal)(x + j0, b + j0, n, th);
		if (seen + c < need) {
			seen += c;
			if (j0 == 0)
				break;
			continue;
		}
		for (size_t j = j0 + n; j-- > j0;)
			if (MERGE_ABS(x[j] - b[j]) == th && ++seen == need)
				return j + 1;
	}
	return SIZE_MAX;  /* not reached: need <= ties */
}

/* TIES: the top-k of |x - base| (k >= 1, k < numel) as a threshold th and a
 * cut index for ties at th (lower indices kept first). Returns 1 if a
 * non-finite magnitude was seen (nothing set then). */
static CLONES NO_CONTRACT int
MERGE_FN(topk)(const T *x, const T *b, size_t numel, size_t k, T *sel,
	       T *sample, struct input_state *st)
{
	size_t q, nc = 0, c_hi = 0, count_gt, count_eq, rem;
	MASK bad = 0;
	T th;

	if (numel >= SAMPLE_MIN) {
		/* Bracket the threshold with a strided sample... */
		size_t qs, lo_i, hi_i;
		T lo, hi;
		for (size_t s = 0; s < SAMPLE; s++) {
			size_t j = (size_t)((uint64_t)s * numel / SAMPLE);
			sample[s] = MERGE_ABS(x[j] - b[j]);
			bad |= (MASK)!(sample[s] <= T_MAX);
		}
		if (bad)
			return 1;
		qsort(sample, SAMPLE, sizeof(T), MERGE_FN(cmp));
		qs = (size_t)((double)(numel - k) / (double)numel * SAMPLE);
		lo_i = qs > SAMPLE_MARGIN ? qs - SAMPLE_MARGIN : 0;
		hi_i = qs + SAMPLE_MARGIN;
		lo = lo_i == 0 ? (T)0 : sample[lo_i];
		hi = hi_i >= SAMPLE - 1 ? (T)INFINITY : sample[hi_i];
		/* ...count what lies above, copy what lies inside... */
		for (size_t j0 = 0; j0 < numel && !bad; j0 += CHUNK) {
			if (numel - j0 >= CHUNK)
				bad |= MERGE_FN(bracket_block)(x + j0, b + j0,
					CHUNK, lo, hi, sel, &nc, &c_hi);
			else
				bad |= MERGE_FN(bracket_block)(x + j0, b + j0,
					numel - j0, lo, hi, sel, &nc, &c_hi);
		}
		if (bad)
			return 1;
		/* ...and select inside, if the threshold fell in there. */
		if (c_hi < k && k <= c_hi + nc) {
			q = nc - (k - c_hi);
			MERGE_FN(select_mag)(sel, nc, q, lo, hi, &th, &count_gt,
					     &count_eq);
			count_gt += c_hi;
			goto found;
		}
	}
	for (size_t j = 0; j < numel; j++) {
		sel[j] = MERGE_ABS(x[j] - b[j]);
		bad |= (MASK)!(sel[j] <= T_MAX);
	}
	if (bad)
		return 1;
	q = numel - k;
	MERGE_FN(select_mag)(sel, numel, q, (T)0, (T)INFINITY, &th, &count_gt,
			     &count_eq);
found:
	st->mode = KEEP_TOPK;
	st->th = th;
	st->cut = SIZE_MAX;
	rem = k - count_gt;  /* how many elements equal to th to keep */
	/* A kept zero adds nothing and never votes, so ties at 0 need no cut. */
	if (rem < count_eq && th > 0)
		st->cut = MERGE_FN(tie_cut)(x, b, numel, th, rem, count_eq);
	return 0;
}

static inline int MERGE_FN(keep)(const struct input_state *st, T tau,
				 size_t j)
{
	T m;
	switch (st->mode) {
	case KEEP_ALL:
		return 1;
	case KEEP_NONE:
		return 0;
	case KEEP_TOPK:
		m = MERGE_ABS(tau);
		return m > (T)st->th || (m == (T)st->th && j < st->cut);
	case KEEP_DARE:
		return dare_draw53(st->key, j) < st->thr;
	}
	return 0;
}

/* mergekit's L1 rescale: scale the kept values so that the L1 norm of the
 * sparsified task vector equals the original's (unless either is ~0). */
static double MERGE_FN(l1_scale)(const T *x, const T *b, size_t numel,
				 const struct input_state *st)
{
	double before = 0, after = 0;
	for (size_t j = 0; j < numel; j++) {
		T tau = x[j] - b[j];
		double m = fabs((double)tau);
		before += m;
		if (MERGE_FN(keep)(st, tau, j))
			after += m;
	}
	if (before < L1_EPS || after < L1_EPS)
		return 1.0;
	return before / after;
}

/* Fills row[0..n) with w * (rescaled, sparsified tau) for elements j0...
 * of one input; returns nonzero if a task vector value was not finite.
 * row never overlaps x or b; x may be b (only read). */
static ALWAYS_INLINE MASK MERGE_FN(fill_row)(const struct input_state *st,
					      const T *restrict x,
					      const T *restrict b, size_t j0,
					      size_t n, T w, T *restrict row)
{
	T sc = (T)st->scale, th = (T)st->th;
	MASK bad = 0;

	/* A dropped value is (0 * sc) * w, a zero that never votes: the
	 * select comes before the multiplies, which gcc will not speculate
	 * (and so would not vectorise) under -ftrapping-math. */
	switch (st->mode) {
	case KEEP_ALL:
		for (size_t j = 0; j < n; j++) {
			T tau = x[j] - b[j];
			bad |= (MASK)!(MERGE_ABS(tau) <= T_MAX);
			row[j] = (tau * sc) * w;
		}
		break;
	case KEEP_NONE:
		for (size_t j = 0; j < n; j++) {
			T tau = x[j] - b[j];
			bad |= (MASK)!(MERGE_ABS(tau) <= T_MAX);
			row[j] = 0;
		}
		break;
	case KEEP_TOPK:
		/* Elements equal to th are kept below the cut: decide per
		 * chunk, so that only the chunk holding the cut compares
		 * indices. topk() has checked that every |tau| is finite. */
		if (j0 + n <= st->cut) {
			for (size_t j = 0; j < n; j++) {
				T tau = x[j] - b[j], m = MERGE_ABS(tau);
				row[j] = ((m >= th ? tau : (T)0) * sc) * w;
			}
		} else if (j0 >= st->cut) {
			for (size_t j = 0; j < n; j++) {
				T tau = x[j] - b[j], m = MERGE_ABS(tau);
				row[j] = ((m > th ? tau : (T)0) * sc) * w;
			}
		} else {
			for (size_t j = 0; j < n; j++) {
				T tau = x[j] - b[j], m = MERGE_ABS(tau);
				int k = m > th || (m == th && j0 + j < st->cut);
				row[j] = k ? (tau * sc) * w : (T)0;
			}
		}
		break;
	case KEEP_DARE:
		for (size_t j = 0; j < n; j++) {
			T tau = x[j] - b[j];
			int k = dare_draw53(st->key, j0 + j) < st->thr;
			bad |= (MASK)!(MERGE_ABS(tau) <= T_MAX);
			row[j] = ((k ? tau : (T)0) * sc) * w;
		}
		break;
	}
	return bad;
}

struct MERGE_FN(gta_ctx) {
	const struct input_state *st;
	const T *base;
	const T *const *in;
	const double *weights;
	size_t ninputs;
	int consensus;   /* 0, or 1 + enum merge_consensus */
	int normalize;
	T gdiv;          /* divisor without consensus: sum of weights */
	T lambda;
	size_t dj;       /* base, in[i] and out hold element j at [j - dj]
			    (0 for whole tensors; a streamed step's start) */
};

/* One chunk of generalized task arithmetic (n = CHUNK but for the last
 * chunk, as in linear_chunk). */
static ALWAYS_INLINE MASK MERGE_FN(gta_chunk)(const struct MERGE_FN(gta_ctx) *c,
					       T *restrict rows, size_t j0,
					       size_t n, T *out)
{
	T acc_s[CHUNK], acc_m[CHUNK], acc_d[CHUNK];
	const T *b = c->base + (j0 - c->dj);
	MASK bad = 0;

	for (size_t i = 0; i < c->ninputs; i++)
		bad |= MERGE_FN(fill_row)(&c->st[i], c->in[i] + (j0 - c->dj), b, j0, n,
					  (T)weight_of(c->weights, i),
					  rows + i * CHUNK);
	for (size_t j = 0; j < n; j++)
		acc_m[j] = 0;
	if (c->consensus) {
		/* Elect a sign per element (+1 on a tie at 0), then sum the
		 * agreeing values and their weights. */
		for (size_t j = 0; j < n; j++) {
			acc_s[j] = 0;
			acc_d[j] = 0;
		}
		for (size_t i = 0; i < c->ninputs; i++) {
			const T *r = rows + i * CHUNK;
			if (c->consensus == 1 + MERGE_CONSENSUS_SUM)
				for (size_t j = 0; j < n; j++)
					acc_s[j] += r[j];
			else
				for (size_t j = 0; j < n; j++)
					acc_s[j] += r[j] > 0 ? (T)1
						: (r[j] < 0 ? (T)-1 : (T)0);
		}
		for (size_t j = 0; j < n; j++)
			acc_s[j] = acc_s[j] >= 0 ? (T)1 : (T)-1;
		for (size_t i = 0; i < c->ninputs; i++) {
			const T *r = rows + i * CHUNK;
			T w = (T)weight_of(c->weights, i);
			for (size_t j = 0; j < n; j++) {
				/* Both selects before either add: gcc
				 * vectorises this form only. */
				int agree = r[j] * acc_s[j] > 0;
				T mr = agree ? r[j] : (T)0;
				T mw = agree ? w : (T)0;
				acc_m[j] += mr;
				acc_d[j] += mw;
			}
		}
		for (size_t j = 0; j < n; j++)
			acc_d[j] = acc_d[j] == 0 ? (T)1 : acc_d[j];
	} else {
		for (size_t i = 0; i < c->ninputs; i++) {
			const T *r = rows + i * CHUNK;
			for (size_t j = 0; j < n; j++)
				acc_m[j] += r[j];
		}
		for (size_t j = 0; j < n; j++)
			acc_d[j] = c->gdiv;
	}
	if (c->normalize)
		for (size_t j = 0; j < n; j++)
			acc_m[j] /= acc_d[j];
	for (size_t j = 0; j < n; j++)
		acc_m[j] = b[j] + acc_m[j] * c->lambda;
	/* Through acc_m, so that out may be the base or an input. */
	memcpy(out + (j0 - c->dj), acc_m, n * sizeof(T));
	return bad;
}

/* task_arithmetic, ties, dare_linear, dare_ties: mergekit's generalized
 * task arithmetic. */
static CLONES NO_CONTRACT int
MERGE_FN(gta)(const struct merge_spec *spec, const char *name,
	      const struct merge_params *p, const T *base, const T *const *in,
	      const double *weights, size_t ninputs, size_t numel, T *out,
	      struct merge_scratch *sc, struct err *err)
{
	enum merge_method m = spec->method;
	int sparsify = m != MERGE_TASK_ARITHMETIC;
	int refuse = m != MERGE_TASK_ARITHMETIC;
	struct MERGE_FN(gta_ctx) c;
	struct input_state *st;
	double wsum = 0;
	T *rows, *sample;
	MASK bad = 0;
	int rc = 0;

	if (ninputs == 0) {
		if (out != base)
			memcpy(out, base, numel * sizeof(T));
		return 0;
	}
	rc = grow(&sc->inputs, &sc->inputs_cap, ninputs * sizeof(*st), err);
	if (rc < 0)
		goto done;
	rc = grow(&sc->rows, &sc->rows_cap,
		  (ninputs * CHUNK > SAMPLE ? ninputs * CHUNK : SAMPLE) *
		  sizeof(T), err);
	if (rc < 0)
		goto done;
	st = sc->inputs;
	rows = sc->rows;
	sample = sc->rows;  /* TIES' sample, used before the rows are */

	/* Per input: what is kept, and how kept values are scaled. */
	for (size_t i = 0; i < ninputs; i++) {
		struct input_state *s = &st[i];
		memset(s, 0, sizeof(*s));
		s->scale = 1.0;
		s->mode = KEEP_ALL;
		if (!sparsify || p->density >= 1)
			continue;
		if (m == MERGE_TIES) {
			size_t k = (size_t)(p->density * (double)numel);
			if (k == 0) {
				s->mode = KEEP_NONE;
			} else if (k < numel) {
				rc = grow(&sc->sel, &sc->sel_cap,
					  numel * sizeof(T), err);
				if (rc < 0)
					goto done;
				if (MERGE_FN(topk)(in[i], base, numel, k,
						   sc->sel, sample, s)) {
					bad = 1;
					break;
				}
			}
		} else {
			s->mode = p->density > 0 ? KEEP_DARE : KEEP_NONE;
			s->key = dare_key(spec->seed, name, i);
			s->thr = dare_threshold(p->density);
		}
		if (s->mode == KEEP_NONE)
			continue;
		if (p->rescale == MERGE_RESCALE_DENSITY)
			s->scale = 1.0 / p->density;
		else if (p->rescale == MERGE_RESCALE_L1)
			s->scale = MERGE_FN(l1_scale)(in[i], base, numel, s);
	}
	if (bad)
		goto refused;

	for (size_t i = 0; i < ninputs; i++)
		wsum += weight_of(weights, i);
	c.st = st;
	c.base = base;
	c.in = in;
	c.weights = weights;
	c.ninputs = ninputs;
	c.consensus = (m == MERGE_TIES || m == MERGE_DARE_TIES)
		? 1 + (int)p->consensus : 0;
	c.normalize = p->normalize;
	c.gdiv = (T)(fabs(wsum) < DIVISOR_EPS ? 1.0 : wsum);
	c.lambda = (T)p->lambda;
	c.dj = 0;
	for (size_t j0 = 0; j0 < numel; j0 += CHUNK) {
		if (numel - j0 >= CHUNK)
			bad |= MERGE_FN(gta_chunk)(&c, rows, j0, CHUNK, out);
		else
			bad |= MERGE_FN(gta_chunk)(&c, rows, j0, numel - j0,
						   out);
	}
	if (bad && refuse)
		goto refused;
	rc = 0;
	goto done;
refused:
	rc = MERGE_FN(refuse_nonfinite)(name, m, base, in, ninputs, numel, err);
done:
	return rc;
}

/* mergekit's slerp of the unnormalized vectors, with its lerp fallback. */
static int MERGE_FN(slerp)(const char *name, const struct merge_params *p,
			   const T *a, const T *b, size_t numel, T *out,
			   struct err *err)
{
	double aa = 0, bb = 0, ab = 0, na, nb, dot, s0, s1;
	T c0, c1;

	for (size_t j = 0; j < numel; j++) {
		double x = a[j], y = b[j];
		aa += x * x;
		bb += y * y;
		ab += x * y;
	}
	if (!isfinite(aa) || !isfinite(bb) || !isfinite(ab)) {
		const T *in[1] = { b };
		return MERGE_FN(refuse_nonfinite)(name, MERGE_SLERP, a, in, 1,
						  numel, err);
	}
	/* mergekit divides a vector by its norm only if the norm > eps. */
	na = sqrt(aa);
	nb = sqrt(bb);
	dot = ab / ((na > SLERP_EPS ? na : 1.0) * (nb > SLERP_EPS ? nb : 1.0));
	if (fabs(dot) > SLERP_DOT_THRESHOLD) {
		s0 = 1.0 - p->t;
		s1 = p->t;
	} else {
		double theta0 = acos(dot), sin0 = sin(theta0);
		double theta_t = theta0 * p->t;
		s0 = sin(theta0 - theta_t) / sin0;
		s1 = sin(theta_t) / sin0;
	}
	c0 = (T)s0;
	c1 = (T)s1;
	for (size_t j = 0; j < numel; j++)
		out[j] = c0 * a[j] + c1 * b[j];
	return 0;
}

/* Model Stock (Jang et al. 2024) as mergekit computes it: cos theta is the
 * mean of the pairwise cosines between task vectors. */
static int MERGE_FN(model_stock)(const char *name, const T *base,
				 const T *const *in, size_t n, size_t numel,
				 T *out, struct merge_scratch *sc,
				 struct err *err)
{
	size_t npairs = n * (n - 1) / 2, pi;
	double *norm2, *dots, *off, cos = 0, t;
	int rc;

	rc = grow(&sc->inputs, &sc->inputs_cap,
		  (2 * n + npairs) * sizeof(double), err);
	if (rc < 0)
		return rc;
	norm2 = sc->inputs;
	off = norm2 + n;
	dots = off + n;
	memset(norm2, 0, (2 * n + npairs) * sizeof(double));
	for (size_t j = 0; j < numel; j++) {
		for (size_t i = 0; i < n; i++) {
			off[i] = (double)in[i][j] - (double)base[j];
			norm2[i] += off[i] * off[i];
		}
		pi = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t k = i + 1; k < n; k++)
				dots[pi++] += off[i] * off[k];
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(norm2[i]))
			return MERGE_FN(refuse_nonfinite)(name, MERGE_MODEL_STOCK,
							  base, in, n, numel,
							  err);
	pi = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = i + 1; k < n; k++) {
			double np = sqrt(norm2[i]) * sqrt(norm2[k]);
			double c = dots[pi++] / (np > STOCK_NORM_MIN ? np
						 : STOCK_NORM_MIN);
			cos += c < -1 ? -1 : (c > 1 ? 1 : c);
		}
	}
	cos /= (double)npairs;
	t = (double)n * cos / (1.0 + (double)(n - 1) * cos);
	if (!isfinite(t))
		return err_set(err, ERR_INVALID, "tensor '%s': model_stock is "
			       "undefined: the task vectors' mean cosine %g makes "
			       "1 + (N-1) cos zero", name, cos);
	for (size_t j = 0; j < numel; j++) {
		double sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += (double)in[i][j];
		out[j] = (T)(t * (sum / (double)n) + (1.0 - t) * (double)base[j]);
	}
	return 0;
}

int MERGE_FN(merge_tensor)(const struct merge_spec *spec, const char *name,
			   const T *base, const T *const *inputs,
			   const double *weights, size_t ninputs, size_t numel,
			   T *out, struct merge_scratch *scratch,
			   struct err *err)
{
	struct merge_params p;
	int rc;

	if (!name)
		name = "";
	merge_spec_params(spec, name, &p);
	rc = check_args(spec, name, base, ninputs, weights, &p, err);
	if (rc < 0 || numel == 0)
		return rc;
	switch (spec->method) {
	case MERGE_LINEAR:
		return MERGE_FN(linear)(name, &p, inputs, weights, ninputs,
					numel, out, err);
	case MERGE_TASK_ARITHMETIC:
	case MERGE_TIES:
	case MERGE_DARE_LINEAR:
	case MERGE_DARE_TIES:
		return MERGE_FN(gta)(spec, name, &p, base, inputs, weights,
				     ninputs, numel, out, scratch, err);
	case MERGE_SLERP:
		return MERGE_FN(slerp)(name, &p, base, inputs[0], numel, out,
				       err);
	case MERGE_MODEL_STOCK:
		return MERGE_FN(model_stock)(name, base, inputs, ninputs,
					     numel, out, scratch, err);
	}
	return err_set(err, ERR_INVALID, "tensor '%s': unknown merge method",
		       name);
}

#undef T

#endif /* MERGE_T */
