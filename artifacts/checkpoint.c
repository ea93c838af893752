/* artifacts/checkpoint.c — see checkpoint.h.
 *
 * Reading cross-checks the index and the shards with two name-sorted
 * lists (what the index says, what the shards hold) walked side by side:
 * every disagreement is one of "missing from its shard", "not in the
 * index", "in another shard than the index says". Writing plans the
 * shards once at begin and routes each write to its shard's st_writer. */
#include "artifacts/checkpoint.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "pipeline/json.h"

#define INDEX_MAX ((size_t)ST_HEADER_MAX)

struct entry {
	const char *name;
	const struct st_tensor *t;   /* NULL for index entries */
	size_t file;
};

struct ckpt {
	struct st_file **files;
	char **names;                /* file names, sorted */
	size_t nfiles;
	struct entry *e;             /* sorted by name */
	size_t n;
	size_t data_size;
};

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
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

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->file < y->file ? -1 : x->file > y->file;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if name looks like "xxx-00001-of-00003.safetensors" with N > 1. */
static int is_shard_of_many(const char *name)
{
	const char *of = strstr(name, "-of-");
	unsigned long total;
	char *end;

	if (!of || !ends_with(name, ".safetensors"))
		return 0;
	total = strtoul(of + 4, &end, 10);
	return end != of + 4 && !strcmp(end, ".safetensors") && total > 1;
}

/* Opens the files in c->names (under the index's dir) into c->files. */
static int open_files(struct ckpt *c, const char *index, const char *dir,
		      struct err *err)
{
	int rc = 0;

	c->files = xcalloc(c->nfiles ? c->nfiles : 1, sizeof(*c->files));
	for (size_t i = 0; i < c->nfiles && !rc; i++) {
		char *p = fs_join(dir, c->names[i]);
		if (!fs_exists(p))
			rc = err_set(err, ERR_INVALID,
				     "'%s': shard '%s' does not exist", index,
				     c->names[i]);
		else
			rc = st_open(p, &c->files[i], err);
		free(p);
	}
	return rc;
}

/* Every tensor of every file, sorted by name; a name in two files is an
 * error. */
static int collect(struct ckpt *c, const char *what, struct err *err)
{
	char show[JSON_SHOW_MAX];

	for (size_t i = 0; i < c->nfiles; i++)
		c->n += st_count(c->files[i]);
	c->e = xcalloc(c->n ? c->n : 1, sizeof(*c->e));
	c->n = 0;
	for (size_t i = 0; i < c->nfiles; i++) {
		for (size_t j = 0; j < st_count(c->files[i]); j++) {
			const struct st_tensor *t = st_tensor(c->files[i], j);
			c->e[c->n++] = (struct entry){ t->name, t, i };
			c->data_size += t->nbytes;
		}
	}
	qsort(c->e, c->n, sizeof(*c->e), cmp_entry);
	for (size_t i = 1; i < c->n; i++)
		if (!strcmp(c->e[i].name, c->e[i - 1].name))
			return err_set(err, ERR_INVALID,
				       "'%s': tensor '%s' is in two shards, '%s' and '%s'",
				       what, json_show(c->e[i].name, show, sizeof(show)),
				       c->names[c->e[i - 1].file], c->names[c->e[i].file]);
	return 0;
}

static int check_shard_name(const char *index, const char *s, struct err *err)
{
	char show[JSON_SHOW_MAX];

	if (!*s || strchr(s, '/') || strstr(s, ".."))
		return err_set(err, ERR_INVALID,
			       "'%s': weight_map: shard '%s' is not a plain file name "
			       "in the index's directory", index,
			       json_show(s, show, sizeof(show)));
	return 0;
}

static size_t find_name(char *const *names, size_t n, const char *s)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s, names[mid]);
		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return n;
}

