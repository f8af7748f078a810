#!/usr/bin/env bash
# Runs the student recipes behind docs/results.md's tables (Pre-trained Distillation, MiniLM, HomoDistil and pruning),
# one after another, each recipe's log in runs/students-logs/. Recipes share stages (the pre-trained L2-H256 student,
# the corpus-distilled students): `distillery run` skips a stage whose output is complete and resumes one that left a
# checkpoint, so re-running this script continues where it stopped. Needs the teacher from bench/teacher.sh
# (runs/teacher/{pretrained,sst2,mrpc}).
#
#   bench/students.sh                              # all recipes below
#   bench/students.sh recipes/sst2-kd.json ...     # only these
#
# Environment: DISTILLERY (the command, default ./distillery; a frozen copy of the binary lets it run while the
# sources change), DATA (default ../shared/data).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DATA="${DATA:-$root/../shared/data}"
DISTILLERY="${DISTILLERY:-./distillery}"
[[ -d "$DATA/glue" && -d "$DATA/corpus" ]] || { echo "students.sh: shared data not found at $DATA" >&2; exit 1; }
for t in pretrained sst2 mrpc; do
  [[ -f "runs/teacher/$t/config.json" ]] || { echo "students.sh: runs/teacher/$t is missing; run bench/teacher.sh first" >&2; exit 1; }
done

# MRPC's unlabeled transfer data for Pre-trained Distillation: the MRPC training pairs without labels, in both orders,
# and consecutive sentence pairs from the news (Brown press) text. One pair per line, a tab between the two texts.
mrpc_transfer=runs/teacher/mrpc-transfer.tsv
if [[ ! -s "$mrpc_transfer" ]]; then
  {
    tail -n +2 "$DATA/glue/MRPC/train.tsv" | sed 's/^\xEF\xBB\xBF//' | awk -F'\t' '{print $4 "\t" $5; print $5 "\t" $4}'
    awk 'NF > 3 { if (prev != "") print prev "\t" $0; prev = $0 }' "$DATA/corpus/brown/brown-press.txt"
  } > "$mrpc_transfer.tmp"
  mv "$mrpc_transfer.tmp" "$mrpc_transfer"
fi

recipes=("$@")
if [[ ${#recipes[@]} -eq 0 ]]; then
  for task in sst2 mrpc; do
    for r in basic kd pf pd distilbert minilm minilm-half minilm-assistant; do recipes+=("recipes/$task-$r.json"); done
  done
  # HomoDistil and the pruning comparison (SST-2).
  recipes+=(recipes/sst2-homodistil.json recipes/sst2-prune-oneshot.json recipes/sst2-prune-iterative-{sensitivity,magnitude,platon}.json)
fi
mkdir -p runs/students-logs
for r in "${recipes[@]}"; do
  [[ -f "$r" ]] || { echo "students.sh: $r not found" >&2; exit 1; }
  name="$(basename "$r" .json)"
  echo "== $(date -u +%FT%TZ) $name" >&2
  /usr/bin/time -f "$name wall %e s" $DISTILLERY run "$r" > "runs/students-logs/$name.log" 2>&1 \
    || { echo "students.sh: $name failed, see runs/students-logs/$name.log" >&2; tail -5 "runs/students-logs/$name.log" >&2; exit 1; }
  tail -1 "runs/students-logs/$name.log" >&2
done
