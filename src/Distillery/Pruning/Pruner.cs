using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Pruning;

/// <summary>Options of <c>distillery prune</c>.</summary>
public sealed record PruneOptions
{
    /// <summary>A fine-tuned model folder.</summary>
    public required string Model { get; init; }
    /// <summary>Its task (GLUE name or squad): the data scores and fine-tuning use.</summary>
    public required string Task { get; init; }
    /// <summary>Task data.</summary>
    public required string Data { get; init; }
    /// <summary>Output model folder (physically pruned).</summary>
    public required string Out { get; init; }
    /// <summary>Heads to keep in every layer.</summary>
    public required int KeepHeads { get; init; }
    /// <summary>FFN neurons to keep in every layer.</summary>
    public required int KeepNeurons { get; init; }
    /// <summary>How structures are scored.</summary>
    public ImportanceScore Score { get; init; } = ImportanceScore.Sensitivity;
    /// <summary>
    /// One-shot: score once (gradient scores over <see cref="ScoreBatches"/> training batches), prune, then fine-tune
    /// for the trainer's steps. Iterative: fine-tune while pruning on the cubic schedule, masks updated every
    /// <see cref="PruneEvery"/> steps, then remove the pruned structures.
    /// </summary>
    public bool Iterative { get; init; }
    /// <summary>Training batches the one-shot gradient scores accumulate over.</summary>
    public int ScoreBatches { get; init; } = 64;
    /// <summary>Iterative: steps between mask updates (ΔT).</summary>
    public int PruneEvery { get; init; } = 50;
    /// <summary>Iterative: fraction of the steps before pruning starts, and the fraction at the final width at the end.</summary>
    public double WarmupFraction { get; init; } = 0.1;
    /// <summary>Iterative: fraction of the steps spent at the final width.</summary>
    public double FinalFraction { get; init; } = 0.3;
    /// <summary>Fine-tuning (one-shot: after pruning; 0 epochs skips it) or the iterative run.</summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 1e-4, Epochs = 1, BatchSize = 32 };
    /// <summary>Longest input in tokens.</summary>
    public int? MaxLength { get; init; }
    /// <summary>SQuAD: train on N articles, evaluate on the rest.</summary>
    public int SplitArticles { get; init; }
}

/// <summary>
/// Iterative pruning during fine-tuning (no distillation): the cubic schedule sets how many heads and neurons are
/// masked at each step; scores accumulate every step; masks only grow, and pruned weights are zeroed after every
/// optimizer step so they cannot grow back.
/// </summary>
public sealed class IterativePruning : ITrainingObjective<TaskBatch>
{
    private readonly BertTaskModel model;
    private readonly ImportanceTracker tracker;
    private readonly CubicSchedule schedule;
    private readonly int pruneEvery, targetHeads, targetNeurons;
    private PruningMask mask;

    public IterativePruning(BertTaskModel model, ImportanceScore score, CubicSchedule schedule, int pruneEvery, int keepHeads, int keepNeurons)
    {
        this.model = model;
        tracker = new ImportanceTracker(model, score);
        this.schedule = schedule;
        this.pruneEvery = Math.Max(1, pruneEvery);
        mask = PruningMask.KeepAll(model.Config);
        targetHeads = keepHeads;
        targetNeurons = keepNeurons;
    }

    /// <summary>The current mask.</summary>
    public PruningMask Mask => mask;

    /// <inheritdoc/>
    public nn.Module Module => model;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch) => (TaskObjective.Compute(model, batch), batch.AttentionMask.Sum());

    /// <inheritdoc/>
    public void AfterBackward() => tracker.Accumulate();

    /// <inheritdoc/>
    public void OnStepEnd(int step, int totalSteps)
    {
        if (step % pruneEvery == 0 || step == totalSteps)
        {
            // The cubic curve's share of the way from the full width to the target width.
            double progress = schedule.Progress(step);
            var c = model.Config;
            int heads = (int)Math.Round(c.NumAttentionHeads - progress * (c.NumAttentionHeads - targetHeads));
            int neurons = (int)Math.Round(c.IntermediateSize - progress * (c.IntermediateSize - targetNeurons));
            var scores = tracker.Scores();
            // Already-pruned structures stay pruned: their scores are pushed below every live one.
            var masked = new StructureScores(
                scores.Heads.Select((h, l) => h.Select((v, i) => mask.Heads[l][i] ? v : double.NegativeInfinity).ToArray()).ToArray(),
                scores.Neurons.Select((n, l) => n.Select((v, i) => mask.Neurons[l][i] ? v : double.NegativeInfinity).ToArray()).ToArray());
            mask = MaskSelection.PerLayer(masked, heads, neurons);
        }
        StructuredPruning.ZeroMasked(model, mask);
    }
}

