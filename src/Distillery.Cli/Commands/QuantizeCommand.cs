using System.CommandLine;
using Distillery.Export;
using Distillery.Numerics;
using Distillery.Quantization;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary>
/// <c>distillery quantize</c>: the int8 ONNX graph of a model, by dynamic post-training quantization or after
/// quantization-aware training, optionally checked against the fp32 model on the dev set.
/// </summary>
public static class QuantizeCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Fine-tuned fp32 model folder.", Required = true };
        var mode = new Option<string>("--mode") { Description = "dynamic: export the int8 graph as is (post-training); qat: quantization-aware training first, then export.", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "dynamic: the .onnx file; qat: a folder (fp32 checkpoint trained for int8 + " + QatOptions.OnnxFileName + ").", Required = true };
        var task = new TaskCliOptions();   // qat, and --check
        var teacher = new Option<string?>("--teacher") { Description = "qat: distil from this fine-tuned teacher (e.g. the fp32 model itself) with vanilla KD instead of training on labels alone." };
        var temperature = new Option<double?>("--temperature") { Description = "qat with --teacher: soft-target temperature (default 2)." };
        var alpha = new Option<double?>("--alpha") { Description = "qat with --teacher: weight of the soft-target loss; 1 − alpha on the labels (default 0.5)." };
        var opset = new Option<int?>("--opset") { Description = "ai.onnx opset of the graph (default 17)." };
        var check = new Option<bool>("--check") { Description = "Score the int8 graph (ONNX Runtime) and the fp32 model (TorchSharp) on the dev set: metrics both ways, argmax agreement (needs --task, --data)." };
        var resume = new Option<bool>("--resume") { Description = "qat: continue from the last checkpoint in --out." };
        var int8Weights = ExportCommand.Int8WeightsOption();
        var overwrite = TrainingCliOptions.OverwriteOption("an existing --out (a finished QAT folder or an .onnx file)");
        var training = new TrainingCliOptions();
        var command = new Command("quantize",
            "Int8 ONNX graph of a fine-tuned model: dynamic post-training quantization, or quantization-aware training (fake int8 on " +
            "the layers the graph quantizes, straight-through gradients) then export.\n" +
            "Examples:\n" +
            "  distillery quantize --model runs/sst2 --mode dynamic --out sst2.int8.onnx --check --task sst2 --data glue_data\n" +
            "  distillery quantize --model runs/sst2 --mode qat --task sst2 --data glue_data --teacher runs/sst2 --out runs/sst2-qat --check")
        {
            model, mode, output, teacher, temperature, alpha, opset, check, resume, overwrite, int8Weights,
        };
        task.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!, outPath = parse.GetValue(output)!;
            bool qat = parse.GetValue(mode) switch
            {
                "qat" => true,
                "dynamic" => false,
                var other => throw new ArgumentException($"--mode must be dynamic or qat (got \"{other}\")"),
            };
            if (parse.GetValue(check) && !task.Given(parse))
                throw new ArgumentException("--check scores the dev set: give --task and --data");
            // The same scheme for the simulation (QAT, --check) and the graph; the check reads it back from the graph.
            var scheme = ExportCommand.Int8Weights(parse, int8Weights) ?? OnnxExportJob.DefaultScheme(modelDir);
            string onnx;
            if (qat)
            {
                if (outPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                    throw new ArgumentException($"--mode qat writes a folder (checkpoint + {QatOptions.OnnxFileName}); --out {outPath} looks like a file");
                var options = new QatOptions
                {
                    Model = modelDir,
                    Task = task.Given(parse)
                        ? task.Apply(parse, null)
                        : throw new ArgumentException("--mode qat trains on a task: give --task (e.g. sst2) and --data"),
                    Out = outPath,
                    Teacher = parse.GetValue(teacher),
                    Int8Scheme = scheme,
                };
                if (parse.GetValue(temperature) is double t) options = options with { Kd = options.Kd with { Temperature = t } };
                if (parse.GetValue(alpha) is double a) options = options with { Kd = options.Kd with { Alpha = a } };
                if (parse.GetValue(opset) is int o) options = options with { Opset = o };
                options = options with { Trainer = training.Apply(parse, options.Trainer) };
                var metrics = RunProgress.Show(context, events => Qat.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
                onnx = Path.Combine(outPath, QatOptions.OnnxFileName);
                context.Console.MarkupLineInterpolated($"Wrote [bold]{outPath}[/]: dev (int8 simulated) {metrics["dev"]!.ToJsonString()}, before QAT {metrics["before"]?["int8_simulated"]?.ToJsonString() ?? "(resumed)"}; graph {onnx}");
            }
            else
            {
                foreach (var (name, given) in new[]
                {
                    ("--teacher", parse.GetValue(teacher) != null),
                    ("--max-train-examples", parse.GetValue(task.MaxTrainExamples) != null),
                    ("--resume", parse.GetValue(resume)),
                })
                    if (given) throw new ArgumentException($"{name} applies to --mode qat only (dynamic quantization does not train)");
                if (Directory.Exists(outPath)) throw new ArgumentException($"--mode dynamic writes one file: --out {outPath} is a folder (give e.g. {Path.Combine(outPath, QatOptions.OnnxFileName)})");
                RunOutput.PrepareFile(outPath, parse.GetValue(overwrite), [modelDir]);
                onnx = outPath;
                var result = OnnxExportJob.Run(modelDir, onnx, new OnnxExportOptions { Int8 = true, Opset = parse.GetValue(opset) ?? 17, Int8Scheme = scheme }, check: false);
                foreach (var warning in result.Warnings) context.Warn(warning);
                context.Console.MarkupLineInterpolated($"Wrote [bold]{onnx}[/] (int8 dynamic quantization, {Int8Quantization.Name(scheme)} weights, {result.Bytes:N0} bytes){(result.CopiedFiles.Count > 0 ? $"; copied {string.Join(", ", result.CopiedFiles)} next to it" : "")}");
            }
            if (parse.GetValue(check))
            {
                var checkOptions = new Int8CheckOptions { Model = qat ? outPath : modelDir, Onnx = onnx, Task = task.Apply(parse, null) };
                var report = RunProgress.Show(context, events => Int8Check.Run(checkOptions, events));
                Print(context, report);
            }
            return 0;
        });
        return command;
    }

    static void Print(CliContext context, Int8CheckReport report)
    {
        var table = new Table().AddColumn("metric")
            .AddColumn(new TableColumn("fp32 (TorchSharp)").RightAligned())
            .AddColumn(new TableColumn("int8 (ONNX Runtime)").RightAligned())
            .AddColumn(new TableColumn("int8 simulated (fake quant)").RightAligned());
        foreach (var name in report.Fp32.Keys)
            table.AddRow(name == report.PrimaryMetric ? $"[bold]{Markup.Escape(name)}[/]" : Markup.Escape(name),
                Format(report.Fp32[name]), Format(report.Int8[name]), Format(report.Simulated[name]));
        context.Console.Write(table);
        context.Console.MarkupLineInterpolated(
            $"{report.Examples:N0} dev examples, {Int8Quantization.Name(report.Scheme)} int8 weights: argmax agreement int8 vs fp32 {Format(report.AgreementWithFp32)}, vs simulated {Format(report.AgreementWithSimulated)}; mean |logit diff| vs fp32 {report.MeanAbsDiffFp32:G3}, vs simulated {report.MeanAbsDiffSimulated:G3}");
    }

    static string Format(double value) => double.IsFinite(value) ? value.ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture) : "n/a";
}
