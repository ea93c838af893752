/* cli/main.c — the command table and dispatch (git's builtin table).
 * Each command lives in cli/cmd_<name>.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "cli/cli.h"

#define ANNEAL_VERSION "0.1.0"

static const struct command {
	const char *name;
	cmd_fn fn;
	const char *summary;
} commands[] = {
	{ "init", cmd_init, "create a workspace (.anneal/) in DIR or here" },
	{ "validate", cmd_validate, "check a recipe; print the first problem" },
	{ "plan", cmd_plan, "show the steps a recipe expands to, and which are cached" },
	{ "run", cmd_run, "run a recipe as a DAG of steps" },
	{ "resume", cmd_resume, "finish an interrupted or failed run" },
	{ "status", cmd_status, "show a run and its steps" },
	{ "logs", cmd_logs, "print (or follow) a step's output" },
	{ "cancel", cmd_cancel, "stop a run and its steps" },
	{ "add", cmd_add, "register a file or directory made outside anneal" },
	{ "ls", cmd_ls, "list versioned artifacts" },
	{ "show", cmd_show, "show an artifact: manifest, parents, provenance, metrics" },
	{ "tag", cmd_tag, "give an artifact an alias" },
	{ "lineage", cmd_lineage, "show an artifact's ancestors or descendants" },
	{ "gc", cmd_gc, "remove stored objects that no artifact needs" },
	{ "export", cmd_export, "write an artifact and its lineage to a tar.zst bundle" },
	{ "import", cmd_import, "verify and import a bundle written by export" },
	{ "audit", cmd_audit, "check every stored byte and lineage record" },
	{ "merge", cmd_merge, "merge checkpoints (linear, ties, dare, slerp, ...)" },
	{ "report", cmd_report, "eval scores of every checkpoint a run evaluated" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(*commands))

static void usage(FILE *f)
{
	fprintf(f, "usage: anneal [-C DIR] COMMAND [ARGS]\n\n"
		   "anneal declares, runs, resumes and audits staged model-building pipelines.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nglobal options:\n"
		   "  -C DIR     run as if started in DIR\n"
		   "  --version  print the version\n"
		   "  --help     this text; 'anneal COMMAND --help' for a command\n"
		   "\nexit status: 0 ok, 1 a step failed (or the run was cancelled), 2 usage or\n"
		   "invalid input, 3 system error, 130 interrupted (resumable)\n");
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	const char *cmd = NULL;
	char **rest;
	int nrest = 0;

	cli.is_tty = isatty(STDOUT_FILENO);
	rest = calloc((size_t)argc + 1, sizeof(*rest));
	if (!rest)
		return 3;
	/* -C DIR may come anywhere (before or after the command). */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-C")) {
			if (i + 1 >= argc) {
				free(rest);
				return cli_usage("-C needs a directory");
			}
			cli.dir = argv[++i];
		} else if (!strncmp(argv[i], "-C", 2) && argv[i][2]) {
			cli.dir = argv[i] + 2;
		} else if (!strcmp(argv[i], "--")) {
			while (i < argc)
				rest[nrest++] = argv[i++];
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (nrest == 0) {
		usage(stderr);
		free(rest);
		return 2;
	}
	cmd = rest[0];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		free(rest);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("anneal %s\n", ANNEAL_VERSION);
		free(rest);
		return 0;
	}
	cli_install_log_sink();
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(cmd, commands[i].name)) {
			int rc = commands[i].fn(&cli, nrest, rest);
			free(rest);
			return rc;
		}
	{
		const char *names[NCOMMANDS];
		const char *hint;
		for (size_t i = 0; i < NCOMMANDS; i++)
			names[i] = commands[i].name;
		hint = did_you_mean(cmd, names, NCOMMANDS);
		if (hint)
			fprintf(stderr, "anneal: unknown command '%s' (did you mean '%s'?)\n", cmd, hint);
		else
			fprintf(stderr, "anneal: unknown command '%s'; see 'anneal --help'\n", cmd);
	}
	free(rest);
	return 2;
}
