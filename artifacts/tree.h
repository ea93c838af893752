/* artifacts/tree.h — the digest of a file tree (a step's output).
 *
 * The digest is SHA-256 over a manifest of (path, size, mode, file
 * SHA-256) lines, sorted by path, so that it depends on content and not on
 * mtimes or directory order. This is the artifacts interface the runner
 * uses today; the content-addressed store grows behind it. A file's digest
 * equals sha256sum of its bytes. Symlinks and special files are refused
 * (an output is plain files and directories). */
#ifndef ANNEAL_TREE_H
#define ANNEAL_TREE_H

#include <stdint.h>

#include "base/hash.h"

struct err;

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
