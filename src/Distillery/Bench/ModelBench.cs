using System.Globalization;
using System.Text;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Bench;

/// <summary>Options of <c>distillery bench</c>.</summary>
public sealed record BenchOptions
{
    /// <summary>Model folders; the first is the reference for the ratios (usually the teacher).</summary>
    public required IReadOnlyList<string> Models { get; init; }
    /// <summary>Task to score them on (GLUE name or squad).</summary>
    public required string Task { get; init; }
    /// <summary>Task data.</summary>
    public required string Data { get; init; }
    /// <summary>SQuAD: the evaluation articles are those not among the first N (as in fine-tuning with --split-articles).</summary>
    public int SplitArticles { get; init; }
    /// <summary>Seed of the SQuAD article split (must match the fine-tuning's).</summary>
    public long Seed { get; init; } = 42;
    /// <summary>Tokens per sequence in the latency runs.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Timed forwards at batch 1 (batch 32 runs half as many).</summary>
    public int Iterations { get; init; } = 20;
    /// <summary>Matmul precision of the timing and scoring.</summary>
    public ComputePrecision Precision { get; init; } = ComputePrecision.Float32;
}

/// <summary>One model's measurements.</summary>
public sealed record BenchResult(string Model, string Arch, long Parameters, long BytesOnDisk, IReadOnlyDictionary<string, double> Scores,
    string PrimaryMetric, LatencyResult Batch1, LatencyResult Batch32);

/// <summary>Measures several models on one task in one run: size, dev score, CPU latency and throughput.</summary>
public static class ModelBench
{
    /// <summary>Runs the measurements; <paramref name="progress"/> hears about each model.</summary>
    public static IReadOnlyList<BenchResult> Run(BenchOptions options, Action<string>? progress = null)
    {
        if (options.Models.Count == 0) throw new ArgumentException("give at least one model folder");
        var results = new List<BenchResult>();
        foreach (string dir in options.Models)
        {
            progress?.Invoke($"scoring {dir}");
            var taskOptions = new FinetuneOptions
            {
                Task = options.Task, Model = dir, Data = options.Data, Out = dir, SplitArticles = options.SplitArticles,
                Trainer = new TrainerOptions { Seed = options.Seed },
            };
            var scores = FineTuning.Evaluate(taskOptions, options.Precision);
            string primary = taskOptions.IsSquad ? "f1" : Data.Glue.Info(Data.Glue.ParseTask(options.Task)).PrimaryMetric;
            var (model, _) = BertCheckpoint.Load(dir);
            using (model)
            {
                model.eval();
                model.SetPrecision(options.Precision);
                progress?.Invoke($"timing {dir}");
                var b1 = Latency.Measure(model, 1, options.SeqLength, warmup: 5, iterations: options.Iterations, seed: options.Seed);
                var b32 = Latency.Measure(model, 32, options.SeqLength, warmup: 2, iterations: Math.Max(3, options.Iterations / 2), seed: options.Seed);
                long bytes = BertCheckpoint.BytesOnDisk(dir);
                results.Add(new BenchResult(dir, BertArch.NameOf(model.Config), ParameterCounts.Of(model).Total, bytes, scores, primary, b1, b32));
            }
        }
        return results;
    }

    /// <summary>The results as a markdown table, ratios against the first row.</summary>
    public static string Markdown(IReadOnlyList<BenchResult> results, BenchOptions options)
    {
        var c = CultureInfo.InvariantCulture;
        var first = results[0];
        var md = new StringBuilder();
        md.AppendLine(c, $"Task {options.Task}, {options.Precision}, latency at length {options.SeqLength} (random ids, no padding); {Machine.Describe()}.");
        md.AppendLine();
        md.AppendLine($"| model | arch | params | disk MB | {first.PrimaryMetric} | % of first | batch 1 median ms | batch 1 p90 ms | speed-up b1 | batch 32 seq/s | speed-up b32 |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            double score = r.Scores[r.PrimaryMetric], reference = first.Scores[first.PrimaryMetric];
            md.AppendLine(c, $"| {r.Model} | {r.Arch} | {r.Parameters / 1e6:0.0}M | {r.BytesOnDisk / 1048576.0:0.0} | {Display(score)} | {100 * score / reference:0.0}% | " +
                $"{r.Batch1.MedianMs:0.00} | {r.Batch1.P90Ms:0.00} | {first.Batch1.MedianMs / r.Batch1.MedianMs:0.00}x | {r.Batch32.SequencesPerSecond:0.0} | {r.Batch32.SequencesPerSecond / first.Batch32.SequencesPerSecond:0.00}x |");
        }
        return md.ToString();
    }

    /// <summary>Scores in [0, 1] as percentages; others (EM/F1 already ×100) as they are.</summary>
    public static string Display(double score) => Math.Abs(score) <= 1 ? (100 * score).ToString("0.0", CultureInfo.InvariantCulture) : score.ToString("0.0", CultureInfo.InvariantCulture);
}
