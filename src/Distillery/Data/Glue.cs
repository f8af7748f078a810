using System.Collections.ObjectModel;
using System.Globalization;
using System.Text;
using Distillery.Evaluation;

namespace Distillery.Data;

/// <summary>The nine GLUE tasks.</summary>
public enum GlueTask { CoLA, Sst2, Mrpc, Qqp, StsB, Mnli, Qnli, Rte, Wnli }

/// <summary>One example of a GLUE split.</summary>
/// <param name="TextA">The first (or only) sentence.</param>
/// <param name="TextB">The second sentence of a pair task; null for the single-sentence tasks (CoLA, SST-2).</param>
/// <param name="Label">The class index into <see cref="GlueTaskInfo.Labels"/>, or -1 when unlabeled (test splits, and always for STS-B).</param>
/// <param name="Score">The STS-B similarity in [0, 5]; NaN otherwise (other tasks, STS-B test).</param>
/// <param name="Line">The 1-based line of the example in its file (for error messages and tracing).</param>
public sealed record GlueExample(string TextA, string? TextB, int Label, double Score, int Line);

/// <summary>What Distillery knows about one GLUE task.</summary>
/// <param name="Task">The task.</param>
/// <param name="DirectoryName">Its folder in the <c>glue_data</c> layout, e.g. "SST-2".</param>
/// <param name="Labels">
/// Label strings as the files spell them, in the order of Hugging Face <c>run_glue</c> / the GLUE processors (class
/// index = position); empty for the regression task STS-B.
/// </param>
/// <param name="IsRegression">True for STS-B.</param>
/// <param name="DevSplits">The dev split names (file names without ".tsv"): MNLI dev_matched, dev_mismatched; others dev.</param>
/// <param name="MetricNames">The official metrics, as lower-case keys ("accuracy", "f1", "mcc", "pearson", "spearman"), primary first.</param>
/// <param name="PrimaryMetric">The metric used for model selection.</param>
public sealed record GlueTaskInfo(
    GlueTask Task, string DirectoryName, IReadOnlyList<string> Labels, bool IsRegression,
    IReadOnlyList<string> DevSplits, IReadOnlyList<string> MetricNames, string PrimaryMetric);

/// <summary>
/// The GLUE benchmark in the original <c>glue_data</c> layout (as written by the GLUE download script): task
/// descriptions, split files, a strict loader and the official metrics.
/// </summary>
/// <remarks>
/// Files are tab-separated with no quoting (QUOTE_NONE: a field ends only at a tab or a line end), UTF-8 (strictly
/// decoded; a leading BOM is dropped), LF or CRLF line ends, the last line ending with or without a newline.
/// Any malformed content raises <see cref="InvalidDataException"/> whose message is one line
/// <c>"&lt;path&gt;:&lt;line&gt;: &lt;what is wrong&gt;"</c>.
/// </remarks>
public static class Glue
{
    static readonly string[] ShortNames = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"];

    static readonly GlueTaskInfo[] Infos =
    [
        Make(GlueTask.CoLA, "CoLA", ["0", "1"], false, ["dev"], ["mcc"]),
        Make(GlueTask.Sst2, "SST-2", ["0", "1"], false, ["dev"], ["accuracy"]),
        Make(GlueTask.Mrpc, "MRPC", ["0", "1"], false, ["dev"], ["f1", "accuracy"]),
        Make(GlueTask.Qqp, "QQP", ["0", "1"], false, ["dev"], ["f1", "accuracy"]),
        Make(GlueTask.StsB, "STS-B", [], true, ["dev"], ["pearson", "spearman"]),
        Make(GlueTask.Mnli, "MNLI", ["contradiction", "entailment", "neutral"], false, ["dev_matched", "dev_mismatched"], ["accuracy"]),
        Make(GlueTask.Qnli, "QNLI", ["entailment", "not_entailment"], false, ["dev"], ["accuracy"]),
        Make(GlueTask.Rte, "RTE", ["entailment", "not_entailment"], false, ["dev"], ["accuracy"]),
        Make(GlueTask.Wnli, "WNLI", ["0", "1"], false, ["dev"], ["accuracy"]),
    ];

    static readonly ReadOnlyCollection<GlueTask> AllTasks = Array.AsReadOnly(Enum.GetValues<GlueTask>());

    static GlueTaskInfo Make(GlueTask task, string dir, string[] labels, bool regression, string[] dev, string[] metrics) =>
        new(task, dir, Array.AsReadOnly(labels), regression, Array.AsReadOnly(dev), Array.AsReadOnly(metrics), metrics[0]);

