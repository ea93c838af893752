/* artifacts/bundle.c — see bundle.h. The only file that includes archive.h.
 *
 * Export walks the catalog (the artifact, its ancestors through the
 * recursive lineage query), orders the records parents first, writes the
 * JSON, then streams each distinct object out of the store through a hash
 * into the archive. Import is the mirror image with nothing trusted: one
 * streaming pass over the archive (objects go to a staging directory of
 * ours, by their digest, never to a path taken from the archive), then the
 * checks that need everything (files present, lineage digests recomputed
 * by the catalog in a rolled-back transaction), then the store, then one
 * catalog transaction. Memory: the JSON (bounded by a limit) and a 1 MiB
 * buffer, whatever the size of the objects. */
#include "artifacts/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/json.h"
#include "pipeline/step.h"

#define CHUNK (1u << 20)
#define OBJ_PREFIX "objects/"
#define DEFAULT_MAX_ENTRIES 1000000u
#define DEFAULT_MAX_JSON (64u << 20)

static const char *aerr(struct archive *a)
{
	const char *s = a ? archive_error_string(a) : NULL;
	return s ? s : "unknown error";
}

static int is_lower_hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == DIGEST_HEX_LEN;
}

/* "'student@3'" or "'intermediate 1a2b3c4d5e6f'": how messages name a
 * record. malloc'd. */
static char *record_label(const char *name, long long version, const char *kind,
			  const char *digest)
{
	if (name && version > 0)
		return xasprintf("'%s@%lld'", name, version);
	if (name)
		return xasprintf("'%s'", name);
	return xasprintf("'%s %.12s'", kind ? kind : "artifact", digest ? digest : "?");
}

/* An object the bundle carries: its digest and size. */
struct obj {
	struct digest d;
	uint64_t size;
	int got;            /* import: its entry has been read and verified */
};

static int cmp_obj(const void *a, const void *b)
{
	return memcmp(((const struct obj *)a)->d.b, ((const struct obj *)b)->d.b, DIGEST_LEN);
}

/* Sorts v and merges equal digests; ERR_INVALID when one digest comes with
 * two sizes (which no honest manifest set can hold). */
static int objs_unique(struct obj *v, size_t *n, struct err *err)
{
	size_t w = 0;

	if (*n == 0)
		return 0;
	qsort(v, *n, sizeof(*v), cmp_obj);
	for (size_t i = 1; i < *n; i++) {
		if (!memcmp(v[i].d.b, v[w].d.b, DIGEST_LEN)) {
			if (v[i].size != v[w].size) {
				char hex[DIGEST_HEX_LEN + 1];
				digest_hex(&v[i].d, hex);
				return err_set(err, ERR_INVALID,
					       "object %s has size %" PRIu64 " in one manifest and %"
					       PRIu64 " in another", hex, v[w].size, v[i].size);
			}
			continue;
		}
		v[++w] = v[i];
	}
	*n = w + 1;
	return 0;
}

static void objs_add(struct obj **v, size_t *n, size_t *cap, const struct manifest *m)
{
	for (size_t i = 0; i < m->n; i++) {
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*v = xrealloc(*v, *cap * sizeof(**v));
		}
		(*v)[*n].d = m->v[i].digest;
		(*v)[*n].size = m->v[i].size;
		(*v)[*n].got = 0;
		(*n)++;
	}
}

/* ==== export ================================================================== */

struct xnode {
	int64_t id;
	struct artifact_info a;
	char *manifest;
	struct manifest m;
	int bytes;          /* its objects go into the bundle */
	size_t *edges;      /* indexes into the lineage edges: its parents */
	size_t nedges;
	int state;          /* DFS: 0 new, 1 open, 2 placed */
};

