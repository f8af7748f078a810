using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Distillery.Export;
using Distillery.Inference;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Runtime;
using Distillery.Text;
using Distillery.Training;
using TorchSharp;

namespace Distillery.Bench;

/// <summary>One way of running a model in <c>distillery bench</c>.</summary>
public enum BenchBackend
{
    /// <summary>TorchSharp, fp32 matmuls (<c>torch-fp32</c>).</summary>
    TorchFp32,
    /// <summary>
    /// TorchSharp, bf16 matmuls with fp32 weights (<c>torch-bf16</c>). Fast only on CPUs with native bf16; elsewhere
    /// libtorch emulates it (slower than fp32), its rows say "(emulated)" and <see cref="BenchBackends.Recommended"/>
    /// leaves it out.
    /// </summary>
    TorchBf16,
    /// <summary>ONNX Runtime on the fp32 export (<c>onnx-fp32</c>).</summary>
    OnnxFp32,
    /// <summary>ONNX Runtime on the dynamically quantized int8 export (<c>onnx-int8</c>), weights as <see cref="BenchOptions.Int8Scheme"/>.</summary>
    OnnxInt8,
    /// <summary>ONNX Runtime on the plain (standard operators) fp32 export (<c>onnx-fp32-plain</c>); onnx-fp32 is the fused graph.</summary>
    OnnxFp32Plain,
    /// <summary>ONNX Runtime on the plain int8 export (<c>onnx-int8-plain</c>); onnx-int8 is the fused graph.</summary>
    OnnxInt8Plain,
    /// <summary>
    /// A foreign ONNX graph of the first model (<see cref="BenchOptions.Peer"/>, e.g. the PyTorch export of the same
    /// weights), timed with the same session options (<c>onnx-peer</c>). Not chosen with --backends: --peer adds it.
    /// </summary>
    OnnxPeer,
}

/// <summary>Names of <see cref="BenchBackend"/> on the command line and in tables.</summary>
public static class BenchBackends
{
    /// <summary>Every backend --backends can name, in the order they are listed (the peer row comes from --peer).</summary>
    public static readonly IReadOnlyList<BenchBackend> All =
        [BenchBackend.TorchFp32, BenchBackend.TorchBf16, BenchBackend.OnnxFp32, BenchBackend.OnnxInt8, BenchBackend.OnnxFp32Plain, BenchBackend.OnnxInt8Plain];

    /// <summary>torch-fp32, torch-bf16, onnx-fp32, onnx-int8, onnx-fp32-plain, onnx-int8-plain, onnx-peer.</summary>
    public static string Name(BenchBackend backend) => backend switch
    {
        BenchBackend.TorchFp32 => "torch-fp32",
        BenchBackend.TorchBf16 => "torch-bf16",
        BenchBackend.OnnxFp32 => "onnx-fp32",
        BenchBackend.OnnxInt8 => "onnx-int8",
        BenchBackend.OnnxFp32Plain => "onnx-fp32-plain",
        BenchBackend.OnnxInt8Plain => "onnx-int8-plain",
        _ => "onnx-peer",
    };

    /// <summary>
    /// The backends worth comparing on <paramref name="cpu"/>: torch fp32 and bf16, ONNX Runtime fp32 and int8 (fused
    /// graphs), except torch-bf16 where the CPU has no native bf16 (emulated bf16 is slower than fp32 and only shows
    /// that it is). The plain-graph rows are for comparing graphs, not for choosing a deployment.
    /// </summary>
    public static IReadOnlyList<BenchBackend> RecommendedFor(CpuFeatures cpu) =>
        All.Where(b => b is not (BenchBackend.OnnxFp32Plain or BenchBackend.OnnxInt8Plain) && (b != BenchBackend.TorchBf16 || cpu.HasNativeBf16)).ToList();

    /// <summary><see cref="RecommendedFor"/> this machine.</summary>
    public static IReadOnlyList<BenchBackend> Recommended => RecommendedFor(CpuFeatures.Current);

