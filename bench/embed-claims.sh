#!/usr/bin/env bash
# Compressing the sentence-embedding teacher all-MiniLM-L6-v2 (issue 20): students distilled on its embeddings, judged
# zero-shot on STS-B, SQuAD retrieval and MRPC, and timed on TorchSharp and ONNX Runtime fp32/int8; 3 seeds per trained
# row. Every stage is one distillery command whose output is skipped when finished (config.json or the record is
# written last) and resumed from its checkpoint when an interrupted run left one: run the script again to continue.
# bench/embed-table.py makes docs/results.md's table from the records this leaves in $OUT/records.
#
#   bench/embed-claims.sh                            # every row, seeds 1 2 3
#   ROWS="l3" SEEDS=1 bench/embed-claims.sh
#   SMOKE=1 OUT=/tmp/embed-smoke bench/embed-claims.sh   # every command, a few steps, small eval sets: checks the script
#
# Protocol (one rule for every row):
# - Teacher: all-MiniLM-L6-v2 as `distillery import teacher` makes it (models/minilm-l6-h384; L6-H384, mean pooling,
#   L2-normalised), used as it is: no fine-tuning anywhere, every score is zero-shot.
# - Students (rows):
#     l3-init  teacher layers 0,2,4 with the teacher's embeddings and pooling, not trained (what distillation starts
#              from; `distillery extract`, a copy of the weights)
#     l3       teacher layers 0,2,4, embedding distillation with the MSE of Reimers & Gurevych 2020 (sentence-transformers'
#              model_distillation recipe)
#     l3-cos   the same student with the cosine loss instead of the MSE
#     l2       teacher layers 0,3, MSE
#     teacher-d128  the teacher's vectors cut to 128 dimensions by `distillery reduce` (no training: PCA of its unit
#              vectors on the first 20,000 training sentences, a Dense module between two Normalize modules); one run
#     l3-d128  each l3 seed's student reduced the same way (the smaller index on top of the faster encoder)
#   The suite needs a binary from 2026-12-05 or later (`distillery reduce` and `extract`, the embedding teacher cache);
#   an older one is refused before anything runs (bench/claims-all.sh: EMBED_DISTILLERY gives this suite its own binary).
# - Training data: $SENTENCES unlabeled lines of the shared corpus (Brown sentences, WikiText-2 paragraphs, MASC written,
#   ABC science/rural; about 32 tokens each), drawn once (python's random, seed 20) into $OUT/data/sentences.txt; the
#   corpus was decontaminated against GLUE and SQuAD dev (shared/data/SOURCES.md). $EPOCHS epoch(s) (1,250 steps at the
#   defaults), batch 32, lr 1e-4, warm-up 10%, fp32, inputs cut at 128 tokens. The student kept is the last one (no
#   checkpoint is chosen on any evaluation set). The teacher's vectors of the training lines are computed once and
#   shared by every run (--teacher-cache $OUT/teacher-cache: one shard per teacher and lines; they equal the in-step
#   vectors up to float rounding, since padding is masked), so a run's steps are the student's forward and backward alone.
# - Seeds 1, 2, 3 set the data order (the student's init is the teacher's layers, the same for every seed).
# - Evaluation (distillery bench, one run per task, each backend scoring itself): sts-embed (STS-B dev Spearman),
#   squad-retrieval (SQuAD v1.1 dev question -> paragraph recall@1/10, MRR), mrpc-embed (MRPC dev accuracy at the
#   cosine threshold chosen on train) on torch-fp32, onnx-fp32 and onnx-int8 (dynamic int8, 7-bit weights, fused
#   graph). The int8 graph of every trained student is also written next to it ($out-onnx/model.int8.onnx, checked
#   against TorchSharp by the export).
# - Speed (the last stage, once): one `distillery bench --no-eval` run, throughput at batch 1 and 32 at $SEQ_LENGTH
#   tokens (random ids) on the same backends, of the teacher and of one model per student shape, made without training
#   (teacher layers 0,2,4 and 0,3 by `extract`; the teacher and that L3 reduced to 128 dimensions by `reduce`): a
#   forward's time does not depend on the weights' values, and the rows' own models may have been trained on earlier
#   machines (the suite spans sessions on machines that do not keep runs/). Written to $OUT/records/speed.json (+ .md),
#   after waiting (at most 10 minutes) for an idle CPU. The quality runs' benches time too; the table does not use
#   those (they may come from different machines).
# - Sessions: a unit (a row's seed) whose records are committed (COMMITTED, default docs/records/embed: its three bench
#   records, and metrics.json for a trained or reduced row) is skipped, so a new machine continues where the records
#   stop. l3-d128 follows l3 so that each seed's reduction can use the student made in the same session; where that
#   student is gone (a new machine), its distillation is run again with the same seed and recipe to be reduced (its
#   l3 record stays the committed one).
#
# Environment: OUT (default runs/embed), DATA (default ../shared/data), DISTILLERY (default ./distillery; run a
# published copy: dotnet publish src/Distillery.Cli -c Release -o /tmp/distillery-<commit>), TEACHER (default
# models/minilm-l6-h384), SEEDS, ROWS, SPEED (0 skips the speed stage, e.g. while another suite keeps the CPU busy),
# COMMITTED, SENTENCES (default 40000), EPOCHS (default 1), PRECISION (default fp32: the same arithmetic on every
# machine; auto trains with bf16 matmuls where the CPU has them natively), SEQ_LENGTH (default 32), BACKENDS.
# Cost: a distillation trains the student and runs the teacher on every batch. Measured at commit e9eebad (2-core
# Sapphire Rapids, fp32, sharing both cores with another training run): `distillery distill --method embedding
# --teacher models/minilm-l6-h384 --init-from-teacher 0,2,4 --task sts-embed --transfer-data <4,000 Brown lines>
# --max-steps 60 --batch-size 32` ran at 0.87 s per step (~990 tokens/s), i.e. about 18 minutes per row and seed at
# the defaults (1,250 steps) on a shared CPU, less on an idle one; an earlier SMOKE run's 74 tokens/s came from a few
# steps dominated by start-up on a busy CPU and an older, slower binary. Each bench record scores the model on every
# backend (SQuAD retrieval encodes 12,637 texts).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-runs/embed}"
DATA="${DATA:-$root/../shared/data}"
TEACHER="${TEACHER:-models/minilm-l6-h384}"
SEEDS="${SEEDS:-1 2 3}"
ROWS="${ROWS:-l3-init l3 l3-d128 l3-cos l2 teacher-d128}"
SENTENCES="${SENTENCES:-40000}"
EPOCHS="${EPOCHS:-1}"
PRECISION="${PRECISION:-fp32}"
SEQ_LENGTH="${SEQ_LENGTH:-32}"
BACKENDS="${BACKENDS:-torch-fp32,onnx-fp32,onnx-int8}"
DISTILLERY="${DISTILLERY:-./distillery}"
if [[ -n "${SMOKE:-}" ]]; then COMMITTED="${COMMITTED:-}"; else COMMITTED="${COMMITTED-$root/docs/records/embed}"; fi
[[ -d "$DATA/glue" && -d "$DATA/corpus" && -f "$DATA/squad/dev-v1.1.json" ]] || { echo "embed-claims.sh: shared data not found at $DATA" >&2; exit 1; }
# Not `reduce --help`: an unknown command's help exits 0. grep reads all of the help (no -q) so pipefail sees no SIGPIPE.
help="$("$DISTILLERY" --help 2>/dev/null || true)"
grep -E '^\s+reduce\s' <<< "$help" > /dev/null && grep -E '^\s+extract\s' <<< "$help" > /dev/null \
  && grep -e '--no-eval' <<< "$("$DISTILLERY" bench --help 2>/dev/null || true)" > /dev/null || {
  echo "embed-claims.sh: $DISTILLERY ($("$DISTILLERY" --version 2>/dev/null || echo unknown)) predates distillery reduce, extract, bench --no-eval and the embedding teacher cache; publish main and use it (claims-all.sh: EMBED_DISTILLERY)" >&2
  exit 1
}
mkdir -p "$OUT/data" "$OUT/records"
stamped=""   # the commit stamp is written before this process's first command (see bench/claims-common.sh)

