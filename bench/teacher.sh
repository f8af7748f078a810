#!/usr/bin/env bash
# Makes Distillery's teacher from scratch on this machine (no model hub): pre-trains a compact BERT with masked-LM on the
# shared corpus plus the unlabeled text of the GLUE training sets (in-domain transfer data, as Well-Read Students), then
# fine-tunes it on the GLUE tasks and SQuAD v1.1. Every stage skips itself when its output folder is complete
# (config.json present) and resumes from its checkpoint when one was left by an interrupted run.
#
#   bench/teacher.sh                # all stages
#   STAGES="pretrain glue" bench/teacher.sh   # stages: pretrain export glue squad bf16 scratch
#
# Environment: ARCH (default L4-H256), STEPS (pre-training optimizer steps, default 1500), OUT (default runs/teacher),
# DATA (default ../shared/data), PRECISION (fp32|bf16, default fp32), DISTILLERY (the command, default ./distillery; a
# frozen copy of the binary lets the pipeline run while the sources change).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ARCH="${ARCH:-L4-H256}"
STEPS="${STEPS:-1500}"
OUT="${OUT:-runs/teacher}"
DATA="${DATA:-$root/../shared/data}"
PRECISION="${PRECISION:-fp32}"
STAGES="${STAGES:-pretrain export glue squad bf16 scratch}"
[[ -d "$DATA/glue" && -d "$DATA/corpus" ]] || { echo "teacher.sh: shared data not found at $DATA" >&2; exit 1; }
mkdir -p "$OUT"
DISTILLERY="${DISTILLERY:-./distillery}"
distillery() { "$DISTILLERY" "$@"; }
distillery --version >/dev/null   # builds the CLI once, before the timed stages

# The text of the GLUE training sets, one example per document (no labels, no dev or test text).
glue_text="$OUT/glue-train-text.txt"
if [[ ! -s "$glue_text" ]]; then
  {
    tail -n +2 "$DATA/glue/SST-2/train.tsv" | awk -F'\t' '{print $1 "\n"}'
    tail -n +2 "$DATA/glue/MRPC/train.tsv" | sed 's/^\xEF\xBB\xBF//' | awk -F'\t' '{print $4 "\n" $5 "\n"}'
    tail -n +2 "$DATA/glue/RTE/train.tsv" | awk -F'\t' '{print $2 "\n" $3 "\n"}'
    awk -F'\t' '{print $4 "\n"}' "$DATA/glue/CoLA/train.tsv"
    tail -n +2 "$DATA/glue/STS-B/train.tsv" | awk -F'\t' '{print $8 "\n" $9 "\n"}'
    tail -n +2 "$DATA/glue/WNLI/train.tsv" | awk -F'\t' '{print $2 "\n" $3 "\n"}'
  } > "$glue_text.tmp"
  mv "$glue_text.tmp" "$glue_text"
fi

done_or_resume() {   # prints --resume when the stage left a checkpoint; returns 1 when the stage is complete
  if [[ -f "$1/config.json" ]]; then echo "teacher.sh: $1 is complete, skipping" >&2; return 1; fi
  if [[ -d "$1/checkpoint" ]]; then echo "--resume"; fi
}

if [[ " $STAGES " == *" pretrain "* ]]; then
  if flag="$(done_or_resume "$OUT/pretrained")"; then
    distillery pretrain --corpus "$DATA/corpus" "$glue_text" --arch "$ARCH" --out "$OUT/pretrained" \
      --seq-length 128 --batch-size 32 --grad-accum 2 --lr 3e-4 --warmup-ratio 0.06 --max-steps "$STEPS" \
      --eval-every 250 --eval-sequences 256 --checkpoint-every 100 --log-every 25 --precision "$PRECISION" \
      --invalid-utf8 latin1 $flag
  fi
fi

# The committed teacher: the pre-trained model in fp16 (half the bytes), with its run files for provenance.
if [[ " $STAGES " == *" export "* ]]; then
  rm -rf "models/teacher-$ARCH.tmp"
  distillery convert "$OUT/pretrained" --dtype float16 --out "models/teacher-$ARCH.tmp"
  cp "$OUT/pretrained/run_config.json" "$OUT/pretrained/metrics.json" "models/teacher-$ARCH.tmp/"
  rm -rf "models/teacher-$ARCH" && mv "models/teacher-$ARCH.tmp" "models/teacher-$ARCH"
fi

# Fine-tuning: each GLUE task from the pre-trained model, and SQuAD v1.1 (only its dev set is here: train on 40 of its
# 48 articles, evaluate on the other 8). Then the same architecture fine-tuned from random init on SST-2 and MRPC:
# pre-training's gain for a compact model (Well-Read Students' first claim).
finetune() {   # finetune NAME MODEL TASK DATA EPOCHS [extra flags...]
  local name="$1" model="$2" task="$3" data="$4" epochs="$5"; shift 5
  if flag="$(done_or_resume "$OUT/$name")"; then
    distillery finetune --model "$model" --task "$task" --data "$data" --out "$OUT/$name" --epochs "$epochs" \
      --batch-size 32 --lr 1e-4 --warmup-ratio 0.1 --log-every 50 --checkpoint-every 200 --precision "$PRECISION" "$@" $flag
  fi
}
[[ " $STAGES " == *" glue "* ]] && {
  finetune sst2 "$OUT/pretrained" sst2 "$DATA/glue" 2 --eval-every 500
  finetune mrpc "$OUT/pretrained" mrpc "$DATA/glue" 5 --eval-every 100
  finetune rte  "$OUT/pretrained" rte  "$DATA/glue" 5 --eval-every 100
  finetune cola "$OUT/pretrained" cola "$DATA/glue" 3 --eval-every 200
  finetune stsb "$OUT/pretrained" stsb "$DATA/glue" 4 --eval-every 200
}
[[ " $STAGES " == *" bf16 "* ]] && {   # the same SST-2 fine-tuning with bf16 matmuls, for the precision comparison
  PRECISION=bf16 finetune sst2-bf16 "$OUT/pretrained" sst2 "$DATA/glue" 2 --eval-every 500
}
[[ " $STAGES " == *" scratch "* ]] && {
  if [[ ! -f "$OUT/random-init/config.json" ]]; then
    distillery init --arch "$ARCH" --out "$OUT/random-init" --seed 42
  fi
  finetune scratch-sst2 "$OUT/random-init" sst2 "$DATA/glue" 2 --eval-every 500
  finetune scratch-mrpc "$OUT/random-init" mrpc "$DATA/glue" 5 --eval-every 100
}
[[ " $STAGES " == *" squad "* ]] && {
  finetune squad "$OUT/pretrained" squad "$DATA/squad/dev-v1.1.json" 2 --split-articles 40 --max-length 256 --doc-stride 128 --eval-every 300
}
exit 0
