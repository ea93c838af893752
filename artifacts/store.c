/* artifacts/store.c — see store.h.
 *
 * Ingest rides on tree_scan: the workers that hash the files also store
 * them, so each byte is read and hashed once. In link mode a worker hashes
 * the file, then links the very inode it read (through /proc/self/fd, so
 * a rename of the path meanwhile cannot slip another file in) under its
 * object name; in copy mode the worker writes each hashed chunk into a
 * staging file and links that into place when the digest is known.
 * link(2), never rename(2), publishes an object: an existing object is
 * never replaced, and two writers of one content agree without a lock.
 *
 * Staging files are flock'ed by their writer (robust to pid reuse, unlike
 * a pid check): store_open removes those it can lock. A cleaner may lock
 * a file between its creation and its writer's flock; the writer then
 * finds it unlinked (st_nlink 0) and starts over under a new name. */
#include "artifacts/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"

enum { CHUNK = 1 << 20 };

struct store {
	char *root;
	char *objects;
	char *tmp;
	dev_t dev;     /* of objects/: a source elsewhere is copied */
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t random64(void)
{
	static _Atomic uint64_t counter;
	uint64_t x = 0;

	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
		    ((uint64_t)getpid() << 16);
	}
	return x ^ (counter++ * 0x9e3779b97f4a7c15ull);
}

char *store_object_path(const struct store *s, const struct digest *d)
{
	char hex[DIGEST_HEX_LEN + 1];

	digest_hex(d, hex);
	return xasprintf("%s/%.2s/%s", s->objects, hex, hex + 2);
}

static int write_all(int fd, const void *data, size_t len, const char *what,
		     struct err *err)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(err, errno, "cannot write '%s'", what);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads in from offset 0 to its end through h, and into out when out >= 0.
 * *n gets the byte count. */
static int stream_fd(int in, int out, struct sha256 *h, uint64_t *n,
		     const char *in_name, const char *out_name, struct err *err)
{
	uint8_t *chunk = xmalloc(CHUNK);
	uint64_t off = 0;
	int rc = 0;

	for (;;) {
		ssize_t r = pread(in, chunk, CHUNK, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "cannot read '%s'", in_name);
			goto done;
		}
		if (r == 0)
			break;
		sha256_update(h, chunk, (size_t)r);
		if (out >= 0) {
			rc = write_all(out, chunk, (size_t)r, out_name, err);
			if (rc)
				goto done;
		}
		off += (uint64_t)r;
	}
	*n = off;
done:
	free(chunk);
	return rc;
}

/* ---- open, staging, publishing --------------------------------------------- */

/* Removes the staging files nobody holds a lock on. */
static int clean_tmp(struct store *s, struct err *err)
{
	DIR *d = opendir(s->tmp);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return err_sys(err, errno, "cannot read '%s'", s->tmp);
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct stat st;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), de->d_name,
			    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone meanwhile, or not ours to judge */
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* Unlinked while locked: a writer that was about to
			 * lock it sees st_nlink 0 and starts over. */
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				log_debug("store: removed stale staging file '%s/%s'",
					  s->tmp, de->d_name);
		}
		close(fd);
	}
	if (errno)
		rc = err_sys(err, errno, "cannot read '%s'", s->tmp);
	closedir(d);
	return rc;
}

int store_open(struct store **out, const char *root, struct err *err)
{
	struct store *s = xcalloc(1, sizeof(*s));
	struct stat st;
	int rc = 0;

	*out = NULL;
	s->root = xstrdup(root);
	s->objects = fs_join(root, "objects");
	s->tmp = fs_join(root, "tmp");
	rc = fs_mkdir_p(s->objects, 0700, err);
	if (!rc)
		rc = fs_mkdir_p(s->tmp, 0700, err);
	if (rc) {
		err_prefix(err, "store '%s'", root);
		goto done;
	}
	if (stat(s->objects, &st) < 0) {
		rc = err_sys(err, errno, "store '%s': cannot stat '%s'", root, s->objects);
		goto done;
	}
	s->dev = st.st_dev;
	rc = clean_tmp(s, err);
	if (rc) {
		err_prefix(err, "store '%s'", root);
		goto done;
	}
	*out = s;
	s = NULL;
done:
	store_free(s);
	return rc;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	free(s->root);
	free(s->objects);
	free(s->tmp);
	free(s);
}