/// <summary>Structured pruning of a fine-tuned model to a target width per layer, one-shot or iterative.</summary>
public static class Pruner
{
    /// <summary>Prunes, fine-tunes (or prunes while fine-tuning), and writes the physically smaller model with run files.</summary>
    public static JsonObject Run(PruneOptions options, RunEvents? events = null)
    {
        events ??= new RunEvents();
        var config = BertCheckpoint.ReadConfig(options.Model);
        if (options.KeepHeads < 0 || options.KeepHeads > config.NumAttentionHeads)
            throw new ArgumentException($"keep-heads {options.KeepHeads} is outside 0..{config.NumAttentionHeads}");
        if (options.KeepNeurons < 0 || options.KeepNeurons > config.IntermediateSize)
            throw new ArgumentException($"keep-neurons {options.KeepNeurons} is outside 0..{config.IntermediateSize}");
        var tokenizer = BertCheckpoint.LoadTokenizer(options.Model, config);
        var taskOptions = new FinetuneOptions
        {
            Task = options.Task, Model = options.Model, Data = options.Data, Out = options.Out, MaxLength = options.MaxLength,
            SplitArticles = options.SplitArticles, Trainer = options.Trainer,
        };
        var data = FineTuning.Prepare(taskOptions, tokenizer, config.MaxPositionEmbeddings, needTrain: true);
        using (var model = FineTuning.LoadTrained(options.Model, data, options.Task))
        {
            if (!options.Iterative)
            {
                var tracker = new ImportanceTracker(model, options.Score);
                if (options.Score != ImportanceScore.Magnitude)
                {
                    // Gradient scores: accumulate |θ·∂L/∂θ| over a few training batches (no update).
                    var source = new TaskBatchSource(data.Train, options.Trainer.BatchSize, options.Trainer.Seed, tokenizer.PadId);
                    model.train();
                    for (int i = 0; i < Math.Min(options.ScoreBatches, source.BatchesPerEpoch); i++)
                    {
                        using var scope = NewDisposeScope();
                        manual_seed(Trainer<TaskBatch>.StepSeed(options.Trainer.Seed, i));
                        TaskObjective.Compute(model, source.Get(0, i)).backward();
                        tracker.Accumulate();
                        model.zero_grad();
                    }
                }
                var mask = MaskSelection.PerLayer(tracker.Scores(), options.KeepHeads, options.KeepNeurons);
                tracker.Dispose();
                using var pruned = StructuredPruning.Shrink(model, mask);
                events.Message?.Invoke($"pruned to {options.KeepHeads} heads and {options.KeepNeurons} FFN neurons per layer: {ParameterCounts.Of(model).Total:N0} → {ParameterCounts.Of(pruned).Total:N0} parameters");
                return FineTuning.TrainOnTask(pruned, new TaskObjective(pruned), () => pruned, data, tokenizer, options.Trainer, lengthBucketing: true,
                    options.Out, "prune", options.Task, new { command = "prune", options }, resume: false, events);
            }
            else
            {
                var trainSource = new TaskBatchSource(data.Train, options.Trainer.BatchSize, options.Trainer.Seed, tokenizer.PadId);
                int total = options.Trainer.MaxSteps ?? Math.Max(1, (int)Math.Ceiling(options.Trainer.Epochs * trainSource.BatchesPerEpoch / options.Trainer.GradientAccumulation));
                var schedule = new CubicSchedule(0, total, (int)(options.WarmupFraction * total), (int)(options.FinalFraction * total));
                var objective = new IterativePruning(model, options.Score, schedule, options.PruneEvery, options.KeepHeads, options.KeepNeurons);
                // Evaluated once, at the end (at the final width); the physically pruned model is what is saved.
                var metrics = FineTuning.TrainOnTask(model, objective, () => StructuredPruning.Shrink(model, objective.Mask), data, tokenizer,
                    options.Trainer with { EvalEvery = 0 }, lengthBucketing: true, options.Out, "prune", options.Task, new { command = "prune", options }, resume: false, events);
                return metrics;
            }
        }
    }
}