distillery() {   # logs every command; a failure stops the script with the command's last lines
  if [[ -z "$stamped" ]]; then
    stamped=1
    { git rev-parse --short HEAD 2>/dev/null || echo unknown; "$DISTILLERY" --version 2>/dev/null || echo unknown; } \
      > "$OUT/COMMIT.$(date -u +%Y%m%dT%H%M%S)"
  fi
  local log="$OUT/log.txt"
  echo "== $(date -u +%FT%TZ) distillery $*" >> "$log"
  "$DISTILLERY" "$@" >> "$log" 2>&1 || { echo "embed-claims.sh: failed: distillery $*" >&2; tail -5 "$log" >&2; exit 1; }
}
todo() {   # todo DIR: prints --resume when DIR left a checkpoint; returns 1 when DIR is finished
  if [[ -f "$1/config.json" ]]; then return 1; fi
  if [[ -d "$1/checkpoint" ]]; then echo "--resume"; fi
}

# ----------------------------------------------------------------------------------------------------------- the data
[[ -f "$TEACHER/config.json" ]] || distillery import teacher --out "$TEACHER"
sentences="$OUT/data/sentences.txt"
if [[ ! -s "$sentences" ]]; then
  python3 - "$DATA/corpus" "$sentences.tmp" "$SENTENCES" <<'EOF'
