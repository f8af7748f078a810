namespace Distillery;

/// <summary>
/// The rules every command that writes a model folder, an ONNX file or a table follows before it writes anything:
/// <list type="bullet">
/// <item>the output is never one of the run's inputs: not the same path, not inside an input folder, not a folder
/// that contains one (training into the teacher's folder would replace the teacher);</item>
/// <item>an existing finished output (a folder with <c>config.json</c>, an existing file) is refused unless the caller
/// says overwrite, or the run resumes it;</item>
/// <item>a fresh run into a folder holding an unfinished run's checkpoint is refused unless overwrite (resume it instead);</item>
/// <item>before training into an existing folder the "finished" markers (<c>config.json</c>, <c>metrics.json</c>) are
/// removed, so a run killed half-way never leaves a folder that loads or that a recipe skips as complete.
/// <see cref="Models.BertCheckpoint.Save"/> writes <c>config.json</c> last, and <c>metrics.json</c> is written after it.</item>
/// </list>
/// </summary>
public static class RunOutput
{
    /// <summary>Files whose presence says a model folder is complete.</summary>
    public static readonly IReadOnlyList<string> FinishedMarkers = ["config.json", "metrics.json"];

    /// <summary>The trainer's resumable state inside a run folder.</summary>
    public const string CheckpointFolder = "checkpoint";

    /// <summary>
    /// Throws when <paramref name="output"/> is, is inside, or contains any of <paramref name="inputs"/> (null entries
    /// are ignored); <paramref name="option"/> names the output in the message.
    /// </summary>
    public static void CheckNotInput(string output, IEnumerable<string?> inputs, string option = "--out")
    {
        string outFull = Normalize(output);
        foreach (var input in inputs)
        {
            if (string.IsNullOrEmpty(input)) continue;
            string inFull = Normalize(input);
            string? relation = outFull == inFull ? "is"
                : IsUnder(outFull, inFull) ? "is inside"
                : IsUnder(inFull, outFull) ? "contains"
                : null;
            if (relation != null)
                throw new ArgumentException($"{option} {output} {relation} the input {input}; write the output somewhere else (the input would be overwritten)");
        }
    }

    /// <summary>
    /// Checks a model output folder before a run loads anything (see the class summary): not an input, not a finished
    /// model unless <paramref name="overwrite"/>, and with <paramref name="resume"/> it must hold a checkpoint.
    /// Nothing is changed on disk; <see cref="Begin"/> does that once the run is about to train.
    /// </summary>
    public static void CheckFolder(string outDir, bool overwrite, bool resume, IEnumerable<string?> inputs, string option = "--out")
    {
        CheckNotInput(outDir, inputs, option);
        if (File.Exists(outDir)) throw new IOException($"{option} {outDir} is a file; give a folder");
        string config = Path.Combine(outDir, FinishedMarkers[0]), checkpoint = Path.Combine(outDir, CheckpointFolder);
        bool finished = File.Exists(config);
        if (resume)
        {
            RecoverCheckpoint(outDir);
            if (!Directory.Exists(checkpoint))
                throw new InvalidOperationException($"--resume: no checkpoint in {checkpoint}{(finished ? $" ({outDir} holds a finished run; nothing to resume)" : "")}");
        }
        else if (!overwrite)
        {
            if (finished)
                throw new IOException($"{option} {outDir} already holds a finished model ({FinishedMarkers[0]}); choose another {option} or pass --overwrite to replace it");
            if (Directory.Exists(checkpoint))
                throw new IOException($"{option} {outDir} holds an unfinished run's checkpoint; pass --resume to continue it or --overwrite to start again");
        }
    }

    /// <summary>
    /// Marks <paramref name="outDir"/> as not finished before a run writes into it: removes <c>config.json</c> and
    /// <c>metrics.json</c> and, unless <paramref name="resume"/>, a previous run's checkpoint.
    /// </summary>
    public static void Begin(string outDir, bool resume)
    {
        Directory.CreateDirectory(outDir);
        string checkpoint = Path.Combine(outDir, CheckpointFolder);
        if (!resume && Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
        foreach (var marker in FinishedMarkers)
        {
            string path = Path.Combine(outDir, marker);
            if (File.Exists(path)) File.Delete(path);
        }
    }

    /// <summary>
    /// A kill between the two renames of a checkpoint swap (the old one moved aside, the new one not yet in place)
    /// leaves only <c>checkpoint.old-*</c>, which is complete: move it back.
    /// </summary>
    public static void RecoverCheckpoint(string outDir)
    {
        string checkpoint = Path.Combine(outDir, CheckpointFolder);
        if (Directory.Exists(checkpoint) || !Directory.Exists(outDir)) return;
        var old = Directory.GetDirectories(outDir, CheckpointFolder + ".old-*")
            .Where(d => File.Exists(Path.Combine(d, "state.json"))).OrderByDescending(Directory.GetLastWriteTimeUtc).FirstOrDefault();
        if (old != null) Directory.Move(old, checkpoint);
    }

    /// <summary><see cref="CheckFolder"/> then <see cref="Begin"/>, for writers that do not train (init, convert).</summary>
    public static void PrepareFolder(string outDir, bool overwrite, IEnumerable<string?> inputs, string option = "--out")
    {
        CheckFolder(outDir, overwrite, resume: false, inputs, option);
        Begin(outDir, resume: false);
    }

    /// <summary>
    /// Checks a single-file output (an ONNX graph, a table): not an input, not inside or around one, not an existing
    /// folder, and not an existing file unless <paramref name="overwrite"/>.
    /// </summary>
    public static void PrepareFile(string outFile, bool overwrite, IEnumerable<string?> inputs, string option = "--out")
    {
        CheckNotInput(outFile, inputs, option);
        if (Directory.Exists(outFile)) throw new IOException($"{option} {outFile} is a folder; give a file name");
        if (File.Exists(outFile) && !overwrite)
            throw new IOException($"{option} {outFile} already exists; choose another {option} or pass --overwrite to replace it");
    }

    static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    /// <summary>Whether <paramref name="path"/> lies strictly below <paramref name="folder"/> (both normalized).</summary>
    static bool IsUnder(string path, string folder) =>
        path.Length > folder.Length && path.StartsWith(folder, StringComparison.Ordinal)
        && (path[folder.Length] == Path.DirectorySeparatorChar || folder.EndsWith(Path.DirectorySeparatorChar));
}
