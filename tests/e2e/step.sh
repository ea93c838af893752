#!/bin/sh
# tests/e2e/step.sh — a fake training engine for the end-to-end tests.
#
# It honours the engine contract (docs/engine-contract.md) the way a real
# engine would, and records what it did so that tests can assert on it:
#
#   sh step.sh [OPTION=VALUE]...
#
# State shared with the test lives in $PWD/e2e/ (steps run with cwd = the
# workspace root; a missing e2e/ there means that promise was broken):
#   e2e/starts.log       one line per event, appended whole:
#                          start RUN STEP ATTEMPT pid=PID resume=N|-
#                          ckpt RUN STEP ATTEMPT N
#                          term RUN STEP ATTEMPT
#                          end RUN STEP ATTEMPT CODE
#                          CONCURRENT RUN STEP ATTEMPT pid=PID other=PID
#                          ERROR RUN STEP ATTEMPT TEXT
#   e2e/pids/RUN.STEP    the pid of the latest copy (this shell)
#   e2e/pids/RUN.STEP.pgid  its process group (the job: shim, step, children)
#   e2e/locks/RUN.STEP/  held while a copy runs: a second live copy of the
#                        same step of the same run fails loudly (exit 99)
#
# Options (in the order they act):
#   dumpenv=1         write argv, cwd, ANNEAL_*, E2E_* and the device variables
#                     to e2e/env.RUN.STEP.ATTEMPT; list what the output dirs
#                     hold at start (e2e/outdirs.RUN.STEP.ATTEMPT), then leave
#                     a stray file in each (an attempt must start with them
#                     empty) and one in ANNEAL_CKPT_DIR (kept across attempts)
#   arg=ANY           ignored (shows up in the dumped argv)
#   need=FILE         exit 1 unless FILE (relative: to e2e/) exists
#   fail_attempts=N   exit 1 on attempts 1..N
#   metric=NAME:VAL   append a metric event
#   garbage=1         append malformed lines to ANNEAL_EVENTS first
#   barrier=NAME:N    check in at barrier NAME, wait (up to 20 s) until N
#                     steps have checked in; exit 1 if they never do
#   hold=SECS         sleep that long (for overlap checks)
#   ckpts=N           write checkpoints 1..N, one at a time, each into a temp
#                     dir renamed into ANNEAL_CKPT_DIR/ckpt-I, then announced;
#                     a resumed copy continues after ANNEAL_RESUME_FROM's number
#   block=FILE        wait until FILE (relative: to e2e/) exists, after the
#   block_at=K        checkpoint K (default: after the last; 0: before any)
#   pace=SECS         sleep that long after each checkpoint
#   exit75=A:K        on attempt A, exit 75 right after checkpoint K
#   sleep=SECS        sleep that long (timeouts)
#   term=save|ignore|default  on SIGTERM: save a checkpoint and exit 75
#                     (default), ignore it (and so do its children), or die
#   value=TEXT        folded into every output (params change outputs)
#   kb=N              every checkpoint and output also gets a file of N KiB
#                     (data.bin); a failed write (disk full) ends the step
#                     with exit 1 and "step.sh: cannot write ..." on stderr
#   close_out=1       close stdout and stderr right after starting (the
#                     step goes on without them)
#   daemon=NAME       leave a daemon behind (double fork, setsid: out of the
#                     step's process group) that lives until signalled; its
#                     pid goes to e2e/NAME.pid (before the step goes on), and
#                     on SIGTERM it notes "daemon-term RUN STEP ATTEMPT NAME"
#   exit=CODE         exit with CODE instead of writing outputs
# Every declared output (ANNEAL_OUTPUT_<NAME>) gets value.txt: the step id,
# value, and the value.txt of every input, so data really flows.
set -u

st=$PWD/e2e
if [ ! -d "$st" ]; then
	echo "step.sh: no e2e/ in cwd $PWD (is cwd the workspace root?)" >&2
	exit 97
