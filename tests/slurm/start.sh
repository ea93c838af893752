#!/bin/bash
# tests/slurm/start.sh [RUNDIR] — bring up a real single-node Slurm cluster
# (munged + slurmctld + slurmd, no systemd, no slurmdbd) whose every file
# lives in RUNDIR (default /tmp/anneal-slurm). Run as root.
#
# stdout: the environment a client needs (also in RUNDIR/env), so either
#   eval "$(tests/slurm/start.sh)"     or     tests/slurm/start.sh && . /tmp/anneal-slurm/env
# Progress and errors go to stderr. Idempotent: when the cluster of RUNDIR
# is already up it prints the environment and exits 0.
#
# Facts cited as "notes" are from shared/notes/slurm.md (measured on a
# machine of this kind: Debian 12, Slurm 22.05, munge 0.5.15).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

TIMEOUT_S=${ANNEAL_SLURM_START_TIMEOUT:-60}
# Default Slurm ports; override to run a second cluster beside this one.
CTLD_PORT=${ANNEAL_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts daemons as root)"
RUNDIR=$(rundir_of "${1:-}")
T0=$(now_ms)

# One start/stop at a time per run directory. The daemons must not inherit
# this descriptor (9>&- below) or they would hold the lock forever.
exec 9>"$RUNDIR/lock"
flock -w 120 9 || die "another start.sh/stop.sh holds $RUNDIR/lock"

print_env() {
	cat "$RUNDIR/env"
}

# ---------------------------------------------------------------- packages
# The minimal set (notes: 8 small debs with --no-install-recommends; the
# recommends pull in ~30 more: hdf5, rrd, ipmi... plugins we do not use).
PACKAGES="slurmctld slurmd slurm-client munge"
COMMANDS="munged mungekey munge unmunge slurmctld slurmd sbatch squeue scontrol scancel sacct sinfo"

missing_commands() {
	local c
	for c in $COMMANDS; do command -v "$c" >/dev/null 2>&1 || return 0; done
	return 1
}

PRC=/usr/sbin/policy-rc.d
PRC_SAVED=
restore_policy_rc_d() {
	rm -f "$PRC"
	if [ -n "$PRC_SAVED" ]; then mv -f "$PRC_SAVED" "$PRC"; fi
	PRC_SAVED=
}

install_packages() {
	local t log=$RUNDIR/log/apt.log
	t=$(now_ms)
	say "installing $PACKAGES (log: $log)"
	# Debian's package scripts would start munged/slurmctld/slurmd with the
	# system config; policy-rc.d exiting 101 tells invoke-rc.d "not allowed"
	# (notes). Keep whatever policy-rc.d was there and put it back after.
	if [ -e "$PRC" ] || [ -L "$PRC" ]; then
		PRC_SAVED=$RUNDIR/policy-rc.d.saved
		mv -f "$PRC" "$PRC_SAVED"
	fi
	trap restore_policy_rc_d EXIT
	trap 'exit 130' INT TERM
	printf '#!/bin/sh\n# temporary, from anneal tests/slurm/start.sh: start no services\nexit 101\n' >"$PRC"
	chmod 755 "$PRC"

	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine's package lists may be empty or old (machine notes);
	# something else may hold the dpkg lock for a while.
	apt-get -o DPkg::Lock::Timeout=300 update >"$log" 2>&1 ||
		say "warning: apt-get update failed (trying install anyway)"
	# shellcheck disable=SC2086 # a list of words
	if ! apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
		$PACKAGES >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		die "apt-get install failed"
	fi
	restore_policy_rc_d
	trap - EXIT INT TERM
	say "installed in $(($(now_ms) - t)) ms"
}

# ---------------------------------------------------------------- running?
if cluster_running "$RUNDIR"; then
	say "already running in $RUNDIR"
	print_env
	exit 0
fi
if any_running "$RUNDIR"; then
	say "partly running in $RUNDIR: stopping the rest first"
	# stop.sh takes the lock too: hand it over.
	flock -u 9
	"$HERE/stop.sh" "$RUNDIR" >&2
	flock -w 120 9 || die "cannot retake $RUNDIR/lock"
fi

mkdir -p "$RUNDIR/log"
if missing_commands; then install_packages; fi
missing_commands && die "still missing one of: $COMMANDS"