import random, sys
from pathlib import Path
corpus, out, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
files = sorted(corpus.glob("brown/*.txt")) + sorted(corpus.glob("wikitext-2-raw/*.raw")) + [corpus / "masc/written.txt"] \
    + sorted(corpus.glob("abc/*.txt"))
lines = []
for f in files:
    for line in f.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        # Whole sentences or paragraphs: at least 6 words, no WikiText headings (" = Title = ").
        if len(line.split()) >= 6 and not line.startswith("="):
            lines.append(line.replace("\t", " "))
random.Random(20).shuffle(lines)
if len(lines) < count:
    sys.exit(f"only {len(lines)} lines in the corpus, {count} asked")
Path(out).write_text("\n".join(lines[:count]) + "\n", encoding="utf-8")
EOF
  mv "$sentences.tmp" "$sentences"
fi

# SMOKE: the same commands on small evaluation sets (200 pairs of STS-B dev and of MRPC train/dev, SQuAD dev's first two
# articles) and a few training steps; the numbers mean nothing.
glue="$DATA/glue"; squad="$DATA/squad/dev-v1.1.json"
if [[ -n "${SMOKE:-}" ]]; then
  glue="$OUT/data/smoke-glue"; squad="$OUT/data/smoke-squad.json"
  if [[ ! -f "$squad" ]]; then
    for t in STS-B/dev MRPC/train MRPC/dev; do mkdir -p "$glue/${t%/*}"; head -n 201 "$DATA/glue/$t.tsv" > "$glue/$t.tsv"; done
    python3 - "$DATA/squad/dev-v1.1.json" "$squad" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
d["data"] = d["data"][:2]
json.dump(d, open(sys.argv[2], "w", encoding="utf-8"))
EOF
  fi
fi
data_of() { case "$1" in squad-retrieval) echo "$squad";; *) echo "$glue";; esac; }

# ------------------------------------------------------------------------------------------------------------ stages
train_flags() {   # train_flags SEED
  local length=(--epochs "$EPOCHS")
  [[ -n "${SMOKE:-}" ]] && length=(--max-steps 4 --max-train-examples 64)
  echo --task sts-embed --data "$glue" --transfer-data "$sentences" --max-length 128 "${length[@]}" --batch-size 32 --lr 1e-4 \
    --warmup-ratio 0.1 --log-every 50 --checkpoint-every 200 --precision "$PRECISION" --seed "$1"
}
distill() {   # distill OUT SEED LAYERS FLAGS...: embedding distillation from the teacher into its layers LAYERS
  local out="$1" seed="$2" layers="$3" flag; shift 3
  flag="$(todo "$out")" || return 0
  # shellcheck disable=SC2046
  distillery distill --method embedding --teacher "$TEACHER" --init-from-teacher "$layers" --out "$out" $(train_flags "$seed") "$@" \
    --teacher-cache "$OUT/teacher-cache" $flag
}
truncated() {   # truncated OUT LAYERS: the teacher's layers as they are (embeddings, pooling, no training), saved and
                # scored like the students
  [[ -f "$1/config.json" ]] && return 0
  distillery extract --model "$TEACHER" --layers "$2" --out "$1" --overwrite
}
int8() {   # int8 MODEL: the deployable int8 graph next to the model (checked against TorchSharp by the export)
  [[ -f "$1-onnx/model.int8.onnx" ]] || distillery export onnx --model "$1" --out "$1-onnx/model.int8.onnx" --int8
}
bench() {   # bench MODEL RECORD-PREFIX: one bench record per task (scores by every backend, throughput)
  local model="$1" prefix="$2" task iterations=20
  [[ -n "${SMOKE:-}" ]] && iterations=3
  for task in sts-embed squad-retrieval mrpc-embed; do
    [[ -f "$prefix.$task.bench.json" ]] && continue
    mkdir -p "$(dirname "$prefix")"
    distillery bench "$model" --task "$task" --data "$(data_of "$task")" --backends "$BACKENDS" --seq-length "$SEQ_LENGTH" \
      --iterations "$iterations" --json "$prefix.$task.bench.json.tmp"
    mv "$prefix.$task.bench.json.tmp" "$prefix.$task.bench.json"
  done
}
keep() {   # keep RUN RECORD-PREFIX: the run's metrics.json and run_config.json (a reduce has none) beside its bench records
  mkdir -p "$(dirname "$2")"
  cp "$1/metrics.json" "$2.metrics.json"
  [[ ! -f "$1/run_config.json" ]] || cp "$1/run_config.json" "$2.run_config.json"
}
reduce() {   # reduce MODEL OUT DIM [MAX]: fewer vector dimensions, no training (skipped when OUT is finished); PCA fitted on
             # the first MAX sentences (default 20,000)
  [[ -f "$2/config.json" ]] && return 0
  local max="${4:-20000}"
  [[ -n "${SMOKE:-}" ]] && max=500
  distillery reduce --model "$1" --out "$2" --dim "$3" --sentences "$sentences" --max-sentences "$max"
}

