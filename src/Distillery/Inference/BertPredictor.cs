using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Inference;

/// <summary>One candidate for a [MASK] position.</summary>
public sealed record MaskCandidate(string Token, int TokenId, double Probability);

/// <summary>The top candidates for one [MASK] in the input.</summary>
public sealed record MaskPrediction(int Position, IReadOnlyList<MaskCandidate> Candidates);

/// <summary>A sequence head's answer: label probabilities, or a score for regression.</summary>
public sealed record SequencePrediction(string Label, IReadOnlyList<(string Label, double Probability)> Probabilities, double? Score);

/// <summary>The best answer span in a context.</summary>
public sealed record SpanPrediction(string Answer, int Start, int End, double Score);

/// <summary>
/// A model folder loaded for inference with its own tokenizer: fill-mask, classification/regression and span QA on
/// raw text. Inputs longer than the model's positions are truncated (longest first) and flagged in
/// <see cref="LastInputTruncated"/>.
/// </summary>
public sealed class BertPredictor : IDisposable
{
    /// <summary>The model (eval mode).</summary>
    public BertTaskModel Model { get; }
    /// <summary>The tokenizer saved with it.</summary>
    public BertTextTokenizer Tokenizer { get; }
    /// <summary>Whether the last input had to be cut to fit.</summary>
    public bool LastInputTruncated { get; private set; }
    /// <summary>Longest input in tokens, special tokens included.</summary>
    public int MaxLength => Math.Min(512, Model.Config.MaxPositionEmbeddings);
    /// <summary>Warnings from loading (heads initialised at random, ignored tensors).</summary>
    public LoadReport LoadReport { get; }

    private BertPredictor(BertTaskModel model, BertTextTokenizer tokenizer, LoadReport report)
    {
        Model = model;
        Tokenizer = tokenizer;
        LoadReport = report;
        model.eval();
    }

    /// <summary>Loads a model folder (its config names the head unless <paramref name="task"/> is given) and its tokenizer.</summary>
    public static BertPredictor Load(string dir, BertTask? task = null)
    {
        var config = BertCheckpoint.ReadConfig(dir);
        var tokenizer = BertCheckpoint.LoadTokenizer(dir, config);
        var (model, report) = BertCheckpoint.Load(dir, task);
        return new BertPredictor(model, tokenizer, report);
    }

    private (TokenizedText Encoded, TaskOutput Output) Run(string textA, string? textB, DisposeScope _)
    {
        int full = Tokenizer.Tokenize(textA).Ids.Length + (textB == null ? 2 : Tokenizer.Tokenize(textB).Ids.Length + 3);
        LastInputTruncated = full > MaxLength;
        var encoded = Tokenizer.Encode(textA, textB, MaxLength);
        var ids = tensor(encoded.InputIds.Select(i => (long)i).ToArray(), [1, encoded.InputIds.Length]);
        var types = tensor(encoded.TokenTypeIds.Select(i => (long)i).ToArray(), [1, encoded.TokenTypeIds.Length]);
        return (encoded, Model.forward(new BertInputs(ids, TokenTypeIds: types)));
    }

