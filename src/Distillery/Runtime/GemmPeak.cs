// How fast can this machine multiply matrices, in each backend, right now? A bench row's GFLOP/s means little alone:
// "60 GFLOP/s" is near the limit on a 2-core AVX2 CPU and 5% of it on a 64-core AMX server. So every bench (and every
// training run, for its MFU) first times plain fp32 GEMMs at shapes a BERT forward runs, in the same process, with the
// same thread count as the rows that follow: libtorch's torch.mm, and ONNX Runtime running a MatMul-only graph (the
// weight is an initializer, pre-packed once, as a model's weights are) with the same session options as the model rows.
// The peak of a backend is the best GFLOP/s over the shapes; a row's fraction is its achieved model GFLOP/s over the
// peak of the backend that ran it. int8 rows are divided by the fp32 peak too (their fraction can pass 1: that is the
// int8 speed-up over the fp32 limit, not an error).
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Runtime;

/// <summary>A GEMM [M×K]·[K×N] (fp32); a multiply-add counts 2 FLOPs.</summary>
/// <param name="M">Rows of the activation (batch × tokens).</param>
/// <param name="K">Inner dimension.</param>
/// <param name="N">Output columns.</param>
public sealed record GemmShape(int M, int K, int N)
{
    /// <summary>2·M·K·N.</summary>
    public double Flops => 2.0 * M * K * N;

    /// <summary>"[4096x384]x[384x1536]".</summary>
    public override string ToString() => $"[{M}x{K}]x[{K}x{N}]";
}

/// <summary>One shape's best throughput.</summary>
/// <param name="Shape">The GEMM.</param>
/// <param name="GFlops">Best GFLOP/s over the timed calls (the fastest call: a peak, not a typical value).</param>
/// <param name="Calls">Timed calls.</param>
public sealed record GemmMeasurement(GemmShape Shape, double GFlops, int Calls);

/// <summary>A backend's measured fp32 GEMM limit.</summary>
/// <param name="Backend">"libtorch" or "onnxruntime".</param>
/// <param name="Threads">Intra-op threads it ran with.</param>
/// <param name="Shapes">Each shape's best.</param>
public sealed record GemmPeak(string Backend, int Threads, IReadOnlyList<GemmMeasurement> Shapes)
{
    /// <summary>The best GFLOP/s over the shapes: the limit a model's rows are compared with.</summary>
    public double PeakGFlops => Shapes.Max(s => s.GFlops);

    /// <summary>"libtorch 94.1 GFLOP/s ([4096x384]x[384x1536] 78.0, ...)".</summary>
    public override string ToString() =>
        FormattableString.Invariant($"{Backend} {PeakGFlops:0.0} GFLOP/s ({string.Join(", ", Shapes.Select(s => FormattableString.Invariant($"{s.Shape} {s.GFlops:0.0}")))})");
}

/// <summary>
/// Measures <see cref="GemmPeak"/>s: libtorch's here (training runs need it for their MFU, so it lives beside the machine
/// description); ONNX Runtime's in <c>Bench.OnnxGemmPeaks</c>, which times with <see cref="Time"/>.
/// </summary>
public static class GemmPeaks
{
    /// <summary>
    /// Shapes a BERT forward runs, at L6-H384 (FFN 1536), length 128: a batch-32 FFN projection [4096×384]·[384×1536],
    /// a batch-1 one [128×384]·[384×1536], and a large square 2048³ that reaches the kernel's best.
    /// </summary>
    public static readonly IReadOnlyList<GemmShape> Representative = [new(4096, 384, 1536), new(128, 384, 1536), new(2048, 2048, 2048)];

    /// <summary>
    /// libtorch's fp32 torch.mm at <paramref name="shapes"/> (default <see cref="Representative"/>) with the process's
    /// torch threads: per shape two untimed calls, then calls for about <paramref name="secondsPerShape"/> (at least 3).
    /// </summary>
    public static GemmPeak Torch(IReadOnlyList<GemmShape>? shapes = null, double secondsPerShape = 0.5)
    {
        shapes ??= Representative;
        var results = new List<GemmMeasurement>();
        using var _ = no_grad();
        foreach (var shape in shapes)
        {
            using var scope = NewDisposeScope();
            var generator = new Generator(0);
            var a = randn([shape.M, shape.K], generator: generator);
            var b = randn([shape.K, shape.N], generator: generator);
            results.Add(Time(shape, () => mm(a, b).Dispose(), secondsPerShape));
        }
        return new GemmPeak("libtorch", get_num_threads(), results);
    }

    /// <summary>Two untimed calls, then calls for about <paramref name="seconds"/> (at least 3): the fastest one's GFLOP/s.</summary>
    public static GemmMeasurement Time(GemmShape shape, Action call, double seconds)
    {
        call();
        call();
        double best = double.MaxValue;
        int calls = 0;
        var total = Stopwatch.StartNew();
        while (calls < 3 || total.Elapsed.TotalSeconds < seconds)
        {
            var watch = Stopwatch.StartNew();
            call();
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
            calls++;
        }
        return new GemmMeasurement(shape, shape.Flops / best / 1e9, calls);
    }

    private static readonly object gate = new();
    private static GemmPeak? trainingPeak;

    /// <summary>
    /// libtorch's peak for training runs' MFU, measured once per process and thread count (a recipe's stages share it),
    /// cheaply: 0.2 s per shape.
    /// </summary>
    public static GemmPeak TorchOncePerProcess()
    {
        lock (gate)
        {
            if (trainingPeak is null || trainingPeak.Threads != get_num_threads()) trainingPeak = Torch(secondsPerShape: 0.2);
            return trainingPeak;
        }
    }
}

