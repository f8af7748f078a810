namespace Distillery;

/// <summary>
/// Locates the project's shared data folder (GLUE, SQuAD, corpora, tokenizer files, fixtures), which lives beside the
/// repository as <c>../shared/data</c> and is never copied into it. <c>DISTILLERY_SHARED_DATA</c> overrides the search.
/// </summary>
public static class SharedData
{
    /// <summary>The shared data folder, or null when it cannot be found.</summary>
    public static string? TryFind(string? startDirectory = null)
    {
        string? fromEnv = Environment.GetEnvironmentVariable("DISTILLERY_SHARED_DATA");
        if (!string.IsNullOrEmpty(fromEnv)) return Directory.Exists(fromEnv) ? Path.GetFullPath(fromEnv) : null;
        foreach (string start in new[] { startDirectory ?? Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "shared", "data");
                if (Directory.Exists(candidate) && File.Exists(Path.Combine(candidate, "SOURCES.md"))) return candidate;
            }
        }
        return null;
    }

    /// <summary>The shared data folder; throws with a clear message when it is missing.</summary>
    public static string Find(string? startDirectory = null) =>
        TryFind(startDirectory) ?? throw new DirectoryNotFoundException(
            "shared data not found: expected ../shared/data beside the repository (or set DISTILLERY_SHARED_DATA)");

    /// <summary>A path inside the shared data folder; throws when that file or folder is missing.</summary>
    public static string Resolve(params string[] parts)
    {
        string path = Path.Combine([Find(), .. parts]);
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"shared data file missing: {path}", path);
        return path;
    }
}
