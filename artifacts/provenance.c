/* artifacts/provenance.c — git provenance of a path through libgit2.
 *
 * The workload: once or twice per run, a repository of up to tens of
 * thousands of tracked files, usually clean or with a handful of edits, now
 * and then with a dataset or a virtualenv nobody ignored. So: one status
 * pass with git's defaults (index stat cache, no rename detection), and the
 * hashing of changed files bounded by path count, file size and total bytes
 * (see provenance_limits). The repository is opened read-only in effect: the
 * index is not refreshed, so a racily-clean index costs re-hashing by
 * libgit2 on every call rather than a write into the user's repository.
 *
 * This is the only file that includes git2.h. */
#include "artifacts/provenance.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"

#define DIGEST_FORMAT "anneal-provenance-dirty 1\n"

/* One entry of the status list, flattened. */
struct change {
	const char *path;                /* borrowed from the status list */
	unsigned int flags;              /* git_status_t bits */
	const git_diff_delta *h2i, *i2w; /* head-to-index, index-to-workdir */
};

/* Hashing state shared across the files of one collection. */
struct hasher {
	const struct provenance_limits *limits;
	struct sha256 *file;  /* reused for each file */
	uint8_t *chunk;
	uint64_t hashed;      /* bytes hashed so far (against hash_budget) */
	uint64_t unhashed;    /* files described by size and mtime */
};

enum { CHUNK = 1 << 20 };

/* libgit2's last message, or a stand-in. Its messages are lowercase. */
static const char *git_msg(void)
{
	const git_error *e = git_error_last();

	return e && e->message ? e->message : "unknown libgit2 error";
}

static int git_fail(struct err *err, int grc, const char *what,
		    const char *subject)
{
	int code = ERR_SYSTEM;

	if (grc == GIT_EOWNER)
		code = ERR_INVALID; /* safe.directory: the user's to settle */
	return err_set(err, code, "repository '%s': %s: %s", subject, what,
		       git_msg());
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup(s ? s : "");
}

/* ---- HEAD ---------------------------------------------------------- */

static int read_head(git_repository *repo, struct provenance *out,
		     struct err *err)
{
	git_reference *head = NULL;
	git_commit *commit = NULL;
	git_oid oid;
	int grc, rc = 0;

	grc = git_reference_lookup(&head, repo, "HEAD");
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot read HEAD", out->workdir);
		goto done;
	}
	if (git_reference_type(head) == GIT_REFERENCE_SYMBOLIC) {
		const char *t = git_reference_symbolic_target(head);

		if (t && strncmp(t, "refs/heads/", 11) == 0)
			t += 11;
		set_str(&out->branch, t);
	} else {
		set_str(&out->branch, "HEAD");
	}

	grc = git_reference_name_to_id(&oid, repo, "HEAD");
	if (grc == GIT_ENOTFOUND)
		goto done; /* unborn branch: no commit yet */
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot resolve HEAD", out->workdir);
		goto done;
	}
	git_oid_tostr(out->commit, sizeof(out->commit), &oid);
	grc = git_commit_lookup(&commit, repo, &oid);
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot read HEAD commit", out->workdir);
		goto done;
	}
	set_str(&out->summary, git_commit_summary(commit));
	out->commit_time = (int64_t)git_commit_time(commit);
	out->commit_tz = git_commit_time_offset(commit);
done:
	git_commit_free(commit);
	git_reference_free(head);
	return rc;
}

/* ---- the dirty digest ---------------------------------------------- */

static int is_untracked(unsigned int flags)
{
	return flags == GIT_STATUS_WT_NEW;
}

/* git's short status letters, '.' for unchanged (porcelain v2's choice:
 * no spaces in the digested text). */
