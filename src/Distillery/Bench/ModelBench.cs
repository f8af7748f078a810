using System.Globalization;
using System.Text;
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
}

/// <summary>Names of <see cref="BenchBackend"/> on the command line and in tables.</summary>
public static class BenchBackends
{
    /// <summary>Every backend, in the order they are listed.</summary>
    public static readonly IReadOnlyList<BenchBackend> All = Enum.GetValues<BenchBackend>();

    /// <summary>torch-fp32, torch-bf16, onnx-fp32, onnx-int8.</summary>
    public static string Name(BenchBackend backend) => backend switch
    {
        BenchBackend.TorchFp32 => "torch-fp32",
        BenchBackend.TorchBf16 => "torch-bf16",
        BenchBackend.OnnxFp32 => "onnx-fp32",
        _ => "onnx-int8",
    };

    /// <summary>
    /// The backends worth comparing on <paramref name="cpu"/>: every one, except torch-bf16 where the CPU has no native
    /// bf16 (emulated bf16 is slower than fp32 and only shows that it is).
    /// </summary>
    public static IReadOnlyList<BenchBackend> RecommendedFor(CpuFeatures cpu) =>
        All.Where(b => b != BenchBackend.TorchBf16 || cpu.HasNativeBf16).ToList();

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

    /// <summary>Whether the backend runs an ONNX export.</summary>
    public static bool IsOnnx(BenchBackend backend) => backend is BenchBackend.OnnxFp32 or BenchBackend.OnnxInt8;
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
    /// How each model is run, scored and timed: one row per model × backend, models outer. ONNX backends export the model
    /// to a temporary folder first. Default: TorchSharp fp32 alone.
    /// </summary>
    public IReadOnlyList<BenchBackend> Backends { get; init; } = [BenchBackend.TorchFp32];
    /// <summary>The int8 weight grid of the onnx-int8 export (default 7-bit, exact on every x86-64 CPU).</summary>
    public Int8Scheme Int8Scheme { get; init; } = Int8Quantization.DefaultScheme;
    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad field.</summary>
    public BenchOptions Validate()
    {
        if (Models.Count == 0) throw new ArgumentException("give at least one model folder", nameof(Models));
        if (Backends.Count == 0) throw new ArgumentException("give at least one backend", nameof(Backends));
        if (Backends.Distinct().Count() != Backends.Count) throw new ArgumentException("Backends lists one backend twice", nameof(Backends));
        if (SeqLength < 1) throw new ArgumentException($"SeqLength must be positive, got {SeqLength}", nameof(SeqLength));
        if (Iterations < 1) throw new ArgumentException($"Iterations must be positive, got {Iterations}", nameof(Iterations));
        if (!Enum.IsDefined(Int8Scheme)) throw new ArgumentException($"Int8Scheme {(int)Int8Scheme} is not a scheme (known: {Int8Quantization.Names})", nameof(Int8Scheme));
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
public sealed record BenchResult(string Model, string Arch, BenchBackend Backend, long Parameters, long BytesOnDisk, IReadOnlyDictionary<string, double> Scores,
    string PrimaryMetric, LatencyResult Batch1, LatencyResult Batch32)
{
    /// <summary>The headline score.</summary>
    public double Score => Scores[PrimaryMetric];
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
        if (options.Backends.Contains(BenchBackend.OnnxInt8) && Int8Quantization.PortabilityWarning(options.Int8Scheme, cpu) is string int8Warning)
            progress?.Invoke($"warning: {int8Warning}");
        var results = new List<BenchResult>();
        string? exportDir = null;
        // Both runtimes get the same intra-op thread count (ONNX Runtime would otherwise pick its own).
        int threads = torch.get_num_threads();
        try
        {
            foreach (string dir in options.Models)
            {
                using var trained = TaskPipeline.Load(dir, options.Task, options.Seed, needTrain: false);
                var (model, data, tokenizer) = (trained.Model, trained.Data, trained.Tokenizer);
                string primary = data.PrimaryMetric;
                string arch = BertArch.NameOf(model.Config);
                long parameters = ParameterCounts.Of(model).Total;
                foreach (var backendKind in options.Backends)
                {
                    string name = BenchBackends.Name(backendKind);
                    string? onnxPath = null;
                    long bytes;
                    IInferenceBackend backend;
                    if (BenchBackends.IsOnnx(backendKind))
                    {
                        exportDir ??= Directory.CreateTempSubdirectory("distillery-bench-").FullName;
                        onnxPath = Path.Combine(exportDir, $"{results.Count}-{name}.onnx");
                        progress?.Invoke($"exporting {dir} ({name})");
                        OnnxExporter.Export(model, onnxPath, new OnnxExportOptions { Int8 = backendKind == BenchBackend.OnnxInt8, Int8Scheme = options.Int8Scheme });
                        bytes = new FileInfo(onnxPath).Length + new FileInfo(Path.Combine(dir, BertCheckpoint.VocabFile)).Length;
                        backend = OnnxRuntimeBackend.Load(onnxPath, threads);
                    }
                    else
                    {
                        bytes = BertCheckpoint.BytesOnDisk(dir);
                        backend = new TorchSharpBackend(model, backendKind == BenchBackend.TorchBf16 ? ComputePrecision.BFloat16 : ComputePrecision.Float32, ownsModel: false);
                    }
                    using (backend)
                    {
                        progress?.Invoke($"scoring {dir} ({name})");
                        var scores = data.Score(Predict(backend, data.Eval, tokenizer.PadId));
                        progress?.Invoke($"timing {dir} ({name})");
                        var b1 = Latency.Measure(backend, 1, options.SeqLength, warmup: 5, iterations: options.Iterations, seed: options.Seed);
                        var b32 = Latency.Measure(backend, 32, options.SeqLength, warmup: 2, iterations: Math.Max(3, options.Iterations / 2), seed: options.Seed);
                        results.Add(new BenchResult(dir, arch, backendKind, parameters, bytes, scores, primary, b1, b32));
                    }
                    if (onnxPath != null) File.Delete(onnxPath);
                }
                model.SetPrecision(ComputePrecision.Float32);
            }
        }
        finally
        {
            if (exportDir != null) try { Directory.Delete(exportDir, recursive: true); } catch (IOException) { }
        }
        return results;
    }

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

    /// <summary>The results as a markdown table, ratios against the first row.</summary>
    public static string Markdown(IReadOnlyList<BenchResult> results, BenchOptions options)
    {
        var c = CultureInfo.InvariantCulture;
        var first = results[0];
        var md = new StringBuilder();
        string int8 = options.Backends.Contains(BenchBackend.OnnxInt8) ? $"; onnx-int8: {Int8Quantization.Name(options.Int8Scheme)} weights" : "";
        md.AppendLine(c, $"Task {options.Task}, latency at length {options.SeqLength} (random ids, no padding), {torch.get_num_threads()} intra-op threads per backend; dev score computed by each backend{int8}; {Machine.Describe(onnxRuntimeThreads: torch.get_num_threads())}, ONNX Runtime.");
        md.AppendLine();
        md.AppendLine($"| model | arch | backend | params | disk MB | {first.PrimaryMetric} | % of first | batch 1 median ms | batch 1 p90 ms | speed-up b1 | batch 32 seq/s | speed-up b32 |");
        md.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            double score = r.Score, reference = first.Score;
            md.AppendLine(c, $"| {r.Model} | {r.Arch} | {BenchBackends.Label(r.Backend, CpuFeatures.Current)} | {r.Parameters / 1e6:0.0}M | {r.BytesOnDisk / 1048576.0:0.0} | {Display(score)} | {100 * score / reference:0.0}% | " +
                $"{r.Batch1.MedianMs:0.00} | {r.Batch1.P90Ms:0.00} | {first.Batch1.MedianMs / r.Batch1.MedianMs:0.00}x | {r.Batch32.SequencesPerSecond:0.0} | {r.Batch32.SequencesPerSecond / first.Batch32.SequencesPerSecond:0.00}x |");
        }
        return md.ToString();
    }

    /// <summary>Scores in [0, 1] as percentages; others (EM/F1 already ×100) as they are.</summary>
    public static string Display(double score) => Math.Abs(score) <= 1 ? (100 * score).ToString("0.0", CultureInfo.InvariantCulture) : score.ToString("0.0", CultureInfo.InvariantCulture);
}
