using Distillery.Data;
using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Training;

/// <summary>A masked-LM micro-batch: corrupted ids and targets, row-major [Batch, Length].</summary>
public sealed record MlmBatch(long[] InputIds, long[] Labels, int Batch, int Length)
{
    /// <summary>Positions with a target.</summary>
    public int PredictedCount => Labels.Count(l => l != MlmMasking.IgnoreIndex);
}

/// <summary>
/// Packed corpus sequences as MLM batches. The order of sequences is a seeded shuffle per epoch and each batch's masking
/// draws from a generator seeded by (seed, epoch, batch): dynamic masking (a new corruption every epoch, RoBERTa's) that
/// is still a pure function of the position, so resumed runs see identical batches.
/// </summary>
public sealed class MlmBatchSource : IBatchSource<MlmBatch>
{
    private readonly TextCorpus corpus;
    private readonly BertTextTokenizer tokenizer;
    private readonly IReadOnlyList<int> sequences;
    private readonly int seqLength;
    private readonly int batchSize;
    private readonly MaskingOptions masking;
    private readonly long seed;
    private readonly bool shuffle;
    private (int Epoch, int[] Order)? cachedOrder;

    /// <summary>Batches over <paramref name="sequences"/> (indices of packed sequences of <paramref name="seqLength"/> tokens).</summary>
    public MlmBatchSource(TextCorpus corpus, BertTextTokenizer tokenizer, IReadOnlyList<int> sequences, int seqLength, int batchSize,
        MaskingOptions masking, long seed, bool shuffle = true)
    {
        if (sequences.Count == 0) throw new ArgumentException("no sequences to train on (corpus too small for the sequence length?)");
        this.corpus = corpus;
        this.tokenizer = tokenizer;
        this.sequences = sequences;
        this.seqLength = seqLength;
        this.batchSize = batchSize;
        this.masking = masking.Validate();
        this.seed = seed;
        this.shuffle = shuffle;
    }

    /// <inheritdoc/>
    public int BatchesPerEpoch => (sequences.Count + batchSize - 1) / batchSize;

    private int[] Order(int epoch)
    {
        if (cachedOrder is { } c && c.Epoch == epoch) return c.Order;
        var order = Enumerable.Range(0, sequences.Count).ToArray();
        if (shuffle) new Random((int)(Trainer<MlmBatch>.StepSeed(seed, epoch) & int.MaxValue)).Shuffle(order);
        cachedOrder = (epoch, order);
        return order;
    }

    /// <inheritdoc/>
    public MlmBatch Get(int epoch, int index)
    {
        var order = Order(epoch);
        int start = index * batchSize, count = Math.Min(batchSize, sequences.Count - start);
        var ids = new int[count * seqLength];
        var labels = new int[count * seqLength];
        var random = new Random((int)(Trainer<MlmBatch>.StepSeed(seed ^ 0x6D61736BL, (long)epoch * BatchesPerEpoch + index) & int.MaxValue));
        for (int row = 0; row < count; row++)
        {
            var rowIds = ids.AsSpan(row * seqLength, seqLength);
            corpus.CopySequence(sequences[order[start + row]], seqLength, tokenizer.ClsId, tokenizer.SepId, rowIds);
            MlmMasking.Apply(rowIds, labels.AsSpan(row * seqLength, seqLength), tokenizer, masking, random);
        }
        return new MlmBatch(ids.Select(i => (long)i).ToArray(), labels.Select(i => (long)i).ToArray(), count, seqLength);
    }
}

/// <summary>The masked-LM loss: cross-entropy at the predicted positions only (the [N, V] logits, not [B, T, V]).</summary>
public sealed class MlmObjective(BertForMaskedLM model) : ITrainingObjective<MlmBatch>
{
    /// <inheritdoc/>
    public nn.Module Module => model;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
    {
        var (loss, _, _) = Compute(model, batch);
        return (loss, (long)batch.Batch * batch.Length);
    }

    /// <summary>Loss, number of predicted positions and how many of them the argmax got right.</summary>
    public static (Tensor Loss, long Predicted, Tensor Correct) Compute(BertForMaskedLM model, MlmBatch batch, bool frozenEncoder = false)
    {
        var ids = tensor(batch.InputIds, [batch.Batch, batch.Length]);
        var labels = tensor(batch.Labels, [batch.Batch, batch.Length]);
        Tensor hidden;                                                           // [B, T, H]
        if (frozenEncoder)
            using (no_grad()) hidden = model.Bert.forward(new BertInputs(ids)).LastHiddenState;
        else hidden = model.Bert.forward(new BertInputs(ids)).LastHiddenState;
        var selected = labels.ne(MlmMasking.IgnoreIndex);                        // [B, T]
        var targets = labels.masked_select(selected);                            // [N]
        var chosen = hidden[selected];                                           // [N, H]
        var logits = model.PredictTokens(chosen);                                // [N, V]
        var loss = nn.functional.cross_entropy(logits, targets);
        var correct = logits.argmax(-1).eq(targets).sum();
        return (loss, targets.shape[0], correct);
    }

    /// <summary>Mean loss, accuracy and perplexity over fixed (seeded) masked batches.</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(BertForMaskedLM model, IBatchSource<MlmBatch> evalData)
    {
        double lossSum = 0;
        long predicted = 0, correct = 0;
        for (int i = 0; i < evalData.BatchesPerEpoch; i++)
        {
            using var scope = NewDisposeScope();
            var batch = evalData.Get(0, i);
            var (loss, n, right) = Compute(model, batch);
            lossSum += loss.item<float>() * n;
            predicted += n;
            correct += right.item<long>();
        }
        double mean = lossSum / Math.Max(1, predicted);
        return new Dictionary<string, double> { ["mlm_loss"] = mean, ["mlm_accuracy"] = (double)correct / Math.Max(1, predicted), ["perplexity"] = Math.Exp(mean) };
    }
}

/// <summary>
/// The masked-LM loss with only the head training (<see cref="PretrainOptions.FreezeEncoder"/>): the encoder runs in eval
/// mode under no_grad, so its weights, the tied decoder included, never change; the trainer sees only <c>cls.*</c>.
/// </summary>
public sealed class MlmHeadObjective(BertForMaskedLM model) : ITrainingObjective<MlmBatch>
{
    /// <inheritdoc/>
    public nn.Module Module => model.MlmHead;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
    {
        model.Bert.eval();   // no dropout in the frozen encoder: the head learns the features the encoder gives at inference
        var (loss, _, _) = MlmObjective.Compute(model, batch, frozenEncoder: true);
        return (loss, (long)batch.Batch * batch.Length);
    }
}
