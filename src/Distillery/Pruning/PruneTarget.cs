// The width a pruning run (or a method that prunes while distilling) ends at, given as an architecture name or as a parameter count.
// Names are BertArch's (L4-H128-F512, optionally -A2); unlike BertArch, the hidden size need not be a multiple of 64,
// because pruning keeps the teacher's head size d: without -A, the head count shrinks in proportion to the width,
// round(h·H'/H) (halves up, at least 1), which for d = 64 teachers is BertArch's own H'/64 rule. Without -F, the FFN width
// keeps the teacher's ratio F/H.
// A parameter count (9.6M, 9600000, 1.2e7) keeps the teacher's depth and picks the widest H' whose model, with heads
// and FFN scaled as above, has at most that many parameters (counted exactly as ParameterCounts counts a model with
// the teacher's head); every width is checked, so the choice is the widest that fits, not an approximation.
using System.Globalization;
using System.Text.RegularExpressions;
using Distillery.Models;

namespace Distillery.Pruning;

/// <summary>The resolved target: depth, hidden width, and heads and FFN width of every layer.</summary>
/// <param name="Layers">Layers L'.</param>
/// <param name="Hidden">Hidden size H'.</param>
/// <param name="Heads">Heads per layer.</param>
/// <param name="Ffn">FFN width per layer.</param>
public sealed record TargetWidths(int Layers, int Hidden, int Heads, int Ffn)
{
    /// <summary>L4-H128-A2-F512.</summary>
    public override string ToString() => $"L{Layers}-H{Hidden}-A{Heads}-F{Ffn}";
}

/// <summary>A pruning target as written: an architecture name or a parameter count.</summary>
public sealed partial record PruneTarget
{
    /// <summary>Layers, hidden size, optional heads and optional FFN width of a named target; null for a parameter count.</summary>
    public (int Layers, int Hidden, int? Heads, int? Ffn)? Arch { get; private init; }
    /// <summary>The parameter budget, for a count target.</summary>
    public long? Parameters { get; private init; }
    /// <summary>The text it was parsed from.</summary>
    public string Text { get; private init; } = "";

    [GeneratedRegex(@"^L(\d{1,3})-H(\d{1,5})(?:-A(\d{1,3}))?(?:-F(\d{1,6}))?$", RegexOptions.IgnoreCase)]
    private static partial Regex ArchPattern();

    [GeneratedRegex(@"^(\d+(?:\.\d+)?(?:e\d+)?)\s*([KMB]?)$", RegexOptions.IgnoreCase)]
    private static partial Regex CountPattern();

    /// <summary>Parses L4-H128-F512 (-A heads optional) or a parameter count (9.6M, 9600000, 1.2e7); throws naming the forms.</summary>
    public static PruneTarget Parse(string text)
    {
        string t = text.Trim().Replace(",", "").Replace("_", "");
        var m = ArchPattern().Match(t);
        if (m.Success)
        {
            int? Group(int i) => m.Groups[i].Success ? int.Parse(m.Groups[i].Value, CultureInfo.InvariantCulture) : null;
            return new PruneTarget { Arch = (Group(1)!.Value, Group(2)!.Value, Group(3), Group(4)), Text = text };
        }
        var c = CountPattern().Match(t);
        if (c.Success && double.TryParse(c.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double n))
        {
            double scale = c.Groups[2].Value.ToUpperInvariant() switch { "K" => 1e3, "M" => 1e6, "B" => 1e9, _ => 1 };
            long count = (long)Math.Round(n * scale);
            if (count < 1) throw new FormatException($"target \"{text}\": a parameter count must be positive");
            return new PruneTarget { Parameters = count, Text = text };
        }
        throw new FormatException($"target \"{text}\" is neither an architecture (L4-H128-F512, optionally -A2) nor a parameter count (9.6M, 9600000)");
    }

