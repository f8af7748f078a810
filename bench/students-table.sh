#!/usr/bin/env bash
# The distillation results tables (docs/results.md): `distillery bench` over the teacher and every student made by
# bench/students.sh, per task, in one run each (so latencies compare), then each student's compression wall time: the sum
# of its recipe's stages (a stage shared by several recipes, like the pre-trained student, counts in each).
# Run it on an otherwise idle machine: latency at batch 1 is ruined by another process on the two cores.
#
#   bench/students-table.sh                 # tables and plots in runs/tables/
#   TASKS=sst2 BENCH_ARGS="--backends torch-fp32,onnx-int8" bench/students-table.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DATA="${DATA:-$root/../shared/data}"
DISTILLERY="${DISTILLERY:-./distillery}"
TASKS="${TASKS:-sst2 mrpc}"
BENCH_ARGS="${BENCH_ARGS:-}"
mkdir -p runs/tables
for task in $TASKS; do
  models=("runs/teacher/$task")
  recipes=()
  for r in basic kd pf pd distilbert minilm minilm-half minilm-assistant; do
    recipe="recipes/$task-$r.json"
    out="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][-1]["out"])' "$recipe")"
    if [[ -f "$out/config.json" ]]; then models+=("$out"); recipes+=("$recipe"); else echo "students-table.sh: $out not made yet, left out" >&2; fi
  done
  $DISTILLERY bench "${models[@]}" --task "$task" --data "$DATA/glue" $BENCH_ARGS --out "runs/tables/$task.md" --plot "runs/tables/$task.png"
  python3 - "${recipes[@]}" > "runs/tables/$task-wall.md" <<'PY'
import json, os, sys
print("| recipe | stages (wall s each) | compression wall s |")
print("|---|---|---:|")
for recipe in sys.argv[1:]:
    stages = json.load(open(recipe))["stages"]
    parts, total = [], 0.0
    for s in stages:
        m = os.path.join(s["out"], "metrics.json")
        if not os.path.exists(m): continue   # init stages write no metrics
        wall = json.load(open(m)).get("wall_seconds", 0.0)
        parts.append(f'{s["stage"]} {wall:.0f}'); total += wall
    print(f'| {os.path.basename(recipe)[:-5]} | {", ".join(parts)} | {total:.0f} |')
PY
  cat "runs/tables/$task-wall.md"
done