static int open_index(struct ckpt *c, const char *index, struct err *err)
{
	struct jnode *root = NULL;
	const struct jnode *wm;
	struct entry *ie = NULL;
	char *text = NULL, *dir = dir_of(index);
	char show[JSON_SHOW_MAX];
	size_t len, i, j;
	int rc;

	rc = fs_read_file(index, INDEX_MAX, &text, &len, err);
	if (rc)
		goto done;
	rc = json_parse(text, len, 0, &root, err);
	if (rc) {
		err_prefix(err, "'%s'", index);
		goto done;
	}
	wm = json_get(root, "weight_map");
	if (root->type != J_OBJECT || !wm || wm->type != J_OBJECT) {
		rc = err_set(err, ERR_INVALID,
			     "'%s': not an index: no \"weight_map\" object", index);
		goto done;
	}
	/* The distinct shard names, sorted. */
	c->names = xcalloc(wm->nkids ? wm->nkids : 1, sizeof(*c->names));
	for (i = 0; i < wm->nkids; i++) {
		const struct jnode *v = &wm->kids[i];
		if (v->type != J_STRING) {
			rc = err_set(err, ERR_INVALID,
				     "'%s': weight_map: tensor '%s': shard is a %s, not a string",
				     index, json_show(v->key, show, sizeof(show)),
				     json_type_name(v->type));
			goto done;
		}
		if ((rc = check_shard_name(index, v->str, err)))
			goto done;
		c->names[i] = v->str;
	}
	qsort(c->names, wm->nkids, sizeof(*c->names), cmp_str);
	for (i = 0; i < wm->nkids; i++)
		if (!c->nfiles || strcmp(c->names[i], c->names[c->nfiles - 1]))
			c->names[c->nfiles++] = c->names[i];
	for (i = 0; i < c->nfiles; i++)
		c->names[i] = xstrdup(c->names[i]);

	/* What the index says, sorted by name. */
	ie = xcalloc(wm->nkids ? wm->nkids : 1, sizeof(*ie));
	for (i = 0; i < wm->nkids; i++)
		ie[i] = (struct entry){ wm->kids[i].key, NULL,
			find_name(c->names, c->nfiles, wm->kids[i].str) };
	qsort(ie, wm->nkids, sizeof(*ie), cmp_entry);
	for (i = 1; i < wm->nkids; i++) {
		if (!strcmp(ie[i].name, ie[i - 1].name)) {
			rc = err_set(err, ERR_INVALID,
				     "'%s': weight_map: duplicate tensor '%s'", index,
				     json_show(ie[i].name, show, sizeof(show)));
			goto done;
		}
	}

	if ((rc = open_files(c, index, dir, err)) || (rc = collect(c, index, err)))
		goto done;

	/* Both lists sorted by name: walk them together. */
	for (i = 0, j = 0; i < wm->nkids || j < c->n;) {
		int cmp = i == wm->nkids ? 1 : j == c->n ? -1 :
			  strcmp(ie[i].name, c->e[j].name);
		if (cmp < 0) {
			rc = err_set(err, ERR_INVALID,
				     "'%s': tensor '%s': not in its shard '%s'", index,
				     json_show(ie[i].name, show, sizeof(show)),
				     c->names[ie[i].file]);
			goto done;
		}
		if (cmp > 0) {
			rc = err_set(err, ERR_INVALID,
				     "'%s': tensor '%s' of shard '%s' is not in the index",
				     index, json_show(c->e[j].name, show, sizeof(show)),
				     c->names[c->e[j].file]);
			goto done;
		}
		if (ie[i].file != c->e[j].file) {
			rc = err_set(err, ERR_INVALID,
				     "'%s': tensor '%s': not in its shard '%s' (it is in '%s')",
				     index, json_show(ie[i].name, show, sizeof(show)),
				     c->names[ie[i].file], c->names[c->e[j].file]);
			goto done;
		}
		i++, j++;
	}
done:
	free(ie);
	json_free(root);
	free(text);
	free(dir);
	return rc;
}

static int open_single(struct ckpt *c, const char *path, struct err *err)
{
	const char *base = strrchr(path, '/');
	int rc;

	c->nfiles = 1;
	c->names = xcalloc(1, sizeof(*c->names));
	c->names[0] = xstrdup(base ? base + 1 : path);
	c->files = xcalloc(1, sizeof(*c->files));
	rc = st_open(path, &c->files[0], err);
	if (!rc)
		rc = collect(c, path, err);
	return rc;
}

