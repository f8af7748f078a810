using System.CommandLine;
using Distillery.Bench;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery bench</c>: several models on one task, in one run.</summary>
public static class BenchCommand
{
    public static Command Create(CliContext context)
    {
        var models = new Argument<string[]>("models") { Description = "Model folders; the first is the reference for the ratios (usually the teacher).", Arity = ArgumentArity.OneOrMore };
        var task = new Option<string>("--task") { Description = "GLUE task or squad.", Required = true };
        var data = new Option<string>("--data") { Description = "GLUE folder or SQuAD JSON file.", Required = true };
        var splitArticles = new Option<int>("--split-articles") { Description = "SQuAD: evaluate on the articles not among the first N (as fine-tuned).", DefaultValueFactory = _ => 0 };
        var seqLength = new Option<int>("--seq-length") { Description = "Tokens per sequence in the latency runs.", DefaultValueFactory = _ => 128 };
        var iterations = new Option<int>("--iterations") { Description = "Timed forwards at batch 1.", DefaultValueFactory = _ => 20 };
        var precision = new Option<string>("--precision") { Description = "fp32 or bf16 matmuls.", DefaultValueFactory = _ => "fp32" };
        precision.AcceptOnlyFromAmong("fp32", "bf16");
        var output = new Option<string?>("--out", "-o") { Description = "Also write the table as markdown to this file." };
        var command = new Command("bench", "Measure models on one task in one run: parameters, bytes on disk, dev score, CPU latency (batch 1) and throughput (batch 32), with ratios to the first.")
        {
            models, task, data, splitArticles, seqLength, iterations, precision, output,
        };
        command.SetAction(parse =>
        {
            var options = new BenchOptions
            {
                Models = parse.GetValue(models)!, Task = parse.GetValue(task)!, Data = parse.GetValue(data)!, SplitArticles = parse.GetValue(splitArticles),
                SeqLength = parse.GetValue(seqLength), Iterations = parse.GetValue(iterations),
                Precision = parse.GetValue(precision) == "bf16" ? ComputePrecision.BFloat16 : ComputePrecision.Float32,
            };
            var results = ModelBench.Run(options, m => context.Console.MarkupLineInterpolated($"[grey]> {m}[/]"));
            string markdown = ModelBench.Markdown(results, options);
            context.Console.WriteLine(markdown);
            if (parse.GetValue(output) is string path) AtomicFile.WriteAllText(path, markdown);
            return 0;
        });
        return command;
    }
}
