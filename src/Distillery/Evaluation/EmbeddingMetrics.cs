// Metrics of sentence embeddings, as sentence-transformers' evaluators compute them:
//   similarity      Spearman (and Pearson) correlation of cos(u, v) with gold scores (EmbeddingSimilarityEvaluator)
//   retrieval       rank of the gold document among all by cosine: recall@k = share of queries with it in the top k,
//                   MRR = mean of 1 / rank (InformationRetrievalEvaluator, one relevant document per query, no cut-off)
//   pair labels     a cosine threshold chosen on one split, applied to another (BinaryClassificationEvaluator picks it
//                   on the split it reports; here the threshold comes from train and the score from dev)
namespace Distillery.Evaluation;

/// <summary>Retrieval quality over a set of queries, each with one relevant document.</summary>
/// <param name="RecallAt1">Share of queries whose relevant document ranks first.</param>
/// <param name="RecallAt10">Share of queries whose relevant document ranks in the top 10.</param>
/// <param name="Mrr">Mean reciprocal rank of the relevant document (no cut-off).</param>
public sealed record RetrievalScores(double RecallAt1, double RecallAt10, double Mrr);

/// <summary>A decision threshold on cosine similarity: pairs at or above it are positive.</summary>
/// <param name="Threshold">The cosine threshold.</param>
/// <param name="Accuracy">Accuracy of the rule on the split it was chosen on.</param>
public sealed record CosineThreshold(double Threshold, double Accuracy);

/// <summary>Similarity, retrieval and threshold metrics over embedding vectors.</summary>
public static class EmbeddingMetrics
{
    /// <summary>cos(a, b) = a·b / (‖a‖ ‖b‖); NaN when either vector is all zeros.</summary>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"vectors of {a.Length} and {b.Length} dimensions");
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return na == 0 || nb == 0 ? double.NaN : dot / Math.Sqrt(na * nb);
    }

    /// <summary>Spearman and Pearson correlation of the pairs' cosine similarities with <paramref name="gold"/> scores.</summary>
    public static (double Spearman, double Pearson) Similarity(IReadOnlyList<double> cosines, IReadOnlyList<double> gold) =>
        (Metrics.Spearman(cosines, gold), Metrics.Pearson(cosines, gold));

    /// <summary>
    /// Ranks every document for every query by cosine similarity; <paramref name="relevant"/>[q] is the index of query
    /// q's relevant document. Ties rank the relevant document after every document scoring the same (pessimistic).
    /// </summary>
    public static RetrievalScores Retrieval(IReadOnlyList<float[]> queries, IReadOnlyList<float[]> documents, IReadOnlyList<int> relevant)
    {
        if (queries.Count != relevant.Count) throw new ArgumentException($"{queries.Count} queries but {relevant.Count} relevant indices");
        if (queries.Count == 0 || documents.Count == 0) throw new ArgumentException("retrieval needs at least one query and one document");
        var norms = documents.Select(d => Math.Sqrt(d.Sum(x => (double)x * x))).ToArray();
        int top1 = 0, top10 = 0;
        double reciprocal = 0;
        var rankCounts = new int[queries.Count];
        Parallel.For(0, queries.Count, q =>
        {
            int gold = relevant[q];
            if (gold < 0 || gold >= documents.Count) throw new ArgumentException($"query {q}: relevant document {gold} is not among {documents.Count}");
            var query = queries[q];
            double goldScore = Score(query, documents[gold], norms[gold]);
            int better = 0;
            for (int d = 0; d < documents.Count; d++)
                if (d != gold && Score(query, documents[d], norms[d]) >= goldScore) better++;
            rankCounts[q] = better + 1;
        });
        foreach (int rank in rankCounts)
        {
            if (rank == 1) top1++;
            if (rank <= 10) top10++;
            reciprocal += 1.0 / rank;
        }
        return new RetrievalScores((double)top1 / queries.Count, (double)top10 / queries.Count, reciprocal / queries.Count);
    }

    /// <summary>q·d / ‖d‖ (the query's own norm does not change its ranking); NaN-free: a zero document scores 0.</summary>
    static double Score(float[] query, float[] document, double norm)
    {
        double dot = 0;
        for (int i = 0; i < query.Length; i++) dot += (double)query[i] * document[i];
        return norm == 0 ? 0 : dot / norm;
    }

    /// <summary>
    /// The cosine threshold that maximises accuracy on (<paramref name="cosines"/>, <paramref name="labels"/>: 1 positive,
    /// 0 negative): every midpoint between consecutive distinct cosines is tried, plus "all positive" and "all negative".
    /// </summary>
    public static CosineThreshold BestThreshold(IReadOnlyList<double> cosines, IReadOnlyList<int> labels)
    {
        if (cosines.Count != labels.Count || cosines.Count == 0) throw new ArgumentException("give one label per cosine, at least one");
        var order = Enumerable.Range(0, cosines.Count).OrderByDescending(i => cosines[i]).ToArray();
        int positives = labels.Count(l => l == 1);
        // Threshold above everything: all predicted negative, correct = the negatives.
        int correct = cosines.Count - positives, bestCorrect = correct;
        double best = cosines[order[0]] + 1e-6;
        for (int k = 0; k < order.Length; k++)
        {
            correct += labels[order[k]] == 1 ? 1 : -1;   // order[k] moves to predicted positive
            bool boundary = k == order.Length - 1 || cosines[order[k + 1]] < cosines[order[k]];
            if (boundary && correct > bestCorrect)
            {
                bestCorrect = correct;
                best = k == order.Length - 1 ? cosines[order[k]] - 1e-6 : (cosines[order[k]] + cosines[order[k + 1]]) / 2;
            }
        }
        return new CosineThreshold(best, (double)bestCorrect / cosines.Count);
    }
}
