using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.IO;
using Distillery.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Training;

/// <summary>What to do when a step's loss is NaN or infinite.</summary>
public enum NonFiniteLoss
{
    /// <summary>Stop with an error naming the step.</summary>
    Stop,
    /// <summary>Drop that optimizer step (gradients discarded), count it, and go on.</summary>
    Skip,
}

/// <summary>
/// Optimisation settings shared by pre-training, fine-tuning and distillation. Defaults are BERT fine-tuning's
/// (AdamW, lr 5e-5 with 10% linear warm-up then linear decay to 0, weight decay 0.01 except biases and LayerNorm,
/// gradient norm clipped at 1).
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>Examples per micro-batch.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Micro-batches per optimizer step (effective batch = BatchSize × this).</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 5e-5;
    /// <summary>Decoupled weight decay (AdamW), not applied to biases and LayerNorm parameters.</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>Adam β₁.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>Adam β₂.</summary>
    public double Beta2 { get; init; } = 0.999;
    /// <summary>Adam ε (BERT: 1e-6).</summary>
    public double AdamEpsilon { get; init; } = 1e-6;
    /// <summary>Fraction of the optimizer steps spent warming up linearly from 0 (ignored when <see cref="WarmupSteps"/> is set).</summary>
    public double WarmupRatio { get; init; } = 0.1;
    /// <summary>Warm-up steps, overriding <see cref="WarmupRatio"/>.</summary>
    public int? WarmupSteps { get; init; }
    /// <summary>Passes over the data (ignored when <see cref="MaxSteps"/> is set).</summary>
    public double Epochs { get; init; } = 3;
    /// <summary>Optimizer steps to run, overriding <see cref="Epochs"/>.</summary>
    public int? MaxSteps { get; init; }
    /// <summary>Global gradient-norm clip; 0 turns clipping off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Seed of data order, masking and dropout. Every random draw of a step is derived from (seed, step), so a resumed run repeats an uninterrupted one.</summary>
    public long Seed { get; init; } = 42;
    /// <summary>Evaluate every this many optimizer steps (0: only at the end).</summary>
    public int EvalEvery { get; init; }
    /// <summary>Log loss and throughput every this many optimizer steps.</summary>
    public int LogEvery { get; init; } = 50;
    /// <summary>Write a resumable checkpoint every this many optimizer steps (0: never during the run).</summary>
    public int CheckpointEvery { get; init; } = 500;
    /// <summary>
    /// Matmul precision (bf16 keeps fp32 master weights). Default <see cref="ComputePrecision.Auto"/>: bf16 where the
    /// CPU has native bf16 (AVX512-BF16 or AMX-BF16), fp32 elsewhere. A run resolves it once at its start
    /// (<see cref="WithResolvedPrecision"/>), so its run_config.json and metrics.json name what actually ran.
    /// </summary>
    public ComputePrecision Precision { get; init; } = ComputePrecision.Auto;
    /// <summary>What a non-finite loss does.</summary>
    public NonFiniteLoss OnNonFiniteLoss { get; init; } = NonFiniteLoss.Stop;

    /// <summary>
    /// This record with <see cref="Precision"/> resolved for this machine (<see cref="ComputePrecisions.ResolveForRun"/>:
    /// auto becomes fp32 or bf16); an explicit bf16 on a CPU that only emulates it stays bf16 and
    /// <paramref name="warn"/> hears one line, once per process.
    /// </summary>
    public TrainerOptions WithResolvedPrecision(Action<string>? warn) => this with { Precision = ComputePrecisions.ResolveForRun(Precision, warn) };

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming it.</summary>
    public TrainerOptions Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(BatchSize >= 1, $"batch size must be at least 1 (got {BatchSize})");
        Require(GradientAccumulation >= 1, $"gradient accumulation must be at least 1 (got {GradientAccumulation})");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"learning rate must be positive (got {LearningRate})");
        Require(WeightDecay >= 0, $"weight decay must not be negative (got {WeightDecay})");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"Adam betas must be in [0, 1) (got {Beta1}, {Beta2})");
        Require(AdamEpsilon > 0, $"Adam epsilon must be positive (got {AdamEpsilon})");
        Require(WarmupRatio is >= 0 and <= 1, $"warm-up ratio must be in [0, 1] (got {WarmupRatio})");
        Require(WarmupSteps is null or >= 0, $"warm-up steps must not be negative (got {WarmupSteps})");
        Require(Epochs > 0 || MaxSteps != null, $"epochs must be positive (got {Epochs})");
        Require(MaxSteps is null or >= 1, $"max steps must be at least 1 (got {MaxSteps})");
        Require(MaxGradNorm >= 0, $"max gradient norm must not be negative (got {MaxGradNorm})");
        Require(EvalEvery >= 0 && LogEvery >= 1 && CheckpointEvery >= 0, "eval/log/checkpoint intervals must not be negative (log ≥ 1)");
        Require(Enum.IsDefined(Precision), $"precision must be fp32, bf16 or auto (got {(int)Precision})");
        return this;
    }
}

