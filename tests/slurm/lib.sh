# tests/slurm/lib.sh — helpers shared by start.sh, stop.sh and test_smoke.sh
# (sourced, bash). Facts cited as "notes" are from shared/notes/slurm.md.

# Daemons live in /usr/sbin, which a non-login root shell may lack.
PATH=$PATH:/usr/sbin:/sbin
export PATH

DEFAULT_RUNDIR=/tmp/anneal-slurm
# The daemons we start, in start order (stop goes in reverse for the
# Slurm ones, munged last: slurmd needs it to talk to slurmctld).
DAEMONS="munged slurmctld slurmd"

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

now_ms() { date +%s%3N; }

# rundir_of ARG: absolute path of a run directory (created), refusing names
# slurm.conf cannot hold (it has no quoting) and "/".
rundir_of() {
	local d=${1:-$DEFAULT_RUNDIR}
	case $d in
	*[!A-Za-z0-9._/+-]*) die "run directory '$d': use only [A-Za-z0-9._/+-]" ;;
	esac
	mkdir -p "$d" || die "cannot create $d"
	d=$(cd "$d" && pwd -P) || die "cannot enter $d"
	[ "$d" != / ] || die "run directory cannot be /"
	printf '%s\n' "$d"
}

# proc_state PID: the state letter from /proc/PID/stat (empty if no such
# process). comm may hold spaces or ')', so cut after the last ')'.
proc_state() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	printf '%s' "${s%% *}"
}

# alive PID: the process exists and is not a zombie. Notes: PID 1 here does
# not reap orphans promptly, so `kill -0` succeeds on zombies — a daemon
# that exited would look alive; state Z (or X) counts as gone.
alive() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
	local st
	st=$(proc_state "$1")
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# our_pid RUNDIR NAME: print the pid recorded in RUNDIR/NAME.pid when that
# process is alive and is still NAME (guards against pid reuse).
our_pid() {
	local f=$1/$2.pid pid
	[ -r "$f" ] || return 1
	read -r pid <"$f" || return 1
	alive "$pid" || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
	printf '%s\n' "$pid"
}

# wait_gone TIMEOUT_S PID...: poll until none of the pids is alive.
wait_gone() {
	local deadline=$(($(now_ms) + $1 * 1000)) p left
	shift
	while :; do
		left=
		for p in "$@"; do alive "$p" && left="$left $p"; done
		[ -z "$left" ] && return 0
		[ "$(now_ms)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# wait_until TIMEOUT_S CMD...: run CMD every 50 ms until it succeeds; fail
# at the deadline. Conditions, never fixed sleeps.
wait_until() {
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	until "$@"; do
		[ "$(now_ms)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# ctld_up: slurmctld answers (client config from $SLURM_CONF).
ctld_up() {
	scontrol ping 2>/dev/null | grep -q 'is UP'
}

# cluster_running RUNDIR: all three daemons alive and slurmctld answering.
cluster_running() {
	local n
	for n in $DAEMONS; do our_pid "$1" "$n" >/dev/null || return 1; done
	[ -r "$1/slurm.conf" ] || return 1
	SLURM_CONF=$1/slurm.conf ctld_up
}

# any_running RUNDIR: at least one of our daemons is alive.
any_running() {
	local n
	for n in $DAEMONS; do our_pid "$1" "$n" >/dev/null && return 0; done
	return 1
}

# show_logs RUNDIR: the tail of every log, for error reports.
# NAME.out is a daemon's stdout/stderr: in -D mode Slurm's daemons log
# there and to NAME.log both, so .out is shown only where .log is empty
# (it then holds what failed before the log file was opened).
show_logs() {
	local f
	for f in "$1"/log/*.log "$1"/log/*.out; do
		[ -s "$f" ] || continue
		case $f in
		*/jobcomp.log | */apt.log) continue ;;
		*.out) [ -s "${f%.out}.log" ] && continue ;;
		esac
		printf '\n----- %s (last 15 lines) -----\n' "$f" >&2
		tail -n 15 "$f" >&2
	done
}

# ppid_of PID: its parent's pid (empty if gone).
ppid_of() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	s=${s#* }
	printf '%s' "${s%% *}"
}