fi
log=$st/starts.log
run=${ANNEAL_RUN_ID:?} step=${ANNEAL_STEP_ID:?} att=${ANNEAL_ATTEMPT:?}
key=$run.$step

dumpenv=0 need='' fail_attempts=0 metric='' garbage=0 barrier='' hold=0 ckpts=0 block=''
block_at='' pace=0 exit75='' sleep_s=0 term=save value='' exit_code='' kb=0 close_out=0 daemon=''
for a in "$@"; do
	case $a in
	dumpenv=*) dumpenv=${a#*=} ;;
	arg=*) ;;
	need=*) need=${a#*=} ;;
	fail_attempts=*) fail_attempts=${a#*=} ;;
	metric=*) metric=${a#*=} ;;
	garbage=*) garbage=${a#*=} ;;
	barrier=*) barrier=${a#*=} ;;
	hold=*) hold=${a#*=} ;;
	ckpts=*) ckpts=${a#*=} ;;
	block=*) block=${a#*=} ;;
	block_at=*) block_at=${a#*=} ;;
	pace=*) pace=${a#*=} ;;
	exit75=*) exit75=${a#*=} ;;
	sleep=*) sleep_s=${a#*=} ;;
	term=*) term=${a#*=} ;;
	value=*) value=${a#*=} ;;
	exit=*) exit_code=${a#*=} ;;
	kb=*) kb=${a#*=} ;;
	close_out=*) close_out=${a#*=} ;;
	daemon=*) daemon=${a#*=} ;;
	*) echo "step.sh: unknown option '$a'" >&2; exit 64 ;;
	esac
