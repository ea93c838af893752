/* artifacts/safetensors.c — see safetensors.h.
 *
 * Reading validates the whole header before anything is returned, in this
 * order: the length prefix, the JSON (pipeline/json.c: UTF-8, syntax,
 * duplicate keys kept), each entry in header order (fields, types, dtype,
 * overflow-checked size, offsets against the size), then across entries:
 * duplicate names, then the offsets sorted by begin tiling the data buffer
 * exactly. The first broken rule is reported. The header's JSON tree stays
 * alive with the file: names and metadata point into it.
 *
 * Writing fixes the layout before any data: the temporary file is created
 * at its final size with the header in place, so tensors can be produced
 * in any order, by several threads, with pwrite at known offsets. */
#include "artifacts/safetensors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "pipeline/json.h"

#define META_KEY "__metadata__"

struct st_file {
	char *path;
	const unsigned char *base;   /* the whole file */
	size_t len;
	void *map;                   /* base when mmap'd by st_open, else NULL */
	struct jnode *root;          /* the header; names and metadata point in */
	struct st_tensor *t;         /* file order */
	size_t n;
	size_t *by_name;             /* indices into t, sorted by name */
	size_t *dims;                /* every shape, back to back */
	const struct jnode *meta;    /* the "__metadata__" object or NULL */
};

/* "'path': tensor 'name': what" (or without the tensor). Returns
 * ERR_INVALID. */
