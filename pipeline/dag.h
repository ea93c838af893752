/* pipeline/dag.h — the dependency graph of a run's steps.
 *
 * Nodes are indexes into the caller's step array; edges come from each
 * step's inputs (from_step) and after lists. Built once per run; the
 * scheduler asks for each node's dependencies and dependents. */
#ifndef ANNEAL_DAG_H
#define ANNEAL_DAG_H

#include <stddef.h>

#include "pipeline/step.h"

struct err;

struct dag {
	size_t n;
	size_t **deps;        /* deps[i]: indexes step i waits for (unique) */
	size_t *ndeps;
	size_t **dependents;  /* dependents[i]: indexes waiting for i */
	size_t *ndependents;
	size_t *order;        /* a topological order (stable: recipe order where free) */
};

/* Builds the graph. ERR_INVALID for a reference to an unknown step
 * ("step 'x': depends on unknown step 'y'") or a cycle, named in order:
 * "dependency cycle: a -> b -> c -> a". *out is the caller's (dag_free). */
int dag_build(const struct step *steps, size_t n, struct dag **out,
	      struct err *err);
void dag_free(struct dag *d);

#endif
