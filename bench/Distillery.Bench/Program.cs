// Benchmarks (not tests): print a table and record the commit and machine. Usage:
//   dotnet run -c Release --project bench/Distillery.Bench -- train-throughput [--arch L4-H256] [--batch 32] [--length 128] [--steps 20]
//   dotnet run -c Release --project bench/Distillery.Bench -- train-step [--model models/minilm-l6-h384] [--batch 32] [--length 128] [--steps 10]
//   dotnet run -c Release --project bench/Distillery.Bench -- minilm-onnx --out runs/fused-onnx/pytorch-minilm.onnx
//   dotnet run -c Release --project bench/Distillery.Bench -- onnx-profile --model M.onnx [--batch 32] [--length 128] [--iterations 10] [--json F]
//   dotnet run -c Release --project bench/Distillery.Bench -- mask-fill [--elements 6291456] [--repeats 15]
//   dotnet run -c Release --project bench/Distillery.Bench -- int8-logits --model M --onnx M.int8.onnx --task sst2 --data DIR --what int8,fp32,simulated --out F.json
using System.Diagnostics;
using Distillery.Bench;
using Distillery.Models;
using Distillery.Runtime;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

string command = args.Length > 0 ? args[0] : "train-throughput";
string Arg(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
if (command == "minilm-onnx")
{
    // The PyTorch export of the real teacher's weights, for `distillery bench --peer` (bench/fused-onnx.sh).
    string output = Arg("--out", "runs/fused-onnx/pytorch-minilm.onnx");
    Distillery.Import.RealTeacher.ExtractOriginalGraph(output, m => Console.Error.WriteLine(m));
    Console.WriteLine(output);
    return 0;
}
if (command == "train-step") return TrainStep.Run(Arg);
if (command == "onnx-profile") return OnnxProfile.Run(Arg);
if (command == "int8-logits") return Int8Logits.Run(Arg);
if (command == "mask-fill") return MaskFill.Run(Arg);
if (command != "train-throughput")
{
    Console.Error.WriteLine($"unknown benchmark '{command}' (known: train-throughput, train-step, minilm-onnx, onnx-profile, int8-logits, mask-fill)");
    return 2;
}

string arch = Arg("--arch", "L4-H256");
int batch = int.Parse(Arg("--batch", "32")), length = int.Parse(Arg("--length", "128")), steps = int.Parse(Arg("--steps", "20")), warmup = int.Parse(Arg("--warmup", "3"));
Console.WriteLine($"# training throughput: {arch}, sequence classification, batch {batch} x {length} tokens, {steps} timed steps after {warmup} warm-up");
Console.WriteLine($"# commit {Machine.GitCommit() ?? "unknown"}, {Machine.Describe()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine();
Console.WriteLine("| precision | tokens/s | ms/step | forward ms | backward ms | optimizer ms | speed-up |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
double? baseline = null;
foreach (var precision in new[] { ComputePrecision.Float32, ComputePrecision.BFloat16 })
{
    manual_seed(0);
    var config = BertArch.Parse(arch) with { Labels = ["0", "1"] };
    using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
    model.SetPrecision(precision);
    model.train();
    var optimizer = optim.AdamW(model.parameters(), lr: 1e-4);
    var ids = randint(0, config.VocabSize, [batch, length], dtype: ScalarType.Int64);
    var labels = randint(0, 2, [batch], dtype: ScalarType.Int64);
    double fwd = 0, bwd = 0, opt = 0;
    var total = new Stopwatch();
    for (int step = 0; step < warmup + steps; step++)
    {
        if (step == warmup) { total.Restart(); fwd = bwd = opt = 0; }
        using var scope = NewDisposeScope();
        var watch = Stopwatch.StartNew();
        var loss = nn.functional.cross_entropy(model.forward(new BertInputs(ids)).Logits, labels);
        _ = loss.item<float>();
        fwd += watch.Elapsed.TotalMilliseconds; watch.Restart();
        loss.backward();
        bwd += watch.Elapsed.TotalMilliseconds; watch.Restart();
        nn.utils.clip_grad_norm_(model.parameters(), 1.0);
        optimizer.step();
        optimizer.zero_grad();
        opt += watch.Elapsed.TotalMilliseconds;
    }
    double seconds = total.Elapsed.TotalSeconds;
    double tokensPerSecond = (double)batch * length * steps / seconds;
    baseline ??= tokensPerSecond;
    Console.WriteLine($"| {(precision == ComputePrecision.Float32 ? "fp32" : "bf16 matmuls")} | {tokensPerSecond:N0} | {1000 * seconds / steps:0.0} | {fwd / steps:0.0} | {bwd / steps:0.0} | {opt / steps:0.0} | {tokensPerSecond / baseline:0.00}x |");
    optimizer.Dispose();
}
return 0;
