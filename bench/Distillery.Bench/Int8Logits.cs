// `int8-logits`: the dev-set logits of an int8 graph (ONNX Runtime) and, optionally, of its fp32 model and the model
// under the graph's simulated scheme (TorchSharp), on the same 64-example batches as `distillery quantize --check`,
// written as JSON. It splits that check in two so the int8 graph alone can run under bench/emulate-avx2.sh (QEMU makes
// TorchSharp's fp32 passes as slow as the graph's, and they are the same function on every CPU): run it emulated with
// --what int8, natively with --what fp32,simulated,int8, and compare the files with bench/int8-compare.py.
//
//   dotnet run -c Release --project bench/Distillery.Bench -- int8-logits --model M --onnx M.int8.onnx --task sst2 \
//       --data ../shared/data/glue --what fp32,simulated,int8 --out native.json
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Numerics;
using Distillery.Quantization;
using Distillery.Runtime;
using Distillery.Training;

namespace Distillery.Bench;

internal static class Int8Logits
{
    public static int Run(Func<string, string, string> arg)
    {
        string model = arg("--model", ""), onnx = arg("--onnx", ""), output = arg("--out", "");
        var what = arg("--what", "int8").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();
        if (model.Length == 0 || onnx.Length == 0 || output.Length == 0 || what.Except(["int8", "fp32", "simulated"]).Any())
        {
            Console.Error.WriteLine("int8-logits: --model FOLDER --onnx GRAPH --task TASK --data DATA --out FILE [--what int8,fp32,simulated]");
            return 2;
        }
        var spec = new TaskSpec { Name = TaskNames.Parse(arg("--task", "sst2")), Data = arg("--data", "../shared/data/glue") };
        int batchSize = new Int8CheckOptions { Model = model, Onnx = onnx, Task = spec }.BatchSize;   // quantize --check's batches
        var (_, tokenizer, data) = TaskPipeline.ForModel(model, spec.Validate(), new TrainerOptions().Seed, needTrain: false);
        using var graph = Inference.OnnxRuntimeBackend.Load(onnx, intraOpThreads: null, warning: w => Console.Error.WriteLine($"warning: {w}"));
        var scheme = graph.Int8Scheme ?? throw new InvalidDataException($"{onnx}: an fp32 graph");
        var record = new JsonObject
        {
            ["model"] = model, ["onnx"] = onnx, ["task"] = TaskNames.ShortName(spec.Name), ["scheme"] = Int8Quantization.Name(scheme),
            ["examples"] = data.Eval.Count, ["batch_size"] = batchSize, ["labels"] = new JsonArray(data.Eval.Select(e => (JsonNode?)e.Label).ToArray()),
            ["machine"] = Machine.Describe(), ["version"] = RunFiles.Version,
        };
        var batches = Enumerable.Range(0, (data.Eval.Count + batchSize - 1) / batchSize)
            .Select(b => data.Eval.Skip(b * batchSize).Take(batchSize).ToList()).ToList();
        JsonArray Logits(IEnumerable<float[]> rows) => new(rows.Select(r => (JsonNode?)new JsonArray(r.Select(v => (JsonNode?)v).ToArray())).ToArray());
        if (what.Contains("int8"))
        {
            var int8 = new List<float[]>();
            foreach (var rows in batches)
            {
                int8.AddRange(ModelBench.Predict(graph, rows, tokenizer.PadId, batchSize));
                Console.Error.Write($"\rint8 {int8.Count}/{data.Eval.Count}");
            }
            Console.Error.WriteLine();
            record["int8"] = Logits(int8);
            record["int8_score"] = data.Score(int8)[data.PrimaryMetric];
        }
        if (what.Contains("fp32") || what.Contains("simulated"))
        {
            using var trainedModel = TaskPipeline.LoadTrained(model, data, spec);   // the data tokenised above
            trainedModel.eval();
            trainedModel.SetPrecision(Models.ComputePrecision.Float32);
            foreach (var (name, simulate) in new[] { ("fp32", false), ("simulated", true) }.Where(p => what.Contains(p.Item1)))
            {
                if (simulate) Qat.Enable(trainedModel, scheme); else Qat.Disable(trainedModel);
                var logits = batches.SelectMany(rows => TaskObjective.Predict(trainedModel, rows, tokenizer.PadId, batchSize)).ToList();
                record[name] = Logits(logits);
                record[name + "_score"] = data.Score(logits)[data.PrimaryMetric];
            }
            Qat.Disable(trainedModel);
        }
        File.WriteAllText(output, record.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        Console.WriteLine($"{output}: {string.Join(", ", what.Order().Select(w => $"{w} {data.PrimaryMetric} {record[w + "_score"]}"))}");
        return 0;
    }
}
