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

/// <summary>CPU latency of a model's forward pass (eval mode, no gradients, random token ids, no padding), in TorchSharp or through an inference backend.</summary>
public static class Latency
{
    /// <summary>
    /// Times <paramref name="iterations"/> forwards of a [<paramref name="batch"/>, <paramref name="seqLength"/>] input
    /// after <paramref name="warmup"/> untimed ones (allocator and kernel selection settle during warm-up).
    /// </summary>
    public static LatencyResult Measure(BertTaskModel model, int batch, int seqLength, int warmup = 3, int iterations = 10, long seed = 0)
    {
        Check(batch, seqLength, warmup, iterations);
        if (seqLength > model.Config.MaxPositionEmbeddings) throw new ArgumentOutOfRangeException(nameof(seqLength), $"sequence length {seqLength} exceeds the model's {model.Config.MaxPositionEmbeddings} positions");
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            var generator = new Generator((ulong)seed);
            using var ids = randint(0, model.Config.VocabSize, [batch, seqLength], dtype: ScalarType.Int64, generator: generator);
            return Time(() =>
            {
                using var scope = NewDisposeScope();
                var logits = model.forward(new BertInputs(ids)).Logits;
                _ = logits.sum().item<float>();   // force completion (and keep the work from being skipped)
            }, batch, seqLength, warmup, iterations);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// The same measurement through an inference backend (TorchSharp or ONNX Runtime): random ids, attention mask all
    /// ones, segment 0; each timed call includes copying the logits out, as an application's call does.
    /// </summary>
    internal static LatencyResult Measure(Inference.IInferenceBackend backend, int batch, int seqLength, int warmup = 3, int iterations = 10, long seed = 0)
    {
        Check(batch, seqLength, warmup, iterations);
        if (seqLength > backend.Config.MaxPositionEmbeddings) throw new ArgumentOutOfRangeException(nameof(seqLength), $"sequence length {seqLength} exceeds the model's {backend.Config.MaxPositionEmbeddings} positions");
        var random = new Random((int)(seed & int.MaxValue));
        var ids = new long[batch * seqLength];
        for (int i = 0; i < ids.Length; i++) ids[i] = random.NextInt64(backend.Config.VocabSize);
        var mask = new long[ids.Length];
        Array.Fill(mask, 1L);
        var input = new Text.TokenizedBatch(batch, seqLength, ids, new long[ids.Length], mask);
        return Time(() => backend.Run(input), batch, seqLength, warmup, iterations);
    }

    /// <summary>Runs <paramref name="forward"/> <paramref name="warmup"/> times untimed, then <paramref name="iterations"/> times timed.</summary>
    public static LatencyResult Time(Action forward, int batch, int seqLength, int warmup, int iterations)
    {
        Check(batch, seqLength, warmup, iterations);
        var times = new List<double>(iterations);
        for (int i = 0; i < warmup + iterations; i++)
        {
            var watch = Stopwatch.StartNew();
            forward();
            watch.Stop();
            if (i >= warmup) times.Add(watch.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return new LatencyResult(batch, seqLength, Percentile(times, 0.5), Percentile(times, 0.9), iterations);
    }

    private static void Check(int batch, int seqLength, int warmup, int iterations)
    {
        if (batch < 1 || seqLength < 1 || iterations < 1 || warmup < 0) throw new ArgumentOutOfRangeException(nameof(batch), "batch, length and iterations must be positive");
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
