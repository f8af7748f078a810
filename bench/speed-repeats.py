#!/usr/bin/env python3
"""Speed-ups of one model over another across repeated `distillery bench --json` runs: how far a single run's ratio
can be trusted.

    bench/speed-repeats.py --model distilbert --reference teacher --backend onnx-fp32 \
        docs/records/claims-agnostic/bench/speed.json docs/records/claims-agnostic/bench/repeats/*.json
    bench/speed-repeats.py --model l3 --backend onnx-int8 --reference minilm-l6-h384 --reference-backend onnx-fp32 \
        docs/records/embed/speed.json docs/records/embed/speed-repeats/*.json

A model is named by the last part of its path in the record. A record that times the pair more than once (the same
folder listed twice, to see whether the order of timing matters) gives one ratio per occurrence, the i-th model with
the i-th reference. Batch 1: the reference's median latency / the model's; batch 32: the model's sequences/s / the
reference's. Standard library only.
"""
import argparse
import json
import sys
from pathlib import Path


def occurrences(record, name, backend):
    return [r for r in record["rows"] if Path(r["model"].rstrip("/")).name == name and r["backend"] == backend]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="bench --json records")
    parser.add_argument("--model", required=True, help="the model's folder name")
    parser.add_argument("--reference", required=True, help="the reference's folder name (e.g. the teacher)")
    parser.add_argument("--backend", default="onnx-fp32", help="the model's backend (default onnx-fp32)")
    parser.add_argument("--reference-backend", help="the reference's backend (default: --backend)")
    args = parser.parse_args()
    ref_backend = args.reference_backend or args.backend
    b1s, b32s = [], []
    for path in args.records:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{path}: not readable as JSON ({e})")
        if record.get("kind") != "distillery-bench" or not isinstance(record.get("rows"), list):
            sys.exit(f"{path}: not a distillery bench record")
        models, refs = occurrences(record, args.model, args.backend), occurrences(record, args.reference, ref_backend)
        if not models or not refs:
            sys.exit(f"{path}: no {args.model} on {args.backend} or no {args.reference} on {ref_backend}")
        for i, (m, r) in enumerate(zip(models, refs), 1):
            try:
                b1 = r["batch1"]["median_ms"] / m["batch1"]["median_ms"]
                b32 = m["batch32"]["sequences_per_second"] / r["batch32"]["sequences_per_second"]
            except (KeyError, TypeError, ZeroDivisionError) as e:
                sys.exit(f"{path}: a row of {args.model} or {args.reference} lacks a usable batch1/batch32 timing ({e!r})")
            b1s.append(b1)
            b32s.append(b32)
            print(f"{path} ({record.get('date_utc', '?')}, #{i}): batch 1 {b1:.2f}x ({m['batch1']['median_ms']:.2f} ms against "
                  f"{r['batch1']['median_ms']:.2f}), batch 32 {b32:.2f}x ({m['batch32']['sequences_per_second']:.1f} seq/s "
                  f"against {r['batch32']['sequences_per_second']:.1f})")
    print(f"{args.model} ({args.backend}) over {args.reference} ({ref_backend}), {len(b1s)} timing(s): batch 1 "
          f"{min(b1s):.2f}-{max(b1s):.2f}x, batch 32 {min(b32s):.2f}-{max(b32s):.2f}x")


if __name__ == "__main__":
    main()
