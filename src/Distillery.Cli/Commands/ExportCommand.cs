using System.CommandLine;
using Distillery.Export;
using Distillery.Models;
using Distillery.Numerics;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery export onnx</c>: write a model folder as an ONNX graph (fp32 or int8) and check it in ONNX Runtime.</summary>
public static class ExportCommand
{
    /// <summary>The <c>--int8-weights 7bit|8bit</c> flag that export, quantize and bench share.</summary>
    internal static Option<string?> Int8WeightsOption()
    {
        var option = new Option<string?>("--int8-weights")
        {
            Description = "int8 weight grid: 7bit (default; |q| <= 64, exact in ONNX Runtime on every x86-64 CPU) or 8bit (|q| <= 127, finer, but exact only on " +
                "CPUs with VNNI or AMX-INT8: AVX2-only CPUs saturate and lose accuracy). Default: the scheme a QAT checkpoint was trained for, else 7bit.",
        };
        option.AcceptOnlyFromAmong(Enum.GetValues<Int8Scheme>().Select(Int8Quantization.Name).ToArray());
        return option;
    }

    /// <summary>The scheme <paramref name="option"/> names, or null when it was not given.</summary>
    internal static Int8Scheme? Int8Weights(ParseResult parse, Option<string?> option) =>
        parse.GetValue(option) is string name ? Int8Quantization.Parse(name, "--int8-weights") : null;

    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model folder (config.json, model.safetensors, vocab.txt); its config names the head.", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "The .onnx file to write; vocab.txt, tokenizer files and config.json are copied next to it.", Required = true };
        var int8 = new Option<bool>("--int8") { Description = "Dynamic int8 quantization: int8 per-channel weights for the encoder and pooler Linears, int8 word-embedding rows." };
        var opset = new Option<int>("--opset") { Description = $"ai.onnx opset ({OnnxExportOptions.MinOpset}-{OnnxExportOptions.MaxOpset}).", DefaultValueFactory = _ => 17 };
        var sentenceEmbedding = new Option<bool>("--sentence-embedding")
        {
            Description = "Export the encoder as a sentence-embedding model (attention-masked mean pooling and L2 normalisation inside the graph, " +
                "output sentence_embedding), as sentence-transformers runs it; automatic for a sentence-transformers folder (modules.json).",
        };
        var noCheck = new Option<bool>("--no-check") { Description = "Skip running the graph in ONNX Runtime against the TorchSharp model." };
        var int8Weights = Int8WeightsOption();
        var graph = new Option<string>("--graph")
        {
            Description = "fused (default): ONNX Runtime's transformer contrib operators (EmbedLayerNormalization, Attention / QAttention, " +
                "SkipLayerNormalization, BiasGelu / FastGelu), its fastest CPU graph; plain: standard ONNX operators only, for other runtimes.",
            DefaultValueFactory = _ => OnnxExporter.GraphName(OnnxGraphKind.Fused),
        };
        graph.AcceptOnlyFromAmong(Enum.GetValues<OnnxGraphKind>().Select(OnnxExporter.GraphName).ToArray());
        var overwrite = TrainingCliOptions.OverwriteOption("an existing --out file");
        var onnx = new Command("onnx", "Export a model folder to ONNX (dynamic batch and sequence axes) and check it in ONNX Runtime.\n\n" +
            "Example:\n  distillery export onnx --model runs/sst2-student --out deploy/model.onnx --int8")
        {
            model, output, int8, opset, noCheck, int8Weights, graph, sentenceEmbedding, overwrite,
        };
        onnx.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!;
            RunOutput.PrepareFile(parse.GetValue(output)!, parse.GetValue(overwrite), [modelDir]);
            var scheme = Int8Weights(parse, int8Weights);
            if (scheme != null && !parse.GetValue(int8)) throw new ArgumentException("--int8-weights applies to --int8 exports");
            var options = new OnnxExportOptions
            {
                Int8 = parse.GetValue(int8), Opset = parse.GetValue(opset), Graph = OnnxExporter.TryParseGraph(parse.GetValue(graph))!.Value, Int8Scheme = scheme ?? (parse.GetValue(int8) ? OnnxExportJob.DefaultScheme(modelDir) : Int8Quantization.DefaultScheme),
            }.Validate();
            var result = OnnxExportJob.Run(modelDir, parse.GetValue(output)!, options, check: !parse.GetValue(noCheck),
                task: parse.GetValue(sentenceEmbedding) ? BertTask.SentenceEmbedding : null);
            foreach (var warning in result.Warnings) context.Warn(warning);
            var console = context.Console;
            string format = (options.Int8 ? $"int8, {Int8Quantization.Name(options.Int8Scheme)} weights" : "fp32") + $", {OnnxExporter.GraphName(options.Graph)} graph";
            console.MarkupLineInterpolated($"Wrote [bold]{result.Path}[/] ({result.Task}, {format}, opset {options.Opset}, {InspectCommand.Bytes(result.Bytes)})");
            if (result.CopiedFiles.Count > 0) console.MarkupLineInterpolated($"  copied next to it: {string.Join(", ", result.CopiedFiles)}");
            if (result.Check is { } check)
            {
                string agreement = !double.IsNaN(check.MinCosine) ? $"n/a; lowest cosine per sentence {check.MinCosine:0.000000}"
                    : double.IsNaN(check.ArgmaxAgreement) ? "n/a (regression)" : $"{check.ArgmaxAgreement:P1} of {check.Predictions}";
                if (options.Int8)
                    console.MarkupLineInterpolated($"  check (ONNX Runtime int8 vs TorchSharp fp32): max |diff| {check.MaxAbsDiff:G3}, argmax agreement {agreement}");
                else
                {
                    console.MarkupLineInterpolated($"  check (ONNX Runtime vs TorchSharp): max |diff| {check.MaxAbsDiff:G3}, argmax agreement {agreement}");
                    OnnxExportJob.EnsureFp32Parity(result, options);
                }
            }
            return 0;
        });
        return new Command("export", "Export a model to another runtime's format.\n\nExample:\n  distillery export onnx --model runs/sst2-student --out deploy/model.onnx") { onnx };
    }
}
