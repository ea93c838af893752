/* cli/cmd_merge.c — anneal merge --method M [--base REF|PATH]
 *                   --model REF|PATH[:WEIGHT]... [--param k=v]...
 *                   [--rule 'GLOB:k=v,...']... [--seed N] [--threads N]
 *                   [--max-shard-size SIZE] [--pass-through-base] [--json] -o DIR
 *
 * Merges checkpoints natively (artifacts/merge_run.h does the work). A
 * model or base is a path (a safetensors file, an index, a directory) or,
 * when no such path exists and a workspace does, an artifact reference
 * (student@3, an alias, a digest prefix) resolved through the catalog: its
 * recorded path when that still holds the stored files, else a checkout
 * from the store under .anneal/store/checkouts/<digest>. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/merge.h"
#include "artifacts/merge_run.h"
#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"

static void usage(void)
{
	printf("usage: anneal merge --method METHOD [--base REF|PATH] --model REF|PATH[:WEIGHT]...\n"
	       "                    [--param K=V]... [--rule 'GLOB:K=V,K=V']... [--seed N]\n"
	       "                    [--threads N] [--max-shard-size SIZE] [--pass-through-base]\n"
	       "                    [--json] -o DIR\n\n"
	       "Merges checkpoints tensor by tensor into DIR (created; must hold no checkpoint),\n"
	       "written whole or not at all. Methods: linear, task_arithmetic, ties,\n"
	       "dare_linear, dare_ties, slerp, model_stock (see docs/merging.md).\n\n"
	       "  --method M            the merge method\n"
	       "  --base X              the base model (every method but linear)\n"
	       "  --model X[:W]         a model, with weight W (default 1); repeat\n"
	       "  --param K=V           a method parameter (density=0.5, t=0.3, ...)\n"
	       "  --rule 'GLOB:K=V,..'  parameters for tensors matching GLOB (first match wins)\n"
	       "  --seed N              the seed of DARE's random drop (default 0)\n"
	       "  --threads N           worker threads (default: one per CPU)\n"
	       "  --max-shard-size S    bytes per output shard: 5GB (default), 500MB, 2GiB, 0 = one file\n"
	       "  --pass-through-base   copy the base's tensor where a model lacks it or\n"
	       "                        disagrees in shape or dtype, instead of failing\n"
	       "  -o, --output DIR      where the merged checkpoint goes\n"
	       "  --json                print the report as JSON\n\n"
	       "X is a path (a .safetensors file, an index, a checkpoint directory) or, in a\n"
	       "workspace, an artifact (NAME, NAME@N, an alias, a digest prefix).\n");
}

/* "5GB", "500MB", "2GiB", "1.5e9", "0": Hugging Face's units (KB, MB, GB
 * decimal; KiB, MiB, GiB binary). */
static int parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *u; double m; } units[] = {
		{ "", 1 }, { "B", 1 },
		{ "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
		{ "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 },
		{ "TiB", 1099511627776.0 },
	};
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v < 0 || *s == '-' || *s == '+')
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++) {
		if (strcasecmp(end, units[i].u))
			continue;
		v *= units[i].m;
		if (v >= 18446744073709551616.0 || v != floor(v))
			return -1;
		*out = (uint64_t)v;
		return 0;
	}
	return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* PATH[:WEIGHT]: a path that exists is taken whole (it may hold ':'). */
static int split_weight(const char *arg, char **ref, double *w, int *has_w,
			struct err *err)
{
	const char *colon = strrchr(arg, ':');
	char *end;

	*has_w = 0;
	*w = 1.0;
	if (!colon || fs_exists(arg)) {
		*ref = xstrdup(arg);
		return 0;
	}
	errno = 0;
	*w = strtod(colon + 1, &end);
	if (colon[1] == '\0' || *end || errno || !isfinite(*w) || colon == arg)
		return err_set(err, ERR_INVALID, "--model '%s': expected PATH[:WEIGHT] with a "
			       "finite number as WEIGHT, not '%s'", arg, colon + 1);
	*ref = xstrndup(arg, (size_t)(colon - arg));
	*has_w = 1;
	return 0;
}

/* The workspace, opened the first time a reference needs it. */
struct resolver {
	struct cli *cli;
	int tried;
	struct workspace *ws;
	struct state *st;
	struct store *store;
};

