/* runners/factory.c — a runner from its spec, the text a run records
 * (runs.runner) so that `resume` drives it with the runner it started
 * with: "local", "slurm", or the recipe's / workspace's object
 *
 *   {"type": "slurm", "partition": "ascend", "account": "pangu", "qos":
 *    "normal", "gres": "npu", "sbatch": ["--exclusive"], "requeue": true,
 *    "signal_grace": "5m"}
 *
 * (pipeline/recipe.c checks these fields when the recipe is read). */
#include "runners/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/json.h"
#include "runners/slurm.h"

int runner_spec_type(const char *spec, char *type, size_t size)
{
	struct jnode *root = NULL;
	const struct jnode *t;
	struct err err;
	int rc = 0;

	if (!spec || !*spec || !strcmp(spec, "local") || !strcmp(spec, "slurm")) {
		snprintf(type, size, "%s", spec && *spec ? spec : "local");
		return 0;
	}
	if (json_parse(spec, strlen(spec), 0, &root, &err))
		return ERR_INVALID;
	t = root->type == J_STRING ? root
	    : root->type == J_OBJECT ? json_get(root, "type") : NULL;
	if (t && t->type == J_STRING)
		snprintf(type, size, "%s", t->str);
	else
		rc = ERR_INVALID;
	json_free(root);
	return rc;
}

static const char *str_of(const struct jnode *o, const char *key)
{
	const struct jnode *v = json_get(o, key);

	return v && v->type == J_STRING ? v->str : NULL;
}

int runner_from_spec(const char *spec, const char *shim_path,
		     struct runner **out, struct err *err)
{
	struct slurm_options so = { 0 };
	struct jnode *root = NULL;
	struct strv extra = STRV_INIT;
	const struct jnode *v;
	char type[32];
	int rc;

	if (runner_spec_type(spec, type, sizeof(type)))
		return err_set(err, ERR_INVALID, "unreadable runner spec '%s'", spec);
	if (!strcmp(type, "local"))
		return local_runner_new(shim_path, out, err);
	if (strcmp(type, "slurm"))
		return err_set(err, ERR_INVALID, "unknown runner '%s' (local or slurm)", type);
	if (spec[0] == '{' && (rc = json_parse(spec, strlen(spec), 0, &root, err)))
		return rc;
	if (root) {
		so.partition = str_of(root, "partition");
		so.account = str_of(root, "account");
		so.qos = str_of(root, "qos");
		so.gres = str_of(root, "gres");
		if ((v = json_get(root, "sbatch")) && v->type == J_ARRAY) {
			for (size_t i = 0; i < v->nkids; i++)
				if (v->kids[i].type == J_STRING)
					strv_push(&extra, v->kids[i].str);
			so.sbatch_extra = extra.n ? extra.v : NULL;
		}
		if ((v = json_get(root, "requeue")) && v->type == J_BOOL)
			so.requeue = v->boolean;
		if ((v = json_get(root, "signal_grace"))) {
			long long s = 0;
			if (v->type == J_NUMBER && v->is_int)
				s = v->inum;
			else if (v->type == J_STRING && parse_duration(v->str, 86400, &s))
				s = 0;
			so.signal_grace_s = (int)s;
		}
	}
	rc = slurm_runner_new(&so, out, err);
	strv_free(&extra);
	json_free(root);
	return rc;
}
