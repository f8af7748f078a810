#!/usr/bin/env bash
# The three long suites one after another, in the issues' order, so the CPU does not sit idle between them: the
# task-specific claims (bench/claims-task.sh), the task-agnostic claims (bench/claims-agnostic.sh), then the
# sentence-embedding students (bench/embed-claims.sh). Every suite skips its finished stages and resumes an interrupted
# one, so after a session ends (and kills the run) the same command continues where it stopped. A suite that fails
# stops the chain (its last lines are in the driver log) rather than starting the next suite on a broken premise.
# Each suite ends with its per-example dev predictions where the binary can write them (bench/claims-predictions.sh;
# `eval --predictions` exists from commit 70d7a30), so the tables' bootstrap has them.
#
#   DISTILLERY=/tmp/distillery-<commit>/Distillery.Cli nohup nice -n 5 bench/claims-all.sh >> runs/claims-driver.log 2>&1 &
#   SUITES="task agnostic embed" bench/claims-all.sh   # all three (the task suite is complete: see SUITES below)
#   bench/claims-progress.py                        # how far they are: runs recorded / here / started / to do
#
# Priorities between two runs started by setsid (each its own session): Linux's autogroup scheduling (on here:
# /proc/sys/kernel/sched_autogroup_enabled = 1) shares the CPU fairly between sessions, and `nice` only orders the
# processes inside one, so a `nice -n 19` run in its own session still takes a whole core from a two-stream driver.
# To run one beside another at a lower priority, set its session's weight: `echo 10 > /proc/PID/autogroup` (any
# process of the session; 19 takes only what the other leaves). A third stream of this suite can so take a core a
# driver leaves idle: ROWS=ROW STREAMS=1 OMP_NUM_THREADS=1 bench/claims-agnostic.sh shares the units' locks.
#
# Two streams: the task-specific suite's rows (wrs, theseus, prune) run as two processes at once, each on one thread
# (OMP_NUM_THREADS=1), after a single `prepare` pass makes what they share (every seed's random-init student, the
# pre-trained compact model); then quant's best row is chosen once (it needs every task), quant's trainings run as two
# streams the same way, and its bench runs and the rows' bench run alone on both threads (bench needs an idle CPU). The
# two streams walk one queue: the same list of units (claim x task x seed, claim by claim) under a lock per unit
# (bench/claims-common.sh's locked), each stream taking the next unit the other does not hold, so neither sits idle
# while the other has work left. (Until 2026-12-05 each stream had half of the tasks, SST-2 and MRPC | STS-B and RTE,
# and the stream with the lighter half waited for the other at the end of every stage.) Why two streams: on this
# 2-core machine two one-thread trainings finish more work than one two-thread training: Distillery.Bench train-step
# (Trainer, fp32, commit c0bf886, 2-core Sapphire Rapids) measured the L3-H384 student at batch 32 x 20 tokens at 262
# ms/step on two threads alone against 374-380 ms/step for each of two one-thread runs at once (1.39x the steps per
# second), and the L6-H384 teacher at 32 x 48 at 798 against 1,423-1,440 ms (1.11x). STREAMS=1 runs the rows as one
# two-thread process instead. The task-agnostic suite runs its corpus stages and fine-tunings as two one-thread
# streams on one queue the same way (claims-agnostic.sh, STREAMS passes through); the embedding suite runs as one
# process.
#
# Run it from a checkout whose path stays the same across sessions (the suites' run configs hold the data paths, and
# binaries before 67dcbc3 compare them as written on --resume), with a published binary (dotnet publish
# src/Distillery.Cli -c Release -o /tmp/distillery-<commit>) so rebuilding the checkout does not pull it from under the
# run. Environment: DISTILLERY (required), EMBED_DISTILLERY (the embedding suite's binary, default DISTILLERY),
# EXTRACT_DISTILLERY (the task-agnostic suite's `distillery extract` for its teacher-layers row, default
# EMBED_DISTILLERY: a newer binary than DISTILLERY where the suites started on one without extract), SUITES
# (default "agnostic embed"), STREAMS (2 or 1),
# ROW_CLAIMS (the streams' claims, default "wrs theseus prune"), OUT_ROOT (default runs: the suites
# write to OUT_ROOT/claims, OUT_ROOT/claims-agnostic, OUT_ROOT/embed); the suites' own variables pass through, except
# OUT. A smoke (SMOKE=1) needs an OUT_ROOT of its own, so that it never writes into the real runs.
#
# On a new machine (no runs/) the same command starts over from the committed records: the suites skip every row whose
# record is in docs/records, and this script first makes what the rows need and runs/ no longer has: the fine-tuned
# teachers (bench/real-teacher.sh, as a one-thread stream beside the task suite's prepare) and, before the task-agnostic
# suite, the masked-LM teacher. TEACHERS (default runs/real-teacher) and TEACHER_MLM pass through to the suites.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${DISTILLERY:?set DISTILLERY to a published Distillery.Cli}"
export DISTILLERY
export EXTRACT_DISTILLERY="${EXTRACT_DISTILLERY:-${EMBED_DISTILLERY:-$DISTILLERY}}"
# The task-specific suite's records are all committed (part 1 complete, 2026-12-05), so it is left out by default: on a
# machine without its runs it would first fine-tune the four teachers again (~1 h) to find every row recorded.
SUITES="${SUITES:-agnostic embed}"
OUT_ROOT="${OUT_ROOT:-runs}"
teachers="${TEACHERS:-runs/real-teacher}"   # the suites' TEACHERS: made here by bench/real-teacher.sh when missing
if [[ -n "${SMOKE:-}" && "$OUT_ROOT" == runs ]]; then
  echo "claims-all.sh: a smoke run needs OUT_ROOT (e.g. OUT_ROOT=/tmp/claims-all-smoke), not the real runs folder" >&2; exit 2
