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
    /// <summary>
    /// The Distillery build that wrote a run's records: "0.1.0+&lt;full commit sha&gt;" (the assembly's informational
    /// version, stamped at build time). Records carry it because the working directory's git commit says which
    /// scripts ran, not which binary (long runs use a published copy of the CLI).
    /// </summary>
    public static string Version { get; } =
        typeof(RunFiles).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";

    /// <summary>Serializer settings for run files: indented, enums as names, snake_case keys (<see cref="JsonFiles.Options"/>).</summary>
    public static JsonSerializerOptions Json => JsonFiles.Options;

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

    /// <summary>Trainer options a resumed run may change: they do not shape the trajectory.</summary>
    static readonly string[] Cadence = ["eval_every", "log_every", "checkpoint_every", "on_non_finite_loss"];

    /// <summary>
    /// Before <c>--resume</c>: the run config about to be written must equal the one the interrupted run wrote in
    /// <paramref name="dir"/> (data, model, method, trainer: everything but evaluation/log/checkpoint cadence), or the
    /// resumed run would continue on other data or another model and match neither. Throws naming the first difference.
    /// </summary>
    public static void CheckResumable(string dir, object runConfig)
    {
        string path = Path.Combine(dir, "run_config.json");
        if (!File.Exists(path)) return;   // written before the first checkpoint by every run; nothing to compare with
        var saved = Read<JsonNode>(path);
        var now = JsonSerializer.SerializeToNode(runConfig, Json);
        // A config written by an earlier version is read as today's options record and written again, so only real
        // differences count, not a changed layout (keys added with their defaults, keys no longer written).
        if (runConfig.GetType().GetProperty("options")?.GetValue(runConfig) is { } options && saved?["options"] is JsonObject savedOptions)
        {
            try
            {
                var read = StrictJson.Deserialize(savedOptions.DeepClone(), options.GetType(), "options");
                saved["options"] = JsonSerializer.SerializeToNode(read, options.GetType(), Json);
            }
            catch (Exception e) when (e is JsonException or InvalidDataException or ArgumentException) { }   // compared as written
        }
        foreach (var node in new[] { saved, now })
            if (node?["options"]?["trainer"] is JsonObject trainer)
                foreach (var key in Cadence) trainer.Remove(key);
        if (FirstDifference(saved, now, "") is { } difference)
            throw new InvalidOperationException($"--resume: {difference.Path} differs from the interrupted run's ({path}: {difference.Saved}, now {difference.Now}); resume with the same options or start again with --overwrite");
    }

    static (string Path, string Saved, string Now)? FirstDifference(JsonNode? a, JsonNode? b, string path)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (var key in oa.Select(kv => kv.Key).Union(ob.Select(kv => kv.Key)))
                if (FirstDifference(oa[key], ob[key], path.Length == 0 ? key : $"{path}.{key}") is { } d) return d;
            return null;
        }
        if (a is JsonArray aa && b is JsonArray ab && aa.Count == ab.Count)
        {
            for (int i = 0; i < aa.Count; i++)
                if (FirstDifference(aa[i], ab[i], $"{path}[{i}]") is { } d) return d;
            return null;
        }
        if (JsonNode.DeepEquals(a, b) || SamePath(a, b)) return null;
        string name = path.StartsWith("options.", StringComparison.Ordinal) ? path["options.".Length..] : path;
        return (name, a?.ToJsonString() ?? "none", b?.ToJsonString() ?? "none");
    }

    /// <summary>
    /// Two strings naming the same path once made absolute and normalised ("a/../b" is "b"): a run resumed from another
    /// working copy of the scripts (/work/x/../shared/data and /work/y/../shared/data) reads the same files.
    /// </summary>
    static bool SamePath(JsonNode? a, JsonNode? b)
    {
        if (a is not JsonValue va || b is not JsonValue vb || !va.TryGetValue(out string? sa) || !vb.TryGetValue(out string? sb)) return false;
        if (sa.Length == 0 || sb.Length == 0 || (!sa.Contains('/') && !sb.Contains('/'))) return false;   // names, not paths
        try
        {
            return Path.GetFullPath(sa) == Path.GetFullPath(sb);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return false;
        }
    }

    /// <summary>A JSON object of metrics with non-finite values as null.</summary>
    public static JsonObject Metrics(IReadOnlyDictionary<string, double> metrics) =>
        new(metrics.Select(kv => KeyValuePair.Create(kv.Key, double.IsFinite(kv.Value) ? (JsonNode?)JsonValue.Create(Math.Round(kv.Value, 6)) : null)));
}
