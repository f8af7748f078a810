using System.Text.Json.Nodes;
using Distillery.Data;
using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Training;

/// <summary>One tokenised example: ids and segment ids (unpadded), and its target.</summary>
/// <param name="InputIds">Token ids, [CLS] … [SEP] (unpadded).</param>
/// <param name="TokenTypeIds">Segment ids.</param>
/// <param name="Label">Class index (classification), or -1.</param>
/// <param name="Score">Regression target, or NaN.</param>
/// <param name="Start">QA start token (0 = no answer in this window), or -1.</param>
/// <param name="End">QA end token, or -1.</param>
public sealed record EncodedExample(int[] InputIds, int[] TokenTypeIds, int Label, float Score, int Start = -1, int End = -1);

/// <summary>A padded micro-batch of <see cref="EncodedExample"/>s, row-major [Batch, Length].</summary>
/// <param name="InputIds">Token ids [Batch * Length], padded.</param>
/// <param name="TokenTypeIds">Segment ids [Batch * Length].</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding [Batch * Length].</param>
/// <param name="Batch">Rows.</param>
/// <param name="Length">Padded length.</param>
/// <param name="Labels">Class per row (-1: none).</param>
/// <param name="Scores">Regression target per row (NaN: none).</param>
/// <param name="Starts">QA start token per row.</param>
/// <param name="Ends">QA end token per row.</param>
/// <param name="Rows">The examples' indices in the training set the batch was drawn from (null: not from one), so
/// per-example data computed once (the teacher-logit cache) can be looked up.</param>
public sealed record TaskBatch(long[] InputIds, long[] TokenTypeIds, long[] AttentionMask, int Batch, int Length,
    long[] Labels, float[] Scores, long[] Starts, long[] Ends, int[]? Rows = null)
{
    /// <summary>Model inputs as tensors (created in the caller's dispose scope).</summary>
    public BertInputs ToInputs() => new(tensor(InputIds, [Batch, Length]), tensor(AttentionMask, [Batch, Length]), tensor(TokenTypeIds, [Batch, Length]));

    /// <summary>Pads <paramref name="rows"/> to the longest (dynamic padding); <paramref name="indices"/>: their indices in the training set.</summary>
    public static TaskBatch Collate(IReadOnlyList<EncodedExample> rows, int padId, int[]? indices = null)
    {
        int b = rows.Count, t = rows.Max(r => r.InputIds.Length);
        var ids = new long[b * t];
        var types = new long[b * t];
        var mask = new long[b * t];
        if (padId != 0) Array.Fill(ids, padId);
        for (int i = 0; i < b; i++)
        {
            var r = rows[i];
            for (int j = 0; j < r.InputIds.Length; j++)
            {
                ids[i * t + j] = r.InputIds[j];
                types[i * t + j] = r.TokenTypeIds[j];
                mask[i * t + j] = 1;
            }
        }
        return new TaskBatch(ids, types, mask, b, t, rows.Select(r => (long)r.Label).ToArray(), rows.Select(r => r.Score).ToArray(),
            rows.Select(r => (long)r.Start).ToArray(), rows.Select(r => (long)r.End).ToArray(), indices);
    }
}

/// <summary>
/// Batches of encoded examples with dynamic padding. With bucketing, each epoch's shuffled order is cut into chunks of
/// 50 batches, sorted by length inside a chunk, batched, and the batches shuffled: similar lengths share a batch (less
/// padding) while the order stays random. Every epoch's batches are a pure function of (seed, epoch).
/// </summary>
public sealed class TaskBatchSource : IBatchSource<TaskBatch>
{
    private readonly IReadOnlyList<EncodedExample> examples;
    private readonly int batchSize;
    private readonly long seed;
    private readonly bool shuffle;
    private readonly bool bucket;
    private readonly int padId;
    private (int Epoch, int[][] Batches)? cached;

    public TaskBatchSource(IReadOnlyList<EncodedExample> examples, int batchSize, long seed, int padId, bool shuffle = true, bool bucket = true)
    {
        if (examples.Count == 0) throw new ArgumentException("no examples");
        this.examples = examples;
        this.batchSize = batchSize;
        this.seed = seed;
        this.shuffle = shuffle;
        this.bucket = bucket;
        this.padId = padId;
    }

    /// <inheritdoc/>
    public int BatchesPerEpoch => (examples.Count + batchSize - 1) / batchSize;

    private int[][] Batches(int epoch)
    {
        if (cached is { } c && c.Epoch == epoch) return c.Batches;
        var order = Enumerable.Range(0, examples.Count).ToArray();
        var random = new Random((int)(Trainer<TaskBatch>.StepSeed(seed, epoch) & int.MaxValue));
        if (shuffle) random.Shuffle(order);
        if (bucket)
        {
            int chunk = batchSize * 50;
            for (int start = 0; start < order.Length; start += chunk)
                Array.Sort(order, start, Math.Min(chunk, order.Length - start), Comparer<int>.Create((a, b) => examples[a].InputIds.Length.CompareTo(examples[b].InputIds.Length)));
        }
        var batches = order.Chunk(batchSize).ToArray();
        if (shuffle && bucket) random.Shuffle(batches);
        cached = (epoch, batches);
        return batches;
    }

