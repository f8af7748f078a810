#!/usr/bin/env python3
"""The task-agnostic claims tables of docs/results.md, generated from run records (issue 18, "The papers' claims ..., part 2").

    bench/claims-agnostic-table.py                 # copy finished runs' records from runs/claims-agnostic into
                                                   # docs/records/claims-agnostic/, print the tables (markdown)
    bench/claims-agnostic-table.py --records-only  # print from the committed records only (no runs/ needed)
    bench/claims-agnostic-table.py --write-docs    # also draw the figures and replace the text between the markers in
                                                   # docs/results.md
    bench/claims-agnostic-table.py --figures       # draw the figures, print the text (docs/results.md untouched)
    OUT=/tmp/agnostic-smoke RECORDS=/tmp/agnostic-smoke/records FIGURES=/tmp/agnostic-smoke/figures \
      TASK_RECORDS=/tmp/claims-smoke/records bench/claims-agnostic-table.py --figures   # a smoke run's tables and plots

bench/claims-agnostic.sh leaves, per row, a corpus stage (<row>/distilled; the teacher-assistant row also
<row>/assistant) and fine-tuned runs <row>/<task>-s<seed>. A run counts when its folder is finished (config.json is
written last) and has metrics.json. Copied records, under docs/records/claims-agnostic/<row>/: corpus.metrics.json,
corpus.run_config.json, corpus.config.json (the distilled model's shape, for its parameter count; it says when the
masked-LM head was left untrained) and corpus.metrics.jsonl (the loss terms every 25 steps, for the KL curves), the same
as assistant.* where there is an assistant, and <task>-s<seed>.metrics.json / .run_config.json; the bench stage's run
as bench/speed.json and .md; plus teacher-mlm.config.json and the COMMIT.* files. Each row's teacher-mlm.json names
the masked-LM teacher its corpus stage distilled from (sha256 prefix of the weights, its held-out MLM scores): the head
is fitted again on each machine, so rows distilled on different machines may differ, and the tables say so. The tables read only the records, so
every number regenerates from git. Standard library only; the formatting helpers, the teacher's scores and part 1's rows
are claims-table.py's, so both parts read alike.

Size, speed and compute: per row, the bench stage's one run (bench/speed.json: stand-ins with the teacher's and every
row's shapes and random weights, TorchSharp fp32, ONNX Runtime fp32 and int8; bench/claims-agnostic.sh says why) beside
the distillation's wall time (each corpus stage's wall_seconds). Figures (--figures, --write-docs), each written as data to RECORDS/figures/<name>.json and drawn by
`distillery plot` (DISTILLERY) to FIGURES (default docs/figures)/claims-agnostic-<name>.png:
- pareto: the task average (mean of seeds) against ONNX Runtime fp32 batch-1 latency (mean over the tasks) of every row
  of both parts (part 1's records: TASK_RECORDS, default docs/records/claims-task; part 2's: RECORDS), with the front of
  rows no other row beats on both; rows without a latency record or a score on every task are left out, and named.
- kl: the teacher-student KL of the masked-LM predictions per logged step (loss_kl: at T = 1 on the training batches'
  masked positions) of the DistilBERT rows, HomoDistil and its one-shot baseline (HomoDistil's claim: it stays small
  throughout), with each stage's mean and largest logged KL under the figure.
- attention-kl: MiniLM v1's last-layer attention KL per logged step (loss_attention_kl) of its rows and the assistant.

Scores: each task's primary metric x 100 of the checkpoint the fine-tuning kept (the best of its 5 dev evaluations, the
same rule for every row); "mean +- std" over seeds 1-3 (sample standard deviation); the corpus stage ran once (seed 1).
A claimed ordering A >= B is "shown" when A's mean of the per-seed task averages exceeds B's by more than the larger of
the two standard deviations, with 3 seeds and every task present, or when the paired bootstrap over dev examples of
claims-table.py says p < 0.05 (from the runs' dev-predictions.json, written by bench/claims-predictions.sh); otherwise
"not shown" (with the numbers) or "incomplete". A share-of-teacher claim (>= 97%) is shown when the row's mean average exceeds that share of the teacher's
average by more than the row's standard deviation.
"""
import functools
import importlib.util
import json
import math
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("claims_table", ROOT / "bench" / "claims-table.py")
claims_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claims_table)
load, score, mean_std, fmt = claims_table.load, claims_table.score, claims_table.mean_std, claims_table.fmt
TASKS, TASK_TITLE, SEEDS = claims_table.TASKS, claims_table.TASK_TITLE, claims_table.SEEDS

