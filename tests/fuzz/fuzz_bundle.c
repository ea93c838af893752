/* tests/fuzz/fuzz_bundle.c — libFuzzer target for bundle import
 * (artifacts/bundle.c bundle_import: the archive, the JSON records, the
 * objects, the manifests, the lineage digests, the store and the catalog).
 *
 * Input: byte 0 picks how the rest becomes the bundle file (mod 3):
 *   0  as is (the integrity trailer must be right, or the import refuses
 *      it at the end of the pass)
 *   1  a bundle file, re-sealed: a trailer at its end is dropped and a
 *      correct one appended, so that mutations reach every later check
 *   2  an uncompressed tar stream: its header checksums are fixed, it is
 *      wrapped in a zstd frame of raw blocks and sealed, so that the
 *      fuzzer edits entry names, types, sizes and the JSON directly
 * Seeds (tests/fuzz/corpus/bundle) are bundles `anneal export` wrote, in
 * modes 0 and 1, their tar streams in mode 2, and damaged variants.
 *
 * The workspace is made once per process, ROOT under $TMPDIR (default
 * /tmp; mkdir(2) is the main cost of an input, so a tmpfs such as
 * /dev/shm runs it several times faster): ROOT/ws/{store,import} with
 * ROOT/canary next to it holding one sentinel file, and a symbolic link
 * ROOT/ws/import/out -> ../../canary among the staging directories (which
 * every import sweeps). Each input is imported into an empty ":memory:"
 * state and an empty store (kept while bundles are refused, which must
 * leave them empty; made anew after an import).
 *
 * Invariants: nothing appears, changes or disappears outside ROOT/ws (the
 * canary keeps exactly its sentinel; ROOT holds ws, canary and the input
 * file only) and the staging directory holds only the planted link after
 * each import. A refused bundle: ERR_INVALID (never a crash, a system
 * error or silence) with one line naming it, and no catalog row and no
 * store object left. An accepted one: one result per record, the root
 * among them, every artifact registered, every object of a non-pruned
 * artifact in the store with its size; importing it again reuses every
 * artifact and creates none. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/bundle.h"
#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *root, *ws, *store_dir, *staging, *canary, *sentinel, *file;
static struct stat sentinel_st;

#define TRAILER_LEN 44
static const unsigned char trailer_head[12] = {
	0x5a, 0x2a, 0x4d, 0x18, 0x24, 0x00, 0x00, 0x00, 'A', 'N', 'B', '1',
};

static void cleanup(void)
{
	fs_remove_tree(root, NULL);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char *tmpl, *link;
	int fd;

	tmpl = xasprintf("%s/anneal-fuzz-bundle-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl))
		abort();
	root = tmpl;
	atexit(cleanup);
	ws = fs_join(root, "ws");
	store_dir = fs_join(ws, "store");
	staging = fs_join(ws, "import");
	canary = fs_join(root, "canary");
	sentinel = fs_join(canary, "sentinel");
	file = fs_join(root, "in.tar.zst");
	if (mkdir(ws, 0700) || mkdir(staging, 0700) || mkdir(canary, 0700))
		abort();
	fd = open(sentinel, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, "keep", 4) != 4 || close(fd) || stat(sentinel, &sentinel_st))
		abort();
	link = fs_join(staging, "out");
	if (symlink("../../canary", link))
		abort();
	free(link);
}

/* Names in dir, sorted, joined by '/'. */
static char *listing(const char *dir)
{
	struct dirent **v;
	struct buf b = BUF_INIT;
	int n = scandir(dir, &v, NULL, alphasort);

	if (n < 0)
		abort();
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, "..")) {
			buf_adds(&b, v[i]->d_name);
			buf_addc(&b, '/');
		}
		free(v[i]);
	}
	free(v);
	return buf_detach(&b);
}

static void check_outside(void)
{
	struct stat sb;
	char *l;

	l = listing(root);
	if (strcmp(l, "canary/in.tar.zst/ws/"))
		abort();
	free(l);
	l = listing(canary);
	if (strcmp(l, "sentinel/"))
		abort();
	free(l);
	if (lstat(sentinel, &sb) || sb.st_ino != sentinel_st.st_ino ||
	    sb.st_size != sentinel_st.st_size || sb.st_mtime != sentinel_st.st_mtime)
		abort();
	l = listing(staging);
	if (strcmp(l, "out/"))
		abort();
	free(l);
	l = listing(ws);
	if (strcmp(l, "import/store/"))
		abort();
	free(l);
}

static void put_le24(struct buf *b, uint32_t v)
{
	buf_addc(b, (char)(v & 0xff));
	buf_addc(b, (char)((v >> 8) & 0xff));
	buf_addc(b, (char)((v >> 16) & 0xff));
}

