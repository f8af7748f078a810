namespace Distillery.Evaluation;

/// <summary>
/// The metrics GLUE reports, computed as the reference implementations do (scikit-learn <c>accuracy_score</c>,
/// <c>f1_score</c>, <c>matthews_corrcoef</c>; SciPy <c>pearsonr</c>, <c>spearmanr</c>).
/// </summary>
/// <remarks>
/// Every method throws <see cref="ArgumentException"/> when the two lists differ in length or are empty
/// (<see cref="Pearson"/> and <see cref="Spearman"/> need at least two points, as SciPy does).
/// </remarks>
public static class Metrics
{
    /// <summary>Fraction of positions where <paramref name="predicted"/> equals <paramref name="gold"/>.</summary>
    public static double Accuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> gold)
    {
        int n = CheckLengths(predicted, gold);
        int correct = 0;
        for (int i = 0; i < n; i++) if (predicted[i] == gold[i]) correct++;
        return (double)correct / n;
    }

    /// <summary>
    /// Binary F1 of the class <paramref name="positive"/>: 2·TP / (2·TP + FP + FN). 0 when there is no true positive
    /// (scikit-learn's value, also when neither list contains the positive class).
    /// </summary>
    public static double F1(IReadOnlyList<int> predicted, IReadOnlyList<int> gold, int positive = 1)
    {
        int n = CheckLengths(predicted, gold);
        long tp = 0, fp = 0, fn = 0;
        for (int i = 0; i < n; i++)
        {
            bool p = predicted[i] == positive, g = gold[i] == positive;
            if (p && g) tp++;
            else if (p) fp++;
            else if (g) fn++;
        }
        return tp == 0 ? 0.0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    /// <summary>
    /// Matthews correlation coefficient, by the general multi-class formula (Gorodkin's R_K, as scikit-learn):
    /// (c·s − Σ p_k·t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)) with c the correct count, s the total, p_k and t_k how often
    /// class k is predicted and true. For two classes it equals (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
    /// 0 when undefined (one of the lists holds a single class), as scikit-learn.
    /// </summary>
    public static double MatthewsCorrelation(IReadOnlyList<int> predicted, IReadOnlyList<int> gold)
    {
        int n = CheckLengths(predicted, gold);
        var predCounts = new Dictionary<int, long>();
        var goldCounts = new Dictionary<int, long>();
        long correct = 0;
        for (int i = 0; i < n; i++)
        {
            int p = predicted[i], g = gold[i];
            predCounts[p] = predCounts.GetValueOrDefault(p) + 1;
            goldCounts[g] = goldCounts.GetValueOrDefault(g) + 1;
            if (p == g) correct++;
        }
        double s = n;
        double sumPT = 0, sumPP = 0, sumTT = 0;
        foreach (var (label, p) in predCounts)
        {
            sumPP += (double)p * p;
            if (goldCounts.TryGetValue(label, out long t)) sumPT += (double)p * t;
        }
        foreach (long t in goldCounts.Values) sumTT += (double)t * t;
        double covPT = correct * s - sumPT;
        double covPP = s * s - sumPP;
        double covTT = s * s - sumTT;
        if (covPP * covTT == 0) return 0.0;
        return covPT / Math.Sqrt(covPP * covTT);
    }

    /// <summary>
    /// Pearson's r (SciPy <c>pearsonr</c>'s statistic): centred cross product over the product of the centred norms,
    /// clipped to [−1, 1]. NaN when either list is constant (undefined, as SciPy) or holds a NaN.
    /// </summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        int n = CheckLengths(x, y);
        if (n < 2) throw new ArgumentException($"Pearson and Spearman need at least 2 points, got {n}");
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
        mx /= n;
        my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if (sxx == 0 || syy == 0) return double.NaN;
        double r = sxy / (Math.Sqrt(sxx) * Math.Sqrt(syy));
        return double.IsNaN(r) ? r : Math.Clamp(r, -1.0, 1.0);
    }

    /// <summary>
    /// Spearman's ρ (SciPy <c>spearmanr</c>): Pearson's r of the ranks, tied values sharing the mean of the ranks they
    /// span (<c>rankdata(method="average")</c>). NaN when either list is constant or holds a NaN.
    /// </summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        int n = CheckLengths(x, y);
        if (n < 2) throw new ArgumentException($"Pearson and Spearman need at least 2 points, got {n}");
        for (int i = 0; i < n; i++) if (double.IsNaN(x[i]) || double.IsNaN(y[i])) return double.NaN;
        return Pearson(AverageRanks(x), AverageRanks(y));
    }

    /// <summary>1-based ranks; a run of equal values gets the mean of the ranks it occupies.</summary>
    internal static double[] AverageRanks(IReadOnlyList<double> values)
    {
        int n = values.Count;
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Array.Sort(order, (a, b) => values[a].CompareTo(values[b]));
        var ranks = new double[n];
        for (int start = 0; start < n;)
        {
            int end = start + 1;
            while (end < n && values[order[end]] == values[order[start]]) end++;
            double rank = (start + 1 + end) / 2.0; // mean of ranks start+1 .. end
            for (int k = start; k < end; k++) ranks[order[k]] = rank;
            start = end;
        }
        return ranks;
    }

    static int CheckLengths<T>(IReadOnlyList<T> a, IReadOnlyList<T> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count != b.Count) throw new ArgumentException($"lists differ in length ({a.Count} and {b.Count})");
        if (a.Count == 0) throw new ArgumentException("lists are empty");
        return a.Count;
    }
}
