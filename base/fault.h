/* base/fault.h — fault injection at named points (SQLite's discipline).
 *
 * ANNEAL_FAULT="point[:N][,point[:N]...]" makes the process kill itself
 * with SIGKILL the Nth time (default 1st) it reaches that point, so tests
 * can kill anneal inside exact windows (between a step's exit and its
 * recording, mid-ingest, ...) instead of hoping a timed kill lands there.
 * Unset, a fault point costs one branch. */
#ifndef ANNEAL_FAULT_H
#define ANNEAL_FAULT_H

void fault_point(const char *name);

#endif