    /// <summary>
    /// The backend's name in a results table on <paramref name="cpu"/>: <see cref="Name"/>, with "(emulated)" after
    /// torch-bf16 where the CPU has no native bf16, so a slow bf16 row says why it is slow.
    /// </summary>
    public static string Label(BenchBackend backend, CpuFeatures cpu) =>
        backend == BenchBackend.TorchBf16 && !cpu.HasNativeBf16 ? Name(backend) + " (emulated)" : Name(backend);

    /// <summary>Parses a comma-separated list ("torch-fp32,onnx-int8"); an unknown name is one line listing the known ones.</summary>
    public static IReadOnlyList<BenchBackend> ParseList(string text)
    {
        var result = new List<BenchBackend>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var match = All.Where(b => Name(b).Equals(part, StringComparison.OrdinalIgnoreCase)).ToList();
            if (match.Count == 0) throw new ArgumentException($"--backends: unknown backend \"{part}\" (known: {string.Join(", ", All.Select(Name))})");
            if (!result.Contains(match[0])) result.Add(match[0]);
        }
        if (result.Count == 0) throw new ArgumentException($"--backends: give at least one of {string.Join(", ", All.Select(Name))}");
        return result;
    }

    /// <summary>Whether the backend runs an ONNX graph in ONNX Runtime (its rows are compared with ONNX Runtime's GEMM peak).</summary>
    public static bool IsOnnx(BenchBackend backend) => backend is not (BenchBackend.TorchFp32 or BenchBackend.TorchBf16);

    /// <summary>The export a Distillery ONNX backend runs (null for TorchSharp and the peer graph).</summary>
    public static OnnxExportOptions? ExportOptions(BenchBackend backend, Int8Scheme scheme) => backend switch
    {
        BenchBackend.OnnxFp32 => new OnnxExportOptions(),
        BenchBackend.OnnxInt8 => new OnnxExportOptions { Int8 = true, Int8Scheme = scheme },
        BenchBackend.OnnxFp32Plain => new OnnxExportOptions { Graph = OnnxGraphKind.Plain },
        BenchBackend.OnnxInt8Plain => new OnnxExportOptions { Int8 = true, Int8Scheme = scheme, Graph = OnnxGraphKind.Plain },
        _ => null,
    };
}