/* A new staging file in tmp/, open for writing and flock'ed. */
static int staging_create(struct store *s, int *fd_out, char **path_out,
			  struct err *err)
{
	for (int tries = 0; tries < 100; tries++) {
		char *path = xasprintf("%s/%ld.%016" PRIx64, s->tmp, (long)getpid(),
				       random64());
		struct stat st;
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		if (fd < 0) {
			int e = errno;
			free(path);
			if (e == EEXIST)
				continue;
			return err_sys(err, e, "cannot create a staging file in '%s'", s->tmp);
		}
		if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
			int e = errno;
			close(fd);
			unlink(path);
			free(path);
			return err_sys(err, e, "cannot lock staging file in '%s'", s->tmp);
		}
		if (st.st_nlink == 0) {  /* a store_open took it for stale */
			close(fd);
			free(path);
			continue;
		}
		*fd_out = fd;
		*path_out = path;
		return 0;
	}
	return err_set(err, ERR_SYSTEM, "cannot create a staging file in '%s'", s->tmp);
}

static int object_dir(struct store *s, const struct digest *d, int *slot,
		      struct err *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	char *dir;
	int rc = 0;

	digest_hex(d, hex);
	dir = xasprintf("%s/%.2s", s->objects, hex);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		rc = err_sys(err, errno, "cannot create '%s'", dir);
	free(dir);
	*slot = d->b[0];
	return rc;
}

/* An object that is there already must at least have the size we expect:
 * linking a source to a truncated object would lose its bytes. */
static int check_existing(const char *obj, const struct stat *st, uint64_t size,
			  struct err *err)
{
	if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size != size)
		return err_set(err, ERR_INVALID,
			       "object '%s' is damaged (%" PRIu64 " bytes, expected %"
			       PRIu64 "): run 'anneal audit'", obj,
			       (uint64_t)st->st_size, size);
	return 0;
}

/* Publishes a finished staging file (fd still open and locked) as the
 * object d; removes the staging name in every case. */
static int publish(struct store *s, int fd, const char *tmp, const struct digest *d,
		   uint64_t size, int *slot, struct err *err)
{
	char *obj = store_object_path(s, d);
	struct stat st;
	int rc = 0;

	if (fsync(fd) < 0) {
		rc = err_sys(err, errno, "cannot write '%s' (fsync)", tmp);
		goto done;
	}
	if (fchmod(fd, 0444) < 0) {
		rc = err_sys(err, errno, "cannot chmod '%s'", tmp);
		goto done;
	}
	rc = object_dir(s, d, slot, err);
	if (rc)
		goto done;
	if (link(tmp, obj) < 0) {
		if (errno != EEXIST) {
			rc = err_sys(err, errno, "cannot create object '%s'", obj);
			goto done;
		}
		/* Same bytes stored by someone else first: keep theirs. */
		if (lstat(obj, &st) < 0) {
			rc = err_sys(err, errno, "cannot stat '%s'", obj);
			goto done;
		}
		rc = check_existing(obj, &st, size, err);
	}
done:
	unlink(tmp);
	free(obj);
	return rc;
}

/* ---- ingest ----------------------------------------------------------------- */

struct ingest {
	struct store *s;
	enum store_mode mode;
	pthread_mutex_t lock;   /* guards dirty */
	uint8_t dirty[256];     /* objects/<xx> directories to fsync */
};

struct staging {
	int fd;
	char *path;
};

static void mark_dirty(struct ingest *in, int slot)
{
	pthread_mutex_lock(&in->lock);
	in->dirty[slot] = 1;
	pthread_mutex_unlock(&in->lock);
}

static int ingest_begin(void *ctx, struct tree_file *f, struct err *err)
{
	struct ingest *in = ctx;
	struct staging *st;
	int rc;

	/* Link mode copies what a shared inode cannot carry: another
	 * filesystem's files and executables (objects are 0444). */
	if (in->mode == STORE_LINK && !f->entry->exec && f->dev == (uint64_t)in->s->dev)
		return 0;
	st = xcalloc(1, sizeof(*st));
	rc = staging_create(in->s, &st->fd, &st->path, err);
	if (rc) {
		free(st);
		return rc;
	}
	f->state = st;
	return 0;
}

static int ingest_chunk(void *ctx, struct tree_file *f, const void *data,
			size_t len, struct err *err)
{
	struct staging *st = f->state;

	return st ? write_all(st->fd, data, len, st->path, err) : 0;
}

