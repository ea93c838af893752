/* artifacts/tree.c — see tree.h.
 *
 * Walks the tree with openat/fdopendir (never following symlinks), collects
 * (path, size, mode) for every regular file, sorts by path (bytewise), then
 * hashes each file and the manifest. Modes are normalised to 644 or 755 as
 * git does, so that making a stored tree read-only keeps its digest. */
#include "artifacts/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"

struct entry {
	char *rel;       /* path relative to the root, '/'-separated */
	uint64_t size;
	int exec;
};

struct walk {
	struct entry *v;
	size_t n, cap;
	const char *root;
};

static void walk_add(struct walk *w, char *rel, uint64_t size, int exec)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 32;
		w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
	}
	w->v[w->n].rel = rel;
	w->v[w->n].size = size;
	w->v[w->n].exec = exec;
	w->n++;
}

static int walk_dir(struct walk *w, int dfd, const char *prefix, struct err *err)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(dfd);
		return err_sys(err, errno, "cannot read '%s/%s'", w->root, prefix);
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct stat st;
		char *rel;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rel = *prefix ? xasprintf("%s/%s", prefix, de->d_name) : xstrdup(de->d_name);
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = err_sys(err, errno, "cannot stat '%s/%s'", w->root, rel);
			free(rel);
			break;
		}
		if (S_ISREG(st.st_mode)) {
			walk_add(w, rel, (uint64_t)st.st_size, (st.st_mode & 0111) != 0);
		} else if (S_ISDIR(st.st_mode)) {
			int fd = openat(dirfd(d), de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				rc = err_sys(err, errno, "cannot open '%s/%s'", w->root, rel);
				free(rel);
				break;
			}
			rc = walk_dir(w, fd, rel, err);
			free(rel);
			if (rc)
				break;
		} else {
			rc = err_set(err, ERR_INVALID, "'%s/%s': %s is not allowed in an output",
				     w->root, rel,
				     S_ISLNK(st.st_mode) ? "a symbolic link" :
				     S_ISFIFO(st.st_mode) ? "a FIFO" :
				     S_ISSOCK(st.st_mode) ? "a socket" : "a device file");
			free(rel);
			break;
		}
	}
	if (!rc && errno)
		rc = err_sys(err, errno, "cannot read '%s/%s'", w->root, prefix);
	closedir(d);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->rel, ((const struct entry *)b)->rel);
}

int tree_manifest(const char *path, char **out, struct tree_info *info,
		  struct err *err)
{
	struct walk w = { .root = path };
	struct buf m = BUF_INIT;
	struct stat st;
	int rc = 0;

	*out = NULL;
	memset(info, 0, sizeof(*info));
	if (lstat(path, &st) < 0) {
		rc = err_sys(err, errno, "cannot read output '%s'", path);
		goto done;
	}
	if (S_ISREG(st.st_mode)) {
		walk_add(&w, xstrdup(""), (uint64_t)st.st_size, (st.st_mode & 0111) != 0);
	} else if (S_ISDIR(st.st_mode)) {
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = err_sys(err, errno, "cannot open '%s'", path);
			goto done;
		}
		rc = walk_dir(&w, fd, "", err);
		if (rc)
			goto done;
	} else {
		rc = err_set(err, ERR_INVALID, "'%s': not a regular file or directory", path);
		goto done;
	}
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), cmp_entry);
	buf_init(&m);
	for (size_t i = 0; i < w.n; i++) {
		struct digest d;
		char hex[DIGEST_HEX_LEN + 1];
		uint64_t size;
		char *full = *w.v[i].rel ? xasprintf("%s/%s", path, w.v[i].rel) : xstrdup(path);

		rc = sha256_file(full, &d, &size, err);
		free(full);
		if (rc)
			goto done;
		digest_hex(&d, hex);
		buf_printf(&m, "%s %" PRIu64 " %s %s\n", hex, size,
			   w.v[i].exec ? "755" : "644", *w.v[i].rel ? w.v[i].rel : ".");
		info->bytes += size;
		info->files++;
	}
	sha256_buf(m.ptr, m.len, &info->digest);
	*out = buf_detach(&m);
done:
	for (size_t i = 0; i < w.n; i++)
		free(w.v[i].rel);
	free(w.v);
	buf_free(&m);
	return rc;
}

int tree_digest(const char *path, struct tree_info *out, struct err *err)
{
	char *m = NULL;
	int rc = tree_manifest(path, &m, out, err);

	free(m);
	return rc;
}
