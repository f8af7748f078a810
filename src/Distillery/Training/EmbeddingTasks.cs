// The sentence-embedding evaluations as tasks, so eval, bench (every backend) and distillation score them the way
// they score GLUE: each is a list of texts to encode (TaskData.Eval, one sentence vector each, in order) and a scorer
// over the vectors. All are zero-shot: the model is not trained on them.
//   sts-embed        STS-B dev (1,500 pairs): Spearman (primary) and Pearson of cos(u, v) with the gold 0-5 scores.
//   squad-retrieval  SQuAD v1.1 dev: every question retrieves among the file's distinct paragraphs (2,067 in dev-v1.1)
//                    by cosine; recall@1, recall@10 and MRR (primary) of its own paragraph.
//   mrpc-embed       MRPC: the cosine threshold that maximises accuracy on train (3,668 pairs) is applied to dev (408);
//                    dev accuracy (primary) and F1 of the paraphrase class at that threshold.
// Inputs are single texts ([CLS] text [SEP]), cut at max_length (default 256, sentence-transformers' max_seq_length
// for all-MiniLM-L6-v2; only SQuAD paragraphs are that long). Texts are listed shortest first (pairs by their longer
// text), so the scorers' batches pad little; every metric here is invariant to the order of pairs and queries.
using Distillery.Data;
using Distillery.Evaluation;
using Distillery.Models;
using Distillery.Text;

namespace Distillery.Training;

/// <summary>Builds the data and scorers of the sentence-embedding tasks.</summary>
public static class EmbeddingTasks
{
    /// <summary>The embedding tasks, in the order tables list them.</summary>
    public static readonly IReadOnlyList<TaskName> All = [TaskName.StsEmbed, TaskName.SquadRetrieval, TaskName.MrpcEmbed];

    /// <summary>Default longest input in tokens (sentence-transformers' max_seq_length of all-MiniLM-L6-v2).</summary>
    public const int DefaultMaxLength = 256;

    /// <summary>
    /// The texts of <paramref name="task"/> and their scorer. These tasks have no training set: with
    /// <paramref name="needTrain"/> the error says to distil on unlabeled text instead.
    /// </summary>
    public static TaskData Prepare(TaskSpec task, BertTextTokenizer tokenizer, int maxPositions, bool needTrain)
    {
        if (needTrain)
            throw new ArgumentException($"{task} evaluates sentence embeddings zero-shot and has no training set; distil onto it with unlabeled text (--transfer-data FILES)");
        int maxLength = task.MaxLength ?? Math.Min(DefaultMaxLength, maxPositions);
        if (maxLength > maxPositions) throw new ArgumentException($"max length {maxLength} exceeds the model's {maxPositions} positions");
        EncodedExample Encode(string text)
        {
            var t = tokenizer.Encode(text, null, maxLength);
            return new EncodedExample(t.InputIds, t.TokenTypeIds, -1, float.NaN);
        }
        return task.Name switch
        {
            TaskName.StsEmbed => Sts(task, Encode),
            TaskName.SquadRetrieval => Retrieval(task, Encode),
            TaskName.MrpcEmbed => Mrpc(task, Encode),
            _ => throw new ArgumentException($"{task} is not a sentence-embedding task"),
        };
    }

    static TaskData Make(IReadOnlyList<EncodedExample> eval, Func<List<float[]>, IReadOnlyDictionary<string, double>> score, string primary, string description) => new()
    {
        Train = [], Eval = eval, Score = score, Head = BertTask.SentenceEmbedding, Labels = [], Regression = false,
        PrimaryMetric = primary, Description = description,
    };

    /// <summary>
    /// Both texts of every pair, interleaved (vectors 2i and 2i+1 are pair i's), pairs ordered by their longer text; the
    /// pairs in that order are returned with them.
    /// </summary>
    static (List<EncodedExample> Texts, List<GlueExample> Pairs) Pairs(IEnumerable<GlueExample> pairs, Func<string, EncodedExample> encode)
    {
        var encoded = pairs.Select(p => (Pair: p, A: encode(p.TextA), B: encode(p.TextB ?? throw new InvalidDataException($"line {p.Line}: a pair task's second text is missing"))))
            .OrderBy(x => Math.Max(x.A.InputIds.Length, x.B.InputIds.Length)).ToList();
        return (encoded.SelectMany(x => new[] { x.A, x.B }).ToList(), encoded.Select(x => x.Pair).ToList());
    }

