#!/usr/bin/env bash
# The papers' task-specific claims against the real teacher (issue "The papers' claims ..., part 1"), 3 seeds per row.
# Every stage is one distillery command whose output folder is skipped when finished (config.json is written last) and
# resumed from its checkpoint when an interrupted run left one, so the script spans sessions: run it again to continue.
# bench/claims-table.sh makes docs/results.md's tables from the records the runs leave (metrics.json, run_config.json).
#
#   bench/claims-task.sh                           # every claim, every task, seeds 1 2 3 (claim-major: a whole claim first)
#   CLAIMS=wrs SEEDS=1 TASKS="sst2 mrpc" bench/claims-task.sh
#   SMOKE=1 OUT=/tmp/claims-smoke bench/claims-task.sh   # every command for a few steps: checks the script, not the claims
#
# Protocol (one rule for every row, say so in the results):
# - Teacher: the imported all-MiniLM-L6-v2 (L6-H384-A12-F1536), fine-tuned per task by bench/real-teacher.sh
#   (runs/real-teacher/<task>: SST-2 89.4, MRPC F1 86.9, STS-B 86.5, RTE 57.0, CoLA 26.9).
# - Student size: L3-H384-A12-F1536 (half depth, the teacher's width and heads; DistilBERT/Theseus/PKD's "6 of 12").
# - Student training data: SST-2 one fixed 20,000-sentence sample of its 67,349 (the same for every row and seed; the
#   teacher saw all of them); MRPC, STS-B, RTE in full. Epochs: SST-2 2, the others 3. Batch 32, warm-up 10%, fp32
#   (the same arithmetic on every machine: bf16 exists natively on some of ours only).
# - Checkpoint choice: the best of 5 periodic dev evaluations (finetune's and distill's rule), the same for every row.
# - Seeds 1, 2, 3: the seed sets the student's init, data order, dropout; the teacher and the SST-2 sample are fixed.
#
# Claims (rows):
#   wrs      Well-Read Students: basic (random init, labels), kd (random init, soft targets + labels), pf (pre-trained
#            compact model, fine-tuned), pd (pre-trained, distilled on unlabeled transfer data with soft targets only,
#            then fine-tuned), pd-quarter (pd with 1/4 of the transfer data, the same number of steps).
#   theseus  BERT-of-Theseus: successor L3 replacing the teacher's 6 layers in pairs with the linear curriculum, a
#            constant rate, and anti-curriculum, each then fine-tuned alone; vs kd-layers (vanilla KD into a student made
#            of the teacher's first 3 layers, the paper's KD baseline initialisation).
#   prune    Structured pruning and task-specific HomoDistil at the L3-H384 student's parameter count (17.4M), the
#            teacher's depth kept: HomoDistil (pruned while distilled) vs one-shot pruning + fine-tuning vs iterative
#            pruning without distillation, the last under sensitivity, magnitude and PLATON scores. Every distillation
#            logs the teacher-student KL on dev at each evaluation (HomoDistil's discrepancy curve; wrs's kd row is the
#            fresh student of the same size).
#   prepare  Only what several rows share and two processes must not make at once: every seed's random-init student
#            and the pre-trained compact model (bench/claims-all.sh runs it before the two streams start on the rows).
# Stages after every seed of the claims above (they need them all; bench/claims-all.sh runs best-row alone, then qat as
# two streams on one queue, then quant and bench alone; CLAIMS="quant bench" does all of it in one process):
#   quant    Quantization: the teacher and the best student row (the highest mean task average over 3 seeds among the
#            rows above, chosen once and written to $OUT/quant/best-row.txt): int8 after QAT (1 epoch of the student
#            data, KD from the task's teacher, seeds 1-2-3); then one bench run per task over fp32, dynamic int8 and QAT
#            int8 (ONNX Runtime, fused graphs): dev score, bytes on disk, batch-1 and batch-32 latency.
#   bench    Latency of every row (its seed-1 model) and the teacher on TorchSharp and ONNX Runtime fp32, one bench run
#            per task: the x axis of the score-vs-latency plot. Timing needs an otherwise idle CPU: run no build or
#            other job meanwhile (the stage waits up to 10 minutes for the 1-minute load to fall below 1.5 and records it).
#
# Compute: the kd rows read the teacher's logits from a teacher-logit cache ($OUT/teacher-logits, safetensors shards,
# one per teacher x training examples), so the teacher runs once per task (and transfer set), not in every step and seed.
#
# Environment: OUT (default runs/claims), DATA (default ../shared/data), DISTILLERY (default ./distillery; run a
# published copy: dotnet publish src/Distillery.Cli -c Release -o /tmp/distillery-<commit>), TEACHERS (default
# runs/real-teacher), SEEDS, TASKS, CLAIMS, ONLY_ROW (claim/row: train that row only), COMMITTED (default docs/records/claims-task, empty in a smoke: a run whose
# final record is there is skipped, so a new machine continues from the committed records, not from scratch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-runs/claims}"
DATA="${DATA:-$root/../shared/data}"
TEACHERS="${TEACHERS:-runs/real-teacher}"
SEEDS="${SEEDS:-1 2 3}"
TASKS="${TASKS:-sst2 mrpc stsb rte}"
CLAIMS="${CLAIMS:-wrs theseus prune quant bench}"
DISTILLERY="${DISTILLERY:-./distillery}"
ARCH=L3-H384-A12-F1536
# The teacher-logit cache: every kd row (kd, PD's distillation, kd-layers) reads the teacher's logits on its training
# examples from here, computed once per teacher x examples, instead of running the teacher in every step and seed.
CACHE="$OUT/teacher-logits"
# Rows whose records are committed are not trained again (bench/claims-common.sh's todo): a smoke run counts only its own.
if [[ -n "${SMOKE:-}" ]]; then COMMITTED="${COMMITTED:-}"; else COMMITTED="${COMMITTED-$root/docs/records/claims-task}"; fi
[[ -d "$DATA/glue" && -d "$DATA/corpus" ]] || { echo "claims-task.sh: shared data not found at $DATA" >&2; exit 1; }
for task in $TASKS; do   # every claim but prepare needs the task's fine-tuned teacher
  [[ "$CLAIMS" == prepare ]] && break
  [[ -f "$TEACHERS/$task/config.json" ]] || { echo "claims-task.sh: no fine-tuned teacher $TEACHERS/$task (bench/real-teacher.sh)" >&2; exit 1; }
