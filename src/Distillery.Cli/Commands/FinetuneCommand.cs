using System.CommandLine;
using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Training;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery finetune</c> and <c>distillery eval</c>: GLUE and SQuAD.</summary>
public static class FinetuneCommand
{
    public static Command CreateFinetune(CliContext context)
    {
        var args = new TaskCliOptions();
        var model = new Option<string?>("--model", "-m") { Description = "Model folder to start from (pre-trained)." };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder: the best dev checkpoint, run_config.json, metrics.json, logs." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var noBucketing = new Option<bool>("--no-length-bucketing") { Description = "Batch in plain shuffled order (default groups similar lengths)." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var training = new TrainingCliOptions();
        var command = new Command("finetune", "Fine-tune a model on a GLUE task or SQuAD; keeps the best dev checkpoint.")
        {
            model, output, config, resume, overwrite, noBucketing,
        };
        args.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var flags = args.ConfigKeys(parse);
            flags["model"] = parse.GetValue(model);
            flags["out"] = parse.GetValue(output);
            var basis = parse.GetValue(config) is string path ? PretrainCommand.LoadConfig<FinetuneOptions>(path, flags) : null;
            string modelDir = parse.GetValue(model) ?? basis?.Model ?? throw new ArgumentException("give --model (the model folder to fine-tune)");
            string outDir = parse.GetValue(output) ?? basis?.Out ?? throw new ArgumentException("give --out (the output model folder)");
            var task = args.Apply(parse, basis?.Task);
            var options = (basis ?? new FinetuneOptions { Task = task, Model = modelDir, Out = outDir }) with { Task = task, Model = modelDir, Out = outDir };
            if (parse.GetValue(noBucketing)) options = options with { LengthBucketing = false };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            var metrics = RunProgress.Show(context, events => FineTuning.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()} (best at step {metrics["best_step"]})");
            return 0;
        });
        return command;
    }

    public static Command CreateEval(CliContext context)
    {
        var args = new TaskCliOptions(training: false);
        var model = new Argument<string?>("model") { Description = "Fine-tuned model folder (or a sentence-embedding model for sts-embed, squad-retrieval, mrpc-embed).", Arity = ArgumentArity.ZeroOrOne };
        var modelOption = new Option<string?>("--model", "-m") { Description = "The model folder, instead of the argument." };
        var precision = new Option<string>("--precision")
        {
            Description = "fp32 (default: the model's own scores), bf16 matmuls (emulated and slow without native bf16), or auto (bf16 where the CPU has it natively).",
            DefaultValueFactory = _ => "fp32",
        };
        precision.AcceptOnlyFromAmong("fp32", "bf16", "auto");
        var predictions = new Option<string?>("--predictions")
        {
            Description = "GLUE tasks: also write FILE.json with every dev example's prediction and gold answer (class index, or score for STS-B) " +
                "and the metrics of those predictions, e.g. for a paired bootstrap between two models.",
        };
        var command = new Command("eval",
            "Score a fine-tuned model on a task's dev data (GLUE metrics, SQuAD EM/F1), or a sentence-embedding model zero-shot " +
            "(sts-embed: STS-B dev Spearman of cosines; squad-retrieval: SQuAD dev question → paragraph recall@1/10 and MRR; " +
            "mrpc-embed: MRPC dev accuracy at a cosine threshold chosen on train); writes eval-<task>.json next to it.\n" +
            "Example: distillery eval --model models/minilm-l6-h384 --task sts-embed --data ../shared/data/glue") { model, modelOption, precision, predictions };
        args.AddTo(command);
        command.SetAction(parse =>
        {
            string dir = (parse.GetValue(model), parse.GetValue(modelOption)) switch
            {
                (string a, string b) when a != b => throw new ArgumentException($"two models given ({a} and --model {b}); give one"),
                (string a, _) => a,
                (null, string b) => b,
                _ => throw new ArgumentException("give the model folder (argument or --model)"),
            };
            var task = args.Apply(parse, null);
            var (resolved, warning) = ComputePrecisions.Resolve(ComputePrecisions.Parse(parse.GetValue(precision)!, "--precision"), Runtime.CpuFeatures.Current);
            if (warning != null) context.Warn(warning);
            string? predictionsFile = parse.GetValue(predictions);
            IReadOnlyDictionary<string, double> metrics;
            if (predictionsFile == null) metrics = TaskPipeline.Evaluate(dir, task, resolved);
            else
            {
                var dev = TaskPipeline.PredictDev(dir, task, resolved);
                metrics = dev.Metrics;
                // One line: a dev set's worth of numbers, read by scripts, not people.
                var record = new
                {
                    task = dev.Task, model = dir, version = RunFiles.Version, precision = resolved.ToString(), primary_metric = dev.PrimaryMetric,
                    regression = dev.Regression, metrics = RunFiles.Metrics(dev.Metrics), examples = dev.Gold.Length, gold = dev.Gold, predictions = dev.Predictions,
                };
                string? folder = Path.GetDirectoryName(Path.GetFullPath(predictionsFile));
                if (folder != null) Directory.CreateDirectory(folder);
                AtomicFile.WriteAllText(predictionsFile, System.Text.Json.JsonSerializer.Serialize(record, new System.Text.Json.JsonSerializerOptions(RunFiles.Json) { WriteIndented = false }) + "\n");
            }
            var table = new Table().AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
            foreach (var (k, v) in metrics) table.AddRow(Markup.Escape(k), $"{v:0.0000}");
            context.Console.Write(table);
            RunFiles.Write(dir, $"eval-{task}.json", new { task = task.ToString(), data = task.Data, metrics = RunFiles.Metrics(metrics) });
            if (predictionsFile != null) context.Console.MarkupLineInterpolated($"Wrote [bold]{predictionsFile}[/]: {task} dev predictions and gold answers");
            return 0;
        });
        return command;
    }
}
