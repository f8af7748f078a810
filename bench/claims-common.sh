# Shared by bench/claims-task.sh and bench/claims-agnostic.sh (sourced, not run): the logged command, the stage rule,
# the fixed SST-2 student sample that both suites must train on (the same file, made the same way), and the timed bench
# run of their bench stages (one rule for both, so their latencies can share one plot).
# Needs: root, OUT, DATA, DISTILLERY, and SCRIPT (the sourcing script's name, for its messages); SMOKE when a smoke run;
# COMMITTED (the suite's committed records folder; empty: only OUT counts).

# One stamp per start that runs something (COMMIT.<UTC time>: the scripts' commit, then the binary's version
# "0.1.0+<commit>"), so a run resumed by a later commit or another binary says so. Written before the process's first
# command, not at start: a restart that finds everything done (the driver passes through every finished suite) leaves
# no stamp, so the tables' "runs started at commits" lists only starts that ran. A stream forked before its parent ran
# anything stamps on its own first command.
mkdir -p "$OUT/data"
stamped=""
stamp_commit() {
  [[ -z "$stamped" ]] || return 0
  stamped=1
  # A stamp when the scripts or the binary differ from the newest stamp's: the streams run each unit in a subshell, which
  # does not keep $stamped, so without this check every unit wrote one.
  local now last
  now="$({ git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown; "$DISTILLERY" --version 2>/dev/null || echo unknown; })"
  last="$(find "$OUT" -maxdepth 1 -name 'COMMIT.*' | sort | tail -n 1)"
  [[ -n "$last" && "$(cat "$last")" == "$now" ]] && return 0
  echo "$now" > "$OUT/COMMIT.$(date -u +%Y%m%dT%H%M%S)"
}

distillery() {   # logs every command with its wall time; a failure stops the script with the command's last lines
  stamp_commit
  local log="$OUT/log.txt"
  echo "== $(date -u +%FT%TZ) distillery $*" >> "$log"
  "$DISTILLERY" "$@" >> "$log" 2>&1 || { echo "$SCRIPT: failed: distillery $*" >&2; tail -5 "$log" >&2; exit 1; }
}
# A row's stage also counts as finished when its run's record is committed (COMMITTED, the suite's docs/records folder, same
# layout as OUT: <rel>.metrics.json for the run folder OUT/<rel>). Why: runs/ holds models and does not survive a move
# to another machine; the committed records do, and a row they hold is not trained again. A predecessor stage
# (<rel>.distilled, .replaced) is skipped only when its row's final record is committed: its own record without the
# final one means the row was cut off after it, and its model (the next stage's input) is gone.
recorded() {   # recorded DIR: true (and says so on stderr) when DIR's row has a committed final record
  [[ -n "${COMMITTED:-}" && "$1" == "$OUT/"* ]] || return 1
  local rel="${1#"$OUT/"}"
  rel="${rel%.distilled}"; rel="${rel%.replaced}"
  # Only a row's task run (<...>/<task>-s<seed>) counts: a shared input (the pre-trained compact model, a corpus stage)
  # has a record too, but the rows still to run need its model.
  [[ "$rel" =~ /[a-z0-9]+-s[0-9]+$ && -f "$COMMITTED/$rel.metrics.json" ]] || return 1
  echo "$SCRIPT: $1 skipped: its record is committed in $COMMITTED" >&2
}
todo() {   # todo DIR: prints --resume when DIR left a checkpoint; returns 1 when DIR is finished (here, or on record)
  if [[ -f "$1/config.json" ]]; then return 1; fi
  if recorded "$1"; then return 1; fi
  if [[ -d "$1/checkpoint" ]]; then echo "--resume"; fi
}

# Shared inputs that two streams may both come to make (the SST-2 sample below, claims-agnostic.sh's random inits): the
# first makes it under a blocking lock on $OUT/locks/NAME.lock while the other waits, then finds it made.
once() {   # once NAME FILE CMD...: runs CMD unless FILE exists (CMD's last step makes FILE)
  local name="$1" file="$2"; shift 2
  [[ -e "$file" ]] && return 0
  mkdir -p "$OUT/locks"
  ( set -e; flock 8; [[ -e "$file" ]] || "$@" ) 8> "$OUT/locks/$name.lock"
}