    /// <summary>The description of <paramref name="task"/>.</summary>
    public static GlueTaskInfo Info(GlueTask task)
    {
        int i = (int)task;
        if (i < 0 || i >= Infos.Length) throw new ArgumentOutOfRangeException(nameof(task), task, "not a GLUE task");
        return Infos[i];
    }

    /// <summary>The short name of <paramref name="task"/> ("sst2", "stsb").</summary>
    public static string ShortName(GlueTask task) => ShortNames[(int)task];

    /// <summary>All nine tasks, in <see cref="GlueTask"/> order.</summary>
    public static IEnumerable<GlueTask> All => AllTasks;

    /// <summary>
    /// The task named <paramref name="name"/>, case-insensitive, with or without '-' or '_': "sst2", "sst-2", "SST-2",
    /// "stsb", "sts-b", "cola", "mnli", .... An unknown name throws
    /// <see cref="ArgumentException"/> "unknown GLUE task 'x' (known: cola, sst2, ...)".
    /// </summary>
    public static GlueTask ParseTask(string name) =>
        TryParseTask(name) ?? throw new ArgumentException(
            $"unknown GLUE task '{Show(name ?? "")}' (known: {string.Join(", ", ShortNames)})");

    static GlueTask? TryParseTask(string? name)
    {
        if (name is null) return null;
        var key = new StringBuilder(name.Length);
        foreach (char c in name.Trim())
            if (c != '-' && c != '_') key.Append(char.ToLowerInvariant(c));
        int i = Array.IndexOf(ShortNames, key.ToString());
        return i < 0 ? null : (GlueTask)i;
    }