/// <summary>Training data as a deterministic function of (epoch, batch index): no hidden state, so a run can resume anywhere.</summary>
public interface IBatchSource<out TBatch>
{
    /// <summary>Micro-batches in one pass over the data.</summary>
    int BatchesPerEpoch { get; }
    /// <summary>Batch <paramref name="index"/> of epoch <paramref name="epoch"/> (order shuffled per epoch from the seed).</summary>
    TBatch Get(int epoch, int index);
}

/// <summary>What is trained and how its loss is computed; one implementation per kind of training (MLM, task, method).</summary>
public interface ITrainingObjective<in TBatch>
{
    /// <summary>The module whose parameters train (a teacher, if any, is not part of it).</summary>
    nn.Module Module { get; }
    /// <summary>Forward pass and scalar loss of one micro-batch, and the number of tokens it covered (for throughput).</summary>
    (Tensor Loss, long Tokens) Loss(TBatch batch);
    /// <summary>Called after the step's gradients are complete, before clipping and the optimizer (importance scores read them).</summary>
    void AfterBackward() { }

    /// <summary>Called after every optimizer step (schedules of methods; nothing for plain training).</summary>
    void OnStepEnd(int step, int totalSteps) { }

    /// <summary>
    /// The named terms of the last <see cref="Loss"/> call, as plain numbers (each unweighted, as the objective defines it:
    /// a distillation method's KL, MLM, hidden-state terms): the trainer averages each over the logging window as it
    /// averages the loss and writes it beside the loss in <c>metrics.jsonl</c> as <c>loss_NAME</c> (and to TensorBoard as
    /// <c>train/loss_NAME</c>). Empty for an objective whose loss is one term. Read after every micro-batch.
    /// </summary>
    IReadOnlyDictionary<string, double> LossTerms => NoTerms;

    /// <summary>The terms of an objective that reports none.</summary>
    private static readonly IReadOnlyDictionary<string, double> NoTerms = new Dictionary<string, double>();
}

/// <summary>
/// An objective with state of its own that the rest of a run depends on, beyond the module's weights and the optimizer
/// (e.g. pruning masks and accumulated importance scores). The trainer writes it into every checkpoint and gives it back
/// on resume, so a resumed run repeats an uninterrupted one.
/// </summary>
public interface ICheckpointedObjective
{
    /// <summary>The state now: tensors by name (the trainer writes them and neither keeps nor disposes them) and plain values.</summary>
    (IReadOnlyDictionary<string, Tensor> Tensors, JsonObject Values) SaveState();

    /// <summary>
    /// Restores a state <see cref="SaveState"/> gave, into an objective built as the interrupted one was. The tensors
    /// belong to the caller (copy what is kept); a state that does not fit this objective throws
    /// <see cref="InvalidDataException"/> naming what.
    /// </summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> tensors, JsonObject values);
}