static void status_xy(unsigned int f, char xy[3])
{
	xy[2] = '\0';
	if (f & GIT_STATUS_CONFLICTED) {
		xy[0] = xy[1] = 'U';
		return;
	}
	xy[0] = (f & GIT_STATUS_INDEX_NEW) ? 'A' :
		(f & GIT_STATUS_INDEX_MODIFIED) ? 'M' :
		(f & GIT_STATUS_INDEX_DELETED) ? 'D' :
		(f & GIT_STATUS_INDEX_RENAMED) ? 'R' :
		(f & GIT_STATUS_INDEX_TYPECHANGE) ? 'T' : '.';
	xy[1] = (f & GIT_STATUS_WT_NEW) ? '?' :
		(f & GIT_STATUS_WT_MODIFIED) ? 'M' :
		(f & GIT_STATUS_WT_DELETED) ? 'D' :
		(f & GIT_STATUS_WT_RENAMED) ? 'R' :
		(f & GIT_STATUS_WT_TYPECHANGE) ? 'T' :
		(f & GIT_STATUS_WT_UNREADABLE) ? 'U' : '.';
	if (f == GIT_STATUS_WT_NEW)
		xy[0] = '?';
}

static void add_stat_desc(struct buf *d, const char *kind, const struct stat *st)
{
	buf_printf(d, "%s:%llu:mtime:%lld.%09ld", kind,
		   (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
		   (long)st->st_mtim.tv_nsec);
}

/* Describes a regular file by its bytes, or by size and mtime past the
 * limits. Opened without following links and without blocking, so that
 * a file swapped for a FIFO since lstat cannot hang us. */
static int desc_regular(struct hasher *h, const char *full, struct buf *d,
			struct err *err)
{
	struct digest dg;
	char hex[DIGEST_HEX_LEN + 1];
	struct stat st;
	int fd, rc = 0;

	fd = open(full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			buf_adds(d, "deleted");
		else if (errno == EACCES || errno == EPERM || errno == ELOOP)
			buf_adds(d, "unreadable");
		else
			rc = err_sys(err, errno, "cannot read '%s'", full);
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = err_sys(err, errno, "cannot stat '%s'", full);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		buf_adds(d, "special");
		goto done;
	}
	if ((uint64_t)st.st_size > h->limits->max_file_bytes ||
	    h->hashed + (uint64_t)st.st_size > h->limits->hash_budget) {
		add_stat_desc(d, "size", &st);
		h->unhashed++;
		goto done;
	}
	sha256_reset(h->file);
	for (;;) {
		ssize_t n = read(fd, h->chunk, CHUNK);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "cannot read '%s'", full);
			goto done;
		}
		if (n == 0)
			break;
		sha256_update(h->file, h->chunk, (size_t)n);
		h->hashed += (uint64_t)n;
	}
	sha256_final(h->file, &dg);
	digest_hex(&dg, hex);
	buf_printf(d, "%s:%s", (st.st_mode & S_IXUSR) ? "755" : "644", hex);
done:
	close(fd);
	return rc;
}