/// <summary>Options of <c>distillery bench</c>.</summary>
public sealed record BenchOptions
{
    /// <summary>Model folders; the first is the reference for the ratios (usually the teacher).</summary>
    public required IReadOnlyList<string> Models { get; init; }
    /// <summary>
    /// The task to score them on and its data (written inline); SQuAD with split articles evaluates on the articles not
    /// among the first N, as fine-tuning with the same split and seed did.
    /// </summary>
    [JsonInline]
    public required TaskSpec Task { get; init; }
    /// <summary>Seed of the SQuAD article split (must match the fine-tuning's).</summary>
    public long Seed { get; init; } = 42;
    /// <summary>Tokens per sequence in the latency runs.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Timed forwards at batch 1 (batch 32 runs half as many).</summary>
    public int Iterations { get; init; } = 20;
    /// <summary>
    /// Timing passes over every model and backend (default 1). With N > 1 every row is timed once per pass, the passes
    /// one after another, and each row reports the median over the passes of its per-pass medians (and of its p90s);
    /// the record keeps every pass's. Why: on a shared machine whose speed drifts over minutes (on the 2-core cloud VM
    /// of docs/results.md the same model's batch-1 median moved between 10.8 and 18.0 ms from one run to the next,
    /// minutes apart), one pass times each row in its own stretch of time, and a ratio between two rows carries the
    /// drift; interleaved passes spread every row over the same stretch. Passes after the first only time (no scoring,
    /// no op counts); ONNX rows are exported again in each.
    /// </summary>
    public int Rounds { get; init; } = 1;
    /// <summary>
    /// Whether to score each model on the task's dev set (default). False: size and timing only, every score n/a, and
    /// no forward over the dev set; for stand-ins that have a model's shapes but random weights (<c>distillery init
    /// --like</c>), whose latency is the model's (no step of the forward depends on the weights' values) but whose score
    /// would mean nothing.
    /// </summary>
    public bool Evaluate { get; init; } = true;
    /// <summary>
    /// How each model is run, scored and timed: one row per model × backend, models outer. ONNX backends export the model
    /// to a temporary folder first. Default: TorchSharp fp32 alone.
    /// </summary>
    public IReadOnlyList<BenchBackend> Backends { get; init; } = [BenchBackend.TorchFp32];
    /// <summary>The int8 weight grid of the onnx-int8 export (default 7-bit, exact on every x86-64 CPU).</summary>
    public Int8Scheme Int8Scheme { get; init; } = Int8Quantization.DefaultScheme;
    /// <summary>
    /// A foreign .onnx graph of the first model (e.g. the PyTorch export of the same weights): one more row, after the
    /// first model's, timed with the same ONNX Runtime session options; scored only if it has a classifier
    /// <c>logits</c> output (see <see cref="PeerOnnxGraph"/>). Null: no peer row.
    /// </summary>
    public string? Peer { get; init; }
    /// <summary>
    /// Seconds of timed calls per shape when measuring each backend's GEMM peak at start (<see cref="GemmPeaks"/>;
    /// 3 shapes per backend, at least 3 calls each). Default 0.5.
    /// </summary>
    public double PeakSecondsPerShape { get; init; } = 0.5;
    /// <summary>The GEMM shapes of the peak measurement; null: <see cref="GemmPeaks.Representative"/>.</summary>
    public IReadOnlyList<GemmShape>? PeakShapes { get; init; }
    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad field.</summary>
    public BenchOptions Validate()
    {
        if (Models.Count == 0) throw new ArgumentException("give at least one model folder", nameof(Models));
        if (Backends.Count == 0) throw new ArgumentException("give at least one backend", nameof(Backends));
        if (Backends.Distinct().Count() != Backends.Count) throw new ArgumentException("Backends lists one backend twice", nameof(Backends));
        if (SeqLength < 1) throw new ArgumentException($"SeqLength must be positive, got {SeqLength}", nameof(SeqLength));
        if (Iterations < 1) throw new ArgumentException($"Iterations must be positive, got {Iterations}", nameof(Iterations));
        if (Rounds < 1) throw new ArgumentException($"Rounds must be positive, got {Rounds}", nameof(Rounds));
        if (!Enum.IsDefined(Int8Scheme)) throw new ArgumentException($"Int8Scheme {(int)Int8Scheme} is not a scheme (known: {Int8Quantization.Names})", nameof(Int8Scheme));
        if (Backends.Contains(BenchBackend.OnnxPeer)) throw new ArgumentException("Backends: the peer row is added by Peer (--peer FILE.onnx), not listed", nameof(Backends));
        if (Peer != null && !Peer.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException($"--peer {Peer}: give an .onnx file", nameof(Peer));
        if (!(PeakSecondsPerShape > 0)) throw new ArgumentException($"PeakSecondsPerShape must be positive, got {PeakSecondsPerShape}", nameof(PeakSecondsPerShape));
        if (PeakShapes is { Count: 0 }) throw new ArgumentException("PeakShapes: give at least one shape, or null for the representative ones", nameof(PeakShapes));
        return this;
    }
}

/// <summary>One model run one way.</summary>
/// <param name="Model">The model folder.</param>
/// <param name="Arch">Its shape name (L4-H256...).</param>
/// <param name="Backend">How it ran.</param>
/// <param name="Parameters">Parameter count.</param>
/// <param name="BytesOnDisk">What the backend loads: config + safetensors + vocab (TorchSharp), or the .onnx file + vocab (ONNX Runtime).</param>
/// <param name="Scores">Dev metrics computed by this backend.</param>
/// <param name="PrimaryMetric">The task's headline metric (a key of <paramref name="Scores"/>).</param>
/// <param name="Batch1">Latency at batch 1.</param>
/// <param name="Batch32">Latency (throughput) at batch 32.</param>
/// <param name="FlopsPerSequence">
/// Model FLOPs of one sequence at the bench length (<see cref="ForwardCost.FlopsPerSequence"/>: QKV, scores, context,
/// output projection and FFN matmuls of every layer, plus the pooler and classifier; a peer graph without the
/// classifier counts the encoder only). NaN when unknown.
/// </param>
/// <param name="Peak">The GEMM peak of the backend that ran the row (libtorch or ONNX Runtime), measured at the start of the run.</param>
/// <param name="OptimizedOps">
/// ONNX rows: the op types of the graph ONNX Runtime runs after its optimizations, with their counts
/// (<see cref="OnnxGraphStats.OptimizedOpCounts"/>); null for TorchSharp.
/// </param>
/// <param name="Batch1Passes">With <see cref="BenchOptions.Rounds"/> > 1: each pass's batch-1 timing (<paramref name="Batch1"/> is their median); else null.</param>
/// <param name="Batch32Passes">The same at batch 32.</param>
public sealed record BenchResult(string Model, string Arch, BenchBackend Backend, long Parameters, long BytesOnDisk, IReadOnlyDictionary<string, double> Scores,
    string PrimaryMetric, LatencyResult Batch1, LatencyResult Batch32, double FlopsPerSequence = double.NaN, GemmPeak? Peak = null,
    IReadOnlyDictionary<string, int>? OptimizedOps = null, IReadOnlyList<LatencyResult>? Batch1Passes = null, IReadOnlyList<LatencyResult>? Batch32Passes = null)
{
    /// <summary>The headline score; NaN when the row could not be scored (a peer graph without a classifier).</summary>
    public double Score => Scores.TryGetValue(PrimaryMetric, out var score) ? score : double.NaN;

    /// <summary>Model GFLOP/s achieved at <paramref name="latency"/>: FLOPs per sequence × sequences per second.</summary>
    public double GFlops(LatencyResult latency) => FlopsPerSequence * latency.SequencesPerSecond / 1e9;

    /// <summary>Achieved GFLOP/s over the backend's GEMM peak (NaN without a peak).</summary>
    public double PeakFraction(LatencyResult latency) => Peak is { } peak ? GFlops(latency) / peak.PeakGFlops : double.NaN;
}

/// <summary>
/// Measures several models on one task in one run, each through one or more backends: size, dev score (computed by
/// that backend, so int8's accuracy change shows), CPU latency at batch 1 and throughput at batch 32.
/// </summary>
public static class ModelBench
{
    /// <summary>
    /// Runs the measurements; <paramref name="progress"/> hears about each model and backend, and one "warning: " line
    /// for a backend that is not what it should be on this CPU (emulated bf16, 8-bit int8 weights without VNNI).
    /// </summary>
    public static IReadOnlyList<BenchResult> Run(BenchOptions options, Action<string>? progress = null)
    {
        options.Validate();
        var cpu = CpuFeatures.Current;
        if (options.Backends.Contains(BenchBackend.TorchBf16) && !cpu.HasNativeBf16)
            progress?.Invoke("warning: torch-bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16): libtorch emulates it, so its rows are marked \"(emulated)\" and are slower than fp32");
        if (options.Backends.Any(b => BenchBackends.ExportOptions(b, options.Int8Scheme)?.Int8 == true) && Int8Quantization.PortabilityWarning(options.Int8Scheme, cpu) is string int8Warning)
            progress?.Invoke($"warning: {int8Warning}");
        if (options.Peer != null && !File.Exists(options.Peer)) throw new FileNotFoundException($"--peer {options.Peer}: file not found", options.Peer);
        var results = new List<BenchResult>();
        string? exportDir = null;
        // Both runtimes get the same intra-op thread count (ONNX Runtime would otherwise pick its own).
        int threads = torch.get_num_threads();
        // The limits the rows are compared with, measured first, in this process, with the same threads.
        GemmPeak? torchPeak = null, onnxPeak = null;
        if (options.Backends.Any(b => !BenchBackends.IsOnnx(b)))
        {
            progress?.Invoke("measuring libtorch's fp32 GEMM peak");
            torchPeak = GemmPeaks.Torch(options.PeakShapes, options.PeakSecondsPerShape);
        }
        if (options.Backends.Any(BenchBackends.IsOnnx) || options.Peer != null)
        {
            progress?.Invoke("measuring ONNX Runtime's fp32 GEMM peak");
            onnxPeak = OnnxGemmPeaks.OnnxRuntime(threads, options.PeakShapes, options.PeakSecondsPerShape);
        }
        // Per row (results' order), every pass's timings: passes after the first add to the rows the first made.
        var passes = new List<(List<LatencyResult> B1, List<LatencyResult> B32)>();
        try
        {
            for (int pass = 0; pass < options.Rounds; pass++)
            {
                bool first = pass == 0;
                int row = 0;
                string ofPasses = options.Rounds > 1 ? $", pass {pass + 1}/{options.Rounds}" : "";
                void Record(LatencyResult b1, LatencyResult b32, Func<BenchResult> make)
                {
                    if (first)
                    {
                        results.Add(make());
                        passes.Add(([b1], [b32]));
                    }
                    else
                    {
                        passes[row].B1.Add(b1);
                        passes[row].B32.Add(b32);
                    }
                    row++;
                }
                foreach (string dir in options.Models)
                {
                    using var trained = TaskPipeline.Load(dir, options.Task, options.Seed, needTrain: false);
                    var (model, data, tokenizer) = (trained.Model, trained.Data, trained.Tokenizer);
                    string primary = data.PrimaryMetric;
                    string arch = BertArch.NameOf(model.Config);
                    long parameters = ParameterCounts.Of(model).Total;
                    double flops = ForwardCost.FlopsPerSequence(model.Config, model.Task, options.SeqLength);
                    foreach (var backendKind in options.Backends)
                    {
                        string name = BenchBackends.Name(backendKind);
                        string? onnxPath = null;
                        long bytes;
                        IInferenceBackend backend;
                        IReadOnlyDictionary<string, int>? ops = null;
                        if (BenchBackends.ExportOptions(backendKind, options.Int8Scheme) is { } exportOptions)
                        {
                            exportDir ??= Directory.CreateTempSubdirectory("distillery-bench-").FullName;
                            onnxPath = Path.Combine(exportDir, $"{results.Count}-{name}.onnx");
                            progress?.Invoke($"exporting {dir} ({name})");
                            OnnxExporter.Export(model, onnxPath, exportOptions);
                            bytes = new FileInfo(onnxPath).Length + new FileInfo(Path.Combine(dir, BertCheckpoint.VocabFile)).Length;
                            if (first) ops = OnnxGraphStats.OptimizedOpCounts(onnxPath, threads);
                            backend = OnnxRuntimeBackend.Load(onnxPath, threads);
                        }
                        else
                        {
                            bytes = BertCheckpoint.BytesOnDisk(dir);
                            backend = new TorchSharpBackend(model, backendKind == BenchBackend.TorchBf16 ? ComputePrecision.BFloat16 : ComputePrecision.Float32, ownsModel: false);
                        }
                        using (backend)
                        {
                            IReadOnlyDictionary<string, double> scores = new Dictionary<string, double>();
                            if (options.Evaluate && first)
                            {
                                progress?.Invoke($"scoring {dir} ({name})");
                                scores = data.Score(Predict(backend, data.Eval, tokenizer.PadId));
                            }
                            progress?.Invoke($"timing {dir} ({name}){ofPasses}");
                            var (b1, b32) = TimeBoth(backend, options);
                            Record(b1, b32, () => new BenchResult(dir, arch, backendKind, parameters, bytes, scores, primary, b1, b32, flops,
                                BenchBackends.IsOnnx(backendKind) ? onnxPeak : torchPeak, ops));
                        }
                        if (onnxPath != null) File.Delete(onnxPath);
                    }
                    model.SetPrecision(ComputePrecision.Float32);

                    if (options.Peer is string peerPath && dir == options.Models[0])
                    {
                        progress?.Invoke($"{(first ? "scoring and timing" : "timing")} the peer graph {peerPath}{ofPasses}");
                        using var peer = PeerOnnxGraph.Load(peerPath, threads, model.Config);
                        // Scored through the same scorer when the graph has the model's classifier; otherwise n/a (no scores).
                        IReadOnlyDictionary<string, double> scores = options.Evaluate && first && peer.HasClassifier && model.Task == BertTask.SequenceClassification
                            ? data.Score(Predict(peer, data.Eval, tokenizer.PadId))
                            : new Dictionary<string, double>();
                        var (b1, b32) = TimeBoth(peer, options);
                        long bytes = new FileInfo(peerPath).Length;
                        double peerFlops = ForwardCost.FlopsPerSequence(model.Config, model.Task, options.SeqLength, withHead: peer.HasClassifier);
                        Record(b1, b32, () => new BenchResult(peerPath, arch, BenchBackend.OnnxPeer, parameters, bytes, scores, primary, b1, b32, peerFlops, onnxPeak,
                            OnnxGraphStats.OptimizedOpCounts(peerPath, threads)));
                    }
                }
            }
        }
        finally
        {
            if (exportDir != null) try { Directory.Delete(exportDir, recursive: true); } catch (IOException) { }
        }
        if (options.Rounds == 1) return results;
        return results.Select((r, i) => r with
        {
            Batch1 = MedianOfPasses(passes[i].B1), Batch32 = MedianOfPasses(passes[i].B32),
            Batch1Passes = passes[i].B1, Batch32Passes = passes[i].B32,
        }).ToList();
    }