RUNS = Path(os.environ.get("OUT", ROOT / "runs" / "claims-agnostic"))         # bench/claims-agnostic.sh's OUT
RECORDS = Path(os.environ.get("RECORDS", ROOT / "docs" / "records" / "claims-agnostic"))
TEACHER_MLM = Path(os.environ.get("TEACHER_MLM", ROOT / "runs" / "real-teacher" / "teacher-mlm"))
# Part 1's records, for the Pareto plot of both parts: claims-table.py reads them through its own RECORDS, which would
# otherwise come from this script's RECORDS variable.
TASK_RECORDS = Path(os.environ.get("TASK_RECORDS", ROOT / "docs" / "records" / "claims-task"))
claims_table.RECORDS = TASK_RECORDS
BACKENDS = [("torch-fp32", "TorchSharp fp32"), ("onnx-fp32", "ONNX Runtime fp32"), ("onnx-int8", "ONNX Runtime int8")]
DRAWN_WITH = "onnx-fp32"   # the Pareto plot's latency: the backend both parts' bench stages time
BEGIN, END = "<!-- generated by bench/claims-agnostic-table.py -->", "<!-- end of generated agnostic tables -->"

ROWS = {
    "distilbert": "DistilBERT L3-H384: teacher layers 0, 2, 4, triple loss",
    "distilbert-no-cos": "DistilBERT without the cosine loss",
    "distilbert-random": "DistilBERT from a random init (same shape)",
    "teacher-layers": "control: teacher layers 0, 2, 4 as they are, no corpus stage",
    "minilm": "MiniLM v1 L3-H384: attention + value relations",
    "minilm-attention": "MiniLM v1, attention distributions only",
    "minilmv2": "MiniLMv2 L3-H384: Q-Q, K-K, V-V relations (12 relation heads)",
    "half-direct": "L3-H192 (half width), MiniLM v1 from the teacher",
    "half-assistant": "L3-H192 via the teacher assistant L6-H192 (MiniLM v1 twice)",
    "homodistil": "HomoDistil: the teacher pruned while distilled to the MiniLM student's parameters",
    "homodistil-oneshot": "one-shot pruning + distillation: HomoDistil's losses, the target reached at once after the warm-up",
}

CLAIMS = [
    {
        "title": "DistilBERT: a half-depth student from every other teacher layer, triple loss on the corpus",
        "rows": ["distilbert", "distilbert-no-cos", "distilbert-random", "teacher-layers"],
        "share": ("distilbert", 97.0, "DistilBERT keeps >= 97% of the teacher's average score"),
        # (row, the paper's speed-up, the claim): measured by the bench stage against the fine-tuned teacher
        "speed": ("distilbert", 1.6, "DistilBERT runs faster than the teacher (paper: 60% faster, 1.6x; the issue: ~2x)"),
        # (better, worse, what the paper says)
        "orderings": [("distilbert", "distilbert-no-cos", "the cosine loss helps (>= without it)"),
                      ("distilbert", "distilbert-random", "teacher-layer init >= random init"),
                      ("distilbert-no-cos", "distilbert-random", "random init is the larger drop (without cosine >= random init)"),
                      ("distilbert", "teacher-layers", "control, not the paper's: the corpus stage adds (DistilBERT >= its start without it)")],
    },
    {
        "title": "MiniLM: deep self-attention distillation at equal size, its ablation, MiniLMv2, and a teacher assistant",
        "rows": ["minilm", "minilm-attention", "minilmv2", "distilbert", "teacher-layers", "half-direct", "half-assistant"],
        "orderings": [("minilm", "distilbert", "MiniLM >= DistilBERT at equal size and distillation budget"),
                      ("minilm", "minilm-attention", "value relations add (attention + value >= attention only)"),
                      ("minilmv2", "minilm", "MiniLMv2's multi-head relations >= MiniLM v1"),
                      ("half-assistant", "half-direct", "a teacher assistant helps the half-width student"),
                      ("minilm", "teacher-layers", "control, not the paper's: the corpus stage adds (MiniLM >= its start without it)")],
    },
    {
        "title": "HomoDistil: the teacher pruned while distilled on the corpus, at the MiniLM student's parameter count",
        "rows": ["homodistil", "homodistil-oneshot", "minilm"],
        "orderings": [("homodistil", "minilm", "HomoDistil >= MiniLM at equal parameters"),
                      ("homodistil", "homodistil-oneshot", "HomoDistil >= one-shot pruning + distillation (the same losses and budget)")],
    },
]


def copy_file(source, target):
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def finished(run):
    return (run / "config.json").is_file() and (run / "metrics.json").is_file()


def teacher_mlm_record(stage):
    """{"fingerprint", "eval"} of the masked-LM teacher here (sha256 prefix of its weights, its held-out MLM scores), for
    a corpus stage finished here; None when there is none or it is newer than the stage (made again since, so not the one
    the stage distilled from). The head is fitted again on every machine (bench/claims-all.sh), so rows distilled on
    different machines may have different teachers: the record says which."""
    weights = TEACHER_MLM / "model.safetensors"
    if not weights.is_file() or weights.stat().st_mtime > (stage / "metrics.json").stat().st_mtime:
        return None
    return teacher_mlm_here()


@functools.cache
def teacher_mlm_here():
    """The masked-LM teacher's record, hashed once per call of the script (every row's corpus stage shares it)."""
    return {"fingerprint": claims_table.digest(TEACHER_MLM / "model.safetensors"),
            "eval": (load(TEACHER_MLM / "metrics.json") or {}).get("eval")}