    /// <inheritdoc/>
    public TaskBatch Get(int epoch, int index)
    {
        var rows = Batches(epoch)[index];
        return TaskBatch.Collate(rows.Select(i => examples[i]).ToList(), padId, rows);
    }
}

/// <summary>Task losses: cross-entropy (classification), MSE (regression), mean of start/end cross-entropy (span QA).</summary>
public sealed class TaskObjective(BertTaskModel model) : ITrainingObjective<TaskBatch>
{
    /// <inheritdoc/>
    public nn.Module Module => model;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch) => (Compute(model, batch), batch.AttentionMask.Sum());

    /// <summary>The supervised loss of <paramref name="model"/> on <paramref name="batch"/>.</summary>
    public static Tensor Compute(BertTaskModel model, TaskBatch batch) => Loss(model, model.forward(batch.ToInputs()), batch);

    /// <summary>The supervised loss of a head's <paramref name="output"/> (computed however the caller ran the model).</summary>
    public static Tensor Loss(BertTaskModel model, TaskOutput output, TaskBatch batch)
    {
        return model.Task switch
        {
            BertTask.SequenceClassification when model.Config.IsRegression =>
                nn.functional.mse_loss(output.Logits.squeeze(-1), tensor(batch.Scores)),
            BertTask.SequenceClassification => nn.functional.cross_entropy(output.Logits, tensor(batch.Labels)),
            BertTask.QuestionAnswering =>
                (nn.functional.cross_entropy(output.StartLogits, tensor(batch.Starts)) + nn.functional.cross_entropy(output.EndLogits, tensor(batch.Ends))) / 2,
            _ => throw new InvalidOperationException("fine-tuning needs a classification, regression or QA head"),
        };
    }

    /// <summary>Logits of every example, in order, in batches of <paramref name="batchSize"/> (no gradients).</summary>
    public static List<float[]> Predict(BertTaskModel model, IReadOnlyList<EncodedExample> examples, int padId, int batchSize = 64)
    {
        var result = new List<float[]>(examples.Count);
        using var _ = no_grad();
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = examples.Skip(start).Take(batchSize).ToList();
            var batch = TaskBatch.Collate(rows, padId);
            var logits = model.forward(batch.ToInputs()).Logits.contiguous();   // [B, C] or [B, T, 2]
            var flat = logits.data<float>().ToArray();
            int per = (int)(logits.numel() / rows.Count);
            for (int i = 0; i < rows.Count; i++) result.Add(flat.AsSpan(i * per, per).ToArray());
        }
        return result;
    }
}

/// <summary>Options of <c>distillery finetune</c> and <c>distillery eval</c>.</summary>
public sealed record FinetuneOptions
{
    /// <summary>The task, its data, lengths and splits (written inline: <c>"task": "sst2", "data": …</c>).</summary>
    [JsonInline]
    public required TaskSpec Task { get; init; }
    /// <summary>The model folder to start from (pre-trained or any BERT).</summary>
    public required string Model { get; init; }
    /// <summary>Output model folder.</summary>
    public required string Out { get; init; }
    /// <summary>Group similar lengths into batches.</summary>
    public bool LengthBucketing { get; init; } = true;
    /// <summary>Optimisation (fine-tuning defaults).</summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 1e-4, Epochs = 3, BatchSize = 32, EvalEvery = 0 };
}