static void resolver_free(struct resolver *rv)
{
	store_free(rv->store);
	state_close(rv->st);
	workspace_free(rv->ws);
}

/* 1 when path holds the artifact's files as the store's own inodes
 * (what `anneal add` and step outputs leave): nothing to re-hash. */
static int holds_stored_files(struct store *s, const struct manifest *m,
			      const char *path)
{
	int ok = 1;

	for (size_t i = 0; ok && i < m->n; i++) {
		const struct manifest_entry *e = &m->v[i];
		char *f = strcmp(e->path, ".") ? fs_join(path, e->path) : xstrdup(path);
		char *obj = store_object_path(s, &e->digest);
		struct stat fs, os;

		ok = lstat(f, &fs) == 0 && S_ISREG(fs.st_mode) && stat(obj, &os) == 0 &&
		     fs.st_dev == os.st_dev && fs.st_ino == os.st_ino &&
		     (uint64_t)fs.st_size == e->size;
		free(obj);
		free(f);
	}
	return ok;
}

/* How an input is named in the output's metadata: as given, except that
 * an absolute path under the current directory is named relative to it.
 * A merge step runs in the workspace root and gets its inputs as absolute
 * paths; naming them from there keeps the output's bytes (and digest)
 * the same wherever the workspace lives. Returns a pointer into arg. */
static const char *label_for(const char *arg, const char *cwd)
{
	size_t n = strlen(cwd);

	if (arg[0] == '/' && n > 1 && !strncmp(arg, cwd, n) && arg[n] == '/' && arg[n + 1])
		return arg + n + 1;
	return arg;
}

