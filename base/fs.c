/* base/fs.c — see fs.h. */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"

char *fs_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int fs_fsync_dir(const char *path, struct err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, errno, "open directory '%s'", path);
	if (fsync(fd) < 0 && errno != EINVAL) {
		int e = errno;
		close(fd);
		return err_sys(err, e, "fsync directory '%s'", path);
	}
	close(fd);
	return 0;
}

static int write_whole(const char *path, const void *data, size_t len,
		       mode_t mode, int sync, struct err *err);

int fs_write_atomic(const char *path, const void *data, size_t len,
		    mode_t mode, struct err *err)
{
	return write_whole(path, data, len, mode, 1, err);
}

int fs_write_replace(const char *path, const void *data, size_t len,
		     mode_t mode, struct err *err)
{
	return write_whole(path, data, len, mode, 0, err);
}

static int write_whole(const char *path, const void *data, size_t len,
		       mode_t mode, int sync, struct err *err)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char *dir = fs_dirname(path);
	const char *p = data;
	int fd = -1, rc = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = err_sys(err, errno, "cannot write '%s'", path);
		goto done;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "cannot write '%s'", path);
			goto done;
		}
		p += n;
		len -= (size_t)n;
	}
	if (sync && fsync(fd) < 0) {
		rc = err_sys(err, errno, "cannot write '%s' (fsync)", path);
		goto done;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = err_sys(err, errno, "cannot write '%s' (close)", path);
		goto done;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = err_sys(err, errno, "cannot write '%s' (rename)", path);
		goto done;
	}
	if (sync)
		rc = fs_fsync_dir(dir, err);
done:
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	free(tmp);
	free(dir);
	return rc;
}

int fs_read_file(const char *path, size_t max, char **out, size_t *lenp,
		 struct err *err)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int fd, rc = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
	if ((unsigned long long)st.st_size > max) {
		rc = err_set(err, ERR_INVALID,
			     "'%s': too large (%lld bytes, limit %zu)", path,
			     (long long)st.st_size, max);
		goto done;
	}
	data = xmalloc((size_t)st.st_size + 1);
	for (;;) {
		ssize_t n;
		if (len == (size_t)st.st_size) {
			/* The file may have grown; one more byte tells. */
			char c;
			n = read(fd, &c, 1);
			if (n > 0) {
				rc = err_set(err, ERR_INVALID,
					     "'%s': changed while being read", path);
				goto done;
			}
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		n = read(fd, data + len, (size_t)st.st_size - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "'%s'", path);
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	data[len] = '\0';
	*out = data;
	data = NULL;
	if (lenp)
		*lenp = len;
done:
	free(data);
	close(fd);
	return rc;
}

int fs_mkdir_p(const char *path, mode_t mode, struct err *err)
{
	char *parent, *slash;
	int rc;

	/* The common cases, the parent exists or the directory does, cost
	 * one syscall; only missing parents are walked, deepest first. */
	if (mkdir(path, mode) == 0)
		return 0;
	if (errno == EEXIST) {
		if (fs_is_dir(path))
			return 0;
		return err_set(err, ERR_SYSTEM, "'%s' exists and is not a directory", path);
	}
	if (errno != ENOENT)
		return err_sys(err, errno, "cannot create directory '%s'", path);
	parent = xstrdup(path);
	slash = strrchr(parent, '/');
	while (slash && slash > parent && slash[1] == '\0') {   /* trailing '/' */
		*slash = '\0';
		slash = strrchr(parent, '/');
	}
	if (!slash || slash == parent) {
		free(parent);
		return err_sys(err, ENOENT, "cannot create directory '%s'", path);
	}
	*slash = '\0';
	rc = fs_mkdir_p(parent, mode, err);
	free(parent);
	if (rc)
		return rc;
	if (mkdir(path, mode) < 0 && !(errno == EEXIST && fs_is_dir(path)))
		return err_sys(err, errno, "cannot create directory '%s'", path);
	return 0;
}

static int remove_at(int at, const char *name, struct err *err, const char *top)
{
	struct stat st;

	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : err_sys(err, errno, "cannot remove '%s'", top);
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d;
		struct dirent *de;
		int rc = 0;

		if (fd < 0)
			return err_sys(err, errno, "cannot remove '%s'", top);
		/* Read-only directories (a finished output) must become writable
		 * for their entries to be unlinked. */
		fchmod(fd, st.st_mode | S_IWUSR | S_IXUSR | S_IRUSR);
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return err_sys(err, errno, "cannot remove '%s'", top);
		}
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			rc = remove_at(dirfd(d), de->d_name, err, top);
			if (rc)
				break;
		}
		closedir(d);
		if (rc)
			return rc;
		if (unlinkat(at, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			return err_sys(err, errno, "cannot remove '%s'", top);
		return 0;
	}
	if (unlinkat(at, name, 0) < 0 && errno != ENOENT)
		return err_sys(err, errno, "cannot remove '%s'", top);
	return 0;
}

int fs_remove_tree(const char *path, struct err *err)
{
	return remove_at(AT_FDCWD, path, err, path);
}

int fs_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int fs_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *fs_join(const char *a, const char *b)
{
	size_t la = strlen(a);

	if (la && a[la - 1] == '/')
		return xasprintf("%s%s", a, b);
	return xasprintf("%s/%s", a, b);
}

char *fs_abspath(const char *p)
{
	char cwd[PATH_MAX];

	if (p[0] == '/')
		return xstrdup(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(p);
	if (!strcmp(p, "."))
		return xstrdup(cwd);
	if (!strncmp(p, "./", 2))
		p += 2;
	return fs_join(cwd, p);
}

char *fs_self_dir(void)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *slash;

	if (n <= 0)
		return NULL;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	return xstrdup(path);
}

int fs_relpath_safe(const char *p)
{
	const char *c = p;

	if (!*p || *p == '/')
		return 0;
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t len = slash ? (size_t)(slash - c) : strlen(c);

		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (!slash)
			return 1;
		c = slash + 1;
	}
}
