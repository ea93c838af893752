/* engine/main.c — bin/anneal-engine, the reference training engine: a
 * tiny character model of multi-digit addition trained on CPU, written
 * to the engine contract (docs/engine-contract.md) so that a PyTorch or
 * MindSpeed launcher honouring the same contract can take its place.
 *
 *   anneal-engine SUBCOMMAND [--config FILE]
 *   anneal-engine --help | help SUBCOMMAND
 *
 * Everything a step needs comes from its environment (ANNEAL_PARAMS,
 * ANNEAL_INPUT_<ROLE>, ANNEAL_OUTPUT_<NAME>, ANNEAL_EVENTS, ANNEAL_CKPT_DIR,
 * ANNEAL_RESUME_FROM); --config replaces ANNEAL_PARAMS for manual use.
 * Exit: 0 done, 2 invalid config or input, 75 interrupted by SIGTERM
 * (checkpoint saved), 1 anything else; one line on stderr says why. This
 * file is the only one that prints or exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "engine/cmd.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "pipeline/json.h"

static const struct {
	const char *name;
	int (*fn)(const struct cmd_ctx *x, struct err *err);
	const char *summary;
	const char *io;
} cmds[] = {
	{ "gen-data", cmd_gen_data, "generate the synthetic datasets",
	  "outputs corpus, reasoning, prompts, eval" },
	{ "pretrain", cmd_pretrain, "train a model (fresh, or from init) on a dataset",
	  "inputs data [, init]; output model" },
	{ "sft", cmd_sft, "fine-tune a model on a dataset (loss on completions)",
	  "inputs init, data; output model" },
	{ "distill", cmd_distill,
	  "one iteration of model-aware distillation from a teacher",
	  "inputs init, teacher, data; outputs model, data" },
	{ "rl", cmd_rl, "group-normalised policy gradient with multi-source rewards",
	  "inputs policy, data [, reward]; output model" },
	{ "dual-sft", cmd_dual_sft, "fast/slow/auto fine-tuning (dual system)",
	  "inputs init, data; output model" },
	{ "eval", cmd_eval, "greedy accuracy in fast, slow and auto modes",
	  "inputs model, data; output report" },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char *sub;   /* for messages */

static void sink(enum log_level level, const char *msg, void *ctx)
{
	const char *step = getenv("ANNEAL_STEP_ID");

	(void)ctx;
	if (level == LOG_DEBUG && !getenv("ANNEAL_DEBUG"))
		return;
	fprintf(stderr, "anneal-engine%s%s%s: %s%s\n", step && *step ? " [" : "",
		step && *step ? step : "", step && *step ? "]" : "",
		level >= LOG_WARN ? "warning: " : "", msg);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: anneal-engine SUBCOMMAND [--config FILE]\n"
		   "       anneal-engine help SUBCOMMAND\n\n"
		   "The reference engine of anneal: a tiny character model of addition,\n"
		   "trained on CPU, following the engine contract (ANNEAL_* variables).\n\n"
		   "subcommands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-10s %s\n  %-10s   (%s)\n", cmds[i].name, cmds[i].summary, "",
			cmds[i].io);
	fprintf(f, "\nexit: 0 done, 2 invalid config or input, 75 interrupted (resumable), "
		   "1 other failure\n");
}

static const char *type_name(enum ecfg_type t)
{
	switch (t) {
	case ECFG_INT: return "integer";
	case ECFG_NUM: return "number";
	case ECFG_ENUM: return "string";
	case ECFG_INTLIST: return "integers";
	case ECFG_REWARDS: return "object";
	}
	return "?";
}

static void help_cmd(const struct ecfg_cmd *c, size_t i)
{
	printf("anneal-engine %s: %s\n  %s\n\nconfig keys ($ANNEAL_PARAMS):\n",
	       c->name, cmds[i].summary, cmds[i].io);
	for (size_t k = 0; k < c->nkeys; k++) {
		const struct ecfg_key *key = &c->keys[k];

		printf("  %-20s %-8s default %s", key->name, type_name(key->type), key->def);
		if (key->type == ECFG_ENUM)
			printf(" (%s)", key->choices);
		else if (key->type == ECFG_NUM)
			printf(" [%g, %g]", key->min, key->max);
		else if (key->type != ECFG_REWARDS)
			printf(" [%.0f, %.0f]", key->min, key->max);
		printf("\n  %-20s %s\n", "", key->help);
	}
}

static size_t find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return i;
	return NCMDS;
}

static int unknown(const char *name)
{
	const char *names[NCMDS], *dym;

	for (size_t i = 0; i < NCMDS; i++)
		names[i] = cmds[i].name;
	dym = did_you_mean(name, names, NCMDS);
	if (dym)
		fprintf(stderr, "anneal-engine: unknown subcommand '%s' (did you mean '%s'?)\n",
			name, dym);
	else
		fprintf(stderr, "anneal-engine: unknown subcommand '%s' (see anneal-engine --help)\n",
			name);
	return ENGINE_EXIT_INVALID;
}

int main(int argc, char **argv)
{
	const char *config = NULL, *params;
	struct jnode *cfg = NULL;
	struct contract ct;
	struct cmd_ctx x;
	struct err err;
	size_t i;
	int rc, status;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? ENGINE_EXIT_INVALID : 0;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		i = find_cmd(argv[2]);
		if (i == NCMDS)
			return unknown(argv[2]);
		help_cmd(ecfg_find(argv[2]), i);
		return 0;
	}
	sub = argv[1];
	i = find_cmd(sub);
	if (i == NCMDS)
		return unknown(sub);
	for (int a = 2; a < argc; a++) {
		if (!strcmp(argv[a], "--config") && a + 1 < argc) {
			config = argv[++a];
		} else {
			fprintf(stderr, "anneal-engine %s: unexpected argument '%s' "
				"(usage: anneal-engine %s [--config FILE])\n", sub, argv[a], sub);
			return ENGINE_EXIT_INVALID;
		}
	}
	log_set_sink(sink, NULL);
	contract_signals();
	err_clear(&err);
	memset(&ct, 0, sizeof(ct));
	ct.events_fd = -1;

	params = config ? config : getenv("ANNEAL_PARAMS");
	rc = contract_params(config, &cfg, &err);
	if (!rc) {
		rc = ecfg_check(ecfg_find(sub), cfg, "", &err);
		if (rc)
			err_prefix(&err, "config '%s'", params);
	}
	if (!rc)
		rc = contract_open(&ct, sub, &err);
	if (!rc) {
		x.c = ecfg_find(sub);
		x.cfg = cfg;
		x.ct = &ct;
		rc = cmds[i].fn(&x, &err);
	}
	status = contract_exit_status(rc);
	if (rc)
		fprintf(stderr, "anneal-engine %s: %s%s\n", sub,
			rc == ERR_INTERRUPTED ? "" : "error: ", err.msg);
	contract_close(&ct);
	json_free(cfg);
	return status;
}
