using Distillery.Models;
using Distillery.Text;

namespace Distillery.Inference;

/// <summary>One label and its probability.</summary>
public readonly record struct LabelProbability(string Label, double Probability);

/// <summary>A classifier's answer for one text (or pair).</summary>
/// <param name="Label">The most probable label (config.json's id2label), or null for a regression model.</param>
/// <param name="LabelIndex">Its index, or -1 for regression.</param>
/// <param name="Probabilities">Every label's probability, in label-index order (empty for regression).</param>
/// <param name="Score">The regression output, or null for classification.</param>
/// <param name="Truncated">Whether the input was cut to fit the model.</param>
public sealed record Classification(string? Label, int LabelIndex, IReadOnlyList<LabelProbability> Probabilities, double? Score, bool Truncated);

/// <summary>
/// Text classification (or regression, e.g. STS-B) with a fine-tuned model, tokenizer included, for .NET apps:
/// <code>
/// using var classifier = TextClassifier.Load("models/sst2");          // a folder (TorchSharp) or model.onnx (ONNX Runtime)
/// var result = classifier.Predict("a gripping, funny film");
/// Console.WriteLine($"{result.Label} {result.Probabilities[result.LabelIndex].Probability:P1}");
/// </code>
/// Thread safety: one instance may serve any number of threads at once; calls are not serialised by a lock. The
/// tokenizer is immutable; TorchSharp runs the eval-mode model under per-thread <c>no_grad</c> and dispose scopes;
/// ONNX Runtime's <c>InferenceSession.Run</c> is thread-safe. Do not dispose while calls are running.
/// </summary>
public sealed class TextClassifier : IDisposable
{
    private readonly InferenceModel model;

    private TextClassifier(InferenceModel model) => this.model = model;

    /// <summary>
    /// Loads a fine-tuned sequence-classification model: a model folder (config.json, model.safetensors, vocab.txt) or an
    /// exported <c>.onnx</c> file with vocab.txt beside it. Errors (one line each, naming the file): a file that is not
    /// an ONNX model (<see cref="InvalidDataException"/>), a missing vocab.txt (<see cref="FileNotFoundException"/>), a
    /// model without a trained classification head (<see cref="InvalidDataException"/>).
    /// </summary>
    public static TextClassifier Load(string dirOrOnnx, InferenceOptions? options = null) =>
        new(InferenceModel.Open(dirOrOnnx, options, BertTask.SequenceClassification));

    /// <summary>The labels, by index (config.json's id2label).</summary>
    public IReadOnlyList<string> Labels => model.Backend.Config.Labels;
    /// <summary>Whether the model is a regression head (one output, no labels).</summary>
    public bool IsRegression => model.Backend.Config.IsRegression;
    /// <summary>The backend running the model.</summary>
    public InferenceBackend Backend => model.Kind;
    /// <summary>Backend and precision, e.g. "TorchSharp bf16".</summary>
    public string Description => model.Backend.Description;
    /// <summary>Longest input in tokens, special tokens included.</summary>
    public int MaxLength => model.MaxLength;

    /// <summary>Classifies one text, or a pair (<paramref name="pair"/>: the second sentence, for MRPC/RTE-style models).</summary>
    public Classification Predict(string text, string? pair = null) => Run([(text, pair)])[0];

    /// <summary>Classifies many texts, in batches of <see cref="InferenceOptions.BatchSize"/>; results in input order.</summary>
    public IReadOnlyList<Classification> PredictBatch(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        return PredictBatch(texts.Select(t => (t, (string?)null)).ToList());
    }

    /// <summary>Classifies many text pairs, in batches of <see cref="InferenceOptions.BatchSize"/>; results in input order.</summary>
    public IReadOnlyList<Classification> PredictBatch(IReadOnlyList<(string Text, string? Pair)> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        var results = new List<Classification>(pairs.Count);
        int size = model.Options.BatchSize;
        for (int start = 0; start < pairs.Count; start += size)
            results.AddRange(Run(pairs.Skip(start).Take(size).ToList()));
        return results;
    }

    private IReadOnlyList<Classification> Run(IReadOnlyList<(string Text, string? Pair)> inputs)
    {
        var encoded = inputs.Select(p => model.Encode(p.Text, p.Pair)).ToList();
        var logits = model.Backend.Run(model.Pad(encoded.Select(e => e.Encoded).ToList()));
        var results = new Classification[inputs.Count];
        for (int i = 0; i < results.Length; i++)
            results[i] = FromLogits(BatchLogits.Row(logits.Logits!, logits.Batch, i), encoded[i].Truncated);
        return results;
    }

    /// <summary>Softmax over a row of logits [C] (regression: the single output as the score).</summary>
    private Classification FromLogits(float[] row, bool truncated)
    {
        if (IsRegression) return new Classification(null, -1, [], row[0], truncated);
        double max = row.Max();
        var exp = row.Select(x => Math.Exp(x - max)).ToArray();
        double sum = exp.Sum();
        var labels = Labels;
        var probabilities = exp.Select((e, i) => new LabelProbability(i < labels.Count ? labels[i] : $"LABEL_{i}", e / sum)).ToArray();
        int best = Array.IndexOf(row, row.Max());
        return new Classification(probabilities[best].Label, best, probabilities, null, truncated);
    }

    /// <inheritdoc/>
    public void Dispose() => model.Dispose();
}