/* The "<content>" field of a digest line for one path (see provenance.h). */
static int describe(struct hasher *h, const char *workdir,
		    const struct change *c, struct buf *d, struct err *err)
{
	char *full = xasprintf("%s/%s", workdir, c->path);
	char hex[GIT_OID_HEXSZ + 1];
	struct stat st;
	int rc = 0;

	if (lstat(full, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			buf_adds(d, "deleted");
		else
			rc = err_sys(err, errno, "cannot stat '%s'", full);
		goto done;
	}
	if (S_ISREG(st.st_mode)) {
		rc = desc_regular(h, full, d, err);
	} else if (S_ISLNK(st.st_mode)) {
		char target[4096];
		struct digest dg;
		char dhex[DIGEST_HEX_LEN + 1];
		ssize_t n = readlink(full, target, sizeof(target));

		if (n < 0) {
			rc = err_sys(err, errno, "cannot read link '%s'", full);
			goto done;
		}
		sha256_buf(target, (size_t)n, &dg);
		digest_hex(&dg, dhex);
		buf_printf(d, "120000:%s", dhex);
	} else if (S_ISDIR(st.st_mode) && c->i2w &&
		   c->i2w->new_file.mode == GIT_FILEMODE_COMMIT) {
		/* A submodule: its checked-out commit, not its files. */
		git_oid_tostr(hex, sizeof(hex), &c->i2w->new_file.id);
		buf_printf(d, "160000:%s", hex);
	} else if (S_ISDIR(st.st_mode)) {
		buf_adds(d, "dir"); /* an untracked nested repository */
	} else {
		buf_adds(d, "special");
	}
done:
	free(full);
	return rc;
}

static int cmp_change(const void *a, const void *b)
{
	return strcmp(((const struct change *)a)->path,
		      ((const struct change *)b)->path);
}

/* Hashes the first max_paths changes (sorted) into out->dirty_digest. */
static int digest_changes(const struct change *ch, size_t n,
			  const struct provenance_limits *limits,
			  struct provenance *out, struct err *err)
{
	struct hasher h = { limits, NULL, NULL, 0, 0 };
	struct sha256 *all = sha256_new();
	struct buf line = BUF_INIT, desc = BUF_INIT;
	struct digest dg;
	size_t i, take = n;
	int rc = 0;

	if ((uint64_t)take > limits->max_paths)
		take = (size_t)limits->max_paths;
	out->paths_skipped = (uint64_t)(n - take);
	h.file = sha256_new();
	h.chunk = xmalloc(CHUNK);
	sha256_update(all, DIGEST_FORMAT, strlen(DIGEST_FORMAT));
	for (i = 0; i < take; i++) {
		const struct change *c = &ch[i];
		char xy[3], idx[GIT_OID_HEXSZ + 1] = "-";
		unsigned int staged = GIT_STATUS_INDEX_NEW |
			GIT_STATUS_INDEX_MODIFIED | GIT_STATUS_INDEX_RENAMED |
			GIT_STATUS_INDEX_TYPECHANGE;

		status_xy(c->flags, xy);
		if (c->h2i && (c->flags & staged))
			git_oid_tostr(idx, sizeof(idx), &c->h2i->new_file.id);
		buf_reset(&desc);
		rc = describe(&h, out->workdir, c, &desc, err);
		if (rc < 0)
			goto done;
		buf_reset(&line);
		buf_printf(&line, "%s %s %s %s", xy, idx, buf_str(&desc), c->path);
		sha256_update(all, line.ptr, line.len + 1); /* with the NUL */
	}
	if (out->paths_skipped) {
		buf_reset(&line);
		buf_printf(&line, "skipped %llu", (unsigned long long)out->paths_skipped);
		sha256_update(all, line.ptr, line.len + 1);
	}
	sha256_final(all, &dg);
	digest_hex(&dg, out->dirty_digest);
	out->files_unhashed = h.unhashed;
done:
	buf_free(&line);
	buf_free(&desc);
	free(h.chunk);
	sha256_free(h.file);
	sha256_free(all);
	return rc;
}

/* ---- the path itself ----------------------------------------------- */

static int path_state(git_repository *repo, const struct change *ch, size_t n,
		      int is_dir, struct provenance *out, struct err *err)
{
	git_index *idx = NULL;
	const char *rel = out->path_in_repo;
	int grc, ignored = 0, rc = 0;
	size_t i;

	if (is_dir) {
		out->path_state = PROVENANCE_PATH_DIRECTORY;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(ch[i].path, rel) == 0) {
			out->path_state = is_untracked(ch[i].flags) ?
				PROVENANCE_PATH_UNTRACKED : PROVENANCE_PATH_MODIFIED;
			return 0;
		}
	}
	grc = git_repository_index(&idx, repo);
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot read index", out->workdir);
		goto done;
	}
	if (git_index_get_bypath(idx, rel, 0)) {
		out->path_state = PROVENANCE_PATH_CLEAN;
		goto done;
	}
	grc = git_ignore_path_is_ignored(&ignored, repo, rel);
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot read ignore rules", out->workdir);
		goto done;
	}
	out->path_state = ignored ? PROVENANCE_PATH_IGNORED : PROVENANCE_PATH_UNTRACKED;
done:
	git_index_free(idx);
	return rc;
}

/* ---- status -------------------------------------------------------- */