def copy_records():
    if not RUNS.is_dir():
        return
    for row in ROWS:
        folder = RUNS / row
        # A row whose corpus stage was made again here (claims-agnostic.sh runs a row recorded only in part again
        # whole): its records from the other machine's corpus model are dropped, so no row mixes two students.
        mine, recorded = folder / "distilled" / "metrics.json", RECORDS / row / "corpus.metrics.json"
        if finished(folder / "distilled") and recorded.is_file() and recorded.read_bytes() != mine.read_bytes():
            for old in (RECORDS / row).glob("*-s[0-9]*.*"):
                old.unlink()
        for stage, name in (("distilled", "corpus"), ("assistant", "assistant")):
            if finished(folder / stage):
                for kind in ("metrics", "run_config", "config"):
                    copy_file(folder / stage / f"{kind}.json", RECORDS / row / f"{name}.{kind}.json")
                copy_file(folder / stage / "metrics.jsonl", RECORDS / row / f"{name}.metrics.jsonl")
        extracted = folder / "distilled"
        if (extracted / "config.json").is_file() and (extracted / "extract.json").is_file():
            # The control row: its student is extracted (distillery extract), not distilled; no corpus stage, no metrics.
            copy_file(extracted / "config.json", RECORDS / row / "corpus.config.json")
            copy_file(extracted / "extract.json", RECORDS / row / "extract.json")
        if finished(folder / "distilled"):
            # The assistant's stage, where there is one, is the one that distilled from the teacher.
            first = folder / "assistant" if finished(folder / "assistant") else folder / "distilled"
            record = teacher_mlm_record(first)
            if record is not None:
                (RECORDS / row / "teacher-mlm.json").write_text(json.dumps(record, indent=2) + "\n")
            else:
                print(f"claims-agnostic-table.py: {row}: no masked-LM teacher at {TEACHER_MLM} older than its corpus stage; "
                      "its teacher is not recorded", file=sys.stderr)
        for run in sorted(folder.glob("*-s[0-9]*")):
            if finished(run):
                copy_file(run / "metrics.json", RECORDS / row / f"{run.name}.metrics.json")
                copy_file(run / "run_config.json", RECORDS / row / f"{run.name}.run_config.json")
                claims_table.copy_predictions(run, RECORDS / row / f"{run.name}.dev-predictions.json")
    for f in sorted((RUNS / "bench").glob("*.json")) + sorted((RUNS / "bench").glob("*.md")):
        copy_file(f, RECORDS / "bench" / f.name)
    copy_file(TEACHER_MLM / "config.json", RECORDS / "teacher-mlm.config.json")
    claims_table.copy_stamps(RUNS, RECORDS)


def parameters(config, labels=2):
    """Parameters of the model of config.json with a sequence-classification head (pooler + classifier), counted as
    Distillery's ParameterCounts counts them (pruned models: per-layer heads and FFN widths)."""
    if config is None:
        return None
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_size = config.get("distillery_attention_head_size") or hidden // config["num_attention_heads"]
    heads = config.get("distillery_layer_heads") or [config["num_attention_heads"]] * layers
    ffns = config.get("distillery_layer_intermediate_sizes") or [config["intermediate_size"]] * layers
    total = (config["vocab_size"] + config["max_position_embeddings"] + config["type_vocab_size"]) * hidden + 2 * hidden
    for h, ffn in zip(heads, ffns):
        a = h * head_size
        total += 3 * (hidden * a + a) + (a * hidden + hidden) + 2 * hidden      # Q, K, V; attention output, LayerNorm
        total += (hidden * ffn + ffn) + (ffn * hidden + hidden) + 2 * hidden    # FFN in, out, LayerNorm
    return total + (hidden * hidden + hidden) + (labels * hidden + labels)       # pooler, classifier


def shape(config):
    if config is None:
        return "-"
    heads = config.get("distillery_layer_heads") or [config["num_attention_heads"]]
    ffns = config.get("distillery_layer_intermediate_sizes") or [config["intermediate_size"]]
    part = lambda values: str(values[0]) if len(set(values)) == 1 else "[" + ",".join(map(str, values)) + "]"
    return f"L{config['num_hidden_layers']}-H{config['hidden_size']}-A{part(heads)}-F{part(ffns)}"


def extracted(row):
    """True for a row whose student was extracted from the teacher's layers with no corpus stage (the control row)."""
    return (RECORDS / row / "extract.json").is_file()


def corpus_stages(row):
    """The row's corpus stages (assistant first) as (metrics, run_config) pairs."""
    stages = []
    for name in ("assistant", "corpus"):
        metrics = load(RECORDS / row / f"{name}.metrics.json")
        if metrics is not None:
            stages.append((metrics, load(RECORDS / row / f"{name}.run_config.json") or {}))
    return stages


