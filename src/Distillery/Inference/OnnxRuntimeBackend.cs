using Distillery.Export;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;

namespace Distillery.Inference;

/// <summary>
/// A BERT exported by <c>distillery export onnx</c>, run by an ONNX Runtime <see cref="InferenceSession"/> on the CPU.
/// <see cref="InferenceSession.Run(RunOptions, IReadOnlyDictionary{string, OrtValue}, IReadOnlyCollection{string})"/> is
/// thread-safe, so calls are not serialised. The graph takes <c>input_ids</c>, <c>attention_mask</c> and
/// <c>token_type_ids</c> (int64 [B, T]); the head and the config come from the file's metadata
/// (<c>distillery.task</c>, <c>distillery.config</c>).
/// </summary>
internal sealed class OnnxRuntimeBackend : IInferenceBackend
{
    /// <summary>The graph inputs of a Distillery export.</summary>
    public static readonly string[] InputNames = [OnnxExporter.InputIds, OnnxExporter.AttentionMask, OnnxExporter.TokenTypeIds];

    private readonly InferenceSession session;
    private readonly string[] inputs;
    private readonly string[] outputs;

    private OnnxRuntimeBackend(InferenceSession session, BertTask task, BertConfig config, Int8Scheme? int8Scheme, string[] inputs, string[] outputs, string description)
    {
        Int8Scheme = int8Scheme;
        Description = description;
        this.session = session;
        this.inputs = inputs;
        this.outputs = outputs;
        Task = task;
        Config = config;
    }

    public BertTask Task { get; }
    public BertConfig Config { get; }
    public string Description { get; }
    /// <summary>The int8 weight scheme the graph was exported with (from its metadata); null for an fp32 graph.</summary>
    public Int8Scheme? Int8Scheme { get; }

    /// <summary>
    /// Opens <paramref name="path"/>. Its head, config and weight format come from the exporter's metadata
    /// (<see cref="OnnxModelInfo.Read"/>). A file that is not an ONNX model is an <see cref="InvalidDataException"/>
    /// "<c>FILE: not an ONNX model (...)</c>"; an ONNX model Distillery did not export, or whose graph lacks the inputs
    /// and outputs of its head, says what it lacks. An int8 graph that ONNX Runtime does not compute exactly on this CPU
    /// (8-bit weights, including every int8 graph exported before the scheme was recorded, on a CPU without VNNI or
    /// AMX-INT8) loads, and <paramref name="warning"/> hears one line about it.
    /// </summary>
    public static OnnxRuntimeBackend Load(string path, int? intraOpThreads, Action<string>? warning = null)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"{path}: is a folder; the ONNX Runtime backend needs the .onnx file");
        var info = OnnxModelInfo.Read(path);
        if (info.Int8Scheme is { } scheme && Int8Quantization.PortabilityWarning(scheme, Runtime.CpuFeatures.Current) is string portability)
            warning?.Invoke($"{path}: {portability}");
        using var sessionOptions = SessionOptionsFor(intraOpThreads);
        InferenceSession session;
        try { session = new InferenceSession(path, sessionOptions); }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"{path}: not an ONNX model ({OneLine(e.Message)})", e); }
        try
        {
            foreach (string name in new[] { OnnxExporter.InputIds, OnnxExporter.AttentionMask })
                if (!session.InputMetadata.ContainsKey(name))
                    throw new InvalidDataException($"{path}: not a BERT export (no graph input \"{name}\"; inputs: {string.Join(", ", session.InputMetadata.Keys)})");
            string[] inputs = InputNames.Where(session.InputMetadata.ContainsKey).ToArray();
            string[] outputs = [.. OnnxExporter.OutputsOf(info.Task)];
            foreach (string name in outputs)
                if (!session.OutputMetadata.ContainsKey(name))
                    throw new InvalidDataException($"{path}: a {BertTasks.ArchitectureName(info.Task)} export needs the output \"{name}\" (outputs: {string.Join(", ", session.OutputMetadata.Keys)})");
            return new OnnxRuntimeBackend(session, info.Task, info.Config, info.Int8Scheme, inputs, outputs, $"ONNX Runtime {info.Format}");
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The session options every Distillery ONNX Runtime session uses (inference, bench rows, the bench's GEMM peak and
    /// foreign "peer" graphs, so they are timed alike): all graph optimizations, and <paramref name="intraOpThreads"/>
    /// intra-op threads when given (ONNX Runtime's own choice otherwise). The caller disposes them.
    /// </summary>
    internal static SessionOptions SessionOptionsFor(int? intraOpThreads)
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads is int threads) options.IntraOpNumThreads = threads;
        return options;
    }

    private static string OneLine(string message) => message.Split('\n')[0].Trim();

    public BatchLogits Run(TokenizedBatch batch)
    {
        long[] shape = [batch.Count, batch.Length];
        var values = new Dictionary<string, OrtValue>(inputs.Length);
        try
        {
            foreach (string name in inputs)
            {
                long[] data = name switch { OnnxExporter.InputIds => batch.InputIds, OnnxExporter.AttentionMask => batch.AttentionMask, _ => batch.TokenTypeIds };
                values[name] = OrtValue.CreateTensorValueFromMemory(data, shape);
            }
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, values, outputs);
            if (Task == BertTask.QuestionAnswering)
                return new BatchLogits(batch.Count, batch.Length, null,
                    results[0].GetTensorDataAsSpan<float>().ToArray(),    // [B, T]
                    results[1].GetTensorDataAsSpan<float>().ToArray());   // [B, T]
            return new BatchLogits(batch.Count, batch.Length, results[0].GetTensorDataAsSpan<float>().ToArray());   // [B, C], [B, T, V] or [B, H]
        }
        finally
        {
            foreach (var value in values.Values) value.Dispose();
        }
    }

    public void Dispose() => session.Dispose();
}
