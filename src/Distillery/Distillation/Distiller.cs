using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Pruning;
using Distillery.Training;

namespace Distillery.Distillation;

/// <summary>The distillation methods Distillery has; the one open set, registered here.</summary>
public enum DistillMethod
{
    /// <summary>Vanilla task-specific KD (<see cref="KnowledgeDistillation"/>).</summary>
    Kd,
    /// <summary>Task-agnostic DistilBERT triple loss on a corpus (<see cref="DistilBert"/>).</summary>
    DistilBert,
    /// <summary>Task-agnostic MiniLM self-attention relation distillation on a corpus (<see cref="MiniLm"/>).</summary>
    MiniLm,
    /// <summary>BERT-of-Theseus progressive module replacing on a task (<see cref="Distillation.Theseus"/>).</summary>
    Theseus,
    /// <summary>HomoDistil: the teacher pruned while distilled into itself, on a corpus or on a task (<see cref="Distillation.HomoDistil"/>).</summary>
    HomoDistil,
}

/// <summary>Options of task-agnostic distillation on a corpus (DistilBERT).</summary>
public sealed record CorpusDistillOptions
{
    /// <summary>The method.</summary>
    public DistillMethod Method { get; init; } = DistillMethod.DistilBert;
    /// <summary>The pre-trained (masked-LM) teacher's model folder.</summary>
    public required string Teacher { get; init; }
    /// <summary>How the student is built (DistilBERT: every other teacher layer).</summary>
    public StudentInit? Student { get; init; }
    /// <summary>Text files or folders.</summary>
    public required IReadOnlyList<string> Corpus { get; init; }
    /// <summary>Output model folder (a masked-LM student, to fine-tune next).</summary>
    public required string Out { get; init; }
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
    /// <summary>DistilBERT's weights and temperature.</summary>
    public DistilBertOptions DistilBert { get; init; } = new();
    /// <summary>MiniLM's relations, relation heads and teacher layer.</summary>
    public MiniLmOptions MiniLm { get; init; } = new();
    /// <summary>HomoDistil's target, score, schedule and weights (the student is the teacher, pruned).</summary>
    [System.Text.Json.Serialization.JsonPropertyName("homodistil")]
    public HomoDistilOptions HomoDistil { get; init; } = new();
    /// <summary>Optimisation (DistilBERT: lr 5e-4 with warm-up; here sized for compact teachers).</summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 5e-4, WarmupRatio = 0.05, Epochs = 1, BatchSize = 32 };
}

/// <summary>Options of <c>distillery distill</c> for task-specific methods.</summary>
public sealed record DistillOptions
{
    /// <summary>The method.</summary>
    public DistillMethod Method { get; init; } = DistillMethod.Kd;
    /// <summary>The fine-tuned teacher's model folder.</summary>
    public required string Teacher { get; init; }
    /// <summary>How the student is built (kd); Theseus builds its successor itself.</summary>
    public StudentInit? Student { get; init; }
    /// <summary>BERT-of-Theseus: successor layers, scheduler and initialisation.</summary>
    public TheseusOptions Theseus { get; init; } = new();
    /// <summary>HomoDistil (task-specific): target, score, schedule and weights; the student is the teacher, pruned.</summary>
    [System.Text.Json.Serialization.JsonPropertyName("homodistil")]
    public HomoDistilOptions HomoDistil { get; init; } = new();
    /// <summary>GLUE task name or "squad".</summary>
    public required string Task { get; init; }
    /// <summary>Task data (as for fine-tuning).</summary>
    public required string Data { get; init; }
    /// <summary>Output model folder.</summary>
    public required string Out { get; init; }
    /// <summary>Longest input in tokens.</summary>
    public int? MaxLength { get; init; }
    /// <summary>SQuAD window stride.</summary>
    public int DocStride { get; init; } = 128;
    /// <summary>SQuAD: train on this many articles, evaluate on the rest.</summary>
    public int SplitArticles { get; init; }
    /// <summary>GLUE: a seeded sample of at most this many training (or transfer) examples.</summary>
    public int? MaxTrainExamples { get; init; }
    /// <summary>
    /// Unlabeled transfer data to distil on instead of the task's training set (Well-Read Students' step 2): text files
    /// with one example per line, a tab separating the two texts of a pair. Soft targets only (<see cref="KdOptions.Alpha"/> 1).
    /// </summary>
    public IReadOnlyList<string>? TransferData { get; init; }
    /// <summary>Vanilla KD's temperature and weights.</summary>
    public KdOptions Kd { get; init; } = new();
    /// <summary>Optimisation.</summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 1e-4, Epochs = 3, BatchSize = 32 };
}

