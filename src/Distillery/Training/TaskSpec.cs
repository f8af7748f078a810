using System.Text.Json;
using System.Text.Json.Serialization;
using Distillery.Data;
using Distillery.Models;
using Distillery.Text;

namespace Distillery.Training;

/// <summary>
/// The tasks a job trains or evaluates on: the nine GLUE tasks (in <see cref="GlueTask"/> order), SQuAD, and the
/// sentence-embedding evaluations (<see cref="EmbeddingTasks"/>: zero-shot, no training set of their own).
/// </summary>
[JsonConverter(typeof(TaskNameJsonConverter))]
public enum TaskName
{
    Cola, Sst2, Mrpc, Qqp, Stsb, Mnli, Qnli, Rte, Wnli, Squad,
    /// <summary>STS-B dev: Spearman correlation of embedding cosines with the gold scores ("sts-embed").</summary>
    StsEmbed,
    /// <summary>SQuAD v1.1 dev: question → paragraph retrieval by cosine (recall@1, recall@10, MRR; "squad-retrieval").</summary>
    SquadRetrieval,
    /// <summary>MRPC dev: paraphrase by a cosine threshold chosen on train ("mrpc-embed").</summary>
    MrpcEmbed,
}

/// <summary>Task names as users write them, read in one place (CLI flags, configs, recipes).</summary>
public static class TaskNames
{
    /// <summary>
    /// "squad", or a GLUE name as <see cref="Glue.ParseTask"/> reads it ("sst2", "SST-2", "sts-b"…); an unknown name is
    /// its one-line error.
    /// </summary>
    public static TaskName Parse(string name)
    {
        string trimmed = name.Trim();
        if (trimmed.Equals("squad", StringComparison.OrdinalIgnoreCase)) return TaskName.Squad;
        foreach (var task in EmbeddingTasks.All)
            if (trimmed.Equals(ShortName(task), StringComparison.OrdinalIgnoreCase)) return task;
        try { return (TaskName)(int)Glue.ParseTask(name); }
        catch (ArgumentException e) { throw new ArgumentException($"{e.Message}; or squad, {string.Join(", ", EmbeddingTasks.All.Select(ShortName))}"); }
    }

    /// <summary>The short name: "sst2", "stsb", "squad", "sts-embed".</summary>
    public static string ShortName(TaskName task) => task switch
    {
        TaskName.Squad => "squad",
        TaskName.StsEmbed => "sts-embed",
        TaskName.SquadRetrieval => "squad-retrieval",
        TaskName.MrpcEmbed => "mrpc-embed",
        _ => Glue.ShortName((GlueTask)(int)task),
    };
}

/// <summary>Task names in JSON: written short ("sst2"), read as <see cref="TaskNames.Parse"/> reads them.</summary>
public sealed class TaskNameJsonConverter : JsonConverter<TaskName>
{
    /// <inheritdoc/>
    public override TaskName Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.String
            ? TaskNames.Parse(reader.GetString()!)
            : throw new JsonException("a task is a name such as \"sst2\" or \"squad\"");

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, TaskName value, JsonSerializerOptions options) => writer.WriteStringValue(TaskNames.ShortName(value));
}

/// <summary>
/// Which task, which data, which lengths, splits and samples: the part every task job shares (fine-tuning, task
/// distillation, pruning, QAT, the int8 check, bench). Jobs hold it as a <see cref="JsonInlineAttribute"/> property,
/// so configs keep their flat keys (<c>"task": "sst2", "data": "…", "max_length": 128</c>).
/// </summary>
public sealed record TaskSpec
{
    /// <summary>A GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or squad.</summary>
    [JsonPropertyName("task")]
    public required TaskName Name { get; init; }
    /// <summary>GLUE: the glue_data folder (or the task's folder); SQuAD: the JSON file (v1.1 or v2.0).</summary>
    public required string Data { get; init; }
    /// <summary>Longest input in tokens (GLUE default 128, SQuAD 384).</summary>
    public int? MaxLength { get; init; }
    /// <summary>SQuAD: window stride in tokens.</summary>
    public int DocStride { get; init; } = 128;
    /// <summary>
    /// SQuAD with only a dev file: train on this many articles (seeded choice), evaluate on the rest. 0 means train on
    /// the file given and evaluate on <see cref="EvalData"/>.
    /// </summary>
    public int SplitArticles { get; init; }
    /// <summary>SQuAD: a separate evaluation file, when not splitting articles.</summary>
    public string? EvalData { get; init; }
    /// <summary>GLUE: a seeded sample of at most this many training examples (quick runs); null uses all.</summary>
    public int? MaxTrainExamples { get; init; }

    /// <summary>Whether this is SQuAD.</summary>
    [JsonIgnore]
    public bool IsSquad => Name == TaskName.Squad;

