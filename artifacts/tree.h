/* artifacts/tree.h — the manifest and digest of a file tree (a step's output).
 *
 * The digest is SHA-256 over a manifest of (path, size, mode, file
 * SHA-256) lines, sorted by path, so that it depends on content and not on
 * mtimes or directory order:
 *
 *     <sha256-hex> <size> <644|755> <relpath>\n      sorted bytewise by path
 *
 * A single-file tree has one line with path ".". A file's digest equals
 * sha256sum of its bytes (so safetensors shards match the oids Hugging Face
 * and git-lfs publish). Modes are normalised to 644/755 as git does, so
 * making a stored tree read-only keeps its digest. Symlinks, FIFOs,
 * sockets, devices and file names containing a newline are refused (an
 * output is plain files and directories).
 *
 * Files are hashed on several threads (a multi-shard checkpoint hashes
 * one shard per core), each streamed in 1 MiB reads: memory stays bounded
 * (one buffer per thread) whatever the sizes. The manifest is the same for
 * any thread count. */
#ifndef ANNEAL_TREE_H
#define ANNEAL_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"

struct err;

struct manifest_entry {
	char *path;            /* relative, '/'-separated; "." for a single file */
	uint64_t size;
	int exec;              /* 1: "755" in the manifest, 0: "644" */
	struct digest digest;  /* SHA-256 of the file's bytes */
};

struct manifest {
	struct manifest_entry *v;  /* n entries, sorted bytewise by path */
	size_t n;
	char *text;                /* the manifest lines, NUL-terminated */
	size_t text_len;
	struct digest digest;      /* SHA-256 of text: the tree's digest */
	uint64_t bytes;            /* sum of sizes */
};

/* Frees what m holds and leaves it zeroed (NULL-safe; a zeroed manifest is
 * fine to free). */
void manifest_free(struct manifest *m);

/* Hashes the tree at path (a directory, or a single regular file) on
 * nthreads threads (<= 0: one per online CPU, at most one per file) and
 * fills *out (the caller's; free with manifest_free, zeroed on failure).
 * A file that changes while it is read is an error (ERR_INVALID), and so
 * is anything tree.h refuses; nothing is read before the whole tree has
 * been walked, so a refused tree costs no hashing. */
int tree_manifest_ex(const char *path, int nthreads, struct manifest *out,
		     struct err *err);

/* Parses manifest text (as tree_manifest_ex writes it) into *out, with its
 * digest. Strict: every field, the order, and the paths (relative, no
 * "", "." or ".." component, "." only as the only line) are checked, so a
 * manifest from a bundle or a database row can be materialised safely.
 * ERR_INVALID with the line number on any deviation. */
int manifest_parse(const char *text, struct manifest *out, struct err *err);

/* Work that rides on the hashing pass, one file at a time on a worker
 * thread, so that each byte is read and hashed once (the store copies
 * while hashing). Callbacks for different files run concurrently; those
 * of one file run in order on one thread. Any callback may fail (return a
 * negative err_code with err filled): the scan stops and returns it. */
struct tree_file {
	const char *path;              /* root joined with entry: for messages */
	int fd;                        /* read-only, positioned by the scan */
	/* The directory holding the file, reached from the root one component
	 * at a time without following symlinks, and the file's name in it:
	 * to act on the name (link, rename) without a path that a step could
	 * redirect by swapping a directory for a symlink. */
	int dirfd;
	const char *name;
	struct manifest_entry *entry;  /* path, size and exec set; digest at end */
	uint64_t dev, ino;             /* of the opened file */
	unsigned mode;                 /* its st_mode when opened */
	void *state;                   /* the hooks' own, per file */
};

struct tree_hooks {
	void *ctx;
	/* Before the first byte of the file. */
	int (*begin)(void *ctx, struct tree_file *f, struct err *err);
	/* Each chunk, after it was hashed. */
	int (*chunk)(void *ctx, struct tree_file *f, const void *data, size_t len,
		     struct err *err);
	/* After the last byte (failed = 0: entry->digest is set and the file
	 * did not change while read) or when the scan gives up on a file whose
	 * begin succeeded (failed = 1: release f->state; the return value is
	 * ignored). */
	int (*end)(void *ctx, struct tree_file *f, int failed, struct err *err);
};

/* tree_manifest_ex with hooks (NULL: plain hashing). */
int tree_scan(const char *path, int nthreads, const struct tree_hooks *hooks,
	      struct manifest *out, struct err *err);

/* tree_scan of path, which must be inside top (a directory anneal made,
 * e.g. a run's work dir; top itself is opened as it is): every component
 * of path below top is opened without following symlinks, so a step that
 * puts a symlink in place of a directory on the way (its output dir, a
 * checkpoint's parent) cannot make the scan read, link or chmod anything
 * outside top. A path not inside top ("..", another root) is refused. */
int tree_scan_under(const char *top, const char *path, int nthreads,
		    const struct tree_hooks *hooks, struct manifest *out,
		    struct err *err);

/* The worker count tree_scan uses for nthreads <= 0 and nfiles files. */
int tree_default_threads(size_t nfiles);

/* The older interface, kept as wrappers over tree_manifest_ex (default
 * threads): used by the scheduler and `plan`. */
struct tree_info {
	struct digest digest;
	uint64_t bytes;   /* sum of file sizes */
	uint64_t files;
};

/* Hashes the tree at path (a directory, or a single regular file). */
int tree_digest(const char *path, struct tree_info *out, struct err *err);

/* Manifest text (one line per file: "<sha256> <size> <mode-octal> <path>\n"),
 * the bytes the digest is taken over; malloc'd into *out. */
int tree_manifest(const char *path, char **out, struct tree_info *info,
		  struct err *err);

#endif
