#!/usr/bin/env python3
"""Compares int8 dev-set logits written by `Distillery.Bench int8-logits`: a native run (fp32, simulated and int8 on
this CPU) with runs of the same graph elsewhere (e.g. under bench/emulate-avx2.sh, an AVX2-only CPU). Prints one
Markdown row per other run: its int8 accuracy (or the task's metric from the labels, for classification), argmax
agreement with fp32, with the simulation and with the native int8 graph, and mean |logit diff| to the simulation.

  bench/int8-compare.py runs/avx2-emulated/native-7bit.json runs/avx2-emulated/emulated-7bit.json
"""
import json
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"int8-compare.py: {path}: {e}")
    if not isinstance(record, dict) or "int8" not in record or not isinstance(record.get("labels"), list):
        sys.exit(f"int8-compare.py: {path}: not an int8-logits record with int8 logits")
    return record


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def agreement(a, b):
    return sum(argmax(x) == argmax(y) for x, y in zip(a, b)) / len(a)


def accuracy(logits, labels):
    return sum(argmax(x) == y for x, y in zip(logits, labels)) / len(labels)


def mean_abs_diff(a, b):
    diffs = [abs(u - v) for x, y in zip(a, b) for u, v in zip(x, y)]
    return sum(diffs) / len(diffs)


def main(native_path, others):
    native = load(native_path)
    for key in ("fp32", "simulated"):
        if key not in native:
            sys.exit(f"int8-compare.py: {native_path}: no {key} logits (run int8-logits with --what fp32,simulated,int8)")
    labels = native["labels"]
    if len(native["int8"][0]) < 2:
        sys.exit("int8-compare.py: regression logits: accuracy and agreement do not apply")
    print(f"Native: {native['machine']}; {native['version']}. Scheme {native['scheme']} weights, {native['task']} dev, "
          f"{native['examples']} examples, batches of {native['batch_size']}.")
    print()
    print("| int8 graph run on | fp32 acc. | simulated acc. | int8 acc. | agreement vs fp32 | vs simulated | vs native int8 | mean \\|logit diff\\| vs simulated |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("this CPU (native)", native)] + [(path, load(path)) for path in others]
    for name, run in rows:
        if run["onnx"] != native["onnx"] or run["labels"] != labels or run["batch_size"] != native["batch_size"]:
            sys.exit(f"int8-compare.py: {name}: another graph, dataset or batching than {native_path}")
        where = name if run is native else run["machine"].split(",")[0]
        print(f"| {where} | {100 * accuracy(native['fp32'], labels):.2f} | {100 * accuracy(native['simulated'], labels):.2f} | "
              f"{100 * accuracy(run['int8'], labels):.2f} | {100 * agreement(run['int8'], native['fp32']):.2f}% | "
              f"{100 * agreement(run['int8'], native['simulated']):.2f}% | {100 * agreement(run['int8'], native['int8']):.2f}% | "
              f"{mean_abs_diff(run['int8'], native['simulated']):.4f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2:])