static void staging_drop(struct staging *st)
{
	if (!st)
		return;
	unlink(st->path);
	close(st->fd);
	free(st->path);
	free(st);
}

/* Link mode could not link: copy from the open source, hashing again
 * (this copy must be verified against the digest the link was for). */
static int copy_verified(struct ingest *in, struct tree_file *f, struct err *err)
{
	struct staging st = { .fd = -1 };
	struct sha256 *h = sha256_new();
	struct digest d;
	uint64_t n = 0;
	int slot, rc;

	rc = staging_create(in->s, &st.fd, &st.path, err);
	if (rc)
		goto done;
	rc = stream_fd(f->fd, st.fd, h, &n, f->path, st.path, err);
	if (rc)
		goto done;
	sha256_final(h, &d);
	if (n != f->entry->size || memcmp(&d, &f->entry->digest, sizeof(d))) {
		rc = err_set(err, ERR_INVALID, "'%s': changed while being stored", f->path);
		goto done;
	}
	rc = publish(in->s, st.fd, st.path, &d, n, &slot, err);
	if (!rc)
		mark_dirty(in, slot);
done:
	if (st.fd >= 0) {
		unlink(st.path);
		close(st.fd);
	}
	free(st.path);
	sha256_free(h);
	return rc;
}

/* Replaces the source file by a link to the existing object: a link under
 * a temporary name beside it, renamed over it (both through the directory
 * fd the scan reached without following symlinks). */
static int relink_source(const char *obj, struct tree_file *f, struct err *err)
{
	/* Not derived from f->name: a name near NAME_MAX would make the
	 * temporary one too long. */
	char *tmp = xasprintf(".anneal-link.%ld.%016" PRIx64, (long)getpid(), random64());
	int rc = 0;

	if (linkat(AT_FDCWD, obj, f->dirfd, tmp, 0) < 0) {
		if (errno == EXDEV || errno == EPERM || errno == EMLINK) {
			/* The bytes are stored already; the source just
			 * keeps its own copy. (No log here: this runs on a
			 * worker thread and sinks need not be thread-safe.) */
			goto done;
		}
		rc = err_sys(err, errno, "cannot link '%s' beside '%s'", obj, f->path);
		goto done;
	}
	if (renameat(f->dirfd, tmp, f->dirfd, f->name) < 0) {
		rc = err_sys(err, errno, "cannot replace '%s' by a link to '%s'", f->path, obj);
		unlinkat(f->dirfd, tmp, 0);
		goto done;
	}
	if (fsync(f->dirfd) < 0 && errno != EINVAL)
		rc = err_sys(err, errno, "cannot fsync the directory of '%s'", f->path);
done:
	free(tmp);
	return rc;
}

static int link_in(struct ingest *in, struct tree_file *f, struct err *err)
{
	const struct manifest_entry *e = f->entry;
	char *obj = store_object_path(in->s, &e->digest);
	char proc[64];
	struct stat st;
	int slot, rc = 0, chmoded = 0, shared = 0, e_link;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (lstat(obj, &st) == 0) {
			if ((uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino)
				goto done; /* the source is that object already */
			rc = check_existing(obj, &st, e->size, err);
			if (!rc)
				rc = relink_source(obj, f, err);
			goto done;
		}
		if (errno != ENOENT) {
			rc = err_sys(err, errno, "cannot stat '%s'", obj);
			goto done;
		}
		if (!chmoded) {
			struct stat fst;

			/* A file with other links (a step's `ln /elsewhere/f
			 * out/`) shares its inode with names anneal does not
			 * own: linking it would make them read-only too, and
			 * let a write through them change the object. Copy. */
			if (fstat(f->fd, &fst) < 0) {
				rc = err_sys(err, errno, "cannot stat '%s'", f->path);
				goto done;
			}
			if (fst.st_nlink > 1) {
				shared = 1;
				goto copy;
			}
			/* Durable and read-only before it has an object name. */
			if (fsync(f->fd) < 0) {
				rc = err_sys(err, errno, "cannot fsync '%s'", f->path);
				goto done;
			}
			if (fchmod(f->fd, 0444) < 0) {
				if (errno == EPERM)
					goto copy; /* not ours to make read-only */
				rc = err_sys(err, errno, "cannot chmod '%s'", f->path);
				goto done;
			}
			chmoded = 1;
		}
		rc = object_dir(in->s, &e->digest, &slot, err);
		if (rc)
			goto done;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, obj, AT_SYMLINK_FOLLOW) == 0) {
			mark_dirty(in, slot);
			goto done;
		}
		e_link = errno;
		if (e_link == ENOENT && !fs_exists("/proc/self/fd")) {
			/* No /proc: link by name (the hash checked the file
			 * did not change; a rename meanwhile is the step's). */
			if (linkat(f->dirfd, f->name, AT_FDCWD, obj, 0) == 0) {
				mark_dirty(in, slot);
				goto done;
			}
			e_link = errno;
		}
		if (e_link == EEXIST)
			continue; /* stored by someone else meanwhile */
		if (e_link == EXDEV || e_link == EPERM || e_link == EMLINK)
			goto copy;
		rc = err_sys(err, e_link, "cannot link '%s' into the store as '%s'", f->path, obj);
		goto done;
	}
	rc = err_set(err, ERR_SYSTEM, "cannot store '%s' as '%s'", f->path, obj);
	goto done;
