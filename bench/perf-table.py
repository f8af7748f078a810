#!/usr/bin/env python3
"""Issue 16's tables from committed records: several `distillery bench --peer` runs (bench/fused-onnx.sh's bench.json)
as medians over the runs with their range and the ratio to the peer row (the PyTorch-exported graph), and the
`Distillery.Bench onnx-profile` records as time per op class. Prints Markdown; numbers come from the records only.

  bench/perf-table.py runs docs/records/perf/fused-onnx-q*.bench.json
  bench/perf-table.py profile docs/records/perf/onnx-profile/*.json
  bench/perf-table.py train-step docs/records/perf/train-step-a415e2a-*.txt
"""
import json
import statistics
import sys


def fail(message):
    print(f"perf-table.py: {message}", file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def runs(paths):
    records = [load(p) for p in paths]
    for path, record in zip(paths, records):
        if record.get("kind") != "distillery-bench" or not isinstance(record.get("rows"), list):
            fail(f"{path}: not a distillery bench record")
        if not any(r.get("backend") == "onnx-peer" for r in record["rows"]):
            fail(f"{path}: no onnx-peer row (run with --peer)")
    backends = [r["backend"] for r in records[0]["rows"]]
    for path, record in zip(paths, records):
        if [r["backend"] for r in record["rows"]] != backends:
            fail(f"{path}: rows {[r['backend'] for r in record['rows']]} differ from {paths[0]}'s {backends}")

    def values(backend, pick):
        return [pick(next(r for r in rec["rows"] if r["backend"] == backend)) for rec in records]

    b1 = lambda r: r["batch1"]["median_ms"]
    b32 = lambda r: r["batch32"]["sequences_per_second"]
    peer_b1 = statistics.median(values("onnx-peer", b1))
    peer_b32 = statistics.median(values("onnx-peer", b32))
    commits = sorted({r["commit"] for r in records})
    print(f"{len(records)} runs (commit {', '.join(commits)}; {records[0]['machine']}; "
          f"{records[0]['date_utc'][:10]}), length {records[0]['seq_length']}, {records[0]['iterations']} batch-1 forwards per row "
          f"and half as many at batch 32; medians over the runs, range in brackets; "
          f"'vs PyTorch graph' is the ratio of the medians, 'per-run ratio' the ratio within each run to that run's peer row.")
    print()
    print("| backend | SST-2 dev | batch 1 median ms (range) | vs PyTorch graph | per-run ratio: median (range) | "
          "batch 32 seq/s (range) | vs PyTorch graph | per-run ratio: median (range) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for backend in backends:
        scores = [s for s in values(backend, lambda r: r.get("score")) if s is not None]
        score = f"{100 * statistics.median(scores):.2f}" if scores else "n/a"
        v1, v32 = values(backend, b1), values(backend, b32)
        m1, m32 = statistics.median(v1), statistics.median(v32)
        # The same run's peer row is the fairest reference for one run (the machine's speed drifts between runs).
        r1 = [p / v for p, v in zip(values("onnx-peer", b1), v1)]
        r32 = [v / p for p, v in zip(values("onnx-peer", b32), v32)]
        print(f"| {backend} | {score} | {m1:.1f} ({min(v1):.1f}-{max(v1):.1f}) | {peer_b1 / m1:.2f}x | "
              f"{statistics.median(r1):.2f}x ({min(r1):.2f}-{max(r1):.2f}) | "
              f"{m32:.1f} ({min(v32):.1f}-{max(v32):.1f}) | {m32 / peer_b32:.2f}x | "
              f"{statistics.median(r32):.2f}x ({min(r32):.2f}-{max(r32):.2f}) |")


def profile(paths):
    records = [load(p) for p in paths]
    print("| graph | batch | run ms (profiling on) | weight GEMMs x·W | attention products | fused attention ops | the rest | largest other op |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for path, r in zip(paths, records):
        try:
            ops = r["ops"]
            rest = 1 - r["weight_gemm_share_of_run"] - r["attention_product_share_of_run"] - r["fused_attention_share_of_run"]
            others = [(name, o["ms"]) for name, o in ops.items()
                      if "(x·W)" not in name and "(activation·activation)" not in name and name not in ("Attention", "MultiHeadAttention", "QAttention")]
            top = max(others, key=lambda o: o[1]) if others else ("-", 0)
            graph = r["model"].rsplit("/", 1)[-1].removesuffix(".onnx")
            print(f"| {graph} | {r['batch']} | {r['run_ms']:.1f} | {100 * r['weight_gemm_share_of_run']:.1f}% | "
                  f"{100 * r['attention_product_share_of_run']:.1f}% | {100 * r['fused_attention_share_of_run']:.1f}% | "
                  f"{100 * rest:.1f}% | {top[0]} {100 * top[1] / r['run_ms']:.1f}% |")
        except (KeyError, TypeError, ZeroDivisionError) as e:
            fail(f"{path}: not an onnx-profile record ({e})")


def train_step(paths):
    """Several `Distillery.Bench train-step` outputs (text: a header with libtorch's GEMM peak, a Markdown table, the
    trainer's overhead): per loop, the median ms/step and MFU over the runs with their range. Each run's MFU is against
    the peak measured in that run (the machine's speed drifts between runs, and the peak with it)."""
    runs_ = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            fail(f"{path}: {e}")
        header = [l for l in lines if l.startswith("# commit ")]
        peak = [l for l in lines if l.startswith("# libtorch ")]
        overhead = [l for l in lines if l.startswith("trainer overhead: ")]
        rows = {}
        for line in lines:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) == 5 and cells[1].replace(".", "").isdigit():
                rows[cells[0]] = (float(cells[1]), float(cells[4].rstrip("%").strip()) / 100)
        if not header or not peak or not overhead or not rows:
            fail(f"{path}: not a train-step record (header, peak, table and overhead lines expected)")
        runs_.append({"commit": header[0].split(",")[0].removeprefix("# commit ").strip(), "header": header[0],
                      "peak": float(peak[0].split()[2]), "rows": rows,
                      "overhead": float(overhead[0].split()[2].rstrip("%")) / 100})
    loops = list(runs_[0]["rows"])
    for path, r in zip(paths, runs_):
        if list(r["rows"]) != loops:
            fail(f"{path}: loops {list(r['rows'])} differ from {paths[0]}'s {loops}")
    commits = sorted({r["commit"] for r in runs_})
    peaks = [r["peak"] for r in runs_]
    print(f"{len(runs_)} runs (commit {', '.join(commits)}); libtorch GEMM peak per run {', '.join(f'{p:.1f}' for p in peaks)} GFLOP/s; "
          f"medians over the runs, range in brackets.")
    print()
    print("| loop | ms/step (range) | MFU (range) |")
    print("|---|---:|---:|")
    for loop in loops:
        ms = [r["rows"][loop][0] for r in runs_]
        mfu = [r["rows"][loop][1] for r in runs_]
        print(f"| {loop} | {statistics.median(ms):,.1f} ({min(ms):,.1f}-{max(ms):,.1f}) | "
              f"{100 * statistics.median(mfu):.1f}% ({100 * min(mfu):.1f}-{100 * max(mfu):.1f}) |")
    overheads = [r["overhead"] for r in runs_]
    print()
    print(f"trainer overhead over the bare loop: median {100 * statistics.median(overheads):.1f}% "
          f"(range {100 * min(overheads):.1f} to {100 * max(overheads):.1f}%)")


if __name__ == "__main__":
    commands = {"runs": runs, "profile": profile, "train-step": train_step}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    commands[sys.argv[1]](sys.argv[2:])
