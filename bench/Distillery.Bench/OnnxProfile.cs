// Where an ONNX graph's time goes, by operator type: ONNX Runtime's own profiler (SessionOptions.EnableProfiling, a
// Chrome-trace JSON with one "<node>_kernel_time" event per node run) over a few forwards of random token ids at one
// batch x length, summed per op type and as a share of the runs' wall time ("model_run" events). Issue 16 uses it to
// bound what graph rewriting can buy: if the weight GEMMs (x·W: MatMul, FusedMatMul, Gemm, DynamicQuantizeMatMul,
// MatMulInteger, ... with one activation input) take a share g of a graph's run time, no rewrite that leaves them as
// they are can make that graph more than 1 / g times faster.
//
//   dotnet run -c Release --project bench/Distillery.Bench -- onnx-profile --model M.onnx [--batch 32] [--length 128]
//       [--iterations 10] [--threads 2] [--json OUT.json]
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Distillery.Bench;

internal static class OnnxProfile
{
    /// <summary>Op types whose kernels are matrix products. One with a single activation input of rank >= 2 (the
    /// weights are initializers, which the trace does not list) is a weight GEMM x·W, the same work in any graph of the
    /// model; one with two (QKᵀ, P·V) is an attention product, which a fused attention kernel may do otherwise.</summary>
    private static readonly HashSet<string> MatrixOps =
        ["MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm", "MatMulNBits"];
    /// <summary>Fused attention ops: their kernels hold attention products and, for Attention/QAttention, the Q|K|V GEMM.</summary>
    private static readonly HashSet<string> AttentionOps = ["Attention", "MultiHeadAttention", "QAttention"];

    private const string WeightGemm = " (x·W)", AttentionProduct = " (activation·activation)";

    public static int Run(Func<string, string, string> arg)
    {
        string model = arg("--model", "");
        if (model.Length == 0 || !File.Exists(model))
        {
            Console.Error.WriteLine($"onnx-profile: --model {model}: file not found");
            return 2;
        }
        int batch = int.Parse(arg("--batch", "32")), length = int.Parse(arg("--length", "128"));
        int iterations = int.Parse(arg("--iterations", "10")), threads = int.Parse(arg("--threads", "2"));
        string? json = arg("--json", "") is { Length: > 0 } j ? j : null;

        string prefix = Path.Combine(Path.GetTempPath(), $"distillery-onnx-profile-{Environment.ProcessId}");
        using var profiled = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,   // as every Distillery session (OnnxRuntimeBackend)
            IntraOpNumThreads = threads,
            ProfileOutputPathPrefix = prefix,
        };
        profiled.EnableProfiling = true;
        using var profiledSession = new InferenceSession(model, profiled);
        var feeds = Inputs(profiledSession, batch, length);
        // The first run (allocations, weight prepacking) is profiled too and dropped from the sums below.
        var outputs = profiledSession.OutputMetadata.Keys.ToArray();
        using var runOptions = new RunOptions();
        var wall = new List<double>();
        for (int i = 0; i <= iterations; i++)
        {
            var watch = Stopwatch.StartNew();
            using var results = profiledSession.Run(runOptions, feeds, outputs);
            wall.Add(watch.Elapsed.TotalMilliseconds);
        }
        string trace = profiledSession.EndProfiling();
        foreach (var feed in feeds) feed.Value.Dispose();

