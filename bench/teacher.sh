#!/usr/bin/env bash
# Makes Distillery's teacher from scratch on this machine (no model hub): pre-trains a compact BERT with masked-LM on the
# shared corpus plus the unlabeled text of the GLUE training sets (in-domain transfer data, as Well-Read Students), then
# fine-tunes it on the GLUE tasks and SQuAD v1.1. Every stage skips itself when its output folder is complete
# (config.json present) and resumes from its checkpoint when one was left by an interrupted run.
#
#   bench/teacher.sh                # all stages
#   STAGES="pretrain" bench/teacher.sh
#
# Environment: ARCH (default L4-H256), STEPS (pre-training optimizer steps, default 1500), OUT (default runs/teacher),
# DATA (default ../shared/data), PRECISION (fp32|bf16, default fp32).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ARCH="${ARCH:-L4-H256}"
STEPS="${STEPS:-1500}"
OUT="${OUT:-runs/teacher}"
DATA="${DATA:-$root/../shared/data}"
PRECISION="${PRECISION:-fp32}"
STAGES="${STAGES:-pretrain}"
[[ -d "$DATA/glue" && -d "$DATA/corpus" ]] || { echo "teacher.sh: shared data not found at $DATA" >&2; exit 1; }
mkdir -p "$OUT"
./distillery --version >/dev/null   # builds the CLI once, before the timed stages

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
    ./distillery pretrain --corpus "$DATA/corpus" "$glue_text" --arch "$ARCH" --out "$OUT/pretrained" \
      --seq-length 128 --batch-size 32 --grad-accum 2 --lr 3e-4 --warmup-ratio 0.06 --max-steps "$STEPS" \
      --eval-every 250 --eval-sequences 256 --checkpoint-every 100 --log-every 25 --precision "$PRECISION" \
      --invalid-utf8 latin1 $flag
  fi
fi