    static double[] PairCosines(List<float[]> vectors, int offset, int count) =>
        Enumerable.Range(0, count).Select(i => EmbeddingMetrics.Cosine(vectors[offset + 2 * i], vectors[offset + 2 * i + 1])).ToArray();

    static TaskData Sts(TaskSpec task, Func<string, EncodedExample> encode)
    {
        var (texts, dev) = Pairs(Glue.Load(GlueTask.StsB, Glue.SplitPath(task.Data, GlueTask.StsB, "dev")), encode);
        var gold = dev.Select(e => e.Score).ToArray();
        return Make(texts, vectors =>
        {
            var (spearman, pearson) = EmbeddingMetrics.Similarity(PairCosines(vectors, 0, dev.Count), gold);
            return new Dictionary<string, double> { ["spearman"] = spearman, ["pearson"] = pearson };
        }, "spearman", $"STS-B dev: {dev.Count:N0} pairs, cosine vs gold score (zero-shot)");
    }

    static TaskData Retrieval(TaskSpec task, Func<string, EncodedExample> encode)
    {
        var questions = Squad.Load(task.Data);
        if (questions.Count == 0) throw new InvalidDataException($"{task.Data}: no questions");
        // Distinct paragraphs, shortest first; each question's relevant document is its own paragraph's index.
        var paragraphs = questions.Select(q => q.Context).Distinct(StringComparer.Ordinal).Select(c => (Text: c, Encoded: encode(c)))
            .OrderBy(p => p.Encoded.InputIds.Length).ToList();
        var index = paragraphs.Select((p, i) => (p.Text, i)).ToDictionary(x => x.Text, x => x.i, StringComparer.Ordinal);
        var asked = questions.Select(q => (Encoded: encode(q.Question), Relevant: index[q.Context])).OrderBy(q => q.Encoded.InputIds.Length).ToList();
        var relevant = asked.Select(q => q.Relevant).ToArray();
        var eval = paragraphs.Select(p => p.Encoded).Concat(asked.Select(q => q.Encoded)).ToList();
        return Make(eval, vectors =>
        {
            var scores = EmbeddingMetrics.Retrieval(vectors.GetRange(paragraphs.Count, asked.Count), vectors.GetRange(0, paragraphs.Count), relevant);
            return new Dictionary<string, double> { ["mrr"] = scores.Mrr, ["recall_at_1"] = scores.RecallAt1, ["recall_at_10"] = scores.RecallAt10 };
        }, "mrr", $"SQuAD retrieval: {questions.Count:N0} questions over {paragraphs.Count:N0} paragraphs (zero-shot)");
    }

    static TaskData Mrpc(TaskSpec task, Func<string, EncodedExample> encode)
    {
        var (eval, train) = Pairs(Glue.Load(GlueTask.Mrpc, Glue.SplitPath(task.Data, GlueTask.Mrpc, "train")), encode);
        var (devTexts, dev) = Pairs(Glue.Load(GlueTask.Mrpc, Glue.SplitPath(task.Data, GlueTask.Mrpc, "dev")), encode);
        eval.AddRange(devTexts);
        return Make(eval, vectors =>
        {
            var threshold = EmbeddingMetrics.BestThreshold(PairCosines(vectors, 0, train.Count), train.Select(e => e.Label).ToArray());
            var predicted = PairCosines(vectors, 2 * train.Count, dev.Count).Select(c => c >= threshold.Threshold ? 1 : 0).ToArray();
            var gold = dev.Select(e => e.Label).ToArray();
            return new Dictionary<string, double>
            {
                ["accuracy"] = Metrics.Accuracy(predicted, gold), ["f1"] = Metrics.F1(predicted, gold), ["threshold"] = threshold.Threshold,
            };
        }, "accuracy", $"MRPC: cosine threshold chosen on {train.Count:N0} train pairs, scored on {dev.Count:N0} dev pairs (zero-shot)");
    }
}