        // Trace events: {"cat": "Node"|"Session", "name": ..., "dur": µs, "args": {"op_name": ...}}. Runs are the
        // "model_run" Session events in order; node events belong to the run whose [ts, ts + dur] holds them.
        var events = JsonNode.Parse(File.ReadAllText(trace))!.AsArray();
        if (arg("--trace", "") is { Length: > 0 } keep) File.Move(trace, keep, overwrite: true); else File.Delete(trace);
        var runs = events.Where(e => (string?)e!["name"] == "model_run")
            .Select(e => ((long)e!["ts"]!, (long)e!["ts"]! + (long)e!["dur"]!)).OrderBy(r => r.Item1).ToList();
        if (runs.Count != iterations + 1) throw new InvalidDataException($"onnx-profile: {runs.Count} model_run events for {iterations + 1} runs");
        long firstEnd = runs[0].Item2;
        double runMicros = runs.Skip(1).Sum(r => (double)(r.Item2 - r.Item1));
        var byOp = new Dictionary<string, (double Micros, int Nodes)>();
        foreach (var e in events)
        {
            if ((string?)e!["cat"] != "Node" || !((string?)e["name"] ?? "").EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
            if ((long)e["ts"]! <= firstEnd) continue;   // the warm-up run
            string op = (string?)e["args"]?["op_name"] ?? "?";
            if (MatrixOps.Contains(op))
            {
                int activations = (e["args"]?["input_type_shape"] as JsonArray ?? []).Count(input =>
                    input is JsonObject typed && typed.Select(kv => kv.Value).OfType<JsonArray>().Any(shape => shape.Count >= 2));
                op += activations >= 2 ? AttentionProduct : WeightGemm;
            }
            var (micros, nodes) = byOp.GetValueOrDefault(op);
            byOp[op] = (micros + (long)e["dur"]!, nodes + 1);
        }
        double kernelMicros = byOp.Values.Sum(v => v.Micros);
        double Share(Func<string, bool> which) => byOp.Where(kv => which(kv.Key)).Sum(kv => kv.Value.Micros) / runMicros;
        double weightGemms = Share(op => op.EndsWith(WeightGemm, StringComparison.Ordinal));
        double attentionProducts = Share(op => op.EndsWith(AttentionProduct, StringComparison.Ordinal));
        double fusedAttention = Share(AttentionOps.Contains);

        Console.WriteLine($"# ONNX Runtime profile: {model}, batch {batch} x {length}, {iterations} profiled runs after 1 warm-up, {threads} intra-op threads");
        Console.WriteLine($"# commit {Machine.GitCommit() ?? "unknown"}, {Machine.Describe(threads)}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine($"# median wall time per run {Median(wall.Skip(1)):0.00} ms (profiling on); kernels {kernelMicros / iterations / 1000:0.00} ms per run, {kernelMicros / runMicros:P1} of model_run");
        Console.WriteLine();
        Console.WriteLine("| op type | nodes per run | ms per run | share of kernel time | share of run time |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (op, (micros, nodes)) in byOp.OrderByDescending(kv => kv.Value.Micros))
            Console.WriteLine($"| {op} | {nodes / iterations} | {micros / iterations / 1000:0.000} | {micros / kernelMicros:P1} | {micros / runMicros:P1} |");
        Console.WriteLine();
        Console.WriteLine($"Share of run time: weight GEMMs x·W {weightGemms:P1}, attention products {attentionProducts:P1}, fused attention ops {fusedAttention:P1}, the rest {1 - weightGemms - attentionProducts - fusedAttention:P1}.");
        if (fusedAttention == 0)
            Console.WriteLine($"A rewrite of this graph that leaves its weight GEMMs as they are gains at most {1 / weightGemms:0.00}x (all other time to zero).");

        if (json is not null)
        {
            var record = new JsonObject
            {
                ["model"] = model, ["batch"] = batch, ["length"] = length, ["iterations"] = iterations, ["threads"] = threads,
                ["commit"] = Machine.GitCommit(), ["machine"] = Machine.Describe(threads), ["utc"] = DateTime.UtcNow.ToString("O"),
                ["median_run_ms"] = Median(wall.Skip(1)), ["run_ms"] = runMicros / iterations / 1000, ["kernel_ms"] = kernelMicros / iterations / 1000,
                ["weight_gemm_share_of_run"] = weightGemms, ["attention_product_share_of_run"] = attentionProducts,
                ["fused_attention_share_of_run"] = fusedAttention,
                ["ops"] = new JsonObject(byOp.OrderByDescending(kv => kv.Value.Micros).Select(kv => KeyValuePair.Create(kv.Key,
                    (JsonNode?)new JsonObject { ["nodes"] = kv.Value.Nodes / iterations, ["ms"] = kv.Value.Micros / iterations / 1000, }))),
            };
            File.WriteAllText(json, record.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        return 0;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>Random token ids [batch, length] (a BERT graph's inputs, recognised by name), all-ones mask, zero segments.</summary>
    private static Dictionary<string, OrtValue> Inputs(InferenceSession session, int batch, int length)
    {
        var random = new Random(0);
        var feeds = new Dictionary<string, OrtValue>();
        foreach (var (name, meta) in session.InputMetadata)
        {
            long[] values = new long[batch * length];
            if (name.Contains("mask", StringComparison.OrdinalIgnoreCase)) Array.Fill(values, 1L);
            else if (name.Contains("ids", StringComparison.OrdinalIgnoreCase) && !name.Contains("type", StringComparison.OrdinalIgnoreCase))
                for (int i = 0; i < values.Length; i++) values[i] = random.Next(1000, 20000);
            long[] shape = [batch, length];
            feeds[name] = meta.ElementDataType switch
            {
                TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(values, shape),
                TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(values.Select(v => (int)v).ToArray(), shape),
                var t => throw new InvalidDataException($"onnx-profile: input {name} is {t}, not int64/int32"),
            };
        }
        return feeds;
    }
}
