using System.CommandLine;
using Distillery.Export;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery export onnx</c>: write a model folder as an ONNX graph (fp32 or int8) and check it in ONNX Runtime.</summary>
public static class ExportCommand
{
    /// <summary>fp32 graphs must match the TorchSharp forward this closely on the check sentences.</summary>
    const double Fp32Tolerance = 1e-4;

    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model folder (config.json, model.safetensors, vocab.txt); its config names the head.", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "The .onnx file to write; vocab.txt, tokenizer files and config.json are copied next to it.", Required = true };
        var int8 = new Option<bool>("--int8") { Description = "Dynamic int8 quantization: int8 per-channel weights for the encoder and pooler Linears, int8 word-embedding rows." };
        var opset = new Option<int>("--opset") { Description = $"ai.onnx opset ({OnnxExportOptions.MinOpset}-{OnnxExportOptions.MaxOpset}).", DefaultValueFactory = _ => 17 };
        var noCheck = new Option<bool>("--no-check") { Description = "Skip running the graph in ONNX Runtime against the TorchSharp model." };
        var onnx = new Command("onnx", "Export a model folder to ONNX (dynamic batch and sequence axes) and check it in ONNX Runtime.\n\n" +
            "Example:\n  distillery export onnx --model runs/sst2-student --out deploy/model.onnx --int8")
        {
            model, output, int8, opset, noCheck,
        };
        onnx.SetAction(parse =>
        {
            var options = new OnnxExportOptions { Int8 = parse.GetValue(int8), Opset = parse.GetValue(opset) }.Validate();
            var result = OnnxExportJob.Run(parse.GetValue(model)!, parse.GetValue(output)!, options, check: !parse.GetValue(noCheck));
            var console = context.Console;
            console.MarkupLineInterpolated($"Wrote [bold]{result.Path}[/] ({result.Task}, {(options.Int8 ? "int8" : "fp32")}, opset {options.Opset}, {InspectCommand.Bytes(result.Bytes)})");
            if (result.CopiedFiles.Count > 0) console.MarkupLineInterpolated($"  copied next to it: {string.Join(", ", result.CopiedFiles)}");
            if (result.Check is { } check)
            {
                string agreement = double.IsNaN(check.ArgmaxAgreement) ? "n/a (regression)" : $"{check.ArgmaxAgreement:P1} of {check.Predictions}";
                if (options.Int8)
                    console.MarkupLineInterpolated($"  check (ONNX Runtime int8 vs TorchSharp fp32): max |diff| {check.MaxAbsDiff:G3}, argmax agreement {agreement}");
                else
                {
                    console.MarkupLineInterpolated($"  check (ONNX Runtime vs TorchSharp): max |diff| {check.MaxAbsDiff:G3}, argmax agreement {agreement}");
                    if (!(check.MaxAbsDiff <= Fp32Tolerance))
                        throw new InvalidOperationException($"{result.Path}: ONNX Runtime differs from the TorchSharp model by {check.MaxAbsDiff:G3} (> {Fp32Tolerance:G}); the graph is wrong");
                }
            }
            return 0;
        });
        return new Command("export", "Export a model to another runtime's format.") { onnx };
    }
}