/* A directory without an index. */
static int open_dir(struct ckpt *c, const char *dir, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *found = NULL, *path = NULL;
	size_t nfound = 0;
	int single = 0, rc = 0;

	if (!d)
		return err_sys(err, errno, "'%s'", dir);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors"))
			continue;
		if (!strcmp(de->d_name, CKPT_SINGLE))
			single = 1;
		if (nfound++ == 0 || strcmp(de->d_name, found) < 0) {
			free(found);
			found = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (single) {
		free(found);
		found = xstrdup(CKPT_SINGLE);
	} else if (nfound == 0) {
		rc = err_set(err, ERR_NOTFOUND,
			     "'%s': no .safetensors file and no " CKPT_INDEX, dir);
		goto done;
	} else if (nfound > 1) {
		rc = err_set(err, ERR_INVALID,
			     "'%s': %zu .safetensors files (first '%s') but no "
			     CKPT_INDEX " and no " CKPT_SINGLE, dir, nfound, found);
		goto done;
	} else if (is_shard_of_many(found)) {
		rc = err_set(err, ERR_INVALID,
			     "'%s': '%s' is one shard of several and there is no "
			     CKPT_INDEX " (an unfinished write?)", dir, found);
		goto done;
	}
	path = fs_join(dir, found);
	rc = open_single(c, path, err);
done:
	free(found);
	free(path);
	return rc;
}

int ckpt_open(const char *path, struct ckpt **out, struct err *err)
{
	struct ckpt *c = xcalloc(1, sizeof(*c));
	struct stat st;
	char *index = NULL;
	int rc;

	*out = NULL;
	if (stat(path, &st) < 0) {
		rc = err_sys(err, errno, "'%s'", path);
		goto done;
	}
	if (S_ISDIR(st.st_mode)) {
		index = fs_join(path, CKPT_INDEX);
		if (fs_exists(index))
			rc = open_index(c, index, err);
		else
			rc = open_dir(c, path, err);
	} else if (ends_with(path, ".index.json")) {
		rc = open_index(c, path, err);
	} else {
		rc = open_single(c, path, err);
	}
done:
	free(index);
	if (rc) {
		ckpt_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void ckpt_close(struct ckpt *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nfiles; i++) {
		if (c->files)
			st_close(c->files[i]);
		free(c->names[i]);
	}
	free(c->files);
	free(c->names);
	free(c->e);
	free(c);
}

size_t ckpt_count(const struct ckpt *c)
{
	return c->n;
}

const struct st_tensor *ckpt_tensor(const struct ckpt *c, size_t i)
{
	assert(i < c->n);
	return c->e[i].t;
}

const struct st_file *ckpt_tensor_file(const struct ckpt *c, size_t i)
{
	assert(i < c->n);
	return c->files[c->e[i].file];
}

const struct st_tensor *ckpt_find(const struct ckpt *c, const char *name)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(name, c->e[mid].name);
		if (cmp == 0)
			return c->e[mid].t;
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t ckpt_nfiles(const struct ckpt *c)
{
	return c->nfiles;
}

const struct st_file *ckpt_file(const struct ckpt *c, size_t i)
{
	assert(i < c->nfiles);
	return c->files[i];
}

size_t ckpt_data_size(const struct ckpt *c)
{
	return c->data_size;
}

/* ---- Writer ---- */

struct decl {
	char *name;
	enum st_dtype dtype;
	size_t *shape;
	size_t ndim;
	size_t nbytes;
	size_t shard;
};

struct ckpt_writer {
	char *dir;
	size_t max;
	struct decl *d;          /* sorted by name once begun */
	size_t n, cap;
	char **meta;             /* key, value, ... */
	size_t nmeta;
	struct st_writer **shards;
	char **paths;
	size_t nshards;
	size_t committed;        /* shards renamed into place */
	int begun;
	int lock_fd;             /* flock on dir while writing, or -1 */
};

int ckpt_writer_new(const char *dir, size_t max_shard_bytes,
		    struct ckpt_writer **out, struct err *err)
{
	struct ckpt_writer *w = xcalloc(1, sizeof(*w));

	w->dir = xstrdup(dir);
	w->max = max_shard_bytes;
	w->lock_fd = -1;
	*out = w;
	return 0;
}

int ckpt_writer_add(struct ckpt_writer *w, const char *name,
		    enum st_dtype dtype, const size_t *shape, size_t ndim,
		    struct err *err)
{
	struct decl *d;
	size_t numel = 1, nbytes;
	char show[JSON_SHOW_MAX];

	assert(!w->begun);
	if ((unsigned)dtype >= ST_DTYPE_COUNT)
		return err_set(err, ERR_INVALID, "'%s': tensor '%s': unknown dtype",
			       w->dir, json_show(name, show, sizeof(show)));
	for (size_t i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(numel, shape[i], &numel))
			return err_set(err, ERR_INVALID,
				       "'%s': tensor '%s': shape overflows", w->dir,
				       json_show(name, show, sizeof(show)));
	if (__builtin_mul_overflow(numel, dtype_width(dtype), &nbytes))
		return err_set(err, ERR_INVALID, "'%s': tensor '%s': shape overflows",
			       w->dir, json_show(name, show, sizeof(show)));
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->d = xrealloc(w->d, w->cap * sizeof(*w->d));
	}
	d = &w->d[w->n++];
	d->name = xstrdup(name);
	d->dtype = dtype;
	d->ndim = ndim;
	d->shape = xmalloc((ndim ? ndim : 1) * sizeof(*shape));
	if (ndim)
		memcpy(d->shape, shape, ndim * sizeof(*shape));
	d->nbytes = nbytes;
	d->shard = 0;
	return 0;
}

int ckpt_writer_set_metadata(struct ckpt_writer *w, const char *key,
			     const char *value, struct err *err)
{
	assert(!w->begun);
	w->meta = xrealloc(w->meta, (w->nmeta + 2) * sizeof(*w->meta));
	w->meta[w->nmeta++] = xstrdup(key);
	w->meta[w->nmeta++] = xstrdup(value);
	return 0;
}

size_t ckpt_writer_nshards(const struct ckpt_writer *w)
{
	return w->nshards;
}

static int cmp_decl(const void *a, const void *b)
{
	return strcmp(((const struct decl *)a)->name,
		      ((const struct decl *)b)->name);
}

/* Takes the write lock of dir (an flock on the directory, released
 * when the process dies), so that what sweep_unfinished removes is no
 * live writer's. */
static int lock_dir(struct ckpt_writer *w, struct err *err)
{
	w->lock_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->lock_fd < 0)
		return err_sys(err, errno, "'%s'", w->dir);
	if (flock(w->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return err_set(err, ERR_BUSY,
				       "'%s': another process is writing a checkpoint there",
				       w->dir);
		return err_sys(err, errno, "cannot lock '%s'", w->dir);
	}
	return 0;
}

/* 1 if name is a shard's temporary file: "X.safetensors.tmp.XXXXXX". */
static int is_shard_tmp(const char *name)
{
	const char *t = strstr(name, ".safetensors.tmp.");

	return t && t != name && strlen(t + 17) == 6 && !strchr(t + 17, '/');
}

/* Removes what a write into dir that was killed left (the caller holds
 * the lock: no live writer owns it): shards' temporary files and, when
 * there is no index, the shards of several it had renamed into place,
 * which no reader takes for a checkpoint (open_dir). A finished
 * checkpoint is left alone, for check_empty to refuse. */
static int sweep_unfinished(const char *dir, struct err *err)
{
	char *index = fs_join(dir, CKPT_INDEX);
	int indexed = fs_exists(index), rc = 0;
	DIR *d = opendir(dir);
	struct dirent *de;

	free(index);
	if (!d)
		return err_sys(err, errno, "'%s'", dir);
	while (!rc && (de = readdir(d))) {
		if (de->d_name[0] == '.' ||
		    !(is_shard_tmp(de->d_name) || (!indexed && is_shard_of_many(de->d_name))))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			rc = err_sys(err, errno, "cannot remove '%s/%s' (left by an unfinished write)",
				     dir, de->d_name);
	}
	closedir(d);
	return rc;
}

/* Refuses a directory that already holds a checkpoint. */
static int check_empty(const char *dir, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return err_sys(err, errno, "'%s'", dir);
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.' && (ends_with(de->d_name, ".safetensors") ||
					     !strcmp(de->d_name, CKPT_INDEX))) {
			rc = err_set(err, ERR_INVALID,
				     "'%s' already holds a checkpoint ('%s'); "
				     "write into an empty directory", dir, de->d_name);
			break;
		}
	}
	closedir(d);
	return rc;
}

