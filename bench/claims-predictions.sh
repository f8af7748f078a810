#!/usr/bin/env bash
# Per-example dev predictions of every finished task run of the claims suites, for the paired bootstrap over dev
# examples in bench/claims-table.py and bench/claims-agnostic-table.py (the issues' "or a paired bootstrap over dev
# examples says p < 0.05"). For each run folder <row>/<task>-s<seed> under the given suite folders that is finished
# (config.json, written last, and metrics.json) it writes <run>/dev-predictions.json with `distillery eval --predictions`:
# the kept checkpoint's prediction and the gold answer of every dev example, and the metrics of those predictions. A
# file newer than the run's model is kept, so the script can run again after every session. Evaluation only: seconds per
# run on the L3 students; the training runs themselves are not touched.
#
#   bench/claims-predictions.sh                          # runs/claims and runs/claims-agnostic
#   DISTILLERY=/tmp/distillery-<commit>/Distillery.Cli bench/claims-predictions.sh runs/claims
#
# Environment: DATA (default ../shared/data), DISTILLERY (default ./distillery; any build with `eval --predictions`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DATA="${DATA:-$root/../shared/data}"
DISTILLERY="${DISTILLERY:-./distillery}"
[[ -d "$DATA/glue" ]] || { echo "claims-predictions.sh: shared data not found at $DATA" >&2; exit 1; }
suites=("$@"); [[ ${#suites[@]} -gt 0 ]] || suites=(runs/claims runs/claims-agnostic)
written=0 kept=0
for suite in "${suites[@]}"; do
  [[ -d "$suite" ]] || continue
  # <suite>/<claim>/<row>/<task>-s<seed> (part 1) and <suite>/<row>/<task>-s<seed> (part 2): the final stage's folder,
  # not its .distilled / .replaced predecessors.
  while IFS= read -r run; do
    [[ -f "$run/config.json" && -f "$run/metrics.json" ]] || continue
    file="$run/dev-predictions.json"
    if [[ -s "$file" && "$file" -nt "$run/model.safetensors" ]]; then kept=$((kept + 1)); continue; fi
    name="$(basename "$run")"; task="${name%-s*}"
    "$DISTILLERY" eval --model "$run" --task "$task" --data "$DATA/glue" --predictions "$file" > /dev/null ||
      { echo "claims-predictions.sh: failed: $DISTILLERY eval --model $run --task $task --predictions $file" >&2; exit 1; }
    written=$((written + 1))
  done < <(find -H "$suite" -mindepth 2 -maxdepth 3 -type d -regextype posix-extended \
             -regex '.*/(sst2|mrpc|stsb|rte|cola)-s[0-9]+' | sort)
done
echo "claims-predictions.sh: $written written, $kept up to date" >&2
