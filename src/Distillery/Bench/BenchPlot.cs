using Distillery.IO;
using ScottPlot;

namespace Distillery.Bench;

/// <summary>The bench table as a picture: dev score against batch-1 latency, one labelled point per model × backend.</summary>
public static class BenchPlot
{
    /// <summary>
    /// Writes a PNG scatter plot of each result's primary dev score (y) against its median batch-1 latency in ms (x):
    /// one colour and legend entry per backend, each point labelled with its model. Up and to the left is better.
    /// Rows without a score (a peer graph without a classifier) are left out.
    /// The file is written atomically.
    /// </summary>
    public static void SavePng(IReadOnlyList<BenchResult> results, string path, string task, int width = 1000, int height = 650)
    {
        ArgumentNullException.ThrowIfNull(results);
        results = results.Where(r => double.IsFinite(r.Score)).ToList();   // an unscored row (a peer graph without a classifier) has no place on the score axis
        if (results.Count == 0) throw new ArgumentException("nothing to plot: no scored bench results");
        if (width < 100 || height < 100) throw new ArgumentOutOfRangeException(nameof(width), "the plot needs at least 100 × 100 pixels");
        string metric = results[0].PrimaryMetric;
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var shortNames = ShortNames(results.Select(r => r.Model).Distinct().ToList());
        foreach (var (backend, index) in results.Select(r => r.Backend).Distinct().Select((b, i) => (b, i)))
        {
            var rows = results.Where(r => r.Backend == backend).ToList();
            var color = palette.GetColor(index);
            var scatter = plot.Add.ScatterPoints(rows.Select(r => r.Batch1.MedianMs).ToArray(), rows.Select(r => Scale(r.Score)).ToArray(), color);
            scatter.MarkerSize = 11;
            scatter.LegendText = BenchBackends.Label(backend, Runtime.CpuFeatures.Current);
            foreach (var r in rows)
            {
                var label = plot.Add.Text(shortNames[r.Model], r.Batch1.MedianMs, Scale(r.Score));
                label.LabelFontSize = 12;
                label.LabelFontColor = color;
                label.LabelOffsetX = 8;
                label.LabelOffsetY = -8;
            }
        }
        plot.Title($"{task}: dev {metric} vs CPU latency (batch 1, {results[0].Batch1.SeqLength} tokens)");
        plot.XLabel("batch-1 latency, median ms (lower is better)");
        plot.YLabel($"dev {metric}{(results.All(r => Math.Abs(r.Score) <= 1) ? " (%)" : "")}");
        plot.ShowLegend(Alignment.LowerRight);
        // Room for the labels right of the last point and above the highest.
        plot.Axes.AutoScale();
        var limits = plot.Axes.GetLimits();
        plot.Axes.SetLimits(Math.Min(0, limits.Left), limits.Right + 0.25 * Math.Max(limits.HorizontalSpan, 1e-3),
            limits.Bottom - 0.1 * Math.Max(limits.VerticalSpan, 1), limits.Top + 0.1 * Math.Max(limits.VerticalSpan, 1));
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    /// <summary>Scores in [0, 1] as percentages, as the table shows them.</summary>
    private static double Scale(double score) => Math.Abs(score) <= 1 ? 100 * score : score;

    /// <summary>Model paths shortened to their last folder, or last two when that is ambiguous (runs/x/final).</summary>
    private static Dictionary<string, string> ShortNames(IReadOnlyList<string> models)
    {
        for (int parts = 1; parts <= 4; parts++)
        {
            var names = models.ToDictionary(m => m, m => string.Join('/', m.TrimEnd('/', '\\').Split('/', '\\').TakeLast(parts)));
            if (names.Values.Distinct().Count() == models.Count) return names;
        }
        return models.ToDictionary(m => m, m => m);
    }
}