    /// <summary>
    /// The widths this target means for <paramref name="teacher"/> carrying head <paramref name="task"/>. A target that
    /// is not smaller than the teacher where it must be (wider, more heads, a wider FFN, more layers, more parameters)
    /// is one line.
    /// </summary>
    public TargetWidths Resolve(BertConfig teacher, BertTask task)
    {
        int minHeads = Enumerable.Range(0, teacher.NumHiddenLayers).Select(teacher.HeadsInLayer).DefaultIfEmpty(teacher.NumAttentionHeads).Min();
        int minFfn = Enumerable.Range(0, teacher.NumHiddenLayers).Select(teacher.IntermediateSizeOf).DefaultIfEmpty(teacher.IntermediateSize).Min();
        if (Arch is { } arch)
        {
            var (layers, hidden, heads, ffn) = arch;
            if (layers > teacher.NumHiddenLayers) throw new ArgumentException($"target {Text} has {layers} layers, more than the teacher's {teacher.NumHiddenLayers}");
            if (layers < 1) throw new ArgumentException($"target {Text} needs at least one layer");
            if (hidden > teacher.HiddenSize) throw new ArgumentException($"target {Text} is wider than the teacher: hidden {hidden} > {teacher.HiddenSize}");
            if (hidden < 1) throw new ArgumentException($"target {Text} needs a hidden size of at least 1");
            int h = heads ?? ScaledHeads(teacher, minHeads, hidden);
            if (h > minHeads) throw new ArgumentException($"target {Text} has {h} heads, more than the teacher's {minHeads}");
            int f = ffn ?? ScaledFfn(teacher, minFfn, hidden);
            if (f > minFfn) throw new ArgumentException($"target {Text} has an FFN width of {f}, wider than the teacher's {minFfn}");
            return new TargetWidths(layers, hidden, h, f);
        }
        long budget = Parameters!.Value;
        long full = Count(teacher, task, teacher.NumHiddenLayers, teacher.HiddenSize, minHeads, minFfn);
        if (budget >= full) throw new ArgumentException($"target of {budget:N0} parameters is not below the teacher's {full:N0} (at its narrowest layer widths)");
        for (int hidden = teacher.HiddenSize - 1; hidden >= 1; hidden--)
        {
            int h = ScaledHeads(teacher, minHeads, hidden), f = ScaledFfn(teacher, minFfn, hidden);
            if (Count(teacher, task, teacher.NumHiddenLayers, hidden, h, f) <= budget) return new TargetWidths(teacher.NumHiddenLayers, hidden, h, f);
        }
        throw new ArgumentException($"target of {budget:N0} parameters is below the smallest model of this depth ({Count(teacher, task, teacher.NumHiddenLayers, 1, 1, ScaledFfn(teacher, minFfn, 1)):N0} at hidden 1)");
    }

    static int ScaledHeads(BertConfig teacher, int heads, int hidden) => Math.Clamp((int)Math.Round((double)heads * hidden / teacher.HiddenSize, MidpointRounding.AwayFromZero), 1, Math.Max(1, heads));
    static int ScaledFfn(BertConfig teacher, int ffn, int hidden) => (int)Math.Round((double)ffn * hidden / teacher.HiddenSize, MidpointRounding.AwayFromZero);

    /// <summary>
    /// Parameters of a uniform model of the teacher's vocabulary, positions, head size and head <paramref name="task"/>
    /// with the given widths, counted as <see cref="ParameterCounts"/> counts (tied MLM decoder once).
    /// </summary>
    public static long Count(BertConfig teacher, BertTask task, int layers, int hidden, int heads, int ffn)
    {
        long H = hidden, a = (long)heads * teacher.HeadSize, F = ffn;
        long embeddings = (teacher.VocabSize + teacher.MaxPositionEmbeddings + teacher.TypeVocabSize) * H + 2 * H;
        long layer = 3 * (H * a + a) + (a * H + H) + 2 * H   // Q, K, V; attention output and its LayerNorm
                   + (H * F + F) + (F * H + H) + 2 * H;        // FFN in, out and its LayerNorm
        long head = task switch
        {
            BertTask.SequenceClassification => (H * H + H) + (teacher.NumLabels * H + teacher.NumLabels),   // pooler, classifier
            BertTask.QuestionAnswering => 2 * H + 2,
            BertTask.SentenceEmbedding => 0,                                                                 // pooling has no weights
            _ => (H * H + H) + 2 * H + teacher.VocabSize,                                                    // transform, LayerNorm, bias
        };
        return embeddings + layers * layer + head;
    }
}
