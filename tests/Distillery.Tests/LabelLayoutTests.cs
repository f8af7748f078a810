using Distillery.Bench;

namespace Distillery.Tests;

/// <summary>Point labels on the results plots: no label over another, over a marker, over the legend or off the plot.</summary>
public sealed class LabelLayoutTests
{
    static readonly PixelBox Bounds = new(0, 0, 800, 500);
    const double Radius = 6;

    static PixelBox Marker(double x, double y) => new(x - Radius, y - Radius, 2 * Radius, 2 * Radius);

    static PlacedLabel[] Place((double X, double Y)[] points, double width = 60, params PixelBox[] obstacles) =>
        LabelLayout.Place(points.Select(p => new LabelRequest(p.X, p.Y, width, 14)).ToArray(),
            points.Select(p => Marker(p.X, p.Y)).ToArray(), obstacles, Bounds, Radius);

    static void AssertClean(PlacedLabel[] placed, (double X, double Y)[] points, params PixelBox[] obstacles)
    {
        for (int i = 0; i < placed.Length; i++)
        {
            var box = placed[i].Box;
            Assert.Equal(0, box.AreaOutside(Bounds));
            for (int j = 0; j < placed.Length; j++)
                if (j != i) Assert.Equal(0, box.OverlapArea(placed[j].Box));
            foreach (var p in points) Assert.Equal(0, box.OverlapArea(Marker(p.X, p.Y)));
            foreach (var o in obstacles) Assert.Equal(0, box.OverlapArea(o));
        }
    }

    [Fact]
    public void SeparatePointsGetTheirLabelOnTheRightWithoutALeader()
    {
        (double, double)[] points = [(100, 100), (300, 200), (500, 400)];
        var placed = Place(points);
        AssertClean(placed, points);
        for (int i = 0; i < points.Length; i++)
        {
            Assert.False(placed[i].NeedsLeader);
            Assert.True(placed[i].Box.Left > points[i].Item1);
            Assert.InRange(placed[i].Box.Top + placed[i].Box.Height / 2, points[i].Item2 - 1, points[i].Item2 + 1);
        }
    }

    [Fact]
    public void APointAtTheRightEdgeGetsItsLabelOnTheLeft()
    {
        (double, double)[] points = [(790, 250)];
        var placed = Place(points);
        AssertClean(placed, points);
        Assert.True(placed[0].Box.Right < 790);
    }

    [Fact]
    public void ATightClusterGetsSeparateLabelsWithLeaders()
    {
        // Six points a few pixels apart (the claims plots' students of one size): labels drawn beside their point
        // would overprint; placed, none overlaps, and the ones that cannot sit unambiguously beside their point carry
        // a leader line.
        (double, double)[] points = [(400, 250), (406, 252), (412, 249), (404, 258), (409, 244), (415, 255)];
        var placed = Place(points, width: 90);
        AssertClean(placed, points);
        Assert.Contains(placed, p => p.NeedsLeader);
        // Nearest first: every label stays within a few label heights of its point.
        for (int i = 0; i < points.Length; i++)
            Assert.True(Math.Abs(placed[i].Box.Top - points[i].Item2) < 8 * 14, $"label {i} at {placed[i].Box}");
    }

    [Fact]
    public void LabelsKeepClearOfTheLegend()
    {
        var legend = new PixelBox(650, 400, 150, 100);
        (double, double)[] points = [(620, 450)];
        var placed = Place(points, 60, legend);
        AssertClean(placed, points, legend);
        Assert.True(placed[0].Box.Right <= 650);
    }
}