    /// <summary>Whether this evaluates sentence embeddings (<see cref="EmbeddingTasks"/>).</summary>
    [JsonIgnore]
    public bool IsEmbedding => EmbeddingTasks.All.Contains(Name);

    /// <summary>The GLUE task (not SQuAD, not an embedding task).</summary>
    [JsonIgnore]
    public GlueTask Glue => IsSquad || IsEmbedding ? throw new InvalidOperationException($"{this} is not a GLUE task") : (GlueTask)(int)Name;

    /// <summary>The head a model needs for this task.</summary>
    [JsonIgnore]
    public BertTask Head => IsSquad ? BertTask.QuestionAnswering : IsEmbedding ? BertTask.SentenceEmbedding : BertTask.SequenceClassification;

    /// <summary>The short name ("sst2", "squad").</summary>
    public override string ToString() => TaskNames.ShortName(Name);

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public TaskSpec Validate()
    {
        if (!Enum.IsDefined(Name)) throw new ArgumentException($"unknown task {Name}");
        if (string.IsNullOrWhiteSpace(Data)) throw new ArgumentException("the task's data path (data) is empty");
        if (MaxLength is < 1) throw new ArgumentException($"max_length must be positive (got {MaxLength})");
        if (DocStride < 1) throw new ArgumentException($"doc_stride must be positive (got {DocStride})");
        if (SplitArticles < 0) throw new ArgumentException($"split_articles must not be negative (got {SplitArticles})");
        if (MaxTrainExamples is <= 0) throw new ArgumentException($"max_train_examples must be positive (got {MaxTrainExamples})");
        return this;
    }
}

/// <summary>Everything a task needs: examples, how to score predictions, and the head shape.</summary>
public sealed class TaskData
{
    public required IReadOnlyList<EncodedExample> Train { get; init; }
    public required IReadOnlyList<EncodedExample> Eval { get; init; }
    public required Func<List<float[]>, IReadOnlyDictionary<string, double>> Score { get; init; }
    public required BertTask Head { get; init; }
    public required IReadOnlyList<string> Labels { get; init; }
    public required bool Regression { get; init; }
    public required string PrimaryMetric { get; init; }
    public required string Description { get; init; }

    /// <summary>The same task with other training examples (e.g. unlabeled transfer data).</summary>
    public TaskData WithTrain(IReadOnlyList<EncodedExample> train, string description) => new()
    {
        Train = train, Eval = Eval, Score = Score, Head = Head, Labels = Labels, Regression = Regression, PrimaryMetric = PrimaryMetric, Description = description,
    };

    /// <summary>The same task whose dev scores also carry <paramref name="extra"/>'s metrics of the same predictions.</summary>
    public TaskData WithExtraMetrics(Func<List<float[]>, IReadOnlyDictionary<string, double>> extra) => new()
    {
        Train = Train, Eval = Eval, Head = Head, Labels = Labels, Regression = Regression, PrimaryMetric = PrimaryMetric, Description = Description,
        Score = logits =>
        {
            var merged = new Dictionary<string, double>(Score(logits));
            foreach (var (name, value) in extra(logits))
                if (!merged.TryAdd(name, value)) throw new InvalidOperationException($"dev metric \"{name}\" computed twice");
            return merged;
        },
    };
}

/// <summary>A model folder loaded for a task: its config, tokenizer, the task's data for it, and the model with its trained head.</summary>
public sealed class TrainedTask : IDisposable
{
    /// <summary>The model's config.</summary>
    public required BertConfig Config { get; init; }
    /// <summary>The model's tokenizer.</summary>
    public required BertTextTokenizer Tokenizer { get; init; }
    /// <summary>The task's data, tokenised for this model.</summary>
    public required TaskData Data { get; init; }
    /// <summary>The model, with its trained head for the task.</summary>
    public required BertTaskModel Model { get; init; }

    /// <summary>Dev metrics of the model as it is now (eval mode, no gradients).</summary>
    public IReadOnlyDictionary<string, double> Score() => TaskPipeline.Score(Model, Data, Tokenizer.PadId);

    /// <inheritdoc/>
    public void Dispose() => Model.Dispose();
}

/// <summary>
/// The one way every task job (fine-tuning, distillation, pruning, QAT, the int8 check, bench, eval) loads a model
/// for a task, builds the task's data for it and scores it.
/// </summary>
public static class TaskPipeline
{
    /// <summary>A model folder's config and tokenizer, and the task's data tokenised for it.</summary>
    public static (BertConfig Config, BertTextTokenizer Tokenizer, TaskData Data) ForModel(string modelDir, TaskSpec task, long seed, bool needTrain)
    {
        var config = BertCheckpoint.ReadConfig(modelDir);
        var tokenizer = BertCheckpoint.LoadTokenizer(modelDir, config);
        return (config, tokenizer, Prepare(task, seed, tokenizer, config.MaxPositionEmbeddings, needTrain));
    }