done
case $need in '' | /*) ;; *) need=$st/$need ;; esac
case $block in '' | /*) ;; *) block=$st/$block ;; esac
[ -n "$block_at" ] || block_at=$ckpts

note() { printf '%s\n' "$*" >>"$log"; }

# alive PID: the process exists and is not a zombie.
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# ---- one copy at a time ---------------------------------------------------
mkdir -p "$st/locks" "$st/pids"
lock=$st/locks/$key
if ! mkdir "$lock" 2>/dev/null; then
	other=
	tries=0
	while [ -z "$other" ] && [ "$tries" -lt 40 ]; do
		other=$(cat "$lock/pid" 2>/dev/null)
		[ -n "$other" ] || { sleep 0.05; tries=$((tries + 1)); }
	done
	if [ -n "$other" ] && [ "$other" != $$ ] && alive "$other"; then
		note "CONCURRENT $run $step $att pid=$$ other=$other"
		echo "step.sh: CONCURRENT: copy $other of $key is still running" >&2
		exit 99
	fi
	# The lock of a copy that was killed (-9) and could not clean up.
fi
echo $$ >"$lock/pid"
echo $$ >"$st/pids/$key"
# Field 5 of /proc/PID/stat (3 after the command name): the process group.
sed 's/.*) //' "/proc/$$/stat" | cut -d' ' -f3 >"$st/pids/$key.pgid"
release() { rm -rf "$lock"; }

# ---- where to start from --------------------------------------------------
n=0
resume=-
if [ -n "${ANNEAL_RESUME_FROM:-}" ]; then
	from=$ANNEAL_RESUME_FROM
	case $from in /*) ;; *) from=$ANNEAL_CKPT_DIR/$from ;; esac
	if ! n=$(cat "$from/n" 2>/dev/null); then
		note "ERROR $run $step $att bad ANNEAL_RESUME_FROM '$ANNEAL_RESUME_FROM'"
		echo "step.sh: cannot read checkpoint $from" >&2
		release
		exit 98
	fi
	resume=$n
fi
note "start $run $step $att pid=$$ resume=$resume"
echo "hello from $step attempt $att (resume=$resume)"
echo "step $step attempt $att on stderr" >&2

finish() { # CODE
	note "end $run $step $att $1"
	release
	exit "$1"
}

# payload DIR: DIR/data.bin of $kb KiB, or the step fails (disk full).
payload() {
	[ "$kb" = 0 ] && return 0
	if ! head -c "$((kb * 1024))" /dev/zero 2>/dev/null | tr '\000' 'w' >"$1/data.bin" 2>/dev/null ||
		[ "$(wc -c <"$1/data.bin" 2>/dev/null)" != "$((kb * 1024))" ]; then
		echo "step.sh: cannot write $1/data.bin ($kb KiB)" >&2
		note "nospace $run $step $att $1"
		finish 1
	fi
}

if [ "$close_out" = 1 ]; then
	exec >&- 2>&-
fi
if [ -n "$daemon" ]; then
	dpid=$st/$daemon.pid
	rm -f "$dpid"
	# setsid(1) runs in a child of its own here (a job of a
	# non-interactive shell is no group leader, so it need not fork): the
	# inner shell is the daemon, in a session and process group of its own.
	E2E_DLOG=$log E2E_DPID=$dpid E2E_DNOTE="daemon-term $run $step $att $daemon" \
		setsid sh -c '(
			trap '\''echo "$E2E_DNOTE" >>"$E2E_DLOG"; exit 0'\'' TERM
			sh -c '\''echo $PPID'\'' >"$E2E_DPID.tmp"
			mv "$E2E_DPID.tmp" "$E2E_DPID"
			while :; do sleep 0.1; done
		) </dev/null >/dev/null 2>&1 &' &
	wait_daemon=0
	while [ ! -s "$dpid" ] && [ "$wait_daemon" -lt 400 ]; do
		sleep 0.05
		wait_daemon=$((wait_daemon + 1))
	done
	[ -s "$dpid" ] || { note "ERROR $run $step $att daemon never started"; finish 1; }
fi

# ---- checkpoints and SIGTERM ----------------------------------------------
busy=0 pending=0
save_ckpt() { # N
	busy=1
	tmp=$ANNEAL_CKPT_DIR/.tmp-$1-$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	echo "$1" >"$tmp/n"
	echo "weights of $step after $1 steps" >"$tmp/weights"
	payload "$tmp"
	# A dir of this number left by a killed copy was never announced.
	rm -rf "$ANNEAL_CKPT_DIR/ckpt-$1"
	mv "$tmp" "$ANNEAL_CKPT_DIR/ckpt-$1"
	printf '{"event":"checkpoint","step":%d,"dir":"ckpt-%d"}\n' "$1" "$1" >>"$ANNEAL_EVENTS"
	n=$1
	note "ckpt $run $step $att $1"
	busy=0
	[ "$pending" = 0 ] || on_term
}
on_term() {
	if [ "$busy" = 1 ]; then
		pending=1
		return
	fi
	pending=0
	trap '' TERM
	note "term $run $step $att"
	save_ckpt $((n + 1))
	finish 75
}
case $term in
save) trap on_term TERM ;;
ignore) trap '' TERM ;;
default) ;;
*) echo "step.sh: bad term=$term" >&2; finish 64 ;;
esac

wait_file() {
	while [ ! -e "$1" ]; do sleep 0.05; done
}

# ---- the work -------------------------------------------------------------
outvars=$(env | sed -n 's/^\(ANNEAL_OUTPUT_[A-Za-z0-9_]*\)=.*/\1/p' | sort)
if [ "$dumpenv" = 1 ]; then
	{
		printf 'argv:'
		printf ' %s' "$@"
		echo
		echo "cwd: $PWD"
		env | grep -E '^(ANNEAL_|E2E_|CUDA_VISIBLE_DEVICES=|ASCEND_RT_VISIBLE_DEVICES=)' | sort
	} >"$st/env.$key.$att"
	for var in $outvars; do
		[ "$var" != ANNEAL_OUTPUT_DIR ] || continue
		eval "dir=\$$var"
		echo "$var: $(ls -A "$dir" 2>/dev/null | tr '\n' ' ')"
		mkdir -p "$dir"
		echo stray >"$dir/stray-$att"
	done >"$st/outdirs.$key.$att"
	echo "ckpt: $(ls -A "$ANNEAL_CKPT_DIR" | tr '\n' ' ')" >>"$st/outdirs.$key.$att"
	echo kept >"$ANNEAL_CKPT_DIR/kept-$att"
