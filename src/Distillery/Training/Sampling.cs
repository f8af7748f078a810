namespace Distillery.Training;

/// <summary>Seeded choices of examples, shared by every command that trains on a subset.</summary>
public static class Sampling
{
    /// <summary>At most <paramref name="cap"/> items chosen by a seeded shuffle, kept in their original order (all when null or not fewer).</summary>
    public static IReadOnlyList<T> Sample<T>(IReadOnlyList<T> items, int? cap, long seed)
    {
        if (cap is not int n || n >= items.Count) return items;
        var order = Enumerable.Range(0, items.Count).ToArray();
        new Random((int)(seed & int.MaxValue)).Shuffle(order);
        return order[..n].Order().Select(i => items[i]).ToList();
    }
}
