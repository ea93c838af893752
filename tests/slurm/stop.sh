#!/bin/bash
# tests/slurm/stop.sh [--clean] [RUNDIR] — stop the cluster start.sh started
# in RUNDIR (default /tmp/anneal-slurm): exactly the daemons in its pid
# files, then whatever the cluster's jobs left behind, then munged; remove
# the /etc/hosts line start.sh added, if any. Logs stay in RUNDIR/log;
# --clean removes RUNDIR entirely. Safe to run when nothing is running.
#
# Facts cited as "notes" are from shared/notes/slurm.md.
# shellcheck disable=SC2086 # $pids & co. are lists of numbers, split on purpose
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

CLEAN=0
ARG=
for a in "$@"; do
	case $a in
	--clean) CLEAN=1 ;;
	-h | --help) sed -n '2,7p' "$0"; exit 0 ;;
	-*) die "unknown option $a" ;;
	*) ARG=$a ;;
	esac
done
[ "$(id -u)" = 0 ] || die "must run as root"
d=${ARG:-$DEFAULT_RUNDIR}
if [ ! -d "$d" ]; then say "$d: nothing to stop"; exit 0; fi
RUNDIR=$(rundir_of "$d")

exec 9>"$RUNDIR/lock"
flock -w 120 9 || die "another start.sh/stop.sh holds $RUNDIR/lock"

# term_wait TIMEOUT_S PID...: SIGTERM, wait, SIGKILL what is left, wait.
term_wait() {
	local t=$1 p
	shift
	[ $# -gt 0 ] || return 0
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	wait_gone "$t" "$@" && return 0
	for p in "$@"; do
		alive "$p" || continue
		say "$p ($(cat "/proc/$p/comm" 2>/dev/null)) survived SIGTERM for ${t}s: SIGKILL"
		kill -KILL "$p" 2>/dev/null || true
	done
	wait_gone 10 "$@" || say "warning: still alive after SIGKILL:$(for p in "$@"; do alive "$p" && printf ' %s' "$p"; done)"
}

# daemon_pids NAME...: pids of our daemons still alive (pid file + comm).
daemon_pids() {
	local n
	for n in "$@"; do our_pid "$RUNDIR" "$n" || true; done
}

# job_pids: processes of this cluster's jobs. slurmstepd and every job
# process carry SLURM_CONF=<our slurm.conf> in their environment (slurmstepd
# sets it even with --export=NONE; measured), job processes also
# SLURM_JOB_ID. proctrack/linuxproc leaves a job's background orphans
# running after the job ends (notes), and killing slurmd leaves its
# slurmstepds and their jobs, so find them by environment, never by name.
# Our own process and its ancestors are skipped (a caller may have sourced
# RUNDIR/env, or even run us from inside a job).
job_pids() {
	local conf="SLURM_CONF=$RUNDIR/slurm.conf" skip=" " p e
	p=$$
	while [ -n "$p" ] && [ "$p" -gt 1 ]; do
		skip="$skip$p "
		p=$(ppid_of "$p")
	done
	for e in /proc/[0-9]*/environ; do
		p=${e#/proc/}
		p=${p%/environ}
		case $skip in *" $p "*) continue ;; esac
		[ "$p" = "$BASHPID" ] && continue
		alive "$p" || continue
		# tr: environ is NUL-separated; grep -x matches whole entries.
		tr '\0' '\n' 2>/dev/null <"$e" | grep -qxF "$conf" || continue
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ] ||
			tr '\0' '\n' 2>/dev/null <"$e" | grep -q '^SLURM_JOB_ID='; then
			printf '%s\n' "$p"
		fi
	done
}

stopped=
# 1. The Slurm daemons first, so that nothing reschedules or relaunches.
pids=$(daemon_pids slurmctld slurmd)
if [ -n "$pids" ]; then
	term_wait 20 $pids
	stopped="$stopped slurmctld/slurmd"
fi

# 2. Leftovers of jobs: slurmstepds, job processes, orphans. Twice, for
#    children forked while the first round was dying. KillWait=5 is what
#    Slurm itself gives a job between SIGTERM and SIGKILL.
#    slurmstepd blocks SIGTERM (measured: it outlives any grace), and with
#    the cluster going away it has nothing to finish: SIGKILL it at once.
for _ in 1 2; do
	pids=$(job_pids)
	[ -n "$pids" ] || break
	say "killing leftover job processes:$(for p in $pids; do printf ' %s(%s)' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
	procs=
	for p in $pids; do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ]; then
			kill -KILL "$p" 2>/dev/null || true
		else
			procs="$procs $p"
		fi
	done
	term_wait 5 $procs
	wait_gone 5 $pids || true
done

# 3. munged last: slurmd talks to slurmctld through it until the end.
pids=$(daemon_pids munged)
if [ -n "$pids" ]; then
	term_wait 10 $pids
	stopped="$stopped munged"
fi
for n in $DAEMONS; do rm -f "$RUNDIR/$n.pid"; done

# 4. The /etc/hosts line start.sh added: remove exactly one copy of it (the
#    last), nothing else. Rewritten in place (cat >), not renamed, because
#    /etc/hosts is often a bind mount in containers.
if [ -s "$RUNDIR/hosts-line" ]; then
	line=$(cat "$RUNDIR/hosts-line")
	if grep -qxF "$line" /etc/hosts; then
		tmp=$(mktemp)
		awk -v l="$line" '{ a[NR] = $0; if ($0 == l) last = NR }
			END { for (i = 1; i <= NR; i++) if (i != last) print a[i] }' /etc/hosts >"$tmp"
		cat "$tmp" >/etc/hosts
		rm -f "$tmp"
		say "removed '$line' from /etc/hosts"
	fi
	rm -f "$RUNDIR/hosts-line"
fi

say "stopped${stopped:- nothing (not running)} in $RUNDIR"

if [ "$CLEAN" = 1 ]; then
	exec 9>&-
	rm -rf "$RUNDIR"
	say "removed $RUNDIR"
fi
