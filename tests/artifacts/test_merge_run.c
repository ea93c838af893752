/* tests/artifacts/test_merge_run.c — the streaming merger: small
 * checkpoints (F32 big enough to be streamed in several chunks, BF16 big
 * enough for TIES's sampled threshold, F16, F64, a scalar, an empty tensor
 * and an I64 tensor that passes through) written with ckpt_writer, merged
 * with every method and compared bit for bit with merge_tensor_* applied
 * directly; sharded inputs and outputs; the same bytes on 1, 2 and 4
 * threads; each mismatch refused by name, or passed through from the base;
 * nothing left behind by a failed merge; linear's fused path (several
 * output stages, NaN and Inf, per-tensor normalize) against the kernel. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/checkpoint.h"
#include "artifacts/dtype.h"
#include "artifacts/merge.h"
#include "artifacts/merge_run.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

#include "tests/tmpdir.h"

/* ---- building checkpoints ------------------------------------------------ */

struct tdef {
	const char *name;
	enum st_dtype dtype;
	size_t ndim;
	size_t shape[2];
};

/* 19200 F32 elements: two chunks of the streamed methods and a tail.
 * 150000 BF16: above TIES's sampling threshold. */
static const struct tdef defs[] = {
	{ "a.f32", ST_F32, 2, { 64, 300 } },
	{ "b.bf16", ST_BF16, 2, { 3, 50000 } },
	{ "c.f16", ST_F16, 1, { 1000 } },
	{ "d.f64", ST_F64, 1, { 257 } },
	{ "e.pos", ST_I64, 1, { 16 } },
	{ "f.scalar", ST_F32, 0, { 0 } },
	{ "g.empty", ST_BF16, 2, { 0, 7 } },
};
#define NDEFS (sizeof(defs) / sizeof(*defs))

/* What to get wrong in a model. */
struct fault {
	const char *omit;        /* leave this tensor out */
	const char *reshape;     /* give it another shape */
	const char *retype;      /* give it another (computable) dtype */
	const char *extra;       /* add this tensor (F32, 4 elements) */
	int pos_differs;         /* e.pos gets other values */
	const char *nan;         /* put a NaN in this F32 tensor */
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static size_t numel_of(const struct tdef *d)
{
	size_t n = 1;

	for (size_t k = 0; k < d->ndim; k++)
		n *= d->shape[k];
	return n;
}

/* The bytes of tensor d in model `seed`: values around a shared center,
 * so that task vectors are small and of both signs. */
static void *tensor_bytes(const struct tdef *d, enum st_dtype dt, size_t numel,
			  uint64_t seed, size_t *len)
{
	size_t w = dtype_width(dt);
	unsigned char *b = xmalloc(numel * w + 1);
	uint64_t s = seed * 7919 + (uint64_t)d->name[0];
	uint64_t c = 12345 + (uint64_t)d->name[0];

	for (size_t j = 0; j < numel; j++) {
		double center = (double)(rng_next(&c) >> 11) * 0x1p-53 * 2 - 1;
		double v = center + ((double)(rng_next(&s) >> 11) * 0x1p-53 - 0.5) * 0.1;
		if (dt == ST_I64) {
			int64_t x = (int64_t)j;
			memcpy(b + j * 8, &x, 8);
		} else if (dt == ST_F64) {
			dtype_from_f64(dt, &v, b + j * w, 1);
		} else {
			float f = (float)v;
			dtype_from_f32(dt, &f, b + j * w, 1);
		}
	}
	*len = numel * w;
	return b;
}

static void write_model(const char *dir, uint64_t seed, size_t max_shard,
			const struct fault *f)
{
	static const struct fault none = { 0 };
	struct ckpt_writer *w;
	struct err e;

	if (!f)
		f = &none;
	assert_int_equal(ckpt_writer_new(dir, max_shard, &w, &e), 0);
	for (size_t i = 0; i < NDEFS; i++) {
		const struct tdef *d = &defs[i];
		size_t shape[2] = { d->shape[0], d->shape[1] };
		enum st_dtype dt = d->dtype;
		if (f->omit && !strcmp(f->omit, d->name))
			continue;
		if (f->reshape && !strcmp(f->reshape, d->name))
			shape[0] += 1;
		if (f->retype && !strcmp(f->retype, d->name))
			dt = dt == ST_F32 ? ST_F16 : ST_F32;
		assert_int_equal(ckpt_writer_add(w, d->name, dt, shape, d->ndim, &e), 0);
	}
	if (f->extra) {
		size_t shape[1] = { 4 };
		assert_int_equal(ckpt_writer_add(w, f->extra, ST_F32, shape, 1, &e), 0);
	}
	if (ckpt_writer_begin(w, &e))
		fail_msg("%s", e.msg);
	for (size_t i = 0; i < NDEFS; i++) {
		const struct tdef *d = &defs[i];
		struct tdef dd = *d;
		enum st_dtype dt = d->dtype;
		size_t len;
		void *b;
		if (f->omit && !strcmp(f->omit, d->name))
			continue;
		if (f->reshape && !strcmp(f->reshape, d->name))
			dd.shape[0] += 1;
		if (f->retype && !strcmp(f->retype, d->name))
			dt = dt == ST_F32 ? ST_F16 : ST_F32;
		b = tensor_bytes(d, dt, numel_of(&dd), seed, &len);
		if (f->pos_differs && dt == ST_I64)
			((unsigned char *)b)[0] ^= 1;
		if (f->nan && !strcmp(f->nan, d->name)) {
			float nan = __builtin_nanf("");
			memcpy((char *)b + 4 * 5, &nan, 4);
		}
		if (len && ckpt_writer_write(w, d->name, 0, b, len, &e))
			fail_msg("%s", e.msg);
		free(b);
	}
	if (f->extra) {
		float v[4] = { 1, 2, 3, 4 };
		assert_int_equal(ckpt_writer_write(w, f->extra, 0, v, sizeof(v), &e), 0);
	}
	if (ckpt_writer_commit(w, &e))
		fail_msg("%s", e.msg);
	ckpt_writer_free(w);
}

/* A fresh directory under tmpdir with model `seed` in it. */
static char *model(const char *name, uint64_t seed, size_t max_shard,
		   const struct fault *f)
{
	char *dir = fs_join(tmpdir, name);

	write_model(dir, seed, max_shard, f);
	return dir;
}

static char *out_path(const char *name)
{
	return fs_join(tmpdir, name);
}

static char *read_all(const char *path, size_t *len)
{
	char *s;
	struct err e;

	if (fs_read_file(path, (size_t)1 << 30, &s, len, &e))
		fail_msg("%s", e.msg);
	return s;
}

/* ---- running merges ---------------------------------------------------------- */

struct setup_ {
	char *base;          /* NULL: none */
	char *models[4];
	double weights[4];
	size_t n;
};

static int do_merge(struct merge_spec *spec, const struct setup_ *su,
		    const char *out, int threads, size_t max_shard, int pass,
		    struct merge_run_report *rep, struct err *e)
{
	static const char *const labels[] = { "a", "b", "c", "d" };
	struct merge_run_input base = { su->base, "base", NULL, 1 };
	struct merge_run_input in[4];
	struct merge_run_opts o = { 0 };

