namespace Distillery.Bench;

/// <summary>An axis-aligned rectangle in pixels (y grows downwards, as on the image).</summary>
public readonly record struct PixelBox(double Left, double Top, double Width, double Height)
{
    /// <summary>Right edge.</summary>
    public double Right => Left + Width;
    /// <summary>Bottom edge.</summary>
    public double Bottom => Top + Height;

    /// <summary>The area this box shares with <paramref name="other"/> (0 when they do not overlap).</summary>
    public double OverlapArea(PixelBox other)
    {
        double w = Math.Min(Right, other.Right) - Math.Max(Left, other.Left);
        double h = Math.Min(Bottom, other.Bottom) - Math.Max(Top, other.Top);
        return w > 0 && h > 0 ? w * h : 0;
    }

    /// <summary>The area of this box outside <paramref name="bounds"/>.</summary>
    public double AreaOutside(PixelBox bounds) => Width * Height - OverlapArea(bounds);

    /// <summary>The point of this box nearest to (<paramref name="x"/>, <paramref name="y"/>).</summary>
    public (double X, double Y) Nearest(double x, double y) => (Math.Clamp(x, Left, Right), Math.Clamp(y, Top, Bottom));
}

/// <summary>One label to place: the point it names (pixels) and its text's measured size.</summary>
public readonly record struct LabelRequest(double X, double Y, double Width, double Height);

/// <summary>
/// Where a label went: its box, and whether a leader line should join it to its point (it sits away from the point, or
/// another marker is as near to it).
/// </summary>
public readonly record struct PlacedLabel(PixelBox Box, bool NeedsLeader);

/// <summary>
/// Places point labels on a scatter plot so that they overlap neither each other nor the markers nor the legend, and
/// stay inside the data area. Greedy, as most plotting tools' label repellers are: the most crowded point chooses
/// first, among candidate boxes tried nearest first (beside the point on its eight sides, then stepped further up and
/// down on either side, joined to the point by a leader line); the first candidate that collides with nothing wins,
/// and when every candidate collides the least-overlapping one does. A figure of ~20 labelled points, as the claims'
/// score-vs-latency plots are, gets a clean layout where labels drawn to the right of their point overprinted.
/// </summary>
public static class LabelLayout
{
    /// <summary>Gap between a marker's edge and its label, pixels.</summary>
    public const double Gap = 4;

    /// <summary>
    /// One box per request, in the requests' order. <paramref name="markers"/> are the boxes of every marker (labelled
    /// or not: a label must not hide a point); <paramref name="obstacles"/> anything else to keep clear (the legend);
    /// <paramref name="bounds"/> the data area the labels must stay in.
    /// </summary>
    public static PlacedLabel[] Place(IReadOnlyList<LabelRequest> requests, IReadOnlyList<PixelBox> markers,
        IReadOnlyList<PixelBox> obstacles, PixelBox bounds, double markerRadius = 5)
    {
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(markers);
        ArgumentNullException.ThrowIfNull(obstacles);
        var placed = new PlacedLabel?[requests.Count];
        var taken = new List<PixelBox>();
        // The most crowded first: it has the fewest free places. Crowding = requests within three label heights.
        var order = Enumerable.Range(0, requests.Count)
            .OrderByDescending(i => requests.Count(r => Math.Abs(r.X - requests[i].X) < 3 * requests[i].Width &&
                                                        Math.Abs(r.Y - requests[i].Y) < 3 * requests[i].Height))
            .ThenBy(i => i)
            .ToArray();
        foreach (int i in order)
        {
            var r = requests[i];
            PlacedLabel? best = null;
            double bestCost = double.PositiveInfinity;
            foreach (var candidate in Candidates(r, markerRadius))
            {
                double cost = candidate.Box.AreaOutside(bounds) * 10;
                foreach (var t in taken) cost += candidate.Box.OverlapArea(t) * 4;
                foreach (var m in markers) cost += candidate.Box.OverlapArea(m);
                foreach (var o in obstacles) cost += candidate.Box.OverlapArea(o) * 4;
                // Beside the point but as near to another marker: readable only with a leader, so a little worse than
                // a free place further out (which has one anyway).
                if (!candidate.NeedsLeader && Ambiguous(candidate.Box, r, markers)) cost += 1;
                if (cost < bestCost) { best = candidate; bestCost = cost; }
                if (cost == 0) break;
            }
            // A label beside its point can still read as another's when the points are close: then it gets a leader
            // line too (when some other marker is as near to the box as its own).
            placed[i] = best!.Value with { NeedsLeader = best.Value.NeedsLeader || Ambiguous(best.Value.Box, r, markers) };
            taken.Add(best.Value.Box);
        }
        return placed.Select(p => p!.Value).ToArray();
    }

    /// <summary>Whether some other marker (its centre not the label's point) is as near to the box as the point.</summary>
    static bool Ambiguous(PixelBox box, LabelRequest r, IReadOnlyList<PixelBox> markers)
    {
        double own = Distance(box, r.X, r.Y);
        foreach (var m in markers)
        {
            double cx = m.Left + m.Width / 2, cy = m.Top + m.Height / 2;
            if (Math.Abs(cx - r.X) < 0.5 && Math.Abs(cy - r.Y) < 0.5) continue;
            if (Distance(box, cx, cy) <= own + 2) return true;
        }
        return false;
    }

    static double Distance(PixelBox box, double x, double y)
    {
        var (nx, ny) = box.Nearest(x, y);
        return Math.Sqrt((nx - x) * (nx - x) + (ny - y) * (ny - y));
    }

    /// <summary>Candidate boxes for one label, nearest (and most readable) first.</summary>
    static IEnumerable<PlacedLabel> Candidates(LabelRequest r, double markerRadius)
    {
        double w = r.Width, h = r.Height, d = markerRadius + Gap;
        // Adjacent: right, left, above, below, then the four corners.
        yield return new(new(r.X + d, r.Y - h / 2, w, h), false);
        yield return new(new(r.X - d - w, r.Y - h / 2, w, h), false);
        yield return new(new(r.X - w / 2, r.Y - d - h, w, h), false);
        yield return new(new(r.X - w / 2, r.Y + d, w, h), false);
        yield return new(new(r.X + d * 0.7, r.Y - d * 0.7 - h, w, h), false);
        yield return new(new(r.X + d * 0.7, r.Y + d * 0.7, w, h), false);
        yield return new(new(r.X - d * 0.7 - w, r.Y - d * 0.7 - h, w, h), false);
        yield return new(new(r.X - d * 0.7 - w, r.Y + d * 0.7, w, h), false);
        // Stepped away, one label height at a time, on the right and the left, then further out sideways: a leader
        // line joins these to their point.
        for (int side = 1; side <= 3; side++)
        {
            double dx = d + (side - 1) * 2.5 * h;
            for (int k = 1; k <= 6; k++)
            {
                foreach (int sign in new[] { -1, 1 })
                {
                    double top = r.Y - h / 2 + sign * k * (h + 2);
                    yield return new(new(r.X + dx, top, w, h), true);
                    yield return new(new(r.X - dx - w, top, w, h), true);
                }
            }
        }
    }
}
