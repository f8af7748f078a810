using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.IO;
using ScottPlot;

namespace Distillery.Bench;

/// <summary>One point of a <see cref="FigureSeries"/>: a mean, its spread (e.g. the std over seeds), an optional label.</summary>
public sealed record FigurePoint
{
    /// <summary>Horizontal position.</summary>
    public required double X { get; init; }
    /// <summary>Vertical position (e.g. the mean over seeds).</summary>
    public required double Y { get; init; }
    /// <summary>Half-height of the vertical error bar (e.g. the std over seeds); null or 0: none.</summary>
    public double? YError { get; init; }
    /// <summary>Text beside the point.</summary>
    public string? Label { get; init; }
}

/// <summary>A named set of points drawn in one colour, joined by lines or not.</summary>
public sealed record FigureSeries
{
    /// <summary>Legend text.</summary>
    public required string Label { get; init; }
    /// <summary>Join the points by lines in their order (a curve over steps) rather than scatter them.</summary>
    public bool Lines { get; init; }
    /// <summary>The points.</summary>
    public required IReadOnlyList<FigurePoint> Points { get; init; }
}

/// <summary>
/// A results figure as data: what <c>distillery plot</c> draws. The results tables' generators (bench/*-table.py) write
/// one per picture from the run records, so every plot in docs/results.md regenerates from committed JSON.
/// </summary>
/// <example><code>
/// { "title": "SST-2: score vs latency", "x_label": "batch-1 ms", "y_label": "accuracy (%)",
///   "series": [ { "label": "kd", "points": [ { "x": 9.1, "y": 86.2, "y_error": 0.4 } ] } ] }
/// </code></example>
public sealed record Figure
{
    /// <summary>Title above the plot.</summary>
    public required string Title { get; init; }
    /// <summary>Horizontal axis label.</summary>
    public required string XLabel { get; init; }
    /// <summary>Vertical axis label.</summary>
    public required string YLabel { get; init; }
    /// <summary>Series, one colour each (up to 10 distinct colours, then they repeat).</summary>
    public required IReadOnlyList<FigureSeries> Series { get; init; }
    /// <summary>Where the legend sits: upper_right (default), upper_left, lower_right, lower_left.</summary>
    public string Legend { get; init; } = "upper_right";

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first thing that cannot be drawn.</summary>
    public Figure Validate(string where)
    {
        if (Series is null || Series.Count == 0) throw new InvalidDataException($"{where}: no series to draw");
        for (int s = 0; s < Series.Count; s++)
        {
            var series = Series[s] ?? throw new InvalidDataException($"{where}: series {s} is null");
            if (series.Points is null || series.Points.Count == 0) throw new InvalidDataException($"{where}: series \"{series.Label}\" has no points");
            for (int p = 0; p < series.Points.Count; p++)
            {
                var point = series.Points[p] ?? throw new InvalidDataException($"{where}: series \"{series.Label}\" point {p} is null");
                if (!double.IsFinite(point.X) || !double.IsFinite(point.Y) || point.YError is { } e && (!double.IsFinite(e) || e < 0))
                    throw new InvalidDataException($"{where}: series \"{series.Label}\" point {p} is not finite (x {point.X}, y {point.Y}, y_error {point.YError})");
            }
        }
        _ = LegendAlignment(where);
        return this;
    }

    Alignment LegendAlignment(string where) => Legend switch
    {
        "upper_right" => Alignment.UpperRight,
        "upper_left" => Alignment.UpperLeft,
        "lower_right" => Alignment.LowerRight,
        "lower_left" => Alignment.LowerLeft,
        _ => throw new InvalidDataException($"{where}: legend \"{Legend}\" is not one of upper_right, upper_left, lower_right, lower_left"),
    };

    /// <summary>Reads a figure file strictly (unknown keys, missing fields and non-finite numbers are one clear error).</summary>
    public static Figure Read(string path)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
        try { return StrictJson.Deserialize<Figure>(node, path).Validate(path); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a figure ({e.Message})"); }
    }

    /// <summary>Draws the figure as a PNG of <paramref name="width"/> × <paramref name="height"/> pixels, written atomically.</summary>
    public void SavePng(string path, int width = 900, int height = 560)
    {
        Validate(path);
        if (width < 100 || height < 100) throw new ArgumentOutOfRangeException(nameof(width), "the plot needs at least 100 × 100 pixels");
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int s = 0; s < Series.Count; s++)
        {
            var series = Series[s];
            var color = palette.GetColor(s);
            double[] xs = series.Points.Select(p => p.X).ToArray(), ys = series.Points.Select(p => p.Y).ToArray();
            var scatter = plot.Add.Scatter(xs, ys, color);
            scatter.LineWidth = series.Lines ? 2 : 0;
            scatter.MarkerSize = series.Lines ? 5 : 10;
            scatter.LegendText = series.Label;
            if (series.Points.Any(p => p.YError is > 0))
            {
                var bars = plot.Add.ErrorBar(xs, ys, series.Points.Select(p => p.YError ?? 0).ToArray());
                bars.Color = color;
            }
            foreach (var p in series.Points.Where(p => !string.IsNullOrEmpty(p.Label)))
            {
                var text = plot.Add.Text(p.Label!, p.X, p.Y);
                text.LabelFontSize = 11;
                text.LabelFontColor = color;
                text.LabelOffsetX = 6;
                text.LabelOffsetY = -6;
            }
        }
        // Point labels are drawn to the right of their point (LabelOffsetX): widen the right margin so the label of the
        // rightmost point (the teacher, on a score-vs-latency plot) is not cut off at the frame.
        if (Series.Any(s => s.Points.Any(p => !string.IsNullOrEmpty(p.Label))))
            plot.Axes.Margins(left: 0.05, right: 0.15, bottom: 0.1, top: 0.15);
        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        plot.ShowLegend(LegendAlignment(path));
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }
}