copy:
	if (chmoded)
		(void)fchmod(f->fd, f->mode & 07777);
	rc = copy_verified(in, f, err);
	/* The tree's name then joins the object like any other file; the
	 * other names keep the old inode, untouched. */
	if (!rc && shared)
		rc = relink_source(obj, f, err);
done:
	free(obj);
	return rc;
}

static int ingest_end(void *ctx, struct tree_file *f, int failed, struct err *err)
{
	struct ingest *in = ctx;
	struct staging *st = f->state;
	int slot, rc = 0;

	f->state = NULL;
	if (failed) {
		staging_drop(st);
		return 0;
	}
	if (st) {
		rc = publish(in->s, st->fd, st->path, &f->entry->digest, f->entry->size,
			     &slot, err);
		if (!rc)
			mark_dirty(in, slot);
		close(st->fd);
		free(st->path);
		free(st);
	} else {
		rc = link_in(in, f, err);
	}
	if (!rc)
		fault_point("store.object");
	return rc;
}

int store_ingest_tree(struct store *s, const char *src, enum store_mode mode,
		      int nthreads, struct manifest *out, struct err *err)
{
	return store_ingest_under(s, NULL, src, mode, nthreads, out, err);
}

int store_ingest_under(struct store *s, const char *top, const char *src,
		       enum store_mode mode, int nthreads, struct manifest *out,
		       struct err *err)
{
	struct ingest in = { .s = s, .mode = mode };
	struct tree_hooks hooks = {
		.ctx = &in,
		.begin = ingest_begin,
		.chunk = ingest_chunk,
		.end = ingest_end,
	};
	int rc;

	pthread_mutex_init(&in.lock, NULL);
	rc = tree_scan_under(top, src, nthreads, &hooks, out, err);
	if (rc)
		goto done;
	fault_point("store.ingested");
	for (int i = 0; i < 256; i++) {
		char *dir;

		if (!in.dirty[i])
			continue;
		dir = xasprintf("%s/%02x", s->objects, i);
		rc = fs_fsync_dir(dir, err);
		free(dir);
		if (rc)
			goto done;
	}
done:
	if (rc)
		manifest_free(out); /* messages name the file already */
	pthread_mutex_destroy(&in.lock);
	return rc;
}

/* ---- queries ------------------------------------------------------------------ */

int store_has(struct store *s, const struct digest *d, uint64_t *size)
{
	char *obj = store_object_path(s, d);
	struct stat st;
	int ok = lstat(obj, &st) == 0 && S_ISREG(st.st_mode);

	if (ok && size)
		*size = (uint64_t)st.st_size;
	free(obj);
	return ok;
}

