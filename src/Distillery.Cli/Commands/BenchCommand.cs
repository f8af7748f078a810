using System.CommandLine;
using Distillery.Bench;
using Distillery.Export;
using Distillery.Models;
using Distillery.Numerics;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery bench</c>: several models on one task, in one run.</summary>
public static class BenchCommand
{
    public static Command Create(CliContext context)
    {
        var models = new Argument<string[]>("models") { Description = "Model folders; the first is the reference for the ratios (usually the teacher).", Arity = ArgumentArity.OneOrMore };
        var task = new TaskCliOptions();
        var seqLength = new Option<int>("--seq-length") { Description = "Tokens per sequence in the latency runs.", DefaultValueFactory = _ => 128 };
        var iterations = new Option<int>("--iterations") { Description = "Timed forwards at batch 1.", DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds")
        {
            Description = "Timing passes over every model and backend, one after another (default 1). With N > 1 each row reports the median of its passes' " +
                "medians and the table the spread: on a machine whose speed drifts over minutes, the rows are then timed over the same stretch of time, " +
                "so their ratios drift less. Later passes only time (no scoring).",
            DefaultValueFactory = _ => 1,
        };
        var backends = new Option<string>("--backends", "-b")
        {
            Description = "Comma-separated: torch-fp32, torch-bf16, onnx-fp32, onnx-int8 (fused graphs: ONNX Runtime's contrib operators), onnx-fp32-plain, onnx-int8-plain " +
                "(standard operators). ONNX backends export each model to a temporary file first. One row per model × backend. " +
                "On a CPU without native bf16, torch-bf16 is emulated: its rows say so.",
            DefaultValueFactory = _ => "torch-fp32",
        };
        var output = new Option<string?>("--out", "-o") { Description = "Also write the table as markdown to this file." };
        var plot = new Option<string?>("--plot") { Description = "Also draw dev score against batch-1 latency, one labelled point per model × backend, to this PNG file." };
        var int8Weights = ExportCommand.Int8WeightsOption();
        var peer = new Option<string?>("--peer")
        {
            Description = "A foreign .onnx graph of the first model (e.g. the PyTorch export of the same weights): one more row, timed with the same ONNX Runtime " +
                "session options; scored only if it has a classifier \"logits\" output (a bare encoder's score is n/a).",
        };
        var noEval = new Option<bool>("--no-eval") { Description = "Size and timing only: no dev score (n/a), no forward over the dev set. For stand-ins with a model's shapes and random weights (distillery init --like), whose latency is the model's." };
        var json = new Option<string?>("--json") { Description = "Also write the run as a JSON record (GEMM peaks, every row's scores, latencies, FLOPs, GFLOP/s and share of the peak) to this file." };
        var command = new Command("bench", "Measure models on one task in one run: parameters, bytes on disk, dev score, CPU latency (batch 1) and throughput (batch 32), with ratios to the first row, " +
            "and each row's model GFLOP/s as a share of its backend's fp32 GEMM peak (measured at start); optionally across backends (TorchSharp fp32/bf16, ONNX Runtime fp32/int8, fused or plain graphs), " +
            "against a foreign ONNX graph of the first model (--peer), as a plot and as a JSON record.\n\n" +
            "Example: distillery bench runs/sst2 runs/sst2-kd --task sst2 --data ../shared/data/glue --backends torch-fp32,torch-bf16,onnx-fp32,onnx-int8 --out bench.md --plot bench.png")
        {
            models, seqLength, iterations, rounds, noEval, backends, output, plot, int8Weights, peer, json,
        };
        task.AddTo(command);
        command.SetAction(parse =>
        {
            var options = new BenchOptions
            {
                Models = parse.GetValue(models)!, Task = task.Apply(parse, null),
                SeqLength = parse.GetValue(seqLength), Iterations = parse.GetValue(iterations), Rounds = parse.GetValue(rounds), Evaluate = !parse.GetValue(noEval),
                Backends = BenchBackends.ParseList(parse.GetValue(backends)!),
                Int8Scheme = ExportCommand.Int8Weights(parse, int8Weights) ?? Int8Quantization.DefaultScheme,
                Peer = parse.GetValue(peer),
            };
            string? plotPath = parse.GetValue(plot);
            if (plotPath != null && !plotPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"--plot {plotPath}: the plot is a PNG; name the file *.png");
            // Tables and plots are regenerated from the models, so an existing one is replaced; never one of the models.
            if (parse.GetValue(output) is string tablePath) RunOutput.CheckNotInput(tablePath, options.Models.Append(options.Peer), "--out");
            if (plotPath != null) RunOutput.CheckNotInput(plotPath, options.Models.Append(options.Peer), "--plot");
            if (parse.GetValue(json) is string jsonCheck) RunOutput.CheckNotInput(jsonCheck, options.Models.Append(options.Peer), "--json");
            var results = ModelBench.Run(options, m =>
            {
                if (m.StartsWith("warning: ", StringComparison.Ordinal)) context.Warn(m["warning: ".Length..]);
                else context.Console.MarkupLineInterpolated($"[grey]> {m}[/]");
            });
            string markdown = ModelBench.Markdown(results, options);
            context.Console.WriteLine(markdown);
            if (parse.GetValue(output) is string path) AtomicFile.WriteAllText(path, markdown);
            if (parse.GetValue(json) is string jsonPath)
                AtomicFile.WriteAllText(jsonPath, ModelBench.Record(results, options).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
            if (plotPath != null)
            {
                BenchPlot.SavePng(results, plotPath, options.Task.ToString());
                context.Console.MarkupLineInterpolated($"[grey]plot written to {plotPath}[/]");
            }
            return 0;
        });
        return command;
    }
}