/// <summary>Fine-tuning and evaluation on GLUE and SQuAD.</summary>
public static class FineTuning
{
    /// <summary>Fine-tunes <see cref="FinetuneOptions.Model"/>, keeps the best dev checkpoint, and writes it with run files to <see cref="FinetuneOptions.Out"/>.</summary>
    /// <remarks>An existing finished <see cref="FinetuneOptions.Out"/> is refused unless <paramref name="overwrite"/> (or <paramref name="resume"/>); see <see cref="RunOutput"/>.</remarks>
    public static JsonObject Run(FinetuneOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        options.Trainer.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Model]);
        options = options with { Trainer = options.Trainer.WithResolvedPrecision(RunEvents.Warn(events)) };
        var (_, tokenizer, data) = TaskPipeline.ForModel(options.Model, options.Task.Validate(), options.Trainer.Seed, needTrain: true);
        events.Message?.Invoke(data.Description);
        torch.manual_seed(options.Trainer.Seed);   // the new head's init
        var (model, report) = BertCheckpoint.Load(options.Model, data.Head, c => c with
        {
            Labels = data.Labels,
            ProblemType = data.Head == BertTask.SequenceClassification ? (data.Regression ? ProblemType.Regression : ProblemType.SingleLabelClassification) : null,
        });
        foreach (var w in report.Warnings()) events.Message?.Invoke(w);

        try
        {
            return TrainOnTask(model, new TaskObjective(model), () => model, data, tokenizer, options.Trainer, options.LengthBucketing,
                options.Out, "finetune", options.Task.ToString(), new { command = "finetune", options }, resume, events);
        }
        finally
        {
            model.Dispose();
        }
    }

    /// <summary>
    /// The loop shared by fine-tuning and task-specific distillation: train <paramref name="objective"/> on the task's
    /// data, evaluate <paramref name="evaluated"/> on its dev data, keep the best checkpoint (of
    /// <paramref name="saved"/>()), and write it with <c>run_config.json</c> and <c>metrics.json</c> to <paramref name="outDir"/>.
    /// With <paramref name="keepFinal"/> the result is the model as training ends (the periodic evaluations are logged only).
    /// </summary>
    public static JsonObject TrainOnTask(BertTaskModel evaluated, ITrainingObjective<TaskBatch> objective, Func<BertTaskModel> saved,
        TaskData data, BertTextTokenizer tokenizer, TrainerOptions trainerOptions, bool lengthBucketing, string outDir,
        string command, string task, object runConfig, bool resume, RunEvents? events = null, bool keepFinal = false)
    {
        events ??= new RunEvents();
        if (resume) RunFiles.CheckResumable(outDir, runConfig);
        RunOutput.Begin(outDir, resume);
        string bestDir = Path.Combine(outDir, "best");
        if (!resume && Directory.Exists(bestDir)) Directory.Delete(bestDir, recursive: true);   // a killed earlier run's
        RunFiles.Write(outDir, "run_config.json", runConfig);
        var trainData = new TaskBatchSource(data.Train, trainerOptions.BatchSize, trainerOptions.Seed, tokenizer.PadId, bucket: lengthBucketing);
        var trainer = new Trainer<TaskBatch>(objective, trainData, trainerOptions, outDir)
        {
            Evaluate = () =>
            {
                evaluated.eval();
                return data.Score(TaskObjective.Predict(evaluated, data.Eval, tokenizer.PadId));
            },
            SelectBy = (data.PrimaryMetric, true),
            KeepFinal = keepFinal,
            OnBest = _ => BertCheckpoint.Save(saved(), bestDir, tokenizer),
            OnProgress = p => events.StageProgress?.Invoke(p.Step, $"loss {p.Loss:0.000}  {p.TokensPerSecond:N0} tok/s  eta {p.Remaining:hh\\:mm\\:ss}"),
        };
        events.StageStarted?.Invoke($"{command} {task}", trainer.TotalSteps);
        var peak = Runtime.GemmPeaks.TorchOncePerProcess();   // before training, so nothing else runs while it is timed
        var result = trainer.Run(resume);

        // The output is the best dev checkpoint (transformers' load_best_model_at_end). best/ and checkpoint/ stay until
        // the output is complete, checkpoint/ deleted first: a kill anywhere in this window leaves a checkpoint whose
        // --resume replays the last steps (deterministically, so the same best is found again) and finishes from here;
        // a kill after checkpoint/ is gone leaves a finished output and a stray best/ that the next run into it removes.
        var (best, _) = BertCheckpoint.Load(bestDir);
        using (best) BertCheckpoint.Save(best, outDir, tokenizer);
        var metrics = new JsonObject
        {
            ["command"] = command,
            ["task"] = task,
            ["dev"] = RunFiles.Metrics(result.Best!.Metrics),
            ["best_step"] = result.Best.Step,
            ["steps"] = result.Steps,
            ["evaluations"] = new JsonArray(result.Evaluations.Select(e => (JsonNode?)new JsonObject { ["step"] = e.Step, ["metrics"] = RunFiles.Metrics(e.Metrics) }).ToArray()),
            ["tokens_per_second"] = Math.Round(result.TokensPerSecond, 1),
            // Attention FLOPs counted at the mean training example length (length bucketing pads little beyond it).
            ["utilization"] = TrainingUtilization.Metrics(evaluated.Config, evaluated.Task, data.Train.Count == 0 ? 1 : data.Train.Average(e => e.InputIds.Length),
                predictedShare: 1, result.TokensPerSecond, peak),
            ["wall_seconds"] = Math.Round(result.Elapsed.TotalSeconds, 1),
            ["cpu_seconds"] = result.CpuSeconds,   // process CPU time: not inflated by pauses (null: resumed from an older checkpoint)
            ["precision"] = trainerOptions.Precision.ToString(),
            ["machine"] = Runtime.CpuFeatures.DescribeMachine(),
            ["version"] = RunFiles.Version,
        };
        RunFiles.Write(outDir, "metrics.json", metrics);
        if (Directory.Exists(trainer.CheckpointDir)) Directory.Delete(trainer.CheckpointDir, recursive: true);
        Directory.Delete(bestDir, recursive: true);
        return metrics;
    }
}