int store_verify(struct store *s, const struct digest *d, uint64_t size,
		 int deep, struct err *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	char *obj = store_object_path(s, d);
	struct sha256 *h = NULL;
	struct stat st;
	int fd, rc = 0;

	digest_hex(d, hex);
	fd = open(obj, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? err_set(err, ERR_NOTFOUND, "object '%s' is missing", hex) :
		     errno == ELOOP ? err_set(err, ERR_INVALID, "object '%s' is a symbolic link", hex) :
		     err_sys(err, errno, "object '%s': cannot open '%s'", hex, obj);
		goto done;
	}
	if (fstat(fd, &st) < 0) {
		rc = err_sys(err, errno, "object '%s': cannot stat '%s'", hex, obj);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(err, ERR_INVALID, "object '%s' is not a regular file", hex);
		goto done;
	}
	if ((uint64_t)st.st_size != size) {
		rc = err_set(err, ERR_INVALID, "object '%s' has %" PRIu64 " bytes, expected %" PRIu64,
			     hex, (uint64_t)st.st_size, size);
		goto done;
	}
	if (st.st_mode & 0222) {
		rc = err_set(err, ERR_INVALID, "object '%s' is writable (mode %03o)", hex,
			     (unsigned)(st.st_mode & 0777));
		goto done;
	}
	if (deep) {
		struct digest got;
		char ghex[DIGEST_HEX_LEN + 1];
		uint64_t n = 0;

		h = sha256_new();
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		rc = stream_fd(fd, -1, h, &n, obj, NULL, err);
		if (rc)
			goto done;
		sha256_final(h, &got);
		if (n != size || memcmp(&got, d, sizeof(got))) {
			digest_hex(&got, ghex);
			rc = err_set(err, ERR_INVALID,
				     "object '%s' does not match its digest (content hashes to %s)",
				     hex, ghex);
			goto done;
		}
	}
done:
	if (fd >= 0)
		close(fd);
	sha256_free(h);
	free(obj);
	return rc;
}

int store_remove_object(struct store *s, const struct digest *d, struct err *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	char *obj = store_object_path(s, d);
	int rc = 0;

	digest_hex(d, hex);
	if (unlink(obj) < 0)
		rc = errno == ENOENT ? err_set(err, ERR_NOTFOUND, "object '%s' is missing", hex) :
		     err_sys(err, errno, "cannot remove object '%s'", hex);
	free(obj);
	return rc;
}

static int is_hex(const char *p, size_t n)
{
	return strlen(p) == n && strspn(p, "0123456789abcdef") == n;
}

int store_list(struct store *s, store_list_fn fn, void *ctx, struct err *err)
{
	DIR *top = opendir(s->objects);
	struct dirent *de;
	int rc = 0;

	if (!top)
		return err_sys(err, errno, "cannot read '%s'", s->objects);
	while (!rc && (errno = 0, de = readdir(top)) != NULL) {
		struct store_entry e;
		struct stat st;
		char *sub;
		DIR *d;
		struct dirent *oe;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sub = fs_join(s->objects, de->d_name);
		if (!is_hex(de->d_name, 2) || lstat(sub, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    !(d = opendir(sub))) {
			memset(&e, 0, sizeof(e));
			e.path = sub;
			e.stray = 1;
			rc = fn(ctx, &e);
			free(sub);
			continue;
		}
		while (!rc && (errno = 0, oe = readdir(d)) != NULL) {
			char *path, hex[DIGEST_HEX_LEN + 1];

			if (!strcmp(oe->d_name, ".") || !strcmp(oe->d_name, ".."))
				continue;
			path = fs_join(sub, oe->d_name);
			memset(&e, 0, sizeof(e));
			e.path = path;
			e.stray = 1;
			if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
			    is_hex(oe->d_name, DIGEST_HEX_LEN - 2)) {
				memcpy(hex, de->d_name, 2);
				memcpy(hex + 2, oe->d_name, DIGEST_HEX_LEN - 2);
				hex[DIGEST_HEX_LEN] = '\0';
				e.stray = digest_parse(hex, &e.digest) != 0;
				e.size = (uint64_t)st.st_size;
			}
			if (e.stray)
				memset(&e.digest, 0, sizeof(e.digest));
			rc = fn(ctx, &e);
			free(path);
		}
		if (!rc && errno)
			rc = err_sys(err, errno, "cannot read '%s'", sub);
		closedir(d);
		free(sub);
	}
	if (!rc && errno)
		rc = err_sys(err, errno, "cannot read '%s'", s->objects);
	closedir(top);
	return rc;
}

/* ---- checkout ------------------------------------------------------------------ */

/* A copy of src at dst (new), by reflink when the filesystem can, then
 * copy_file_range, then read/write. */
