using System.Collections;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Distillery;

/// <summary>
/// Strict reading of JSON a person writes (<c>--config</c> files, recipe stages): every key must name a property of the
/// options record it fills, checked recursively through nested records (<c>trainer</c>, <c>kd</c>, …). A misspelled
/// key is one error naming it, where it is, and the nearest valid key, instead of being silently ignored
/// (<c>{"max_step": 1}</c> would otherwise run with the default number of steps).
/// </summary>
public static class StrictJson
{
    /// <summary>
    /// Throws <see cref="InvalidDataException"/> for the first key of <paramref name="node"/> (recursively) that is not a
    /// property of <paramref name="type"/> under <see cref="JsonFiles.Options"/>'s snake_case naming.
    /// <paramref name="where"/> names the object in the message (e.g. "options"; nested objects add their key).
    /// </summary>
    public static void CheckKeys(JsonNode? node, Type type, string where)
    {
        if (node is not JsonObject obj) return;
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (!IsRecord(type)) return;
        if (Shapes.CanConvert(type))
        {
            // Inline records (a job's task keys) are checked as the record they fill; own keys by the record itself.
            obj = obj.DeepClone().AsObject();
            ((IShapedJson)Shapes.CreateConverter(type, JsonFiles.Options)).ToPropertyShape(obj, where);
        }
        var properties = Properties(type);
        foreach (var (key, value) in obj)
        {
            if (!properties.TryGetValue(key, out var property))
            {
                string? near = Nearest(key, properties.Keys);
                throw new InvalidDataException($"unknown key {key} in {where}{(near != null ? $" (did you mean {near}?)" : $" (known: {string.Join(", ", properties.Keys)})")}");
            }
            CheckKeys(value, property.PropertyType, key);
        }
    }

    static readonly ShapedJsonConverterFactory Shapes = new();

    /// <summary>Deserializes <paramref name="node"/> as <typeparamref name="T"/> after <see cref="CheckKeys"/>.</summary>
    public static T Deserialize<T>(JsonNode? node, string where) => (T)Deserialize(node, typeof(T), where);

    /// <summary>Deserializes <paramref name="node"/> as <paramref name="type"/> after <see cref="CheckKeys"/>.</summary>
    public static object Deserialize(JsonNode? node, Type type, string where)
    {
        CheckKeys(node, type, where);
        return node.Deserialize(type, JsonFiles.Options) ?? throw new InvalidDataException($"{where}: empty");
    }

    /// <summary>Options types: classes of this library (records), not strings, collections or enums.</summary>
    static bool IsRecord(Type type) =>
        type.IsClass && type != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(type)
        && type.Namespace?.StartsWith(nameof(Distillery), StringComparison.Ordinal) == true;

    static Dictionary<string, PropertyInfo> Properties(Type type)
    {
        var result = new Dictionary<string, PropertyInfo>(StringComparer.Ordinal);
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetCustomAttribute<JsonIgnoreAttribute>() is { Condition: JsonIgnoreCondition.Always }) continue;
            if (p.SetMethod == null && type.GetConstructors().All(c => c.GetParameters().All(a => !string.Equals(a.Name, p.Name, StringComparison.OrdinalIgnoreCase)))) continue;
            string name = p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? JsonFiles.Options.PropertyNamingPolicy!.ConvertName(p.Name);
            result[name] = p;
        }
        return result;
    }

    /// <summary>The known key closest to <paramref name="key"/> by edit distance, when close enough to be a typo.</summary>
    public static string? Nearest(string key, IEnumerable<string> known)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var k in known)
        {
            int d = EditDistance(key, k);
            if (d < bestDistance) (best, bestDistance) = (k, d);
        }
        return best != null && bestDistance <= Math.Max(2, key.Length / 3) ? best : null;
    }

    static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