/// <summary>A progress report, sent after every optimizer step.</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining);

/// <summary>Metrics of one evaluation, keyed as the task's metric names.</summary>
public sealed record EvalResult(int Step, IReadOnlyDictionary<string, double> Metrics);

/// <summary>How a run ended.</summary>
/// <remarks>
/// <paramref name="CpuSeconds"/>: the process's CPU time (all threads, user + system) over the run, resumed parts
/// included; unlike <paramref name="Elapsed"/> it does not grow while the process is paused or waits for the CPU. Null
/// when the run resumed a checkpoint written before it was counted.
/// </remarks>
public sealed record TrainResult(int Steps, double FinalLoss, double TokensPerSecond, TimeSpan Elapsed, int SkippedSteps,
    IReadOnlyList<EvalResult> Evaluations, EvalResult? Best, double? CpuSeconds = null);

/// <summary>
/// The training loop: AdamW with decoupled weight decay (no decay on biases and LayerNorm), linear warm-up and decay,
/// gradient clipping and accumulation, periodic evaluation with best-model keeping, atomic resumable checkpoints,
/// metrics to <c>metrics.jsonl</c> and TensorBoard. One dispose scope per micro-batch: only scalars leave it.
/// </summary>
public sealed class Trainer<TBatch>
{
    private readonly ITrainingObjective<TBatch> objective;
    private readonly IBatchSource<TBatch> data;
    private readonly TrainerOptions options;
    private readonly string runDir;

    /// <summary>Evaluates the module (the trainer puts it in eval mode and under no_grad around the call).</summary>
    public Func<IReadOnlyDictionary<string, double>>? Evaluate { get; init; }
    /// <summary>The metric that decides the best model, and whether larger is better.</summary>
    public (string Name, bool GreaterIsBetter)? SelectBy { get; init; }
    /// <summary>
    /// The final evaluation is the result whatever its score (<see cref="OnBest"/> is called for it alone); earlier ones
    /// are logged only. For a model whose intermediate states are not the result (e.g. wider than the pruning target).
    /// </summary>
    public bool KeepFinal { get; init; }
    /// <summary>Called when an evaluation is the best so far (the caller saves the model).</summary>
    public Action<EvalResult>? OnBest { get; init; }
    /// <summary>Progress after each optimizer step.</summary>
    public Action<TrainProgress>? OnProgress { get; init; }
    /// <summary>Where trainer state for <c>--resume</c> lives.</summary>
    public string CheckpointDir => Path.Combine(runDir, "checkpoint");

    /// <summary>A trainer writing its logs and checkpoints under <paramref name="runDir"/>.</summary>
    public Trainer(ITrainingObjective<TBatch> objective, IBatchSource<TBatch> data, TrainerOptions options, string runDir)
    {
        this.objective = objective;
        this.data = data;
        this.options = options.Validate();
        this.runDir = runDir;
        if (data.BatchesPerEpoch < 1) throw new ArgumentException("the training data has no batches");
    }

    /// <summary>Optimizer steps the run will take.</summary>
    public int TotalSteps => options.MaxSteps ?? Math.Max(1, (int)Math.Ceiling(options.Epochs * data.BatchesPerEpoch / options.GradientAccumulation));

    /// <summary>Learning rate at optimizer step <paramref name="step"/> (0-based): linear warm-up, then linear decay to 0.</summary>
    public static double LearningRateAt(int step, int totalSteps, int warmupSteps, double peak)
    {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        return peak * Math.Max(0.0, (double)(totalSteps - step) / Math.Max(1, totalSteps - warmupSteps));
    }