    /// <summary>One timing from several passes': the median of their medians and of their p90s; iterations summed.</summary>
    internal static LatencyResult MedianOfPasses(IReadOnlyList<LatencyResult> passes)
    {
        static double Median(IEnumerable<double> values) => Latency.Percentile(values.Order().ToList(), 0.5);
        return new LatencyResult(passes[0].Batch, passes[0].SeqLength, Median(passes.Select(p => p.MedianMs)), Median(passes.Select(p => p.P90Ms)),
            passes.Sum(p => p.Iterations));
    }

    /// <summary>Batch-1 latency (5 warm-up calls) and batch-32 throughput (2 warm-up calls, half the iterations, at least 3).</summary>
    private static (LatencyResult Batch1, LatencyResult Batch32) TimeBoth(IInferenceBackend backend, BenchOptions options) =>
        (Latency.Measure(backend, 1, options.SeqLength, warmup: 5, iterations: options.Iterations, seed: options.Seed),
         Latency.Measure(backend, 32, options.SeqLength, warmup: 2, iterations: Math.Max(3, options.Iterations / 2), seed: options.Seed));

    /// <summary>
    /// Head outputs of every example through <paramref name="backend"/>, in batches of 64, in the layout the task's
    /// scorer reads (the same as <see cref="TaskObjective.Predict"/>): classification [C] per example; QA [T, 2]
    /// (start, end interleaved) per window, T the batch's padded length.
    /// </summary>
    internal static List<float[]> Predict(IInferenceBackend backend, IReadOnlyList<EncodedExample> examples, int padId, int batchSize = 64)
    {
        var result = new List<float[]>(examples.Count);
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            var rows = examples.Skip(start).Take(batchSize).ToList();
            var batch = TaskBatch.Collate(rows, padId);
            var logits = backend.Run(new TokenizedBatch(batch.Batch, batch.Length, batch.InputIds, batch.TokenTypeIds, batch.AttentionMask));
            for (int i = 0; i < rows.Count; i++)
            {
                if (backend.Task != BertTask.QuestionAnswering)
                {
                    result.Add(BatchLogits.Row(logits.Logits!, logits.Batch, i));
                    continue;
                }
                var interleaved = new float[2 * batch.Length];   // [T, 2]
                for (int t = 0; t < batch.Length; t++)
                {
                    interleaved[2 * t] = logits.StartLogits![i * batch.Length + t];
                    interleaved[2 * t + 1] = logits.EndLogits![i * batch.Length + t];
                }
                result.Add(interleaved);
            }
        }
        return result;
    }

