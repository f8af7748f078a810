using System.CommandLine;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery convert</c>: rewrite a model folder with another storage dtype (e.g. fp16 to halve it on disk).</summary>
public static class ConvertCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("model") { Description = "Model folder." };
        var dtype = new Option<string>("--dtype") { Description = "Storage type: float32, float16 or bfloat16.", Required = true };
        dtype.AcceptOnlyFromAmong("float32", "float16", "bfloat16");
        var output = new Option<string>("--out", "-o") { Description = "Output model folder.", Required = true };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var command = new Command("convert", "Write a model folder with another storage dtype (computation stays fp32); the tokenizer is copied.") { model, dtype, output, overwrite };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            RunOutput.CheckFolder(outDir, parse.GetValue(overwrite), resume: false, [dir]);
            var config = BertCheckpoint.ReadConfig(dir);
            var tokenizer = BertCheckpoint.LoadTokenizer(dir, config);
            var (loaded, _) = BertCheckpoint.Load(dir);
            RunOutput.Begin(outDir, resume: false);
            using (loaded) BertCheckpoint.Save(loaded, outDir, tokenizer, parse.GetValue(dtype)!);
            long before = new FileInfo(Path.Combine(dir, BertCheckpoint.WeightsFile)).Length, after = new FileInfo(Path.Combine(outDir, BertCheckpoint.WeightsFile)).Length;
            context.Console.MarkupLineInterpolated($"Wrote [bold]{outDir}[/]: {BertCheckpoint.WeightsFile} {InspectCommand.Bytes(before)} → {InspectCommand.Bytes(after)}");
            return 0;
        });
        return command;
    }
}
