using System.CommandLine;
using System.CommandLine.Parsing;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Cli.Commands;

/// <summary>
/// The optimisation flags every training command shares. Each flag overrides the value from <c>--config</c> (or the
/// command's defaults) only when given on the command line.
/// </summary>
public sealed class TrainingCliOptions
{
    readonly Option<int?> batchSize = new("--batch-size") { Description = "Examples per micro-batch." };
    readonly Option<int?> accumulation = new("--grad-accum") { Description = "Micro-batches per optimizer step." };
    readonly Option<double?> learningRate = new("--lr") { Description = "Peak learning rate." };
    readonly Option<double?> weightDecay = new("--weight-decay") { Description = "AdamW weight decay (not on biases and LayerNorm)." };
    readonly Option<double?> warmupRatio = new("--warmup-ratio") { Description = "Fraction of steps warming up linearly." };
    readonly Option<int?> warmupSteps = new("--warmup-steps") { Description = "Warm-up steps (overrides --warmup-ratio)." };
    readonly Option<double?> epochs = new("--epochs") { Description = "Passes over the training data." };
    readonly Option<int?> maxSteps = new("--max-steps") { Description = "Optimizer steps (overrides --epochs)." };
    readonly Option<double?> maxGradNorm = new("--max-grad-norm") { Description = "Gradient-norm clip (0: off)." };
    readonly Option<long?> seed = new("--seed") { Description = "Seed of data order, masking, dropout and init." };
    readonly Option<int?> evalEvery = new("--eval-every") { Description = "Evaluate every N optimizer steps (0: at the end only)." };
    readonly Option<int?> logEvery = new("--log-every") { Description = "Log to metrics.jsonl and TensorBoard every N steps." };
    readonly Option<int?> checkpointEvery = new("--checkpoint-every") { Description = "Write a resumable checkpoint every N steps (0: never)." };
    readonly Option<string?> precision = new("--precision")
    {
        Description = "auto (default): bf16 where the CPU has native bf16 (avx512_bf16/amx_bf16), fp32 elsewhere; fp32; or bf16 (bf16 matmuls, " +
            "fp32 master weights; emulated and several times slower on CPUs without native bf16, with a warning). The run records what it resolved to.",
    };
    readonly Option<string?> onNan = new("--on-nan") { Description = "stop (default) or skip a step whose loss is NaN/inf." };

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { batchSize, accumulation, learningRate, weightDecay, warmupRatio, warmupSteps, epochs, maxSteps, maxGradNorm, seed, evalEvery, logEvery, checkpointEvery, precision, onNan })
            command.Options.Add(o);
        precision.AcceptOnlyFromAmong("auto", "fp32", "bf16");
        onNan.AcceptOnlyFromAmong("stop", "skip");
    }

    /// <summary>Applies the flags that were given to <paramref name="basis"/>.</summary>
    public TrainerOptions Apply(ParseResult parse, TrainerOptions basis)
    {
        var o = basis;
        if (parse.GetValue(batchSize) is int b) o = o with { BatchSize = b };
        if (parse.GetValue(accumulation) is int a) o = o with { GradientAccumulation = a };
        if (parse.GetValue(learningRate) is double lr) o = o with { LearningRate = lr };
        if (parse.GetValue(weightDecay) is double wd) o = o with { WeightDecay = wd };
        if (parse.GetValue(warmupRatio) is double wr) o = o with { WarmupRatio = wr };
        if (parse.GetValue(warmupSteps) is int ws) o = o with { WarmupSteps = ws };
        if (parse.GetValue(epochs) is double e) o = o with { Epochs = e };
        if (parse.GetValue(maxSteps) is int ms) o = o with { MaxSteps = ms };
        if (parse.GetValue(maxGradNorm) is double g) o = o with { MaxGradNorm = g };
        if (parse.GetValue(seed) is long s) o = o with { Seed = s };
        if (parse.GetValue(evalEvery) is int ee) o = o with { EvalEvery = ee };
        if (parse.GetValue(logEvery) is int le) o = o with { LogEvery = le };
        if (parse.GetValue(checkpointEvery) is int ce) o = o with { CheckpointEvery = ce };
        if (parse.GetValue(precision) is string p) o = o with { Precision = ComputePrecisions.Parse(p, "--precision") };
        if (parse.GetValue(onNan) is string n) o = o with { OnNonFiniteLoss = n == "skip" ? NonFiniteLoss.Skip : NonFiniteLoss.Stop };
        return o.Validate();
    }

    /// <summary>The <c>--overwrite</c> flag of every command that writes a model, an ONNX file or a table (see <see cref="RunOutput"/>).</summary>
    public static Option<bool> OverwriteOption(string what = "an existing finished --out") =>
        new("--overwrite") { Description = $"Replace {what} (default: refuse it; --resume continues one instead)." };

    /// <summary>Whether <paramref name="option"/> was written on the command line (not a default).</summary>
    public static bool Given(ParseResult parse, Option option) => parse.GetResult(option) is OptionResult { Implicit: false };
}
