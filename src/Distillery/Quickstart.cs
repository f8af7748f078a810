using Distillery.Bench;
using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery;

/// <summary>Options of <c>distillery quickstart</c>.</summary>
public sealed record QuickstartOptions
{
    /// <summary>Work folder for the models it makes.</summary>
    public string Out { get; init; } = Path.Combine("runs", "quickstart");
    /// <summary>Teacher architecture.</summary>
    public string TeacherArch { get; init; } = "L2-H128";
    /// <summary>Sequence length for the latency measurements.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Timed forwards per measurement.</summary>
    public int Iterations { get; init; } = 10;
    /// <summary>Seed.</summary>
    public long Seed { get; init; }
}

/// <summary>One row of the quickstart's bench table.</summary>
public sealed record BenchRow(string Model, string Method, long Parameters, long BytesOnDisk, LatencyResult Batch1, LatencyResult Batch32, string Precision);

/// <summary>What the quickstart did.</summary>
/// <param name="DataSource">Where its text came from (the shared data or a generated stand-in).</param>
/// <param name="Notes">Plain statements of what was and was not done, in order.</param>
/// <param name="Rows">The bench table.</param>
/// <param name="Machine">Where the timings were taken.</param>
public sealed record QuickstartResult(string DataSource, IReadOnlyList<string> Notes, IReadOnlyList<BenchRow> Rows, string Machine);

/// <summary>
/// The main job, end to end on what exists so far: make a small teacher, round-trip it through the Hugging Face
/// layout, compress it with every method available, and measure each result in one run. Each step is reported as it
/// happens through <c>progress</c>.
/// </summary>
public static class Quickstart
{
    /// <summary>Runs the quickstart.</summary>
    public static QuickstartResult Run(QuickstartOptions options, Action<string>? progress = null)
    {
        progress ??= _ => { };
        var notes = new List<string>();
        Directory.CreateDirectory(options.Out);

        // The vocabulary: bert-base-uncased's from the shared data, or a small generated one where that is missing.
        string? shared = SharedData.TryFind();
        string vocab;
        string dataSource;
        if (shared != null && File.Exists(Path.Combine(shared, "tokenizers", "bert-base-uncased", "vocab.txt")))
        {
            vocab = Path.Combine(shared, "tokenizers", "bert-base-uncased", "vocab.txt");
            dataSource = $"shared data at {shared} (bert-base-uncased vocabulary)";
        }
        else
        {
            vocab = Path.Combine(options.Out, "generated-vocab.txt");
            AtomicFile.WriteAllText(vocab, string.Join("\n", GeneratedVocabulary()) + "\n");
            dataSource = $"no ../shared/data found: a generated {GeneratedVocabulary().Count}-token vocabulary";
        }
        progress($"data: {dataSource}");

        string teacherDir = Path.Combine(options.Out, "teacher");
        progress($"making the teacher ({options.TeacherArch}) in {teacherDir}");
        var tokenizer = BertTextTokenizer.FromVocab(vocab);
        var initOptions = new InitOptions { Arch = options.TeacherArch, VocabPath = vocab, Out = teacherDir, Seed = options.Seed, Task = BertTask.MaskedLM };
        manual_seed(options.Seed);
        using (var made = BertTaskModel.Create(ModelInit.ConfigFor(initOptions, tokenizer.VocabSize), BertTask.MaskedLM))
        {
            BertCheckpoint.Save(made, teacherDir, tokenizer);
            notes.Add($"teacher {options.TeacherArch} initialised at random (BERT init): pre-training and fine-tuning arrive with the trainer (issue 3), so it is untrained");

            // Round trip: the folder must load back to the same function as the model that was saved.
            progress("checking the saved teacher reloads to identical outputs");
            var (loaded, _) = BertCheckpoint.Load(teacherDir);
            using (loaded)
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                made.eval();
                loaded.eval();
                var ids = randint(0, made.Config.VocabSize, [2, 16], dtype: ScalarType.Int64, generator: new Generator((ulong)options.Seed));
                double diff = (made.forward(new BertInputs(ids)).Logits - loaded.forward(new BertInputs(ids)).Logits).abs().max().item<float>();
                if (diff != 0) throw new InvalidOperationException($"reloaded teacher differs from the saved one by {diff}");
            }
            notes.Add("saved teacher reloads bit-for-bit (config.json + model.safetensors + vocab.txt, Hugging Face layout)");
        }
        notes.Add("compression methods available so far: none; the table lists the teacher only (each method adds its rows when it lands)");
        notes.Add("latency is of the teacher with a sequence-classification head (pooler + classifier), random token ids, no padding");

        // Timed as it will be deployed: with a sequence-classification head (pooler + classifier, new here), not the MLM
        // head, whose [B, T, vocab] projection would dominate and is not part of a served classifier.
        var (teacher, _) = BertCheckpoint.Load(teacherDir, BertTask.SequenceClassification);
        using (teacher)
        {
            var rows = new List<BenchRow>();
            long bytes = new DirectoryInfo(teacherDir).GetFiles().Sum(f => f.Length);
            long parameters = ParameterCounts.Of(teacher).Total;
            foreach (var precision in new[] { ComputePrecision.Float32, ComputePrecision.BFloat16 })
            {
                teacher.SetPrecision(precision);
                progress($"timing the teacher ({precision}) at batch 1 and 32, length {options.SeqLength}");
                var b1 = Latency.Measure(teacher, 1, options.SeqLength, warmup: 3, iterations: options.Iterations, seed: options.Seed);
                var b32 = Latency.Measure(teacher, 32, options.SeqLength, warmup: 2, iterations: Math.Max(3, options.Iterations / 2), seed: options.Seed);
                rows.Add(new BenchRow("teacher", "none (untrained)", parameters, bytes, b1, b32, precision == ComputePrecision.Float32 ? "fp32" : "bf16"));
            }
            teacher.SetPrecision(ComputePrecision.Float32);
            return new QuickstartResult(dataSource, notes, rows, Machine.Describe());
        }
    }

    /// <summary>A small uncased WordPiece vocabulary for running without the shared data.</summary>
    public static IReadOnlyList<string> GeneratedVocabulary()
    {
        var tokens = new List<string> { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
        tokens.AddRange(".,;:!?'\"()-".Select(c => c.ToString()));
        tokens.AddRange(Enumerable.Range('a', 26).Select(c => ((char)c).ToString()));
        tokens.AddRange(Enumerable.Range('a', 26).Select(c => "##" + (char)c));
        tokens.AddRange(Enumerable.Range(0, 10).Select(d => d.ToString()));
        tokens.AddRange(["the", "is", "was", "good", "bad", "movie", "film", "not", "very", "and", "of", "to", "it", "this", "that"]);
        return tokens;
    }
}