# SST-2's fixed student sample: 20,000 training sentences drawn once (seed 20000), the dev set as it is.
sst2_sample="$OUT/data/SST-2"
make_sst2_sample() {
  rm -rf "$sst2_sample.tmp" && mkdir -p "$sst2_sample.tmp"
  python3 - "$DATA/glue/SST-2/train.tsv" "$sst2_sample.tmp/train.tsv" <<'EOF'
import random, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
header, rows = lines[0], lines[1:]
random.Random(20000).shuffle(rows)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join([header] + rows[:20000]) + "\n")
EOF
  cp "$DATA/glue/SST-2/dev.tsv" "$sst2_sample.tmp/dev.tsv"
  rm -rf "$sst2_sample" && mv "$sst2_sample.tmp" "$sst2_sample"
}
once sst2-sample "$sst2_sample/dev.tsv" make_sst2_sample
data_of() { if [[ "$1" == sst2 ]]; then echo "$sst2_sample"; else echo "$DATA/glue"; fi; }

# The bench stages' timed runs. Timing needs an otherwise idle CPU: the run waits (at most 10 minutes) for the 1-minute
# load average to fall below 1.5, and the load it started at is written under its table.
idle_wait() {   # waits (at most 10 minutes) for the 1-minute load average to fall below 1.5; prints it
  local i load
  [[ -n "${SMOKE:-}" ]] && { cut -d' ' -f1 /proc/loadavg; return 0; }   # a smoke's timings mean nothing anyway
  for i in $(seq 60); do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    python3 -c "import sys; sys.exit(0 if $load < 1.5 else 1)" && break
    sleep 10
  done
  cut -d' ' -f1 /proc/loadavg
}
bench_run() {   # bench_run JSON BACKENDS MODELS...: one bench run, skipped when its JSON record exists
  local json="$1" backends="$2" task="$3"; shift 3
  [[ -f "$json" ]] && return 0
  mkdir -p "$(dirname "$json")"
  local load; load="$(idle_wait)"
  local iterations=(--iterations 20); [[ -n "${SMOKE:-}" ]] && iterations=(--iterations 2)
  distillery bench "$@" --task "$task" --data "$(data_of "$task")" --backends "$backends" "${iterations[@]}" \
    --out "${json%.json}.md" --json "$json.tmp"
  echo "load average before timing: $load" >> "${json%.json}.md"
  mv "$json.tmp" "$json"
}

# Two streams, one queue: bench/claims-all.sh runs a suite's trainings as two one-thread processes that walk the same
# list of units (claims-task.sh: claim x task x seed; claims-agnostic.sh: a row's corpus stage, then its fine-tunings)
# and each take the next unit the other does not hold, so neither sits idle while the other still has work (splitting
# the tasks between them left the stream with the lighter tasks idle at the end of every stage). The hold is an flock on
# $OUT/locks/<unit>.lock: the kernel releases it when its holder dies (a session's end, a kill), so no stale lock
# outlives a run, and a unit an earlier run left half done is resumed by whichever stream takes it next.
HELD=75   # LOCKED_STATUS when the other stream holds the unit
locked() {   # locked UNIT CMD...: runs CMD in a subshell while holding UNIT's lock; sets LOCKED_STATUS to 0 when CMD
  # succeeded or $HELD when the other stream holds UNIT; a CMD that fails stops this stream (the process) with its status.
  # Call it as a plain command: under `locked ... || ...` bash would ignore set -e inside CMD.
  local unit="$1" errexit=0; shift
  [[ $- == *e* ]] && errexit=1
  mkdir -p "$OUT/locks"
  set +e
  ( set -e; flock -n 9 || exit "$HELD"; "$@" ) 9> "$OUT/locks/$unit.lock"
  LOCKED_STATUS=$?
  [[ $errexit == 1 ]] && set -e
  if [[ $LOCKED_STATUS != 0 && $LOCKED_STATUS != "$HELD" ]]; then
    echo "$SCRIPT: $unit failed (exit $LOCKED_STATUS); this stream stops" >&2
    exit "$LOCKED_STATUS"
  fi
  return 0
}
started() {   # started WHAT CMD...: says WHAT starts, then runs CMD (inside locked: a held unit says nothing)
  local what="$1"; shift
  echo "$SCRIPT: $(date -u +%FT%TZ) $what" >&2
  "$@"
}