static int read_status(git_repository *repo, const struct provenance_limits *limits,
		       int is_dir, struct provenance *out, struct err *err)
{
	git_status_options so;
	git_status_list *list = NULL;
	struct change *ch = NULL;
	size_t i, n, k = 0;
	int grc, rc = 0;

	/* git's defaults less the ignored files, which we never look at. */
	git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
	so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED |
		   GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
	grc = git_status_list_new(&list, repo, &so);
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot read status", out->workdir);
		goto done;
	}
	n = git_status_list_entrycount(list);
	ch = xcalloc(n ? n : 1, sizeof(*ch));
	for (i = 0; i < n; i++) {
		const git_status_entry *e = git_status_byindex(list, i);
		const git_diff_delta *d;
		struct change *c;

		if (!e || e->status == GIT_STATUS_CURRENT ||
		    (e->status & GIT_STATUS_IGNORED))
			continue;
		c = &ch[k];
		c->flags = (unsigned int)e->status;
		c->h2i = e->head_to_index;
		c->i2w = e->index_to_workdir;
		d = c->i2w ? c->i2w : c->h2i;
		c->path = d->new_file.path ? d->new_file.path : d->old_file.path;
		if (!c->path)
			continue;
		k++;
		if (is_untracked(c->flags))
			out->untracked++;
		else
			out->modified++;
	}
	out->dirty = k > 0;
	qsort(ch, k, sizeof(*ch), cmp_change);
	if (k) {
		rc = digest_changes(ch, k, limits, out, err);
		if (rc < 0)
			goto done;
	}
	if (out->path_in_repo[0])
		rc = path_state(repo, ch, k, is_dir, out, err);
done:
	free(ch);
	git_status_list_free(list);
	return rc;
}

/* ---- collect ------------------------------------------------------- */

static void zero(struct provenance *p)
{
	memset(p, 0, sizeof(*p));
	p->workdir = xstrdup("");
	p->branch = xstrdup("");
	p->summary = xstrdup("");
	p->path_in_repo = xstrdup("");
}

int provenance_collect_limits(const char *path,
			      const struct provenance_limits *limits,
			      struct provenance *out, struct err *err)
{
	git_repository *repo = NULL;
	char *abs = NULL, *start = NULL, *wd_real = NULL;
	const char *wd, *ceiling;
	struct stat st;
	int inited = 0, is_dir, grc, rc = 0;
	size_t wl;

	zero(out);
	abs = realpath(path, NULL);
	if (!abs) {
		if (errno == ENOENT || errno == ENOTDIR)
			rc = err_set(err, ERR_NOTFOUND, "path '%s': no such file or directory", path);
		else
			rc = err_sys(err, errno, "cannot resolve '%s'", path);
		goto done;
	}
	if (stat(abs, &st) < 0) {
		rc = err_sys(err, errno, "cannot stat '%s'", abs);
		goto done;
	}
	is_dir = S_ISDIR(st.st_mode);
	start = xstrdup(abs);
	if (!is_dir) {
		char *slash = strrchr(start, '/');

		if (slash)
			slash[slash == start ? 1 : 0] = '\0';
	}

	grc = git_libgit2_init();
	if (grc < 0) {
		rc = err_set(err, ERR_SYSTEM, "cannot initialise libgit2: %s", git_msg());
		goto done;
	}
	inited = 1;
	/* Flags 0: search upwards, stay on one filesystem, as git does. */
	ceiling = getenv("GIT_CEILING_DIRECTORIES");
	grc = git_repository_open_ext(&repo, start, 0,
				      ceiling && *ceiling ? ceiling : NULL);
	if (grc == GIT_ENOTFOUND)
		goto done;
	if (grc < 0) {
		rc = git_fail(err, grc, "cannot open", start);
		goto done;
	}
	wd = git_repository_workdir(repo);
	if (!wd || git_repository_is_bare(repo))
		goto done;

	out->found = 1;
	/* libgit2 resolves the workdir it discovers; one named by
	 * core.worktree may not be, so resolve it to compare with abs. */
	wd_real = realpath(wd, NULL);
	set_str(&out->workdir, wd_real ? wd_real : wd);
	wl = strlen(out->workdir);
	while (wl > 1 && out->workdir[wl - 1] == '/')
		out->workdir[--wl] = '\0';
	if (strcmp(abs, out->workdir) == 0)
		set_str(&out->path_in_repo, ".");
	else if (strncmp(abs, out->workdir, wl) == 0 &&
		 (abs[wl] == '/' || wl == 1))
		set_str(&out->path_in_repo, abs + wl + (wl == 1 ? 0 : 1));
	/* else: path outside the working tree (core.worktree elsewhere);
	 * path_in_repo stays "" and path_state NONE. */

