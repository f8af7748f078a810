#!/usr/bin/env bash
# The int8 weight schemes side by side on one fine-tuned model: for 7-bit weights (the default, exact in ONNX Runtime on
# every x86-64 CPU) and 8-bit weights (finer, exact only with VNNI or AMX-INT8), the dynamic int8 graph's dev accuracy
# and argmax agreement against fp32 and against its simulation (`distillery quantize --check`), then one `distillery
# bench` per scheme (onnx-fp32 and onnx-int8 rows: accuracy, batch-1 latency, batch-32 throughput; the header prints the
# CPU's features, so an 8-bit run on a CPU without VNNI shows why it lost accuracy). Not run by the tests.
# Run it on an otherwise idle machine: latency at batch 1 is ruined by another process on the two cores.
#
#   bench/int8-schemes.sh runs/teacher/sst2 sst2                     # results in runs/int8-schemes/<model name>/
#   bench/int8-schemes.sh runs/quickstart/student-kd sst2 ../shared/data/glue
#   SCHEMES=8bit BENCH_ARGS="--iterations 50" bench/int8-schemes.sh runs/teacher/sst2 sst2
#   # as on an AVX2-only CPU, from any x86-64 machine (QEMU; checks only: emulated timings mean nothing; slow, as the
#   # fp32 and simulated passes are emulated too: Distillery.Bench int8-logits + bench/int8-compare.py emulate the graph only):
#   BENCH=0 OUT=runs/int8-schemes/avx2-emulated DISTILLERY="bench/emulate-avx2.sh /tmp/distillery-<commit>/Distillery.Cli" \
#     bench/int8-schemes.sh runs/quickstart/student-kd sst2
#
# Arguments: MODEL (a fine-tuned model folder), TASK (a GLUE task or squad), DATA (default ../shared/data/glue, or the
# SQuAD file for squad). Environment: SCHEMES (default "7bit 8bit"), OUT (default runs/int8-schemes/<model name>),
# BENCH_ARGS (extra `distillery bench` flags), CHECK_ARGS (extra `distillery quantize` flags, e.g. --split-articles for
# SQuAD; bench's --split-articles goes in BENCH_ARGS), DISTILLERY (the command, default ./distillery; split into words,
# so it may be a wrapper and its program), BENCH (default 1; 0 runs the checks only).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ $# -ge 2 ]] || { sed -n '2,21p' "$0" >&2; exit 2; }
MODEL="$1"
TASK="$2"
DATA="${3:-$root/../shared/data/glue}"
SCHEMES="${SCHEMES:-7bit 8bit}"
OUT="${OUT:-runs/int8-schemes/$(basename "$MODEL")}"
BENCH_ARGS="${BENCH_ARGS:-}"
CHECK_ARGS="${CHECK_ARGS:-}"
read -r -a DISTILLERY <<< "${DISTILLERY:-./distillery}"
BENCH="${BENCH:-1}"
[[ -f "$MODEL/config.json" ]] || { echo "int8-schemes.sh: $MODEL is not a model folder (no config.json)" >&2; exit 1; }
mkdir -p "$OUT"
"${DISTILLERY[@]}" --version >/dev/null   # builds the CLI once, before anything is timed

for scheme in $SCHEMES; do
  echo "== $scheme weights: dev-set check" >&2
  # shellcheck disable=SC2086
  "${DISTILLERY[@]}" quantize --model "$MODEL" --mode dynamic --int8-weights "$scheme" --out "$OUT/model.int8-$scheme.onnx" --overwrite \
    --check --task "$TASK" --data "$DATA" $CHECK_ARGS | tee "$OUT/check-$scheme.txt"
done
[[ "$BENCH" == 0 ]] && { echo "int8-schemes.sh: checks in $OUT (check-<scheme>.txt); no bench (BENCH=0)" >&2; exit 0; }
for scheme in $SCHEMES; do
  echo "== $scheme weights: bench" >&2
  # shellcheck disable=SC2086
  "${DISTILLERY[@]}" bench "$MODEL" --task "$TASK" --data "$DATA" --backends onnx-fp32,onnx-int8 --int8-weights "$scheme" $BENCH_ARGS \
    --out "$OUT/bench-$scheme.md"
done
echo "int8-schemes.sh: checks and bench tables in $OUT (check-<scheme>.txt, bench-<scheme>.md)" >&2
