#!/usr/bin/env bash
# kill -9 at random moments + --resume ends where an uninterrupted run ends (issue "Never lose or fake a model"):
# fine-tunes a small model (L2-H128 from random init, SST-2 sample) once straight through, then N times with a real
# SIGKILL at a random moment after a random checkpoint, each time resumed with --resume until it finishes. Every
# interrupted run must end with a byte-identical model.safetensors, the same best-checkpoint choice (metrics.json dev
# scores), and the same metrics.jsonl (every field of every line: loss, learning rate, gradient norm, skipped steps,
# dev evaluations; but tokens_per_second and elapsed_seconds, which differ by nature). The test suite holds the same
# property in-process (TrainingTests.KilledAtThreeSteps...); this is the process-level check, through the command line.
#
#   bench/kill-resume.sh            # 3 kills at random points, seed from $RANDOM (printed)
#   KILLS=5 SEED=7 bench/kill-resume.sh
#   COMMAND=prune bench/kill-resume.sh        # iterative pruning (PLATON, hidden dimensions too): masks and scores resume
#   COMMAND=homodistil bench/kill-resume.sh   # task-specific HomoDistil from the same model as its teacher
#
# Environment: DISTILLERY (default ./distillery), DATA (default ../shared/data), WORK (default a temporary folder),
# COMMAND (finetune, the default; prune; homodistil: the run that is killed and resumed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DATA="${DATA:-$root/../shared/data}"
DISTILLERY="${DISTILLERY:-./distillery}"
KILLS="${KILLS:-3}"
SEED="${SEED:-$RANDOM}"
[[ -d "$DATA/glue/SST-2" ]] || { echo "kill-resume.sh: shared data not found at $DATA" >&2; exit 1; }
WORK="${WORK:-$(mktemp -d)}"
echo "kill-resume.sh: work folder $WORK, random seed $SEED, $KILLS kills"
RANDOM=$SEED

COMMAND="${COMMAND:-finetune}"
# 40 steps; checkpoint every 3 and log every 4 so checkpoints fall inside logging windows; evaluate every 10 so the
# best-checkpoint choice spans a kill too (iterative pruning evaluates once, at the end, at the target width).
# (An array, not a function: `cmd &` then gives the process's own PID, which kill -9 must hit; ./distillery execs it.)
common=(--task sst2 --data "$DATA/glue" --max-train-examples 640 --batch-size 16
  --max-steps 40 --lr 1e-3 --warmup-steps 4 --checkpoint-every 3 --log-every 4 --eval-every 10 --precision fp32 --seed 5)
case "$COMMAND" in
  finetune)   "$DISTILLERY" init --arch L2-H128 --out "$WORK/init" --seed 3 > /dev/null
              args=(finetune --model "$WORK/init" "${common[@]}") ;;
  # The masks narrow every 2 steps from step 4 to step 28 (warm-up 10%, final 30% of 40): most kills land mid-schedule.
  prune)      "$DISTILLERY" init --arch L2-H128 --task SequenceClassification --out "$WORK/init" --seed 3 > /dev/null
              args=(prune --model "$WORK/init" --target L2-H96-F256 --iterative --score platon --prune-every 2 "${common[@]}") ;;
  homodistil) "$DISTILLERY" init --arch L2-H128 --task SequenceClassification --out "$WORK/init" --seed 3 > /dev/null
              args=(distill --method homodistil --teacher "$WORK/init" --target L2-H96-F256 --prune-every 2 "${common[@]}") ;;
  *) echo "kill-resume.sh: COMMAND is finetune, prune or homodistil (got $COMMAND)" >&2; exit 1 ;;
esac
echo "kill-resume.sh: $COMMAND: ${args[*]}"
trajectory() {   # the fields of metrics.jsonl a resume must reproduce
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print({k: v for k, v in sorted(r.items()) if k not in ("tokens_per_second", "elapsed_seconds")})' "$1"
}
dev_scores() { python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps({k: v for k, v in m.items() if k.startswith("dev") or k.startswith("best")}, sort_keys=True))' "$1"; }

"$DISTILLERY" "${args[@]}" --out "$WORK/whole" > "$WORK/whole.log" 2>&1
expected_weights="$(sha256sum < "$WORK/whole/model.safetensors")"
trajectory "$WORK/whole/metrics.jsonl" > "$WORK/whole.trajectory"
dev_scores "$WORK/whole/metrics.json" > "$WORK/whole.dev"
echo "uninterrupted: $(wc -l < "$WORK/whole.trajectory") log lines, dev $(cat "$WORK/whole.dev")"

failed=0
for i in $(seq 1 "$KILLS"); do
  out="$WORK/killed-$i"
  # Kill after the checkpoint of a random step (3..36) exists, plus a random 0-150 ms so the kill lands mid-step,
  # mid-log or mid-checkpoint rather than on a boundary.
  at=$(( (RANDOM % 12 + 1) * 3 )); delay_ms=$(( RANDOM % 150 ))
  "$DISTILLERY" "${args[@]}" --out "$out" > "$out.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    step="$(grep -m1 -o '"step": *[0-9]*' "$out/checkpoint/state.json" 2>/dev/null | grep -o '[0-9]*$' || echo 0)"
    (( step >= at )) && break
    sleep 0.02
  done
  sleep "$(printf '0.%03d' "$delay_ms")"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    state="killed after checkpoint $at (+${delay_ms} ms)"
  else
    wait "$pid" || true
    echo "kill $i: the run finished before the kill after checkpoint $at landed: no check made (rerun)"; failed=1; continue
  fi
  [[ -f "$out/config.json" ]] && finished_before=yes || finished_before=no
  if [[ "$finished_before" == no ]]; then
    # What a kill leaves must not look finished and must not load.
    if "$DISTILLERY" predict "$out" --text "a fine film" > /dev/null 2>&1; then
      echo "FAIL kill $i: the killed folder loads as a model"; failed=1
    fi
    "$DISTILLERY" "${args[@]}" --out "$out" --resume > "$out.resume.log" 2>&1 || { echo "FAIL kill $i: --resume failed:"; tail -3 "$out.resume.log"; failed=1; continue; }
  fi
  weights="$(sha256sum < "$out/model.safetensors")"
  trajectory "$out/metrics.jsonl" > "$out.trajectory"
  dev_scores "$out/metrics.json" > "$out.dev"
  verdict=ok
  [[ "$weights" == "$expected_weights" ]] || { verdict="FAIL (weights differ)"; failed=1; }
  cmp -s "$out.trajectory" "$WORK/whole.trajectory" || { verdict="FAIL (metrics.jsonl differs)"; diff "$WORK/whole.trajectory" "$out.trajectory" | head -6; failed=1; }
  cmp -s "$out.dev" "$WORK/whole.dev" || { verdict="FAIL (dev scores differ)"; failed=1; }
  echo "kill $i: $state; resumed: $verdict"
done
if (( failed )); then echo "kill-resume.sh: FAILED (work folder $WORK kept)"; exit 1; fi
echo "kill-resume.sh: all $KILLS interrupted runs are byte-identical in weights, metrics.jsonl trajectory and dev scores"
[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
