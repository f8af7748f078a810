using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Export;
using Distillery.Models;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;

namespace Distillery.Inference;

/// <summary>
/// A BERT exported by <c>distillery export onnx</c>, run by an ONNX Runtime <see cref="InferenceSession"/> on the CPU.
/// <see cref="InferenceSession.Run(RunOptions, IReadOnlyDictionary{string, OrtValue}, IReadOnlyCollection{string})"/> is
/// thread-safe, so calls are not serialised. The graph takes <c>input_ids</c>, <c>attention_mask</c> and
/// <c>token_type_ids</c> (int64 [B, T]); the head and the config come from the file's metadata
/// (<c>distillery.task</c>, <c>distillery.config</c>), or from the outputs and a <c>config.json</c> beside the file.
/// </summary>
internal sealed class OnnxRuntimeBackend : IInferenceBackend
{
    /// <summary>The graph inputs of a Distillery export.</summary>
    public static readonly string[] InputNames = [OnnxExporter.InputIds, OnnxExporter.AttentionMask, OnnxExporter.TokenTypeIds];

    private readonly InferenceSession session;
    private readonly string[] inputs;
    private readonly string[] outputs;

    private OnnxRuntimeBackend(InferenceSession session, BertTask task, BertConfig config, string[] inputs, string[] outputs, string description)
    {
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

    /// <summary>
    /// Opens <paramref name="path"/>. A file ONNX Runtime cannot parse is an <see cref="InvalidDataException"/>
    /// "<c>FILE: not an ONNX model (...)</c>"; an ONNX model that is not a Distillery BERT export says what it lacks.
    /// </summary>
    public static OnnxRuntimeBackend Load(string path, int? intraOpThreads)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"{path}: is a folder; the ONNX Runtime backend needs the .onnx file");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: ONNX file not found", path);
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads is int threads) sessionOptions.IntraOpNumThreads = threads;
        InferenceSession session;
        try { session = new InferenceSession(path, sessionOptions); }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"{path}: not an ONNX model ({OneLine(e.Message)})", e); }
        try
        {
            foreach (string name in new[] { "input_ids", "attention_mask" })
                if (!session.InputMetadata.ContainsKey(name))
                    throw new InvalidDataException($"{path}: not a BERT export (no graph input \"{name}\"; inputs: {string.Join(", ", session.InputMetadata.Keys)})");
            string[] inputs = InputNames.Where(session.InputMetadata.ContainsKey).ToArray();
            var metadata = session.ModelMetadata.CustomMetadataMap;
            var task = TaskOf(path, metadata, session.OutputMetadata);
            string[] outputs = task == BertTask.QuestionAnswering ? ["start_logits", "end_logits"] : ["logits"];
            foreach (string name in outputs)
                if (!session.OutputMetadata.ContainsKey(name))
                    throw new InvalidDataException($"{path}: a {BertTasks.ArchitectureName(task)} export needs the output \"{name}\" (outputs: {string.Join(", ", session.OutputMetadata.Keys)})");
            var config = ConfigOf(path, metadata);
            string weights = metadata.TryGetValue(OnnxExporter.QuantizationKey, out var q) && q == "int8" ? "int8" : "fp32";
            return new OnnxRuntimeBackend(session, task, config, inputs, outputs, $"ONNX Runtime {weights}");
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>The head: <c>distillery.task</c> (a <see cref="BertTask"/> or transformers class name), else from the output names and ranks.</summary>
    private static BertTask TaskOf(string path, IReadOnlyDictionary<string, string> metadata, IReadOnlyDictionary<string, NodeMetadata> outputs)
    {
        if (metadata.TryGetValue(OnnxExporter.TaskKey, out var named))
        {
            if (Enum.TryParse<BertTask>(named, ignoreCase: true, out var task) && Enum.IsDefined(task)) return task;
            if (BertTasks.FromArchitecture(named) is BertTask fromClass) return fromClass;
            throw new InvalidDataException($"{path}: metadata distillery.task \"{named}\" is not a known head");
        }
        if (outputs.ContainsKey("start_logits")) return BertTask.QuestionAnswering;
        if (outputs.TryGetValue("logits", out var logits)) return logits.Dimensions.Length == 3 ? BertTask.MaskedLM : BertTask.SequenceClassification;
        throw new InvalidDataException($"{path}: not a BERT export (no \"logits\" or \"start_logits\" output; outputs: {string.Join(", ", outputs.Keys)})");
    }

    /// <summary>The config: <c>distillery.config</c> metadata (config.json text), else <c>config.json</c> beside the file.</summary>
    private static BertConfig ConfigOf(string path, IReadOnlyDictionary<string, string> metadata)
    {
        if (metadata.TryGetValue(OnnxExporter.ConfigKey, out var text))
        {
            string where = $"{path} (metadata distillery.config)";
            JsonNode? root;
            try { root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = 32 }); }
            catch (JsonException e) { throw new InvalidDataException($"{where}: not valid JSON ({OneLine(e.Message)})"); }
            if (root is not JsonObject obj) throw new InvalidDataException($"{where}: expected a JSON object");
            return BertConfig.FromJson(obj, where);
        }
        string beside = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, BertCheckpoint.ConfigFile);
        if (!File.Exists(beside))
            throw new FileNotFoundException($"{path}: has no distillery.config metadata and {beside} is missing (export with distillery export onnx, which writes both)", beside);
        return BertConfig.Load(beside);
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
                long[] data = name switch { "input_ids" => batch.InputIds, "attention_mask" => batch.AttentionMask, _ => batch.TokenTypeIds };
                values[name] = OrtValue.CreateTensorValueFromMemory(data, shape);
            }
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, values, outputs);
            if (Task == BertTask.QuestionAnswering)
                return new BatchLogits(batch.Count, batch.Length, null,
                    results[0].GetTensorDataAsSpan<float>().ToArray(),    // [B, T]
                    results[1].GetTensorDataAsSpan<float>().ToArray());   // [B, T]
            return new BatchLogits(batch.Count, batch.Length, results[0].GetTensorDataAsSpan<float>().ToArray());   // [B, C] or [B, T, V]
        }
        finally
        {
            foreach (var value in values.Values) value.Dispose();
        }
    }

    public void Dispose() => session.Dispose();
}