    /// <summary>
    /// A trained model for a task: <see cref="ForModel"/>, then <see cref="LoadTrained"/>. <paramref name="seed"/> picks
    /// training samples and SQuAD article splits (the job's trainer seed).
    /// </summary>
    public static TrainedTask Load(string modelDir, TaskSpec task, long seed, bool needTrain)
    {
        var (config, tokenizer, data) = ForModel(modelDir, task, seed, needTrain);
        return new TrainedTask { Config = config, Tokenizer = tokenizer, Data = data, Model = LoadTrained(modelDir, data, task) };
    }

    /// <summary>
    /// Loads and tokenises a task's training (when <paramref name="needTrain"/>) and evaluation data;
    /// <paramref name="seed"/> picks samples and splits.
    /// </summary>
    public static TaskData Prepare(TaskSpec o, long seed, BertTextTokenizer tokenizer, int maxPositions, bool needTrain)
    {
        if (o.IsEmbedding) return EmbeddingTasks.Prepare(o, tokenizer, maxPositions, needTrain);
        int maxLength = o.MaxLength ?? Math.Min(o.IsSquad ? 384 : 128, maxPositions);
        if (maxLength > maxPositions) throw new ArgumentException($"max length {maxLength} exceeds the model's {maxPositions} positions");
        if (o.IsSquad)
        {
            var options = new SquadOptions { MaxLength = maxLength, DocStride = o.DocStride };
            IReadOnlyList<SquadQuestion> train, eval;
            var all = Squad.Load(o.Data);
            if (o.SplitArticles > 0) (train, eval) = Squad.SplitArticles(all, o.SplitArticles, (int)(seed & int.MaxValue));
            else
            {
                train = all;
                eval = o.EvalData != null ? Squad.Load(o.EvalData) : needTrain ? throw new ArgumentException("SQuAD needs --eval-data FILE or --split-articles N (only a dev set is available here)") : all;
            }
            options = options with { Version2 = all.Any(q => q.IsImpossible) };
            var evalFeatures = Squad.Featurize(tokenizer, eval, options);
            IReadOnlyList<EncodedExample> Encode(IReadOnlyList<SquadFeature> f) => f.Select(x => new EncodedExample(x.InputIds, x.TokenTypeIds, -1, float.NaN, x.StartPosition, x.EndPosition)).ToList();
            return new TaskData
            {
                Train = needTrain ? Encode(Squad.Featurize(tokenizer, train, options)) : [],
                Eval = Encode(evalFeatures),
                Score = logits =>
                {
                    // [T, 2] per feature → start and end rows.
                    var starts = logits.Select(l => Enumerable.Range(0, l.Length / 2).Select(i => l[2 * i]).ToArray()).ToList();
                    var ends = logits.Select(l => Enumerable.Range(0, l.Length / 2).Select(i => l[2 * i + 1]).ToArray()).ToList();
                    return Squad.Evaluate(eval, Squad.Decode(eval, evalFeatures, starts, ends, options));
                },
                Head = BertTask.QuestionAnswering, Labels = ["LABEL_0", "LABEL_1"], Regression = false, PrimaryMetric = "f1",
                Description = $"SQuAD: {train.Count:N0} train / {eval.Count:N0} eval questions, {evalFeatures.Count:N0} eval windows of ≤{maxLength} tokens",
            };
        }
        var task = o.Glue;
        var info = Glue.Info(task);
        EncodedExample EncodeOne(GlueExample e)
        {
            var t = tokenizer.Encode(e.TextA, e.TextB, maxLength);
            return new EncodedExample(t.InputIds, t.TokenTypeIds, e.Label, (float)e.Score);
        }
        IReadOnlyList<GlueExample> trainExamples = needTrain ? Glue.Load(task, Glue.SplitPath(o.Data, task, "train")) : [];
        trainExamples = Sampling.Sample(trainExamples, o.MaxTrainExamples, seed);
        // Every dev split of the task (MNLI: matched, then mismatched), scored separately; the first one's metrics keep
        // their names (model selection uses them), later splits' are suffixed with the split's name.
        var devSplits = info.DevSplits.Select(split => (Split: split, Examples: Glue.Load(task, Glue.SplitPath(o.Data, task, split)))).ToList();
        IReadOnlyDictionary<string, double> Score(List<float[]> logits)
        {
            var result = new Dictionary<string, double>();
            int offset = 0;
            for (int i = 0; i < devSplits.Count; i++)
            {
                var (split, examples) = devSplits[i];
                var part = logits.GetRange(offset, examples.Count);
                offset += examples.Count;
                var metrics = info.IsRegression
                    ? Glue.EvaluateRegression(part.Select(l => (double)l[0]).ToList(), examples)
                    : Glue.Evaluate(task, part.Select(l => Array.IndexOf(l, l.Max())).ToList(), examples);
                foreach (var (k, v) in metrics) result[i == 0 ? k : $"{k}_{split}"] = v;
            }
            return result;
        }
        return new TaskData
        {
            Train = trainExamples.Select(EncodeOne).ToList(),
            Eval = devSplits.SelectMany(d => d.Examples).Select(EncodeOne).ToList(),
            Score = Score,
            Head = BertTask.SequenceClassification,
            Labels = info.IsRegression ? ["score"] : info.Labels,
            Regression = info.IsRegression,
            PrimaryMetric = info.PrimaryMetric,
            Description = $"{info.DirectoryName}: {trainExamples.Count:N0} train / {string.Join(" + ", devSplits.Select(d => $"{d.Examples.Count:N0} {d.Split}"))} examples, ≤{maxLength} tokens",
        };
    }

