/* artifacts/merge_run.c — the streaming checkpoint merger.
 *
 * The workload: two to a handful of checkpoints of a few hundred MB to
 * hundreds of GB, a few hundred to a few thousand tensors each, most of
 * them bf16 matrices of 10-200 M elements. Linear merges must run at the
 * speed memory and the disk move bytes, so nothing is copied that need not
 * be: inputs are read in place from the mapping (linear converts and sums
 * them in one pass, in L1-sized chunks; task_arithmetic converts L2-sized
 * chunks; ties and dare_* go through merge_tensor_stream, which reads them
 * in L1-sized steps, twice for TIES), the output goes from a 1 MiB staging
 * buffer straight to its offset in the output file (pwrite, through
 * ckpt_writer), and each thread works on a tensor of its own. Threads take
 * tensors largest first, so that the last one to finish is a small one.
 *
 * Everything that can be refused (missing tensors, shapes, dtypes, integer
 * tensors that differ) is found by the single-threaded plan before the
 * output is even created, so those messages do not depend on timing. */
#include "artifacts/merge_run.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "artifacts/checkpoint.h"
#include "artifacts/dtype.h"
#include "artifacts/merge.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/util.h"

/* Elements per chunk of the streamed (elementwise) methods: the converted
 * inputs and the output of one chunk stay in L2. */
#define CHUNK_ELEMS 16384
/* Elements per chunk of fused linear (below): its float sums, 16 KiB,
 * stay in L1 while every input streams through them. Divides CHUNK_ELEMS. */
#define FUSED_ELEMS 4096
/* Bytes of output gathered before one write: big enough that the syscalls
 * do not show, small enough to stay in cache. A multiple of CHUNK_ELEMS x
 * every element width. */
#define STAGE_BYTES (1u << 20)
/* Pieces in which copied tensors are written and their pages released. */
#define COPY_PIECE (64u << 20)
/* Slots inside a thread's buffer start at this alignment. */
#define SLOT_ALIGN 64
/* Scratch of at least HUGE_MIN bytes is aligned to, and asks for, huge
 * pages (x86-64's 2 MiB; elsewhere the request is only a hint). */
#define HUGE_PAGE (2u << 20)
#define HUGE_MIN (8u << 20)

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "merge_run reads F32/F64 tensors in place: little-endian hosts only"
#endif

enum job_kind {
	JOB_MERGE,   /* computed by the method */
	JOB_COPY,    /* not computable, identical everywhere: the reference's */
	JOB_BASE,    /* pass_through_base: the base's bytes */
};

struct job {
	const struct st_tensor *ref;  /* name, dtype, shape, nbytes */
	const struct st_tensor *src;  /* JOB_COPY/JOB_BASE: the bytes to copy */
	enum job_kind kind;
};

struct run {
	const struct merge_run_opts *o;
	enum merge_method method;
	size_t nin;                    /* inputs: base (if any), then models */
	int has_base;
	struct ckpt **c;               /* nin checkpoints */
	const char **labels;           /* nin, for messages */
	double *weights;               /* nmodels */
	struct job *jobs;              /* in name order */
	size_t njobs;
	size_t *order;                 /* dispatch order: largest first */
	struct ckpt_writer *w;
	int streamed;                  /* linear, task_arithmetic: chunked */
	int fused;                     /* linear: conversion fused with the sum */
	size_t page;

	/* shared while the workers run */
	atomic_size_t next;
	atomic_int stop;
	pthread_mutex_t lock;
	int rc;                        /* the first failure, under lock */
	struct err err;
	atomic_uint_fast64_t bytes_read;
};

/* One thread's buffers, reused from tensor to tensor. */
struct worker {
	struct run *r;
	unsigned char *buf;            /* nin + 1 slots of converted values */
	size_t cap;
	unsigned char *stage;          /* STAGE_BYTES of output in its dtype */
	struct merge_scratch sc;
	const void **in;               /* nin pointers handed to the kernel */
	float *coef;                   /* nin: fused linear's coefficients */
	const struct st_tensor **ts;   /* nin: the inputs' tensors */
};

static const char *label_of(const struct merge_run_input *in)
{
	return in->label ? in->label : in->path;
}

/* "base" or "'label'", into out. */
static const char *who(const struct run *r, size_t i, char *out, size_t size)
{
	if (r->has_base && i == 0)
		snprintf(out, size, "base");
	else
		snprintf(out, size, "'%s'", r->labels[i]);
	return out;
}