# ---------------------------------------------------------------- fresh dirs
# A fresh cluster each start: old job state would be restored (and old
# node state shown before our slurmd registers, notes), and job ids restart
# at 1, so the previous completion log must go too or `sacct -c -j 1` would
# report an old job. The previous logs are kept in log.prev.
rm -rf "$RUNDIR/log.prev" "$RUNDIR/state" "$RUNDIR/spool" "$RUNDIR/run"
if [ -n "$(ls -A "$RUNDIR/log")" ]; then mv "$RUNDIR/log" "$RUNDIR/log.prev"; fi
mkdir -p "$RUNDIR/log" "$RUNDIR/state" "$RUNDIR/spool" "$RUNDIR/run" "$RUNDIR/munge"
[ -f "$RUNDIR/log.prev/apt.log" ] && mv "$RUNDIR/log.prev/apt.log" "$RUNDIR/log/"
chmod 755 "$RUNDIR"
# munged refuses a socket directory that is not searchable by all ("Socket
# is inaccessible: execute permissions for all required") or that others
# may write (notes).
chmod 755 "$RUNDIR/munge"

# From here on, any failure (fail, die or set -e) undoes what was done so
# far — daemons started, /etc/hosts line added — through stop.sh.
undo_on_failure() {
	local rc=$?
	[ "$rc" = 0 ] && return 0
	say "stopping what was started"
	flock -u 9
	"$HERE/stop.sh" "$RUNDIR" >&2 || true
	exit "$rc"
}
trap undo_on_failure EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- hostname
# Daemons resolve `hostname` (notes, gotchas): unresolvable is fatal. Add a
# loopback line only when needed, and record it so stop.sh removes exactly it.
HOST=$(hostname)
NODE=${HOST%%.*}
if ! getent hosts "$HOST" >/dev/null; then
	line="127.0.0.1 $HOST"
	say "'$HOST' does not resolve: adding '$line' to /etc/hosts (stop.sh removes it)"
	printf '%s\n' "$line" >>/etc/hosts
	printf '%s\n' "$line" >"$RUNDIR/hosts-line"
fi
HOST_ADDR=$(getent hosts "$HOST" | awk '{print $1; exit}')
# NoCtldInAddrAny,NoInAddrAny make the daemons listen on what `hostname`
# resolves to rather than on every interface. Only safe when that is a
# loopback address: bound to eth0's, clients at 127.0.0.1 cannot connect (notes).
case $HOST_ADDR in
127.*) COMM_PARAMS="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny" ;;
*) COMM_PARAMS="# CommunicationParameters: left default, '$HOST' resolves to $HOST_ADDR (not loopback)" ;;
esac