    /// <summary>
    /// The .tsv file of one split. <paramref name="dataDir"/> is the folder holding the task folders (e.g.
    /// <c>shared/data/glue</c>) or the task folder itself; <paramref name="split"/> is a file name without ".tsv":
    /// "train", "dev", "test", "dev_matched", "dev_mismatched", ... (for MNLI, "dev" and "test" mean the matched files).
    /// A missing file throws <see cref="FileNotFoundException"/> naming the path.
    /// </summary>
    public static string SplitPath(string dataDir, GlueTask task, string split)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataDir);
        ArgumentException.ThrowIfNullOrWhiteSpace(split);
        var info = Info(task);
        string name = split.Trim();
        if (name.EndsWith(".tsv", StringComparison.OrdinalIgnoreCase)) name = name[..^4];
        if (name.Length == 0 || name.IndexOfAny(['/', '\\']) >= 0 || name == "." || name == "..")
            throw new ArgumentException($"'{Show(split)}' is not a split name (train, dev, test, ...)", nameof(split));
        if (task == GlueTask.Mnli && name is "dev" or "test") name += "_matched";

        string taskDir = Path.Combine(dataDir, info.DirectoryName);
        string dir = !Directory.Exists(taskDir) && IsFolderOf(dataDir, task) ? dataDir : taskDir;
        string path = Path.Combine(dir, name + ".tsv");
        if (!File.Exists(path))
            throw new FileNotFoundException($"GLUE {info.DirectoryName} split '{name}' not found: {path}", path);
        return path;
    }

    static bool IsFolderOf(string dir, GlueTask task) =>
        TryParseTask(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)))) == task;

    /// <summary>Where a task's fields are, by header name (the CoLA train/dev files have no header: see <see cref="Load"/>).</summary>
    sealed record Layout(string TextA, string? TextB, string Label);

    static Layout LayoutOf(GlueTask task) => task switch
    {
        GlueTask.CoLA => new("sentence", null, "label"),
        GlueTask.Sst2 => new("sentence", null, "label"),
        GlueTask.Mrpc => new("#1 String", "#2 String", "Quality"),
        GlueTask.Qqp => new("question1", "question2", "is_duplicate"),
        GlueTask.StsB => new("sentence1", "sentence2", "score"),
        GlueTask.Mnli => new("sentence1", "sentence2", "gold_label"),
        GlueTask.Qnli => new("question", "sentence", "label"),
        GlueTask.Rte or GlueTask.Wnli => new("sentence1", "sentence2", "label"),
        _ => throw new ArgumentOutOfRangeException(nameof(task), task, "not a GLUE task"),
    };

    /// <summary>Field positions in a row, and how many fields a row has.</summary>
    readonly record struct Columns(int Count, int TextA, int TextB, int Label);

    /// <summary>
    /// Reads one split file of <paramref name="task"/> in the <c>glue_data</c> layout. Files with a header are read by
    /// column name (SST-2 sentence/label; MRPC "#1 String", "#2 String", Quality; QQP question1, question2,
    /// is_duplicate; STS-B sentence1, sentence2, score; MNLI sentence1, sentence2, gold_label; QNLI question, sentence,
    /// label; RTE/WNLI sentence1, sentence2, label); a file whose header lacks the label column (a test split) gives
    /// Label -1 and Score NaN. CoLA train/dev have no header: [source, label, star, sentence]; CoLA test has the header
    /// [index, sentence]. Every row must have as many fields as the header (4 for header-less CoLA); labels must be
    /// one of <see cref="GlueTaskInfo.Labels"/> exactly, STS-B scores numbers in [0, 5]. Empty lines at the end are
    /// ignored. Problems throw <see cref="InvalidDataException"/> "&lt;path&gt;:&lt;line&gt;: &lt;what&gt;".
    /// </summary>
    public static IReadOnlyList<GlueExample> Load(GlueTask task, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var info = Info(task);
        var layout = LayoutOf(task);
        var examples = new List<GlueExample>();
        Columns? columns = null;
        int lastLine = 0;
        foreach (var (line, text) in ReadLines(path))
        {
            lastLine = line;
            string[] fields = text.Split('\t');
            if (columns is null)
            {
                if (task == GlueTask.CoLA && fields[0] != "index")
                {
                    columns = new Columns(4, TextA: 3, TextB: -1, Label: 1); // header-less train/dev: fall through, this is a row
                }
                else
                {
                    columns = FromHeader(path, line, fields, info, layout);
                    continue;
                }
            }
            var c = columns.Value;
            if (fields.Length != c.Count)
                throw Bad(path, line, $"expected {c.Count} tab-separated fields, found {fields.Length}");
            int label = -1;
            double score = double.NaN;
            if (c.Label >= 0)
            {
                string value = fields[c.Label];
                if (info.IsRegression) score = ParseScore(path, line, value);
                else label = ParseLabel(path, line, value, info);
            }
            examples.Add(new GlueExample(fields[c.TextA], c.TextB >= 0 ? fields[c.TextB] : null, label, score, line));
        }
        if (examples.Count == 0) throw Bad(path, lastLine + 1, "no examples");
        return examples.AsReadOnly();
    }

    static Columns FromHeader(string path, int line, string[] header, GlueTaskInfo info, Layout layout)
    {
        int Find(string name, bool required)
        {
            int index = Array.FindLastIndex(header, h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase));
            if (index < 0 && required)
                throw Bad(path, line, $"header has no '{name}' column (the first line must be the {info.DirectoryName} header, found '{Show(string.Join("\t", header))}')");
            return index;
        }
        int a = Find(layout.TextA, true);
        int b = layout.TextB is null ? -1 : Find(layout.TextB, true);
        int label = Find(layout.Label, false);
        return new Columns(header.Length, a, b, label);
    }

    static int ParseLabel(string path, int line, string value, GlueTaskInfo info)
    {
        for (int i = 0; i < info.Labels.Count; i++)
            if (string.Equals(info.Labels[i], value, StringComparison.Ordinal)) return i;
        throw Bad(path, line, $"unknown {info.DirectoryName} label '{Show(value)}' (expected one of: {string.Join(", ", info.Labels)})");
    }

    static double ParseScore(string path, int line, string value)
    {
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double score) || !double.IsFinite(score))
            throw Bad(path, line, $"STS-B score '{Show(value)}' is not a number");
        if (score < 0 || score > 5)
            throw Bad(path, line, $"STS-B score {value} is outside [0, 5]");
        return score;
    }

    /// <summary>
    /// The file's lines, 1-based, without line ends ('\n' or "\r\n") or a leading UTF-8 BOM, each decoded as strict
    /// UTF-8. Empty lines at the end of the file are dropped; an empty line followed by content is an error.
    /// </summary>
    static IEnumerable<(int Line, string Text)> ReadLines(string path)
    {
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        byte[] buffer = new byte[1 << 16];
        int start = 0, end = 0, line = 0, firstBlank = 0;
        bool eof = false;
        while (true)
        {
            int newline = Array.IndexOf(buffer, (byte)'\n', start, end - start);
            if (newline < 0 && !eof)
            {
                if (start > 0)
                {
                    Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                    end -= start;
                    start = 0;
                }
                if (end == buffer.Length) Array.Resize(ref buffer, checked(buffer.Length * 2));
                int read = stream.Read(buffer, end, buffer.Length - end);
                if (read == 0) eof = true;
                else end += read;
                continue;
            }
            if (newline < 0 && start == end) break; // end of file right after a newline (or an empty file)
            int stop = newline < 0 ? end : newline;
            line++;
            int from = start;
            if (line == 1 && stop - from >= 3 && buffer[from] == 0xEF && buffer[from + 1] == 0xBB && buffer[from + 2] == 0xBF) from += 3;
            if (stop > from && buffer[stop - 1] == (byte)'\r') stop--;
            start = newline < 0 ? end : newline + 1;
            if (stop == from)
            {
                if (firstBlank == 0) firstBlank = line;
            }
            else
            {
                if (firstBlank != 0) throw Bad(path, firstBlank, "empty line");
                string text;
                try { text = utf8.GetString(buffer, from, stop - from); }
                catch (DecoderFallbackException) { throw Bad(path, line, "not valid UTF-8"); }
                yield return (line, text);
            }
            if (newline < 0) break;
        }
    }

    /// <summary>
    /// The official metrics of a classification task, keyed as <see cref="GlueTaskInfo.MetricNames"/>, from predicted
    /// class indices. Throws <see cref="ArgumentException"/> for STS-B (use <see cref="EvaluateRegression"/>), a count
    /// mismatch, no examples, an unlabeled gold example, or a prediction that is not a class index of the task.
    /// </summary>
    public static IReadOnlyDictionary<string, double> Evaluate(GlueTask task, IReadOnlyList<int> predictedLabels, IReadOnlyList<GlueExample> gold)
    {
        ArgumentNullException.ThrowIfNull(predictedLabels);
        ArgumentNullException.ThrowIfNull(gold);
        var info = Info(task);
        if (info.IsRegression)
            throw new ArgumentException($"{info.DirectoryName} is a regression task: evaluate predicted scores with EvaluateRegression");
        CheckCounts(predictedLabels.Count, gold.Count);
        int classes = info.Labels.Count;
        var goldLabels = new int[gold.Count];
        for (int i = 0; i < gold.Count; i++)
        {
            int g = gold[i].Label;
            if (g < 0 || g >= classes)
                throw new ArgumentException($"gold example {i} (line {gold[i].Line}) has no {info.DirectoryName} label (Label {g})", nameof(gold));
            goldLabels[i] = g;
            int p = predictedLabels[i];
            if (p < 0 || p >= classes)
                throw new ArgumentException($"prediction {i} is {p}, not a {info.DirectoryName} class index (0..{classes - 1})", nameof(predictedLabels));
        }
        var result = new Dictionary<string, double>(info.MetricNames.Count);
        foreach (string metric in info.MetricNames)
        {
            result[metric] = metric switch
            {
                "accuracy" => Metrics.Accuracy(predictedLabels, goldLabels),
                "f1" => Metrics.F1(predictedLabels, goldLabels, positive: 1),
                "mcc" => Metrics.MatthewsCorrelation(predictedLabels, goldLabels),
                _ => throw new InvalidOperationException($"no classification metric '{metric}'"),
            };
        }
        return new ReadOnlyDictionary<string, double>(result);
    }

    /// <summary>
    /// STS-B's official metrics, "pearson" and "spearman", of predicted scores against the gold
    /// <see cref="GlueExample.Score"/>s. Throws <see cref="ArgumentException"/> for a count mismatch, fewer than two
    /// examples, or a gold example without a score.
    /// </summary>
    public static IReadOnlyDictionary<string, double> EvaluateRegression(IReadOnlyList<double> predictedScores, IReadOnlyList<GlueExample> gold)
    {
        ArgumentNullException.ThrowIfNull(predictedScores);
        ArgumentNullException.ThrowIfNull(gold);
        CheckCounts(predictedScores.Count, gold.Count);
        var goldScores = new double[gold.Count];
        for (int i = 0; i < gold.Count; i++)
        {
            double s = gold[i].Score;
            if (!double.IsFinite(s))
                throw new ArgumentException($"gold example {i} (line {gold[i].Line}) has no score", nameof(gold));
            goldScores[i] = s;
        }
        var result = new Dictionary<string, double>(2)
        {
            ["pearson"] = Metrics.Pearson(predictedScores, goldScores),
            ["spearman"] = Metrics.Spearman(predictedScores, goldScores),
        };
        return new ReadOnlyDictionary<string, double>(result);
    }

    static void CheckCounts(int predicted, int gold)
    {
        if (predicted != gold) throw new ArgumentException($"{predicted} predictions for {gold} gold examples");
        if (gold == 0) throw new ArgumentException("no examples to evaluate");
    }

    static InvalidDataException Bad(string path, int line, string what) => new($"{path}:{line}: {what}");

    /// <summary>A file value for a one-line message: control characters escaped, long values cut.</summary>
    static string Show(string value)
    {
        const int Max = 60;
        var sb = new StringBuilder();
        foreach (char c in value.Length > Max ? value[..Max] : value)
        {
            if (c == '\t') sb.Append("\\t");
            else if (char.IsControl(c) || c is '\u2028' or '\u2029' or '\u0085') sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (value.Length > Max) sb.Append('…');
        return sb.ToString();
    }
}