static void add_shape(struct buf *b, const struct st_tensor *t)
{
	buf_addc(b, '[');
	for (size_t d = 0; d < t->ndim; d++)
		buf_printf(b, "%s%zu", d ? ", " : "", t->shape[d]);
	buf_addc(b, ']');
}

static int same_shape(const struct st_tensor *a, const struct st_tensor *b)
{
	if (a->ndim != b->ndim)
		return 0;
	for (size_t d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return 0;
	return 1;
}

/* "tensor 'x': missing from 'b' (present in base and 'a')" */
static int missing_error(const struct run *r, const char *name, size_t miss,
			 struct err *err)
{
	struct buf b = BUF_INIT;
	char w[ERR_MSG_MAX / 4];
	size_t npresent = 0, seen = 0;
	int rc;

	for (size_t i = 0; i < r->nin; i++)
		npresent += ckpt_find(r->c[i], name) != NULL;
	for (size_t i = 0; i < r->nin; i++) {
		if (!ckpt_find(r->c[i], name))
			continue;
		seen++;
		buf_adds(&b, seen == 1 ? "" : seen == npresent ? " and " : ", ");
		buf_adds(&b, who(r, i, w, sizeof(w)));
	}
	{
		char m[ERR_MSG_MAX / 4];
		rc = err_set(err, ERR_INVALID, "tensor '%s': missing from %s (present in %s)",
			     name, who(r, miss, m, sizeof(m)), buf_str(&b));
	}
	buf_free(&b);
	return rc;
}

static int mismatch_error(const struct run *r, const struct st_tensor *ref,
			  size_t refi, const struct st_tensor *t, size_t i,
			  struct err *err)
{
	char a[ERR_MSG_MAX / 4], b[ERR_MSG_MAX / 4];
	int rc;

	if (t->dtype != ref->dtype)
		return err_set(err, ERR_INVALID, "tensor '%s': dtype %s in %s differs from %s in %s",
			       ref->name, dtype_name(t->dtype), who(r, i, a, sizeof(a)),
			       dtype_name(ref->dtype), who(r, refi, b, sizeof(b)));
	{
		struct buf sa = BUF_INIT, sb = BUF_INIT;
		add_shape(&sa, t);
		add_shape(&sb, ref);
		rc = err_set(err, ERR_INVALID, "tensor '%s': shape %s in %s differs from %s in %s",
			     ref->name, buf_str(&sa), who(r, i, a, sizeof(a)), buf_str(&sb),
			     who(r, refi, b, sizeof(b)));
		buf_free(&sa);
		buf_free(&sb);
	}
	return rc;
}

/* Releases the mapped pages wholly inside [p, p + len): they stay in the
 * page cache, but leave this process's resident set, which would otherwise
 * grow to the size of every input. Only read-only file pages: dropping one
 * that another thread still reads costs that thread a minor fault, never
 * data. */
static void release_pages(const struct run *r, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, e = a + len;

	a = (a + r->page - 1) & ~(uintptr_t)(r->page - 1);
	e &= ~(uintptr_t)(r->page - 1);
	if (e > a)
		(void)madvise((void *)a, e - a, MADV_DONTNEED);
}

/* ---- the plan ------------------------------------------------------- */

static int plan_tensor(struct run *r, size_t refi, const struct st_tensor *ref,
		       struct job *j, struct err *err)
{
	const int pass = r->o->pass_through_base;
	const struct st_tensor *bt = r->has_base ? ckpt_find(r->c[0], ref->name) : NULL;
	int rc;

	j->ref = ref;
	j->src = NULL;
	j->kind = JOB_MERGE;
	for (size_t i = 0; i < r->nin; i++) {
		const struct st_tensor *t = i == refi ? ref : ckpt_find(r->c[i], ref->name);
		if (t && t->dtype == ref->dtype && same_shape(t, ref))
			continue;
		if (pass) {
			j->kind = JOB_BASE;
			j->src = bt;
			return 0;
		}
		return t ? mismatch_error(r, ref, refi, t, i, err)
			 : missing_error(r, ref->name, i, err);
	}
	if (dtype_computable(ref->dtype))
		return 0;
	/* Integers, bool, fp8: no arithmetic, so all must agree. */
	for (size_t i = 0; i < r->nin; i++) {
		const struct st_tensor *t = ckpt_find(r->c[i], ref->name);
		atomic_fetch_add(&r->bytes_read, t->nbytes);
		if (i == refi || !memcmp(t->data, ref->data, ref->nbytes))
			continue;
		if (pass) {
			j->kind = JOB_BASE;
			j->src = bt;
			return 0;
		}
		{
			char a[ERR_MSG_MAX / 4], b[ERR_MSG_MAX / 4];
			rc = err_set(err, ERR_INVALID, "tensor '%s': dtype %s cannot be merged, "
				     "and its values in %s differ from those in %s",
				     ref->name, dtype_name(ref->dtype), who(r, i, a, sizeof(a)),
				     who(r, refi, b, sizeof(b)));
		}
		return rc;
	}
	j->kind = JOB_COPY;
	j->src = ref;
	return 0;
}

static int by_size(const void *pa, const void *pb, void *ctx)
{
	const struct job *jobs = ctx;
	const struct st_tensor *a = jobs[*(const size_t *)pa].ref;
	const struct st_tensor *b = jobs[*(const size_t *)pb].ref;

	if (a->nbytes != b->nbytes)
		return a->nbytes > b->nbytes ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int plan(struct run *r, struct merge_run_report *rep, struct err *err)
{
	/* The reference: the base's tensor set, or the first model's. */
	const size_t refi = 0;
	const struct ckpt *ref = r->c[refi];
	int rc;

	r->njobs = ckpt_count(ref);
	r->jobs = xcalloc(r->njobs + 1, sizeof(*r->jobs));
	for (size_t k = 0; k < r->njobs; k++)
		if ((rc = plan_tensor(r, refi, ckpt_tensor(ref, k), &r->jobs[k], err)))
			return rc;
	/* Tensors the reference lacks. */
	for (size_t i = 1; i < r->nin; i++) {
		for (size_t k = 0; k < ckpt_count(r->c[i]); k++) {
			const char *name = ckpt_tensor(r->c[i], k)->name;
			int earlier = 0;
			if (ckpt_find(ref, name))
				continue;
			if (!r->o->pass_through_base)
				return missing_error(r, name, refi, err);
			for (size_t h = 1; h < i && !earlier; h++)
				earlier = ckpt_find(r->c[h], name) != NULL;
			rep->left_out += !earlier;
		}
	}
	r->order = xcalloc(r->njobs + 1, sizeof(*r->order));
	for (size_t k = 0; k < r->njobs; k++)
		r->order[k] = k;
	qsort_r(r->order, r->njobs, sizeof(*r->order), by_size, r->jobs);
	return 0;
}

/* ---- the workers ------------------------------------------------------ */

static void fail(struct run *r, int rc, const struct err *e)
{
	pthread_mutex_lock(&r->lock);
	if (!r->rc) {
		r->rc = rc;
		r->err = *e;
	}
	pthread_mutex_unlock(&r->lock);
	atomic_store(&r->stop, 1);
}

/* The kernels say "input 1"; users gave names. */
static void name_input(const struct run *r, struct err *err)
{
	const char *p = strstr(err->msg, "input ");
	char tail[ERR_MSG_MAX], *end;
	unsigned long i;

	if (!p || p[6] < '0' || p[6] > '9')
		return;
	i = strtoul(p + 6, &end, 10);
	if (i >= r->o->nmodels)
		return;
	snprintf(tail, sizeof(tail), "%s", end);
	snprintf(err->msg + (end - err->msg), sizeof(err->msg) - (size_t)(end - err->msg),
		 " ('%s')%s", label_of(&r->o->models[i]), tail);
}

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* Room for nslots slots of n values of width prec. */
static int reserve(struct worker *wk, size_t nslots, size_t n, size_t prec,
		   size_t *slot, struct err *err)
{
	size_t s = round_up(n * prec, SLOT_ALIGN), need;

	if (n && s / n < prec)
		return err_set(err, ERR_NOMEM, "tensor too large");
	need = s * nslots;
	if (need > wk->cap) {
		/* Whole tensors (tens of MB a slot, streamed through several
		 * times): in huge pages where the system allows them on request,
		 * for a fault every 2 MiB instead of every 4 KiB, and fewer TLB
		 * misses in the kernels' passes. */
		size_t align = need >= HUGE_MIN ? HUGE_PAGE : SLOT_ALIGN;
		free(wk->buf);
		need = round_up(need, align);
		wk->buf = aligned_alloc(align, need);
		wk->cap = wk->buf ? need : 0;
		if (!wk->buf)
			return err_set(err, ERR_NOMEM, "cannot allocate %zu bytes of scratch", need);
#ifdef MADV_HUGEPAGE
		if (align == HUGE_PAGE)
			(void)madvise(wk->buf, need, MADV_HUGEPAGE);
#endif
	}
	*slot = s;
	return 0;
}

/* The output of one tensor, gathered into the stage and written in
 * STAGE_BYTES pieces at increasing offsets. */
struct sink {
	struct worker *wk;
	const struct st_tensor *t;
	size_t off;    /* bytes of the tensor written */
	size_t len;    /* bytes in the stage */
};

static int sink_flush(struct sink *s, struct err *err)
{
	int rc = 0;

	if (s->len)
		rc = ckpt_writer_write(s->wk->r->w, s->t->name, s->off, s->wk->stage, s->len, err);
	s->off += s->len;
	s->len = 0;
	return rc;
}

/* Appends n computed values (float or double per prec). */
static int sink_put(struct sink *s, const void *vals, size_t n, size_t prec,
		    struct err *err)
{
	const size_t width = dtype_width(s->t->dtype);
	const size_t per = STAGE_BYTES / width;
	int rc;

	while (n) {
		size_t room = per - s->len / width, k = n < room ? n : room;
		unsigned char *dst = s->wk->stage + s->len;
		if (prec == sizeof(double))
			dtype_from_f64(s->t->dtype, vals, dst, k);
		else
			dtype_from_f32(s->t->dtype, vals, dst, k);
		s->len += k * width;
		vals = (const unsigned char *)vals + k * prec;
		n -= k;
		if (s->len == per * width && (rc = sink_flush(s, err)))
			return rc;
	}
	return 0;
}

/* Points wk->in[i] at elements [j0, j0 + n) of input i as prec-wide
 * floats: in place when the file holds them aligned, else converted into
 * slot i. */
static void load(struct worker *wk, const struct st_tensor *const *ts,
		 size_t j0, size_t n, size_t prec, size_t slot)
{
	const struct run *r = wk->r;

	for (size_t i = 0; i < r->nin; i++) {
		const struct st_tensor *t = ts[i];
		const unsigned char *src = (const unsigned char *)t->data + j0 * dtype_width(t->dtype);
		void *dst = wk->buf + i * slot;
		if (dtype_width(t->dtype) == prec && (uintptr_t)src % prec == 0 &&
		    (t->dtype == ST_F32 || t->dtype == ST_F64)) {
			wk->in[i] = src;
		} else {
			if (prec == sizeof(double))
				dtype_to_f64(t->dtype, src, dst, n);
			else
				dtype_to_f32(t->dtype, src, dst, n);
			wk->in[i] = dst;
		}
	}
}

static int kernel(struct worker *wk, const char *name, size_t n, size_t prec,
		  void *out, struct err *err)
{
	const struct run *r = wk->r;
	const size_t nb = (size_t)r->has_base;
	const void *base = r->has_base ? wk->in[0] : NULL;

	if (prec == sizeof(double))
		return merge_tensor_f64(r->o->spec, name, base, (const double *const *)(wk->in + nb),
					r->weights, r->o->nmodels, n, out, &wk->sc, err);
	return merge_tensor_f32(r->o->spec, name, base, (const float *const *)(wk->in + nb),
				r->weights, r->o->nmodels, n, out, &wk->sc, err);
}

/* Fused linear over float-computed tensors (F32, F16, BF16): the same
 * arithmetic as merge.c's linear kernel on converted chunks, in one pass.
 * merge_tensor_f32 computes out = c_0 x_0 + c_1 x_1 + ..., summed in input
 * order, with c_i = (float)(w_i / div), div = the sum of the weights (in
 * double, in order) when normalize, else 1; here each input is converted
 * and added in the same pass (dtype_scale_f32, dtype_axpy_f32: the
 * product rounded, then the sum), so the bits are the kernel's, without
 * the float copies of the inputs or a pass over them. Returns 1, having
 * done nothing, when the kernel would refuse the tensor (a weight not
 * finite, weights that sum to 0 with normalize): the caller then takes
 * the kernel's path, and its message. */
static int linear_fused(struct worker *wk, const struct st_tensor *t,
			const struct st_tensor *const *ts, int *rc, struct err *err)
{
	struct run *r = wk->r;
	const size_t width = dtype_width(t->dtype), numel = t->numel;
	struct merge_params p;
	struct sink s = { wk, t, 0, 0 };
	double sum = 0, div;
	size_t slot, done = 0;
	float *acc;

	merge_spec_params(r->o->spec, t->name, &p);
	for (size_t i = 0; i < r->nin; i++) {
		if (!isfinite(r->weights[i]))
			return 1;
		sum += r->weights[i];
	}
	if (p.normalize && sum == 0)
		return 1;
	div = p.normalize ? sum : 1.0;
	for (size_t i = 0; i < r->nin; i++)
		wk->coef[i] = (float)(r->weights[i] / div);
	if ((*rc = reserve(wk, 1, FUSED_ELEMS, sizeof(float), &slot, err)))
		return 0;
	acc = (float *)wk->buf;
	for (size_t j0 = 0; j0 < numel; j0 += FUSED_ELEMS) {
		size_t n = numel - j0 < FUSED_ELEMS ? numel - j0 : FUSED_ELEMS;
		dtype_scale_f32(t->dtype, (const unsigned char *)ts[0]->data + j0 * width,
				wk->coef[0], acc, n);
		for (size_t i = 1; i < r->nin; i++)
			dtype_axpy_f32(t->dtype, (const unsigned char *)ts[i]->data + j0 * width,
				       wk->coef[i], acc, n);
		if ((*rc = sink_put(&s, acc, n, sizeof(float), err)))
			return 0;
		/* What the stage has sent on: its inputs are no longer needed. */
		if (s.off > done) {
			for (size_t i = 0; i < r->nin; i++)
				release_pages(r, (const unsigned char *)ts[i]->data + done,
					      s.off - done);
			done = s.off;
		}
	}
	*rc = sink_flush(&s, err);
	return 0;
}

/* The streamed sparsifying methods (merge_tensor_stream): each step of
 * results goes to the stage, and the input pages behind what the stage
 * has sent on are released, as in linear_fused. */
struct emit_ctx {
	struct sink s;
	const struct st_tensor *const *ts;
	size_t done;   /* bytes of each input released */
};

static int stream_emit(void *ctx, const float *vals, size_t n, struct err *err)
{
	struct emit_ctx *e = ctx;
	const struct run *r = e->s.wk->r;
	int rc;

	if ((rc = sink_put(&e->s, vals, n, sizeof(float), err)))
		return rc;
	if (e->s.off > e->done) {
		for (size_t i = 0; i < r->nin; i++)
			release_pages(r, (const unsigned char *)e->ts[i]->data + e->done,
				      e->s.off - e->done);
		e->done = e->s.off;
	}
	return 0;
}

static int merge_streamed(struct worker *wk, const struct st_tensor *t,
			  const struct st_tensor *const *ts, struct err *err)
{
	struct run *r = wk->r;
	const size_t nb = (size_t)r->has_base;
	struct emit_ctx e = { { wk, t, 0, 0 }, ts, 0 };
	int rc;

	for (size_t i = 0; i < r->nin; i++)
		wk->in[i] = ts[i]->data;
	rc = merge_tensor_stream(r->o->spec, t->name, t->dtype, nb ? wk->in[0] : NULL,
				 wk->in + nb, r->weights, r->o->nmodels, t->numel,
				 stream_emit, &e, &wk->sc, err);
	return rc ? rc : sink_flush(&e.s, err);
}

static int merge_one(struct worker *wk, const struct job *j, struct err *err)
{
	struct run *r = wk->r;
	const struct st_tensor *t = j->ref;
	const struct st_tensor **ts = wk->ts;
	const size_t prec = t->dtype == ST_F64 ? sizeof(double) : sizeof(float);
	const size_t numel = t->numel;
	const size_t step = r->streamed ? CHUNK_ELEMS : numel;
	struct sink s = { wk, t, 0, 0 };
	size_t slot = 0, done = 0;
	int rc;

	for (size_t i = 0; i < r->nin; i++)
		ts[i] = ckpt_find(r->c[i], t->name);
	if (r->fused && prec == sizeof(float) && !linear_fused(wk, t, ts, &rc, err)) {
		if (rc)
			return rc;
		goto finish;
	}
	if (merge_stream_covers(r->o->spec, t->dtype)) {
		if ((rc = merge_streamed(wk, t, ts, err)))
			return rc;
		goto finish;
	}
	if ((rc = reserve(wk, r->nin + 1, step < numel ? step : numel, prec, &slot, err)))
		return rc;
	for (size_t j0 = 0; j0 < numel; j0 += step) {
		size_t n = numel - j0 < step ? numel - j0 : step;
		void *out = wk->buf + r->nin * slot;
		load(wk, ts, j0, n, prec, slot);
		/* The kernels merge in place: over a converted base, the
		 * output slot's pages are never touched (whole tensors only:
		 * that is where the memory is). */
		if (!r->streamed && r->has_base && wk->in[0] == wk->buf)
			out = wk->buf;
		if ((rc = kernel(wk, t->name, n, prec, out, err)))
			return rc;
		if ((rc = sink_put(&s, out, n, prec, err)))
			return rc;
		/* What the stage has sent on: its inputs are no longer needed. */
		if (r->streamed && s.off > done) {
			size_t e = s.off / dtype_width(t->dtype);
			for (size_t i = 0; i < r->nin; i++)
				release_pages(r, (const unsigned char *)ts[i]->data +
					      done * dtype_width(t->dtype),
					      (e - done) * dtype_width(t->dtype));
			done = e;
		}
	}
	if ((rc = sink_flush(&s, err)))
		return rc;
finish:
	for (size_t i = 0; i < r->nin; i++)
		release_pages(r, ts[i]->data, ts[i]->nbytes);
	atomic_fetch_add(&r->bytes_read, (uint64_t)t->nbytes * r->nin);
	return 0;
}

static int copy_one(struct worker *wk, const struct job *j, struct err *err)
{
	struct run *r = wk->r;
	const struct st_tensor *t = j->src;
	int rc = 0;

	for (size_t off = 0; off < t->nbytes && !rc; off += COPY_PIECE) {
		size_t n = t->nbytes - off < COPY_PIECE ? t->nbytes - off : COPY_PIECE;
		const unsigned char *p = (const unsigned char *)t->data + off;
		rc = ckpt_writer_write(r->w, t->name, off, p, n, err);
		release_pages(r, p, n);
	}
	/* JOB_COPY's bytes were read (compared) by the plan. */
	if (j->kind == JOB_BASE)
		atomic_fetch_add(&r->bytes_read, t->nbytes);
	return rc;
}

static void *work(void *arg)
{
	struct worker *wk = arg;
	struct run *r = wk->r;
	struct err e;

	err_clear(&e);
	while (!atomic_load(&r->stop)) {
		size_t k = atomic_fetch_add(&r->next, 1);
		const struct job *j;
		int rc;
		if (k >= r->njobs)
			break;
		j = &r->jobs[r->order[k]];
		rc = j->kind == JOB_MERGE ? merge_one(wk, j, &e) : copy_one(wk, j, &e);
		if (rc) {
			if (j->kind == JOB_MERGE)
				name_input(r, &e);
			fail(r, rc, &e);
		} else {
			fault_point("merge.tensor");
		}
	}
	return NULL;
}

/* ---- the run ------------------------------------------------------------ */

int merge_run_check(const struct merge_run_opts *o, struct err *err)
{
	const enum merge_method m = merge_spec_method(o->spec);
	const char *mn = merge_method_name(m);

	if (!o->out_dir || !*o->out_dir)
		return err_set(err, ERR_INVALID, "no output directory");
	if (o->nmodels == 0)
		return err_set(err, ERR_INVALID, "no models to merge");
	if (merge_method_needs_base(m) && !o->base)
		return err_set(err, ERR_INVALID, "method '%s' needs a base model", mn);
	if (!merge_method_needs_base(m) && o->base)
		return err_set(err, ERR_INVALID, "method '%s' takes no base (give it as one "
			       "of the models, with a weight)", mn);
	if (m == MERGE_SLERP && o->nmodels != 1)
		return err_set(err, ERR_INVALID, "method 'slerp' merges the base with exactly "
			       "one model, not %zu", o->nmodels);
	if (m == MERGE_MODEL_STOCK && o->nmodels < 2)
		return err_set(err, ERR_INVALID, "method 'model_stock' needs at least 2 models "
			       "besides the base");
	if (o->pass_through_base && !o->base)
		return err_set(err, ERR_INVALID, "passing tensors through from the base needs "
			       "a base");
	return merge_spec_check(o->spec, err);
}

static void models_json(struct run *r, struct buf *b)
{
	const struct merge_run_opts *o = r->o;

	buf_reset(b);
	buf_addc(b, '[');
	for (size_t i = 0; i < o->nmodels; i++) {
		const struct merge_run_input *in = &o->models[i];
		buf_adds(b, i ? ", {\"model\": " : "{\"model\": ");
		buf_add_json_str(b, label_of(in));
		if (in->digest) {
			buf_adds(b, ", \"digest\": ");
			buf_add_json_str(b, in->digest);
		}
		buf_printf(b, ", \"weight\": %.17g}", in->weight);
	}
	buf_addc(b, ']');
}

static int write_metadata(struct run *r, struct err *err)
{
	const struct merge_run_opts *o = r->o;
	struct buf b = BUF_INIT;
	int rc;

	merge_spec_describe(o->spec, &b);
	rc = ckpt_writer_set_metadata(r->w, "format", "pt", err);
	if (!rc)
		rc = ckpt_writer_set_metadata(r->w, "anneal.merge.method",
					      merge_method_name(r->method), err);
	if (!rc)
		rc = ckpt_writer_set_metadata(r->w, "anneal.merge.spec", buf_str(&b), err);
	if (!rc && o->base) {
		buf_reset(&b);
		buf_adds(&b, "{\"model\": ");
		buf_add_json_str(&b, label_of(o->base));
		if (o->base->digest) {
			buf_adds(&b, ", \"digest\": ");
			buf_add_json_str(&b, o->base->digest);
		}
		buf_addc(&b, '}');
		rc = ckpt_writer_set_metadata(r->w, "anneal.merge.base", buf_str(&b), err);
	}
	if (!rc) {
		models_json(r, &b);
		rc = ckpt_writer_set_metadata(r->w, "anneal.merge.models", buf_str(&b), err);
	}
	if (!rc && o->pass_through_base)
		rc = ckpt_writer_set_metadata(r->w, "anneal.merge.pass_through_base", "true", err);
	buf_free(&b);
	return rc;
}

/* The scratch merging tensor t takes, in bytes (merge_run.h). */
static uint64_t tensor_bound(const struct run *r, const struct st_tensor *t)
{
	uint64_t n = t->numel, prec = t->dtype == ST_F64 ? sizeof(double) : sizeof(float);

	/* The sparsifying methods over F32, F16, BF16: streamed */
	if (merge_stream_covers(r->o->spec, t->dtype))
		return merge_stream_scratch(r->o->spec, r->o->nmodels, n);
	if (r->streamed && n > CHUNK_ELEMS)
		n = CHUNK_ELEMS;
	/* inputs + output, + the selection buffer of the sparsifying methods */
	return (uint64_t)(r->nin + 1 + !r->streamed) * n * prec;
}

/* The bound of merge_run.h, for one thread. */
static uint64_t thread_bound(const struct run *r)
{
	uint64_t largest = 0;

	for (size_t k = 0; k < r->njobs; k++) {
		uint64_t b;
		if (r->jobs[k].kind != JOB_MERGE)
			continue;
		b = tensor_bound(r, r->jobs[k].ref);
		largest = b > largest ? b : largest;
	}
	return largest + STAGE_BYTES;
}

static int choose_threads(const struct run *r, uint64_t bound)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long pages = sysconf(_SC_PHYS_PAGES);
	int n = r->o->threads;

	if (n <= 0) {
		n = cpus > 0 ? (int)(cpus < 1024 ? cpus : 1024) : 1;
		if (pages > 0 && bound > 0) {
			uint64_t half = (uint64_t)pages * r->page / 2;
			uint64_t fit = half / bound;
			if (fit < (uint64_t)n)
				n = fit > 0 ? (int)fit : 1;
		}
	}
	if ((size_t)n > r->njobs)
		n = r->njobs > 0 ? (int)r->njobs : 1;
	return n;
}

static int run_workers(struct run *r, int nthreads, struct err *err)
{
	struct worker *wk = xcalloc((size_t)nthreads, sizeof(*wk));
	pthread_t *tid = xcalloc((size_t)nthreads, sizeof(*tid));
	int started = 0, rc = 0;

	for (int i = 0; i < nthreads; i++) {
		wk[i].r = r;
		wk[i].stage = xmalloc(STAGE_BYTES);
		wk[i].in = xcalloc(r->nin + 1, sizeof(*wk[i].in));
		wk[i].coef = xcalloc(r->nin + 1, sizeof(*wk[i].coef));
		wk[i].ts = xcalloc(r->nin + 1, sizeof(*wk[i].ts));
	}
	/* The calling thread is worker 0. */
	for (int i = 1; i < nthreads; i++) {
		int e = pthread_create(&tid[i], NULL, work, &wk[i]);
		if (e) {
			struct err pe;
			err_sys(&pe, e, "cannot start a merge thread");
			fail(r, ERR_SYSTEM, &pe);
			break;
		}
		started++;
	}
	work(&wk[0]);
	for (int i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
	if (r->rc) {
		rc = r->rc;
		*err = r->err;
	}
	for (int i = 0; i < nthreads; i++) {
		free(wk[i].buf);
		free(wk[i].stage);
		free(wk[i].in);
		free(wk[i].coef);
		free(wk[i].ts);
		merge_scratch_free(&wk[i].sc);
	}
	free(wk);
	free(tid);
	return rc;
}

int merge_run(const struct merge_run_opts *o, struct merge_run_report *out,
	      struct err *err)
{
	struct merge_run_report rep;
	struct run r;
	double t0 = now_mono();
	int rc, existed = 0, nthreads;
	struct rusage ru;

	memset(&rep, 0, sizeof(rep));
	memset(&r, 0, sizeof(r));
	r.o = o;
	r.method = merge_spec_method(o->spec);
	r.has_base = o->base != NULL;
	r.nin = o->nmodels + (size_t)r.has_base;
	r.page = (size_t)sysconf(_SC_PAGESIZE);
	r.streamed = r.method == MERGE_LINEAR || r.method == MERGE_TASK_ARITHMETIC;
	r.fused = r.method == MERGE_LINEAR;
	pthread_mutex_init(&r.lock, NULL);
	atomic_init(&r.next, 0);
	atomic_init(&r.stop, 0);
	atomic_init(&r.bytes_read, 0);

	if ((rc = merge_run_check(o, err)))
		goto done;
	r.c = xcalloc(r.nin, sizeof(*r.c));
	r.labels = xcalloc(r.nin, sizeof(*r.labels));
	r.weights = xcalloc(o->nmodels, sizeof(*r.weights));
	for (size_t i = 0; i < r.nin; i++) {
		const struct merge_run_input *in = r.has_base ?
			(i ? &o->models[i - 1] : o->base) : &o->models[i];
		r.labels[i] = label_of(in);
		if ((rc = ckpt_open(in->path, &r.c[i], err))) {
			if (r.has_base && i == 0)
				err_prefix(err, "base '%s'", r.labels[i]);
			else
				err_prefix(err, "model '%s'", r.labels[i]);
			goto done;
		}
	}
	for (size_t i = 0; i < o->nmodels; i++)
		r.weights[i] = o->models[i].weight;
	if ((rc = plan(&r, &rep, err)))
		goto done;

	existed = fs_exists(o->out_dir);
	if ((rc = ckpt_writer_new(o->out_dir, (size_t)o->max_shard_bytes, &r.w, err)))
		goto done;
	for (size_t k = 0; k < r.njobs && !rc; k++) {
		const struct st_tensor *t = r.jobs[k].ref;
		rc = ckpt_writer_add(r.w, t->name, t->dtype, t->shape, t->ndim, err);
	}
	if (!rc)
		rc = write_metadata(&r, err);
	if (!rc)
		rc = ckpt_writer_begin(r.w, err);
	if (rc)
		goto done;

	rep.scratch_bound = thread_bound(&r);
	nthreads = choose_threads(&r, rep.scratch_bound);
	rep.scratch_bound *= (uint64_t)nthreads;
	if ((rc = run_workers(&r, nthreads, err)))
		goto done;
	fault_point("merge.written");
	if ((rc = ckpt_writer_commit(r.w, err)))
		goto done;

	for (size_t k = 0; k < r.njobs; k++) {
		rep.merged += r.jobs[k].kind == JOB_MERGE;
		rep.copied += r.jobs[k].kind == JOB_COPY;
		rep.from_base += r.jobs[k].kind == JOB_BASE;
		rep.bytes_written += r.jobs[k].ref->nbytes;
	}
	rep.tensors = r.njobs;
	rep.nshards = ckpt_writer_nshards(r.w);
	rep.threads = nthreads;
	rep.bytes_read = atomic_load(&r.bytes_read);
	rep.seconds = now_mono() - t0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		rep.peak_rss = (uint64_t)ru.ru_maxrss * 1024;
done:
	ckpt_writer_free(r.w);
	if (rc && r.w && !existed)
		(void)rmdir(o->out_dir);
	for (size_t i = 0; r.c && i < r.nin; i++)
		ckpt_close(r.c[i]);
	free(r.c);
	free(r.labels);
	free(r.weights);
	free(r.jobs);
	free(r.order);
	pthread_mutex_destroy(&r.lock);
	if (!rc && out)
		*out = rep;
	return rc;
}