    /// <summary>
    /// Top-<paramref name="topK"/> tokens for each [MASK] in <paramref name="text"/> (masked-LM models). A model whose
    /// config says its head was never trained with its encoder (<see cref="BertConfig.MlmHeadUntrained"/>: MiniLM's
    /// students) is refused unless <paramref name="allowUntrainedHead"/>.
    /// </summary>
    public IReadOnlyList<MaskPrediction> FillMask(string text, int topK = 5, bool allowUntrainedHead = false)
    {
        if (Model.Task != BertTask.MaskedLM) throw new InvalidOperationException($"fill-mask needs a masked-LM model; this one is {BertTasks.ArchitectureName(Model.Task)}");
        // Refused rather than warned about: the table of candidates and probabilities looks like a working model's, and
        // a warning above it is easily missed. The model is fine to fine-tune (the task head replaces this one).
        if (Model.Config.MlmHeadUntrained is string why && !allowUntrainedHead)
            throw new InvalidOperationException($"this model's masked-LM head was never trained ({why}), so its [MASK] predictions would be noise; " +
                "fine-tune it for a task, train the head on the frozen encoder (distillery pretrain --init-from MODEL --freeze-encoder), or allow an untrained head (--allow-untrained-head) to see them anyway");
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), "top-k must be at least 1");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (encoded, output) = Run(text, null, scope);
        var positions = Enumerable.Range(0, encoded.InputIds.Length).Where(i => encoded.InputIds[i] == Tokenizer.MaskId).ToList();
        if (positions.Count == 0)
            throw new ArgumentException(LastInputTruncated
                ? $"no {Tokenizer.IdToToken(Tokenizer.MaskId)} left to fill after truncating the input to the model's {MaxLength} tokens"
                : $"the text has no {Tokenizer.IdToToken(Tokenizer.MaskId)} token to fill");
        var result = new List<MaskPrediction>();
        foreach (int position in positions)
        {
            var probs = nn.functional.softmax(output.Logits[0, position], -1);   // [V]
            var (values, indices) = probs.topk(Math.Min(topK, (int)probs.shape[0]));
            var candidates = Enumerable.Range(0, (int)values.shape[0]).Select(k =>
            {
                int id = (int)indices[k].item<long>();
                return new MaskCandidate(Tokenizer.IdToToken(id), id, values[k].item<float>());
            }).ToList();
            result.Add(new MaskPrediction(position, candidates));
        }
        return result;
    }

    /// <summary>Classifies (or scores, for regression) one text or text pair (sequence-classification models).</summary>
    public SequencePrediction Classify(string textA, string? textB = null)
    {
        if (Model.Task != BertTask.SequenceClassification) throw new InvalidOperationException($"classification needs a sequence-classification model; this one is {BertTasks.ArchitectureName(Model.Task)}");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var logits = Run(textA, textB, scope).Output.Logits[0];   // [C]
        var labels = Model.Config.Labels;
        if (Model.Config.IsRegression)
        {
            double score = logits[0].item<float>();
            return new SequencePrediction(labels[0], [], score);
        }
        var probs = nn.functional.softmax(logits, -1).data<float>().ToArray();
        var ranked = probs.Select((p, i) => (labels[i], (double)p)).OrderByDescending(x => x.Item2).ToList();
        return new SequencePrediction(ranked[0].Item1, ranked, null);
    }

    /// <summary>
    /// The highest-scoring answer span of <paramref name="context"/> for <paramref name="question"/> (QA models): the
    /// best start ≤ end pair within <paramref name="maxAnswerTokens"/> tokens, mapped back to the context's characters.
    /// </summary>
    public SpanPrediction Answer(string question, string context, int maxAnswerTokens = 30)
    {
        if (Model.Task != BertTask.QuestionAnswering) throw new InvalidOperationException($"question answering needs a QA model; this one is {BertTasks.ArchitectureName(Model.Task)}");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (encoded, output) = Run(question, context, scope);
        float[] start = output.StartLogits[0].data<float>().ToArray(), end = output.EndLogits[0].data<float>().ToArray();
        var best = (Score: double.NegativeInfinity, Start: -1, End: -1);
        for (int s = 0; s < start.Length; s++)
        {
            if (encoded.SequenceIds[s] != 1) continue;
            for (int e = s; e < Math.Min(end.Length, s + maxAnswerTokens); e++)
            {
                if (encoded.SequenceIds[e] != 1) break;
                double score = start[s] + end[e];
                if (score > best.Score) best = (score, s, e);
            }
        }
        if (best.Start < 0) return new SpanPrediction("", 0, 0, double.NegativeInfinity);
        int from = encoded.Offsets[best.Start].Start, to = encoded.Offsets[best.End].End;
        return new SpanPrediction(context[from..to], from, to, best.Score);
    }

    /// <inheritdoc/>
    public void Dispose() => Model.Dispose();
}
