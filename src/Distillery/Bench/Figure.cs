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
        }
        // Point labels: placed after a first layout (which fixes the axes and so each point's pixel), so that they
        // overlap neither each other nor the markers nor the legend (LabelLayout), with a leader line where a label
        // had to move away from its point. The right margin leaves room for the rightmost point's label (the teacher,
        // on a score-vs-latency plot).
        var labelled = Series.SelectMany((series, s) => series.Points.Where(p => !string.IsNullOrEmpty(p.Label)).Select(p => (Point: p, Color: palette.GetColor(s)))).ToArray();
        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        plot.ShowLegend(LegendAlignment(path));
        if (labelled.Length > 0)
        {
            plot.Axes.Margins(left: 0.05, right: 0.15, bottom: 0.1, top: 0.15);
            PlaceLabels(plot, labelled, width, height);
        }
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    const float LabelFontSize = 11;

    void PlaceLabels(Plot plot, (FigurePoint Point, Color Color)[] labelled, int width, int height)
    {
        // A first render in memory lays the figure out (auto-scaled axes, tick labels, legend); the axes are then
        // frozen so the final render keeps every point at the pixel measured here.
        plot.RenderInMemory(width, height);
        plot.Axes.SetLimits(plot.Axes.GetLimits());
        var data = plot.RenderManager.LastRender.DataRect;
        var bounds = new PixelBox(data.Left, data.Top, data.Width, data.Height);
        const double markerRadius = 6;   // the scatter's MarkerSize 10 is a diameter; a pixel of slack
        var markers = Series.SelectMany(s => s.Points).Select(p =>
        {
            var px = plot.GetPixel(new Coordinates(p.X, p.Y));
            return new PixelBox(px.X - markerRadius, px.Y - markerRadius, 2 * markerRadius, 2 * markerRadius);
        }).ToList();
        using var paint = Paint.NewDisposablePaint();
        var requests = labelled.Select(l =>
        {
            var px = plot.GetPixel(new Coordinates(l.Point.X, l.Point.Y));
            var size = new LabelStyle { Text = l.Point.Label!, FontSize = LabelFontSize }.Measure(paint).Size;
            return new LabelRequest(px.X, px.Y, size.Width + 2, size.Height + 2);
        }).ToArray();
        var placed = LabelLayout.Place(requests, markers, [LegendBox(bounds, paint)], bounds, markerRadius);
        for (int i = 0; i < labelled.Length; i++)
        {
            var (point, color) = labelled[i];
            var (box, leader) = (placed[i].Box, placed[i].NeedsLeader);
            if (leader)
            {
                // From the marker's edge to the nearest point of the label's box.
                var (nx, ny) = box.Nearest(requests[i].X, requests[i].Y);
                double dx = nx - requests[i].X, dy = ny - requests[i].Y, length = Math.Sqrt(dx * dx + dy * dy);
                if (length > markerRadius)
                {
                    var from = plot.GetCoordinates(new Pixel((float)(requests[i].X + dx / length * markerRadius), (float)(requests[i].Y + dy / length * markerRadius)));
                    var to = plot.GetCoordinates(new Pixel((float)nx, (float)ny));
                    var line = plot.Add.Line(from, to);
                    line.LineColor = color.WithAlpha(0.6);
                    line.LineWidth = 1;
                }
            }
            var text = plot.Add.Text(point.Label!, point.X, point.Y);
            text.LabelFontSize = LabelFontSize;
            text.LabelFontColor = color;
            text.LabelAlignment = Alignment.UpperLeft;
            text.LabelOffsetX = (float)(box.Left + 1 - requests[i].X);
            text.LabelOffsetY = (float)(box.Top + 1 - requests[i].Y);
        }
    }

    /// <summary>
    /// Where the legend sits, estimated from its entries' text (ScottPlot does not expose the legend's rectangle): the
    /// labels keep clear of it.
    /// </summary>
    PixelBox LegendBox(PixelBox data, Paint paint)
    {
        double textWidth = Series.Max(s => new LabelStyle { Text = s.Label, FontSize = 14 }.Measure(paint).Size.Width);
        double w = textWidth + 50, h = Series.Count * 21 + 16, margin = 10;
        return Legend switch
        {
            "upper_left" => new(data.Left, data.Top, w + margin, h + margin),
            "lower_right" => new(data.Right - w - margin, data.Bottom - h - margin, w + margin, h + margin),
            "lower_left" => new(data.Left, data.Bottom - h - margin, w + margin, h + margin),
            _ => new(data.Right - w - margin, data.Top, w + margin, h + margin),
        };
    }
}
