using System.Diagnostics;
using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Bench;

/// <summary>Forward-pass latency of one batch shape.</summary>
/// <param name="Batch">Sequences per forward.</param>
/// <param name="SeqLength">Tokens per sequence.</param>
/// <param name="MedianMs">Median wall time of one forward, in milliseconds.</param>
/// <param name="P90Ms">90th percentile, in milliseconds.</param>
/// <param name="Iterations">Timed forwards (after warm-up).</param>
public sealed record LatencyResult(int Batch, int SeqLength, double MedianMs, double P90Ms, int Iterations)
{
    /// <summary>Sequences per second at the median.</summary>
    public double SequencesPerSecond => Batch / (MedianMs / 1000.0);
}

/// <summary>CPU latency of a model's forward pass (eval mode, no gradients, random token ids, no padding).</summary>
public static class Latency
{
    /// <summary>
    /// Times <paramref name="iterations"/> forwards of a [<paramref name="batch"/>, <paramref name="seqLength"/>] input
    /// after <paramref name="warmup"/> untimed ones (allocator and kernel selection settle during warm-up).
    /// </summary>
    public static LatencyResult Measure(BertTaskModel model, int batch, int seqLength, int warmup = 3, int iterations = 10, long seed = 0)
    {
        if (batch < 1 || seqLength < 1 || iterations < 1 || warmup < 0) throw new ArgumentOutOfRangeException(nameof(batch), "batch, length and iterations must be positive");
        if (seqLength > model.Config.MaxPositionEmbeddings) throw new ArgumentOutOfRangeException(nameof(seqLength), $"sequence length {seqLength} exceeds the model's {model.Config.MaxPositionEmbeddings} positions");
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            var generator = new Generator((ulong)seed);
            using var ids = randint(0, model.Config.VocabSize, [batch, seqLength], dtype: ScalarType.Int64, generator: generator);
            var times = new List<double>();
            for (int i = 0; i < warmup + iterations; i++)
            {
                using var scope = NewDisposeScope();
                var watch = Stopwatch.StartNew();
                var logits = model.forward(new BertInputs(ids)).Logits;
                _ = logits.sum().item<float>();   // force completion (and keep the work from being skipped)
                watch.Stop();
                if (i >= warmup) times.Add(watch.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            return new LatencyResult(batch, seqLength, Percentile(times, 0.5), Percentile(times, 0.9), iterations);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>Linear-interpolated percentile of sorted values.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) throw new ArgumentException("no values");
        double rank = q * (sorted.Count - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }
}
