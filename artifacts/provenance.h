/* artifacts/provenance.h — where a recipe came from: the git commit, branch
 * and uncommitted changes of the repository holding it.
 *
 * A run records this at its start (and again for an engine repository when a
 * recipe names one), so that a checkpoint's lineage ends in a commit, plus a
 * digest of whatever was not committed. The digest is taken over the
 * working tree as it is, so two runs on the same dirty tree agree and any
 * further edit changes it. libgit2 stays behind this header: nothing here
 * names a libgit2 type, and the repository is only read (the index is never
 * refreshed or written). */
#ifndef ANNEAL_PROVENANCE_H
#define ANNEAL_PROVENANCE_H

#include <stdint.h>

struct buf;
struct err;

/* The state of the collected path itself in its repository. */
enum provenance_path_state {
	PROVENANCE_PATH_NONE = 0,   /* not in a repository */
	PROVENANCE_PATH_CLEAN,      /* tracked, same as HEAD */
	PROVENANCE_PATH_MODIFIED,   /* tracked or staged, differs from HEAD */
	PROVENANCE_PATH_UNTRACKED,
	PROVENANCE_PATH_IGNORED,
	PROVENANCE_PATH_DIRECTORY,  /* the path is a directory: see the counts */
};

/* Bounds on the work of one collection. The defaults (PROVENANCE_LIMITS_INIT)
 * keep a dirty tree with a stray dataset in it from costing minutes. */
struct provenance_limits {
	uint64_t max_paths;       /* changed paths put in the digest; the rest are counted in paths_skipped */
	uint64_t max_file_bytes;  /* larger files are described by size and mtime, not hashed */
	uint64_t hash_budget;     /* total bytes hashed per call; then size and mtime */
};

#define PROVENANCE_MAX_PATHS 100000
#define PROVENANCE_MAX_FILE_BYTES (64ull << 20)
#define PROVENANCE_HASH_BUDGET (1ull << 30)
#define PROVENANCE_LIMITS_INIT \
	{ PROVENANCE_MAX_PATHS, PROVENANCE_MAX_FILE_BYTES, PROVENANCE_HASH_BUDGET }

struct provenance {
	int found;              /* 0: the path is in no repository with a working tree */
	char *workdir;          /* absolute, no trailing '/'; "" when !found */
	char commit[65];        /* HEAD commit id (hex); "" on an unborn branch */
	char *branch;           /* "main"; "HEAD" when detached; the branch HEAD names
	                         * when unborn; "" when !found */
	char *summary;          /* first line of the commit message; "" when none */
	int64_t commit_time;    /* committer time, seconds since the epoch; 0 when none */
	int commit_tz;          /* its offset from UTC in minutes */

	int dirty;              /* modified + untracked > 0 */
	uint64_t modified;      /* tracked paths changed in the index or working tree */
	uint64_t untracked;     /* untracked, not ignored files */
	char dirty_digest[65];  /* SHA-256 (hex) of the uncommitted changes; "" when clean */
	uint64_t paths_skipped; /* changed paths left out of the digest (max_paths) */
	uint64_t files_unhashed;/* files in the digest by size and mtime, not content */

	char *path_in_repo;     /* the path relative to workdir ("." for workdir itself) */
	enum provenance_path_state path_state;
};

/* Collects the provenance of path (a file or a directory; it must exist).
 * The repository is discovered from path upwards like git does: no crossing
 * of filesystem boundaries, GIT_CEILING_DIRECTORIES honoured, symlinks in
 * path resolved first (a symlinked recipe belongs to its target's
 * repository). A path in no repository, or only in a bare one, is not an
 * error: out->found is 0. *out is overwritten (not freed first) and is the
 * caller's to provenance_clear(), on failure too.
 *
 * The dirty digest is SHA-256 over "anneal-provenance-dirty 1\n" followed,
 * for each changed or untracked path in byte order, by
 *     "<XY> <index> <content> <path>\0"
 * where XY is git's short status ("M.", ".M", "A.", ".D", "??", ...), index
 * the staged blob id or "-", and content the working-tree bytes described as
 * "644:<sha256>", "755:<sha256>", "120000:<sha256 of the link target>",
 * "160000:<submodule HEAD>", "size:<bytes>:mtime:<s>.<ns>" past the limits,
 * or "deleted". Files inside a modified submodule are not hashed. */
int provenance_collect(const char *path, struct provenance *out,
		       struct err *err);

/* The same with explicit limits (tests, or callers wanting less work). */
int provenance_collect_limits(const char *path,
			      const struct provenance_limits *limits,
			      struct provenance *out, struct err *err);

/* Frees the strings and zeroes p. NULL-safe; a zeroed struct is fine. */
void provenance_clear(struct provenance *p);

/* Appends p as one compact JSON object with every field, keys in this order:
 * found, workdir, commit, branch, summary, commit_time, commit_tz, dirty,
 * modified, untracked, dirty_digest, paths_skipped, files_unhashed, path,
 * path_state. Returns 0. */
int provenance_to_json(const struct provenance *p, struct buf *out);

/* Appends one line for people, without a newline:
 * "git 1a2b3c4 (main), dirty: 2 modified, 1 untracked". */
void provenance_summary(const struct provenance *p, struct buf *out);

/* "clean", "modified", ... as in the JSON; "none" for PROVENANCE_PATH_NONE. */
const char *provenance_path_state_name(enum provenance_path_state s);

/* libgit2 is initialised and shut down inside each collect (about 4 ms here:
 * it loads the TLS certificate store), so nothing is left behind. A process
 * that collects several times may hold libgit2 for its lifetime with
 * provenance_global_init() and release it with provenance_global_shutdown();
 * the calls nest and are thread-safe. */
int provenance_global_init(struct err *err);
void provenance_global_shutdown(void);

#endif