def tokens(metrics, run_config):
    options = run_config.get("options", {})
    trainer = options.get("trainer", {})
    return metrics.get("steps", 0) * trainer.get("batch_size", 0) * trainer.get("gradient_accumulation", 1) * options.get("seq_length", 0)


def duration(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def stage_times(stages):
    """The corpus stages' wall times, each with its process CPU time where recorded (wall time includes pauses and
    time shared with other work on the machine; CPU time does not grow while the run waits)."""
    return " + ".join(duration(m.get("wall_seconds", 0)) + (f" ({duration(m['cpu_seconds'])} CPU)" if m.get("cpu_seconds") is not None else "")
                      for m, _ in stages)


def finetune_time(walls, cpus, seeds_run):
    """Fine-tuning time per seed: wall minutes, and CPU minutes when every run recorded them."""
    if not walls:
        return "-"
    text = f"{sum(walls) / max(1, seeds_run) / 60:.0f} min"
    return text + (f" ({sum(cpus) / max(1, seeds_run) / 60:.0f} CPU min)" if all(c is not None for c in cpus) else "")


def count_text(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def row_scores(row):
    """{task: {seed: score}}, the per-seed task averages (seeds with every task), and the fine-tuning runs' wall and
    process CPU seconds (None where a run predates cpu_seconds)."""
    scores = {task: {} for task in TASKS}
    walls, cpus = [], []
    for task in TASKS:
        for seed in SEEDS:
            metrics = load(RECORDS / row / f"{task}-s{seed}.metrics.json")
            if metrics is not None and score(metrics, task) is not None:
                scores[task][seed] = score(metrics, task)
                walls.append(metrics.get("wall_seconds", 0.0))
                cpus.append(metrics.get("cpu_seconds"))
    averages = [statistics.fmean(scores[t][s] for t in TASKS) for s in SEEDS if all(s in scores[t] for t in TASKS)]
    return scores, averages, walls, cpus


def ordering_verdict(a, b, better, worse):
    """Part 1's rule (claims-table.py): the seeds' spread, or the paired bootstrap over dev examples."""
    boot = None
    if len(a) == len(SEEDS) and len(b) == len(SEEDS):
        boot = claims_table.paired_bootstrap(RECORDS / better, RECORDS / worse)
    return claims_table.ordering_verdict(a, b, boot)


def claim_table(spec, teacher, teacher_avg, teacher_params):
    lines = [f"#### {spec['title']}", ""]
    lines.append("| row | " + " | ".join(TASK_TITLE[t] for t in TASKS) + " | average | % of teacher | parameters | corpus stage | fine-tuning per seed |")
    lines.append("|---|" + "---:|" * (len(TASKS) + 5))
    teacher_cells = " | ".join(f"{teacher[t]:.1f}" if teacher[t] is not None else "-" for t in TASKS)
    params = f"{teacher_params / 1e6:.2f}M" if teacher_params else "-"
    lines.append(f"| teacher (L6-H384, fine-tuned) | {teacher_cells} | " + (f"{teacher_avg:.1f} | 100 | {params} |  |  |" if teacher_avg else f"- |  | {params} |  |  |"))
    per_seed_avg = {}
    for row in spec["rows"]:
        scores, averages, walls, cpus = row_scores(row)
        per_seed_avg[row] = averages
        cells = [fmt(*mean_std(list(scores[t].values())), len(scores[t])) for t in TASKS]
        avg_mean, avg_std = mean_std(averages)
        kept = f"{100 * avg_mean / teacher_avg:.1f}" if avg_mean is not None and teacher_avg else "-"
        count = parameters(load(RECORDS / row / "corpus.config.json"))
        stages = corpus_stages(row)
        if stages:
            wall = stage_times(stages)
            toks = " + ".join(count_text(tokens(m, c)) for m, c in stages)
            corpus = f"{wall}, {toks} tokens"
        else:
            corpus = "none" if extracted(row) else "-"
        seeds_run = len({s for t in TASKS for s in scores[t]})
        finetune = finetune_time(walls, cpus, seeds_run)
        lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + f" | {fmt(avg_mean, avg_std, len(averages))} | {kept} | "
                     + (f"{count / 1e6:.2f}M" if count else "-") + f" | {corpus} | {finetune} |")
    lines.append("")
    lines.append("| claim | verdict |")
    lines.append("|---|---|")
    if "share" in spec:
        row, share, claim = spec["share"]
        lines.append(f"| {claim} | {claims_table.share_verdict(per_seed_avg[row], teacher_avg, share)} |")
    if "speed" in spec:
        row, paper, claim = spec["speed"]
        lines.append(f"| {claim} | {speed_verdict(row, paper)} |")
    for better, worse, claim in spec["orderings"]:
        lines.append(f"| {claim} | {ordering_verdict(per_seed_avg[better], per_seed_avg[worse], better, worse)} |")
    lines.append("")
    return lines


@functools.lru_cache(maxsize=None)
def speed_record():
    """The bench stage's one record, bench/speed.json (None before it exists), read once: every row's cells read it."""
    return load(RECORDS / "bench" / "speed.json")


def bench_of(row):
    """{"sst2": {backend: bench row}} of ROW's stand-in (None: the teacher's) in the bench stage's one record,
    bench/speed.json: the stand-ins have each row's shapes, random weights and SST-2's head, and time every task's
    fine-tuned models alike (bench/claims-agnostic.sh's header says why); {} before that record exists."""
    record = speed_record()
    name = "teacher" if row is None else row
    rows = {r["backend"]: r for r in (record or {}).get("rows", []) if r["model"].rstrip("/").endswith(f"/stand-ins/{name}")}
    return {"sst2": rows} if rows else {}


def per_task(bench, backend, value):
    """VALUE(bench row) for each task whose bench run has BACKEND, in TASKS order (part 2: the one run, SST-2's)."""
    return [value(bench[t][backend]) for t in TASKS if backend in bench.get(t, {})]


def speedups(row, backend, batch):
    return claims_table.speedups(bench_of(row), bench_of(None), backend, batch)


def speed_verdict(row, paper):
    """Shown when the row's stand-in is at least PAPER times as fast as the teacher's at batch 1 and at batch 32 (ONNX
    Runtime fp32) in the bench stage's one run; the batch-1 p90s say how steady the timing was."""
    mine, teacher = bench_of(row), bench_of(None)
    b1, b32 = speedups(row, "onnx-fp32", 1), speedups(row, "onnx-fp32", 32)
    if not b1 or not b32:
        return "incomplete (no bench record of the row and the teacher yet)"
    t1, t32 = speedups(row, "torch-fp32", 1), speedups(row, "torch-fp32", 32)
    torch = f"; TorchSharp fp32 {t1[0]:.2f}x and {t32[0]:.2f}x" if t1 and t32 else ""
    a, b = mine["sst2"]["onnx-fp32"]["batch1"], teacher["sst2"]["onnx-fp32"]["batch1"]
    text = (f"{b1[0]:.2f}x at batch 1 ({a['median_ms']:.1f} ms against {b['median_ms']:.1f}; p90 {a['p90_ms']:.1f} and "
            f"{b['p90_ms']:.1f}) and {b32[0]:.2f}x at batch 32, ONNX Runtime fp32{torch}")
    return f"**shown**: {text}" if min(b1 + b32) >= paper else f"not shown: {text} (the paper: {paper:g}x)"


def compute_table(teacher_params):
    """Size, latency and throughput per backend (means over the tasks' bench runs) and the compute each row took."""
    lines = ["#### Size, speed and compute (the bench stage: one run timing every row's shapes; the distillation's wall time)", ""]
    names = [label for _, label in BACKENDS]
    lines.append("| model | parameters | MB on disk, ONNX fp32 / int8 | batch-1 ms: " + " / ".join(names) + " | batch-32 seq/s: " + " / ".join(names)
                 + " | speed-up over the teacher, ONNX fp32 batch 1 / 32 | distillation's wall time | fine-tuning per seed |")
    lines.append("|---|" + "---:|" * 7)

    def cell(values, fmt="{:.1f}"):
        return fmt.format(statistics.fmean(values)) if values else "-"

    for row in [None] + list(ROWS):
        bench = bench_of(row)
        mb = " / ".join(cell(per_task(bench, b, lambda r: r["bytes_on_disk"] / 1e6)) for b in ("onnx-fp32", "onnx-int8"))
        b1 = " / ".join(cell(per_task(bench, b, lambda r: r["batch1"]["median_ms"])) for b, _ in BACKENDS)
        b32 = " / ".join(cell(per_task(bench, b, lambda r: r["batch32"]["sequences_per_second"])) for b, _ in BACKENDS)
        if row is None:
            count, up, wall, finetune, label = teacher_params, "1.00 / 1.00", "-", "-", "teacher (L6-H384)"
        else:
            count = parameters(load(RECORDS / row / "corpus.config.json"))
            s1, s32 = speedups(row, "onnx-fp32", 1), speedups(row, "onnx-fp32", 32)
            up = f"{cell(s1, '{:.2f}')} / {cell(s32, '{:.2f}')}"
            stages = corpus_stages(row)
            wall = stage_times(stages) if stages else "none" if extracted(row) else "-"
            scores, _, walls, cpus = row_scores(row)
            seeds_run = len({seed for t in TASKS for seed in scores[t]})
            finetune = finetune_time(walls, cpus, seeds_run)
            label = ROWS[row]
        params = f"{count / 1e6:.2f}M" if count else "-"
        lines.append(f"| {label} | {params} | {mb} | {b1} | {b32} | {up} | {wall} | {finetune} |")
    lines.append("")
    record = speed_record()
    when = f" ({record['date_utc'][:10]}, {record['machine']})" if record else ""
    lines.append("Latency at 128 tokens (random ids, no padding), 2 threads, medians of the bench's timed forwards, in one bench "
                 f"run{when} that waited for an idle CPU and records the load it started at (bench/speed.md). It times "
                 "stand-ins: each row's distilled student's shapes (a pruned one's per layer) with SST-2's head and random "
                 "weights (`distillery init --like`), since the rows were distilled in sessions on machines that did not keep "
                 "their models and a forward's time does not depend on the weights' values; the other tasks' heads differ by "
                 "one output. int8 is ONNX Runtime's "
                 "dynamic quantization of the fused graph (no calibration, no QAT). The distillation's wall time is each "
                 "corpus stage's (assistant + student for the assistant row), on this shared 2-core machine; parameters count a "
                 "2-label classifier head.")
    lines.append("")
    return lines


def latency_of(row):
    """ROW's ONNX Runtime fp32 batch-1 median (ms) (None: the teacher's), from this part's bench run."""
    values = per_task(bench_of(row), DRAWN_WITH, lambda r: r["batch1"]["median_ms"])
    return statistics.fmean(values) if values else None


PART2_FAMILIES = [("DistilBERT (corpus)", ["distilbert", "distilbert-no-cos", "distilbert-random"]),
                  ("teacher layers, no corpus stage", ["teacher-layers"]),
                  ("MiniLM (corpus)", ["minilm", "minilm-attention", "minilmv2", "half-direct", "half-assistant"]),
                  ("HomoDistil (corpus)", ["homodistil", "homodistil-oneshot"])]


def pareto(teacher, draw):
    """Every row of both parts with a latency and a task average: one point each, and the front no row beats."""
    lines, series, points, missing_latency, missing_score = [], [], [], [], []

    def add(series_points, name, ms, averages):
        if ms is None:
            missing_latency.append(name)
        elif not averages:
            missing_score.append(name)
        else:
            mean, std = mean_std(averages)
            point = {"x": ms, "y": mean, "y_error": 0 if math.isnan(std) else std, "label": name}
            series_points.append(point)
            points.append(point)

    # x: a row's latency as a fraction of the teacher's in the same bench run. The two parts were timed in different
    # sessions whose absolute times differ by more than the rows do (ONNX Runtime's GEMM peak differed 2x between
    # them), while a ratio within one run carries the session's speed in both its terms.
    teacher_ms = {"part 1": claims_table.latency_of(None), "part 2": latency_of(None)}
    relative = lambda ms, part: ms / teacher_ms[part] if ms is not None and teacher_ms[part] else None
    teacher_avg = [statistics.fmean(teacher.values())] if all(v is not None for v in teacher.values()) else []
    teacher_points = []
    add(teacher_points, "teacher", 1.0 if any(teacher_ms.values()) else None, teacher_avg)
    if teacher_points:
        series.append({"label": "teacher", "points": teacher_points})
    for claim, spec in claims_table.CLAIMS.items():
        part1 = []
        for row, _ in spec["rows"]:
            add(part1, f"{claim}/{row}", relative(claims_table.latency_of(f"{claim}/{row}"), "part 1"),
                claims_table.seed_averages(claim, row))
        if part1:
            series.append({"label": f"{claim} (task-specific)", "points": part1})
    for family, rows in PART2_FAMILIES:
        part2 = []
        for row in rows:
            add(part2, row, relative(latency_of(row), "part 2"), row_scores(row)[1])
        if part2:
            series.append({"label": family, "points": part2})
    # The front: points that no other point matches or beats on both axes (lower latency, higher score), by latency.
    front = sorted((p for p in points if not any(q is not p and q["x"] <= p["x"] and q["y"] >= p["y"] and (q["x"], q["y"]) != (p["x"], p["y"])
                                                  for q in points)), key=lambda p: p["x"])
    left_out = []
    if missing_latency:
        left_out.append("without a latency record: " + ", ".join(missing_latency))
    if missing_score:
        left_out.append("without a score on every task for a seed: " + ", ".join(missing_score))
    if left_out:
        print("claims-agnostic-table.py: the Pareto plot leaves out the rows " + "; and ".join(left_out), file=sys.stderr)
    if len(points) >= 2 and draw:
        series.append({"label": "Pareto front", "lines": True, "points": [{"x": p["x"], "y": p["y"]} for p in front]})
        png = claims_table.write_figure("agnostic-pareto", {
            "title": "Task average (" + ", ".join(TASK_TITLE[t] for t in TASKS) + ") vs CPU latency, both parts",
            "x_label": "ONNX Runtime fp32 batch-1 latency / the teacher's in the same run (lower is better)",
            # Lower right: slower than the teacher-relative rows and worse than the teacher, where no row falls here (the
            # upper left, the corner a Pareto front leaves empty, hid the front's rise from the half-width rows).
            "y_label": "dev score, mean of seeds ± std", "legend": "lower_right", "series": series}, records=RECORDS)
        lines += [f"![task average vs latency, every row of both parts]({claims_table.figure_link(png)})", ""]
    if points:
        timed = "; ".join(f"{part} {ms:.1f} ms" for part, ms in teacher_ms.items() if ms)
        lines.append(f"The Pareto plot: {len(points)} points (the teacher, part 1's task-specific rows as claim/row, part 2's "
                     "task-agnostic rows) by their task average and ONNX Runtime fp32 batch-1 latency as a fraction of the "
                     "teacher's in the same bench run (part 1: its seed-1 models', mean over the tasks' bench runs, against the "
                     "teacher timed in those runs; part 2: its stand-ins' one run, against the teacher's stand-in); the line joins "
                     "the rows no other row matches or beats on both (" + ", ".join(p["label"] for p in front) + "). The parts "
                     "were timed in different sessions of the same machine and rule, whose absolute times differ more than "
                     f"the rows do (the teacher, mean over the tasks: {timed}), so only ratios within a run are set side by side.")
    if left_out:
        lines.append("Left out of the plot (nothing is drawn for them until their records exist): the rows " + "; and ".join(left_out) + ".")
    lines.append("")
    return lines


def curve_series(row, stage, term, label):
    """The (step, value) points of TERM in ROW's corpus stage's metrics.jsonl record, as a curve (None: not logged)."""
    path = RECORDS / row / f"{stage}.metrics.jsonl"
    if not path.is_file():
        return None
    points = []
    for line in path.read_text().splitlines():
        value = json.loads(line).get(term) if line.strip() else None
        if value is not None:
            points.append({"x": json.loads(line)["step"], "y": value})
    return {"label": label, "lines": True, "points": points} if points else None


CURVES = [
    ("kl", "loss_kl", "Corpus stage: KL(teacher || student) of the masked-LM predictions per logged step",
     "KL at T = 1, nats per masked token",
     [("homodistil", "corpus"), ("homodistil-oneshot", "corpus"), ("distilbert", "corpus"), ("distilbert-no-cos", "corpus"), ("distilbert-random", "corpus")]),
    ("attention-kl", "loss_attention_kl", "Corpus stage: MiniLM v1's last-layer attention KL per logged step",
     "KL(A_teacher || A_student), nats per query",
     [("minilm", "corpus"), ("minilm-attention", "corpus"), ("half-direct", "corpus"), ("half-assistant", "assistant"), ("half-assistant", "corpus")]),
]


def curves(draw):
    lines = []
    for name, term, title, y_label, stages in CURVES:
        # The assistant row's two stages are against different teachers: the assistant against the teacher, the
        # student against the assistant.
        label = {("half-assistant", "assistant"): "half-assistant: the assistant (to the teacher)",
                 ("half-assistant", "corpus"): "half-assistant: the student (to the assistant)"}
        drawn = [c for row, stage in stages if (c := curve_series(row, stage, term, label.get((row, stage), row))) is not None]
        if drawn and draw:
            png = claims_table.write_figure(f"agnostic-{name}", {"title": title, "x_label": "optimizer step of the corpus stage",
                                                                   "y_label": y_label, "series": drawn}, records=RECORDS)
            lines += [f"![{title}]({claims_table.figure_link(png)})", ""]
    # HomoDistil's third claim in numbers: each corpus stage's logged KL(teacher || student), its mean and largest
    # value over the run (one corpus stage per row, seed 1: a comparison of two runs, no spread to judge it by).
    kl = []
    for row in ("homodistil", "homodistil-oneshot", "distilbert", "distilbert-no-cos", "distilbert-random"):
        series = curve_series(row, "corpus", "loss_kl", row)
        if series:
            ys = [p["y"] for p in series["points"]]
            kl.append(f"{row} mean {statistics.fmean(ys):.3f}, largest {max(ys):.3f} (step {series['points'][ys.index(max(ys))]['x']})")
    if kl:
        lines.append("Teacher-student discrepancy over the corpus stage (`loss_kl` as logged, nats per masked token; one corpus "
                     "run per row, so no spread): " + "; ".join(kl) + ".")
        lines.append("")
    # DistilBERT's objective is the soft-target KL at T = 2 (loss_soft_kl), not loss_kl at T = 1: where the two move apart,
    # the student matches the teacher's softened distribution better while its own T = 1 predictions leave the teacher's.
    trends = []
    for row in ("distilbert", "distilbert-no-cos", "distilbert-random"):
        soft, hard = curve_series(row, "corpus", "loss_soft_kl", row), curve_series(row, "corpus", "loss_kl", row)
        if soft and hard:
            a, b, c, d = soft["points"][0], soft["points"][-1], hard["points"][0], hard["points"][-1]
            trends.append(f"{row} {a['y']:.3f} (step {a['x']}) to {b['y']:.3f} (step {b['x']}), while `loss_kl` went "
                          f"{c['y']:.3f} to {d['y']:.3f}")
    if trends:
        lines.append("DistilBERT's own distillation term, the soft-target term at T = 2 (`loss_soft_kl`: T^2 x KL at T = 2, before its "
                     "alpha_ce weight), first to last logged step: " + "; ".join(trends) + ".")
        lines.append("")
    if lines:
        lines.append("The curves are the corpus stages' loss terms as metrics.jsonl logs them every 25 steps (bench/claims-agnostic.sh; "
                     "each point the mean over the 25 training batches before it): "
                     "`loss_kl` is KL(p_teacher || p_student) at T = 1 on the masked positions of the training batches for DistilBERT "
                     "(whose own soft-target term is at T = 2) and HomoDistil (at T = 1, its loss term); MiniLM computes no masked-LM "
                     "predictions, so its rows are drawn by their own term, the last layer's attention KL (per head and query position).")
        lines.append("")
    return lines


def teacher_mlm_groups(distilled):
    """{fingerprint: (its eval, [rows])} of the masked-LM teachers the DISTILLED rows' recorded corpus stages distilled
    from (teacher-mlm.json, copy_records), and the rows without that record (recorded before it existed)."""
    groups, unknown = {}, []
    for row in distilled:
        record = load(RECORDS / row / "teacher-mlm.json")
        if record and record.get("fingerprint"):
            groups.setdefault(record["fingerprint"], (record.get("eval"), []))[1].append(row)
        else:
            unknown.append(row)
    return groups, unknown


def tables(draw=False):
    teacher = claims_table.teacher_scores()
    teacher_avg = statistics.fmean(teacher.values()) if all(v is not None for v in teacher.values()) else None
    teacher_params = parameters(load(RECORDS / "teacher-mlm.config.json"))
    lines = []
    for spec in CLAIMS:
        lines += claim_table(spec, teacher, teacher_avg, teacher_params)
    lines += compute_table(teacher_params)
    lines += pareto(teacher, draw)
    lines += curves(draw)
    shapes = [f"{row} {shape(load(RECORDS / row / 'corpus.config.json'))}" for row in ROWS if (RECORDS / row / "corpus.config.json").is_file()]
    if shapes:
        lines.append("Students' shapes: " + "; ".join(shapes) + ". Parameters are counted with a 2-label classifier head.")
        lines.append("")
    evals, untrained = [], []
    for row in ROWS:
        for metrics, _ in corpus_stages(row)[-1:]:
            accuracy = (metrics.get("eval") or {}).get("mlm_accuracy")
            if metrics.get("mlm_head_untrained"):
                untrained.append(row)
            elif accuracy is not None:
                evals.append(f"{row} {100 * accuracy:.1f}%")
    teachers, unknown = teacher_mlm_groups([row for row in ROWS if (RECORDS / row / "corpus.metrics.json").is_file()])
    mixed = len(teachers) > 1 or (teachers and unknown)   # the rows did not all distil from one known head
    if evals or untrained:
        # The teacher's head: the one every recorded row distilled from, or (rows recorded before teacher-mlm.json) the
        # published teacher-mlm record; nothing when the rows had different or partly unknown heads (said below).
        if not teachers:
            teacher_mlm = (load(claims_table.TEACHER_RECORDS / "teacher-mlm.metrics.json") or {}).get("eval", {}).get("mlm_accuracy")
        elif not mixed:
            teacher_mlm = (next(iter(teachers.values()))[0] or {}).get("mlm_accuracy")
        else:
            teacher_mlm = None
        head = f" (the teacher's head: {100 * teacher_mlm:.1f}%)" if teacher_mlm is not None else ""
        text = f"Held-out MLM accuracy after the corpus stage{head}: " + (", ".join(evals) if evals else "none")
        if untrained:
            text += ("; not evaluated: " + ", ".join(untrained) + " (their method never trains the masked-LM head, so their "
                     "config.json marks it untrained, fill-mask refuses them, and an MLM score would measure the head's init)")
        lines.append(text + ".")
        lines.append("")
    if mixed:
        parts = []
        for fingerprint, (evaluation, rows) in sorted(teachers.items(), key=lambda kv: kv[1][1]):
            accuracy = (evaluation or {}).get("mlm_accuracy")
            parts.append(f"{', '.join(rows)} from head {fingerprint}" + (f" (held-out MLM accuracy {100 * accuracy:.1f}%)" if accuracy is not None else ""))
        if unknown:
            parts.append(f"{', '.join(unknown)} from a head not recorded")
        lines.append("The corpus stages distilled from more than one masked-LM teacher (the head on the frozen teacher is "
                     "fitted again on each machine, bench/claims-all.sh): " + "; ".join(parts) + ". Rows compare across "
                     "them only as far as those heads agree; the rows' records say which head (teacher-mlm.json).")
        lines.append("")
    commits = sorted(p.name for p in RECORDS.glob("COMMIT.*")) if RECORDS.is_dir() else []
    if commits:
        lines.append("Runs started at commits: " + ", ".join(f"{claims_table.stamp_text(RECORDS / c)} ({c[7:]})" for c in commits) + ".")
    return "\n".join(lines).rstrip() + "\n"


def main(argv):
    if "--records-only" not in argv:
        copy_records()
    text = tables(draw="--write-docs" in argv or "--figures" in argv)
    print(text, end="")
    if "--write-docs" in argv:
        claims_table.write_between_markers(text, BEGIN, END, "claims-agnostic-table.py")


if __name__ == "__main__":
    main(sys.argv[1:])