    /// <summary>
    /// The results as a markdown table, ratios against the first row; each row's achieved model GFLOP/s and its share of
    /// its backend's GEMM peak (measured at the start of the run, listed above the table).
    /// </summary>
    public static string Markdown(IReadOnlyList<BenchResult> results, BenchOptions options)
    {
        var c = CultureInfo.InvariantCulture;
        var first = results[0];
        var md = new StringBuilder();
        string int8 = options.Backends.Any(b => BenchBackends.ExportOptions(b, options.Int8Scheme)?.Int8 == true) ? $"; onnx-int8: {Int8Quantization.Name(options.Int8Scheme)} weights" : "";
        string rounds = options.Rounds > 1 ? $"; every row timed in {options.Rounds} passes, one after another, each timing the median of its passes' (their spread is under the table)" : "";
        md.AppendLine(c, $"Task {options.Task}, latency at length {options.SeqLength} (random ids, no padding), {torch.get_num_threads()} intra-op threads per backend; {(options.Evaluate ? "dev score computed by each backend" : "not scored (timing and size only)")}{int8}{rounds}; {Machine.Describe(onnxRuntimeThreads: torch.get_num_threads())}, ONNX Runtime.");
        md.AppendLine();
        var peaks = results.Select(r => r.Peak).OfType<GemmPeak>().Distinct().ToList();
        if (peaks.Count > 0)
        {
            md.AppendLine($"fp32 GEMM peak, best of each shape, measured at start: {string.Join("; ", peaks.Select(p => p.ToString()))}. " +
                "GFLOP/s = model FLOPs per sequence (QKV, scores, context, output projection, FFN, pooler and classifier matmuls) × sequences/s; " +
                "% of peak: of the backend that ran the row (int8 rows too, so they can pass 100%).");
            md.AppendLine();
        }
        md.AppendLine($"| model | arch | backend | params | disk MB | {first.PrimaryMetric} | % of first | batch 1 median ms | batch 1 p90 ms | speed-up b1 | batch 32 seq/s | speed-up b32 | GFLOP/seq | GFLOP/s b1 | % of peak b1 | GFLOP/s b32 | % of peak b32 |");
        md.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            double score = r.Score, reference = first.Score;
            string share = double.IsFinite(score) && double.IsFinite(reference) ? (100 * score / reference).ToString("0.0", c) + "%" : "n/a";
            md.AppendLine(c, $"| {r.Model} | {r.Arch} | {BenchBackends.Label(r.Backend, CpuFeatures.Current)} | {r.Parameters / 1e6:0.0}M | {r.BytesOnDisk / 1048576.0:0.0} | {Display(score)} | {share} | " +
                $"{r.Batch1.MedianMs:0.00} | {r.Batch1.P90Ms:0.00} | {first.Batch1.MedianMs / r.Batch1.MedianMs:0.00}x | {r.Batch32.SequencesPerSecond:0.0} | {r.Batch32.SequencesPerSecond / first.Batch32.SequencesPerSecond:0.00}x | " +
                $"{r.FlopsPerSequence / 1e9:0.000} | {r.GFlops(r.Batch1):0.0} | {Percent(r.PeakFraction(r.Batch1))} | {r.GFlops(r.Batch32):0.0} | {Percent(r.PeakFraction(r.Batch32))} |");
        }
        if (results.Any(r => r.Batch1Passes is { Count: > 1 }))
        {
            md.AppendLine();
            md.AppendLine("Spread over the passes (lowest-highest of the passes' medians): " + string.Join("; ", results.Where(r => r.Batch1Passes != null && r.Batch32Passes != null).Select(r =>
                string.Create(c, $"{r.Model} ({BenchBackends.Name(r.Backend)}) batch 1 {r.Batch1Passes!.Min(p => p.MedianMs):0.00}-{r.Batch1Passes!.Max(p => p.MedianMs):0.00} ms, batch 32 {r.Batch32Passes!.Min(p => p.SequencesPerSecond):0.0}-{r.Batch32Passes!.Max(p => p.SequencesPerSecond):0.0} seq/s"))) + ".");
        }
        return md.ToString();
    }

    private static string Percent(double fraction) => double.IsFinite(fraction) ? (100 * fraction).ToString("0.0", CultureInfo.InvariantCulture) + "%" : "n/a";

    /// <summary>
    /// The run as a JSON record (what <c>distillery bench --json</c> writes): options, commit, machine, both GEMM peaks
    /// with every shape, and per row the scores, latencies, model FLOPs, achieved GFLOP/s, share of the peak and, for
    /// ONNX rows, the op types ONNX Runtime runs. Unscored values are null.
    /// </summary>
    public static JsonObject Record(IReadOnlyList<BenchResult> results, BenchOptions options)
    {
        static JsonNode? Number(double value) => double.IsFinite(value) ? JsonValue.Create(value) : null;
        JsonObject Latency(BenchResult r, LatencyResult l) => new()
        {
            ["batch"] = l.Batch, ["seq_length"] = l.SeqLength, ["median_ms"] = l.MedianMs, ["p90_ms"] = l.P90Ms, ["iterations"] = l.Iterations,
            ["sequences_per_second"] = l.SequencesPerSecond, ["gflops"] = Number(r.GFlops(l)), ["peak_fraction"] = Number(r.PeakFraction(l)),
        };
        JsonArray? Passes(BenchResult r, IReadOnlyList<LatencyResult>? passes) =>
            passes is null ? null : new JsonArray(passes.Select(l => (JsonNode?)Latency(r, l)).ToArray());
        var peaks = results.Select(r => r.Peak).OfType<GemmPeak>().Distinct().Select(p => (JsonNode?)new JsonObject
        {
            ["backend"] = p.Backend, ["threads"] = p.Threads, ["peak_gflops"] = p.PeakGFlops,
            ["shapes"] = new JsonArray(p.Shapes.Select(s => (JsonNode?)new JsonObject
            {
                ["m"] = s.Shape.M, ["k"] = s.Shape.K, ["n"] = s.Shape.N, ["gflops"] = s.GFlops, ["calls"] = s.Calls,
            }).ToArray()),
        }).ToArray();
        var rows = results.Select(r => (JsonNode?)new JsonObject
        {
            ["model"] = r.Model, ["arch"] = r.Arch, ["backend"] = BenchBackends.Name(r.Backend), ["parameters"] = r.Parameters, ["bytes_on_disk"] = r.BytesOnDisk,
            ["primary_metric"] = r.PrimaryMetric, ["score"] = Number(r.Score),
            ["scores"] = new JsonObject(r.Scores.Select(kv => KeyValuePair.Create(kv.Key, Number(kv.Value)))),
            ["flops_per_sequence"] = Number(r.FlopsPerSequence), ["peak_backend"] = r.Peak?.Backend,
            ["batch1"] = Latency(r, r.Batch1), ["batch32"] = Latency(r, r.Batch32),
            ["batch1_passes"] = Passes(r, r.Batch1Passes), ["batch32_passes"] = Passes(r, r.Batch32Passes),
            ["optimized_ops"] = r.OptimizedOps is null ? null : new JsonObject(r.OptimizedOps.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        }).ToArray();
        return new JsonObject
        {
            ["kind"] = "distillery-bench",
            ["task"] = options.Task.ToString(), ["models"] = new JsonArray(options.Models.Select(m => (JsonNode?)m).ToArray()), ["peer"] = options.Peer,
            ["seq_length"] = options.SeqLength, ["iterations"] = options.Iterations, ["rounds"] = options.Rounds, ["evaluated"] = options.Evaluate, ["int8_weights"] = Int8Quantization.Name(options.Int8Scheme),
            ["threads"] = torch.get_num_threads(), ["commit"] = Machine.GitCommit(), ["version"] = Training.RunFiles.Version, ["machine"] = Machine.Describe(onnxRuntimeThreads: torch.get_num_threads()),
            ["date_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["gemm_peaks"] = new JsonArray(peaks), ["rows"] = new JsonArray(rows),
        };
    }

    /// <summary>Scores in [0, 1] as percentages; others (EM/F1 already ×100) as they are.</summary>
    public static string Display(double score) => double.IsNaN(score) ? "n/a" : Math.Abs(score) <= 1 ? (100 * score).ToString("0.0", CultureInfo.InvariantCulture) : score.ToString("0.0", CultureInfo.InvariantCulture);
}
