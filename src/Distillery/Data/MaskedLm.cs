using Distillery.Text;

namespace Distillery.Data;

/// <summary>
/// Masked-LM corruption (BERT, Devlin et al. 2019, §3.1): choose 15% of the positions (never special tokens); of those,
/// 80% become [MASK], 10% a random token, 10% stay. Defaults are the paper's.
/// </summary>
public sealed record MaskingOptions
{
    /// <summary>Fraction of (non-special) positions to predict.</summary>
    public double Probability { get; init; } = 0.15;
    /// <summary>Of the chosen positions, the fraction replaced by [MASK].</summary>
    public double MaskFraction { get; init; } = 0.8;
    /// <summary>Of the chosen positions, the fraction replaced by a random token (the rest stay unchanged).</summary>
    public double RandomFraction { get; init; } = 0.1;
    /// <summary>Choose whole words: all pieces of a word ("un", "##aff", "##able") are predicted together.</summary>
    public bool WholeWord { get; init; }

    /// <summary>Checks the fractions; throws naming the field.</summary>
    public MaskingOptions Validate()
    {
        if (Probability is <= 0 or >= 1) throw new ArgumentException($"mask probability must be in (0, 1) (got {Probability})");
        if (MaskFraction < 0 || RandomFraction < 0 || MaskFraction + RandomFraction > 1)
            throw new ArgumentException($"mask fraction {MaskFraction} + random fraction {RandomFraction} must be fractions summing to at most 1");
        return this;
    }
}

/// <summary>Applies <see cref="MaskingOptions"/> to token ids.</summary>
public static class MlmMasking
{
    /// <summary>Label value of positions that are not predicted (ignored by the loss), as PyTorch's cross-entropy.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>
    /// Corrupts <paramref name="ids"/> in place and writes the targets to <paramref name="labels"/> (the original id at
    /// predicted positions, <see cref="IgnoreIndex"/> elsewhere). As Google's create_pretraining_data: the number of
    /// predictions is max(1, round(n·p)) of the n candidate positions, the candidates (tokens, or whole words) are taken in
    /// a random order until that many positions are covered. Returns the number of predicted positions.
    /// </summary>
    public static int Apply(Span<int> ids, Span<int> labels, BertTextTokenizer tokenizer, MaskingOptions options, Random random)
    {
        labels.Fill(IgnoreIndex);
        // Candidate units: runs of positions [start, end) — a token, or a word with its "##" continuations.
        var units = new List<(int Start, int End)>();
        int candidates = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            if (tokenizer.IsSpecial(ids[i])) continue;
            candidates++;
            if (options.WholeWord && units.Count > 0 && units[^1].End == i && tokenizer.IsContinuation(ids[i]))
                units[^1] = (units[^1].Start, i + 1);
            else units.Add((i, i + 1));
        }
        if (candidates == 0) return 0;
        int budget = Math.Max(1, (int)Math.Round(candidates * options.Probability, MidpointRounding.AwayFromZero));
        // Fisher–Yates over the units, then take whole units while they fit the budget.
        for (int i = units.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (units[i], units[j]) = (units[j], units[i]);
        }
        int predicted = 0;
        foreach (var (start, end) in units)
        {
            if (predicted >= budget) break;
            if (predicted + (end - start) > budget) continue;   // a word that would overshoot is skipped, as BERT's WWM
            for (int p = start; p < end; p++)
            {
                labels[p] = ids[p];
                double draw = random.NextDouble();
                if (draw < options.MaskFraction) ids[p] = tokenizer.MaskId;
                else if (draw < options.MaskFraction + options.RandomFraction) ids[p] = random.Next(tokenizer.VocabSize);
                predicted++;
            }
        }
        return predicted;
    }
}