fi
stamp() { echo "claims-all.sh: $(date -u +%FT%TZ) $*"; }
stamp "start: scripts $(git rev-parse --short HEAD 2>/dev/null || echo unknown), binary $("$DISTILLERY" --version 2>/dev/null || echo unknown), suites $SUITES"
for suite in $SUITES; do
  case "$suite" in
    task)     script=bench/claims-task.sh;     out="$OUT_ROOT/claims" ;;
    agnostic) script=bench/claims-agnostic.sh; out="$OUT_ROOT/claims-agnostic" ;;
    embed)    script=bench/embed-claims.sh;    out="$OUT_ROOT/embed" ;;
    *) echo "claims-all.sh: unknown suite '$suite' (task, agnostic, embed)" >&2; exit 2 ;;
  esac
  stamp "$suite: $script"
  if [[ "$suite" == agnostic && ! -f "${TEACHER_MLM:-$teachers/teacher-mlm}/config.json" ]]; then
    [[ -z "${SMOKE:-}" ]] || { echo "claims-all.sh: a smoke run needs the masked-LM teacher in ${TEACHER_MLM:-$teachers/teacher-mlm}" >&2; exit 2; }
    stamp "$suite: fitting the masked-LM teacher (bench/real-teacher.sh, stage mlm)"
    OUT="$teachers" STAGES="import mlm" bash bench/real-teacher.sh || { stamp "$suite: the masked-LM teacher failed; the chain stops here"; exit 1; }
  fi
  if [[ "$suite" == task && "${STREAMS:-2}" == 2 ]]; then
    # The inputs: the fine-tuned teachers (bench/real-teacher.sh) where this machine has none (a new machine starts
    # without runs/; the committed records spare the finished rows, not these), beside prepare, one thread each.
    missing=()
    for task in ${TASKS:-sst2 mrpc stsb rte}; do [[ -f "$teachers/$task/config.json" ]] || missing+=("$task"); done
    if [[ ${#missing[@]} -gt 0 ]]; then
      [[ -z "${SMOKE:-}" ]] || { echo "claims-all.sh: a smoke run needs the fine-tuned teachers in $teachers (missing: ${missing[*]})" >&2; exit 2; }
      stamp "$suite: fine-tuning the teachers of ${missing[*]} (bench/real-teacher.sh) beside prepare"
      ( set -o pipefail
        OUT="$teachers" STAGES="import glue" TASKS="${missing[*]}" OMP_NUM_THREADS=1 bash bench/real-teacher.sh 2>&1 | sed -u "s/^/[teachers] /" ) &
      teachers_pid=$!
      ( set -o pipefail; OUT="$out" CLAIMS=prepare OMP_NUM_THREADS=1 bash "$script" 2>&1 | sed -u "s/^/[prepare] /" ) &
      prepare_pid=$!
      wait "$teachers_pid" || { stamp "$suite: the teachers' fine-tuning failed; the chain stops here"; wait "$prepare_pid"; exit 1; }
      wait "$prepare_pid" || { stamp "$suite: prepare failed; the chain stops here"; exit 1; }
    else
      OUT="$out" CLAIMS=prepare bash "$script" || { stamp "$suite: prepare failed; the chain stops here"; exit 1; }
    fi
    pids=()
    for stream in 1 2; do
      ( set -o pipefail
        OUT="$out" CLAIMS="${ROW_CLAIMS:-wrs theseus prune}" OMP_NUM_THREADS=1 bash "$script" 2>&1 | sed -u "s/^/[stream $stream] /" ) &
      pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [[ $failed == 0 ]] || { stamp "$suite: a stream failed; the chain stops here"; exit 1; }
    # quant's trainings (QAT of the teacher and the best row, and that row trained again where it is only a record) as
    # two streams too, after the best row is chosen once from every row's records; then its bench runs and the rows'
    # bench, alone (timing needs an idle CPU).
    OUT="$out" CLAIMS=best-row bash "$script" || { stamp "$suite: choosing quant's best row failed; the chain stops here"; exit 1; }
    pids=(); failed=0
    for stream in 1 2; do
      ( set -o pipefail
        OUT="$out" CLAIMS=qat OMP_NUM_THREADS=1 bash "$script" 2>&1 | sed -u "s/^/[qat stream $stream] /" ) &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [[ $failed == 0 ]] || { stamp "$suite: a QAT stream failed; the chain stops here"; exit 1; }
    OUT="$out" CLAIMS="quant bench" bash "$script" || { stamp "$suite: quant/bench failed (exit $?); the chain stops here"; exit 1; }
  else
    # The embedding suite may run on a newer binary than the claims suites (EMBED_DISTILLERY): it compares its rows
    # with each other only, and its reduce rows need `distillery reduce`; a suite never changes binary midway.
    suite_binary="$DISTILLERY"
    [[ "$suite" != embed ]] || suite_binary="${EMBED_DISTILLERY:-$DISTILLERY}"
    [[ "$suite_binary" == "$DISTILLERY" ]] || stamp "$suite: binary $("$suite_binary" --version 2>/dev/null || echo unknown) (EMBED_DISTILLERY)"
    OUT="$out" DISTILLERY="$suite_binary" bash "$script" || { stamp "$suite: failed (exit $?); the chain stops here"; exit 1; }
  fi
  if [[ "$suite" != embed ]]; then
    if "$DISTILLERY" eval --help 2>/dev/null | grep -q -- --predictions; then
      bash bench/claims-predictions.sh "$out" || stamp "$suite: dev predictions failed (the tables will say which are missing)"
    else
      stamp "$suite: this binary has no eval --predictions; run bench/claims-predictions.sh with a newer one"
    fi
  fi
  stamp "$suite: done"
done
stamp "all done"