struct xctx {
	struct state *st;
	struct store *store;
	struct xnode *v;
	size_t n;
	size_t *order;      /* parents before children */
	size_t norder;
	struct lineage_edge *e;
	size_t ne;
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static struct xnode *xnode_of(struct xctx *x, int64_t id)
{
	size_t lo = 0, hi = x->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (x->v[mid].id == id)
			return &x->v[mid];
		if (x->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The nodes (id and every ancestor), sorted by id, with their edges. */
static int collect(struct xctx *x, int64_t root, struct err *err)
{
	int64_t *ids;
	size_t n = 0;
	int ret;

	if ((ret = catalog_lineage(x->st, root, 0, 0, &x->e, &x->ne, err)))
		return ret;
	ids = xmalloc((2 * x->ne + 1) * sizeof(*ids));
	ids[n++] = root;
	for (size_t i = 0; i < x->ne; i++) {
		ids[n++] = x->e[i].child;
		ids[n++] = x->e[i].parent;
	}
	qsort(ids, n, sizeof(*ids), cmp_i64);
	x->v = xcalloc(n, sizeof(*x->v));
	for (size_t i = 0; i < n; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			x->v[x->n++].id = ids[i];
	free(ids);
	for (size_t i = 0; i < x->ne; i++) {
		struct xnode *c = xnode_of(x, x->e[i].child);
		c->edges = xrealloc(c->edges, (c->nedges + 1) * sizeof(*c->edges));
		c->edges[c->nedges++] = i;
	}
	return 0;
}

/* Post-order DFS over parents, without recursion (histories can be deep). */
static void topo(struct xctx *x, int64_t root)
{
	size_t *stack = xmalloc((x->n + 1) * sizeof(*stack)), *next;
	size_t sp = 0;

	next = xcalloc(x->n, sizeof(*next));
	x->order = xmalloc(x->n * sizeof(*x->order));
	stack[sp++] = (size_t)(xnode_of(x, root) - x->v);
	x->v[stack[0]].state = 1;
	while (sp) {
		size_t i = stack[sp - 1];
		struct xnode *nd = &x->v[i];
		if (next[i] < nd->nedges) {
			struct xnode *p = xnode_of(x, x->e[nd->edges[next[i]++]].parent);
			if (p->state == 0) {
				p->state = 1;
				stack[sp++] = (size_t)(p - x->v);
			}
			continue;
		}
		nd->state = 2;
		x->order[x->norder++] = i;
		sp--;
	}
	free(next);
	free(stack);
}

/* Reads a node's record and checks it is still what it claims: a
 * manifest that hashes to its digest, a lineage digest that recomputes. */
static int load_node(struct xctx *x, struct xnode *nd, struct err *err)
{
	char lineage[DIGEST_HEX_LEN + 1], hex[DIGEST_HEX_LEN + 1];
	char *label = NULL;
	int ret;

	if ((ret = catalog_get(x->st, nd->id, &nd->a, err)))
		return ret;
	label = record_label(nd->a.name, nd->a.version, artifact_kind_name(nd->a.kind),
			     nd->a.digest);
	if ((ret = catalog_manifest(x->st, nd->id, &nd->manifest, err)))
		goto done;
	if ((ret = manifest_parse(nd->manifest, &nd->m, err))) {
		err_prefix(err, "artifact %s: its recorded manifest", label);
		goto done;
	}
	digest_hex(&nd->m.digest, hex);
	if (strcmp(hex, nd->a.digest)) {
		ret = err_set(err, ERR_INVALID,
			      "artifact %s: its recorded manifest hashes to %.12s, not to its"
			      " digest %.12s (run 'anneal audit')", label, hex, nd->a.digest);
		goto done;
	}
	if ((ret = catalog_lineage_digest(x->st, nd->id, lineage, err)))
		goto done;
	if (strcmp(lineage, nd->a.lineage))
		ret = err_set(err, ERR_INVALID,
			      "artifact %s: its lineage digest %.12s no longer recomputes (the"
			      " facts give %.12s; run 'anneal audit')", label, nd->a.lineage,
			      lineage);
done:
	free(label);
	return ret;
}

static void json_opt_str(struct buf *b, const char *key, const char *v)
{
	buf_printf(b, ",\"%s\":", key);
	if (v)
		buf_add_json_str(b, v);
	else
		buf_adds(b, "null");
}

static int write_json(struct xctx *x, int64_t root, int with_ancestors, double created,
		      struct buf *b, struct err *err)
{
	buf_printf(b, "{\"format\":\"anneal-bundle\",\"version\":%d,\"created\":%.3f,"
		   "\"root\":\"%s\",\"with_ancestors\":%s,\"artifacts\":[\n",
		   BUNDLE_FORMAT_VERSION, created, xnode_of(x, root)->a.lineage,
		   with_ancestors ? "true" : "false");
	for (size_t k = 0; k < x->norder; k++) {
		struct xnode *nd = &x->v[x->order[k]];
		const struct artifact_info *a = &nd->a;
		buf_printf(b, "%s{\"lineage_digest\":\"%s\",\"digest\":\"%s\",\"kind\":\"%s\"",
			   k ? ",\n" : "", a->lineage, a->digest, artifact_kind_name(a->kind));
		json_opt_str(b, "name", a->name);
		if (a->name)
			buf_printf(b, ",\"version\":%d", a->version);
		else
			buf_adds(b, ",\"version\":null");
		buf_printf(b, ",\"type\":\"%s\",\"bytes\":%" PRIu64 ",\"files\":%" PRIu64
			   ",\"objects\":%s,\"manifest\":", artifact_type_name(a->type), a->bytes,
			   a->files, nd->bytes ? "true" : "false");
		buf_add_json_str(b, nd->manifest);
		buf_adds(b, ",\"producer\":{\"run\":");
		if (a->run_id)
			buf_printf(b, "%" PRId64, a->run_id);
		else
			buf_adds(b, "null");
		json_opt_str(b, "step", a->step);
		if (a->attempt)
			buf_printf(b, ",\"attempt\":%d", a->attempt);
		else
			buf_adds(b, ",\"attempt\":null");
		if (a->engine_step >= 0)
			buf_printf(b, ",\"engine_step\":%lld", a->engine_step);
		else
			buf_adds(b, ",\"engine_step\":null");
		json_opt_str(b, "step_key", a->step_key);
		json_opt_str(b, "recipe_digest", a->recipe_digest);
		json_opt_str(b, "git_commit", a->git_commit);
		json_opt_str(b, "git_dirty", a->git_dirty);
		json_opt_str(b, "origin", a->origin);
		buf_adds(b, "},\"parents\":[");
		for (size_t i = 0; i < nd->nedges; i++) {
			const struct lineage_edge *e = &x->e[nd->edges[i]];
			buf_printf(b, "%s{\"lineage_digest\":\"%s\",\"role\":", i ? "," : "",
				   xnode_of(x, e->parent)->a.lineage);
			buf_add_json_str(b, e->role);
			if (e->has_weight) {
				if (!isfinite(e->weight))
					return err_set(err, ERR_INVALID,
						       "a merge weight that is not a finite number");
				/* %.17g reads back as the same double: the lineage
				 * digest is taken over this spelling. */
				buf_printf(b, ",\"weight\":%.17g", e->weight);
			}
			buf_addc(b, '}');
		}
		buf_adds(b, "]}");
	}
	buf_adds(b, "\n]}\n");
	return 0;
}

static int put_header(struct archive *ar, const char *name, uint64_t size,
		      unsigned perm, double mtime, struct err *err)
{
	struct archive_entry *e = archive_entry_new();
	int r;

	if (!e)
		return err_set(err, ERR_NOMEM, "out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	r = archive_write_header(ar, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return err_set(err, ERR_SYSTEM, "write entry '%s': %s", name, aerr(ar));
	return 0;
}

static int put_data(struct archive *ar, const char *name, const void *p, size_t len,
		    struct err *err)
{
	const char *c = p;

	while (len) {
		la_ssize_t w = archive_write_data(ar, c, len);
		if (w <= 0)
			return err_set(err, ERR_SYSTEM, "write entry '%s': %s", name, aerr(ar));
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Streams one object out of the store, re-hashing it on the way. */
static int put_object(struct store *store, struct archive *ar, const struct obj *o,
		      double mtime, char *chunk, struct err *err)
{
	char hex[DIGEST_HEX_LEN + 1], name[sizeof(OBJ_PREFIX) + DIGEST_HEX_LEN];
	struct sha256 *h = NULL;
	struct digest got;
	char *path = NULL;
	uint64_t left = o->size;
	int fd = -1, ret;

	digest_hex(&o->d, hex);
	snprintf(name, sizeof(name), OBJ_PREFIX "%s", hex);
	if ((ret = store_verify(store, &o->d, o->size, 0, err))) {
		err_prefix(err, "the store cannot give object %.12s (run 'anneal audit')", hex);
		goto done;
	}
	path = store_object_path(store, &o->d);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = err_sys(err, errno, "cannot open object '%s'", path);
		goto done;
	}
	if ((ret = put_header(ar, name, o->size, 0444, mtime, err)))
		goto done;
	h = sha256_new();
	while (left) {
		ssize_t r = read(fd, chunk, left < CHUNK ? (size_t)left : CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = err_sys(err, errno, "cannot read object '%s'", path);
			goto done;
		}
		if (r == 0) {
			ret = err_set(err, ERR_INVALID,
				      "object %.12s is shorter than recorded (run 'anneal audit')", hex);
			goto done;
		}
		sha256_update(h, chunk, (size_t)r);
		if ((ret = put_data(ar, name, chunk, (size_t)r, err)))
			goto done;
		left -= (uint64_t)r;
	}
	sha256_final(h, &got);
	if (memcmp(got.b, o->d.b, DIGEST_LEN)) {
		char ghex[DIGEST_HEX_LEN + 1];
		digest_hex(&got, ghex);
		ret = err_set(err, ERR_INVALID,
			      "object %.12s in the store hashes to %.12s: it is damaged"
			      " (run 'anneal audit --deep')", hex, ghex);
	}
done:
	sha256_free(h);
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

/* The integrity trailer. zstd frames carry no checksum as libarchive
 * writes them, and a few fields of the JSON (names, versions, times) are
 * covered by no digest; so the file ends with a zstd skippable frame,
 * which zstd and tar skip, holding the SHA-256 of every byte before it:
 *
 *     5a 2a 4d 18 | 24 00 00 00 | "ANB1" | SHA-256 (32 bytes)
 *
 * Any flipped byte anywhere, and any cut, refuses the bundle. */
#define TRAILER_LEN 44
static const unsigned char trailer_head[12] = {
	0x5a, 0x2a, 0x4d, 0x18, 0x24, 0x00, 0x00, 0x00, 'A', 'N', 'B', '1',
};

static int write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t w = write(fd, c, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

/* libarchive's output: to the file, through the trailer's hash. */
struct wsink {
	int fd;
	struct sha256 *h;
};

static la_ssize_t wsink_write(struct archive *ar, void *ctx, const void *p, size_t len)
{
	struct wsink *w = ctx;

	if (write_all(w->fd, p, len) < 0) {
		archive_set_error(ar, errno, "%s", strerror(errno));
		return -1;
	}
	sha256_update(w->h, p, len);
	return (la_ssize_t)len;
}

/* Removes what exports to path that were killed left beside it
 * (PATH.anneal-tmp.PID of a process that is gone). Best effort: a file
 * left behind costs disk, not correctness. */
static void sweep_killed_exports(const char *path, const char *dir)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t n = strlen(base);
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid;

		if (strncmp(de->d_name, base, n) || strncmp(de->d_name + n, ".anneal-tmp.", 12))
			continue;
		pid = strtol(de->d_name + n + 12, &end, 10);
		if (end == de->d_name + n + 12 || *end || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;   /* alive (or not ours to ask): maybe writing */
		(void)unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static int write_archive(struct xctx *x, const struct buf *json, const struct obj *objs,
			 size_t nobjs, double created, const char *path, struct err *err)
{
	struct archive *ar = NULL;
	char *tmp = xasprintf("%s.anneal-tmp.%ld", path, (long)getpid());
	char *dir = fs_dirname(path), *chunk = NULL;
	struct wsink w = { .fd = -1, .h = sha256_new() };
	unsigned char trailer[TRAILER_LEN];
	struct digest d;
	int fd = -1, ret = 0, opened = 0;

	if (fs_is_dir(path)) {
		ret = err_set(err, ERR_INVALID, "is a directory; give a file name");
		goto done;
	}
	sweep_killed_exports(path, dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		/* A missing directory is the user's to fix (exit 2). */
		if (errno == ENOENT)
			ret = err_set(err, ERR_INVALID, "no such directory '%s'", dir);
		else
			ret = err_sys(err, errno, "cannot create '%s'", tmp);
		goto done;
	}
	ar = archive_write_new();
	if (!ar) {
		ret = err_set(err, ERR_NOMEM, "out of memory");
		goto done;
	}
	/* ARCHIVE_WARN would mean an external zstd program: refuse it. */
	if (archive_write_set_format_pax_restricted(ar) != ARCHIVE_OK ||
	    archive_write_add_filter_zstd(ar) != ARCHIVE_OK) {
		ret = err_set(err, ERR_SYSTEM, "libarchive cannot write tar.zst: %s", aerr(ar));
		goto done;
	}
	/* No padding after the zstd frame: the trailer must follow it. */
	w.fd = fd;
	if (archive_write_set_bytes_in_last_block(ar, 1) != ARCHIVE_OK ||
	    archive_write_open(ar, &w, NULL, wsink_write, NULL) != ARCHIVE_OK) {
		ret = err_set(err, ERR_SYSTEM, "cannot write '%s': %s", tmp, aerr(ar));
		goto done;
	}
	opened = 1;
	if ((ret = put_header(ar, BUNDLE_JSON_NAME, json->len, 0644, created, err)) ||
	    (ret = put_data(ar, BUNDLE_JSON_NAME, json->ptr, json->len, err)))
		goto done;
	chunk = xmalloc(CHUNK);
	for (size_t i = 0; i < nobjs; i++) {
		if ((ret = put_object(x->store, ar, &objs[i], created, chunk, err)))
			goto done;
		fault_point("bundle.export-object");
	}
	opened = 0;
	if (archive_write_close(ar) != ARCHIVE_OK) {
		ret = err_set(err, ERR_SYSTEM, "cannot write '%s': %s", tmp, aerr(ar));
		goto done;
	}
	sha256_final(w.h, &d);
	memcpy(trailer, trailer_head, sizeof(trailer_head));
	memcpy(trailer + sizeof(trailer_head), d.b, DIGEST_LEN);
	if (write_all(fd, trailer, sizeof(trailer)) < 0) {
		ret = err_sys(err, errno, "cannot write '%s'", tmp);
		goto done;
	}
	if (fsync(fd) < 0) {
		ret = err_sys(err, errno, "cannot write '%s' (fsync)", tmp);
		goto done;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = err_sys(err, errno, "cannot write '%s' (close)", tmp);
		goto done;
	}
	fd = -1;
	fault_point("bundle.export-before-rename");
	if (rename(tmp, path) < 0) {
		ret = err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, path);
		goto done;
	}
	ret = fs_fsync_dir(dir, err);
done:
	if (ar) {
		if (opened)
			archive_write_close(ar);
		archive_write_free(ar);
	}
	if (fd >= 0)
		close(fd);
	if (ret)
		unlink(tmp);
	sha256_free(w.h);
	free(chunk);
	free(dir);
	free(tmp);
	return ret;
}

int bundle_export(struct state *st, struct store *store, int64_t id, int with_ancestors,
		  const char *path, struct bundle_summary *out, struct err *err)
{
	struct xctx x = { .st = st, .store = store };
	struct buf json = BUF_INIT;
	struct obj *objs = NULL;
	size_t nobjs = 0, cap = 0;
	struct bundle_summary sum = { 0 };
	double created = now_wall();
	int ret;

	if (out)
		memset(out, 0, sizeof(*out));
	if ((ret = collect(&x, id, err)))
		goto done;
	topo(&x, id);
	for (size_t k = 0; k < x.norder; k++) {
		struct xnode *nd = &x.v[x.order[k]];
		if ((ret = load_node(&x, nd, err)))
			goto done;
		nd->bytes = !nd->a.pruned && (with_ancestors || nd->id == id);
		if (nd->bytes) {
			objs_add(&objs, &nobjs, &cap, &nd->m);
			sum.with_bytes++;
		}
	}
	sum.artifacts = x.norder;
	if ((ret = objs_unique(objs, &nobjs, err)))
		goto done;
	for (size_t i = 0; i < nobjs; i++)
		sum.object_bytes += objs[i].size;
	sum.objects = nobjs;
	buf_init(&json);
	if ((ret = write_json(&x, id, with_ancestors, created, &json, err)))
		goto done;
	if ((ret = write_archive(&x, &json, objs, nobjs, created, path, err)))
		goto done;
	if (out)
		*out = sum;
done:
	if (ret)
		err_prefix(err, "bundle '%s'", path);
	for (size_t i = 0; i < x.n; i++) {
		artifact_info_clear(&x.v[i].a);
		free(x.v[i].manifest);
		manifest_free(&x.v[i].m);
		free(x.v[i].edges);
	}
	free(x.v);
	free(x.order);
	for (size_t i = 0; i < x.ne; i++)
		lineage_edge_clear(&x.e[i]);
	free(x.e);
	free(objs);
	buf_free(&json);
	return ret;
}

/* ==== import: the JSON ==========================================================
 *
 * Parsed into catalog_import_items whose strings are borrowed from the JSON
 * tree, which lives as long as the import. */

struct doc {
	struct jnode *root;
	const char *root_lineage;
	size_t n;
	struct catalog_import_item *items;
	struct catalog_import_parent *parents;  /* all items' parents, flat */
	struct manifest *m;
	int *objects;                           /* 1: its bytes are in the bundle */
	char **labels;
	struct obj *want;                       /* the objects the bundle must carry */
	size_t nwant;
};

static void doc_free(struct doc *d)
{
	for (size_t i = 0; i < d->n; i++) {
		manifest_free(&d->m[i]);
		free(d->labels[i]);
	}
	free(d->items);
	free(d->parents);
	free(d->m);
	free(d->objects);
	free(d->labels);
	free(d->want);
	json_free(d->root);
	memset(d, 0, sizeof(*d));
}

#define J BUNDLE_JSON_NAME

/* Member key of obj as a string (or NULL when null and nullable). */
static int jstr(const struct jnode *obj, const char *where, const char *key, int nullable,
		const char **out, struct err *err)
{
	const struct jnode *v = json_get(obj, key);

	*out = NULL;
	if (v && v->type == J_STRING) {
		*out = v->str;
		return 0;
	}
	if (nullable && (!v || v->type == J_NULL))
		return 0;
	return err_set(err, ERR_INVALID, J ": %s.%s: expected a string%s", where, key,
		       nullable ? " or null" : "");
}

static int jdigest(const struct jnode *obj, const char *where, const char *key,
		   const char **out, struct err *err)
{
	int ret = jstr(obj, where, key, 0, out, err);

	if (!ret && !is_lower_hex64(*out))
		ret = err_set(err, ERR_INVALID, J ": %s.%s: expected 64 lowercase hex digits",
			      where, key);
	return ret;
}

/* A non-negative integer up to max; *out = -1 for null when nullable. */
static int jint(const struct jnode *obj, const char *where, const char *key, int nullable,
		long long max, long long *out, struct err *err)
{
	const struct jnode *v = json_get(obj, key);

	*out = -1;
	if (v && v->type == J_NUMBER && v->is_int && v->inum >= 0 && v->inum <= max) {
		*out = v->inum;
		return 0;
	}
	if (nullable && (!v || v->type == J_NULL))
		return 0;
	return err_set(err, ERR_INVALID, J ": %s.%s: expected an integer from 0 to %lld%s",
		       where, key, max, nullable ? " or null" : "");
}

static int cmp_str_idx(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;
	return strcmp(*x, *y);
}

/* Index of the record with lineage digest s among items[0..n), or n. The
 * index array holds pointers to each item's lineage (sorted). */
static size_t find_lineage(const struct doc *d, const char **sorted, const char *s)
{
	const char **hit = bsearch(&s, sorted, d->n, sizeof(*sorted), cmp_str_idx);

	if (!hit)
		return d->n;
	for (size_t i = 0; i < d->n; i++)
		if (d->items[i].lineage == *hit)
			return i;
	return d->n;
}

static int parse_record(struct doc *d, size_t i, const struct jnode *r, size_t *np,
			struct err *err)
{
	struct catalog_import_item *it = &d->items[i];
	const struct jnode *prod, *v;
	const char *kind = NULL, *type = NULL;
	char where[48], hex[DIGEST_HEX_LEN + 1];
	long long version, bytes, files, x;
	enum artifact_kind k;
	int ret;

	snprintf(where, sizeof(where), "artifacts[%zu]", i);
	if (r->type != J_OBJECT)
		return err_set(err, ERR_INVALID, J ": %s: expected an object", where);
	if ((ret = jdigest(r, where, "lineage_digest", &it->lineage, err)) ||
	    (ret = jdigest(r, where, "digest", &it->digest, err)) ||
	    (ret = jstr(r, where, "kind", 0, &kind, err)) ||
	    (ret = jstr(r, where, "name", 1, &it->name, err)) ||
	    (ret = jint(r, where, "version", 1, INT32_MAX, &version, err)) ||
	    (ret = jstr(r, where, "type", 0, &type, err)) ||
	    (ret = jint(r, where, "bytes", 0, INT64_MAX, &bytes, err)) ||
	    (ret = jint(r, where, "files", 0, INT64_MAX, &files, err)) ||
	    (ret = jstr(r, where, "manifest", 0, &it->manifest, err)))
		return ret;
	if (artifact_kind_parse(kind, &k))
		return err_set(err, ERR_INVALID, J ": %s.kind: unknown kind", where);
	if (artifact_type_parse(type, &it->type))
		return err_set(err, ERR_INVALID, J ": %s.type: unknown type", where);
	d->labels[i] = record_label(it->name, version, kind, it->digest);
	if (it->name && !artifact_name_valid(it->name))
		return err_set(err, ERR_INVALID,
			       J ": %s.name: invalid artifact name (1 to 128 letters, digits, '_',"
			       " '-' or '.'; no '@' or '/')", where);
	v = json_get(r, "objects");
	if (!v || v->type != J_BOOL)
		return err_set(err, ERR_INVALID, J ": %s.objects: expected true or false", where);
	d->objects[i] = v->boolean;
	if ((ret = manifest_parse(it->manifest, &d->m[i], err)))
		return err_prefix(err, J ": record %s: manifest", d->labels[i]);
	digest_hex(&d->m[i].digest, hex);
	if (strcmp(hex, it->digest))
		return err_set(err, ERR_INVALID,
			       J ": record %s: its manifest hashes to %.12s, not to its digest %.12s",
			       d->labels[i], hex, it->digest);
	if ((uint64_t)bytes != d->m[i].bytes || (uint64_t)files != d->m[i].n)
		return err_set(err, ERR_INVALID,
			       J ": record %s: bytes/files (%lld/%lld) differ from its manifest's"
			       " (%" PRIu64 "/%zu)", d->labels[i], bytes, files, d->m[i].bytes,
			       d->m[i].n);
	it->bytes = (uint64_t)bytes;
	it->files = (uint64_t)files;

	prod = json_get(r, "producer");
	if (!prod || prod->type != J_OBJECT)
		return err_set(err, ERR_INVALID, J ": %s.producer: expected an object", where);
	snprintf(where, sizeof(where), "artifacts[%zu].producer", i);
	if ((ret = jstr(prod, where, "step", 1, &it->step, err)) ||
	    (ret = jint(prod, where, "attempt", 1, INT32_MAX, &x, err)))
		return ret;
	it->attempt = x < 0 ? 0 : (int)x;
	if ((ret = jint(prod, where, "engine_step", 1, INT64_MAX, &it->engine_step, err)) ||
	    (ret = jstr(prod, where, "step_key", 1, &it->step_key, err)) ||
	    (ret = jstr(prod, where, "recipe_digest", 1, &it->recipe_digest, err)) ||
	    (ret = jstr(prod, where, "git_commit", 1, &it->git_commit, err)) ||
	    (ret = jstr(prod, where, "git_dirty", 1, &it->git_dirty, err)) ||
	    (ret = jstr(prod, where, "origin", 1, &it->origin, err)))
		return ret;

	snprintf(where, sizeof(where), "artifacts[%zu]", i);
	v = json_get(r, "parents");
	if (!v || v->type != J_ARRAY)
		return err_set(err, ERR_INVALID, J ": %s.parents: expected an array", where);
	it->nparents = v->nkids;
	*np += v->nkids;
	return 0;
}

static int parse_parents(struct doc *d, size_t i, const struct jnode *r,
			 const char **sorted, struct catalog_import_parent *p,
			 struct err *err)
{
	const struct jnode *ps = json_get(r, "parents");
	char where[64];
	int ret;

	for (size_t k = 0; k < ps->nkids; k++) {
		const struct jnode *e = &ps->kids[k], *w;
		const char *lineage;
		snprintf(where, sizeof(where), "artifacts[%zu].parents[%zu]", i, k);
		if (e->type != J_OBJECT)
			return err_set(err, ERR_INVALID, J ": %s: expected an object", where);
		if ((ret = jdigest(e, where, "lineage_digest", &lineage, err)) ||
		    (ret = jstr(e, where, "role", 0, &p[k].role, err)))
			return ret;
		if (!*p[k].role)
			return err_set(err, ERR_INVALID, J ": %s.role: empty", where);
		w = json_get(e, "weight");
		p[k].has_weight = w && w->type != J_NULL;
		if (p[k].has_weight && w->type != J_NUMBER)
			return err_set(err, ERR_INVALID, J ": %s.weight: expected a number", where);
		p[k].weight = p[k].has_weight ? w->num : 0;
		p[k].item = find_lineage(d, sorted, lineage);
		if (p[k].item >= i)
			return err_set(err, ERR_INVALID,
				       J ": record %s: parent %.12s is not a record listed before it",
				       d->labels[i], lineage);
		for (size_t j = 0; j < k; j++)
			if (p[j].item == p[k].item && !strcmp(p[j].role, p[k].role))
				return err_set(err, ERR_INVALID,
					       J ": record %s: parent %.12s listed twice as '%s'",
					       d->labels[i], lineage, p[k].role);
	}
	return 0;
}

static int doc_parse(const char *text, size_t len, struct doc *d, struct err *err)
{
	const struct jnode *arr, *v;
	const char **sorted = NULL;
	const char *format;
	size_t np = 0, off = 0, cap = 0;
	int ret;

	memset(d, 0, sizeof(*d));
	if ((ret = json_parse(text, len, 0, &d->root, err)))
		return err_prefix(err, J);
	if (d->root->type != J_OBJECT)
		return err_set(err, ERR_INVALID, J ": expected an object");
	if (jstr(d->root, "(top)", "format", 0, &format, err) || strcmp(format, "anneal-bundle"))
		return err_set(err, ERR_INVALID, J ": not an anneal bundle (\"format\" is not"
			       " \"anneal-bundle\")");
	v = json_get(d->root, "version");
	if (!v || v->type != J_NUMBER || !v->is_int)
		return err_set(err, ERR_INVALID, J ": \"version\": expected an integer");
	if (v->inum != BUNDLE_FORMAT_VERSION)
		return err_set(err, ERR_INVALID,
			       J ": unsupported bundle format version %lld (this anneal reads %d)",
			       v->inum, BUNDLE_FORMAT_VERSION);
	if ((ret = jdigest(d->root, "(top)", "root", &d->root_lineage, err)))
		return ret;
	arr = json_get(d->root, "artifacts");
	if (!arr || arr->type != J_ARRAY || arr->nkids == 0)
		return err_set(err, ERR_INVALID, J ": \"artifacts\": expected a non-empty array");

	d->n = arr->nkids;
	d->items = xcalloc(d->n, sizeof(*d->items));
	d->m = xcalloc(d->n, sizeof(*d->m));
	d->objects = xcalloc(d->n, sizeof(*d->objects));
	d->labels = xcalloc(d->n, sizeof(*d->labels));
	for (size_t i = 0; i < d->n; i++)
		if ((ret = parse_record(d, i, &arr->kids[i], &np, err)))
			goto done;
	sorted = xmalloc(d->n * sizeof(*sorted));
	for (size_t i = 0; i < d->n; i++)
		sorted[i] = d->items[i].lineage;
	qsort(sorted, d->n, sizeof(*sorted), cmp_str_idx);
	for (size_t i = 1; i < d->n; i++)
		if (!strcmp(sorted[i], sorted[i - 1])) {
			ret = err_set(err, ERR_INVALID, J ": lineage digest %.12s is listed twice",
				      sorted[i]);
			goto done;
		}
	if (find_lineage(d, sorted, d->root_lineage) == d->n) {
		ret = err_set(err, ERR_INVALID, J ": the root %.12s is not among the records",
			      d->root_lineage);
		goto done;
	}
	d->parents = xcalloc(np + 1, sizeof(*d->parents));
	for (size_t i = 0; i < d->n; i++) {
		d->items[i].parents = d->parents + off;
		if ((ret = parse_parents(d, i, &arr->kids[i], sorted, d->parents + off, err)))
			goto done;
		off += d->items[i].nparents;
	}
	for (size_t i = 0; i < d->n; i++)
		if (d->objects[i])
			objs_add(&d->want, &d->nwant, &cap, &d->m[i]);
	if ((ret = objs_unique(d->want, &d->nwant, err)))
		err_prefix(err, J);
done:
	free(sorted);
	return ret;
}

/* ==== import: staging ============================================================ */

struct stage {
	char *dir;      /* staging/<pid>.XXXXXX, flock'ed through fd */
	char *objdir;   /* dir/o: the objects, by digest */
	int fd;         /* the directory, holding the lock */
	int ofd;        /* objdir */
};

/* Removes the staging directories nobody holds (their importer died). */
static void stage_sweep(const char *root)
{
	DIR *dp = opendir(root);
	struct dirent *de;

	if (!dp)
		return;
	while ((de = readdir(dp))) {
		char *p;
		int fd;
		if (de->d_name[0] == '.')
			continue;
		p = fs_join(root, de->d_name);
		fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
			fs_remove_tree(p, NULL);
		if (fd >= 0)
			close(fd);
		free(p);
	}
	closedir(dp);
}

static void stage_free(struct stage *s)
{
	if (s->dir)
		fs_remove_tree(s->dir, NULL);
	if (s->ofd >= 0)
		close(s->ofd);
	if (s->fd >= 0)
		close(s->fd);
	free(s->dir);
	free(s->objdir);
	s->dir = s->objdir = NULL;
	s->fd = s->ofd = -1;
}

static int stage_open(struct stage *s, const char *root, struct err *err)
{
	int ret;

	s->fd = s->ofd = -1;
	if ((ret = fs_mkdir_p(root, 0700, err)))
		return ret;
	stage_sweep(root);
	for (int tries = 0; tries < 8; tries++) {
		struct stat sb;
		char *tmpl = xasprintf("%s/%ld.XXXXXX", root, (long)getpid());
		if (!mkdtemp(tmpl)) {
			ret = err_sys(err, errno, "cannot create a staging directory in '%s'", root);
			free(tmpl);
			return ret;
		}
		s->fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* Blocking: a sweeper that took it first removes it, and then
		 * the link count says so. */
		if (s->fd >= 0 && flock(s->fd, LOCK_EX) == 0 && fstat(s->fd, &sb) == 0 &&
		    sb.st_nlink > 0) {
			s->dir = tmpl;
			break;
		}
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		free(tmpl);
	}
	if (!s->dir)
		return err_set(err, ERR_SYSTEM, "cannot hold a staging directory in '%s'", root);
	s->objdir = fs_join(s->dir, "o");
	if (mkdir(s->objdir, 0700) < 0 ||
	    (s->ofd = open(s->objdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return err_sys(err, errno, "cannot create '%s'", s->objdir);
	return 0;
}

/* ==== import: the archive ======================================================== */

struct reader {
	struct archive *ar;
	const char *path;
	const struct bundle_limits *lim;
	struct doc doc;
	int have_doc;
	uint64_t entries;
	char *chunk;
	struct stage stage;
	size_t objects;
	uint64_t object_bytes;
	/* The file, as libarchive reads it: every byte is accounted for the
	 * trailer check on its way in. */
	int fd;
	uint64_t size, pos;
	struct sha256 *h;
	unsigned char trailer[TRAILER_LEN];
	char *inbuf;
};

static void account(struct reader *r, const char *p, size_t n)
{
	uint64_t body = r->size >= TRAILER_LEN ? r->size - TRAILER_LEN : 0;

	for (size_t i = 0; i < n;) {
		uint64_t at = r->pos + i;
		if (at < body) {
			size_t k = (size_t)(body - at < n - i ? body - at : n - i);
			sha256_update(r->h, p + i, k);
			i += k;
		} else {
			if (at < r->size)
				r->trailer[at - body] = (unsigned char)p[i];
			i++;
		}
	}
	r->pos += n;
}

static la_ssize_t source_read(struct archive *ar, void *ctx, const void **out)
{
	struct reader *r = ctx;
	ssize_t n;

	do
		n = read(r->fd, r->inbuf, CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		archive_set_error(ar, errno, "%s", strerror(errno));
		return -1;
	}
	account(r, r->inbuf, (size_t)n);
	*out = r->inbuf;
	return n;
}

/* After the pass: the rest of the file (libarchive stops at the tar end
 * marker), then the trailer. */
static int check_trailer(struct reader *r, struct err *err)
{
	struct digest d;
	ssize_t n;

	for (;;) {
		n = read(r->fd, r->inbuf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, errno, "cannot read");
		if (n == 0)
			break;
		account(r, r->inbuf, (size_t)n);
	}
	if (r->pos != r->size)
		return err_set(err, ERR_INVALID, "the file changed while it was read");
	if (r->size < TRAILER_LEN + 4 ||
	    memcmp(r->trailer, trailer_head, sizeof(trailer_head)))
		return err_set(err, ERR_INVALID,
			       "no integrity trailer at the end (not written by 'anneal export',"
			       " or cut short)");
	sha256_final(r->h, &d);
	if (memcmp(d.b, r->trailer + sizeof(trailer_head), DIGEST_LEN))
		return err_set(err, ERR_INVALID,
			       "its bytes do not match its integrity trailer (damaged or altered)");
	return 0;
}

/* The entry's name fit for a one-line message. */
static const char *shown(const char *name, char *out, size_t size)
{
	return json_show(name ? name : "", out, size);
}

static const char *type_word(unsigned t)
{
	switch (t) {
	case AE_IFLNK: return "a symbolic link";
	case AE_IFDIR: return "a directory";
	case AE_IFCHR: return "a character device";
	case AE_IFBLK: return "a block device";
	case AE_IFIFO: return "a FIFO";
	case AE_IFSOCK: return "a socket";
	default: return "not a regular file";
	}
}

/* What may be in a bundle: regular files named anneal-bundle.json or
 * objects/<sha256>, nothing that could point anywhere. */
static int check_entry(struct archive_entry *e, const char *name, struct err *err)
{
	char show[JSON_SHOW_MAX + 8];
	unsigned t = archive_entry_filetype(e);

	shown(name, show, sizeof(show));
	if (!name || !*name)
		return err_set(err, ERR_INVALID, "an entry without a name");
	if (name[0] == '/')
		return err_set(err, ERR_INVALID, "entry '%s': an absolute path", show);
	for (const char *p = name; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return err_set(err, ERR_INVALID, "entry '%s': a '..' component", show);
		p += len;
		if (*p == '/')
			p++;
	}
	if (archive_entry_hardlink(e))
		return err_set(err, ERR_INVALID,
			       "entry '%s': a hard link (a bundle holds regular files only)", show);
	if (t != AE_IFREG || archive_entry_symlink(e))
		return err_set(err, ERR_INVALID,
			       "entry '%s': %s (a bundle holds regular files only)", show,
			       archive_entry_symlink(e) ? "a symbolic link" : type_word(t));
	if (archive_entry_sparse_count(e) > 0)
		return err_set(err, ERR_INVALID, "entry '%s': a sparse file", show);
	if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
		return err_set(err, ERR_INVALID, "entry '%s': no size", show);
	return 0;
}

/* Reads the current entry's data through fn, checking it is exactly size
 * bytes. */
typedef int (*sink_fn)(void *ctx, const char *p, size_t len, struct err *err);

static int read_data(struct reader *r, const char *show, uint64_t size, sink_fn fn,
		     void *ctx, struct err *err)
{
	uint64_t got = 0;
	int ret;

	for (;;) {
		la_ssize_t n = archive_read_data(r->ar, r->chunk, CHUNK);
		if (n < 0)
			return err_set(err, ERR_INVALID, "entry '%s': truncated or corrupt archive: %s",
				       show, aerr(r->ar));
		if (n == 0)
			break;
		if ((uint64_t)n > size - got)
			return err_set(err, ERR_INVALID,
				       "entry '%s': more data than its declared %" PRIu64 " bytes",
				       show, size);
		got += (uint64_t)n;
		if ((ret = fn(ctx, r->chunk, (size_t)n, err)))
			return ret;
	}
	if (got != size)
		return err_set(err, ERR_INVALID,
			       "entry '%s': %" PRIu64 " bytes of data, %" PRIu64 " declared"
			       " (truncated archive)", show, got, size);
	return 0;
}

static int sink_buf(void *ctx, const char *p, size_t len, struct err *err)
{
	buf_add(ctx, p, len);
	return 0;
}

struct objsink {
	int fd;
	struct sha256 *h;
	const char *path;
};

static int sink_obj(void *ctx, const char *p, size_t len, struct err *err)
{
	struct objsink *o = ctx;

	sha256_update(o->h, p, len);
	while (len) {
		ssize_t w = write(o->fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_sys(err, errno, "cannot write '%s'", o->path);
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_json(struct reader *r, const char *show, uint64_t size, struct err *err)
{
	struct buf b = BUF_INIT;
	uint64_t max = r->lim->max_json_bytes;
	int ret;

	if (size > max)
		return err_set(err, ERR_INVALID,
			       "entry '%s': %" PRIu64 " bytes, over the limit of %" PRIu64, show,
			       size, max);
	buf_init(&b);
	/* The size is the archive's word: grow with the bytes that come
	 * rather than trust it with the whole allowance up front. */
	buf_grow(&b, (size_t)(size < (1u << 20) ? size : (1u << 20)) + 1);
	ret = read_data(r, show, size, sink_buf, &b, err);
	if (!ret)
		ret = doc_parse(b.ptr, b.len, &r->doc, err);
	if (!ret)
		r->have_doc = 1;
	buf_free(&b);
	return ret;
}

static int read_object(struct reader *r, const char *name, const char *show, uint64_t size,
		       struct err *err)
{
	const char *hex = name + strlen(OBJ_PREFIX);
	struct objsink o = { .fd = -1 };
	struct obj key, *w;
	struct digest got;
	char *path = NULL;
	int ret;

	if (!r->have_doc)
		return err_set(err, ERR_INVALID, "entry '%s': " BUNDLE_JSON_NAME " must come first",
			       show);
	digest_parse(hex, &key.d);
	w = bsearch(&key, r->doc.want, r->doc.nwant, sizeof(key), cmp_obj);
	if (!w)
		return err_set(err, ERR_INVALID,
			       "entry '%s': not a file of any artifact whose bytes the bundle carries",
			       show);
	if (w->got)
		return err_set(err, ERR_INVALID, "entry '%s': a duplicate entry", show);
	if (size != w->size)
		return err_set(err, ERR_INVALID,
			       "entry '%s': declares %" PRIu64 " bytes, its manifests say %" PRIu64,
			       show, size, w->size);
	path = fs_join(r->stage.objdir, hex);
	o.path = path;
	o.fd = openat(r->stage.ofd, hex, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      0644);
	if (o.fd < 0) {
		ret = err_sys(err, errno, "cannot create '%s'", path);
		goto done;
	}
	o.h = sha256_new();
	if ((ret = read_data(r, show, size, sink_obj, &o, err)))
		goto done;
	sha256_final(o.h, &got);
	if (memcmp(got.b, key.d.b, DIGEST_LEN)) {
		char ghex[DIGEST_HEX_LEN + 1];
		digest_hex(&got, ghex);
		ret = err_set(err, ERR_INVALID,
			      "entry '%s': its bytes hash to %.12s (corrupt or tampered)", show, ghex);
		goto done;
	}
	if (close(o.fd) < 0) {
		o.fd = -1;
		ret = err_sys(err, errno, "cannot write '%s'", path);
		goto done;
	}
	o.fd = -1;
	w->got = 1;
	r->objects++;
	r->object_bytes += size;
done:
	if (o.fd >= 0)
		close(o.fd);
	sha256_free(o.h);
	free(path);
	return ret;
}

static int name_is_object(const char *name)
{
	return !strncmp(name, OBJ_PREFIX, strlen(OBJ_PREFIX)) &&
	       is_lower_hex64(name + strlen(OBJ_PREFIX));
}

/* The one streaming pass. */
static int read_archive(struct reader *r, struct err *err)
{
	struct archive_entry *e;
	char show[JSON_SHOW_MAX + 8], prev[JSON_SHOW_MAX + 8] = "";
	int ret = 0;

	r->ar = archive_read_new();
	if (!r->ar)
		return err_set(err, ERR_NOMEM, "out of memory");
	/* zstd through libzstd only (ARCHIVE_WARN would mean an external
	 * program), tar only: no other decoder sees the bytes. */
	if (archive_read_support_filter_zstd(r->ar) != ARCHIVE_OK ||
	    archive_read_support_format_tar(r->ar) != ARCHIVE_OK)
		return err_set(err, ERR_SYSTEM, "libarchive cannot read tar.zst: %s", aerr(r->ar));
	if (archive_read_open(r->ar, r, NULL, source_read, NULL) != ARCHIVE_OK)
		return err_set(err, ERR_INVALID, "not a tar.zst archive, or a damaged one: %s",
			       aerr(r->ar));
	for (;;) {
		const char *name;
		uint64_t size;
		int rc = archive_read_next_header(r->ar, &e);
		if (rc == ARCHIVE_EOF)
			break;
		if (rc != ARCHIVE_OK) {
			if (r->entries == 0)
				return err_set(err, ERR_INVALID,
					       "not a tar.zst archive, or a damaged one: %s", aerr(r->ar));
			return err_set(err, ERR_INVALID,
				       "truncated or corrupt archive (after entry '%s'): %s", prev,
				       aerr(r->ar));
		}
		if (++r->entries > r->lim->max_entries)
			return err_set(err, ERR_INVALID, "more than %" PRIu64 " entries",
				       r->lim->max_entries);
		name = archive_entry_pathname(e);
		shown(name, show, sizeof(show));
		if ((ret = check_entry(e, name, err)))
			return ret;
		size = (uint64_t)archive_entry_size(e);
		if (!strcmp(name, BUNDLE_JSON_NAME)) {
			if (r->have_doc)
				return err_set(err, ERR_INVALID, "entry '%s': a duplicate entry", show);
			if (r->entries != 1)
				return err_set(err, ERR_INVALID,
					       "entry '%s': it must be the first entry", show);
			ret = read_json(r, show, size, err);
		} else if (name_is_object(name)) {
			ret = read_object(r, name, show, size, err);
		} else {
			ret = err_set(err, ERR_INVALID,
				      "entry '%s': unexpected (a bundle holds " BUNDLE_JSON_NAME
				      " and objects/<sha256>)", show);
		}
		if (ret)
			return ret;
		memcpy(prev, show, sizeof(prev));
	}
	if (!r->have_doc)
		return err_set(err, ERR_INVALID, "no " BUNDLE_JSON_NAME ": not an anneal bundle");
	return check_trailer(r, err);
}

/* Every file of every record whose bytes the bundle carries is here now
 * (in the bundle or already in the store); records without bytes are
 * registered pruned unless the store happens to hold all of theirs. */
static int check_files(struct reader *r, struct store *store, struct err *err)
{
	struct doc *d = &r->doc;
	struct err scratch;

	for (size_t i = 0; i < d->n; i++) {
		int all = 1;
		for (size_t k = 0; k < d->m[i].n && all; k++) {
			const struct manifest_entry *me = &d->m[i].v[k];
			struct obj key = { .d = me->digest }, *w;
			w = bsearch(&key, d->want, d->nwant, sizeof(key), cmp_obj);
			if (w && w->got)
				continue;
			if (store_verify(store, &me->digest, me->size, 0, &scratch) == 0)
				continue;
			if (d->objects[i]) {
				char hex[DIGEST_HEX_LEN + 1], show[JSON_SHOW_MAX + 8];
				digest_hex(&me->digest, hex);
				return err_set(err, ERR_INVALID,
					       "record %s: file '%s' (object %.12s): missing from the"
					       " bundle and from the store", d->labels[i],
					       json_show(me->path, show, sizeof(show)), hex);
			}
			all = 0;
		}
		d->items[i].pruned = !all;
	}
	return 0;
}

/* Moves the staged objects into the store (links on one filesystem). */
static int store_staged(struct reader *r, struct store *store, struct err *err)
{
	struct manifest m = { 0 };
	int ret;

	if (r->objects == 0)
		return 0;
	if ((ret = store_ingest_tree(store, r->stage.objdir, STORE_LINK, 0, &m, err)))
		return ret;
	for (size_t i = 0; i < m.n; i++) {
		char hex[DIGEST_HEX_LEN + 1];
		digest_hex(&m.v[i].digest, hex);
		if (strcmp(hex, m.v[i].path)) {
			ret = err_set(err, ERR_SYSTEM, "staged object '%s' changed while importing",
				      m.v[i].path);
			break;
		}
	}
	manifest_free(&m);
	return ret;
}

void bundle_import_result_clear(struct bundle_import_result *r)
{
	if (!r)
		return;
	free(r->v);
	memset(r, 0, sizeof(*r));
}

int bundle_import(struct state *st, struct store *store, const char *staging,
		  const char *path, const struct bundle_limits *lim,
		  struct bundle_import_result *out, struct err *err)
{
	struct bundle_limits l = { DEFAULT_MAX_ENTRIES, DEFAULT_MAX_JSON };
	struct reader r = { .path = path, .lim = &l, .stage = { .fd = -1, .ofd = -1 }, .fd = -1 };
	int64_t *ids = NULL;
	int *created = NULL;
	size_t at = 0;
	struct stat sb;
	int fd = -1, ret;

	memset(out, 0, sizeof(*out));
	if (lim && lim->max_entries)
		l.max_entries = lim->max_entries;
	if (lim && lim->max_json_bytes)
		l.max_json_bytes = lim->max_json_bytes;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = errno == ENOENT ? err_set(err, ERR_NOTFOUND, "no such file")
				      : err_sys(err, errno, "cannot open");
		goto done;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		ret = err_set(err, ERR_INVALID, "not a regular file");
		goto done;
	}
	if ((ret = stage_open(&r.stage, staging, err)))
		goto done;
	r.chunk = xmalloc(CHUNK);
	r.inbuf = xmalloc(CHUNK);
	r.h = sha256_new();
	r.fd = fd;
	r.size = (uint64_t)sb.st_size;
	if ((ret = read_archive(&r, err)) || (ret = check_files(&r, store, err)))
		goto done;
	fault_point("bundle.import-staged");

	ids = xcalloc(r.doc.n, sizeof(*ids));
	created = xcalloc(r.doc.n, sizeof(*created));
	/* The lineage chain first, rolled back: a bundle with one wrong fact
	 * puts nothing in the store either. */
	if ((ret = catalog_import(st, r.doc.items, r.doc.n, 0, ids, created, &at, err)) == 0 &&
	    (ret = store_staged(&r, store, err)) == 0) {
		fault_point("bundle.import-stored");
		ret = catalog_import(st, r.doc.items, r.doc.n, 1, ids, created, &at, err);
	}
	if (ret) {
		if (at < r.doc.n)
			err_prefix(err, "record %s", r.doc.labels[at]);
		goto done;
	}
	out->v = xcalloc(r.doc.n, sizeof(*out->v));
	out->n = r.doc.n;
	for (size_t i = 0; i < r.doc.n; i++) {
		out->v[i].id = ids[i];
		out->v[i].created = created[i];
		out->v[i].pruned = r.doc.items[i].pruned;
		if (!strcmp(r.doc.items[i].lineage, r.doc.root_lineage))
			out->root = ids[i];
		if (r.doc.objects[i])
			out->summary.with_bytes++;
	}
	out->summary.artifacts = r.doc.n;
	out->summary.objects = r.objects;
	out->summary.object_bytes = r.object_bytes;
done:
	if (ret)
		err_prefix(err, "bundle '%s'", path);
	if (r.ar)
		archive_read_free(r.ar);
	stage_free(&r.stage);
	if (fd >= 0)
		close(fd);
	doc_free(&r.doc);
	sha256_free(r.h);
	free(r.inbuf);
	free(r.chunk);
	free(ids);
	free(created);
	return ret;
}
