/* pipeline/step.c — see step.h. */
#include "pipeline/step.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"

static const char *const type_names[] = {
	[ART_CHECKPOINT] = "checkpoint",
	[ART_DATASET] = "dataset",
	[ART_REPORT] = "report",
};

const char *artifact_type_name(enum artifact_type t)
{
	return (unsigned)t < sizeof(type_names) / sizeof(*type_names)
		? type_names[t] : "?";
}

int artifact_type_parse(const char *s, enum artifact_type *out)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(*type_names); i++)
		if (!strcmp(s, type_names[i])) {
			*out = (enum artifact_type)i;
			return 0;
		}
	return ERR_INVALID;
}

void step_clear(struct step *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->kind);
	free(s->stage);
	for (size_t i = 0; i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	for (size_t i = 0; i < s->nenv; i++) {
		free(s->env[i].key);
		free(s->env[i].value);
	}
	free(s->env);
	for (size_t i = 0; i < s->ninputs; i++) {
		free(s->inputs[i].role);
		free(s->inputs[i].from_step);
		free(s->inputs[i].from_output);
		free(s->inputs[i].ref);
		free(s->inputs[i].edge_role);
	}
	free(s->inputs);
	for (size_t i = 0; i < s->noutputs; i++) {
		free(s->outputs[i].name);
		free(s->outputs[i].artifact);
	}
	free(s->outputs);
	for (size_t i = 0; i < s->nafter; i++)
		free(s->after[i]);
	free(s->after);
	free(s->params_json);
	free(s->runner_json);
	memset(s, 0, sizeof(*s));
}

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void step_copy(struct step *d, const struct step *s)
{
	memset(d, 0, sizeof(*d));
	d->id = dup0(s->id);
	d->kind = dup0(s->kind);
	d->stage = dup0(s->stage);
	d->argc = s->argc;
	d->argv = xcalloc(s->argc + 1, sizeof(char *));
	for (size_t i = 0; i < s->argc; i++)
		d->argv[i] = xstrdup(s->argv[i]);
	d->nenv = s->nenv;
	d->env = xcalloc(s->nenv, sizeof(*d->env));
	for (size_t i = 0; i < s->nenv; i++) {
		d->env[i].key = xstrdup(s->env[i].key);
		d->env[i].value = xstrdup(s->env[i].value);
	}
	d->ninputs = s->ninputs;
	d->inputs = xcalloc(s->ninputs, sizeof(*d->inputs));
	for (size_t i = 0; i < s->ninputs; i++) {
		d->inputs[i].role = xstrdup(s->inputs[i].role);
		d->inputs[i].from_step = dup0(s->inputs[i].from_step);
		d->inputs[i].from_output = dup0(s->inputs[i].from_output);
		d->inputs[i].ref = dup0(s->inputs[i].ref);
		d->inputs[i].artifact = s->inputs[i].artifact;
		d->inputs[i].edge_role = dup0(s->inputs[i].edge_role);
		d->inputs[i].has_weight = s->inputs[i].has_weight;
		d->inputs[i].weight = s->inputs[i].weight;
	}
	d->noutputs = s->noutputs;
	d->outputs = xcalloc(s->noutputs, sizeof(*d->outputs));
	for (size_t i = 0; i < s->noutputs; i++) {
		d->outputs[i].name = xstrdup(s->outputs[i].name);
		d->outputs[i].type = s->outputs[i].type;
		d->outputs[i].artifact = dup0(s->outputs[i].artifact);
	}
	d->nafter = s->nafter;
	d->after = xcalloc(s->nafter, sizeof(char *));
	for (size_t i = 0; i < s->nafter; i++)
		d->after[i] = xstrdup(s->after[i]);
	d->res = s->res;
	d->retry = s->retry;
	d->timeout_s = s->timeout_s;
	d->params_json = dup0(s->params_json);
	d->runner_json = dup0(s->runner_json);
}

int artifact_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789_.-") == n;
}
