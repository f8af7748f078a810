using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Distillery.Training;

/// <summary>
/// The JSON files a run leaves next to its model: <c>run_config.json</c> (the resolved options, enough to re-run it)
/// and <c>metrics.json</c> (final scores and timings).
/// </summary>
public static class RunFiles
{
    /// <summary>Serializer settings for run files: indented, enums as names, snake_case keys.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Writes <paramref name="value"/> as <c>dir/name</c> atomically.</summary>
    public static void Write<T>(string dir, string name, T value)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, name), JsonSerializer.Serialize(value, Json) + "\n");
    }

    /// <summary>Reads a run file written by <see cref="Write{T}"/>; errors name the file.</summary>
    public static T Read<T>(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message.Split('\n')[0]}");
        }
    }

    /// <summary>A JSON object of metrics with non-finite values as null.</summary>
    public static JsonObject Metrics(IReadOnlyDictionary<string, double> metrics) =>
        new(metrics.Select(kv => KeyValuePair.Create(kv.Key, double.IsFinite(kv.Value) ? (JsonNode?)JsonValue.Create(Math.Round(kv.Value, 6)) : null)));
}
