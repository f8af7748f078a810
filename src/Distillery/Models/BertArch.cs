using System.Text.RegularExpressions;

namespace Distillery.Models;

/// <summary>
/// Compact architecture names: <c>L4-H256</c> (Well-Read Students' grid: heads = H/64, FFN = 4H), optionally with
/// <c>-A4</c> (heads) and <c>-F1024</c> (FFN width), e.g. <c>L4-H128-A2-F512</c>.
/// </summary>
public static partial class BertArch
{
    /// <summary>The 24 miniature sizes of "Well-Read Students Learn Better" (Turc et al., 2019): L × H.</summary>
    public static readonly IReadOnlyList<int> GridLayers = [2, 4, 6, 8, 10, 12];
    /// <summary>Hidden sizes of the grid.</summary>
    public static readonly IReadOnlyList<int> GridHidden = [128, 256, 512, 768];

    /// <summary>All 24 grid names, L-major.</summary>
    public static IEnumerable<string> GridNames => GridLayers.SelectMany(l => GridHidden.Select(h => $"L{l}-H{h}"));

    [GeneratedRegex(@"^L(\d{1,3})-H(\d{1,5})(?:-A(\d{1,3}))?(?:-F(\d{1,6}))?$", RegexOptions.IgnoreCase)]
    private static partial Regex Pattern();

    /// <summary>Parses a name into a uniform config; throws <see cref="FormatException"/> with the expected form.</summary>
    public static BertConfig Parse(string name, int vocabSize = 30522)
    {
        var m = Pattern().Match(name.Trim());
        if (!m.Success) throw new FormatException($"architecture \"{name}\" is not of the form L4-H256 (optionally -A4 heads, -F1024 FFN width)");
        int layers = int.Parse(m.Groups[1].Value), hidden = int.Parse(m.Groups[2].Value);
        int? heads = m.Groups[3].Success ? int.Parse(m.Groups[3].Value) : null;
        int? ffn = m.Groups[4].Success ? int.Parse(m.Groups[4].Value) : null;
        if (heads == null && hidden % 64 != 0) throw new FormatException($"architecture \"{name}\": hidden {hidden} is not a multiple of 64; give heads with -A");
        return BertConfig.Create(layers, hidden, heads, ffn, vocabSize).Validate($"architecture {name}");
    }

    /// <summary>The short name of a uniform config (with -A/-F only where they differ from the grid's rule).</summary>
    public static string NameOf(BertConfig c)
    {
        // Pruned models carry per-layer head counts and FFN widths: name what the layers have, not the config's
        // pre-pruning fields; widths that differ between layers are listed ("-F[40,22,0]").
        string name = $"L{c.NumHiddenLayers}-H{c.HiddenSize}";
        var heads = Enumerable.Range(0, c.NumHiddenLayers).Select(c.HeadsInLayer).ToList();
        var ffn = Enumerable.Range(0, c.NumHiddenLayers).Select(c.IntermediateSizeOf).ToList();
        string Part(List<int> values) => values.Count > 0 && values.All(v => v == values[0]) ? values[0].ToString() : $"[{string.Join(",", values)}]";
        int headsDefault = Math.Max(1, c.HiddenSize / 64), ffnDefault = 4 * c.HiddenSize;
        if (!(heads.Count == 0 ? c.NumAttentionHeads == headsDefault : heads.All(h => h == headsDefault))) name += $"-A{(heads.Count == 0 ? c.NumAttentionHeads.ToString() : Part(heads))}";
        if (!(ffn.Count == 0 ? c.IntermediateSize == ffnDefault : ffn.All(f => f == ffnDefault))) name += $"-F{(ffn.Count == 0 ? c.IntermediateSize.ToString() : Part(ffn))}";
        return name;
    }
}
