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
    /// <summary>Its task and data (written inline): what the scores and fine-tuning use.</summary>
    [JsonInline]
    public required TaskSpec Task { get; init; }
    /// <summary>Output model folder (physically pruned).</summary>
    public required string Out { get; init; }
    /// <summary>Heads to keep in every layer (null: all, or what <see cref="Target"/> says).</summary>
    public int? KeepHeads { get; init; }
    /// <summary>FFN neurons to keep in every layer (null: all, or what <see cref="Target"/> says).</summary>
    public int? KeepNeurons { get; init; }
    /// <summary>Hidden dimensions to keep (null: all, or what <see cref="Target"/> says).</summary>
    public int? KeepHidden { get; init; }
    /// <summary>
    /// The target as an architecture (L4-H128-F512, -A optional; the depth must be the model's) or a parameter count
    /// (<see cref="PruneTarget"/>); an alternative to the three keep counts.
    /// </summary>
    public string? Target { get; init; }
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

    /// <summary>
    /// The widths to keep for a model of <paramref name="config"/> with head <paramref name="task"/>: from
    /// <see cref="Target"/> or the keep counts (not both); each within the model's widths.
    /// </summary>
    public TargetWidths Resolve(BertConfig config, BertTask task)
    {
        if (Target != null)
        {
            if (KeepHeads != null || KeepNeurons != null || KeepHidden != null) throw new ArgumentException("give either a target or keep counts (heads, neurons, hidden), not both");
            var widths = PruneTarget.Parse(Target).Resolve(config, task);
            if (widths.Layers != config.NumHiddenLayers) throw new ArgumentException($"pruning keeps every layer: target {Target} has {widths.Layers}, the model {config.NumHiddenLayers}");
            return widths;
        }
        if (KeepHeads == null && KeepNeurons == null && KeepHidden == null) throw new ArgumentException("give a target (e.g. L4-H128-F512 or 5M) or at least one of keep-heads, keep-neurons, keep-hidden");
        int heads = KeepHeads ?? config.NumAttentionHeads, neurons = KeepNeurons ?? config.IntermediateSize, hidden = KeepHidden ?? config.HiddenSize;
        if (heads < 0 || heads > config.NumAttentionHeads) throw new ArgumentException($"keep-heads {heads} is outside 0..{config.NumAttentionHeads}");
        if (neurons < 0 || neurons > config.IntermediateSize) throw new ArgumentException($"keep-neurons {neurons} is outside 0..{config.IntermediateSize}");
        if (hidden < 1 || hidden > config.HiddenSize) throw new ArgumentException($"keep-hidden {hidden} is outside 1..{config.HiddenSize}");
        return new TargetWidths(config.NumHiddenLayers, hidden, heads, neurons);
    }
}

/// <summary>
/// The mask schedule shared by iterative pruning and pruning while distilling: every ΔT steps, the cubic curve's share of the way
/// from the full widths to the target sets how many heads, neurons and hidden dimensions stay; the lowest-scoring
/// live ones go; masks only shrink. The widths reach the target exactly once the curve reaches 1.
/// </summary>
public static class IterativeMask
{
    /// <summary>The next mask: <paramref name="current"/> narrowed to the widths at <paramref name="progress"/> (0..1) by <paramref name="scores"/>.</summary>
    public static PruningMask Next(BertConfig config, PruningMask current, StructureScores scores, double progress, TargetWidths target)
    {
        int Width(int full, int goal) => (int)Math.Round(full - progress * (full - goal));
        var live = MaskSelection.Excluding(scores, current);
        return new PruningMask(
            live.Heads.Select((h, l) => TopK(h, Math.Min(Width(config.HeadsInLayer(l), target.Heads), current.Heads[l].Count(k => k)))).ToArray(),
            live.Neurons.Select((n, l) => TopK(n, Math.Min(Width(config.IntermediateSizeOf(l), target.Ffn), current.Neurons[l].Count(k => k)))).ToArray(),
            TopK(live.Hidden, Math.Min(Width(config.HiddenSize, target.Hidden), current.KeptHidden(config))));
    }

    static bool[] TopK(double[] values, int k) => MaskSelection.PerLayer(new StructureScores([values], [], []), k, 0).Heads[0];
}

/// <summary>
/// The checkpointed state of pruning while training (iterative pruning, HomoDistil), beyond the weights: the mask, and
/// the importance tracker's accumulated scores; so a resumed run prunes what the uninterrupted one would.
/// </summary>
public static class MaskedTrainingState
{
    /// <summary>The state for <see cref="ICheckpointedObjective.SaveState"/>.</summary>
    public static (IReadOnlyDictionary<string, Tensor> Tensors, JsonObject Values) Save(ImportanceTracker tracker, PruningMask mask)
    {
        var (tensors, steps) = tracker.State();
        return (tensors, new JsonObject { ["mask"] = mask.ToJson(), ["importance_steps"] = steps });
    }

