// Sentence embeddings as a head: sentence-transformers' Transformer → Pooling → Normalize pipeline
// (sentence_transformers/models/Pooling.py, Normalize.py), the layout of all-MiniLM-L6-v2 and its family:
//   mean pooling   e = Σ_t m_t · h_t / max(Σ_t m_t, 1e-9)       over real tokens only (m = attention mask)   [B, H]
//   cls pooling    e = h_[CLS]                                                                             [B, H]
//   normalise      e / max(‖e‖₂, 1e-12)                          (torch.nn.functional.normalize, p = 2)    [B, H]
//   project        e Pᵀ, P [D, H]  (optional: sentence-transformers' Dense, no bias, identity activation)   [B, D]
// With a projection the pipeline is Transformer → Pooling → [Normalize] → Dense → [Normalize]: `distillery reduce`
// writes Normalize → Dense → Normalize, so P is fitted on the unit vectors whose dot products are the model's cosines
// and the output has unit length again.
// The encoder is transformers' BertModel without its pooler (sentence-transformers never reads pooler_output), so the
// state dict is the encoder's alone. How the pooling is configured is stored beside the weights in
// sentence-transformers' own files (SentenceTransformersLayout), not in config.json.
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>How token vectors become one sentence vector (sentence-transformers' <c>pooling_mode_*</c>).</summary>
public enum SentencePooling
{
    /// <summary>Mean of the last hidden states over real tokens (<c>pooling_mode_mean_tokens</c>); all-MiniLM-L6-v2's.</summary>
    Mean,
    /// <summary>The [CLS] token's last hidden state (<c>pooling_mode_cls_token</c>).</summary>
    Cls,
}

/// <summary>
/// The sentence-embedding head's settings: pooling, normalisation and the longest input, as sentence-transformers
/// stores them (<c>1_Pooling/config.json</c>, a <c>Normalize</c> module, <c>sentence_bert_config.json</c>).
/// Defaults are all-MiniLM-L6-v2's.
/// </summary>
public sealed record SentenceEmbeddingConfig
{
    /// <summary>Pooling over tokens (default mean).</summary>
    public SentencePooling Pooling { get; init; } = SentencePooling.Mean;
    /// <summary>L2-normalise the pooled vector (default true), so cosine similarity is a dot product.</summary>
    public bool Normalize { get; init; } = true;
    /// <summary>Longest input in tokens that sentence-transformers feeds the model (its <c>max_seq_length</c>; default 256).</summary>
    public int MaxSeqLength { get; init; } = 256;
    /// <summary>
    /// With a projection (<see cref="BertForSentenceEmbedding.Projection"/>): L2-normalise the pooled vector before it
    /// too (a Normalize module before the Dense). Meaningless, and false, without one.
    /// </summary>
    public bool NormalizeBeforeProjection { get; init; }

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public SentenceEmbeddingConfig Validate()
    {
        if (!Enum.IsDefined(Pooling)) throw new ArgumentException($"pooling {(int)Pooling} is not mean or cls");
        if (MaxSeqLength < 2) throw new ArgumentException($"max_seq_length must be at least 2 (got {MaxSeqLength})");
        return this;
    }
}

/// <summary>
/// A sentence-transformers model in Distillery: <see cref="BertModel"/> (no pooler) whose head pools the last hidden
/// states and L2-normalises them, giving one [H] vector per text (<see cref="TaskOutput.Logits"/> is [B, H]).
/// </summary>
public sealed class BertForSentenceEmbedding : BertTaskModel
{
    /// <summary>Floor of the token count in mean pooling (sentence-transformers' <c>torch.clamp(sum_mask, min=1e-9)</c>).</summary>
    public const float MinTokenCount = 1e-9f;
    /// <summary>Floor of the norm in normalisation (<c>torch.nn.functional.normalize</c>'s eps).</summary>
    public const float MinNorm = 1e-12f;

    private readonly BertModel bert;

    public BertForSentenceEmbedding(BertConfig config) : base(config, nameof(BertForSentenceEmbedding))
    {
        bert = new BertModel(config, addPoolingLayer: false);
        RegisterComponents();
    }

    /// <summary>Pooling and normalisation (not parameters; saved in sentence-transformers' files). Default: mean, normalised.</summary>
    public SentenceEmbeddingConfig SentenceConfig { get; set; } = new();

    Tensor? projection;

    /// <summary>
    /// An optional linear map of the pooled vector to fewer dimensions, [D, H] (nn.Linear's weight layout; no bias),
    /// saved as sentence-transformers' Dense module (<c>2_Dense/</c>). Not a parameter of this module: it is not in
    /// model.safetensors, and training leaves it alone (<c>distillery reduce</c> fits it). The model owns the tensor set
    /// here (a copy is taken) and disposes it.
    /// </summary>
    public Tensor? Projection
    {
        get => projection;
        set
        {
            if (value is not null && (value.dim() != 2 || value.shape[1] != Config.HiddenSize || value.shape[0] < 1))
                throw new ArgumentException($"a projection must be [D, {Config.HiddenSize}] (got [{string.Join(", ", value.shape)}])");
            if (ReferenceEquals(value, projection)) return;
            projection?.Dispose();
            if (value is null) { projection = null; return; }
            // The model's own copy, out of any dispose scope open around the setter (it lives as long as the model).
            using var scope = NewDisposeScope();
            projection = value.detach().to(ScalarType.Float32).clone().DetachFromDisposeScope();
        }
    }

    /// <summary>Length of the sentence vectors: the projection's D, else the hidden size.</summary>
    public int EmbeddingDimension => projection is null ? (int)Config.HiddenSize : (int)projection.shape[0];

    /// <inheritdoc/>
    public override BertTask Task => BertTask.SentenceEmbedding;
    /// <inheritdoc/>
    public override BertModel Bert => bert;

    /// <summary>[B, T, H] last hidden states (with the encoder's attention mask) → [B, H] sentence embeddings.</summary>
    public override Tensor Head(EncoderOutput encoder) => Embed(encoder.LastHiddenState, encoder.AttentionMask, SentenceConfig, projection);

    /// <summary>
    /// Pools <paramref name="hidden"/> [B, T, H] as <paramref name="config"/> says, then (optionally normalised first)
    /// projects by <paramref name="projection"/> [D, H], then normalises: [B, H], or [B, D] with a projection.
    /// </summary>
    public static Tensor Embed(Tensor hidden, Tensor? attentionMask, SentenceEmbeddingConfig config, Tensor? projection = null)
    {
        using var scope = NewDisposeScope();
        var pooled = config.Pooling == SentencePooling.Cls ? hidden.select(1, 0) : MeanPool(hidden, attentionMask);   // [B, H]
        if (projection is not null)
        {
            if (config.NormalizeBeforeProjection) pooled = L2Normalize(pooled);
            pooled = pooled.matmul(projection.to(pooled.dtype).t());                                                     // [B, D]
        }
        return (config.Normalize ? L2Normalize(pooled) : pooled).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) { projection?.Dispose(); projection = null; }
        base.Dispose(disposing);
    }

    /// <summary>Σ_t m_t h_t / max(Σ_t m_t, 1e-9): [B, T, H] and [B, T] (null: all real) → [B, H].</summary>
    public static Tensor MeanPool(Tensor hidden, Tensor? attentionMask)
    {
        if (attentionMask is null) return hidden.mean([1]);
        using var scope = NewDisposeScope();
        var mask = attentionMask.unsqueeze(-1).to(hidden.dtype);                       // [B, T, 1]
        var sum = (hidden * mask).sum(1);                                               // [B, H]
        var count = mask.sum(1).clamp_min(MinTokenCount);                               // [B, 1]
        return (sum / count).MoveToOuterDisposeScope();
    }

    /// <summary>x / max(‖x‖₂, 1e-12) along the last axis: [.., H] → [.., H].</summary>
    public static Tensor L2Normalize(Tensor x)
    {
        using var scope = NewDisposeScope();
        var norm = x.pow(2).sum(-1, keepdim: true).sqrt().clamp_min(MinNorm);        // [.., 1]
        return (x / norm).MoveToOuterDisposeScope();
    }
}
