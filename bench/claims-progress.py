#!/usr/bin/env python3
"""How far the long claims suites are: per suite and row, how many runs are recorded (committed under docs/records),
finished here only (runs/, not yet copied by the table scripts), started (a folder without config.json), and still to
do, with a rough estimate of the hours left.

    bench/claims-progress.py            # the three suites of bench/claims-all.sh

The estimate is the median recorded wall time of the same row and task where one exists, else of the row, else (marked
*) of the same task in the suite's other rows (a corpus stage: the other corpus stages), times the runs still to do; a
run with none of these is counted, not estimated. Wall times include any sharing of the two cores (two one-thread
streams, pauses), and the hours are summed over runs, not divided among streams: an order of magnitude for planning,
not a measurement. Standard library only; reads records and folders only.
"""
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("RUNS", ROOT / "runs"))
RECORDS = Path(os.environ.get("RECORDS", ROOT / "docs" / "records"))
SEEDS = os.environ.get("SEEDS", "1 2 3").split()
TASKS = os.environ.get("TASKS", "sst2 mrpc stsb rte").split()

# Part 1's rows (claim/row) and the stages each runs before its final one (their wall time counts too).
TASK_ROWS = {
    "wrs/basic": [], "wrs/kd": [], "wrs/pf": [], "wrs/pd": [".distilled"], "wrs/pd-quarter": [".distilled"],
    "theseus/linear": [".replaced"], "theseus/constant": [".replaced"], "theseus/anti": [".replaced"], "theseus/kd-layers": [],
    "prune/homodistil": [], "prune/oneshot": [], "prune/iterative-sensitivity": [], "prune/iterative-magnitude": [],
    "prune/iterative-platon": [],
}
AGNOSTIC_ROWS = ["distilbert", "distilbert-no-cos", "distilbert-random", "teacher-layers", "minilm", "minilm-attention",
                 "minilmv2", "half-direct", "half-assistant", "homodistil", "homodistil-oneshot"]
NO_CORPUS_STAGE = {"teacher-layers"}   # extracted from the teacher's layers (seconds), not distilled
EMBED_ROWS = ["l3", "l3-cos", "l2", "l3-d128"]


def wall(path):
    try:
        return float(json.loads(path.read_text()).get("wall_seconds", 0)) or None
    except (OSError, ValueError, AttributeError):
        return None


def state(run_dir, record):
    if record.is_file():
        return "recorded"
    if (run_dir / "config.json").is_file():
        return "here"
    if run_dir.is_dir():
        return "started"
    return "todo"


def report(title, runs):
    """runs: list of (row, task, status, [recorded wall seconds of its stages or None])."""
    print(f"## {title}")
    print(f"{'row':32} {'recorded':>9} {'here':>5} {'started':>8} {'todo':>5} {'~hours left':>12}")
    by_row, left_total = {}, 0.0
    for row, task, status, walls in runs:
        by_row.setdefault(row, []).append((task, status, walls))
    unknown = 0
    # The suite's recorded wall times per task, for rows with none of their own (marked *).
    by_task = {}
    for _, task, _, w in runs:
        if w:
            by_task.setdefault(task, []).append(w)
    for row, items in by_row.items():
        counts = {s: sum(1 for _, st, _ in items if st == s) for s in ("recorded", "here", "started", "todo")}
        row_walls = [w for _, _, w in items if w]
        left, borrowed, guessed = 0.0, False, False
        for task, status, _ in items:
            if status in ("recorded", "here"):
                continue
            same = [w for t, _, w in items if w and t == task]
            guess = statistics.median(same) if same else statistics.median(row_walls) if row_walls else None
            if guess is None and by_task.get(task):
                guess, borrowed = statistics.median(by_task[task]), True
            if guess is None:
                unknown += 1
            else:
                guessed = True
                left += guess / (2 if status == "started" else 1)   # a started run: about half done
        left_total += left
        estimate = (f"{left / 3600:.1f}" + ("*" if borrowed else "")) if guessed or row_walls else "?"
        print(f"{row:32} {counts['recorded']:>9} {counts['here']:>5} {counts['started']:>8} {counts['todo']:>5} {estimate:>12}")
    print(f"{'all':32} {'':>9} {'':>5} {'':>8} {'':>5} {left_total / 3600:>12.1f}" +
          (f"  + {unknown} runs of rows with no record yet (?)" if unknown else ""))
    print()
    return left_total, unknown


def main():
    total, unknown = 0.0, 0
    runs = []
    for row, stages in TASK_ROWS.items():
        for seed in SEEDS:
            for task in TASKS:
                name = f"{task}-s{seed}"
                record = RECORDS / "claims-task" / row / f"{name}.metrics.json"
                st = state(RUNS / "claims" / row / name, record)
                parts = [wall(record)] + [wall(RECORDS / "claims-task" / row / f"{name}{s}.metrics.json") for s in stages]
                runs.append((row, task, st, sum(parts) if all(parts) else None))
    left, n = report("Part 1: task-specific claims (bench/claims-task.sh), runs = row x task x seed", runs)
    total, unknown = total + left, unknown + n

    runs = []
    for row in AGNOSTIC_ROWS:
        corpus = RECORDS / "claims-agnostic" / row / "corpus.metrics.json"
        if row not in NO_CORPUS_STAGE:
            runs.append((row + " (corpus stage)", "corpus", state(RUNS / "claims-agnostic" / row / "distilled", corpus), wall(corpus)))
        for seed in SEEDS:
            for task in TASKS:
                record = RECORDS / "claims-agnostic" / row / f"{task}-s{seed}.metrics.json"
                runs.append((row, task, state(RUNS / "claims-agnostic" / row / f"{task}-s{seed}", record), wall(record)))
    left, n = report("Part 2: task-agnostic claims (bench/claims-agnostic.sh)", runs)
    total, unknown = total + left, unknown + n

    runs = []
    for row in EMBED_ROWS:
        for seed in SEEDS:
            record = RECORDS / "embed" / row / f"s{seed}.metrics.json"
            runs.append((row, "embed", state(RUNS / "embed" / f"{row}-s{seed}", record), wall(record)))
    left, n = report("Sentence-embedding students (bench/embed-claims.sh)", runs)
    total, unknown = total + left, unknown + n
    print(f"About {total / 3600:.0f} hours of runs left where a record allows an estimate, and {unknown} runs of rows "
          "with no record yet (wall time as recorded, see the header).")


if __name__ == "__main__":
    sys.exit(main())
