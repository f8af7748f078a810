using Distillery.Data;
using Distillery.Models;
using Distillery.Text;

namespace Distillery.Inference;

/// <summary>An extracted answer.</summary>
/// <param name="Text">The answer, <c>context[Start..End]</c>; empty when no window had a valid span.</param>
/// <param name="Start">First character of the answer in the context.</param>
/// <param name="End">One past its last character.</param>
/// <param name="Score">Start logit + end logit of the span (negative infinity when there is none).</param>
/// <param name="Windows">How many doc-stride windows the context needed.</param>
/// <param name="Truncated">Whether the question was cut to fit (the context is never cut: it is windowed).</param>
public sealed record AnswerSpan(string Text, int Start, int End, double Score, int Windows, bool Truncated);

/// <summary>
/// Extractive question answering (SQuAD-style) with a fine-tuned model, tokenizer included. A context longer than one
/// window is split into overlapping windows exactly as SQuAD evaluation does (<see cref="Squad.Featurize"/>: windows of
/// the model's length sharing <see cref="InferenceOptions.DocStride"/> tokens), all windows run as one batch, and the
/// best span over them wins (<see cref="Squad.BestSpans"/>). Thread safety as <see cref="TextClassifier"/>: one
/// instance serves many threads at once, without a lock.
/// </summary>
public sealed class QuestionAnswerer : IDisposable
{
    /// <summary>Question tokens kept, at most (SQuAD's max_query_length); longer questions follow the overlong policy.</summary>
    public const int MaxQuestionTokens = 64;

    private readonly InferenceModel model;
    private readonly SquadOptions squad;

    private QuestionAnswerer(InferenceModel model)
    {
        this.model = model;
        // Leave at least half the window to the context, and never let the stride reach the window (Featurize requires it).
        int maxQuery = Math.Min(MaxQuestionTokens, (model.MaxLength - 3) / 2);
        int window = model.MaxLength - maxQuery - 3;
        squad = new SquadOptions
        {
            MaxLength = model.MaxLength, MaxQueryLength = maxQuery, DocStride = Math.Min(model.Options.DocStride, window / 2),
            MaxAnswerLength = model.Options.MaxAnswerTokens,
        };
    }

    /// <summary>
    /// Loads a fine-tuned question-answering model: a model folder or an exported <c>.onnx</c> file with vocab.txt beside
    /// it. Errors as <see cref="TextClassifier.Load"/>.
    /// </summary>
    public static QuestionAnswerer Load(string dirOrOnnx, InferenceOptions? options = null) =>
        new(InferenceModel.Open(dirOrOnnx, options, BertTask.QuestionAnswering));

    /// <summary>The backend running the model.</summary>
    public InferenceBackend Backend => model.Kind;
    /// <summary>Backend and precision, e.g. "ONNX Runtime".</summary>
    public string Description => model.Backend.Description;
    /// <summary>Tokens per window, special tokens included.</summary>
    public int MaxLength => model.MaxLength;
    /// <summary>Context tokens shared by consecutive windows.</summary>
    public int DocStride => squad.DocStride;

    /// <summary>The best answer to <paramref name="question"/> in <paramref name="context"/>, with its character offsets.</summary>
    public AnswerSpan Answer(string question, string context)
    {
        ArgumentNullException.ThrowIfNull(question);
        ArgumentNullException.ThrowIfNull(context);
        int questionTokens = model.Tokenizer.Tokenize(question.TrimStart()).Ids.Length;
        bool truncated = questionTokens > squad.MaxQueryLength;
        if (truncated)
        {
            if (model.Options.OverlongInput == OverlongInput.Error)
                throw new ArgumentException($"question is {questionTokens} tokens, longer than the limit of {squad.MaxQueryLength}; shorten it or set OverlongInput = Truncate");
            model.Warn($"question of {questionTokens} tokens truncated to {squad.MaxQueryLength}");
        }
        SquadQuestion[] questions = [new("q", "", context, question, [], false)];
        var features = Squad.Featurize(model.Tokenizer, questions, squad);
        var rows = features.Select(f => new TokenizedText(f.InputIds, f.TokenTypeIds, [], [], [])).ToList();
        var logits = model.Backend.Run(model.Pad(rows));
        var starts = Enumerable.Range(0, features.Count).Select(i => BatchLogits.Row(logits.StartLogits!, logits.Batch, i)).ToList();
        var ends = Enumerable.Range(0, features.Count).Select(i => BatchLogits.Row(logits.EndLogits!, logits.Batch, i)).ToList();
        var span = Squad.BestSpans(questions, features, starts, ends, squad)[0];
        return span is null
            ? new AnswerSpan("", 0, 0, double.NegativeInfinity, features.Count, truncated)
            : new AnswerSpan(context[span.Start..span.End], span.Start, span.End, span.Score, features.Count, truncated);
    }

    /// <inheritdoc/>
    public void Dispose() => model.Dispose();
}
