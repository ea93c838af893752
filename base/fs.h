/* base/fs.h — files written whole or not at all, and small path helpers.
 *
 * fs_write_atomic() follows s6's openwritenclose: write to a temporary name
 * in the same directory, fsync it, rename(2) over the target, fsync the
 * directory. A reader sees the old file or the new one, never a prefix. */
#ifndef ANNEAL_FS_H
#define ANNEAL_FS_H

#include <stddef.h>
#include <sys/types.h>

struct err;

/* Writes data to path atomically with the given mode. */
int fs_write_atomic(const char *path, const void *data, size_t len,
		    mode_t mode, struct err *err);

/* The same without fsync: whole or absent after a crash of the process,
 * possibly absent after a power loss. For files anneal can write again
 * (a step's params, written at each attempt). */
int fs_write_replace(const char *path, const void *data, size_t len,
		     mode_t mode, struct err *err);

/* Reads a whole regular file into a NUL-terminated malloc'd buffer.
 * Rejects non-regular files and files over max bytes (ERR_INVALID), names
 * the path in every message. *out is the caller's. */
int fs_read_file(const char *path, size_t max, char **out, size_t *len,
		 struct err *err);

/* mkdir -p with mode; existing directories are fine. */
int fs_mkdir_p(const char *path, mode_t mode, struct err *err);

/* rm -rf; a missing path is fine. Never follows symlinks out. */
int fs_remove_tree(const char *path, struct err *err);

/* fsync a directory (after a rename into it). */
int fs_fsync_dir(const char *path, struct err *err);

/* 1 if path exists (lstat), 0 if not. */
int fs_exists(const char *path);
/* 1 if path is a directory (stat), 0 otherwise. */
int fs_is_dir(const char *path);

/* The directory part of path ("." without a '/', "/" for "/x"); malloc'd. */
char *fs_dirname(const char *path);

/* 1 if p is a relative path that stays below its base: not empty, not
 * absolute, no empty, "." or ".." component. For paths from files others
 * wrote (manifests, bundles). */
int fs_relpath_safe(const char *p);

/* Joins a and b with one '/'; malloc'd. */
char *fs_join(const char *a, const char *b);

/* Absolute, normalised-enough path of p relative to the cwd (no symlink
 * resolution). malloc'd. */
char *fs_abspath(const char *p);

/* Directory of the running executable (from /proc/self/exe); malloc'd,
 * NULL if unknown. */
char *fs_self_dir(void);

#endif
