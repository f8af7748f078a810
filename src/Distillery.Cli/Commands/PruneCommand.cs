using System.CommandLine;
using Distillery.Pruning;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery prune</c>: structured pruning of a fine-tuned model to a width per layer, physically removed.</summary>
public static class PruneCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Fine-tuned model folder.", Required = true };
        var task = new TaskCliOptions();
        var output = new Option<string>("--out", "-o") { Description = "Output folder (a smaller, ordinary checkpoint).", Required = true };
        var heads = new Option<int?>("--keep-heads") { Description = "Heads to keep in every layer (default: all)." };
        var neurons = new Option<int?>("--keep-neurons") { Description = "FFN neurons to keep in every layer (default: all)." };
        var hidden = new Option<int?>("--keep-hidden") { Description = "Hidden dimensions to keep, model-wide (default: all; the head size stays)." };
        var target = new Option<string?>("--target") { Description = "Instead of the keep counts: the final width, an architecture of the model's depth (L4-H128-F512, -A heads optional) or a parameter count (9.6M)." };
        var score = new Option<string>("--score") { Description = "magnitude, sensitivity (|θ·∂L/∂θ|, default) or platon.", DefaultValueFactory = _ => "sensitivity" };
        var iterative = new Option<bool>("--iterative") { Description = "Prune while fine-tuning on the cubic schedule (default: one-shot, then fine-tune)." };
        var scoreBatches = new Option<int>("--score-batches") { Description = "One-shot: training batches the gradient scores accumulate over.", DefaultValueFactory = _ => 64 };
        var pruneEvery = new Option<int>("--prune-every") { Description = "Iterative: steps between mask updates.", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out (iterative: masks and scores included; one-shot scores and prunes again, then continues)." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var training = new TrainingCliOptions();
        var command = new Command("prune", "Prune attention heads, FFN neurons and hidden dimensions of a fine-tuned model (scores: magnitude, sensitivity, PLATON), remove them physically, and fine-tune.\n" +
            "Example: distillery prune -m runs/teacher/sst2 --task sst2 --data ../shared/data/glue --target L4-H128-F512 --iterative --score platon -o runs/pruned")
        {
            model, output, heads, neurons, hidden, target, score, iterative, scoreBatches, pruneEvery, resume, overwrite,
        };
        task.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var options = new PruneOptions
            {
                Model = parse.GetValue(model)!, Task = task.Apply(parse, null), Out = parse.GetValue(output)!,
                KeepHeads = parse.GetValue(heads), KeepNeurons = parse.GetValue(neurons), KeepHidden = parse.GetValue(hidden), Target = parse.GetValue(target),
                Score = CliEnums.Parse<ImportanceScore>(parse.GetValue(score)!, "--score"),
                Iterative = parse.GetValue(iterative), ScoreBatches = parse.GetValue(scoreBatches), PruneEvery = parse.GetValue(pruneEvery),
            };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            var metrics = RunProgress.Show(context, events => Pruner.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()}");
            context.WarnIfDistilleryOnly(options.Out);
            return 0;
        });
        return command;
    }
}