recorded() {   # recorded ROW SEED: the unit's records are committed (its three bench records; metrics.json where it trained)
  [[ -n "$COMMITTED" ]] || return 1
  local task
  for task in sts-embed squad-retrieval mrpc-embed; do [[ -f "$COMMITTED/$1/s$2.$task.bench.json" ]] || return 1; done
  [[ "$1" == teacher || "$1" == l3-init || -f "$COMMITTED/$1/s$2.metrics.json" ]] || return 1
  echo "embed-claims.sh: $1 seed $2 skipped: its records are committed in $COMMITTED" >&2
}
l3_student() {   # l3_student SEED: the l3 row's student of SEED, here (distilled again when a new machine lacks it)
  distill "$OUT/l3-s$1" "$1" 0,2,4
}

# --------------------------------------------------------------------------------------------------------------- rows
recorded teacher 0 || bench "$TEACHER" "$OUT/records/teacher/s0"
for row in $ROWS; do
  case "$row" in
    l3-init) recorded l3-init 0 || { truncated "$OUT/l3-init" 0,2,4; bench "$OUT/l3-init" "$OUT/records/l3-init/s0"; } ;;
    l3|l3-cos|l2)
      for seed in $SEEDS; do
        recorded "$row" "$seed" && continue
        out="$OUT/$row-s$seed"
        case "$row" in
          l3) l3_student "$seed" ;;
          l3-cos) distill "$out" "$seed" 0,2,4 --mse-weight 0 --cosine-weight 1 ;;
          l2) distill "$out" "$seed" 0,3 ;;
        esac
        int8 "$out"
        keep "$out" "$OUT/records/$row/s$seed"
        bench "$out" "$OUT/records/$row/s$seed"
      done ;;
    teacher-d128)
      recorded teacher-d128 0 && continue
      reduce "$TEACHER" "$OUT/teacher-d128" 128
      int8 "$OUT/teacher-d128"
      keep "$OUT/teacher-d128" "$OUT/records/teacher-d128/s0"
      bench "$OUT/teacher-d128" "$OUT/records/teacher-d128/s0" ;;
    l3-d128)
      for seed in $SEEDS; do
        recorded l3-d128 "$seed" && continue
        l3_student "$seed"   # made above in this session, or distilled again here (same seed and recipe; see the header)
        out="$OUT/l3-d128-s$seed"
        reduce "$OUT/l3-s$seed" "$out" 128
        int8 "$out"
        keep "$out" "$OUT/records/l3-d128/s$seed"
        bench "$out" "$OUT/records/l3-d128/s$seed"
      done ;;
    *) echo "embed-claims.sh: unknown row $row (known: l3-init l3 l3-d128 l3-cos l2 teacher-d128)" >&2; exit 1 ;;
  esac
done

# -------------------------------------------------------------------------------------------------------------- speed
# One run timing the teacher and one model per student shape (see the header), made without training.
speed="$OUT/records/speed.json"
if [[ "${SPEED:-1}" != 0 && ! -f "$speed" && ! ( -n "$COMMITTED" && -f "$COMMITTED/speed.json" ) ]]; then
  shapes="$OUT/speed"
  truncated "$shapes/l3" 0,2,4
  truncated "$shapes/l2" 0,3
  reduce "$TEACHER" "$shapes/teacher-d128" 128 2000   # the projection's values do not matter here, only its shape
  reduce "$shapes/l3" "$shapes/l3-d128" 128 2000
  if [[ -z "${SMOKE:-}" ]]; then   # an idle CPU: at most 10 minutes for the 1-minute load average to fall below 1.5
    for _ in $(seq 60); do python3 -c "import sys; sys.exit(0 if $(cut -d' ' -f1 /proc/loadavg) < 1.5 else 1)" && break; sleep 10; done
  fi
  load="$(cut -d' ' -f1 /proc/loadavg)"
  iterations=20; [[ -n "${SMOKE:-}" ]] && iterations=3
  distillery bench "$TEACHER" "$shapes/l3" "$shapes/l2" "$shapes/teacher-d128" "$shapes/l3-d128" --task sts-embed --data "$glue" \
    --backends "$BACKENDS" --seq-length "$SEQ_LENGTH" --iterations "$iterations" --no-eval --out "${speed%.json}.md" --json "$speed.tmp"
  echo "load average before timing: $load" >> "${speed%.json}.md"
  mv "$speed.tmp" "$speed"
fi
echo "embed-claims.sh: done; bench/embed-table.py makes the table (--write-docs puts it into docs/results.md)"