int ckpt_writer_begin(struct ckpt_writer *w, struct err *err)
{
	char show[JSON_SHOW_MAX];
	size_t used = 0;
	int rc;

	assert(!w->begun);
	w->begun = 1;
	if ((rc = fs_mkdir_p(w->dir, 0755, err)) || (rc = lock_dir(w, err)) ||
	    (rc = sweep_unfinished(w->dir, err)) || (rc = check_empty(w->dir, err)))
		return rc;
	if (w->n)
		qsort(w->d, w->n, sizeof(*w->d), cmp_decl);
	for (size_t i = 1; i < w->n; i++)
		if (!strcmp(w->d[i].name, w->d[i - 1].name))
			return err_set(err, ERR_INVALID,
				       "'%s': tensor '%s': duplicate tensor name",
				       w->dir, json_show(w->d[i].name, show, sizeof(show)));

	/* Greedy, in name order. */
	w->nshards = 1;
	for (size_t i = 0; i < w->n; i++) {
		if (w->max && used > 0 && w->d[i].nbytes > w->max - used) {
			w->nshards++;
			used = 0;
		}
		w->d[i].shard = w->nshards - 1;
		used += w->d[i].nbytes;
		if (w->max && used > w->max)
			used = w->max;   /* an oversized tensor fills its shard */
	}

	w->shards = xcalloc(w->nshards, sizeof(*w->shards));
	w->paths = xcalloc(w->nshards, sizeof(*w->paths));
	for (size_t s = 0; s < w->nshards; s++) {
		char *name = w->nshards == 1 ? xstrdup(CKPT_SINGLE) :
			xasprintf("model-%05zu-of-%05zu.safetensors", s + 1, w->nshards);
		w->paths[s] = fs_join(w->dir, name);
		free(name);
		st_writer_new(w->paths[s], &w->shards[s], err);
		for (size_t m = 0; m < w->nmeta; m += 2)
			if ((rc = st_writer_set_metadata(w->shards[s], w->meta[m],
							 w->meta[m + 1], err)))
				return rc;
	}
	for (size_t i = 0; i < w->n; i++) {
		struct decl *d = &w->d[i];
		if ((rc = st_writer_add(w->shards[d->shard], d->name, d->dtype,
					d->shape, d->ndim, err)))
			return rc;
	}
	for (size_t s = 0; s < w->nshards; s++)
		if ((rc = st_writer_begin(w->shards[s], err)))
			return rc;
	return 0;
}

