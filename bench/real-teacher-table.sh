#!/usr/bin/env bash
# Collects the records of bench/real-teacher.sh and prints the teacher table (markdown) from them.
#
#   bench/real-teacher-table.sh            # copy finished runs' records into docs/records/real-teacher/, print the table
#   RECORDS_ONLY=1 bench/real-teacher-table.sh   # print the table from the committed records only (no runs/ needed)
#
# A run counts when its folder is finished (config.json written last) and has metrics.json; its metrics.json and
# run_config.json are copied as docs/records/real-teacher/<run>.metrics.json and <run>.run_config.json (small JSON; the
# models themselves are not committed). The table reads only docs/records/real-teacher, so it regenerates from git.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-runs/real-teacher}"
RECORDS="docs/records/real-teacher"
mkdir -p "$RECORDS"
if [[ -z "${RECORDS_ONLY:-}" && -d "$OUT" ]]; then
  for run in "$OUT"/*/; do
    name="$(basename "$run")"
    [[ -f "$run/config.json" && -f "$run/metrics.json" ]] || continue
    cp "$run/metrics.json" "$RECORDS/$name.metrics.json"
    [[ -f "$run/run_config.json" ]] && cp "$run/run_config.json" "$RECORDS/$name.run_config.json"
  done
  [[ -f "$OUT/COMMIT" ]] && cp "$OUT/COMMIT" "$RECORDS/COMMIT"
  [[ -f models/minilm-l6-h384/import.json ]] && cp models/minilm-l6-h384/import.json "$RECORDS/import.json"
fi

score() {   # score RUN: the task's official metrics x100, "-" when the run has no record yet
  local f="$RECORDS/$1.metrics.json"
  [[ -f "$f" ]] || { echo "-"; return; }
  jq -r '.dev | to_entries | map(select(.key != "loss")) | map("\(.key) \((.value * 1000 | round) / 10)") | join(", ")' "$f"
}
wall() { local f="$RECORDS/$1.metrics.json"; [[ -f "$f" ]] && jq -r '"\(.wall_seconds | round) s, best step \(.best_step) / \(.steps)"' "$f" || echo "-"; }

echo "| task | real teacher (all-MiniLM-L6-v2, fine-tuned) | same L6-H384 from random init | real teacher: wall, best step |"
echo "|---|---|---|---|"
for task in sst2 mrpc stsb rte cola squad; do
  echo "| $task | $(score "$task") | $(score "scratch-$task") | $(wall "$task") |"
done
if [[ -f "$RECORDS/teacher-mlm.metrics.json" ]]; then
  echo
  jq -r '"MLM head on the frozen encoder: held-out MLM loss \(.eval.mlm_loss | . * 1000 | round / 1000), accuracy \(.eval.mlm_accuracy * 1000 | round / 10)%, perplexity \(.eval.perplexity | round); \(.steps) steps, \(.wall_seconds | round) s, \(.corpus_tokens) corpus tokens"' "$RECORDS/teacher-mlm.metrics.json"
fi
