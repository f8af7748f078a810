// A foreign ONNX graph of the same model (e.g. the PyTorch export of the same weights), run by `distillery bench
// --peer FILE.onnx` so the comparison with the common alternative is printed in the same run, timed with the same
// ONNX Runtime session options and threads as Distillery's own ONNX rows. It carries no Distillery metadata: its inputs
// are recognised by name (input_ids, attention_mask, token_type_ids; int64 or int32, as the graph declares them) and
// every output it has is computed, as an application of that graph would. It is scored only when it has a "logits"
// output of the model's label count; a bare encoder (a sentence-embedding export) is timed and its score is n/a.
using Distillery.Export;
using Distillery.Inference;
using Distillery.Models;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Distillery.Bench;

/// <summary>An ONNX graph Distillery did not export, behind the inference-backend interface the bench times.</summary>
internal sealed class PeerOnnxGraph : IInferenceBackend
{
    private readonly InferenceSession session;
    private readonly (string Name, bool Int32)[] inputs;
    private readonly string[] outputs;
    private readonly int logitsIndex;

    private PeerOnnxGraph(InferenceSession session, (string, bool)[] inputs, string[] outputs, int logitsIndex, BertConfig config)
    {
        this.session = session;
        this.inputs = inputs;
        this.outputs = outputs;
        this.logitsIndex = logitsIndex;
        Config = config;
    }

    /// <summary>The model it is compared with (its vocabulary and positions size the random timing input).</summary>
    public BertConfig Config { get; }
    /// <summary>Sequence classification: the only head the bench can score a foreign graph with.</summary>
    public BertTask Task => BertTask.SequenceClassification;
    public string Description => "ONNX Runtime (peer graph)";
    /// <summary>Whether the graph has a <c>logits</c> output [B, labels] to score.</summary>
    public bool HasClassifier => logitsIndex >= 0;

    /// <summary>
    /// Opens <paramref name="path"/> with <see cref="OnnxRuntimeBackend.SessionOptionsFor"/>(<paramref name="threads"/>).
    /// A graph input other than input_ids, attention_mask, token_type_ids, or of another type than int64/int32, is an
    /// <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public static PeerOnnxGraph Load(string path, int threads, BertConfig config)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--peer {path}: file not found", path);
        using var options = OnnxRuntimeBackend.SessionOptionsFor(threads);
        InferenceSession session;
        try { session = new InferenceSession(path, options); }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"--peer {path}: not an ONNX model ONNX Runtime can load ({e.Message.Split('\n')[0].Trim()})", e); }
        try
        {
            var inputs = new List<(string, bool)>();
            foreach (var (name, meta) in session.InputMetadata)
            {
                if (name is not (OnnxExporter.InputIds or OnnxExporter.AttentionMask or OnnxExporter.TokenTypeIds))
                    throw new InvalidDataException($"--peer {path}: graph input \"{name}\" is not one of {OnnxExporter.InputIds}, {OnnxExporter.AttentionMask}, {OnnxExporter.TokenTypeIds}");
                if (meta.ElementDataType is not (TensorElementType.Int64 or TensorElementType.Int32))
                    throw new InvalidDataException($"--peer {path}: graph input \"{name}\" is {meta.ElementDataType}, not int64 or int32");
                inputs.Add((name, meta.ElementDataType == TensorElementType.Int32));
            }
            if (!inputs.Any(i => i.Item1 == OnnxExporter.InputIds)) throw new InvalidDataException($"--peer {path}: no graph input \"{OnnxExporter.InputIds}\"");
            var outputs = session.OutputMetadata.Keys.ToArray();
            int logits = Array.IndexOf(outputs, OnnxExporter.Logits);
            // Scored only when "logits" is [B, labels] with the model's label count; -1 (dynamic) does not count.
            if (logits >= 0 && !(session.OutputMetadata[OnnxExporter.Logits].Dimensions is [_, var labels] && labels == config.NumLabels)) logits = -1;
            return new PeerOnnxGraph(session, inputs.ToArray(), outputs, logits, config);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public BatchLogits Run(TokenizedBatch batch)
    {
        long[] shape = [batch.Count, batch.Length];
        var values = new List<OrtValue>(inputs.Length);
        try
        {
            foreach (var (name, int32) in inputs)
            {
                long[] data = name switch { OnnxExporter.InputIds => batch.InputIds, OnnxExporter.AttentionMask => batch.AttentionMask, _ => batch.TokenTypeIds };
                values.Add(int32 ? OrtValue.CreateTensorValueFromMemory(data.Select(v => (int)v).ToArray(), shape) : OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, inputs.Select(i => i.Name).ToArray(), values, outputs);
            return new BatchLogits(batch.Count, batch.Length, HasClassifier ? results[logitsIndex].GetTensorDataAsSpan<float>().ToArray() : null);
        }
        finally
        {
            foreach (var value in values) value.Dispose();
        }
    }

    public void Dispose() => session.Dispose();
}