	rc = read_head(repo, out, err);
	if (rc < 0)
		goto done;
	rc = read_status(repo, limits, is_dir, out, err);
done:
	git_repository_free(repo);
	if (inited)
		git_libgit2_shutdown();
	free(wd_real);
	free(start);
	free(abs);
	return rc;
}

int provenance_collect(const char *path, struct provenance *out,
		       struct err *err)
{
	static const struct provenance_limits limits = PROVENANCE_LIMITS_INIT;

	return provenance_collect_limits(path, &limits, out, err);
}

void provenance_clear(struct provenance *p)
{
	if (!p)
		return;
	free(p->workdir);
	free(p->branch);
	free(p->summary);
	free(p->path_in_repo);
	memset(p, 0, sizeof(*p));
}

const char *provenance_path_state_name(enum provenance_path_state s)
{
	switch (s) {
	case PROVENANCE_PATH_NONE: return "none";
	case PROVENANCE_PATH_CLEAN: return "clean";
	case PROVENANCE_PATH_MODIFIED: return "modified";
	case PROVENANCE_PATH_UNTRACKED: return "untracked";
	case PROVENANCE_PATH_IGNORED: return "ignored";
	case PROVENANCE_PATH_DIRECTORY: return "directory";
	}
	return "none";
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

int provenance_to_json(const struct provenance *p, struct buf *out)
{
	buf_printf(out, "{\"found\":%s,\"workdir\":", p->found ? "true" : "false");
	buf_add_json_str(out, or_empty(p->workdir));
	buf_adds(out, ",\"commit\":");
	buf_add_json_str(out, p->commit);
	buf_adds(out, ",\"branch\":");
	buf_add_json_str(out, or_empty(p->branch));
	buf_adds(out, ",\"summary\":");
	buf_add_json_str(out, or_empty(p->summary));
	buf_printf(out, ",\"commit_time\":%lld,\"commit_tz\":%d,\"dirty\":%s,"
		   "\"modified\":%llu,\"untracked\":%llu,\"dirty_digest\":",
		   (long long)p->commit_time, p->commit_tz,
		   p->dirty ? "true" : "false",
		   (unsigned long long)p->modified,
		   (unsigned long long)p->untracked);
	buf_add_json_str(out, p->dirty_digest);
	buf_printf(out, ",\"paths_skipped\":%llu,\"files_unhashed\":%llu,\"path\":",
		   (unsigned long long)p->paths_skipped,
		   (unsigned long long)p->files_unhashed);
	buf_add_json_str(out, or_empty(p->path_in_repo));
	buf_adds(out, ",\"path_state\":");
	buf_add_json_str(out, provenance_path_state_name(p->path_state));
	buf_addc(out, '}');
	return 0;
}

void provenance_summary(const struct provenance *p, struct buf *out)
{
	const char *br = or_empty(p->branch);

	if (!p->found) {
		buf_adds(out, "not in a git repository");
		return;
	}
	if (p->commit[0])
		buf_printf(out, "git %.7s", p->commit);
	else
		buf_adds(out, "git (no commits)");
	if (strcmp(br, "HEAD") == 0)
		buf_adds(out, " (detached HEAD)");
	else if (br[0])
		buf_printf(out, " (%s)", br);
	if (p->dirty)
		buf_printf(out, ", dirty: %llu modified, %llu untracked",
			   (unsigned long long)p->modified,
			   (unsigned long long)p->untracked);
	else
		buf_adds(out, ", clean");
	if (p->paths_skipped)
		buf_printf(out, " (digest over the first %llu paths)",
			   (unsigned long long)(p->modified + p->untracked - p->paths_skipped));
	if (p->path_state == PROVENANCE_PATH_MODIFIED ||
	    p->path_state == PROVENANCE_PATH_UNTRACKED ||
	    p->path_state == PROVENANCE_PATH_IGNORED)
		buf_printf(out, ", '%s' %s", or_empty(p->path_in_repo),
			   provenance_path_state_name(p->path_state));
}

int provenance_global_init(struct err *err)
{
	if (git_libgit2_init() < 0)
		return err_set(err, ERR_SYSTEM, "cannot initialise libgit2: %s", git_msg());
	return 0;
}

void provenance_global_shutdown(void)
{
	git_libgit2_shutdown();
}
