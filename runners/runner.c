/* runners/runner.c — what every runner shares: see runner.h. */
#include "runners/runner.h"

void runner_free(struct runner *r)
{
	if (r)
		r->ops->free(r);
}