fi
if [ -n "$need" ] && [ ! -e "$need" ]; then
	echo "step.sh: missing $need" >&2
	finish 1
fi
if [ "$att" -le "$fail_attempts" ]; then
	echo "step.sh: failing attempt $att of $fail_attempts on purpose" >&2
	finish 1
fi
if [ "$garbage" = 1 ]; then
	{
		echo 'this is not json'
		echo '{"event":'
		echo '{"event":"metric","name":"loss"}'
		echo '{"event":"metric","name":"loss","value":"abc","step":1}'
		echo '{"event":"progress","done":"x"}'
		echo '{"event":"no-such-event","x":1}'
		echo '[1,2,3]'
		echo '"just a string"'
		echo '{}'
		echo ''
		printf '\001\002\377\376 binary\n'
		head -c 70000 /dev/zero | tr '\000' 'x'
		echo
	} >>"$ANNEAL_EVENTS"
fi
if [ -n "$metric" ]; then
	printf '{"event":"metric","name":"%s","value":%s,"step":%d}\n' \
		"${metric%%:*}" "${metric#*:}" "$n" >>"$ANNEAL_EVENTS"
	printf '{"event":"progress","done":%d,"total":%d}\n' "$n" "$ckpts" >>"$ANNEAL_EVENTS"
fi
if [ -n "$barrier" ]; then
	bdir=$st/barrier-${barrier%%:*}
	want=${barrier#*:}
	mkdir -p "$bdir"
	: >"$bdir/$step"
	waited=0
	while [ "$(ls "$bdir" | wc -l)" -lt "$want" ]; do
		if [ "$waited" -ge 400 ]; then
			note "ERROR $run $step $att barrier $barrier never filled"
			echo "step.sh: barrier $barrier: only $(ls "$bdir" | wc -l) checked in" >&2
			finish 1
		fi
		sleep 0.05
		waited=$((waited + 1))
	done
fi
[ "$hold" = 0 ] || sleep "$hold"
[ -z "$block" ] || [ "$block_at" != 0 ] || [ "$n" != 0 ] || wait_file "$block"
i=$n
while [ "$i" -lt "$ckpts" ]; do
	i=$((i + 1))
	save_ckpt "$i"
	if [ -n "$exit75" ] && [ "$att" = "${exit75%%:*}" ] && [ "$i" = "${exit75#*:}" ]; then
		echo "step.sh: leaving after checkpoint $i with 75 (preempted)" >&2
		finish 75
	fi
	if [ -n "$block" ] && [ "$i" = "$block_at" ]; then
		wait_file "$block"
	fi
	[ "$pace" = 0 ] || sleep "$pace"
done
[ "$sleep_s" = 0 ] || sleep "$sleep_s"
[ -z "$exit_code" ] || finish "$exit_code"

for var in $outvars; do
	[ "$var" != ANNEAL_OUTPUT_DIR ] || continue
	eval "dir=\$$var"
	mkdir -p "$dir"
	{
		echo "$step $value"
		for ivar in $(env | sed -n 's/^\(ANNEAL_INPUT_[A-Za-z0-9_]*\)=.*/\1/p' | sort); do
			eval "idir=\$$ivar"
			cat "$idir/value.txt" 2>/dev/null || echo "(input $ivar unreadable)"
		done
	} >"$dir/value.txt"
	payload "$dir"
done
echo "bye from $step attempt $att"
finish 0