	for (size_t i = 0; i < su->n; i++)
		in[i] = (struct merge_run_input){ su->models[i], labels[i], NULL, su->weights[i] };
	o.spec = spec;
	o.base = su->base ? &base : NULL;
	o.models = in;
	o.nmodels = su->n;
	o.out_dir = out;
	o.max_shard_bytes = max_shard;
	o.threads = threads;
	o.pass_through_base = pass;
	return merge_run(&o, rep, e);
}

/* Output tensor name checked against merge_tensor_* on the same inputs. */
static void check_tensor(const struct merge_spec *spec, struct ckpt *const *in,
			 size_t nin, int has_base, const double *weights,
			 const struct st_tensor *got)
{
	const struct st_tensor *ts[5];
	size_t n = got->numel, w = dtype_width(got->dtype);
	unsigned char *want = xmalloc(got->nbytes + 1);
	struct merge_scratch sc = MERGE_SCRATCH_INIT;
	struct err e;

	for (size_t i = 0; i < nin; i++) {
		ts[i] = ckpt_find(in[i], got->name);
		assert_non_null(ts[i]);
	}
	if (!dtype_computable(got->dtype)) {
		assert_memory_equal(got->data, ts[0]->data, got->nbytes);
	} else if (got->dtype == ST_F64) {
		double *v[5], *out = xmalloc(n * 8 + 8);
		for (size_t i = 0; i < nin; i++) {
			v[i] = xmalloc(n * 8 + 8);
			dtype_to_f64(ts[i]->dtype, ts[i]->data, v[i], n);
		}
		if (merge_tensor_f64(spec, got->name, has_base ? v[0] : NULL,
				     (const double *const *)(v + has_base), weights,
				     nin - (size_t)has_base, n, out, &sc, &e))
			fail_msg("%s", e.msg);
		dtype_from_f64(got->dtype, out, want, n);
		for (size_t i = 0; i < nin; i++)
			free(v[i]);
		free(out);
		assert_memory_equal(got->data, want, n * w);
	} else {
		float *v[5], *out = xmalloc(n * 4 + 4);
		for (size_t i = 0; i < nin; i++) {
			v[i] = xmalloc(n * 4 + 4);
			dtype_to_f32(ts[i]->dtype, ts[i]->data, v[i], n);
		}
		if (n && merge_tensor_f32(spec, got->name, has_base ? v[0] : NULL,
					  (const float *const *)(v + has_base), weights,
					  nin - (size_t)has_base, n, out, &sc, &e))
			fail_msg("%s", e.msg);
		dtype_from_f32(got->dtype, out, want, n);
		for (size_t i = 0; i < nin; i++)
			free(v[i]);
		free(out);
		if (n != 0 && memcmp(got->data, want, n * w)) {
			size_t j = 0;
			while (!memcmp((char *)got->data + j * w, want + j * w, w))
				j++;
			fail_msg("tensor '%s' differs from merge_tensor_f32 at element %zu",
				 got->name, j);
		}
	}
	merge_scratch_free(&sc);
	free(want);
}

/* Opens out and checks every tensor against the kernels. */
static void check_output(const struct merge_spec *spec, const struct setup_ *su,
			 const char *out)
{
	struct ckpt *in[5], *res;
	size_t nin = 0;
	struct err e;

	if (su->base)
		assert_int_equal(ckpt_open(su->base, &in[nin++], &e), 0);
	for (size_t i = 0; i < su->n; i++)
		assert_int_equal(ckpt_open(su->models[i], &in[nin++], &e), 0);
	if (ckpt_open(out, &res, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(ckpt_count(res), NDEFS);
	for (size_t k = 0; k < ckpt_count(res); k++) {
		const struct st_tensor *t = ckpt_tensor(res, k);
		const struct st_tensor *r = ckpt_find(in[0], t->name);
		assert_non_null(r);
		assert_int_equal(t->dtype, r->dtype);
		assert_int_equal(t->ndim, r->ndim);
		check_tensor(spec, in, nin, su->base != NULL, su->weights, t);
	}
	assert_string_equal(st_metadata_get(ckpt_file(res, 0), "format"), "pt");
	assert_string_equal(st_metadata_get(ckpt_file(res, 0), "anneal.merge.method"),
			    merge_method_name(merge_spec_method(spec)));
	ckpt_close(res);
	for (size_t i = 0; i < nin; i++)
		ckpt_close(in[i]);
}

static struct setup_ three(const char *prefix, size_t max_shard)
{
	struct setup_ su = { 0 };
	char name[64];

	snprintf(name, sizeof(name), "%s-base", prefix);
	su.base = model(name, 0, max_shard, NULL);
	for (size_t i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%s-m%zu", prefix, i);
		su.models[i] = model(name, i + 1, max_shard, NULL);
		su.weights[i] = 0.5 + (double)i * 0.25;
	}
	su.n = 3;
	return su;
}

static void setup_free(struct setup_ *su)
{
	free(su->base);
	for (size_t i = 0; i < 4; i++)
		free(su->models[i]);
}

static struct merge_spec *spec_of(const char *method, const char *const *kv)
{
	enum merge_method m;
	struct merge_spec *s;
	struct err e;

	assert_int_equal(merge_method_parse(method, &m, &e), 0);
	s = merge_spec_new(m);
	merge_spec_set_seed(s, 42);
	for (; kv && *kv; kv++)
		if (merge_spec_set(s, *kv, &e))
			fail_msg("%s", e.msg);
	return s;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_merge_run__every_method_matches_the_kernels(void **state)
{
	static const struct {
		const char *method;
		const char *kv[4];
		int base;
		size_t n;
	} cases[] = {
		{ "linear", { NULL }, 0, 3 },
		{ "linear", { "normalize=false", NULL }, 0, 2 },
		{ "task_arithmetic", { "lambda=0.7", NULL }, 1, 3 },
		{ "ties", { "density=0.5", NULL }, 1, 3 },
		{ "ties", { "density=0.2", "consensus=count", NULL }, 1, 2 },
		{ "dare_linear", { "density=0.6", NULL }, 1, 3 },
		{ "dare_ties", { "density=0.4", "rescale=density", NULL }, 1, 3 },
		{ "slerp", { "t=0.3", NULL }, 1, 1 },
		{ "model_stock", { NULL }, 1, 3 },
	};
	struct setup_ all = three("methods", 0);

	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		struct merge_spec *spec = spec_of(cases[c].method, cases[c].kv);
		struct setup_ su = all;
		struct merge_run_report rep;
		char name[64], *out;
		struct err e;

		su.n = cases[c].n;
		if (!cases[c].base) {
			su.base = NULL;
		}
		snprintf(name, sizeof(name), "out-%s-%zu", cases[c].method, c);
		out = out_path(name);
		if (do_merge(spec, &su, out, 2, 0, 0, &rep, &e))
			fail_msg("%s: %s", cases[c].method, e.msg);
		assert_int_equal(rep.tensors, NDEFS);
		assert_int_equal(rep.merged, NDEFS - 1);
		assert_int_equal(rep.copied, 1);
		assert_int_equal(rep.from_base, 0);
		assert_int_equal(rep.nshards, 1);
		assert_true(rep.peak_rss > 0);
		assert_true(rep.bytes_written > 0);
		check_output(spec, &su, out);
		merge_spec_free(spec);
		free(out);
	}
	setup_free(&all);
}

static void test_merge_run__rules_apply_per_tensor(void **state)
{
	struct merge_spec *spec = spec_of("slerp", NULL);
	struct setup_ su = three("rules", 0);
	struct merge_run_report rep;
	char *out = out_path("out-rules");
	struct err e;

	assert_int_equal(merge_spec_set(spec, "t=0.5", &e), 0);
	assert_int_equal(merge_spec_add_rule(spec, "b.*", "t=0.9", &e), 0);
	su.n = 1;
	if (do_merge(spec, &su, out, 3, 0, 0, &rep, &e))
		fail_msg("%s", e.msg);
	check_output(spec, &su, out);
	merge_spec_free(spec);
	free(out);
	setup_free(&su);
}

static void test_merge_run__sharded_inputs_and_output(void **state)
{
	struct merge_spec *spec = spec_of("ties", (const char *const[]){ "density=0.5", NULL });
	struct setup_ whole = three("whole", 0), sharded = three("sharded", 100000);
	struct merge_run_report rep;
	char *o1 = out_path("out-whole"), *o2 = out_path("out-from-shards");
	char *o3 = out_path("out-sharded");
	char *p1, *p2, *a, *b;
	size_t la, lb;
	struct ckpt *c1, *c3;
	struct err e;

	/* The inputs really are sharded. */
	p1 = fs_join(sharded.models[0], CKPT_INDEX);
	assert_true(fs_exists(p1));
	free(p1);
	if (do_merge(spec, &whole, o1, 2, 0, 0, &rep, &e) ||
	    do_merge(spec, &sharded, o2, 2, 0, 0, &rep, &e))
		fail_msg("%s", e.msg);
	/* Same tensors, same labels: the same file. */
	p1 = fs_join(o1, CKPT_SINGLE);
	p2 = fs_join(o2, CKPT_SINGLE);
	a = read_all(p1, &la);
	b = read_all(p2, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	free(a);
	free(b);
	free(p2);
	check_output(spec, &sharded, o2);

	/* 150000 x 2 bytes is the largest tensor: 100 kB shards give several. */
	if (do_merge(spec, &whole, o3, 2, 100000, 0, &rep, &e))
		fail_msg("%s", e.msg);
	assert_true(rep.nshards > 1);
	p2 = fs_join(o3, CKPT_INDEX);
	assert_true(fs_exists(p2));
	free(p2);
	check_output(spec, &whole, o3);
	assert_int_equal(ckpt_open(o1, &c1, &e), 0);
	assert_int_equal(ckpt_open(o3, &c3, &e), 0);
	assert_int_equal(ckpt_count(c1), ckpt_count(c3));
	for (size_t k = 0; k < ckpt_count(c1); k++) {
		const struct st_tensor *x = ckpt_tensor(c1, k), *y = ckpt_tensor(c3, k);
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->nbytes, y->nbytes);
		if (x->nbytes)
			assert_memory_equal(x->data, y->data, x->nbytes);
	}
	ckpt_close(c1);
	ckpt_close(c3);
	free(p1);
	free(o1);
	free(o2);
	free(o3);
	setup_free(&whole);
	setup_free(&sharded);
	merge_spec_free(spec);
}

static void test_merge_run__same_bytes_on_any_thread_count(void **state)
{
	static const char *const methods[] = { "linear", "ties", "dare_ties", "model_stock" };
	struct setup_ su = three("threads", 0);

	for (size_t m = 0; m < sizeof(methods) / sizeof(*methods); m++) {
		struct merge_spec *spec = spec_of(methods[m], NULL);
		struct setup_ s = su;
		char *first = NULL;
		size_t first_len = 0;
		const int counts[] = { 1, 2, 4 };

		if (!strcmp(methods[m], "linear"))
			s.base = NULL;
		if (strcmp(methods[m], "linear") && strcmp(methods[m], "model_stock"))
			assert_int_equal(merge_spec_set(spec, "density=0.5", NULL), 0);
		for (size_t k = 0; k < 3; k++) {
			struct merge_run_report rep;
			char name[64], *out, *file, *bytes;
			size_t len;
			struct err e;
			snprintf(name, sizeof(name), "out-threads-%s-%d", methods[m], counts[k]);
			out = out_path(name);
			if (do_merge(spec, &s, out, counts[k], 0, 0, &rep, &e))
				fail_msg("%s", e.msg);
			assert_int_equal(rep.threads, counts[k]);
			file = fs_join(out, CKPT_SINGLE);
			bytes = read_all(file, &len);
			if (!first) {
				first = bytes;
				first_len = len;
			} else {
				assert_int_equal(len, first_len);
				if (memcmp(bytes, first, len))
					fail_msg("%s: %d threads wrote other bytes than 1",
						 methods[m], counts[k]);
				free(bytes);
			}
			free(file);
			free(out);
		}
		free(first);
		merge_spec_free(spec);
	}
	setup_free(&su);
}

/* Merges su (ties) into a fresh dir expecting failure; returns the
 * message; checks the directory is gone. */
static void expect_refusal(struct setup_ *su, const char *method, int pass,
			   const char *want)
{
	struct merge_spec *spec = spec_of(method, NULL);
	char *out = out_path("out-refused");
	struct merge_run_report rep;
	struct err e;
	int rc;

	err_clear(&e);
	rc = do_merge(spec, su, out, 2, 0, pass, &rep, &e);
	if (rc != ERR_INVALID)
		fail_msg("expected ERR_INVALID, got %d (%s)", rc, e.msg);
	if (strcmp(e.msg, want))
		fail_msg("expected message\n  %s\ngot\n  %s", want, e.msg);
	assert_false(fs_exists(out));
	merge_spec_free(spec);
	free(out);
}

static void test_merge_run__mismatches_are_refused_by_name(void **state)
{
	struct setup_ su = three("mis", 0);
	char *good = su.models[1];
	struct fault omit = { .omit = "c.f16" }, reshape = { .reshape = "a.f32" };
	struct fault retype = { .retype = "a.f32" }, pos = { .pos_differs = 1 };
	struct fault extra = { .extra = "z.extra" };

	su.n = 2;
	su.models[1] = model("mis-omit", 2, 0, &omit);
	expect_refusal(&su, "ties", 0,
		       "tensor 'c.f16': missing from 'b' (present in base and 'a')");
	free(su.models[1]);
	su.models[1] = model("mis-shape", 2, 0, &reshape);
	expect_refusal(&su, "ties", 0,
		       "tensor 'a.f32': shape [65, 300] in 'b' differs from [64, 300] in base");
	free(su.models[1]);
	su.models[1] = model("mis-dtype", 2, 0, &retype);
	expect_refusal(&su, "ties", 0,
		       "tensor 'a.f32': dtype F16 in 'b' differs from F32 in base");
	free(su.models[1]);
	su.models[1] = model("mis-pos", 2, 0, &pos);
	expect_refusal(&su, "ties", 0,
		       "tensor 'e.pos': dtype I64 cannot be merged, and its values in 'b' "
		       "differ from those in base");
	free(su.models[1]);
	su.models[1] = model("mis-extra", 2, 0, &extra);
	expect_refusal(&su, "ties", 0,
		       "tensor 'z.extra': missing from base (present in 'b')");
	free(su.models[1]);
	/* Without a base, the first model is the reference. */
	su.models[1] = model("mis-omit2", 2, 0, &omit);
	{
		struct setup_ nb = su;
		nb.base = NULL;
		expect_refusal(&nb, "linear", 0,
			       "tensor 'c.f16': missing from 'b' (present in 'a')");
	}
	free(su.models[1]);
	su.models[1] = good;
	setup_free(&su);
}

static void test_merge_run__pass_through_base(void **state)
{
	struct setup_ su = three("pass", 0);
	struct fault f = { .omit = "c.f16", .reshape = "a.f32", .pos_differs = 1,
			   .extra = "z.extra" };
	struct merge_spec *spec = spec_of("ties", (const char *const[]){ "density=0.5", NULL });
	struct merge_run_report rep;
	char *out = out_path("out-pass");
	struct ckpt *res, *base, *clean;
	struct err e;

	free(su.models[1]);
	su.models[1] = model("pass-faulty", 2, 0, &f);
	su.n = 2;
	if (do_merge(spec, &su, out, 2, 0, 1, &rep, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(rep.tensors, NDEFS);
	assert_int_equal(rep.from_base, 3);   /* a.f32, c.f16, e.pos */
	assert_int_equal(rep.left_out, 1);    /* z.extra */
	assert_int_equal(rep.merged, NDEFS - 3);
	assert_int_equal(ckpt_open(out, &res, &e), 0);
	assert_int_equal(ckpt_open(su.base, &base, &e), 0);
	assert_null(ckpt_find(res, "z.extra"));
	{
		static const char *const passed[] = { "a.f32", "c.f16", "e.pos" };
		for (size_t i = 0; i < 3; i++) {
			const struct st_tensor *x = ckpt_find(res, passed[i]);
			const struct st_tensor *y = ckpt_find(base, passed[i]);
			assert_int_equal(x->nbytes, y->nbytes);
			assert_memory_equal(x->data, y->data, x->nbytes);
		}
	}
	/* The others are merged as if nothing were wrong. */
	{
		struct setup_ ok = su;
		char *o2 = out_path("out-pass-clean");
		const struct st_tensor *x, *y;
		ok.models[1] = model("pass-clean", 2, 0, NULL);
		if (do_merge(spec, &ok, o2, 1, 0, 0, &rep, &e))
			fail_msg("%s", e.msg);
		assert_int_equal(ckpt_open(o2, &clean, &e), 0);
		x = ckpt_find(res, "b.bf16");
		y = ckpt_find(clean, "b.bf16");
		assert_memory_equal(x->data, y->data, x->nbytes);
		ckpt_close(clean);
		free(ok.models[1]);
		free(o2);
	}
	assert_string_equal(st_metadata_get(ckpt_file(res, 0), "anneal.merge.pass_through_base"),
			    "true");
	ckpt_close(res);
	ckpt_close(base);
	merge_spec_free(spec);
	free(out);
	setup_free(&su);
}

static void test_merge_run__failures_leave_nothing(void **state)
{
	struct setup_ su = three("fail", 0);
	struct fault nan = { .nan = "a.f32" };
	struct merge_spec *spec = spec_of("ties", NULL);
	struct merge_run_report rep;
	char *out = out_path("out-fail"), *p;
	struct err e;
	int rc;

	/* A refusal from a worker thread, after the output was begun. */
	free(su.models[1]);
	su.models[1] = model("fail-nan", 2, 0, &nan);
	su.n = 2;
	for (int threads = 1; threads <= 4; threads *= 2) {
		rc = do_merge(spec, &su, out, threads, 100000, 0, &rep, &e);
		assert_int_equal(rc, ERR_INVALID);
		assert_non_null(strstr(e.msg, "tensor 'a.f32': input 1 ('b') has NaN at element 5"));
		assert_false(fs_exists(out));
	}
	/* An existing directory stays, emptied of what the merge wrote. */
	assert_int_equal(fs_mkdir_p(out, 0755, &e), 0);
	rc = do_merge(spec, &su, out, 2, 0, 0, &rep, &e);
	assert_int_equal(rc, ERR_INVALID);
	assert_true(fs_exists(out));
	p = fs_join(out, CKPT_SINGLE);
	assert_false(fs_exists(p));
	free(p);
	/* A directory that holds a checkpoint is refused, and kept. */
	free(su.models[1]);
	su.models[1] = model("fail-ok", 2, 0, NULL);
	write_model(out, 9, 0, NULL);
	rc = do_merge(spec, &su, out, 2, 0, 0, &rep, &e);
	assert_int_equal(rc, ERR_INVALID);
	assert_non_null(strstr(e.msg, "already holds a checkpoint"));
	p = fs_join(out, CKPT_SINGLE);
	assert_true(fs_exists(p));
	free(p);
	/* An input that is not a checkpoint. */
	{
		struct setup_ bad = su;
		char *missing = out_path("no-such-model");
		char *o2 = out_path("out-fail-2");
		bad.models[1] = missing;
		rc = do_merge(spec, &bad, o2, 2, 0, 0, &rep, &e);
		assert_true(rc < 0);
		assert_non_null(strstr(e.msg, "model 'b': "));
		assert_false(fs_exists(o2));
		free(missing);
		free(o2);
	}
	merge_spec_free(spec);
	free(out);
	setup_free(&su);
}

static void test_merge_run__argument_errors(void **state)
{
	struct setup_ su = three("args", 0);
	struct merge_spec *spec;
	struct merge_run_report rep;
	char *out = out_path("out-args");
	struct err e;

	spec = spec_of("linear", NULL);
	assert_int_equal(do_merge(spec, &su, out, 1, 0, 0, &rep, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "method 'linear' takes no base"));
	merge_spec_free(spec);

	spec = spec_of("slerp", (const char *const[]){ "t=0.5", NULL });
	assert_int_equal(do_merge(spec, &su, out, 1, 0, 0, &rep, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "exactly one model"));
	merge_spec_free(spec);

	spec = spec_of("slerp", NULL);
	su.n = 1;
	assert_int_equal(do_merge(spec, &su, out, 1, 0, 0, &rep, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "'t'"));
	merge_spec_free(spec);

	spec = spec_of("ties", NULL);
	{
		struct setup_ nb = su;
		nb.base = NULL;
		assert_int_equal(do_merge(spec, &nb, out, 1, 0, 0, &rep, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "needs a base"));
	}
	merge_spec_free(spec);

	spec = spec_of("model_stock", NULL);
	assert_int_equal(do_merge(spec, &su, out, 1, 0, 0, &rep, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "at least 2 models"));
	merge_spec_free(spec);

	spec = spec_of("linear", NULL);
	{
		struct setup_ nb = su;
		nb.base = NULL;
		assert_int_equal(do_merge(spec, &nb, out, 1, 0, 1, &rep, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "needs a base"));
	}
	merge_spec_free(spec);
	assert_false(fs_exists(out));
	free(out);
	setup_free(&su);
}

/* Linear converts and sums each chunk in one pass (merge_run.c's
 * linear_fused): the same bits as merge_tensor_f32 on converted inputs
 * (NaN payloads included, with a NaN in one input at a time: which of two
 * NaNs a sum gives is the compiler's pick, and gcc -O1 and -O2 pick
 * differently, in the kernel as in the fused loops; test_dtype checks
 * that it is one of them), over tensors of several 1 MiB output stages
 * with a tail, unaligned F32, Inf, subnormals, per-tensor normalize, on 1
 * and 2 threads; and the kernel's refusal of weights that sum to 0. */
static const struct tdef big[] = {
	{ "w.bf16", ST_BF16, 1, { 1100003 } },
	{ "x.f16", ST_F16, 2, { 3, 200001 } },
	{ "y.f32", ST_F32, 1, { 70001 } },   /* after an odd count of 2-byte elements */
	{ "z.bf16", ST_BF16, 1, { 5 } },
};
#define NBIG (sizeof(big) / sizeof(*big))

static char *big_model(const char *name, uint64_t seed)
{
	char *dir = out_path(name);
	struct ckpt_writer *w;
	struct err e;
	uint64_t s = seed;

	assert_int_equal(ckpt_writer_new(dir, 0, &w, &e), 0);
	for (size_t i = 0; i < NBIG; i++)
		assert_int_equal(ckpt_writer_add(w, big[i].name, big[i].dtype, big[i].shape,
						 big[i].ndim, &e), 0);
	if (ckpt_writer_begin(w, &e))
		fail_msg("%s", e.msg);
	for (size_t i = 0; i < NBIG; i++) {
		size_t n = numel_of(&big[i]), wd = dtype_width(big[i].dtype);
		unsigned char *b = xmalloc(n * wd);
		for (size_t j = 0; j < n; j++) {
			uint64_t r = rng_next(&s);
			float f = (float)(((double)(r >> 11) * 0x1p-53 - 0.5) * 4);
			uint32_t u;
			if (j % 1000 == 7 + 300 * (seed % 3)) {
				/* NaN with a payload of its own, or Inf; never
				 * at the same element as another model's */
				u = 0x7f800000u | (uint32_t)(r & 0x807fffffu);
				memcpy(&f, &u, 4);
			} else if (j % 1000 == 11) {
				f = 1e-41f;
			}
			dtype_from_f32(big[i].dtype, &f, b + j * wd, 1);
		}
		if (ckpt_writer_write(w, big[i].name, 0, b, n * wd, &e))
			fail_msg("%s", e.msg);
		free(b);
	}
	if (ckpt_writer_commit(w, &e))
		fail_msg("%s", e.msg);
	ckpt_writer_free(w);
	return dir;
}

static void test_merge_run__linear_fused_matches_the_kernel(void **state)
{
	struct setup_ su = { 0 };
	struct merge_spec *spec = spec_of("linear", NULL);
	struct err e;

	for (size_t i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "big-m%zu", i);
		su.models[i] = big_model(name, 100 + i);
		su.weights[i] = i == 1 ? -0.7 : 0.45 + (double)i;
	}
	su.n = 3;
	assert_int_equal(merge_spec_add_rule(spec, "x.*", "normalize=false", &e), 0);
	for (int threads = 1; threads <= 2; threads++) {
		struct merge_run_report rep;
		struct ckpt *in[3], *res;
		char name[32], *out;
		snprintf(name, sizeof(name), "out-big-%d", threads);
		out = out_path(name);
		if (do_merge(spec, &su, out, threads, 0, 0, &rep, &e))
			fail_msg("%s", e.msg);
		assert_int_equal(rep.merged, NBIG);
		for (size_t i = 0; i < 3; i++)
			assert_int_equal(ckpt_open(su.models[i], &in[i], &e), 0);
		assert_int_equal(ckpt_open(out, &res, &e), 0);
		assert_int_equal(ckpt_count(res), NBIG);
		for (size_t k = 0; k < NBIG; k++)
			check_tensor(spec, in, 3, 0, su.weights, ckpt_tensor(res, k));
		ckpt_close(res);
		for (size_t i = 0; i < 3; i++)
			ckpt_close(in[i]);
		free(out);
	}
	/* Weights that sum to 0 cannot be normalized: the kernel's message. */
	{
		struct merge_run_report rep;
		char *out = out_path("out-big-zero");
		su.weights[0] = 1;
		su.weights[1] = -3;
		su.weights[2] = 2;
		assert_int_equal(do_merge(spec, &su, out, 2, 0, 0, &rep, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "weights sum to 0"));
		assert_false(fs_exists(out));
		free(out);
	}
	merge_spec_free(spec);
	setup_free(&su);
}

/* The sparsifying methods over F32, F16 and BF16 tensors are streamed
 * (merge_tensor_stream): the same bits as merge_tensor_f32 on converted
 * inputs, on 1, 2 and 3 threads, with per-tensor rules, over tensors of
 * several output stages (with ties at TIES' threshold: bf16-like task
 * vectors), next to an F64 tensor that takes the whole-tensor path; a NaN
 * is refused with the model's label and nothing is left behind; and the
 * scratch bound is what the streamed path needs, not whole tensors. */
static const struct tdef sparse[] = {
	{ "p.bf16", ST_BF16, 1, { 1100003 } },
	{ "q.f16", ST_F16, 2, { 3, 200001 } },
	{ "r.f32", ST_F32, 1, { 140001 } },
	{ "s.bf16", ST_BF16, 1, { 5 } },
	{ "t.f64", ST_F64, 1, { 3000 } },
};
#define NSPARSE (sizeof(sparse) / sizeof(*sparse))

static char *sparse_model(const char *name, uint64_t seed, size_t nan_at)
{
	char *dir = out_path(name);
	struct ckpt_writer *w;
	struct err e;

	assert_int_equal(ckpt_writer_new(dir, 0, &w, &e), 0);
	for (size_t i = 0; i < NSPARSE; i++)
		assert_int_equal(ckpt_writer_add(w, sparse[i].name, sparse[i].dtype,
						 sparse[i].shape, sparse[i].ndim, &e), 0);
	if (ckpt_writer_begin(w, &e))
		fail_msg("%s", e.msg);
	for (size_t i = 0; i < NSPARSE; i++) {
		size_t n = numel_of(&sparse[i]), wd = dtype_width(sparse[i].dtype);
		unsigned char *b = xmalloc(n * wd);
		uint64_t c = 99, s = seed * 1000 + i;
		for (size_t j = 0; j < n; j++) {
			/* a shared "pretrained" value and a small delta */
			double v = ((double)(rng_next(&c) >> 11) * 0x1p-53 - 0.5) * 0.08;
			if (seed)
				v += ((double)(rng_next(&s) >> 11) * 0x1p-53 - 0.5) * 0.004;
			if (j == nan_at && i == 0)
				v = __builtin_nan("");
			if (sparse[i].dtype == ST_F64) {
				dtype_from_f64(ST_F64, &v, b + j * wd, 1);
			} else {
				float f = (float)v;
				dtype_from_f32(sparse[i].dtype, &f, b + j * wd, 1);
			}
		}
		if (ckpt_writer_write(w, sparse[i].name, 0, b, n * wd, &e))
			fail_msg("%s", e.msg);
		free(b);
	}
	if (ckpt_writer_commit(w, &e))
		fail_msg("%s", e.msg);
	ckpt_writer_free(w);
	return dir;
}

static void test_merge_run__sparse_streamed_matches_the_kernel(void **state)
{
	static const struct {
		const char *method;
		const char *kv[4];
		const char *rule, *rule_kv;
	} cases[] = {
		{ "ties", { "density=0.5", NULL }, NULL, NULL },
		{ "ties", { "density=0.3", "consensus=count", "rescale=l1", NULL },
		  "q.*", "density=0.9, normalize=false" },
		{ "ties", { "density=0", NULL }, "p.*", "density=1" },
		{ "dare_ties", { "density=0.4", NULL }, NULL, NULL },
		{ "dare_linear", { "density=0.7", "rescale=density", NULL }, NULL, NULL },
	};
	struct setup_ su = { 0 };
	struct err e;

	su.base = sparse_model("sp-base", 0, SIZE_MAX);
	for (size_t i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "sp-m%zu", i);
		su.models[i] = sparse_model(name, i + 1, SIZE_MAX);
		su.weights[i] = i == 1 ? -0.5 : 1 + 0.5 * (double)i;
	}
	su.n = 3;
	for (size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
		struct merge_spec *spec = spec_of(cases[k].method, cases[k].kv);
		if (cases[k].rule)
			assert_int_equal(merge_spec_add_rule(spec, cases[k].rule,
							     cases[k].rule_kv, &e), 0);
		for (int threads = 1; threads <= 3; threads++) {
			struct merge_run_report rep;
			struct ckpt *in[4], *res;
			char name[48], *out;
			snprintf(name, sizeof(name), "out-sp-%zu-%d", k, threads);
			out = out_path(name);
			if (do_merge(spec, &su, out, threads, 0, 0, &rep, &e))
				fail_msg("%s: %s", cases[k].method, e.msg);
			assert_int_equal(rep.merged, NSPARSE);
			/* the streamed tensors need no whole float copies: the
			 * F64 one bounds the scratch */
			assert_true(rep.scratch_bound <= (uint64_t)threads *
				    ((3 + 3) * 3000 * 8 + (3 << 20)));
			assert_int_equal(ckpt_open(su.base, &in[0], &e), 0);
			for (size_t i = 0; i < 3; i++)
				assert_int_equal(ckpt_open(su.models[i], &in[i + 1], &e), 0);
			assert_int_equal(ckpt_open(out, &res, &e), 0);
			assert_int_equal(ckpt_count(res), NSPARSE);
			for (size_t t = 0; t < NSPARSE; t++)
				check_tensor(spec, in, 4, 1, su.weights, ckpt_tensor(res, t));
			ckpt_close(res);
			for (size_t i = 0; i < 4; i++)
				ckpt_close(in[i]);
			free(out);
		}
		merge_spec_free(spec);
	}
	/* A NaN deep in a streamed tensor: refused by name, nothing left. */
	free(su.models[1]);
	su.models[1] = sparse_model("sp-nan", 2, 900000);
	for (int threads = 1; threads <= 2; threads++) {
		struct merge_spec *spec = spec_of("ties", (const char *const[]){ "density=0.5", NULL });
		struct merge_run_report rep;
		char *out = out_path("out-sp-nan");
		assert_int_equal(do_merge(spec, &su, out, threads, 0, 0, &rep, &e), ERR_INVALID);
		assert_string_equal(e.msg, "tensor 'p.bf16': input 1 ('b') has NaN at element "
				    "900000; method 'ties' needs finite values");
		assert_false(fs_exists(out));
		merge_spec_free(spec);
		free(out);
	}
	setup_free(&su);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_run__every_method_matches_the_kernels),
		cmocka_unit_test(test_merge_run__rules_apply_per_tensor),
		cmocka_unit_test(test_merge_run__sharded_inputs_and_output),
		cmocka_unit_test(test_merge_run__same_bytes_on_any_thread_count),
		cmocka_unit_test(test_merge_run__mismatches_are_refused_by_name),
		cmocka_unit_test(test_merge_run__pass_through_base),
		cmocka_unit_test(test_merge_run__failures_leave_nothing),
		cmocka_unit_test(test_merge_run__argument_errors),
		cmocka_unit_test(test_merge_run__linear_fused_matches_the_kernel),
		cmocka_unit_test(test_merge_run__sparse_streamed_matches_the_kernel),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