    /// <summary>Per-step seed: a mix of the run's seed and the step, so every step's randomness is reproducible on its own.</summary>
    public static long StepSeed(long seed, long step)
    {
        ulong z = (ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step + 0x632BE59BD9B4E019UL;   // SplitMix64 finaliser
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (long)((z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFUL);
    }

    /// <summary>Runs (or, with <paramref name="resume"/>, continues) training.</summary>
    public TrainResult Run(bool resume = false, CancellationToken cancel = default)
    {
        Directory.CreateDirectory(runDir);
        var module = objective.Module;
        // Entry points resolve auto before writing their run files; a Trainer used directly resolves it here.
        BertTaskModel.SetPrecision(module, ComputePrecisions.ResolveForRun(options.Precision, warn: null));

        // AdamW parameter groups: biases and LayerNorm weights are not decayed (BERT's exclusion list).
        var named = module.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        var decay = named.Where(p => !NoDecay(p.name)).Select(p => p.parameter).ToList();
        var noDecay = named.Where(p => NoDecay(p.name)).Select(p => p.parameter).ToList();
        // Distillery's AdamW: TorchSharp's algorithm and state (the same optimizer.bin), one fused pass per parameter.
        var optimizer = new AdamW(new[]
        {
            new AdamW.ParamGroup(decay, lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2, eps: options.AdamEpsilon, weight_decay: options.WeightDecay),
            new AdamW.ParamGroup(noDecay, lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2, eps: options.AdamEpsilon, weight_decay: 0.0),
        });
        var trainable = named.Select(p => p.parameter).ToList();
        // A model with NaN or infinite weights cannot train: every loss would be NaN (and --on-nan skip would skip them all).
        using (no_grad())
            foreach (var (name, parameter) in named)
            {
                using var finite = parameter.isfinite().all();
                if (!finite.item<bool>()) throw new InvalidDataException($"weight {name} holds NaN or infinite values; the model cannot be trained (it comes from a diverged run?)");
            }

        int total = TotalSteps;
        int warmup = options.WarmupSteps ?? (int)Math.Round(options.WarmupRatio * total);
        var state = new RunState();
        if (resume) RunOutput.RecoverCheckpoint(runDir);
        if (resume && Directory.Exists(CheckpointDir)) state = LoadCheckpoint(module, optimizer);
        else if (resume) throw new InvalidOperationException($"--resume: no checkpoint in {CheckpointDir}");

        string logPath = Path.Combine(runDir, "metrics.jsonl");
        if (resume && File.Exists(logPath))
        {
            // Lines logged after the checkpoint belong to steps that will be run again: drop them. A kill while a line
            // was being written leaves it cut short: the last line may be damaged (it is after the checkpoint), no other.
            var lines = File.ReadAllLines(logPath);
            var kept = new List<string>();
            for (int i = 0; i < lines.Length; i++)
            {
                int? step;
                try { step = JsonNode.Parse(lines[i])?["step"]?.GetValue<int>(); }
                catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
                {
                    if (i == lines.Length - 1) break;
                    throw new InvalidDataException($"{logPath}:{i + 1}: damaged line ({e.Message.Split('\n')[0]})");
                }
                if (step <= state.Step) kept.Add(lines[i]);
            }
            AtomicFile.WriteAllText(logPath, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
        }
        using var metricsLog = new StreamWriter(logPath, append: resume, new System.Text.UTF8Encoding(false));
        string tensorboardDir = Path.Combine(runDir, "tensorboard");
        if (resume) TensorBoardEvents.DropAfter(tensorboardDir, state.Step);   // the resumed run logs those steps again, in a new file
        var tensorboard = torch.utils.tensorboard.SummaryWriter(tensorboardDir);   // writes each event as it is added
        var watch = Stopwatch.StartNew();
        var elapsedBefore = TimeSpan.FromSeconds(state.ElapsedSeconds);
        static TimeSpan ProcessCpu() { using var self = Process.GetCurrentProcess(); return self.TotalProcessorTime; }
        var cpuBefore = state.CpuSeconds;
        var cpuAtStart = ProcessCpu();
        double? CpuSecondsNow() => cpuBefore + (ProcessCpu() - cpuAtStart).TotalSeconds;
        long tokensThisRun = 0;

        module.train();
        while (state.Step < total)
        {
            cancel.ThrowIfCancellationRequested();
            double lr = LearningRateAt(state.Step, total, warmup, options.LearningRate);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;

            double stepLoss = 0;
            var stepTerms = new Dictionary<string, double>();
            bool finite = true;
            for (int micro = 0; micro < options.GradientAccumulation; micro++)
            {
                long microStep = (long)state.Step * options.GradientAccumulation + micro;
                int epoch = (int)(microStep / data.BatchesPerEpoch), index = (int)(microStep % data.BatchesPerEpoch);
                torch.manual_seed(StepSeed(options.Seed, microStep));   // dropout of this micro-batch
                using var scope = NewDisposeScope();
                var batch = data.Get(epoch, index);
                var (loss, tokens) = objective.Loss(batch);
                double value = loss.item<float>();
                if (!double.IsFinite(value))
                {
                    finite = false;
                    if (options.OnNonFiniteLoss == NonFiniteLoss.Stop)
                        throw new TrainingDivergedException($"loss is {value} at step {state.Step + 1} of {total} (epoch {epoch + 1}, batch {index}); lower the learning rate or use --on-nan skip");
                    break;
                }
                // A loss with no graph (every module the step ran was frozen) has no gradient to give.
                if (loss.requires_grad) (loss / options.GradientAccumulation).backward();
                stepLoss += value / options.GradientAccumulation;
                foreach (var (name, term) in objective.LossTerms)
                    stepTerms[name] = stepTerms.GetValueOrDefault(name) + term / options.GradientAccumulation;
                tokensThisRun += tokens;
                state.Tokens += tokens;
            }

            double gradNorm = double.NaN;
            if (finite)
            {
                objective.AfterBackward();
                if (options.MaxGradNorm > 0) gradNorm = nn.utils.clip_grad_norm_(trainable, options.MaxGradNorm);
                optimizer.step();
            }
            else state.Skipped++;
            optimizer.zero_grad();
            state.Step++;
            objective.OnStepEnd(state.Step, total);

            if (finite)
            {
                state.LastLoss = stepLoss;
                state.WindowLoss += stepLoss;
                state.WindowSteps++;
                foreach (var (name, term) in stepTerms) state.WindowTerms[name] = state.WindowTerms.GetValueOrDefault(name) + term;
            }
            var elapsed = elapsedBefore + watch.Elapsed;
            double tokensPerSecond = tokensThisRun / Math.Max(1e-9, watch.Elapsed.TotalSeconds);
            var remaining = TimeSpan.FromSeconds(watch.Elapsed.TotalSeconds / Math.Max(1, state.Step - state.StartStep) * (total - state.Step));
            OnProgress?.Invoke(new TrainProgress(state.Step, total, state.LastLoss, lr, tokensPerSecond, elapsed, remaining));

            if (state.Step % options.LogEvery == 0 || state.Step == total)
            {
                double meanLoss = state.WindowSteps > 0 ? state.WindowLoss / state.WindowSteps : double.NaN;
                var line = new JsonObject
                {
                    ["step"] = state.Step, ["loss"] = Finite(meanLoss), ["learning_rate"] = lr, ["grad_norm"] = Finite(gradNorm),
                    ["tokens_per_second"] = Math.Round(tokensPerSecond, 1), ["elapsed_seconds"] = Math.Round(elapsed.TotalSeconds, 1),
                    ["skipped_steps"] = state.Skipped,
                };
                // The loss's named terms, averaged over the same finite steps as the loss (e.g. HomoDistil's KL per step).
                foreach (var (name, sum) in state.WindowTerms)
                {
                    double mean = state.WindowSteps > 0 ? sum / state.WindowSteps : double.NaN;
                    line["loss_" + name] = Finite(mean);
                    if (double.IsFinite(mean)) tensorboard.add_scalar("train/loss_" + name, (float)mean, state.Step);
                }
                Log(metricsLog, line);
                if (double.IsFinite(meanLoss)) tensorboard.add_scalar("train/loss", (float)meanLoss, state.Step);
                tensorboard.add_scalar("train/learning_rate", (float)lr, state.Step);
                tensorboard.add_scalar("train/tokens_per_second", (float)tokensPerSecond, state.Step);
                state.WindowLoss = 0;
                state.WindowSteps = 0;
                state.WindowTerms.Clear();
            }

            bool evalNow = Evaluate != null && ((options.EvalEvery > 0 && state.Step % options.EvalEvery == 0) || state.Step == total);
            if (evalNow) RunEvaluation(state, metricsLog, tensorboard);

            if ((options.CheckpointEvery > 0 && state.Step % options.CheckpointEvery == 0) && state.Step < total)
            {
                state.ElapsedSeconds = (elapsedBefore + watch.Elapsed).TotalSeconds;
                state.CpuSeconds = CpuSecondsNow();
                SaveCheckpoint(module, optimizer, state);
            }
        }
        optimizer.Dispose();
        if (state.Skipped > 0 && state.Skipped >= state.Step)
            throw new TrainingDivergedException($"every one of the {state.Step} steps had a non-finite loss and was skipped: nothing was trained, so no model is written; lower the learning rate or check the data");
        var totalElapsed = elapsedBefore + watch.Elapsed;
        return new TrainResult(state.Step, state.LastLoss, tokensThisRun / Math.Max(1e-9, watch.Elapsed.TotalSeconds), totalElapsed, state.Skipped,
            state.Evaluations, state.Best, CpuSecondsNow() is double cpu ? Math.Round(cpu, 3) : null);
    }

    static bool NoDecay(string name) => name.EndsWith(".bias", StringComparison.Ordinal) || name.Contains("LayerNorm", StringComparison.Ordinal) || name == "bias";

    static JsonNode? Finite(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    static void Log(StreamWriter log, JsonObject line)
    {
        log.WriteLine(line.ToJsonString());
        log.Flush();
    }

    void RunEvaluation(RunState state, StreamWriter log, SummaryWriter tensorboard)
    {
        var module = objective.Module;
        module.eval();
        IReadOnlyDictionary<string, double> metrics;
        using (no_grad()) metrics = Evaluate!();
        module.train();
        var result = new EvalResult(state.Step, metrics);
        state.Evaluations.Add(result);
        var line = new JsonObject { ["step"] = state.Step };
        foreach (var (k, v) in metrics)
        {
            line["eval_" + k] = Finite(v);
            if (double.IsFinite(v)) tensorboard.add_scalar("eval/" + k, (float)v, state.Step);
        }
        Log(log, line);
        if (SelectBy is { } select)
        {
            if (!metrics.TryGetValue(select.Name, out double value))
                throw new InvalidOperationException($"evaluation returned no metric \"{select.Name}\" (it returned {string.Join(", ", metrics.Keys)})");
            bool better = KeepFinal
                ? state.Step == TotalSteps
                : state.Best == null || (select.GreaterIsBetter ? value > state.Best.Metrics[select.Name] : value < state.Best.Metrics[select.Name]);
            if (better)
            {
                state.Best = result;
                OnBest?.Invoke(result);
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ checkpoints

    /// <summary>Counters that, with the weights and the optimizer, fully determine the rest of the run.</summary>
    private sealed class RunState
    {
        public int Step;
        public int StartStep;
        public long Tokens;
        public int Skipped;
        public double ElapsedSeconds;
        /// <summary>The process CPU seconds of the run's earlier parts (0 at the start; null if a checkpoint predates it).</summary>
        public double? CpuSeconds = 0;
        /// <summary>Sum and count of the finite step losses since the last logged line: the next line logs their mean.</summary>
        public double WindowLoss;
        public int WindowSteps;
        /// <summary>Per named loss term (<see cref="ITrainingObjective{TBatch}.LossTerms"/>), its sum over the same steps.</summary>
        public Dictionary<string, double> WindowTerms = [];
        public double LastLoss = double.NaN;
        public List<EvalResult> Evaluations = [];
        public EvalResult? Best;
    }

    /// <summary>
    /// Writes weights (safetensors), optimizer moments and counters into a staging folder, then swaps it in for the
    /// previous checkpoint, so a kill at any moment leaves one complete checkpoint.
    /// </summary>
    void SaveCheckpoint(nn.Module module, AdamW optimizer, RunState state)
    {
        string staging = CheckpointDir + $".partial-{Guid.NewGuid():N}";
        Directory.CreateDirectory(staging);
        try
        {
            using (var scope = NewDisposeScope())
            {
                var tensors = module.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter.detach());
                Safetensors.Save(Path.Combine(staging, "weights.safetensors"), tensors);
            }
            using (var stream = File.Create(Path.Combine(staging, "optimizer.bin")))
            using (var writer = new BinaryWriter(stream))
                optimizer.save_state_dict(writer);
            if (objective is ICheckpointedObjective stateful)
                using (var scope = NewDisposeScope())
                {
                    var (tensors, values) = stateful.SaveState();
                    Safetensors.Save(Path.Combine(staging, ObjectiveTensorsFile), tensors);
                    File.WriteAllText(Path.Combine(staging, ObjectiveValuesFile), values.ToJsonString());
                }
            var json = new JsonObject
            {
                ["step"] = state.Step, ["tokens"] = state.Tokens, ["skipped_steps"] = state.Skipped, ["elapsed_seconds"] = state.ElapsedSeconds, ["cpu_seconds"] = state.CpuSeconds,
                ["window_loss"] = state.WindowLoss, ["window_steps"] = state.WindowSteps, ["last_loss"] = Finite(state.LastLoss),
                ["window_terms"] = new JsonObject(state.WindowTerms.Select(kv => KeyValuePair.Create(kv.Key, Finite(kv.Value)))),
                ["options"] = JsonSerializer.SerializeToNode(options),
                ["evaluations"] = new JsonArray(state.Evaluations.Select(e => (JsonNode?)EvalJson(e)).ToArray()),
                ["best"] = state.Best == null ? null : EvalJson(state.Best),
            };
            File.WriteAllText(Path.Combine(staging, "state.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            string old = CheckpointDir + $".old-{Guid.NewGuid():N}";
            if (Directory.Exists(CheckpointDir)) Directory.Move(CheckpointDir, old);
            Directory.Move(staging, CheckpointDir);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
        catch
        {
            try { Directory.Delete(staging, recursive: true); } catch (IOException) { }
            throw;
        }
    }

    static JsonObject EvalJson(EvalResult e) => new()
    {
        ["step"] = e.Step,
        ["metrics"] = new JsonObject(e.Metrics.Select(kv => KeyValuePair.Create(kv.Key, Finite(kv.Value)))),
    };

    static EvalResult EvalFromJson(JsonNode node) => new(node["step"]!.GetValue<int>(),
        node["metrics"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value is null ? double.NaN : kv.Value.GetValue<double>()));

    RunState LoadCheckpoint(nn.Module module, AdamW optimizer)
    {
        string stateFile = Path.Combine(CheckpointDir, "state.json");
        JsonObject json;
        TrainerOptions saved;
        RunState state;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(stateFile))!.AsObject();
            saved = json["options"]!.Deserialize<TrainerOptions>()!;
            state = new RunState
            {
                Step = json["step"]!.GetValue<int>(),
                Tokens = json["tokens"]!.GetValue<long>(),
                Skipped = json["skipped_steps"]!.GetValue<int>(),
                ElapsedSeconds = json["elapsed_seconds"]!.GetValue<double>(),
                // Absent in checkpoints written before CPU time was counted: the run's total is then unknown (null).
                CpuSeconds = json["cpu_seconds"]?.GetValue<double>(),
                // Absent in checkpoints written before the window was saved: the first line after resume then averages fewer steps.
                WindowLoss = json["window_loss"]?.GetValue<double>() ?? 0,
                WindowSteps = json["window_steps"]?.GetValue<int>() ?? 0,
                LastLoss = json["last_loss"]?.GetValue<double>() ?? double.NaN,
                // Absent in checkpoints written before loss terms were logged (their objectives had none to log).
                WindowTerms = json["window_terms"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<double>() ?? double.NaN) ?? [],
                Evaluations = json["evaluations"]!.AsArray().Select(e => EvalFromJson(e!)).ToList(),
                Best = json["best"] is JsonNode best ? EvalFromJson(best) : null,
            };
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{stateFile}: damaged checkpoint state ({e.Message.Split('\n')[0]}); start again without --resume");
        }
        // Everything that shapes the trajectory must match; eval/log/checkpoint cadence may change.
        var comparable = saved with { EvalEvery = options.EvalEvery, LogEvery = options.LogEvery, CheckpointEvery = options.CheckpointEvery, OnNonFiniteLoss = options.OnNonFiniteLoss };
        if (comparable != options)
            throw new InvalidOperationException($"{stateFile}: the checkpoint was made with different training options; resume with the same ones (saved: {JsonSerializer.Serialize(saved)})");
        var tensors = Safetensors.Load(Path.Combine(CheckpointDir, "weights.safetensors"));
        try
        {
            using var _ = no_grad();
            foreach (var (name, parameter) in module.named_parameters())
            {
                if (!tensors.TryGetValue(name, out var source))
                    throw new InvalidDataException($"{CheckpointDir}: checkpoint lacks {name}");
                if (!source.shape.SequenceEqual(parameter.shape))
                    throw new InvalidDataException($"{CheckpointDir}: {name} has shape [{string.Join(", ", source.shape)}], the model [{string.Join(", ", parameter.shape)}]");
                parameter.copy_(source);
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
        string optimizerFile = Path.Combine(CheckpointDir, "optimizer.bin");
        try
        {
            using var stream = File.OpenRead(optimizerFile);
            using var reader = new BinaryReader(stream);
            optimizer.load_state_dict(reader);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{optimizerFile}: cut short (the checkpoint is damaged); start again without --resume");
        }
        if (objective is ICheckpointedObjective stateful) LoadObjectiveState(stateful);
        state.StartStep = state.Step;
        return state;
    }

    /// <summary>The objective's own state in a checkpoint (<see cref="ICheckpointedObjective"/>): tensors, and values as JSON.</summary>
    const string ObjectiveTensorsFile = "objective.safetensors", ObjectiveValuesFile = "objective.json";

    void LoadObjectiveState(ICheckpointedObjective stateful)
    {
        string tensorsFile = Path.Combine(CheckpointDir, ObjectiveTensorsFile), valuesFile = Path.Combine(CheckpointDir, ObjectiveValuesFile);
        if (!File.Exists(tensorsFile) || !File.Exists(valuesFile))
            throw new InvalidDataException($"{CheckpointDir}: no {ObjectiveValuesFile} and {ObjectiveTensorsFile}, the training objective's own state (e.g. pruning masks and scores), which this run needs; the checkpoint was written without it (by an older version?): start again without --resume");
        JsonObject values;
        try
        {
            values = JsonNode.Parse(File.ReadAllText(valuesFile)) as JsonObject ?? throw new JsonException("not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{valuesFile}: damaged objective state ({e.Message.Split('\n')[0]}); start again without --resume");
        }
        var tensors = Safetensors.Load(tensorsFile);
        try
        {
            stateful.LoadState(tensors, values);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{valuesFile}: {e.Message}; the checkpoint does not fit this run: start again without --resume", e);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }
}

/// <summary>Training produced a NaN or infinite loss.</summary>
public sealed class TrainingDivergedException(string message) : InvalidOperationException(message);