int ckpt_writer_write(struct ckpt_writer *w, const char *name, size_t offset,
		      const void *data, size_t len, struct err *err)
{
	struct decl key = { .name = (char *)name };
	struct decl *d;
	char show[JSON_SHOW_MAX];

	assert(w->begun);
	d = bsearch(&key, w->d, w->n, sizeof(*w->d), cmp_decl);
	if (!d)
		return err_set(err, ERR_INVALID, "'%s': tensor '%s': not declared",
			       w->dir, json_show(name, show, sizeof(show)));
	return st_writer_write(w->shards[d->shard], name, offset, data, len, err);
}

static void index_json(const struct ckpt_writer *w, struct buf *b)
{
	size_t total = 0;

	for (size_t i = 0; i < w->n; i++)
		total += w->d[i].nbytes;
	buf_printf(b, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n"
		   "  \"weight_map\": {", total);
	for (size_t i = 0; i < w->n; i++) {
		const char *p = w->paths[w->d[i].shard];
		const char *base = strrchr(p, '/');
		buf_adds(b, i ? ",\n    " : "\n    ");
		buf_add_json_str(b, w->d[i].name);
		buf_adds(b, ": ");
		buf_add_json_str(b, base ? base + 1 : p);
	}
	buf_adds(b, "\n  }\n}\n");
}

int ckpt_writer_commit(struct ckpt_writer *w, struct err *err)
{
	struct buf b = BUF_INIT;
	char *index = NULL;
	int rc = 0;

	assert(w->begun && w->shards);
	for (; w->committed < w->nshards; w->committed++) {
		if ((rc = st_writer_commit(w->shards[w->committed], err)))
			goto done;
		fault_point("ckpt.shard-committed");
	}
	if (w->nshards > 1) {
		index_json(w, &b);
		index = fs_join(w->dir, CKPT_INDEX);
		rc = fs_write_atomic(index, b.ptr, b.len, 0644, err);
	}
done:
	if (rc) {
		/* Do not leave a partial set of shards behind. */
		for (size_t s = 0; s < w->committed; s++)
			unlink(w->paths[s]);
		w->committed = 0;
	}
	buf_free(&b);
	free(index);
	return rc;
}

void ckpt_writer_free(struct ckpt_writer *w)
{
	if (!w)
		return;
	for (size_t s = 0; s < w->nshards; s++) {
		st_writer_free(w->shards ? w->shards[s] : NULL);
		if (w->paths)
			free(w->paths[s]);
	}
	free(w->shards);
	free(w->paths);
	for (size_t i = 0; i < w->n; i++) {
		free(w->d[i].name);
		free(w->d[i].shape);
	}
	free(w->d);
	for (size_t i = 0; i < w->nmeta; i++)
		free(w->meta[i]);
	free(w->meta);
	free(w->dir);
	if (w->lock_fd >= 0)
		close(w->lock_fd);
	free(w);
}
