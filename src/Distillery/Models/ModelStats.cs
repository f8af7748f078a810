using TorchSharp;

namespace Distillery.Models;

/// <summary>Parameter counts of a model by part, and its forward cost.</summary>
/// <param name="Embeddings">Word, position and type tables and their LayerNorm.</param>
/// <param name="Encoder">All layers.</param>
/// <param name="Pooler">The pooler (0 for heads without one).</param>
/// <param name="Head">The task head (the MLM head counts its transform and bias; its decoder is the tied word table; a sentence embedding its projection, if any).</param>
public sealed record ParameterCounts(long Embeddings, long Encoder, long Pooler, long Head)
{
    /// <summary>Every parameter, each tied tensor counted once.</summary>
    public long Total => Embeddings + Encoder + Pooler + Head;

    /// <summary>Counts the parameters of <paramref name="model"/> by the part their name falls under.</summary>
    public static ParameterCounts Of(BertTaskModel model)
    {
        long embeddings = 0, encoder = 0, pooler = 0, head = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            long n = p.numel();
            if (name.StartsWith("bert.embeddings.", StringComparison.Ordinal)) embeddings += n;
            else if (name.StartsWith("bert.encoder.", StringComparison.Ordinal)) encoder += n;
            else if (name.StartsWith("bert.pooler.", StringComparison.Ordinal)) pooler += n;
            else head += n;
        }
        // A sentence-embedding projection (Dense) is weights of the model though not a trained parameter: it counts as head.
        if (model is BertForSentenceEmbedding { Projection: { } projection }) head += projection.numel();
        return new ParameterCounts(embeddings, encoder, pooler, head);
    }
}

/// <summary>Floating-point operations of a forward pass (a multiply-add counts as 2).</summary>
public static class ForwardCost
{
    /// <summary>
    /// Encoder FLOPs per token at sequence length <paramref name="seqLength"/>: per layer, the Q/K/V and output
    /// projections (2·H·3hd + 2·hd·H), the two FFN matrices (2·2·H·F), and attention's QKᵀ and PV (2·2·T·hd).
    /// Embedding lookups, LayerNorm, softmax and activations are left out (a few percent at these sizes).
    /// </summary>
    public static double EncoderFlopsPerToken(BertConfig c, int seqLength)
    {
        double flops = 0;
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            double attnWidth = (double)c.HeadsInLayer(i) * c.HeadSize;
            flops += 2 * c.HiddenSize * 3 * attnWidth + 2 * attnWidth * c.HiddenSize;   // Q, K, V, output projection
            flops += 2 * 2.0 * c.HiddenSize * c.IntermediateSizeOf(i);                   // FFN in and out
            flops += 2 * 2.0 * seqLength * attnWidth;                                    // scores and context
        }
        return flops;
    }

    /// <summary>
    /// Forward FLOPs of one sequence of <paramref name="seqLength"/> tokens: the encoder's per-token FLOPs times the
    /// length, plus the head (per token for MLM and QA, once for a sequence head), or no head when
    /// <paramref name="withHead"/> is false (a bare encoder, e.g. a foreign graph without the classifier).
    /// </summary>
    public static double FlopsPerSequence(BertConfig c, BertTask task, int seqLength, bool withHead = true)
    {
        double flops = EncoderFlopsPerToken(c, seqLength) * seqLength;
        if (!withHead) return flops;
        return flops + (task == BertTask.SequenceClassification ? HeadFlops(c, task) : HeadFlops(c, task) * seqLength);
    }

    /// <summary>
    /// Training FLOPs per token, the usual 3× forward (forward, and a backward of twice its cost): the encoder at
    /// <paramref name="seqLength"/> tokens plus the head, the MLM head at the share <paramref name="predictedShare"/> of
    /// tokens it runs on (Distillery runs it at the masked positions only), a sequence head once per sequence. With
    /// <paramref name="frozenEncoder"/> (pretrain --freeze-encoder: the encoder runs without autograd, only the head
    /// trains) the encoder counts its forward alone: 3× would credit a backward that never runs (an MFU above 1).
    /// </summary>
    public static double TrainingFlopsPerToken(BertConfig c, BertTask task, double seqLength, double predictedShare = 1, bool frozenEncoder = false)
    {
        int length = Math.Max(1, (int)Math.Round(seqLength));
        double head = task switch
        {
            BertTask.MaskedLM => HeadFlops(c, task) * predictedShare,
            BertTask.SequenceClassification => HeadFlops(c, task) / seqLength,
            _ => HeadFlops(c, task),
        };
        return (frozenEncoder ? 1 : 3) * EncoderFlopsPerToken(c, length) + 3 * head;
    }

    /// <summary>Head FLOPs per token (MLM: transform + vocabulary projection) or per sequence (pooler + classifier).</summary>
    public static double HeadFlops(BertConfig c, BertTask task) => task switch
    {
        BertTask.MaskedLM => 2.0 * c.HiddenSize * c.HiddenSize + 2.0 * c.HiddenSize * c.VocabSize,
        BertTask.SequenceClassification => 2.0 * c.HiddenSize * c.HiddenSize + 2.0 * c.HiddenSize * c.NumLabels,
        BertTask.SentenceEmbedding => 0,   // pooling and normalisation: no matmul
        _ => 2.0 * c.HiddenSize * 2,
    };
}