done
# The run folder and its commit stamp, the logged command, todo (skip / --resume), the fixed SST-2 sample (data_of), and bench_run (the bench stages' timed
# runs, after an idle-CPU wait): bench/claims-common.sh.
SCRIPT=claims-task.sh
# shellcheck source=bench/claims-common.sh
source "$root/bench/claims-common.sh"

# Unlabeled transfer data for Pre-trained Distillation, one example per line (a tab between a pair's texts): the task's
# own training inputs without labels (pairs in both orders), plus in-domain text the task's data does not have: for
# SST-2 the movie-review corpus's sentences (one per line), for the pair tasks consecutive sentences of the Brown
# corpus's press section as pairs. The quarter set is every 4th line of the full one.
TRANSFER_DIR="$OUT/data"   # fixed here: retrain_best runs a row with another OUT and the same transfer sets
transfer_of() {   # transfer_of TASK [quarter]: prints the file, making it once
  local task="$1" f="$TRANSFER_DIR/transfer-$1.txt"
  if [[ ! -s "$f" ]]; then
    case "$task" in
      sst2) { tail -n +2 "$DATA/glue/SST-2/train.tsv" | cut -f1
              cat "$DATA"/corpus/movie_reviews/*.txt | awk 'NF >= 4'; } > "$f.tmp.$$" ;;
      mrpc) { tail -n +2 "$DATA/glue/MRPC/train.tsv" | sed 's/^\xEF\xBB\xBF//' | awk -F'\t' '{print $4 "\t" $5; print $5 "\t" $4}'
              awk 'NF > 3 { if (prev != "") print prev "\t" $0; prev = $0 }' "$DATA/corpus/brown/brown-press.txt"; } > "$f.tmp.$$" ;;
      stsb) { tail -n +2 "$DATA/glue/STS-B/train.tsv" | awk -F'\t' '{print $8 "\t" $9; print $9 "\t" $8}'
              awk 'NF > 3 { if (prev != "") print prev "\t" $0; prev = $0 }' "$DATA/corpus/brown/brown-press.txt"; } > "$f.tmp.$$" ;;
      rte)  { tail -n +2 "$DATA/glue/RTE/train.tsv" | awk -F'\t' '{print $2 "\t" $3}'
              awk 'NF > 3 { if (prev != "") print prev "\t" $0; prev = $0 }' "$DATA/corpus/brown/brown-press.txt"; } > "$f.tmp.$$" ;;
      *) echo "claims-task.sh: no transfer set for $task" >&2; exit 1 ;;
    esac
    mv "$f.tmp.$$" "$f"
  fi
  if [[ "${2:-}" == quarter ]]; then
    [[ -s "$f.quarter" ]] || { awk 'NR % 4 == 1' "$f" > "$f.quarter.tmp.$$" && mv "$f.quarter.tmp.$$" "$f.quarter"; }
    echo "$f.quarter"
  else
    echo "$f"
  fi
}

# ------------------------------------------------------------------------------------------------------ the budgets
epochs_of() { case "$1" in sst2) echo 2;; *) echo 3;; esac; }
train_size() { case "$1" in sst2) echo 20000;; mrpc) echo 3668;; stsb) echo 5749;; rte) echo 2490;; cola) echo 8551;; esac; }
steps_of() { echo $(( ($(train_size "$1") + 31) / 32 * $(epochs_of "$1") )); }
every_of() { echo $(( ($(steps_of "$1") + 4) / 5 )); }   # 5 evaluations per run
# The flags every task-training stage shares (finetune and task distillation). SMOKE: 4 steps on 64 examples.
train_flags() {   # train_flags TASK SEED LR [STEPS]: the task's epochs, or STEPS optimizer steps
  local length=(--epochs "$(epochs_of "$1")") every; every="$(every_of "$1")"
  [[ -n "${4:-}" ]] && length=(--max-steps "$4") && every=$(( ($4 + 4) / 5 ))
  [[ -n "${SMOKE:-}" ]] && length=(--max-steps 4 --max-train-examples 64) && every=2
  echo --task "$1" --data "$(data_of "$1")" "${length[@]}" --batch-size 32 --lr "$3" --warmup-ratio 0.1 \
    --eval-every "$every" --log-every 25 --checkpoint-every 100 --precision fp32 --seed "$2"
}

wanted() {   # wanted DIR: false when ONLY_ROW (claim/row, e.g. wrs/pd) is set and DIR belongs to another row
  [[ -z "${ONLY_ROW:-}" || "${1#"$OUT/"}" == "$ONLY_ROW/"* ]]
}
finetune() {   # finetune OUT MODEL TASK SEED LR
  wanted "$1" || return 0
  local flag; flag="$(todo "$1")" || return 0
  # shellcheck disable=SC2046
  distillery finetune --model "$2" --out "$1" $(train_flags "$3" "$4" "$5") $flag
}
distill() {   # distill OUT TASK SEED LR STEPS FLAGS...: task-specific distillation from the task's teacher (STEPS "": epochs)
  local out="$1" task="$2" seed="$3" lr="$4" steps="$5" flag; shift 5
  wanted "$out" || return 0
  flag="$(todo "$out")" || return 0
  # shellcheck disable=SC2046
  distillery distill --teacher "$TEACHERS/$task" --out "$out" $(train_flags "$task" "$seed" "$lr" "$steps") "$@" $flag
}
init() {   # init OUT SEED: a random-init student
  [[ -f "$1/config.json" ]] || distillery init --arch "$ARCH" --seed "$2" --out "$1"
}

# The compact model pre-trained once with masked-LM (Well-Read Students' PF and PD start from it), seed 1: the shared
# corpus (9M tokens) plus the GLUE training text (unlabeled), 1,600 steps x 32 x 128 tokens = 6.6M tokens, ~1 hour here.
pretrained="$OUT/pretrained-L3-H384"
pretrain_compact() {
  local flag; flag="$(todo "$pretrained")" || return 0
  local text="$OUT/data/glue-train-text.txt"
  if [[ ! -s "$text" ]]; then
    { tail -n +2 "$DATA/glue/SST-2/train.tsv" | cut -f1
      tail -n +2 "$DATA/glue/MRPC/train.tsv" | sed 's/^\xEF\xBB\xBF//' | awk -F'\t' '{print $4; print $5; print ""}'
      tail -n +2 "$DATA/glue/STS-B/train.tsv" | awk -F'\t' '{print $8; print $9; print ""}'
      tail -n +2 "$DATA/glue/RTE/train.tsv" | awk -F'\t' '{print $2; print $3; print ""}'; } > "$text.tmp"
    mv "$text.tmp" "$text"
  fi
  local steps=(--max-steps 1600 --eval-every 400)
  [[ -n "${SMOKE:-}" ]] && steps=(--max-steps 4 --eval-every 2 --eval-sequences 16)
  distillery pretrain --arch "$ARCH" --corpus "$DATA/corpus" --corpus "$text" --invalid-utf8 latin1 --out "$pretrained" \
    --seq-length 128 --batch-size 32 --lr 5e-4 --warmup-ratio 0.06 --checkpoint-every 100 --log-every 25 --precision fp32 \
    --seed 1 "${steps[@]}" $flag
}

# ------------------------------------------------------------------------------------------------------------ rows
prepare() {   # prepare TASK SEED: the shared inputs only (see the header)
  init "$OUT/init-L3-s$2" "$2"
  pretrain_compact
}

wrs() {   # wrs TASK SEED
  local task="$1" seed="$2" d="$OUT/wrs"
  init "$OUT/init-L3-s$seed" "$seed"
  finetune "$d/basic/$task-s$seed" "$OUT/init-L3-s$seed" "$task" "$seed" 1e-4
  distill "$d/kd/$task-s$seed" "$task" "$seed" 1e-4 "" --method kd --student "$OUT/init-L3-s$seed" --temperature 2 --alpha 0.5 \
    --teacher-cache "$CACHE"
  pretrain_compact
  finetune "$d/pf/$task-s$seed" "$pretrained" "$task" "$seed" 1e-4
  # PD: soft targets only (alpha 1, T 1, Well-Read Students' setting) on the transfer set, then the labels. Both PD rows
  # take the same number of steps (the task's student budget), so the quarter row differs in data only.
  local steps; steps="$(steps_of "$task")"
  for size in full quarter; do
    local row=pd; [[ $size == quarter ]] && row=pd-quarter
    distill "$d/$row/$task-s$seed.distilled" "$task" "$seed" 1e-4 "$steps" --method kd --student "$pretrained" \
      --temperature 1 --alpha 1 --transfer-data "$(transfer_of "$task" "$size")" --teacher-cache "$CACHE"
    finetune "$d/$row/$task-s$seed" "$d/$row/$task-s$seed.distilled" "$task" "$seed" 5e-5
  done
}

theseus() {   # theseus TASK SEED
  local task="$1" seed="$2" d="$OUT/theseus"
  # The paper's linear scheduler p = min(1, k t + b) with b = 0.3 reaching p = 1 at 3/4 of the replacing stage (its k
  # for GLUE does the same over its step counts); constant p = 0.5 (its constant baseline); anti-curriculum
  # p = max(0, 1 - (k t + b)).
  local steps k; steps="$(steps_of "$task")"
  k="$(python3 -c "print(f'{0.7 / (0.75 * $steps):.6f}')")"
  for scheduler in linear constant anti; do
    local b=0.3; [[ $scheduler == constant ]] && b=0.5
    distill "$d/$scheduler/$task-s$seed.replaced" "$task" "$seed" 5e-5 "" --method theseus --successor-layers 3 \
      --scheduler "$scheduler" --k "$k" --b "$b"
    finetune "$d/$scheduler/$task-s$seed" "$d/$scheduler/$task-s$seed.replaced" "$task" "$seed" 5e-5
  done
  distill "$d/kd-layers/$task-s$seed" "$task" "$seed" 5e-5 "" --method kd --init-from-teacher 0,1,2 --temperature 2 --alpha 0.5 \
    --teacher-cache "$CACHE"
}

prune() {   # prune TASK SEED: structured pruning and task-specific HomoDistil from the 6-layer teacher to the L3-H384
  # student's parameter count (17.4M with the classifier), keeping the depth: the width shrinks (heads, FFN neurons,
  # hidden dimensions). Rows: homodistil (pruned while distilled: task loss + logit KL + hidden and attention MSE,
  # cubic schedule, sensitivity scores), oneshot (sensitivity over 64 batches, pruned once, then fine-tuned), and
  # iterative pruning while fine-tuned without distillation under sensitivity, magnitude and PLATON scores. The same
  # task budget as every other row. Their checkpoints (every 100 steps, as every row's) carry the pruning masks and
  # importance scores, and one-shot pruning scores and prunes again on resume: an interrupted run resumes.
  # The "fresh student of the same size" of the claim is wrs's kd row. Checkpoint rule: homodistil and the iterative rows
  # keep the model as training ends (earlier evaluations are of a wider model); oneshot keeps the best of its 5, as
  # every other row does (results.md says so).
  local task="$1" seed="$2" d="$OUT/prune" target=17.4M
  pruned_run() {   # pruned_run OUT COMMAND FLAGS...: skips a finished OUT, resumes an interrupted one
    local out="$1" flag; shift
    wanted "$out" || return 0
    flag="$(todo "$out")" || return 0
    # shellcheck disable=SC2046
    distillery "$@" --out "$out" $(train_flags "$task" "$seed" 5e-5) $flag
  }
  pruned_run "$d/homodistil/$task-s$seed" distill --method homodistil --teacher "$TEACHERS/$task" --target "$target" \
    --score sensitivity --prune-every 10 --warmup-fraction 0.05 --final-fraction 0.2
  pruned_run "$d/oneshot/$task-s$seed" prune --model "$TEACHERS/$task" --target "$target" --score sensitivity --score-batches 64
  for score in sensitivity magnitude platon; do
    pruned_run "$d/iterative-$score/$task-s$seed" prune --model "$TEACHERS/$task" --target "$target" --score "$score" \
      --iterative --prune-every 50
  done
}

# ---------------------------------------------------------------------------------------- stages over every seed
quant_best_row() {   # the best student row, chosen once from the finished records (claims-table.py --best-row)
  local file="$OUT/quant/best-row.txt"
  if [[ ! -s "$file" ]]; then
    mkdir -p "$OUT/quant"
    # From every record: the committed ones (COMMITTED: other machines' rows), copied to a scratch folder, and this
    # machine's runs, which claims-table.py copies in (it never writes to COMMITTED).
    local records="${RECORDS:-$OUT/records}"
    if [[ -z "${RECORDS:-}" && -n "$COMMITTED" ]]; then
      rm -rf "$OUT/records-all" && cp -r "$COMMITTED" "$OUT/records-all" && records="$OUT/records-all"
    fi
    local best; best="$(OUT="$OUT" RECORDS="$records" TEACHERS="$TEACHERS" python3 bench/claims-table.py --best-row)" || {
      echo "claims-task.sh: quant needs a student row finished on every task and seed (run the other claims first)" >&2; exit 1; }
    echo "$best" > "$file.tmp" && mv "$file.tmp" "$file"
  fi
  cat "$file"
}
best_model() {   # best_model BEST TASK SEED: the best row's model: this machine's run, else the one trained again for quant
  if [[ -f "$OUT/$1/$2-s$3/config.json" ]]; then echo "$OUT/$1/$2-s$3"; else echo "$OUT/quant/retrained/$1/$2-s$3"; fi
}
retrain_best() {   # retrain_best BEST TASK SEED: where the best row's run is only a committed record (trained on another
  # machine, its model not here), trains it again with the same recipe and seed under $OUT/quant/retrained, for QAT and
  # the quant bench only: the claims tables keep the recorded run (claims-table.py copies the retrained one's record to
  # docs/records/claims-task/quant/retrained/ and the quant table says so).
  local best="$1" task="$2" seed="$3"
  [[ -f "$OUT/$best/$task-s$seed/config.json" ]] && return 0
  echo "claims-task.sh: $(date -u +%FT%TZ) quant: training $best $task seed $seed again (its model is only a record here)" >&2
  ( OUT="$OUT/quant/retrained"; COMMITTED=""; ONLY_ROW="$best"; mkdir -p "$OUT"; "${best%%/*}" "$task" "$seed" )
}
quant() {   # quant TASK SEED: QAT of the teacher and of the best row's seed-SEED student
  local task="$1" seed="$2" best steps; best="$(quant_best_row)"
  steps=$(( $(steps_of "$task") / $(epochs_of "$task") ))   # one epoch
  retrain_best "$best" "$task" "$seed"
  local kinds=("teacher:$TEACHERS/$task" "student:$(best_model "$best" "$task" "$seed")")
  for kind in "${kinds[@]}"; do
    local model="${kind#*:}" out="$OUT/quant/${kind%%:*}-qat/$task-s$seed" flag
    flag="$(todo "$out")" || continue
    # shellcheck disable=SC2046
    distillery quantize --mode qat --model "$model" --teacher "$TEACHERS/$task" --out "$out" \
      $(train_flags "$task" "$seed" 2e-5 "$steps") $flag
  done
}
quant_bench() {   # quant_bench TASK
  local task="$1" best; best="$(quant_best_row)"
  local models=("$TEACHERS/$task")
  for seed in $SEEDS; do models+=("$OUT/quant/teacher-qat/$task-s$seed"); done
  for seed in $SEEDS; do models+=("$(best_model "$best" "$task" "$seed")"); done
  for seed in $SEEDS; do models+=("$OUT/quant/student-qat/$task-s$seed"); done
  bench_run "$OUT/quant/bench-$task.json" onnx-fp32,onnx-int8 "$task" "${models[@]}"
}
rows_bench() {   # rows_bench TASK: every row's model of the first seed that has one here, and the teacher, TorchSharp
  # and ONNX Runtime fp32. Latency depends on the shapes only, so any seed times a row of fixed shape (wrs, theseus); a
  # pruned row's shapes are its seed's (the bench record names the model, seed included). Rows trained on another
  # machine have records but no model here.
  local task="$1" s
  local models=("$TEACHERS/$task")
  for row in wrs/basic wrs/kd wrs/pf wrs/pd wrs/pd-quarter theseus/linear theseus/constant theseus/anti theseus/kd-layers \
             prune/homodistil prune/oneshot prune/iterative-sensitivity prune/iterative-magnitude prune/iterative-platon; do
    for s in $SEEDS; do
      [[ -f "$OUT/$row/$task-s$s/config.json" ]] && { models+=("$OUT/$row/$task-s$s"); break; }
    done
  done
  bench_run "$OUT/bench/$task.json" torch-fp32,onnx-fp32 "$task" "${models[@]}"
}

# Claim-major: one claim's every seed and task before the next claim, so each claim's table (3 seeds, every task) is
# complete as early as it can be; the run takes sessions, and a seed-major order would complete no table until the last
# seed's pass.
unit() {   # unit CLAIM TASK SEED: one unit of work under its lock (claims-common.sh's locked): with two streams on one
  # queue (bench/claims-all.sh), a unit the other stream holds is left to it; a unit that fails stops this stream
  locked "$1-$2-s$3" started "$1 $2 seed $3" "$@"
  if [[ $LOCKED_STATUS == "$HELD" ]]; then echo "claims-task.sh: $1 $2 seed $3 is the other stream's" >&2; fi
}
for claim in $CLAIMS; do
  [[ $claim == quant || $claim == qat || $claim == best-row || $claim == bench ]] && continue
  for seed in $SEEDS; do
    for task in $TASKS; do unit "$claim" "$task" "$seed"; done
  done
done
# best-row: choose the quant stage's student row once (before the QAT streams start); qat: quant's trainings only
# (QAT, and the best row trained again where it is only a record), for TASKS; quant: those, then its bench runs.
if [[ " $CLAIMS " == *" best-row "* ]]; then echo "claims-task.sh: the best student row: $(quant_best_row)" >&2; fi
if [[ " $CLAIMS " == *" quant "* || " $CLAIMS " == *" qat "* ]]; then
  for seed in $SEEDS; do
    for task in $TASKS; do unit quant "$task" "$seed"; done
  done
fi
if [[ " $CLAIMS " == *" quant "* ]]; then
  for task in $TASKS; do echo "claims-task.sh: $(date -u +%FT%TZ) quant bench $task" >&2; quant_bench "$task"; done
fi
if [[ " $CLAIMS " == *" bench "* ]]; then
  for task in $TASKS; do echo "claims-task.sh: $(date -u +%FT%TZ) bench $task" >&2; rows_bench "$task"; done
fi
echo "claims-task.sh: done ($CLAIMS; $TASKS; seeds $SEEDS)" >&2
