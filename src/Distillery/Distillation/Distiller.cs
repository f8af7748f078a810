using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Distillation;

/// <summary>The corpus a task-agnostic method distils on, and how it is cut into masked-LM batches.</summary>
public sealed record CorpusSpec
{
    /// <summary>Text files or folders.</summary>
    [JsonPropertyName("corpus")]
    public required IReadOnlyList<string> Files { get; init; }
    /// <summary>Tokens per packed sequence.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Masking of the batches (the MLM term's targets).</summary>
    public Data.MaskingOptions Masking { get; init; } = new();
    /// <summary>Held-out sequences for the student's MLM evaluation.</summary>
    public int EvalSequences { get; init; } = 256;
    /// <summary>What a line that is not UTF-8 does.</summary>
    public Data.InvalidUtf8 InvalidUtf8 { get; init; } = Data.InvalidUtf8.Error;
    /// <summary>Tokenised-corpus cache.</summary>
    public string? CacheDir { get; init; }
}

/// <summary>
/// Options of <c>distillery distill</c>, for every method: the method's own options record (<see cref="Method"/>, written
/// as <c>"method": name, name: {…}</c>), the teacher and student, and the task or the corpus it distils on.
/// </summary>
public sealed record DistillOptions : IJsonForm<DistillOptions>
{
    /// <summary>The method, as its options record (the record names the method: see <see cref="DistillMethods.Of"/>).</summary>
    [JsonIgnore]
    public IDistillMethodOptions Method { get; init; } = DistillMethods.Default.DefaultOptions();
    /// <summary>The teacher's model folder: fine-tuned for a task, pre-trained (masked-LM) for a corpus.</summary>
    public required string Teacher { get; init; }
    /// <summary>How the student is built; null: the method's default, or the method builds its own.</summary>
    public StudentInit? Student { get; init; }
    /// <summary>The task to distil on (written inline); null on a corpus.</summary>
    [JsonInline]
    public TaskSpec? Task { get; init; }
    /// <summary>
    /// Unlabeled transfer data to distil on instead of the task's training set (Well-Read Students' step 2): text files
    /// with one example per line, a tab separating the two texts of a pair. Soft targets only.
    /// </summary>
    public IReadOnlyList<string>? TransferData { get; init; }
    /// <summary>
    /// A folder of teacher-logit shards (<see cref="TeacherLogitCache"/>): the teacher's logits on the training examples
    /// are computed once per teacher × examples and reused by every epoch, run and seed (methods that distil the
    /// teacher's outputs alone: kd on classification and regression tasks, embedding distillation's sentence vectors);
    /// null: computed in each run, once.
    /// </summary>
    public string? TeacherCache { get; init; }
    /// <summary>The corpus to distil on (written inline); null on a task.</summary>
    [JsonInline]
    public CorpusSpec? Corpus { get; init; }
    /// <summary>Output model folder (on a corpus: a masked-LM student, to fine-tune next).</summary>
    public required string Out { get; init; }
    /// <summary>Optimisation; null: <see cref="TaskTrainer"/> or <see cref="CorpusTrainer"/>.</summary>
    public TrainerOptions? Trainer { get; init; }

    /// <summary>Optimisation on a task, unless given.</summary>
    public static TrainerOptions TaskTrainer => new() { LearningRate = 1e-4, Epochs = 3, BatchSize = 32 };
    /// <summary>Optimisation on a corpus, unless given (DistilBERT: lr 5e-4 with warm-up; here sized for compact teachers).</summary>
    public static TrainerOptions CorpusTrainer => new() { LearningRate = 5e-4, WarmupRatio = 0.05, Epochs = 1, BatchSize = 32 };

    /// <summary>The trainer options this run uses.</summary>
    [JsonIgnore]
    public TrainerOptions ResolvedTrainer => Trainer ?? (Corpus != null ? CorpusTrainer : TaskTrainer);

    /// <summary>The registered method <see cref="Method"/> belongs to.</summary>
    [JsonIgnore]
    public DistillMethod Registered => DistillMethods.Of(Method);

    /// <inheritdoc/>
    public static object? TakeOwnKeys(JsonObject json, string where)
    {
        var name = json["method"];
        if (name != null && name.GetValueKind() != JsonValueKind.String) throw new InvalidDataException($"\"method\" in {where} is not a name");
        var method = name == null ? DistillMethods.Default : DistillMethods.Find(name.GetValue<string>());
        json.Remove("method");
        var own = json[method.Key];
        // Earlier versions wrote every method's options (defaults) beside the chosen one's: only the chosen one's count.
        foreach (var other in DistillMethods.All) json.Remove(other.Key);
        StrictJson.CheckKeys(own, method.OptionsType, method.Key);
        return own?.Deserialize(method.OptionsType, RunFiles.Json) ?? method.DefaultOptions();
    }