    /// <summary>
    /// Loads a model folder that must already carry a trained head for the task (a fine-tuned model: evaluation,
    /// a distillation teacher, pruning): a missing head or a head of the wrong size is one line, and nothing leaks.
    /// </summary>
    public static BertTaskModel LoadTrained(string dir, TaskData data, TaskSpec task)
    {
        var (model, report) = BertCheckpoint.Load(dir, data.Head);
        string? problem = report.Initialized.Count > 0
            ? $"{dir}: has no trained {BertTasks.ArchitectureName(data.Head)} head for {task} (missing {string.Join(", ", report.Initialized.Take(3))}); fine-tune it first"
            : data.Head == BertTask.SequenceClassification && model.Config.NumLabels != data.Labels.Count
                ? $"{dir}: its head has {model.Config.NumLabels} outputs, task {task} needs {data.Labels.Count}"
                : null;
        if (problem == null) return model;
        model.Dispose();
        throw new InvalidDataException(problem);
    }

    /// <summary>Dev metrics of <paramref name="model"/> as it is now (eval mode, no gradients).</summary>
    public static IReadOnlyDictionary<string, double> Score(BertTaskModel model, TaskData data, int padId)
    {
        model.eval();
        return data.Score(TaskObjective.Predict(model, data.Eval, padId));
    }

    /// <summary>Scores a model folder on a task's dev data (no training), in <paramref name="precision"/> (auto: resolved for this CPU).</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(string modelDir, TaskSpec task, ComputePrecision precision = ComputePrecision.Float32)
    {
        using var trained = Load(modelDir, task, new TrainerOptions().Seed, needTrain: false);
        trained.Model.SetPrecision(ComputePrecisions.ResolveForRun(precision, warn: null));
        return trained.Score();
    }

    /// <summary>
    /// A model folder's dev outputs on a GLUE task example by example, with the gold answers and the metrics computed
    /// from the same outputs: what a paired bootstrap over dev examples needs (bench/claims-table.py). Classification:
    /// the predicted class index (the argmax of the logits, as the metrics take it) and the gold label; regression: the
    /// predicted and the gold score. Examples in the dev file's order (MNLI: matched, then mismatched).
    /// </summary>
    public static DevPredictions PredictDev(string modelDir, TaskSpec task, ComputePrecision precision = ComputePrecision.Float32)
    {
        if (task.IsSquad || task.IsEmbedding)
            throw new ArgumentException($"per-example dev predictions are written for the GLUE tasks only, not {task} (its answers are spans or rankings, not one label per example)");
        using var trained = Load(modelDir, task, new TrainerOptions().Seed, needTrain: false);
        trained.Model.SetPrecision(ComputePrecisions.ResolveForRun(precision, warn: null));
        trained.Model.eval();
        var logits = TaskObjective.Predict(trained.Model, trained.Data.Eval, trained.Tokenizer.PadId);   // one float[] per example
        bool regression = trained.Data.Regression;
        return new DevPredictions(
            task.ToString(), trained.Data.PrimaryMetric, regression, trained.Data.Score(logits),
            trained.Data.Eval.Select(e => regression ? e.Score : (double)e.Label).ToArray(),
            logits.Select(l => regression ? l[0] : (double)Array.IndexOf(l, l.Max())).ToArray());
    }
}

/// <summary>
/// Per-example dev outputs of a model (<see cref="TaskPipeline.PredictDev"/>): <paramref name="Gold"/> and
/// <paramref name="Predictions"/> are aligned (class indices for classification, scores for regression), and
/// <paramref name="Metrics"/> are the task's metrics of exactly these predictions.
/// </summary>
public sealed record DevPredictions(string Task, string PrimaryMetric, bool Regression, IReadOnlyDictionary<string, double> Metrics,
    double[] Gold, double[] Predictions);
