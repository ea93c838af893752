/* pipeline/plan.c — see plan.h. */
#include "pipeline/plan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

/* A process-wide memo of file digests keyed by (dev, ino, size, mtime):
 * a 1000-step run hashes its interpreter once, not 1000 times. */
struct memo {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	char hex[DIGEST_HEX_LEN + 1];
};
static struct memo *memo;
static size_t nmemo, capmemo;

static int file_identity(const char *path, const struct stat *st, char *out,
			 struct err *err)
{
	struct digest d;

	for (size_t i = 0; i < nmemo; i++)
		if (memo[i].dev == st->st_dev && memo[i].ino == st->st_ino &&
		    memo[i].size == st->st_size &&
		    memo[i].mtime.tv_sec == st->st_mtim.tv_sec &&
		    memo[i].mtime.tv_nsec == st->st_mtim.tv_nsec) {
			memcpy(out, memo[i].hex, DIGEST_HEX_LEN + 1);
			return 0;
		}
	if ((uint64_t)st->st_size > PLAN_HASH_LIMIT) {
		snprintf(out, DIGEST_HEX_LEN + 1, "size=%jd,mtime=%jd.%09ld",
			 (intmax_t)st->st_size, (intmax_t)st->st_mtim.tv_sec,
			 st->st_mtim.tv_nsec);
	} else {
		int rc = sha256_file(path, &d, NULL, err);
		if (rc)
			return rc;
		digest_hex(&d, out);
	}
	if (nmemo == capmemo) {
		capmemo = capmemo ? capmemo * 2 : 16;
		memo = xrealloc(memo, capmemo * sizeof(*memo));
	}
	memo[nmemo].dev = st->st_dev;
	memo[nmemo].ino = st->st_ino;
	memo[nmemo].size = st->st_size;
	memo[nmemo].mtime = st->st_mtim;
	memcpy(memo[nmemo].hex, out, DIGEST_HEX_LEN + 1);
	nmemo++;
	return 0;
}

char *plan_which(const char *prog, const char *cwd, const char *path_env)
{
	const char *p;

	if (!*prog)
		return NULL;
	if (strchr(prog, '/')) {
		char *full = prog[0] == '/' ? xstrdup(prog) : fs_join(cwd, prog);
		if (access(full, X_OK) == 0)
			return full;
		free(full);
		return NULL;
	}
	p = path_env ? path_env : getenv("PATH");
	if (!p)
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p) {
		const char *colon = strchr(p, ':');
		size_t len = colon ? (size_t)(colon - p) : strlen(p);
		char *dir = len ? xstrndup(p, len) : xstrdup(".");
		char *full = fs_join(dir, prog);
		struct stat st;

		free(dir);
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0)
			return full;
		free(full);
		p += len + (colon ? 1 : 0);
		if (!colon)
			break;
	}
	return NULL;
}

/* Length-prefixed so that no choice of strings can make two different
 * steps produce the same text. */
static void put(struct buf *b, const char *tag, const char *s)
{
	buf_printf(b, "%s %zu:%s\n", tag, strlen(s), s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_input(const void *a, const void *b)
{
	return strcmp(((const struct key_input *)a)->role,
		      ((const struct key_input *)b)->role);
}

int plan_cache_key(const struct step *s, const char *params_json,
		   const struct key_input *inputs, size_t ninputs,
		   const char *cwd, const char *path_env,
		   char out[DIGEST_HEX_LEN + 1], struct err *err)
{
	struct buf b = BUF_INIT;
	struct key_input *in = NULL;
	char **env = NULL;
	char *prog = NULL;
	struct digest d;
	int rc = 0;

	buf_init(&b);
	buf_adds(&b, "anneal-cache-key 1\n");
	put(&b, "kind", s->kind);
	for (size_t i = 0; i < s->argc; i++)
		put(&b, "arg", s->argv[i]);
	env = xcalloc(s->nenv + 1, sizeof(*env));
	for (size_t i = 0; i < s->nenv; i++)
		env[i] = xasprintf("%s=%s", s->env[i].key, s->env[i].value);
	qsort(env, s->nenv, sizeof(*env), cmp_str);
	for (size_t i = 0; i < s->nenv; i++)
		put(&b, "env", env[i]);
	put(&b, "params", params_json ? params_json : "{}");
	in = xcalloc(ninputs + 1, sizeof(*in));
	if (ninputs) {
		memcpy(in, inputs, ninputs * sizeof(*in));
		qsort(in, ninputs, sizeof(*in), cmp_input);
	}
	for (size_t i = 0; i < ninputs; i++) {
		put(&b, "input", in[i].role);
		put(&b, "digest", in[i].digest);
	}
	for (size_t i = 0; i < s->noutputs; i++) {
		put(&b, "output", s->outputs[i].name);
		put(&b, "type", artifact_type_name(s->outputs[i].type));
	}
	prog = plan_which(s->argv[0], cwd, path_env);
	for (size_t i = 0; i < s->argc; i++) {
		char hex[DIGEST_HEX_LEN + 1];
		char *path = NULL;
		struct stat st;

		if (i == 0)
			path = prog ? xstrdup(prog) : NULL;
		else if (!strstr(s->argv[i], "${") && *s->argv[i])
			path = s->argv[i][0] == '/' ? xstrdup(s->argv[i])
						    : fs_join(cwd, s->argv[i]);
		if (!path)
			continue;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			rc = file_identity(path, &st, hex, err);
			if (rc) {
				free(path);
				goto done;
			}
			buf_printf(&b, "file %zu ", i);
			put(&b, "content", hex);
		}
		free(path);
	}
	sha256_buf(b.ptr, b.len, &d);
	digest_hex(&d, out);
done:
	for (size_t i = 0; env && i < s->nenv; i++)
		free(env[i]);
	free(env);
	free(in);
	free(prog);
	buf_free(&b);
	return rc;
}