    /// <inheritdoc/>
    public static DistillOptions WithOwnKeys(DistillOptions read, object? own) => read with { Method = (IDistillMethodOptions)own! };

    /// <inheritdoc/>
    public static void WriteOwnKeys(DistillOptions value, JsonObject json)
    {
        var method = value.Registered;
        json.Insert(0, "method", method.Name);
        int at = json.IndexOf("trainer");
        json.Insert(at < 0 ? json.Count : at, method.Key, JsonSerializer.SerializeToNode(value.Method, method.OptionsType, RunFiles.Json));
    }
}

/// <summary>
/// Runs a distillation method end to end, whichever it is (the registry says what it needs): teacher and student, data,
/// training, the saved model, run files.
/// </summary>
public static class Distiller
{
    /// <summary>Unlabeled examples from text files: one per non-empty line, a tab separating a pair's texts.</summary>
    public static IReadOnlyList<EncodedExample> TransferExamples(IReadOnlyList<string> files, Text.BertTextTokenizer tokenizer, int maxLength, int? cap, long seed)
    {
        var lines = new List<(string A, string? B)>();
        var strict = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true);
        foreach (string file in Data.TextCorpus.ExpandPaths(files))
        {
            int number = 0;
            foreach (var line in File.ReadLines(file, strict))
            {
                number++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                var parts = line.Split('\t');
                if (parts.Length > 2) throw new InvalidDataException($"{file}:{number}: {parts.Length} tab-separated fields; transfer data has one text or a pair");
                lines.Add((parts[0], parts.Length == 2 ? parts[1] : null));
            }
        }
        if (lines.Count == 0) throw new InvalidDataException($"no transfer examples in {string.Join(", ", files)}");
        return Sampling.Sample(lines, cap, seed).Select(l =>
        {
            var t = tokenizer.Encode(l.A, l.B, maxLength);
            return new EncodedExample(t.InputIds, t.TokenTypeIds, -1, float.NaN);
        }).ToList();
    }

    /// <summary>
    /// Distils the teacher into the student on a task (keeping the best dev checkpoint, unless the method evaluates at
    /// the end only) or on a corpus (a masked-LM student), and writes it with its run files. Everything that can be
    /// wrong with the inputs (a method on the wrong data, a teacher without a trained head, vocabularies that differ,
    /// layer indices or targets out of range) is reported before training starts.
    /// </summary>
    public static JsonObject Run(DistillOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        var method = options.Registered;
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Teacher, options.Student?.Checkpoint]);
        options = options with { Trainer = options.ResolvedTrainer.Validate().WithResolvedPrecision(RunEvents.Warn(events)) };
        method.Check(options, teacher: null, resume);   // what needs no teacher is one line before any file is read
        var plan = method.Check(options, BertCheckpoint.ReadConfig(options.Teacher), resume);
        return options.Corpus != null ? OnCorpus(method, options, plan, resume, events) : OnTask(method, options, plan, resume, events);
    }

    /// <summary>The run's first line: "teacher L4-H256 (11,170,562 parameters) → student L2-H256 (…)".</summary>
    static string Pair(BertTaskModel teacher, string student) =>
        $"teacher {BertArch.NameOf(teacher.Config)} ({ParameterCounts.Of(teacher).Total:N0} parameters) → {student}";

    static JsonObject OnTask(DistillMethod method, DistillOptions options, DistillPlan plan, bool resume, RunEvents events)
    {
        var task = options.Task!;
        var trainer = options.Trainer!;
        var (teacherConfig, tokenizer, data) = TaskPipeline.ForModel(options.Teacher, task, trainer.Seed, needTrain: options.TransferData == null);
        if (options.TransferData != null)
        {
            int maxLength = task.MaxLength ?? Math.Min(128, teacherConfig.MaxPositionEmbeddings);
            var transfer = TransferExamples(options.TransferData, tokenizer, maxLength, task.MaxTrainExamples, trainer.Seed);
            data = data.WithTrain(transfer, $"{data.Description}; distilling on {transfer.Count:N0} unlabeled transfer examples instead of the training set");
        }
        events.Message?.Invoke(data.Description);

        using var teacherModel = TaskPipeline.LoadTrained(options.Teacher, data, task);
        var inputs = new MethodInputs(teacherModel, plan.Student, data.Head, trainer.Seed);
        if (method.DistilsLogitsOnly && data.Head is BertTask.SequenceClassification or BertTask.SentenceEmbedding)
        {
            // The teacher's logits on the training examples, once per run (every epoch reuses them) or once per teacher ×
            // examples across runs with a cache folder.
            inputs.Teacher.Cache = TeacherLogitCache.Build(teacherModel, options.Teacher, data.Train, tokenizer.PadId, options.TeacherCache);
            var cache = inputs.Teacher.Cache;
            string what = data.Head == BertTask.SentenceEmbedding ? "teacher vectors" : "teacher logits";
            events.Message?.Invoke(cache.Reused ? $"{what} on {cache.Count:N0} examples read from {cache.File}"
                : $"{what} on {cache.Count:N0} examples computed once" + (cache.File != null ? $", cached in {cache.File}" : ""));
        }
        var distillation = method.ForTask(options.Method, inputs);
        using var student = distillation.Student;
        if (student.Config.MaxPositionEmbeddings < (task.MaxLength ?? 0))
            throw new ArgumentException($"max length {task.MaxLength} exceeds the student's {student.Config.MaxPositionEmbeddings} positions");
        events.Message?.Invoke(Pair(teacherModel, distillation.StudentSummary));
        // Every dev evaluation also says how far the student's predictions are from the teacher's (HomoDistil's
        // discrepancy curve; the teacher's dev logits are computed once). Span QA has none: its per-window logits are
        // padded to each batch's length.
        if (data.Head == BertTask.SequenceClassification)
        {
            teacherModel.eval();
            var teacherDev = TaskObjective.Predict(teacherModel, data.Eval, tokenizer.PadId);
            bool regression = data.Regression;
            data = data.WithExtraMetrics(studentDev => Evaluation.TeacherDiscrepancy.Of(teacherDev, studentDev, regression));
        }
        return FineTuning.TrainOnTask(student, distillation, distillation.Finish, data, tokenizer, trainer, lengthBucketing: true, options.Out,
            "distill", task.ToString(), new { command = "distill", options }, resume, events, keepFinal: method.ResultIsFinalModel);
    }

    static JsonObject OnCorpus(DistillMethod method, DistillOptions options, DistillPlan plan, bool resume, RunEvents events)
    {
        var corpus = options.Corpus!;
        var trainer = options.Trainer!;
        var teacherConfig = BertCheckpoint.ReadConfig(options.Teacher);
        var tokenizer = BertCheckpoint.LoadTokenizer(options.Teacher, teacherConfig);
        var (teacherModel, report) = BertCheckpoint.Load(options.Teacher, BertTask.MaskedLM);
        using (teacherModel)
        {
            // The teacher's head: a method that distils its masked-LM predictions needs a trained one (an untrained one,
            // as config.json says, was refused by Check); one that reads only the encoder (MiniLM) takes the teacher as
            // it is, e.g. a teacher assistant distilled by MiniLM, whose head was never trained.
            bool readsHead = method.ReadsTeacherMlmHead(options.Method);
            if (report.Initialized.Count > 0 && readsHead)
                throw new InvalidDataException($"{options.Teacher}: the teacher has no trained masked-LM head (missing {string.Join(", ", report.Initialized.Take(3))}), which {method.Name} distils; distil from the pre-trained model, before fine-tuning");
            if (!readsHead && (report.Initialized.Count > 0 || teacherConfig.MlmHeadUntrained != null))
                events.Message?.Invoke($"the teacher's masked-LM head is {(report.Initialized.Count > 0 ? "missing" : "untrained")}; {method.Name} reads only its encoder");
            // The student's head, when this objective does not train it, is saved as untrained (config.json says why).
            string? untrainedHead = method.UntrainedMlmHead(options.Method);
            var pretrain = new PretrainOptions
            {
                Corpus = corpus.Files, Out = options.Out, SeqLength = corpus.SeqLength, Masking = corpus.Masking, EvalSequences = corpus.EvalSequences,
                InvalidUtf8 = corpus.InvalidUtf8, CacheDir = corpus.CacheDir, Trainer = trainer,
            };
            var distillation = method.ForCorpus(options.Method, new MethodInputs(teacherModel, plan.Student, BertTask.MaskedLM, trainer.Seed));
            using var student = (BertForMaskedLM)distillation.Student;
            events.Message?.Invoke(Pair(teacherModel, distillation.StudentSummary));
            // The saved model is what the method finishes with (e.g. a physically pruned copy of the masked student).
            return Pretraining.RunOnCorpus(pretrain, tokenizer, student, distillation, "distill", new { command = "distill", options }, resume, events,
                saved: () => (BertForMaskedLM)distillation.Finish(), untrainedMlmHead: untrainedHead);
        }
    }
}
