using System.CommandLine;
using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Training;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery finetune</c> and <c>distillery eval</c>: GLUE and SQuAD.</summary>
public static class FinetuneCommand
{
    sealed class TaskArguments
    {
        public readonly Option<string?> Task = new("--task") { Description = "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or squad." };
        public readonly Option<string?> Data = new("--data") { Description = "GLUE: the glue_data folder (or the task's folder); SQuAD: the JSON file." };
        public readonly Option<string?> EvalData = new("--eval-data") { Description = "SQuAD: a separate evaluation JSON file." };
        public readonly Option<int?> SplitArticles = new("--split-articles") { Description = "SQuAD: train on N articles of --data (seeded), evaluate on the rest." };
        public readonly Option<int?> MaxLength = new("--max-length") { Description = "Longest input in tokens (GLUE 128, SQuAD 384)." };
        public readonly Option<int?> DocStride = new("--doc-stride") { Description = "SQuAD: window stride in tokens (default 128)." };

        public void AddTo(Command c) { c.Options.Add(Task); c.Options.Add(Data); c.Options.Add(EvalData); c.Options.Add(SplitArticles); c.Options.Add(MaxLength); c.Options.Add(DocStride); }

        public FinetuneOptions Apply(ParseResult parse, FinetuneOptions? basis, string model, string? output)
        {
            string task = parse.GetValue(Task) ?? basis?.Task ?? throw new ArgumentException("give --task (e.g. sst2 or squad)");
            string data = parse.GetValue(Data) ?? basis?.Data ?? throw new ArgumentException("give --data (the glue_data folder or the SQuAD JSON file)");
            var o = (basis ?? new FinetuneOptions { Task = task, Model = model, Data = data, Out = output ?? model }) with
            {
                Task = task, Model = model, Data = data, Out = output ?? basis?.Out ?? model,
            };
            if (parse.GetValue(EvalData) is string e) o = o with { EvalData = e };
            if (parse.GetValue(SplitArticles) is int s) o = o with { SplitArticles = s };
            if (parse.GetValue(MaxLength) is int m) o = o with { MaxLength = m };
            if (parse.GetValue(DocStride) is int d) o = o with { DocStride = d };
            return o;
        }
    }

    public static Command CreateFinetune(CliContext context)
    {
        var args = new TaskArguments();
        var model = new Option<string?>("--model", "-m") { Description = "Model folder to start from (pre-trained)." };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder: the best dev checkpoint, run_config.json, metrics.json, logs." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var maxTrain = new Option<int?>("--max-train-examples") { Description = "GLUE: train on a seeded sample of at most N examples." };
        var noBucketing = new Option<bool>("--no-length-bucketing") { Description = "Batch in plain shuffled order (default groups similar lengths)." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var training = new TrainingCliOptions();
        var command = new Command("finetune", "Fine-tune a model on a GLUE task or SQuAD; keeps the best dev checkpoint.") { model, output, config, resume, overwrite, maxTrain, noBucketing };
        args.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var basis = parse.GetValue(config) is string path ? PretrainCommand.LoadConfig<FinetuneOptions>(path, new()
            {
                ["model"] = parse.GetValue(model), ["out"] = parse.GetValue(output), ["task"] = parse.GetValue(args.Task), ["data"] = parse.GetValue(args.Data),
            }) : null;
            string modelDir = parse.GetValue(model) ?? basis?.Model ?? throw new ArgumentException("give --model (the model folder to fine-tune)");
            string outDir = parse.GetValue(output) ?? basis?.Out ?? throw new ArgumentException("give --out (the output model folder)");
            var options = args.Apply(parse, basis, modelDir, outDir);
            if (parse.GetValue(noBucketing)) options = options with { LengthBucketing = false };
            if (parse.GetValue(maxTrain) is int cap) options = options with { MaxTrainExamples = cap };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            var metrics = RunProgress.Show(context, events => FineTuning.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()} (best at step {metrics["best_step"]})");
            return 0;
        });
        return command;
    }

    public static Command CreateEval(CliContext context)
    {
        var args = new TaskArguments();
        var model = new Argument<string>("model") { Description = "Fine-tuned model folder." };
        var precision = new Option<string>("--precision")
        {
            Description = "fp32 (default: the model's own scores), bf16 matmuls (emulated and slow without native bf16), or auto (bf16 where the CPU has it natively).",
            DefaultValueFactory = _ => "fp32",
        };
        precision.AcceptOnlyFromAmong("fp32", "bf16", "auto");
        var command = new Command("eval", "Score a fine-tuned model on a task's dev data (GLUE metrics, SQuAD EM/F1); writes eval-<task>.json next to it.") { model, precision };
        args.AddTo(command);
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(model)!;
            var options = args.Apply(parse, null, dir, null);
            var (resolved, warning) = ComputePrecisions.Resolve(ComputePrecisions.Parse(parse.GetValue(precision)!, "--precision"), Runtime.CpuFeatures.Current);
            if (warning != null) context.Warn(warning);
            var metrics = FineTuning.Evaluate(options, resolved);
            var table = new Table().AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
            foreach (var (k, v) in metrics) table.AddRow(Markup.Escape(k), $"{v:0.0000}");
            context.Console.Write(table);
            RunFiles.Write(dir, $"eval-{options.Task.ToLowerInvariant()}.json", new { task = options.Task, data = options.Data, metrics = RunFiles.Metrics(metrics) });
            return 0;
        });
        return command;
    }
}