static int copy_file(const char *src, const char *dst, mode_t mode, struct err *err)
{
	int in = -1, out = -1, rc = 0;
	struct stat st;
	off_t left;

	in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		rc = err_sys(err, errno, "cannot read '%s'", src);
		goto done;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0 || fstat(in, &st) < 0) {
		rc = err_sys(err, errno, "cannot create '%s'", dst);
		goto done;
	}
	if (ioctl(out, FICLONE, in) == 0)
		goto chmod;
	for (left = st.st_size; left > 0;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (n > 0) {
			left -= n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
		    errno == EOPNOTSUPP) {
			struct sha256 *h = sha256_new();
			uint64_t got = 0;

			/* Plain copy from the start (ftruncate drops any part). */
			if (ftruncate(out, 0) < 0 || lseek(out, 0, SEEK_SET) < 0) {
				rc = err_sys(err, errno, "cannot write '%s'", dst);
			} else {
				rc = stream_fd(in, out, h, &got, src, dst, err);
			}
			sha256_free(h);
			if (rc)
				goto done;
			break;
		}
		rc = err_sys(err, errno, "cannot copy '%s' to '%s'", src, dst);
		goto done;
	}
chmod:
	if (fchmod(out, mode) < 0) {
		rc = err_sys(err, errno, "cannot chmod '%s'", dst);
		goto done;
	}
	if (close(out) < 0) {
		out = -1;
		rc = err_sys(err, errno, "cannot write '%s'", dst);
		goto done;
	}
	out = -1;
done:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

static int place(struct store *s, const struct manifest_entry *e, const char *dst,
		 struct err *err)
{
	char *obj = store_object_path(s, &e->digest);
	int rc;

	rc = store_verify(s, &e->digest, e->size, 0, err);
	if (rc) {
		err_prefix(err, "'%s'", e->path);
		goto done;
	}
	if (e->exec) {
		rc = copy_file(obj, dst, 0555, err);
		goto done;
	}
	if (link(obj, dst) == 0)
		goto done;
	if (errno == EXDEV || errno == EPERM || errno == EMLINK)
		rc = copy_file(obj, dst, 0444, err);
	else
		rc = err_sys(err, errno, "cannot link '%s' to '%s'", obj, dst);
done:
	free(obj);
	return rc;
}

static int seal_dir(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP && chmod(path, 0555) < 0)
		return errno;
	return 0;
}

int store_checkout(struct store *s, const struct manifest *m, const char *dst,
		   struct err *err)
{
	char *tmp = NULL;
	struct stat st;
	int single = m->n == 1 && !strcmp(m->v[0].path, ".");
	int rc = 0, made = 0;

	if (lstat(dst, &st) == 0) {
		rc = err_set(err, ERR_INVALID, "'%s' already exists", dst);
		goto done;
	}
	tmp = xasprintf("%s.anneal-tmp.%ld.%08" PRIx64, dst, (long)getpid(),
			random64() & 0xffffffffu);
	if (single) {
		made = 1;
		rc = place(s, &m->v[0], tmp, err);
		if (rc)
			goto done;
	} else {
		if (mkdir(tmp, 0700) < 0) {
			rc = err_sys(err, errno, "cannot create '%s'", tmp);
			goto done;
		}
		made = 1;
		for (size_t i = 0; i < m->n; i++) {
			const char *rel = m->v[i].path;
			char *path, *dir;

			if (!fs_relpath_safe(rel)) {
				rc = err_set(err, ERR_INVALID, "manifest path '%s' is not allowed", rel);
				goto done;
			}
			path = fs_join(tmp, rel);
			dir = fs_dirname(path);
			rc = fs_mkdir_p(dir, 0700, err);
			if (!rc)
				rc = place(s, &m->v[i], path, err);
			free(dir);
			free(path);
			if (rc)
				goto done;
		}
		if (nftw(tmp, seal_dir, 16, FTW_DEPTH | FTW_PHYS) != 0) {
			rc = err_sys(err, errno, "cannot make '%s' read-only", tmp);
			goto done;
		}
	}
	fault_point("store.checkout_rename");
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS) {
			rc = errno == EEXIST ? err_set(err, ERR_INVALID, "'%s' already exists", dst) :
			     err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, dst);
			goto done;
		}
		if (rename(tmp, dst) < 0) {
			rc = err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, dst);
			goto done;
		}
	}
	made = 0;
done:
	if (made) {
		struct err ignored;
		fs_remove_tree(tmp, &ignored);
	}
	if (rc)
		err_prefix(err, "checkout to '%s'", dst);
	free(tmp);
	return rc;
}
