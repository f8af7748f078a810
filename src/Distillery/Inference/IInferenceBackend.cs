using Distillery.Models;
using Distillery.Text;

namespace Distillery.Inference;

/// <summary>
/// The head outputs of one padded batch, row-major. Sequence classification: <see cref="Logits"/> [B, C] (C = 1 for
/// regression). QA: <see cref="StartLogits"/> and <see cref="EndLogits"/> [B, T]. Masked LM: <see cref="Logits"/> [B, T, V].
/// Sentence embedding: <see cref="Logits"/> [B, H], the (normalised) vectors.
/// </summary>
internal sealed record BatchLogits(int Batch, int Length, float[]? Logits, float[]? StartLogits = null, float[]? EndLogits = null)
{
    /// <summary>Row <paramref name="i"/> of a [B, C] (or [B, T]) array.</summary>
    public static float[] Row(float[] values, int batch, int i)
    {
        int per = values.Length / batch;
        return values.AsSpan(i * per, per).ToArray();
    }
}

/// <summary>
/// One model behind one forward pass, whatever runs it. Implementations are safe to call from several threads at once
/// (<see cref="Run"/> keeps no state between calls); disposing while a call runs is not supported.
/// </summary>
internal interface IInferenceBackend : IDisposable
{
    /// <summary>The head the model carries.</summary>
    BertTask Task { get; }
    /// <summary>The model's configuration (labels, positions, vocabulary size).</summary>
    BertConfig Config { get; }
    /// <summary>A short name for tables and messages ("TorchSharp fp32", "ONNX Runtime").</summary>
    string Description { get; }
    /// <summary>Runs the model on a padded batch (ids, segment ids and attention mask, each [B, T]).</summary>
    BatchLogits Run(TokenizedBatch batch);
}