    /// <summary>
    /// Restores <paramref name="tracker"/> and returns the saved mask, applied to <paramref name="model"/> again (its
    /// weights came back zeroed; its hidden mask, which is not a weight, is set again so LayerNorms normalise over the
    /// kept dimensions). A state that does not fit the model throws <see cref="InvalidDataException"/>.
    /// </summary>
    public static PruningMask Load(BertTaskModel model, ImportanceTracker tracker, IReadOnlyDictionary<string, Tensor> tensors, JsonObject values)
    {
        var mask = PruningMask.FromJson(values["mask"], model.Config, "the pruning mask");
        int steps = values["importance_steps"] is JsonValue v && v.TryGetValue(out int n) ? n : throw new InvalidDataException("importance_steps is not a whole number");
        tracker.Restore(tensors, steps);
        StructuredPruning.ZeroMasked(model, mask);
        return mask;
    }
}

/// <summary>
/// Iterative pruning during fine-tuning (no distillation): the cubic schedule sets how many heads, neurons and hidden
/// dimensions are masked at each step; scores accumulate every step; masks only grow, and pruned weights are zeroed
/// after every optimizer step so they cannot grow back.
/// </summary>
public sealed class IterativePruning : ITrainingObjective<TaskBatch>, ICheckpointedObjective
{
    private readonly BertTaskModel model;
    private readonly ImportanceTracker tracker;
    private readonly CubicSchedule schedule;
    private readonly int pruneEvery;
    private readonly TargetWidths target;
    private PruningMask mask;

    /// <summary>Prunes <paramref name="model"/> toward <paramref name="target"/> while it fine-tunes.</summary>
    public IterativePruning(BertTaskModel model, ImportanceScore score, CubicSchedule schedule, int pruneEvery, TargetWidths target)
    {
        this.model = model;
        tracker = new ImportanceTracker(model, score);
        this.schedule = schedule;
        this.pruneEvery = Math.Max(1, pruneEvery);
        mask = PruningMask.KeepAll(model.Config);
        this.target = target;
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
            mask = IterativeMask.Next(model.Config, mask, tracker.Scores(), schedule.Progress(step), target);
        StructuredPruning.ZeroMasked(model, mask);
    }

    /// <inheritdoc/>
    public (IReadOnlyDictionary<string, Tensor> Tensors, JsonObject Values) SaveState() => MaskedTrainingState.Save(tracker, mask);

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> tensors, JsonObject values) => mask = MaskedTrainingState.Load(model, tracker, tensors, values);
}

/// <summary>Structured pruning of a fine-tuned model to a target width per layer, one-shot or iterative.</summary>
public static class Pruner
{
    /// <summary>
    /// Prunes, fine-tunes (or prunes while fine-tuning), and writes the physically smaller model with run files. With
    /// <paramref name="resume"/>, continues an interrupted run from its checkpoint: one-shot scores and prunes again
    /// (the same shapes; every weight then comes from the checkpoint), iterative restores its masks and scores.
    /// </summary>
    public static JsonObject Run(PruneOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        options.Trainer.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Model]);
        options = options with { Trainer = options.Trainer.WithResolvedPrecision(RunEvents.Warn(events)) };
        var target = options.Resolve(BertCheckpoint.ReadConfig(options.Model), options.Task.Validate().Head);
        using (var trained = TaskPipeline.Load(options.Model, options.Task, options.Trainer.Seed, needTrain: true))
        {
            var (model, data, tokenizer) = (trained.Model, trained.Data, trained.Tokenizer);
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
                var mask = MaskSelection.PerLayer(tracker.Scores(), target.Heads, target.Ffn, target.Hidden);
                tracker.Dispose();
                using var pruned = StructuredPruning.Shrink(model, mask);
                events.Message?.Invoke($"pruned to hidden {target.Hidden}, {target.Heads} heads and {target.Ffn} FFN neurons per layer: {ParameterCounts.Of(model).Total:N0} → {ParameterCounts.Of(pruned).Total:N0} parameters");
                return FineTuning.TrainOnTask(pruned, new TaskObjective(pruned), () => pruned, data, tokenizer, options.Trainer, lengthBucketing: true,
                    options.Out, "prune", options.Task.ToString(), new { command = "prune", options }, resume, events);
            }
            else
            {
                var trainSource = new TaskBatchSource(data.Train, options.Trainer.BatchSize, options.Trainer.Seed, tokenizer.PadId);
                int total = options.Trainer.MaxSteps ?? Math.Max(1, (int)Math.Ceiling(options.Trainer.Epochs * trainSource.BatchesPerEpoch / options.Trainer.GradientAccumulation));
                var schedule = new CubicSchedule(0, total, (int)(options.WarmupFraction * total), (int)(options.FinalFraction * total));
                var objective = new IterativePruning(model, options.Score, schedule, options.PruneEvery, target);
                // Evaluated once, at the end (at the final width); the physically pruned model is what is saved.
                var metrics = FineTuning.TrainOnTask(model, objective, () => StructuredPruning.Shrink(model, objective.Mask), data, tokenizer,
                    options.Trainer with { EvalEvery = 0 }, lengthBucketing: true, options.Out, "prune", options.Task.ToString(),
                    new { command = "prune", options }, resume, events);
                return metrics;
            }
        }
    }
}
