#!/bin/sh
# recipes/demo/bigram.sh — a character-bigram language model in awk, written
# to anneal's engine contract so that the demonstration recipe trains
# something real on any machine: counts are the weights, cross-entropy in
# bits per character is the loss. It checkpoints while it trains (complete
# directories, renamed into place, then announced), resumes from
# ANNEAL_RESUME_FROM, exits 75 on SIGTERM after saving, and is
# deterministic: same inputs, same bytes.
#
#   bigram.sh gen-data  OUT SEED LINES      synthetic arithmetic text
#   bigram.sh train     DATA OUT SHARDS [INIT]  count bigrams shard by shard
#   bigram.sh merge     OUT W1 M1 W2 M2     weighted average of two models
#   bigram.sh eval      MODEL DATA OUT      held-out cross-entropy report
set -eu

die() { echo "bigram.sh: $*" >&2; exit 2; }
event() { [ -n "${ANNEAL_EVENTS:-}" ] && printf '%s\n' "$1" >> "$ANNEAL_EVENTS" || true; }

# Cross-entropy (bits/char) of text under counts, add-one smoothed over
# the characters seen in either.
xent() { # MODEL TEXT
	awk -F'\t' 'FILENAME == ARGV[1] { c[$1 SUBSEP $2] = $3; row[$1] += $3; v[$1]; v[$2]; next }
	{ line = "^" $0 "$"; for (i = 1; i < length(line); i++) { a = substr(line, i, 1);
	  b = substr(line, i + 1, 1); v[a]; v[b]; pairs[++n] = a SUBSEP b } }
	END { V = 0; for (k in v) V++; if (!n) { print "0"; exit }
	  for (i = 1; i <= n; i++) { split(pairs[i], ab, SUBSEP)
	    p = (c[pairs[i]] + 1) / (row[ab[1]] + V); h -= log(p) / log(2) }
	  printf "%.6f\n", h / n }' "$1" "$2"
}

cmd=${1:-}; [ -n "$cmd" ] || die "usage: bigram.sh gen-data|train|merge|eval ..."
shift

case "$cmd" in
gen-data)
	[ $# -eq 3 ] || die "usage: gen-data OUT SEED LINES"
	out=$1 seed=$2 lines=$3
	awk -v seed="$seed" -v n="$lines" 'BEGIN { srand(seed)
	  for (i = 0; i < n; i++) { d = 1 + int(rand() * 4); a = int(rand() * 10 ^ d)
	    b = int(rand() * 10 ^ d); print a "+" b "=" a + b } }' > "$out/all.txt"
	total=$(wc -l < "$out/all.txt")
	held=$((total / 10))
	head -n $((total - held)) "$out/all.txt" > "$out/train.txt"
	tail -n "$held" "$out/all.txt" > "$out/heldout.txt"
	rm "$out/all.txt"
	event "{\"event\":\"metric\",\"name\":\"lines\",\"value\":$total}"
	echo "generated $total lines (seed $seed), $held held out"
	;;
train)
	[ $# -ge 3 ] || die "usage: train DATA OUT SHARDS [INIT]"
	data=$1 out=$2 shards=$3 init=${4:-}
	ckdir=${ANNEAL_CKPT_DIR:?}
	work=$(mktemp -d "$ckdir/.work.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	start=0
	if [ -n "${ANNEAL_RESUME_FROM:-}" ]; then
		cp "$ANNEAL_RESUME_FROM/counts.tsv" "$work/counts.tsv"
		start=$(cat "$ANNEAL_RESUME_FROM/shard")
		echo "resuming after shard $start from $ANNEAL_RESUME_FROM"
	elif [ -n "$init" ]; then
		cp "$init/counts.tsv" "$work/counts.tsv"
	else
		: > "$work/counts.tsv"
	fi
	stop=0
	trap 'stop=1' TERM
	total=$(wc -l < "$data")
	per=$(( (total + shards - 1) / shards ))
	s=$start
	while [ "$s" -lt "$shards" ]; do
		# Add shard s's bigrams to the counts. SIGTERM reaches the whole
		# process group: the shard's pipeline ignores it (an ignored
		# signal stays ignored across exec) and finishes, then we save.
		(
		trap '' TERM
		sed -n "$((s * per + 1)),$(((s + 1) * per))p" "$data" |
		awk -F'\t' 'FILENAME == ARGV[1] { c[$1 "\t" $2] = $3; next }
		  { line = "^" $0 "$"; for (i = 1; i < length(line); i++)
		      c[substr(line, i, 1) "\t" substr(line, i + 1, 1)]++ }
		  END { for (k in c) print k "\t" c[k] }' "$work/counts.tsv" - |
		LC_ALL=C sort > "$work/next.tsv"
		)
		mv "$work/next.tsv" "$work/counts.tsv"
		s=$((s + 1))
		# A complete checkpoint: written aside, renamed into place, announced.
		tmp=$(mktemp -d "$ckdir/.tmp.XXXXXX")
		cp "$work/counts.tsv" "$tmp/counts.tsv"
		echo "$s" > "$tmp/shard"
		sync "$tmp/counts.tsv" "$tmp/shard" 2>/dev/null || true
		rm -rf "$ckdir/shard-$s"
		mv "$tmp" "$ckdir/shard-$s"
		event "{\"event\":\"checkpoint\",\"step\":$s,\"dir\":\"shard-$s\"}"
		event "{\"event\":\"progress\",\"done\":$s,\"total\":$shards}"
		loss=$(trap '' TERM; xent "$work/counts.tsv" "$data")
		event "{\"event\":\"metric\",\"name\":\"loss\",\"value\":$loss,\"step\":$s}"
		echo "shard $s/$shards loss $loss"
		if [ "$stop" = 1 ]; then
			echo "stopping after shard $s (SIGTERM); resumable"
			exit 75
		fi
	done
	cp "$work/counts.tsv" "$out/counts.tsv"
	;;
merge)
	[ $# -eq 5 ] || die "usage: merge OUT W1 M1 W2 M2"
	out=$1 w1=$2 m1=$3 w2=$4 m2=$5
	awk -F'\t' -v w1="$w1" -v w2="$w2" 'FNR == 1 { f++ }
	  { k = $1 "\t" $2; c[k] += (f == 1 ? w1 : w2) * $3 }
	  END { for (k in c) printf "%s\t%.4f\n", k, c[k] }' "$m1/counts.tsv" "$m2/counts.tsv" |
	LC_ALL=C sort > "$out/counts.tsv"
	echo "merged $m1 ($w1) and $m2 ($w2)"
	;;
eval)
	[ $# -eq 3 ] || die "usage: eval MODEL DATA OUT"
	model=$1 data=$2 out=$3
	loss=$(xent "$model/counts.tsv" "$data")
	printf '{"heldout_bits_per_char": %s, "lines": %s}\n' "$loss" "$(wc -l < "$data")" > "$out/report.json"
	event "{\"event\":\"metric\",\"name\":\"heldout_bpc\",\"value\":$loss}"
	echo "held-out cross-entropy: $loss bits/char"
	;;
*)
	die "unknown command '$cmd'"
	;;
esac