static int bad(struct err *err, const char *path, const char *tensor,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int bad(struct err *err, const char *path, const char *tensor,
	       const char *fmt, ...)
{
	char what[ERR_MSG_MAX], show[JSON_SHOW_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (tensor)
		return err_set(err, ERR_INVALID, "'%s': tensor '%s': %s", path,
			       json_show(tensor, show, sizeof(show)), what);
	return err_set(err, ERR_INVALID, "'%s': %s", path, what);
}

static void show_shape(const size_t *shape, size_t ndim, char *out,
		       size_t size)
{
	size_t o = 0;

	o += (size_t)snprintf(out, size, "[");
	for (size_t i = 0; i < ndim && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%zu", i ? ", " : "",
				      shape[i]);
	if (o < size)
		snprintf(out + o, size - o, "]");
}

/* "an array", "a string", ... for messages. */
static const char *a_type(enum jtype t)
{
	switch (t) {
	case J_ARRAY: return "an array";
	case J_OBJECT: return "an object";
	case J_STRING: return "a string";
	case J_NUMBER: return "a number";
	case J_BOOL: return "a boolean";
	default: return "null";
	}
}

/* A non-negative JSON integer that fits size_t. */
static int get_size(const struct jnode *n, size_t *out)
{
	if (n->type != J_NUMBER || !n->is_int || n->inum < 0)
		return -1;
	*out = (size_t)n->inum;
	return 0;
}

/* Checks one tensor entry and fills *t (data pointer excepted); dims is
 * where its shape goes. */
static int parse_entry(const char *path, const struct jnode *e,
		       struct st_tensor *t, size_t *dims, struct err *err)
{
	const struct jnode *dtype = NULL, *shape = NULL, *offs = NULL;
	const char *name = e->key;
	size_t begin, end, width;
	char sh[64];

	if (e->type != J_OBJECT)
		return bad(err, path, name, "entry is %s, not an object",
			   a_type(e->type));
	for (size_t i = 0; i < e->nkids; i++) {
		const struct jnode *k = &e->kids[i];
		const struct jnode **slot =
			!strcmp(k->key, "dtype") ? &dtype :
			!strcmp(k->key, "shape") ? &shape :
			!strcmp(k->key, "data_offsets") ? &offs : NULL;
		char show[JSON_SHOW_MAX];
		if (!slot)
			return bad(err, path, name, "unexpected field '%s'",
				   json_show(k->key, show, sizeof(show)));
		if (*slot)
			return bad(err, path, name, "duplicate field '%s'", k->key);
		*slot = k;
	}
	if (!dtype || !shape || !offs)
		return bad(err, path, name, "missing field '%s'",
			   !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
	if (dtype->type != J_STRING)
		return bad(err, path, name, "dtype is %s, not a string",
			   a_type(dtype->type));
	if (dtype_parse(dtype->str, &t->dtype)) {
		char show[JSON_SHOW_MAX];
		return bad(err, path, name, "unknown dtype '%s'",
			   json_show(dtype->str, show, sizeof(show)));
	}
	if (shape->type != J_ARRAY)
		return bad(err, path, name, "shape is %s, not an array",
			   a_type(shape->type));
	t->numel = 1;
	for (size_t i = 0; i < shape->nkids; i++) {
		if (get_size(&shape->kids[i], &dims[i]))
			return bad(err, path, name,
				   "shape[%zu] is not a non-negative integer", i);
		if (__builtin_mul_overflow(t->numel, dims[i], &t->numel))
			return bad(err, path, name,
				   "shape overflows: the product of its dimensions does not fit in 64 bits");
	}
	t->shape = dims;
	t->ndim = shape->nkids;
	width = dtype_width(t->dtype);
	show_shape(dims, t->ndim, sh, sizeof(sh));
	if (__builtin_mul_overflow(t->numel, width, &t->nbytes))
		return bad(err, path, name,
			   "shape %s overflows: numel %zu × %zu bytes does not fit in 64 bits",
			   sh, t->numel, width);
	if (offs->type != J_ARRAY || offs->nkids != 2)
		return bad(err, path, name,
			   "data_offsets must be an array [begin, end]");
	if (get_size(&offs->kids[0], &begin) || get_size(&offs->kids[1], &end))
		return bad(err, path, name,
			   "data_offsets must be non-negative integers");
	if (end < begin)
		return bad(err, path, name,
			   "data_offsets [%zu, %zu] run backwards", begin, end);
	if (end - begin != t->nbytes)
		return bad(err, path, name,
			   "size mismatch: data_offsets [%zu, %zu] hold %zu bytes, "
			   "shape %s of %s needs %zu", begin, end, end - begin,
			   sh, dtype_name(t->dtype), t->nbytes);
	t->name = name;
	t->offset = begin;
	return 0;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
	const struct st_tensor *t = ctx;

	return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int cmp_key(const void *a, const void *b)
{
	const struct jnode *x = *(const struct jnode *const *)a;
	const struct jnode *y = *(const struct jnode *const *)b;

	return strcmp(x->key, y->key);
}

static int parse_metadata(const char *path, const struct jnode *m,
			  struct err *err)
{
	const struct jnode **keys = NULL;
	char show[JSON_SHOW_MAX];
	int rc = 0;

	if (m->type != J_OBJECT)
		return bad(err, path, NULL, META_KEY " is %s, not an object",
			   a_type(m->type));
	for (size_t i = 0; i < m->nkids; i++)
		if (m->kids[i].type != J_STRING)
			return bad(err, path, NULL,
				   META_KEY " '%s': value is %s, not a string",
				   json_show(m->kids[i].key, show, sizeof(show)),
				   a_type(m->kids[i].type));
	if (m->nkids < 2)
		return 0;
	keys = xmalloc(m->nkids * sizeof(*keys));
	for (size_t i = 0; i < m->nkids; i++)
		keys[i] = &m->kids[i];
	qsort(keys, m->nkids, sizeof(*keys), cmp_key);
	for (size_t i = 1; i < m->nkids; i++) {
		if (!strcmp(keys[i]->key, keys[i - 1]->key)) {
			rc = bad(err, path, NULL, META_KEY ": duplicate key '%s'",
				 json_show(keys[i]->key, show, sizeof(show)));
			goto done;
		}
	}
done:
	free(keys);
	return rc;
}

static int parse(struct st_file *f, struct err *err)
{
	const char *path = f->path;
	const struct jnode *root;
	uint64_t hlen64 = 0;
	size_t hlen, data_len, ndims = 0, nt = 0, end = 0;
	int rc = 0;

	if (f->len < 8)
		return bad(err, path, NULL,
			   "file is %zu bytes, shorter than the 8-byte header length",
			   f->len);
	for (int i = 7; i >= 0; i--)
		hlen64 = hlen64 << 8 | f->base[i];
	if (hlen64 > ST_HEADER_MAX)
		return bad(err, path, NULL,
			   "header length %llu exceeds the limit of %d bytes",
			   (unsigned long long)hlen64, ST_HEADER_MAX);
	hlen = (size_t)hlen64;
	if (hlen > f->len - 8)
		return bad(err, path, NULL,
			   "header length %zu runs beyond the end of the file (%zu bytes)",
			   hlen, f->len);
	rc = json_parse((const char *)f->base + 8, hlen, 0, &f->root, err);
	if (rc) {
		err_prefix(err, "'%s': header", path);
		return rc;
	}
	root = f->root;
	if (root->type != J_OBJECT)
		return bad(err, path, NULL, "header is %s, not an object",
			   a_type(root->type));
	for (size_t i = 0; i < root->nkids; i++) {
		const struct jnode *e = &root->kids[i];
		if (!strcmp(e->key, META_KEY)) {
			if (f->meta)
				return bad(err, path, NULL,
					   "duplicate " META_KEY " entry");
			f->meta = e;
			continue;
		}
		nt++;
		if (e->type == J_OBJECT) {
			const struct jnode *s = json_get(e, "shape");
			if (s && s->type == J_ARRAY)
				ndims += s->nkids;
		}
	}
	if (f->meta && (rc = parse_metadata(path, f->meta, err)))
		return rc;

	f->t = xcalloc(nt ? nt : 1, sizeof(*f->t));
	f->dims = xcalloc(ndims ? ndims : 1, sizeof(*f->dims));
	f->by_name = xcalloc(nt ? nt : 1, sizeof(*f->by_name));
	ndims = 0;
	for (size_t i = 0; i < root->nkids; i++) {
		const struct jnode *e = &root->kids[i];
		if (e == f->meta)
			continue;
		/* json_get finds the first "shape"; a duplicate is rejected
		 * by parse_entry before the second could be used. */
		rc = parse_entry(path, e, &f->t[f->n], f->dims + ndims, err);
		if (rc)
			return rc;
		ndims += f->t[f->n].ndim;
		f->n++;
	}

	/* File order, then the name index over it. */
	qsort(f->t, f->n, sizeof(*f->t), cmp_offset);
	for (size_t i = 0; i < f->n; i++)
		f->by_name[i] = i;
	qsort_r(f->by_name, f->n, sizeof(*f->by_name), cmp_name_idx, f->t);
	for (size_t i = 1; i < f->n; i++)
		if (!strcmp(f->t[f->by_name[i]].name, f->t[f->by_name[i - 1]].name))
			return bad(err, path, f->t[f->by_name[i]].name,
				   "duplicate tensor name");

	data_len = f->len - 8 - hlen;
	for (size_t i = 0; i < f->n; i++) {
		struct st_tensor *t = &f->t[i];
		size_t tend = t->offset + t->nbytes;   /* checked: end fits */
		if (t->offset < end)
			return bad(err, path, t->name,
				   "data_offsets [%zu, %zu] overlap tensor '%s' (ends at %zu)",
				   t->offset, tend, f->t[i - 1].name, end);
		if (t->offset > end)
			return bad(err, path, t->name,
				   "gap of %zu bytes before data_offsets [%zu, %zu] "
				   "(the previous tensor ends at %zu)",
				   t->offset - end, t->offset, tend, end);
		if (tend > data_len)
			return bad(err, path, t->name,
				   "truncated data: data_offsets [%zu, %zu] run past the "
				   "end of the file (the data buffer is %zu bytes)",
				   t->offset, tend, data_len);
		t->data = f->base + 8 + hlen + t->offset;
		end = tend;
	}
	if (end != data_len)
		return bad(err, path, NULL,
			   "%zu trailing bytes after the last tensor's data "
			   "(data must end at the file's end)", data_len - end);
	return 0;
}

int st_open_mem(const void *buf, size_t len, const char *name,
		struct st_file **out, struct err *err)
{
	struct st_file *f = xcalloc(1, sizeof(*f));
	int rc;

	*out = NULL;
	f->path = xstrdup(name);
	f->base = buf;
	f->len = len;
	rc = parse(f, err);
	if (rc) {
		st_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

int st_open(const char *path, struct st_file **out, struct err *err)
{
	static const unsigned char empty[1];
	struct st_file *f = NULL;
	struct stat st;
	void *map = NULL;
	size_t len = 0;
	int fd, rc = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "'%s'", path);
	if (fstat(fd, &st) < 0) {
		rc = err_sys(err, errno, "'%s'", path);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(err, ERR_INVALID, "'%s': not a regular file", path);
		goto done;
	}
	if ((unsigned long long)st.st_size > SIZE_MAX) {
		rc = err_set(err, ERR_INVALID, "'%s': too large to map", path);
		goto done;
	}
	len = (size_t)st.st_size;
	if (len > 0) {
		map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			rc = err_sys(err, errno, "'%s': mmap", path);
			goto done;
		}
	}
	rc = st_open_mem(map ? map : empty, len, path, &f, err);
	if (rc)
		goto done;
	f->map = map;
	map = NULL;
	*out = f;
done:
	if (map)
		munmap(map, len);
	close(fd);
	return rc;
}

void st_close(struct st_file *f)
{
	if (!f)
		return;
	if (f->map)
		munmap(f->map, f->len);
	json_free(f->root);
	free(f->t);
	free(f->by_name);
	free(f->dims);
	free(f->path);
	free(f);
}

const char *st_path(const struct st_file *f)
{
	return f->path;
}

size_t st_count(const struct st_file *f)
{
	return f->n;
}

const struct st_tensor *st_tensor(const struct st_file *f, size_t i)
{
	assert(i < f->n);
	return &f->t[i];
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct st_tensor *t = &f->t[f->by_name[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t st_file_size(const struct st_file *f)
{
	return f->len;
}

size_t st_metadata_count(const struct st_file *f)
{
	return f->meta ? f->meta->nkids : 0;
}

const char *st_metadata_key(const struct st_file *f, size_t i)
{
	assert(i < st_metadata_count(f));
	return f->meta->kids[i].key;
}

const char *st_metadata_value(const struct st_file *f, size_t i)
{
	assert(i < st_metadata_count(f));
	return f->meta->kids[i].str;
}

const char *st_metadata_get(const struct st_file *f, const char *key)
{
	const struct jnode *v = f->meta ? json_get(f->meta, key) : NULL;

	return v ? v->str : NULL;
}

/* ---- Writer ---- */

struct wtensor {
	char *name;
	enum st_dtype dtype;
	size_t *shape;
	size_t ndim;
	size_t nbytes;
	size_t offset;          /* in the data buffer, set by begin */
	atomic_size_t written;  /* bytes written so far */
};

struct st_writer {
	char *path;
	char *tmp;              /* the temporary file, once begun */
	int fd;
	struct wtensor *t;      /* layout order once begun */
	size_t n, cap;
	size_t *by_name;        /* indices into t sorted by name, once begun */
	char **meta;            /* key, value, key, value, ... */
	size_t nmeta, capmeta;
	size_t data_start;      /* 8 + padded header */
	size_t data_size;
	int begun, done;
};

int st_writer_new(const char *path, struct st_writer **out, struct err *err)
{
	struct st_writer *w = xcalloc(1, sizeof(*w));

	w->path = xstrdup(path);
	w->fd = -1;
	*out = w;
	return 0;
}

static int check_name(const char *path, const char *what, const char *s,
		      struct err *err)
{
	char show[JSON_SHOW_MAX];

	if (!*s)
		return err_set(err, ERR_INVALID, "'%s': empty %s", path, what);
	if (json_utf8_check(s, strlen(s), NULL))
		return err_set(err, ERR_INVALID, "'%s': %s '%s' is not valid UTF-8",
			       path, what, json_show(s, show, sizeof(show)));
	return 0;
}

int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype,
		  const size_t *shape, size_t ndim, struct err *err)
{
	struct wtensor *t;
	size_t numel = 1, nbytes;
	int rc;

	assert(!w->begun);
	if ((rc = check_name(w->path, "tensor name", name, err)))
		return rc;
	if (!strcmp(name, META_KEY))
		return bad(err, w->path, name, "the name is reserved for metadata");
	if ((unsigned)dtype >= ST_DTYPE_COUNT)
		return bad(err, w->path, name, "unknown dtype %d", (int)dtype);
	for (size_t i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(numel, shape[i], &numel))
			return bad(err, w->path, name, "shape overflows");
	if (__builtin_mul_overflow(numel, dtype_width(dtype), &nbytes) ||
	    __builtin_add_overflow(w->data_size, nbytes, &w->data_size) ||
	    w->data_size > (size_t)INT64_MAX)
		return bad(err, w->path, name, "shape overflows");
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->t = xrealloc(w->t, w->cap * sizeof(*w->t));
	}
	t = &w->t[w->n++];
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape = xmalloc((ndim ? ndim : 1) * sizeof(*t->shape));
	if (ndim)
		memcpy(t->shape, shape, ndim * sizeof(*shape));
	t->nbytes = nbytes;
	atomic_init(&t->written, 0);
	return 0;
}

int st_writer_set_metadata(struct st_writer *w, const char *key,
			   const char *value, struct err *err)
{
	char show[JSON_SHOW_MAX];
	int rc;

	assert(!w->begun);
	if ((rc = check_name(w->path, META_KEY " key", key, err)))
		return rc;
	if (json_utf8_check(value, strlen(value), NULL))
		return err_set(err, ERR_INVALID,
			       "'%s': " META_KEY " '%s': value is not valid UTF-8",
			       w->path, json_show(key, show, sizeof(show)));
	for (size_t i = 0; i < w->nmeta; i += 2)
		if (!strcmp(w->meta[i], key))
			return err_set(err, ERR_INVALID,
				       "'%s': " META_KEY ": duplicate key '%s'",
				       w->path, json_show(key, show, sizeof(show)));
	if (w->nmeta + 2 > w->capmeta) {
		w->capmeta = w->capmeta ? w->capmeta * 2 : 8;
		w->meta = xrealloc(w->meta, w->capmeta * sizeof(*w->meta));
	}
	w->meta[w->nmeta++] = xstrdup(key);
	w->meta[w->nmeta++] = xstrdup(value);
	return 0;
}

size_t st_writer_data_size(const struct st_writer *w)
{
	return w->data_size;
}

static void discard(struct st_writer *w);

static int cmp_layout(const void *a, const void *b)
{
	const struct wtensor *x = a, *y = b;
	size_t wx = dtype_width(x->dtype), wy = dtype_width(y->dtype);

	if (wx != wy)
		return wx > wy ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_wname_idx(const void *a, const void *b, void *ctx)
{
	const struct wtensor *t = ctx;

	return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int cmp_meta(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int pwrite_all(int fd, const void *data, size_t len, size_t off)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (size_t)n;
	}
	return 0;
}

static void header_json(const struct st_writer *w, struct buf *h)
{
	buf_addc(h, '{');
	if (w->nmeta) {
		buf_add_json_str(h, META_KEY);
		buf_adds(h, ":{");
		for (size_t i = 0; i < w->nmeta; i += 2) {
			if (i)
				buf_addc(h, ',');
			buf_add_json_str(h, w->meta[i]);
			buf_addc(h, ':');
			buf_add_json_str(h, w->meta[i + 1]);
		}
		buf_addc(h, '}');
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct wtensor *t = &w->t[i];
		if (i || w->nmeta)
			buf_addc(h, ',');
		buf_add_json_str(h, t->name);
		buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[",
			   dtype_name(t->dtype));
		for (size_t d = 0; d < t->ndim; d++)
			buf_printf(h, "%s%zu", d ? "," : "", t->shape[d]);
		buf_printf(h, "],\"data_offsets\":[%zu,%zu]}", t->offset,
			   t->offset + t->nbytes);
	}
	buf_addc(h, '}');
	while (h->len % 8)
		buf_addc(h, ' ');
}

int st_writer_begin(struct st_writer *w, struct err *err)
{
	struct buf h = BUF_INIT;
	unsigned char len8[8];
	size_t off = 0;
	int rc = 0;

	assert(!w->begun);
	w->begun = 1;
	if (w->n)
		qsort(w->t, w->n, sizeof(*w->t), cmp_layout);
	if (w->nmeta)
		qsort(w->meta, w->nmeta / 2, 2 * sizeof(*w->meta), cmp_meta);
	w->by_name = xmalloc((w->n ? w->n : 1) * sizeof(*w->by_name));
	for (size_t i = 0; i < w->n; i++) {
		w->by_name[i] = i;
		w->t[i].offset = off;
		off += w->t[i].nbytes;
	}
	qsort_r(w->by_name, w->n, sizeof(*w->by_name), cmp_wname_idx, w->t);
	for (size_t i = 1; i < w->n; i++) {
		if (!strcmp(w->t[w->by_name[i]].name, w->t[w->by_name[i - 1]].name)) {
			rc = bad(err, w->path, w->t[w->by_name[i]].name,
				 "duplicate tensor name");
			goto done;
		}
	}
	header_json(w, &h);
	if (h.len > ST_HEADER_MAX) {
		rc = bad(err, w->path, NULL,
			 "header of %zu bytes exceeds the limit of %d bytes",
			 h.len, ST_HEADER_MAX);
		goto done;
	}
	w->data_start = 8 + h.len;
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));

	w->tmp = xasprintf("%s.tmp.XXXXXX", w->path);
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		rc = err_sys(err, errno, "cannot write '%s'", w->path);
		free(w->tmp);
		w->tmp = NULL;
		goto done;
	}
	if (fchmod(w->fd, 0644) < 0 ||
	    pwrite_all(w->fd, len8, 8, 0) < 0 ||
	    pwrite_all(w->fd, h.ptr, h.len, 8) < 0 ||
	    ftruncate(w->fd, (off_t)(w->data_start + w->data_size)) < 0) {
		rc = err_sys(err, errno, "cannot write '%s'", w->tmp);
		goto done;
	}
done:
	if (rc)
		discard(w);
	buf_free(&h);
	return rc;
}

static struct wtensor *writer_find(struct st_writer *w, const char *name)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct wtensor *t = &w->t[w->by_name[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int st_writer_write(struct st_writer *w, const char *name, size_t offset,
		    const void *data, size_t len, struct err *err)
{
	struct wtensor *t;

	assert(w->begun && !w->done);
	if (w->fd < 0)
		return err_set(err, ERR_INVALID, "'%s': not open for writing",
			       w->path);
	t = writer_find(w, name);
	if (!t)
		return bad(err, w->path, name, "not declared");
	if (offset > t->nbytes || len > t->nbytes - offset)
		return bad(err, w->path, name,
			   "write of %zu bytes at %zu runs past its %zu bytes",
			   len, offset, t->nbytes);
	if (len && pwrite_all(w->fd, data, len, w->data_start + t->offset + offset) < 0)
		return err_sys(err, errno, "cannot write '%s'", w->tmp);
	atomic_fetch_add_explicit(&t->written, len, memory_order_relaxed);
	return 0;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static void discard(struct st_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (w->tmp)
		unlink(w->tmp);
	free(w->tmp);
	w->tmp = NULL;
}

int st_writer_commit(struct st_writer *w, struct err *err)
{
	char *dir = NULL;
	int rc = 0;

	assert(w->begun && !w->done);
	w->done = 1;
	if (w->fd < 0) {
		rc = err_set(err, ERR_INVALID, "'%s': not open for writing",
			     w->path);
		goto done;
	}
	for (size_t i = 0; i < w->n; i++) {
		size_t got = atomic_load(&w->t[i].written);
		if (got != w->t[i].nbytes) {
			rc = bad(err, w->path, w->t[i].name,
				 "%zu of %zu bytes written", got, w->t[i].nbytes);
			goto done;
		}
	}
	if (fsync(w->fd) < 0) {
		rc = err_sys(err, errno, "cannot write '%s' (fsync)", w->path);
		goto done;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		rc = err_sys(err, errno, "cannot write '%s' (close)", w->path);
		goto done;
	}
	w->fd = -1;
	fault_point("safetensors-before-rename");
	if (rename(w->tmp, w->path) < 0) {
		rc = err_sys(err, errno, "cannot write '%s' (rename)", w->path);
		goto done;
	}
	free(w->tmp);
	w->tmp = NULL;
	dir = dir_of(w->path);
	rc = fs_fsync_dir(dir, err);
done:
	if (rc)
		discard(w);
	free(dir);
	return rc;
}

void st_writer_free(struct st_writer *w)
{
	if (!w)
		return;
	discard(w);
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		free(w->t[i].shape);
	}
	for (size_t i = 0; i < w->nmeta; i++)
		free(w->meta[i]);
	free(w->meta);
	free(w->t);
	free(w->by_name);
	free(w->path);
	free(w);
}