static int resolve(struct resolver *rv, const char *what, const char *arg,
		   char **path, char **digest, struct err *err)
{
	struct artifact_info a = { 0 };
	struct manifest m = { 0 };
	char *text = NULL, *root = NULL;
	int64_t id;
	int rc;

	*digest = NULL;
	if (fs_exists(arg)) {
		*path = xstrdup(arg);
		return 0;
	}
	if (!rv->tried) {
		rv->tried = 1;
		rc = workspace_find(rv->cli->dir, &rv->ws, err);
		if (rc == ERR_NOTFOUND) {
			rv->ws = NULL;
			err_clear(err);
		} else if (rc || (rc = state_open(rv->ws->db_path, &rv->st, err))) {
			return rc;
		} else {
			root = fs_join(rv->ws->dir, "store");
			rc = store_open(&rv->store, root, err);
			free(root);
			root = NULL;
			if (rc)
				return rc;
		}
	}
	if (!rv->ws)
		return err_set(err, ERR_INVALID, "%s '%s': no such file or directory (and no "
			       "workspace to look it up in as an artifact)", what, arg);
	rc = catalog_resolve(rv->st, arg, &id, err);
	if (rc) {
		char msg[ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return err_set(err, rc == ERR_SYSTEM ? ERR_SYSTEM : ERR_INVALID,
			       "%s '%s': no such file or directory, nor artifact: %s",
			       what, arg, msg);
	}
	if ((rc = catalog_get(rv->st, id, &a, err)) ||
	    (rc = catalog_manifest(rv->st, id, &text, err)) ||
	    (rc = manifest_parse(text, &m, err)))
		goto done;
	*digest = xstrdup(a.digest);
	if (a.path && holds_stored_files(rv->store, &m, a.path)) {
		*path = xstrdup(a.path);
		goto done;
	}
	root = xasprintf("%s/store/checkouts", rv->ws->dir);
	*path = xasprintf("%s/%s", root, a.digest);
	if (!fs_exists(*path) && !(rc = fs_mkdir_p(root, 0700, err)))
		rc = store_checkout(rv->store, &m, *path, err);
	if (rc) {
		free(*path);
		*path = NULL;
	}
done:
	if (rc) {
		free(*digest);
		*digest = NULL;
		err_prefix(err, "%s '%s'", what, arg);
	}
	free(root);
	free(text);
	manifest_free(&m);
	artifact_info_clear(&a);
	return rc;
}

static void gb(uint64_t b, char *out, size_t size)
{
	if (b >= 1000000000ULL)
		snprintf(out, size, "%.1f GB", b / 1e9);
	else if (b >= 1000000ULL)
		snprintf(out, size, "%.1f MB", b / 1e6);
	else if (b >= 1000ULL)
		snprintf(out, size, "%.1f kB", b / 1e3);
	else
		snprintf(out, size, "%" PRIu64 " B", b);
}

static void print_report(const struct merge_run_report *r, const char *method,
			 size_t ninputs, const char *dir, int json)
{
	char bytes[32], rate[32];
	double secs = r->seconds > 1e-9 ? r->seconds : 1e-9;

	if (json) {
		struct buf b = BUF_INIT;
		buf_adds(&b, "{\"method\": ");
		buf_add_json_str(&b, method);
		buf_adds(&b, ", \"output\": ");
		buf_add_json_str(&b, dir);
		buf_printf(&b, ", \"inputs\": %zu, \"tensors\": %zu, \"merged\": %zu, "
			   "\"copied\": %zu, \"from_base\": %zu, \"left_out\": %zu, "
			   "\"shards\": %zu, \"threads\": %d, \"bytes_read\": %" PRIu64
			   ", \"bytes_written\": %" PRIu64 ", \"seconds\": %.6f, "
			   "\"peak_rss\": %" PRIu64 ", \"scratch_bound\": %" PRIu64 "}\n",
			   ninputs, r->tensors, r->merged, r->copied, r->from_base, r->left_out,
			   r->nshards, r->threads, r->bytes_read, r->bytes_written, r->seconds,
			   r->peak_rss, r->scratch_bound);
		fputs(buf_str(&b), stdout);
		buf_free(&b);
		return;
	}
	gb(r->bytes_read, bytes, sizeof(bytes));
	gb((uint64_t)((double)r->bytes_read / secs), rate, sizeof(rate));
	printf("merged %zu models (%s) into %s: %zu tensors", ninputs, method, dir, r->tensors);
	if (r->from_base || r->left_out)
		printf(" (%zu from the base, %zu left out)", r->from_base, r->left_out);
	printf(", %s in %.1f s (%s/s), peak RSS %.0f MiB\n", bytes, r->seconds, rate,
	       (double)r->peak_rss / 1048576.0);
}

int cmd_merge(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "method", required_argument, NULL, 'm' },
		{ "base", required_argument, NULL, 'b' },
		{ "model", required_argument, NULL, 'M' },
		{ "param", required_argument, NULL, 'p' },
		{ "rule", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 't' },
		{ "max-shard-size", required_argument, NULL, 'S' },
		{ "pass-through-base", no_argument, NULL, 'P' },
		{ "output", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct resolver rv = { .cli = cli };
	struct merge_spec *spec = NULL;
	struct merge_run_opts o = { 0 };
	struct merge_run_input base = { 0 }, *models = NULL;
	struct merge_run_report rep;
	struct strv margs = STRV_INIT, params = STRV_INIT, rules = STRV_INIT;
	const char *method = NULL, *base_arg = NULL;
	char *base_ref = NULL;
	char **refs = NULL;
	char cwd[PATH_MAX];
	uint64_t seed = 0, shard = MERGE_RUN_DEFAULT_SHARD;
	enum merge_method m;
	struct err err;
	int c, rc = 0, json = 0, any_weight = 0;
	long long threads = 0;

	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': method = optarg; break;
		case 'b':
			if (base_arg) {
				rc = cli_usage("merge: --base given twice");
				goto done;
			}
			base_arg = optarg;
			break;
		case 'M': strv_push(&margs, optarg); break;
		case 'p': strv_push(&params, optarg); break;
		case 'r': strv_push(&rules, optarg); break;
		case 's':
			if (parse_u64(optarg, &seed)) {
				rc = cli_usage("merge: --seed must be an integer in [0, 2^64), not '%s'",
					       optarg);
				goto done;
			}
			break;
		case 't':
			if (parse_int(optarg, 1, 1024, &threads)) {
				rc = cli_usage("merge: --threads must be an integer in [1, 1024], not '%s'",
					       optarg);
				goto done;
			}
			break;
		case 'S':
			if (parse_size(optarg, &shard)) {
				rc = cli_usage("merge: --max-shard-size must be a size in bytes (5GB, "
					       "500MB, 2GiB, 0 for one file), not '%s'", optarg);
				goto done;
			}
			break;
		case 'P': o.pass_through_base = 1; break;
		case 'o': o.out_dir = optarg; break;
		case 'j': json = 1; break;
		case 'h':
			usage();
			goto done;
		case ':':
			rc = cli_usage("merge: option '%s' needs a value", argv[optind - 1]);
			goto done;
		default:
			rc = cli_usage("merge: unknown option '%s' (see 'anneal merge --help')",
				       argv[optind - 1]);
			goto done;
		}
	}
	if (optind != argc) {
		rc = cli_usage("merge: unexpected argument '%s' (models are given with --model)",
			       argv[optind]);
		goto done;
	}
	if (!method) {
		rc = cli_usage("merge: --method is required (linear, task_arithmetic, ties, "
			       "dare_linear, dare_ties, slerp, model_stock)");
		goto done;
	}
	if (!o.out_dir) {
		rc = cli_usage("merge: -o DIR is required");
		goto done;
	}
	if (margs.n == 0) {
		rc = cli_usage("merge: no --model given");
		goto done;
	}
	if ((rc = merge_method_parse(method, &m, &err)))
		goto fail;
	spec = merge_spec_new(m);
	merge_spec_set_seed(spec, seed);
	for (size_t i = 0; i < params.n; i++)
		if ((rc = merge_spec_set(spec, params.v[i], &err))) {
			err_prefix(&err, "--param '%s'", params.v[i]);
			goto fail;
		}
	for (size_t i = 0; i < rules.n; i++) {
		char *colon = strrchr(rules.v[i], ':');
		char *glob;
		if (!colon || colon == rules.v[i] || !colon[1]) {
			rc = err_set(&err, ERR_INVALID, "--rule '%s': expected 'GLOB:K=V,K=V'",
				     rules.v[i]);
			goto fail;
		}
		glob = xstrndup(rules.v[i], (size_t)(colon - rules.v[i]));
		rc = merge_spec_add_rule(spec, glob, colon + 1, &err);
		free(glob);
		if (rc)
			goto fail;
	}

	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	models = xcalloc(margs.n, sizeof(*models));
	refs = xcalloc(margs.n, sizeof(*refs));
	for (size_t i = 0; i < margs.n; i++) {
		int has_w;
		if ((rc = split_weight(margs.v[i], &refs[i], &models[i].weight, &has_w, &err)))
			goto fail;
		any_weight |= has_w;
		models[i].label = label_for(refs[i], cwd);
	}
	if (any_weight && (m == MERGE_SLERP || m == MERGE_MODEL_STOCK)) {
		rc = err_set(&err, ERR_INVALID, "method '%s' takes no model weights (slerp "
			     "uses t; model_stock computes its own)", method);
		goto fail;
	}
	o.spec = spec;
	o.models = models;
	o.nmodels = margs.n;
	o.base = base_arg ? &base : NULL;
	o.threads = (int)threads;
	o.max_shard_bytes = shard;
	base.label = base_arg ? label_for(base_arg, cwd) : NULL;
	base.path = base_arg;
	/* What can be refused without reading anything, before a checkout. */
	if ((rc = merge_run_check(&o, &err)))
		goto fail;
	if (base_arg) {
		char *d;
		if ((rc = resolve(&rv, "--base", base_arg, &base_ref, &d, &err)))
			goto fail;
		base.path = base_ref;
		base.digest = d;
	}
	for (size_t i = 0; i < margs.n; i++) {
		char *p, *d;
		if ((rc = resolve(&rv, "--model", refs[i], &p, &d, &err)))
			goto fail;
		models[i].path = p;
		models[i].digest = d;
	}
	if ((rc = merge_run(&o, &rep, &err)))
		goto fail;
	print_report(&rep, method, o.nmodels + (base_arg != NULL), o.out_dir, json);
	goto done;
fail:
	rc = cli_fail(&err);
done:
	for (size_t i = 0; models && i < margs.n; i++) {
		free((char *)models[i].path);
		free((char *)models[i].digest);
		free(refs[i]);
	}
	free(models);
	free(refs);
	free(base_ref);
	free((char *)base.digest);
	strv_free(&margs);
	strv_free(&params);
	strv_free(&rules);
	merge_spec_free(spec);
	resolver_free(&rv);
	return rc;
}