/// <summary>Runs a distillation method end to end: teacher and student, data, training, best checkpoint, run files.</summary>
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
    /// Task-agnostic distillation on a corpus: builds the student from the masked-LM teacher (default: every other
    /// layer), trains it with the method's loss, and writes the masked-LM student with its run files.
    /// </summary>
    public static JsonObject RunOnCorpus(CorpusDistillOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Teacher, options.Student?.Checkpoint]);
        options = options with { Trainer = options.Trainer.WithResolvedPrecision(RunEvents.Warn(events)) };
        options.DistilBert.Validate();
        if (options.Method == DistillMethod.HomoDistil)
        {
            options.HomoDistil.Validate();
            if (resume) throw new ArgumentException("homodistil cannot resume: its masks and importance scores are not checkpointed; start again");
            if (options.Student != null) throw new ArgumentException("homodistil builds its student from the teacher; leave out the student");
        }
        var teacherConfig = BertCheckpoint.ReadConfig(options.Teacher);
        var tokenizer = BertCheckpoint.LoadTokenizer(options.Teacher, teacherConfig);
        var (teacherModel, report) = BertCheckpoint.Load(options.Teacher, BertTask.MaskedLM);
        using (teacherModel)
        {
            if (report.Initialized.Count > 0)
                throw new InvalidDataException($"{options.Teacher}: the teacher has no trained masked-LM head (missing {string.Join(", ", report.Initialized.Take(3))}); distil from the pre-trained model, before fine-tuning");
            var teacher = new Teacher(teacherModel);
            var corpus = new PretrainOptions
            {
                Corpus = options.Corpus, Out = options.Out, SeqLength = options.SeqLength, Masking = options.Masking, EvalSequences = options.EvalSequences,
                InvalidUtf8 = options.InvalidUtf8, CacheDir = options.CacheDir, Trainer = options.Trainer,
            };
            if (options.Method == DistillMethod.HomoDistil)
            {
                var homo = new HomoDistil(teacher, options.HomoDistil, options.Trainer.Seed);
                using var copy = (BertForMaskedLM)homo.Student;
                events.Message?.Invoke($"teacher {BertArch.NameOf(teacherModel.Config)} ({ParameterCounts.Of(teacherModel).Total:N0} parameters) → pruned while distilled to {homo.Target} ({PruneTarget.Count(teacherConfig, BertTask.MaskedLM, homo.Target.Layers, homo.Target.Hidden, homo.Target.Heads, homo.Target.Ffn):N0})");
                // The saved model is the physically pruned student, not the masked full-width one that trains.
                return Pretraining.RunOnCorpus(corpus, tokenizer, copy, homo, "distill", new { command = "distill", options }, resume, events, saved: () => (BertForMaskedLM)homo.Finish());
            }
            var init = options.Student ?? StudentInit.EveryOtherLayer(teacherConfig.NumHiddenLayers);
            using var student = (BertForMaskedLM)init.Build(teacherModel, BertTask.MaskedLM, options.Trainer.Seed);
            events.Message?.Invoke($"teacher {BertArch.NameOf(teacherModel.Config)} ({ParameterCounts.Of(teacherModel).Total:N0} parameters) → student {BertArch.NameOf(student.Config)} ({ParameterCounts.Of(student).Total:N0})");
            IDistillationMethod<MlmBatch> method = options.Method switch
            {
                DistillMethod.DistilBert => new DistilBert(teacher, student, options.DistilBert),
                DistillMethod.MiniLm => new MiniLm(teacher, student, options.MiniLm),
                _ => throw new ArgumentException($"method {options.Method} does not distil on a corpus"),
            };
            return Pretraining.RunOnCorpus(corpus, tokenizer, student, method, "distill", new { command = "distill", options }, resume, events);
        }
    }

    /// <summary>
    /// Distils the teacher into the student on a task and writes the best dev checkpoint with its run files. Everything
    /// that can be wrong with the inputs (teacher without a trained head, vocabularies that differ, layer indices out of
    /// range) is reported before training starts.
    /// </summary>
    public static JsonObject Run(DistillOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Teacher, options.Student?.Checkpoint]);
        options.Trainer.Validate();
        options = options with { Trainer = options.Trainer.WithResolvedPrecision(RunEvents.Warn(events)) };
        options.Kd.Validate();
        if (options.Method == DistillMethod.HomoDistil)
        {
            options.HomoDistil.Validate();
            if (resume) throw new ArgumentException("homodistil cannot resume: its masks and importance scores are not checkpointed; start again");
            if (options.Student != null) throw new ArgumentException("homodistil builds its student from the teacher; leave out the student");
        }
        var teacherConfig = BertCheckpoint.ReadConfig(options.Teacher);
        if (options.Method == DistillMethod.HomoDistil)   // a target the teacher cannot reach is one line before the data loads
            PruneTarget.Parse(options.HomoDistil.Target!).Resolve(teacherConfig, options.Task.Equals("squad", StringComparison.OrdinalIgnoreCase) ? BertTask.QuestionAnswering : BertTask.SequenceClassification);
        var tokenizer = BertCheckpoint.LoadTokenizer(options.Teacher, teacherConfig);
        var taskOptions = new FinetuneOptions
        {
            Task = options.Task, Model = options.Teacher, Data = options.Data, Out = options.Out, MaxLength = options.MaxLength,
            DocStride = options.DocStride, SplitArticles = options.SplitArticles, MaxTrainExamples = options.MaxTrainExamples, Trainer = options.Trainer,
        };
        var data = FineTuning.Prepare(taskOptions, tokenizer, teacherConfig.MaxPositionEmbeddings, needTrain: options.TransferData == null);
        if (options.TransferData != null)
        {
            if (data.Head != BertTask.SequenceClassification) throw new ArgumentException("transfer data is supported for GLUE tasks (sentences or sentence pairs)");
            if (options.Method == DistillMethod.HomoDistil && options.HomoDistil.AlphaMlm != 0)
                throw new ArgumentException($"transfer data has no labels: use --alpha-mlm 0 (no task loss), not {options.HomoDistil.AlphaMlm}");
            if (options.Method != DistillMethod.HomoDistil && options.Kd.Alpha != 1) throw new ArgumentException($"transfer data has no labels: use --alpha 1 (soft targets only), not {options.Kd.Alpha}");
            int maxLength = options.MaxLength ?? Math.Min(128, teacherConfig.MaxPositionEmbeddings);
            var transfer = TransferExamples(options.TransferData, tokenizer, maxLength, options.MaxTrainExamples, options.Trainer.Seed);
            data = data.WithTrain(transfer, $"{data.Description}; distilling on {transfer.Count:N0} unlabeled transfer examples instead of the training set");
        }
        events.Message?.Invoke(data.Description);

        using (var teacherModel = FineTuning.LoadTrained(options.Teacher, data, options.Task))
        {
            IDistillationMethod<TaskBatch> method;
            var trainer = options.Trainer;
            if (options.Method == DistillMethod.Theseus)
                method = new Theseus(teacherModel, options.Theseus, options.Trainer.Seed);
            else if (options.Method == DistillMethod.HomoDistil)
            {
                // Evaluated once, at the end, at the target width: an earlier, wider best would not be the target.
                method = new HomoDistil(new Teacher(teacherModel), options.HomoDistil, options.Trainer.Seed);
                trainer = trainer with { EvalEvery = 0 };
            }
            else if (options.Method == DistillMethod.Kd)
            {
                var init = options.Student ?? throw new ArgumentException("vanilla KD needs a student: --student DIR, --student-arch ARCH or --init-from-teacher LAYERS");
                method = new KnowledgeDistillation(new Teacher(teacherModel), init.Build(teacherModel, data.Head, options.Trainer.Seed), options.Kd);
            }
            else throw new ArgumentException($"method {options.Method} is not a task-specific method (it distils on a corpus)");
            using var student = method.Student;
            if (student.Config.MaxPositionEmbeddings < (options.MaxLength ?? 0))
                throw new ArgumentException($"max length {options.MaxLength} exceeds the student's {student.Config.MaxPositionEmbeddings} positions");
            events.Message?.Invoke($"teacher {BertArch.NameOf(teacherModel.Config)} ({ParameterCounts.Of(teacherModel).Total:N0} parameters) → student {BertArch.NameOf(student.Config)} ({ParameterCounts.Of(student).Total:N0})");
            return FineTuning.TrainOnTask(student, method, method.Finish, data, tokenizer, trainer, lengthBucketing: true, options.Out,
                "distill", options.Task, new { command = "distill", options }, resume, events);
        }
    }
}