# ---------------------------------------------------------------- hardware
# `slurmd -C` prints this machine's NodeName=... CPUs=... RealMemory=... line.
HW=$(slurmd -C | head -n 1) || die "slurmd -C failed"
MEM=$(printf '%s\n' "$HW" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$MEM" ] || die "no RealMemory in: $HW"
# Declaring more memory than slurmd finds drains the node (notes); leave 5%
# (at least 256 MB) of headroom for memory that moves between starts.
HEAD=$((MEM / 20)); [ "$HEAD" -ge 256 ] || HEAD=256
HW=$(printf '%s\n' "$HW" | sed -e 's/^NodeName=[^ ]* //' -e "s/RealMemory=[0-9]*/RealMemory=$((MEM - HEAD))/")

# ---------------------------------------------------------------- configs
R=$RUNDIR
cat >"$R/slurm.conf" <<EOF
# Written by anneal tests/slurm/start.sh — a single-node test cluster.
# Clients need SLURM_CONF=$R/slurm.conf (source $R/env).
ClusterName=anneal
# The controller is this node, reached over loopback.
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
$COMM_PARAMS
SlurmUser=root
SlurmdUser=root

# munge with a private munged: AuthInfo=socket= is read by the daemons and,
# through SLURM_CONF, by every client command, so nothing touches the
# system munged or /etc/munge (notes).
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$R/munge/munge.socket

StateSaveLocation=$R/state
SlurmdSpoolDir=$R/spool
SlurmctldPidFile=$R/run/slurmctld.pid
SlurmdPidFile=$R/run/slurmd.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd.log

# No cgroups needed: linuxproc tracks a job's processes by parentage (it
# can leave a job's background orphans alive: stop.sh kills them), task/none
# binds nothing (notes).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux

# No slurmdbd: plain sacct fails ("accounting storage is disabled") but
# completion records in JobCompLoc serve \`sacct -c\` (notes).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$R/log/jobcomp.log
# Finished jobs stay in \`scontrol show job\` (real ExitCode) for 5 minutes.
MinJobAge=300

SchedulerType=sched/backfill
# Debian's default batch_sched_delay adds ~3 s before a batch job starts;
# 0 makes it the 1-second scheduler tick (notes).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=npu
# Refuse at submit what the partition can never run (e.g. --gres=npu:9).
EnforcePartLimits=ALL
# A node that was DOWN returns when its slurmd registers with a valid config.
ReturnToService=2
# SIGTERM -> SIGKILL grace for cancelled / timed-out jobs.
KillWait=5
# Batch jobs may be requeued (scontrol requeue, node failure).
JobRequeue=1
MailProg=/bin/true

NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $HW Gres=npu:8 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# A count-only GRES: no File= (no device files); jobs get no env variable for it (notes).
cat >"$R/gres.conf" <<EOF
NodeName=$NODE Name=npu Count=8
EOF

# Needed even with linuxproc + task/none, else slurmd fails without a cgroupfs (notes).
cat >"$R/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
EOF

cat >"$R/env" <<EOF
export SLURM_CONF=$R/slurm.conf
export ANNEAL_SLURM_RUNDIR=$R
export ANNEAL_SLURM_NODE=$NODE
EOF

export SLURM_CONF=$R/slurm.conf

fail() {
	say "error: $*"
	show_logs "$R"
	exit 1
}

# launch NAME CMD...: run CMD in its own session (setsid), detached from our
# stdio and lock, in the background, with its pid in RUNDIR/NAME.pid. From a
# non-interactive shell the background child is not a process-group leader,
# so setsid execs in place and $! is the daemon's own pid (checked below).
# In foreground mode the daemons also log to stderr: NAME.out keeps what
# happens before a log file is opened (munged logs only there).
launch() {
	local name=$1
	shift
	setsid "$@" </dev/null >>"$R/log/$name.out" 2>&1 9>&- &
	echo $! >"$R/$name.pid"
	LAUNCHED="$LAUNCHED $name"
}
LAUNCHED=

# ---------------------------------------------------------------- munged
if [ ! -s "$R/munge/munge.key" ]; then
	mungekey --create --keyfile="$R/munge/munge.key" >/dev/null 2>&1 || fail "mungekey failed"
fi
chmod 600 "$R/munge/munge.key"   # munged checks: owned by its user (root here), not readable by others
rm -f "$R/munge/munge.socket" "$R/munge/munge.socket.lock"
launch munged munged --foreground \
	--socket="$R/munge/munge.socket" --key-file="$R/munge/munge.key" \
	--pid-file="$R/run/munged.pid" --seed-file="$R/munge/munged.seed"
munge_works() {
	munge -n -S "$R/munge/munge.socket" 2>/dev/null |
		unmunge -S "$R/munge/munge.socket" >/dev/null 2>&1
}
# ready PRED: PRED holds, or stop waiting early when one of our daemons has
# died (a fatal config or bind error should not cost the whole deadline).
DIED=
NODE_LINE=
ready() {
	local n
	for n in $LAUNCHED; do
		# alive, not our_pid: just after launch comm may still be "setsid".
		alive "$(cat "$R/$n.pid")" || { DIED=$n; return 0; }
	done
	"$@"
}
# await WHAT PRED: wait for PRED with the deadline, or fail saying WHAT.
await() {
	local what=$1
	shift
	wait_until "$TIMEOUT_S" ready "$@" ||
		fail "no $what within ${TIMEOUT_S}s${NODE_LINE:+ (node: $NODE_LINE)}"
	[ -z "$DIED" ] || fail "$DIED exited while waiting for: $what (see $R/log/$DIED.*)"
}
await "munged answering on $R/munge/munge.socket" munge_works

# ---------------------------------------------------------------- slurm
# SlurmdStartTime has 1-second resolution: compare against the second the
# daemons were launched in.
START_S=$(date +%s)
# -D: foreground (we hold its pid); -c: no state to restore (fresh dirs).
launch slurmctld slurmctld -D -c -f "$R/slurm.conf"
# -N: the node name from our config, not from DNS (notes).
launch slurmd slurmd -D -N "$NODE" -f "$R/slurm.conf"

await "slurmctld UP (scontrol ping)" ctld_up

# The node is ready when *this* slurmd registered (slurmctld may show a
# restored state before that, notes) and it is idle (not DOWN/DRAINED).
node_ready() {
	local t
	NODE_LINE=$(scontrol show node -o "$NODE" 2>/dev/null) || return 1
	t=$(printf '%s\n' "$NODE_LINE" | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
	case $t in '' | None | Unknown) return 1 ;; esac
	t=$(date -d "$t" +%s 2>/dev/null) || return 1
	[ "$t" -ge "$START_S" ] || return 1
	printf '%s\n' "$NODE_LINE" | grep -q ' State=IDLE '
}
await "node $NODE registered by this slurmd and IDLE" node_ready

for n in $DAEMONS; do
	our_pid "$R" "$n" >/dev/null || fail "$n ($R/$n.pid) is not running"
done

say "up in $(($(now_ms) - T0)) ms: node $NODE, partition debug, Gres=npu:8; logs in $R/log; clients: . $R/env"
print_env
