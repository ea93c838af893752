/* cli/cmd_validate.c — anneal validate RECIPE [--set K=V]... */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"
#include "cli/cli.h"
#include "pipeline/recipe.h"

int cmd_validate(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "set", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct strv sets = STRV_INIT;
	struct recipe *r = NULL;
	struct err err;
	int c, rc;

	(void)cli;
	err_clear(&err);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			strv_push(&sets, optarg);
			break;
		case 'h':
			printf("usage: anneal validate RECIPE [--set KEY=VALUE]...\n\n"
			       "Parses and checks RECIPE without running anything; prints the first\n"
			       "problem with its file and JSON path, exit 2.\n");
			strv_free(&sets);
			return 0;
		default:
			strv_free(&sets);
			return cli_usage("validate: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1) {
		strv_free(&sets);
		return cli_usage("validate: expected one RECIPE (see 'anneal validate --help')");
	}
	rc = recipe_load(argv[optind], &sets, &r, &err);
	if (rc) {
		rc = cli_fail(&err);
	} else {
		printf("%s: ok (%zu step%s)\n", argv[optind], r->nsteps, r->nsteps == 1 ? "" : "s");
	}
	recipe_free(r);
	strv_free(&sets);
	return rc;
}