/* Fixes the checksum of each ustar header, walking entry by entry. */
static void fix_tar(unsigned char *t, size_t len)
{
	size_t at = 0;

	while (at + 512 <= len) {
		unsigned char *h = t + at;
		unsigned long long sz = 0;
		unsigned sum = 0;
		size_t k;

		for (k = 0; k < 512 && !h[k]; k++)
			;
		if (k == 512)
			break;
		memset(h + 148, ' ', 8);
		for (k = 0; k < 512; k++)
			sum += h[k];
		snprintf((char *)h + 148, 8, "%06o", sum & 0777777);
		h[155] = ' ';
		for (k = 124; k < 136 && h[k] >= '0' && h[k] <= '7'; k++)
			sz = sz * 8 + (unsigned)(h[k] - '0');
		if (sz > len)
			break;
		at += 512 + (size_t)((sz + 511) / 512 * 512);
	}
}

/* The tar bytes as one zstd frame of raw blocks. */
static void zstd_raw(struct buf *out, const unsigned char *p, size_t len)
{
	static const char head[] = { 0x28, (char)0xb5, 0x2f, (char)0xfd, 0x00, 0x38 };
	const size_t max = 128 * 1024;

	buf_add(out, head, sizeof(head));
	do {
		size_t n = len < max ? len : max;
		put_le24(out, (uint32_t)(n << 3) | (n == len ? 1u : 0u));
		buf_add(out, p, n);
		p += n;
		len -= n;
	} while (len);
}

static void seal(struct buf *b)
{
	struct digest d;

	sha256_buf(b->ptr, b->len, &d);
	buf_add(b, trailer_head, sizeof(trailer_head));
	buf_add(b, d.b, DIGEST_LEN);
}

static void write_input(const uint8_t *data, size_t size)
{
	struct buf b = BUF_INIT;
	int mode = size ? data[0] % 3 : 0;
	int fd;

	if (size) {
		data++;
		size--;
	}
	if (mode == 0) {
		buf_add(&b, data, size);
	} else if (mode == 1) {
		if (size >= TRAILER_LEN &&
		    !memcmp(data + size - TRAILER_LEN, trailer_head, sizeof(trailer_head)))
			size -= TRAILER_LEN;
		buf_add(&b, data, size);
		seal(&b);
	} else {
		unsigned char *t = malloc(size ? size : 1);
		memcpy(t, data, size);
		fix_tar(t, size);
		zstd_raw(&b, t, size);
		free(t);
		seal(&b);
	}
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (b.len && write(fd, b.ptr, b.len) != (ssize_t)b.len) || close(fd))
		abort();
	buf_free(&b);
}

static int count_obj(void *ctx, const struct store_entry *e)
{
	(*(size_t *)ctx)++;
	return 0;
}

static int count_art(void *ctx, const struct artifact_info *a)
{
	(*(size_t *)ctx)++;
	return 0;
}

static void check_accepted(struct state *st, struct store *s,
			   const struct bundle_import_result *res)
{
	int root_seen = 0;

	if (res->n == 0 || res->summary.artifacts != res->n)
		abort();
	for (size_t i = 0; i < res->n; i++) {
		struct artifact_info a;
		struct manifest m = { 0 };
		char *text = NULL;
		struct err e;

		root_seen |= res->v[i].id == res->root;
		if (catalog_get(st, res->v[i].id, &a, &e) || a.kind != AK_IMPORTED ||
		    a.pruned != res->v[i].pruned)
			abort();
		if (!a.pruned) {
			if (catalog_manifest(st, a.id, &text, &e) || manifest_parse(text, &m, &e))
				abort();
			for (size_t k = 0; k < m.n; k++)
				if (store_verify(s, &m.v[k].digest, m.v[k].size, 0, &e))
					abort();
		}
		manifest_free(&m);
		free(text);
		artifact_info_clear(&a);
	}
	if (!root_seen)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct state *st;
	static struct store *s;
	const struct bundle_limits lim = { 10000, 1u << 20 };
	struct bundle_import_result res = { 0 }, again = { 0 };
	size_t nobj = 0, nart = 0;
	struct err e;
	int rc;

	if (!root)
		setup();
	/* Opening a state costs milliseconds: one serves every refused
	 * bundle (which must leave it empty), a new one follows an import. */
	if (!st && (state_open(":memory:", &st, &e) || store_open(&s, store_dir, &e)))
		abort();
	write_input(data, size);
	err_clear(&e);
	rc = bundle_import(st, s, staging, file, &lim, &res, &e);
	check_outside();
	if (rc) {
		if (rc != ERR_INVALID || !e.msg[0] || strchr(e.msg, '\n') ||
		    strncmp(e.msg, "bundle '", 8) || res.v || res.n)
			abort();
		if (store_list(s, count_obj, &nobj, &e) || nobj ||
		    catalog_each(st, count_art, &nart, &e) || nart)
			abort();
	} else {
		check_accepted(st, s, &res);
		if (bundle_import(st, s, staging, file, &lim, &again, &e) || again.n != res.n)
			abort();
		for (size_t i = 0; i < again.n; i++)
			if (again.v[i].created || again.v[i].id != res.v[i].id)
				abort();
		check_outside();
		state_close(st);
		store_free(s);
		st = NULL;
		s = NULL;
		if (fs_remove_tree(store_dir, &e))
			abort();
	}
	bundle_import_result_clear(&res);
	bundle_import_result_clear(&again);
	return 0;
}
